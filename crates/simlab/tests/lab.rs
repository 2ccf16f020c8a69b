//! The whole simulated lab as proofrig meets it: the rig file it writes is accepted
//! by proofrig's own rig loader and tells the truth (host keys as OpenSSH's
//! `ssh-keyscan` sees them, logins with the referenced secrets, identities as the
//! devices report them, consoles that exist, secrets only in mode-0600 files), and
//! the PDU's coils, written by a real Modbus client, power the devices: console,
//! SSH and the weak profile's extra listeners together.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::PtyClient;
use proofrig_agents::power::PowerController;
use proofrig_model::events::{MemorySink, PowerState, Recorder};
use proofrig_model::rig::{OutletId, Pdu, Rig};
use proofrig_model::secret::SecretRef;
use proofrig_simlab::{BootTiming, Profile, SimLab, SimLabConfig};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_modbus::client::tcp;
use tokio_modbus::prelude::{Reader, Slave, Writer};

const SSH: &str = "/usr/bin/ssh";
const SSH_KEYSCAN: &str = "/usr/bin/ssh-keyscan";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const WAIT: Duration = Duration::from_secs(5);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

async fn output(mut command: Command, stdin: Option<&str>) -> (Option<i32>, String, String) {
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn");
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output()).await.expect("client did not finish in time").unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn secret_path(secret: &SecretRef) -> &Path {
    match secret {
        SecretRef::File(path) => path,
        other => panic!("the sim lab references secrets by file, got {other:?}"),
    }
}

/// The ed25519 key OpenSSH's own scanner gets from `host:port`, as a known_hosts
/// line, and its fingerprint as `ssh-keygen -lf` prints it.
async fn scan_host_key(host: &str, port: u16) -> (String, String) {
    let mut keyscan = Command::new(SSH_KEYSCAN);
    keyscan.args(["-T", "5", "-t", "ed25519", "-p", &port.to_string(), host]);
    let (status, known_hosts, stderr) = output(keyscan, None).await;
    assert_eq!(status, Some(0), "ssh-keyscan {host}:{port}: {stderr}");
    assert_eq!(known_hosts.lines().count(), 1, "{known_hosts}");
    let mut keygen = Command::new(SSH_KEYGEN);
    keygen.args(["-l", "-f", "-"]);
    let (status, listing, stderr) = output(keygen, Some(&known_hosts)).await;
    assert_eq!(status, Some(0), "ssh-keygen: {stderr}");
    // `256 SHA256:... [127.0.0.11]:40211 (ED25519)`
    let fingerprint = listing.split_whitespace().nth(1).unwrap_or_else(|| panic!("no fingerprint in {listing:?}")).to_string();
    (known_hosts, fingerprint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rig_parses_pins_the_served_host_keys_and_holds_no_password() {
    for program in [SSH, SSH_KEYSCAN, SSH_KEYGEN] {
        proofrig_testpeers::require_program(program, "openssh-client");
    }
    let mut lab = SimLab::start(SimLabConfig::fast()).await.expect("start lab");
    let dir = tempfile::tempdir().unwrap();
    let rig_path = lab.write_rig(dir.path()).expect("write rig");
    let text = std::fs::read_to_string(&rig_path).unwrap();
    let rig = Rig::load(&rig_path).unwrap_or_else(|e| panic!("rig refused: {e:?}\n{text}"));

    let Some(Pdu::Modbus(pdu)) = rig.pdu("simpdu") else {
        panic!("no modbus PDU simpdu:\n{text}");
    };
    assert_eq!((pdu.host.as_str(), pdu.port), ("127.0.0.1", lab.pdu_addr().port()));
    let names: Vec<&str> = rig.devices().map(|(name, _)| name).collect();
    assert_eq!(names, ["core1", "core2", "ru1", "ru2"]);

    let askpass = dir.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\ncat \"$SIMLAB_PASSWORD_FILE\"\n").unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();

    for (name, device) in rig.devices() {
        let lab_device = lab.device(name).unwrap();
        let spec = lab_device.spec();
        assert_eq!(device.role, spec.role);
        assert!(device.tags.contains(&spec.profile.name().to_string()), "{name}: {:?}", device.tags);
        let expected_role = if name.starts_with("ru") { "radio-unit" } else { "core" };
        assert_eq!(device.role, expected_role);

        // Every secret is a file only its owner can read, holding what the device uses.
        let mut references: Vec<&SecretRef> = device.secrets.values().collect();
        let ssh = device.ssh.as_ref().expect("ssh endpoint");
        references.push(ssh.password.as_ref().expect("ssh password"));
        let console = device.console.as_ref().expect("console");
        let login = console.login.as_ref().expect("console login");
        references.push(login.password.as_ref().expect("console password"));
        for reference in references {
            let path = secret_path(reference);
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        for (secret, reference) in &device.secrets {
            let value = lab_device.secret(secret).unwrap();
            assert_eq!(reference.resolve().unwrap().expose(), value);
            assert!(!text.contains(value), "{name}'s {secret} is inline in the rig");
        }
        assert_eq!(device.secrets.contains_key("bootloader_password"), spec.profile == Profile::Hardened);
        assert_eq!(login.user, "root");
        assert_eq!(login.password.as_ref(), device.secrets.get("root_password"));

        // The console is the PTY the device plays on.
        let port = &console.serial.as_ref().expect("serial console").port;
        assert_eq!(Some(port.as_path()), lab_device.console_path());
        assert!(std::fs::metadata(port).unwrap().file_type().is_char_device());

        // The power outlet is the coil that powers this device.
        let power = device.power.as_ref().expect("power");
        assert_eq!(power.pdu, "simpdu");
        assert_eq!(power.outlet, OutletId::Number(u32::from(spec.outlet)));

        // What the vendor documents: SSH, the web management server and its HTTPS, whatever else the weak device really runs.
        let web_port = lab_device.web_port().expect("both profiles run a web server");
        let tls_port = lab_device.tls_port();
        assert_eq!(device.declared["open_tcp_ports"], serde_json_array(&[ssh.port, web_port, tls_port]));
        assert_eq!(device.declared["web_port"], web_port);
        assert_eq!((device.declared["tls_port"].clone(), device.declared["https_port"].clone()), (tls_port.into(), tls_port.into()));
        assert_eq!(device.declared["tls_server_name"].as_str(), Some(name));
        assert_eq!(device.declared["lockout"]["attempts"], 3);
        // Besides SSH, a hardened device runs its web server alone.
        assert_eq!(lab_device.device().extra_services().len() == 1, spec.profile == Profile::Hardened);

        // The pinned fingerprint is the key the server presents to OpenSSH.
        assert_eq!((ssh.host.as_str(), ssh.port), (spec.management_ip.to_string().as_str(), lab_device.ssh_addr().port()));
        let (known_hosts_line, fingerprint) = scan_host_key(&ssh.host, ssh.port).await;
        assert_eq!(Some(&fingerprint), ssh.host_key.as_ref(), "{name}");

        // Log in as the rig says, pinning that key strictly, and compare identities.
        let known_hosts: PathBuf = dir.path().join(format!("known_hosts-{name}"));
        std::fs::write(&known_hosts, &known_hosts_line).unwrap();
        let mut client = Command::new(SSH);
        client
            .args(["-F", "/dev/null", "-o"])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "ConnectTimeout=5", "-o", "NumberOfPasswordPrompts=1"])
            .args(["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"])
            .args(["-p", &ssh.port.to_string(), "-l", &ssh.user, &ssh.host])
            .arg("cat /etc/proofrig-release")
            .env("HOME", dir.path())
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("SIMLAB_PASSWORD_FILE", secret_path(ssh.password.as_ref().unwrap()))
            .env_remove("DISPLAY")
            .env_remove("SSH_AUTH_SOCK");
        let (status, release, stderr) = output(client, None).await;
        assert_eq!(status, Some(0), "{name}: ssh login failed: {stderr}");
        let identity = &device.identity;
        let field = |value: &Option<String>| value.clone().expect("identity field");
        assert_eq!(
            release,
            format!(
                "VENDOR=\"{}\"\nMODEL=\"{}\"\nSERIAL=\"{}\"\nFIRMWARE=\"{}\"\n",
                field(&identity.vendor),
                field(&identity.model),
                field(&identity.serial),
                field(&identity.firmware)
            ),
            "{name}"
        );
        assert_eq!(identity.vendor.as_deref(), Some("proofrig simulated"));
    }
    lab.stop().await;
}

fn serde_json_array(ports: &[u16]) -> serde_json::Value {
    serde_json::Value::Array(ports.iter().map(|p| (*p).into()).collect())
}

/// Whether something accepts TCP connections at `addr` (and, for SSH, greets).
async fn accepts(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coils_written_over_modbus_power_the_console_and_the_network_services() {
    let fast = SimLabConfig::fast();
    // A countdown long enough that a cut right after the banner surely lands
    // before the kernel starts, even on a slow machine.
    let boot = BootTiming { autoboot_countdown: 3, countdown_step: Duration::from_millis(200), ..fast.boot.clone() };
    let mut lab = SimLab::start(SimLabConfig { boot, ..fast }).await.expect("start lab");
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::load(&lab.write_rig(dir.path()).unwrap()).unwrap();
    let power = PowerController::new(&rig, Recorder::new(MemorySink::new())).unwrap();

    let ru2 = lab.device("ru2").unwrap();
    let ru1 = lab.device("ru1").unwrap();
    let outlet = ru2.spec().outlet;
    let ssh = ru2.ssh_addr();
    let telnet = ru2.device().extra_services()[0].local_addr();
    let mut console = PtyClient::open(ru2.console_path().unwrap());
    console.expect("ru2 login: ", WAIT).await;
    let mut greeting = [0u8; 8];
    let mut stream = TcpStream::connect(ssh).await.expect("SSH listens while powered");
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"SSH-2.0-");

    let mut modbus = tcp::connect_slave(lab.pdu_addr(), Slave(1)).await.unwrap();
    assert_eq!(modbus.read_coils(1, 4).await.unwrap().unwrap(), vec![true; 4]);
    modbus.write_single_coil(outlet, false).await.unwrap().unwrap();
    // The reply came after the device followed: off already.
    assert!(!ru2.device().is_powered());
    let refused = TcpStream::connect(ssh).await;
    assert_eq!(refused.map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!accepts(telnet).await, "telnet still listens without power");
    assert!(accepts(ru1.ssh_addr()).await, "ru1 is on another outlet");
    assert_eq!(power.status("ru2").await.unwrap(), PowerState::Off);
    assert_eq!(power.status("ru1").await.unwrap(), PowerState::On);
    assert_eq!(console.read_for(Duration::from_millis(500)).await, "");

    modbus.write_single_coil(outlet, true).await.unwrap().unwrap();
    let boot = console.expect("ru2 login: ", WAIT).await;
    assert!(boot.contains("U-Boot 2023.04") && boot.contains("Linux version"), "{boot}");
    let mut stream = TcpStream::connect(ssh).await.expect("SSH back with power");
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"SSH-2.0-");
    assert!(accepts(telnet).await);

    // Cut mid-boot: the boot log stops where it was.
    console.drain();
    modbus.write_single_coil(outlet, false).await.unwrap().unwrap();
    modbus.write_single_coil(outlet, true).await.unwrap().unwrap();
    console.expect("U-Boot 2023.04", WAIT).await;
    modbus.write_single_coil(outlet, false).await.unwrap().unwrap();
    let after_cut = console.read_for(Duration::from_millis(800)).await;
    assert!(!after_cut.contains("Starting kernel") && !after_cut.contains("login:"), "boot went on after power off:\n{after_cut}");
    assert_eq!(console.read_for(Duration::from_millis(300)).await, "");

    // The power agent drives the same coil through the rig.
    assert_eq!(power.on("ru2").await.unwrap(), PowerState::On);
    console.expect("ru2 login: ", WAIT).await;
    assert!(accepts(ssh).await);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_configured_unpowered_starts_dark_until_its_coil_is_switched() {
    let config = SimLabConfig { powered: false, ..SimLabConfig::fast() };
    let mut lab = SimLab::start(config).await.expect("start lab");
    assert!(lab.pdu().coils().iter().all(|coil| !coil));
    let core1 = lab.device("core1").unwrap();
    assert!(!accepts(core1.ssh_addr()).await);
    let mut console = PtyClient::open(core1.console_path().unwrap());
    assert_eq!(console.read_for(Duration::from_millis(300)).await, "");

    lab.set_power("core1", true).await.unwrap();
    assert_eq!(lab.pdu().coil(core1.spec().outlet), Some(true));
    assert!(accepts(core1.ssh_addr()).await);
    console.expect("core1 login: ", WAIT).await;
    assert!(!accepts(lab.device("core2").unwrap().ssh_addr()).await);
    assert!(lab.set_power("core9", true).await.is_err());
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_services_can_take_their_well_known_ports_on_a_lab_of_their_own() {
    // Ports below 1024: the tests run as root (scripts/test.sh, the CI container).
    let config = SimLabConfig::fast().with_well_known_service_ports();
    let block = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => [v4.octets()[0], v4.octets()[1], v4.octets()[2]],
        other => panic!("{other}"),
    };
    let first = block(config.devices[0].management_ip);
    assert_eq!(first[0], 127);
    assert!(first[1] >= 100, "off the default 127.0.0.x block: {first:?}");
    assert!(config.devices.iter().all(|d| block(d.management_ip) == first));
    let mut lab =
        SimLab::start(config).await.expect("start a lab with services on ports 21, 23 and 80 (needs root or CAP_NET_BIND_SERVICE)");
    for device in lab.devices() {
        let ip = device.spec().management_ip;
        let mut ports: Vec<u16> = device.device().extra_services().iter().map(|s| s.local_addr().port()).collect();
        ports.sort_unstable();
        let listeners = device.device().os().listeners();
        // On the management address, SSH and HTTPS (both profiles, on free high ports:
        // `proofrig_simlab::tls`) aside.
        let listening: Vec<u16> = listeners
            .iter()
            .filter(|l| l.addr.ip() == ip)
            .map(|l| l.addr.port())
            .filter(|p| *p != device.ssh_addr().port() && *p != device.tls_port())
            .collect();
        // What listens on the device's user-plane address (TS 33.117 4.3.2.2).
        let user_plane = proofrig_simlab::lab::user_plane_ip(ip).expect("a user-plane address");
        let elsewhere: Vec<u16> = listeners.iter().filter(|l| l.addr.ip() == user_plane).map(|l| l.addr.port()).collect();
        match device.spec().profile {
            Profile::Weak => {
                assert_eq!(ports, [21, 23, 80], "{}", device.name());
                assert_eq!(listening, [21, 23, 80], "{}", device.name());
                // Telnet and FTP also listen on the user-plane interface, and answer there.
                assert_eq!(elsewhere, [21, 23], "{}", device.name());
                assert!(accepts((user_plane, 23).into()).await, "{}", device.name());
                let mut telnet = TcpStream::connect((ip, 23)).await.unwrap();
                let mut banner = [0u8; 64];
                let n = telnet.read(&mut banner).await.unwrap();
                assert!(String::from_utf8_lossy(&banner[..n]).contains(SIM_MODEL_PREFIX), "{}", String::from_utf8_lossy(&banner[..n]));
            }
            Profile::Hardened => {
                // Its web server only, on a documented high port, never on 80.
                assert_eq!(ports, [device.web_port().unwrap()], "{}", device.name());
                assert_eq!(listening, ports, "{}", device.name());
                assert!(ports[0] > 1024 && !accepts((ip, 23).into()).await && !accepts((ip, 80).into()).await);
                assert!(elsewhere.is_empty() && !accepts((user_plane, 23).into()).await, "{}: {elsewhere:?}", device.name());
            }
        }
    }
    lab.stop().await;
}

const SIM_MODEL_PREFIX: &str = "SIM-";
