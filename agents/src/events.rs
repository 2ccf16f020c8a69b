//! The one stream every agent reports into.
//!
//! Evidence is only as good as its ordering: every byte read from or written to a
//! device, every SSH command, every power action becomes an [`Event`] with a
//! sequence number, a wall-clock and a monotonic timestamp. The [`Recorder`] stamps
//! and forwards events under one lock, so the sequence order is the order in which
//! things happened and nothing is lost or reordered within a channel, whatever the
//! load. The sink behind it (memory for tests, JSON lines for a session, the
//! hash-chained journal later) only has to append.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// When something happened: wall clock for people, monotonic for intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Nanoseconds since the Unix epoch (wall clock; may jump).
    pub wall_ns: u64,
    /// Nanoseconds since the recorder started (monotonic; never jumps).
    pub mono_ns: u64,
}

/// Which device and which of its channels an event concerns, e.g. `ru1` / `console`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelId {
    pub device: String,
    pub channel: String,
}

impl ChannelId {
    pub fn new(device: impl Into<String>, channel: impl Into<String>) -> Self {
        Self { device: device.into(), channel: channel.into() }
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.device, self.channel)
    }
}

/// Bytes travelling from the device (`In`) or to the device (`Out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// A power state as requested or as read back from the outlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
    /// The backend cannot tell (e.g. pdudaemon has no status call). Never guessed.
    Unknown,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        })
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A channel to a device was opened (console, SSH session, shell...).
    ChannelOpened { channel: ChannelId, detail: String },
    /// Raw bytes on a channel, exactly as they crossed it.
    Bytes {
        channel: ChannelId,
        direction: Direction,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Bytes that carried a secret; only the reference and the length are kept.
    Redacted { channel: ChannelId, direction: Direction, secret: String, len: usize },
    /// The device side went away (EOF, EIO, reset) while the channel was in use.
    ChannelLost { channel: ChannelId, reason: String },
    /// We closed the channel on purpose.
    ChannelClosed { channel: ChannelId },
    /// An SSH command started.
    SshExec { channel: ChannelId, command: String },
    /// An SSH command ended, with its exit status (None: killed by a signal or timed out).
    SshExit { channel: ChannelId, exit_status: Option<i32>, signal: Option<String>, timed_out: bool },
    /// A file fetched from a device.
    FileFetched { channel: ChannelId, path: String, len: u64, sha256: String },
    /// An SSH authentication attempt and its outcome.
    SshAuth { channel: ChannelId, user: String, method: String, accepted: bool },
    /// A power action with what the outlet reported afterwards.
    Power {
        device: String,
        pdu: String,
        outlet: String,
        action: String,
        requested: PowerState,
        readback: PowerState,
        ok: bool,
        detail: String,
    },
    /// Free text from an agent that a reader of the evidence should see.
    Note { channel: ChannelId, text: String },
}

/// One stamped event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Where stamped events go. Implementations append; they must not reorder.
pub trait EventSink: Send + Sync {
    fn append(&self, event: &Event);
}

struct RecorderState {
    next_seq: u64,
    sink: Arc<dyn EventSink>,
}

/// Stamps events and hands them to the sink, one at a time, in order.
///
/// Cheap to clone; every agent of a session holds a clone of the same recorder.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    started_wall_ns: u64,
    state: Arc<Mutex<RecorderState>>,
}

impl Recorder {
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self {
            started: Instant::now(),
            started_wall_ns: wall_now_ns(),
            state: Arc::new(Mutex::new(RecorderState { next_seq: 0, sink })),
        }
    }

    /// A recorder that keeps nothing (for tools that only look).
    pub fn discard() -> Self {
        Self::new(Arc::new(DiscardSink))
    }

    /// Stamp and record an event; returns its sequence number.
    pub fn emit(&self, kind: EventKind) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Stamped under the lock, so sequence order and time order agree.
        let at = Timestamp { wall_ns: wall_now_ns(), mono_ns: self.started.elapsed().as_nanos() as u64 };
        let seq = state.next_seq;
        state.next_seq += 1;
        let event = Event { seq, at, kind };
        state.sink.append(&event);
        seq
    }

    /// The sequence number the next event will get (events before it are all recorded).
    pub fn next_seq(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).next_seq
    }

    /// Wall-clock time at which this recorder started, in ns since the epoch.
    pub fn started_wall_ns(&self) -> u64 {
        self.started_wall_ns
    }

    pub fn bytes(&self, channel: &ChannelId, direction: Direction, data: &[u8]) -> u64 {
        self.emit(EventKind::Bytes { channel: channel.clone(), direction, data: data.to_vec() })
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

fn wall_now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

struct DiscardSink;

impl EventSink for DiscardSink {
    fn append(&self, _event: &Event) {}
}

/// Keeps every event in memory; for tests and short tools.
#[derive(Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
}

impl MemorySink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// All bytes seen on `channel` in `direction`, concatenated in order.
    pub fn transcript(&self, channel: &ChannelId, direction: Direction) -> Vec<u8> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for event in events.iter() {
            if let EventKind::Bytes { channel: c, direction: d, data } = &event.kind {
                if c == channel && *d == direction {
                    out.extend_from_slice(data);
                }
            }
        }
        out
    }
}

impl EventSink for MemorySink {
    fn append(&self, event: &Event) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event.clone());
    }
}

/// Writes one JSON object per line and flushes each, so a crash loses nothing
/// already recorded. Used for technician sessions (`proofrig console`, `ssh`).
pub struct JsonLinesSink {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl JsonLinesSink {
    pub fn create(path: &Path) -> std::io::Result<Arc<Self>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Arc::new(Self { out: Mutex::new(std::io::BufWriter::new(file)) }))
    }
}

impl EventSink for JsonLinesSink {
    fn append(&self, event: &Event) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A failing transcript disk is reported, never allowed to stop the device session.
        let result = serde_json::to_writer(&mut *out, event)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"))
            .and_then(|_| out.flush());
        if let Err(err) = result {
            tracing::error!("cannot write transcript record {}: {err}", event.seq);
        }
    }
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_follow_emission_order_across_threads() {
        let sink = MemorySink::new();
        let recorder = Recorder::new(sink.clone());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    let channel = ChannelId::new(format!("dev{t}"), "console");
                    for i in 0..1000u32 {
                        recorder.bytes(&channel, Direction::In, &i.to_be_bytes());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let events = sink.events();
        assert_eq!(events.len(), 4000);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64);
        }
        for w in events.windows(2) {
            assert!(w[0].at.mono_ns <= w[1].at.mono_ns);
        }
        // Within each channel the payloads arrive in the order they were sent.
        for t in 0..4 {
            let channel = ChannelId::new(format!("dev{t}"), "console");
            let bytes = sink.transcript(&channel, Direction::In);
            let expected: Vec<u8> = (0..1000u32).flat_map(|i| i.to_be_bytes()).collect();
            assert_eq!(bytes, expected);
        }
    }

    #[test]
    fn events_round_trip_through_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let recorder = Recorder::new(JsonLinesSink::create(&path).unwrap());
        let channel = ChannelId::new("ru1", "console");
        recorder.bytes(&channel, Direction::Out, b"\xffroot\n");
        recorder.emit(EventKind::Redacted {
            channel: channel.clone(),
            direction: Direction::Out,
            secret: "env:RU1_PASSWORD".into(),
            len: 9,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Event> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].kind,
            EventKind::Bytes { channel: channel.clone(), direction: Direction::Out, data: b"\xffroot\n".to_vec() }
        );
        assert!(!text.contains("hunter2"));
    }
}
