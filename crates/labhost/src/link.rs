//! The lab host's signed link to the server: where the server is and how it is
//! trusted (its certificate pinned by fingerprint), every request signed with the lab
//! host's key and clock (`proofrig_proto::wire`), each with a deadline that fits what
//! it carries ([`timeout_for`]), and [`Link::deliver`], which sends until an answer
//! comes (backoff, and at once when the link is back). The agent and the bench
//! sessions both talk through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, Notify};

use proofrig_proto::ids::{LabHostId, UnixMillis};
use proofrig_proto::labhost::{LabHostMessage, Refusal, RefusalCode, ServerMessage};
use proofrig_proto::timing::HEARTBEAT_INTERVAL;
use proofrig_proto::wire::{self, LABHOST_PATH, MAX_POLL_WAIT};

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct ServerAddress {
    /// `https://host:port` (or `http://127.0.0.1:port` for a plain loopback server).
    pub url: String,
    /// The SHA-256 fingerprint of its certificate; required for https.
    pub fingerprint: Option<String>,
}

/// The lab host's wall clock, which signs every request (the server refuses one
/// more than `proofrig_proto::wire::MAX_CLOCK_SKEW` away from its own): the
/// system's, shifted by what [`AgentClock::advance`] added. Tests shift it with the
/// server's clock to let leases lapse without waiting; a lease itself is measured on
/// the monotonic clock, never on this one.
#[derive(Debug, Clone, Default)]
pub struct AgentClock {
    shift_ms: Arc<AtomicU64>,
}

impl AgentClock {
    pub fn now(&self) -> UnixMillis {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        UnixMillis(system.saturating_add(self.shift_ms.load(Ordering::SeqCst)))
    }

    pub fn advance(&self, by: Duration) {
        self.shift_ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the server refused: {} ({:?})", .0.message, .0.code)]
    Refused(Refusal),
    #[error("cannot reach the server at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("{0}")]
    Setup(String),
}

/// The signed connection to the server.
#[derive(Clone)]
pub struct Link {
    /// Replaced, with its pool, when a request times out: a connection the outage
    /// killed looks alive to the pool (no RST came) and would hang the next request.
    pub(crate) http: Arc<Mutex<reqwest::Client>>,
    pub(crate) server: ServerAddress,
    /// Woken when a heartbeat gets through after one failed: the link is back, and
    /// every request still waiting (on a connection the outage killed, or in backoff)
    /// is sent again at once. Resending is always safe.
    pub(crate) back: Arc<Notify>,
    pub(crate) url: String,
    pub(crate) key: SigningKey,
    pub(crate) labhost: LabHostId,
    pub(crate) clock: AgentClock,
}

/// How long a connection may take to open (TCP and TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a poll's deadline adds to the wait it asks the server for.
const POLL_MARGIN: Duration = Duration::from_secs(10);
/// A request that carries no bulk and does little work on the server.
const SMALL_TIMEOUT: Duration = Duration::from_secs(20);
/// A journal or upload chunk: up to `MAX_CHUNK_BYTES` (1 MiB) each way at a slow
/// 100 kB/s, and for an upload's last chunk the server's verification of the bundle.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

/// The deadline of one request: what it carries and what the server does with it,
/// never more, so a black-holed link costs no request more than its own share.
pub fn timeout_for(message: &LabHostMessage, heartbeat_interval: Duration) -> Duration {
    match message {
        // Well under the interval: the next beat is never late because of this one.
        LabHostMessage::Heartbeat(_) => (heartbeat_interval / 2).max(Duration::from_secs(1)),
        LabHostMessage::Poll(p) => Duration::from_millis(p.wait_ms).min(MAX_POLL_WAIT) + POLL_MARGIN,
        LabHostMessage::ConsoleWait(w) => Duration::from_millis(w.wait_ms).min(MAX_POLL_WAIT) + POLL_MARGIN,
        LabHostMessage::JournalChunk(_) | LabHostMessage::UploadChunk(_) => CHUNK_TIMEOUT,
        _ => SMALL_TIMEOUT,
    }
}

pub(crate) fn http_client(server: &ServerAddress) -> Result<reqwest::Client, AgentError> {
    // No client-wide timeout: each request gets its own (`timeout_for`).
    let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    let builder = match (server.url.starts_with("https://"), &server.fingerprint) {
        (true, Some(fp)) => builder.use_preconfigured_tls(proofrig_proto::pin::pinned_client_config(fp)),
        (true, None) => {
            return Err(AgentError::Setup(format!(
                "{} is https: give the certificate fingerprint `proofrig serve` printed (--fingerprint)",
                server.url
            )))
        }
        (false, _) => builder,
    };
    builder.build().map_err(|e| AgentError::Setup(format!("cannot make the HTTP client: {e}")))
}

impl Link {
    /// Send one message, within its deadline ([`timeout_for`]); the server's messages
    /// back, or why not.
    pub async fn send(&self, message: &LabHostMessage) -> Result<Vec<ServerMessage>, AgentError> {
        self.send_within(message, timeout_for(message, HEARTBEAT_INTERVAL)).await
    }

    /// [`Link::send`] with the given deadline for the whole exchange.
    pub async fn send_within(&self, message: &LabHostMessage, timeout: Duration) -> Result<Vec<ServerMessage>, AgentError> {
        let body = serde_json::to_vec(message).expect("a message is plain data");
        let http = self.http.lock().expect("not poisoned").clone();
        let mut request = http.post(format!("{}{LABHOST_PATH}", self.url)).header("content-type", "application/json").timeout(timeout);
        if !matches!(message, LabHostMessage::Enroll(_)) {
            for (name, value) in wire::sign(&self.key, &self.labhost, self.clock.now(), &body) {
                request = request.header(name, value);
            }
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                self.fresh_connections();
            }
            AgentError::Transport { url: self.url.clone(), message: error_chain(&e) }
        };
        let response = request.body(body).send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let messages: Vec<ServerMessage> = serde_json::from_slice(&bytes).map_err(|e| AgentError::Transport {
            url: self.url.clone(),
            message: format!("HTTP {status}, an answer that is not the lab host protocol ({e}); is this a proofrig server?"),
        })?;
        match messages.first() {
            Some(ServerMessage::Refusal(r)) => Err(AgentError::Refused(r.clone())),
            _ => Ok(messages),
        }
    }

    /// Drop every pooled connection: the next requests open new ones.
    fn fresh_connections(&self) {
        match http_client(&self.server) {
            Ok(client) => *self.http.lock().expect("not poisoned") = client,
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Send until an answer comes: a transport error or a busy server is retried with
    /// backoff (1 s doubling to 30 s); a refusal is returned.
    pub async fn deliver(
        &self,
        message: &LabHostMessage,
        incoming: &mpsc::UnboundedSender<ServerMessage>,
    ) -> Result<Vec<ServerMessage>, Refusal> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let back = self.back.notified();
            tokio::pin!(back);
            back.as_mut().enable();
            let sent = tokio::select! {
                sent = self.send(message) => sent,
                _ = &mut back => {
                    backoff = Duration::from_secs(1);
                    continue;
                }
            };
            match sent {
                Ok(messages) => {
                    for m in &messages {
                        if matches!(m, ServerMessage::Assignment(_) | ServerMessage::BenchOp(_)) {
                            let _ = incoming.send(m.clone());
                        }
                    }
                    return Ok(messages);
                }
                Err(AgentError::Refused(r)) if r.code != RefusalCode::Busy => return Err(r),
                Err(e) => {
                    tracing::warn!("{e}; trying again in {} s", backoff.as_secs());
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(30)),
                        _ = &mut back => backoff = Duration::from_secs(1),
                    }
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
