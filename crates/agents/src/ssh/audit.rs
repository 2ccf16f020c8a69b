//! Which algorithms does an SSH server offer? (TS 33.117 clause 4.2.3.2.4)
//!
//! The answer is in the server's SSH_MSG_KEXINIT, the first binary packet it sends,
//! still unencrypted. We read it by hand rather than through libssh2, which only ever
//! reveals what it *negotiated*, never the full offer, and needs no host key to do it:
//! connect, exchange identification strings, read one packet, parse its name-lists,
//! hang up. Every length is checked against what was received, and the whole exchange
//! is bounded by a timeout. The raw bytes are recorded so the evidence can be re-parsed
//! independently.
//!
//! Reading the offer from those bytes, and which names in it are markers rather than
//! algorithms (RFC 8308's `ext-info-s`, OpenSSH's strict key exchange, ...), is
//! `proofrig_model::wire::ssh`, which `verify` shares.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::error::SshError;
use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
use proofrig_model::wire::ssh::{parse_server_offer, ServerAlgorithms};

/// What we announce; the server sends its KEXINIT once it has read this.
pub(crate) const CLIENT_IDENTIFICATION: &[u8] = b"SSH-2.0-proofrig_audit\r\n";
/// RFC 4253 4.2: identification lines are at most 255 bytes including CR LF.
const MAX_LINE: usize = 255;
/// Lines a server may send before its identification (RFC 4253 4.2 allows some).
const MAX_PRE_BANNER_LINES: usize = 64;
/// OpenSSH refuses packets above 256 KiB; a KEXINIT is a few KiB at most.
const MAX_PACKET: usize = 256 * 1024;

/// Connect to `host:port`, read the server's identification and KEXINIT, and return
/// every algorithm it offers. Records the bytes exchanged and a summary note on
/// channel `ssh:audit` of `device`. Runs on its own thread; never blocks the runtime.
pub async fn audit_algorithms(
    device: &str,
    host: &str,
    port: u16,
    timeout: Duration,
    recorder: &Recorder,
) -> Result<ServerAlgorithms, SshError> {
    let (name, host) = (device.to_string(), host.to_string());
    let recorder = recorder.clone();
    super::session::run_on_thread(format!("ssh-audit-{device}"), move || {
        let channel = ChannelId::new(&name, "ssh:audit");
        let exchange = read_server_kexinit(&name, &host, port, timeout)?;
        recorder.bytes(&channel, Direction::Out, CLIENT_IDENTIFICATION);
        recorder.bytes(&channel, Direction::In, &exchange.received);
        recorder
            .emit(EventKind::Note { channel, text: format!("SSH algorithm audit of {host}:{port}\n{}", exchange.algorithms.summary()) });
        Ok(exchange.algorithms)
    })
    .await
    .unwrap_or_else(|| Err(SshError::Closed { device: device.into() }))
}

/// The parsed offer and the exact bytes it was parsed from.
pub(crate) struct KexinitExchange {
    pub algorithms: ServerAlgorithms,
    /// Identification lines and the KEXINIT packet, as received.
    pub received: Vec<u8>,
}

/// Blocking: the audit itself, also used by the connector to learn a server's host key types.
pub(crate) fn read_server_kexinit(device: &str, host: &str, port: u16, timeout: Duration) -> Result<KexinitExchange, SshError> {
    let deadline = Instant::now() + timeout;
    let addr_text = format!("{host}:{port}");
    let operation = format!("algorithm audit of {addr_text}");
    let timed_out = || SshError::Timeout { device: device.into(), operation: operation.clone(), after: timeout };
    let protocol = |reason: String| SshError::Protocol { device: device.into(), operation: operation.clone(), reason };

    let mut stream = connect_tcp(device, host, port, deadline, timeout)?;
    read_kexinit_from(&mut stream, deadline, &timed_out, &protocol)
}

/// Send our identification on `stream` and read the server's identification and KEXINIT.
pub(crate) fn read_kexinit_from(
    stream: &mut TcpStream,
    deadline: Instant,
    timed_out: &impl Fn() -> SshError,
    protocol: &impl Fn(String) -> SshError,
) -> Result<KexinitExchange, SshError> {
    stream.write_all(CLIENT_IDENTIFICATION).map_err(|e| protocol(format!("cannot send identification: {e}")))?;

    let mut reader = BoundedReader { stream, buf: Vec::new(), deadline };
    let mut pos = 0;
    let mut pre_banner_lines = Vec::new();
    let banner = loop {
        let newline = loop {
            if let Some(i) = reader.buf[pos..].iter().position(|&b| b == b'\n') {
                break pos + i;
            }
            if reader.buf.len() - pos > MAX_LINE {
                return Err(protocol(format!("identification line longer than {MAX_LINE} bytes")));
            }
            reader.read_more().map_err(|e| e.into_error(timed_out, protocol, "the identification string"))?;
        };
        let line = String::from_utf8_lossy(&reader.buf[pos..newline]).trim_end_matches('\r').to_string();
        pos = newline + 1;
        if line.starts_with("SSH-") {
            break line;
        }
        pre_banner_lines.push(line);
        if pre_banner_lines.len() > MAX_PRE_BANNER_LINES {
            return Err(protocol(format!("more than {MAX_PRE_BANNER_LINES} lines before the SSH identification")));
        }
    };
    if !(banner.starts_with("SSH-2.0-") || banner.starts_with("SSH-1.99-")) {
        return Err(protocol(format!("server speaks an unsupported protocol version: {banner}")));
    }

    reader.fill(pos + 4).map_err(|e| e.into_error(timed_out, protocol, "the KEXINIT packet"))?;
    let packet_length = u32::from_be_bytes(reader.buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
    if !(5..=MAX_PACKET).contains(&packet_length) {
        return Err(protocol(format!("implausible packet length {packet_length}")));
    }
    reader.fill(pos + 4 + packet_length).map_err(|e| e.into_error(timed_out, protocol, "the KEXINIT packet"))?;
    let packet = &reader.buf[pos + 4..pos + 4 + packet_length];
    let padding = packet[0] as usize;
    if padding + 1 > packet_length {
        return Err(protocol(format!("padding length {padding} exceeds packet length {packet_length}")));
    }
    let received = reader.buf[..pos + 4 + packet_length].to_vec();
    let algorithms = parse_server_offer(&received).map_err(protocol)?;
    Ok(KexinitExchange { algorithms, received })
}

pub(crate) fn connect_tcp(device: &str, host: &str, port: u16, deadline: Instant, timeout: Duration) -> Result<TcpStream, SshError> {
    let addr_text = format!("{host}:{port}");
    let connect_error = |reason: String| SshError::Connect { device: device.into(), addr: addr_text.clone(), reason };
    let addrs: Vec<_> = (host, port).to_socket_addrs().map_err(|e| connect_error(format!("cannot resolve {host}: {e}")))?.collect();
    let mut last = format!("{host} resolves to no address");
    for addr in addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(SshError::Timeout { device: device.into(), operation: format!("TCP connect to {addr_text}"), after: timeout });
        }
        match TcpStream::connect_timeout(&addr, remaining) {
            Ok(stream) => {
                // SSH exchanges many small packets; Nagle would add delayed-ACK stalls.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(SshError::Timeout { device: device.into(), operation: format!("TCP connect to {addr_text}"), after: timeout })
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(connect_error(last))
}

/// Why reading stopped short.
enum ReadFailure {
    TimedOut,
    Closed,
    Io(std::io::Error),
}

impl ReadFailure {
    fn into_error(self, timed_out: &impl Fn() -> SshError, protocol: &impl Fn(String) -> SshError, waiting_for: &str) -> SshError {
        match self {
            ReadFailure::TimedOut => timed_out(),
            ReadFailure::Closed => protocol(format!(
                "server closed the connection before sending {waiting_for} (it may limit unauthenticated connections, e.g. MaxStartups, or block this address)"
            )),
            ReadFailure::Io(e) => protocol(format!("read failed while waiting for {waiting_for}: {e}")),
        }
    }
}

struct BoundedReader<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl BoundedReader<'_> {
    fn read_more(&mut self) -> Result<(), ReadFailure> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ReadFailure::TimedOut);
        }
        self.stream.set_read_timeout(Some(remaining)).map_err(ReadFailure::Io)?;
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ReadFailure::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Err(ReadFailure::TimedOut),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(ReadFailure::Io(e)),
        }
    }

    fn fill(&mut self, len: usize) -> Result<(), ReadFailure> {
        while self.buf.len() < len {
            self.read_more()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proofrig_model::wire::ssh::{binary_packet, kexinit_payload};

    /// A KEXINIT to serve.
    fn kexinit(lists: [&str; 10]) -> Vec<u8> {
        kexinit_payload([7u8; 16], lists)
    }

    const LISTS: [&str; 10] = [
        "curve25519-sha256,kex-strict-s-v00@openssh.com",
        "ssh-ed25519",
        "aes128-ctr,aes256-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
        "none,zlib@openssh.com",
        "none",
        "",
        "",
    ];

    /// A fake server on loopback: banner lines, then a packet, possibly malformed.
    fn serve_once(response: Vec<u8>) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let _ = socket.write_all(&response);
            std::thread::sleep(Duration::from_millis(500));
        });
        port
    }

    #[test]
    fn reads_pre_banner_lines_banner_and_packet_from_a_socket() {
        let mut response = b"Welcome to the lab\r\nSSH-2.0-FakeSSH_1.0\r\n".to_vec();
        response.extend(binary_packet(&kexinit(LISTS)));
        let port = serve_once(response.clone());
        let exchange = read_server_kexinit("dut", "127.0.0.1", port, Duration::from_secs(2)).unwrap();
        assert_eq!(exchange.algorithms.banner, "SSH-2.0-FakeSSH_1.0");
        assert_eq!(exchange.algorithms.pre_banner_lines, vec!["Welcome to the lab"]);
        assert_eq!(exchange.algorithms.host_key, vec!["ssh-ed25519"]);
        assert_eq!(exchange.received, response);
    }

    #[test]
    fn a_silent_server_times_out_and_a_huge_packet_is_refused() {
        let port = serve_once(b"SSH-2.0-Silent\r\n".to_vec());
        let started = Instant::now();
        let err = read_server_kexinit("dut", "127.0.0.1", port, Duration::from_millis(200)).err().unwrap();
        assert!(matches!(err, SshError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));

        let mut response = b"SSH-2.0-Liar\r\n".to_vec();
        response.extend_from_slice(&(64u32 << 20).to_be_bytes());
        let port = serve_once(response);
        let err = read_server_kexinit("dut", "127.0.0.1", port, Duration::from_secs(2)).err().unwrap();
        assert!(err.to_string().contains("implausible packet length"), "{err}");
    }
}
