//! Files that cross between the sides: plans going out with a job, and a sealed
//! bundle's files coming back.
//!
//! A name that arrives over the wire becomes a path on the receiver's disk (a plan
//! under the bundle's `inputs/plans/`, an uploaded file under the server's store),
//! so each kind of name is checked before anything is written: a plan is a bare file
//! name, a bundle file a relative path that stays inside the bundle.

use serde::{Deserialize, Serialize};

/// A plan's exact bytes under the file name the bundle stores it by (and that
/// messages and verdicts name it by, e.g. `4.2.3.1-ssh-weak-ciphers.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFile {
    pub name: String,
    #[serde(with = "crate::bytes::base64")]
    pub bytes: Vec<u8>,
}

/// Whether `run` can be a run id: what names a bundle's directory on the lab host,
/// the server and a fetching machine: 1 to 200 of letters, digits, `.`, `_`, `-`, not
/// starting with a dot (so never `..`, a path, or a hidden file).
pub fn is_run_id(run: &str) -> bool {
    !run.is_empty()
        && run.len() <= 200
        && !run.starts_with('.')
        && run.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// One file of a sealed bundle, as the lab host offers it for upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    /// Relative to the bundle's directory, `/`-separated: `journal.jsonl`,
    /// `inputs/plans/x.yaml`.
    pub path: String,
    /// Its length in bytes.
    pub len: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// A name that cannot become a file where the receiver would put it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{name}` is refused: {reason}")]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
    pub reason: &'static str,
}

/// A plan's name must be a bare file name: the bundle stores every plan in one
/// directory, and verdict messages name plans by it.
pub fn check_plan_name(name: &str) -> Result<(), NameError> {
    let refuse = |reason| Err(NameError { what: "plan file name", name: name.to_string(), reason });
    match name {
        "" => refuse("it is empty"),
        "." | ".." => refuse("it names a directory"),
        _ if name.contains(['/', '\\']) => refuse("a plan is sent under its file name, without directories"),
        _ if name.chars().any(char::is_control) => refuse("it contains a control character"),
        _ => Ok(()),
    }
}

/// A bundle file's path must be relative, `/`-separated, and stay inside the bundle:
/// no empty, `.` or `..` component, no backslash, no control character.
pub fn check_bundle_path(path: &str) -> Result<(), NameError> {
    let refuse = |reason| Err(NameError { what: "bundle file path", name: path.to_string(), reason });
    if path.is_empty() {
        return refuse("it is empty");
    }
    if path.starts_with('/') {
        return refuse("it is absolute; paths are relative to the bundle's directory");
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return refuse("it contains a backslash or a control character");
    }
    match path.split('/').any(|part| matches!(part, "" | "." | "..")) {
        true => refuse("an empty, `.` or `..` component could leave the bundle's directory"),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_is_a_plain_name() {
        assert!(is_run_id("20261205T100012Z-simlab-job1-6180c4"));
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "run\0", &"x".repeat(201)] {
            assert!(!is_run_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn plan_names_are_bare_file_names() {
        assert_eq!(check_plan_name("4.2.3.1-ssh.yaml"), Ok(()));
        for bad in ["", ".", "..", "plans/x.yaml", "..\\x.yaml", "/etc/passwd", "x\n.yaml"] {
            assert!(check_plan_name(bad).is_err(), "{bad:?}");
        }
        let err = check_plan_name("../x.yaml").unwrap_err().to_string();
        assert!(err.contains("plan file name `../x.yaml` is refused"), "{err}");
    }

    #[test]
    fn bundle_paths_stay_inside_the_bundle() {
        for good in ["journal.jsonl", "inputs/plans/a.yaml", "inputs/rig.yaml", "..x", "a/.hidden"] {
            assert_eq!(check_bundle_path(good), Ok(()), "{good}");
        }
        for bad in ["", "/journal.jsonl", "../x", "inputs/../../x", "inputs//x", "./x", "inputs/", "a\\b", "a\0b"] {
            assert!(check_bundle_path(bad).is_err(), "{bad:?}");
        }
    }
}
