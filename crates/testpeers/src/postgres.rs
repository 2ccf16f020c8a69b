//! A real PostgreSQL server (Debian's `postgresql` package) on loopback, in a fresh
//! temporary cluster, for the tests of the lab server's PostgreSQL store.
//!
//! The server's store runs one test suite against SQLite and PostgreSQL, and a claim
//! that is exactly-once on one and not the other is the bug those tests exist for
//! (row locks, `SKIP LOCKED`, serialization failures only happen on a real server).
//! So this starts Debian's own binaries (`/usr/lib/postgresql/<version>/bin`, the
//! newest installed): `initdb` makes a cluster in a temporary directory (SCRAM
//! passwords, a random password for the `postgres` role, no fsync: a test's data
//! need not survive a power cut), and `postgres` serves it on a free 127.0.0.1
//! port with its Unix socket in a private directory, never `/var/run/postgresql`,
//! so it never meets the machine's own cluster. As root it runs as the `postgres`
//! account (PostgreSQL refuses to run as root); the temporary directory is handed
//! to that account. Stopped (fast shutdown) and deleted on drop.
//!
//! Starting a cluster takes a few seconds, so a test binary usually shares one:
//! [`Postgres::shared`] starts it on first use and stops it when the process exits,
//! and each test takes its own database ([`Postgres::create_database`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{free_port, require_program, running_as_root};

/// Where Debian installs each PostgreSQL major version's server binaries.
const PG_LIB: &str = "/usr/lib/postgresql";

/// How long `postgres` gets to say it accepts connections.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// What `postgres` logs once it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";

/// How long a fast shutdown may take before the server is killed.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// The role tests connect as: the cluster's superuser.
pub const USER: &str = "postgres";

/// A running PostgreSQL cluster. Stopped and deleted on drop.
pub struct Postgres {
    port: u16,
    password: String,
    bin: PathBuf,
    log: PathBuf,
    /// The postmaster and the directory, taken out on stop (drop, or process exit for
    /// the shared one, whose drop never runs).
    running: Mutex<Option<(Child, tempfile::TempDir)>>,
}

impl Postgres {
    /// Start a fresh cluster on a free loopback port; returns once it accepts
    /// connections. Panics, naming the Debian package, when PostgreSQL is missing.
    pub fn start() -> Postgres {
        let bin = server_binaries();
        let account = if running_as_root() { Some(postgres_account()) } else { None };
        let dir = tempfile::Builder::new().prefix("proofrig-postgres-").tempdir().expect("temp dir for PostgreSQL");
        let (data, sock, log, pwfile) =
            (dir.path().join("data"), dir.path().join("sock"), dir.path().join("postgres.log"), dir.path().join("pwfile"));
        fs::create_dir(&sock).expect("PostgreSQL socket dir");
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o700)).expect("PostgreSQL socket dir mode");
        let password = random_hex(16);
        fs::write(&pwfile, format!("{password}\n")).expect("PostgreSQL password file");
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).expect("PostgreSQL password file mode");
        if let Some((uid, gid)) = account {
            for path in [dir.path(), &sock, &pwfile] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to the postgres account: {e}", path.display()));
            }
        }

        let initdb_out = dir.path().join("initdb.out");
        let out = fs::File::create(&initdb_out).expect("initdb output file");
        let status = as_account(Command::new(bin.join("initdb")), account)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup the initdb output file"))
            .stderr(out)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.join("initdb").display()));
        if !status.success() {
            panic!(
                "initdb failed ({status}) for a test cluster in {}:\n{}",
                data.display(),
                fs::read_to_string(&initdb_out).unwrap_or_default()
            );
        }
        let _ = fs::remove_file(&pwfile);

        let port = free_port();
        let stderr = fs::File::create(&log).expect("PostgreSQL log file");
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("chown the PostgreSQL log");
        }
        let child = as_account(Command::new(bin.join("postgres")), account)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", sock.display()))
            // A test cluster: nothing in it needs to survive a crash of the machine.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            // Several pools per test, tests in parallel.
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.join("postgres").display()));
        let pg = Postgres { port, password, bin, log, running: Mutex::new(Some((child, dir))) };
        pg.wait_ready();
        pg
    }

    /// One cluster for the whole test process: started on first use, stopped and
    /// deleted when the process exits (tests take a database each).
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(pg) = SHARED.get() {
                pg.stop();
            }
        }
        SHARED.get_or_init(|| {
            let pg = Postgres::start();
            // SAFETY: registers a plain function; it runs at exit(3), which the test
            // harness reaches whether tests passed or failed.
            unsafe { libc::atexit(stop_shared) };
            pg
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (random per cluster).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// Create a database with a name unique in this cluster, starting with `prefix`
    /// (letters, digits, `_`), and return its URL.
    pub fn create_database(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        assert!(
            !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name prefix `{prefix}`: use letters, digits and _"
        );
        let name = format!("{}_{}", prefix.to_ascii_lowercase(), NEXT.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, &name])
            .env("PGPASSWORD", &self.password)
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.join("createdb").display()));
        if !out.status.success() {
            panic!("createdb {name} failed ({}): {}\nserver log:\n{}", out.status, String::from_utf8_lossy(&out.stderr), self.log());
        }
        self.url(&name)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = self.log().contains(READY_LINE);
            let exited = self.running.lock().unwrap().as_mut().and_then(|(child, _)| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("postgres exited with {status} instead of serving 127.0.0.1:{}; its log:\n{}", self.port, self.log());
            }
            if ready {
                return;
            }
            if started.elapsed() > STARTUP_LIMIT {
                panic!("postgres did not log `{READY_LINE}` within {STARTUP_LIMIT:?} (127.0.0.1:{}); its log:\n{}", self.port, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fast shutdown (clients are disconnected), a kill if that hangs, then delete
    /// the cluster. Never panics: it also runs at process exit.
    fn stop(&self) {
        let taken = match self.running.lock() {
            Ok(mut running) => running.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some((mut child, dir)) = taken else { return };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + SHUTDOWN_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                drop(dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        drop(dir);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest installed major version's `bin` directory.
fn server_binaries() -> PathBuf {
    let newest = fs::read_dir(PG_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => {
            for program in ["initdb", "postgres", "createdb"] {
                require_program(&bin.join(program).display().to_string(), "postgresql");
            }
            bin
        }
        None => {
            require_program(&format!("{PG_LIB}/<version>/bin/initdb"), "postgresql");
            unreachable!("require_program panics when the program is missing")
        }
    }
}

/// The uid and gid of the `postgres` account Debian's package creates.
fn postgres_account() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let line = passwd.lines().find(|l| l.split(':').next() == Some("postgres")).unwrap_or_else(|| {
        panic!("test peer missing: no `postgres` account in /etc/passwd (PostgreSQL refuses to run as root). Install Debian's `postgresql` (scripts/test.sh does this: `apt-get install -y postgresql`), which creates it.")
    });
    let field = |n: usize| line.split(':').nth(n).and_then(|v| v.parse::<u32>().ok());
    match (field(2), field(3)) {
        (Some(uid), Some(gid)) => (uid, gid),
        _ => panic!("/etc/passwd: the postgres account's line `{line}` has no numeric uid and gid"),
    }
}

/// `command`, run as the account when one is given (the caller is root).
fn as_account(mut command: Command, account: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = account {
        // std drops the supplementary groups when root sets a uid.
        command.uid(uid).gid(gid);
    }
    command.env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
    command
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
