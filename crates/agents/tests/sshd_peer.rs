//! The sshd test peer's device-shaping options each do what a test relies on, proven
//! against the real OpenSSH server through proofrig's own SSH agent: extra accounts
//! (enabled, locked), a pam_faillock lockout (and none), MaxAuthTries, the
//! authentication log with timestamps, a network namespace of its own with a
//! plain-text listener.

mod ssh_support;

use std::time::{Duration, Instant};

use proofrig_agents::ssh::{try_login, ConnectOptions, Credential, SshSession};
use proofrig_model::events::Recorder;
use proofrig_model::rig::SshEndpoint;
use proofrig_model::secret::{Secret, SecretRef};
use proofrig_testpeers::sshd::{Account, PasswordChanges, Sshd, AUTH_LOG};

/// Pinned host key, no credential of its own (logins say theirs).
fn endpoint(sshd: &Sshd) -> SshEndpoint {
    SshEndpoint { key_file: None, ..ssh_support::endpoint(sshd) }
}

/// One password login attempt, as an `ssh_login` step makes it.
async fn login(sshd: &Sshd, user: &str, password: &str) -> bool {
    let credential = Credential::Password(Secret::new("test", password));
    try_login("dut", &endpoint(sshd), user, credential, &ConnectOptions::default(), &Recorder::discard())
        .await
        .unwrap_or_else(|e| panic!("login as {user} could not be tried: {e}"))
        .accepted
}

/// A session as `user` with `password` (the secret goes through a file, as in a rig).
async fn session(sshd: &Sshd, user: &str, password: &str) -> SshSession {
    let file = sshd.dir().join(format!("{user}.pass"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let endpoint = SshEndpoint { user: user.into(), password: Some(SecretRef::File(file)), ..endpoint(sshd) };
    SshSession::connect("dut", &endpoint, Recorder::discard()).await.unwrap()
}

async fn run(session: &SshSession, command: &str) -> (String, Option<i32>) {
    let out = session.exec(command, Duration::from_secs(10)).await.unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.exit_status)
}

#[tokio::test]
async fn extra_accounts_log_in_with_their_passwords_unless_locked() {
    let sshd = Sshd::builder()
        .account(Account::new("admin", "admin"))
        .account(Account::new("oper", "Oper-Pass-1").in_group("adm"))
        .account(Account::new("service", "service").locked())
        .start();
    assert!(login(&sshd, "admin", "admin").await, "the vendor default account works");
    assert!(!login(&sshd, "admin", "Admin").await);
    assert!(!login(&sshd, "service", "service").await, "a locked account is refused even with its password");
    assert!(!login(&sshd, "guest", "guest").await, "an absent account is refused");
    assert!(login(&sshd, "root", sshd.password()).await, "root keeps its own password");

    let oper = session(&sshd, "oper", "Oper-Pass-1").await;
    let (id, status) = run(&oper, "id -un; id -Gn; pwd").await;
    assert_eq!(status, Some(0));
    let lines: Vec<&str> = id.lines().collect();
    assert_eq!(lines[0], "oper");
    assert!(lines[1].split(' ').any(|g| g == "adm"), "{id}");
    assert_eq!(lines[2], "/home/oper", "a home of its own: {id}");
    let (shadow, _) = run(&oper, "grep -c '^service:!' /etc/shadow 2>&1; echo $?").await;
    assert!(shadow.contains("Permission denied"), "shadow stays root's: {shadow}");
    // Nothing of this exists outside the namespace.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.lines().any(|l| l.starts_with("oper:") || l.starts_with("service:")), "the host's accounts are untouched");
}

#[tokio::test]
async fn faillock_refuses_the_right_password_after_three_wrong_ones_until_it_expires() {
    let unlock = Duration::from_secs(3);
    let locking = Sshd::builder().faillock(3, unlock, false).syslog().account(Account::new("admin", "Adm1n-pass")).start();
    let lenient = Sshd::builder().pam().account(Account::new("admin", "Adm1n-pass")).start();
    for sshd in [&locking, &lenient] {
        assert!(login(sshd, "admin", "Adm1n-pass").await, "PAM lets the right password in at first");
        for _ in 0..3 {
            assert!(!login(sshd, "admin", "wrong-pass").await);
        }
        if std::ptr::eq(sshd, &locking) {
            let refused = !login(sshd, "admin", "Adm1n-pass").await;
            assert!(refused, "with faillock, the right password is refused after 3 wrong ones");
        } else {
            assert!(login(sshd, "admin", "Adm1n-pass").await, "without faillock, the right password still works");
        }
    }
    let locked_at = Instant::now();
    assert!(locking.faillock_dir().join("admin").exists(), "the tally is in the faillock dir");
    let log = locking.wait_for_auth_log("pam_faillock(sshd:auth)", Duration::from_secs(5)).unwrap_or_else(|| locking.log());
    assert!(log.contains("Consecutive login failures for user admin account temporarily locked"), "PAM logs the lock: {log}");

    // Root is exempt by default (it must keep a way in)...
    for _ in 0..3 {
        assert!(!login(&locking, "root", "wrong-pass").await);
    }
    assert!(login(&locking, "root", locking.password()).await, "root is not locked without even_deny_root");
    // ...and the lock lifts after unlock_time (pam_faillock counts whole seconds and
    // unlocks once the last failure is more than unlock_time old: up to a second more).
    std::thread::sleep(unlock.saturating_sub(locked_at.elapsed()) + Duration::from_millis(1500));
    assert!(login(&locking, "admin", "Adm1n-pass").await, "unlocked after {unlock:?}");
}

#[tokio::test]
async fn even_deny_root_locks_root_too() {
    let sshd = Sshd::builder().faillock(2, Duration::from_secs(60), true).start();
    for _ in 0..2 {
        assert!(!login(&sshd, "root", "wrong-pass").await);
    }
    assert!(!login(&sshd, "root", sshd.password()).await);
}

/// Wrong passwords tried on one connection until the server stops answering: how
/// many it refused before it disconnected.
fn refusals_in_one_connection(sshd: &Sshd) -> u32 {
    let tcp = std::net::TcpStream::connect((sshd.host(), sshd.port())).unwrap();
    let mut session = ssh2::Session::new().unwrap();
    session.set_tcp_stream(tcp);
    session.set_timeout(5_000);
    session.handshake().unwrap();
    let mut refused = 0;
    for _ in 0..10 {
        match session.userauth_password("root", "wrong-pass") {
            Ok(()) => panic!("a wrong password was accepted"),
            Err(e) if e.code() == ssh2::ErrorCode::Session(-18) => refused += 1,
            Err(_) => break,
        }
    }
    refused
}

#[test]
fn max_auth_tries_ends_the_connection_after_that_many_wrong_passwords() {
    let strict = Sshd::builder().max_auth_tries(2).start();
    let lax = Sshd::builder().max_auth_tries(6).start();
    // The Nth wrong password is not answered with a refusal: sshd disconnects.
    assert_eq!(refusals_in_one_connection(&strict), 1, "MaxAuthTries 2");
    assert_eq!(refusals_in_one_connection(&lax), 5, "MaxAuthTries 6");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !strict.log().contains("maximum authentication attempts exceeded for root") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(strict.log().contains("maximum authentication attempts exceeded for root"), "{}", strict.log());
}

#[tokio::test]
async fn the_auth_log_has_timestamped_records_the_device_itself_can_read() {
    let sshd = Sshd::builder().syslog().account(Account::new("oper", "Oper-Pass-1").in_group("adm")).start();
    assert!(!login(&sshd, "prf-nobody", "wrong-pass").await);
    let log = sshd
        .wait_for_auth_log("Failed password for invalid user prf-nobody", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no record of the failed login:\n{}", sshd.log()));
    let record = log.lines().find(|l| l.contains("Failed password for invalid user prf-nobody")).unwrap();
    // `Nov 21 08:30:01 HOST sshd[123]: Failed password for invalid user prf-nobody from 127.0.0.1 port 4711 ssh2`
    let stamp = regex_lite_timestamp(record);
    assert!(stamp, "a syslog timestamp first: {record}");
    assert!(record.contains(" sshd[") && record.contains(" from 127.0.0.1 port "), "{record}");

    let oper = session(&sshd, "oper", "Oper-Pass-1").await;
    sshd.wait_for_auth_log("Accepted password for oper", Duration::from_secs(5)).expect("the accepted login is logged");
    let (count, status) = run(&oper, &format!("grep -c 'Accepted password for oper from 127.0.0.1' {AUTH_LOG}")).await;
    assert_eq!((count.trim(), status), ("1", Some(0)), "a member of adm reads the auth log inside the namespace");
    let (mode, _) = run(&oper, &format!("stat -c '%A %U %G' {AUTH_LOG}")).await;
    assert_eq!(mode.trim(), "-rw-r----- root adm");
    assert!(
        !std::path::Path::new(AUTH_LOG).exists() || !std::fs::read_to_string(AUTH_LOG).unwrap_or_default().contains("prf-nobody"),
        "the host's log is untouched"
    );
}

/// `Mmm dd hh:mm:ss ` at the start of a line.
fn regex_lite_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 16
        && b[..3].iter().all(|c| c.is_ascii_alphabetic())
        && b[3] == b' '
        && (b[4] == b' ' || b[4].is_ascii_digit())
        && b[5].is_ascii_digit()
        && b[6] == b' '
        && b[9] == b':'
        && b[12] == b':'
        && b[15] == b' '
}

#[test]
fn a_private_network_holds_only_the_server_and_its_listeners() {
    let sshd = Sshd::builder().private_network().plain_listener(23, "\r\nlegacy-box login: ").start();
    let out = sshd.command("ss").arg("-ltnH").output().unwrap();
    let listening = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut ports: Vec<String> = listening.lines().filter_map(|l| l.split_whitespace().nth(3).map(String::from)).collect();
    ports.sort();
    let mut expected = vec![format!("127.0.0.1:{}", sshd.port()), "127.0.0.1:23".to_string()];
    expected.sort();
    assert_eq!(ports, expected, "nothing else listens in the namespace:\n{listening}");

    let banner = sshd.command("socat").args(["-T", "2", "-u", "TCP:127.0.0.1:23", "-"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&banner.stdout), "\r\nlegacy-box login: ");

    // The server answers inside the namespace, with its SSH version string.
    let greeting = sshd.command("socat").args(["-T", "2", "-u", &format!("TCP:127.0.0.1:{}", sshd.port()), "-"]).output().unwrap();
    assert!(String::from_utf8_lossy(&greeting.stdout).starts_with("SSH-2.0-OpenSSH"), "{greeting:?}");
    // The test machine's own port 23 is not the namespace's.
    assert!(std::net::TcpStream::connect_timeout(&"127.0.0.1:23".parse().unwrap(), Duration::from_millis(500)).is_err());
}

#[tokio::test]
async fn passwd_under_pwquality_refuses_a_weak_password_for_root_and_pam_unix_alone_stores_it() {
    let host_shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let checked = Sshd::builder().password_changes(PasswordChanges::Checked { min_length: 12, classes: 3 }).start();
    let unchecked = Sshd::builder().password_changes(PasswordChanges::Unchecked).start();
    let change = |password: &str| format!("printf '%s\\n%s\\n' '{password}' '{password}' | passwd; echo status $?; grep -c . /etc/shadow");
    for (sshd, weak_stored) in [(&checked, false), (&unchecked, true)] {
        let root = session(sshd, "root", sshd.password()).await;
        let out = root.exec(&change("Xq7#Xq7#Xq7"), Duration::from_secs(10)).await.unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(said.contains("status 0"), weak_stored, "{said}");
        if !weak_stored {
            assert!(said.contains("BAD PASSWORD: The password is shorter than 12 characters"), "pam_pwquality said why: {said}");
        }
        // A password that meets the policy is stored either way: root logs in with it,
        // and no longer with the old one; the host's own shadow is untouched.
        let out = root.exec(&change("Strong-Pass-4711"), Duration::from_secs(10)).await.unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("status 0"), "{out:?}");
        assert!(login(sshd, "root", "Strong-Pass-4711").await);
        assert!(!login(sshd, "root", sshd.password()).await);
    }
    assert_eq!(std::fs::read_to_string("/etc/shadow").unwrap(), host_shadow, "the machine's own shadow is untouched");
}
