//! Devices side by side: how much sooner does a run on a rig of several devices end
//! when the devices are tested at once, each device's cases in order?
//!
//! The bundled library runs on the demo's simulated lab (four devices, one PDU, one
//! log server they all send to, the demo's delays: a refused console login answers
//! after 300 ms, a refused SSH login after 200 ms, an idle shell is logged out after
//! 2 s), in one run as `proofrig demo` does, through `execute` with a real
//! hash-chained journal and the recorder `proofrig run` uses. Each round runs the
//! whole library twice, on a fresh lab each time, in alternating order:
//! - **side by side** (the default of `proofrig run` and of the demo);
//! - **one device at a time** (`--one-device-at-a-time`), the baseline.
//!
//! Reported per round and as medians with their spread (min..max) over rounds: both
//! library times, their ratio, and the slowest device's own time: the sum of its
//! cases' durations in the one-at-a-time run, what that device alone needs (no run
//! side by side can end sooner). The goal: the four devices take little more than the
//! slowest one. Every journal is replayed (`proofrig verify`'s replay), and the verdicts
//! of the two modes are compared case by case; a difference is printed.
//!
//!     cargo bench -p proofrig --bench devices_side_by_side
//!
//! The port scan is given the ports the lab's devices listen on and 21, 23, 80, as the
//! demo gives it.
//! `PROOFRIG_BENCH_ROUNDS` (default 3) sets the number of paired rounds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proofrig_evidence::bundle::InputRefs;
use proofrig_evidence::journal::{read_chain, JournalWriter};
use proofrig_evidence::record::{CaseKey, FileRef};
use proofrig_evidence::replay::replay;
use proofrig_model::rig::Rig;
use proofrig_plan::scope::select;
use proofrig_plan::{library, Plan};
use proofrig_run::executor::{execute, run_recorder, RunRequest};
use proofrig_run::progress::Silent;
use proofrig_simlab::{SimLab, SimLabConfig};
use proofrig_verdict::Verdict;
use serde_json::Value;

/// One run of the whole library in one mode.
struct Library {
    took: Duration,
    /// Per device, the sum of its cases' durations.
    per_device: BTreeMap<String, Duration>,
    verdicts: BTreeMap<CaseKey, Verdict>,
}

fn main() {
    let rounds: usize = std::env::var("PROOFRIG_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let plans: Vec<Plan> = library::load_bundled().into_iter().filter_map(|(_, plan)| plan.ok()).collect();
    println!("devices side by side: the bundled library ({} plans) on the demo's simulated lab, {rounds} paired round(s)", plans.len());
    let mut side = Vec::new();
    let mut serial = Vec::new();
    let mut slowest = Vec::new();
    for round in 0..rounds {
        // Alternate which mode goes first, so the machine's drift weighs on both alike.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let mut results: BTreeMap<bool, Library> = BTreeMap::new();
        for one_at_a_time in order {
            results.insert(one_at_a_time, runtime.block_on(run_library(&plans, one_at_a_time)));
        }
        let (together, apart) = (&results[&false], &results[&true]);
        let (device, own) = apart.per_device.iter().max_by_key(|(_, d)| **d).map(|(n, d)| (n.clone(), *d)).unwrap_or_default();
        for (key, verdict) in &apart.verdicts {
            if together.verdicts.get(key) != Some(verdict) {
                println!("  note: {} on {}: {verdict} one at a time, {:?} side by side", key.case, key.device, together.verdicts.get(key));
            }
        }
        println!(
            "  round {}: side by side {:.1} s, one device at a time {:.1} s (ratio {:.2}); slowest device {device} alone {:.1} s (side by side / slowest {:.2}); per device: {}",
            round + 1,
            together.took.as_secs_f64(),
            apart.took.as_secs_f64(),
            together.took.as_secs_f64() / apart.took.as_secs_f64(),
            own.as_secs_f64(),
            together.took.as_secs_f64() / own.as_secs_f64(),
            apart.per_device.iter().map(|(d, t)| format!("{d} {:.1} s", t.as_secs_f64())).collect::<Vec<_>>().join(", ")
        );
        side.push(together.took.as_secs_f64());
        serial.push(apart.took.as_secs_f64());
        slowest.push(own.as_secs_f64());
    }
    let ratios: Vec<f64> = side.iter().zip(&serial).map(|(s, o)| s / o).collect();
    let over_slowest: Vec<f64> = side.iter().zip(&slowest).map(|(s, o)| s / o).collect();
    println!("\nmedian (min..max) over {rounds} round(s):");
    println!("  side by side          {}", spread(&side, "s"));
    println!("  one device at a time  {}", spread(&serial, "s"));
    println!("  slowest device alone  {}", spread(&slowest, "s"));
    println!("  side by side / one at a time  {}", spread(&ratios, ""));
    println!("  side by side / slowest device {}", spread(&over_slowest, ""));
}

/// `median (min..max)`.
fn spread(values: &[f64], unit: &str) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.is_empty() { 0.0 } else { sorted[sorted.len() / 2] };
    let (min, max) = (sorted.first().copied().unwrap_or_default(), sorted.last().copied().unwrap_or_default());
    format!("{median:.2}{unit} ({min:.2}..{max:.2}{unit})")
}

/// Run every plan of the library on a fresh lab in one run, as the demo does, in one mode.
async fn run_library(plans: &[Plan], one_device_at_a_time: bool) -> Library {
    let mut lab = match SimLab::start(SimLabConfig::demo().with_well_known_service_ports()).await {
        Ok(lab) => lab,
        Err(_) => SimLab::start(SimLabConfig::demo()).await.expect("start the simulated lab"),
    };
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::load(&lab.write_rig(dir.path()).unwrap()).unwrap();
    // The lab's ports, for the plan that scans (as the demo gives them).
    let ports: String = lab
        .devices()
        .iter()
        .flat_map(|d| d.tcp_ports())
        .map(|p| p.to_string())
        .chain(["21".into(), "23".into(), "80".into()])
        .collect::<Vec<_>>()
        .join(",");
    let plans: Vec<Plan> = plans.iter().filter(|plan| !select(std::slice::from_ref(*plan), &rig, None).is_empty()).cloned().collect();
    let mut params = BTreeMap::new();
    params.insert("ports".to_string(), Value::String(ports));
    let path = dir.path().join("journal.jsonl");
    let journal = Arc::new(JournalWriter::create(&path).unwrap());
    let recorder = run_recorder(&journal, &rig, &plans);
    let input = |path: &str| FileRef { path: path.into(), sha256: String::new() };
    let request = RunRequest {
        run_id: "bench".into(),
        plans: plans.clone(),
        rig: rig.clone(),
        only_device: None,
        params,
        operator: "bench".into(),
        host: "localhost".into(),
        inputs: InputRefs { rig: input("rig.yaml"), plans: plans.iter().map(|p| input(&p.path.display().to_string())).collect() },
        job: None,
        one_device_at_a_time,
    };
    let (_abort, abort) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let result = execute(request, journal, recorder, &mut Silent, abort).await.expect("the library runs");
    let took = started.elapsed();
    let (records, _) = read_chain(&path).unwrap().expect("an intact journal");
    if let Err(why) = replay(&plans, &rig, &records) {
        panic!("the library's journal does not replay: {why}");
    }
    let mut library = Library { took, per_device: BTreeMap::new(), verdicts: BTreeMap::new() };
    for case in result.cases {
        *library.per_device.entry(case.key.device.clone()).or_default() += Duration::from_millis(case.duration_ms);
        library.verdicts.insert(case.key, case.verdict);
    }
    lab.stop().await;
    library
}
