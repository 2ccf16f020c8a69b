//! The rules of an `http_request` step that `verify` re-derives its output with: the
//! request bytes a step sends ([`request`]), when a response has arrived whole
//! ([`is_complete`]), and what a recorded response says ([`parse_response`],
//! [`output`]). The web server cases of TS 33.117 (4.3.4.x) judge a device by the
//! status, headers and body of its answers, so those facts come from the raw bytes the
//! agent recorded, here, for the agent and for replay alike: an edited status or
//! header in a journal disagrees with the bytes beside it.
//!
//! Plain HTTP/1.1 over TCP only; HTTPS is a later probe. The exchange on real sockets
//! is `proofrig_agents::http`.

use serde::Serialize;
use serde_json::{json, Value};

/// The channel an HTTP exchange's bytes are recorded on.
pub const CHANNEL: &str = "http";

/// The most of a body an output shows, in characters (the body's length is exact).
pub const EXCERPT_CHARS: usize = 2048;

/// The most bytes of a response the agent reads and records; a longer answer is cut.
pub const RESPONSE_LIMIT: usize = 256 * 1024;

/// Methods a step may send: the standard ones a web server case asks about.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "TRACK", "PATCH", "CONNECT", "PROPFIND"];

/// What a step asks: method, path (sent as written, so `/%2e%2e/` stays encoded) and
/// extra header lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The `Host:` header's value (the target as the step names it, with its port).
    pub host: &'a str,
    pub headers: &'a [(String, String)],
}

/// Why a step's request cannot be sent as written.
pub fn check_request(method: &str, path: &str, headers: &[(String, String)]) -> Result<(), String> {
    if !METHODS.contains(&method) {
        return Err(format!("`{method}` is not a method an http_request sends; use one of {}", METHODS.join(", ")));
    }
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ');
    if bad(path) || !(path.starts_with('/') || path == "*") {
        return Err(format!("the path `{path}` must start with `/` and hold no spaces or control characters (percent-encode them)"));
    }
    for (name, value) in headers {
        if bad(name) || name.contains(':') || value.chars().any(|c| c == '\r' || c == '\n') {
            return Err(format!("the header `{name}` is not one header line"));
        }
    }
    Ok(())
}

/// The TCP port of a resolved `http_request` spec: a number, or a template's text
/// that reads as one (default 80).
pub fn spec_port(spec: &Value) -> Result<u16, String> {
    match &spec["port"] {
        Value::Null => Ok(80),
        _ => super::spec_tcp_port(spec),
    }
}

/// The method of a resolved `http_request` spec (default `GET`).
pub fn spec_method(spec: &Value) -> &str {
    spec["method"].as_str().unwrap_or("GET")
}

/// The extra headers of a resolved `http_request` spec, in the order sent (by name).
pub fn spec_headers(spec: &Value) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = spec["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_string)))
        .collect();
    headers.sort();
    headers
}

/// The bytes of a request: the request line, `Host`, a user agent, `Connection:
/// close` (one request per connection), then the step's own headers.
pub fn request(req: &Request<'_>) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: proofrig\r\nAccept: */*\r\nConnection: close\r\n",
        req.method, req.path, req.host
    );
    for (name, value) in req.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The `Host:` value for `address` (an IPv6 address bracketed) and `port`.
pub fn host_header(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// A response, as its bytes say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    /// `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body's length in bytes (decoded when chunked), as far as it arrived.
    pub body_len: usize,
    /// The start of the body as text (invalid UTF-8 replaced), at most [`EXCERPT_CHARS`].
    pub body_excerpt: String,
    /// Whether the body arrived whole (by its length, its last chunk, or the close).
    pub complete: bool,
}

impl Response {
    /// The value of header `name` (case-insensitive); repeated headers joined with `, `.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// Where the head ends (the index after the blank line), if it has arrived.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Whether `bytes` hold a whole response (to a HEAD request when `head`), so the agent
/// stops reading without waiting for the server to close.
pub fn is_complete(bytes: &[u8], head: bool) -> bool {
    parse_response(bytes, head).is_ok_and(|r| r.complete && (head || has_framing(&r) || no_body_status(r.status)))
}

fn has_framing(response: &Response) -> bool {
    response.header("content-length").is_some() || is_chunked(response)
}

fn is_chunked(response: &Response) -> bool {
    response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn no_body_status(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Read a response from the bytes received: its status line, headers and body. An
/// interim `100 Continue` is skipped. Errors say why the bytes are no HTTP response.
pub fn parse_response(bytes: &[u8], head: bool) -> Result<Response, String> {
    let mut bytes = bytes;
    loop {
        let end = head_end(bytes).ok_or_else(|| match bytes.is_empty() {
            true => "no response".to_string(),
            false => format!("no complete HTTP response head in {} bytes: {}", bytes.len(), excerpt(bytes, 80)),
        })?;
        let text = String::from_utf8_lossy(&bytes[..end]);
        let mut lines = text.lines();
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts.next().and_then(|s| s.parse::<u16>().ok()).filter(|s| (100..1000).contains(s));
        let (true, Some(status)) = (version.starts_with("HTTP/"), status) else {
            return Err(format!("not an HTTP status line: {}", excerpt(status_line.as_bytes(), 80)));
        };
        let reason = parts.next().unwrap_or_default().trim().to_string();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
            .collect();
        if status == 100 {
            bytes = &bytes[end..];
            continue;
        }
        let mut response =
            Response { version: version.to_string(), status, reason, headers, body_len: 0, body_excerpt: String::new(), complete: true };
        let rest = &bytes[end..];
        let body: Vec<u8> = if head || no_body_status(status) {
            Vec::new()
        } else if is_chunked(&response) {
            let (body, whole) = dechunk(rest);
            response.complete = whole;
            body
        } else if let Some(length) = response.header("content-length").and_then(|l| l.split(',').next()?.trim().parse::<usize>().ok()) {
            response.complete = rest.len() >= length;
            rest[..rest.len().min(length)].to_vec()
        } else {
            rest.to_vec()
        };
        response.body_len = body.len();
        response.body_excerpt = String::from_utf8_lossy(&body).chars().take(EXCERPT_CHARS).collect();
        return Ok(response);
    }
}

/// A chunked body's data, and whether its last chunk arrived.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else { return (body, false) };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16) else { return (body, false) };
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (body, true);
        }
        let take = size.min(rest.len());
        body.extend_from_slice(&rest[..take]);
        if rest.len() < size + 2 {
            return (body, false);
        }
        rest = &rest[size + 2..];
    }
}

fn excerpt(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes).chars().take(max).collect::<String>().escape_debug().to_string()
}

/// The head of a response as plan text: `Name: value` lines, one per header.
pub fn header_text(response: &Response) -> String {
    response.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join("\n")
}

/// An `http_request` step's output: where the request went, what it asked, and what
/// the response says. `headers` maps lower-case names to values (a repeated header
/// joined with `, `); `head` holds every header line, for a pattern over all of them.
pub fn output(address: &str, port: u16, method: &str, path: &str, response: &Response) -> Value {
    let mut headers = serde_json::Map::new();
    for (name, _) in &response.headers {
        let key = name.to_ascii_lowercase();
        if !headers.contains_key(&key) {
            headers.insert(key, json!(response.header(name)));
        }
    }
    json!({
        "address": address,
        "port": port,
        "method": method,
        "path": path,
        "version": response.version,
        "status": response.status,
        "reason": response.reason,
        "headers": headers,
        "head": header_text(response),
        "body_len": response.body_len,
        "body_excerpt": response.body_excerpt,
        "complete": response.complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_request_line_host_and_close_then_the_steps_headers() {
        let headers = vec![("X-Probe".to_string(), "1".to_string())];
        let bytes = request(&Request { method: "TRACE", path: "/%2e%2e/etc/passwd", host: "127.0.0.1:8080", headers: &headers });
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "TRACE /%2e%2e/etc/passwd HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: proofrig\r\nAccept: */*\r\nConnection: close\r\nX-Probe: 1\r\n\r\n"
        );
        assert_eq!(host_header("::1", 80), "[::1]:80");
    }

    #[test]
    fn a_request_with_a_space_an_unknown_method_or_a_header_with_a_newline_is_refused() {
        assert!(check_request("GET", "/a b", &[]).is_err());
        assert!(check_request("get", "/", &[]).is_err());
        assert!(check_request("GET", "/", &[("X".into(), "a\r\nEvil: 1".into())]).is_err());
        assert!(check_request("DELETE", "/index.html", &[]).is_ok());
    }

    #[test]
    fn a_response_with_a_length_gives_status_headers_and_body() {
        let bytes =
            b"HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\nhello";
        let response = parse_response(bytes, false).unwrap();
        assert_eq!((response.status, response.reason.as_str(), response.body_len, response.complete), (404, "Not Found", 5, true));
        assert_eq!(response.header("server").as_deref(), Some("nginx/1.22.1"));
        let out = output("127.0.0.1", 8080, "GET", "/x", &response);
        assert_eq!(out["headers"]["set-cookie"], "a=1, b=2");
        assert_eq!(out["body_excerpt"], "hello");
        assert!(is_complete(bytes, false));
        assert!(!is_complete(&bytes[..bytes.len() - 1], false), "one byte of the body short");
    }

    #[test]
    fn a_chunked_body_is_decoded_and_complete_only_with_its_last_chunk() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let response = parse_response(bytes, false).unwrap();
        assert_eq!((response.body_excerpt.as_str(), response.body_len, response.complete), ("hello world", 11, true));
        assert!(!parse_response(&bytes[..bytes.len() - 7], false).unwrap().complete);
    }

    #[test]
    fn a_head_answer_has_no_body_and_a_close_delimited_body_runs_to_the_end() {
        assert!(is_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true));
        let response = parse_response(b"HTTP/1.0 200 OK\r\n\r\n<html>", false).unwrap();
        assert_eq!(response.body_len, 6);
        assert!(!is_complete(b"HTTP/1.0 200 OK\r\n\r\n<html>", false), "without a length only the close ends it");
    }

    #[test]
    fn bytes_that_are_no_http_response_say_so() {
        assert_eq!(parse_response(b"", false).unwrap_err(), "no response");
        assert!(parse_response(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", false).unwrap_err().contains("not an HTTP status line"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nServer: x\r\n", false).unwrap_err().contains("no complete HTTP response head"));
        let interim = parse_response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", false).unwrap();
        assert_eq!(interim.status, 201);
    }
}
