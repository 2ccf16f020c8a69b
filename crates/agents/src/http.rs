//! One HTTP/1.1 request over plain TCP, for the web server cases of TS 33.117
//! (4.3.4.x): does the device's web server list directories, name its version, accept
//! TRACE or PUT, serve default content, or a file outside its document root?
//!
//! The request goes out whole and the answer is read until the server closes the
//! connection, the response is complete by its own framing, [`RESPONSE_LIMIT`] bytes
//! have come, or the time is up. Both directions are recorded as raw bytes on the
//! device's [`CHANNEL`], between a channel-open and a channel-close record, so
//! `verify` re-derives status, headers and body from them with the same parser
//! (`proofrig_model::wire::http`). HTTPS is not here: it needs the TLS probe.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
pub use proofrig_model::wire::http::Response;
use proofrig_model::wire::http::{host_header, is_complete, parse_response, request, Request, CHANNEL, RESPONSE_LIMIT};

/// What to send: to `device`'s web server at `address:port`.
pub struct HttpProbe<'a> {
    pub device: &'a str,
    pub address: &'a str,
    pub port: u16,
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    /// For the connection, the request and the whole answer together.
    pub timeout: Duration,
}

/// Why no response was read. Every variant but [`HttpError::NotHttp`] is the bench's
/// or the network's (INFRA): an unreachable or silent server shows nothing about it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("device {device}: {reason}")]
    Resolve { device: String, reason: String },
    #[error("device {device}: cannot connect to the web server at {peer}: {source}")]
    Connect { device: String, peer: SocketAddr, source: std::io::Error },
    #[error("device {device}: no connection to the web server at {peer} within {ms} ms")]
    ConnectTimeout { device: String, peer: SocketAddr, ms: u128 },
    #[error("device {device}: HTTP exchange with {peer}: {source}")]
    Io { device: String, peer: SocketAddr, source: std::io::Error },
    #[error("device {device}: the web server at {peer} sent no response ({detail})")]
    Silent { device: String, peer: SocketAddr, detail: String },
    #[error("device {device}: what {peer} answered is no HTTP response: {reason}")]
    NotHttp { device: String, peer: SocketAddr, reason: String },
}

/// What came back: the peer, and the response as its bytes say.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub peer: SocketAddr,
    pub response: Response,
}

/// Send the request and read the answer (see the module doc).
pub async fn send(probe: &HttpProbe<'_>, recorder: &Recorder) -> Result<Exchange, HttpError> {
    let device = probe.device.to_string();
    let ip = crate::net::resolve_ip(probe.address).await.map_err(|reason| HttpError::Resolve { device: device.clone(), reason })?;
    let peer = SocketAddr::new(ip, probe.port);
    let deadline = tokio::time::Instant::now() + probe.timeout;
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(peer)).await {
        Err(_) => return Err(HttpError::ConnectTimeout { device, peer, ms: probe.timeout.as_millis() }),
        Ok(Err(source)) => return Err(HttpError::Connect { device, peer, source }),
        Ok(Ok(stream)) => stream,
    };
    let channel = ChannelId::new(probe.device, CHANNEL);
    recorder.emit(EventKind::ChannelOpened { channel: channel.clone(), detail: format!("HTTP to {peer}") });
    let result = exchange(&mut stream, probe, &channel, deadline, recorder).await;
    // The close ends the recorded streams, so every byte is in the step's range.
    recorder.emit(EventKind::ChannelClosed { channel });
    let io = |source| HttpError::Io { device: device.clone(), peer, source };
    let (received, detail) = result.map_err(io)?;
    match parse_response(&received, probe.method == "HEAD") {
        Ok(response) => Ok(Exchange { peer, response }),
        Err(_) if received.is_empty() => Err(HttpError::Silent { device, peer, detail }),
        Err(reason) => Err(HttpError::NotHttp { device, peer, reason }),
    }
}

/// Write the request and read until the answer ends; the bytes read and how it ended.
async fn exchange(
    stream: &mut TcpStream,
    probe: &HttpProbe<'_>,
    channel: &ChannelId,
    deadline: tokio::time::Instant,
    recorder: &Recorder,
) -> std::io::Result<(Vec<u8>, String)> {
    let host = host_header(probe.address, probe.port);
    let bytes = request(&Request { method: probe.method, path: probe.path, host: &host, headers: probe.headers });
    recorder.bytes(channel, Direction::Out, &bytes);
    stream.write_all(&bytes).await?;
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let head = probe.method == "HEAD";
    loop {
        let room = RESPONSE_LIMIT - received.len();
        let read = match tokio::time::timeout_at(deadline, stream.read(&mut buffer[..room.min(16 * 1024)])).await {
            Err(_) => return Ok((received, "timed out".into())),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionReset && !received.is_empty() => {
                return Ok((received, "reset after answering".into()))
            }
            Ok(read) => read?,
        };
        if read == 0 {
            return Ok((received, "closed the connection".into()));
        }
        recorder.bytes(channel, Direction::In, &buffer[..read]);
        received.extend_from_slice(&buffer[..read]);
        if received.len() >= RESPONSE_LIMIT || is_complete(&received, head) {
            return Ok((received, "answered".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let n = socket.read(&mut got).await.unwrap();
            socket.write_all(answer).await.unwrap();
            // Kept open: the probe must stop at the response's own end.
            tokio::time::sleep(Duration::from_millis(300)).await;
            got.truncate(n);
            got
        });
        (port, task)
    }

    fn probe(port: u16, method: &'static str) -> HttpProbe<'static> {
        HttpProbe { device: "d", address: "127.0.0.1", port, method, path: "/x", headers: &[], timeout: Duration::from_secs(5) }
    }

    #[tokio::test]
    async fn a_response_is_read_to_its_length_and_both_directions_are_recorded() {
        let (port, server) = serve_once(b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 2\r\n\r\nno").await;
        let recorder = Recorder::discard();
        let started = std::time::Instant::now();
        let exchange = send(&probe(port, "TRACE"), &recorder).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(250), "stopped at the end of the body, not at the close");
        assert_eq!((exchange.response.status, exchange.response.body_excerpt.as_str()), (405, "no"));
        assert!(String::from_utf8(server.await.unwrap()).unwrap().starts_with("TRACE /x HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn nothing_listening_and_a_silent_server_are_the_benchs_not_findings() {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        assert!(matches!(send(&probe(free, "GET"), &Recorder::discard()).await, Err(HttpError::Connect { .. })));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
        });
        let silent = send(&probe(port, "GET"), &Recorder::discard()).await;
        assert!(matches!(silent, Err(HttpError::Silent { .. }) | Err(HttpError::Io { .. })), "{silent:?}");
    }

    #[tokio::test]
    async fn an_answer_that_is_no_http_is_said_to_be_none() {
        let (port, _server) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        assert!(matches!(send(&probe(port, "GET"), &Recorder::discard()).await, Err(HttpError::NotHttp { .. })));
    }
}
