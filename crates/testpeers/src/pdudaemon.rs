//! Debian's real `pdudaemon`, on loopback, driving a PDU that is only a file.
//!
//! Labs often put their PDUs behind pdudaemon, so proofrig's pdudaemon backend is
//! tested against the daemon itself rather than a re-implementation of its HTTP
//! contract. The daemon runs in the foreground with a temporary JSON config whose
//! only PDU uses pdudaemon's `localcmdline` driver: each on/off the driver really
//! executes appends `<action> <port> <unix-ns>` to a journal file, so a test can see
//! what reached the driver, in which order and when. Stops on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_program};

const PDUDAEMON: &str = "/usr/sbin/pdudaemon";

/// One on/off that pdudaemon's driver executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCall {
    /// `on` or `off` (pdudaemon turns a reboot into off, delay, on).
    pub action: String,
    /// The port (outlet) pdudaemon passed to the driver.
    pub port: String,
    /// When the driver ran, in ns since the Unix epoch.
    pub at_ns: u128,
}

/// A running pdudaemon with one file-backed PDU.
pub struct Pdudaemon {
    child: Child,
    port: u16,
    hostname: String,
    journal: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pdudaemon {
    /// Start pdudaemon's HTTP listener on a free 127.0.0.1 port, with one PDU named
    /// `hostname` and wait until it accepts connections. A port found free can be taken
    /// by another process before pdudaemon binds it (tests run side by side): then it
    /// starts again on another one, a few times.
    pub fn start(hostname: &str) -> Pdudaemon {
        require_program(PDUDAEMON, "pdudaemon");
        for _ in 0..4 {
            match Pdudaemon::start_once(hostname) {
                Ok(daemon) => return daemon,
                Err(taken) => eprintln!("pdudaemon: port {taken} was taken before it bound it; trying another"),
            }
        }
        panic!("pdudaemon could not bind a free port on 127.0.0.1 in four tries")
    }

    /// `Err(port)`: the port was taken before pdudaemon bound it.
    fn start_once(hostname: &str) -> Result<Pdudaemon, u16> {
        let dir = tempfile::tempdir().expect("temp dir for pdudaemon");
        let journal = dir.path().join("driver-calls");
        let log = dir.path().join("pdudaemon.log");
        let conf = dir.path().join("pdudaemon.conf");
        // A file, not a pipe: nobody drains a pipe while the daemon runs, and Python
        // warnings must never block it.
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("pdudaemon stderr file");
        let port = free_port();
        std::fs::write(&conf, config_json(hostname, port, &journal)).expect("write pdudaemon config");
        let child = Command::new(PDUDAEMON)
            .arg("--conf")
            .arg(&conf)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PDUDAEMON}: {e}"));
        let mut daemon = Pdudaemon { child, port, hostname: hostname.to_string(), journal, log, _dir: dir };
        match daemon.wait_until_listening(Duration::from_secs(15)) {
            Ok(()) => Ok(daemon),
            Err(()) => Err(port),
        }
    }

    /// Base URL of the HTTP listener, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PDU hostname configured in pdudaemon.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Everything the driver executed so far, in order.
    pub fn driver_calls(&self) -> Vec<DriverCall> {
        let text = std::fs::read_to_string(&self.journal).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let action = parts.next()?.to_string();
                let port = parts.next()?.to_string();
                let at_ns = parts.next()?.parse().ok()?;
                Some(DriverCall { action, port, at_ns })
            })
            .collect()
    }

    /// pdudaemon's own log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Err(())`: it exited because its port was taken meanwhile.
    fn wait_until_listening(&mut self, limit: Duration) -> Result<(), ()> {
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = std::fs::read_to_string(self.log.with_file_name("stderr")).unwrap_or_default();
                if stderr.contains("address already in use") {
                    return Err(());
                }
                panic!("pdudaemon exited during startup ({status}).\nstderr:\n{stderr}\nlog:\n{}", self.log());
            }
            if started.elapsed() > limit {
                panic!("pdudaemon did not listen on 127.0.0.1:{} within {limit:?}.\nlog:\n{}", self.port, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pdudaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_json(hostname: &str, port: u16, journal: &Path) -> String {
    // pdudaemon formats the command with Python's `%` operator (port number in `%s`),
    // so date's own `%s%N` must be written `%%s%%N`.
    let journal = shell_quote(&journal.display().to_string()).replace('%', "%%");
    let command = |action: &str| format!("echo {action} %s $(date +%%s%%N) >> {journal}");
    let config = format!(
        r#"{{
  "daemon": {{ "hostname": "127.0.0.1", "port": {port}, "listener": "http", "logging_level": "DEBUG" }},
  "pdus": {{
    {host}: {{ "driver": "localcmdline", "cmd_on": {on}, "cmd_off": {off} }}
  }}
}}
"#,
        host = json_string(hostname),
        on = json_string(&command("on")),
        off = json_string(&command("off")),
    );
    config
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r#"'\''"#))
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
