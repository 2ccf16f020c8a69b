//! A real dropbear SSH server (Debian's `dropbear-bin`) on loopback: the SSH server of
//! most embedded Linux devices (BusyBox radio units, routers, BMCs), for tests of what
//! proofrig sees on equipment that does not run OpenSSH.
//!
//! It runs in the foreground (`-F`), logging to standard error (`-E`, into a file in its
//! temporary directory), with host keys made by `dropbearkey` in that directory (`-r`,
//! one per key type, as Debian's package makes rsa, ecdsa and ed25519 on install), its
//! pid file there too (`-P`), listening on 127.0.0.1 only. Nothing outside the
//! directory is touched. Readiness is its listening socket in `/proc`, not a probe
//! connection, so its log holds only the connections a test made.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_program};

const DROPBEAR: &str = "/usr/sbin/dropbear";
const DROPBEARKEY: &str = "/usr/bin/dropbearkey";

/// How long dropbear gets to listen before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(5);

/// One host key of the server, as `dropbearkey -y` describes it.
#[derive(Debug, Clone)]
pub struct DropbearHostKey {
    /// `dropbearkey -t` name, e.g. `ed25519`.
    pub kind: String,
    /// Algorithm name from the public key line, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:...` as `dropbearkey -y` prints it.
    pub fingerprint: String,
    /// `<algorithm> <base64>` of the public key.
    pub public_line: String,
}

/// Options for a [`Dropbear`]; start with [`Dropbear::builder`].
#[derive(Debug, Clone)]
pub struct DropbearBuilder {
    host_key_types: Vec<String>,
    args: Vec<String>,
}

impl DropbearBuilder {
    /// Host key types to generate (`dropbearkey -t`), in order; default `ed25519`,
    /// `ecdsa`, `rsa` (what Debian's `dropbear` package makes).
    pub fn host_key_types(mut self, types: &[&str]) -> Self {
        self.host_key_types = types.iter().map(|t| t.to_string()).collect();
        self
    }

    /// An extra command-line option, e.g. `-s` (no password logins) or `-w` (no root).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn start(self) -> Dropbear {
        Dropbear::start_with(self)
    }
}

/// A running dropbear; killed on drop.
pub struct Dropbear {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    host_keys: Vec<DropbearHostKey>,
}

impl Dropbear {
    pub fn builder() -> DropbearBuilder {
        DropbearBuilder { host_key_types: vec!["ed25519".into(), "ecdsa".into(), "rsa".into()], args: Vec::new() }
    }

    /// A dropbear with Debian's default host keys and options.
    pub fn start() -> Dropbear {
        Self::builder().start()
    }

    fn start_with(options: DropbearBuilder) -> Dropbear {
        require_program(DROPBEAR, "dropbear-bin");
        require_program(DROPBEARKEY, "dropbear-bin");
        let dir = tempfile::Builder::new().prefix("proofrig-dropbear-").tempdir().expect("temp dir for dropbear");
        let host_keys: Vec<DropbearHostKey> = options.host_key_types.iter().map(|kind| generate_host_key(dir.path(), kind)).collect();

        // The port is picked before dropbear binds it; if another process wins that
        // race, dropbear exits at once and we try another port.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let log = fs::File::create(dir.path().join("dropbear.log")).expect("dropbear log");
            let mut command = Command::new(DROPBEAR);
            command.args(["-F", "-E", "-p"]).arg(format!("127.0.0.1:{port}"));
            command.arg("-P").arg(dir.path().join("dropbear.pid"));
            for key in &options.host_key_types {
                command.arg("-r").arg(key_path(dir.path(), key));
            }
            let mut child = command
                .args(&options.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {DROPBEAR}: {err}"));
            if wait_until_listening(&mut child, port) {
                return Dropbear { child: Some(child), dir, port, host_keys };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = fs::read_to_string(dir.path().join("dropbear.log")).unwrap_or_default();
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("dropbear test peer did not start listening within {STARTUP_LIMIT:?}; its log:\n{last_log}");
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host keys, in the order they were given to dropbear.
    pub fn host_keys(&self) -> &[DropbearHostKey] {
        &self.host_keys
    }

    /// `SHA256:...` of the first host key.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_keys.first().expect("dropbear has at least one host key").fingerprint
    }

    /// The `dropbear -V` line of the installed binary, e.g. `Dropbear v2022.83`.
    pub fn version() -> String {
        require_program(DROPBEAR, "dropbear-bin");
        let out = Command::new(DROPBEAR).arg("-V").output().expect("dropbear -V");
        // dropbear prints its version on standard error.
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything dropbear logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dropbear.log")).unwrap_or_default()
    }
}

impl Drop for Dropbear {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn key_path(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!("dropbear_{kind}_host_key"))
}

fn generate_host_key(dir: &Path, kind: &str) -> DropbearHostKey {
    let path = key_path(dir, kind);
    let made = Command::new(DROPBEARKEY).args(["-t", kind, "-f"]).arg(&path).stdin(Stdio::null()).output().expect("run dropbearkey");
    assert!(made.status.success(), "dropbearkey -t {kind} failed: {}", String::from_utf8_lossy(&made.stderr));
    let shown = Command::new(DROPBEARKEY).arg("-y").arg("-f").arg(&path).output().expect("run dropbearkey -y");
    let listing = String::from_utf8_lossy(&shown.stdout);
    let public_line = listing
        .lines()
        .find(|line| line.starts_with("ssh-") || line.starts_with("ecdsa-"))
        .unwrap_or_else(|| panic!("dropbearkey -y printed no public key for {kind}:\n{listing}"));
    let mut words = public_line.split_whitespace();
    let (algorithm, blob) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let fingerprint = listing
        .lines()
        .find_map(|line| line.strip_prefix("Fingerprint: "))
        .unwrap_or_else(|| panic!("dropbearkey -y printed no fingerprint for {kind}:\n{listing}"));
    DropbearHostKey {
        kind: kind.to_string(),
        algorithm: algorithm.to_string(),
        fingerprint: fingerprint.trim().to_string(),
        public_line: format!("{algorithm} {blob}"),
    }
}

/// Whether `child` holds a socket listening on 127.0.0.1:`port`, waiting up to
/// [`STARTUP_LIMIT`]. False when it exits first (e.g. the port was taken).
fn wait_until_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + STARTUP_LIMIT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Some(inode) = listening_inode(port) {
            if holds_socket(child.id(), &inode) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The inode of the TCP socket listening on 127.0.0.1:`port`, from `/proc/net/tcp`.
fn listening_inode(port: u16) -> Option<String> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl, local_address, rem_address, st (0A: LISTEN), ..., inode is the tenth.
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9).map(|inode| inode.to_string()))
            .flatten()
    })
}

/// Whether process `pid` has the socket `inode` open.
fn holds_socket(pid: u32, inode: &str) -> bool {
    let wanted = format!("socket:[{inode}]");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy() == wanted))
}
