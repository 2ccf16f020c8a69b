//! Technician sessions are evidence too.
//!
//! `proofrig console`, `ssh` and `power` record everything they do through the same
//! recorder the test executor uses, into one JSON-lines transcript per session under
//! `results/sessions/`, so a bench action taken by hand can be reviewed later.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use proofrig_agents::events::{JsonLinesSink, Recorder};

/// A recorder writing to a fresh transcript file, and where that file is.
pub struct SessionLog {
    pub recorder: Recorder,
    pub path: PathBuf,
}

impl SessionLog {
    /// Open `DIR/<utc time>-<rig>-<device>-<what>.jsonl`.
    pub fn create(dir: &Path, rig: &str, device: &str, what: &str) -> std::io::Result<Self> {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(':', "");
        let name = format!("{stamp}-{}-{}-{what}.jsonl", sanitize(rig), sanitize(device));
        let path = dir.join(name);
        let sink = JsonLinesSink::create(&path)?;
        Ok(Self { recorder: Recorder::new(sink), path })
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
