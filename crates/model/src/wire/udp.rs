//! The rules of a UDP port scan that `verify` re-derives its result with: the probe
//! datagram each port is sent ([`probe_payload`]), what a scan found
//! ([`UdpScanOutcome`], and the note it records), and the open ports the recorded
//! datagrams show ([`open_ports_answered`]). The scan itself, pacing and repeating
//! probes on real sockets, is `proofrig_agents::udp`.

use std::net::{IpAddr, SocketAddr};

use crate::events::Direction;

/// The channel a UDP scan's datagrams and its summary are recorded on.
pub const CHANNEL: &str = "udp-scan";

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpScanOutcome {
    pub address: IpAddr,
    /// Ports whose service answered the probe.
    pub open: Vec<u16>,
    /// Ports silent to both probes: a service that ignores the probe, or a filter.
    pub open_filtered: Vec<u16>,
    /// How many ports answered with ICMP port unreachable.
    pub closed: usize,
}

impl UdpScanOutcome {
    /// Every port that did not say it is closed, in order.
    pub fn not_closed(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.open.iter().chain(&self.open_filtered).copied().collect();
        ports.sort_unstable();
        ports
    }

    /// The note a scan records: what `verify` checks the closed and silent ports against.
    pub fn summary(&self, scanned: usize) -> String {
        format!(
            "UDP scan of {}, {scanned} ports: open {:?}, open|filtered {:?}, closed {}",
            self.address, self.open, self.open_filtered, self.closed
        )
    }
}

/// The datagram sent to `port`: a request its well-known service answers where one is
/// easy to make (SNMP, NTP), else an empty datagram.
pub fn probe_payload(port: u16) -> Vec<u8> {
    match port {
        161 => crate::wire::snmp::get_request(crate::wire::snmp::SnmpVersion::V2c, "public", 0x5053),
        // An NTPv4 client request: LI 0, version 4, mode 3, the rest zero.
        123 => {
            let mut request = vec![0u8; 48];
            request[0] = 0x23;
            request
        }
        _ => Vec::new(),
    }
}

/// The open ports the recorded datagrams of a scan show: those that answered.
pub fn open_ports_answered<'a>(datagrams: impl IntoIterator<Item = (Direction, &'a str)>) -> Vec<u16> {
    let mut ports: Vec<u16> = datagrams
        .into_iter()
        .filter(|(direction, _)| *direction == Direction::In)
        .filter_map(|(_, peer)| peer.parse::<SocketAddr>().ok().map(|a| a.port()))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_services_get_a_request_they_answer() {
        assert_eq!(crate::wire::snmp::parse_message(&probe_payload(161)).map(|h| h.community), Some(b"public".to_vec()));
        assert_eq!(probe_payload(123)[0], 0x23);
        assert!(probe_payload(9).is_empty());
    }
}
