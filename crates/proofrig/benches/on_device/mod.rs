//! What the benches that run `proofrig` on the BusyBox test device share: a run inside
//! the device's network namespace, its bundle, and the arithmetic of rounds.

// Each bench that includes this module uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use proofrig_testpeers::busybox::BusyboxDevice;
use serde_json::Value;

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The median (the upper one of an even count); sorts `values`.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

/// The smallest and largest of `values`.
pub fn range(values: &[f64]) -> (f64, f64) {
    (values.iter().cloned().fold(f64::MAX, f64::min), values.iter().cloned().fold(0.0, f64::max))
}

/// A finished `proofrig run`: its bundle, results and what it printed.
pub struct Run {
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
    let out = device
        .command(env!("CARGO_BIN_EXE_proofrig"))
        .args(["run", &plan.display().to_string(), "--rig", &rig.display().to_string()])
        .args(["--key", &key.display().to_string(), "--out", &out_dir.display().to_string(), "--quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("run proofrig");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let bundle = text.lines().find_map(|l| l.strip_prefix("bundle: ").map(PathBuf::from)).unwrap_or_else(|| panic!("no bundle: {text}"));
    let results = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).expect("results")).expect("results.json");
    Run { bundle, results, text }
}

/// The rig `device.write_rig` writes, with its SSH commands through one shell of the session.
pub fn with_persistent_shell(rig: &Path, to: &Path) -> PathBuf {
    let yaml = std::fs::read_to_string(rig).expect("rig");
    let changed = yaml.replacen("      timeout_ms: 5000\n", "      timeout_ms: 5000\n      persistent_shell: true\n", 1);
    assert_ne!(yaml, changed, "the rig's ssh block has its timeout line");
    std::fs::write(to, changed).expect("rig");
    to.to_path_buf()
}
