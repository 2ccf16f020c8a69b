//! A small embedded Linux "radio unit" that proofrig's authors did not write: BusyBox
//! and dropbear from Debian's packages, booted on a serial console and powered by a PDU.
//!
//! The test library's verdicts must hold on equipment nobody here built (issue 12). The
//! simulated lab and the sshd peers answer the way their authors expected; this device
//! answers the way a vendor's BusyBox firmware does: BusyBox's `init`, `getty`, `login`,
//! `ash`, `syslogd` and `telnetd`, and dropbear for SSH, nothing else. There is no
//! `ss`, no PAM, no lockout, syslog lines in BusyBox's own format, and a shell prompt
//! that asks the terminal for its cursor position.
//!
//! How it is put together:
//! - **Root file system**: a temporary directory made into an image: `/bin/busybox`
//!   with a symlink per applet (`busybox --list-full`) as the only userland, dropbear and
//!   the shared libraries `ldd` lists, and its own `/etc` (accounts, inittab, rcS).
//! - **Namespaces**: a *holder* process (`unshare --net --mount --uts`) owns the device's
//!   network namespace (loopback only), its host name and a private `/dev` inside the
//!   image; it lives as long as the [`BusyboxDevice`]. Each power-on starts a fresh PID and
//!   mount namespace inside it (`nsenter` + `unshare --pid`), mounts `/proc`, a new devpts
//!   instance and RAM disks for `/tmp` and `/var/run`, and `chroot`s into the image to run
//!   BusyBox's `init` as PID 1. Nothing on the test machine changes.
//! - **Serial console**: two PTYs joined by a relay thread, like two UARTs and a cable.
//!   The device's getty runs on the slave of one (bind-mounted as `/dev/ttyS0` and
//!   `/dev/console`); the slave of the other is the path a rig's `console.serial.port`
//!   names. Like a USB serial adapter, the bench side drops what the device prints while
//!   nobody has it open. A careless image's console without any login is one builder
//!   option away ([`BusyboxOptions::console_without_login`]): init respawns a root shell
//!   there instead of getty, so `exit` never logs anyone out.
//! - **Power**: a Modbus TCP relay board ([`ModbusServer`]) whose coil drives the device.
//!   Coil off kills the PID namespace's init, so the kernel kills every process of the
//!   device at once: the console goes silent (its line raw, not even echoing), SSH is
//!   refused. Coil on boots again. The
//!   board listens on the test machine's loopback; a bridge gives it the same address
//!   and port inside the device's network namespace, where proofrig runs (see
//!   [`BusyboxDevice::command`]).
//! - **Profiles** ([`Profile`]): careless (root over SSH by password, world-readable
//!   `/etc/shadow` and auth log, telnetd on 23, the default `admin`/`admin` account, a
//!   uid 0 `support` account hashed with MD5, a `guest` without a password, an automounter,
//!   a vendor's console login that shows the password as it is typed) and hardened
//!   (dropbear `-w`, shadow 0640 root:shadow, no telnetd, `admin` locked, root only on
//!   the console through `/etc/securetty`, BusyBox set-user-ID so users can change
//!   their own password). Neither has a login lockout: BusyBox and
//!   dropbear have none. The kernel's `net.*` settings of the device's namespace, ASLR as
//!   the device reads it and its removable medium's mount options follow the profile too
//!   ([`Profile::network_settings`], [`Profile::aslr_shown`], [`REMOVABLE_MOUNT`]).
//!
//! Passwords are random per start; [`BusyboxDevice::write_rig`] writes them to mode-0600
//! files the rig references, never into the rig.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcflush, tcgetattr, tcsetattr, FlushArg, SetArg, Termios};

use crate::modbus::ModbusServer;
use crate::{kill_pid_namespace, require_program, running_as_root, write_private};

const BUSYBOX: &str = "/bin/busybox";
const DROPBEAR: &str = "/usr/sbin/dropbear";
const DROPBEARKEY: &str = "/usr/bin/dropbearkey";
const UNSHARE: &str = "/usr/bin/unshare";
const NSENTER: &str = "/usr/bin/nsenter";
const CHROOT: &str = "/usr/sbin/chroot";
const ENV: &str = "/usr/bin/env";
const LDD: &str = "/usr/bin/ldd";

/// The central log server the device's documentation names, inside its network
/// namespace (where the lab host runs): the hardened device's syslogd sends there.
pub const LOG_SERVER: &str = "127.0.0.1:5514";

/// The device's authentication log (BusyBox syslogd's file), mode 0640 root:adm.
pub const AUTH_LOG: &str = "/var/log/messages";
/// The unprivileged account the rig's SSH endpoint logs in as (member of `adm`, so it
/// reads [`AUTH_LOG`]).
pub const OPERATOR: &str = "oper";
/// The vendor's documented default account and its published password.
pub const DEFAULT_ACCOUNT: (&str, &str) = ("admin", "admin");
/// Where dropbear's host key is on the device.
pub const HOST_KEY_PATH: &str = "/etc/dropbear/dropbear_ed25519_host_key";
/// The device's SSH port, inside its network namespace.
pub const SSH_PORT: u16 = 22;
/// BusyBox telnetd's port on the careless profile.
pub const TELNET_PORT: u16 = 23;
/// Where the PDU answers inside the device's network namespace: another loopback
/// address than the device's own, as the PDU is another box on a real bench, so that a
/// port scan of the device (127.0.0.1) never finds the PDU.
pub const PDU_HOST: &str = "127.0.0.2";

/// The public half of the key the vendor pre-installs for root ("factory support") on
/// every unit: the careless firmware still authorizes it, the hardened one does not.
/// A rig declares it as `vendor_keys` (TS 33.117 4.2.3.4.2.3).
pub const VENDOR_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINJ9CiY9CrK96jo0Rc6BbnCC+a721BFllhjSzY71oA5i factory-support@vendor";

/// The careless unit's console login: a vendor's shell script in place of BusyBox
/// `login`'s questions, as old firmware had. It asks like `login` and checks the password
/// against `/etc/shadow` with BusyBox `mkpasswd`, then lets `login -f` start the session;
/// but it reads the password with the terminal's echo on, so the console shows it as it
/// is typed (TS 33.117 4.2.3.4.3.4). An empty password field lets the account in
/// without one, as `login` does.
const VENDOR_CONSOLE_LOGIN: (&str, &str) = (
    "/sbin/cli-login",
    r#"#!/bin/sh
# RU-BB console login (getty -n -l): asks who logs in and checks the password itself.
host=$(hostname)
while :; do
    printf '
%s login: ' "$host"
    read -r user || exit 0
    [ -n "$user" ] || continue
    entry=$(grep "^$user:" /etc/shadow)
    hash=${entry#*:}
    hash=${hash%%:*}
    if [ -n "$entry" ] && [ -z "$hash" ]; then
        exec login -f "$user"
    fi
    printf 'Password: '
    read -r password || exit 0
    case "$hash" in
        '$1$'*) method=md5 ;;
        '$5$'*) method=sha256 ;;
        '$6$'*) method=sha512 ;;
        *) method= ;;
    esac
    salt=${hash#\$?\$}
    salt=${salt%%\$*}
    if [ -n "$method" ] && [ "$(printf '%s\n' "$password" | mkpasswd -m "$method" -S "$salt" -P 0)" = "$hash" ]; then
        exec login -f "$user"
    fi
    sleep 1
    printf '
Login incorrect
'
done
"#,
);

/// How long a power-on may take until SSH listens and getty runs.
const BOOT_LIMIT: Duration = Duration::from_secs(10);
/// How long a power-off may take until every process of the device is gone.
const OFF_LIMIT: Duration = Duration::from_secs(5);
/// Coils on the device's relay board.
const PDU_COILS: u16 = 8;

/// How the vendor left the device configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Root logs in over SSH with a password, `/etc/shadow` is 0644, telnetd listens on
    /// 23, the default account `admin`/`admin` works; accounts of older releases remain
    /// (`support` with uid 0 and an MD5 crypt hash, `guest` with an empty password
    /// field), and every user reads the authentication log (0644).
    Careless,
    /// dropbear `-w` (no root login), `-T 3` and `-j -k` (no port forwarding), `/etc/shadow` 0640 root:shadow, no
    /// telnetd, `admin` locked, root logins only on the console (`/etc/securetty`).
    Hardened,
}

impl Profile {
    /// The firmware release it runs: the careless unit was left on a release its
    /// vendor no longer supports (4.3.2.5 reads it from `/etc/os-release`).
    pub fn firmware(self) -> &'static str {
        match self {
            Profile::Hardened => "1.0",
            Profile::Careless => "0.9",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Careless => "careless",
            Profile::Hardened => "hardened",
        }
    }

    /// dropbear's options beyond the host key, port and pid file.
    pub fn dropbear_flags(self) -> &'static [&'static str] {
        match self {
            Profile::Careless => &[],
            // -w: no root login at all (so -g, no root password login, is implied); the
            // operator logs in with a password, so password logins (-s) stay on.
            // -j, -k: no local or remote port forwarding, a function a radio unit does not use.
            Profile::Hardened => &["-w", "-T", "3", "-j", "-k"],
        }
    }

    /// TCP ports the device listens on when booted.
    pub fn tcp_ports(self) -> Vec<u16> {
        match self {
            Profile::Careless => vec![SSH_PORT, TELNET_PORT],
            Profile::Hardened => vec![SSH_PORT],
        }
    }

    /// Mode of the authentication log ([`AUTH_LOG`], root:adm): every user reads it on
    /// the careless profile.
    pub fn auth_log_mode(self) -> u32 {
        match self {
            Profile::Careless => 0o644,
            Profile::Hardened => 0o640,
        }
    }

    /// Mode of `/etc/shadow`.
    pub fn shadow_mode(self) -> u32 {
        match self {
            Profile::Careless => 0o644,
            Profile::Hardened => 0o640,
        }
    }

    /// The `net.*` settings of the device's network namespace (their own there, never the
    /// test machine's), as (path under `/proc/sys`, value): the hardened device filters
    /// spoofed sources, ignores broadcast pings, redirects and source routes, forwards
    /// nothing and uses SYN cookies; the careless one does the opposite of each.
    pub fn network_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Hardened => KERNEL_NET_COMPLIANT,
            Profile::Careless => KERNEL_NET_CARELESS,
        }
    }

    /// The program files of the device's network-facing services (TS 33.117 4.3.3.1.5
    /// reads how each was built): dropbear, Debian's hardened build; on the careless
    /// device also BusyBox, whose telnetd serves port 23 (Debian's busybox-static is
    /// linked at a fixed address, not PIE).
    pub fn network_programs(self) -> &'static [&'static str] {
        match self {
            Profile::Hardened => &[DROPBEAR],
            Profile::Careless => &[DROPBEAR, BUSYBOX],
        }
    }

    /// What the device's `/proc/sys/kernel/randomize_va_space` shows: the test machine's
    /// own value on the hardened device (`None`; `kernel.*` settings are not per
    /// namespace, and the test machine's is never changed), `0` on the careless one, a
    /// file bind-mounted over that `/proc/sys` file inside the device's own mount
    /// namespace only (what the device reads; its kernel still randomises).
    pub fn aslr_shown(self) -> Option<&'static str> {
        match self {
            Profile::Hardened => None,
            Profile::Careless => Some("0"),
        }
    }

    /// The options of the RAM disk standing in for a USB stick at [`REMOVABLE_MOUNT`].
    pub fn removable_mount_options(self) -> &'static str {
        match self {
            Profile::Hardened => "nosuid,nodev,noexec,mode=755",
            Profile::Careless => "mode=755",
        }
    }
}

/// Where the device mounts removable media (the rig declares it as `removable_mounts`).
pub const REMOVABLE_MOUNT: &str = "/media/usb0";

/// `net.*` settings (paths under `/proc/sys`) of a device that minimises its kernel's
/// network functions (TS 33.117 4.3.3.1.1, 4.3.3.1.2, 4.3.3.1.4).
pub const KERNEL_NET_COMPLIANT: &[(&str, &str)] = &[
    ("net/ipv4/conf/all/rp_filter", "1"),
    ("net/ipv4/conf/default/rp_filter", "1"),
    ("net/ipv4/icmp_echo_ignore_broadcasts", "1"),
    ("net/ipv4/conf/all/accept_redirects", "0"),
    ("net/ipv4/conf/default/accept_redirects", "0"),
    ("net/ipv4/conf/all/send_redirects", "0"),
    ("net/ipv4/conf/default/send_redirects", "0"),
    ("net/ipv4/conf/all/accept_source_route", "0"),
    ("net/ipv4/conf/default/accept_source_route", "0"),
    ("net/ipv4/ip_forward", "0"),
    ("net/ipv4/tcp_syncookies", "1"),
];

/// The same settings as a careless device (or a router's defaults) has them.
pub const KERNEL_NET_CARELESS: &[(&str, &str)] = &[
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
    ("net/ipv4/icmp_echo_ignore_broadcasts", "0"),
    ("net/ipv4/conf/all/accept_redirects", "1"),
    ("net/ipv4/conf/default/accept_redirects", "1"),
    ("net/ipv4/conf/all/send_redirects", "1"),
    ("net/ipv4/conf/default/send_redirects", "1"),
    ("net/ipv4/conf/all/accept_source_route", "1"),
    ("net/ipv4/conf/default/accept_source_route", "1"),
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv4/tcp_syncookies", "0"),
];

/// Options for a [`BusyboxDevice`]; start with [`BusyboxDevice::builder`].
#[derive(Debug, Clone)]
pub struct BusyboxOptions {
    pub profile: Profile,
    /// Host name, also the device's name in the rig; default `ru-bb`.
    pub hostname: String,
    /// The PDU coil that powers it; default 1.
    pub outlet: u16,
    /// Whether it is powered (and booted) when `start` returns; default true.
    pub powered: bool,
    /// Whether the serial console asks who logs in (BusyBox getty and login, default), or
    /// runs a root shell with no login at all, respawned by init when it exits
    /// ([`BusyboxOptions::console_without_login`]).
    pub console_login: bool,
}

impl BusyboxOptions {
    pub fn hostname(mut self, hostname: &str) -> Self {
        assert!(
            !hostname.is_empty() && hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "host name `{hostname}`: letters, digits and - only"
        );
        self.hostname = hostname.to_string();
        self
    }

    pub fn outlet(mut self, outlet: u16) -> Self {
        assert!(outlet < PDU_COILS, "outlet {outlet}: the board has coils 0..{PDU_COILS}");
        self.outlet = outlet;
        self
    }

    /// Start with the coil off: nothing runs until the coil is switched on.
    pub fn unpowered(mut self) -> Self {
        self.powered = false;
        self
    }

    /// The console as a careless image leaves it: BusyBox init respawns a root shell on
    /// it with no getty and no login (`ttyS0::respawn:-/bin/sh`, what BusyBox init also
    /// does on its own, as `askfirst`, when `/etc/inittab` is missing). `exit` ends that
    /// shell and init starts the next one at once: nobody can log out of the console
    /// (TS 33.117 4.2.3.5.1). Everything else of the profile is unchanged.
    pub fn console_without_login(mut self) -> Self {
        self.console_login = false;
        self
    }

    pub fn start(self) -> BusyboxDevice {
        BusyboxDevice::start_with(self)
    }
}

/// dropbear's host key as a rig pins it.
#[derive(Debug, Clone)]
pub struct HostKey {
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:...` as `dropbearkey -y` (and `ssh-keygen -l`) print it.
    pub fingerprint: String,
    /// `<algorithm> <base64>`.
    pub public_line: String,
}

/// A running BusyBox + dropbear device; everything it started stops on drop.
pub struct BusyboxDevice {
    options: BusyboxOptions,
    power: Arc<PowerSwitch>,
    pdu: Option<ModbusServer>,
    bridge: Option<PduBridge>,
    console: Option<ConsoleLine>,
    holder: Option<Holder>,
    host_key: HostKey,
    root_password: String,
    operator_password: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for BusyboxDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusyboxDevice")
            .field("profile", &self.options.profile)
            .field("hostname", &self.options.hostname)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl BusyboxDevice {
    pub fn builder(profile: Profile) -> BusyboxOptions {
        BusyboxOptions { profile, hostname: "ru-bb".into(), outlet: 1, powered: true, console_login: true }
    }

    /// A device with the default options, powered and booted.
    pub fn start(profile: Profile) -> BusyboxDevice {
        Self::builder(profile).start()
    }

    fn start_with(options: BusyboxOptions) -> BusyboxDevice {
        for (path, package) in [
            (BUSYBOX, "busybox-static"),
            (DROPBEAR, "dropbear-bin"),
            (DROPBEARKEY, "dropbear-bin"),
            (UNSHARE, "util-linux"),
            (NSENTER, "util-linux"),
            (CHROOT, "coreutils"),
            (ENV, "coreutils"),
            (LDD, "libc-bin"),
        ] {
            require_program(path, package);
        }
        assert!(
            running_as_root(),
            "the BusyBox device test peer must run as root: it builds a root file system with \
             root-owned files and runs it in private namespaces (run the tests as root, e.g. in the CI container)"
        );

        let dir = tempfile::Builder::new().prefix("proofrig-busybox-").tempdir().expect("temp dir for the BusyBox device");
        let base = dir.path();
        let root = base.join("root");
        let root_password = random_password();
        let operator_password = random_password();
        let image = Image { root: &root, options: &options, root_password: &root_password, operator_password: &operator_password };
        image.build();
        let host_key = image.host_key();

        let console = ConsoleLine::open();
        fs::write(base.join("kernel.log"), kernel_log(&options.hostname)).expect("write the boot log");
        fs::write(base.join("holder.sh"), holder_script(&root, console.device_path(), options.profile)).expect("write the holder script");
        fs::write(base.join("boot.sh"), boot_script(&root, &base.join("kernel.log"), options.profile)).expect("write the boot script");
        let holder = Holder::start(base);

        let pdu = ModbusServer::start(PDU_COILS);
        let bridge = PduBridge::start(holder.netns(), pdu.addr());
        let power = Arc::new(PowerSwitch {
            holder: holder.pid(),
            boot_script: base.join("boot.sh"),
            boot_log: base.join("boot.log"),
            line: console.device_side(),
            running: Mutex::new(None),
            enabled: AtomicBool::new(true),
        });
        let outlet = options.outlet;
        let switch = Arc::clone(&power);
        pdu.on_change_async(move |coil, on| {
            let switch = Arc::clone(&switch);
            async move {
                if coil == outlet {
                    // Killing and starting processes blocks; the board acknowledges the
                    // write once the device has followed its coil.
                    let _ = tokio::task::spawn_blocking(move || switch.set(on)).await;
                }
            }
        });

        let mut device = BusyboxDevice {
            options,
            power,
            pdu: Some(pdu),
            bridge: Some(bridge),
            console: Some(console),
            holder: Some(holder),
            host_key,
            root_password,
            operator_password,
            dir,
        };
        if device.options.powered {
            device.power_on();
        }
        device
    }

    pub fn profile(&self) -> Profile {
        self.options.profile
    }

    pub fn hostname(&self) -> &str {
        &self.options.hostname
    }

    /// The address SSH, telnet and the PDU bridge have inside the device's namespace.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn ssh_port(&self) -> u16 {
        SSH_PORT
    }

    /// root's password (console; SSH on the careless profile).
    pub fn root_password(&self) -> &str {
        &self.root_password
    }

    /// The account the rig's SSH endpoint uses, see [`OPERATOR`].
    pub fn operator(&self) -> &str {
        OPERATOR
    }

    pub fn operator_password(&self) -> &str {
        &self.operator_password
    }

    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    /// `SHA256:...`, as a rig's `ssh.host_key` pins it.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key.fingerprint
    }

    /// One OpenSSH known_hosts line for the device's SSH endpoint.
    pub fn known_hosts(&self) -> String {
        format!("{} {}\n", self.host(), self.host_key.public_line)
    }

    /// The console's PTY slave (e.g. `/dev/pts/7`), what a rig's `console.serial.port` names.
    pub fn console_path(&self) -> &Path {
        self.console.as_ref().expect("the console is up").bench_path()
    }

    /// Opens the console as a bench terminal would (raw, exclusive to nobody).
    pub fn open_console(&self) -> ConsoleClient {
        ConsoleClient::open(self.console_path())
    }

    /// The relay board; the device is on coil [`BusyboxDevice::outlet`].
    pub fn pdu(&self) -> &ModbusServer {
        self.pdu.as_ref().expect("the PDU is up")
    }

    /// The board's port: on 127.0.0.1 on the test machine, and on [`PDU_HOST`] inside the
    /// device's network namespace.
    pub fn pdu_port(&self) -> u16 {
        self.pdu().port()
    }

    pub fn outlet(&self) -> u16 {
        self.options.outlet
    }

    /// Whether the device's processes run (follows the coil).
    pub fn is_powered(&self) -> bool {
        self.power.is_running()
    }

    /// Switches the coil on, as a person at the PDU would, and waits until the device
    /// has booted: SSH (and telnet on the careless profile) listening, getty (or the
    /// shell of a console without login) on the console.
    pub fn power_on(&mut self) {
        self.pdu().set_coil(self.options.outlet, true);
        self.wait_until_booted(BOOT_LIMIT);
    }

    /// Switches the coil off and waits until every process of the device is gone.
    pub fn power_off(&mut self) {
        self.pdu().set_coil(self.options.outlet, false);
        let deadline = Instant::now() + OFF_LIMIT;
        while self.power.is_running() {
            assert!(Instant::now() < deadline, "the BusyBox device did not power off within {OFF_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the powered device listens on its ports and runs getty (or the shell of
    /// a console without login) on the console (after a power-on through the PDU by someone else, e.g. `proofrig power`).
    pub fn wait_until_booted(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ports = self.options.profile.tcp_ports();
            let listening = ports.iter().all(|port| listening_in(self.holder_pid(), *port));
            if self.power.is_running() && listening && self.console_served() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the BusyBox device did not boot within {limit:?} (powered: {}, listening on {ports:?}: {listening}); \
                     its boot log:\n{}\nits syslog:\n{}",
                    self.power.is_running(),
                    fs::read_to_string(self.dir.path().join("boot.log")).unwrap_or_default(),
                    self.auth_log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the console has what init runs on it: getty, or, on a console without
    /// login, a shell whose controlling terminal it is (not rcS or a shell of an SSH
    /// session, which are `sh` too).
    fn console_served(&self) -> bool {
        let ours = netns_id(self.holder_pid());
        let console = match self.options.console_login {
            true => None,
            false => Some(self.console.as_ref().expect("the console is up").device_number()),
        };
        processes().into_iter().any(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let serves = match console {
                // `/proc/PID/comm` names a script by its file name.
                None => comm.trim() == "getty" || Some(comm.trim()) == VENDOR_CONSOLE_LOGIN.0.rsplit('/').next(),
                Some(console) => comm.trim() == "sh" && controlling_terminal(pid) == Some(console),
            };
            serves && netns_id(pid) == ours
        })
    }

    /// The device's network namespace as `/proc/PID/ns/net` names it (`net:[INODE]`):
    /// every process of the device, and the holder, are in it.
    pub fn network_namespace(&self) -> String {
        netns_id(self.holder_pid()).map(|p| p.display().to_string()).unwrap_or_default()
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().expect("the device's namespaces are up").pid()
    }

    /// A command for `program` that runs inside the device's network namespace (through
    /// `nsenter`; files and everything else are the test machine's): where SSH on
    /// 127.0.0.1:22, telnet and the PDU (at [`PDU_HOST`]) are reachable, e.g. `proofrig run`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(NSENTER);
        command.arg(format!("--net={}", self.holder.as_ref().expect("namespaces").netns().display())).arg("--").arg(program);
        command
    }

    /// A TCP connection to `port` of the device (127.0.0.1), from inside its network namespace.
    pub fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        self.connect_to(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A TCP connection to `addr` from inside the device's network namespace (e.g. the
    /// PDU at [`PDU_HOST`]).
    pub fn connect_to(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        in_netns(self.holder.as_ref().expect("namespaces").netns(), move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
    }

    /// The image's root directory on the test machine (the device's `/`).
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The device's [`AUTH_LOG`] as it is now.
    pub fn auth_log(&self) -> String {
        fs::read_to_string(self.root_dir().join(AUTH_LOG.trim_start_matches('/'))).unwrap_or_default()
    }

    /// Waits until the auth log has a line containing `needle`; the whole log, or `None`.
    pub fn wait_for_auth_log(&self, needle: &str, limit: Duration) -> Option<String> {
        crate::wait_for_line(|| self.auth_log(), needle, limit)
    }

    /// Writes the secrets (mode 0600, in `dir/secrets/`, mode 0700) and the rig
    /// (`dir/<hostname>.yaml`); returns the rig's path. The rig only works inside the
    /// device's network namespace ([`BusyboxDevice::command`]).
    pub fn write_rig(&self, dir: &Path) -> PathBuf {
        self.write_rig_as(dir, "", false)
    }

    /// [`BusyboxDevice::write_rig`], the rig running its SSH commands through one
    /// long-lived shell of the session (`ssh.persistent_shell: true`), as
    /// `dir/<hostname>-one-shell.yaml`.
    pub fn write_rig_through_one_shell(&self, dir: &Path) -> PathBuf {
        self.write_rig_as(dir, "-one-shell", true)
    }

    fn write_rig_as(&self, dir: &Path, suffix: &str, persistent_shell: bool) -> PathBuf {
        let secrets = dir.join("secrets");
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&secrets).expect("create the secrets directory");
        let name = self.hostname();
        write_private(&secrets.join(format!("{name}-root")), &format!("{}\n", self.root_password));
        write_private(&secrets.join(format!("{name}-oper")), &format!("{}\n", self.operator_password));
        let path = dir.join(format!("{name}{suffix}.yaml"));
        let mut yaml = self.rig_yaml(&secrets);
        if persistent_shell {
            let ssh_timeout = "      timeout_ms: 5000\n";
            assert!(yaml.contains(ssh_timeout), "the rig's ssh block ends with its timeout line");
            yaml = yaml.replacen(ssh_timeout, &format!("{ssh_timeout}      persistent_shell: true\n"), 1);
        }
        fs::write(&path, yaml).expect("write the rig file");
        path
    }

    /// The rig describing this device, its secrets as `{ file: <secrets_dir>/<host>-root }`
    /// and `-oper` references (see [`BusyboxDevice::write_rig`]). `declared` says what is
    /// true of the device and leaves out what it does not have, except `lockout`: a
    /// vendor's manual that claims one (3 attempts, 5 s) for a device that has none
    /// (neither BusyBox nor dropbear locks accounts), so 4.2.3.4.5 finds it out; and an
    /// `inactivity_timeout_s` of 3 s the console shell does not keep (Debian's BusyBox ash
    /// is built without `TMOUT`), so 4.2.3.5.2 finds that out; no `password_policy` or
    /// `password_change_command` (BusyBox `passwd` reads the old password first), no boot
    /// loader.
    pub fn rig_yaml(&self, secrets_dir: &Path) -> String {
        let name = self.hostname();
        let profile = self.options.profile;
        let secret = |suffix: &str| format!("{{ file: {} }}", quoted(&secrets_dir.join(format!("{name}-{suffix}")).to_string_lossy()));
        let ports = profile.tcp_ports().iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        format!(
            "# Generated by proofrig-testpeers for one BusyBox + dropbear device ({profile}): PTY path, PDU port,\n\
             # host key and passwords change every start. Reachable only inside the device's network namespace.\n\
             rig: busybox-{profile}\n\
             description: \"a BusyBox + dropbear radio unit from Debian's packages, {profile} profile\"\n\
             pdus:\n  relays:\n    modbus: {{ host: {PDU_HOST}, port: {pdu_port}, unit: 1, timeout_ms: 2000 }}\n\
             devices:\n  {name}:\n\
             \x20   role: radio-unit\n\
             \x20   tags: [o-ru, busybox, {profile}]\n\
             \x20   identity: {{ vendor: \"proofrig test peers\", model: RU-BB, serial: {serial}, firmware: \"{firmware}\", command: \"cat /etc/os-release\" }}\n\
             \x20   declared:\n\
             \x20     open_tcp_ports: [{ports}]\n\
             \x20     open_udp_ports: []\n\
             \x20     auth_log: {AUTH_LOG}\n\
             \x20     default_accounts: [{{ user: {default_user}, password: {default_password} }}]\n\
             \x20     sensitive_files: [/etc/shadow, {HOST_KEY_PATH}]\n\
             \x20     service_accounts: {{ dropbear: root, syslogd: root }}\n\
             \x20     lockout: {{ attempts: 3, seconds: 5 }}\n\
             \x20     inactivity_timeout_s: 3\n\
             \x20     privilege_escalation: [su]\n\
             \x20     privileged_operations: [{{ what: read the password hashes, command: head -n 0 /etc/shadow }}, {{ what: signal init, command: kill -0 1 }}]\n\
             \x20     router: false\n\
             \x20     removable_mounts: [{REMOVABLE_MOUNT}]\n\
             \x20     network_programs: [{network_programs}]\n\
             \x20     log_server: udp:{LOG_SERVER}\n\
             \x20     vendor_keys: [{{ what: factory support key, key: \"{VENDOR_KEY}\" }}]\n\
             \x20     authorized_keys_files: [/root/.ssh/authorized_keys]\n\
             \x20     default_snmp_communities: [public, private]\n\
             \x20     role_accounts: [{{ role: operator, user: {OPERATOR}, password: oper_password, denied: [{{ what: read the password hashes, command: head -n 0 /etc/shadow }}, {{ what: signal init, command: kill -0 1 }}] }}]\n\
             \x20     management_services: [{{ service: ssh }}, {{ service: console }}]\n\
             \x20     restricted_addresses: [127.0.0.3]\n\
             \x20     software_list_command: \"find /bin /sbin /usr/bin /usr/sbin -type f\"\n\
             \x20     allowed_software: [/bin/busybox, /usr/sbin/dropbear]\n\
             \x20     disabled_functions: [{{ what: SSH local port forwarding, command: \"grep ^dropbear /etc/init.d/rcS\", disabled: ' -j( |$)' }}, {{ what: SSH remote port forwarding, command: \"grep ^dropbear /etc/init.d/rcS\", disabled: ' -k( |$)' }}]\n\
             \x20     components: [{{ name: firmware, command: cat /etc/os-release, version: 'VERSION_ID=\"?([0-9.]+)', supported: '^1\\.' }}, {{ name: BusyBox, command: busybox, version: 'BusyBox v([0-9.]+)', supported: '^1\\.(3[5-9]|[4-9][0-9])\\.' }}, {{ name: dropbear, command: /usr/sbin/dropbear -V, version: 'Dropbear v([0-9.]+)', supported: '^20(2[2-9]|[3-9][0-9])\\.' }}]\n\
             \x20   secrets:\n\
             \x20     root_password: {root_secret}\n\
             \x20     oper_password: {oper_secret}\n\
             \x20   console:\n\
             \x20     serial: {{ port: {console}, baud: 115200 }}\n\
             \x20     prompt: '[a-z_][a-z0-9_-]*@{name}:[^ ]*[#$] $'\n\
             \x20     login: {{ user: root, password: {root_secret} }}\n\
             \x20     death_strings: [\"Kernel panic\", \"Oops:\"]\n\
             \x20   ssh:\n\
             \x20     host: 127.0.0.1\n\
             \x20     port: {SSH_PORT}\n\
             \x20     user: {OPERATOR}\n\
             \x20     password: {oper_secret}\n\
             \x20     host_key: {fingerprint}\n\
             \x20     timeout_ms: 5000\n\
             \x20   power: {{ pdu: relays, outlet: {outlet}, cycle_off_ms: 1000 }}\n",
            profile = profile.name(),
            network_programs = profile.network_programs().join(", "),
            pdu_port = self.pdu_port(),
            serial = quoted(&format!("RUBB-{}", profile.name().to_uppercase())),
            firmware = profile.firmware(),
            default_user = DEFAULT_ACCOUNT.0,
            default_password = DEFAULT_ACCOUNT.1,
            root_secret = secret("root"),
            oper_secret = secret("oper"),
            console = quoted(&self.console_path().to_string_lossy()),
            fingerprint = quoted(&self.host_key.fingerprint),
            outlet = self.options.outlet,
        )
    }

    /// Stops the device, its namespaces, the bridge, the board and the console. Idempotent.
    pub fn stop(&mut self) {
        self.power.shut_down();
        if let Some(holder) = self.holder.take() {
            holder.stop();
        }
        if let Some(bridge) = self.bridge.take() {
            bridge.stop();
        }
        self.pdu.take();
        self.console.take();
    }
}

impl Drop for BusyboxDevice {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What goes into the device's root file system.
struct Image<'a> {
    root: &'a Path,
    options: &'a BusyboxOptions,
    root_password: &'a str,
    operator_password: &'a str,
}

impl Image<'_> {
    fn build(&self) {
        let root = self.root;
        for dir in
            ["bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "etc/dropbear", "proc", "dev", "var/log", "var/run", "home", "media/usb0"]
        {
            fs::create_dir_all(root.join(dir)).unwrap_or_else(|e| panic!("create {dir} in the image: {e}"));
        }
        self.mkdir("tmp", 0o1777, 0, 0);
        self.mkdir("root", 0o700, 0, 0);
        if self.options.profile == Profile::Careless {
            // The vendor's factory key, left authorized for root as delivered.
            self.mkdir("root/.ssh", 0o700, 0, 0);
            let keys = root.join("root/.ssh/authorized_keys");
            fs::write(&keys, format!("{VENDOR_KEY}\n")).expect("write root's authorized_keys");
            set_owner_mode(&keys, 0, 0, 0o600);
        }
        self.mkdir("home/oper", 0o750, 1000, 1000);
        self.mkdir("home/admin", 0o750, 1001, 1001);
        if self.options.profile == Profile::Careless {
            self.mkdir("home/guest", 0o750, 1002, 1002);
        }
        self.install_program(BUSYBOX, "bin/busybox");
        self.install_program(DROPBEAR, "usr/sbin/dropbear");
        if self.options.profile == Profile::Hardened {
            self.make_busybox_suid();
        }
        self.link_applets();
        self.write_accounts();
        self.write_etc();
        let log = root.join(AUTH_LOG.trim_start_matches('/'));
        fs::write(&log, "").expect("create the auth log");
        set_owner_mode(&log, 0, 4, self.options.profile.auth_log_mode());
    }

    fn mkdir(&self, dir: &str, mode: u32, uid: u32, gid: u32) {
        let path = self.root.join(dir);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {dir} in the image: {e}"));
        set_owner_mode(&path, uid, gid, mode);
    }

    /// Copies a program and every shared library `ldd` lists for it to the same paths.
    fn install_program(&self, program: &str, to: &str) {
        fs::copy(program, self.root.join(to)).unwrap_or_else(|e| panic!("copy {program} into the image: {e}"));
        let out = Command::new(LDD).arg(program).output().expect("run ldd");
        // A static program: "not a dynamic executable" (on stderr), nothing to copy.
        for library in String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|word| word.starts_with('/')) {
            let target = self.root.join(library.trim_start_matches('/'));
            if target.exists() {
                continue;
            }
            fs::create_dir_all(target.parent().expect("a library's directory")).expect("library directory in the image");
            fs::copy(library, &target).unwrap_or_else(|e| panic!("copy {library} (needed by {program}) into the image: {e}"));
        }
    }

    /// The hardened firmware lets users change their own password: BusyBox is
    /// installed set-user-ID root, as its documentation says to (the only way here:
    /// BusyBox's shell runs applets such as `passwd` itself, whatever the `PATH`).
    /// BusyBox keeps root only for the applets that need it (`passwd` writes
    /// `/etc/shadow`) and drops it before running any other, so `sh` or `id` run as
    /// the user who started them. The careless firmware is not set-user-ID: its
    /// `passwd` refuses everyone but root (`must be suid to work properly`).
    fn make_busybox_suid(&self) {
        set_owner_mode(&self.root.join(BUSYBOX.trim_start_matches('/')), 0, 0, 0o4755);
    }

    /// A symlink to /bin/busybox for each applet, where `busybox --list-full` puts it.
    fn link_applets(&self) {
        let out = Command::new(BUSYBOX).arg("--list-full").output().expect("run busybox --list-full");
        assert!(out.status.success(), "busybox --list-full failed");
        for applet in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|a| !a.is_empty()) {
            let link = self.root.join(applet);
            if link.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(parent) = link.parent() {
                fs::create_dir_all(parent).expect("applet directory in the image");
            }
            std::os::unix::fs::symlink("/bin/busybox", &link).unwrap_or_else(|e| panic!("link applet {applet}: {e}"));
        }
    }

    fn write_accounts(&self) {
        let (default_user, default_password) = DEFAULT_ACCOUNT;
        let careless = self.options.profile == Profile::Careless;
        // The careless firmware still carries accounts of older releases: `support`, a
        // second uid 0 whose password is stored as MD5 crypt, and `guest`, a login shell
        // with an empty password field.
        let legacy =
            if careless { "support:x:0:0:Vendor support:/root:/bin/sh\nguest:x:1002:1002:Guest:/home/guest:/bin/sh\n" } else { "" };
        self.etc(
            "passwd",
            &format!(
                "root:x:0:0:root:/root:/bin/sh\n\
                 daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
                 {OPERATOR}:x:1000:1000:Operator:/home/{OPERATOR}:/bin/sh\n\
                 {default_user}:x:1001:1001:Default administrator:/home/{default_user}:/bin/sh\n\
                 {legacy}\
                 nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
            ),
            0o644,
        );
        self.etc(
            "group",
            &format!(
                "root:x:0:\ndaemon:x:1:\nadm:x:4:{OPERATOR}\ntty:x:5:\nshadow:x:42:\nutmp:x:43:\nusers:x:100:\n\
                 {OPERATOR}:x:1000:\n{default_user}:x:1001:\n{}nogroup:x:65534:\n",
                if careless { "guest:x:1002:\n" } else { "" }
            ),
            0o644,
        );
        // The hardened firmware ships the default account locked (`!`, as `passwd -l` does).
        let lock = if self.options.profile == Profile::Hardened { "!" } else { "" };
        let legacy = if careless {
            format!("support:{}:19000:0:99999:7:::\nguest::19000:0:99999:7:::\n", crypt_hash("support", "md5", "$1$"))
        } else {
            String::new()
        };
        let shadow = format!(
            "root:{}:19000:0:99999:7:::\n\
             daemon:*:19000:0:99999:7:::\n\
             {OPERATOR}:{}:19000:0:99999:7:::\n\
             {default_user}:{lock}{}:19000:0:99999:7:::\n\
             {legacy}\
             nobody:*:19000:0:99999:7:::\n",
            password_hash(self.root_password),
            password_hash(self.operator_password),
            password_hash(default_password),
        );
        let path = self.root.join("etc/shadow");
        write_private(&path, &shadow);
        // Group shadow (42) may read the hashes on the hardened image; nobody else may.
        let group = if self.options.profile == Profile::Hardened { 42 } else { 0 };
        set_owner_mode(&path, 0, group, self.options.profile.shadow_mode());
    }

    fn write_etc(&self) {
        let host = &self.options.hostname;
        let profile = self.options.profile;
        self.etc("hostname", &format!("{host}\n"), 0o644);
        self.etc("hosts", &format!("127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n"), 0o644);
        // dropbear resolves accounts through glibc's NSS; files only, as on a small device.
        self.etc("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files\n", 0o644);
        self.etc("shells", "/bin/sh\n/bin/ash\n", 0o644);
        // The hardened firmware asks its shells to log out after 3 s idle (`TMOUT`, what the
        // rig declares); Debian's busybox-static builds ash without that feature, so the
        // setting is there and does nothing, which 4.2.3.5.2 finds out.
        let tmout = if profile == Profile::Hardened { "TMOUT=3\nexport TMOUT\n" } else { "" };
        self.etc("profile", &format!("export PATH=/sbin:/usr/sbin:/bin:/usr/bin\nexport PS1='\\u@\\h:\\w\\$ '\numask 022\n{tmout}"), 0o644);
        self.etc("issue", "RU-BB radio unit (BusyBox)\n", 0o644);
        self.etc(
            "os-release",
            &format!(
                "NAME=\"RU-BB Linux\"\nID=ru-bb\nVERSION_ID={firmware}\nPRETTY_NAME=\"RU-BB Linux {firmware} ({})\"\n\
                 HOME_URL=\"https://busybox.net/\"\n",
                profile.name(),
                firmware = profile.firmware(),
            ),
            0o644,
        );
        if profile == Profile::Hardened {
            // BusyBox login lets root in only on the terminals listed here (not telnet's ptys).
            self.etc("securetty", "console\nttyS0\n", 0o600);
        }
        // The console: getty and login, or (`console_without_login`) a login shell that
        // init starts again whenever it exits (`-`: a login shell, so it reads /etc/profile).
        // The careless unit's getty hands the line to the vendor's own console login
        // ([`VENDOR_CONSOLE_LOGIN`]), which reads the password with the terminal's echo on.
        let console = match (self.options.console_login, profile) {
            (false, _) => "-/bin/sh".to_string(),
            (true, Profile::Hardened) => "/sbin/getty -L 0 ttyS0 vt100".to_string(),
            (true, Profile::Careless) => {
                self.file(VENDOR_CONSOLE_LOGIN.0, VENDOR_CONSOLE_LOGIN.1, 0o755);
                format!("/sbin/getty -n -l {} -L 0 ttyS0 vt100", VENDOR_CONSOLE_LOGIN.0)
            }
        };
        self.etc("inittab", &format!("# RU-BB: BusyBox init\n::sysinit:/etc/init.d/rcS\nttyS0::respawn:{console}\n"), 0o644);
        let mut rcs = format!(
            "#!/bin/sh\n\
             # RU-BB start-up: system log, SSH, and what else the firmware runs.\n\
             hostname -F /etc/hostname\n\
             syslogd -O /var/log/messages{}\n\
             i=0; while [ ! -S /dev/log ] && [ $i -lt 200 ]; do usleep 10000; i=$((i+1)); done\n\
             echo \"Starting syslogd: OK\"\n",
            // Hardened forwards its log to the central log server too (BusyBox: UDP only).
            if profile == Profile::Hardened { format!(" -R {LOG_SERVER} -L") } else { String::new() },
        );
        // The hardened unit binds SSH to its management address only; the careless one to
        // every interface (TS 33.117 4.3.2.2; the rig declares 127.0.0.3 as another interface's).
        let listen = match profile {
            Profile::Hardened => format!("127.0.0.1:{SSH_PORT}"),
            Profile::Careless => SSH_PORT.to_string(),
        };
        rcs.push_str(&format!(
            "dropbear -r {HOST_KEY_PATH} -p {listen} -P /var/run/dropbear.pid {}\n\
             echo \"Starting dropbear sshd: OK\"\n",
            profile.dropbear_flags().join(" ")
        ));
        if profile == Profile::Careless {
            rcs.push_str(&format!("telnetd -p {TELNET_PORT}\necho \"Starting telnetd: OK\"\n"));
            // An automounter as old firmware ran one (TS 33.117 4.3.3.1.3): BusyBox has
            // none, so a shell loop stands in for it; `ps` shows it as `automount`.
            self.file("/usr/sbin/automount", "#!/bin/sh\n# Stand-in for an automounter daemon.\nwhile :; do sleep 3600; done\n", 0o755);
            rcs.push_str("automount &\necho \"Starting automount: OK\"\n");
        }
        self.etc("init.d/rcS", &rcs, 0o755);
    }

    fn etc(&self, name: &str, content: &str, mode: u32) {
        self.file(&format!("/etc/{name}"), content, mode);
    }

    /// Writes `content` to `path` (absolute, on the device) in the image, root's, with `mode`.
    fn file(&self, path: &str, content: &str, mode: u32) {
        let on_host = self.root.join(path.trim_start_matches('/'));
        fs::write(&on_host, content).unwrap_or_else(|e| panic!("write {path} of the image: {e}"));
        set_owner_mode(&on_host, 0, 0, mode);
    }

    /// Makes dropbear's ed25519 host key with dropbearkey, as a first boot would.
    fn host_key(&self) -> HostKey {
        let path = self.root.join(HOST_KEY_PATH.trim_start_matches('/'));
        let out =
            Command::new(DROPBEARKEY).args(["-t", "ed25519", "-f"]).arg(&path).stdin(Stdio::null()).output().expect("run dropbearkey");
        assert!(out.status.success(), "dropbearkey -t ed25519 failed: {}", String::from_utf8_lossy(&out.stderr));
        set_owner_mode(&path, 0, 0, 0o600);
        let text = String::from_utf8_lossy(&out.stdout);
        let public_line = text
            .lines()
            .find(|line| line.starts_with("ssh-ed25519 "))
            .map(|line| line.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no public key in dropbearkey's output:\n{text}"));
        let fingerprint = text
            .lines()
            .find_map(|line| line.strip_prefix("Fingerprint: "))
            .and_then(|rest| rest.split_whitespace().find(|word| word.starts_with("SHA256:")))
            .unwrap_or_else(|| panic!("no SHA256 fingerprint in dropbearkey's output:\n{text}"))
            .to_string();
        HostKey { algorithm: "ssh-ed25519".into(), fingerprint, public_line }
    }
}

/// The kernel's part of the boot log (printed before init starts).
fn kernel_log(hostname: &str) -> String {
    format!(
        "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd083]\n\
         [    0.000000] Linux version 6.1.0-ru-bb (build@{hostname}) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT\n\
         [    0.000000] Machine model: proofrig RU-BB radio unit\n\
         [    0.000000] Kernel command line: console=ttyS0,115200 root=/dev/mmcblk0p2 rootwait ro\n\
         [    0.412783] Serial: 8250/16550 driver, 4 ports, IRQ sharing disabled\n\
         [    0.418512] printk: console [ttyS0] enabled\n\
         [    1.093187] EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode. Quota mode: none.\n\
         [    1.101356] VFS: Mounted root (ext4 filesystem) readonly on device 179:2.\n\
         [    1.112604] Run /sbin/init as init process\n"
    )
}

/// The holder: private mounts of `/dev` inside the image (device nodes bound from the
/// test machine, the console's PTY as ttyS0 and console), loopback up, then it waits on
/// standard input. At EOF (the test process dropped the device, or died) it kills every
/// process left in the device's network namespace, so nothing outlives the test.
fn holder_script(root: &Path, console: &Path, profile: Profile) -> String {
    let r = root.display();
    let tty = console.display();
    // The network namespace's own net.* settings (this shell is in it; /proc/sys/net
    // answers for the namespace of the process that writes).
    let settings: String = profile.network_settings().iter().map(|(path, value)| format!("echo {value} > /proc/sys/{path}\n")).collect();
    format!(
        r#"set -e
R='{r}'
mount -t tmpfs -o mode=755,size=1m ru-dev "$R/dev"
for n in null zero full random urandom tty; do : > "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
mkdir "$R/dev/pts" "$R/dev/shm"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
for n in ttyS0 console; do : > "$R/dev/$n"; mount --bind '{tty}' "$R/dev/$n"; done
"$R/bin/busybox" ip link set lo up
{settings}echo ready
set +e
read _ignored
me=$(readlink /proc/$$/ns/net)
for p in /proc/[0-9]*; do
    pid=${{p#/proc/}}
    if [ "$pid" != "$$" ] && [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$me" ]; then kill -9 "$pid" 2>/dev/null; fi
done
"#
    )
}

/// One power-on, run by `unshare --pid --mount` inside the holder's namespaces: PID 1 of
/// a fresh PID namespace mounts what a kernel would, prints the kernel's boot lines and
/// becomes BusyBox's init inside the image.
fn boot_script(root: &Path, kernel_log: &Path, profile: Profile) -> String {
    let r = root.display();
    let k = kernel_log.display();
    // kernel.* settings are the test machine's: a careless device's value is shown only
    // to the device, by a file bound over the /proc/sys file in its own mount namespace.
    let aslr = profile.aslr_shown().map_or(String::new(), |value| {
        let shown = kernel_log.with_file_name("randomize_va_space");
        format!("echo {value} > '{0}'\nmount --bind '{0}' \"$R/proc/sys/kernel/randomize_va_space\"\n", shown.display())
    });
    let media = format!("mount -t tmpfs -o {} ru-usb \"$R{REMOVABLE_MOUNT}\"\n", profile.removable_mount_options());
    format!(
        r#"R='{r}'
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777 ru-tmp "$R/tmp"
mount -t tmpfs -o mode=755 ru-run "$R/var/run"
{aslr}{media}rm -f "$R/dev/log"
cat '{k}' > "$R/dev/console"
exec {ENV} -i CONSOLE=/dev/console TERM=vt100 HOME=/ PATH=/sbin:/usr/sbin:/bin:/usr/bin {CHROOT} "$R" /sbin/init
"#
    )
}

/// The process that owns the device's network, mount and UTS namespaces.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Holder {
    fn start(base: &Path) -> Holder {
        let log = fs::File::create(base.join("holder.log")).expect("holder log");
        let mut child = Command::new(UNSHARE)
            .args(["--net", "--mount", "--uts", "--propagation", "private", "/bin/sh"])
            .arg(base.join("holder.sh"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn unshare for the BusyBox device's namespaces");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("holder stdout")).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the BusyBox device's namespaces could not be set up; its log:\n{}",
                fs::read_to_string(base.join("holder.log")).unwrap_or_default()
            );
        }
        let stdin = child.stdin.take();
        Holder { child, stdin }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }

    /// EOF on its stdin: it kills what is left in the namespace and exits.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts and kills the device's processes; what the coil drives.
struct PowerSwitch {
    holder: u32,
    boot_script: PathBuf,
    boot_log: PathBuf,
    line: Arc<DeviceSide>,
    /// `nsenter` + `unshare --pid` of the running boot; its child is the device's init.
    running: Mutex<Option<Child>>,
    /// Cleared when the device is dropped: the coil powers nothing any more.
    enabled: AtomicBool,
}

impl PowerSwitch {
    fn is_running(&self) -> bool {
        self.running.lock().unwrap().is_some()
    }

    fn set(&self, on: bool) {
        let mut running = self.running.lock().unwrap();
        if on && running.is_none() && self.enabled.load(Ordering::SeqCst) {
            *running = Some(self.boot());
        } else if !on {
            if let Some(mut boot) = running.take() {
                kill_pid_namespace(&mut boot, Duration::from_secs(3));
                // A UART without power answers nothing, not even the kernel's echo of a
                // line the last program left in canonical mode with echo on.
                self.line.unpowered();
            }
        }
    }

    fn boot(&self) -> Child {
        // A fresh UART: sane line settings, nothing typed while the power was off.
        self.line.reset();
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.boot_log).expect("boot log");
        Command::new(NSENTER)
            .arg(format!("--target={}", self.holder))
            .args(["--net", "--mount", "--uts", "--", UNSHARE, "--pid", "--fork", "--kill-child=SIGKILL", "--mount"])
            .args(["--propagation", "private", "/bin/sh"])
            .arg(&self.boot_script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("boot log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the BusyBox device's boot")
    }

    fn shut_down(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        self.set(false);
    }
}

/// The device's end of the serial line: the slave the device's getty opens (held open
/// here too, so the line survives power cycles) and its settings at creation.
struct DeviceSide {
    slave: OwnedFd,
    path: PathBuf,
    sane: libc::termios,
}

impl DeviceSide {
    fn unpowered(&self) {
        if let Ok(mut silent) = tcgetattr(&self.slave) {
            cfmakeraw(&mut silent);
            let _ = tcsetattr(&self.slave, SetArg::TCSANOW, &silent);
        }
        let _ = tcflush(&self.slave, FlushArg::TCIOFLUSH);
    }

    fn reset(&self) {
        let _ = tcsetattr(&self.slave, SetArg::TCSANOW, &Termios::from(self.sane));
        let _ = tcflush(&self.slave, FlushArg::TCIOFLUSH);
    }
}

/// Two PTYs and a relay between their masters: the serial cable between the device's
/// UART and the bench's adapter.
struct ConsoleLine {
    device: Arc<DeviceSide>,
    bench_path: PathBuf,
    /// The bench's slave is not held open here: while nobody has it open, the relay
    /// sees the master hung up and drops what the device prints, as an adapter does.
    stop: Arc<AtomicBool>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl ConsoleLine {
    fn open() -> ConsoleLine {
        let device = nix::pty::openpty(None, None).expect("openpty for the device's console: is devpts mounted?");
        let sane = tcgetattr(&device.slave).expect("tcgetattr on the device's console");
        let device_path = nix::unistd::ttyname(&device.slave).expect("ttyname of the device's console");
        let bench = nix::pty::openpty(None, None).expect("openpty for the bench side of the console");
        let mut raw = tcgetattr(&bench.slave).expect("tcgetattr on the bench side");
        cfmakeraw(&mut raw);
        tcsetattr(&bench.slave, SetArg::TCSANOW, &raw).expect("raw bench side");
        let bench_path = nix::unistd::ttyname(&bench.slave).expect("ttyname of the bench side");
        drop(bench.slave);
        for fd in [&device.master, &bench.master] {
            let flags = fcntl(fd, FcntlArg::F_GETFL).expect("F_GETFL on a PTY master");
            fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK)).expect("non-blocking PTY master");
        }
        let (wake_rx, wake_tx) = nix::unistd::pipe().expect("pipe for the console relay");
        let stop = Arc::new(AtomicBool::new(false));
        let relay = Relay { device: device.master, bench: bench.master, wake: wake_rx, stop: Arc::clone(&stop), pending: Vec::new() };
        let thread =
            std::thread::Builder::new().name("busybox-console".into()).spawn(move || relay.run()).expect("spawn the console relay");
        ConsoleLine {
            device: Arc::new(DeviceSide { slave: device.slave, path: device_path, sane: sane.into() }),
            bench_path,
            stop,
            wake: wake_tx,
            thread: Some(thread),
        }
    }

    fn bench_path(&self) -> &Path {
        &self.bench_path
    }

    fn device_path(&self) -> &Path {
        &self.device.path
    }

    /// The device side's device number, as `/proc/PID/stat` gives a controlling terminal.
    fn device_number(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let rdev = fs::metadata(&self.device.path).expect("stat the device's console").rdev();
        // The kernel's encoding (new_encode_dev): minor's low 8 bits, major, minor's rest.
        let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }

    fn device_side(&self) -> Arc<DeviceSide> {
        Arc::clone(&self.device)
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&self.wake, b"x");
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Relay {
    device: OwnedFd,
    bench: OwnedFd,
    wake: OwnedFd,
    stop: Arc<AtomicBool>,
    /// Device output the bench has not taken yet (the device waits meanwhile).
    pending: Vec<u8>,
}

impl Relay {
    fn run(mut self) {
        let mut buf = [0u8; 4096];
        while !self.stop.load(Ordering::SeqCst) {
            let bench_open = !hung_up(&self.bench);
            if !bench_open {
                self.pending.clear();
            }
            let (device_ready, bench_ready, bench_writable) = {
                let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
                let device_at = self.pending.is_empty().then(|| {
                    fds.push(PollFd::new(self.device.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let bench_at = bench_open.then(|| {
                    let mut events = PollFlags::POLLIN;
                    if !self.pending.is_empty() {
                        events |= PollFlags::POLLOUT;
                    }
                    fds.push(PollFd::new(self.bench.as_fd(), events));
                    fds.len() - 1
                });
                // A closed bench side shows only as a hang-up, which poll reports at once:
                // it is left out then, and looked at again every 20 ms.
                let timeout = if bench_open { 1000u16 } else { 20 };
                match poll(&mut fds, PollTimeout::from(timeout)) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(err) => panic!("console relay: poll failed: {err}"),
                }
                let revents = |at: Option<usize>| at.and_then(|i| fds[i].revents()).unwrap_or(PollFlags::empty());
                if revents(Some(0)).contains(PollFlags::POLLIN) {
                    let _ = nix::unistd::read(&self.wake, &mut buf);
                }
                let bench = revents(bench_at);
                (revents(device_at).contains(PollFlags::POLLIN), bench.contains(PollFlags::POLLIN), bench.contains(PollFlags::POLLOUT))
            };
            if device_ready {
                if let Ok(n) = nix::unistd::read(&self.device, &mut buf) {
                    // Looked at again now: a bench that opened while the relay waited
                    // (the test opens the console, then powers on) takes this output.
                    if !hung_up(&self.bench) {
                        self.pending.extend_from_slice(&buf[..n]);
                    }
                }
            }
            if bench_ready {
                if let Ok(n) = nix::unistd::read(&self.bench, &mut buf) {
                    // Typed while the device's input queue is full: lost, as on a UART.
                    let _ = nix::unistd::write(&self.device, &buf[..n]);
                }
            }
            if !self.pending.is_empty() && (bench_writable || device_ready) {
                match nix::unistd::write(&self.bench, &self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                    }
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(_) => self.pending.clear(),
                }
            }
        }
    }
}

/// Whether nobody has the slave of this PTY master open.
fn hung_up(master: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(master.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLHUP))
}

/// The relay board inside the device's network namespace: a listener there on
/// [`PDU_HOST`] and the board's port, each connection spliced to the board on the test
/// machine.
struct PduBridge {
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl PduBridge {
    fn start(netns: PathBuf, board: SocketAddr) -> PduBridge {
        let inside = SocketAddr::new(PDU_HOST.parse().expect("PDU_HOST is an address"), board.port());
        let listener = in_netns(netns, move || TcpListener::bind(inside))
            .unwrap_or_else(|e| panic!("bridge the PDU into the device's network namespace at {inside}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking bridge listener");
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stopping, open) = (Arc::clone(&stop), Arc::clone(&connections));
        let thread = std::thread::Builder::new()
            .name("busybox-pdu-bridge".into())
            .spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((inside, _)) => splice(inside, board, &open),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
            .expect("spawn the PDU bridge");
        PduBridge { stop, connections, thread: Some(thread) }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies both ways between a connection inside the namespace and the board.
fn splice(inside: TcpStream, board: SocketAddr, open: &Arc<Mutex<Vec<TcpStream>>>) {
    let _ = inside.set_nonblocking(false);
    let Ok(outside) = TcpStream::connect(board) else { return };
    let mut open = open.lock().unwrap();
    open.retain(|s| s.peer_addr().is_ok());
    for stream in [&inside, &outside] {
        if let Ok(clone) = stream.try_clone() {
            open.push(clone);
        }
    }
    for (from, to) in [(inside.try_clone(), outside.try_clone()), (Ok(outside), Ok(inside))] {
        let (Ok(mut from), Ok(mut to)) = (from, to) else { continue };
        let _ = std::thread::Builder::new().name("busybox-pdu-splice".into()).spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
}

/// Runs `f` on a thread that has joined the network namespace at `netns`; sockets made
/// there stay in that namespace.
fn in_netns<T: Send + 'static>(netns: PathBuf, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = fs::File::open(&netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
        // SAFETY: setns on a valid namespace fd; it changes only this thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({}): {}", netns.display(), std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

/// Whether the network namespace of process `pid` has a TCP socket listening on `port`.
fn listening_in(pid: u32, port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|table| {
        fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default().lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&wanted) && fields[3] == "0A"
        })
    })
}

fn netns_id(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// The controlling terminal of `pid` (field 7 of `/proc/PID/stat`), if it has one.
fn controlling_terminal(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    fields.get(4)?.parse().ok().filter(|tty: &u64| *tty != 0)
}

fn processes() -> Vec<u32> {
    fs::read_dir("/proc").map(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default()
}

/// A terminal on the bench side of the console, for tests: raw, non-blocking, with a
/// buffer of what was read and not yet consumed.
pub struct ConsoleClient {
    file: fs::File,
    unread: Vec<u8>,
}

impl ConsoleClient {
    pub fn open(path: &Path) -> ConsoleClient {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
            .unwrap_or_else(|e| panic!("open the console {}: {e}", path.display()));
        let mut raw = tcgetattr(&file).expect("tcgetattr on the console");
        cfmakeraw(&mut raw);
        tcsetattr(&file, SetArg::TCSANOW, &raw).expect("raw console");
        ConsoleClient { file, unread: Vec::new() }
    }

    /// Types `text` (use `\r` for Enter, as a terminal sends it).
    pub fn send(&mut self, text: &str) {
        let mut rest = text.as_bytes();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !rest.is_empty() && Instant::now() < deadline {
            match self.file.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("write to the console: {e}"),
            }
        }
    }

    /// Everything that arrives within `how_long` (after what was unread).
    pub fn read_for(&mut self, how_long: Duration) -> Vec<u8> {
        let deadline = Instant::now() + how_long;
        while Instant::now() < deadline {
            self.fill(deadline - Instant::now());
        }
        std::mem::take(&mut self.unread)
    }

    /// Waits for any of `needles`; returns its index and the text up to and including
    /// it (consumed), or, on time-out, everything read (kept).
    pub fn expect_any(&mut self, needles: &[&str], limit: Duration) -> Result<(usize, String), String> {
        let deadline = Instant::now() + limit;
        loop {
            let found = needles
                .iter()
                .enumerate()
                .filter_map(|(i, needle)| find(&self.unread, needle.as_bytes()).map(|at| (at + needle.len(), i)))
                .min();
            if let Some((end, index)) = found {
                let text: Vec<u8> = self.unread.drain(..end).collect();
                return Ok((index, String::from_utf8_lossy(&text).into_owned()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(String::from_utf8_lossy(&self.unread).into_owned());
            }
            self.fill(deadline - now);
        }
    }

    pub fn expect(&mut self, needle: &str, limit: Duration) -> Result<String, String> {
        self.expect_any(&[needle], limit).map(|(_, text)| text)
    }

    /// Gets a login prompt (pressing Enter once a second until one shows), logs in and
    /// waits for the shell prompt (`Ok`, the text up to it) or `Login incorrect` (`Err`).
    /// BusyBox login pauses 3 s before saying `Login incorrect`.
    pub fn login(&mut self, user: &str, password: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        let mut seen = String::new();
        loop {
            match self.expect("login: ", Duration::from_secs(1)) {
                Ok(text) => {
                    seen.push_str(&text);
                    break;
                }
                Err(_) if Instant::now() < deadline => self.send("\r"),
                Err(text) => return Err(format!("no login prompt within {limit:?}: {seen}{text}")),
            }
        }
        self.send(&format!("{user}\r"));
        let left = deadline.saturating_duration_since(Instant::now());
        seen.push_str(&self.expect("Password: ", left).map_err(|text| format!("no password prompt: {seen}{text}"))?);
        self.send(&format!("{password}\r"));
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        match self.expect_any(&["# ", "$ ", "Login incorrect"], left) {
            Ok((2, text)) => Err(format!("{seen}{text}")),
            Ok((_, text)) => Ok(format!("{seen}{text}")),
            Err(text) => Err(format!("no shell prompt or refusal: {seen}{text}")),
        }
    }

    /// Runs `command` at the shell prompt; its output (with the echoed command line) and
    /// its exit status.
    pub fn run(&mut self, command: &str, limit: Duration) -> (String, i32) {
        self.send(&format!("{command}; echo \"RC=[$?]\"\r"));
        let deadline = Instant::now() + limit;
        let mut text = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.expect("]", left) {
                Ok(part) => {
                    text.push_str(&part);
                    if let Some(status) = text.rsplit("RC=[").next().and_then(|s| s.strip_suffix(']')).and_then(|s| s.parse().ok()) {
                        return (text, status);
                    }
                }
                Err(rest) => panic!("`{command}` did not finish on the console within {limit:?}: {text}{rest}"),
            }
        }
    }

    fn fill(&mut self, at_most: Duration) {
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(at_most.min(Duration::from_millis(100))).unwrap_or(PollTimeout::ZERO);
        if matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            let mut buf = [0u8; 4096];
            match self.file.read(&mut buf) {
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read the console: {e}"),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// `password`'s SHA-512 crypt hash, by BusyBox's own `mkpasswd` (the password on stdin).
fn password_hash(password: &str) -> String {
    crypt_hash(password, "sha512", "$6$")
}

/// `password` hashed by BusyBox's `mkpasswd -m method`; the hash starts with `prefix`.
fn crypt_hash(password: &str, method: &str, prefix: &str) -> String {
    let mut mkpasswd = Command::new(BUSYBOX)
        .args(["mkpasswd", "-m", method, "-P", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run busybox mkpasswd");
    mkpasswd.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("feed mkpasswd");
    let out = mkpasswd.wait_with_output().expect("mkpasswd output");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && hash.starts_with(prefix), "busybox mkpasswd -m {method} failed: {hash}");
    hash
}

/// Four groups of five from a 56-character alphabet, the first three opening with a
/// lower-case letter, an upper-case letter and a digit (so any usual policy accepts it).
fn random_password() -> String {
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGITS: &[u8] = b"23456789";
    const ALL: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut random = [0u8; 20];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random)).expect("read /dev/urandom");
    let groups: Vec<String> = random
        .chunks(5)
        .enumerate()
        .map(|(group, chunk)| {
            let first = [LOWER, UPPER, DIGITS, ALL][group];
            let pick = |i: usize, byte: u8| {
                let alphabet = if i == 0 { first } else { ALL };
                alphabet[byte as usize % alphabet.len()] as char
            };
            chunk.iter().enumerate().map(|(i, byte)| pick(i, *byte)).collect()
        })
        .collect();
    groups.join("-")
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_passwords_differ_and_mix_classes() {
        let (a, b) = (random_password(), random_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 23, "{a}");
        assert!(
            a.bytes().any(|c| c.is_ascii_lowercase()) && a.bytes().any(|c| c.is_ascii_uppercase()) && a.bytes().any(|c| c.is_ascii_digit())
        );
    }

    #[test]
    fn yaml_quoting_escapes() {
        assert_eq!(quoted("a\"b\\c\td"), "\"a\\\"b\\\\c\\x09d\"");
    }
}
