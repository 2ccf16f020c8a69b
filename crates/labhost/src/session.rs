//! Technician sessions are evidence too.
//!
//! `proofrig console`, `ssh` and `power`, and the same actions a technician takes
//! from the dashboard through a lab host, record everything they do through the same
//! recorder the test executor uses, into one JSON-lines transcript per session
//! (`results/sessions/` on the command line, `sessions/` in a lab host's state
//! directory), so a bench action taken by hand can be reviewed later.
//! Like a run's journal, a session transcript never holds a secret of the rig: what
//! a device prints of one is recorded as its marker (see `proofrig_model::redact`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use proofrig_agents::channel::{ByteStream, ChannelError};
use proofrig_model::ansi::AnsiFilter;
use proofrig_model::events::{JsonLinesSink, Recorder};
use proofrig_model::redact::Redactor;
use proofrig_model::rig::Rig;
use proofrig_model::secret::Secret;
use regex::bytes::Regex;

/// A recorder writing to a fresh transcript file, and where that file is.
pub struct SessionLog {
    pub recorder: Recorder,
    pub path: PathBuf,
}

impl SessionLog {
    /// Open `DIR/<utc time>-<rig>-<device>-<what>.jsonl` (`...-2.jsonl` and so on
    /// when a session of the same second has it: each session its own file),
    /// redacting the rig's secrets.
    pub fn create(dir: &Path, rig: &Rig, device: &str, what: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(':', "");
        let base = format!("{stamp}-{}-{}-{what}", sanitize(rig.name()), sanitize(device));
        let mut n = 1;
        let path = loop {
            let path = dir.join(if n == 1 { format!("{base}.jsonl") } else { format!("{base}-{n}.jsonl") });
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => break path,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        };
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

/// Send what the person typed; while a password is being typed, only its length is recorded.
pub async fn forward(stream: &ByteStream, prompt: &mut PasswordPrompt, mut keys: &[u8]) -> Result<(), ChannelError> {
    while !keys.is_empty() {
        if !prompt.typing_password {
            return stream.write(keys).await;
        }
        let end = keys.iter().position(|b| *b == b'\r' || *b == b'\n');
        let (secret, rest) = match end {
            Some(at) => keys.split_at(at),
            None => (keys, &[][..]),
        };
        if !secret.is_empty() {
            let typed = Secret::new("typed at a password prompt", String::from_utf8_lossy(secret));
            stream.write_secret(&typed, b"").await?;
        }
        if end.is_some() {
            prompt.typing_password = false;
        }
        keys = rest;
    }
    Ok(())
}

/// Notices when the device asks for a password, from what it printed last.
pub struct PasswordPrompt {
    pattern: Regex,
    filter: AnsiFilter,
    tail: Vec<u8>,
    pub typing_password: bool,
}

impl PasswordPrompt {
    pub fn new(rig_pattern: Option<&str>) -> Self {
        let default = r"(?i)(password|passphrase|passcode|pin)[^\n]*: ?$";
        let pattern = rig_pattern.and_then(|p| Regex::new(p).ok()).unwrap_or_else(|| Regex::new(default).expect("valid default"));
        Self { pattern, filter: AnsiFilter::new(), tail: Vec::new(), typing_password: false }
    }

    pub fn device_said(&mut self, raw: &[u8]) {
        self.filter.filter(raw, &mut self.tail);
        if let Some(line_start) = self.tail.iter().rposition(|b| *b == b'\n') {
            self.tail.drain(..=line_start);
        }
        let keep_from = self.tail.len().saturating_sub(256);
        self.tail.drain(..keep_from);
        self.typing_password = self.pattern.is_match(&self.tail);
    }
}
