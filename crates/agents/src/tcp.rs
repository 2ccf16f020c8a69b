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

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proofrig_model::events::{ChannelId, EventKind, Recorder};

/// The channel a TCP scan's events are recorded on.
pub const CHANNEL: &str = "tcp-scan";

/// The outcome of an attempt that made a connection.
pub const CONNECTED: &str = "connected";
/// The outcome of an attempt whose connection met the scan's own socket (loopback).
pub const CONNECTED_TO_ITSELF: &str = "connected to itself";

/// How one connection attempt ended.
enum Attempt {
    /// Connected; the scan's own end of the connection.
    Connected(SocketAddr),
    /// Did not connect (or connected to itself): how it ended.
    Unanswered(String),
}

/// Scan `ports` of `address` (`concurrency` attempts at once, each given `per_port`)
/// and return the open ports, recording every attempt (see the module doc).
pub async fn tcp_scan(device: &str, address: &str, ports: &[u16], concurrency: usize, per_port: Duration, recorder: &Recorder) -> Result<Vec<u16>, String> {
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
        recorder.emit(EventKind::TcpConnect { channel: channel.clone(), address: ip.to_string(), attempt, outcome, ports: format_ports(&ports), local: None });
    }
}

/// Ports as a list of ranges, `1-20,22,24-79` (sorted input).
pub fn format_ports(ports: &[u16]) -> String {
    let mut out = String::new();
    let mut index = 0;
    while index < ports.len() {
        let start = ports[index];
        let mut end = start;
        while index + 1 < ports.len() && ports[index + 1] == end.wrapping_add(1) && end < u16::MAX {
            index += 1;
            end = ports[index];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        index += 1;
    }
    out
}

/// The ports of a list [`format_ports`] wrote, each as often as it is listed.
pub fn parse_ports(list: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| s.parse::<u16>().map_err(|_| format!("`{s}` in the port list `{list}` is not a port"));
        let (from, to) = (parse(from)?, parse(to)?);
        if from > to {
            return Err(format!("the range `{part}` runs backwards"));
        }
        ports.extend(from..=to);
    }
    Ok(ports)
}

/// One recorded attempt of a scan, as [`open_ports_connected`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub address: &'a str,
    pub attempt: u8,
    pub outcome: &'a str,
    pub ports: &'a str,
    pub local: Option<&'a str>,
}

/// The open ports a scan of `scanned` on `address` recorded: every port was tried
/// exactly once, each that connected (to another socket than the scan's own) exactly
/// once more, and the open ones are those that connected both times. An error says
/// how the record falls short of a scan.
pub fn open_ports_connected<'a>(address: &str, scanned: &[u16], recorded: impl IntoIterator<Item = Recorded<'a>>) -> Result<Vec<u16>, String> {
    let mut tried: [BTreeMap<u16, bool>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for event in recorded {
        if event.address != address {
            return Err(format!("an attempt went to {} instead of {address}", event.address));
        }
        let pass = match event.attempt {
            1 | 2 => &mut tried[usize::from(event.attempt - 1)],
            other => return Err(format!("an attempt is numbered {other}; a scan makes at most 2 per port")),
        };
        let ports = parse_ports(event.ports)?;
        let connected = event.outcome == CONNECTED;
        if connected {
            let (Some(local), [port]) = (event.local, ports.as_slice()) else {
                return Err("a connection is recorded without its own port and the scan's end of it".into());
            };
            let peer = format!("{address}:{port}").parse::<SocketAddr>().or_else(|_| format!("[{address}]:{port}").parse()).map_err(|_| format!("`{address}` is not an IP address"))?;
            if local.parse::<SocketAddr>().ok() == Some(peer) {
                return Err(format!("the connection to port {port} is recorded as made, but it met the scan's own socket"));
            }
        }
        for port in ports {
            if pass.insert(port, connected).is_some() {
                return Err(format!("port {port} is recorded twice in attempt {}", event.attempt));
            }
        }
    }
    if !tried[0].keys().copied().eq(scanned.iter().copied()) {
        return Err("the ports attempted are not the ports scanned".into());
    }
    let answered: Vec<u16> = tried[0].iter().filter(|(_, c)| **c).map(|(p, _)| *p).collect();
    if !tried[1].keys().copied().eq(answered.iter().copied()) {
        return Err("the ports tried again are not the ones that connected".into());
    }
    Ok(tried[1].iter().filter(|(_, c)| **c).map(|(p, _)| *p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::events::MemorySink;

    #[test]
    fn port_lists_round_trip_as_ranges() {
        for ports in [vec![], vec![22], vec![1, 2, 3, 5, 7, 8, 65534, 65535], (1..=65535).collect::<Vec<u16>>()] {
            let text = format_ports(&ports);
            assert_eq!(parse_ports(&text).unwrap(), ports, "{text}");
        }
        assert_eq!(format_ports(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        assert!(parse_ports("9-3").is_err());
    }

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
        let forged: Vec<Recorded> = recorded.iter().copied().map(|r| if r.outcome == "refused" { Recorded { outcome: CONNECTED, local: Some("127.0.0.1:1"), ports: &text, ..r } } else { r }).collect();
        assert!(open_ports_connected("127.0.0.1", &ports, forged).is_err(), "the closed port was not tried again");
    }
}
