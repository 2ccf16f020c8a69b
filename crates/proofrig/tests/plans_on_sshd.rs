//! The whole bundled library on a real OpenSSH sshd: one configured as a compliant
//! device would be, one as a careless one, one where root logs in by key. Every case
//! gets the verdict testplans/README.md's verdict table gives for that server (cases
//! that cannot decide there say why), and the sealed bundles verify with every verdict
//! replayed.
//!
//! Each server runs in a network namespace of its own (proofrig runs inside it), so a
//! scan of every port and the server's own socket list see only that "device": its
//! sshd and, on the careless one, a telnet-like listener on port 23.

use std::path::{Path, PathBuf};
use std::process::Output;

use proofrig_evidence::journal::read_chain;
use proofrig_evidence::signing;
use proofrig_simlab::log_forward::LogServer;
use proofrig_testpeers::busybox::{KERNEL_NET_CARELESS, KERNEL_NET_COMPLIANT, VENDOR_KEY};
use proofrig_testpeers::rsyslog::RsyslogForwarder;
use proofrig_testpeers::sshd::{Account, Installer, PasswordChanges, Sshd, SshdBuilder, AUTH_LOG};

mod verdicts;

/// The device's operator account: what the rig logs in as (root may not, on a
/// compliant device); a member of `adm`, so it reads the auth log, and of `shadow`, so
/// it can audit how passwords are stored (Debian's `/etc/shadow` is 0640 root:shadow).
const OPERATOR: &str = "oper";
const OPERATOR_PASSWORD: &str = "Oper-Pass-4711";

/// The vendor's documented default account, and the lockout policy the rig declares.
const DEFAULT_ACCOUNT: (&str, &str) = ("admin", "admin");
const LOCKOUT_ATTEMPTS: u32 = 3;
const LOCKOUT_SECONDS: u64 = 4;

/// The inactivity timeout every rig here declares: the compliant server closes an idle
/// session channel after it; the careless one and the appliance never do.
const IDLE_TIMEOUT_S: u64 = 5;

/// The central log server every rig here documents, inside the device's network
/// namespace (where proofrig plays it), and its identity: the compliant device's
/// rsyslog trusts its certificate; each rig hands the identity to proofrig.
const LOG_SERVER: &str = "127.0.0.1:6514";
static LOG_IDENTITY: std::sync::LazyLock<LogServer> =
    std::sync::LazyLock::new(|| LogServer::new(LOG_SERVER.parse().unwrap()).expect("a log server identity"));

/// Every plan of the library, as files. The lockout cases go last: they block the
/// operator account for a while (and wait until it is free).
fn library() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort_by_key(|f| (f == "failed-login-attempts.yaml" || f == "brute-force-protection.yaml", f.clone()));
    assert!(files.len() >= 10, "the whole library: {files:?}");
    files.iter().map(|f| plan(f)).collect()
}

fn proofrig(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(std::process::Stdio::null()).output().expect("run proofrig")
}

/// proofrig where the server is reachable (inside its network namespace, if it has one).
fn proofrig_at(sshd: &Sshd, args: &[&str]) -> Output {
    sshd.command(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(std::process::Stdio::null()).output().expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn plan(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans").join(name).display().to_string()
}

/// A device as a vendor would ship it: its sshd alone in its network and PID
/// namespaces (`ps` lists its processes only), logging to a timestamped auth log, with
/// an operator account.
fn device(builder: SshdBuilder) -> Sshd {
    builder
        .private_network()
        .private_processes()
        .syslog()
        .account(Account::new(OPERATOR, OPERATOR_PASSWORD).in_group("adm").in_group("shadow"))
        .start()
}

/// The kernel of a device that minimises its network functions (its namespace's own
/// `net.*` settings; ASLR as the test machine has it), with a USB stick mounted
/// nosuid, nodev and noexec at the mount point the rig declares.
fn hardened_kernel(builder: SshdBuilder) -> SshdBuilder {
    KERNEL_NET_COMPLIANT
        .iter()
        .fold(builder, |b, (path, value)| b.net_setting(path, value))
        .removable_medium("usb0", "nosuid,nodev,noexec,mode=755")
}

/// The careless kernel: reverse-path filtering, broadcast pings, redirects, source
/// routes, forwarding and SYN cookies the wrong way round, a stick mounted with the
/// defaults and an automounter running, and ASLR shown off (`kernel.randomize_va_space` is not per namespace: the
/// device is shown 0 by a file bound over it in its own mount namespace). Its vendor
/// also documents BusyBox (a web UI by its httpd applet) among its network programs:
/// Debian's busybox-static, linked at a fixed address (not PIE).
fn careless_kernel(builder: SshdBuilder) -> SshdBuilder {
    KERNEL_NET_CARELESS
        .iter()
        .fold(builder, |b, (path, value)| b.net_setting(path, value))
        .kernel_shown("kernel/randomize_va_space", "0")
        .removable_medium("usb0", "mode=755")
        // udisks 2's daemon, which mounts a stick as it is inserted (a stand-in process of that name).
        .stand_in_process("udisksd")
        .network_program("/bin/busybox")
}

fn rig_for(sshd: &Sshd, dir: &Path, user: &str, password: &str) -> PathBuf {
    rig_with_login(sshd, dir, user, &format!("password: {{ file: {} }}", write_secret(dir, "ssh.pass", password)))
}

fn write_secret(dir: &Path, name: &str, value: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), value).unwrap();
    name.to_string()
}

/// The rig of `sshd` whose SSH user is `user`, authenticating with `login` (a
/// `password:` or `key_file:` entry).
fn rig_with_login(sshd: &Sshd, dir: &Path, user: &str, login: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("root.pass"), sshd.password()).unwrap();
    std::fs::write(dir.join("log-server.pem"), &LOG_IDENTITY.identity_pem).unwrap();
    std::fs::write(dir.join("oper.pass"), OPERATOR_PASSWORD).unwrap();
    let yaml = format!(
        "rig: sshd-bench\ndevices:\n  oam1:\n    role: core\n    declared: {{ open_tcp_ports: [{port}], open_udp_ports: [], auth_log: {AUTH_LOG}, log_server: \"tls:{LOG_SERVER}\", inactivity_timeout_s: {IDLE_TIMEOUT_S}, sensitive_files: [/etc/shadow], service_accounts: {{ sshd: root }}, router: false, removable_mounts: [/media/usb0], network_programs: [{programs}], {packages}\
         default_accounts: [{{ user: {default_user}, password: {default_password} }}], \
         lockout: {{ attempts: {LOCKOUT_ATTEMPTS}, seconds: {LOCKOUT_SECONDS} }}, privilege_escalation: [su], \
         privileged_operations: [{{ what: signal init, command: kill -0 1 }}, {{ what: change the account database, command: \": >> /etc/passwd\" }}], \
         vendor_keys: [{{ what: factory support key, key: \"{VENDOR_KEY}\" }}], authorized_keys_files: [{keys}], default_snmp_communities: [public, private], \
         role_accounts: [{{ role: operator, user: {OPERATOR}, password: oper_password, denied: [{{ what: signal init, command: kill -0 1 }}, {{ what: change the account database, command: \": >> /etc/passwd\" }}] }}], \
         management_services: [{{ service: ssh }}], restricted_addresses: [127.0.0.3], \
         disabled_functions: [{{ what: SSH TCP forwarding, command: \"grep -i ^AllowTcpForwarding {config}\", disabled: '(?i)^AllowTcpForwarding\\s+no' }}], \
         components: [{{ name: OpenSSH, command: ssh -V, version: 'OpenSSH_([0-9.]+(p[0-9]+)?)', supported: '^([9]|[1-9][0-9])\\.' }}] }}\n    \
         secrets: {{ root_password: {{ file: root.pass }}, oper_password: {{ file: oper.pass }}, log_server_identity: {{ file: log-server.pem }} }}\n    \
         ssh: {{ host: 127.0.0.1, port: {port}, user: {user}, {login}, host_key: \"{fp}\" }}\n",
        port = sshd.port(),
        programs = sshd.network_programs().join(", "),
        packages = sshd.update_kit().map_or(String::new(), |kit| format!(
            "software_packages: {{ install_command: \"{}\", genuine: {}, tampered: {} }}, ",
            kit.install_command,
            kit.genuine.display(),
            kit.tampered.display()
        )),
        fp = sshd.host_key_fingerprint(),
        default_user = DEFAULT_ACCOUNT.0,
        default_password = DEFAULT_ACCOUNT.1,
        keys = sshd.dir().join("authorized_keys").display(),
        config = sshd.dir().join("sshd_config").display(),
    );
    let path = dir.join("rig.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs every plan of [`PLANS`] against the server as the operator, then verifies the
/// sealed bundle (replaying every verdict). Returns the exit code and the output.
fn run_and_verify(sshd: &Sshd, tmp: &Path, name: &str) -> (i32, String, PathBuf) {
    let rig = rig_for(sshd, &tmp.join(name), OPERATOR, OPERATOR_PASSWORD);
    run_library(sshd, tmp, name, &rig)
}

/// Runs the whole library against the server with `rig`, inside its namespace, then
/// verifies the sealed bundle. Returns the exit code, the output and the bundle.
fn run_library(sshd: &Sshd, tmp: &Path, name: &str, rig: &Path) -> (i32, String, PathBuf) {
    run_plans(sshd, tmp, name, rig, &library())
}

/// [`run_library`] with these plan files only.
fn run_plans(sshd: &Sshd, tmp: &Path, name: &str, rig: &Path, plans: &[String]) -> (i32, String, PathBuf) {
    run_plans_with(sshd, tmp, name, rig, plans, &[])
}

/// [`run_plans`] with these `--param NAME=VALUE`s.
fn run_plans_with(sshd: &Sshd, tmp: &Path, name: &str, rig: &Path, plans: &[String], params: &[&str]) -> (i32, String, PathBuf) {
    let (key, public) = (tmp.join(format!("{name}.key")), tmp.join(format!("{name}.pub")));
    signing::generate(&key, &public).unwrap();
    let out_dir = tmp.join(name).join("results");
    let s = |p: &Path| p.display().to_string();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(plans.iter().map(String::as_str));
    let (rig, key, out_dir) = (s(rig), s(&key), s(&out_dir));
    args.extend(["--rig", &rig, "--key", &key, "--out", &out_dir, "--quiet"]);
    for param in params {
        args.extend(["--param", param]);
    }
    let out = proofrig_at(sshd, &args);
    let text = all(&out);
    let bundle = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bundle: ").map(String::from))
        .unwrap_or_else(|| panic!("no bundle: {text}"));
    let verified = proofrig(&["verify", &bundle, "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
    let results = std::fs::read_to_string(Path::new(&bundle).join("results.json")).unwrap();
    if std::env::var_os("PROOFRIG_SHOW_EVIDENCE").is_some() {
        eprintln!("=== {name}\n{text}");
    }
    (out.status.code().unwrap_or(-1), format!("{text}\nresults.json:\n{results}"), PathBuf::from(bundle))
}

fn row<'a>(table: &'a str, clause: &str) -> &'a str {
    table.lines().find(|l| l.starts_with("oam1") && l.contains(clause)).unwrap_or_else(|| panic!("no row for {clause}:\n{table}"))
}

#[test]
fn a_compliant_sshd_passes_and_a_careless_one_fails_with_the_evidence_named() {
    let tmp = tempfile::tempdir().unwrap();
    // Its records also go, through Debian's rsyslog over TLS, to the log server.
    let mut forwarder = RsyslogForwarder::prepare();
    let compliant = device(hardened_kernel(
        Sshd::builder()
            .forward_log(forwarder.socket())
            .config("PermitRootLogin no")
            .config("KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org")
            .config("Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes256-ctr")
            .config("MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com")
            // Idle interactive sessions are closed after the declared timeout (OpenSSH 9.2's ChannelTimeout).
            .config(format!("ChannelTimeout session:shell={IDLE_TIMEOUT_S}s"))
            // No TCP forwarding, a function the device does not use.
            .config("AllowTcpForwarding no")
            // The vendor's default account is there but locked, and wrong passwords lock an account.
            .account(Account::new(DEFAULT_ACCOUNT.0, DEFAULT_ACCOUNT.1).locked())
            .faillock(LOCKOUT_ATTEMPTS, std::time::Duration::from_secs(LOCKOUT_SECONDS), false)
            // A firmware installer that checks the package's signature.
            .installer(Installer::Verifying),
    ));
    forwarder.start(compliant.command("/usr/sbin/rsyslogd"), LOG_SERVER.parse().unwrap(), &LOG_IDENTITY.certificate_pem);
    let (code, text, bundle) = run_and_verify(&compliant, tmp.path(), "compliant");
    assert_eq!(code, 2, "{text}\nrsyslogd:\n{}", forwarder.log());
    let table = verdicts::table();
    table.assert_column("OpenSSH compliant", &verdicts::observed(&bundle, None), &text);
    // Root's password was refused over SSH; with no console, the device's own su showed
    // it was the real one.
    let root = row(&text, "4.3.2.6");
    assert!(root.contains("su to root on the device accepted root's password"), "{root}");
    // Its record of the refused login came through rsyslog, over TLS.
    assert!(row(&text, "4.2.3.6.2").contains("PASS"), "{text}");
    let arrived = regex::Regex::new(
        r"arrived at the log server tls:127\.0\.0\.1:6514 from [0-9.:]+: [^\n]*Failed password for oper from 127\.0\.0\.1 port [0-9]+ ssh2",
    )
    .unwrap();
    assert!(arrived.is_match(&text), "the record of the refused login came through rsyslog over TLS: {text}");
    // The checks after a restart need a PDU the bench does not have: SKIP, recorded.
    assert!(text.contains("device oam1 has no power"), "{text}");
    // Debian's sshd, read from its ELF headers over SSH, is built with every protection.
    let results = std::fs::read_to_string(bundle.join("results.json")).unwrap();
    for fact in ["is position independent (PIE)", "has a non-executable stack", "has full RELRO", "calls the stack protector's check"] {
        assert!(results.contains(&format!("/usr/sbin/sshd {fact}")), "{fact}: {results}");
    }
    // Its firmware installer checks the package's signature with OpenSSL.
    assert!(results.contains("the package with byte 2561 "), "{results}");
    assert!(results.contains("was refused: "), "{results}");
    assert!(results.contains("the signature does not verify with the vendor's release key: refused"), "{results}");

    // Root over SSH, a CBC cipher, the 1024-bit SHA-1 key exchange, a telnet-like service on port 23, a log level that
    // drops login records, the default account left open and no lockout.
    let careless = device(careless_kernel(
        Sshd::builder()
            .config("PermitRootLogin yes")
            .config("Ciphers +aes128-cbc")
            .config("KexAlgorithms +diffie-hellman-group1-sha1")
            .config("LogLevel ERROR")
            .plain_listener(23, "\r\nDebian GNU/Linux 12\r\noam1 login: ")
            // The default account still takes its documented password; no lockout.
            .account(Account::new(DEFAULT_ACCOUNT.0, DEFAULT_ACCOUNT.1))
            // Accounts of an older release: a second uid 0 whose password is stored as MD5
            // crypt, and a login with an empty password field; every user reads the auth log.
            .account(Account::new("support", "support").uid(0).md5())
            .account(Account::new("guest", "").empty_password())
            .auth_log_mode(0o644)
            // A set-user-ID root copy of dash, left for maintenance.
            .setuid_root_copy("/bin/dash", "dash")
            // The vendor's factory key, still authorized.
            .authorized_key(VENDOR_KEY)
            // SSH on every interface of the device, not the management address alone.
            .listen_on_every_interface()
            // A firmware installer that unpacks whatever it is given.
            .installer(Installer::Unchecked),
    ));
    let (code, text, bundle) = run_and_verify(&careless, tmp.path(), "careless");
    assert_eq!(code, 1, "{text}");
    table.assert_column("OpenSSH careless", &verdicts::observed(&bundle, None), &text);
    let root = row(&text, "4.3.2.6");
    assert!(root.contains("FAIL") && root.contains("SSH login as root with its password was accepted"), "{root}");
    assert!(text.contains("aes128-cbc"), "the failure names the offending cipher: {text}");
    assert!(text.contains("only kex diffie-hellman-group1-sha1 was accepted"), "sshd itself agreed to the legacy key exchange: {text}");
    assert!(text.contains("unexpected: 23"), "open-ports names the undocumented port: {text}");
    assert!(text.contains("found [23], expected []"), "the scan names the insecure port: {text}");
    assert!(text.contains("found `127.0.0.1:23` matching"), "the device's socket list names it too: {text}");
    assert!(text.contains("the refused login of `prf-log-probe` added no record"), "{text}");
    assert!(text.contains("the accepted login of `oper` added no record"), "{text}");
    assert!(text.contains("no record of the refused SSH login of `oper`"), "nothing forwards its log: {text}");
    assert!(text.contains("default account admin accepted its documented password over SSH"), "{text}");
    assert!(text.contains("after 3 wrong passwords, the right password for oper was accepted at once: no lockout"), "{text}");
    // The older release's accounts and the open log, found in the server's own files.
    assert!(text.contains("support's password is stored with MD5 crypt ($1$)"), "{text}");
    assert!(text.contains("guest can log in (shell /bin/sh) and has an empty password field in /etc/shadow"), "{text}");
    assert!(text.contains("set-user-ID root files that give anyone a root shell: [\"/usr/local/bin/dash\"]"), "{text}");
    assert!(text.contains("user id 0 is shared by the accounts root, support"), "{text}");
    assert!(text.contains("/var/log/auth.log is mode 644, owner root, group adm: other users have r-- on it"), "{text}");
    assert!(text.contains("authorized_keys (read over SSH as oper) still authorizes the vendor's factory support key"), "{text}");
    assert!(text.contains("after 3 wrong passwords the right password for oper was accepted at once: nothing hinders guessing"), "{text}");
    assert!(text.contains("SSH TCP forwarding is not shown deactivated"), "{text}");
    assert!(text.contains("accept connections on the restricted address 127.0.0.3"), "{text}");
    let results = std::fs::read_to_string(bundle.join("results.json")).unwrap();
    assert!(results.contains("/bin/busybox is built for a fixed address (not PIE): ASLR cannot move its code"), "{results}");
    assert!(results.contains("the package with byte 2561 ") && results.contains("was installed: "), "{results}");
}

/// An appliance where root logs in by key only (`PermitRootLogin prohibit-password`),
/// benched as such a lab would: the rig's SSH user is root, with its key. Root's
/// password is refused over SSH, which once passed 4.3.2.6; the uid of the rig's own
/// user and the key's login show root logs in remotely.
#[test]
fn a_root_by_key_appliance_fails_remote_root_login() {
    let tmp = tempfile::tempdir().unwrap();
    let appliance = device(hardened_kernel(
        Sshd::builder().config("PermitRootLogin prohibit-password").config("AllowTcpForwarding no").installer(Installer::Verifying),
    ));
    let dir = tmp.path().join("appliance");
    let key = format!("key_file: {}", appliance.client_key().display());
    let rig = rig_with_login(&appliance, &dir, "root", &key);
    let (code, text, bundle) = run_library(&appliance, tmp.path(), "appliance", &rig);
    assert_eq!(code, 1, "{text}");
    verdicts::table().assert_column("OpenSSH root by key", &verdicts::observed(&bundle, None), &text);
    let results = std::fs::read_to_string(bundle.join("results.json")).unwrap();
    assert!(results.contains("the rig's own SSH user root has uid 0: the device lets a privileged account log in remotely"), "{results}");
    assert!(results.contains("SSH login as root with the rig's key was accepted"), "{results}");
    assert!(results.contains("SSH login as root with its password was refused"), "the password alone would have passed: {results}");
}

/// TS 33.117 4.2.3.4.3.1 (password-structure.yaml) both ways on OpenSSH's Debian, benched
/// as an appliance whose rig logs in as root by key: the device's own `passwd` (through
/// PAM's `passwd` service) reads the new password twice on standard input. With
/// `pam_pwquality` enforcing 12 characters and 3 classes, root included, it sets the
/// real password and refuses each weak one: PASS. With `pam_unix` alone it stores them:
/// FAIL, naming the first. Both bundles verify; the real password is set back.
#[test]
fn the_device_s_passwd_refuses_weak_passwords_under_a_policy_and_stores_them_without() {
    let tmp = tempfile::tempdir().unwrap();
    let checked = PasswordChanges::Checked { min_length: 12, classes: 3 };
    for (name, changes, verdict) in [("checked", checked, "PASS"), ("unchecked", PasswordChanges::Unchecked, "FAIL")] {
        let sshd = device(Sshd::builder().password_changes(changes));
        let dir = tmp.path().join(name);
        let rig = rig_with_login(&sshd, &dir, "root", &format!("key_file: {}", sshd.client_key().display()));
        let yaml = std::fs::read_to_string(&rig).unwrap();
        let declared = "password_policy: { min_length: 12, classes: 3 }, \
                        password_change_command: 'read p && printf \"%s\\n%s\\n\" \"$p\" \"$p\" | passwd', ";
        let with_policy = yaml.replacen("declared: { ", &format!("declared: {{ {declared}"), 1);
        assert_ne!(with_policy, yaml, "the rig has a declared block");
        std::fs::write(&rig, with_policy).unwrap();
        let plans = [plan("password-structure.yaml")];
        let (code, text, _bundle) = run_plans_with(&sshd, tmp.path(), name, &rig, &plans, &["password_secret=root_password"]);
        let row = row(&text, "4.2.3.4.3.1");
        assert!(row.contains(verdict), "{name}: {row}\n{text}");
        assert!(text.contains("the password-change command set root's real password"), "{name}: {text}");
        if verdict == "PASS" {
            assert_eq!(code, 0, "{text}");
            for refused in [
                "\"Xq7#Xq7#Xq7\" (shorter than 12 characters) was refused",
                "(lower-case letters only) was refused",
                "(only two character classes) was refused",
            ] {
                assert!(text.contains(refused), "{refused}: {text}");
            }
        } else {
            assert_eq!(code, 1, "{text}");
            assert!(text.contains("the device accepted the password \"Xq7#Xq7#Xq7\" (shorter than 12 characters) for root"), "{text}");
        }
    }
}

/// A rig whose `root_password` is wrong: root is refused over SSH and by `su` alike,
/// so nothing shows the password tried was real, and the case cannot pass.
#[test]
fn a_refused_password_nobody_showed_real_is_inconclusive_never_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let server = device(Sshd::builder().config("PermitRootLogin no"));
    let dir = tmp.path().join("wrong-root");
    let rig = rig_for(&server, &dir, OPERATOR, OPERATOR_PASSWORD);
    std::fs::write(dir.join("root.pass"), "not-root's-password").unwrap();
    let (key, public) = (tmp.path().join("lab.key"), tmp.path().join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let out = proofrig_at(
        &server,
        &["run", &plan("remote-root-login.yaml"), "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&dir.join("results")), "--quiet"],
    );
    let text = all(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let root = row(&text, "4.3.2.6");
    assert!(
        root.contains("INCONCLUSIVE")
            && root.contains("su on the device refused it too")
            && root.contains("a refused wrong password proves nothing"),
        "{root}"
    );
    let bundle = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bundle: ").map(String::from))
        .unwrap_or_else(|| panic!("no bundle: {text}"));
    let verified = proofrig(&["verify", &bundle, "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
}

/// A kernel that shows none of the settings the kernel cases read (`/proc/sys/net/ipv4`
/// hidden, ASLR's file empty) and nothing mounted at the declared mount point: each of
/// those cases is INCONCLUSIVE, never PASS, and says what it could not read.
#[test]
fn kernel_settings_the_device_does_not_show_are_inconclusive_never_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let server = device(Sshd::builder().hidden("/proc/sys/net/ipv4").kernel_shown("kernel/randomize_va_space", ""));
    let dir = tmp.path().join("hidden");
    let rig = rig_for(&server, &dir, OPERATOR, OPERATOR_PASSWORD);
    let plans = [
        "ip-spoofing-mitigation.yaml",
        "kernel-network-functions.yaml",
        "syn-flood-prevention.yaml",
        "buffer-overflow-protection.yaml",
        "external-mount-restrictions.yaml",
    ]
    .map(plan);
    // Runs them and verifies the bundle.
    let (code, text, _) = run_plans(&server, tmp.path(), "hidden", &rig, &plans);
    assert_eq!(code, 2, "{text}");
    for (clause, said) in [
        ("4.3.3.1.1", "net.ipv4.conf.all.rp_filter could not be read from /proc/sys on the device"),
        ("4.3.3.1.2", "net.ipv4.icmp_echo_ignore_broadcasts could not be read from /proc/sys on the device"),
        ("4.3.3.1.4", "net.ipv4.tcp_syncookies could not be read from /proc/sys on the device"),
        ("4.3.3.1.5", "kernel.randomize_va_space could not be read from /proc/sys on the device"),
        ("4.3.3.1.6", "nothing is mounted at /media/usb0"),
    ] {
        let row = row(&text, clause);
        assert!(row.contains("INCONCLUSIVE") && row.contains(said), "{row}");
    }
}

const ABORTABLE_PLAN: &str = r#"
plan: abort-check
title: A case that waits long enough to be interrupted
cases:
  - id: TC_ABORT_CHECK
    title: Interrupted mid-case, restored anyway
    scas: { spec: TS 33.117, clause: 4.3.2.6, test_name: TC_ABORT_CHECK, requirement: Restore steps always run. }
    purpose: Show that Ctrl-C leaves the device restored and the evidence sealed.
    expected: The run is ABORTED and the restore step ran.
    evidence: The journal.
    steps:
      - ssh_exec: { command: "echo before" }
      - wait: { ms: 60000 }
      - ssh_exec: { command: "echo never" }
    restore:
      - name: put the device back
        ssh_exec: { command: "echo restored" }
"#;

/// `proofrig run` of `plan_text` on `sshd`, started in the background, with its
/// output piped; the temporary directory holds the rig, the plan, the lab key
/// (`lab.key`, `lab.pub`) and the results (`results/`).
fn spawn_run(sshd: &Sshd, plan_text: &str) -> (std::process::Child, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let rig = rig_for(sshd, &tmp.path().join("abort"), sshd.user(), sshd.password());
    let plan_path = tmp.path().join("abort.yaml");
    std::fs::write(&plan_path, plan_text).unwrap();
    signing::generate(&tmp.path().join("lab.key"), &tmp.path().join("lab.pub")).unwrap();
    let s = |p: &Path| p.display().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["run", &s(&plan_path), "--rig", &s(&rig), "--key", &s(&tmp.path().join("lab.key"))])
        .args(["--out", &s(&tmp.path().join("results"))])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, tmp)
}

fn interrupt(child: &std::process::Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
}

#[test]
fn ctrl_c_stops_the_step_runs_restore_and_seals_an_aborted_bundle() {
    let sshd = Sshd::start();
    let (child, tmp) = spawn_run(&sshd, ABORTABLE_PLAN);
    let s = |p: &Path| p.display().to_string();
    let public = tmp.path().join("lab.pub");
    // The first step prints its verdict when done; then the long wait is running.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    interrupt(&child);
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "Ctrl-C must not wait for the 60 s step");
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = all(&out);
    assert!(text.contains("aborting"), "{text}");
    assert!(text.contains("restore 1: put the device back: PASS"), "the restore step ran: {text}");
    assert!(text.contains("TC_ABORT_CHECK") && text.contains("ABORTED"), "{text}");

    let bundle =
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("bundle: ").map(String::from)).expect("a sealed bundle");
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(Path::new(&bundle).join("results.json")).unwrap()).unwrap();
    assert_eq!(results["aborted"], true);
    assert_eq!(results["verdict"], "ABORTED");
    let verified = proofrig(&["verify", &bundle, "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "an aborted run is sealed evidence too: {}", all(&verified));
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_leaves_an_incomplete_bundle_that_verifies_as_such() {
    let sshd = Sshd::start();
    // The restore step waits too, so the second Ctrl-C lands while it runs.
    let plan_text = ABORTABLE_PLAN.replace("ssh_exec: { command: \"echo restored\" }", "wait: { ms: 60000 }");
    let (child, tmp) = spawn_run(&sshd, &plan_text);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    interrupt(&child);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    interrupt(&child);
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "a forced quit must not wait for the restore step");
    assert_eq!(out.status.code(), Some(130), "{}", all(&out));
    assert!(all(&out).contains("forced to quit; the bundle is left unsealed"), "{}", all(&out));

    let runs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("results")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let bundle = runs[0].display().to_string();
    let verified = proofrig(&["verify", &bundle, "--key", &tmp.path().join("lab.pub").display().to_string()]);
    let text = all(&verified);
    assert_eq!(verified.status.code(), Some(2), "an unsealed bundle is incomplete, not tampered: {text}");
    assert!(text.to_lowercase().contains("incomplete"), "{text}");
    // Everything up to the restore step that was running is on file, chained.
    let (records, _) = read_chain(&runs[0].join("journal.jsonl")).unwrap().expect("the journal's prefix verifies");
    let last_start = records.iter().rev().find(|r| r.entry["type"] == "step_started").expect("steps were journaled");
    assert_eq!(last_start.entry["phase"], "restore", "the restore step's start is journaled: {:?}", last_start.entry);
}
