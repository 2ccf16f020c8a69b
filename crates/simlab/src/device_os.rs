//! The simulated device's operating system, shared by every way into the device.
//!
//! The SSH server uses it now and the PTY serial console will later, so the state a
//! security test observes (accounts and their lockout, files with modes and owners,
//! the auth log, listening ports) lives here once, behind `Arc<Mutex<..>>`, and every
//! front end authenticates and runs commands through the same methods (`run` and
//! `reads_stdin` are in `shell.rs`, beside the interpreter, which imports this state).
//!
//! The lock is a `std::sync::Mutex` held only for short, non-blocking sections and
//! never across an `.await`, which keeps it safe to use from the tokio runtime.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::profile::{AccountPolicy, Profile, BASE_SOFTWARE, REMOVABLE_MOUNT, SOFTWARE_LIST, VENDOR_KEY};
use crate::programs::{elf_image, genuine_package, tampered_package, GENUINE_PACKAGE, TAMPERED_PACKAGE};

/// Who the device says it is, as reported by `/etc/proofrig-release` and `uname -a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub vendor: String,
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

impl Default for DeviceIdentity {
    fn default() -> Self {
        DeviceIdentity {
            vendor: "Proofrig Simulated Networks".to_string(),
            model: "SIM-RU-1".to_string(),
            serial: "SIM0000001".to_string(),
            firmware: "1.0.0".to_string(),
        }
    }
}

/// How to build a device: its name, posture, identity and local accounts.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub hostname: String,
    pub profile: Profile,
    pub identity: DeviceIdentity,
    pub root_password: String,
    /// Local operator accounts besides `root` and the vendor default `admin`:
    /// (name, password). They are members of `adm`, so they can read the auth log.
    pub accounts: Vec<(String, String)>,
    /// Starts as the profile's policy; adjustable (e.g. a short lockout for tests).
    pub policy: AccountPolicy,
}

impl DeviceConfig {
    pub fn new(hostname: &str, profile: Profile, root_password: &str) -> Self {
        DeviceConfig {
            hostname: hostname.to_string(),
            profile,
            identity: DeviceIdentity::default(),
            root_password: root_password.to_string(),
            accounts: Vec::new(),
            policy: profile.account_policy(),
        }
    }

    pub fn with_identity(mut self, identity: DeviceIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// Adds a local (non-root) account that can log in with `password`.
    pub fn with_account(mut self, name: &str, password: &str) -> Self {
        self.accounts.push((name.to_string(), password.to_string()));
        self
    }

    /// Changes how long a lockout lasts; no effect on a profile without lockout.
    pub fn with_lockout_duration(mut self, duration: Duration) -> Self {
        if let Some(lockout) = self.policy.lockout.as_mut() {
            lockout.duration = duration;
        }
        self
    }
}

/// Where a login attempt came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOrigin {
    /// Over the network through the SSH server.
    Ssh { peer: SocketAddr },
    /// On the serial console line (e.g. `ttyS0`).
    Console { line: String },
}

/// How the user tried to prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    Password,
    PublicKey,
}

impl LoginMethod {
    fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Password => "password",
            LoginMethod::PublicKey => "publickey",
        }
    }
}

/// Why the device refused a login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginDenied {
    #[error("invalid user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    #[error("public key not authorized")]
    KeyNotAuthorized,
    #[error("root login over SSH is not permitted")]
    RootLoginNotPermitted,
    #[error("account is disabled")]
    AccountDisabled,
    #[error("account is temporarily locked ({remaining_secs} s left)")]
    LockedOut { remaining_secs: u64 },
}

/// Result of one login attempt, as recorded in the auth log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted,
    Failed(LoginDenied),
}

/// One auth log entry: every accepted login, and every failed one when the
/// profile logs failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRecord {
    pub time: SystemTime,
    pub user: String,
    pub origin: LoginOrigin,
    pub method: LoginMethod,
    pub outcome: AuthOutcome,
    /// Set on the failure that triggered a lockout.
    pub locked_account: bool,
}

/// A TCP port the device listens on, as shown by `ss -ltn`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub addr: SocketAddr,
    /// Program name (`sshd`, `telnetd`, `ftpd`, `httpd`), shown by `ss -ltnp`.
    pub program: String,
}

/// What a command line produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
    /// Exit status of the last command run (0..=255).
    pub status: u8,
    /// The line ran `exit`: the shell session must end with `status`.
    pub exit_requested: bool,
}

// Simulated `sshd` and `login` process ids, for log lines and `ps`.
pub(crate) const SSHD_PID: u32 = 412;
pub(crate) const LOGIN_PID: u32 = 398;

pub(crate) const ROOT_UID: u32 = 0;

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    pub gecos: String,
    pub password: String,
    pub enabled: bool,
    /// A system account (a daemon's): no password at all (`*` in `/etc/shadow`), no login.
    pub system: bool,
    /// The crypt(3) scheme id its password hash is shown with (`6`: SHA-512, `1`: MD5).
    pub scheme: &'static str,
    /// `key-type base64` pairs accepted for public key login.
    pub authorized_keys: Vec<String>,
    consecutive_failures: u32,
    locked_until: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// A process `ps` lists: the daemons started at boot, and the caller's own shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub user: String,
    pub program: String,
}

/// File contents; the dynamic ones are rendered from the device state when read so
/// they can never disagree with it.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    Text(String),
    Passwd,
    Group,
    Shadow,
    AuthLog,
    /// The account's `authorized_keys`, one `type base64` line per key it accepts.
    AuthorizedKeys(String),
    /// The web server's access log, one line a request.
    WebAccessLog,
    /// A program file (`crate::programs`): bytes, not text.
    Binary(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Directory,
    File(Content),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub mode: u16,
    pub owner: String,
    pub group: String,
    pub modified: SystemTime,
}

pub(crate) struct DeviceState {
    pub hostname: String,
    pub profile: Profile,
    pub identity: DeviceIdentity,
    pub policy: AccountPolicy,
    pub accounts: BTreeMap<String, Account>,
    pub groups: Vec<Group>,
    pub files: BTreeMap<String, Node>,
    pub auth_log: Vec<AuthRecord>,
    /// The web server's access log, as its lines.
    pub web_log: Vec<String>,
    pub listeners: Vec<Listener>,
    /// UDP sockets bound for a service (the weak profile's SNMP agent), shown by `ss -lun`.
    pub udp_listeners: Vec<Listener>,
    /// What runs from boot (init and the profile's daemons), as `ps` shows it.
    pub processes: Vec<Process>,
    /// The shells of login sessions (console logins, SSH sessions), as `ps` shows them.
    pub sessions: Vec<Process>,
    next_session_pid: u32,
    /// Where each authentication record also goes (a hardened device's remote
    /// logging, `log_forward`), if anywhere.
    pub log_forward: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// The simulated device: cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct DeviceOs {
    state: Arc<Mutex<DeviceState>>,
}

impl std::fmt::Debug for DeviceOs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("DeviceOs").field("hostname", &state.hostname).field("profile", &state.profile).finish_non_exhaustive()
    }
}

impl DeviceOs {
    pub fn new(config: DeviceConfig) -> Self {
        DeviceOs { state: Arc::new(Mutex::new(DeviceState::build(config))) }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, DeviceState> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn hostname(&self) -> String {
        self.lock().hostname.clone()
    }

    pub fn profile(&self) -> Profile {
        self.lock().profile
    }

    pub fn identity(&self) -> DeviceIdentity {
        self.lock().identity.clone()
    }

    pub fn policy(&self) -> AccountPolicy {
        self.lock().policy
    }

    /// Checks a password login and records it in the auth log.
    pub fn login_with_password(&self, user: &str, password: &str, origin: LoginOrigin) -> Result<(), LoginDenied> {
        self.lock().login(user, Credential::Password(password), origin)
    }

    /// Send every authentication record from now on to `forward` too (remote logging).
    pub fn forward_log(&self, forward: tokio::sync::mpsc::UnboundedSender<String>) {
        self.lock().log_forward = Some(forward);
    }

    /// Checks a public key login (`key` is an OpenSSH `type base64 [comment]` line,
    /// already proven to be held by the client) and records it in the auth log.
    pub fn login_with_public_key(&self, user: &str, key: &str, origin: LoginOrigin) -> Result<(), LoginDenied> {
        self.lock().login(user, Credential::PublicKey(key), origin)
    }

    /// Whether `key` is among `user`'s authorized keys (no logging: this answers the
    /// SSH client's "would you accept this key?" probe).
    pub fn is_authorized_key(&self, user: &str, key: &str) -> bool {
        let wanted = key_identity(key);
        self.lock().accounts.get(user).is_some_and(|account| account.authorized_keys.contains(&wanted))
    }

    /// Lets `user` log in with the OpenSSH public key line `key`.
    /// Returns false when the user does not exist.
    pub fn authorize_key(&self, user: &str, key: &str) -> bool {
        let identity = key_identity(key);
        match self.lock().accounts.get_mut(user) {
            Some(account) => {
                account.authorized_keys.push(identity);
                true
            }
            None => false,
        }
    }

    /// Every auth log record so far, oldest first.
    pub fn auth_log(&self) -> Vec<AuthRecord> {
        self.lock().auth_log.clone()
    }

    /// Publishes the SSH host public key (OpenSSH line) in
    /// `/etc/ssh/ssh_host_ed25519_key.pub`.
    pub fn install_host_public_key(&self, openssh_line: &str) {
        let mut state = self.lock();
        if let Some(node) = state.files.get_mut("/etc/ssh/ssh_host_ed25519_key.pub") {
            node.kind = NodeKind::File(Content::Text(format!("{openssh_line}\n")));
            node.modified = SystemTime::now();
        }
    }

    /// Records that the device listens on `addr` (shown by `ss -ltn`).
    pub fn add_listener(&self, addr: SocketAddr, program: &str) {
        let mut state = self.lock();
        let listener = Listener { addr, program: program.to_string() };
        if !state.listeners.contains(&listener) {
            state.listeners.push(listener);
            state.listeners.sort();
        }
    }

    pub fn remove_listener(&self, addr: SocketAddr) {
        self.lock().listeners.retain(|l| l.addr != addr);
    }

    /// Records that a service has a UDP socket bound on `addr` (shown by `ss -lun`).
    pub fn add_udp_listener(&self, addr: SocketAddr, program: &str) {
        let mut state = self.lock();
        let listener = Listener { addr, program: program.to_string() };
        if !state.udp_listeners.contains(&listener) {
            state.udp_listeners.push(listener);
            state.udp_listeners.sort();
        }
    }

    pub fn remove_udp_listener(&self, addr: SocketAddr) {
        self.lock().udp_listeners.retain(|l| l.addr != addr);
    }

    pub fn listeners(&self) -> Vec<Listener> {
        self.lock().listeners.clone()
    }

    /// Starts a login session's shell for `user` (a child of `parent`, e.g. `sshd` or
    /// `login`): a process `ps` lists until [`DeviceOs::end_session`]. Returns its pid,
    /// what `$$` says in it (see [`DeviceOs::run_in_session`]).
    pub fn open_session(&self, user: &str, parent: u32) -> u32 {
        let mut state = self.lock();
        let pid = state.next_session_pid;
        state.next_session_pid += 1;
        state.sessions.push(Process { pid, ppid: parent, user: user.to_string(), program: "sh".into() });
        pid
    }

    /// The session's shell has ended: its process is gone.
    pub fn end_session(&self, pid: u32) {
        self.lock().sessions.retain(|p| p.pid != pid);
    }

    /// Whether `password` is `user`'s current password (what `passwd` asks first), not
    /// a login: nothing is logged and no lockout counts it.
    pub fn is_current_password(&self, user: &str, password: &str) -> bool {
        self.lock().accounts.get(user).is_some_and(|a| a.password == password)
    }

    /// Sets `user`'s password, as `passwd` does once it has it: refused (with the
    /// reason) when it breaks the profile's policy.
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), String> {
        let mut state = self.lock();
        if let Some(reason) = state.policy.password_policy.and_then(|p| p.violation(password)) {
            return Err(reason);
        }
        let account = state.accounts.get_mut(user).ok_or_else(|| format!("user '{user}' does not exist"))?;
        account.password = password.to_string();
        state.touch("/etc/shadow");
        Ok(())
    }

    /// Appends a request the web server answered to its access log: on a hardened
    /// device in the combined format (client address, the user a request names, time,
    /// request line, status), on a weak one only the request line and status.
    pub fn log_web_request(&self, request: &WebLogEntry<'_>) {
        let mut state = self.lock();
        let line = if state.profile.web_install().full_access_log {
            let time = humantime::format_rfc3339_seconds(SystemTime::now());
            format!("{} - {} [{time}] \"{}\" {} -", request.peer, request.user.unwrap_or("-"), request.request_line, request.status)
        } else {
            format!("\"{}\" {}", request.request_line, request.status)
        };
        state.web_log.push(line);
        state.touch(WEB_ACCESS_LOG);
    }

    /// The shell prompt for `user`, e.g. `root@ru1:~# `.
    pub fn prompt(&self, user: &str) -> String {
        let state = self.lock();
        let sigil = match state.accounts.get(user) {
            Some(account) if account.uid == ROOT_UID => '#',
            _ => '$',
        };
        format!("{user}@{}:~{sigil} ", state.hostname)
    }
}

enum Credential<'a> {
    Password(&'a str),
    PublicKey(&'a str),
}

/// Where the web server's access log is on the device.
pub const WEB_ACCESS_LOG: &str = "/var/log/httpd/access.log";

/// One request for the web server's access log.
pub struct WebLogEntry<'a> {
    pub peer: std::net::IpAddr,
    /// The user a request's `Authorization: Basic` names, known or not.
    pub user: Option<&'a str>,
    pub request_line: &'a str,
    pub status: u16,
}

/// `type base64` of an OpenSSH public key line, dropping the comment.
fn key_identity(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

impl DeviceState {
    fn build(config: DeviceConfig) -> Self {
        let now = SystemTime::now();
        let mut accounts = BTreeMap::new();
        let mut groups = vec![
            Group { name: "root".into(), gid: 0, members: vec![] },
            Group { name: "adm".into(), gid: 4, members: vec![] },
            Group { name: "shadow".into(), gid: 42, members: vec![] },
        ];
        let mut add_account = |name: &str, uid: u32, home: &str, gecos: &str, password: &str, enabled: bool| {
            accounts.insert(
                name.to_string(),
                Account {
                    name: name.to_string(),
                    uid,
                    gid: uid,
                    home: home.to_string(),
                    shell: "/bin/sh".to_string(),
                    gecos: gecos.to_string(),
                    password: password.to_string(),
                    enabled,
                    system: false,
                    scheme: "6",
                    authorized_keys: Vec::new(),
                    consecutive_failures: 0,
                    locked_until: None,
                },
            );
        };
        add_account("root", ROOT_UID, "/root", "root", &config.root_password, true);
        add_account("admin", 1000, "/home/admin", "Vendor default administrator", "admin", config.policy.default_account_enabled);
        groups.push(Group { name: "admin".into(), gid: 1000, members: vec![] });
        for (index, (name, password)) in config.accounts.iter().enumerate() {
            let uid = 1001 + index as u32;
            add_account(name, uid, &format!("/home/{name}"), name, password, true);
            groups.push(Group { name: name.clone(), gid: uid, members: vec![] });
            // Operators read the logs: on a hardened device root cannot log in over
            // SSH, so this is how a test plan reaches the auth log.
            if let Some(adm) = groups.iter_mut().find(|g| g.name == "adm") {
                adm.members.push(name.clone());
            }
        }
        for legacy in config.profile.legacy_accounts() {
            let home = if legacy.uid == ROOT_UID { "/root".to_string() } else { format!("/home/{}", legacy.name) };
            add_account(legacy.name, legacy.uid, &home, legacy.gecos, legacy.password, true);
            if legacy.uid != ROOT_UID {
                groups.push(Group { name: legacy.name.into(), gid: legacy.uid, members: vec![] });
            }
        }
        // The daemons' own accounts: no password, no login shell.
        const SYSTEM_ACCOUNTS: [(&str, u32, &str); 3] =
            [("daemon", 1, "/usr/sbin"), ("www-data", 33, "/var/www"), ("syslog", 104, "/nonexistent")];
        for (name, uid, home) in SYSTEM_ACCOUNTS {
            add_account(name, uid, home, name, "", false);
            groups.push(Group { name: name.into(), gid: uid, members: vec![] });
        }
        for legacy in config.profile.legacy_accounts() {
            if let Some(account) = accounts.get_mut(legacy.name) {
                account.scheme = legacy.scheme;
            }
        }
        for (name, _, _) in SYSTEM_ACCOUNTS {
            if let Some(account) = accounts.get_mut(name) {
                account.system = true;
                account.shell = "/usr/sbin/nologin".to_string();
            }
        }
        if config.profile.vendor_key_installed() {
            if let Some(root) = accounts.get_mut("root") {
                root.authorized_keys.push(key_identity(VENDOR_KEY));
            }
        }
        let mut processes = vec![Process { pid: 1, ppid: 0, user: "root".into(), program: "init".into() }];
        for (index, daemon) in config.profile.daemons().iter().enumerate() {
            let pid = if daemon.program == "sshd" { SSHD_PID } else { 300 + 10 * index as u32 };
            processes.push(Process { pid, ppid: 1, user: daemon.user.into(), program: daemon.program.into() });
            if daemon.program == "httpd" {
                let worker = config.profile.web_install().worker_user;
                processes.push(Process { pid: pid + 1, ppid: pid, user: worker.into(), program: daemon.program.into() });
            }
        }
        processes.sort_by_key(|p| p.pid);

        let modes = config.profile.file_modes();
        let mut files = BTreeMap::new();
        let mut put = |path: &str, kind: NodeKind, mode: u16, owner: &str, group: &str| {
            files.insert(path.to_string(), Node { kind, mode, owner: owner.to_string(), group: group.to_string(), modified: now });
        };
        let dir = || NodeKind::Directory;
        let text = |s: String| NodeKind::File(Content::Text(s));
        for path in ["/", "/etc", "/etc/ssh", "/etc/proofrig", "/var", "/var/log", "/home", "/usr", "/usr/bin", "/usr/sbin"] {
            put(path, dir(), 0o755, "root", "root");
        }
        put("/tmp", dir(), 0o1777, "root", "root");
        put("/root", dir(), 0o700, "root", "root");
        put("/root/.ssh", dir(), 0o700, "root", "root");
        put("/root/.ssh/authorized_keys", NodeKind::File(Content::AuthorizedKeys("root".into())), 0o600, "root", "root");
        for account in accounts.values().filter(|a| a.uid != ROOT_UID && !a.system) {
            put(&account.home, dir(), 0o750, &account.name, &account.name);
        }
        put("/etc/passwd", NodeKind::File(Content::Passwd), 0o644, "root", "root");
        put("/etc/group", NodeKind::File(Content::Group), 0o644, "root", "root");
        put("/etc/shadow", NodeKind::File(Content::Shadow), modes.shadow, "root", "shadow");
        put("/etc/hostname", text(format!("{}\n", config.hostname)), 0o644, "root", "root");
        put("/etc/proofrig-release", text(release_file(&config.identity)), 0o644, "root", "root");
        put("/etc/ssh/sshd_config", text(sshd_config(config.profile, &config.policy)), 0o644, "root", "root");
        put(
            "/etc/ssh/ssh_host_ed25519_key",
            text(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n\
                 (simulated device: the key material is held by the simulator)\n\
                 -----END OPENSSH PRIVATE KEY-----\n"
                    .to_string(),
            ),
            modes.host_private_key,
            "root",
            "root",
        );
        put("/etc/ssh/ssh_host_ed25519_key.pub", text(String::new()), 0o644, "root", "root");
        put("/etc/proofrig/device.conf", text(device_conf(&config)), modes.device_config, "root", "root");
        let software = BASE_SOFTWARE.iter().chain(config.profile.extra_software()).map(|(name, version)| format!("{name} {version}\n"));
        put(SOFTWARE_LIST, text(software.collect()), 0o644, "root", "root");
        put("/var/log/auth.log", NodeKind::File(Content::AuthLog), modes.auth_log, "root", "adm");
        // The set-user-ID root programs, as on any Linux: each does one limited task.
        for program in ["passwd", "sudo"] {
            put(&format!("/usr/bin/{program}"), text(format!("(the {program} program)\n")), 0o4755, "root", "root");
        }
        // The kernel's view: /proc/sys settings and /proc/mounts, readable by every user
        // as on Linux (read-only to the simulated shell, which writes no files).
        for (setting, value) in config.profile.kernel_settings() {
            let path = format!("/proc/sys/{setting}");
            let mut ancestor = String::new();
            for component in path.split('/').filter(|c| !c.is_empty()).take(path.matches('/').count() - 1) {
                ancestor.push('/');
                ancestor.push_str(component);
                put(&ancestor, dir(), 0o555, "root", "root");
            }
            put(&path, text(format!("{value}\n")), 0o644, "root", "root");
        }
        put("/proc/mounts", text(proc_mounts(config.profile)), 0o444, "root", "root");
        for (program, build) in config.profile.network_programs() {
            put(&format!("/usr/sbin/{program}"), NodeKind::File(Content::Binary(elf_image(build))), 0o755, "root", "root");
        }
        // The tester's two packages for 4.2.3.3.5, placed where the rig says.
        put("/var/lib", dir(), 0o755, "root", "root");
        put("/var/lib/updates", dir(), 0o755, "root", "root");
        put(GENUINE_PACKAGE, NodeKind::File(Content::Binary(genuine_package())), 0o644, "root", "root");
        put(TAMPERED_PACKAGE, NodeKind::File(Content::Binary(tampered_package())), 0o644, "root", "root");
        let web = config.profile.web_install();
        for path in ["/etc/httpd", "/etc/httpd/modules.d", "/var/www"] {
            put(path, dir(), 0o755, "root", "root");
        }
        put("/etc/httpd/httpd.conf", text(web.config.to_string()), web.config_mode, "root", web.config_group);
        put("/etc/httpd/mime.types", text(web.mime_types.to_string()), 0o644, "root", "root");
        put("/var/log/httpd", dir(), 0o755, "root", "root");
        put(WEB_ACCESS_LOG, NodeKind::File(Content::WebAccessLog), 0o640, "root", "adm");
        for module in web.modules {
            put(
                &format!("/etc/httpd/modules.d/{module}"),
                text(format!("LoadModule {}\n", module.trim_end_matches(".conf"))),
                0o644,
                "root",
                "root",
            );
        }
        if !web.cgi_programs.is_empty() {
            put("/var/www/cgi-bin", dir(), web.cgi_mode, "root", "root");
        }
        put(web.upload_directory, dir(), 0o755, "www-data", "www-data");
        for program in web.cgi_programs {
            put(&format!("/var/www/cgi-bin/{program}"), text(format!("(the {program} program)\n")), 0o755, "root", "root");
        }
        put("/media", dir(), 0o755, "root", "root");
        put(REMOVABLE_MOUNT, dir(), 0o755, "root", "root");

        DeviceState {
            hostname: config.hostname,
            profile: config.profile,
            identity: config.identity,
            policy: config.policy,
            accounts,
            groups,
            files,
            auth_log: Vec::new(),
            web_log: Vec::new(),
            listeners: Vec::new(),
            udp_listeners: Vec::new(),
            processes,
            sessions: Vec::new(),
            next_session_pid: 2000,
            log_forward: None,
        }
    }

    fn login(&mut self, user: &str, credential: Credential<'_>, origin: LoginOrigin) -> Result<(), LoginDenied> {
        let method = match credential {
            Credential::Password(_) => LoginMethod::Password,
            Credential::PublicKey(_) => LoginMethod::PublicKey,
        };
        let mut locked_account = false;
        let result = self.check_login(user, &credential, &origin, &mut locked_account);
        let outcome = match &result {
            Ok(()) => AuthOutcome::Accepted,
            Err(denied) => AuthOutcome::Failed(denied.clone()),
        };
        if result.is_ok() || self.policy.log_failed_logins {
            let record = AuthRecord { time: SystemTime::now(), user: user.to_string(), origin, method, outcome, locked_account };
            if let Some(forward) = &self.log_forward {
                let _ = forward.send(record.to_log_line(&self.hostname));
            }
            self.auth_log.push(record);
            self.touch("/var/log/auth.log");
        }
        result
    }

    fn check_login(
        &mut self,
        user: &str,
        credential: &Credential<'_>,
        origin: &LoginOrigin,
        locked_account: &mut bool,
    ) -> Result<(), LoginDenied> {
        let policy = self.policy;
        let account = self.accounts.get_mut(user).ok_or(LoginDenied::UnknownUser)?;
        let over_ssh = matches!(origin, LoginOrigin::Ssh { .. });
        if over_ssh && account.uid == ROOT_UID && !policy.root_ssh_login {
            return Err(LoginDenied::RootLoginNotPermitted);
        }
        if !account.enabled || account.system {
            return Err(LoginDenied::AccountDisabled);
        }
        let now = Instant::now();
        // Like pam_faillock's default, root is never locked out: it would lock the
        // operator out of the console, the recovery path.
        let lockout = policy.lockout.filter(|_| account.uid != ROOT_UID);
        if let Some(until) = account.locked_until {
            if until > now {
                let remaining_secs = until.duration_since(now).as_secs_f64().ceil() as u64;
                return Err(LoginDenied::LockedOut { remaining_secs });
            }
            account.locked_until = None;
        }
        let accepted = match credential {
            Credential::Password(password) => account.password == *password,
            Credential::PublicKey(key) => {
                let wanted = key_identity(key);
                account.authorized_keys.contains(&wanted)
            }
        };
        if accepted {
            account.consecutive_failures = 0;
            return Ok(());
        }
        if let (Some(lockout), Credential::Password(_)) = (lockout, credential) {
            account.consecutive_failures += 1;
            if account.consecutive_failures >= lockout.max_failures {
                account.consecutive_failures = 0;
                account.locked_until = Some(now + lockout.duration);
                *locked_account = true;
            }
        }
        Err(match credential {
            Credential::Password(_) => LoginDenied::WrongPassword,
            Credential::PublicKey(_) => LoginDenied::KeyNotAuthorized,
        })
    }

    pub(crate) fn touch(&mut self, path: &str) {
        if let Some(node) = self.files.get_mut(path) {
            node.modified = SystemTime::now();
        }
    }

    pub(crate) fn group_of(&self, gid: u32) -> Option<&Group> {
        self.groups.iter().find(|g| g.gid == gid)
    }

    pub(crate) fn group_named(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Group ids `account` belongs to: its primary group plus memberships.
    pub(crate) fn gids_of(&self, account: &Account) -> Vec<u32> {
        let mut gids = vec![account.gid];
        gids.extend(self.groups.iter().filter(|g| g.members.contains(&account.name) && g.gid != account.gid).map(|g| g.gid));
        gids
    }

    /// Text of a file node, rendering the dynamic ones.
    pub(crate) fn render(&self, content: &Content) -> String {
        match content {
            Content::Text(text) => text.clone(),
            Content::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Content::Passwd => {
                self.accounts_by_uid().map(|a| format!("{}:x:{}:{}:{}:{}:{}\n", a.name, a.uid, a.gid, a.gecos, a.home, a.shell)).collect()
            }
            Content::Group => self.groups.iter().map(|g| format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(","))).collect(),
            Content::Shadow => self
                .accounts_by_uid()
                .map(|a| {
                    let lock = if a.enabled { "" } else { "!" };
                    let hash = match (a.system, a.password.is_empty()) {
                        (true, _) => "*".to_string(),
                        (false, true) => String::new(),
                        (false, false) => format!("{lock}{}", simulated_hash(&a.name, &a.password, a.scheme)),
                    };
                    format!("{}:{hash}:19700:0:99999:7:::\n", a.name)
                })
                .collect(),
            Content::AuthorizedKeys(user) => {
                self.accounts.get(user).map(|a| a.authorized_keys.iter().map(|key| format!("{key}\n")).collect()).unwrap_or_default()
            }
            Content::AuthLog => self.auth_log.iter().map(|record| format!("{}\n", record.to_log_line(&self.hostname))).collect(),
            Content::WebAccessLog => self.web_log.iter().map(|line| format!("{line}\n")).collect(),
        }
    }

    fn accounts_by_uid(&self) -> impl Iterator<Item = &Account> {
        let mut accounts: Vec<&Account> = self.accounts.values().collect();
        accounts.sort_by_key(|a| a.uid);
        accounts.into_iter()
    }
}

/// A shadow-style `$ID$salt$hash` string (`ID` e.g. `6`, SHA-512 crypt). Not crypt(3)-compatible: it only has to
/// look like a hash and change when the password changes, never reveal it.
fn simulated_hash(user: &str, password: &str, scheme: &str) -> String {
    use std::hash::{Hash, Hasher};
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut encoded = String::new();
    for round in 0..6u8 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (round, user, password).hash(&mut hasher);
        let mut value = hasher.finish();
        for _ in 0..10 {
            encoded.push(ALPHABET[(value % 64) as usize] as char);
            value /= 64;
        }
    }
    format!("${scheme}${}${}", &encoded[..8], &encoded[8..])
}

impl AuthRecord {
    /// The record as an `auth.log` line, in the style of sshd / login.
    pub fn to_log_line(&self, hostname: &str) -> String {
        let time = humantime::format_rfc3339_seconds(self.time);
        let method = self.method.as_str();
        let (program, pid, from) = match &self.origin {
            LoginOrigin::Ssh { peer } => ("sshd", SSHD_PID, format!("from {} port {} ssh2", peer.ip(), peer.port())),
            LoginOrigin::Console { line } => ("login", LOGIN_PID, format!("on {line}")),
        };
        let head = format!("{time} {hostname} {program}[{pid}]:");
        match &self.outcome {
            AuthOutcome::Accepted => format!("{head} Accepted {method} for {} {from}", self.user),
            AuthOutcome::Failed(reason) => {
                let invalid = if *reason == LoginDenied::UnknownUser { "invalid user " } else { "" };
                let locked = if self.locked_account { "; account locked" } else { "" };
                format!("{head} Failed {method} for {invalid}{} {from} ({reason}{locked})", self.user)
            }
        }
    }
}

/// `/proc/mounts` of a device with its removable medium mounted at [`REMOVABLE_MOUNT`]
/// with the profile's options.
fn proc_mounts(profile: Profile) -> String {
    format!(
        "/dev/mmcblk0p2 / ext4 ro,relatime 0 0\n\
         proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n\
         sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n\
         tmpfs /tmp tmpfs rw,nosuid,nodev,relatime 0 0\n\
         /dev/mmcblk0p3 /var/log ext4 rw,nosuid,nodev,noexec,relatime 0 0\n\
         /dev/sda1 {REMOVABLE_MOUNT} vfat {},fmask=0022,dmask=0022,codepage=437,iocharset=ascii 0 0\n",
        profile.removable_mount_options()
    )
}

fn release_file(identity: &DeviceIdentity) -> String {
    format!(
        "VENDOR=\"{}\"\nMODEL=\"{}\"\nSERIAL=\"{}\"\nFIRMWARE=\"{}\"\n",
        identity.vendor, identity.model, identity.serial, identity.firmware
    )
}

fn sshd_config(profile: Profile, policy: &AccountPolicy) -> String {
    let algorithms = profile.ssh_algorithms();
    let max_tries = policy.lockout.map_or(6, |l| l.max_failures);
    format!(
        "# sshd configuration ({profile} profile)\n\
         Port 22\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         PermitRootLogin {}\n\
         PasswordAuthentication yes\n\
         PubkeyAuthentication yes\n\
         MaxAuthTries {max_tries}\n\
         KexAlgorithms {}\n\
         HostKeyAlgorithms {}\n\
         Ciphers {}\n\
         MACs {}\n",
        if policy.root_ssh_login { "yes" } else { "no" },
        algorithms.kex.iter().filter(|k| !k.starts_with("ext-info") && !k.starts_with("kex-strict")).copied().collect::<Vec<_>>().join(","),
        algorithms.host_key.join(","),
        algorithms.ciphers.join(","),
        algorithms.macs.join(","),
    )
}

fn device_conf(config: &DeviceConfig) -> String {
    let enabled = |service: &str| {
        if config.profile.extra_services().iter().any(|s| s.name() == service) {
            "enabled"
        } else {
            "disabled"
        }
    };
    let mut text = format!(
        "# {} {} device configuration\n\
         hostname={}\n\
         management.ssh=enabled\n\
         management.telnet={}\n\
         management.ftp={}\n\
         management.http={}\n",
        config.identity.vendor,
        config.identity.model,
        config.hostname,
        enabled("telnet"),
        enabled("ftp"),
        enabled("http"),
    );
    if config.profile.config_holds_root_password() {
        text.push_str(&format!("maintenance.root_password={}\n", config.root_password));
    }
    text
}
