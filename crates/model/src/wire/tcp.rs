//! The rules of a TCP connect scan that `verify` re-derives its result with: how the
//! scan's events write outcomes and port lists ([`CONNECTED`], [`format_ports`]), and
//! the open ports those events show ([`open_ports_connected`]): every port tried once,
//! each that connected tried once more, open when it connected both times. The scan
//! itself, on real sockets, is `proofrig_agents::tcp`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The channel a TCP scan's events are recorded on.
pub const CHANNEL: &str = "tcp-scan";

/// The outcome of an attempt that made a connection.
pub const CONNECTED: &str = "connected";
/// The outcome of an attempt whose connection met the scan's own socket (loopback).
pub const CONNECTED_TO_ITSELF: &str = "connected to itself";

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
pub fn open_ports_connected<'a>(
    address: &str,
    scanned: &[u16],
    recorded: impl IntoIterator<Item = Recorded<'a>>,
) -> Result<Vec<u16>, String> {
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
            let peer = format!("{address}:{port}")
                .parse::<SocketAddr>()
                .or_else(|_| format!("[{address}]:{port}").parse())
                .map_err(|_| format!("`{address}` is not an IP address"))?;
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

    #[test]
    fn port_lists_round_trip_as_ranges() {
        for ports in [vec![], vec![22], vec![1, 2, 3, 5, 7, 8, 65534, 65535], (1..=65535).collect::<Vec<u16>>()] {
            let text = format_ports(&ports);
            assert_eq!(parse_ports(&text).unwrap(), ports, "{text}");
        }
        assert_eq!(format_ports(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        assert!(parse_ports("9-3").is_err());
    }
}
