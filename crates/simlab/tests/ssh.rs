//! The simulated devices' SSH server against a real third-party peer, OpenSSH's
//! `ssh` client: host key pinning, exec and PTY shells, the algorithms each profile
//! offers and accepts, the account policy, the auth log, file modes, listeners and
//! power gating.
//!
//! Every connection pins the device's host key through a temporary known_hosts file
//! with `StrictHostKeyChecking=yes`. Passwords go through `SSH_ASKPASS` with
//! `SSH_ASKPASS_REQUIRE=force` (a script printing `$SIMLAB_TEST_PASSWORD`), so no
//! extra package such as sshpass is needed.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proofrig_simlab::{DeviceConfig, DeviceIdentity, HostKey, Profile, SimDevice, SimDeviceSpec, SshServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const SSH: &str = "/usr/bin/ssh";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const ROOT_PASSWORD: &str = "R00t-Secret-Pass";
const OPER_PASSWORD: &str = "Op3rator-Passw0rd";
const LOCKOUT: Duration = Duration::from_millis(2000);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

struct Lab {
    dir: tempfile::TempDir,
    known_hosts: PathBuf,
    askpass: PathBuf,
    device: SimDevice,
}

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {:?}\n--- stdout\n{}\n--- stderr\n{}", self.status, self.stdout, self.stderr)
    }
}

async fn lab(profile: Profile) -> Lab {
    proofrig_testpeers::require_program(SSH, "openssh-client");
    proofrig_testpeers::require_program(SSH_KEYGEN, "openssh-client");
    let config = DeviceConfig::new("ru1", profile, ROOT_PASSWORD)
        .with_identity(DeviceIdentity {
            vendor: "Acme Radio".into(),
            model: "RU-4400".into(),
            serial: "ACME123456".into(),
            firmware: "4.2.1".into(),
        })
        .with_account("oper", OPER_PASSWORD)
        .with_lockout_duration(LOCKOUT);
    let seed = match profile {
        Profile::Hardened => [11; 32],
        Profile::Weak => [12; 32],
    };
    let mut spec = SimDeviceSpec::new("127.0.0.1".parse().unwrap(), HostKey::from_seed(seed));
    spec.ssh_port = 0;
    spec.telnet_port = 0;
    spec.ftp_port = 0;
    spec.http_port = 0;
    spec.ssh_options = SshServerOptions { auth_failure_delay: Duration::from_millis(20), ..SshServerOptions::default() };
    let device = SimDevice::start(config, spec).await.expect("start simulated device");

    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let line = device.ssh().host_key().known_hosts_line(device.ssh_addr());
    std::fs::write(&known_hosts, format!("{line}\n")).unwrap();
    let askpass = dir.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\nprintf '%s\\n' \"$SIMLAB_TEST_PASSWORD\"\n").unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    Lab { dir, known_hosts, askpass, device }
}

impl Lab {
    fn addr(&self) -> SocketAddr {
        self.device.ssh_addr()
    }

    /// `ssh` with the pinned host key and password `password` (None: no password
    /// authentication), before per-test options and the remote command.
    fn ssh(&self, user: &str, password: Option<&str>) -> Command {
        let mut command = Command::new(SSH);
        command
            .args(["-F", "/dev/null"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "ConnectTimeout=5"])
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .args(["-p", &self.addr().port().to_string()])
            .args(["-l", user])
            .env("HOME", self.dir.path())
            .env("SSH_ASKPASS", &self.askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY")
            .env_remove("SSH_AUTH_SOCK")
            .kill_on_drop(true);
        match password {
            Some(password) => {
                command
                    .args(["-o", "PreferredAuthentications=password"])
                    .args(["-o", "PubkeyAuthentication=no"])
                    .env("SIMLAB_TEST_PASSWORD", password);
            }
            None => {
                command.args(["-o", "PasswordAuthentication=no"]);
            }
        }
        command
    }

    /// Runs `remote` as `user`, stdin empty.
    async fn exec(&self, user: &str, password: &str, options: &[&str], remote: &str) -> Run {
        let mut command = self.ssh(user, Some(password));
        command.args(options).arg(self.addr().ip().to_string()).arg(remote);
        run(command, None).await
    }
}

async fn run(mut command: Command, stdin: Option<&str>) -> Run {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn ssh");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output()).await.expect("ssh did not finish in time").unwrap();
    Run {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The algorithm lists of the server's KEXINIT as `ssh -vv` reports them.
fn server_proposal(stderr: &str, field: &str) -> Vec<String> {
    let start = stderr.find("peer server KEXINIT proposal").unwrap_or_else(|| panic!("no server KEXINIT in ssh -vv output:\n{stderr}"));
    let label = format!("debug2: {field}: ");
    let line =
        stderr[start..].lines().find_map(|l| l.strip_prefix(&label)).unwrap_or_else(|| panic!("no {field:?} in server KEXINIT:\n{stderr}"));
    line.split(',').map(str::to_string).collect()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_output_stderr_and_exit_status() {
    let lab = lab(Profile::Hardened).await;
    let run = lab.exec("oper", OPER_PASSWORD, &[], "echo hello; whoami; exit 3").await;
    assert_eq!(run.status, Some(3), "{run:?}");
    assert_eq!(run.stdout, "hello\noper\n", "{run:?}");

    let run = lab.exec("oper", OPER_PASSWORD, &[], "frobnicate").await;
    assert_eq!(run.status, Some(127), "{run:?}");
    assert!(run.stderr.contains("sh: frobnicate: not found"), "{run:?}");

    let run = lab.exec("oper", OPER_PASSWORD, &[], "cat /etc/proofrig-release; uname -a").await;
    assert_eq!(run.status, Some(0), "{run:?}");
    assert!(run.stdout.contains("MODEL=\"RU-4400\"\nSERIAL=\"ACME123456\""), "{run:?}");
    assert!(run.stdout.contains("Linux ru1 "), "{run:?}");

    // A command reading stdin gets what the client sends, up to EOF.
    let mut command = lab.ssh("oper", Some(OPER_PASSWORD));
    command.arg(lab.addr().ip().to_string()).arg("cat");
    let run = run_with_stdin(command, "line one\nline two\n").await;
    assert_eq!((run.status, run.stdout.as_str()), (Some(0), "line one\nline two\n"), "{run:?}");
}

async fn run_with_stdin(command: Command, stdin: &str) -> Run {
    run(command, Some(stdin)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_is_pinned_and_fingerprint_matches_ssh_keygen() {
    let lab = lab(Profile::Hardened).await;
    let key = lab.device.ssh().host_key();

    let pub_file = lab.dir.path().join("host.pub");
    std::fs::write(&pub_file, format!("{}\n", key.public_openssh())).unwrap();
    let keygen = Command::new(SSH_KEYGEN).arg("-lf").arg(&pub_file).output().await.unwrap();
    let printed = String::from_utf8_lossy(&keygen.stdout);
    assert!(keygen.status.success(), "{printed}");
    assert_eq!(printed.split_whitespace().nth(1), Some(key.fingerprint_sha256().as_str()), "{printed}");
    assert!(printed.trim_end().ends_with("(ED25519)"), "{printed}");

    // The device publishes the same key where a real one keeps it.
    let run = lab.exec("oper", OPER_PASSWORD, &[], "cat /etc/ssh/ssh_host_ed25519_key.pub").await;
    assert_eq!(run.stdout.trim_end(), key.public_openssh(), "{run:?}");

    // Pinning another key makes the real client refuse the device.
    let other = HostKey::from_seed([99; 32]);
    std::fs::write(&lab.known_hosts, format!("{}\n", other.known_hosts_line(lab.addr()))).unwrap();
    let run = lab.exec("oper", OPER_PASSWORD, &[], "true").await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(run.stderr.contains("Host key verification failed"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kexinit_offers_only_the_profile_algorithms() {
    for profile in [Profile::Hardened, Profile::Weak] {
        let lab = lab(profile).await;
        let run = lab.exec("oper", OPER_PASSWORD, &["-vv"], "true").await;
        assert_eq!(run.status, Some(0), "{profile}: {run:?}");
        let expected = profile.ssh_algorithms();
        let kex = server_proposal(&run.stderr, "KEX algorithms");
        let host_keys = server_proposal(&run.stderr, "host key algorithms");
        let ciphers = server_proposal(&run.stderr, "ciphers ctos");
        let macs = server_proposal(&run.stderr, "MACs ctos");
        assert_eq!(kex, strings(expected.kex), "{profile}");
        assert_eq!(host_keys, strings(expected.host_key), "{profile}");
        assert_eq!(ciphers, strings(expected.ciphers), "{profile}");
        assert_eq!(server_proposal(&run.stderr, "ciphers stoc"), ciphers, "{profile}");
        assert_eq!(macs, strings(expected.macs), "{profile}");

        let offered: Vec<&String> = kex.iter().chain(&ciphers).chain(&macs).collect();
        let cbc = offered.iter().any(|n| n.ends_with("-cbc"));
        let sha1 = offered.iter().any(|n| n.contains("sha1"));
        match profile {
            Profile::Hardened => {
                assert!(!cbc && !sha1, "hardened offers legacy algorithms: {offered:?}");
                assert!(kex.contains(&"kex-strict-s-v00@openssh.com".to_string()));
            }
            Profile::Weak => {
                for legacy in ["aes128-cbc", "3des-cbc", "diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1", "hmac-sha1"] {
                    assert!(offered.iter().any(|n| *n == legacy), "weak does not offer {legacy}: {offered:?}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_insisting_on_legacy_crypto_is_refused_by_hardened_only() {
    let cases: [(&[&str], &str, &str); 3] = [
        (&["-c", "aes128-cbc"], "no matching cipher found", "server->client cipher: aes128-cbc"),
        (
            &["-o", "KexAlgorithms=diffie-hellman-group1-sha1"],
            "no matching key exchange method found",
            "kex: algorithm: diffie-hellman-group1-sha1",
        ),
        (&["-c", "aes128-ctr", "-o", "MACs=hmac-sha1"], "no matching MAC found", "MAC: hmac-sha1 "),
    ];
    let hardened = lab(Profile::Hardened).await;
    let weak = lab(Profile::Weak).await;
    for (options, refusal, negotiated) in cases {
        let options: Vec<&str> = options.iter().copied().chain(["-v"]).collect();
        let run = hardened.exec("oper", OPER_PASSWORD, &options, "echo in").await;
        assert_eq!(run.status, Some(255), "hardened accepted {options:?}: {run:?}");
        assert!(run.stderr.contains(refusal), "{options:?}: {run:?}");

        let run = weak.exec("oper", OPER_PASSWORD, &options, "echo in").await;
        assert_eq!((run.status, run.stdout.as_str()), (Some(0), "in\n"), "weak refused {options:?}: {run:?}");
        assert!(run.stderr.contains(negotiated), "{options:?} not negotiated: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_and_default_account_logins_follow_the_profile() {
    let hardened = lab(Profile::Hardened).await;
    let run = hardened.exec("root", ROOT_PASSWORD, &[], "whoami").await;
    assert_eq!(run.status, Some(255), "hardened let root in: {run:?}");
    assert!(run.stderr.contains("Permission denied"), "{run:?}");
    let run = hardened.exec("admin", "admin", &[], "whoami").await;
    assert_eq!(run.status, Some(255), "hardened let the default account in: {run:?}");

    let weak = lab(Profile::Weak).await;
    let run = weak.exec("root", ROOT_PASSWORD, &[], "whoami; id").await;
    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(run.stdout, "root\nuid=0(root) gid=0(root) groups=0(root)\n");
    let run = weak.exec("admin", "admin", &[], "whoami").await;
    assert_eq!((run.status, run.stdout.as_str()), (Some(0), "admin\n"), "{run:?}");
    let run = weak.exec("root", "not-the-password", &[], "whoami").await;
    assert_eq!(run.status, Some(255), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardened_locks_out_after_three_failures_then_recovers() {
    let lab = lab(Profile::Hardened).await;
    for attempt in 1..=3 {
        let run = lab.exec("oper", "wrong-password", &[], "true").await;
        assert_eq!(run.status, Some(255), "wrong password {attempt} accepted: {run:?}");
    }
    let locked_at = Instant::now();
    let run = lab.exec("oper", OPER_PASSWORD, &[], "whoami").await;
    assert_eq!(run.status, Some(255), "right password accepted during lockout: {run:?}");
    assert!(run.stderr.contains("Permission denied"), "{run:?}");

    let log = lab.device.os().run("root", "cat /var/log/auth.log", "").await.stdout;
    assert_eq!(log.matches("Failed password for oper from 127.0.0.1").count(), 4, "{log}");
    assert_eq!(log.matches("account locked").count(), 1, "{log}");
    assert!(log.contains("(account is temporarily locked"), "{log}");

    tokio::time::sleep((locked_at + LOCKOUT + Duration::from_millis(100)).saturating_duration_since(Instant::now())).await;
    let run = lab.exec("oper", OPER_PASSWORD, &[], "whoami").await;
    assert_eq!((run.status, run.stdout.as_str()), (Some(0), "oper\n"), "still locked: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_never_locks_out() {
    let lab = lab(Profile::Weak).await;
    for _ in 0..4 {
        assert_eq!(lab.exec("oper", "wrong-password", &[], "true").await.status, Some(255));
    }
    let run = lab.exec("oper", OPER_PASSWORD, &[], "whoami").await;
    assert_eq!((run.status, run.stdout.as_str()), (Some(0), "oper\n"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_log_records_failures_only_on_hardened() {
    for profile in [Profile::Hardened, Profile::Weak] {
        let lab = lab(profile).await;
        assert_eq!(lab.exec("oper", "wrong-password", &[], "true").await.status, Some(255));
        assert_eq!(lab.exec("nobody", "whatever", &[], "true").await.status, Some(255));
        let run = lab.exec("oper", OPER_PASSWORD, &[], "cat /var/log/auth.log").await;
        assert_eq!(run.status, Some(0), "{profile}: {run:?}");
        let log = run.stdout;
        let accepted =
            log.lines().filter(|l| l.contains(" ru1 sshd[") && l.contains("Accepted password for oper from 127.0.0.1 port ")).count();
        assert_eq!(accepted, 1, "{profile}: {log}");
        let failed_oper = log.contains("Failed password for oper from 127.0.0.1 port ");
        let failed_unknown = log.contains("Failed password for invalid user nobody from 127.0.0.1 port ");
        match profile {
            Profile::Hardened => assert!(failed_oper && failed_unknown, "{log}"),
            Profile::Weak => assert!(!failed_oper && !failed_unknown && !log.contains("Failed"), "{log}"),
        }
        // Every line carries an RFC 3339 time stamp.
        for line in log.lines() {
            let stamp = line.split_whitespace().next().unwrap();
            assert!(humantime_like(stamp), "{line}");
        }
    }
}

fn humantime_like(stamp: &str) -> bool {
    stamp.len() == 20 && stamp.as_bytes()[4] == b'-' && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_over_ssh_enforces_the_policy() {
    let lab = lab(Profile::Hardened).await;
    let passwd = |stdin: &'static str| {
        let mut command = lab.ssh("oper", Some(OPER_PASSWORD));
        command.arg(lab.addr().ip().to_string()).arg("passwd --stdin oper");
        run_with_stdin(command, stdin)
    };
    let run = passwd("Sh0rt!\n").await;
    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.stderr.contains("BAD PASSWORD: The password is shorter than 12 characters"), "{run:?}");
    let run = passwd("Renewed-Operator-9\n").await;
    assert_eq!(run.status, Some(0), "{run:?}");
    let run = lab.exec("oper", "Renewed-Operator-9", &[], "whoami").await;
    assert_eq!((run.status, run.stdout.as_str()), (Some(0), "oper\n"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwd_accepts_anything() {
    let lab = lab(Profile::Weak).await;
    let run = lab.exec("admin", "admin", &[], "echo x | passwd --stdin admin").await;
    assert_eq!(run.status, Some(0), "{run:?}");
    assert!(run.stdout.contains("updated successfully"), "{run:?}");
    let run = lab.exec("admin", "x", &[], "whoami").await;
    assert_eq!((run.status, run.stdout.as_str()), (Some(0), "admin\n"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_file_permissions_differ_by_profile() {
    let hardened = lab(Profile::Hardened).await;
    let run = hardened.exec("oper", OPER_PASSWORD, &[], "stat -c '%a %U %G %n' /etc/shadow; cat /etc/shadow").await;
    assert_eq!(run.status, Some(1), "{run:?}");
    assert_eq!(run.stdout, "640 root shadow /etc/shadow\n", "{run:?}");
    assert!(run.stderr.contains("cat: /etc/shadow: Permission denied"), "{run:?}");

    let weak = lab(Profile::Weak).await;
    let run = weak.exec("oper", OPER_PASSWORD, &[], "stat -c '%a %U %G %n' /etc/shadow; cat /etc/shadow").await;
    assert_eq!(run.status, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("644 root shadow /etc/shadow\nroot:$6$"), "{run:?}");
    let run = weak.exec("oper", OPER_PASSWORD, &[], "ls -l /etc/proofrig/device.conf").await;
    assert!(run.stdout.starts_with("-rw-rw-rw- 1 root root "), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_match_the_profile_and_answer_with_banners() {
    let hardened = lab(Profile::Hardened).await;
    let run = hardened.exec("oper", OPER_PASSWORD, &[], "ss -ltn").await;
    let listening: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("LISTEN")).collect();
    // SSH, the documented web management server (TS 33.117 4.3.4 cases) and its HTTPS
    // (4.2.2.2.2, 4.2.5.1), nothing else.
    let web = hardened.device.extra_services().iter().map(|s| s.local_addr()).collect::<Vec<_>>();
    assert_eq!(web.len(), 1, "the hardened device's one extra service is its web server: {web:?}");
    assert_eq!(listening.len(), 3, "{run:?}");
    assert!(listening.iter().any(|l| l.contains(&hardened.addr().to_string())), "{run:?}");
    assert!(listening.iter().any(|l| l.contains(&web[0].to_string())), "{run:?}");
    assert!(listening.iter().any(|l| l.contains(&hardened.device.tls_addr().to_string())), "{run:?}");

    let weak = lab(Profile::Weak).await;
    let run = weak.exec("oper", OPER_PASSWORD, &[], "ss -ltn").await;
    let services = weak.device.extra_services();
    assert_eq!(services.len(), 3);
    for service in services {
        assert!(run.stdout.contains(&service.local_addr().to_string()), "{run:?}");
        let mut stream = tokio::net::TcpStream::connect(service.local_addr()).await.unwrap();
        let expected = match service.service() {
            proofrig_simlab::ExtraService::Telnet => "ru1 login: ",
            proofrig_simlab::ExtraService::Ftp => "220 ru1 FTP server",
            proofrig_simlab::ExtraService::Http => {
                use tokio::io::AsyncWriteExt;
                stream.write_all(b"GET / HTTP/1.1\r\nHost: ru1\r\n\r\n").await.unwrap();
                "</html>"
            }
        };
        let banner = read_until(&mut stream, expected).await;
        assert!(banner.contains("RU-4400"), "{banner}");
        if service.service() == proofrig_simlab::ExtraService::Http {
            // The weak web UI says what it runs (TS 33.117 4.3.4.11 finds it).
            assert!(banner.starts_with("HTTP/1.1 200 OK\r\n"), "{banner}");
            assert!(banner.contains("Server: GoAhead-Webs/"), "{banner}");
        }
    }
    // SSH, the three services and HTTPS.
    assert!(run.stdout.contains(&weak.device.tls_addr().to_string()), "{run:?}");
    assert_eq!(run.stdout.lines().filter(|l| l.starts_with("LISTEN")).count(), 5, "{run:?}");
}

async fn read_until(stream: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_pty_shell_prompts_echoes_and_exits_with_status() {
    let lab = lab(Profile::Hardened).await;
    let mut command = lab.ssh("oper", Some(OPER_PASSWORD));
    command.arg("-tt").arg(lab.addr().ip().to_string());
    // A typo fixed with DEL (what a terminal's backspace key sends), then Ctrl-C
    // abandoning a line, then a failing command and an explicit exit status.
    let run = run_with_stdin(command, "whoamx\x7fi\nabandoned\x03false\nexit 4\n").await;
    assert_eq!(run.status, Some(4), "{run:?}");
    assert!(run.stdout.starts_with("oper@ru1:~$ "), "{run:?}");
    assert!(
        run.stdout.contains("whoamx\x08 \x08i\r\noper\r\noper@ru1:~$ abandoned^C\r\noper@ru1:~$ false\r\noper@ru1:~$ exit 4\r\n"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_without_pty_runs_a_piped_script() {
    let lab = lab(Profile::Hardened).await;
    let mut command = lab.ssh("oper", Some(OPER_PASSWORD));
    command.arg("-T").arg(lab.addr().ip().to_string());
    let run = run_with_stdin(command, "whoami\nnosuchcommand\nhostname\nexit 5\necho never\n").await;
    assert_eq!(run.status, Some(5), "{run:?}");
    assert_eq!(run.stdout, "oper\nru1\n", "no prompt, no echo, stops at exit: {run:?}");
    assert!(run.stderr.contains("sh: nosuchcommand: not found"), "{run:?}");

    // Without an explicit exit the status is the last command's.
    let mut command = lab.ssh("oper", Some(OPER_PASSWORD));
    command.arg("-T").arg(lab.addr().ip().to_string());
    let run = run_with_stdin(command, "true\nfalse").await;
    assert_eq!(run.status, Some(1), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_login_for_authorized_keys_only() {
    let lab = lab(Profile::Hardened).await;
    let key = lab.dir.path().join("id_ed25519");
    let keygen =
        Command::new(SSH_KEYGEN).args(["-q", "-t", "ed25519", "-N", "", "-C", "oper@test", "-f"]).arg(&key).status().await.unwrap();
    assert!(keygen.success());
    let with_key = |user: &str| {
        let mut command = lab.ssh(user, None);
        command
            .args(["-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey", "-i"])
            .arg(&key)
            .arg(lab.addr().ip().to_string())
            .arg("whoami");
        run(command, None)
    };
    let run_before = with_key("oper").await;
    assert_eq!(run_before.status, Some(255), "unauthorized key accepted: {run_before:?}");

    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    assert!(lab.device.os().authorize_key("oper", &public));
    let run_after = with_key("oper").await;
    assert_eq!((run_after.status, run_after.stdout.as_str()), (Some(0), "oper\n"), "{run_after:?}");
    let log = lab.device.os().run("root", "cat /var/log/auth.log", "").await.stdout;
    assert!(log.contains("Accepted publickey for oper from 127.0.0.1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_off_refuses_and_cuts_sessions_power_on_restores() {
    let lab = lab(Profile::Weak).await;
    let addr = lab.addr();
    assert_eq!(lab.exec("oper", OPER_PASSWORD, &[], "true").await.status, Some(0));

    // A live interactive session, known to be up once its prompt arrived.
    let mut live = lab.ssh("oper", Some(OPER_PASSWORD));
    live.arg("-tt").arg(addr.ip().to_string());
    live.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = live.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("oper@ru1:~$ ") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout_at(deadline.into(), stdout.read(&mut buf)).await.expect("no prompt").unwrap();
        assert!(n > 0, "session ended early: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }

    lab.device.set_powered(false).await.unwrap();
    assert!(!lab.device.is_powered());
    let exit = tokio::time::timeout(Duration::from_secs(5), child.wait()).await.expect("live session survived power off").unwrap();
    assert!(!exit.success());

    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    for service in lab.device.extra_services() {
        let refused = tokio::net::TcpStream::connect(service.local_addr()).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{:?}", service.service());
    }
    let refused = tokio::net::TcpStream::connect(lab.device.tls_addr()).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "HTTPS");
    let run = lab.exec("oper", OPER_PASSWORD, &[], "true").await;
    assert_eq!(run.status, Some(255), "{run:?}");
    assert!(run.stderr.contains("Connection refused"), "{run:?}");
    assert!(lab.device.os().listeners().is_empty());

    lab.device.set_powered(true).await.unwrap();
    assert_eq!(lab.device.ssh_addr(), addr);
    let run = lab.exec("oper", OPER_PASSWORD, &[], "whoami").await;
    assert_eq!((run.status, run.stdout.as_str()), (Some(0), "oper\n"), "{run:?}");
    // SSH, telnet, FTP, HTTP and HTTPS.
    assert_eq!(lab.device.os().listeners().len(), 5);
    let mut telnet = tokio::net::TcpStream::connect(lab.device.extra_services()[0].local_addr()).await.unwrap();
    read_until(&mut telnet, "login: ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_device_cannot_be_powered_on() {
    let lab = lab(Profile::Hardened).await;
    let addr = lab.addr();
    lab.device.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(matches!(lab.device.set_powered(true).await, Err(proofrig_simlab::SimError::Stopped)));
}
