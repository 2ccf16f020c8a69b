//! The simulated devices' web management server, one per profile, so the web server
//! cases of TS 33.117 (4.3.4.x) have a compliant and a careless server to judge.
//!
//! Hardened: GET and HEAD only (every other method 405), no version anywhere (`Server:
//! httpd`), a directory is 403, anything unknown a plain 404 page of its own, and a
//! path that climbs (`..`, encoded or not) a 400. Weak, as embedded web servers are
//! left: a product/version `Server:` header and `X-Powered-By`, every method accepted
//! (TRACE echoes the request, PUT "stores" it, DELETE "deletes"), directories listed,
//! the server's sample pages still installed, error pages that name the server and
//! its version, and a path that climbs (`/../../etc/passwd`, percent-encoded or not)
//! served from the device's file system outside the document root (`/var/www`).

use crate::device_os::{DeviceIdentity, DeviceOs, NodeKind};
use crate::profile::Profile;

/// The weak server's product token, as its headers and error pages show it.
pub const WEAK_SERVER: &str = "GoAhead-Webs/2.5.0";

/// What the weak device still serves from its installation: sample and test pages.
const WEAK_SAMPLES: &[(&str, &str)] = &[
    ("/phpinfo.php", "<html><body><h1>PHP Version 5.6.40</h1><table><tr><td>System</td><td>Linux</td></tr></table></body></html>\n"),
    ("/test.html", "<html><body><h1>It works!</h1><p>This is the default test page of the web server.</p></body></html>\n"),
];

/// One request's head as received, read into its method and path.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub head: &'a str,
}

impl<'a> Request<'a> {
    pub fn parse(head: &'a str) -> Request<'a> {
        let mut parts = head.lines().next().unwrap_or_default().split(' ');
        Request { method: parts.next().unwrap_or_default(), path: parts.next().unwrap_or("/"), head }
    }
}

/// The whole response of device `os` to `request`.
pub fn answer(os: &DeviceOs, request: &Request<'_>) -> Vec<u8> {
    let (hostname, identity) = (os.hostname(), os.identity());
    match os.profile() {
        Profile::Hardened => hardened(&hostname, &identity, request),
        Profile::Weak => match climbs(request.path).then(|| outside_root(os, request.path)).flatten() {
            Some(file) => response("200 OK", &[("Server", WEAK_SERVER.to_string())], &file, request.method == "HEAD"),
            None => weak(&hostname, &identity, request),
        },
    }
}

/// The management API's configuration resource: the hardened server asks for
/// credentials (401), the weak one serves the configuration to anyone.
pub const MANAGEMENT_API: &str = "/api/config";

/// Where the weak server's document root lies on the device.
const DOCUMENT_ROOT: &str = "/var/www";

/// The device's file a climbing `path` names, resolved from the document root after
/// percent-decoding, as a careless server maps it; None when there is none.
fn outside_root(os: &DeviceOs, path: &str) -> Option<String> {
    let decoded = percent_decode(path.split('?').next().unwrap_or_default()).replace('\\', "/");
    let mut parts: Vec<&str> = DOCUMENT_ROOT.split('/').filter(|p| !p.is_empty()).collect();
    for part in decoded.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let resolved = format!("/{}", parts.join("/"));
    let state = os.lock();
    match &state.files.get(&resolved)?.kind {
        NodeKind::File(content) => Some(state.render(content)),
        NodeKind::Directory => None,
    }
}

/// The user an `Authorization: Basic` header of `head` names (its password is ignored).
pub fn basic_user(head: &str) -> Option<String> {
    let value = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("authorization").then(|| value.trim().to_string())
    })?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?.trim();
    let decoded = base64_decode(encoded)?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or_default().to_string())
}

/// Standard base64 (with padding), as Basic authentication sends it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn response(status: &str, headers: &[(&str, String)], body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

fn page(title: &str, text: &str) -> String {
    format!("<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>\n")
}

/// The web management login page; `firmware` shown on the weak device only.
pub fn login_page(hostname: &str, identity: &DeviceIdentity, firmware: bool) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>{vendor} {model} - {hostname}</title></head>\n\
         <body><h1>{model} web management</h1>\n\
         <form method=\"post\" action=\"/login\">User <input name=\"user\"> \
         Password <input name=\"password\" type=\"password\"> \
         <input type=\"submit\" value=\"Log in\"></form>\n{footer}</body></html>\n",
        vendor = identity.vendor,
        model = identity.model,
        footer = if firmware { format!("<p>Firmware {}</p>\n", identity.firmware) } else { String::new() },
    )
}

fn climbs(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("..") || lower.contains("%2e") || lower.contains("%2f") || lower.contains('\\')
}

fn hardened(hostname: &str, identity: &DeviceIdentity, request: &Request<'_>) -> Vec<u8> {
    let server = ("Server", "httpd".to_string());
    let html = ("Content-Type", "text/html".to_string());
    let head_only = request.method == "HEAD";
    if !matches!(request.method, "GET" | "HEAD") {
        let allow = ("Allow", "GET, HEAD".to_string());
        return response("405 Method Not Allowed", &[server, html, allow], &page("Not allowed", "This method is not supported."), false);
    }
    if climbs(request.path) {
        return response("400 Bad Request", &[server, html], &page("Bad request", "The request was refused."), head_only);
    }
    match request.path {
        "/" | "/index.html" => response("200 OK", &[server, html], &login_page(hostname, identity, false), head_only),
        // The management API asks for credentials before it answers anything.
        MANAGEMENT_API => {
            let challenge = ("WWW-Authenticate", "Basic realm=\"management\"".to_string());
            response("401 Unauthorized", &[server, html, challenge], &page("Unauthorized", "Log in first."), head_only)
        }
        path if path.ends_with('/') => response("403 Forbidden", &[server, html], &page("Forbidden", "Access denied."), head_only),
        _ => response("404 Not Found", &[server, html], &page("Not found", "The page does not exist."), head_only),
    }
}

fn weak(hostname: &str, identity: &DeviceIdentity, request: &Request<'_>) -> Vec<u8> {
    let headers =
        [("Server", WEAK_SERVER.to_string()), ("X-Powered-By", "PHP/5.6.40".to_string()), ("Content-Type", "text/html".to_string())];
    let head_only = request.method == "HEAD";
    match request.method {
        "TRACE" => {
            let echo = [("Server", WEAK_SERVER.to_string()), ("Content-Type", "message/http".to_string())];
            return response("200 OK", &echo, request.head, false);
        }
        "PUT" => return response("201 Created", &headers, &page("Created", request.path), false),
        "DELETE" => return response("200 OK", &headers, &page("Deleted", request.path), false),
        "OPTIONS" => {
            let allow = [headers[0].clone(), ("Allow", "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS".to_string())];
            return response("200 OK", &allow, "", false);
        }
        _ => {}
    }
    if let Some((_, body)) = WEAK_SAMPLES.iter().find(|(path, _)| *path == request.path) {
        return response("200 OK", &headers, body, head_only);
    }
    match request.path {
        "/" | "/index.html" => response("200 OK", &headers, &login_page(hostname, identity, true), head_only),
        // The management API answers whoever asks: the login page guards only the UI.
        MANAGEMENT_API => {
            let config =
                format!("hostname={hostname}\nfirmware={}\nmanagement.telnet=enabled\nmanagement.ftp=enabled\n", identity.firmware);
            response("200 OK", &[headers[0].clone(), ("Content-Type", "text/plain".to_string())], &config, head_only)
        }
        path if path.ends_with('/') => {
            let listing = format!(
                "<html><head><title>Index of {path}</title></head><body><h1>Index of {path}</h1><hr><pre>\
                 <a href=\"../\">../</a>\n<a href=\"app.js\">app.js</a>\n<a href=\"backup.tar.gz\">backup.tar.gz</a>\n</pre><hr>\
                 <address>{WEAK_SERVER}</address></body></html>\n"
            );
            response("200 OK", &headers, &listing, head_only)
        }
        _ => {
            let body = format!("<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1><hr><address>{WEAK_SERVER} at {hostname}</address></body></html>\n");
            response("404 Not Found", &headers, &body, head_only)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(profile: Profile, head: &str) -> String {
        let identity = DeviceIdentity { vendor: "V".into(), model: "M".into(), serial: "S".into(), firmware: "1.2.3".into() };
        let os = DeviceOs::new(crate::device_os::DeviceConfig::new("ru", profile, "root-password").with_identity(identity));
        String::from_utf8(answer(&os, &Request::parse(head))).unwrap()
    }

    #[test]
    fn the_hardened_server_refuses_other_methods_lists_nothing_and_names_no_version() {
        assert!(ask(Profile::Hardened, "TRACE / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(ask(Profile::Hardened, "GET /static/ HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 403"));
        assert!(ask(Profile::Hardened, "GET /%2e%2e/etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
        let missing = ask(Profile::Hardened, "GET /nothing HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404") && !missing.contains("1.2.3"), "{missing}");
        assert!(!ask(Profile::Hardened, "GET / HTTP/1.1\r\n\r\n").contains("Firmware"));
    }

    #[test]
    fn the_user_of_a_basic_authorization_is_read_and_its_password_ignored() {
        let head = "GET / HTTP/1.1\r\nAuthorization: Basic cHJvb2ZyaWctcHJvYmU6bm90LXRoZS1wYXNzd29yZA==\r\n\r\n";
        assert_eq!(basic_user(head).as_deref(), Some("proofrig-probe"));
        assert_eq!(basic_user("GET / HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn the_weak_server_echoes_trace_lists_directories_and_names_its_version() {
        assert!(ask(Profile::Weak, "TRACE / HTTP/1.1\r\nX: 1\r\n\r\n").contains("X: 1"));
        assert!(ask(Profile::Weak, "PUT /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 201"));
        assert!(ask(Profile::Weak, "GET /static/ HTTP/1.1\r\n\r\n").contains("Index of /static/"));
        assert!(ask(Profile::Weak, "GET /nothing HTTP/1.1\r\n\r\n").contains(WEAK_SERVER));
        assert!(ask(Profile::Weak, "GET /test.html HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        for climb in ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2f..%2f..%2fetc/passwd"] {
            assert!(ask(Profile::Weak, &format!("GET {climb} HTTP/1.1\r\n\r\n")).contains("root:x:0:0:"), "{climb}");
            assert!(!ask(Profile::Hardened, &format!("GET {climb} HTTP/1.1\r\n\r\n")).contains("root:x:0:0:"), "{climb}");
        }
    }
}
