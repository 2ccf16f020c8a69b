//! `proofrig serve` as a person starts it: what it prints is what it serves.
//!
//! The binary is started on 127.0.0.1 (port 0) in a temporary state directory; the
//! test reads the URL and fingerprint it printed, pins that fingerprint in a TLS
//! handshake, and calls the API with the one-time admin token from the file the first
//! start wrote (never printed). SIGTERM stops it cleanly; a restart in the same
//! directory serves the same certificate and writes no second token.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Started {
    child: Child,
    lines: Vec<String>,
    url: String,
    fingerprint: String,
}

/// Start `proofrig serve` and read its output up to the fingerprint line (and the
/// bootstrap line that follows on a first start).
fn serve(state_dir: &Path, first: bool) -> Started {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if send.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let want = if first { 3 } else { 2 };
    let lines: Vec<String> =
        (0..want).map(|_| receive.recv_timeout(Duration::from_secs(60)).expect("proofrig serve printed its address")).collect();
    let url = lines[0].strip_prefix("proofrig server listening at ").unwrap_or_else(|| panic!("{lines:?}")).to_string();
    let fingerprint = lines[1].rsplit(' ').next().unwrap().to_string();
    assert_eq!(fingerprint.len(), 64, "{lines:?}");
    Started { child, lines, url, fingerprint }
}

fn stop(mut child: Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "proofrig serve stops cleanly on SIGTERM: {status}");
}

/// GET `path` over TLS pinned to `fingerprint`, as `token`; the raw response, and
/// the fingerprint of the certificate the handshake saw.
async fn get(url: &str, fingerprint: &str, path: &str, token: &str) -> (String, String) {
    let addr = url.strip_prefix("https://").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(proofrig_server::tls::pinned_client_config(fingerprint)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tls.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    let served = proofrig_server::tls::fingerprint(&stream.get_ref().1.peer_certificates().unwrap()[0]);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok();
    (response, served)
}

#[tokio::test]
async fn serve_prints_the_url_and_fingerprint_it_serves_and_keeps_the_admin_token_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("server");
    let first = serve(&state, true);
    assert!(first.url.starts_with("https://127.0.0.1:"), "{:?}", first.lines);
    let token_file = state.join("bootstrap-admin.token");
    assert!(first.lines[2].contains(&token_file.display().to_string()), "{:?}", first.lines);
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert!(!first.lines.iter().any(|l| l.contains(&token)), "the token is never printed");

    let (response, served) = get(&first.url, &first.fingerprint, "/api/users", &token).await;
    assert_eq!(served, first.fingerprint, "the certificate served is the one whose fingerprint was printed");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""name":"admin""#) && response.contains(r#""role":"admin""#), "{response}");
    let (response, _) = get(&first.url, &first.fingerprint, "/api/users", "prt_not-a-token").await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    stop(first.child);

    std::fs::remove_file(&token_file).unwrap();
    let again = serve(&state, false);
    assert_eq!(again.fingerprint, first.fingerprint, "a restart serves the same certificate");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!token_file.exists(), "no second bootstrap token");
    let (response, _) = get(&again.url, &again.fingerprint, "/api/users", &token).await;
    assert!(response.starts_with("HTTP/1.1 200"), "the first admin's token survives the restart: {response}");
    stop(again.child);
}

#[test]
fn plain_http_off_loopback_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["serve", "--listen", "0.0.0.0:0", "--plain-http", "--state-dir"])
        .arg(dir.path().join("server"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing plain HTTP on 0.0.0.0:0") && stderr.contains("loopback"), "{stderr}");
    assert!(!dir.path().join("server").exists(), "nothing was created");
}
