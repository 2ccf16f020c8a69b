//! A real SNMP agent (Debian's net-snmp `snmpd`, 5.9) on loopback, the agent a lab's
//! switches, PDUs and BMCs most often run, for tests of SNMP probes and credential checks.
//!
//! It runs in the foreground (`-f`) with only the generated config (`-C -c`), logging to
//! a file (`-Lf`), its persistent state (engine boots, USM users) in the temporary
//! directory (`SNMP_PERSISTENT_DIR`; `/var/lib/snmp` is never touched), no MIB files
//! loaded (`-m ""`: snmpd serves its MIB modules without them, and loading them without
//! Debian's `snmp.conf` only logs hundreds of parse errors), and SMUX off (`-I -smux`:
//! it would listen on TCP port 199 on all addresses, and agents started in parallel would
//! log `[init_smux] bind failed`).
//! As root and without `-u`/`-g` it keeps running as root. Readiness is its startup line
//! `NET-SNMP version 5.9.3`, which it logs once its UDP port is bound.

use std::fs;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require_program;

const SNMPD: &str = "/usr/sbin/snmpd";

/// How long snmpd gets to log its startup line before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// What snmpd logs once it is listening.
const STARTUP_LINE: &str = "NET-SNMP version";

/// The SNMPv3 user of a [`SnmpdConfig::v3_only`] agent (SHA-256 and AES-128; read-only,
/// authNoPriv or authPriv).
pub const V3_USER: &str = "proofrig";
/// The authentication passphrase of [`V3_USER`].
pub const V3_AUTH_PASSPHRASE: &str = "proofrig-auth-pass";
/// The privacy passphrase of [`V3_USER`].
pub const V3_PRIV_PASSPHRASE: &str = "proofrig-priv-pass";

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpdConfig {
    /// v1/v2c read-only communities the agent answers, from 127.0.0.1 only (empty:
    /// SNMPv3 only, with the user [`V3_USER`]).
    pub communities: Vec<String>,
    /// Bind address (IPv4), default "127.0.0.1".
    pub address: String,
}

impl SnmpdConfig {
    /// An agent answering SNMPv1 and v2c requests with any of `communities`, read-only.
    pub fn v2c(communities: &[&str]) -> Self {
        SnmpdConfig { communities: communities.iter().map(|c| c.to_string()).collect(), address: "127.0.0.1".into() }
    }

    /// An agent ignoring v1 and v2c, answering SNMPv3 as [`V3_USER`].
    pub fn v3_only() -> Self {
        SnmpdConfig { communities: Vec::new(), address: "127.0.0.1".into() }
    }
}

/// A running snmpd. Killed on drop.
pub struct Snmpd {
    child: Option<Child>,
    port: u16,
    address: String,
    dir: tempfile::TempDir,
}

impl Snmpd {
    /// Start snmpd on a free UDP port of `config.address`; returns once it is listening.
    pub fn start(config: SnmpdConfig) -> Snmpd {
        require_program(SNMPD, "snmpd");
        let ip: Ipv4Addr =
            config.address.parse().unwrap_or_else(|_| panic!("snmpd test peer: address `{}` is not an IPv4 address", config.address));
        let dir = tempfile::Builder::new().prefix("proofrig-snmpd-").tempdir().expect("temp dir for snmpd");
        let persist = dir.path().join("persist");
        fs::create_dir(&persist).expect("snmpd persistent dir");
        // Bound then released, like crate::free_port for TCP.
        let port = UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()).expect("a free UDP port").port();

        let mut conf = format!("agentAddress udp:{ip}:{port}\n");
        for community in &config.communities {
            assert!(
                !community.is_empty() && !community.contains(char::is_whitespace),
                "snmpd test peer: community `{community}` must be non-empty without whitespace"
            );
            conf.push_str(&format!("rocommunity {community} 127.0.0.1\n"));
        }
        if config.communities.is_empty() {
            // snmpd reads createUser from its main config too, and on startup localizes the
            // keys into a usmUser line in the persistent snmpd.conf.
            conf.push_str(&format!("createUser {V3_USER} SHA-256 {V3_AUTH_PASSPHRASE} AES {V3_PRIV_PASSPHRASE}\nrouser {V3_USER}\n"));
        }
        let conf_path = dir.path().join("snmpd.conf");
        fs::write(&conf_path, conf).expect("write the snmpd config");

        // Before -Lf takes effect (e.g. a bad option), snmpd writes to stderr.
        let stdio = fs::File::create(dir.path().join("snmpd.stdio")).expect("snmpd stdio file");
        let child = Command::new(SNMPD)
            .arg("-f")
            .arg("-C")
            .arg("-c")
            .arg(&conf_path)
            .arg("-Lf")
            .arg(dir.path().join("snmpd.log"))
            .args(["-m", "", "-I", "-smux"])
            .env("SNMP_PERSISTENT_DIR", &persist)
            .env_remove("SNMPCONFPATH")
            .env_remove("MIBS")
            .env_remove("MIBDIRS")
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().expect("dup the stdio file"))
            .stderr(stdio)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {SNMPD}: {err}"));
        let mut snmpd = Snmpd { child: Some(child), port, address: ip.to_string(), dir };
        snmpd.wait_started();
        snmpd
    }

    /// The UDP port the agent listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the agent listens on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Everything snmpd logged so far (its `-Lf` log, then anything it printed itself).
    pub fn log(&self) -> String {
        let mut log = fs::read_to_string(self.dir.path().join("snmpd.log")).unwrap_or_default();
        log.push_str(&fs::read_to_string(self.stdio_path()).unwrap_or_default());
        log
    }

    fn stdio_path(&self) -> PathBuf {
        self.dir.path().join("snmpd.stdio")
    }

    fn wait_started(&mut self) {
        let started = Instant::now();
        loop {
            // Read before the exit check, so a line logged just before dying is no success.
            let listening = self.log().contains(STARTUP_LINE);
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("snmpd exited with {status} instead of answering on udp:{}:{}; its log:\n{}", self.address, self.port, self.log());
            }
            if listening {
                return;
            }
            if started.elapsed() > STARTUP_LIMIT {
                panic!(
                    "snmpd did not log `{STARTUP_LINE}` within {STARTUP_LIMIT:?} (udp:{}:{}); its log:\n{}",
                    self.address,
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
