//! A real OpenSSH server (Debian's `/usr/sbin/sshd`) on loopback, for SSH tests and benches.
//!
//! Each [`Sshd`] runs in the foreground with its own config, host keys, authorized_keys
//! and client key pair in a temporary directory. It is started inside private mount and
//! PID namespaces (`unshare`), where a copy of `/etc/shadow` giving root a known
//! password is bind-mounted over the real one, `/run` (privsep dir) and `/root` (home,
//! shell history) are private, and the login records (wtmp, btmp, lastlog) point at
//! empty files. Nothing outside the namespaces changes. Killing the `unshare` process
//! kills sshd (the namespace's init) and, with it, every session it spawned, which is
//! exactly what a test of "the device went away" needs.
//!
//! Options make it look like a particular device (see [`SshdBuilder`]): extra local
//! accounts (`/etc/passwd`, `/etc/group` and `/etc/shadow` copies, homes on a private
//! `/home`), locked or not; PAM with a `pam_faillock` lockout; an authentication log
//! with syslog timestamps at `/var/log/auth.log` (sshd and PAM log to a private
//! `/dev/log` the harness reads); a network namespace of its own, where the device's
//! socket list and a scan of all ports see nothing but the device; plain-text
//! listeners (a telnet or FTP banner) next to SSH.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{free_port, kill_pid_namespace, require_program, running_as_root, write_private};

const SSHD: &str = "/usr/sbin/sshd";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const UNSHARE: &str = "/usr/bin/unshare";
const OPENSSL: &str = "/usr/bin/openssl";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
const NSENTER: &str = "/usr/bin/nsenter";
const IP: &str = "/sbin/ip";
const SOCAT: &str = "/usr/bin/socat";
const PS: &str = "/usr/bin/ps";

/// Where the authentication log is inside the namespace (with [`SshdBuilder::syslog`]).
pub const AUTH_LOG: &str = "/var/log/auth.log";

/// First uid/gid given to extra accounts (above Debian's dynamic ranges).
const FIRST_ACCOUNT_ID: u32 = 60100;

/// How long sshd gets to accept connections before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(5);

/// Options for an [`Sshd`]; start with [`Sshd::builder`].
#[derive(Debug, Clone)]
pub struct SshdBuilder {
    host_key_types: Vec<String>,
    extra_config: Vec<String>,
    sftp: bool,
    accounts: Vec<Account>,
    private_network: bool,
    listeners: Vec<(u16, String)>,
    syslog: bool,
    auth_log_mode: u32,
    forward_log: Option<PathBuf>,
    private_processes: bool,
    pam: bool,
    faillock: Option<Faillock>,
    /// Programs copied set-user-ID root into a private `/usr/local/bin` (host path, name there).
    setuid_root_copies: Vec<(PathBuf, String)>,
    net_settings: Vec<(String, String)>,
    kernel_shown: Vec<(String, String)>,
    removable_media: Vec<(String, String)>,
    hidden: Vec<String>,
    stand_ins: Vec<String>,
    /// Extra public key lines authorized for every account (a vendor's factory key).
    authorized_keys: Vec<String>,
    /// sshd's `ListenAddress`: 127.0.0.1 unless a test with a network namespace of its
    /// own asks for every interface.
    listen_address: String,
    inside: Vec<String>,
    password_changes: Option<PasswordChanges>,
    network_programs: Vec<String>,
    installer: Option<Installer>,
}

/// How the device's own `passwd` (Debian's, through PAM's `passwd` service) treats a
/// new password, for a rig that declares it as `password_change_command`.
#[derive(Debug, Clone, Copy)]
pub enum PasswordChanges {
    /// `pam_pwquality` refuses a password shorter than `min_length` or with fewer than
    /// `classes` character classes, for root too (`enforce_for_root`), before `pam_unix`
    /// stores it. The dictionary check is off (it needs cracklib's word list).
    Checked { min_length: u32, classes: u32 },
    /// `pam_unix` alone: any password is stored, as an image with no policy does.
    Unchecked,
}

/// A local account created inside the server's namespace, as a vendor's image would
/// ship it (e.g. a default `admin`/`admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub password: String,
    /// Locked (`!` before the hash, as `passwd -l` does): no password login.
    pub locked: bool,
    /// Supplementary groups that exist on the host, e.g. `adm` to read the auth log.
    pub groups: Vec<String>,
    /// How its password is stored in `/etc/shadow`.
    pub storage: PasswordStorage,
    /// A user id given by the vendor (e.g. 0 for a root alias), instead of a free one.
    pub uid: Option<u32>,
}

/// How an [`Account`]'s password is stored in the server's `/etc/shadow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordStorage {
    /// SHA-512 crypt (`$6$`, `openssl passwd -6`), as Debian stores it.
    Sha512,
    /// MD5 crypt (`$1$`, `openssl passwd -1`), as old firmware did.
    Md5,
    /// An empty password field: no password at all.
    Empty,
}

impl Account {
    /// An enabled account logging in with `password`, shell `/bin/sh`, home `/home/NAME`.
    pub fn new(name: &str, password: &str) -> Account {
        Account {
            name: name.to_string(),
            password: password.to_string(),
            locked: false,
            groups: Vec::new(),
            storage: PasswordStorage::Sha512,
            uid: None,
        }
    }

    /// Its password is stored as an MD5 crypt hash (`$1$`).
    pub fn md5(mut self) -> Account {
        self.storage = PasswordStorage::Md5;
        self
    }

    /// Its password field in `/etc/shadow` is empty.
    pub fn empty_password(mut self) -> Account {
        self.storage = PasswordStorage::Empty;
        self
    }

    /// It has user id (and primary group) `uid`, e.g. 0 for a second root; with 0 its
    /// home is `/root`.
    pub fn uid(mut self, uid: u32) -> Account {
        self.uid = Some(uid);
        self
    }

    /// The account exists but its password is locked.
    pub fn locked(mut self) -> Account {
        self.locked = true;
        self
    }

    /// Also a member of `group` (a group of the host's `/etc/group`).
    pub fn in_group(mut self, group: &str) -> Account {
        self.groups.push(group.to_string());
        self
    }
}

/// A `pam_faillock` lockout: `deny` consecutive failed passwords lock the account for
/// `unlock_time` (root too when `even_deny_root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faillock {
    pub deny: u32,
    pub unlock_time: Duration,
    pub even_deny_root: bool,
}

impl SshdBuilder {
    /// Host key types to generate (`ssh-keygen -t`), in order; default `ed25519` only.
    pub fn host_key_types(mut self, types: &[&str]) -> Self {
        self.host_key_types = types.iter().map(|t| t.to_string()).collect();
        self
    }

    /// An extra `sshd_config` line, e.g. `Ciphers aes128-ctr` or `MaxAuthTries 2`.
    /// Later lines cannot override earlier ones in sshd (first value wins), so extra
    /// lines go before the defaults.
    pub fn config(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Leave out the `sftp` subsystem (a device that only speaks SCP).
    pub fn without_sftp(mut self) -> Self {
        self.sftp = false;
        self
    }

    /// Create a local account inside the namespace (see [`Account`]).
    pub fn account(mut self, account: Account) -> Self {
        self.accounts.push(account);
        self
    }

    /// Authentication attempts allowed per connection (`MaxAuthTries`): sshd refuses
    /// `tries - 1` wrong passwords and disconnects at the last one.
    pub fn max_auth_tries(self, tries: u32) -> Self {
        self.config(format!("MaxAuthTries {tries}"))
    }

    /// Authenticate through PAM (`UsePAM yes`) with a minimal stack of `pam_unix` (the
    /// server's own `/etc/pam.d/sshd`, bind-mounted over Debian's inside the namespace).
    pub fn pam(mut self) -> Self {
        self.pam = true;
        self
    }

    /// Accounts may change their password with Debian's `passwd`, through the PAM stack
    /// `changes` gives (the server's own `/etc/pam.d/passwd`). The namespace gets a
    /// private, writable copy of `/etc`, since `passwd` replaces `/etc/shadow` by
    /// renaming a new file over it, which a file bind-mounted there would refuse.
    pub fn password_changes(mut self, changes: PasswordChanges) -> Self {
        self.password_changes = Some(changes);
        self
    }

    /// PAM with `pam_faillock`: after `deny` consecutive failed passwords an account
    /// is locked for `unlock_time`, and then even the right password is refused. The
    /// tally lives in [`Sshd::faillock_dir`]. Root is exempt unless `even_deny_root`.
    /// The lock lifts once the last failure is more than `unlock_time` old, counted in
    /// whole seconds (so up to a second later). PAM adds no delay after a failure.
    pub fn faillock(mut self, deny: u32, unlock_time: Duration, even_deny_root: bool) -> Self {
        self.pam = true;
        self.faillock = Some(Faillock { deny, unlock_time, even_deny_root });
        self
    }

    /// sshd (and PAM) log through syslog into an authentication log with syslog's
    /// timestamps, the host name and `program[pid]:`, like rsyslog's
    /// `/var/log/auth.log` (which is where a session on the server finds it, mode
    /// 0640 root:adm): read it with [`Sshd::auth_log`]. Without this, sshd logs to
    /// stderr ([`Sshd::log`]), untimestamped.
    pub fn syslog(mut self) -> Self {
        self.syslog = true;
        self
    }

    /// Hand every record on to the syslog socket at `socket` as well (with
    /// [`SshdBuilder::syslog`]): the device's remote logging, e.g. an
    /// [`crate::rsyslog::RsyslogForwarder`].
    pub fn forward_log(mut self, socket: impl Into<PathBuf>) -> Self {
        self.forward_log = Some(socket.into());
        self
    }

    /// The permission bits of the authentication log (with [`SshdBuilder::syslog`]);
    /// 0640 root:adm by default, as rsyslog makes it.
    pub fn auth_log_mode(mut self, mode: u32) -> Self {
        self.auth_log_mode = mode;
        self
    }

    /// A `/proc` of the server's own PID namespace, so `ps` in a session lists the
    /// device's processes (sshd as process 1, its sessions, the plain listeners), not
    /// the test machine's. Needs Debian's `procps` for `ps`.
    pub fn private_processes(mut self) -> Self {
        self.private_processes = true;
        self
    }

    /// A copy of the host's `program` installed set-user-ID root as `/usr/local/bin/NAME`
    /// (on a private tmpfs), as a careless image leaves a root shell for maintenance.
    pub fn setuid_root_copy(mut self, program: impl Into<PathBuf>, name: &str) -> Self {
        self.setuid_root_copies.push((program.into(), name.to_string()));
        self
    }

    /// A network namespace of its own (only loopback, up): nothing else on the test
    /// machine is reachable from the server or listens next to it, so a scan of all
    /// ports or the server's own `ss` sees only what the test set up. The server is
    /// reached from inside that namespace: run clients with [`Sshd::command`].
    pub fn private_network(mut self) -> Self {
        self.private_network = true;
        self
    }

    /// A plain-text TCP listener on 127.0.0.1:`port` next to sshd (inside the
    /// namespaces, so it dies with the server) that sends `banner` to every
    /// connection, e.g. `23` with a telnet login prompt or `21` with an FTP `220`
    /// greeting: the unnecessary service a test should find.
    pub fn plain_listener(mut self, port: u16, banner: &str) -> Self {
        self.listeners.push((port, banner.to_string()));
        self
    }

    /// Sets a `net.*` setting of the server's own network namespace (needs
    /// [`SshdBuilder::private_network`]; the test machine's are never touched): `path` is
    /// under `/proc/sys`, e.g. `net/ipv4/tcp_syncookies`. Later calls win.
    pub fn net_setting(mut self, path: &str, value: &str) -> Self {
        assert!(path.starts_with("net/"), "only net.* settings are per network namespace, not {path}");
        self.net_settings.push((path.to_string(), value.to_string()));
        self
    }

    /// Shows sessions on the server `value` for the `kernel.*` setting at `path` (under
    /// `/proc/sys`, e.g. `kernel/randomize_va_space`) by a file bind-mounted over it in
    /// the server's own mount namespace. Kernel settings are not per namespace: the
    /// kernel still behaves as the test machine is set; only what the device reads
    /// changes, so a plan can be shown a careless device's value.
    pub fn kernel_shown(mut self, path: &str, value: &str) -> Self {
        assert!(path.starts_with("kernel/"), "kernel_shown is for kernel.* settings, not {path}");
        self.kernel_shown.push((path.to_string(), value.to_string()));
        self
    }

    /// A removable medium (a RAM disk) mounted at `/media/NAME` with mount `options`
    /// (e.g. `nosuid,nodev,noexec`, or `defaults`), inside the server's mount namespace
    /// on a private `/media`.
    pub fn removable_medium(mut self, name: &str, options: &str) -> Self {
        self.removable_media.push((name.to_string(), options.to_string()));
        self
    }

    /// An empty, read-only directory over the directory `path` in the server's mount
    /// namespace, e.g. `/proc/sys/net/ipv4`: a device whose kernel shows no such files.
    pub fn hidden(mut self, path: &str) -> Self {
        self.hidden.push(path.to_string());
        self
    }

    /// A process named `name` (a copy of `sleep`) running on the server for its
    /// lifetime: stands in for a daemon that is not installed here (e.g. `udisksd`, an
    /// automounter), as the device's `ps` shows it.
    /// sshd listens on every interface of its network namespace (`ListenAddress
    /// 0.0.0.0`), as a device that does not restrict where its services are reachable;
    /// needs [`SshdBuilder::private_network`], so the test machine's interfaces stay out.
    pub fn listen_on_every_interface(mut self) -> Self {
        self.listen_address = "0.0.0.0".to_string();
        self
    }

    /// Also authorize this OpenSSH public key line (every account shares the server's
    /// one `authorized_keys` file), as firmware that ships a vendor's factory key does.
    pub fn authorized_key(mut self, line: &str) -> Self {
        self.authorized_keys.push(line.to_string());
        self
    }

    /// A firmware installer on the device, treating a package as `installer` says, and
    /// the tester's two packages (TS 33.117 4.2.3.3.5); see [`UpdateKit`]. None by
    /// default: making the vendor's key, signature and packages takes four processes.
    pub fn installer(mut self, installer: Installer) -> Self {
        self.installer = Some(installer);
        self
    }

    /// One more program file the device documents as serving its network (TS 33.117
    /// 4.3.3.1.5 reads how it was built), beside sshd's own.
    pub fn network_program(mut self, path: &str) -> Self {
        self.network_programs.push(path.to_string());
        self
    }

    pub fn stand_in_process(mut self, name: &str) -> Self {
        assert!(!name.contains(['/', '\'', ' ']), "a plain program name, not {name}");
        self.stand_ins.push(name.to_string());
        self
    }

    /// Shell lines run as root inside the server's namespaces just before sshd starts
    /// (after the private mounts above): the device's own files bind-mounted where its
    /// software looks for them, a daemon started in the background (it dies with the
    /// namespace). Another test peer's building block, e.g. [`crate::web_host`].
    pub fn inside(mut self, script: impl Into<String>) -> Self {
        self.inside.push(script.into());
        self
    }

    pub fn start(self) -> Sshd {
        Sshd::start_with(self)
    }
}

/// A running sshd; stopped (with all its sessions) on drop.
pub struct Sshd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    host_keys: Vec<HostKey>,
    accounts: Vec<Account>,
    private_network: bool,
    syslog: Option<SyslogReceiver>,
    network_programs: Vec<String>,
    update_kit: Option<UpdateKit>,
}

/// One host key of the server, as `ssh-keygen` describes it.
#[derive(Debug, Clone)]
pub struct HostKey {
    /// `ssh-keygen -t` name, e.g. `ed25519`.
    pub kind: String,
    /// Algorithm name from the public key line, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:...` exactly as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// `<algorithm> <base64>` from the `.pub` file.
    pub public_line: String,
}

impl Sshd {
    pub fn builder() -> SshdBuilder {
        SshdBuilder {
            host_key_types: vec!["ed25519".into()],
            extra_config: Vec::new(),
            sftp: true,
            accounts: Vec::new(),
            private_network: false,
            listeners: Vec::new(),
            syslog: false,
            auth_log_mode: 0o640,
            forward_log: None,
            private_processes: false,
            pam: false,
            faillock: None,
            setuid_root_copies: Vec::new(),
            net_settings: Vec::new(),
            kernel_shown: Vec::new(),
            removable_media: Vec::new(),
            hidden: Vec::new(),
            stand_ins: Vec::new(),
            authorized_keys: Vec::new(),
            listen_address: "127.0.0.1".to_string(),
            inside: Vec::new(),
            password_changes: None,
            network_programs: vec![SSHD.to_string()],
            installer: None,
        }
    }

    /// An sshd with default settings: ed25519 host key, key and password auth for root, SFTP.
    pub fn start() -> Sshd {
        Self::builder().start()
    }

    fn start_with(options: SshdBuilder) -> Sshd {
        for (path, package) in [
            (SSHD, "openssh-server"),
            (SFTP_SERVER, "openssh-sftp-server"),
            (SSH_KEYGEN, "openssh-client"),
            (UNSHARE, "util-linux"),
            (OPENSSL, "openssl"),
        ] {
            require_program(path, package);
        }
        if options.private_network {
            require_program(NSENTER, "util-linux");
            require_program(IP, "iproute2");
        }
        assert!(
            options.net_settings.is_empty() || options.private_network,
            "net.* settings of the sshd test peer need its own network namespace (private_network): the test machine's are never changed"
        );
        assert!(
            options.listen_address == "127.0.0.1" || options.private_network,
            "an sshd test peer listening on every interface needs its own network namespace (private_network): no other addresses than loopback"
        );
        if !options.listeners.is_empty() {
            require_program(SOCAT, "socat");
        }
        if options.private_processes {
            require_program(PS, "procps");
        }
        if options.faillock.is_some() {
            let module = format!("/usr/lib/{}-linux-gnu/security/pam_faillock.so", std::env::consts::ARCH);
            require_program(&module, "libpam-modules");
        }
        if let Some(PasswordChanges::Checked { .. }) = options.password_changes {
            let module = format!("/usr/lib/{}-linux-gnu/security/pam_pwquality.so", std::env::consts::ARCH);
            require_program(&module, "libpam-pwquality");
        }
        assert!(
            running_as_root(),
            "the sshd test peer must run as root: it starts sshd in private namespaces \
             and logs in as root (run the tests as root, e.g. in the CI container)"
        );

        let dir = tempfile::Builder::new().prefix("proofrig-sshd-").tempdir().expect("temp dir for sshd");
        let base = dir.path();
        let host_keys: Vec<HostKey> = options.host_key_types.iter().map(|kind| generate_host_key(base, kind)).collect();
        keygen(&base.join("client_ed25519"), "ed25519");
        fs::copy(base.join("client_ed25519.pub"), base.join("authorized_keys")).expect("authorized_keys");
        // Public keys only, readable by the device's accounts as OpenSSH's are (0644), in a
        // directory they may pass through but not list (0711): a rig declares the file as
        // `authorized_keys_files` and its operator reads it (TS 33.117 4.2.3.4.2.3).
        let mut keys = fs::read_to_string(base.join("authorized_keys")).expect("read authorized_keys");
        for line in &options.authorized_keys {
            keys.push_str(line);
            keys.push('\n');
        }
        fs::write(base.join("authorized_keys"), keys).expect("authorized_keys");
        fs::set_permissions(base.join("authorized_keys"), fs::Permissions::from_mode(0o644)).expect("chmod authorized_keys");
        fs::set_permissions(base, fs::Permissions::from_mode(0o711)).expect("chmod the sshd directory");

        let password = format!("pw-{:x}-{:x}", std::process::id(), nanos_now());
        let accounts = write_account_files(base, &password, &options.accounts);
        fs::write(base.join("empty"), b"").expect("empty login-record file");
        fs::create_dir(base.join("home")).expect("private home");
        fs::create_dir(base.join("files")).expect("files dir");
        let update_kit = options.installer.map(|installer| UpdateKit::write(base, installer));
        if let Some(changes) = options.password_changes {
            fs::write(base.join("pam-passwd"), passwd_stack(changes)).expect("passwd's PAM stack");
        }
        if options.pam {
            fs::write(base.join("pam-sshd"), pam_stack(base, options.faillock)).expect("PAM stack");
            fs::create_dir(base.join("faillock")).expect("faillock tally dir");
        }
        for (port, banner) in &options.listeners {
            fs::write(base.join(format!("banner-{port}")), banner).expect("listener banner");
        }
        let syslog = options.syslog.then(|| SyslogReceiver::start(base, options.auth_log_mode, options.forward_log.clone()));
        fs::write(base.join("start.sh"), namespace_script(base, &options, &accounts)).expect("start script");

        let mut unshare_args = vec!["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child=SIGKILL"];
        if options.private_network {
            unshare_args.push("--net");
        }
        // The port is picked before sshd binds it; if another process wins that race,
        // sshd exits at once and we try another port.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            fs::write(base.join("sshd_config"), sshd_config(base, port, &options, &host_keys)).expect("sshd_config");
            let log = fs::File::create(base.join("sshd.log")).expect("sshd log");
            let mut child = Command::new(UNSHARE)
                .args(&unshare_args)
                .arg("/bin/sh")
                .arg(base.join("start.sh"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("spawn unshare for sshd");
            if wait_until_listening(&mut child, base, &options.listen_address, port, options.private_network) {
                return Sshd {
                    child: Some(child),
                    dir,
                    port,
                    password,
                    host_keys,
                    accounts: options.accounts.clone(),
                    private_network: options.private_network,
                    syslog,
                    network_programs: options.network_programs.clone(),
                    update_kit: update_kit.clone(),
                };
            }
            kill_pid_namespace(&mut child, Duration::from_secs(2));
            last_log = read_log(base);
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd test peer did not start listening within {STARTUP_LIMIT:?}; its log:\n{last_log}");
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The device's firmware installer and the tester's two packages (TS 33.117
    /// 4.2.3.3.5), if it was given one ([`SshdBuilder::installer`]).
    pub fn update_kit(&self) -> Option<&UpdateKit> {
        self.update_kit.as_ref()
    }

    /// The program files of the device's network-facing services: sshd's, and any
    /// [`SshdBuilder::network_program`].
    pub fn network_programs(&self) -> &[String] {
        &self.network_programs
    }

    /// The user tests log in as.
    pub fn user(&self) -> &str {
        "root"
    }

    /// root's password inside the server's namespace.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Private key (no passphrase) whose public half is in authorized_keys.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The first (or only) host key.
    pub fn host_key(&self) -> &HostKey {
        &self.host_keys[0]
    }

    pub fn host_keys(&self) -> &[HostKey] {
        &self.host_keys
    }

    /// `SHA256:...` of the first host key, exactly as `ssh-keygen -lf` prints it.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_keys[0].fingerprint
    }

    /// known_hosts lines for all host keys, as `ssh-keyscan` would write them.
    pub fn known_hosts_content(&self) -> String {
        self.host_keys.iter().map(|k| format!("[127.0.0.1]:{} {}\n", self.port, k.public_line)).collect()
    }

    /// A known_hosts file holding all host keys of this server.
    pub fn known_hosts_path(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        fs::write(&path, self.known_hosts_content()).expect("write known_hosts");
        path
    }

    /// The temporary directory (visible to the server too: /tmp is shared).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A directory for files tests want the server to serve.
    pub fn files_dir(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// What sshd logged so far: its stderr (`-e`, captured in a file), followed by the
    /// authentication log when it logs through syslog.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// The authentication log (with [`SshdBuilder::syslog`]): one line per record,
    /// `Mmm dd hh:mm:ss HOST program[pid]: message`. Records reach it through a
    /// socket, a moment after sshd wrote them: use [`Sshd::wait_for_auth_log`] to
    /// wait for one.
    pub fn auth_log(&self) -> String {
        fs::read_to_string(self.auth_log_path()).unwrap_or_default()
    }

    /// The authentication log's path on the test machine; inside the namespace it is
    /// [`AUTH_LOG`].
    pub fn auth_log_path(&self) -> PathBuf {
        self.dir.path().join("auth.log")
    }

    /// Waits until the authentication log has a line containing `needle` (at most
    /// `limit`); returns the whole log, or `None` on time-out.
    pub fn wait_for_auth_log(&self, needle: &str, limit: Duration) -> Option<String> {
        assert!(self.syslog.is_some(), "the authentication log needs SshdBuilder::syslog");
        crate::wait_for_line(|| self.auth_log(), needle, limit)
    }

    /// The accounts created with [`SshdBuilder::account`].
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// `pam_faillock`'s tally directory (with [`SshdBuilder::faillock`]).
    pub fn faillock_dir(&self) -> PathBuf {
        self.dir.path().join("faillock")
    }

    /// A command for `program` that runs where the server is reachable: inside its
    /// network namespace with [`SshdBuilder::private_network`] (through `nsenter`;
    /// files and everything else are the test machine's), as is otherwise.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        if !self.private_network {
            return Command::new(program);
        }
        let pid = self.child.as_ref().expect("the server is running").id();
        let mut command = Command::new(NSENTER);
        command.arg(format!("--net=/proc/{pid}/ns/net")).arg("--").arg(program);
        command
    }

    /// Kill sshd and every session it spawned, and reap it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_pid_namespace(&mut child, Duration::from_secs(2));
        }
        if let Some(syslog) = self.syslog.take() {
            syslog.stop();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_log(base: &Path) -> String {
    let stderr = fs::read_to_string(base.join("sshd.log")).unwrap_or_default();
    stderr + &fs::read_to_string(base.join("auth.log")).unwrap_or_default()
}

fn wait_until_listening(child: &mut Child, base: &Path, address: &str, port: u16, own_network: bool) -> bool {
    let deadline = Instant::now() + STARTUP_LIMIT;
    let listening = format!("Server listening on {address} port {port}");
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        // sshd prints this after listen(2), so connections are accepted from now on. Not
        // probing with a connection keeps the log free of connections tests did not make.
        // A quiet server (LogLevel ERROR) says nothing: then its network namespace's
        // socket table shows the listener (only with a namespace of its own is that
        // table sshd's alone).
        if read_log(base).contains(&listening) || (own_network && listening_in_namespace(child.id(), port)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn nanos_now() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn keygen(path: &Path, kind: &str) {
    let status = Command::new(SSH_KEYGEN)
        .args(["-q", "-t", kind, "-N", "", "-C", "proofrig-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen -t {kind} failed");
}

fn generate_host_key(dir: &Path, kind: &str) -> HostKey {
    let path = dir.join(format!("host_{kind}"));
    keygen(&path, kind);
    let out = Command::new(SSH_KEYGEN).arg("-lf").arg(path.with_extension("pub")).output().expect("ssh-keygen -lf");
    let listing = String::from_utf8_lossy(&out.stdout);
    let fingerprint = listing.split_whitespace().nth(1).expect("fingerprint in ssh-keygen -lf output").to_string();
    let public = fs::read_to_string(path.with_extension("pub")).expect("host public key");
    let mut fields = public.split_whitespace();
    let algorithm = fields.next().expect("key algorithm").to_string();
    let blob = fields.next().expect("key blob");
    HostKey { kind: kind.to_string(), public_line: format!("{algorithm} {blob}"), algorithm, fingerprint }
}

/// `password`'s SHA-512 crypt hash, as `/etc/shadow` holds it.
fn password_hash(password: &str) -> String {
    crypt_hash(password, "-6")
}

/// `password` hashed by `openssl passwd` with `scheme` (`-6` SHA-512 crypt, `-1` MD5 crypt).
fn crypt_hash(password: &str, scheme: &str) -> String {
    let mut openssl = Command::new(OPENSSL)
        .args(["passwd", scheme, "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl passwd");
    openssl.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("feed openssl");
    let out = openssl.wait_with_output().expect("openssl passwd output");
    assert!(out.status.success(), "openssl passwd {scheme} failed");
    String::from_utf8(out.stdout).expect("hash is text").trim().to_string()
}

/// An extra account with the uid (= gid) it was given.
struct Created {
    account: Account,
    id: u32,
}

/// Copies of /etc/shadow (root's hash is `root_password`'s, plus the accounts), and
/// with accounts also of /etc/passwd and /etc/group, in `base`.
fn write_account_files(base: &Path, root_password: &str, accounts: &[Account]) -> Vec<Created> {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let group = fs::read_to_string("/etc/group").expect("read /etc/group");
    let field = |line: &str, n: usize| line.split(':').nth(n).unwrap_or("").to_string();
    let used: Vec<u32> = passwd.lines().chain(group.lines()).filter_map(|l| field(l, 2).parse().ok()).collect();
    let mut next_id = FIRST_ACCOUNT_ID;
    let mut created = Vec::new();
    for account in accounts {
        assert!(
            !passwd.lines().any(|l| field(l, 0) == account.name) && !created.iter().any(|c: &Created| c.account.name == account.name),
            "account `{}` already exists; pick another name",
            account.name
        );
        assert!(
            !account.name.is_empty() && account.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "account name `{}`: letters, digits, - and _ only",
            account.name
        );
        for wanted in &account.groups {
            assert!(group.lines().any(|l| field(l, 0) == *wanted), "group `{wanted}` of account `{}` does not exist", account.name);
        }
        if let Some(uid) = account.uid {
            created.push(Created { account: account.clone(), id: uid });
            continue;
        }
        while used.contains(&next_id) {
            next_id += 1;
        }
        created.push(Created { account: account.clone(), id: next_id });
        next_id += 1;
    }

    let shadow = fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
    let root_hash = password_hash(root_password);
    let mut copy = String::new();
    let mut found = false;
    for line in shadow.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"root") && fields.len() > 2 {
            fields[1] = &root_hash;
            // An empty "last change" could force a password change on some setups.
            fields[2] = "19000";
            found = true;
        }
        copy.push_str(&fields.join(":"));
        copy.push('\n');
    }
    if !found {
        copy.push_str(&format!("root:{root_hash}:19000:0:99999:7:::\n"));
    }
    for c in &created {
        let lock = if c.account.locked { "!" } else { "" };
        let hash = match c.account.storage {
            PasswordStorage::Sha512 => format!("{lock}{}", password_hash(&c.account.password)),
            PasswordStorage::Md5 => format!("{lock}{}", crypt_hash(&c.account.password, "-1")),
            PasswordStorage::Empty => String::new(),
        };
        copy.push_str(&format!("{}:{hash}:19000:0:99999:7:::\n", c.account.name));
    }
    // As Debian ships it: root's, readable by group shadow (an auditing account may be in it).
    let shadow_path = base.join("shadow");
    write_private(&shadow_path, &copy);
    fs::set_permissions(&shadow_path, fs::Permissions::from_mode(0o640)).expect("shadow copy mode");
    std::os::unix::fs::chown(&shadow_path, Some(0), Some(group_id("shadow"))).expect("shadow copy owner");
    if created.is_empty() {
        return created;
    }

    let mut passwd_copy = passwd.clone();
    let mut group_copy = String::new();
    for line in group.lines() {
        let name = field(line, 0);
        let members: Vec<&str> = created.iter().filter(|c| c.account.groups.contains(&name)).map(|c| c.account.name.as_str()).collect();
        group_copy.push_str(line);
        if !members.is_empty() {
            if !line.ends_with(':') {
                group_copy.push(',');
            }
            group_copy.push_str(&members.join(","));
        }
        group_copy.push('\n');
    }
    for c in &created {
        let name = &c.account.name;
        let home = if c.id == 0 { "/root".to_string() } else { format!("/home/{name}") };
        passwd_copy.push_str(&format!("{name}:x:{id}:{id}:{name}:{home}:/bin/sh\n", id = c.id));
        if c.account.uid.is_none() {
            group_copy.push_str(&format!("{name}:x:{}:\n", c.id));
        }
    }
    fs::write(base.join("passwd"), passwd_copy).expect("write passwd copy");
    fs::write(base.join("group"), group_copy).expect("write group copy");
    created
}

/// `/etc/pam.d/passwd` for the server (see [`PasswordChanges`]).
fn passwd_stack(changes: PasswordChanges) -> String {
    match changes {
        PasswordChanges::Checked { min_length, classes } => format!(
            "password requisite pam_pwquality.so minlen={min_length} minclass={classes} dictcheck=0 enforce_for_root retry=1\n\
             password required  pam_unix.so use_authtok yescrypt\n"
        ),
        PasswordChanges::Unchecked => "password required pam_unix.so yescrypt\n".to_string(),
    }
}

/// `/etc/pam.d/sshd` for the server: pam_unix, with pam_faillock around it when asked.
fn pam_stack(base: &Path, faillock: Option<Faillock>) -> String {
    let mut stack = String::from("# PAM for the proofrig sshd test peer\n");
    match faillock {
        // nodelay: no 2 s pause after each failure, so lockout tests stay quick.
        None => stack.push_str("auth     required                 pam_unix.so nodelay\n"),
        Some(f) => {
            let secs = f.unlock_time.as_secs().max(1);
            let mut opts = format!("dir={} deny={} unlock_time={secs} audit nodelay", base.join("faillock").display(), f.deny);
            if f.even_deny_root {
                opts.push_str(&format!(" even_deny_root root_unlock_time={secs}"));
            }
            stack.push_str(&format!(
                "auth     requisite                pam_faillock.so preauth {opts}\n\
                 auth     [success=1 default=bad]  pam_unix.so nodelay\n\
                 auth     [default=die]            pam_faillock.so authfail {opts}\n\
                 auth     sufficient               pam_faillock.so authsucc {opts}\n\
                 auth     required                 pam_deny.so\n"
            ));
        }
    }
    stack.push_str(
        "account  required                 pam_unix.so\n\
         password required                 pam_deny.so\n\
         session  required                 pam_permit.so\n",
    );
    stack
}

/// Whether the network namespace of process `pid` has a TCP socket listening on `port`.
fn listening_in_namespace(pid: u32, port: u16) -> bool {
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1].ends_with(&wanted) && fields[3] == "0A"
    })
}

/// The syslog daemon of the namespace: receives what sshd and PAM send to `/dev/log`
/// and appends it to `auth.log` in rsyslog's traditional format.
struct SyslogReceiver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogReceiver {
    fn start(base: &Path, mode: u32, forward: Option<PathBuf>) -> SyslogReceiver {
        let socket_path = base.join("log.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind the syslog socket");
        // Sessions log as their user, not only the root monitor.
        fs::set_permissions(&socket_path, fs::Permissions::from_mode(0o666)).expect("syslog socket mode");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("syslog socket timeout");
        let log_path = base.join("auth.log");
        let mut log = fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("create auth.log");
        fs::set_permissions(&log_path, fs::Permissions::from_mode(mode)).expect("auth.log mode");
        std::os::unix::fs::chown(&log_path, Some(0), Some(group_id("adm"))).expect("auth.log owner");
        let host = hostname();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sshd-syslog".into())
            .spawn(move || {
                let mut buf = vec![0u8; 8192];
                // Never blocking: a forwarder that stops reading (its queue full while the
                // log server is away) must not stall the device's own auth log; the record
                // is then lost to it, as a datagram to a busy syslogd is.
                let relay = forward.as_ref().map(|_| {
                    let relay = UnixDatagram::unbound().expect("a socket to relay records");
                    relay.set_nonblocking(true).expect("a non-blocking relay socket");
                    relay
                });
                loop {
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            let _ = log.write_all(syslog_line(&buf[..n], &host).as_bytes());
                            if let (Some(relay), Some(to)) = (&relay, &forward) {
                                // Lost when the forwarder is not up, as a datagram to a dead syslogd is.
                                let _ = relay.send_to(&buf[..n], to);
                            }
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            // Drained after the stop request: nothing is left behind.
                            if stopping.load(Ordering::SeqCst) {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            })
            .expect("spawn the syslog receiver");
        SyslogReceiver { stop, thread: Some(thread) }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `<PRI>Mmm dd hh:mm:ss tag[pid]: message` (what glibc's syslog(3) sends) as
/// `Mmm dd hh:mm:ss HOST tag[pid]: message\n`.
fn syslog_line(datagram: &[u8], host: &str) -> String {
    let text = String::from_utf8_lossy(datagram);
    let text = text.trim_end_matches(['\n', '\0']);
    let text = match text.strip_prefix('<').and_then(|rest| rest.split_once('>')) {
        Some((pri, rest)) if pri.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => text,
    };
    let stamped = text.len() > 16 && text.as_bytes()[15] == b' ' && text.as_bytes()[9] == b':' && text.as_bytes()[12] == b':';
    if stamped {
        format!("{} {host} {}\n", &text[..15], &text[16..])
    } else {
        format!("{host} {text}\n")
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}

/// The gid of a host group (0 if it does not exist).
fn group_id(name: &str) -> u32 {
    fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .and_then(|l| l.split(':').nth(2)?.parse().ok())
        .unwrap_or(0)
}

/// Runs inside the new namespaces: private views of shadow (and passwd/group with
/// accounts), /run, /root, /home, the login records, /dev/log and the auth log, PAM,
/// loopback and the plain listeners, then sshd in the foreground as the namespace's init.
fn namespace_script(base: &Path, options: &SshdBuilder, accounts: &[Created]) -> String {
    let d = base.display();
    let shadow = match options.password_changes {
        // `passwd` renames its new shadow over /etc/shadow: the whole /etc is a private
        // copy, the server's shadow and passwd's PAM stack written into it.
        Some(_) => format!(
            "cp -a /etc '{d}/etc'\ncp '{d}/pam-passwd' '{d}/etc/pam.d/passwd'\nmount --bind '{d}/etc' /etc\ncat '{d}/shadow' > /etc/shadow\n"
        ),
        None => format!("mount --bind '{d}/shadow' /etc/shadow\n"),
    };
    let mut script = format!(
        r#"set -e
{shadow}mount -t tmpfs -o mode=755 proofrig-run /run
mkdir -m 755 /run/sshd
mount --bind '{d}/home' /root
"#
    );
    if options.private_processes {
        script.push_str("mount -t proc proofrig-proc /proc\n");
    }
    if !accounts.is_empty() {
        script.push_str(&format!("mount --bind '{d}/passwd' /etc/passwd\nmount --bind '{d}/group' /etc/group\n"));
        script.push_str("mount -t tmpfs -o mode=755 proofrig-home /home\n");
        for c in accounts.iter().filter(|c| c.id != 0) {
            script.push_str(&format!("mkdir -m 750 /home/{name}\nchown {id}:{id} /home/{name}\n", name = c.account.name, id = c.id));
        }
    }
    if options.syslog {
        // A private /var/log holding the auth log, and a private /dev whose /dev/log is
        // the harness's socket (the host's /dev stays as it is).
        script.push_str(&format!(
            r#"mount -t tmpfs -o mode=755 proofrig-log /var/log
: > /var/log/wtmp; : > /var/log/btmp; : > /var/log/lastlog; : > {AUTH_LOG}
mount --bind '{d}/auth.log' {AUTH_LOG}
mkdir '{d}/hostdev'
mount --rbind /dev '{d}/hostdev'
mount -t tmpfs -o mode=755 proofrig-dev /dev
for n in null zero full random urandom tty; do
    : > /dev/$n; mount --bind '{d}/hostdev/'$n /dev/$n
done
mkdir /dev/pts /dev/shm
mount --bind '{d}/hostdev/pts' /dev/pts
# The PTY multiplexer of the devpts above (a bind of the host's /dev/ptmx node would
# look for its devpts beside the host's /dev and fail: sshd could not open a PTY).
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 proofrig-shm /dev/shm
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
: > /dev/log; mount --bind '{d}/log.sock' /dev/log
"#
        ));
    } else {
        script.push_str(&format!(
            r#"for f in /var/log/wtmp /var/log/btmp /var/log/lastlog; do
    if [ -e "$f" ]; then mount --bind '{d}/empty' "$f"; fi
done
"#
        ));
    }
    if options.pam {
        script.push_str(&format!("mount --bind '{d}/pam-sshd' /etc/pam.d/sshd\n"));
    }
    if !options.setuid_root_copies.is_empty() {
        script.push_str("mount -t tmpfs -o mode=755 proofrig-local-bin /usr/local/bin\n");
        for (program, name) in &options.setuid_root_copies {
            script.push_str(&format!(
                "cp '{}' /usr/local/bin/{name}\nchown 0:0 /usr/local/bin/{name}\nchmod 4755 /usr/local/bin/{name}\n",
                program.display()
            ));
        }
    }
    if options.private_network {
        script.push_str(&format!("{IP} link set lo up\n"));
    }
    // The namespace's own net.* settings (/proc/sys/net answers for the writer's
    // network namespace), kernel.* values shown to the device only, removable media.
    for (path, value) in &options.net_settings {
        script.push_str(&format!("echo {value} > /proc/sys/{path}\n"));
    }
    for (index, (path, value)) in options.kernel_shown.iter().enumerate() {
        script.push_str(&format!("echo {value} > '{d}/kernel-{index}'\nmount --bind '{d}/kernel-{index}' /proc/sys/{path}\n"));
    }
    for path in &options.hidden {
        script.push_str(&format!("mount -t tmpfs -o ro,mode=555 proofrig-hidden {path}\n"));
    }
    if !options.removable_media.is_empty() {
        script.push_str("mount -t tmpfs -o mode=755 proofrig-media /media\n");
    }
    for (name, options) in &options.removable_media {
        script.push_str(&format!("mkdir /media/{name}\nmount -t tmpfs -o {options} proofrig-{name} /media/{name}\n"));
    }
    for name in &options.stand_ins {
        script.push_str(&format!("cp /bin/sleep '{d}/{name}'\n'{d}/{name}' infinity &\n"));
    }
    for (port, _) in &options.listeners {
        script.push_str(&format!(
            "{SOCAT} TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork EXEC:'/bin/cat {d}/banner-{port}' &\n\
             i=0; while ! grep -q ':{port:04X} 00000000:0000 0A' /proc/net/tcp && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n"
        ));
    }
    for lines in &options.inside {
        script.push_str(lines);
        script.push('\n');
    }
    let stderr_log = if options.syslog { "" } else { "-e " };
    script.push_str(&format!("exec {SSHD} -D {stderr_log}-f '{d}/sshd_config'\n"));
    script
}

fn sshd_config(base: &Path, port: u16, options: &SshdBuilder, host_keys: &[HostKey]) -> String {
    let d = base.display();
    let mut config = String::new();
    // sshd keeps the first value it reads for most keywords, so test-specific lines first.
    for line in &options.extra_config {
        config.push_str(line);
        config.push('\n');
    }
    config.push_str(&format!("Port {port}\nListenAddress {}\n", options.listen_address));
    for key in host_keys {
        config.push_str(&format!("HostKey {d}/host_{}\n", key.kind));
    }
    let use_pam = if options.pam { "yes" } else { "no" };
    config.push_str(&format!(
        "AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM {use_pam}
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PidFile none
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
"
    ));
    if options.sftp {
        config.push_str(&format!("Subsystem sftp {SFTP_SERVER}\n"));
    }
    config
}

/// How a device's firmware installer treats the package it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    /// Checks the package's detached signature against the vendor's release key with
    /// OpenSSL (`openssl dgst -sha256 -verify`, ECDSA P-256) before unpacking it.
    Verifying,
    /// Unpacks whatever it is given (`tar -xf`).
    Unchecked,
}

/// A firmware installer as a vendor ships one, and the packages a tester brings: the
/// vendor's release (an uncompressed tar holding `firmware.bin`) with its detached
/// signature, and a copy with one byte of `firmware.bin` changed beside the same
/// signature. The installer is the vendor's shell script; the signature check in it is
/// OpenSSL's. Everything lies in the server's directory, readable by its accounts; the
/// installer unpacks into `firmware/installed`, which any account may write.
#[derive(Debug, Clone)]
pub struct UpdateKit {
    /// `<installer> {package}`, as a rig declares it.
    pub install_command: String,
    pub genuine: PathBuf,
    pub tampered: PathBuf,
}

impl UpdateKit {
    fn write(base: &Path, installer: Installer) -> UpdateKit {
        let kit = base.join("firmware");
        let content = kit.join("content");
        fs::create_dir_all(&content).expect("firmware kit dir");
        let installed = kit.join("installed");
        fs::create_dir(&installed).expect("firmware install dir");
        fs::set_permissions(&installed, fs::Permissions::from_mode(0o1777)).expect("chmod the install dir");
        let payload: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        fs::write(content.join("firmware.bin"), &payload).expect("firmware payload");
        let genuine = kit.join("firmware-1.0.pkg");
        let out = Command::new("tar")
            .args(["--format=ustar", "--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&genuine)
            .arg("-C")
            .arg(&content)
            .arg("firmware.bin")
            .output()
            .expect("run tar");
        assert!(out.status.success(), "tar the firmware package: {}", String::from_utf8_lossy(&out.stderr));
        let openssl = |args: &[&str]| {
            let out = Command::new(OPENSSL).args(args).current_dir(&kit).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "release.key"]);
        openssl(&["ec", "-in", "release.key", "-pubout", "-out", "release.pub"]);
        openssl(&["dgst", "-sha256", "-sign", "release.key", "-out", "firmware-1.0.pkg.sig", "firmware-1.0.pkg"]);
        fs::remove_file(kit.join("release.key")).expect("the vendor keeps its private key");
        // The tester's copy: one byte of the payload changed (tar checksums only its headers).
        let mut bytes = fs::read(&genuine).expect("read the package");
        let at = 512 + payload.len() / 2;
        bytes[at] ^= 0x20;
        let tampered = kit.join("firmware-1.0-tampered.pkg");
        fs::write(&tampered, bytes).expect("write the tampered package");
        fs::copy(kit.join("firmware-1.0.pkg.sig"), kit.join("firmware-1.0-tampered.pkg.sig")).expect("copy the signature");
        let check = match installer {
            Installer::Verifying => format!(
                "if ! openssl dgst -sha256 -verify {key} -signature \"$pkg.sig\" \"$pkg\" >/dev/null 2>&1; then\n    \
                 echo \"fw-install: $pkg: the signature does not verify with the vendor's release key: refused\" >&2\n    exit 3\nfi\n\
                 echo \"fw-install: $pkg: signature verified (vendor release key)\"\n",
                key = kit.join("release.pub").display()
            ),
            Installer::Unchecked => String::new(),
        };
        let script = kit.join("fw-install");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\n# The vendor's firmware installer: fw-install PACKAGE\npkg=$1\n{check}\
                 tar -xf \"$pkg\" -C {installed} || exit 2\necho \"fw-install: $pkg: firmware installed\"\n",
                installed = installed.display()
            ),
        )
        .expect("write the installer");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod the installer");
        fs::set_permissions(&kit, fs::Permissions::from_mode(0o755)).expect("chmod the kit");
        UpdateKit { install_command: format!("{} {{package}}", script.display()), genuine, tampered }
    }
}
