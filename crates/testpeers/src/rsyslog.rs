//! Debian's rsyslog as a device's remote logging (TS 33.117 4.2.3.6.2): it takes the
//! device's records on a Unix socket and forwards them to the central log server over
//! TLS (rsyslog's gtls driver, RFC 5425 octet-counted framing), trusting the log
//! server's certificate and no other.
//!
//! The OpenSSH peer's own syslog daemon (`sshd::SyslogReceiver`) writes the auth log
//! and hands each record on to this socket ([`crate::sshd::SshdBuilder::forward_log`]);
//! rsyslog runs in the device's network namespace, where the lab host plays the log
//! server. When nothing listens there (between the steps that play it), rsyslog
//! queues the records and tries again every second, as a device would after its log
//! server came back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// A forwarder's files, made before the device starts (the device needs the socket's
/// path), and its process, started in the device's network namespace.
pub struct RsyslogForwarder {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RsyslogForwarder {
    /// The forwarder's directory; nothing runs yet.
    pub fn prepare() -> RsyslogForwarder {
        crate::require_program(RSYSLOGD, "rsyslog");
        // rsyslog's TLS driver, in the multiarch directory of this machine.
        let driver = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("rsyslog/lmnsd_gtls.so"))
            .find(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("/usr/lib/<arch>/rsyslog/lmnsd_gtls.so"));
        crate::require_program(&driver.display().to_string(), "rsyslog-gnutls");
        RsyslogForwarder { dir: tempfile::tempdir().expect("rsyslog dir"), child: None }
    }

    /// Where the device's syslog daemon hands its records.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("in.sock")
    }

    /// Start rsyslogd with `command` (`rsyslogd` run where `target` is reachable, e.g.
    /// `Sshd::command`), forwarding to `target` over TLS, trusting `certificate_pem`.
    pub fn start(&mut self, mut command: Command, target: SocketAddr, certificate_pem: &str) {
        let dir = self.dir.path();
        std::fs::write(dir.join("ca.pem"), certificate_pem).expect("write the log server's certificate");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(&conf, config(dir, target)).expect("write rsyslog.conf");
        let log = std::fs::File::create(dir.join("rsyslogd.log")).expect("rsyslogd log");
        let child = command
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn rsyslogd");
        self.child = Some(child);
        let started = Instant::now();
        while !self.socket().exists() {
            assert!(started.elapsed() < Duration::from_secs(10), "rsyslogd did not open {}: {}", self.socket().display(), self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What rsyslogd said (its errors, e.g. a refused certificate).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default()
    }
}

impl Drop for RsyslogForwarder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Records in on the socket; out to `target` over TLS, the certificate checked against
/// `ca.pem`; queued in memory and retried every second while the server is away (a
/// queue large enough for a whole test run: a full one would stop rsyslog reading).
fn config(dir: &Path, target: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "global(workDirectory=\"{d}\" DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{d}/ca.pem\")\n\
         module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         input(type=\"imuxsock\" Socket=\"{d}/in.sock\" CreatePath=\"on\")\n\
         action(type=\"omfwd\" target=\"{ip}\" port=\"{port}\" protocol=\"tcp\" StreamDriver=\"gtls\" StreamDriverMode=\"1\" \
         StreamDriverAuthMode=\"x509/certvalid\" TCP_Framing=\"octet-counted\" \
         queue.type=\"LinkedList\" queue.size=\"100000\" action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\" action.resumeIntervalMax=\"1\")\n",
        ip = target.ip(),
        port = target.port(),
    )
}
