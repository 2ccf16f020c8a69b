//! What the benches that run `proofrig` on the BusyBox test device share: a run inside
//! the device's network namespace, its bundle, and the arithmetic of rounds.

// Each bench that includes this module uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use proofrig_testpeers::busybox::BusyboxDevice;
use serde_json::Value;

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The median (the upper one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    sorted[sorted.len() / 2]
}

/// The smallest and largest of `values`.
pub fn range(values: &[f64]) -> (f64, f64) {
    (values.iter().cloned().fold(f64::MAX, f64::min), values.iter().cloned().fold(0.0, f64::max))
}

/// A finished `proofrig run`: its bundle, results and what it printed.
pub struct Run {
    /// The wall time of the `proofrig run` process.
    pub took: Duration,
    pub bundle: PathBuf,
    pub results: Value,
    pub text: String,
}

impl Run {
    /// The journal's records, parsed.
    pub fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(self.bundle.join("journal.jsonl"))
            .expect("the bundle's journal")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a journal line"))
            .collect()
    }
}

/// `proofrig run PLAN --rig RIG` inside the device's network namespace, signed with a
/// lab key kept in `dir`, its results under `dir/results` (emptied first).
pub fn run_on_device(device: &BusyboxDevice, rig: &Path, plan: &Path, dir: &Path) -> Run {
    let out_dir = dir.join("results");
    let _ = std::fs::remove_dir_all(&out_dir);
    let key = dir.join("lab.key");
    if !key.exists() {
        proofrig_evidence::signing::generate(&key, &dir.join("lab.pub")).expect("lab key");
    }
    let started = Instant::now();
    let out = device
        .command(env!("CARGO_BIN_EXE_proofrig"))
        .args(["run", &plan.display().to_string(), "--rig", &rig.display().to_string()])
        .args(["--key", &key.display().to_string(), "--out", &out_dir.display().to_string(), "--quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("run proofrig");
    let took = started.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let bundle = text.lines().find_map(|l| l.strip_prefix("bundle: ").map(PathBuf::from)).unwrap_or_else(|| panic!("no bundle: {text}"));
    let results = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).expect("results")).expect("results.json");
    Run { took, bundle, results, text }
}

/// `proofrig verify` of `run`'s bundle inside the device's namespace with the lab key
/// `run_on_device` made in `dir`; it must say VERIFIED. Returns the process's wall time.
pub fn verify_on_device(device: &BusyboxDevice, run: &Run, dir: &Path) -> Duration {
    let started = Instant::now();
    let verified = device
        .command(env!("CARGO_BIN_EXE_proofrig"))
        .args(["verify", &run.bundle.display().to_string(), "--key", &dir.join("lab.pub").display().to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run proofrig verify");
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success() && said.lines().any(|l| l == "VERIFIED"), "the bundle verifies: {said}");
    took
}

/// A cgroup (v1 `cpu` controller) that holds the device's processes to a fraction of
/// one CPU, as a radio unit's small processor does. Removed on drop.
pub struct SlowCpu {
    dir: PathBuf,
}

impl SlowCpu {
    fn group(percent: usize) -> SlowCpu {
        let dir = PathBuf::from(format!("/sys/fs/cgroup/cpu/proofrig-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make the cgroup {}: {e} (needs root and cgroup v1 cpu)", dir.display()));
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").expect("cgroup period");
        std::fs::write(dir.join("cpu.cfs_quota_us"), (percent * 1000).to_string()).expect("cgroup quota");
        SlowCpu { dir }
    }

    /// The group, holding the processes the running device has now (init, dropbear):
    /// every session and shell they fork from now on is in it too. Until its next boot.
    pub fn running(device: &BusyboxDevice, percent: usize) -> SlowCpu {
        let slow = Self::group(percent);
        let netns = device.network_namespace();
        let mut moved = 0;
        for entry in std::fs::read_dir("/proc").expect("/proc") {
            let Ok(pid) = entry.expect("a /proc entry").file_name().to_string_lossy().parse::<u32>() else { continue };
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).map(|p| p.display().to_string()).unwrap_or_default();
            if ns == netns && std::fs::write(slow.dir.join("cgroup.procs"), pid.to_string()).is_ok() {
                moved += 1;
            }
        }
        assert!(moved >= 2, "the device's processes (init, dropbear) were moved into the cgroup: only {moved}");
        slow
    }

    /// The group, joined by the device's boot script first thing, so every boot from
    /// the next power-on runs in it: the script's shell becomes PID 1 of the device's
    /// PID namespace, and init, getty, dropbear and all they fork inherit its group.
    pub fn from_boot(device: &BusyboxDevice, percent: usize) -> SlowCpu {
        let slow = Self::group(percent);
        let boot = device.root_dir().parent().expect("the device's directory").join("boot.sh");
        let script = std::fs::read_to_string(&boot)
            .unwrap_or_else(|e| panic!("the BusyBox device's boot script {}: {e} (has proofrig-testpeers moved it?)", boot.display()));
        assert!(script.contains("/sbin/init"), "{} does not boot init: {script}", boot.display());
        let join = format!("echo $$ > '{}'\n", slow.dir.join("cgroup.procs").display());
        std::fs::write(&boot, format!("{join}{script}")).expect("the boot script joins the cgroup");
        slow
    }

    /// How many processes are in the group now.
    pub fn processes(&self) -> usize {
        std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default().lines().count()
    }
}

impl Drop for SlowCpu {
    fn drop(&mut self) {
        // Processes still in it go back to the root group before it can be removed.
        if let Ok(pids) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in pids.lines() {
                let _ = std::fs::write("/sys/fs/cgroup/cpu/cgroup.procs", pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
