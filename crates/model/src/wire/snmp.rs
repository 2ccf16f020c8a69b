//! The wire side of SNMP community probes (TS 33.117 4.3.2.1): the GetRequest a probe
//! sends for `sysDescr.0`, the header of an SNMP v1/v2c message, and the rule that
//! says which requests an answer belongs to ([`answered_probes`]). The probe
//! (`proofrig_agents::snmp`) applies it to the datagrams on the wire, `verify` to the
//! datagrams recorded, so both reach the same answer.
//!
//! The BER here is written by hand: a request is a fixed shape of a few dozen bytes,
//! and of an answer only the version, community and request-id are read. Replay must
//! decode whatever a device sent, byte for byte as recorded, without trusting it; a
//! short reader that checks every length is easier to audit than an SNMP stack.

use serde::{Deserialize, Serialize};

/// The OID the probes ask for: `sysDescr.0` (1.3.6.1.2.1.1.1.0), which every agent has.
const SYS_DESCR: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 1, 0];

/// The channel an SNMP probe's datagrams are recorded on.
pub const CHANNEL: &str = "snmp";

/// The community-based SNMP versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnmpVersion {
    V1,
    V2c,
}

impl SnmpVersion {
    /// The version field on the wire.
    pub fn wire(self) -> i64 {
        match self {
            SnmpVersion::V1 => 0,
            SnmpVersion::V2c => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SnmpVersion::V1 => "v1",
            SnmpVersion::V2c => "v2c",
        }
    }
}

/// One request of a probe and whether the agent answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub version: SnmpVersion,
    pub community: String,
    pub request_id: i32,
    pub answered: bool,
}

impl ProbeResult {
    /// `version/community`, as a step's `answered` list names an answered request.
    pub fn label(&self) -> String {
        format!("{}/{}", self.version.as_str(), self.community)
    }
}

/// The answered requests of `probes`, by [`ProbeResult::label`]: what the probe step
/// outputs and what replay re-derives must be the same list.
pub fn answered_labels(probes: &[ProbeResult]) -> Vec<String> {
    probes.iter().filter(|p| p.answered).map(ProbeResult::label).collect()
}

/// An SNMP GetRequest for `sysDescr.0`.
pub fn get_request(version: SnmpVersion, community: &str, request_id: i32) -> Vec<u8> {
    let varbind = tlv(0x30, &[tlv(0x06, SYS_DESCR), vec![0x05, 0x00]].concat());
    let pdu = [integer(request_id.into()), integer(0), integer(0), tlv(0x30, &varbind)].concat();
    let message = [integer(version.wire()), tlv(0x04, community.as_bytes()), tlv(0xa0, &pdu)].concat();
    tlv(0x30, &message)
}

/// The fields of an SNMP v1/v2c message a probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    pub version: i64,
    pub community: Vec<u8>,
    /// The PDU's tag: 0xa2 is a response.
    pub pdu: u8,
    pub request_id: i64,
}

/// Read the header of an SNMP v1/v2c message; `None` for anything else (an SNMPv3
/// message, a truncated or malformed datagram).
pub fn parse_message(data: &[u8]) -> Option<MessageHeader> {
    let mut outer = Reader(data);
    let mut message = Reader(outer.expect(0x30)?);
    let version = message.integer()?;
    let community = message.expect(0x04)?.to_vec();
    let (pdu, body) = message.any()?;
    if !(0xa0..=0xa8).contains(&pdu) {
        return None;
    }
    let request_id = Reader(body).integer()?;
    Some(MessageHeader { version, community, pdu, request_id })
}

/// Which of `probes` the datagrams `replies` answer: a response of the probe's version
/// and community carrying its request-id. Used by the probe and by replay alike.
pub fn answered_probes<'a>(probes: &[(SnmpVersion, String, i32)], replies: impl IntoIterator<Item = &'a [u8]>) -> Vec<bool> {
    let headers: Vec<MessageHeader> = replies.into_iter().filter_map(parse_message).filter(|h| h.pdu == 0xa2).collect();
    probes
        .iter()
        .map(|(version, community, id)| {
            headers.iter().any(|h| h.version == version.wire() && h.community == community.as_bytes() && h.request_id == i64::from(*id))
        })
        .collect()
}

/// One BER TLV with a definite length.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// A BER INTEGER in the fewest bytes.
fn integer(value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 7 && ((bytes[start] == 0 && bytes[start + 1] < 0x80) || (bytes[start] == 0xff && bytes[start + 1] >= 0x80)) {
        start += 1;
    }
    tlv(0x02, &bytes[start..])
}

/// Reads TLVs off a byte slice, checking every length against what is there.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn any(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            (rest[..count].iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b)), &rest[count..])
        };
        if rest.len() < len {
            return None;
        }
        self.0 = &rest[len..];
        Some((tag, &rest[..len]))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.any().filter(|(t, _)| *t == tag).map(|(_, value)| value)
    }

    fn integer(&mut self) -> Option<i64> {
        let value = self.expect(0x02)?;
        if value.is_empty() || value.len() > 8 {
            return None;
        }
        let negative = value[0] >= 0x80;
        Some(value.iter().fold(if negative { -1i64 } else { 0 }, |acc, b| acc << 8 | i64::from(*b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_request_is_the_ber_net_snmp_sends() {
        // What net-snmp's `snmpget -v2c -c public HOST 1.3.6.1.2.1.1.1.0` sends (read
        // off a UDP socket), with its random 4-byte request-id replaced by 0x1234.
        let expected: &[u8] = &[
            0x30, 0x27, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1a, 0x02, 0x02, 0x12, 0x34, 0x02, 0x01,
            0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
        ];
        assert_eq!(get_request(SnmpVersion::V2c, "public", 0x1234), expected);
        let header = parse_message(expected).unwrap();
        assert_eq!(header, MessageHeader { version: 1, community: b"public".to_vec(), pdu: 0xa0, request_id: 0x1234 });
    }

    #[test]
    fn integers_take_the_fewest_bytes_and_read_back() {
        for value in [0i64, 1, 127, 128, 255, 256, 0x7fff_ffff, -1, -128, -129] {
            let encoded = integer(value);
            assert_eq!(Reader(&encoded).integer(), Some(value), "{value}: {encoded:02x?}");
        }
        assert_eq!(integer(127), [2, 1, 0x7f]);
        assert_eq!(integer(128), [2, 2, 0, 0x80]);
        assert_eq!(integer(-1), [2, 1, 0xff]);
    }

    #[test]
    fn long_communities_use_long_form_lengths() {
        let community = "c".repeat(300);
        let request = get_request(SnmpVersion::V1, &community, 7);
        assert_eq!(&request[..2], &[0x30, 0x82]);
        let header = parse_message(&request).unwrap();
        assert_eq!((header.version, header.community.len(), header.request_id), (0, 300, 7));
    }

    #[test]
    fn truncated_or_foreign_datagrams_are_not_answers() {
        let reply = {
            let mut r = get_request(SnmpVersion::V2c, "public", 99);
            r[13] = 0xa2;
            r
        };
        let probes = [
            (SnmpVersion::V2c, "public".to_string(), 99),
            (SnmpVersion::V1, "public".to_string(), 99),
            (SnmpVersion::V2c, "private".to_string(), 99),
        ];
        assert_eq!(answered_probes(&probes, [&reply[..]]), [true, false, false]);
        for cut in 0..reply.len() {
            assert_eq!(answered_probes(&probes[..1], [&reply[..cut]]), [false], "cut at {cut}");
        }
        // A request (0xa0) echoed back is not a response; an SNMPv3 message has no community.
        assert_eq!(answered_probes(&probes[..1], [&get_request(SnmpVersion::V2c, "public", 99)[..]]), [false]);
        let v3: &[u8] = &[0x30, 0x0b, 0x02, 0x01, 0x03, 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00];
        assert_eq!(parse_message(v3), None);
        // A length that claims more than the datagram holds.
        assert_eq!(parse_message(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
    }
}
