//! The simulated devices' HTTPS server, so the TLS cases of TS 33.117 (4.2.2.2.2
//! transport layer protection, 4.2.5.1 HTTPS) have a compliant and a careless server.
//!
//! Hardened: a real TLS server (rustls on ring), TLS 1.2 and 1.3 with ECDHE and AEAD
//! suites only, an EC P-256 certificate rcgen makes at start for the device's hostname
//! (SHA-256 signature, valid from the start of last year to the start of the year after
//! next); after
//! the handshake it answers one HTTP request as the web server of [`crate::web`] does.
//!
//! Weak: rustls cannot speak TLS 1.0 or 1.1 or offer CBC, 3DES, RC4 or NULL suites, so
//! the careless server is hand-written and answers the ClientHello statically, as a
//! legacy embedded stack would choose: the highest version offered up to TLS 1.2
//! (TLS 1.0 and 1.1 accepted; a TLS 1.3-only hello gets a 1.2 ServerHello, which the
//! client must refuse), the first suite of [`WEAK_SUITES`] the client offers, else an
//! alert `handshake_failure`; then its Certificate (an rcgen certificate that expired in
//! 2020 and names `localhost`) and ServerHelloDone. It never completes a handshake:
//! only its first flight is simulated, which is all a TLS audit reads, and the suite it
//! picks need not fit its certificate's key (a client that went on would fail there).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::device_os::DeviceOs;
use crate::gate::{ConnectionHandler, PowerGate};
use crate::profile::Profile;
use crate::SimError;

/// How long a connection may sit idle before the server drops it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The weak server's suites, in its order of preference: NULL, 3DES, RC4, CBC with
/// static RSA and with ECDHE, and one AEAD suite.
pub const WEAK_SUITES: &[u16] = &[
    0xc02b, // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    0xc009, // TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
    0x002f, // TLS_RSA_WITH_AES_128_CBC_SHA
    0x000a, // TLS_RSA_WITH_3DES_EDE_CBC_SHA
    0x0005, // TLS_RSA_WITH_RC4_128_SHA
    0xc006, // TLS_ECDHE_ECDSA_WITH_NULL_SHA
];

/// A running HTTPS listener, gated by power like SSH.
pub struct TlsService {
    gate: PowerGate,
}

impl TlsService {
    /// Starts the profile's HTTPS server on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, os: DeviceOs) -> Result<Self, SimError> {
        let hostname = os.hostname();
        let handler: ConnectionHandler = match os.profile() {
            Profile::Hardened => {
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(hardened_config(&hostname)?));
                let web = os.clone();
                Arc::new(move |stream, _peer| {
                    let (acceptor, web) = (acceptor.clone(), web.clone());
                    Box::pin(async move {
                        let _ = tokio::time::timeout(IDLE_TIMEOUT, serve_hardened(acceptor, stream, web)).await;
                    })
                })
            }
            Profile::Weak => {
                let certificate: Arc<[u8]> = weak_certificate()?.into();
                Arc::new(move |stream, _peer| {
                    let certificate = Arc::clone(&certificate);
                    Box::pin(async move {
                        let _ = tokio::time::timeout(IDLE_TIMEOUT, answer_weak(stream, &certificate)).await;
                    })
                })
            }
        };
        Ok(TlsService { gate: PowerGate::start(addr, "httpd", os, handler).await? })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.gate.local_addr()
    }

    pub async fn set_powered(&self, powered: bool) -> Result<(), SimError> {
        self.gate.set_powered(powered).await
    }

    pub async fn stop(&self) {
        self.gate.stop().await
    }
}

/// rustls on ring, for the devices' TLS (their HTTPS here, their remote logging in
/// `log_forward`). rustls 0.23.48 deprecates its ring provider for lacking post-quantum
/// key exchange (only aws-lc-rs has it, with a C build this workspace avoids; see
/// `proofrig_proto::pin`).
#[allow(deprecated)]
pub(crate) fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn hardened_config(hostname: &str) -> Result<rustls::ServerConfig, SimError> {
    let err = |e: &dyn std::fmt::Display| SimError::Tls(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(|e| err(&e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    // Valid from the start of last year to the start of the year after next.
    let year = 1970 + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    let signing_key = rcgen::KeyPair::generate().map_err(|e| err(&e))?;
    let cert = params.self_signed(&signing_key).map_err(|e| err(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(|e| err(&e))
}

/// The hardened handshake, then one HTTP request answered by the web server.
async fn serve_hardened(acceptor: tokio_rustls::TlsAcceptor, stream: TcpStream, os: DeviceOs) -> std::io::Result<()> {
    let mut tls = acceptor.accept(stream).await?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let read = tls.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    tls.write_all(&crate::web::answer(&os, &crate::web::Request::parse(&head))).await?;
    tls.shutdown().await
}

/// An EC certificate that expired on 2020-01-01 and names `localhost`, DER.
fn weak_certificate() -> Result<Vec<u8>, SimError> {
    let err = |e: rcgen::Error| SimError::Tls(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    params.not_before = rcgen::date_time_ymd(2015, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    Ok(params.self_signed(&key).map_err(err)?.der().to_vec())
}

/// What a ClientHello offers, as far as the weak server reads it.
struct Hello {
    version: u16,
    suites: Vec<u16>,
}

/// The first ClientHello record's version and suites; None when the bytes are no hello.
fn read_hello(record: &[u8]) -> Option<Hello> {
    if record.len() < 5 || record[0] != 22 || record[5] != 1 {
        return None;
    }
    let body = record.get(9..)?;
    let version = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let sid = *body.get(34)? as usize;
    let at = 35 + sid;
    let len = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]) as usize;
    let suites = body.get(at + 2..at + 2 + len)?.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    Some(Hello { version, suites })
}

/// The weak server's first flight for `hello`, or its alert.
pub fn weak_answer(record: &[u8], certificate: &[u8]) -> Vec<u8> {
    let alert = |description: u8| vec![21, 3, 1, 0, 2, 2, description];
    let Some(hello) = read_hello(record) else { return alert(10) }; // unexpected_message
    let version = hello.version.min(0x0303);
    if version < 0x0301 {
        return alert(70); // protocol_version
    }
    let Some(suite) = WEAK_SUITES.iter().copied().find(|s| hello.suites.contains(s)) else {
        return alert(40); // handshake_failure
    };
    let mut server_hello = version.to_be_bytes().to_vec();
    server_hello.extend_from_slice(&[0x5a; 32]);
    server_hello.push(0);
    server_hello.extend_from_slice(&suite.to_be_bytes());
    server_hello.push(0);
    let mut chain = u24(certificate.len()).to_vec();
    chain.extend_from_slice(certificate);
    let mut certificate_message = u24(chain.len()).to_vec();
    certificate_message.extend_from_slice(&chain);
    let mut handshake = message(2, &server_hello);
    handshake.extend_from_slice(&message(11, &certificate_message));
    handshake.extend_from_slice(&message(14, &[]));
    let mut out = vec![22];
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    out.extend_from_slice(&handshake);
    out
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u24(body.len()));
    out.extend_from_slice(body);
    out
}

fn u24(n: usize) -> [u8; 3] {
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// Reads the hello record, answers it, then waits for the client to go.
async fn answer_weak(mut stream: TcpStream, certificate: &[u8]) -> std::io::Result<()> {
    let mut record = vec![0u8; 5];
    stream.read_exact(&mut record).await?;
    let len = u16::from_be_bytes([record[3], record[4]]) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    record.extend_from_slice(&body);
    stream.write_all(&weak_answer(&record, certificate)).await?;
    // The client never finishes the handshake; its close ends the connection.
    let mut rest = [0u8; 1024];
    while stream.read(&mut rest).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::wire::tls::{client_hello, parse_answer, Answer, Offer};

    #[test]
    fn the_weak_server_picks_a_legacy_suite_of_an_old_hello_and_sends_its_expired_certificate() {
        let certificate = weak_certificate().unwrap();
        let hello = client_hello(&Offer { version: 0x0301, suites: vec![0xc02f, 0x000a, 0x0005] }, None);
        match parse_answer(&weak_answer(&hello, &certificate)) {
            Answer::Hello { version, suite, retry, certificates } => {
                assert_eq!((version, suite, retry), (0x0301, 0x000a, false), "TLS 1.0 with its first preference offered: 3DES");
                assert_eq!(certificates, vec![certificate]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_weak_server_refuses_a_hello_without_its_suites_and_answers_tls_1_3_with_1_2() {
        let certificate = weak_certificate().unwrap();
        let aead_only = client_hello(&Offer { version: 0x0303, suites: vec![0xc030] }, None);
        assert_eq!(parse_answer(&weak_answer(&aead_only, &certificate)), Answer::Alert { level: 2, description: 40 });
        let tls13 = client_hello(&Offer { version: 0x0304, suites: vec![0x1301, 0xc02b] }, None);
        assert!(matches!(parse_answer(&weak_answer(&tls13, &certificate)), Answer::Hello { version: 0x0303, .. }));
        assert_eq!(parse_answer(&weak_answer(b"GET / HTTP/1.1\r\n", &certificate)), Answer::Alert { level: 2, description: 10 });
    }
}
