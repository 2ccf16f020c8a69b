//! `proofrig demo`: the whole main job with zero set-up.
//!
//! Starts the simulated lab inside this process (radio units and core appliances,
//! hardened and weak, on PTY consoles, SSH and a Modbus PDU on loopback), runs every
//! plan of the bundled library against it in one run, its devices side by side, seals
//! the evidence bundle under `results/`, and verifies it as a third party would. The same plans give PASS on
//! the hardened devices and FAIL on the weak ones.
//!
//! The library is compiled in (see `plan::library`): every `*.yaml` of `testplans/`
//! when the binary was built, so a plan added there is in the next `cargo run -- demo`
//! and an installed binary needs no `testplans/` beside it. A plan that does not load
//! is reported with its located error and the others still run (exit 3 at the end).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use proofrig_model::rig::Rig;
use proofrig_simlab::{SimLab, SimLabConfig};

use super::run::{run_and_seal, RunSetup};
use super::{Failure, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::table;
use proofrig_evidence::record::{CaseKey, CaseResult};
use proofrig_evidence::signing;
use proofrig_plan::scope::select;
use proofrig_plan::{clause_order, library, Plan};
use proofrig_run::progress::{Progress, StepDone};
use proofrig_verdict::Verdict;

pub async fn demo(out_dir: &Path, quiet: bool) -> Result<u8, Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::failed(miette::Report::msg(e.to_string()));
    std::fs::create_dir_all(out_dir).map_err(|e| failed(&format!("cannot create {}: {e}", out_dir.display())))?;
    let (key, public) = demo_key(out_dir)?;
    let started = Instant::now();

    let mut plans: Vec<Plan> = Vec::new();
    let mut invalid: Vec<String> = Vec::new();
    for (name, loaded) in library::load_bundled() {
        match loaded {
            Ok(plan) => plans.push(plan),
            Err(err) => {
                eprintln!("{:?}", miette::Report::new(err));
                invalid.push(name);
            }
        }
    }
    if plans.is_empty() {
        return Err(Failure::usage(miette::miette!("the bundled library has no plan that loads; nothing to run")));
    }
    let cases: usize = plans.iter().map(|p| p.spec.cases.len()).sum();
    eprintln!(
        "proofrig demo: {} plan(s), {cases} case(s) of the bundled library; starting the simulated lab (4 devices, 1 PDU, all on loopback)",
        plans.len()
    );
    // The weak devices' telnet, FTP, HTTP and SNMP belong on ports 23, 21, 80 and UDP 161, where a
    // real device has them and TC_NO_UNNECESSARY_SERVICE looks. Binding them needs
    // root (or CAP_NET_BIND_SERVICE); without it they move to free high ports, where
    // only the port scan (TC_BVT_PORT_SCANNING) can tell them from documented ones.
    let lab_config = demo_lab().map_err(|e| failed(&e))?;
    let mut lab = match SimLab::start(lab_config.clone().with_well_known_service_ports()).await {
        Ok(lab) => lab,
        Err(err) => {
            eprintln!(
                "note: the weak devices' telnet/FTP/HTTP and SNMP cannot listen on ports 23/21/80 and UDP 161 here ({err}); they run on \
                 free high ports, so 4.3.2.1 (TC_NO_UNNECESSARY_SERVICE) cannot find them on the weak devices. \
                 Run the demo as root (or with CAP_NET_BIND_SERVICE) to see it fail there."
            );
            SimLab::start(lab_config).await.map_err(|e| failed(&e))?
        }
    };
    let lab_dir = tempfile::Builder::new().prefix("proofrig-demo-lab-").tempdir().map_err(|e| failed(&e))?;
    let rig_path = lab.write_rig(lab_dir.path()).map_err(|e| failed(&e))?;
    let rig = Rig::load(&rig_path)?;
    let profiles: Vec<(String, String)> =
        lab.devices().iter().map(|d| (d.name().to_string(), d.spec().profile.name().to_string())).collect();

    // The simulated devices share loopback with this host: a service of the host
    // listening on 0.0.0.0 answers on every device address, and is none of the devices'
    // business. So the port scan is given the ports the lab's devices listen on (their
    // documented and undocumented services alike) and 21, 23, 80, not the kernel's
    // ephemeral range, where the host's own programs come and go while the demo runs.
    let mut lab_ports: Vec<u16> = lab.devices().iter().flat_map(|d| d.tcp_ports()).chain([21, 23, 80]).collect();
    lab_ports.sort_unstable();
    lab_ports.dedup();
    let lab_ports = port_list(lab_ports.into_iter());

    // Every plan in one run, the devices side by side: the library takes about as long
    // as its slowest device.
    let mut unmatched: Vec<String> = Vec::new();
    let mut library: Vec<Plan> = Vec::new();
    for plan in plans {
        if select(std::slice::from_ref(&plan), &rig, None).is_empty() {
            let name = plan.path.display().to_string();
            eprintln!("\n{name}: no device of the simulated lab matches its cases' `devices:`; not run");
            unmatched.push(name);
        } else {
            library.push(plan);
        }
    }
    let names: Vec<String> = library.iter().map(|plan| plan.path.display().to_string()).collect();
    eprintln!("\n{} plans of the library in one run, the devices side by side", library.len());
    let mut params = BTreeMap::new();
    if library.iter().any(|plan| plan.spec.parameters.contains_key("ports")) {
        eprintln!("      (parameter ports: {lab_ports}, the ports the lab's devices listen on and 21, 23, 80)");
        params.insert("ports".to_string(), serde_json::Value::String(lab_ports));
    }
    let setup = RunSetup {
        plans: library,
        rig: rig.clone(),
        only_device: None,
        params,
        out_dir: out_dir.to_path_buf(),
        key: key.clone(),
        job: None,
        one_device_at_a_time: false,
    };
    let ran = run_and_seal(setup, "library", &mut CaseLines { quiet, started: BTreeMap::new() }).await;
    if ran.as_ref().is_ok_and(|run| run.result.aborted) {
        eprintln!("proofrig demo: stopped by the operator; the cases left are NOT_RUN");
    }
    lab.stop().await;
    let run = ran?;

    let report = proofrig_evidence::verify_bundle(&run.dir, Some(&public));
    let verified = report.status == proofrig_evidence::verify::Status::Verified && report.pinned;
    let status = if verified { "VERIFIED".to_string() } else { format!("{:?}: {}", report.status, report.summary) };
    // One row per plan: every plan's bundle is the run's.
    let bundles: Vec<Vec<String>> = names.iter().map(|name| vec![status.clone(), run.dir.display().to_string(), name.clone()]).collect();

    let results: Vec<&CaseResult> = run.result.cases.iter().collect();
    println!();
    let hardened: Vec<&str> = profiles.iter().filter(|(_, p)| p == "hardened").map(|(d, _)| d.as_str()).collect();
    let weak: Vec<&str> = profiles.iter().filter(|(_, p)| p == "weak").map(|(d, _)| d.as_str()).collect();
    println!("Verdicts, by clause ({} hardened, {} weak):\n", hardened.join(" and "), weak.join(" and "));
    print!("{}", verdict_matrix(&results, &profiles));
    let surprises = surprises(&results, &profiles);
    if !surprises.is_empty() {
        println!("\nNot the usual hardened PASS / weak FAIL, with the evidence behind each:\n");
        print!(
            "{}",
            table::render_fitted(&["device", "clause", "test", "verdict", "evidence"], &surprises, crate::terminal::stdout_width())
        );
    }
    println!("\nBundles, each verified as a third party would (signature by the demo key, every file, the hash chain, every verdict replayed):\n");
    print!("{}", table::render(&["verify", "bundle", "plan"], &bundles));
    if !unmatched.is_empty() {
        println!("\nNot run (no simulated device matches): {}", unmatched.join(", "));
    }
    if !invalid.is_empty() {
        println!("\nNot run, invalid (errors above): {}", invalid.join(", "));
    }
    println!(
        "\nThe library ({} plan(s), {} case verdict(s)) ran and was verified in {:.0} s.",
        names.len(),
        results.len(),
        started.elapsed().as_secs_f64()
    );
    println!("\nOpen a bundle's report.html, or check one yourself:");
    println!("    proofrig verify {} --key {}", run.dir.display(), out_dir.join("demo-lab.pub").display());
    Ok(if !verified {
        EXIT_FAILED
    } else if !invalid.is_empty() {
        EXIT_USAGE
    } else {
        EXIT_OK
    })
}

/// One row per SCAS test (by clause number), one column per device: the worst
/// verdict of the cases that test it there, `-` where none ran.
fn verdict_matrix(results: &[&CaseResult], profiles: &[(String, String)]) -> String {
    let mut rows: BTreeMap<(String, String, String), BTreeMap<&str, Verdict>> = BTreeMap::new();
    for case in results {
        let cell = rows
            .entry((case.scas_shown().spec.clone(), case.scas_shown().clause.clone(), case.scas_shown().test_name.clone()))
            .or_default()
            .entry(case.key.device.as_str())
            .or_insert(case.verdict);
        *cell = (*cell).min(case.verdict);
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|((sa, ca, ta), _), ((sb, cb, tb), _)| sa.cmp(sb).then(clause_order(ca, cb)).then(ta.cmp(tb)));
    let one_spec = rows.windows(2).all(|w| w[0].0 .0 == w[1].0 .0);
    let printable: Vec<Vec<String>> = rows
        .iter()
        .map(|((spec, clause, test), cells)| {
            let mut row = vec![if one_spec { clause.clone() } else { format!("{spec} {clause}") }, test.clone()];
            row.extend(profiles.iter().map(|(device, _)| cells.get(device.as_str()).map_or("-".to_string(), |v| v.to_string())));
            row
        })
        .collect();
    let mut header = vec!["clause", "test"];
    header.extend(profiles.iter().map(|(d, _)| d.as_str()));
    table::render(&header, &printable)
}

/// Case runs whose verdict is not PASS on a hardened device or FAIL on a weak one.
fn surprises(results: &[&CaseResult], profiles: &[(String, String)]) -> Vec<Vec<String>> {
    let mut out: Vec<(&CaseResult, Vec<String>)> = results
        .iter()
        .filter_map(|case| {
            let profile = profiles.iter().find(|(d, _)| *d == case.key.device).map(|(_, p)| p.as_str())?;
            let usual = match profile {
                "hardened" => Verdict::Pass,
                _ => Verdict::Fail,
            };
            (case.verdict != usual && case.verdict != Verdict::Skip).then(|| {
                let why = case.evidence_excerpt.lines().next().unwrap_or("").to_string();
                let row = vec![
                    case.key.device.clone(),
                    case.scas_shown().clause.clone(),
                    case.scas_shown().test_name.clone(),
                    case.verdict.to_string(),
                    why,
                ];
                (*case, row)
            })
        })
        .collect();
    out.sort_by(|(a, _), (b, _)| clause_order(&a.scas_shown().clause, &b.scas_shown().clause).then(a.key.device.cmp(&b.key.device)));
    out.into_iter().map(|(_, row)| row).collect()
}

/// Progress for a long run over a whole library: one line per case when it ends, with
/// its verdict and time (the steps are in each bundle's report). The devices go side
/// by side, so a case's line is written whole when it ends, naming its device.
struct CaseLines {
    quiet: bool,
    /// When each open case started.
    started: BTreeMap<CaseKey, (usize, usize, Instant)>,
}

impl Progress for CaseLines {
    fn run_started(&mut self, _: &str, _: usize) {}

    fn case_started(&mut self, number: usize, of: usize, key: &CaseKey, _: &str) {
        self.started.insert(key.clone(), (number, of, Instant::now()));
    }

    fn step_finished(&mut self, _: &StepDone<'_>) {}

    fn case_finished(&mut self, key: &CaseKey, verdict: Verdict) {
        let Some((number, of, started)) = self.started.remove(key) else { return };
        if !self.quiet {
            eprintln!("      [{number}/{of}] {:<6} {} ... {verdict} ({:.1} s)", key.device, key.case, started.elapsed().as_secs_f64());
        }
    }
}

/// Ports written as ranges: `21,23,80,32768-40000,40002-60999`.
fn port_list(ports: impl Iterator<Item = u16>) -> String {
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for port in ports {
        match ranges.last_mut() {
            Some((_, high)) if *high + 1 == port => *high = port,
            _ => ranges.push((port, port)),
        }
    }
    ranges.iter().map(|(low, high)| if low == high { low.to_string() } else { format!("{low}-{high}") }).collect::<Vec<_>>().join(",")
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

/// The demo's lab ([`SimLabConfig::demo`]), its devices on loopback addresses of their
/// own, so a port scan finds only them, even with another demo, `proofrig sim` or a
/// test suite's labs running on the machine.
fn demo_lab() -> Result<SimLabConfig, proofrig_simlab::SimError> {
    SimLabConfig::demo().on_random_addresses()
}
