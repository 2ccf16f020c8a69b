//! Technician sessions are evidence too.
//!
//! `proofrig console`, `ssh` and `power` record everything they do through the same
//! recorder the test executor uses, into one JSON-lines transcript per session under
//! `results/sessions/`, so a bench action taken by hand can be reviewed later.
//! Like a run's journal, a session transcript never holds a secret of the rig: what
//! a device prints of one is recorded as its marker (see `proofrig_model::redact`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use proofrig_model::events::{JsonLinesSink, Recorder};
use proofrig_model::redact::Redactor;
use proofrig_model::rig::Rig;

/// A recorder writing to a fresh transcript file, and where that file is.
pub struct SessionLog {
    pub recorder: Recorder,
    pub path: PathBuf,
}

impl SessionLog {
    /// Open `DIR/<utc time>-<rig>-<device>-<what>.jsonl`, redacting the rig's secrets.
    pub fn create(dir: &Path, rig: &Rig, device: &str, what: &str) -> std::io::Result<Self> {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(':', "");
        let name = format!("{stamp}-{}-{}-{what}.jsonl", sanitize(rig.name()), sanitize(device));
        let path = dir.join(name);
        let sink = JsonLinesSink::create(&path)?;
        let mut redactor = Redactor::new();
        for err in redactor.add_rig(rig) {
            // Only the command that needs the secret has to say so.
            tracing::debug!("{err}; not redacted from this session's transcript");
        }
        Ok(Self { recorder: Recorder::with_redactor(sink, redactor), path })
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
