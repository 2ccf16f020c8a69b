//! Would the server agree to these algorithms? Asked of the server itself.
//!
//! TS 33.117 4.2.3.2.4 wants a client that offers only forbidden algorithms (a CBC
//! cipher, `diffie-hellman-group1-sha1`, `ssh-rsa` SHA-1 signatures, a SHA-1 MAC) to be
//! turned away. libssh2 cannot offer most of these any more, so this speaks the start
//! of the protocol by hand: identification strings, then a client KEXINIT naming only
//! the algorithms under test (with ordinary choices for the other lists). A server
//! that finds no common algorithm hangs up at once (OpenSSH: "Unable to negotiate");
//! one that agrees waits for the client's key exchange message. No key exchange, no
//! authentication, no host key needed. Every byte is recorded on `ssh:negotiate`.
//!
//! The client KEXINIT itself is `proofrig_model::wire::ssh::client_kexinit`, which
//! `verify` builds again to check the offer on the wire.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::audit::{connect_tcp, read_kexinit_from, CLIENT_IDENTIFICATION};
use super::error::SshError;
use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
use proofrig_model::wire::ssh::{client_kexinit, ClientOffer};

/// The server's answer to the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationOutcome {
    pub negotiated: bool,
    /// The server's reason when it hung up, or what it did instead.
    pub detail: String,
}

const SSH_MSG_DISCONNECT: u8 = 1;

/// How long an agreeing server is given to hang up after all: it never does, so this
/// is the time a compliant answer (hanging up) must come within.
pub const AGREEMENT_WINDOW: Duration = Duration::from_millis(1500);

/// Offer the server exactly `offer` and report whether it agreed. Runs on its own thread.
pub async fn probe_negotiation(
    device: &str,
    host: &str,
    port: u16,
    offer: ClientOffer,
    timeout: Duration,
    recorder: &Recorder,
) -> Result<NegotiationOutcome, SshError> {
    let (name, host) = (device.to_string(), host.to_string());
    let recorder = recorder.clone();
    super::session::run_on_thread(format!("ssh-negotiate-{device}"), move || probe_blocking(&name, &host, port, &offer, timeout, &recorder))
        .await
        .unwrap_or_else(|| Err(SshError::Closed { device: device.into() }))
}

fn probe_blocking(
    device: &str,
    host: &str,
    port: u16,
    offer: &ClientOffer,
    timeout: Duration,
    recorder: &Recorder,
) -> Result<NegotiationOutcome, SshError> {
    let channel = ChannelId::new(device, "ssh:negotiate");
    let deadline = Instant::now() + timeout;
    let operation = format!("algorithm negotiation with {host}:{port}");
    let timed_out = || SshError::Timeout { device: device.into(), operation: operation.clone(), after: timeout };
    let protocol = |reason: String| SshError::Protocol { device: device.into(), operation: operation.clone(), reason };
    let mut stream = connect_tcp(device, host, port, deadline, timeout)?;
    let exchange = read_kexinit_from(&mut stream, deadline, &timed_out, &protocol)?;
    recorder.bytes(&channel, Direction::Out, CLIENT_IDENTIFICATION);
    recorder.bytes(&channel, Direction::In, &exchange.received);
    let kexinit = client_kexinit(offer);
    recorder.bytes(&channel, Direction::Out, &kexinit);
    if let Err(e) = stream.write_all(&kexinit) {
        let outcome =
            NegotiationOutcome { negotiated: false, detail: format!("the server closed the connection before our offer arrived ({e})") };
        record_outcome(recorder, &channel, &outcome);
        return Ok(outcome);
    }
    // Bytes the server sent after its KEXINIT (rare before ours) count as its answer too.
    let mut answer: Vec<u8> = Vec::new();
    let window_end = Instant::now() + AGREEMENT_WINDOW;
    let hung_up = loop {
        let remaining = window_end.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break None;
        }
        let _ = stream.set_read_timeout(Some(remaining));
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break Some("closed the connection".to_string()),
            Ok(n) => {
                recorder.bytes(&channel, Direction::In, &chunk[..n]);
                answer.extend_from_slice(&chunk[..n]);
                if let Some(reason) = disconnect_reason(&answer) {
                    break Some(format!("sent DISCONNECT: {reason}"));
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break None,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(format!("reset the connection ({e})")),
        }
    };
    let outcome = match hung_up {
        Some(how) => NegotiationOutcome { negotiated: false, detail: format!("the server {how}") },
        None => NegotiationOutcome {
            negotiated: true,
            detail: format!(
                "the server kept the connection open for {} ms, waiting for the key exchange to go on",
                AGREEMENT_WINDOW.as_millis()
            ),
        },
    };
    record_outcome(recorder, &channel, &outcome);
    Ok(outcome)
}

fn record_outcome(recorder: &Recorder, channel: &ChannelId, outcome: &NegotiationOutcome) {
    recorder.emit(EventKind::Note {
        channel: channel.clone(),
        text: format!("negotiation {}: {}", if outcome.negotiated { "accepted" } else { "refused" }, outcome.detail),
    });
}

/// The description of a DISCONNECT packet at the start of `bytes`, if one is complete.
fn disconnect_reason(bytes: &[u8]) -> Option<String> {
    let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let packet = bytes.get(4..4 + length)?;
    let payload = packet.get(1..)?;
    if *payload.first()? != SSH_MSG_DISCONNECT {
        return None;
    }
    let text_len = u32::from_be_bytes(payload.get(5..9)?.try_into().ok()?) as usize;
    Some(String::from_utf8_lossy(payload.get(9..9 + text_len)?).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disconnect_reason_is_read_only_from_a_complete_packet() {
        let mut payload = vec![SSH_MSG_DISCONNECT, 0, 0, 0, 3];
        let text = b"no matching cipher found";
        payload.extend_from_slice(&(text.len() as u32).to_be_bytes());
        payload.extend_from_slice(text);
        payload.extend_from_slice(&[0, 0, 0, 0]);
        let mut packet = ((payload.len() + 1 + 4) as u32).to_be_bytes().to_vec();
        packet.push(4);
        packet.extend_from_slice(&payload);
        packet.extend_from_slice(&[0; 4]);
        assert_eq!(disconnect_reason(&packet).as_deref(), Some("no matching cipher found"));
        assert_eq!(disconnect_reason(&packet[..10]), None);
    }
}
