//! A real ser2net (Debian `ser2net`, 4.x) exporting a tty on 127.0.0.1, the way a lab
//! exports its serial consoles.
//!
//! It runs in the foreground (`-n -d`) with a ser2net 4 YAML config in a temporary
//! directory, UUCP locking off (`-u`; PTYs have no lock directory convention) and its
//! pid file kept in that directory. Readiness is read from `/proc/net/tcp` rather than
//! by connecting, because a probe connection would make ser2net open the tty and
//! swallow the device's output meant for the test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_program};

const SER2NET: &str = "/usr/sbin/ser2net";

/// What ser2net's accepter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ser2netProtocol {
    /// `accepter: tcp,...`: plain bytes.
    Raw,
    /// `accepter: telnet(rfc2217),tcp,...`: telnet with COM-port control.
    Rfc2217,
}

/// A running ser2net. Killed on drop.
pub struct Ser2net {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Ser2net {
    /// Export `device` (e.g. a PTY slave) at 115200 8N1 on 127.0.0.1.
    pub fn start(device: &Path, protocol: Ser2netProtocol) -> Ser2net {
        require_program(SER2NET, "ser2net");
        let dir = tempfile::tempdir().expect("temporary directory for ser2net");
        let port = free_port();
        let accepter = match protocol {
            Ser2netProtocol::Raw => format!("tcp,127.0.0.1,{port}"),
            Ser2netProtocol::Rfc2217 => format!("telnet(rfc2217),tcp,127.0.0.1,{port}"),
        };
        let config = format!(
            "%YAML 1.1\n---\nconnection: &console\n  accepter: {accepter}\n  connector: serialdev,{},115200n81,local\n  options:\n    kickolduser: true\n",
            device.display()
        );
        let config_path = dir.path().join("ser2net.yaml");
        std::fs::write(&config_path, config).expect("write the ser2net config");
        let log = File::create(dir.path().join("ser2net.log")).expect("ser2net log file");
        let child = Command::new(SER2NET)
            .arg("-n")
            .arg("-d")
            .arg("-u")
            .arg("-P")
            .arg(dir.path().join("ser2net.pid"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {SER2NET}: {err}"));
        let mut ser2net = Ser2net { child: Some(child), port, dir };
        ser2net.wait_listening(Duration::from_secs(5));
        ser2net
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What ser2net printed so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kill ser2net now (SIGKILL), as a crashing or restarted console server would go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("ser2net.log")
    }

    fn wait_listening(&mut self, limit: Duration) {
        let started = Instant::now();
        while !is_listening(self.port) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("ser2net exited with {status} before listening on 127.0.0.1:{}:\n{}", self.port, self.log());
            }
            if started.elapsed() > limit {
                panic!("ser2net did not listen on 127.0.0.1:{} within {limit:?}:\n{}", self.port, self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Ser2net {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether something listens on 127.0.0.1:`port` (reads /proc/net/tcp; state 0A = LISTEN).
fn is_listening(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1] == wanted && fields[3] == "0A"
    })
}
