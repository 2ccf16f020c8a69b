//! The one stream every agent reports into.
//!
//! Evidence is only as good as its ordering: every byte read from or written to a
//! device, every SSH command, every power action becomes an [`Event`] with a
//! sequence number, a wall-clock and a monotonic timestamp. The [`Recorder`] stamps
//! and forwards events under one lock, so the sequence order is the order in which
//! things happened and nothing is lost or reordered within a channel, whatever the
//! load. The sink behind it (memory for tests, JSON lines for a session, the
//! hash-chained journal later) only has to append.
//!
//! A recorder built [`Recorder::with_redactor`] also keeps secret values out of
//! everything it records (see [`crate::redact`]). Redaction happens here, under the
//! lock and *before* an event gets its sequence number, rather than in a sink that
//! would see numbered events: bytes held back because they might begin a secret
//! simply have no number yet, and get the next free one when they are released, so
//! sequence numbers stay gap-free and ordered and nothing is renumbered. Held bytes
//! of a stream (a channel in one direction) are released, at the latest:
//! - with the next bytes of the same stream, so a stream's bytes never reorder;
//! - before any event that opens or ends the stream's channel or one of its
//!   parent channels (`ChannelOpened`, `ChannelClosed`, `ChannelLost`, `SshExec`,
//!   `SshExit`; `dev/ssh` is the parent of `dev/ssh:exec:stdout`), so a stream's last
//!   bytes always precede its end, and a command's output is complete before its exit;
//! - at the end of a run ([`Recorder::flush_held_bytes`]), when no later byte can
//!   come to decide them.
//!
//! The end of a step is no such point: a device goes on printing across steps, and a
//! step may end in the middle of a password its boot log or an echo prints. Releasing
//! the held bytes there would put the first part of the secret in the journal in
//! clear (the rest being redacted once it arrives). So at a step's end
//! ([`Recorder::flush_at_step_end`]) bytes that could begin a secret stay held on the
//! streams that go on, and are recorded in a later step's range, when later bytes
//! decide them. The caller decides, per stream, where the step's range must enclose
//! everything (an exchange that is over, or console output the step's own wait
//! consumed, which replay looks for within the step).
//!
//! Other events of the channel (a note, proofrig's own writes in the other direction)
//! may be recorded while a few bytes are held: releasing the held bytes there would
//! cut a password the device echoes while proofrig is still writing, and give away its
//! first half. The order of bytes within each direction is exact either way.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::redact::{RedactingStream, Redactor};

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
    /// One datagram exchanged with `peer` (UDP), whole: its boundaries are part of what
    /// it says, so it is never split or joined with another as stream bytes may be.
    Datagram {
        channel: ChannelId,
        direction: Direction,
        peer: String,
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
    /// An SSH authentication attempt and its outcome. `source` is the address and port
    /// the attempt came from (ours), which the device's own log of the attempt names:
    /// it ties a log record to this very attempt.
    SshAuth {
        channel: ChannelId,
        user: String,
        method: String,
        accepted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
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
    /// TCP connection attempts of a port scan to `address`, pass `attempt` (1; 2 for
    /// the ports that connected, tried again): each attempt that connected alone
    /// (`outcome` `connected`, `local` the scan's end of the connection), the others
    /// together by how they ended (`refused`, `timed out`, ...). `ports` is a port list,
    /// `1-20,22`. See [`crate::wire::tcp`].
    TcpConnect {
        channel: ChannelId,
        address: String,
        attempt: u8,
        outcome: String,
        ports: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<String>,
    },
}

impl EventKind {
    /// The channel the event happened on; a power action belongs to an outlet, not a channel.
    pub fn channel(&self) -> Option<&ChannelId> {
        match self {
            EventKind::ChannelOpened { channel, .. }
            | EventKind::Bytes { channel, .. }
            | EventKind::Datagram { channel, .. }
            | EventKind::Redacted { channel, .. }
            | EventKind::ChannelLost { channel, .. }
            | EventKind::ChannelClosed { channel }
            | EventKind::SshExec { channel, .. }
            | EventKind::SshExit { channel, .. }
            | EventKind::FileFetched { channel, .. }
            | EventKind::SshAuth { channel, .. }
            | EventKind::Note { channel, .. }
            | EventKind::TcpConnect { channel, .. } => Some(channel),
            EventKind::Power { .. } => None,
        }
    }
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
///
/// The event is handed over, not lent: a sink that keeps it (the run's journal hands it
/// to its writer thread, which encodes it there) does not copy a console chunk first.
pub trait EventSink: Send + Sync {
    fn append(&self, event: Event);
}

struct RecorderState {
    next_seq: u64,
    sink: Arc<dyn EventSink>,
    /// Per stream, the bytes the redactor holds back until later bytes decide them.
    streams: Vec<HeldStream>,
}

struct HeldStream {
    channel: ChannelId,
    direction: Direction,
    redacting: RedactingStream,
}

/// Stamps events and hands them to the sink, one at a time, in order.
///
/// Cheap to clone; every agent of a session holds a clone of the same recorder.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    started_wall_ns: u64,
    redactor: Arc<Redactor>,
    state: Arc<Mutex<RecorderState>>,
}

impl Recorder {
    pub fn new(sink: Arc<dyn EventSink>) -> Self {
        Self::with_redactor(sink, Redactor::new())
    }

    /// A recorder that replaces every secret `redactor` knows, wherever it appears in
    /// bytes or free text, by its marker before anything reaches the sink.
    pub fn with_redactor(sink: Arc<dyn EventSink>, redactor: Redactor) -> Self {
        Self {
            started: Instant::now(),
            started_wall_ns: wall_now_ns(),
            redactor: Arc::new(redactor),
            state: Arc::new(Mutex::new(RecorderState { next_seq: 0, sink, streams: Vec::new() })),
        }
    }

    /// The secrets this recorder redacts, for redacting what is derived from the same
    /// bytes elsewhere (step outputs) exactly the same way.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// A recorder that keeps nothing (for tools that only look).
    pub fn discard() -> Self {
        Self::new(Arc::new(DiscardSink))
    }

    /// Redact, stamp and record an event; returns its sequence number. Bytes the
    /// redactor holds back entirely are recorded later; then the number returned is
    /// the one the next event will get.
    pub fn emit(&self, kind: EventKind) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.redactor.is_empty() {
            return self.stamp(&mut state, kind);
        }
        match kind {
            EventKind::Bytes { channel, direction, data } => {
                let released = state.stream(&channel, direction).push(&self.redactor, &data);
                if released.is_empty() {
                    return state.next_seq;
                }
                self.stamp(&mut state, EventKind::Bytes { channel, direction, data: released })
            }
            other => {
                if let Some(boundary) = stream_boundary(&other) {
                    self.end_streams(&mut state, &boundary);
                }
                let other = redact_free_text(&self.redactor, other);
                self.stamp(&mut state, other)
            }
        }
    }

    /// Record every byte the redactor still holds back, and return the sequence number
    /// the next event will get: every byte received before this call has a lower one.
    /// Bytes held because they could begin a secret are recorded in clear, so this is
    /// for the end of a run, when no more bytes will come; at the end of a step use
    /// [`Recorder::flush_at_step_end`].
    pub fn flush_held_bytes(&self) -> u64 {
        self.flush_at_step_end(|_, _, _| true)
    }

    /// Record what the redactor holds back at the end of a step, and return the
    /// sequence number the next event will get. A stream for which `flush_fully`
    /// (given its channel, direction and the number of bytes it holds) says true has
    /// everything it holds recorded now, as [`Recorder::flush_held_bytes`] does; any
    /// other stream keeps holding what could still begin a secret, which is then
    /// recorded, with a higher number, when later bytes decide it or its channel ends.
    pub fn flush_at_step_end(&self, flush_fully: impl FnMut(&ChannelId, Direction, usize) -> bool) -> u64 {
        self.flush_streams_at_step_end(|_| true, flush_fully)
    }

    /// [`Recorder::flush_at_step_end`] for the streams of `device` only. When devices
    /// run side by side, each step ends while other devices' steps go on: their
    /// streams are theirs to flush (an SSH command's output still coming, which a full
    /// flush would cut where a secret may begin).
    pub fn flush_device_at_step_end(&self, device: &str, flush_fully: impl FnMut(&ChannelId, Direction, usize) -> bool) -> u64 {
        self.flush_streams_at_step_end(|channel| channel.device == device, flush_fully)
    }

    fn flush_streams_at_step_end(
        &self,
        mut which: impl FnMut(&ChannelId) -> bool,
        mut flush_fully: impl FnMut(&ChannelId, Direction, usize) -> bool,
    ) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for index in 0..state.streams.len() {
            let held = &mut state.streams[index];
            if !which(&held.channel) {
                continue;
            }
            let released = if flush_fully(&held.channel, held.direction, held.redacting.held()) {
                held.redacting.flush(&self.redactor)
            } else {
                held.redacting.release_decided(&self.redactor)
            };
            if !released.is_empty() {
                let (channel, direction) = (held.channel.clone(), held.direction);
                self.stamp(&mut state, EventKind::Bytes { channel, direction, data: released });
            }
        }
        state.next_seq
    }

    /// The sequence number the next event will get. Events before it are all
    /// recorded, but bytes a redactor holds back may still come; use
    /// [`Recorder::flush_held_bytes`] for a boundary that encloses everything received.
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

    fn stamp(&self, state: &mut RecorderState, kind: EventKind) -> u64 {
        // Stamped under the lock, so sequence order and time order agree.
        let at = Timestamp { wall_ns: wall_now_ns(), mono_ns: self.started.elapsed().as_nanos() as u64 };
        let seq = state.next_seq;
        state.next_seq += 1;
        state.sink.append(Event { seq, at, kind });
        seq
    }

    /// Release and forget what the streams of `boundary` and its sub-channels hold.
    fn end_streams(&self, state: &mut RecorderState, boundary: &ChannelId) {
        let mut index = 0;
        while index < state.streams.len() {
            if !within(&state.streams[index].channel, boundary) {
                index += 1;
                continue;
            }
            let HeldStream { channel, direction, redacting } = state.streams.remove(index);
            let released = redacting.finish(&self.redactor);
            if !released.is_empty() {
                self.stamp(state, EventKind::Bytes { channel, direction, data: released });
            }
        }
    }
}

impl RecorderState {
    fn stream(&mut self, channel: &ChannelId, direction: Direction) -> &mut RedactingStream {
        let index = match self.streams.iter().position(|s| s.channel == *channel && s.direction == direction) {
            Some(index) => index,
            None => {
                self.streams.push(HeldStream { channel: channel.clone(), direction, redacting: RedactingStream::new() });
                self.streams.len() - 1
            }
        };
        &mut self.streams[index].redacting
    }
}

/// The channel an event opens or ends, if it does.
fn stream_boundary(kind: &EventKind) -> Option<ChannelId> {
    match kind {
        EventKind::ChannelOpened { channel, .. }
        | EventKind::ChannelClosed { channel }
        | EventKind::ChannelLost { channel, .. }
        | EventKind::SshExec { channel, .. }
        | EventKind::SshExit { channel, .. } => Some(channel.clone()),
        _ => None,
    }
}

/// Whether `channel` is `boundary` or one of its sub-channels (`ssh:exec:stdout` of `ssh`).
fn within(channel: &ChannelId, boundary: &ChannelId) -> bool {
    channel.device == boundary.device
        && (channel.channel == boundary.channel
            || channel.channel.strip_prefix(boundary.channel.as_str()).is_some_and(|rest| rest.starts_with(':')))
}

/// Free text of an event may quote a device (an error message with its output, a user
/// name someone typed a password into): redact it like bytes.
fn redact_free_text(redactor: &Redactor, kind: EventKind) -> EventKind {
    let text = |text: String| {
        let redacted = match redactor.redact_text(&text) {
            std::borrow::Cow::Owned(redacted) => Some(redacted),
            std::borrow::Cow::Borrowed(_) => None,
        };
        redacted.unwrap_or(text)
    };
    match kind {
        EventKind::Note { channel, text: note } => EventKind::Note { channel, text: text(note) },
        EventKind::Datagram { channel, direction, peer, data } => {
            let data = match redactor.redact(&data) {
                std::borrow::Cow::Owned(redacted) => redacted,
                std::borrow::Cow::Borrowed(_) => data,
            };
            EventKind::Datagram { channel, direction, peer, data }
        }
        EventKind::ChannelOpened { channel, detail } => EventKind::ChannelOpened { channel, detail: text(detail) },
        EventKind::ChannelLost { channel, reason } => EventKind::ChannelLost { channel, reason: text(reason) },
        EventKind::SshExec { channel, command } => EventKind::SshExec { channel, command: text(command) },
        EventKind::SshAuth { channel, user, method, accepted, source } => {
            EventKind::SshAuth { channel, user: text(user), method, accepted, source }
        }
        EventKind::FileFetched { channel, path, len, sha256 } => EventKind::FileFetched { channel, path: text(path), len, sha256 },
        EventKind::Power { device, pdu, outlet, action, requested, readback, ok, detail } => {
            EventKind::Power { device, pdu, outlet, action, requested, readback, ok, detail: text(detail) }
        }
        other => other,
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
    fn append(&self, _event: Event) {}
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
    fn append(&self, event: Event) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
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
    fn append(&self, event: Event) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A failing transcript disk is reported, never allowed to stop the device session.
        let result = serde_json::to_writer(&mut *out, &event)
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
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    /// Decodes the text where it lies (a console chunk is most of a journal record),
    /// without copying it into a String first.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Base64;

        impl serde::de::Visitor<'_> for Base64 {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a base64 string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
                base64::engine::general_purpose::STANDARD.decode(text).map_err(E::custom)
            }
        }

        d.deserialize_str(Base64)
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

    fn redacting(value: &str) -> (Arc<MemorySink>, Recorder) {
        let mut redactor = Redactor::new();
        redactor.add(&crate::secret::Secret::new("env:RU1_PASSWORD", value));
        let sink = MemorySink::new();
        (sink.clone(), Recorder::with_redactor(sink, redactor))
    }

    fn payloads(sink: &MemorySink) -> Vec<(String, Vec<u8>)> {
        sink.events()
            .into_iter()
            .map(|e| match e.kind {
                EventKind::Bytes { channel, data, .. } => (channel.to_string(), data),
                other => (format!("{other:?}").split_whitespace().next().unwrap_or("").to_string(), Vec::new()),
            })
            .collect()
    }

    #[test]
    fn a_secret_split_across_reads_is_recorded_as_its_marker_and_numbers_stay_gap_free() {
        let (sink, recorder) = redacting("hunter2");
        let console = ChannelId::new("ru1", "console");
        recorder.bytes(&console, Direction::In, b"login: hun");
        recorder.bytes(&console, Direction::In, b"ter2\r\nPassword: ");
        let transcript = sink.transcript(&console, Direction::In);
        assert_eq!(String::from_utf8(transcript).unwrap(), "login: «redacted:env:RU1_PASSWORD»\r\nPassword: ");
        let seqs: Vec<u64> = sink.events().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn held_bytes_come_before_the_end_of_their_channel_and_within_a_flushed_step() {
        let (sink, recorder) = redacting("hunter2");
        let console = ChannelId::new("ru1", "console");
        let stdout = ChannelId::new("ru1", "ssh:exec:stdout");
        recorder.bytes(&console, Direction::In, b"prompt# hun");
        recorder.bytes(&stdout, Direction::In, b"output hunt");
        // The exit of the command ends its output streams (a sub-channel of ssh:exec).
        recorder.emit(EventKind::SshExit {
            channel: ChannelId::new("ru1", "ssh:exec"),
            exit_status: Some(0),
            signal: None,
            timed_out: false,
        });
        let step_end = recorder.flush_held_bytes();
        recorder.emit(EventKind::ChannelClosed { channel: console.clone() });
        assert_eq!(
            payloads(&sink),
            [
                ("ru1/console".to_string(), b"prompt# ".to_vec()),
                ("ru1/ssh:exec:stdout".to_string(), b"output ".to_vec()),
                ("ru1/ssh:exec:stdout".to_string(), b"hunt".to_vec()),
                ("SshExit".to_string(), Vec::new()),
                ("ru1/console".to_string(), b"hun".to_vec()),
                ("ChannelClosed".to_string(), Vec::new()),
            ]
        );
        assert_eq!(step_end, 5, "the step's range ends after the released console bytes");
    }

    /// At a step's end, as the executor treats the console: its possible secret
    /// prefixes stay held.
    fn console_goes_on(channel: &ChannelId, _: Direction, _: usize) -> bool {
        channel.channel != "console"
    }

    #[test]
    fn a_secret_split_by_the_end_of_a_step_never_shows_its_first_part() {
        let (sink, recorder) = redacting("hunter2");
        let console = ChannelId::new("ru1", "console");
        recorder.bytes(&console, Direction::In, b"default password: hun");
        let step_end = recorder.flush_at_step_end(console_goes_on);
        recorder.bytes(&console, Direction::In, b"ter2\r\nlogin: ");
        let transcript = String::from_utf8(sink.transcript(&console, Direction::In)).unwrap();
        assert_eq!(transcript, "default password: «redacted:env:RU1_PASSWORD»\r\nlogin: ");
        let text = serde_json::to_string(&sink.events()).unwrap();
        assert!(!text.contains("hun"), "{text}");
        // The step's range holds what was decided; the held bytes came in the next one.
        assert_eq!(payloads(&sink)[0], ("ru1/console".to_string(), b"default password: ".to_vec()));
        assert_eq!(step_end, 1);
        assert_eq!(sink.events()[1].seq, 1);
    }

    #[test]
    fn bytes_that_cannot_begin_a_secret_are_all_within_the_step_that_received_them() {
        let (sink, recorder) = redacting("hunter2");
        let console = ChannelId::new("ru1", "console");
        let audit = ChannelId::new("ru1", "ssh:audit");
        recorder.bytes(&console, Direction::In, b"login: ");
        recorder.bytes(&console, Direction::In, b"root\r\n# h");
        recorder.bytes(&console, Direction::In, b"elp\r\n");
        // A stream the caller ends with the step: all of it is recorded in the step.
        recorder.bytes(&audit, Direction::In, b"SSH-2.0 offer hu");
        let step_end = recorder.flush_at_step_end(console_goes_on);
        assert_eq!(sink.transcript(&console, Direction::In), b"login: root\r\n# help\r\n");
        assert_eq!(sink.transcript(&audit, Direction::In), b"SSH-2.0 offer hu");
        assert!(sink.events().iter().all(|e| e.seq < step_end));
        assert_eq!(step_end, sink.events().len() as u64);
    }

    #[test]
    fn the_end_of_the_run_releases_a_prefix_no_later_byte_decides() {
        let (sink, recorder) = redacting("hunter2");
        let console = ChannelId::new("ru1", "console");
        recorder.bytes(&console, Direction::In, b"bye hunt");
        let step_end = recorder.flush_at_step_end(console_goes_on);
        assert_eq!(sink.transcript(&console, Direction::In), b"bye ");
        let run_end = recorder.flush_held_bytes();
        assert_eq!(sink.transcript(&console, Direction::In), b"bye hunt");
        assert_eq!((step_end, run_end), (1, 2));
    }

    #[test]
    fn a_stream_the_caller_flushes_fully_at_a_step_end_is_recorded_within_the_step() {
        let (sink, recorder) = redacting("hunter2");
        let console = ChannelId::new("ru1", "console");
        recorder.bytes(&console, Direction::In, b"prompt hu");
        let mut asked = Vec::new();
        let step_end = recorder.flush_at_step_end(|channel, direction, held| {
            asked.push((channel.clone(), direction, held));
            true
        });
        assert_eq!(asked, [(console.clone(), Direction::In, 2)]);
        assert_eq!(sink.transcript(&console, Direction::In), b"prompt hu");
        assert_eq!(step_end, 2);
    }

    #[test]
    fn a_tail_held_at_close_is_released_before_the_close() {
        let (sink, recorder) = redacting("hunter2");
        let console = ChannelId::new("ru1", "console");
        recorder.bytes(&console, Direction::In, b"bye hunte");
        recorder.emit(EventKind::ChannelLost { channel: console.clone(), reason: "EOF after hunter2".into() });
        let events = sink.events();
        assert_eq!(sink.transcript(&console, Direction::In), b"bye hunte");
        assert!(
            matches!(&events.last().unwrap().kind, EventKind::ChannelLost { reason, .. } if reason == "EOF after «redacted:env:RU1_PASSWORD»")
        );
    }

    #[test]
    fn free_text_of_events_is_redacted() {
        let (sink, recorder) = redacting("hunter2");
        let channel = ChannelId::new("ru1", "ssh");
        recorder.emit(EventKind::Note { channel: channel.clone(), text: "banner says hunter2".into() });
        recorder.emit(EventKind::SshAuth { channel, user: "hunter2".into(), method: "password".into(), accepted: false, source: None });
        let text = serde_json::to_string(&sink.events()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(text.matches("«redacted:env:RU1_PASSWORD»").count(), 2);
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
        assert_eq!(events[0].kind, EventKind::Bytes { channel: channel.clone(), direction: Direction::Out, data: b"\xffroot\n".to_vec() });
        assert!(!text.contains("hunter2"));
    }
}
