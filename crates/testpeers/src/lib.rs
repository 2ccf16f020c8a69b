//! Real peers for tests and benchmarks, started on loopback in temporary directories.
//!
//! Each module starts one kind of third-party peer the way a lab would meet it and
//! stops it on drop. A peer whose program is missing makes the caller fail with a
//! message naming the Debian package to install; nothing here ever skips a test.

pub mod busybox;
pub mod chromium;
pub mod dropbear;
pub mod lighttpd_host;
pub mod modbus;
pub mod nginx;
pub mod pdudaemon;
pub mod plans;
pub mod postgres;
pub mod pty;
pub mod rsyslog;
pub mod ser2net;
pub mod snmpd;
pub mod sshd;
pub mod web_host;

/// Panic with an actionable message when a peer program is missing.
pub fn require_program(path: &str, package: &str) {
    if !std::path::Path::new(path).exists() {
        panic!(
            "test peer missing: {path} not found. Install Debian's `{package}` \
             (scripts/test.sh does this: `apt-get install -y {package}`)."
        );
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether this process runs as root (the namespaced peers need it).
pub(crate) fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Writes a file only its owner reads (shadow copies, secrets), as the simulated lab
/// writes its secrets: never readable by others, not even for a moment.
pub(crate) fn write_private(path: &std::path::Path, content: &str) {
    proofrig_simlab::lab::write_private_file(path, content).unwrap_or_else(|e| panic!("{e}"));
}

/// Kills init of the PID namespace `unshare` started (the kernel then kills every
/// process in it) and reaps `unshare`, its parent, waiting at most `grace`. Killing
/// `unshare` first would also work (`--kill-child`) but leave init a zombie for a
/// parent that may never reap it.
pub(crate) fn kill_pid_namespace(unshare: &mut std::process::Child, grace: std::time::Duration) {
    let pid = unshare.id();
    let init = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
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
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = unshare.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = unshare.kill();
    let _ = unshare.wait();
}

/// Reads `log` until a line of it contains `needle` (at most `limit`): the whole log
/// then, or `None` on time-out.
pub(crate) fn wait_for_line(log: impl Fn() -> String, needle: &str, limit: std::time::Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let text = log();
        if text.lines().any(|line| line.contains(needle)) {
            return Some(text);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
