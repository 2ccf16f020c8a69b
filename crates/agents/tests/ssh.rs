//! The SSH agent against a real OpenSSH server (Debian's sshd, started per test on
//! loopback by `proofrig-testpeers`): what a test author relies on when proofrig runs
//! commands, drives shells, fetches files, logs in and audits algorithms over SSH.

mod ssh_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proofrig_agents::channel::{ByteStream, ChannelError};
use proofrig_agents::ssh::{audit_algorithms, try_login, ConnectOptions, Credential, SshError, SshSession};
use proofrig_model::events::{ChannelId, Direction, Event, EventKind, MemorySink, Recorder};
use proofrig_model::rig::SshEndpoint;
use proofrig_model::secret::{Secret, SecretRef};
use proofrig_testpeers::sshd::Sshd;
use sha2::{Digest, Sha256};
use ssh_support::endpoint;

/// A key no test server holds (made by `ssh-keygen -t ed25519`).
const STRANGER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDV2WGvMJIZrtEHFQ+GE9S04+ZNfZVNAXsVqATbBe/1V";
const STRANGER_FINGERPRINT: &str = "SHA256:CJl+pMJlLF6Wwb66giS9EaDRX9H6vfNcMsOQQfEzXow";

fn memory_recorder() -> (Arc<MemorySink>, Recorder) {
    let sink = MemorySink::new();
    (sink.clone(), Recorder::new(sink))
}

/// Password auth (from a secret file), host key pinned by known_hosts.
fn password_endpoint(sshd: &Sshd, password: &str) -> SshEndpoint {
    let secret_file = sshd.dir().join(format!("password-{}", password.len()));
    std::fs::write(&secret_file, format!("{password}\n")).unwrap();
    SshEndpoint {
        key_file: None,
        password: Some(SecretRef::File(secret_file)),
        host_key: None,
        known_hosts: Some(sshd.known_hosts_path()),
        ..endpoint(sshd)
    }
}

fn write_known_hosts(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn serialized(sink: &MemorySink) -> String {
    serde_json::to_string(&sink.events()).unwrap()
}

fn kinds<'a>(events: &'a [Event], channel: &str) -> Vec<&'a EventKind> {
    events.iter().map(|e| &e.kind).filter(|k| k.channel().is_some_and(|c| c.channel == channel)).collect()
}

async fn read_until(stream: &mut ByteStream, needle: &str, limit: Duration) -> String {
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.read()).await {
            Ok(Ok(bytes)) => seen.extend(bytes),
            Ok(Err(e)) => panic!("stream ended before `{needle}`: {e}; got {:?}", String::from_utf8_lossy(&seen)),
            Err(_) => panic!("no `{needle}` within {limit:?}; got {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn exec_returns_stdout_stderr_and_exit_status_and_records_them() {
    let sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let session = SshSession::connect("ru1", &endpoint(&sshd), recorder).await.unwrap();
    assert_eq!(session.host_key_fingerprint(), sshd.host_key_fingerprint());
    assert_eq!(session.host_key_type(), "ssh-ed25519");

    let out = session.exec("echo out; echo err >&2; exit 3", Duration::from_secs(5)).await.unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_status, Some(3));
    assert_eq!(out.exit_signal, None);
    assert!(session.exec("true", Duration::from_secs(5)).await.unwrap().success());
    let killed = session.exec("kill -TERM $$", Duration::from_secs(5)).await.unwrap();
    assert_eq!((killed.exit_status, killed.exit_signal.as_deref()), (None, Some("TERM")));

    // Large output on both streams at once must neither deadlock nor lose bytes.
    let big = session.exec("seq 1 100000; seq 1 100000 >&2; head -c 300000 /dev/zero", Duration::from_secs(10)).await.unwrap();
    let numbers: String = (1..=100000).map(|i| format!("{i}\n")).collect();
    assert_eq!(big.stdout.len(), numbers.len() + 300_000);
    assert_eq!(&big.stdout[..numbers.len()], numbers.as_bytes());
    assert_eq!(big.stderr, numbers.as_bytes());

    session.close().await;
    let events = sink.events();
    let exec = kinds(&events, "ssh:exec");
    assert!(matches!(exec[0], EventKind::SshExec { command, .. } if command == "echo out; echo err >&2; exit 3"));
    assert!(matches!(exec[1], EventKind::SshExit { exit_status: Some(3), timed_out: false, .. }));
    assert_eq!(sink.transcript(&ChannelId::new("ru1", "ssh:exec:stdout"), Direction::In)[..4], *b"out\n");
    assert_eq!(sink.transcript(&ChannelId::new("ru1", "ssh:exec:stderr"), Direction::In)[..4], *b"err\n");
    let base = kinds(&events, "ssh");
    assert!(matches!(base[0], EventKind::ChannelOpened { detail, .. } if detail.contains(sshd.host_key_fingerprint())));
    assert!(matches!(base[1], EventKind::SshAuth { method, accepted: true, .. } if method == "publickey"));
    assert!(matches!(base.last().unwrap(), EventKind::ChannelClosed { .. }));
}

#[tokio::test]
async fn a_command_that_outlives_its_timeout_fails_quickly_and_the_session_stays_usable() {
    let sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let session = SshSession::connect("ru1", &endpoint(&sshd), recorder).await.unwrap();
    let started = Instant::now();
    let err = session.exec("echo begun; sleep 30", Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(800), "took {:?}", started.elapsed());
    assert!(err.to_string().contains("ru1") && err.to_string().contains("sleep 30"));

    assert_eq!(session.exec("echo still here", Duration::from_secs(5)).await.unwrap().stdout, b"still here\n");
    let events = sink.events();
    let exec = kinds(&events, "ssh:exec");
    assert!(matches!(exec[1], EventKind::SshExit { timed_out: true, exit_status: None, .. }), "{exec:?}");
    // What the command said before it hung is in the transcript.
    assert_eq!(sink.transcript(&ChannelId::new("ru1", "ssh:exec:stdout"), Direction::In)[..6], *b"begun\n");
    session.close().await;
}

#[tokio::test]
async fn shell_is_driven_through_a_byte_stream_and_recorded() {
    let sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let session = SshSession::connect("ru1", &endpoint(&sshd), recorder).await.unwrap();
    let mut shell = session.shell().await.unwrap();
    let channel = ChannelId::new("ru1", "ssh:shell");
    assert_eq!(shell.channel(), &channel);

    shell.write(b"echo sum=$((6*7))\n").await.unwrap();
    read_until(&mut shell, "sum=42", Duration::from_secs(5)).await;

    // A secret typed at a non-echoing prompt reaches the device but not the transcript.
    let secret = Secret::new("env:RU1_PIN", "s3cr3t-pin-123");
    shell.write(b"read -s PIN; echo len=${#PIN}\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    shell.write_secret(&secret, b"\n").await.unwrap();
    read_until(&mut shell, "len=14", Duration::from_secs(5)).await;

    shell.write(b"exit 0\n").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let end = loop {
        match tokio::time::timeout_at(deadline.into(), shell.read()).await.expect("shell did not end") {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(end, ChannelError::ConsoleLost { .. }), "{end}");

    let out = String::from_utf8_lossy(&sink.transcript(&channel, Direction::Out)).into_owned();
    assert!(out.contains("echo sum=$((6*7))\n"), "{out:?}");
    let input = String::from_utf8_lossy(&sink.transcript(&channel, Direction::In)).into_owned();
    assert!(input.contains("sum=42"));
    let events = sink.events();
    let shell_events = kinds(&events, "ssh:shell");
    assert!(shell_events.iter().any(|k| matches!(k, EventKind::Redacted { secret, len: 14, .. } if secret == "env:RU1_PIN")));
    assert!(matches!(shell_events.last().unwrap(), EventKind::ChannelLost { reason, .. } if reason.contains("ended")));
    assert!(!serialized(&sink).contains("s3cr3t-pin-123"));
}

#[tokio::test]
async fn dropping_the_shell_stream_closes_its_session() {
    let sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let session = SshSession::connect("ru1", &endpoint(&sshd), recorder).await.unwrap();
    let mut shell = session.shell().await.unwrap();
    shell.write(b"echo ready\n").await.unwrap();
    read_until(&mut shell, "ready\r\n", Duration::from_secs(5)).await;
    drop(shell);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !kinds(&sink.events(), "ssh:shell").iter().any(|k| matches!(k, EventKind::ChannelClosed { .. })) {
        assert!(Instant::now() < deadline, "no ChannelClosed for the dropped shell");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The command session is independent of the shell's.
    assert!(session.exec("true", Duration::from_secs(5)).await.unwrap().success());
}

#[tokio::test]
async fn fetch_returns_the_file_and_records_its_digest() {
    let sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let remote = sshd.files_dir().join("config.bin");
    std::fs::write(&remote, &content).unwrap();
    let session = SshSession::connect("ru1", &endpoint(&sshd), recorder).await.unwrap();

    let fetched = session.fetch(remote.to_str().unwrap()).await.unwrap();
    assert_eq!(fetched, content);
    let digest: String = Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    let events = sink.events();
    let fetch_events = kinds(&events, "ssh:fetch");
    assert!(
        matches!(fetch_events[0], EventKind::FileFetched { path, len: 300_000, sha256, .. }
            if path == remote.to_str().unwrap() && *sha256 == digest),
        "{fetch_events:?}"
    );

    let missing = session.fetch("/nonexistent/file").await.unwrap_err();
    assert!(matches!(&missing, SshError::Fetch { reason, .. } if reason.contains("no such file")), "{missing}");
    assert!(session.exec("true", Duration::from_secs(5)).await.unwrap().success());
}

#[tokio::test]
async fn fetch_falls_back_to_scp_when_the_server_has_no_sftp() {
    let sshd = Sshd::builder().without_sftp().start();
    let (sink, recorder) = memory_recorder();
    let remote = sshd.files_dir().join("scp.txt");
    std::fs::write(&remote, b"only over scp\n").unwrap();
    let session = SshSession::connect("ru1", &endpoint(&sshd), recorder).await.unwrap();
    assert_eq!(session.fetch(remote.to_str().unwrap()).await.unwrap(), b"only over scp\n");
    let events = sink.events();
    let fetch_events = kinds(&events, "ssh:fetch");
    assert!(matches!(fetch_events[0], EventKind::Note { text, .. } if text.contains("SCP")));
    assert!(matches!(fetch_events[1], EventKind::FileFetched { len: 14, .. }));
    assert!(session.fetch("/nonexistent/file").await.is_err());
}

#[tokio::test]
async fn password_login_works_and_the_password_never_reaches_the_evidence() {
    let sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let session = SshSession::connect("ru1", &password_endpoint(&sshd, sshd.password()), recorder).await.unwrap();
    assert_eq!(session.exec("whoami", Duration::from_secs(5)).await.unwrap().stdout, b"root\n");
    session.close().await;
    assert!(sshd.log().contains("Accepted password for root"));
    let events = sink.events();
    assert!(kinds(&events, "ssh")
        .iter()
        .any(|k| matches!(k, EventKind::SshAuth { method, accepted: true, user, .. } if method == "password" && user == "root")));
    assert!(!serialized(&sink).contains(sshd.password()));

    let (sink, recorder) = memory_recorder();
    let err = SshSession::connect("ru1", &password_endpoint(&sshd, "wrong-password-42"), recorder).await.unwrap_err();
    match &err {
        SshError::AuthRefused { user, methods, .. } => {
            assert_eq!(user, "root");
            assert!(methods.contains(&"password".to_string()) && methods.contains(&"publickey".to_string()));
        }
        other => panic!("expected AuthRefused, got {other}"),
    }
    assert!(!err.to_string().contains("wrong-password-42") && !format!("{err:?}").contains("wrong-password-42"));
    assert!(!serialized(&sink).contains("wrong-password-42"));
    assert!(kinds(&sink.events(), "ssh").iter().any(|k| matches!(k, EventKind::SshAuth { accepted: false, .. })));
}

#[tokio::test]
async fn a_wrong_fingerprint_pin_is_refused_before_any_credential_is_sent() {
    let sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let pinned_elsewhere = SshEndpoint { host_key: Some(STRANGER_FINGERPRINT.into()), ..endpoint(&sshd) };
    let err = SshSession::connect("ru1", &pinned_elsewhere, recorder).await.unwrap_err();
    match &err {
        SshError::HostKeyMismatch { offered, key_type, expected, .. } => {
            assert_eq!(offered, sshd.host_key_fingerprint());
            assert_eq!(key_type, "ssh-ed25519");
            assert!(expected.contains(STRANGER_FINGERPRINT));
        }
        other => panic!("expected HostKeyMismatch, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains(sshd.host_key_fingerprint()) && message.contains("ru1") && message.contains("console"));
    assert!(!sink.events().iter().any(|e| matches!(e.kind, EventKind::SshAuth { .. })));
    assert!(!sshd.log().contains("Accepted") && !sshd.log().contains("Failed"), "credentials were sent: {}", sshd.log());
}

#[tokio::test]
async fn a_known_hosts_pin_for_another_key_is_refused_and_an_absent_host_is_unknown() {
    let sshd = Sshd::start();
    let entry = format!("[127.0.0.1]:{}", sshd.port());
    let changed = write_known_hosts(sshd.dir(), "changed", &format!("{entry} {STRANGER_KEY}\n"));
    let err =
        SshSession::connect("ru1", &SshEndpoint { host_key: None, known_hosts: Some(changed), ..endpoint(&sshd) }, Recorder::discard())
            .await
            .unwrap_err();
    assert!(matches!(&err, SshError::HostKeyMismatch { offered, .. } if offered == sshd.host_key_fingerprint()), "{err}");
    assert!(err.to_string().contains(STRANGER_FINGERPRINT));

    // Same key, but pinned for another port: OpenSSH would not use it, nor do we.
    let other_port = write_known_hosts(sshd.dir(), "other", &format!("127.0.0.1 {}\n", sshd.host_key().public_line));
    let err = SshSession::connect(
        "ru1",
        &SshEndpoint { host_key: None, known_hosts: Some(other_port.clone()), ..endpoint(&sshd) },
        Recorder::discard(),
    )
    .await
    .unwrap_err();
    match &err {
        SshError::HostKeyUnknown { offered, key_type, host_entry, known_hosts, .. } => {
            assert_eq!(offered, sshd.host_key_fingerprint());
            assert_eq!(key_type, "ssh-ed25519");
            assert_eq!(host_entry, &entry);
            assert_eq!(known_hosts, &other_port);
        }
        other => panic!("expected HostKeyUnknown, got {other}"),
    }
    assert!(err.to_string().contains(sshd.host_key_fingerprint()));
    assert!(!sshd.log().contains("Accepted"));
}

#[tokio::test]
async fn the_pinned_key_type_is_negotiated_even_when_the_server_prefers_another() {
    // libssh2 and sshd would settle on ed25519 here; the pins name the ECDSA key.
    let sshd = Sshd::builder().host_key_types(&["ed25519", "ecdsa"]).start();
    let ecdsa = sshd.host_keys()[1].clone();
    assert_eq!(ecdsa.algorithm, "ecdsa-sha2-nistp256");
    let dir = sshd.dir();

    let only_ecdsa = write_known_hosts(dir, "ecdsa", &format!("[127.0.0.1]:{} {}\n", sshd.port(), ecdsa.public_line));
    let by_file = SshEndpoint { host_key: None, known_hosts: Some(only_ecdsa.clone()), ..endpoint(&sshd) };
    let session = SshSession::connect("ru1", &by_file, Recorder::discard()).await.unwrap();
    assert_eq!(session.host_key_fingerprint(), ecdsa.fingerprint);
    assert_eq!(session.negotiated().host_key, "ecdsa-sha2-nistp256");
    // The shell's own session pins the same key.
    let mut shell = session.shell().await.unwrap();
    shell.write(b"echo ok\n").await.unwrap();
    read_until(&mut shell, "ok\r\n", Duration::from_secs(5)).await;

    let by_fingerprint = SshEndpoint { host_key: Some(ecdsa.fingerprint.clone()), ..endpoint(&sshd) };
    let session = SshSession::connect("ru1", &by_fingerprint, Recorder::discard()).await.unwrap();
    assert_eq!(session.host_key_fingerprint(), ecdsa.fingerprint);

    // Hashed host names (HashKnownHosts yes) work too.
    let status = std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&only_ecdsa).output().unwrap();
    assert!(status.status.success());
    assert!(std::fs::read_to_string(&only_ecdsa).unwrap().starts_with("|1|"));
    let session = SshSession::connect("ru1", &by_file, Recorder::discard()).await.unwrap();
    assert_eq!(session.host_key_fingerprint(), ecdsa.fingerprint);
}

#[tokio::test]
async fn audit_returns_exactly_the_configured_algorithm_lists() {
    let ciphers = ["aes256-gcm@openssh.com", "aes128-ctr", "chacha20-poly1305@openssh.com"];
    let macs = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256"];
    let kex = ["curve25519-sha256", "diffie-hellman-group16-sha512"];
    let sshd = Sshd::builder()
        .config(format!("Ciphers {}", ciphers.join(",")))
        .config(format!("MACs {}", macs.join(",")))
        .config(format!("KexAlgorithms {}", kex.join(",")))
        .start();
    let (sink, recorder) = memory_recorder();
    let offer = audit_algorithms("ru1", "127.0.0.1", sshd.port(), Duration::from_secs(5), &recorder).await.unwrap();
    assert!(offer.banner.starts_with("SSH-2.0-OpenSSH_9.2"), "{}", offer.banner);
    assert_eq!(offer.kex_methods(), kex);
    assert_eq!(offer.ciphers_client_to_server, ciphers);
    assert_eq!(offer.ciphers_server_to_client, ciphers);
    assert_eq!(offer.macs_client_to_server, macs);
    assert_eq!(offer.macs_server_to_client, macs);
    assert_eq!(offer.host_key, ["ssh-ed25519"]);
    assert!(offer.compression_client_to_server.contains(&"none".to_string()));

    let events = sink.events();
    let audit = kinds(&events, "ssh:audit");
    assert!(matches!(audit.last().unwrap(), EventKind::Note { text, .. } if text.contains("aes256-gcm@openssh.com,aes128-ctr")));
    let raw = sink.transcript(&ChannelId::new("ru1", "ssh:audit"), Direction::In);
    assert!(raw.starts_with(offer.banner.as_bytes()));

    let closed = proofrig_testpeers::free_port();
    let err = audit_algorithms("ru1", "127.0.0.1", closed, Duration::from_secs(2), &recorder).await.unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn try_login_reports_refusal_as_an_outcome() {
    let sshd = Sshd::builder().config("MaxAuthTries 3").start();
    let (sink, recorder) = memory_recorder();
    let ep = endpoint(&sshd);
    let none = ConnectOptions::default();

    let wrong = Credential::Password(Secret::new("env:WRONG", "not-the-password-7"));
    let outcome = try_login("ru1", &ep, "root", wrong, &none, &recorder).await.unwrap();
    assert!(!outcome.accepted);
    assert!(outcome.methods_offered.contains(&"password".to_string()));
    assert_eq!(outcome.negotiation_refused, None);

    let right = Credential::Password(Secret::new("env:RIGHT", sshd.password()));
    assert!(try_login("ru1", &ep, "root", right, &none, &recorder).await.unwrap().accepted);
    let key = Credential::Key { path: sshd.client_key(), passphrase: None };
    assert!(try_login("ru1", &ep, "root", key, &none, &recorder).await.unwrap().accepted);
    let nobody = Credential::Password(Secret::new("env:X", "whatever-9"));
    assert!(!try_login("ru1", &ep, "nosuchuser", nobody, &none, &recorder).await.unwrap().accepted);

    // A client offering only CBC ciphers, which OpenSSH 9 no longer accepts.
    let cbc_only = ConnectOptions { ciphers: Some(vec!["aes128-cbc".into(), "aes256-cbc".into()]), ..Default::default() };
    let key = Credential::Key { path: sshd.client_key(), passphrase: None };
    let outcome = try_login("ru1", &ep, "root", key, &cbc_only, &recorder).await.unwrap();
    assert!(!outcome.accepted);
    let why = outcome.negotiation_refused.expect("negotiation refused");
    assert!(why.contains("cipher") && why.contains("aes128-cbc"), "{why}");

    let auths: Vec<(String, bool)> = kinds(&sink.events(), "ssh:login")
        .into_iter()
        .filter_map(|k| match k {
            EventKind::SshAuth { user, accepted, .. } => Some((user.clone(), *accepted)),
            _ => None,
        })
        .collect();
    assert_eq!(auths, [("root".into(), false), ("root".into(), true), ("root".into(), true), ("nosuchuser".into(), false)]);
    let text = serialized(&sink);
    assert!(!text.contains("not-the-password-7") && !text.contains(sshd.password()));

    // Infrastructure problems stay errors.
    let mismatched = SshEndpoint { host_key: Some(STRANGER_FINGERPRINT.into()), ..ep };
    let key = Credential::Key { path: sshd.client_key(), passphrase: None };
    assert!(matches!(try_login("ru1", &mismatched, "root", key, &none, &recorder).await, Err(SshError::HostKeyMismatch { .. })));
}

#[tokio::test]
async fn a_dead_server_gives_clean_errors_not_hangs() {
    let mut sshd = Sshd::start();
    let (sink, recorder) = memory_recorder();
    let session = SshSession::connect("ru1", &endpoint(&sshd), recorder).await.unwrap();
    let mut shell = session.shell().await.unwrap();
    shell.write(b"echo up\n").await.unwrap();
    read_until(&mut shell, "up\r\n", Duration::from_secs(5)).await;

    let running = session.exec("sleep 20", Duration::from_secs(30));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sshd.stop();
    };
    let started = Instant::now();
    let (result, ()) = tokio::join!(running, kill);
    let err = result.unwrap_err();
    assert!(matches!(err, SshError::ChannelLost { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(err.to_string().contains("ru1"));

    let again = tokio::time::timeout(Duration::from_secs(2), session.exec("true", Duration::from_secs(5))).await.unwrap();
    assert!(matches!(again, Err(SshError::ChannelLost { .. })));
    let end = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Err(e) = shell.read().await {
                break e;
            }
        }
    })
    .await
    .expect("shell read hung after the server died");
    assert!(matches!(end, ChannelError::ConsoleLost { .. }));
    let events = sink.events();
    assert!(kinds(&events, "ssh").iter().any(|k| matches!(k, EventKind::ChannelLost { .. })));
    assert!(kinds(&events, "ssh:shell").iter().any(|k| matches!(k, EventKind::ChannelLost { .. })));

    let unreachable = SshSession::connect("ru1", &endpoint(&sshd), Recorder::discard()).await.unwrap_err();
    assert!(matches!(unreachable, SshError::Connect { .. }), "{unreachable}");
}

#[tokio::test]
async fn an_endpoint_without_a_pin_is_refused_outright() {
    let sshd = Sshd::start();
    let unpinned = SshEndpoint { host_key: None, known_hosts: None, ..endpoint(&sshd) };
    let err = SshSession::connect("ru1", &unpinned, Recorder::discard()).await.unwrap_err();
    assert!(matches!(err, SshError::NoHostKeyPin { .. }), "{err}");
    assert!(!sshd.log().contains("Connection from"), "connected although nothing was pinned");
}

#[tokio::test]
async fn an_encrypted_key_is_unlocked_with_its_passphrase_secret() {
    let sshd = Sshd::start();
    let key = sshd.dir().join("encrypted_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse battery", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let authorized = sshd.dir().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&public);
    std::fs::write(&authorized, keys).unwrap();
    let passphrase_file = sshd.dir().join("passphrase");
    std::fs::write(&passphrase_file, "correct horse battery\n").unwrap();

    let (sink, recorder) = memory_recorder();
    let with_passphrase =
        SshEndpoint { key_file: Some(key.clone()), key_passphrase: Some(SecretRef::File(passphrase_file.clone())), ..endpoint(&sshd) };
    let session = SshSession::connect("ru1", &with_passphrase, recorder).await.unwrap();
    assert!(session.exec("true", Duration::from_secs(5)).await.unwrap().success());
    assert!(!serialized(&sink).contains("correct horse"));

    std::fs::write(&passphrase_file, "wrong horse\n").unwrap();
    let err = SshSession::connect("ru1", &with_passphrase, Recorder::discard()).await.unwrap_err();
    assert!(matches!(&err, SshError::KeyFile { path, .. } if *path == key), "{err}");
    assert!(!err.to_string().contains("wrong horse"));

    let unset = SshEndpoint { key_passphrase: Some(SecretRef::Env("PROOFRIG_TEST_UNSET_PASSPHRASE".into())), ..with_passphrase };
    let err = SshSession::connect("ru1", &unset, Recorder::discard()).await.unwrap_err();
    assert!(matches!(err, SshError::Secret { .. }) && err.to_string().contains("PROOFRIG_TEST_UNSET_PASSPHRASE"), "{err}");
}

#[tokio::test]
async fn idle_sessions_and_shells_send_keepalives() {
    // DEBUG comes before the peer's default LogLevel, and sshd keeps the first value.
    let sshd = Sshd::builder().config("LogLevel DEBUG").start();
    let keepalive = SshEndpoint { keepalive_s: 1, ..endpoint(&sshd) };
    let session = SshSession::connect("ru1", &keepalive, Recorder::discard()).await.unwrap();
    let _shell = session.shell().await.unwrap();
    // libssh2 rounds an interval of 1 s up to 2 s.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let seen = sshd.log().matches("keepalive@libssh2.org").count();
    assert!(seen >= 2, "expected keepalives from the session and the shell, saw {seen}");
    assert!(session.exec("true", Duration::from_secs(5)).await.unwrap().success());
}
