//! The snmpd peer answers the way a scanner relies on: the right community gets a
//! GetResponse, a wrong one (or v2c at a v3-only agent) gets silence, and a v3-only agent
//! answers SNMPv3 engine discovery. Packets are BER built by hand, sent over plain UDP.

use std::net::UdpSocket;
use std::time::Duration;

use proofrig_testpeers::snmpd::{Snmpd, SnmpdConfig};

const SYS_DESCR_0: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const GET_REQUEST: u8 = 0xA0;
const GET_RESPONSE: u8 = 0xA2;
const REPORT: u8 = 0xA8;

/// A BER TLV with a definite length (short form below 128, else long form).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn int(value: u32) -> Vec<u8> {
    // Shortest two's complement: drop leading zero bytes unless the next has its top bit set.
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 3 && bytes[start] == 0 && bytes[start + 1] < 0x80 {
        start += 1;
    }
    tlv(0x02, &bytes[start..])
}

fn octets(value: &[u8]) -> Vec<u8> {
    tlv(0x04, value)
}

fn oid(arcs: &[u32]) -> Vec<u8> {
    let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut groups = vec![(arc & 0x7F) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7F) as u8);
            rest >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    tlv(0x06, &out)
}

/// A PDU: request-id, error-status 0, error-index 0 and varbinds `oids` = NULL.
fn pdu(tag: u8, request_id: u32, oids: &[&[u32]]) -> Vec<u8> {
    let varbinds: Vec<Vec<u8>> = oids.iter().map(|o| seq(&[oid(o), vec![0x05, 0x00]])).collect();
    tlv(tag, &[int(request_id), int(0), int(0), seq(&varbinds)].concat())
}

/// An SNMPv2c GetRequest for sysDescr.0.
fn v2c_get(community: &str, request_id: u32) -> Vec<u8> {
    seq(&[int(1), octets(community.as_bytes()), pdu(GET_REQUEST, request_id, &[SYS_DESCR_0])])
}

/// An SNMPv3 engine discovery: noAuthNoPriv, reportable, empty engine id and user,
/// an empty GetRequest.
fn v3_discovery(msg_id: u32) -> Vec<u8> {
    let global = seq(&[int(msg_id), int(65507), octets(&[0x04]), int(3)]);
    let usm = seq(&[octets(b""), int(0), int(0), octets(b""), octets(b""), octets(b"")]);
    let scoped = seq(&[octets(b""), octets(b""), pdu(GET_REQUEST, msg_id, &[])]);
    seq(&[int(3), global, octets(&usm), scoped])
}

/// Splits the first TLV off `data`: (tag, content, rest).
fn read_tlv(data: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (data[0], data[1] as usize);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7F;
        (data[2..2 + n].iter().fold(0, |acc, b| acc << 8 | *b as usize), 2 + n)
    };
    (tag, &data[header..header + len], &data[header + len..])
}

fn read_int(data: &[u8]) -> (u32, &[u8]) {
    let (tag, content, rest) = read_tlv(data);
    assert_eq!(tag, 0x02, "expected an INTEGER");
    (content.iter().fold(0, |acc, b| acc << 8 | *b as u32), rest)
}

/// Sends `packet` to the agent and returns its reply, or None after `wait` of silence.
fn exchange(snmpd: &Snmpd, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect((snmpd.address(), snmpd.port())).unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send(packet).unwrap();
    let mut buf = [0u8; 65535];
    match socket.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv from snmpd: {e}"),
    }
}

/// Asserts a v2c GetResponse for `request_id` with no error and returns its sysDescr value.
fn sys_descr_from(reply: &[u8], request_id: u32) -> String {
    let (_, message, _) = read_tlv(reply);
    let (version, rest) = read_int(message);
    assert_eq!(version, 1, "v2c reply");
    let (_, _community, rest) = read_tlv(rest);
    let (tag, pdu, _) = read_tlv(rest);
    assert_eq!(tag, GET_RESPONSE, "GetResponse PDU");
    let (id, rest) = read_int(pdu);
    assert_eq!(id, request_id, "request-id echoed");
    let (error_status, rest) = read_int(rest);
    assert_eq!(error_status, 0, "error-status");
    let (_, rest) = read_int(rest);
    let (_, varbinds, _) = read_tlv(rest);
    let (_, varbind, _) = read_tlv(varbinds);
    let (_, _oid, value) = read_tlv(varbind);
    let (tag, text, _) = read_tlv(value);
    assert_eq!(tag, 0x04, "sysDescr is an OCTET STRING");
    String::from_utf8_lossy(text).into_owned()
}

#[test]
fn v2c_community_gets_sys_descr_with_the_same_request_id() {
    let snmpd = Snmpd::start(SnmpdConfig::v2c(&["public"]));
    let reply = exchange(&snmpd, &v2c_get("public", 0x1234_5678), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no reply to community `public`; snmpd log:\n{}", snmpd.log()));
    let descr = sys_descr_from(&reply, 0x1234_5678);
    assert!(!descr.is_empty(), "sysDescr is empty");
}

#[test]
fn v2c_wrong_community_gets_no_reply() {
    let snmpd = Snmpd::start(SnmpdConfig::v2c(&["public"]));
    let reply = exchange(&snmpd, &v2c_get("wrong", 7), Duration::from_secs(1));
    assert!(reply.is_none(), "community `wrong` was answered: {reply:02x?}");
    // The silence is the community's doing: the agent still answers the right one.
    assert!(exchange(&snmpd, &v2c_get("public", 8), Duration::from_secs(5)).is_some(), "snmpd log:\n{}", snmpd.log());
}

#[test]
fn v3_only_ignores_v2c_but_answers_v3_discovery_with_a_report() {
    let snmpd = Snmpd::start(SnmpdConfig::v3_only());
    let reply = exchange(&snmpd, &v2c_get("public", 9), Duration::from_secs(1));
    assert!(reply.is_none(), "a v3-only agent answered v2c `public`: {reply:02x?}");

    let reply = exchange(&snmpd, &v3_discovery(4242), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no reply to v3 discovery; snmpd log:\n{}", snmpd.log()));
    let (_, message, _) = read_tlv(&reply);
    let (version, rest) = read_int(message);
    assert_eq!(version, 3, "v3 reply");
    let (_, global, rest) = read_tlv(rest);
    assert_eq!(read_int(global).0, 4242, "msgID echoed");
    let (_, usm, rest) = read_tlv(rest);
    let (_, engine_id, _) = read_tlv(read_tlv(usm).1);
    assert!(!engine_id.is_empty(), "the report carries the agent's engine id");
    let (_, scoped, _) = read_tlv(rest);
    let (_, _context_engine, rest) = read_tlv(scoped);
    let (_, _context_name, rest) = read_tlv(rest);
    assert_eq!(read_tlv(rest).0, REPORT, "Report PDU");
}
