//! SNMP community probes over UDP: does a device's agent still answer SNMPv1 or
//! SNMPv2c, the versions whose only credential is a community string sent in clear?
//! TS 33.117 4.3.2.1 names them among the services a network product must not run.
//!
//! A probe is one GetRequest for `sysDescr.0` per (version, community), each with its
//! own request-id. An agent that accepts that version and community answers with a
//! response carrying the same request-id; one that does not (SNMPv3 only, the version
//! disabled, an unknown community) stays silent, as the SNMP standards require. Every
//! datagram sent and received is recorded whole, so `verify` re-derives which probes
//! were answered from the datagrams alone ([`answered_probes`]).
//!
//! The requests, the answers' BER and that rule are `proofrig_model::wire::snmp`,
//! which `verify` shares.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
// What a probe takes and returns; the BER and answer rules live in proofrig_model::wire::snmp.
use proofrig_model::wire::snmp::{answered_probes, get_request, CHANNEL};
pub use proofrig_model::wire::snmp::{ProbeResult, SnmpVersion};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub peer: SocketAddr,
    pub probes: Vec<ProbeResult>,
    /// The host said nothing listens on the port (ICMP port unreachable).
    pub port_unreachable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("device {device}: {reason}")]
    Resolve { device: String, reason: String },
    #[error("device {device}: SNMP probe of {peer}: {source}")]
    Io { device: String, peer: SocketAddr, source: std::io::Error },
}

/// What to probe: `device`'s SNMP agent at `address:port`, with each community in
/// each version, waiting up to `wait` for answers.
pub struct CommunityProbe<'a> {
    pub device: &'a str,
    pub address: &'a str,
    pub port: u16,
    pub versions: &'a [SnmpVersion],
    pub communities: &'a [String],
    pub wait: Duration,
}

/// Send one GetRequest per version and community, then collect answers for up to
/// `wait` (less once every request is answered, or once the host reports that nothing
/// listens on the port). Every datagram is recorded on `device`'s [`CHANNEL`].
pub async fn probe_communities(probe: &CommunityProbe<'_>, recorder: &Recorder) -> Result<ProbeOutcome, SnmpError> {
    let CommunityProbe { device, address, port, versions, communities, wait } = *probe;
    let ip = crate::net::resolve_ip(address).await.map_err(|reason| SnmpError::Resolve { device: device.to_string(), reason })?;
    let peer = SocketAddr::new(ip, port);
    let io = |source| SnmpError::Io { device: device.to_string(), peer, source };
    let local: SocketAddr = if peer.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    // Connected: only the target's datagrams come back, and a port nothing listens on
    // shows as a refused receive.
    socket.connect(peer).await.map_err(io)?;
    let channel = ChannelId::new(device, CHANNEL);
    let peer_text = peer.to_string();
    let first_id = first_request_id();
    let mut requests = Vec::new();
    for version in versions {
        for community in communities {
            let id = first_id.wrapping_add(requests.len() as i32) & i32::MAX;
            requests.push((*version, community.clone(), id));
        }
    }
    let mut port_unreachable = false;
    for (version, community, id) in &requests {
        let datagram = get_request(*version, community, *id);
        recorder.emit(EventKind::Datagram {
            channel: channel.clone(),
            direction: Direction::Out,
            peer: peer_text.clone(),
            data: datagram.clone(),
        });
        if let Err(err) = socket.send(&datagram).await {
            if err.kind() == std::io::ErrorKind::ConnectionRefused {
                port_unreachable = true;
            } else {
                return Err(io(err));
            }
        }
    }
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = vec![0u8; 65_536];
    loop {
        let answered = answered_probes(&requests, replies.iter().map(Vec::as_slice));
        // The requests went out together: a host that said nothing listens there
        // said it of all of them, and waiting on would only delay the run.
        if port_unreachable || answered.iter().all(|a| *a) {
            break;
        }
        match tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            Err(_) => break,
            Ok(Ok(len)) => {
                let data = buffer[..len].to_vec();
                recorder.emit(EventKind::Datagram {
                    channel: channel.clone(),
                    direction: Direction::In,
                    peer: peer_text.clone(),
                    data: data.clone(),
                });
                replies.push(data);
            }
            // ICMP port unreachable for one of the requests: nothing listens there.
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => port_unreachable = true,
            Ok(Err(err)) => return Err(io(err)),
        }
    }
    if port_unreachable {
        recorder.emit(EventKind::Note {
            channel: channel.clone(),
            text: format!("{peer}: port unreachable (nothing listens on UDP port {port})"),
        });
    }
    let answered = answered_probes(&requests, replies.iter().map(Vec::as_slice));
    let probes = requests
        .into_iter()
        .zip(answered)
        .map(|((version, community, request_id), answered)| ProbeResult { version, community, request_id, answered })
        .collect();
    Ok(ProbeOutcome { peer, probes, port_unreachable })
}

/// A request-id unlikely to match a stale answer to an earlier probe.
fn first_request_id() -> i32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (nanos & 0x3fff_ffff) as i32 | 1
}
