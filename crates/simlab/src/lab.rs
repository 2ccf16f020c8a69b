//! The whole simulated lab `proofrig demo` runs against: four devices and the PDU
//! that powers them, on loopback, plus the rig file that describes them.
//!
//! Two radio units and two core appliances, one hardened and one weak of each, so
//! the same test plan shows PASS on one and FAIL on the other. Each device has its
//! own loopback management address (127.0.0.11 to .14: Linux routes all of
//! 127.0.0.0/8 to loopback, so no set-up is needed), an SSH server, the weak
//! profile's extra listeners, and a serial console on a PTY; the sim PDU's coil N
//! powers the device on outlet N. Ports are chosen by the OS unless configured, so
//! several labs (parallel tests, two demos) never collide.
//!
//! The rig file is generated from what actually runs (PTY paths, ports, pinned host
//! key fingerprints), in proofrig's rig schema. Passwords are random per start and
//! only ever written to mode-0600 files the rig references; the rig itself names
//! no secret. What the rig `declares` is the vendor's documentation, identical for
//! both profiles: it promises what the hardened device does, which is exactly
//! where the weak device is found out.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::console::{BootTiming, ConsoleOptions};
use crate::device::{SimDevice, SimDeviceSpec};
use crate::device_os::{DeviceConfig, DeviceIdentity};
use crate::log_forward::LogServer;
use crate::pdu::{PduOptions, SimPdu};
use crate::profile::{ExtraService, Profile, BASE_SOFTWARE, REMOVABLE_MOUNT, SOFTWARE_LIST, VENDOR_KEY};
use crate::programs::{GENUINE_PACKAGE, TAMPERED_PACKAGE};
use crate::ssh_server::{HostKey, SshServerOptions};
use crate::web::MANAGEMENT_API;
use crate::SimError;

/// Vendor name every simulated device reports and the rig declares.
pub const SIM_VENDOR: &str = "proofrig simulated";
/// The local account the rig's SSH endpoints use: it may log in over SSH on both
/// profiles (root may not on a hardened device) and reads the auth log.
pub const OPERATOR_USER: &str = "oper";
/// Name of the PDU in the generated rig.
pub const PDU_NAME: &str = "simpdu";

/// Secret names in the rig (`devices.<name>.secrets`), and the file suffix of each.
const SECRETS: [(&str, &str); 3] = [("root_password", "root"), ("oper_password", "oper"), ("bootloader_password", "bootloader")];

/// One device of the lab.
#[derive(Debug, Clone)]
pub struct LabDeviceSpec {
    /// Device name in the rig, also its hostname.
    pub name: String,
    /// Rig role, e.g. `radio-unit`, `core`.
    pub role: String,
    pub tags: Vec<String>,
    pub profile: Profile,
    pub management_ip: IpAddr,
    /// 0 picks a free port.
    pub ssh_port: u16,
    /// Ports of the weak profile's plain-text services (0 picks a free port; see
    /// [`SimLabConfig::with_well_known_service_ports`]).
    pub telnet_port: u16,
    pub ftp_port: u16,
    pub http_port: u16,
    /// UDP port of the weak profile's SNMP agent (0 picks a free port; 161 with
    /// [`SimLabConfig::with_well_known_service_ports`]).
    pub snmp_port: u16,
    /// The PDU coil that powers it.
    pub outlet: u16,
    pub identity: DeviceIdentity,
    /// Whether it has a serial console on a PTY.
    pub console: bool,
}

impl LabDeviceSpec {
    /// A device named `name` on 127.0.0.`last_octet`, powered by `outlet`; the
    /// model and firmware follow from the role and profile.
    pub fn new(name: &str, role: &str, profile: Profile, last_octet: u8, outlet: u16) -> Self {
        let (model, kind_tag) = match role {
            "radio-unit" => ("SIM-RU-4400", "o-ru"),
            "core" => ("SIM-CORE-900", "5gc"),
            _ => ("SIM-DEVICE", role),
        };
        let firmware = match profile {
            Profile::Hardened => "4.2.1",
            Profile::Weak => "3.0.7",
        };
        LabDeviceSpec {
            name: name.to_string(),
            role: role.to_string(),
            tags: vec![kind_tag.to_string(), profile.name().to_string()],
            profile,
            management_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)),
            ssh_port: 0,
            telnet_port: 0,
            ftp_port: 0,
            http_port: 0,
            snmp_port: 0,
            outlet,
            identity: DeviceIdentity {
                vendor: SIM_VENDOR.to_string(),
                model: model.to_string(),
                serial: format!("PRS-{}-{:04}", name.to_uppercase(), 1000 + last_octet as u16),
                firmware: firmware.to_string(),
            },
            console: true,
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SimLabConfig {
    pub devices: Vec<LabDeviceSpec>,
    /// Where the PDU listens; port 0 picks a free port.
    pub pdu_addr: SocketAddr,
    /// Whether the coils, and so the devices, start on.
    pub powered: bool,
    pub boot: BootTiming,
    /// How long a hardened device locks an account after 3 failed passwords
    /// (declared in the rig as `lockout.seconds`, so whole seconds).
    pub lockout_duration: Duration,
    /// Console login's pause before `Login incorrect`.
    pub console_login_failure_delay: Duration,
    /// The SSH servers' pause before refusing a password.
    pub ssh_auth_failure_delay: Duration,
    /// How long the rig lets a power cycle keep an outlet off.
    pub cycle_off: Duration,
    /// How long a hardened device's console keeps a login shell nobody types into
    /// (declared in the rig as `inactivity_timeout_s`, so whole seconds); `None`: the
    /// consoles never log anyone out, and the rig declares no timeout.
    pub console_idle_timeout: Option<Duration>,
}

impl Default for SimLabConfig {
    /// `ru1` (hardened) and `ru2` (weak) radio units, `core1` (hardened) and
    /// `core2` (weak) core appliances, on 127.0.0.11..14 and outlets 1..4, powered.
    fn default() -> Self {
        SimLabConfig {
            devices: vec![
                LabDeviceSpec::new("ru1", "radio-unit", Profile::Hardened, 11, 1),
                LabDeviceSpec::new("ru2", "radio-unit", Profile::Weak, 12, 2),
                LabDeviceSpec::new("core1", "core", Profile::Hardened, 13, 3),
                LabDeviceSpec::new("core2", "core", Profile::Weak, 14, 4),
            ],
            pdu_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            powered: true,
            boot: BootTiming::default(),
            lockout_duration: Duration::from_secs(5),
            console_login_failure_delay: Duration::from_secs(1),
            ssh_auth_failure_delay: Duration::from_millis(500),
            cycle_off: Duration::from_millis(500),
            console_idle_timeout: None,
        }
    }
}

impl SimLabConfig {
    /// The default lab with quick boots and short delays, for tests, on loopback
    /// addresses of its own ([`SimLabConfig::on_random_addresses`]): tests run labs at
    /// the same time, and a port scan of one lab's device must not find another's.
    ///
    /// Panics if the system has no random source.
    pub fn fast() -> Self {
        SimLabConfig {
            boot: BootTiming::fast(),
            lockout_duration: Duration::from_secs(2),
            console_login_failure_delay: Duration::from_millis(50),
            ssh_auth_failure_delay: Duration::from_millis(20),
            cycle_off: Duration::from_millis(200),
            ..SimLabConfig::default()
        }
        .on_random_addresses()
        .expect("the system's random source")
    }

    /// The lab `proofrig demo` runs the library on: hardened consoles and SSH shells log
    /// out a shell left idle for 2 seconds (the rig declares it), so 4.2.3.5.2 waits
    /// seconds, not minutes, on each device; a refused login answers after a short
    /// delay, as many cases make one.
    pub fn demo() -> Self {
        SimLabConfig {
            console_login_failure_delay: Duration::from_millis(300),
            ssh_auth_failure_delay: Duration::from_millis(200),
            ..SimLabConfig::default().with_console_idle_timeout(Duration::from_secs(2))
        }
    }

    /// Hardened consoles log out a login shell left idle for `timeout` (whole seconds),
    /// and the rig declares it as `inactivity_timeout_s`. Keep it to a few seconds in
    /// tests: the inactivity case waits it out on every device.
    pub fn with_console_idle_timeout(mut self, timeout: Duration) -> Self {
        self.console_idle_timeout = Some(Duration::from_secs(timeout.as_secs().max(1)));
        self
    }

    /// Weak devices run telnet, FTP, HTTP and SNMP on their well-known ports (23,
    /// 21, 80, UDP 161), where a real device has them and a scan of the well-known insecure
    /// ports finds them, instead of on free high ports. Binding ports below 1024
    /// needs root (or `CAP_NET_BIND_SERVICE`): [`SimLab::start`] fails without it.
    /// Two labs on the same addresses would collide on these ports, so labs that
    /// may run at once also take [`SimLabConfig::on_random_addresses`].
    pub fn with_well_known_service_ports(mut self) -> Self {
        for device in &mut self.devices {
            device.telnet_port = ExtraService::Telnet.well_known_port();
            device.ftp_port = ExtraService::Ftp.well_known_port();
            // The hardened web server stays on its documented high port.
            if device.profile == crate::profile::Profile::Weak {
                device.http_port = ExtraService::Http.well_known_port();
            }
            device.snmp_port = 161;
        }
        self
    }

    /// Moves every device from 127.0.0.N to 127.A.B.N, with A (100..=227) and B
    /// (1..=254) drawn at random, so that labs running at once (parallel tests,
    /// other checkouts on one machine) do not share addresses. Linux routes all of
    /// 127.0.0.0/8 to loopback, so nothing needs setting up.
    pub fn on_random_addresses(mut self) -> Result<Self, SimError> {
        let mut random = [0u8; 2];
        getrandom::fill(&mut random).map_err(|e| SimError::Random(e.to_string()))?;
        let (a, b) = (100 + random[0] % 128, 1 + random[1] % 254);
        for device in &mut self.devices {
            if let IpAddr::V4(ip) = device.management_ip {
                device.management_ip = IpAddr::V4(Ipv4Addr::new(127, a, b, ip.octets()[3]));
            }
        }
        Ok(self)
    }
}

/// A running device of the lab and the passwords it was given.
pub struct LabDevice {
    spec: LabDeviceSpec,
    device: Arc<SimDevice>,
    /// (rig secret name, value), in [`SECRETS`] order; weak devices have no
    /// bootloader password (nothing asks for one).
    secrets: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for LabDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabDevice").field("spec", &self.spec).field("ssh", &self.device.ssh_addr()).finish_non_exhaustive()
    }
}

impl LabDevice {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &LabDeviceSpec {
        &self.spec
    }

    pub fn device(&self) -> &SimDevice {
        &self.device
    }

    /// The TCP port of the device's web management server, if it runs one.
    pub fn web_port(&self) -> Option<u16> {
        self.device.extra_services().iter().find(|s| s.service() == ExtraService::Http).map(|s| s.local_addr().port())
    }

    pub fn ssh_addr(&self) -> SocketAddr {
        self.device.ssh_addr()
    }

    /// The TCP port of the device's HTTPS server (both profiles run one).
    pub fn tls_port(&self) -> u16 {
        self.device.tls_addr().port()
    }

    /// Every TCP port the device listens on at its management address (SSH, HTTPS and
    /// the services besides): all a port scan of that address can find of the device.
    pub fn tcp_ports(&self) -> Vec<u16> {
        let mut ports = vec![self.ssh_addr().port(), self.tls_port()];
        ports.extend(self.device.extra_services().iter().map(|s| s.local_addr().port()));
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The console's PTY slave, e.g. `/dev/pts/7`.
    pub fn console_path(&self) -> Option<&Path> {
        self.device.console().map(|console| console.slave_path())
    }

    /// A secret by its rig name (`root_password`, `oper_password`,
    /// `bootloader_password`).
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.iter().find(|(secret, _)| *secret == name).map(|(_, value)| value.as_str())
    }
}

/// The running lab. [`SimLab::stop`] shuts it down; dropping it does too, less
/// gracefully (the PDU's thread is joined on the spot).
pub struct SimLab {
    pdu: SimPdu,
    devices: Vec<LabDevice>,
    lockout_seconds: u64,
    cycle_off: Duration,
    idle_timeout_seconds: Option<u64>,
    /// The central log server the hardened devices send their records to.
    log_server: LogServer,
}

impl std::fmt::Debug for SimLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLab").field("pdu", &self.pdu).field("devices", &self.devices).finish_non_exhaustive()
    }
}

impl SimLab {
    /// Starts the PDU and every device on the current tokio runtime, and lets the
    /// PDU's coils power the devices.
    pub async fn start(config: SimLabConfig) -> Result<SimLab, SimError> {
        check_config(&config)?;
        let coils = config.devices.iter().map(|d| d.outlet + 1).max().unwrap_or(0).max(8);
        let pdu_options = PduOptions { coils, unit: 1, port: Some(config.pdu_addr.port()).filter(|port| *port != 0) };
        let pdu = SimPdu::start_on(config.pdu_addr.ip(), pdu_options)?;

        let lockout_seconds = config.lockout_duration.as_secs().max(1);
        let log_server = LogServer::new(free_tcp_port(config.pdu_addr.ip())?)?;
        let mut devices = Vec::new();
        for spec in &config.devices {
            let root_password = random_password()?;
            let oper_password = random_password()?;
            let bootloader_password = random_password()?;
            let device_config = DeviceConfig::new(&spec.name, spec.profile, &root_password)
                .with_identity(spec.identity.clone())
                .with_account(OPERATOR_USER, &oper_password)
                .with_lockout_duration(Duration::from_secs(lockout_seconds));
            let mut device_spec = SimDeviceSpec::new(spec.management_ip, HostKey::generate()?);
            device_spec.user_plane_ip = user_plane_ip(spec.management_ip);
            device_spec.ssh_port = spec.ssh_port;
            device_spec.telnet_port = spec.telnet_port;
            device_spec.ftp_port = spec.ftp_port;
            device_spec.http_port = spec.http_port;
            device_spec.snmp_port = spec.snmp_port;
            device_spec.powered = config.powered;
            device_spec.ssh_options = SshServerOptions {
                auth_failure_delay: config.ssh_auth_failure_delay,
                // The declared inactivity timeout holds for SSH shells as for the console.
                idle_timeout: config.console_idle_timeout,
                ..SshServerOptions::default()
            };
            if spec.console {
                let mut console = ConsoleOptions::new(&bootloader_password);
                console.boot = config.boot.clone();
                console.login_failure_delay = config.console_login_failure_delay;
                console.idle_timeout = config.console_idle_timeout;
                device_spec.console = Some(console);
            }
            let device = SimDevice::start(device_config, device_spec).await?;
            if spec.profile.forwards_logs() {
                device.os().forward_log(log_server.forwarder(&spec.name));
            }
            let mut secrets = vec![
                ("root_password", root_password),
                ("oper_password", oper_password),
                ("log_server_identity", log_server.identity_pem.clone()),
            ];
            if spec.profile.bootloader_protected() && spec.console {
                secrets.push(("bootloader_password", bootloader_password));
            }
            devices.push(LabDevice { spec: spec.clone(), device: Arc::new(device), secrets });
        }

        // Coils first, hook second: the devices already are in the initial state.
        for device in &devices {
            pdu.set_coil(device.spec.outlet, config.powered)?;
        }
        let by_outlet: HashMap<u16, Arc<SimDevice>> = devices.iter().map(|d| (d.spec.outlet, Arc::clone(&d.device))).collect();
        // The hook runs on the PDU's own runtime; the devices live on this one.
        let runtime = tokio::runtime::Handle::current();
        pdu.on_change_async(move |coil, on| {
            let device = by_outlet.get(&coil).cloned();
            let runtime = runtime.clone();
            async move {
                let Some(device) = device else { return };
                match runtime.spawn(async move { device.set_powered(on).await }).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(coil, on, %error, "simulated device did not follow its coil")
                    }
                    Err(error) => {
                        tracing::warn!(coil, on, %error, "simulated device power task failed")
                    }
                }
            }
        });
        let idle_timeout_seconds = config.console_idle_timeout.map(|t| t.as_secs());
        Ok(SimLab { pdu, devices, lockout_seconds, cycle_off: config.cycle_off, idle_timeout_seconds, log_server })
    }

    pub fn pdu(&self) -> &SimPdu {
        &self.pdu
    }

    pub fn pdu_addr(&self) -> SocketAddr {
        self.pdu.addr()
    }

    pub fn devices(&self) -> &[LabDevice] {
        &self.devices
    }

    pub fn device(&self, name: &str) -> Option<&LabDevice> {
        self.devices.iter().find(|d| d.spec.name == name)
    }

    /// Switches a device's outlet as a person at the PDU would; returns once the
    /// device has followed.
    pub async fn set_power(&self, name: &str, on: bool) -> Result<(), SimError> {
        let device = self.device(name).ok_or_else(|| SimError::UnknownDevice(name.to_string()))?;
        self.pdu.switch_coil(device.spec.outlet, on).await
    }

    /// The rig file describing the running lab, with every secret a
    /// `{ file: <secrets_dir>/<device>-<secret> }` reference; write those files
    /// with [`SimLab::write_secrets`] (or use [`SimLab::write_rig`]).
    pub fn rig_yaml(&self, secrets_dir: &Path) -> String {
        let mut out = String::new();
        let pdu = self.pdu.addr();
        let _ = write!(
            out,
            "# Generated by proofrig's simulated lab for one run: PTY paths, ports, host keys\n\
             # and passwords change every time the lab starts. Secrets are referenced, never inline.\n\
             rig: simlab\n\
             description: \"proofrig simulated lab: radio units and core appliances, hardened and weak, on loopback\"\n\
             pdus:\n  {PDU_NAME}:\n    modbus: {{ host: {}, port: {}, unit: {}, timeout_ms: 2000 }}\n\
             devices:\n",
            pdu.ip(),
            pdu.port(),
            self.pdu.unit(),
        );
        for device in &self.devices {
            self.device_yaml(&mut out, device, secrets_dir);
        }
        out
    }

    fn device_yaml(&self, out: &mut String, device: &LabDevice, secrets_dir: &Path) {
        let spec = &device.spec;
        let name = &spec.name;
        let ssh = device.ssh_addr();
        let identity = &spec.identity;
        let secret_file = |secret: &str| {
            let path = secrets_dir.join(secret_file_name(name, secret));
            format!("{{ file: {} }}", quoted(&path.to_string_lossy()))
        };
        let tags: Vec<String> = spec.tags.iter().map(String::as_str).map(quoted).collect();
        // Both profiles document SSH and their web management server.
        let web_port = device.web_port().map_or_else(|| "null".to_string(), |port| port.to_string());
        let mut ports = vec![ssh.port().to_string()];
        if web_port != "null" {
            ports.push(web_port.clone());
        }
        let mut management_services = vec!["{ service: ssh }".to_string()];
        if device.console_path().is_some() {
            management_services.push("{ service: console }".to_string());
        }
        if let Some(port) = device.web_port() {
            management_services.push(format!("{{ service: http, port: {port}, paths: [{MANAGEMENT_API}] }}"));
        }
        let management_services = management_services.join(", ");
        let restricted = user_plane_ip(spec.management_ip).map_or_else(String::new, |ip| ip.to_string());
        let allowed_software = BASE_SOFTWARE.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
        // Its HTTPS server is documented too: TLS for the OAM interface and the web UI.
        let tls_port = device.tls_port();
        ports.push(tls_port.to_string());
        let _ = write!(
            out,
            "  {name}:\n\
             \x20   role: {}\n\
             \x20   tags: [{}]\n\
             \x20   identity: {{ vendor: {}, model: {}, serial: {}, firmware: {}, command: \"cat /etc/proofrig-release\" }}\n\
             \x20   declared:\n\
             \x20     open_tcp_ports: [{}]\n\
             \x20     web_port: {}\n\
             \x20     web_directories: [/static/]\n\
             \x20     tls_port: {tls_port}\n\
             \x20     https_port: {tls_port}\n\
             \x20     tls_server_name: {name}\n\
             \x20     web_server: {{ program: httpd, account: www-data, master_account: root, config_files: [/etc/httpd/httpd.conf], modules_command: ls /etc/httpd/modules.d, add_ons: [auth_basic], script_directories: [{}], file_types_command: cat /etc/httpd/mime.types, file_types: [html, htm, css, js, png], document_root: /var/www, access_log: /var/log/httpd/access.log, upload_directories: [{}] }}\n\
             \x20     open_udp_ports: []\n\
             \x20     services: [ssh]\n\
             \x20     ssh_root_login: false\n\
             \x20     lockout: {{ attempts: 3, seconds: {} }}\n\
             \x20     default_accounts: [{{ user: admin, password: admin }}]\n\
             \x20     vendor_keys: [{{ what: factory support key, key: \"{VENDOR_KEY}\" }}]\n\
             \x20     authorized_keys_files: [/root/.ssh/authorized_keys]\n\
             \x20     default_snmp_communities: [public, private]\n\
             \x20     role_accounts: [{{ role: operator, user: {OPERATOR_USER}, password: oper_password, denied: [{{ what: read the password hashes, command: head -n 0 /etc/shadow }}, {{ what: run commands as root without a password, command: sudo -n id -u }}] }}]\n\
             \x20     management_services: [{management_services}]\n\
             \x20     restricted_addresses: [{restricted}]\n\
             \x20     software_list_command: \"cat {SOFTWARE_LIST}\"\n\
             \x20     allowed_software: [{allowed_software}]\n\
             \x20     disabled_functions: [{{ what: telnet management, command: \"grep ^management.telnet= /etc/proofrig/device.conf\", disabled: \"=disabled$\" }}, {{ what: FTP management, command: \"grep ^management.ftp= /etc/proofrig/device.conf\", disabled: \"=disabled$\" }}]\n\
             \x20     components: [{{ name: firmware, command: cat /etc/proofrig-release, version: 'FIRMWARE=\"([^\"]+)\"', supported: '^4\\.' }}]\n\
             \x20     password_policy: {{ min_length: 12, classes: 3 }}\n\
             \x20     password_change_command: \"passwd --stdin\"\n\
             \x20     auth_log: /var/log/auth.log\n\
             \x20     sensitive_files: [/etc/shadow, /etc/ssh/ssh_host_ed25519_key]\n\
             \x20     service_accounts: {{ sshd: root, syslogd: syslog }}\n\
             \x20     privilege_escalation: [sudo]\n\
             \x20     privileged_operations: [{{ what: read the password hashes, command: head -n 0 /etc/shadow }}, {{ what: signal init, command: kill -0 1 }}]\n\
             \x20     bootloader_password_protected: true\n\
             \x20     router: false\n\
             \x20     removable_mounts: [{REMOVABLE_MOUNT}]\n\
             \x20     network_programs: [/usr/sbin/sshd, /usr/sbin/httpd]\n\
             \x20     software_packages: {{ install_command: \"fw-install {{package}}\", genuine: {GENUINE_PACKAGE}, tampered: {TAMPERED_PACKAGE} }}\n\
             \x20     log_server: tls:{}\n\
             {}\
             \x20   secrets:\n",
            quoted(&spec.role),
            tags.join(", "),
            quoted(&identity.vendor),
            quoted(&identity.model),
            quoted(&identity.serial),
            quoted(&identity.firmware),
            ports.join(", "),
            web_port,
            // The weak device's vendor documents its CGI directory; the hardened one has none.
            if spec.profile.web_install().cgi_programs.is_empty() { "" } else { "/var/www/cgi-bin" },
            spec.profile.web_install().upload_directory,
            self.lockout_seconds,
            self.log_server.address,
            self.idle_timeout_seconds.map_or(String::new(), |s| format!("      inactivity_timeout_s: {s}\n")),
        );
        for (secret, _) in &device.secrets {
            let _ = writeln!(out, "      {secret}: {}", secret_file(secret));
        }
        if let Some(port) = device.console_path() {
            let _ = write!(
                out,
                "    console:\n\
                 \x20     serial: {{ port: {}, baud: 115200 }}\n\
                 \x20     prompt: '[a-z_][a-z0-9_-]*@{name}:~[#$] $'\n\
                 \x20     login: {{ user: root, password: {} }}\n\
                 \x20     death_strings: [\"Kernel panic\", \"Oops:\", \"Unable to handle kernel\"]\n",
                quoted(&port.to_string_lossy()),
                secret_file("root_password"),
            );
        }
        let _ = write!(
            out,
            "    ssh:\n\
             \x20     host: {}\n\
             \x20     port: {}\n\
             \x20     user: {OPERATOR_USER}\n\
             \x20     password: {}\n\
             \x20     host_key: {}\n\
             \x20     timeout_ms: 5000\n\
             \x20   power: {{ pdu: {PDU_NAME}, outlet: {}, cycle_off_ms: {} }}\n",
            ssh.ip(),
            ssh.port(),
            secret_file("oper_password"),
            quoted(&device.device.ssh().host_key().fingerprint_sha256()),
            spec.outlet,
            self.cycle_off.as_millis(),
        );
    }

    /// Writes every device's secrets to `dir` (created, mode 0700) as
    /// `<device>-<secret>` files of mode 0600.
    pub fn write_secrets(&self, dir: &Path) -> Result<(), SimError> {
        create_private_dir(dir)?;
        for device in &self.devices {
            for (secret, value) in &device.secrets {
                let path = dir.join(secret_file_name(&device.spec.name, secret));
                write_private_file(&path, &format!("{value}\n"))?;
            }
        }
        Ok(())
    }

    /// Writes the secrets to `dir/secrets/` and the rig to `dir/simlab.yaml`;
    /// returns the rig's path.
    pub fn write_rig(&self, dir: &Path) -> Result<PathBuf, SimError> {
        let secrets_dir = dir.join("secrets");
        self.write_secrets(&secrets_dir)?;
        let path = dir.join("simlab.yaml");
        std::fs::write(&path, self.rig_yaml(&secrets_dir)).map_err(|source| SimError::Write { path: path.clone(), source })?;
        Ok(path)
    }

    /// Stops the PDU, then every device; their ports and PTYs are closed on return.
    pub async fn stop(&mut self) {
        self.pdu.stop().await;
        for device in &self.devices {
            device.device.stop().await;
        }
    }
}

/// `ru1-root` for `ru1`'s `root_password`.
/// The address of a device's user-plane interface: its management address with 100
/// added to the last octet (127.0.0.11 -> 127.0.0.111); the rig declares it as
/// `restricted_addresses`. None where that leaves the octet's range.
pub fn user_plane_ip(management: IpAddr) -> Option<IpAddr> {
    match management {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            d.checked_add(100).filter(|d| *d < 255).map(|d| IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        IpAddr::V6(_) => None,
    }
}

fn secret_file_name(device: &str, secret: &str) -> String {
    let suffix = SECRETS.iter().find(|(name, _)| *name == secret).map_or(secret, |(_, suffix)| *suffix);
    format!("{device}-{suffix}")
}

fn check_config(config: &SimLabConfig) -> Result<(), SimError> {
    let mut names = BTreeSet::new();
    let mut outlets = BTreeSet::new();
    for device in &config.devices {
        let valid_name = !device.name.is_empty() && device.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(SimError::InvalidLab(format!(
                "device name {:?} must be letters, digits, - and _ (it is also a hostname and a file name)",
                device.name
            )));
        }
        if !names.insert(&device.name) {
            return Err(SimError::InvalidLab(format!("two devices are named {:?}", device.name)));
        }
        if !outlets.insert(device.outlet) {
            return Err(SimError::InvalidLab(format!("two devices are on outlet {}", device.outlet)));
        }
    }
    Ok(())
}

/// A fresh password that any profile's policy accepts: four groups of five from
/// a 56-character alphabet (over 110 bits), the first three groups opening with a
/// lower-case letter, an upper-case letter and a digit.
/// A TCP port free on `ip` now (the log server's: the lab host listens there only
/// while a step plays the log server).
fn free_tcp_port(ip: IpAddr) -> Result<SocketAddr, SimError> {
    let addr = SocketAddr::new(ip, 0);
    let listener = std::net::TcpListener::bind(addr).map_err(|source| SimError::Bind { addr, source })?;
    listener.local_addr().map_err(|source| SimError::Bind { addr, source })
}

fn random_password() -> Result<String, SimError> {
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGITS: &[u8] = b"23456789";
    const ALL: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut random = [0u8; 20];
    getrandom::fill(&mut random).map_err(|e| SimError::Random(e.to_string()))?;
    let mut groups = Vec::new();
    for (group, chunk) in random.chunks(5).enumerate() {
        let first = match group {
            0 => LOWER,
            1 => UPPER,
            2 => DIGITS,
            _ => ALL,
        };
        let text: String = chunk
            .iter()
            .enumerate()
            .map(|(i, byte)| {
                let alphabet = if i == 0 { first } else { ALL };
                alphabet[*byte as usize % alphabet.len()] as char
            })
            .collect();
        groups.push(text);
    }
    Ok(groups.join("-"))
}

/// A YAML double-quoted scalar for any text.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn create_private_dir(dir: &Path) -> Result<(), SimError> {
    let error = |source| SimError::Write { path: dir.to_path_buf(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(error)
}

/// Writes `content` to `path` so that no other user can read it at any moment:
/// created with mode 0600, or narrowed to 0600 before writing when it existed.
pub fn write_private_file(path: &Path, content: &str) -> Result<(), SimError> {
    let error = |source| SimError::Write { path: path.to_path_buf(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(error)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(error)?;
    file.write_all(content.as_bytes()).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn random_passwords_satisfy_the_hardened_policy_and_differ() {
        let policy = Profile::Hardened.account_policy().password_policy.unwrap();
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_ne!(a, b);
        for password in [a, b] {
            assert_eq!(policy.violation(&password), None, "{password}");
            assert_eq!(password.len(), 23, "{password}");
        }
    }

    #[test]
    fn quoting_escapes_what_yaml_would_misread() {
        assert_eq!(quoted("a\"b\\c\td"), "\"a\\\"b\\\\c\\x09d\"");
        assert_eq!(quoted("/dev/pts/3"), "\"/dev/pts/3\"");
    }

    #[test]
    fn duplicate_names_and_outlets_are_refused() {
        let mut config = SimLabConfig::default();
        config.devices[1].outlet = config.devices[0].outlet;
        assert!(matches!(check_config(&config), Err(SimError::InvalidLab(m)) if m.contains("outlet")));
        let mut config = SimLabConfig::default();
        config.devices[1].name = "ru1".into();
        assert!(matches!(check_config(&config), Err(SimError::InvalidLab(m)) if m.contains("named")));
        let mut config = SimLabConfig::default();
        config.devices[0].name = "../ru1".into();
        assert!(check_config(&config).is_err());
        assert!(check_config(&SimLabConfig::default()).is_ok());
    }
}
