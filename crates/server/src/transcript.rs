//! A stored run's transcript, for the people who read it: the power timeline, and the
//! console and SSH bytes that contain what they search for.
//!
//! Read from the bundle's journal as sealed: bytes exactly as they crossed each channel,
//! and where a secret crossed, only its label and length (the journal never held the
//! value). A pure reading of recorded evidence; nothing here touches a device.

use std::io::BufReader;
use std::path::Path;

use proofrig_evidence::journal::{ChainReader, Hashing};
use proofrig_evidence::record::JournalEntry;
use proofrig_model::events::{Direction, EventKind};

/// The most matches a search shows.
pub const MAX_MATCHES: usize = 200;

/// One power action, as the outlet read back after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerRow {
    pub at: String,
    pub device: String,
    pub action: String,
    pub readback: String,
    pub ok: bool,
    pub detail: String,
}

/// One line of a channel that matched a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub at: String,
    pub channel: String,
    /// `device → us` or `us → device`.
    pub direction: &'static str,
    pub line: String,
}

/// What the run page shows of a run's journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    pub power: Vec<PowerRow>,
    pub matches: Vec<Match>,
    /// More matched than are shown.
    pub more: bool,
}

fn when(wall_ns: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(wall_ns)).to_string()
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::In => "device → us",
        Direction::Out => "us → device",
    }
}

/// Read the journal at `journal`; search its channel bytes for `query` (case
/// insensitive, at least 2 characters; none when `None`).
pub fn read(journal: &Path, query: Option<&str>) -> std::io::Result<Transcript> {
    let file = std::fs::File::open(journal)?;
    let query = query.map(str::to_lowercase).filter(|q| q.chars().count() >= 2);
    let mut out = Transcript::default();
    let reader = ChainReader::<_, JournalEntry>::new(Hashing(BufReader::new(file)), &journal.display().to_string());
    for record in reader {
        let Ok(JournalEntry::Event { event }) = record.entry else { continue };
        let at = when(event.at.wall_ns);
        match event.kind {
            EventKind::Power { device, action, readback, ok, detail, .. } => {
                out.power.push(PowerRow { at, device, action, readback: format!("{readback:?}").to_lowercase(), ok, detail })
            }
            EventKind::Bytes { channel, direction: d, data } => {
                let Some(q) = &query else { continue };
                let text = String::from_utf8_lossy(&data);
                for line in text.split(['\n', '\r']).filter(|l| l.to_lowercase().contains(q.as_str())) {
                    if out.matches.len() == MAX_MATCHES {
                        out.more = true;
                        break;
                    }
                    let line: String = line.chars().filter(|c| !c.is_control() || *c == '\t').take(400).collect();
                    out.matches.push(Match { at: at.clone(), channel: channel.to_string(), direction: direction(d), line });
                }
            }
            EventKind::Redacted { channel, direction: d, secret, len }
                if query.as_deref().is_some_and(|q| secret.to_lowercase().contains(q)) && out.matches.len() < MAX_MATCHES =>
            {
                let line = format!("«secret {secret}: {len} bytes, not recorded»");
                out.matches.push(Match { at, channel: channel.to_string(), direction: direction(d), line });
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_evidence::journal::{genesis, record_line};
    use proofrig_model::events::{ChannelId, Event, PowerState, Timestamp};

    fn journal(kinds: Vec<EventKind>) -> tempfile::NamedTempFile {
        let (mut bytes, mut prev) = (Vec::new(), genesis());
        for (n, kind) in kinds.into_iter().enumerate() {
            let event = Event { seq: n as u64, at: Timestamp { wall_ns: 1_764_900_000_000_000_000 + n as u64, mono_ns: n as u64 }, kind };
            let body = serde_json::to_vec(&JournalEntry::Event { event }).unwrap();
            let (line, hash) = record_line(n as u64, &prev, &body);
            bytes.extend_from_slice(&line);
            prev = hash;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn the_power_timeline_and_a_search_of_the_channels_with_secrets_as_labels() {
        let console = ChannelId::new("ru1", "console");
        let file = journal(vec![
            EventKind::Power {
                device: "ru1".into(),
                pdu: "pdu".into(),
                outlet: "3".into(),
                action: "cycle".into(),
                requested: PowerState::On,
                readback: PowerState::On,
                ok: true,
                detail: "outlet reads on".into(),
            },
            EventKind::Bytes { channel: console.clone(), direction: Direction::In, data: b"ru1 login: \r\nPassword: ".to_vec() },
            EventKind::Redacted { channel: console.clone(), direction: Direction::Out, secret: "ru1-admin-password".into(), len: 12 },
            EventKind::Bytes { channel: console, direction: Direction::In, data: b"\r\nLogin incorrect\r\nru1 LOGIN: ".to_vec() },
        ]);
        let all = read(file.path(), None).unwrap();
        assert_eq!(all.power.len(), 1);
        assert_eq!((all.power[0].action.as_str(), all.power[0].readback.as_str(), all.power[0].ok), ("cycle", "on", true));
        assert!(all.matches.is_empty(), "no search, no matches");
        let found = read(file.path(), Some("LOGIN")).unwrap();
        let lines: Vec<&str> = found.matches.iter().map(|m| m.line.as_str()).collect();
        assert_eq!(lines, ["ru1 login: ", "Login incorrect", "ru1 LOGIN: "]);
        assert_eq!(found.matches[0].direction, "device → us");
        let secret = read(file.path(), Some("password")).unwrap();
        let lines: Vec<&str> = secret.matches.iter().map(|m| m.line.as_str()).collect();
        assert_eq!(lines, ["Password: ", "«secret ru1-admin-password: 12 bytes, not recorded»"], "the secret by its label only");
        assert!(read(file.path(), Some("x")).unwrap().matches.is_empty(), "a one-character search finds nothing");
    }
}
