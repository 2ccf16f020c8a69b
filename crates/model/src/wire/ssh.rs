//! The SSH bytes `verify` reads again, and the rules it reads them with.
//!
//! An algorithm audit records what a server sent before key exchange: its
//! identification, then its SSH_MSG_KEXINIT, the first binary packet, still
//! unencrypted (RFC 4253 7.1). [`parse_server_offer`] reads that packet's name-lists,
//! checking every length against what was received, and [`ServerAlgorithms::audited`]
//! turns them into the audit's output, so replay derives the output from the bytes on
//! record. A negotiation probe sends a hand-made client KEXINIT offering only the
//! algorithms under test ([`client_kexinit`]); replay builds it again from the step and
//! requires it on the wire. A login attempt notes the authentication methods the server
//! offered behind [`METHODS_OFFERED`]. The connections themselves (libssh2 sessions,
//! the audit's and the probe's sockets) are `proofrig_agents::ssh`.
//!
//! Not every name in a KEXINIT is an algorithm. Servers append markers to the key
//! exchange list that only signal a protocol feature (RFC 8308's `ext-info-s`,
//! OpenSSH's strict key exchange `kex-strict-s-v00@openssh.com`, dropbear's
//! `kexguess2@matt.ucc.asn.au`); they can never be negotiated as a key exchange. An
//! audit that compared them with an allowed profile would fail a device for a flag,
//! so [`ServerAlgorithms::audited`] sets them apart: the algorithm lists hold
//! algorithms only, and `markers` says which signals the server sent.

use serde::{Deserialize, Serialize};

const SSH_MSG_KEXINIT: u8 = 20;

/// How a login attempt's note of the authentication methods the server offered begins
/// (the methods follow, comma-separated): a step's `methods_offered` is derived from it.
pub const METHODS_OFFERED: &str = "methods offered: ";

/// Everything a server offers in its KEXINIT, in the server's order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAlgorithms {
    /// The identification string, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3` (no CR LF).
    pub banner: String,
    /// Lines the server sent before its identification string (usually none).
    pub pre_banner_lines: Vec<String>,
    /// The `kex_algorithms` name-list as sent: key exchange methods and the markers among
    /// them (see [`KEX_MARKERS`], [`ServerAlgorithms::kex_methods`]).
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub ciphers_client_to_server: Vec<String>,
    pub ciphers_server_to_client: Vec<String>,
    pub macs_client_to_server: Vec<String>,
    pub macs_server_to_client: Vec<String>,
    pub compression_client_to_server: Vec<String>,
    pub compression_server_to_client: Vec<String>,
    pub languages_client_to_server: Vec<String>,
    pub languages_server_to_client: Vec<String>,
    pub first_kex_packet_follows: bool,
}

/// A name a server puts in its `kex_algorithms` list to signal a protocol feature. It
/// names no key exchange: no client can negotiate it, and it says nothing about the
/// strength of the algorithms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KexMarker {
    pub name: &'static str,
    /// What the server says by sending it, for people reading the evidence.
    pub meaning: &'static str,
}

/// Every marker proofrig knows, each from its specification. Only exact names count:
/// an unknown name stays a key exchange, so the audit fails closed on it.
pub const KEX_MARKERS: &[KexMarker] = &[
    // RFC 8308 2.1: the sender is willing to receive SSH_MSG_EXT_INFO.
    KexMarker { name: "ext-info-s", meaning: "server accepts extension information (RFC 8308)" },
    KexMarker { name: "ext-info-c", meaning: "client accepts extension information (RFC 8308)" },
    // OpenSSH PROTOCOL 1.10 (CVE-2023-48795, Terrapin).
    KexMarker {
        name: "kex-strict-s-v00@openssh.com",
        meaning: "server enforces strict key exchange (OpenSSH PROTOCOL 1.10, Terrapin countermeasure)",
    },
    KexMarker {
        name: "kex-strict-c-v00@openssh.com",
        meaning: "client enforces strict key exchange (OpenSSH PROTOCOL 1.10, Terrapin countermeasure)",
    },
    // draft-ietf-sshm-strict-kex: the same signals under their IETF names.
    KexMarker { name: "kex-strict-s", meaning: "server enforces strict key exchange (draft-ietf-sshm-strict-kex)" },
    KexMarker { name: "kex-strict-c", meaning: "client enforces strict key exchange (draft-ietf-sshm-strict-kex)" },
    // Dropbear CHANGES, 2013.57: a first-packet key exchange guess that may succeed more often.
    KexMarker { name: "kexguess2@matt.ucc.asn.au", meaning: "dropbear's extended first key exchange packet guess (dropbear 2013.57)" },
];

/// The marker called `name`, if it is one.
pub fn kex_marker(name: &str) -> Option<&'static KexMarker> {
    KEX_MARKERS.iter().find(|marker| marker.name == name)
}

/// What an audit reports: the algorithms a server offers, by kind, both directions
/// merged, in the server's order, and apart from them the markers it sent. This is an
/// `ssh_audit` step's output; replay derives it again from the recorded KEXINIT bytes
/// ([`parse_server_offer`], then [`ServerAlgorithms::audited`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditedOffer {
    pub banner: String,
    /// Key exchange methods proper.
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub ciphers: Vec<String>,
    pub macs: Vec<String>,
    pub compression: Vec<String>,
    /// The markers of the key exchange list ([`KEX_MARKERS`]), in the server's order.
    pub markers: Vec<String>,
}

impl ServerAlgorithms {
    /// Key exchange methods proper, without the markers ([`KEX_MARKERS`]) a server
    /// appends to signal protocol features, which are not key exchanges.
    pub fn kex_methods(&self) -> Vec<&str> {
        self.kex.iter().map(String::as_str).filter(|name| kex_marker(name).is_none()).collect()
    }

    /// The markers in the key exchange list, in the server's order.
    pub fn markers(&self) -> Vec<&str> {
        self.kex.iter().map(String::as_str).filter(|name| kex_marker(name).is_some()).collect()
    }

    /// The offer as an audit reports it (see [`AuditedOffer`]). Markers are looked for
    /// in the key exchange list only, where they are defined: the same name in another
    /// list would be an algorithm the server claims, and is reported as one.
    pub fn audited(&self) -> AuditedOffer {
        let union = |a: &[String], b: &[String]| {
            let mut all: Vec<String> = a.to_vec();
            all.extend(b.iter().filter(|x| !a.contains(x)).cloned());
            all
        };
        let owned = |names: Vec<&str>| names.into_iter().map(str::to_string).collect();
        AuditedOffer {
            banner: self.banner.clone(),
            kex: owned(self.kex_methods()),
            host_key: self.host_key.clone(),
            ciphers: union(&self.ciphers_client_to_server, &self.ciphers_server_to_client),
            macs: union(&self.macs_client_to_server, &self.macs_server_to_client),
            compression: union(&self.compression_client_to_server, &self.compression_server_to_client),
            markers: owned(self.markers()),
        }
    }

    /// One line per list, for people reading the evidence.
    pub fn summary(&self) -> String {
        let list = |v: &[String]| if v.is_empty() { "(none)".to_string() } else { v.join(",") };
        let markers: Vec<String> =
            self.markers().iter().filter_map(|name| kex_marker(name)).map(|m| format!("{} ({})", m.name, m.meaning)).collect();
        let kex: Vec<String> = self.kex_methods().into_iter().map(str::to_string).collect();
        format!(
            "server {}\nkex: {}\nmarkers: {}\nhost_key: {}\nciphers c2s: {}\nciphers s2c: {}\nmacs c2s: {}\nmacs s2c: {}\n\
             compression c2s: {}\ncompression s2c: {}",
            self.banner,
            list(&kex),
            if markers.is_empty() { "(none)".to_string() } else { markers.join(", ") },
            list(&self.host_key),
            list(&self.ciphers_client_to_server),
            list(&self.ciphers_server_to_client),
            list(&self.macs_client_to_server),
            list(&self.macs_server_to_client),
            list(&self.compression_client_to_server),
            list(&self.compression_server_to_client),
        )
    }
}

/// Parse what a server sent before key exchange (identification lines, then its
/// KEXINIT packet) from recorded bytes. The audit uses it on the wire; `verify` uses
/// it on the transcript, so an audit's result can be re-derived from the evidence.
pub fn parse_server_offer(received: &[u8]) -> Result<ServerAlgorithms, String> {
    let mut pos = 0;
    let mut pre_banner_lines = Vec::new();
    let banner = loop {
        let Some(newline) = received[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i) else {
            return Err("no SSH identification line".into());
        };
        let line = String::from_utf8_lossy(&received[pos..newline]).trim_end_matches('\r').to_string();
        pos = newline + 1;
        if line.starts_with("SSH-") {
            break line;
        }
        pre_banner_lines.push(line);
    };
    let header = received.get(pos..pos + 4).ok_or("the KEXINIT packet is missing")?;
    let packet_length = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
    let packet = received.get(pos + 4..pos + 4 + packet_length).ok_or("the KEXINIT packet is cut short")?;
    let padding = *packet.first().ok_or("empty packet")? as usize;
    if padding + 1 > packet_length {
        return Err(format!("padding length {padding} exceeds packet length {packet_length}"));
    }
    let offer = parse_kexinit_payload(&packet[1..packet_length - padding])?;
    let [kex, host_key, c_cs, c_sc, m_cs, m_sc, z_cs, z_sc, l_cs, l_sc] = offer.lists;
    Ok(ServerAlgorithms {
        banner,
        pre_banner_lines,
        kex,
        host_key,
        ciphers_client_to_server: c_cs,
        ciphers_server_to_client: c_sc,
        macs_client_to_server: m_cs,
        macs_server_to_client: m_sc,
        compression_client_to_server: z_cs,
        compression_server_to_client: z_sc,
        languages_client_to_server: l_cs,
        languages_server_to_client: l_sc,
        first_kex_packet_follows: offer.first_kex_packet_follows,
    })
}

/// The ten name-lists and the flag of a KEXINIT payload (RFC 4253 7.1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KexinitOffer {
    pub lists: [Vec<String>; 10],
    pub first_kex_packet_follows: bool,
}

/// Parse a KEXINIT payload: message number, 16-byte cookie, ten name-lists, a boolean
/// and a reserved uint32.
pub(crate) fn parse_kexinit_payload(payload: &[u8]) -> Result<KexinitOffer, String> {
    let mut rest = payload;
    let message = take(&mut rest, 1, "message number")?[0];
    if message != SSH_MSG_KEXINIT {
        return Err(format!("expected SSH_MSG_KEXINIT (20) as the first packet, got message {message}"));
    }
    take(&mut rest, 16, "cookie")?;
    const NAMES: [&str; 10] = [
        "kex_algorithms",
        "server_host_key_algorithms",
        "encryption_algorithms_client_to_server",
        "encryption_algorithms_server_to_client",
        "mac_algorithms_client_to_server",
        "mac_algorithms_server_to_client",
        "compression_algorithms_client_to_server",
        "compression_algorithms_server_to_client",
        "languages_client_to_server",
        "languages_server_to_client",
    ];
    let mut lists: [Vec<String>; 10] = Default::default();
    for (list, name) in lists.iter_mut().zip(NAMES) {
        *list = take_name_list(&mut rest, name)?;
    }
    let first_kex_packet_follows = take(&mut rest, 1, "first_kex_packet_follows")?[0] != 0;
    take(&mut rest, 4, "reserved field")?;
    Ok(KexinitOffer { lists, first_kex_packet_follows })
}

fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err(format!("KEXINIT truncated in {what}: need {n} bytes, {} left", rest.len()));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_name_list(rest: &mut &[u8], what: &str) -> Result<Vec<String>, String> {
    let len = u32::from_be_bytes(take(rest, 4, what)?.try_into().expect("4 bytes")) as usize;
    let bytes = take(rest, len, what)?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{what} holds bytes that are not printable US-ASCII"));
    }
    let text = std::str::from_utf8(bytes).expect("ASCII is UTF-8");
    let names: Vec<String> = text.split(',').map(str::to_string).collect();
    if names.iter().any(String::is_empty) {
        return Err(format!("{what} holds an empty name: `{text}`"));
    }
    Ok(names)
}

/// What the client offers; `None` lists get ordinary modern choices.
#[derive(Debug, Clone, Default)]
pub struct ClientOffer {
    pub kex: Option<Vec<String>>,
    pub host_key: Option<Vec<String>>,
    pub ciphers: Option<Vec<String>>,
    pub macs: Option<Vec<String>>,
}

const DEFAULT_KEX: &str = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,diffie-hellman-group-exchange-sha256";
const DEFAULT_HOST_KEY: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256";
const DEFAULT_CIPHERS: &str =
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr";
/// With an AEAD cipher (chacha20-poly1305, AES-GCM) no MAC is negotiated at all, so a
/// MAC under test is offered beside plain CTR ciphers only.
const CIPHERS_NEEDING_A_MAC: &str = "aes256-ctr,aes192-ctr,aes128-ctr";
const DEFAULT_MACS: &str = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512";

/// The unencrypted binary packet carrying a client KEXINIT with these lists.
pub fn client_kexinit(offer: &ClientOffer) -> Vec<u8> {
    let list = |wanted: &Option<Vec<String>>, default: &str| wanted.as_ref().map(|v| v.join(",")).unwrap_or_else(|| default.to_string());
    let default_ciphers = if offer.macs.is_some() { CIPHERS_NEEDING_A_MAC } else { DEFAULT_CIPHERS };
    let (kex, host_key, ciphers, macs) = (
        list(&offer.kex, DEFAULT_KEX),
        list(&offer.host_key, DEFAULT_HOST_KEY),
        list(&offer.ciphers, default_ciphers),
        list(&offer.macs, DEFAULT_MACS),
    );
    // The cookie only has to be unpredictable for a real key exchange, which this never does.
    let payload = kexinit_payload([0u8; 16], [kex.as_str(), &host_key, &ciphers, &ciphers, &macs, &macs, "none", "none", "", ""]);
    binary_packet(&payload)
}

/// An SSH_MSG_KEXINIT payload (RFC 4253 7.1): the cookie, the ten name-lists in their
/// order (key exchange, host key, ciphers and MACs and compression each client to
/// server then server to client, languages both ways), no guessed packet, reserved 0.
pub fn kexinit_payload(cookie: [u8; 16], lists: [&str; 10]) -> Vec<u8> {
    let mut payload = vec![SSH_MSG_KEXINIT];
    payload.extend_from_slice(&cookie);
    for names in lists {
        payload.extend_from_slice(&(names.len() as u32).to_be_bytes());
        payload.extend_from_slice(names.as_bytes());
    }
    payload.push(0); // first_kex_packet_follows
    payload.extend_from_slice(&0u32.to_be_bytes());
    payload
}

/// An unencrypted SSH binary packet around `payload` (RFC 4253 6): packet_length,
/// padding_length, payload, zero padding, a multiple of 8 with at least 4 bytes of
/// padding.
pub fn binary_packet(payload: &[u8]) -> Vec<u8> {
    let mut padding = 8 - (5 + payload.len()) % 8;
    if padding < 4 {
        padding += 8;
    }
    let mut packet = Vec::with_capacity(5 + payload.len() + padding);
    packet.extend_from_slice(&((1 + payload.len() + padding) as u32).to_be_bytes());
    packet.push(padding as u8);
    packet.extend_from_slice(payload);
    packet.extend(std::iter::repeat_n(0u8, padding));
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kexinit(lists: [&str; 10]) -> Vec<u8> {
        kexinit_payload([7u8; 16], lists)
    }

    const LISTS: [&str; 10] = [
        "curve25519-sha256,kex-strict-s-v00@openssh.com",
        "ssh-ed25519",
        "aes128-ctr,aes256-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
        "none,zlib@openssh.com",
        "none",
        "",
        "",
    ];

    #[test]
    fn parses_every_name_list_in_order() {
        let offer = parse_kexinit_payload(&kexinit(LISTS)).unwrap();
        assert_eq!(offer.lists[0], vec!["curve25519-sha256", "kex-strict-s-v00@openssh.com"]);
        assert_eq!(offer.lists[2], vec!["aes128-ctr", "aes256-gcm@openssh.com"]);
        assert_eq!(offer.lists[3], vec!["aes256-gcm@openssh.com"]);
        assert_eq!(offer.lists[5], vec!["hmac-sha2-512"]);
        assert_eq!(offer.lists[6], vec!["none", "zlib@openssh.com"]);
        assert!(offer.lists[8].is_empty());
        assert!(!offer.first_kex_packet_follows);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = kexinit(LISTS);
        for cut in 0..full.len() {
            assert!(parse_kexinit_payload(&full[..cut]).is_err(), "cut at {cut} parsed");
        }
    }

    #[test]
    fn lengths_beyond_the_packet_and_malformed_names_are_refused() {
        let mut lying = vec![SSH_MSG_KEXINIT];
        lying.extend_from_slice(&[0u8; 16]);
        lying.extend_from_slice(&u32::MAX.to_be_bytes());
        lying.extend_from_slice(b"ssh-ed25519");
        assert!(parse_kexinit_payload(&lying).unwrap_err().contains("truncated"));

        let mut lists = LISTS;
        lists[2] = "aes128-ctr,,aes256-ctr";
        assert!(parse_kexinit_payload(&kexinit(lists)).unwrap_err().contains("empty name"));
        lists[2] = "aes128-ctr\u{7f}";
        assert!(parse_kexinit_payload(&kexinit(lists)).is_err());

        let mut wrong = kexinit(LISTS);
        wrong[0] = 21;
        assert!(parse_kexinit_payload(&wrong).unwrap_err().contains("got message 21"));
    }

    fn offer_with_kex(kex: &[&str]) -> ServerAlgorithms {
        ServerAlgorithms {
            banner: "SSH-2.0-x".into(),
            pre_banner_lines: vec![],
            kex: kex.iter().map(|k| k.to_string()).collect(),
            host_key: vec!["ssh-ed25519".into()],
            ciphers_client_to_server: vec!["aes128-ctr".into()],
            ciphers_server_to_client: vec!["aes128-ctr".into()],
            macs_client_to_server: vec!["hmac-sha2-256".into()],
            macs_server_to_client: vec!["hmac-sha2-256".into()],
            compression_client_to_server: vec!["none".into()],
            compression_server_to_client: vec!["none".into()],
            languages_client_to_server: vec![],
            languages_server_to_client: vec![],
            first_kex_packet_follows: false,
        }
    }

    #[test]
    fn markers_are_set_apart_from_key_exchanges_and_real_methods_are_kept() {
        let markers = [
            "ext-info-c",
            "ext-info-s",
            "kex-strict-c-v00@openssh.com",
            "kex-strict-s-v00@openssh.com",
            "kex-strict-c",
            "kex-strict-s",
            "kexguess2@matt.ucc.asn.au",
        ];
        for name in markers {
            let marker = kex_marker(name).unwrap_or_else(|| panic!("{name} is not classified as a marker"));
            assert!(!marker.meaning.is_empty());
        }
        // Real key exchanges, and names that only look like markers, stay key exchanges:
        // an unknown name must reach the profile check, not vanish.
        let methods = [
            "curve25519-sha256",
            "curve25519-sha256@libssh.org",
            "diffie-hellman-group14-sha256",
            "diffie-hellman-group14-sha1",
            "diffie-hellman-group1-sha1",
            "sntrup761x25519-sha512@openssh.com",
            "ext-info-x",
            "kex-strict-s-v01@openssh.com",
            "kexguess2@example.com",
            "KEX-STRICT-S",
        ];
        for name in methods {
            assert_eq!(kex_marker(name), None, "{name} was swallowed as a marker");
        }

        // Interleaved as a dropbear and an OpenSSH server send them: each kept in order.
        let kex = [
            "curve25519-sha256",
            "ext-info-s",
            "diffie-hellman-group14-sha256",
            "kexguess2@matt.ucc.asn.au",
            "diffie-hellman-group14-sha1",
            "kex-strict-s-v00@openssh.com",
        ];
        let audited = offer_with_kex(&kex).audited();
        assert_eq!(audited.kex, ["curve25519-sha256", "diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1"]);
        assert_eq!(audited.markers, ["ext-info-s", "kexguess2@matt.ucc.asn.au", "kex-strict-s-v00@openssh.com"]);
        let every = offer_with_kex(&markers.iter().chain(&methods).copied().collect::<Vec<_>>());
        assert_eq!(every.kex_methods(), methods);
        assert_eq!(every.markers(), markers);
        assert_eq!(offer_with_kex(&[]).audited().markers, Vec::<String>::new());
    }

    #[test]
    fn a_marker_name_outside_the_key_exchange_list_is_reported_as_the_algorithm_claimed() {
        let mut offer = offer_with_kex(&["curve25519-sha256"]);
        offer.ciphers_server_to_client.push("ext-info-s".into());
        let audited = offer.audited();
        assert_eq!(audited.ciphers, ["aes128-ctr", "ext-info-s"]);
        assert!(audited.markers.is_empty());
    }

    #[test]
    fn the_audited_offer_merges_directions_in_the_servers_order() {
        let mut offer = offer_with_kex(&["curve25519-sha256"]);
        offer.ciphers_client_to_server = vec!["aes256-ctr".into(), "aes128-ctr".into()];
        offer.ciphers_server_to_client = vec!["aes128-ctr".into(), "aes128-cbc".into()];
        offer.macs_server_to_client = vec!["hmac-sha1".into(), "hmac-sha2-256".into()];
        let audited = offer.audited();
        assert_eq!(audited.ciphers, ["aes256-ctr", "aes128-ctr", "aes128-cbc"]);
        assert_eq!(audited.macs, ["hmac-sha2-256", "hmac-sha1"]);
        assert_eq!(audited.banner, "SSH-2.0-x");
    }

    #[test]
    fn recorded_bytes_of_a_dropbear_offer_parse_to_algorithms_and_markers() {
        let mut lists = LISTS;
        lists[0] = "curve25519-sha256,diffie-hellman-group14-sha256,kexguess2@matt.ucc.asn.au,kex-strict-s-v00@openssh.com";
        let mut received = b"SSH-2.0-dropbear_2022.83\r\n".to_vec();
        received.extend(binary_packet(&kexinit(lists)));
        let offer = parse_server_offer(&received).unwrap();
        assert_eq!(offer.kex.len(), 4, "the parsed list keeps every name as sent");
        let audited = offer.audited();
        assert_eq!(audited.kex, ["curve25519-sha256", "diffie-hellman-group14-sha256"]);
        assert_eq!(audited.markers, ["kexguess2@matt.ucc.asn.au", "kex-strict-s-v00@openssh.com"]);
        assert!(offer.summary().contains("markers: kexguess2@matt.ucc.asn.au (dropbear"), "{}", offer.summary());
        assert!(offer.summary().contains("\nkex: curve25519-sha256,diffie-hellman-group14-sha256\n"), "{}", offer.summary());
    }

    #[test]
    fn the_client_kexinit_is_a_well_formed_packet_with_the_offered_lists() {
        let offer = ClientOffer { ciphers: Some(vec!["aes128-cbc".into()]), ..Default::default() };
        let packet = client_kexinit(&offer);
        let length = u32::from_be_bytes(packet[..4].try_into().unwrap()) as usize;
        assert_eq!(length + 4, packet.len());
        assert_eq!(packet.len() % 8, 0);
        let padding = packet[4] as usize;
        assert!(padding >= 4);
        let payload = &packet[5..packet.len() - padding];
        let parsed = parse_kexinit_payload(payload).unwrap();
        assert_eq!(parsed.lists[2], vec!["aes128-cbc".to_string()]);
        assert_eq!(parsed.lists[3], vec!["aes128-cbc".to_string()]);
        assert!(parsed.lists[0].contains(&"curve25519-sha256".to_string()));

        // A MAC only matters beside a cipher that is not AEAD.
        let packet = client_kexinit(&ClientOffer { macs: Some(vec!["hmac-sha1".into()]), ..Default::default() });
        let payload = &packet[5..packet.len() - packet[4] as usize];
        let parsed = parse_kexinit_payload(payload).unwrap();
        assert!(parsed.lists[2].iter().all(|c| c.ends_with("-ctr")), "{:?}", parsed.lists[2]);
    }
}
