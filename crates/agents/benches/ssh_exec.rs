//! Benchmark: round trip of short SSH commands on one proofrig session, against the
//! named baseline, OpenSSH's `ssh` client reusing a ControlMaster connection to the same
//! sshd (host key pinned through a known_hosts file, as everywhere in proofrig).
//!
//! Each side runs 100 × `true`, three rounds alternating so drift hits both alike; the
//! median round is reported. Goal: proofrig within 1.2× the baseline.

#[path = "../tests/ssh_support/mod.rs"]
mod ssh_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proofrig_agents::ssh::SshSession;
use proofrig_model::events::{MemorySink, Recorder};
use proofrig_model::rig::SshEndpoint;
use proofrig_testpeers::sshd::Sshd;

const COMMANDS: usize = 100;
const ROUNDS: usize = 3;

fn main() {
    let sshd = Sshd::start();
    let known_hosts = sshd.known_hosts_path();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");

    let endpoint =
        SshEndpoint { host_key: None, known_hosts: Some(known_hosts.clone()), timeout_ms: 10_000, ..ssh_support::endpoint(&sshd) };
    // Recording is part of what proofrig does per command, so it is measured too.
    let recorder = Recorder::new(MemorySink::new());
    let session = runtime.block_on(SshSession::connect("bench", &endpoint, recorder)).expect("proofrig connect");
    let control_dir = tempfile::tempdir().expect("control socket dir");
    let baseline = Baseline { sshd: &sshd, known_hosts: &known_hosts, control_path: &control_dir.path().join("cm-%C") };
    baseline.run("true"); // starts the master; not measured

    // Warm both paths (page cache, sshd forks, allocator).
    for _ in 0..10 {
        runtime.block_on(session.exec("true", Duration::from_secs(10))).expect("warm-up exec");
        baseline.run("true");
    }

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..COMMANDS {
            let out = runtime.block_on(session.exec("true", Duration::from_secs(10))).expect("proofrig exec");
            assert_eq!(out.exit_status, Some(0));
        }
        ours.push(started.elapsed());

        let started = Instant::now();
        for _ in 0..COMMANDS {
            baseline.run("true");
        }
        theirs.push(started.elapsed());
    }
    baseline.stop();
    runtime.block_on(session.close());

    let (ours, theirs) = (median(ours), median(theirs));
    let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
    println!(
        "ssh exec x{COMMANDS}: proofrig {:.3} s ({:.2} ms/cmd), baseline ssh ControlMaster {:.3} s ({:.2} ms/cmd), ratio {ratio:.2}x (goal <= 1.2x; median of {ROUNDS} rounds)",
        ours.as_secs_f64(),
        ours.as_secs_f64() * 1000.0 / COMMANDS as f64,
        theirs.as_secs_f64(),
        theirs.as_secs_f64() * 1000.0 / COMMANDS as f64,
    );
}

fn median(mut rounds: Vec<Duration>) -> Duration {
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// OpenSSH client multiplexing over one ControlMaster connection.
struct Baseline<'a> {
    sshd: &'a Sshd,
    known_hosts: &'a Path,
    control_path: &'a Path,
}

impl Baseline<'_> {
    fn command(&self) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(self.sshd.client_key())
            .arg("-p")
            .arg(self.sshd.port().to_string())
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=60"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control_path.display()));
        ssh
    }

    fn run(&self, remote: &str) {
        let status = self
            .command()
            .arg(format!("{}@{}", self.sshd.user(), self.sshd.host()))
            .arg(remote)
            .status()
            .expect("run ssh (openssh-client)");
        assert!(status.success(), "baseline ssh failed: {status}");
    }

    fn stop(&self) {
        let _ = self.command().args(["-O", "exit"]).arg(format!("{}@{}", self.sshd.user(), self.sshd.host())).output();
    }
}
