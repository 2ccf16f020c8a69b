//! 100 short SSH commands on a device that forks slowly, each with its output and
//! exit status checked: proofrig against OpenSSH reusing a ControlMaster connection
//! with one `ssh` per command (what labgrid's SSHDriver does).
//!
//! Issue 17's goal: proofrig at most 0.33x the baseline's time. The device is the
//! BusyBox + dropbear radio unit of `proofrig-testpeers` (hardened profile), its
//! processes (dropbear, and so every session and shell it forks) in a cgroup limited
//! to `PROOFRIG_BENCH_CPU_PCT` percent of one CPU (default 10), as a small CPU is.
//!
//! - proofrig: `proofrig run` of a plan whose script runs `echo N` for N in 0..100 over
//!   SSH, checking each output and status, once with the rig's default (a channel per
//!   command) and once with `ssh.persistent_shell: true`. Timed from the journal: the
//!   first command's `SshExec` to the last one's `SshExit` (monotonic clock), so the
//!   SSH login, the journal's sealing and process start-up are left out, as the
//!   ControlMaster's own login is on the other side.
//! - baseline: a `ControlMaster` connection opened first (not timed), then a shell loop
//!   in the device's network namespace running `ssh -S SOCKET host "echo N"` 100 times,
//!   comparing each output and status.
//!
//! Rounds alternate the three; the headline is the median ratio with its range.
//! Needs root (namespaces, cgroups). Run:
//! `cargo bench -p proofrig --bench ssh_slow_device` (`PROOFRIG_BENCH_ROUNDS`, default 5).

mod on_device;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use on_device::{env_number, median, range, run_on_device, SlowCpu};
use proofrig_testpeers::busybox::{BusyboxDevice, Profile};
use serde_json::Value;

const COMMANDS: usize = 100;

fn plan(dir: &Path) -> PathBuf {
    let yaml = format!(
        "plan: bench-ssh-commands\ntitle: SSH commands\ncases:\n  - id: BENCH_SSH\n    title: {COMMANDS} short commands\n    \
         scas: {{ spec: TS 33.117, clause: 4.2.3.3.2, test_name: BENCH_SSH, requirement: r }}\n    \
         purpose: p\n    expected: e\n    evidence: e\n    steps:\n      - name: run the commands\n        timeout_ms: 600000\n        \
         script: |\n          for i in 0..{COMMANDS} {{\n              let r = ssh_exec(`echo ${{i}}`);\n              \
         check(r.exit_status == 0 && r.stdout == `${{i}}` + \"\\n\", `echo ${{i}} answered`, `echo ${{i}} answered ${{r.stdout}}`);\n          }}\n"
    );
    let path = dir.join("ssh-commands.yaml");
    std::fs::write(&path, yaml).expect("bench plan");
    path
}

/// Every object under `value` whose `kind` is one of `kinds`, with its monotonic time.
fn events_of(value: &Value, kinds: &[&str], out: &mut Vec<(String, u64)>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(kind)), Some(at)) = (map.get("kind"), map.get("at")) {
                if kinds.contains(&kind.as_str()) {
                    out.push((kind.clone(), at["mono_ns"].as_u64().unwrap_or_default()));
                }
            }
            map.values().for_each(|v| events_of(v, kinds, out));
        }
        Value::Array(items) => items.iter().for_each(|v| events_of(v, kinds, out)),
        _ => {}
    }
}

/// `proofrig run` on the device; the time from the first command to the last one's exit.
fn proofrig_commands(device: &BusyboxDevice, rig: &Path, plan: &Path, dir: &Path) -> Duration {
    let run = run_on_device(device, rig, plan, dir);
    assert_eq!(run.results["verdict"], "PASS", "every command answered as expected: {}", run.text);
    let mut events = Vec::new();
    for record in run.journal() {
        events_of(&record, &["ssh_exec", "ssh_exit"], &mut events);
    }
    let execs: Vec<u64> = events.iter().filter(|(k, _)| k == "ssh_exec").map(|(_, t)| *t).collect();
    let exits: Vec<u64> = events.iter().filter(|(k, _)| k == "ssh_exit").map(|(_, t)| *t).collect();
    // Before the plan's commands, the run asks the device who it is (the rig's identity command).
    assert!(execs.len() >= COMMANDS && execs.len() == exits.len(), "one exec and one exit per command");
    let first = execs[execs.len() - COMMANDS];
    Duration::from_nanos(exits.iter().max().unwrap() - first)
}

/// The OpenSSH client's ControlMaster for the device, opened once.
struct Master {
    socket: PathBuf,
    known_hosts: PathBuf,
    askpass: PathBuf,
}

impl Master {
    fn open(device: &BusyboxDevice, dir: &Path) -> Master {
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, device.known_hosts()).expect("known_hosts");
        let askpass = dir.join("askpass.sh");
        let password = dir.join("password");
        std::fs::write(&password, device.operator_password()).expect("password file");
        std::fs::write(&askpass, format!("#!/bin/sh\ncat '{}'\n", password.display())).expect("askpass");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).expect("askpass mode");
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("password mode");
        let master = Master { socket: dir.join("ctl.sock"), known_hosts, askpass };
        let status = device
            .command("ssh")
            .args(master.options())
            .args(["-M", "-f", "-N", "-o", "ControlPersist=600", "-o", "PubkeyAuthentication=no"])
            .env("SSH_ASKPASS", &master.askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .status()
            .expect("start the ControlMaster");
        assert!(status.success(), "the ControlMaster connection opened");
        master
    }

    fn options(&self) -> Vec<String> {
        [
            "-S",
            &self.socket.display().to_string(),
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "LogLevel=ERROR",
            "-p",
            "22",
            "-l",
            "oper",
            "127.0.0.1",
        ]
        .map(String::from)
        .to_vec()
    }

    /// The loop, timed inside the device's namespace by the shell that runs it.
    fn commands(&self, device: &BusyboxDevice) -> Duration {
        let ssh = format!("ssh {}", self.options().iter().map(|o| format!("'{o}'")).collect::<Vec<_>>().join(" "));
        let script = format!(
            "start=$(date +%s%N); i=0; while [ $i -lt {COMMANDS} ]; do out=$({ssh} \"echo $i\") || exit 1; \
             [ \"$out\" = \"$i\" ] || exit 2; i=$((i+1)); done; end=$(date +%s%N); echo $((end-start))"
        );
        let out = device.command("/bin/sh").args(["-c", &script]).stdin(Stdio::null()).output().expect("the baseline loop");
        assert!(out.status.success(), "every command answered: {}", String::from_utf8_lossy(&out.stderr));
        Duration::from_nanos(String::from_utf8_lossy(&out.stdout).trim().parse().expect("the loop's time"))
    }
}

fn main() {
    let rounds = env_number("PROOFRIG_BENCH_ROUNDS", 5).max(1);
    let percent = env_number("PROOFRIG_BENCH_CPU_PCT", 10).clamp(1, 100);
    let device = BusyboxDevice::start(Profile::Hardened);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let own = device.write_rig(dir);
    let shell = device.write_rig_through_one_shell(dir);
    let plan = plan(dir);
    let master = Master::open(&device, dir);
    let _slow = SlowCpu::running(&device, percent);

    println!("{COMMANDS} SSH commands (`echo N`, output and status checked) on the BusyBox + dropbear device at {percent}% of one CPU");
    let (mut ratios, mut shells, mut channels, mut baselines) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let baseline = master.commands(&device);
        let in_shell = proofrig_commands(&device, &shell, &plan, dir);
        let own_channels = proofrig_commands(&device, &own, &plan, dir);
        let ratio = in_shell.as_secs_f64() / baseline.as_secs_f64();
        println!(
            "  round {round}: baseline ssh ControlMaster {:.3} s, proofrig one shell {:.3} s ({ratio:.2}x), proofrig a channel each {:.3} s ({:.2}x)",
            baseline.as_secs_f64(),
            in_shell.as_secs_f64(),
            own_channels.as_secs_f64(),
            own_channels.as_secs_f64() / baseline.as_secs_f64()
        );
        ratios.push(ratio);
        shells.push(in_shell.as_secs_f64());
        channels.push(own_channels.as_secs_f64() / baseline.as_secs_f64());
        baselines.push(baseline.as_secs_f64());
    }
    let (lo, hi) = range(&ratios);
    println!(
        "ssh x{COMMANDS} on a slow device: proofrig (persistent_shell) {:.3} s, baseline ssh ControlMaster {:.3} s: ratio {:.2}x (range {lo:.2}x..{hi:.2}x over {rounds} rounds; goal <= 0.33x); a channel per command {:.2}x",
        median(&shells),
        median(&baselines),
        median(&ratios),
        median(&channels)
    );
}
