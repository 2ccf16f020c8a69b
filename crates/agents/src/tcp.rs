//! A TCP connect scan: which ports of an address accept a connection?
//!
//! Each port gets one connection attempt; a port that connected is tried once more,
//! alone, before it counts as open (see [`tcp_scan`]). What happened is recorded as
//! [`EventKind::TcpConnect`] events on channel [`CHANNEL`], so `verify` re-derives the
//! open ports from the events alone ([`open_ports_connected`]) instead of trusting a
//! summary: every connection that was made is an event of its own, with the scan's
//! end of it (a connection to itself, loopback's simultaneous open, is told apart by
//! that); the attempts that made no connection are recorded together, one event per
//! way they ended (`refused`, `timed out`, ...) listing the ports, so a scan of 65535
//! ports is a handful of events, not 65535.
//!
//! How the events write outcomes and port lists, and the rule `verify` re-derives the
//! open ports with, are `proofrig_model::wire::tcp`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proofrig_model::events::{ChannelId, EventKind, Recorder};
use proofrig_model::wire::tcp::{format_ports, CHANNEL, CONNECTED, CONNECTED_TO_ITSELF};

/// How one connection attempt ended.
enum Attempt {
    /// Connected; the scan's own end of the connection.
    Connected(SocketAddr),
    /// Did not connect (or connected to itself): how it ended.
    Unanswered(String),
}

/// Scan `ports` of `address` (`concurrency` attempts at once, each given `per_port`)
/// and return the open ports, recording every attempt (see the module doc).
pub async fn tcp_scan(
    device: &str,
    address: &str,
    ports: &[u16],
    concurrency: usize,
    per_port: Duration,
    recorder: &Recorder,
) -> Result<Vec<u16>, String> {
    let ip = crate::net::resolve_ip(address).await?;
    let channel = ChannelId::new(device, CHANNEL);
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for &port in ports {
        let permit = limit.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (recorder, channel) = (recorder.clone(), channel.clone());
        tasks.spawn(async move {
            let attempt = attempt(ip, port, per_port).await;
            drop(permit);
            // Recorded as it happens, each on its own.
            record_connected(&recorder, &channel, ip, port, 1, &attempt);
            (port, attempt)
        });
    }
    let mut answered = Vec::new();
    let mut unanswered: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        let (port, attempt) = result.map_err(|e| e.to_string())?;
        match attempt {
            Attempt::Connected(_) => answered.push(port),
            Attempt::Unanswered(how) => unanswered.entry(how).or_default().push(port),
        }
    }
    record_unanswered(recorder, &channel, ip, 1, unanswered);
    answered.sort_unstable();
    // A listener answers again; a connection that met another of the scan's own
    // sockets half-way (simultaneous open on loopback) does not. So each port that
    // answered is tried once more, alone, before it counts as open.
    let mut open = Vec::new();
    let mut unanswered: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for port in answered {
        let again = attempt(ip, port, per_port).await;
        record_connected(recorder, &channel, ip, port, 2, &again);
        match again {
            Attempt::Connected(_) => open.push(port),
            Attempt::Unanswered(how) => unanswered.entry(how).or_default().push(port),
        }
    }
    record_unanswered(recorder, &channel, ip, 2, unanswered);
    Ok(open)
}

async fn attempt(ip: IpAddr, port: u16, per_port: Duration) -> Attempt {
    match tokio::time::timeout(per_port, tokio::net::TcpStream::connect((ip, port))).await {
        Err(_) => Attempt::Unanswered("timed out".into()),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => Attempt::Unanswered("refused".into()),
        Ok(Err(err)) => Attempt::Unanswered(format!("error: {}", err.kind())),
        // A connection to itself is not a listener: on loopback, a connect to a free
        // port in the ephemeral range can be given that same port as its source and
        // "succeed" by simultaneous open.
        Ok(Ok(stream)) => match (stream.local_addr(), stream.peer_addr()) {
            (Ok(local), Ok(peer)) if local != peer => Attempt::Connected(local),
            (Ok(_), Ok(_)) => Attempt::Unanswered(CONNECTED_TO_ITSELF.into()),
            _ => Attempt::Unanswered("error: the connection has no address".into()),
        },
    }
}

fn record_connected(recorder: &Recorder, channel: &ChannelId, ip: IpAddr, port: u16, attempt: u8, outcome: &Attempt) {
    if let Attempt::Connected(local) = outcome {
        recorder.emit(EventKind::TcpConnect {
            channel: channel.clone(),
            address: ip.to_string(),
            attempt,
            outcome: CONNECTED.into(),
            ports: port.to_string(),
            local: Some(local.to_string()),
        });
    }
}

fn record_unanswered(recorder: &Recorder, channel: &ChannelId, ip: IpAddr, attempt: u8, unanswered: BTreeMap<String, Vec<u16>>) {
    for (outcome, mut ports) in unanswered {
        ports.sort_unstable();
        recorder.emit(EventKind::TcpConnect {
            channel: channel.clone(),
            address: ip.to_string(),
            attempt,
            outcome,
            ports: format_ports(&ports),
            local: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::events::MemorySink;
    use proofrig_model::wire::tcp::{open_ports_connected, Recorded};

    #[tokio::test]
    async fn open_and_closed_ports_on_loopback_follow_from_the_events() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        });
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let sink = MemorySink::new();
        let recorder = Recorder::new(sink.clone());
        let mut ports = vec![open_port, closed_port];
        ports.sort_unstable();
        let open = tcp_scan("dev1", "127.0.0.1", &ports, 4, Duration::from_millis(500), &recorder).await.unwrap();
        assert_eq!(open, [open_port]);

        let events = sink.events();
        let recorded: Vec<Recorded> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::TcpConnect { address, attempt, outcome, ports, local, .. } => {
                    Some(Recorded { address, attempt: *attempt, outcome, ports, local: local.as_deref() })
                }
                _ => None,
            })
            .collect();
        assert_eq!(open_ports_connected("127.0.0.1", &ports, recorded.iter().copied()).unwrap(), [open_port]);
        assert!(recorded.iter().any(|r| r.attempt == 1 && r.outcome == "refused" && r.ports == closed_port.to_string()), "{recorded:?}");
        // A record that drops the second connection, or claims the closed port, is no scan.
        let without_check: Vec<Recorded> = recorded.iter().copied().filter(|r| r.attempt == 1).collect();
        assert!(open_ports_connected("127.0.0.1", &ports, without_check).is_err());
        let text = closed_port.to_string();
        let forged: Vec<Recorded> = recorded
            .iter()
            .copied()
            .map(
                |r| if r.outcome == "refused" { Recorded { outcome: CONNECTED, local: Some("127.0.0.1:1"), ports: &text, ..r } } else { r },
            )
            .collect();
        assert!(open_ports_connected("127.0.0.1", &ports, forged).is_err(), "the closed port was not tried again");
    }
}
