//! The SNMPv1/v2c agent a weak device leaves running, for the unnecessary-services
//! test to find.
//!
//! It answers a GetRequest carrying one of its read communities (`public`,
//! `private`: the factory defaults) with a GetResponse giving `sysDescr.0`, in the
//! request's own version; anything else it drops silently, as an SNMP agent does with
//! a wrong community. Switched by power like every other service: off, the socket is
//! closed, so the host answers probes with ICMP port unreachable.
//!
//! Its BER is its own, not the prober's (`proofrig_model::wire::snmp`): a device that
//! shared the tester's encoder would hide a bug in it from every test.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::device_os::DeviceOs;
use crate::SimError;

/// The read communities a weak device ships with.
pub const DEFAULT_COMMUNITIES: &[&str] = &["public", "private"];

/// A running SNMP agent, gated by power.
pub struct SnmpAgent {
    addr: SocketAddr,
    os: DeviceOs,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SnmpAgent {
    /// Binds `addr` (port 0 picks a free port) and starts answering.
    pub async fn start(addr: SocketAddr, os: DeviceOs) -> Result<Self, SimError> {
        let socket = UdpSocket::bind(addr).await.map_err(|source| SimError::Bind { addr, source })?;
        let bound = socket.local_addr().map_err(|source| SimError::Bind { addr, source })?;
        let agent = SnmpAgent { addr: bound, os, task: Mutex::new(None) };
        agent.serve(socket);
        Ok(agent)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_powered(&self) -> bool {
        self.task.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    pub async fn set_powered(&self, powered: bool) -> Result<(), SimError> {
        if powered == self.is_powered() {
            return Ok(());
        }
        if powered {
            let socket = UdpSocket::bind(self.addr).await.map_err(|source| SimError::Bind { addr: self.addr, source })?;
            self.serve(socket);
        } else {
            self.stop().await;
        }
        Ok(())
    }

    pub async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.os.remove_udp_listener(self.addr);
    }

    fn serve(&self, socket: UdpSocket) {
        self.os.add_udp_listener(self.addr, "snmpd");
        let identity = self.os.identity();
        let description = format!("{} {} firmware {}", identity.vendor, identity.model, identity.firmware);
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_536];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buffer).await else { continue };
                if let Some(reply) = answer(&buffer[..len], description.as_bytes()) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }
}

/// The GetResponse to a v1/v2c GetRequest with a known community, if any.
fn answer(request: &[u8], description: &[u8]) -> Option<Vec<u8>> {
    let message = element(request, 0x30)?.0;
    let (version, rest) = element(message, 0x02)?;
    if version.len() != 1 || version[0] > 1 {
        return None;
    }
    let (community, rest) = element(rest, 0x04)?;
    if !DEFAULT_COMMUNITIES.iter().any(|c| c.as_bytes() == community) {
        return None;
    }
    let (pdu, _) = element(rest, 0xa0)?;
    let (request_id, rest) = element(pdu, 0x02)?;
    let (_error_status, rest) = element(rest, 0x02)?;
    let (_error_index, rest) = element(rest, 0x02)?;
    let (varbinds, _) = element(rest, 0x30)?;
    let (varbind, _) = element(varbinds, 0x30)?;
    let (oid, _) = element(varbind, 0x06)?;
    // sysDescr.0 it knows; any other object is noSuchName (v1) / noSuchObject (v2c).
    let known = oid == [0x2b, 6, 1, 2, 1, 1, 1, 0];
    let value = match (known, version[0]) {
        (true, _) => encode(0x04, description),
        (false, 1) => vec![0x80, 0x00],
        (false, _) => vec![0x05, 0x00],
    };
    let error_status = if !known && version[0] == 0 { 2 } else { 0 };
    let varbind = encode(0x30, &[encode(0x06, oid), value].concat());
    let pdu = [encode(0x02, request_id), encode(0x02, &[error_status]), encode(0x02, &[0]), encode(0x30, &varbind)].concat();
    let body = [encode(0x02, version), encode(0x04, community), encode(0xa2, &pdu)].concat();
    Some(encode(0x30, &body))
}

/// The value of the TLV at the start of `data` if its tag is `tag`, and what follows it.
fn element(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = data.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 if rest.len() >= 2 => (usize::from(rest[0]) << 8 | usize::from(rest[1]), &rest[2..]),
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        len @ 0..=0x7f => out.push(len as u8),
        len @ 0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        len => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_known_community_in_its_version_and_drops_the_rest() {
        // net-snmp's `snmpget -v2c -c public HOST sysDescr.0`, request-id 0x7e2a5272.
        let request: &[u8] = &[
            0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c, 0x02, 0x04, 0x7e, 0x2a, 0x52, 0x72,
            0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05,
            0x00,
        ];
        let reply = answer(request, b"SIM").unwrap();
        let expected: &[u8] = &[
            0x30, 0x2c, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa2, 0x1f, 0x02, 0x04, 0x7e, 0x2a, 0x52, 0x72,
            0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x11, 0x30, 0x0f, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x04,
            0x03, b'S', b'I', b'M',
        ];
        assert_eq!(reply, expected);
        let mut wrong = request.to_vec();
        wrong[7] = b'q';
        assert_eq!(answer(&wrong, b"SIM"), None, "an unknown community is dropped");
        let mut v3 = request.to_vec();
        v3[4] = 3;
        assert_eq!(answer(&v3, b"SIM"), None, "only v1 and v2c");
        for cut in 0..request.len() {
            assert_eq!(answer(&request[..cut], b"SIM"), None, "truncated at {cut}");
        }
    }
}
