//! The TLS auditor: which protocol versions and cipher suites a device's TLS server
//! accepts, and what certificate it shows, for TS 33.117 4.2.2.2.2 (transport layer
//! protection) and 4.2.5.1 (HTTPS).
//!
//! Like the SSH negotiation probe it writes its own hellos (`proofrig_model::wire::tls`)
//! so it can offer what no current TLS library still sends: TLS 1.0, RC4, 3DES, NULL.
//! One TCP connection per hello; each connection's bytes, both directions, are recorded
//! on the device's [`CHANNEL`] between a channel-open and a channel-close record, so
//! `verify` replays the audit (each hello follows from the answers before it) and
//! re-derives every fact. No handshake is ever completed and nothing is decrypted.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
use proofrig_model::wire::tls::{client_hello, is_complete, parse_answer, Audit, Offer, ANSWER_LIMIT, CHANNEL};

/// What to audit: `device`'s TLS server at `address:port`.
pub struct TlsProbe<'a> {
    pub device: &'a str,
    pub address: &'a str,
    pub port: u16,
    /// Sent as SNI (when a DNS name) and compared with the certificate's names.
    pub server_name: Option<&'a str>,
    /// For each connection: connect, hello and answer.
    pub per_connection: Duration,
}

/// Why the audit did not finish. [`TlsError::NotTls`] is the device's port speaking
/// something else (ERROR: the rig names the wrong port); the rest are the bench's or
/// the network's (INFRA): an unreachable or silent server shows nothing about its TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("device {device}: {reason}")]
    Resolve { device: String, reason: String },
    #[error("device {device}: cannot connect to the TLS server at {peer}: {source}")]
    Connect { device: String, peer: SocketAddr, source: std::io::Error },
    #[error("device {device}: no connection to the TLS server at {peer} within {ms} ms")]
    ConnectTimeout { device: String, peer: SocketAddr, ms: u128 },
    #[error("device {device}: TLS exchange with {peer}: {source}")]
    Io { device: String, peer: SocketAddr, source: std::io::Error },
    #[error("device {device}: the server at {peer} did not answer a {version} ClientHello within {ms} ms")]
    Silent { device: String, peer: SocketAddr, version: String, ms: u128 },
    #[error("device {device}: what {peer} answered a ClientHello is no TLS: {reason}; is the rig's TLS port right?")]
    NotTls { device: String, peer: SocketAddr, reason: String },
}

/// Run the whole audit; the audit with every answer, and the peer.
pub async fn audit(probe: &TlsProbe<'_>, recorder: &Recorder) -> Result<(Audit, SocketAddr), TlsError> {
    let device = probe.device.to_string();
    let ip = crate::net::resolve_ip(probe.address).await.map_err(|reason| TlsError::Resolve { device: device.clone(), reason })?;
    let peer = SocketAddr::new(ip, probe.port);
    let mut audit = Audit::new();
    while let Some(offer) = audit.next() {
        let received = exchange(probe, peer, &offer, recorder).await?;
        let answer = parse_answer(&received);
        audit.record(offer, answer);
        if let Some(reason) = audit.not_tls() {
            return Err(TlsError::NotTls { device, peer, reason: reason.to_string() });
        }
    }
    Ok((audit, peer))
}

/// One connection: the hello out, the answer in, both recorded.
async fn exchange(probe: &TlsProbe<'_>, peer: SocketAddr, offer: &Offer, recorder: &Recorder) -> Result<Vec<u8>, TlsError> {
    let device = probe.device.to_string();
    let deadline = tokio::time::Instant::now() + probe.per_connection;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(peer)).await {
        Err(_) => return Err(TlsError::ConnectTimeout { device, peer, ms: probe.per_connection.as_millis() }),
        Ok(Err(source)) => return Err(TlsError::Connect { device, peer, source }),
        Ok(Ok(stream)) => stream,
    };
    let channel = ChannelId::new(probe.device, CHANNEL);
    recorder.emit(EventKind::ChannelOpened { channel: channel.clone(), detail: format!("TLS to {peer}") });
    let hello = client_hello(offer, probe.server_name);
    recorder.bytes(&channel, Direction::Out, &hello);
    let result = read_answer(&mut stream, &hello, &channel, deadline, recorder).await;
    // The close ends the recorded streams, so every byte is in the step's range.
    recorder.emit(EventKind::ChannelClosed { channel });
    match result {
        Ok(Some(received)) => Ok(received),
        Ok(None) => Err(TlsError::Silent {
            device,
            peer,
            version: proofrig_model::wire::tls::version_name(offer.version),
            ms: probe.per_connection.as_millis(),
        }),
        Err(source) => Err(TlsError::Io { device, peer, source }),
    }
}

/// Write the hello and read until the answer is whole or the server closes; None when
/// the time ran out with no whole answer.
async fn read_answer(
    stream: &mut TcpStream,
    hello: &[u8],
    channel: &ChannelId,
    deadline: tokio::time::Instant,
    recorder: &Recorder,
) -> std::io::Result<Option<Vec<u8>>> {
    stream.write_all(hello).await?;
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let room = ANSWER_LIMIT - received.len();
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut buffer[..room.min(16 * 1024)])).await {
            Err(_) => return Ok(None),
            // A reset is how some servers refuse; what came before it is the answer.
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionReset => return Ok(Some(received)),
            Ok(read) => read?,
        };
        if read == 0 {
            return Ok(Some(received));
        }
        recorder.bytes(channel, Direction::In, &buffer[..read]);
        received.extend_from_slice(&buffer[..read]);
        if received.len() >= ANSWER_LIMIT || is_complete(&received) {
            return Ok(Some(received));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn probe(port: u16) -> TlsProbe<'static> {
        TlsProbe { device: "d", address: "127.0.0.1", port, server_name: None, per_connection: Duration::from_secs(2) }
    }

    /// A server that answers every hello with an alert `protocol_version`.
    async fn refusing() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut got = vec![0u8; 4096];
                let _ = socket.read(&mut got).await;
                let _ = socket.write_all(&[21, 3, 3, 0, 2, 2, 70]).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn a_server_refusing_every_version_is_four_connections_and_no_accepted_version() {
        let port = refusing().await;
        let (audit, _) = audit(&probe(port), &Recorder::discard()).await.unwrap();
        assert_eq!(audit.probes().len(), 4, "one hello per version, each refused");
        let ctx = proofrig_model::wire::tls::OutputContext { address: "127.0.0.1", port, server_name: None, checked_at: 0 };
        let out = audit.output(&ctx);
        assert_eq!(out["accepted_versions"], serde_json::json!([]));
        assert_eq!(out["versions"]["TLSv1.2"]["refusal"], "alert protocol_version");
    }

    #[tokio::test]
    async fn nothing_listening_is_the_benchs_and_a_plain_http_port_is_no_tls() {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        assert!(matches!(audit(&probe(free), &Recorder::discard()).await, Err(TlsError::Connect { .. })));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let _ = socket.read(&mut got).await;
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        });
        assert!(matches!(audit(&probe(port), &Recorder::discard()).await, Err(TlsError::NotTls { .. })));
    }
}
