//! The BusyBox + dropbear device behaves like the small embedded Linux box it stands for:
//! a boot log and BusyBox's getty/login on the serial console, a BusyBox-only userland
//! (no `ss`), dropbear with a pinned host key, power that really cuts everything, and the
//! two profiles differing where an evaluator looks. SSH is tested with dropbear's own
//! client, `dbclient`, which checks the host key against a known_hosts file.

use std::io::Read;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use proofrig_testpeers::busybox::{BusyboxDevice, Profile, AUTH_LOG, DEFAULT_ACCOUNT, OPERATOR, PDU_HOST};
use proofrig_testpeers::require_program;

const DBCLIENT: &str = "/usr/bin/dbclient";

/// `dbclient` as `user` with `password`, from inside the device's network namespace,
/// trusting only the host key in `known_hosts`.
fn ssh_with(device: &BusyboxDevice, known_hosts: &str, user: &str, password: &str, command: &str) -> Output {
    require_program(DBCLIENT, "dropbear-bin");
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/known_hosts"), known_hosts).unwrap();
    device
        .command(DBCLIENT)
        .env("HOME", home.path())
        .env("DROPBEAR_PASSWORD", password)
        .args(["-T", "-p", "22", &format!("{user}@127.0.0.1"), command])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run dbclient")
}

fn ssh(device: &BusyboxDevice, user: &str, password: &str, command: &str) -> Output {
    ssh_with(device, &device.known_hosts(), user, password, command)
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The network namespace's identity (e.g. `net:[4026532...]`) and whether any process
/// of the test machine is still in it.
fn namespace_of(pid_dir: &Path) -> String {
    std::fs::read_link(pid_dir.join("ns/net")).map(|p| p.display().to_string()).unwrap_or_default()
}

fn processes_in(namespace: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| namespace_of(&e.path()) == namespace)
        .map(|e| {
            format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default().replace('\0', " ")
            )
        })
        .collect()
}

#[test]
fn the_console_boots_to_busybox_login_and_a_shell_without_gnu_tools() {
    let mut device = BusyboxDevice::builder(Profile::Hardened).unpowered().start();
    let mut console = device.open_console();
    assert!(!device.is_powered());
    let started = Instant::now();
    device.power_on();
    eprintln!("powered on and booted in {:?}", started.elapsed());

    let boot = console.expect("ru-bb login: ", Duration::from_secs(5)).expect("the login prompt after the boot log");
    assert!(boot.contains("[    0.000000] Booting Linux on physical CPU"), "{boot}");
    assert!(boot.contains("Run /sbin/init as init process"), "{boot}");
    assert!(boot.contains("Starting dropbear sshd: OK"), "{boot}");
    assert!(boot.contains("RU-BB radio unit (BusyBox)"), "getty shows /etc/issue: {boot}");
    assert!(!boot.to_lowercase().contains("autoboot") && !boot.contains("U-Boot"), "no boot loader: {boot}");

    // A wrong password: BusyBox login waits 3 s and refuses; syslogd records it.
    let refused = console.login("root", "not-the-password", Duration::from_secs(10)).expect_err("a wrong password is refused");
    assert!(refused.contains("Login incorrect"), "{refused}");
    let log = device.wait_for_auth_log("invalid password for 'root'", Duration::from_secs(3)).expect("the refusal is logged");
    let line = log.lines().find(|l| l.contains("invalid password for 'root'")).unwrap();
    assert!(line.contains(" ru-bb ") && line.contains("login["), "syslog format with host and program: {line}");

    let shell = console.login("root", device.root_password(), Duration::from_secs(10)).expect("root logs in on the console");
    assert!(shell.contains("root@ru-bb:"), "{shell}");
    let (out, status) = console.run("busybox | head -n 1", Duration::from_secs(5));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("BusyBox v1."), "{out}");
    let (out, status) = console.run("ss -tln", Duration::from_secs(5));
    assert_eq!(status, 127, "no ss on a BusyBox device: {out}");
    assert!(out.contains("ss: not found"), "{out}");
    let (out, status) = console.run("netstat -tln", Duration::from_secs(5));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains(":22 "), "dropbear listens: {out}");
    let (out, _) = console.run("cat /proc/1/cmdline; echo; hostname", Duration::from_secs(5));
    assert!(out.contains("init") && out.contains("ru-bb"), "BusyBox init is PID 1 of the device: {out}");
    console.send("exit\r");
    console.expect("ru-bb login: ", Duration::from_secs(5)).expect("getty comes back after logout");
    assert!(device.auth_log().contains("root login on 'ttyS0'"), "{}", device.auth_log());
}

#[test]
fn a_console_without_login_gives_a_root_shell_again_after_every_exit() {
    let device = BusyboxDevice::builder(Profile::Hardened).console_without_login().start();
    let mut console = device.open_console();
    console.send("\r");
    let first = console.expect("root@ru-bb:/# ", Duration::from_secs(5)).expect("a root shell on the console, nobody asked to log in");
    assert!(!first.contains("login:"), "{first}");
    let (pid, status) = console.run("echo PID=$$", Duration::from_secs(5));
    assert_eq!(status, 0, "{pid}");
    for _ in 0..3 {
        console.send("exit\r");
        let (index, text) = console
            .expect_any(&["login: ", "root@ru-bb:/# "], Duration::from_secs(5))
            .unwrap_or_else(|text| panic!("nothing after exit: {text}"));
        assert_eq!(index, 1, "init starts a new shell, never a login: {text}");
    }
    let (again, _) = console.run("echo PID=$$; id -u", Duration::from_secs(5));
    let shell = |text: &str| text.lines().rev().find_map(|l| l.trim().strip_prefix("PID=")).map(str::to_string);
    assert_ne!(shell(&pid), shell(&again), "a new shell each time: {pid} / {again}");
    assert!(again.lines().any(|l| l.trim() == "0"), "root's shell: {again}");
    // SSH and the rest of the profile are unchanged.
    let oper = ssh(&device, OPERATOR, device.operator_password(), "id -un");
    assert_eq!(oper.status.code(), Some(0), "{}", text(&oper));
}

#[test]
fn dropbear_takes_the_operator_on_both_profiles_and_root_only_on_the_careless_one() {
    for profile in [Profile::Careless, Profile::Hardened] {
        let device = BusyboxDevice::start(profile);
        let fingerprint = device.host_key_fingerprint();
        assert!(fingerprint.starts_with("SHA256:") && fingerprint.len() == 50, "{fingerprint}");

        let oper = ssh(&device, OPERATOR, device.operator_password(), "id; echo BB=$(readlink /bin/sh)");
        assert_eq!(oper.status.code(), Some(0), "{profile:?}: {}", text(&oper));
        let stdout = String::from_utf8_lossy(&oper.stdout);
        assert!(stdout.contains("uid=1000(oper)") && stdout.contains("4(adm)"), "{stdout}");
        assert!(stdout.contains("BB=/bin/busybox"), "{stdout}");
        // The hardened BusyBox is set-user-ID root for `passwd`, and drops root before
        // any other applet: the operator's shell and `id` run with no effective root.
        assert!(!stdout.contains("euid="), "{profile:?}: an applet kept root: {stdout}");
        let mode = ssh(&device, OPERATOR, device.operator_password(), "stat -c %A /bin/busybox");
        let suid = String::from_utf8_lossy(&mode.stdout).trim() == "-rwsr-xr-x";
        assert_eq!(suid, profile == Profile::Hardened, "{profile:?}: /bin/busybox is {}", text(&mode));
        // The operator reads the auth log, which has dropbear's record of this login.
        let log = ssh(&device, OPERATOR, device.operator_password(), &format!("grep 'Password auth succeeded for' {AUTH_LOG}"));
        assert_eq!(log.status.code(), Some(0), "{profile:?}: {}", text(&log));
        assert!(String::from_utf8_lossy(&log.stdout).contains("'oper' from 127.0.0.1:"), "{}", text(&log));

        let root = ssh(&device, "root", device.root_password(), "id -u");
        match profile {
            Profile::Careless => {
                assert_eq!(root.status.code(), Some(0), "careless: root logs in with its password: {}", text(&root));
                assert_eq!(String::from_utf8_lossy(&root.stdout).trim(), "0");
            }
            Profile::Hardened => {
                assert_ne!(root.status.code(), Some(0), "hardened: root is refused: {}", text(&root));
                assert!(device.wait_for_auth_log("root login rejected", Duration::from_secs(3)).is_some(), "{}", device.auth_log());
            }
        }

        // The pin holds: another key for the same address is not accepted.
        let other = BusyboxDevice::builder(profile).unpowered().start();
        let impostor = ssh_with(&device, &other.known_hosts(), OPERATOR, device.operator_password(), "id");
        assert_ne!(impostor.status.code(), Some(0), "a host key other than the pinned one is refused: {}", text(&impostor));
    }
}

#[test]
fn coil_off_silences_the_console_and_refuses_ssh_and_coil_on_boots_again() {
    let mut device = BusyboxDevice::start(Profile::Careless);
    let mut console = device.open_console();
    console.send("\r");
    console.expect("login: ", Duration::from_secs(5)).expect("getty answers before the power cut");
    // What the Enter set off (its echo, a fresh prompt) is all printed before the cut.
    console.read_for(Duration::from_millis(500));

    device.power_off();
    assert!(!device.pdu().coil(device.outlet()));
    assert!(!device.is_powered());
    console.send("\r");
    let heard = console.read_for(Duration::from_secs(2));
    assert!(heard.is_empty(), "a powered-off device prints nothing: {:?}", String::from_utf8_lossy(&heard));
    for port in [22, 23] {
        let refused = device.connect(port).expect_err("nothing listens while the power is off");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "port {port}: {refused}");
    }
    // The PDU stays reachable inside the namespace while the device is off.
    let pdu = std::net::SocketAddr::new(PDU_HOST.parse().unwrap(), device.pdu_port());
    assert!(device.connect_to(pdu).is_ok(), "the bridged PDU port answers");
    assert!(device.connect(device.pdu_port()).is_err(), "the PDU is not on the device's own address");

    device.power_on();
    let boot = console.expect("login: ", Duration::from_secs(5)).expect("boot log and login prompt after power-on");
    assert!(boot.contains("Booting Linux"), "{boot}");
    let oper = ssh(&device, OPERATOR, device.operator_password(), "echo back");
    assert_eq!(oper.status.code(), Some(0), "SSH is back: {}", text(&oper));
    let mut telnet = device.connect(23).expect("telnetd is back on the careless device");
    telnet.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut banner = [0u8; 64];
    assert!(telnet.read(&mut banner).unwrap() > 0, "telnetd speaks first (option negotiation)");
}

#[test]
fn the_profiles_differ_in_telnet_shadow_and_the_default_account() {
    for profile in [Profile::Careless, Profile::Hardened] {
        let device = BusyboxDevice::start(profile);
        let listing = ssh(&device, OPERATOR, device.operator_password(), "ls -l /etc/shadow; cat /etc/shadow >/dev/null; echo READ=$?");
        assert_eq!(listing.status.code(), Some(0), "{}", text(&listing));
        let stdout = String::from_utf8_lossy(&listing.stdout);
        let (default_user, default_password) = DEFAULT_ACCOUNT;
        let admin = ssh(&device, default_user, default_password, "id -un");
        let telnet = device.connect(23);
        match profile {
            Profile::Careless => {
                assert!(stdout.starts_with("-rw-r--r--"), "careless: shadow is world-readable: {stdout}");
                assert!(stdout.contains("READ=0"), "{stdout}");
                assert!(telnet.is_ok(), "careless: telnetd listens on 23");
                assert_eq!(admin.status.code(), Some(0), "careless: admin/admin works: {}", text(&admin));
            }
            Profile::Hardened => {
                assert!(
                    stdout.starts_with("-rw-r-----") && stdout.contains("root     shadow"),
                    "hardened: shadow is 0640 root:shadow: {stdout}"
                );
                assert!(stdout.contains("READ=1"), "{stdout}");
                assert_eq!(telnet.map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::ConnectionRefused), "hardened: no telnetd");
                assert_ne!(admin.status.code(), Some(0), "hardened: admin is locked: {}", text(&admin));
            }
        }
    }
}

#[test]
fn nothing_of_the_device_outlives_it() {
    let started = Instant::now();
    let device = BusyboxDevice::start(Profile::Careless);
    eprintln!("built, started and booted in {:?}", started.elapsed());
    let namespace = device.network_namespace();
    assert!(processes_in(&namespace).len() >= 4, "holder, init, getty, syslogd, dropbear, telnetd: {:?}", processes_in(&namespace));
    let root = device.root_dir();
    drop(device);
    assert_eq!(processes_in(&namespace), Vec::<String>::new(), "every process of the device is gone");
    assert!(!root.exists(), "the image is removed");
}

/// The hardened console asks with BusyBox `login` (echo off while the password is
/// typed); the careless one with the vendor's own script, which shows the password as
/// typed. Both let root in with its password, refuse a wrong one, and come back to the
/// login prompt after `exit`; the careless one lets the support account (MD5 crypt) in too.
#[test]
fn the_console_login_hides_the_password_on_the_hardened_unit_and_echoes_it_on_the_careless_one() {
    for profile in [Profile::Hardened, Profile::Careless] {
        let device = BusyboxDevice::start(profile);
        let mut console = device.open_console();
        let typed = "Typed-9Kq4-wrong";
        let refused = console.login("root", typed, Duration::from_secs(10)).expect_err("a wrong password is refused");
        assert!(refused.contains("Login incorrect"), "{profile:?}: {refused}");
        let after_prompt = refused.rsplit("Password: ").next().unwrap();
        assert_eq!(after_prompt.contains(typed), profile == Profile::Careless, "{profile:?}: what followed the prompt: {after_prompt:?}");

        let shell = console.login("root", device.root_password(), Duration::from_secs(10)).expect("root logs in on the console");
        assert!(shell.contains("root@ru-bb:"), "{profile:?}: {shell}");
        let (out, status) = console.run("id -u", Duration::from_secs(5));
        assert!(status == 0 && out.lines().any(|l| l.trim() == "0"), "{profile:?}: root's shell: {out:?}");
        console.send("exit\r");
        console.expect("ru-bb login: ", Duration::from_secs(5)).expect("the login prompt comes back after logout");
        if profile == Profile::Careless {
            let support = console.login("support", "support", Duration::from_secs(10)).expect("the MD5-crypt account logs in");
            assert!(support.contains("@ru-bb:"), "{support}");
            console.send("exit\r");
        }
    }
}
