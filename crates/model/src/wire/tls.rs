//! The rules of a `tls_audit` step, shared by the agent and `verify`: the hand-made
//! ClientHellos it sends ([`client_hello`]), what a server's first flight says
//! ([`parse_answer`]: its ServerHello, its certificate chain, or its alert), the order
//! of the offers ([`Audit`]: each answer decides the next hello), and the facts a plan
//! judges ([`Audit::output`]).
//!
//! Why hand-made hellos: a TLS library offers only what it still implements, so it
//! cannot ask a server whether it would accept TLS 1.0, RC4 or a NULL cipher. The
//! audit writes each ClientHello itself, reads the server's answer up to its
//! ServerHelloDone (TLS 1.2 and older) or its ServerHello (TLS 1.3, whose certificate is
//! encrypted), and never completes a handshake: no key is derived, nothing is
//! decrypted. Every hello is a pure function of the offer (a fixed client random, an
//! RFC 7748 test vector as the X25519 key share), so `verify` re-derives each one, and
//! the facts, from the recorded bytes alone; an edited answer disagrees with them.
//!
//! The audit: for TLS 1.3, 1.2, 1.1 and 1.0 in turn, offer every suite this module
//! knows for that version; when the server picks one, offer the rest again, until it
//! refuses (alert or close). That lists every suite the server accepts per version,
//! whatever its preference order. The certificate facts come from the first chain a
//! TLS 1.2-or-older answer carried (key, signature algorithm, validity against the
//! step's recorded time, names against the declared server name); a server that
//! accepts only TLS 1.3 shows none, and the output says so rather than guessing.
//! SSL 2 and 3 are not offered (no OpenSSL build of the last decade speaks them).

use serde_json::{json, Value};

/// The channel a TLS audit's bytes are recorded on.
pub const CHANNEL: &str = "tls";

/// The most bytes of one answer the agent reads and records.
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// The most offers per protocol version (one more than the suites known for any).
pub const MAX_OFFERS_PER_VERSION: usize = 64;

/// The client random of every hello: fixed, so a hello is a pure function of its offer.
const CLIENT_RANDOM: &[u8; 32] = b"proofrig-tls-audit-client-hello!";

/// X25519 public key of RFC 7748 section 6.1 (Alice's): a valid point for the key share.
const KEY_SHARE_X25519: [u8; 32] = [
    0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38,
    0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
];

/// ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb,
    0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Protocol versions the audit offers, in the order it offers them.
pub const VERSIONS: &[(u16, &str)] = &[(0x0304, "TLSv1.3"), (0x0303, "TLSv1.2"), (0x0302, "TLSv1.1"), (0x0301, "TLSv1.0")];

/// TLS 1.3 suites (RFC 8446).
pub const TLS13_SUITES: &[(u16, &str)] = &[
    (0x1301, "TLS_AES_128_GCM_SHA256"),
    (0x1302, "TLS_AES_256_GCM_SHA384"),
    (0x1303, "TLS_CHACHA20_POLY1305_SHA256"),
    (0x1304, "TLS_AES_128_CCM_SHA256"),
    (0x1305, "TLS_AES_128_CCM_8_SHA256"),
];

/// TLS 1.0-1.2 suites offered: the AEAD ones a profile allows and the legacy ones
/// (NULL, export, RC4, DES, 3DES, CBC, static RSA key exchange, anonymous) it forbids.
pub const LEGACY_SUITES: &[(u16, &str)] = &[
    (0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xccaa, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xc0ac, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    (0xc0ad, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    (0x009e, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xc09e, "TLS_DHE_RSA_WITH_AES_128_CCM"),
    (0xc09f, "TLS_DHE_RSA_WITH_AES_256_CCM"),
    (0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xc024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0xc028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0x006b, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0xc012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0009, "TLS_RSA_WITH_DES_CBC_SHA"),
    (0xc011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"),
    (0xc010, "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    (0xc006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    (0x003b, "TLS_RSA_WITH_NULL_SHA256"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"),
    (0x0001, "TLS_RSA_WITH_NULL_MD5"),
];

/// Signalling value of secure renegotiation (RFC 5746), sent with every TLS <= 1.2 hello.
const RENEGOTIATION_SCSV: u16 = 0x00ff;

/// The name of a version number (`TLSv1.2`), or its hex.
pub fn version_name(version: u16) -> String {
    VERSIONS.iter().find(|(v, _)| *v == version).map_or_else(|| format!("0x{version:04x}"), |(_, n)| (*n).to_string())
}

/// The IANA name of a suite, or its hex.
pub fn suite_name(suite: u16) -> String {
    TLS13_SUITES.iter().chain(LEGACY_SUITES).find(|(s, _)| *s == suite).map_or_else(|| format!("0x{suite:04x}"), |(_, n)| (*n).to_string())
}

/// One hello: the protocol version offered (only that one) and the suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub version: u16,
    pub suites: Vec<u16>,
}

/// The bytes of a ClientHello record offering `offer`, naming `server_name` (SNI) when
/// it is a DNS name. TLS 1.3 is offered through `supported_versions` with an X25519 key
/// share; older versions as the hello's own version, as clients of their time did.
pub fn client_hello(offer: &Offer, server_name: Option<&str>) -> Vec<u8> {
    let tls13 = offer.version >= 0x0304;
    let mut body = Vec::new();
    body.extend_from_slice(&offer.version.min(0x0303).to_be_bytes());
    body.extend_from_slice(CLIENT_RANDOM);
    body.push(0); // no session id
    let mut suites: Vec<u8> = offer.suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    if !tls13 {
        suites.extend_from_slice(&RENEGOTIATION_SCSV.to_be_bytes());
    }
    put_vec16(&mut body, &suites);
    body.extend_from_slice(&[1, 0]); // compression: null only
    let mut ext = Vec::new();
    if let Some(name) = server_name.filter(|n| !n.is_empty() && n.parse::<std::net::IpAddr>().is_err()) {
        let mut entry = vec![0u8];
        put_vec16(&mut entry, name.as_bytes());
        let mut list = Vec::new();
        put_vec16(&mut list, &entry);
        put_ext(&mut ext, 0x0000, &list);
    }
    // supported_groups: x25519, secp256r1, secp384r1, secp521r1, ffdhe2048, ffdhe3072.
    let groups: Vec<u8> = [0x001du16, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101].iter().flat_map(|g| g.to_be_bytes()).collect();
    let mut list = Vec::new();
    put_vec16(&mut list, &groups);
    put_ext(&mut ext, 0x000a, &list);
    if !tls13 {
        put_ext(&mut ext, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    }
    let schemes: Vec<u8> = [0x0403u16, 0x0503, 0x0603, 0x0807, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201, 0x0203]
        .iter()
        .flat_map(|s| s.to_be_bytes())
        .collect();
    let mut list = Vec::new();
    put_vec16(&mut list, &schemes);
    put_ext(&mut ext, 0x000d, &list);
    if tls13 {
        put_ext(&mut ext, 0x002b, &[2, 0x03, 0x04]); // supported_versions: TLS 1.3 only
        let mut share = 0x001du16.to_be_bytes().to_vec();
        put_vec16(&mut share, &KEY_SHARE_X25519);
        let mut shares = Vec::new();
        put_vec16(&mut shares, &share);
        put_ext(&mut ext, 0x0033, &shares);
    } else {
        put_ext(&mut ext, 0x0017, &[]); // extended_master_secret
    }
    put_vec16(&mut body, &ext);
    let mut handshake = vec![1u8];
    handshake.extend_from_slice(&u24(body.len()));
    handshake.extend_from_slice(&body);
    let mut record = vec![22u8, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

fn put_vec16(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn put_ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    put_vec16(out, data);
}

fn u24(n: usize) -> [u8; 3] {
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// What a server answered one hello, as its bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A ServerHello (or a HelloRetryRequest, `retry`): the version and suite it chose,
    /// and for TLS <= 1.2 the DER certificates of its Certificate message.
    Hello { version: u16, suite: u16, retry: bool, certificates: Vec<Vec<u8>> },
    /// An alert before any ServerHello: the refusal, by description code.
    Alert { level: u8, description: u8 },
    /// The connection closed without a byte: a refusal without words.
    Closed,
    /// Bytes that are no TLS answer (another protocol on the port), or one cut short.
    NotTls(String),
}

impl Answer {
    /// How the answer reads in a finding: `accepted TLS_...`, `alert handshake_failure`...
    pub fn describe(&self) -> String {
        match self {
            Answer::Hello { version, suite, retry, .. } => {
                format!("{} {} {}", if *retry { "retry with" } else { "chose" }, version_name(*version), suite_name(*suite))
            }
            Answer::Alert { description, .. } => format!("alert {}", alert_name(*description)),
            Answer::Closed => "closed the connection without an answer".into(),
            Answer::NotTls(reason) => format!("no TLS answer: {reason}"),
        }
    }
}

/// An alert description's name (RFC 8446 6), or its number.
pub fn alert_name(description: u8) -> String {
    let name = match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        42 => "bad_certificate",
        47 => "illegal_parameter",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        120 => "no_application_protocol",
        other => return format!("alert {other}"),
    };
    name.to_string()
}

/// Whether `bytes` hold a whole answer: an alert, a TLS 1.3 ServerHello or
/// HelloRetryRequest, a ServerHelloDone, or bytes that cannot be TLS. The agent stops
/// reading there; more would be the rest of a handshake the audit never finishes.
pub fn is_complete(bytes: &[u8]) -> bool {
    matches!(scan(bytes), Scan::Done(_) | Scan::Bad(_))
}

/// The answer recorded bytes hold (the whole of what one connection received).
pub fn parse_answer(bytes: &[u8]) -> Answer {
    match scan(bytes) {
        Scan::Done(answer) => answer,
        Scan::Bad(reason) => Answer::NotTls(reason),
        Scan::Partial(_) if bytes.is_empty() => Answer::Closed,
        // A ServerHello whose flight stopped before ServerHelloDone: the version and
        // suite are said, the rest (the certificate) did not all arrive.
        Scan::Partial(Some(hello)) => hello,
        Scan::Partial(None) => Answer::NotTls(format!("the answer stops after {} bytes, before a ServerHello or an alert", bytes.len())),
    }
}

enum Scan {
    Done(Answer),
    Bad(String),
    /// More would be needed; the ServerHello so far, if one came.
    Partial(Option<Answer>),
}

fn scan(bytes: &[u8]) -> Scan {
    let mut rest = bytes;
    let mut handshake = Vec::new();
    let mut hello: Option<Answer> = None;
    while rest.len() >= 5 {
        let (kind, major, len) = (rest[0], rest[1], u16::from_be_bytes([rest[3], rest[4]]) as usize);
        if !(20..=23).contains(&kind) || major != 3 || len > 18_432 {
            let shown = String::from_utf8_lossy(&rest[..rest.len().min(24)]).escape_debug().to_string();
            return Scan::Bad(format!("not a TLS record (starts `{shown}`)"));
        }
        if rest.len() < 5 + len {
            break;
        }
        let payload = &rest[5..5 + len];
        rest = &rest[5 + len..];
        match kind {
            21 if hello.is_none() && payload.len() >= 2 => return Scan::Done(Answer::Alert { level: payload[0], description: payload[1] }),
            // An alert after the ServerHello ends the flight as it stands.
            21 => return Scan::Done(hello.unwrap_or(Answer::NotTls("an alert of one byte".into()))),
            // TLS 1.3's encrypted flight, or a middlebox-compatibility change_cipher_spec.
            20 | 23 => match hello.take() {
                Some(found) => return Scan::Done(found),
                None => return Scan::Bad("encrypted records before any ServerHello".into()),
            },
            _ => handshake.extend_from_slice(payload),
        }
        loop {
            if handshake.len() < 4 {
                break;
            }
            let size = ((handshake[1] as usize) << 16) | ((handshake[2] as usize) << 8) | handshake[3] as usize;
            if handshake.len() < 4 + size {
                break;
            }
            let message: Vec<u8> = handshake.drain(..4 + size).collect();
            let body = &message[4..];
            match message[0] {
                2 => match server_hello(body) {
                    Ok((version, suite, retry)) => {
                        let found = Answer::Hello { version, suite, retry, certificates: Vec::new() };
                        if version >= 0x0304 || retry {
                            return Scan::Done(found);
                        }
                        hello = Some(found);
                    }
                    Err(reason) => return Scan::Bad(reason),
                },
                11 => {
                    if let Some(Answer::Hello { certificates, .. }) = hello.as_mut() {
                        *certificates = certificate_list(body);
                    }
                }
                14 => return Scan::Done(hello.unwrap_or(Answer::NotTls("a ServerHelloDone without a ServerHello".into()))),
                _ if hello.is_none() => return Scan::Bad(format!("handshake message {} before any ServerHello", message[0])),
                _ => {}
            }
        }
    }
    Scan::Partial(hello)
}

/// A ServerHello's (version, suite, whether it is a HelloRetryRequest); the version is
/// its `supported_versions` extension's when it has one (TLS 1.3).
fn server_hello(body: &[u8]) -> Result<(u16, u16, bool), String> {
    let bad = || "a ServerHello cut short".to_string();
    let legacy = u16::from_be_bytes([*body.first().ok_or_else(bad)?, *body.get(1).ok_or_else(bad)?]);
    let random = body.get(2..34).ok_or_else(bad)?;
    let sid = *body.get(34).ok_or_else(bad)? as usize;
    let at = 35 + sid;
    let suite = u16::from_be_bytes([*body.get(at).ok_or_else(bad)?, *body.get(at + 1).ok_or_else(bad)?]);
    let mut version = legacy;
    let mut exts = body.get(at + 3..).unwrap_or_default();
    if exts.len() >= 2 {
        exts = exts.get(2..2 + u16::from_be_bytes([exts[0], exts[1]]) as usize).ok_or_else(bad)?;
        while exts.len() >= 4 {
            let (kind, len) = (u16::from_be_bytes([exts[0], exts[1]]), u16::from_be_bytes([exts[2], exts[3]]) as usize);
            let data = exts.get(4..4 + len).ok_or_else(bad)?;
            if kind == 0x002b && data.len() == 2 {
                version = u16::from_be_bytes([data[0], data[1]]);
            }
            exts = &exts[4 + len..];
        }
    }
    Ok((version, suite, random == HELLO_RETRY_RANDOM))
}

/// The DER certificates of a TLS <= 1.2 Certificate message, leaf first.
fn certificate_list(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = body.get(3..).unwrap_or_default();
    while rest.len() >= 3 {
        let len = ((rest[0] as usize) << 16) | ((rest[1] as usize) << 8) | rest[2] as usize;
        let Some(der) = rest.get(3..3 + len) else { break };
        out.push(der.to_vec());
        rest = &rest[3 + len..];
    }
    out
}

/// One offer and its answer, as the output lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub offer: Offer,
    pub answer: Answer,
}

/// The audit's order of offers, driven by the answers (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Audit {
    probes: Vec<Probe>,
}

impl Audit {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next hello to send, or None when the audit is complete.
    pub fn next(&self) -> Option<Offer> {
        for (version, _) in VERSIONS {
            let tried: Vec<&Probe> = self.probes.iter().filter(|p| p.offer.version == *version).collect();
            let known = if *version >= 0x0304 { TLS13_SUITES } else { LEGACY_SUITES };
            let accepted: Vec<u16> = tried.iter().filter_map(|p| accepted_suite(p)).collect();
            let refused = tried.last().is_some_and(|p| accepted_suite(p).is_none());
            let suites: Vec<u16> = known.iter().map(|(s, _)| *s).filter(|s| !accepted.contains(s)).collect();
            if refused || suites.is_empty() || tried.len() >= MAX_OFFERS_PER_VERSION {
                continue;
            }
            return Some(Offer { version: *version, suites });
        }
        None
    }

    /// The server's answer to the hello [`Audit::next`] gave.
    pub fn record(&mut self, offer: Offer, answer: Answer) {
        self.probes.push(Probe { offer, answer });
    }

    pub fn probes(&self) -> &[Probe] {
        &self.probes
    }

    /// The first answer that is no TLS at all: the port speaks something else.
    pub fn not_tls(&self) -> Option<&str> {
        self.probes.iter().find_map(|p| match &p.answer {
            Answer::NotTls(reason) => Some(reason.as_str()),
            _ => None,
        })
    }

    /// The step's output (see [`OutputContext`]).
    pub fn output(&self, ctx: &OutputContext<'_>) -> Value {
        let mut versions = serde_json::Map::new();
        let (mut accepted_versions, mut refused_versions, mut all_suites) = (Vec::new(), Vec::new(), Vec::new());
        for (version, name) in VERSIONS {
            let tried: Vec<&Probe> = self.probes.iter().filter(|p| p.offer.version == *version).collect();
            let suites: Vec<String> = tried.iter().filter_map(|p| accepted_suite(p)).map(suite_name).collect();
            let refusal = tried.iter().find(|p| accepted_suite(p).is_none()).map(|p| p.answer.describe());
            if suites.is_empty() {
                refused_versions.push(*name);
            } else {
                accepted_versions.push(*name);
            }
            all_suites.extend(suites.iter().cloned());
            versions.insert((*name).to_string(), json!({"accepted": !suites.is_empty(), "suites": suites, "refusal": refusal}));
        }
        all_suites.sort();
        all_suites.dedup();
        let chain = self.probes.iter().find_map(|p| match &p.answer {
            Answer::Hello { version, certificates, .. }
                if *version <= 0x0303 && accepted_suite(p).is_some() && !certificates.is_empty() =>
            {
                Some((*version, certificates))
            }
            _ => None,
        });
        let (certificate, certificate_note) = match chain {
            Some((version, chain)) => match certificate_facts(chain, ctx) {
                Ok(facts) => (facts, format!("the chain the {} answer carried", version_name(version))),
                Err(reason) => (Value::Null, format!("the {} answer's certificate does not parse: {reason}", version_name(version))),
            },
            None if accepted_versions.iter().any(|v| *v != "TLSv1.3") => {
                (Value::Null, "no accepted TLS 1.2-or-older answer carried a certificate".to_string())
            }
            None if !accepted_versions.is_empty() => {
                (Value::Null, "the server accepts only TLS 1.3, whose certificate is encrypted: the audit does not see it".to_string())
            }
            None => (Value::Null, "the server accepted no version, so it showed no certificate".to_string()),
        };
        let probes: Vec<Value> = self
            .probes
            .iter()
            .map(|p| json!({"version": version_name(p.offer.version), "offered": p.offer.suites.len(), "answer": p.answer.describe()}))
            .collect();
        json!({
            "address": ctx.address,
            "port": ctx.port,
            "server_name": ctx.server_name,
            "checked_at": ctx.checked_at,
            "versions": versions,
            "accepted_versions": accepted_versions,
            "refused_versions": refused_versions,
            "accepted_suites": all_suites,
            "certificate": certificate,
            "certificate_note": certificate_note,
            "connections": self.probes.len(),
            "probes": probes,
        })
    }
}

/// The suite a probe's answer accepted: a ServerHello (or retry) of the version offered
/// choosing a suite that was offered. A lower version, or a suite not offered, is no
/// acceptance of this offer.
fn accepted_suite(probe: &Probe) -> Option<u16> {
    match &probe.answer {
        Answer::Hello { version, suite, .. } if *version == probe.offer.version && probe.offer.suites.contains(suite) => Some(*suite),
        _ => None,
    }
}

/// Where the audit went and when, for its output.
#[derive(Debug, Clone)]
pub struct OutputContext<'a> {
    pub address: &'a str,
    pub port: u16,
    /// The name the certificate must carry (SNI too), if the step gives one.
    pub server_name: Option<&'a str>,
    /// Unix seconds the validity dates are judged against (the step's recorded time).
    pub checked_at: i64,
}

/// The facts of the leaf certificate of `chain`, judged at `ctx.checked_at`.
pub fn certificate_facts(chain: &[Vec<u8>], ctx: &OutputContext<'_>) -> Result<Value, String> {
    use x509_parser::prelude::*;
    let leaf = chain.first().ok_or("an empty chain")?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| e.to_string())?;
    let key_oid = cert.public_key().algorithm.algorithm.to_id_string();
    let (key_type, key_bits) = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => ("RSA".to_string(), rsa.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(ec)) => ("EC".to_string(), ec.key_size()),
        Ok(x509_parser::public_key::PublicKey::DSA(y)) => ("DSA".to_string(), y.len() * 8),
        _ if key_oid == "1.3.101.112" => ("Ed25519".to_string(), 256),
        _ if key_oid == "1.3.101.113" => ("Ed448".to_string(), 456),
        _ => (key_oid.clone(), 0),
    };
    let signature_algorithm = signature_name(&cert.signature_algorithm.algorithm.to_id_string());
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let mut names: Vec<String> = cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_string)).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                    16 => names.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default()).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    names.dedup();
    let name_matches = ctx.server_name.map(|wanted| names.iter().any(|n| name_matches(n, wanted)));
    Ok(json!({
        "subject": cert.subject().to_string(),
        "issuer": cert.issuer().to_string(),
        "self_signed": cert.subject() == cert.issuer(),
        "chain_length": chain.len(),
        "key_type": key_type,
        "key_bits": key_bits,
        "signature_algorithm": signature_algorithm,
        "not_before": cert.validity().not_before.to_string(),
        "not_after": cert.validity().not_after.to_string(),
        "expired": ctx.checked_at > not_after,
        "not_yet_valid": ctx.checked_at < not_before,
        "names": names,
        "name_matches": name_matches,
    }))
}

/// A certificate name (`host.example`, `*.example`, an address) covers `wanted`.
fn name_matches(name: &str, wanted: &str) -> bool {
    let (name, wanted) = (name.to_ascii_lowercase(), wanted.to_ascii_lowercase());
    match name.strip_prefix("*.") {
        Some(parent) => wanted.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => name == wanted,
    }
}

fn signature_name(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "ED25519",
        "1.3.101.113" => "ED448",
        other => return other.to_string(),
    };
    name.to_string()
}

/// The TCP port of a resolved `tls_audit` spec: a number, or a template's text that
/// reads as one (no default: a TLS port is always the rig's to declare).
pub fn spec_port(spec: &Value) -> Result<u16, String> {
    super::spec_tcp_port(spec)
}

/// The server name of a resolved `tls_audit` spec, if it gives one.
pub fn spec_server_name(spec: &Value) -> Option<&str> {
    spec["server_name"].as_str().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_hello_record(version: u16, suite: u16, tls13: bool) -> Vec<u8> {
        let mut body = 0x0303u16.min(version).to_be_bytes().to_vec();
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&suite.to_be_bytes());
        body.push(0);
        if tls13 {
            body.extend_from_slice(&[0, 6, 0x00, 0x2b, 0, 2, 0x03, 0x04]);
        }
        let mut hs = vec![2u8];
        hs.extend_from_slice(&u24(body.len()));
        hs.extend_from_slice(&body);
        let mut record = vec![22, 3, 3];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    fn done_record() -> Vec<u8> {
        vec![22, 3, 3, 0, 4, 14, 0, 0, 0]
    }

    #[test]
    fn a_hello_offers_exactly_the_version_and_suites_asked() {
        let hello = client_hello(&Offer { version: 0x0301, suites: vec![0x000a, 0x002f] }, Some("ru1.lab"));
        assert_eq!(&hello[..3], &[22, 3, 1]);
        assert_eq!(hello[5], 1, "a ClientHello");
        assert_eq!(&hello[9..11], &[3, 1], "TLS 1.0 as the hello's version");
        assert_eq!(&hello[44..52], &[0, 6, 0x00, 0x0a, 0x00, 0x2f, 0x00, 0xff], "the suites, and the renegotiation SCSV");
        assert!(hello.windows(7).any(|w| w == b"ru1.lab"), "SNI");
        let tls13 = client_hello(&Offer { version: 0x0304, suites: vec![0x1301] }, Some("127.0.0.1"));
        assert_eq!(&tls13[9..11], &[3, 3], "TLS 1.3 is offered as 1.2 plus supported_versions");
        assert!(tls13.windows(7).any(|w| w == [0x00, 0x2b, 0, 3, 2, 3, 4]), "supported_versions: 1.3 only");
        assert!(!tls13.windows(9).any(|w| w == b"127.0.0.1"), "no SNI for an address");
    }

    #[test]
    fn answers_are_read_as_a_hello_an_alert_a_close_or_no_tls() {
        let mut flight = server_hello_record(0x0303, 0xc02f, false);
        assert!(!is_complete(&flight), "a TLS 1.2 flight ends at its ServerHelloDone");
        flight.extend_from_slice(&done_record());
        assert!(is_complete(&flight));
        assert_eq!(parse_answer(&flight), Answer::Hello { version: 0x0303, suite: 0xc02f, retry: false, certificates: vec![] });
        let tls13 = server_hello_record(0x0304, 0x1302, true);
        assert!(is_complete(&tls13));
        assert!(matches!(parse_answer(&tls13), Answer::Hello { version: 0x0304, suite: 0x1302, .. }));
        assert_eq!(parse_answer(&[21, 3, 3, 0, 2, 2, 70]), Answer::Alert { level: 2, description: 70 });
        assert_eq!(parse_answer(&[]), Answer::Closed);
        assert!(matches!(parse_answer(b"HTTP/1.1 400 Bad Request\r\n\r\n"), Answer::NotTls(_)));
        assert!(is_complete(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    }

    #[test]
    fn the_audit_lists_every_accepted_suite_then_moves_to_the_next_version() {
        let mut audit = Audit::new();
        // TLS 1.3 refused, TLS 1.2: two suites then a refusal; 1.1 and 1.0 refused.
        let answers = [
            Answer::Alert { level: 2, description: 70 },
            Answer::Hello { version: 0x0303, suite: 0xc030, retry: false, certificates: vec![] },
            Answer::Hello { version: 0x0303, suite: 0x000a, retry: false, certificates: vec![] },
            Answer::Alert { level: 2, description: 40 },
            Answer::Closed,
            Answer::Alert { level: 2, description: 70 },
        ];
        for answer in answers {
            let offer = audit.next().expect("an offer");
            audit.record(offer, answer);
        }
        assert_eq!(audit.next(), None, "every version has ended in a refusal");
        let offered_third = &audit.probes()[2].offer.suites;
        assert!(!offered_third.contains(&0xc030) && offered_third.contains(&0x000a), "an accepted suite is not offered again");
        let out = audit.output(&OutputContext { address: "127.0.0.1", port: 443, server_name: None, checked_at: 0 });
        assert_eq!(out["accepted_versions"], json!(["TLSv1.2"]));
        assert_eq!(out["accepted_suites"], json!(["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"]));
        assert_eq!(out["versions"]["TLSv1.1"]["refusal"], "closed the connection without an answer");
        assert_eq!(out["certificate"], Value::Null);
    }

    #[test]
    fn a_tls_1_3_only_server_shows_no_certificate_and_the_output_says_why() {
        let mut audit = Audit::new();
        while let Some(offer) = audit.next() {
            let answer = match (offer.version, offer.suites.first()) {
                (0x0304, Some(suite)) if offer.suites.len() > 3 => {
                    Answer::Hello { version: 0x0304, suite: *suite, retry: false, certificates: vec![] }
                }
                _ => Answer::Alert { level: 2, description: 70 },
            };
            audit.record(offer, answer);
        }
        let out = audit.output(&OutputContext { address: "127.0.0.1", port: 443, server_name: Some("nf1.lab"), checked_at: 0 });
        assert_eq!(out["accepted_versions"], json!(["TLSv1.3"]));
        assert_eq!(out["accepted_suites"], json!(["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]));
        assert_eq!(out["certificate"], Value::Null);
        assert!(out["certificate_note"].as_str().unwrap().contains("only TLS 1.3"), "{out}");
    }

    #[test]
    fn a_downgraded_answer_is_no_acceptance_of_the_version_offered() {
        let probe = Probe {
            offer: Offer { version: 0x0303, suites: vec![0x002f] },
            answer: Answer::Hello { version: 0x0301, suite: 0x002f, retry: false, certificates: vec![] },
        };
        assert_eq!(accepted_suite(&probe), None);
    }

    #[test]
    fn certificate_names_match_exactly_or_by_one_wildcard_label() {
        assert!(name_matches("*.lab.example", "ru1.lab.example"));
        assert!(!name_matches("*.lab.example", "a.ru1.lab.example"));
        assert!(name_matches("RU1.lab", "ru1.lab"));
        assert!(!name_matches("ru2.lab", "ru1.lab"));
    }
}
