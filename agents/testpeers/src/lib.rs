//! Real peers for tests and benchmarks, started on loopback in temporary directories.
//!
//! Each module starts one kind of third-party peer the way a lab would meet it and
//! stops it on drop. A peer whose program is missing makes the caller fail with a
//! message naming the Debian package to install; nothing here ever skips a test.

pub mod busybox;
pub mod dropbear;
pub mod modbus;
pub mod pdudaemon;
pub mod pty;
pub mod ser2net;
pub mod snmpd;
pub mod sshd;

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
