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

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_program};

const SSHD: &str = "/usr/sbin/sshd";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const UNSHARE: &str = "/usr/bin/unshare";
const OPENSSL: &str = "/usr/bin/openssl";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// How long sshd gets to accept connections before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(5);

/// Options for an [`Sshd`]; start with [`Sshd::builder`].
#[derive(Debug, Clone)]
pub struct SshdBuilder {
    host_key_types: Vec<String>,
    extra_config: Vec<String>,
    sftp: bool,
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
        SshdBuilder { host_key_types: vec!["ed25519".into()], extra_config: Vec::new(), sftp: true }
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

        let password = format!("pw-{:x}-{:x}", std::process::id(), nanos_now());
        write_shadow_with_root_password(&base.join("shadow"), &password);
        fs::write(base.join("empty"), b"").expect("empty login-record file");
        fs::create_dir(base.join("home")).expect("private home");
        fs::create_dir(base.join("files")).expect("files dir");
        fs::write(base.join("start.sh"), namespace_script(base)).expect("start script");

        // The port is picked before sshd binds it; if another process wins that race,
        // sshd exits at once and we try another port.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            fs::write(base.join("sshd_config"), sshd_config(base, port, &options, &host_keys)).expect("sshd_config");
            let log = fs::File::create(base.join("sshd.log")).expect("sshd log");
            let mut child = Command::new(UNSHARE)
                .args(["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child=SIGKILL", "/bin/sh"])
                .arg(base.join("start.sh"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("spawn unshare for sshd");
            if wait_until_listening(&mut child, base, port) {
                return Sshd { child: Some(child), dir, port, password, host_keys };
            }
            stop_namespace(&mut child);
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

    /// What sshd logged so far (`-e`: to stderr, captured in a file).
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Kill sshd and every session it spawned, and reap it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_namespace(&mut child);
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kill sshd, the PID namespace's init: the kernel then kills every session process
/// in the namespace, and `unshare`, sshd's parent, reaps it and exits. Killing `unshare`
/// first would also work (--kill-child) but leave sshd a zombie for an init that may
/// never reap it.
fn stop_namespace(unshare: &mut Child) {
    let pid = unshare.id();
    let init = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|children| children.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()));
    match init {
        Some(init) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL);
        }
        None => {
            let _ = unshare.kill();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = unshare.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = unshare.kill();
    let _ = unshare.wait();
}

fn read_log(base: &Path) -> String {
    fs::read_to_string(base.join("sshd.log")).unwrap_or_default()
}

fn wait_until_listening(child: &mut Child, base: &Path, port: u16) -> bool {
    let deadline = Instant::now() + STARTUP_LIMIT;
    let listening = format!("Server listening on 127.0.0.1 port {port}");
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        // sshd prints this after listen(2), so connections are accepted from now on. Not
        // probing with a connection keeps the log free of connections tests did not make.
        if read_log(base).contains(&listening) {
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

/// A copy of /etc/shadow in which root's hash is `password`'s.
fn write_shadow_with_root_password(path: &Path, password: &str) {
    let mut openssl = Command::new(OPENSSL)
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl passwd");
    openssl.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("feed openssl");
    let out = openssl.wait_with_output().expect("openssl passwd output");
    assert!(out.status.success(), "openssl passwd -6 failed");
    let hash = String::from_utf8(out.stdout).expect("hash is text").trim().to_string();

    let shadow = fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
    let mut copy = String::new();
    let mut found = false;
    for line in shadow.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"root") && fields.len() > 2 {
            fields[1] = &hash;
            // An empty "last change" could force a password change on some setups.
            fields[2] = "19000";
            found = true;
        }
        copy.push_str(&fields.join(":"));
        copy.push('\n');
    }
    if !found {
        copy.push_str(&format!("root:{hash}:19000:0:99999:7:::\n"));
    }
    fs::write(path, copy).expect("write shadow copy");
    // sshd reads shadow as root; keep the copy as private as the original.
    let _ = fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
}

/// Runs inside the new namespaces: private views of shadow, /run, /root and the login
/// records, then sshd in the foreground as the namespace's init.
fn namespace_script(base: &Path) -> String {
    let d = base.display();
    format!(
        r#"set -e
mount --bind '{d}/shadow' /etc/shadow
mount -t tmpfs -o mode=755 proofrig-run /run
mkdir -m 755 /run/sshd
for f in /var/log/wtmp /var/log/btmp /var/log/lastlog; do
    if [ -e "$f" ]; then mount --bind '{d}/empty' "$f"; fi
done
mount --bind '{d}/home' /root
exec {SSHD} -D -e -f '{d}/sshd_config'
"#
    )
}

fn sshd_config(base: &Path, port: u16, options: &SshdBuilder, host_keys: &[HostKey]) -> String {
    let d = base.display();
    let mut config = String::new();
    // sshd keeps the first value it reads for most keywords, so test-specific lines first.
    for line in &options.extra_config {
        config.push_str(line);
        config.push('\n');
    }
    config.push_str(&format!("Port {port}\nListenAddress 127.0.0.1\n"));
    for key in host_keys {
        config.push_str(&format!("HostKey {d}/host_{}\n", key.kind));
    }
    config.push_str(&format!(
        "AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM no
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

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
