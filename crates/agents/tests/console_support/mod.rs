//! Shared helpers of the console integration tests (serial_console, ser2net, expect):
//! rig snippets for a scripted console, and a recorder sink a test can *wait on*, so
//! tests synchronise on recorded events instead of sleeping.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proofrig_model::events::{ChannelId, Direction, Event, EventKind, EventSink, MemorySink, Recorder};
use proofrig_model::rig::{Console, ConsoleLogin, FlowControl, Parity, SerialConsole, SlowSend, TcpConsole, TcpProtocol};
use proofrig_model::secret::{Secret, SecretRef};
use tokio::sync::Notify;

pub const DEVICE: &str = "ru1";
pub const PASSWORD: &str = "hunter2";

pub fn channel() -> ChannelId {
    ChannelId::new(DEVICE, "console")
}

pub fn password() -> Secret {
    Secret::new("env:RU1_PASSWORD", PASSWORD)
}

pub fn login() -> ConsoleLogin {
    ConsoleLogin { password: Some(SecretRef::Env("RU1_PASSWORD".into())), ..ConsoleLogin::as_user("root") }
}

fn console(serial: Option<SerialConsole>, tcp: Option<TcpConsole>, slow_send: Option<SlowSend>) -> Console {
    Console {
        serial,
        tcp,
        prompt: Some(r"root@ru1:~# $".into()),
        login: Some(login()),
        death_strings: vec!["Kernel panic".into(), r"Oops: \d+".into()],
        slow_send,
    }
}

pub fn serial_console(port: &Path) -> Console {
    serial_console_with(port, 115_200, 8, Parity::None, 1, None)
}

pub fn serial_console_with(port: &Path, baud: u32, data_bits: u8, parity: Parity, stop_bits: u8, slow_send: Option<SlowSend>) -> Console {
    let serial = SerialConsole { port: port.to_path_buf(), baud, data_bits, parity, stop_bits, flow_control: FlowControl::None };
    console(Some(serial), None, slow_send)
}

pub fn tcp_console(port: u16, protocol: TcpProtocol, baud: Option<u32>, data_bits: u8, parity: Parity, stop_bits: u8) -> Console {
    let tcp = TcpConsole { host: "127.0.0.1".into(), port, protocol, baud, data_bits, parity, stop_bits, connect_timeout_ms: 3000 };
    console(None, Some(tcp), None)
}

/// A MemorySink that wakes waiters on every event.
#[derive(Default)]
pub struct WatchedSink {
    memory: MemorySink,
    changed: Notify,
}

impl EventSink for WatchedSink {
    fn append(&self, event: Event) {
        self.memory.append(event);
        self.changed.notify_waiters();
    }
}

impl WatchedSink {
    pub fn new() -> (Arc<Self>, Recorder) {
        let sink = Arc::new(Self::default());
        (sink.clone(), Recorder::new(sink))
    }

    pub fn events(&self) -> Vec<Event> {
        self.memory.events()
    }

    pub fn transcript(&self, direction: Direction) -> Vec<u8> {
        self.memory.transcript(&channel(), direction)
    }

    /// Wait until `done` holds for the recorded events; panics after `limit`.
    pub async fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&[Event]) -> bool) {
        let waited = tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                if done(&self.events()) {
                    return;
                }
                changed.await;
            }
        })
        .await;
        if waited.is_err() {
            panic!("not recorded within {limit:?}: {what}; events: {:#?}", self.events());
        }
    }

    pub fn notes(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Note { text, .. } => Some(text),
                _ => None,
            })
            .collect()
    }

    pub fn opened_detail(&self) -> String {
        self.events()
            .into_iter()
            .find_map(|e| match e.kind {
                EventKind::ChannelOpened { detail, .. } => Some(detail),
                _ => None,
            })
            .expect("a ChannelOpened event")
    }
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}
