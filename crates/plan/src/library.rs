//! The test library: plan files by the directory, and the bundled library compiled
//! into the binary.
//!
//! The bundled library is every `*.yaml` / `*.yml` file of `testplans/` at build
//! time (`crates/plan/build.rs` lists the directory; cargo rebuilds when a file in
//! it changes, appears or goes). Compiling it in is what lets `proofrig demo` and
//! `proofrig catalogue` run from any directory, and from an installed binary that
//! has no `testplans/` beside it, with no list of files to keep up to date.

use std::path::{Path, PathBuf};

use super::{Plan, PlanError};

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_plans.rs"));
}

/// The bundled plan files: (path as in the repository, e.g. `testplans/open-ports.yaml`,
/// exact bytes), sorted by path.
pub fn bundled_files() -> &'static [(&'static str, &'static [u8])] {
    bundled::FILES
}

/// Load every bundled plan, in path order; each plan keeps its repository path and
/// exact bytes (what a bundle records). An invalid file is an `Err` in its place.
pub fn load_bundled() -> Vec<(String, Result<Plan, PlanError>)> {
    bundled_files().iter().map(|(name, bytes)| (name.to_string(), Plan::from_bytes(name, bytes))).collect()
}

/// Whether a path names a plan file by its extension.
pub fn is_plan_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

/// The plan files a command-line path stands for: a file as given, a directory's
/// `*.yaml` / `*.yml` files (not recursive), sorted.
pub fn expand(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(path)?.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file() && is_plan_file(p)).collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_library_is_every_plan_file_of_testplans() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans");
        let on_disk: Vec<String> =
            expand(&dir).unwrap().iter().map(|p| format!("testplans/{}", p.file_name().unwrap().to_string_lossy())).collect();
        let bundled: Vec<&str> = bundled_files().iter().map(|(name, _)| *name).collect();
        assert_eq!(bundled, on_disk);
        assert!(bundled.len() >= 3, "{bundled:?}");
        for (name, bytes) in bundled_files() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(name);
            assert_eq!(*bytes, std::fs::read(&path).unwrap().as_slice(), "{name} is compiled in as it is on disk");
        }
    }
}
