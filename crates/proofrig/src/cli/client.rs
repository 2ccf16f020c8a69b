//! The one HTTP client of the lab server's API, shared by every service command
//! (`submit`, `queue`, `cancel`, `rigs`, `reserve`, `fetch`, `user`, `labhost token`).
//!
//! Why one module: each of these commands carries an API token, and a token sent to
//! the wrong server is lost. So where the server is, which certificate it must
//! present and which token to send are decided here once: `--server` or
//! `PROOFRIG_SERVER`, `--token` or `PROOFRIG_TOKEN`, `--fingerprint` or
//! `PROOFRIG_FINGERPRINT`. An `https://` server is trusted only by the SHA-256
//! fingerprint it printed at start (`proofrig_server::tls::pinned_client_config`; no
//! CA store, verification never off); plain `http://` only to a loopback address (a
//! TLS proxy's back end on the same machine). No redirect is followed (it could carry
//! the token elsewhere). A refusal shows the server's [`ApiError`] as it was sent:
//! "server refused <what>: <message> (<code>, HTTP <status>)"; a missing setting, a
//! certificate that is not the pinned one, or a server that cannot be reached each
//! say what to do. The token is never printed.

use std::net::IpAddr;
use std::time::Duration;

use proofrig_proto::api::ApiError;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{exit, Failure};

/// Where the server is and how to trust and address it: flags, or the environment.
#[derive(Clone, Default, clap::Args)]
pub struct Connection {
    /// The lab server: https://HOST:PORT, or http://127.0.0.1:PORT for plain HTTP on
    /// loopback [default: $PROOFRIG_SERVER].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Your API token (an admin mints it; `proofrig user add`) [default:
    /// $PROOFRIG_TOKEN]. Prefer the variable: a flag shows in the process list.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The SHA-256 fingerprint of the server's certificate, as `proofrig serve`
    /// printed it; required for https [default: $PROOFRIG_FINGERPRINT].
    #[arg(long, value_name = "SHA256")]
    pub fingerprint: Option<String>,
}

/// Without the token: whatever prints the parsed command line prints no secret.
impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.token.as_ref().map(|_| "<redacted>");
        f.debug_struct("Connection").field("server", &self.server).field("token", &token).field("fingerprint", &self.fingerprint).finish()
    }
}

pub const SERVER_ENV: &str = "PROOFRIG_SERVER";
pub const TOKEN_ENV: &str = "PROOFRIG_TOKEN";
pub const FINGERPRINT_ENV: &str = "PROOFRIG_FINGERPRINT";

/// Why a request did not get a good answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no lab server given: pass --server https://HOST:PORT or set {SERVER_ENV} (the URL `proofrig serve` printed)")]
    NoServer,
    #[error("no API token: set {TOKEN_ENV} (or pass --token); an admin mints tokens with `proofrig user add` or `proofrig user token`")]
    NoToken,
    #[error("{server} is https but no certificate fingerprint is pinned: set {FINGERPRINT_ENV} (or pass --fingerprint) to the SHA-256 `proofrig serve` printed")]
    NoFingerprint { server: String },
    #[error("--fingerprint `{given}` is not a SHA-256: give the 64 hex digits `proofrig serve` printed (colons allowed)")]
    BadFingerprint { given: String },
    #[error("server URL `{given}`: {why}")]
    BadServer { given: String, why: String },
    #[error("{server} presented a certificate whose SHA-256 is not the pinned fingerprint {pinned}: this may not be your lab server, so nothing was sent. Check the fingerprint `proofrig serve` printed (it changes only if the server's tls/ directory was replaced)")]
    PinMismatch { server: String, pinned: String },
    #[error(
        "cannot reach the lab server at {server}: {detail}; check that `proofrig serve` runs there and the address and port are right"
    )]
    Unreachable { server: String, detail: String },
    #[error("server refused {what}: {message} ({code}, HTTP {status})")]
    Refused { what: String, message: String, code: String, status: u16 },
    #[error("the lab server's answer to {what} could not be read: {detail}")]
    BadAnswer { what: String, detail: String },
}

impl ClientError {
    /// The exit code: bad usage or a request the server found invalid (a malformed
    /// plan: nothing was done) is [`exit::USAGE`]; anything refused or down is
    /// [`exit::FAILED`].
    pub fn code(&self) -> u8 {
        match self {
            ClientError::NoServer
            | ClientError::NoToken
            | ClientError::NoFingerprint { .. }
            | ClientError::BadFingerprint { .. }
            | ClientError::BadServer { .. } => exit::USAGE,
            ClientError::Refused { status, .. } => exit::of_refusal(*status),
            ClientError::PinMismatch { .. } | ClientError::Unreachable { .. } | ClientError::BadAnswer { .. } => exit::FAILED,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = e.code();
        Failure { report: miette::Report::msg(e.to_string()), code }
    }
}

/// A client of one lab server, with one token.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
    pinned: Option<String>,
}

/// `value`, or the variable `env` when it is absent or empty.
fn setting(value: &Option<String>, env: &str) -> Option<String> {
    value.clone().filter(|v| !v.trim().is_empty()).or_else(|| std::env::var(env).ok().filter(|v| !v.trim().is_empty()))
}

fn check_fingerprint(given: &str) -> Result<String, ClientError> {
    let hex: String = given.trim().replace(':', "").to_ascii_lowercase();
    match hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        true => Ok(hex),
        false => Err(ClientError::BadFingerprint { given: given.to_string() }),
    }
}

impl Client {
    /// The client the flags and environment describe (see the module doc).
    pub fn new(args: &Connection) -> Result<Client, ClientError> {
        let given = setting(&args.server, SERVER_ENV).ok_or(ClientError::NoServer)?;
        let bad = |why: &str| ClientError::BadServer { given: given.clone(), why: why.to_string() };
        let base = Url::parse(given.trim()).map_err(|e| bad(&format!("{e}; write it as https://HOST:PORT")))?;
        if base.host_str().is_none() || !base.username().is_empty() || base.password().is_some() {
            return Err(bad("write it as https://HOST:PORT, without a user or password"));
        }
        let token = setting(&args.token, TOKEN_ENV).ok_or(ClientError::NoToken)?;
        let (pinned, tls_pin) = match base.scheme() {
            "https" => {
                let fingerprint = setting(&args.fingerprint, FINGERPRINT_ENV)
                    .ok_or_else(|| ClientError::NoFingerprint { server: given.trim().to_string() })?;
                let fingerprint = check_fingerprint(&fingerprint)?;
                (Some(fingerprint.clone()), fingerprint)
            }
            "http" => {
                let host = base.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
                let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(bad("plain http is only for a loopback address (a TLS proxy's back end); use https:// and --fingerprint"));
                }
                // reqwest wants a TLS configuration even for http://; this one trusts
                // no certificate at all and is never used.
                (None, "0".repeat(64))
            }
            _ => return Err(bad("use https://HOST:PORT (or http://127.0.0.1:PORT on loopback)")),
        };
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(proofrig_server::tls::pinned_client_config(&tls_pin))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            // Per read, not per request: a gigabyte journal may take long, a stalled server may not.
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("proofrig/", env!("CARGO_PKG_VERSION")));
        if pinned.is_none() {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| bad(&format!("no HTTP client for it: {e}")))?;
        Ok(Client { http, base, token, pinned })
    }

    /// The server's URL as given.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of an API path built from `segments` (each percent-encoded), and an
    /// optional query.
    pub fn url(&self, segments: &[&str], query: Option<&str>) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.path_segments_mut().expect("an http(s) URL has a path").pop_if_empty().extend(segments);
        url.set_query(query);
        url
    }

    /// Send a request and return the answer if it succeeded; a refusal becomes
    /// [`ClientError::Refused`] with the server's message. `what` names the request
    /// for people ("the job", "reserving bench-1").
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
        what: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => ClientError::Refused { what: what.to_string(), message: e.message, code: e.code, status: status.as_u16() },
            Err(_) => ClientError::Refused {
                what: what.to_string(),
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).trim().to_string(),
                code: status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "_"),
                status: status.as_u16(),
            },
        })
    }

    /// [`Client::send`] with a JSON answer read as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&impl Serialize>,
        what: &str,
    ) -> Result<T, ClientError> {
        let response = self.send(method, self.url(segments, None), body, what).await?;
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer { what: what.to_string(), detail: e.to_string() })
    }

    /// [`Client::json`] for a GET.
    pub async fn get<T: DeserializeOwned>(&self, segments: &[&str], what: &str) -> Result<T, ClientError> {
        self.json(Method::GET, segments, None::<&()>, what).await
    }

    /// What a failed connection or transfer means to the person running the command.
    pub fn transport(&self, e: reqwest::Error) -> ClientError {
        let server = self.server().to_string();
        if let Some(pinned) = &self.pinned {
            if is_certificate_refusal(&e) {
                return ClientError::PinMismatch { server, pinned: pinned.clone() };
            }
        }
        let detail = match (e.is_timeout(), io_kind(&e)) {
            (true, _) => "it did not answer in time".to_string(),
            (_, Some(std::io::ErrorKind::ConnectionRefused)) => "connection refused (nothing listens there)".to_string(),
            _ => chain(&e),
        };
        ClientError::Unreachable { server, detail }
    }
}

/// Whether the TLS handshake failed because the server's certificate is not the
/// pinned one (the verifier's refusal, as rustls reports it).
fn is_certificate_refusal(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        // hyper-util boxes the I/O error on the way up, which hides its type; rustls's
        // own words for the verifier's refusal remain.
        if matches!(tls, Some(rustls::Error::InvalidCertificate(_))) || err.to_string().contains("invalid peer certificate") {
            return true;
        }
        source = err.source();
    }
    false
}

fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    parts.join(": ")
}

/// A time from the server (milliseconds since the epoch) as RFC 3339, UTC, to the second.
pub fn time(at: proofrig_proto::ids::UnixMillis) -> String {
    at.rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str, fingerprint: Option<&str>) -> Connection {
        Connection { server: Some(server.into()), token: Some("prt_x".into()), fingerprint: fingerprint.map(String::from) }
    }

    #[test]
    fn https_needs_a_well_formed_pin_and_plain_http_only_loopback() {
        let pin = "AB:".repeat(31) + "AB";
        let client = Client::new(&args("https://lab:8443/", Some(&pin))).unwrap();
        assert_eq!(client.pinned.as_deref(), Some("ab".repeat(32).as_str()), "colons and case ignored");
        assert_eq!(client.server(), "https://lab:8443");
        assert!(matches!(Client::new(&args("https://lab:8443", Some("abcd"))), Err(ClientError::BadFingerprint { .. })));
        for loopback in ["http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080"] {
            assert!(Client::new(&args(loopback, None)).unwrap().pinned.is_none(), "{loopback}");
        }
        for refused in ["http://10.0.0.1:8080", "http://lab:8080", "ftp://lab", "https://user:pw@lab", "lab:8443"] {
            let err = Client::new(&args(refused, Some(&pin))).err().unwrap_or_else(|| panic!("{refused} accepted"));
            assert!(matches!(err, ClientError::BadServer { .. }), "{refused}: {err}");
            assert_eq!(err.code(), exit::USAGE);
        }
    }

    #[test]
    fn the_parsed_command_line_shows_no_token() {
        let shown = format!("{:?}", args("https://lab:8443", None));
        assert!(shown.contains("<redacted>") && !shown.contains("prt_x"), "{shown}");
    }

    #[test]
    fn path_segments_are_encoded_so_a_name_cannot_leave_its_route() {
        let client = Client::new(&args("https://lab:8443/proxy/", Some(&"0".repeat(64)))).unwrap();
        let url = client.url(&["api", "rigs", "../users", "reservation"], None);
        assert_eq!(url.as_str(), "https://lab:8443/proxy/api/rigs/..%2Fusers/reservation");
        let url = client.url(&["api", "runs", "r1"], Some("flagged=true"));
        assert_eq!(url.as_str(), "https://lab:8443/proxy/api/runs/r1?flagged=true");
    }

    #[test]
    fn a_refusal_shows_the_server_s_words_and_exits_by_what_was_wrong() {
        let refused = |status| ClientError::Refused {
            what: "the job".into(),
            message: "a.yaml:3:1: unknown field".into(),
            code: "invalid".into(),
            status,
        };
        assert_eq!(refused(400).to_string(), "server refused the job: a.yaml:3:1: unknown field (invalid, HTTP 400)");
        assert_eq!(refused(400).code(), exit::USAGE);
        assert_eq!(refused(403).code(), exit::FAILED);
    }
}
