//! The two security postures a simulated device can have.
//!
//! The same TS 33.117 test plan must give PASS against a *hardened* device and FAIL
//! against a *weak* one, so every security-relevant difference between them is data
//! in this one file: SSH algorithms, account policy, file modes, extra services,
//! auth logging, bootloader protection, leftover accounts, the daemons' accounts, the
//! kernel's view (`/proc/sys` settings, the removable medium's mount options), the
//! vendor's factory key, the installed software and which interfaces services bind.
//! The device OS, the SSH server and the serial console only read it.

use crate::programs::Build;
use std::time::Duration;

/// Security posture of a simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Configured the way TS 33.117 asks: modern crypto only, no root over SSH,
    /// lockout, password policy, tight file modes, SSH as the only service, a
    /// password-protected bootloader.
    Hardened,
    /// A typical badly configured appliance: legacy crypto offered, root over SSH,
    /// vendor default account, world-readable shadow and auth log, telnet/ftp/http
    /// listeners, failed logins not logged, an open bootloader prompt on the console,
    /// a console login that shows a refused password, idle console sessions never ended,
    /// a console logout that leaves the shell running, `sudo` without a password for
    /// the operators, a `passwd` that does not ask for the current password, accounts left from older firmware (a uid 0 alias hashed with MD5, a guest
    /// without a password), daemons sharing one account, the vendor's factory key still
    /// authorized for root, debugging tools installed, and telnet and FTP on every interface.
    Weak,
}

/// SSH algorithm names the device's server offers, most preferred first, exactly as
/// they appear in its KEXINIT (the SSH server maps each to russh's implementation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAlgorithms {
    /// Key exchange methods, including the `ext-info-s` / strict-kex markers.
    pub kex: &'static [&'static str],
    /// Server host key algorithms.
    pub host_key: &'static [&'static str],
    /// Ciphers (both directions).
    pub ciphers: &'static [&'static str],
    /// MACs (both directions; AEAD ciphers ignore them).
    pub macs: &'static [&'static str],
}

/// Temporary account lockout after repeated failed passwords (pam_faillock-like).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failed passwords that lock the account.
    pub max_failures: u32,
    /// How long the account stays locked; every login, even with the right
    /// password, is refused meanwhile.
    pub duration: Duration,
}

/// What `passwd` accepts as a new password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters.
    pub min_length: usize,
    /// Minimum number of character classes among lower case, upper case, digits
    /// and everything else.
    pub min_classes: usize,
}

/// Who may log in, how, and how hard the device pushes back on guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountPolicy {
    /// Whether root may log in over SSH (the console always allows root).
    pub root_ssh_login: bool,
    /// Lockout after failed passwords; `None` means unlimited guessing.
    pub lockout: Option<LockoutPolicy>,
    /// Policy enforced by `passwd`; `None` means anything is accepted.
    pub password_policy: Option<PasswordPolicy>,
    /// Whether the vendor default account (`admin`/`admin`) can log in.
    pub default_account_enabled: bool,
    /// Whether failed logins produce auth log records (successful ones always do).
    pub log_failed_logins: bool,
}

/// Permission bits of the security-relevant files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileModes {
    /// `/etc/shadow`.
    pub shadow: u16,
    /// `/etc/ssh/ssh_host_ed25519_key`.
    pub host_private_key: u16,
    /// `/etc/proofrig/device.conf`, the device's own configuration.
    pub device_config: u16,
    /// `/var/log/auth.log`, the security event log.
    pub auth_log: u16,
}

/// A local account some firmware carries besides root, the operators and the vendor
/// default: the weak profile's leftovers from older releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyAccount {
    pub name: &'static str,
    pub uid: u32,
    pub gecos: &'static str,
    /// The password; empty means an empty password field in `/etc/shadow`.
    pub password: &'static str,
    /// The crypt(3) scheme of its stored hash, e.g. `1` (MD5) for `$1$`.
    pub scheme: &'static str,
}

/// A daemon the device runs from boot, and the account it runs under (`ps` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daemon {
    pub program: &'static str,
    pub user: &'static str,
}

/// The web management server's installation (`/etc/httpd`, `/var/www/cgi-bin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebInstall {
    /// The account its worker process serves requests under.
    pub worker_user: &'static str,
    /// `/etc/httpd/httpd.conf`, its mode and group (owner root).
    pub config: &'static str,
    pub config_mode: u16,
    pub config_group: &'static str,
    /// The add-ons it loads, as files of `/etc/httpd/modules.d`.
    pub modules: &'static [&'static str],
    /// Files of its CGI directory `/var/www/cgi-bin` (none: no CGI directory).
    pub cgi_programs: &'static [&'static str],
    /// The CGI directory's mode (owner root).
    pub cgi_mode: u16,
    /// Where uploads are stored.
    pub upload_directory: &'static str,
    /// `/etc/httpd/mime.types`: its file type mappings, `TYPE EXTENSION...;` a line.
    pub mime_types: &'static str,
    /// Whether its access log names the client, the user, the time (hardened), or only
    /// the request line and status (weak).
    pub full_access_log: bool,
}

/// A plain TCP service listening next to SSH, announcing itself with a banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraService {
    /// A telnet-like login prompt.
    Telnet,
    /// An FTP-like `220` greeting.
    Ftp,
    /// A web management login page over plain HTTP, with no redirect to HTTPS.
    Http,
}

impl ExtraService {
    /// Service name as it appears in `/etc/services`.
    pub fn name(self) -> &'static str {
        match self {
            ExtraService::Telnet => "telnet",
            ExtraService::Ftp => "ftp",
            ExtraService::Http => "http",
        }
    }

    /// The port IANA assigns it, where a real device listens.
    pub fn well_known_port(self) -> u16 {
        match self {
            ExtraService::Telnet => 23,
            ExtraService::Ftp => 21,
            ExtraService::Http => 80,
        }
    }

    /// The daemon's program name, as `ss -p` and the boot log show it.
    pub fn program(self) -> &'static str {
        match self {
            ExtraService::Telnet => "telnetd",
            ExtraService::Ftp => "ftpd",
            ExtraService::Http => "httpd",
        }
    }
}

const HARDENED_ALGORITHMS: SshAlgorithms = SshAlgorithms {
    kex: &[
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group16-sha512",
        "ext-info-s",
        "kex-strict-s-v00@openssh.com",
    ],
    host_key: &["ssh-ed25519"],
    ciphers: &[
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    ],
    macs: &["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"],
};

// Modern algorithms first so that ordinary clients still negotiate them; the legacy
// ones follow so that a scanner sees them offered and an old client can pick them.
// No strict-kex marker: like the old firmware it imitates, the weak device is also
// exposed to the Terrapin prefix truncation (CVE-2023-48795).
const WEAK_ALGORITHMS: SshAlgorithms = SshAlgorithms {
    kex: &["curve25519-sha256", "diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1", "ext-info-s"],
    host_key: &["ssh-ed25519"],
    ciphers: &["chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"],
    macs: &["hmac-sha2-256-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1", "hmac-sha1-etm@openssh.com"],
};

impl Profile {
    /// Lower-case name, as used in rig files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Hardened => "hardened",
            Profile::Weak => "weak",
        }
    }

    /// SSH algorithms the device's server offers.
    pub fn ssh_algorithms(self) -> SshAlgorithms {
        match self {
            Profile::Hardened => HARDENED_ALGORITHMS,
            Profile::Weak => WEAK_ALGORITHMS,
        }
    }

    /// Account policy; the lockout duration can be shortened per device
    /// (see `DeviceConfig::with_lockout`) so tests need not wait minutes.
    pub fn account_policy(self) -> AccountPolicy {
        match self {
            Profile::Hardened => AccountPolicy {
                root_ssh_login: false,
                lockout: Some(LockoutPolicy { max_failures: 3, duration: Duration::from_secs(300) }),
                password_policy: Some(PasswordPolicy { min_length: 12, min_classes: 3 }),
                default_account_enabled: false,
                log_failed_logins: true,
            },
            Profile::Weak => AccountPolicy {
                root_ssh_login: true,
                lockout: None,
                password_policy: None,
                default_account_enabled: true,
                log_failed_logins: false,
            },
        }
    }

    /// Permission bits of the security-relevant files.
    pub fn file_modes(self) -> FileModes {
        match self {
            Profile::Hardened => FileModes { shadow: 0o640, host_private_key: 0o600, device_config: 0o644, auth_log: 0o640 },
            Profile::Weak => FileModes { shadow: 0o644, host_private_key: 0o600, device_config: 0o666, auth_log: 0o644 },
        }
    }

    /// Accounts left over from older firmware: none on a hardened device; on a weak one
    /// a `support` alias of root (uid 0) whose password is stored as an MD5 crypt hash,
    /// and a `guest` login with an empty password field.
    pub fn legacy_accounts(self) -> &'static [LegacyAccount] {
        match self {
            Profile::Hardened => &[],
            Profile::Weak => &[
                LegacyAccount { name: "support", uid: 0, gecos: "Vendor support", password: "support", scheme: "1" },
                LegacyAccount { name: "guest", uid: 1100, gecos: "Guest", password: "", scheme: "6" },
            ],
        }
    }

    /// Whether the device's own configuration file (`/etc/proofrig/device.conf`) keeps
    /// root's password in clear text for a maintenance tool (weak), or not at all.
    pub fn config_holds_root_password(self) -> bool {
        match self {
            Profile::Hardened => false,
            Profile::Weak => true,
        }
    }

    /// Daemons running from boot and their accounts: on a hardened device each service
    /// that needs no privilege has an account of its own; on a weak one the system log,
    /// FTP and HTTP servers share `daemon`, and an automounter (udisksd) runs.
    pub fn daemons(self) -> &'static [Daemon] {
        match self {
            Profile::Hardened => &[
                Daemon { program: "sshd", user: "root" },
                Daemon { program: "syslogd", user: "syslog" },
                // The web management server's master, which binds its port as root and
                // serves through a worker under `www-data` (`web_install`).
                Daemon { program: "httpd", user: "root" },
            ],
            Profile::Weak => &[
                Daemon { program: "sshd", user: "root" },
                Daemon { program: "syslogd", user: "daemon" },
                Daemon { program: "telnetd", user: "root" },
                Daemon { program: "ftpd", user: "daemon" },
                // The web management server's master; its worker runs as root too (`web_install`).
                Daemon { program: "httpd", user: "root" },
                // udisks 2, which mounts a USB stick as soon as it is inserted.
                Daemon { program: "udisksd", user: "root" },
            ],
        }
    }

    /// Whether `fw-install` checks a package's signature before installing it (TS 33.117
    /// 4.2.3.3.5); the weak device installs whatever it is given.
    pub fn verifies_packages(self) -> bool {
        self == Profile::Hardened
    }

    /// The programs of the network-facing services, under `/usr/sbin`, and how each was
    /// built (TS 33.117 4.3.3.1.5): the weak device's vendor built its own web server
    /// with the compiler's old defaults; both ship a distribution's hardened sshd.
    pub fn network_programs(self) -> [(&'static str, Build); 2] {
        match self {
            Profile::Hardened => [("sshd", Build::Hardened), ("httpd", Build::Hardened)],
            Profile::Weak => [("sshd", Build::Hardened), ("httpd", Build::Careless)],
        }
    }

    /// How the web management server is installed on the device, as the web server
    /// cases that look inside the host (TS 33.117 4.3.4.2, .4, .5, .8) read it.
    pub fn web_install(self) -> WebInstall {
        match self {
            Profile::Hardened => WebInstall {
                worker_user: "www-data",
                config: "# Web management server\nUser www-data\nDocumentRoot /var/www\nServerTokens Prod\nOptions -Indexes\n\
                         <LimitExcept GET HEAD>\n    Require all denied\n</LimitExcept>\n",
                config_mode: 0o640,
                config_group: "adm",
                modules: &["auth_basic.conf"],
                cgi_programs: &[],
                cgi_mode: 0o755,
                upload_directory: "/var/www/upload",
                full_access_log: true,
                mime_types: "text/html html htm;\ntext/css css;\napplication/javascript js;\nimage/png png;\n",
            },
            Profile::Weak => WebInstall {
                worker_user: "root",
                config: "# Web management server\nUser root\nDocumentRoot /var/www\nServerTokens Full\n\
                         Options +Indexes +Includes +ExecCGI\nScriptAlias /cgi-bin/ /var/www/cgi-bin/\nDav On\n",
                config_mode: 0o666,
                config_group: "root",
                modules: &["auth_basic.conf", "cgi.conf", "ssi.conf", "webdav.conf"],
                cgi_programs: &["login.cgi", "perl", "sh"],
                // World-writable, so uploads can be stored in it.
                cgi_mode: 0o777,
                upload_directory: "/var/www/cgi-bin/upload",
                full_access_log: false,
                mime_types: "text/html html htm shtml;\ntext/css css;\napplication/javascript js;\nimage/png png;\n\
                             application/x-httpd-php php phtml;\napplication/x-sh sh;\napplication/x-perl pl pm;\n\
                             application/octet-stream bin exe dll;\n",
            },
        }
    }

    /// Services listening besides SSH.
    pub fn extra_services(self) -> &'static [ExtraService] {
        match self {
            // The hardened web server is the compliant one of `crate::web`, on a documented port.
            Profile::Hardened => &[ExtraService::Http],
            Profile::Weak => &[ExtraService::Telnet, ExtraService::Ftp, ExtraService::Http],
        }
    }

    /// Whether an SNMPv1/v2c agent answers the default communities (weak), or no
    /// SNMP agent runs at all (hardened).
    pub fn snmp_v2c_agent(self) -> bool {
        match self {
            Profile::Hardened => false,
            Profile::Weak => true,
        }
    }

    /// Whether the console's login never shows a password typed at it (hardened), or,
    /// when it refuses one, prints it back in its `Login incorrect` message (weak: a
    /// vendor login's debugging aid left in), so anyone looking at the console, or at
    /// its transcript, reads what was typed. Both read the password with echo off.
    pub fn console_hides_password(self) -> bool {
        match self {
            Profile::Hardened => true,
            Profile::Weak => false,
        }
    }

    /// Whether the console ends a login shell nobody has typed a command into for
    /// the lab's idle timeout (hardened, as a shell's `TMOUT` does), or keeps it open
    /// for ever (weak: a console left logged in stays usable by the next passer-by).
    pub fn ends_idle_sessions(self) -> bool {
        match self {
            Profile::Hardened => true,
            Profile::Weak => false,
        }
    }

    /// Whether logging out on the console ends the session's shell (hardened), or only
    /// brings the login prompt back while the logged-out shell keeps running (weak: its
    /// getty does not hang up the line), a process of the user left after logout.
    pub fn console_logout_ends_shell(self) -> bool {
        match self {
            Profile::Hardened => true,
            Profile::Weak => false,
        }
    }

    /// Whether `sudo` asks the operators for their password before running a command
    /// as root (hardened), or lets them through without one (weak: a `NOPASSWD` rule
    /// for every operator, left from commissioning).
    pub fn sudo_asks_password(self) -> bool {
        match self {
            Profile::Hardened => true,
            Profile::Weak => false,
        }
    }

    /// Whether an interactive `passwd` asks a user (not root) for the current password
    /// before a new one (hardened), or takes a new password from whoever sits at the
    /// session (weak).
    pub fn passwd_asks_current_password(self) -> bool {
        match self {
            Profile::Hardened => true,
            Profile::Weak => false,
        }
    }

    /// Whether interrupting autoboot on the console asks for the bootloader
    /// password (hardened) instead of opening its command prompt to anyone at the
    /// console (weak), which could then boot with `init=/bin/sh`.
    /// Whether the device sends its authentication records to the lab's central log
    /// server (over TLS; see `log_forward`).
    pub fn forwards_logs(self) -> bool {
        matches!(self, Profile::Hardened)
    }

    pub fn bootloader_protected(self) -> bool {
        match self {
            Profile::Hardened => true,
            Profile::Weak => false,
        }
    }
}

/// The public half of the key a vendor pre-installs for root on every unit it ships
/// ("factory support"): its private half is the vendor's, not the operator's, so it
/// opens every such unit. The simulated rig declares it as `vendor_keys`.
pub const VENDOR_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINJ9CiY9CrK96jo0Rc6BbnCC+a721BFllhjSzY71oA5i factory-support@vendor";

impl Profile {
    /// Whether root's `authorized_keys` still holds the vendor's factory key
    /// ([`VENDOR_KEY`]) as delivered (weak), or the operator removed it (hardened).
    pub fn vendor_key_installed(self) -> bool {
        match self {
            Profile::Hardened => false,
            Profile::Weak => true,
        }
    }
}

/// Where the device's vendor keeps its list of installed software, one `name version`
/// line per component (what a package manager would list); the simulated rig declares
/// `cat` of it as `software_list_command`.
pub const SOFTWARE_LIST: &str = "/etc/proofrig/software.list";

/// The software every simulated device needs, as (name, version): the simulated rig
/// declares these names as `allowed_software`.
pub const BASE_SOFTWARE: &[(&str, &str)] =
    &[("base-files", "4.2.1"), ("busybox", "1.36.1"), ("openssh-server", "9.6p1"), ("syslogd", "1.36.1"), ("httpd-mgmt", "4.2.1")];

impl Profile {
    /// Installed software beyond [`BASE_SOFTWARE`]: nothing on a hardened device; on a
    /// weak one the daemons of its extra services, the automounter and the debugging
    /// tools a development image carried into the field.
    pub fn extra_software(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Hardened => &[],
            Profile::Weak => &[("telnetd", "0.17"), ("ftpd", "0.17"), ("udisks2", "2.8.1"), ("gdbserver", "8.3"), ("tcpdump", "4.9.2")],
        }
    }
}

impl Profile {
    /// Whether the telnet and FTP daemons listen on every interface of the device, its
    /// user-plane address too (weak: started without a bind address, as they come), or,
    /// like every other service, on the management address only (hardened).
    pub fn services_on_every_interface(self) -> bool {
        match self {
            Profile::Hardened => false,
            Profile::Weak => true,
        }
    }
}

/// Where the device mounts a removable medium (a USB stick in its maintenance port);
/// the simulated rig declares it as `removable_mounts`.
pub const REMOVABLE_MOUNT: &str = "/media/usb0";

impl Profile {
    /// The kernel settings the device's `/proc/sys` shows, as (path under `/proc/sys`,
    /// value): reverse-path filtering, the ICMP and routing behaviour TS 33.117 4.3.3.1.2
    /// asks to minimise, SYN cookies and address space layout randomisation. A hardened
    /// device sets each as the specification asks; a weak one keeps a router's or an old
    /// kernel's defaults.
    pub fn kernel_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Profile::Hardened => &[
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
                ("kernel/randomize_va_space", "2"),
            ],
            Profile::Weak => &[
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
                ("kernel/randomize_va_space", "0"),
            ],
        }
    }

    /// The mount options of the removable medium at [`REMOVABLE_MOUNT`]: a hardened device
    /// mounts it so nothing on it runs, becomes setuid or opens a device node; a weak one
    /// with the defaults.
    pub fn removable_mount_options(self) -> &'static str {
        match self {
            Profile::Hardened => "rw,nosuid,nodev,noexec,relatime",
            Profile::Weak => "rw,relatime",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = crate::SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hardened" => Ok(Profile::Hardened),
            "weak" => Ok(Profile::Weak),
            other => Err(crate::SimError::UnknownProfile(other.to_string())),
        }
    }
}

impl PasswordPolicy {
    /// Why `password` violates the policy, or `None` when it complies.
    pub fn violation(&self, password: &str) -> Option<String> {
        let length = password.chars().count();
        if length < self.min_length {
            return Some(format!("The password is shorter than {} characters", self.min_length));
        }
        let classes = [
            password.chars().any(|c| c.is_lowercase()),
            password.chars().any(|c| c.is_uppercase()),
            password.chars().any(|c| c.is_ascii_digit()),
            password.chars().any(|c| !c.is_alphanumeric()),
        ]
        .into_iter()
        .filter(|present| *present)
        .count();
        if classes < self.min_classes {
            return Some(format!("The password contains less than {} character classes", self.min_classes));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_offers_legacy_algorithms_hardened_does_not() {
        let legacy = |name: &str| name.ends_with("-cbc") || name.ends_with("sha1") || name.contains("sha1-");
        let hardened = Profile::Hardened.ssh_algorithms();
        let weak = Profile::Weak.ssh_algorithms();
        for name in hardened.kex.iter().chain(hardened.ciphers).chain(hardened.macs) {
            assert!(!legacy(name), "hardened offers legacy {name}");
        }
        assert!(weak.ciphers.iter().any(|c| legacy(c)));
        assert!(weak.kex.iter().any(|k| legacy(k)));
        assert!(weak.macs.iter().any(|m| legacy(m)));
    }

    #[test]
    fn password_policy_counts_length_and_classes() {
        let policy = PasswordPolicy { min_length: 12, min_classes: 3 };
        assert!(policy.violation("short1A!").unwrap().contains("shorter than 12"));
        assert!(policy.violation("alllowercaseletters").unwrap().contains("less than 3"));
        assert!(policy.violation("lowerUPPERletters").is_some());
        assert_eq!(policy.violation("lower-UPPER-letters"), None);
        assert_eq!(policy.violation("Correct-Horse-9"), None);
    }

    #[test]
    fn profile_names_round_trip() {
        for profile in [Profile::Hardened, Profile::Weak] {
            assert_eq!(profile.name().parse::<Profile>().unwrap(), profile);
        }
        assert!("medium".parse::<Profile>().is_err());
    }
}
