//! A syslog receiver on the lab host: the central log storage a device is configured
//! to send its records to, for the length of one step (TS 33.117 4.2.3.6.2).
//!
//! It binds where the rig says the device sends (`declared.log_server`), UDP or TCP,
//! and records everything that arrives, as it arrives: each UDP datagram whole, each
//! read of a TCP connection with the connection's peer (both as `Datagram` events, on
//! `syslog` and `syslog:tcp`), redacted like every other event. The records a step
//! reports are parsed from those recorded bytes by `proofrig_model::wire::syslog`, so
//! `verify` derives the same records from the journal.
//!
//! What makes the device send is the step's business (a refused login, see
//! `proofrig_run`); the receiver only waits until a record the caller looks for has
//! come, or its time is up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
use proofrig_model::secret::Secret;
use proofrig_model::wire::syslog::{channel, joined, records, Listen, Record, Transport};

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error(
        "device {device}: cannot listen for its log records at {listen}: {source}; \
         the rig's declared.log_server must be an address of this lab host that the device sends to"
    )]
    Bind { device: String, listen: Listen, source: std::io::Error },
    #[error(
        "device {device}: the log server's TLS identity ({label}) {reason}; give a PEM file with its private key and certificate chain"
    )]
    Identity { device: String, label: String, reason: String },
}

/// The log server's TLS identity: its certificate chain and private key, from one PEM
/// text (the secret the step names), as a server configuration.
fn tls_acceptor(device: &str, identity: &Secret) -> Result<tokio_rustls::TlsAcceptor, SyslogError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |reason: String| SyslogError::Identity { device: device.to_string(), label: identity.label().to_string(), reason };
    let pem = identity.expose().as_bytes();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| bad(format!("holds an unreadable certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| bad(format!("holds no readable private key: {e}")))?;
    // ring, as everywhere in the workspace (see `proofrig_proto::pin::provider`, which
    // says why its deprecation for lacking post-quantum key exchange is accepted).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("is not a usable key and certificate: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// What has arrived so far: (peer, bytes) in arrival order, as recorded.
type Arrivals = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver listening for one step.
pub struct Receiver {
    listen: Listen,
    arrivals: Arrivals,
    arrived: Arc<Notify>,
    tasks: JoinSet<()>,
}

impl Receiver {
    /// Bind `listen` and start recording what arrives for `device`; over TLS, as the
    /// server `identity` (a PEM private key and certificate chain) names.
    pub async fn start(device: &str, listen: Listen, identity: Option<&Secret>, recorder: &Recorder) -> Result<Receiver, SyslogError> {
        let bind_error = |source| SyslogError::Bind { device: device.to_string(), listen, source };
        let arrivals: Arrivals = Arc::default();
        let arrived = Arc::new(Notify::new());
        let channel = ChannelId::new(device, channel(listen.transport));
        let mut tasks = JoinSet::new();
        let keep = Keep { channel, recorder: recorder.clone(), arrivals: arrivals.clone(), arrived: arrived.clone() };
        match listen.transport {
            Transport::Udp => {
                let socket = UdpSocket::bind(listen.address).await.map_err(bind_error)?;
                tasks.spawn(async move {
                    let mut buffer = vec![0u8; 65_536];
                    while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                        keep.arrival(peer.to_string(), &buffer[..len]);
                    }
                });
            }
            Transport::Tcp | Transport::Tls => {
                let acceptor = match (listen.transport, identity) {
                    (Transport::Tls, Some(identity)) => Some(tls_acceptor(device, identity)?),
                    (Transport::Tls, None) => {
                        let reason = "is not given: name the secret holding it in the step's `tls_identity`".to_string();
                        return Err(SyslogError::Identity { device: device.to_string(), label: "none".into(), reason });
                    }
                    _ => None,
                };
                let listener = TcpListener::bind(listen.address).await.map_err(bind_error)?;
                tasks.spawn(async move {
                    let mut connections = JoinSet::new();
                    while let Ok((stream, peer)) = listener.accept().await {
                        let (keep, acceptor) = (keep.clone(), acceptor.clone());
                        connections.spawn(async move {
                            match acceptor {
                                None => keep.stream(peer.to_string(), stream).await,
                                Some(acceptor) => match acceptor.accept(stream).await {
                                    Ok(tls) => {
                                        let (_, session) = tls.get_ref();
                                        let version = session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
                                        let suite =
                                            session.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
                                        keep.note(format!("TLS connection from {peer}: {version}, {suite}"));
                                        keep.stream(peer.to_string(), tls).await;
                                    }
                                    Err(e) => keep.note(format!("TLS handshake with {peer} failed: {e}")),
                                },
                            }
                        });
                    }
                });
            }
        }
        Ok(Receiver { listen, arrivals, arrived, tasks })
    }

    pub fn listen(&self) -> Listen {
        self.listen
    }

    /// The records received so far, parsed from the recorded bytes.
    pub fn records(&self) -> Vec<Record> {
        records(self.listen.transport, &joined(self.listen.transport, &self.arrivals.lock().expect("arrivals lock")))
    }

    /// Wait until `found` holds for the records received, or `wait` has passed;
    /// returns the records either way.
    pub async fn wait_for(&self, found: impl Fn(&[Record]) -> bool, wait: Duration) -> Vec<Record> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let now = self.records();
            if found(&now) {
                return now;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.records();
            }
        }
    }

    /// Stop listening: nothing is recorded after this returns.
    pub async fn stop(mut self) -> Vec<Record> {
        self.tasks.shutdown().await;
        self.records()
    }
}

/// Records one arrival and wakes the waiter.
#[derive(Clone)]
struct Keep {
    channel: ChannelId,
    recorder: Recorder,
    arrivals: Arrivals,
    arrived: Arc<Notify>,
}

impl Keep {
    async fn stream(&self, peer: String, mut stream: impl tokio::io::AsyncRead + Unpin) {
        let mut buffer = vec![0u8; 16_384];
        while let Ok(len @ 1..) = stream.read(&mut buffer).await {
            self.arrival(peer.clone(), &buffer[..len]);
        }
    }

    fn note(&self, text: String) {
        self.recorder.emit(EventKind::Note { channel: self.channel.clone(), text });
    }

    fn arrival(&self, peer: String, data: &[u8]) {
        // Kept as recorded (redacted), so the step's records are the journal's.
        let kept = self.recorder.redactor().redact(data).into_owned();
        self.recorder.emit(EventKind::Datagram {
            channel: self.channel.clone(),
            direction: Direction::In,
            peer: peer.clone(),
            data: data.to_vec(),
        });
        self.arrivals.lock().expect("arrivals lock").push((peer, kept));
        self.arrived.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::events::MemorySink;

    #[tokio::test]
    async fn records_udp_datagrams_and_tcp_streams_as_they_arrive() {
        // TLS is TCP's framing behind a handshake; the simulated lab's devices send over
        // it (`tests/library_on_simlab.rs`, log transfer).
        for transport in [Transport::Udp, Transport::Tcp] {
            let port = match transport {
                Transport::Udp => std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
                Transport::Tcp | Transport::Tls => std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
            };
            let listen = Listen { transport, address: ([127, 0, 0, 1], port).into() };
            let sink = MemorySink::new();
            let receiver = Receiver::start("dev1", listen, None, &Recorder::new(sink.clone())).await.unwrap();
            match transport {
                Transport::Udp => {
                    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    socket.send_to(b"<38>one", listen.address).await.unwrap();
                    socket.send_to(b"<38>two", listen.address).await.unwrap();
                }
                Transport::Tcp | Transport::Tls => {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = tokio::net::TcpStream::connect(listen.address).await.unwrap();
                    stream.write_all(b"<38>one\n<38>tw").await.unwrap();
                    stream.write_all(b"o\n").await.unwrap();
                }
            }
            let got = receiver.wait_for(|r| r.iter().any(|r| r.text == "two"), Duration::from_secs(5)).await;
            assert_eq!(got.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["one", "two"], "{transport:?}");
            let stopped = receiver.stop().await;
            assert_eq!(stopped, got);
            let recorded: Vec<(String, Vec<u8>)> = sink
                .events()
                .into_iter()
                .filter_map(|e| match e.kind {
                    EventKind::Datagram { channel: c, peer, data, .. } if c.channel == channel(transport) => Some((peer, data)),
                    _ => None,
                })
                .collect();
            assert_eq!(records(transport, &joined(transport, &recorded)), got, "{transport:?}: the journal gives the same records");
        }
    }

    #[tokio::test]
    async fn an_address_not_of_this_host_is_an_error_naming_the_rig_value() {
        let listen = Listen::parse("udp:192.0.2.1:5514").unwrap();
        let err = Receiver::start("ru1", listen, None, &Recorder::new(MemorySink::new())).await.err().expect("cannot bind");
        assert!(err.to_string().contains("declared.log_server"), "{err}");
        // Over TLS without an identity, or with one that holds no key, it says what to give.
        let tls = Listen::parse("tls:127.0.0.1:6514").unwrap();
        let err = Receiver::start("ru1", tls, None, &Recorder::new(MemorySink::new())).await.err().expect("no identity");
        assert!(err.to_string().contains("tls_identity"), "{err}");
        let junk = Secret::new("log_server_identity", "not a PEM file");
        let err = Receiver::start("ru1", tls, Some(&junk), &Recorder::new(MemorySink::new())).await.err().expect("no certificate");
        assert!(err.to_string().contains("log_server_identity") && err.to_string().contains("holds no certificate"), "{err}");
    }
}
