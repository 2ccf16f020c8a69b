//! The rules of a `syslog_receive` step that `verify` re-derives its output with: where
//! the lab host listens ([`Listen`]), how the received bytes split into log records
//! ([`records`]: one per UDP datagram, RFC 6587 octet counting or newline framing on
//! TCP), and which record is the device's account of the step's own refused login
//! ([`names_attempt`]). The receiver itself, on real sockets, is
//! `proofrig_agents::syslog`.
//!
//! TS 33.117 4.2.3.6.2 asks that security events reach central storage. The lab host
//! plays that storage for one step: it listens where the device is configured to send
//! (the rig's `declared.log_server`), makes a login the device must refuse, and keeps
//! whatever arrives. A record counts only if it names that attempt (its user and
//! source address, and the source port where the device logs one), so a record of
//! some other event, or of an earlier run, proves nothing.

use std::net::SocketAddr;

use serde_json::{json, Value};

/// The channel each arrival is recorded on, as a `Datagram` event with its peer: a UDP
/// datagram whole on `syslog`, each read of a TCP connection on `syslog:tcp` (a peer,
/// address and port, is one connection), and each read of a TLS connection, as the
/// receiver decrypted it, on `syslog:tls` (the TLS records themselves are not kept:
/// nothing in the journal could decrypt them again).
pub fn channel(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "syslog",
        Transport::Tcp => "syslog:tcp",
        Transport::Tls => "syslog:tls",
    }
}

/// The arrivals as [`records`] reads them: UDP datagram by datagram, the reads of each
/// TCP connection joined in order.
pub fn joined(transport: Transport, arrivals: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    match transport {
        Transport::Udp => arrivals.to_vec(),
        Transport::Tcp | Transport::Tls => {
            let mut joined: Vec<(String, Vec<u8>)> = Vec::new();
            for (peer, data) in arrivals {
                match joined.iter_mut().find(|(p, _)| p == peer) {
                    Some((_, stream)) => stream.extend_from_slice(data),
                    None => joined.push((peer.clone(), data.clone())),
                }
            }
            joined
        }
    }
}

/// The password of the refused login: wrong for every account, and no secret.
pub const WRONG_PASSWORD: &str = "proofrig-log-probe-wrong-password";

/// Records kept at most in a step's output (a chatty device sends its every event).
pub const RECORD_LIMIT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// Syslog over TLS (RFC 5425): what TS 33.117 4.2.3.6.2 a) asks for.
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Where the lab host listens: `udp:ADDRESS:PORT`, `tcp:ADDRESS:PORT`,
/// `tls:ADDRESS:PORT`, or `ADDRESS:PORT` (UDP, syslog's classic transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub address: SocketAddr,
}

impl Listen {
    pub fn parse(text: &str) -> Result<Listen, String> {
        let text = text.trim();
        let (transport, rest) = match text.split_once(':') {
            Some(("udp", rest)) => (Transport::Udp, rest),
            Some(("tcp", rest)) => (Transport::Tcp, rest),
            Some(("tls", rest)) => (Transport::Tls, rest),
            _ => (Transport::Udp, text),
        };
        let address = rest.parse::<SocketAddr>().map_err(|_| {
            format!("`{text}` is not where a log server listens; write udp:, tcp: or tls:ADDRESS:PORT, e.g. udp:127.0.0.1:5514")
        })?;
        if address.port() == 0 {
            return Err(format!("`{text}`: the log server's port must be the one the device sends to, not 0"));
        }
        Ok(Listen { transport, address })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.address)
    }
}

/// One log record as received: who sent it, its priority (facility * 8 + severity)
/// when it starts with one, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub peer: String,
    pub priority: Option<u8>,
    pub text: String,
}

impl Record {
    fn parse(peer: &str, raw: &[u8]) -> Record {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches(['\n', '\r', '\0']);
        let (priority, text) = match line.strip_prefix('<').and_then(|r| r.split_once('>')) {
            Some((digits, rest)) if (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) => {
                (digits.parse::<u8>().ok().filter(|p| *p <= 191), rest)
            }
            _ => (None, line),
        };
        Record { peer: peer.to_string(), priority, text: text.to_string() }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "peer": self.peer,
            "facility": self.priority.map(|p| p / 8),
            "severity": self.priority.map(|p| p % 8),
            "text": self.text,
        })
    }
}

/// The records in what arrived: each UDP datagram is one record; a TCP connection's
/// bytes (all of them, in order) split by RFC 6587 octet counting (`LEN SP MSG`) or,
/// failing that, at newlines. An unfinished last TCP record is kept as it is.
pub fn records(transport: Transport, arrivals: &[(String, Vec<u8>)]) -> Vec<Record> {
    match transport {
        Transport::Udp => arrivals.iter().map(|(peer, data)| Record::parse(peer, data)).collect(),
        Transport::Tcp | Transport::Tls => {
            arrivals.iter().flat_map(|(peer, stream)| frames(stream).into_iter().map(|f| Record::parse(peer, f))).collect()
        }
    }
}

fn frames(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        let digits = stream.iter().take_while(|b| b.is_ascii_digit()).count();
        let counted = (1..=7).contains(&digits) && stream.get(digits) == Some(&b' ');
        if counted {
            let len: usize = std::str::from_utf8(&stream[..digits]).ok().and_then(|d| d.parse().ok()).unwrap_or(0);
            let start = digits + 1;
            let end = (start + len).min(stream.len());
            out.push(&stream[start..end]);
            stream = &stream[end..];
        } else {
            let end = stream.iter().position(|b| *b == b'\n').map_or(stream.len(), |p| p + 1);
            if !stream[..end].iter().all(u8::is_ascii_whitespace) {
                out.push(&stream[..end]);
            }
            stream = &stream[end..];
        }
    }
    out
}

/// Whether a record's text is the device's account of the login of `user` from
/// `source`: it names the user as a word and the source address, followed by the
/// attempt's own port (`port P` as OpenSSH writes it, `:P` as dropbear does) or by no
/// port at all. A record naming another port is another attempt's.
pub fn names_attempt(text: &str, user: &str, source: SocketAddr) -> bool {
    let word = |hay: &str, needle: &str| {
        hay.match_indices(needle).any(|(at, _)| {
            let before = hay[..at].chars().next_back();
            let after = hay[at + needle.len()..].chars().next();
            let apart = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'));
            apart(before) && apart(after)
        })
    };
    if user.is_empty() || !word(text, user) {
        return false;
    }
    let address = source.ip().to_string();
    let port = source.port().to_string();
    text.match_indices(&format!("from {address}")).any(|(at, found)| {
        let rest = &text[at + found.len()..];
        let own_port = |tail: &str| tail.strip_prefix(port.as_str()).is_some_and(|t| t.chars().next().is_none_or(|c| !c.is_ascii_digit()));
        match rest.chars().next() {
            None => true,
            Some(':') => own_port(&rest[1..]),
            Some(' ') => match rest[1..].strip_prefix("port ") {
                Some(tail) => own_port(tail),
                None => true,
            },
            Some(_) => false,
        }
    })
}

/// The step's output: where it listened, the refused login it made, every record
/// that arrived (up to [`RECORD_LIMIT`]) and those that name the login.
pub fn output(listen: &Listen, user: &str, source: Option<SocketAddr>, accepted: bool, records: &[Record]) -> Value {
    let matching: Vec<Value> =
        records.iter().filter(|r| source.is_some_and(|s| names_attempt(&r.text, user, s))).map(Record::to_json).collect();
    json!({
        "listen": listen.to_string(),
        "transport": listen.transport.as_str(),
        "login": {
            "user": user,
            "accepted": accepted,
            "source_address": source.map(|s| s.ip().to_string()),
            "source_port": source.map(|s| s.port()),
        },
        "received": records.len(),
        "records": records.iter().take(RECORD_LIMIT).map(Record::to_json).collect::<Vec<_>>(),
        "matching": matching,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn where_to_listen() {
        assert_eq!(Listen::parse("udp:127.0.0.1:5514").unwrap(), Listen { transport: Transport::Udp, address: at(5514) });
        assert_eq!(Listen::parse("tcp:[::1]:6514").unwrap().transport, Transport::Tcp);
        assert_eq!(Listen::parse("tls:127.0.0.1:6514").unwrap().transport, Transport::Tls);
        assert_eq!(Listen::parse("127.0.0.1:514").unwrap(), Listen { transport: Transport::Udp, address: at(514) });
        assert!(Listen::parse("loghost").unwrap_err().contains("tls:ADDRESS:PORT"));
        assert!(Listen::parse("udp:127.0.0.1:0").is_err());
    }

    #[test]
    fn records_by_datagram_and_by_tcp_framing() {
        let udp = records(Transport::Udp, &[("127.0.0.1:40000".into(), b"<38>Dec  5 10:00:00 ru1 sshd[7]: Failed password\n".to_vec())]);
        assert_eq!(udp.len(), 1);
        assert_eq!((udp[0].priority, udp[0].text.as_str()), (Some(38), "Dec  5 10:00:00 ru1 sshd[7]: Failed password"));
        let counted = records(Transport::Tcp, &[("p".into(), b"5 <13>a9 <13>b c d".to_vec())]);
        assert_eq!(counted.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["a", "b c d"]);
        let lines = records(Transport::Tcp, &[("p".into(), b"<13>one\n<14>two\n\n<15>thr".to_vec())]);
        assert_eq!(
            lines.iter().map(|r| (r.priority, r.text.as_str())).collect::<Vec<_>>(),
            [(Some(13), "one"), (Some(14), "two"), (Some(15), "thr")]
        );
        assert_eq!(Record::parse("p", b"<999>x").priority, None);
    }

    #[test]
    fn a_record_names_the_attempt_by_user_address_and_its_own_port() {
        let source = at(40000);
        // OpenSSH, dropbear, and a logger that writes no port.
        assert!(names_attempt("sshd[9]: Failed password for root from 127.0.0.1 port 40000 ssh2", "root", source));
        assert!(names_attempt("dropbear[9]: Bad password attempt for 'root' from 127.0.0.1:40000", "root", source));
        assert!(names_attempt("login failed for root from 127.0.0.1", "root", source));
        // Another attempt's port, another user, another address.
        assert!(!names_attempt("Failed password for root from 127.0.0.1 port 400001 ssh2", "root", source));
        assert!(!names_attempt("Bad password attempt for 'root' from 127.0.0.1:40001", "root", source));
        assert!(!names_attempt("Failed password for rooty from 127.0.0.1 port 40000", "root", source));
        assert!(!names_attempt("Failed password for root from 127.0.0.10 port 40000", "root", source));
        let out = output(
            &Listen::parse("udp:127.0.0.1:5514").unwrap(),
            "root",
            Some(source),
            false,
            &[
                Record::parse("127.0.0.1:514", b"<38>Failed password for root from 127.0.0.1 port 40000"),
                Record::parse("127.0.0.1:514", b"<38>Failed password for root from 127.0.0.1 port 39999"),
            ],
        );
        assert_eq!(out["received"], 2);
        assert_eq!(out["matching"].as_array().unwrap().len(), 1);
        assert_eq!(out["matching"][0]["severity"], 6);
    }
}
