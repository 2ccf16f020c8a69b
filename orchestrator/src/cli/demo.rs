//! `proofrig demo`: the whole main job with zero set-up.
//!
//! Starts the simulated lab inside this process (radio units and core appliances,
//! hardened and weak, on PTY consoles, SSH and a Modbus PDU on loopback), runs the
//! bundled plans against it, seals one evidence bundle per plan under `results/`,
//! and verifies each bundle as a third party would. The same plans give PASS on the
//! hardened devices and FAIL on the weak ones.

use std::path::{Path, PathBuf};

use proofrig_agents::rig::Rig;
use proofrig_simlab::{SimLab, SimLabConfig};

use super::run::{run_and_seal, verdict_table, RunSetup};
use super::{Failure, EXIT_FAILED, EXIT_OK};
use crate::evidence::signing;
use crate::plan::Plan;
use crate::run::progress::Terminal;

/// The plans the demo runs, compiled in so the demo works from any directory.
pub const BUNDLED_PLANS: &[(&str, &[u8])] = &[
    ("testplans/remote-root-login.yaml", include_bytes!("../../../testplans/remote-root-login.yaml")),
    ("testplans/ssh-algorithms.yaml", include_bytes!("../../../testplans/ssh-algorithms.yaml")),
    ("testplans/open-ports.yaml", include_bytes!("../../../testplans/open-ports.yaml")),
];

pub async fn demo(out_dir: &Path, quiet: bool) -> Result<u8, Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::failed(miette::Report::msg(e.to_string()));
    std::fs::create_dir_all(out_dir).map_err(|e| failed(&format!("cannot create {}: {e}", out_dir.display())))?;
    let (key, public) = demo_key(out_dir)?;

    eprintln!("proofrig demo: starting the simulated lab (4 devices, 1 PDU, all on loopback)");
    let mut lab = SimLab::start(SimLabConfig::default()).await.map_err(|e| failed(&e))?;
    let lab_dir = tempfile::Builder::new().prefix("proofrig-demo-lab-").tempdir().map_err(|e| failed(&e))?;
    let rig_path = lab.write_rig(lab_dir.path()).map_err(|e| failed(&e))?;
    let rig = Rig::load(&rig_path)?;

    let mut sealed = Vec::new();
    let mut outcome = Ok(());
    for (name, bytes) in BUNDLED_PLANS {
        let text = String::from_utf8_lossy(bytes);
        let mut plan = Plan::parse(name, &text).map_err(|e| Failure::usage(miette::Report::new(e)))?;
        plan.path = PathBuf::from(name);
        plan.bytes = bytes.to_vec();
        let label = plan.spec.plan.clone();
        eprintln!("\nproofrig demo: plan {name}");
        let mut params = std::collections::BTreeMap::new();
        if plan.spec.parameters.contains_key("ports") {
            // The simulated devices share loopback with this host: a service of the host
            // listening on 0.0.0.0 answers on every device address. The lab's listeners
            // all take ports from the kernel's ephemeral range, so scan that range.
            let range = ephemeral_port_range();
            eprintln!("proofrig demo: scanning ports {range} (the range the simulated lab's listeners use)");
            params.insert("ports".to_string(), serde_json::Value::String(range));
        }
        let setup = RunSetup {
            plans: vec![plan],
            rig: rig.clone(),
            only_device: None,
            params,
            out_dir: out_dir.to_path_buf(),
            key: key.clone(),
        };
        match run_and_seal(setup, &label, &mut Terminal { quiet }).await {
            Ok(run) => sealed.push(run),
            Err(err) => {
                outcome = Err(err);
                break;
            }
        }
    }
    lab.stop().await;
    outcome?;

    println!();
    let mut all_verified = true;
    for run in &sealed {
        println!("{}", run.dir.display());
        print!("{}", verdict_table(&run.result));
        let report = super::verify::verify_bundle(&run.dir, Some(&public));
        let verified = report.status == crate::evidence::verify::Status::Verified && report.pinned;
        println!("verify: {}\n", if verified { "VERIFIED (signature by the demo key, every file, the hash chain, every verdict replayed)".to_string() } else { format!("{:?}: {}", report.status, report.summary) });
        all_verified &= verified;
    }
    println!("The hardened devices (ru1, core1) should PASS and the weak ones (ru2, core2) FAIL.");
    println!("Open a bundle's report.html, or check one yourself:");
    if let Some(run) = sealed.first() {
        println!("    proofrig verify {} --key {}", run.dir.display(), out_dir.join("demo-lab.pub").display());
    }
    Ok(if all_verified { EXIT_OK } else { EXIT_FAILED })
}

/// The kernel's ephemeral port range, where OS-chosen listening ports come from.
fn ephemeral_port_range() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            match (parts.next(), parts.next()) {
                (Some(Ok(low)), Some(Ok(high))) => Some(format!("{low}-{high}")),
                _ => None,
            }
        })
        .unwrap_or_else(|| "32768-60999".into())
}

/// The demo signs with a key of its own, kept beside the results and reused.
fn demo_key(out_dir: &Path) -> Result<(ed25519_dalek::SigningKey, ed25519_dalek::VerifyingKey), Failure> {
    let private = out_dir.join("demo-lab.key");
    let public = out_dir.join("demo-lab.pub");
    let usage = |e: signing::KeyError| Failure::usage(miette::Report::msg(e.to_string()));
    if !private.exists() {
        signing::generate(&private, &public).map_err(usage)?;
        eprintln!("proofrig demo: made a demo signing key {} (a real lab uses its own: `proofrig keygen`)", private.display());
    }
    let key = signing::load_signing_key(&private).map_err(usage)?;
    let verifying = key.verifying_key();
    Ok((key, verifying))
}
