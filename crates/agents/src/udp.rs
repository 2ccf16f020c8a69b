//! A UDP port scan: which ports of an address do not say they are closed?
//!
//! UDP has no handshake. A probe datagram to a port nothing listens on makes the host
//! answer with ICMP port unreachable (a refused receive on a connected socket): that
//! port is *closed*. A service may answer the probe: *open*. Silence is *open or
//! filtered*: a service that ignores the probe, or a filter that drops it; a scan
//! cannot tell which, and counts the port as not closed (TS 33.117 4.4.2 asks which
//! ports respond; a documented service that stays silent is still documented).
//!
//! Hosts rate-limit ICMP errors (Linux: 1000 a second, `net.ipv4.icmp_msgs_per_sec`,
//! for all destinations together, loopback included), and an ICMP error withheld looks
//! like silence. So probes are paced below that rate, and every port that stayed silent
//! is probed again, pass after pass while a pass still turns silent ports into closed
//! ones (another scan sharing the host's limit); only a port silent to at least two
//! probes is open or filtered.
//!
//! Every answer is recorded whole, with the probe it answered, as Datagram events (when
//! the pass that received it ends, so a scan of thousands of ports is not thousands of
//! events for the closed ones), and `verify` re-derives the open ports from those
//! datagrams alone; the closed and silent ports are recorded in a note (an absence
//! leaves no datagram).
//!
//! What a probe is, what the scan reports and the rule `verify` re-derives the open
//! ports with are `proofrig_model::wire::udp`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
// What a scan returns; the answer rules live in proofrig_model::wire::udp.
pub use proofrig_model::wire::udp::UdpScanOutcome;
use proofrig_model::wire::udp::{probe_payload, CHANNEL};

/// How often a port that stays silent is probed at most.
const MAX_PASSES: u32 = 6;

/// Probes sent per second at most: below Linux's default ICMP error rate (1000/s), so
/// a closed port's answer is not withheld.
pub const DEFAULT_RATE: u32 = 800;

#[derive(Debug, thiserror::Error)]
pub enum UdpScanError {
    #[error("device {device}: {reason}")]
    Resolve { device: String, reason: String },
    #[error("device {device}: UDP scan of {address}: {source}")]
    Io { device: String, address: IpAddr, source: std::io::Error },
}

enum Answer {
    Open(Vec<u8>),
    Closed,
    Silent,
}

/// Scan `ports` of `address`: at most `rate` probes a second, each waiting up to
/// `wait` for an answer, silent ports probed again (see the module doc).
pub async fn udp_scan(
    device: &str,
    address: &str,
    ports: &[u16],
    wait: Duration,
    rate: u32,
    recorder: &Recorder,
) -> Result<UdpScanOutcome, UdpScanError> {
    let ip = crate::net::resolve_ip(address).await.map_err(|reason| UdpScanError::Resolve { device: device.to_string(), reason })?;
    let io = |source| UdpScanError::Io { device: device.to_string(), address: ip, source };
    let channel = ChannelId::new(device, CHANNEL);
    let mut open = Vec::new();
    let mut closed = 0;
    let mut silent: Vec<u16> = ports.to_vec();
    for pass in 1..=MAX_PASSES {
        let before = silent.len();
        let answers = probe_all(ip, &silent, wait, rate).await.map_err(io)?;
        silent.clear();
        for (port, answer) in answers {
            match answer {
                Answer::Open(reply) => {
                    let peer = SocketAddr::new(ip, port).to_string();
                    let datagram = |direction, data| EventKind::Datagram { channel: channel.clone(), direction, peer: peer.clone(), data };
                    recorder.emit(datagram(Direction::Out, probe_payload(port)));
                    recorder.emit(datagram(Direction::In, reply));
                    open.push(port);
                }
                Answer::Closed => closed += 1,
                Answer::Silent => silent.push(port),
            }
        }
        // Another pass while the last one still turned silent ports into answers or
        // refusals: ICMP errors withheld by the host's limit (another scan sharing it)
        // come through on a later pass; a port that is open or filtered never does.
        if silent.is_empty() || (pass >= 2 && silent.len() == before) {
            break;
        }
    }
    open.sort_unstable();
    silent.sort_unstable();
    let outcome = UdpScanOutcome { address: ip, open, open_filtered: silent, closed };
    recorder.emit(EventKind::Note { channel, text: outcome.summary(ports.len()) });
    Ok(outcome)
}

/// One probe to each of `ports`, paced to `rate` a second, and what came back.
async fn probe_all(ip: IpAddr, ports: &[u16], wait: Duration, rate: u32) -> std::io::Result<Vec<(u16, Answer)>> {
    // Enough sockets in flight to keep the pace while each waits out its answer.
    let in_flight = (u64::from(rate.max(1)) * wait.as_millis() as u64 / 1000 + 16).min(1024) as usize;
    let limit = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut pace = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    for &port in ports {
        pace.tick().await;
        let permit = limit.clone().acquire_owned().await.expect("the semaphore is never closed");
        tasks.spawn(async move {
            let answer = probe(ip, port, wait).await;
            drop(permit);
            (port, answer)
        });
    }
    let mut answers = Vec::with_capacity(ports.len());
    while let Some(joined) = tasks.join_next().await {
        let (port, answer) = joined.map_err(std::io::Error::other)?;
        answers.push((port, answer?));
    }
    Ok(answers)
}

async fn probe(ip: IpAddr, port: u16, wait: Duration) -> std::io::Result<Answer> {
    let local: SocketAddr = if ip.is_ipv4() { (IpAddr::from([0u8; 4]), 0).into() } else { (IpAddr::from([0u16; 8]), 0).into() };
    let socket = UdpSocket::bind(local).await?;
    // Connected: an ICMP error for this port shows as a refused send or receive, and
    // only the target's own datagrams are received.
    socket.connect((ip, port)).await?;
    if let Err(err) = socket.send(&probe_payload(port)).await {
        return match err.kind() {
            std::io::ErrorKind::ConnectionRefused => Ok(Answer::Closed),
            _ => Err(err),
        };
    }
    let mut buffer = vec![0u8; 65_536];
    match tokio::time::timeout(wait, socket.recv(&mut buffer)).await {
        Err(_) => Ok(Answer::Silent),
        Ok(Ok(len)) => Ok(Answer::Open(buffer[..len].to_vec())),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Answer::Closed),
        Ok(Err(err)) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::events::MemorySink;
    use proofrig_model::wire::udp::open_ports_answered;

    #[tokio::test]
    async fn open_closed_and_silent_ports_on_loopback() {
        // An echoing service, a service that never answers, and a port nothing uses.
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mute = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (echo_port, mute_port) = (echo.local_addr().unwrap().port(), mute.local_addr().unwrap().port());
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            loop {
                let (len, peer) = echo.recv_from(&mut buffer).await.unwrap();
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buffer[..len]);
                echo.send_to(&reply, peer).await.unwrap();
            }
        });
        let closed_port = {
            let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap().port()
        };
        let sink = MemorySink::new();
        let recorder = Recorder::new(sink.clone());
        let ports = [echo_port, mute_port, closed_port];
        let outcome = udp_scan("dev1", "127.0.0.1", &ports, Duration::from_millis(200), DEFAULT_RATE, &recorder).await.unwrap();
        assert_eq!(outcome.open, [echo_port]);
        assert_eq!(outcome.open_filtered, [mute_port]);
        assert_eq!(outcome.closed, 1);
        let mut not_closed = vec![echo_port, mute_port];
        not_closed.sort_unstable();
        assert_eq!(outcome.not_closed(), not_closed);
        drop(mute);

        // The answer is recorded whole, with its peer, and the open ports follow from it.
        let events = sink.events();
        let datagrams: Vec<(Direction, &str)> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Datagram { direction, peer, .. } => Some((*direction, peer.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(open_ports_answered(datagrams), [echo_port]);
        assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Datagram { direction: Direction::In, data, .. } if data == b"echo:")));
        let note = events.iter().find_map(|e| match &e.kind {
            EventKind::Note { text, .. } => Some(text.clone()),
            _ => None,
        });
        assert_eq!(note, Some(outcome.summary(3)));
    }
}
