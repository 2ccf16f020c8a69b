//! The newest fencing token this lab host has accepted for each rig, kept on disk.
//!
//! A lease the server granted and then lost (its holder stopped renewing) passes to
//! the next holder under a larger token. The lab host refuses anything under a token
//! smaller than one it has already accepted for the rig (`proofrig_proto::ids::admit`),
//! so a holder that has not noticed its lease lapsed cannot touch the rig again. That
//! holds across a restart of the lab host only if the tokens survive it: each newly
//! accepted token is written (a temporary file, synced, renamed over the old one)
//! before the run it admits starts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use proofrig_proto::ids::{admit, FencingToken, StaleFence};

/// The file under the lab host's state directory.
pub const FENCES_FILE: &str = "fences.json";

#[derive(Debug, thiserror::Error)]
pub enum FencesError {
    #[error("cannot read {path}: {reason}; it holds the fencing tokens this lab host accepted, and without it a stale lease could be honoured: restore it, or remove it only if this lab host's rigs were never leased")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {source}; nothing was started")]
    Write { path: String, source: std::io::Error },
}

/// Newest accepted token per rig, as on disk.
#[derive(Debug)]
pub struct Fences {
    path: PathBuf,
    newest: BTreeMap<String, FencingToken>,
}

impl Fences {
    /// Open (or start) the tokens kept under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Fences, FencesError> {
        let path = state_dir.join(FENCES_FILE);
        let newest = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| FencesError::Read { path: path.display().to_string(), reason: e.to_string() })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(FencesError::Read { path: path.display().to_string(), reason: e.to_string() }),
        };
        Ok(Fences { path, newest })
    }

    /// The newest token accepted for `rig`, if any.
    pub fn newest(&self, rig: &str) -> Option<FencingToken> {
        self.newest.get(rig).copied()
    }

    /// Whether an action on `rig` under `presented` may go ahead (see the module doc).
    pub fn check(&self, rig: &str, presented: FencingToken) -> Result<(), StaleFence> {
        admit(rig, self.newest(rig), presented)
    }

    /// Record `presented` as `rig`'s newest token, on disk, before the action it
    /// admits starts. A token not newer than the recorded one changes nothing.
    pub fn record(&mut self, rig: &str, presented: FencingToken) -> Result<(), FencesError> {
        if self.newest(rig).is_some_and(|newest| newest >= presented) {
            return Ok(());
        }
        let mut next = self.newest.clone();
        next.insert(rig.to_string(), presented);
        let write = |source| FencesError::Write { path: self.path.display().to_string(), source };
        let temporary = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temporary).map_err(write)?;
        file.write_all(&serde_json::to_vec_pretty(&next).expect("tokens are plain data")).map_err(write)?;
        file.sync_all().map_err(write)?;
        std::fs::rename(&temporary, &self.path).map_err(write)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(write)?;
        }
        self.newest = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_a_reopen_and_an_older_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut fences = Fences::open(dir.path()).unwrap();
        assert!(fences.check("bench-3", FencingToken(5)).is_ok(), "no token yet: any is admitted");
        fences.record("bench-3", FencingToken(5)).unwrap();
        fences.record("bench-3", FencingToken(3)).unwrap();
        let reopened = Fences::open(dir.path()).unwrap();
        assert_eq!(reopened.newest("bench-3"), Some(FencingToken(5)), "an older token does not overwrite a newer one");
        assert!(reopened.check("bench-3", FencingToken(5)).is_ok(), "the same holder's next action");
        let stale = reopened.check("bench-3", FencingToken(4)).unwrap_err();
        assert_eq!((stale.presented, stale.newest), (FencingToken(4), FencingToken(5)));
        assert!(reopened.check("bench-4", FencingToken(1)).is_ok(), "tokens are per rig");
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FENCES_FILE), b"{ not json").unwrap();
        let err = Fences::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("fences.json") && err.contains("stale lease"), "{err}");
    }
}
