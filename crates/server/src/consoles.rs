//! Live consoles: the bytes of each open console session, relayed between the
//! person's browser and the rig's lab host.
//!
//! The server never touches the device: the lab host opens the console and records
//! the session like `proofrig console` does (typed passwords as their length only).
//! What crosses here is held in memory only, and only until the other side has taken
//! it, so nothing a person types (a device password at a login prompt) reaches the
//! store, a log or the audit; the audit has the session's request, answer and close.
//!
//! Each side moves by offsets, so a resent message is idempotent: output the lab host
//! sends again is held once, input it asks for again is given again until it asks
//! past it. A session ends once (the person left, their reservation ended, the lab
//! host's console failed); both sides see the reason on their next message.
//!
//! A session lives in the memory of the replica the browser is connected to: with
//! several replicas behind one address, route a lab host and the dashboard's browsers
//! to the same replica (sticky sessions), or a console opens and then reports that
//! the server does not hold it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use proofrig_proto::ids::FencingToken;
use proofrig_proto::wire::MAX_POLL_WAIT;
use tokio::sync::watch;

/// What output a session keeps that the browser has not taken: beyond it the oldest
/// bytes are dropped (and the browser shown how many), so a console nobody reads
/// never grows the server.
const OUTPUT_HELD_MAX: usize = 1 << 20;

/// A lab host serving an open console always has a wait for input open (renewed at
/// least every [`MAX_POLL_WAIT`]): silent for this long, it is gone (killed, or its
/// link is down), and the session is closed rather than left open on nothing.
pub const LABHOST_SILENT_LIMIT: Duration = Duration::from_secs(MAX_POLL_WAIT.as_secs() + 15);

/// The open sessions of this replica, by bench operation.
#[derive(Default)]
pub struct Consoles {
    sessions: Mutex<HashMap<u64, Arc<Relay>>>,
    /// Bumped whenever a lab host answers a bench operation here, so a waiting
    /// request looks at the store at once rather than at its next tick.
    answered: watch::Sender<u64>,
}

impl Consoles {
    /// A new session for bench operation `op`, under the reservation `fencing`.
    pub fn open(&self, op: u64, fencing: FencingToken) -> Arc<Relay> {
        let relay = Arc::new(Relay { fencing, state: Mutex::new(RelayState::new()), changed: watch::Sender::new(0) });
        self.sessions.lock().expect("the consoles' lock is never poisoned").insert(op, relay.clone());
        relay
    }

    pub fn get(&self, op: u64) -> Option<Arc<Relay>> {
        self.sessions.lock().expect("the consoles' lock is never poisoned").get(&op).cloned()
    }

    /// Forget a session once both sides are done with it.
    pub fn remove(&self, op: u64) {
        self.sessions.lock().expect("the consoles' lock is never poisoned").remove(&op);
    }

    /// A lab host answered a bench operation.
    pub fn answered(&self) {
        self.answered.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes on the next answer to any bench operation.
    pub fn answers(&self) -> watch::Receiver<u64> {
        self.answered.subscribe()
    }
}

/// One session's bytes in flight.
pub struct Relay {
    pub fencing: FencingToken,
    state: Mutex<RelayState>,
    changed: watch::Sender<u64>,
}

struct RelayState {
    /// Output not yet taken by the browser, starting at offset `output_base`.
    output: Vec<u8>,
    output_base: u64,
    /// Output bytes dropped because the browser did not take them.
    dropped: u64,
    /// Input not yet taken by the lab host, starting at offset `input_base`.
    input: Vec<u8>,
    input_base: u64,
    closed: Option<String>,
    /// When the lab host last sent or asked for anything of this session.
    heard: Instant,
}

impl RelayState {
    fn new() -> RelayState {
        RelayState { output: Vec::new(), output_base: 0, dropped: 0, input: Vec::new(), input_base: 0, closed: None, heard: Instant::now() }
    }

    fn output_end(&self) -> u64 {
        self.output_base + self.output.len() as u64
    }
}

impl Relay {
    fn with<T>(&self, f: impl FnOnce(&mut RelayState) -> T) -> T {
        f(&mut self.state.lock().expect("a relay's lock is never poisoned"))
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes on the next change (output, input, close).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Output from the lab host at `offset`; returns how much of the session's output
    /// is held (the offset the lab host sends from next). Bytes already held are not
    /// held again; a gap (bytes before `offset` never arrived) is not bridged: the
    /// answer asks for them again.
    pub fn output(&self, offset: u64, data: &[u8]) -> u64 {
        let held = self.with(|s| {
            s.heard = Instant::now();
            let end = s.output_end();
            if offset <= end && offset.saturating_add(data.len() as u64) > end {
                s.output.extend_from_slice(&data[(end - offset) as usize..]);
                if s.output.len() > OUTPUT_HELD_MAX {
                    let drop = s.output.len() - OUTPUT_HELD_MAX;
                    s.output.drain(..drop);
                    s.output_base += drop as u64;
                    s.dropped += drop as u64;
                }
            }
            s.output_end()
        });
        self.bump();
        held
    }

    /// The output the browser has not taken, and how many bytes were dropped before
    /// it since the last take; taken.
    pub fn take_output(&self) -> (Vec<u8>, u64) {
        self.with(|s| {
            let bytes = std::mem::take(&mut s.output);
            s.output_base += bytes.len() as u64;
            (bytes, std::mem::take(&mut s.dropped))
        })
    }

    /// What the person typed.
    pub fn type_keys(&self, keys: &[u8]) {
        self.with(|s| s.input.extend_from_slice(keys));
        self.bump();
    }

    /// Typed bytes from `from` on, for the lab host; what lies before `from` it has,
    /// and is let go.
    pub fn input_from(&self, from: u64) -> (u64, Vec<u8>) {
        self.with(|s| {
            s.heard = Instant::now();
            if from > s.input_base {
                let taken = ((from - s.input_base) as usize).min(s.input.len());
                s.input.drain(..taken);
                s.input_base += taken as u64;
            }
            let skip = (s.input_base.max(from) - s.input_base) as usize;
            (s.input_base + skip as u64, s.input[skip.min(s.input.len())..].to_vec())
        })
    }

    /// End the session (the first reason stays).
    pub fn close(&self, reason: &str) {
        self.with(|s| {
            if s.closed.is_none() {
                s.closed = Some(reason.to_string());
            }
        });
        self.bump();
    }

    pub fn closed(&self) -> Option<String> {
        self.with(|s| s.closed.clone())
    }

    /// How long since the lab host last sent or asked for anything of this session.
    pub fn lab_host_silent_for(&self) -> Duration {
        self.with(|s| s.heard.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_resent_or_overlapping_is_held_once_and_a_gap_is_asked_for_again() {
        let relay = Consoles::default().open(1, FencingToken(5));
        assert_eq!(relay.output(0, b"login"), 5);
        assert_eq!(relay.output(0, b"login"), 5, "a resend changes nothing");
        assert_eq!(relay.output(3, b"in: "), 7, "the overlap is held once");
        assert_eq!(relay.output(20, b"lost?"), 7, "a gap: the lab host is asked from 7 again");
        assert_eq!(relay.take_output(), (b"login: ".to_vec(), 0));
        assert_eq!(relay.output(7, b"#"), 8);
        assert_eq!(relay.take_output(), (b"#".to_vec(), 0));
    }

    #[test]
    fn input_is_given_again_until_the_lab_host_asks_past_it() {
        let relay = Consoles::default().open(1, FencingToken(5));
        relay.type_keys(b"ls");
        assert_eq!(relay.input_from(0), (0, b"ls".to_vec()));
        assert_eq!(relay.input_from(0), (0, b"ls".to_vec()), "asked again: the same bytes");
        relay.type_keys(b"\r");
        assert_eq!(relay.input_from(2), (2, b"\r".to_vec()));
        assert_eq!(relay.input_from(3), (3, Vec::new()));
        assert_eq!(relay.input_from(1), (3, Vec::new()), "what was let go is not given again");
    }

    #[test]
    fn output_nobody_takes_is_bounded_and_the_drop_is_counted() {
        let relay = Consoles::default().open(1, FencingToken(5));
        let chunk = vec![b'x'; 64 * 1024];
        let mut offset = 0;
        for _ in 0..20 {
            offset = relay.output(offset, &chunk);
        }
        let (held, dropped) = relay.take_output();
        assert_eq!(held.len(), OUTPUT_HELD_MAX);
        assert_eq!(dropped, 20 * 64 * 1024 - OUTPUT_HELD_MAX as u64);
    }

    #[test]
    fn the_first_close_reason_stays() {
        let relay = Consoles::default().open(1, FencingToken(5));
        assert_eq!(relay.closed(), None);
        relay.close("the reservation ended");
        relay.close("closed by the person");
        assert_eq!(relay.closed().as_deref(), Some("the reservation ended"));
    }
}
