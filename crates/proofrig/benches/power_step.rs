//! What a plan's `power` step costs against a bare Modbus write plus read-back.
//!
//! Issue 17's power goal: a `power` step costs at most 1.5x a bare Modbus write plus
//! read-back against the same PDU, and whatever waits on the console before a switch
//! stays off the critical path when nothing is pending. Before this bench the step
//! waited a fixed 200 ms for the console to go quiet, whatever it had been doing.
//!
//! proofrig's side: `execute` (real journal, the recorder `proofrig run` uses) runs a
//! plan on one device with a PTY console (a device at its prompt: it prints nothing)
//! and a Modbus TCP outlet. The plan opens the console, lets it sit quiet, then
//! switches the outlet off and on `PROOFRIG_BENCH_STEPS` times (default 400). The
//! same plan without the switching is run too, and the difference divided by the
//! number of switches is the cost of one power step: step records, events, the
//! console's cut, the Modbus write and its read-back.
//!
//! Baseline: a plain tokio-modbus client on a kept-open connection doing
//! `write_single_coil` + `read_coils`, the same number of times, against the same
//! server (testpeers' Modbus board, its own thread), in the same rounds, alternating.
//! Headline: the median of the rounds' ratios, with their range.
//!
//! Run: `cargo bench -p proofrig --bench power_step` (`PROOFRIG_BENCH_ROUNDS`, default 7).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proofrig_evidence::bundle::InputRefs;
use proofrig_evidence::journal::JournalWriter;
use proofrig_evidence::record::FileRef;
use proofrig_model::rig::Rig;
use proofrig_plan::Plan;
use proofrig_run::executor::{execute, run_recorder, RunRequest};
use proofrig_run::progress::Silent;
use proofrig_testpeers::modbus::ModbusServer;
use proofrig_testpeers::pty::PtyPair;
use proofrig_verdict::Verdict;
use tokio_modbus::client::tcp;
use tokio_modbus::prelude::{Reader, Slave, Writer};

const OUTLET: u16 = 3;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn plan(switches: usize) -> Plan {
    let mut steps = String::from(
        "      - console_send: { text: \"\" }\n\
         \x20     - wait: { ms: 300 }\n",
    );
    for i in 0..switches {
        let action = if i % 2 == 0 { "off" } else { "on" };
        steps.push_str(&format!("      - power: {{ action: {action} }}\n"));
    }
    let yaml = format!(
        "plan: bench-power-step\ntitle: Power steps\ncases:\n  - id: BENCH_POWER\n    title: switch the outlet\n    \
         scas: {{ spec: TS 33.117, clause: 4.2.3.3.2, test_name: BENCH_POWER, requirement: r }}\n    \
         purpose: p\n    expected: e\n    evidence: e\n    steps:\n{steps}"
    );
    Plan::parse("bench-power-step.yaml", &yaml).expect("bench plan")
}

async fn run_plan(rig: &Rig, plan: &Plan, dir: &Path) -> Duration {
    let path = dir.join(format!("journal-{}.jsonl", plan.spec.cases[0].steps.len()));
    let _ = std::fs::remove_file(&path);
    let journal = Arc::new(JournalWriter::create(&path).expect("journal"));
    let recorder = run_recorder(&journal, rig, std::slice::from_ref(plan));
    let input = |path: &str| FileRef { path: path.into(), sha256: String::new() };
    let request = RunRequest {
        run_id: "bench".into(),
        plans: vec![plan.clone()],
        rig: rig.clone(),
        only_device: None,
        params: BTreeMap::new(),
        operator: "bench".into(),
        host: "localhost".into(),
        inputs: InputRefs { rig: input("rig.yaml"), plans: vec![input("plan.yaml")] },
        job: None,
        one_device_at_a_time: false,
    };
    let (_abort, abort_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let result = execute(request, journal, recorder, &mut Silent, abort_rx).await.expect("the run completes");
    let took = started.elapsed();
    // No step checks anything (the case is INCONCLUSIVE), but every one must have done its work.
    let case = &result.cases[0];
    let failed = case.steps.iter().find(|s| s.verdict != Verdict::Pass);
    assert!(failed.is_none(), "every step must work; first problem: {:?}", failed.map(|s| (&s.verdict, &s.message)));
    assert_eq!(case.steps.len(), plan.spec.cases[0].steps.len(), "every step ran");
    took
}

async fn bare_modbus(addr: std::net::SocketAddr, switches: usize) -> Duration {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("baseline connect");
    let mut client = tcp::attach_slave(stream, Slave(1));
    let started = Instant::now();
    for i in 0..switches {
        let on = i % 2 == 1;
        client.write_single_coil(OUTLET, on).await.expect("transport").expect("coil written");
        let read = client.read_coils(OUTLET, 1).await.expect("transport").expect("coil read");
        assert_eq!(read[0], on, "the coil reads back as written");
    }
    started.elapsed()
}

fn main() {
    let switches = env_number("PROOFRIG_BENCH_STEPS", 400).max(2);
    let rounds = env_number("PROOFRIG_BENCH_ROUNDS", 7).max(1);
    let board = ModbusServer::start(16);
    let console = PtyPair::open();
    let dir = tempfile::tempdir().expect("temp dir");
    let rig = Rig::parse(
        "bench-rig.yaml",
        &format!(
            "rig: bench\npdus:\n  relays: {{ modbus: {{ host: 127.0.0.1, port: {} }} }}\n\
             devices:\n  ru1:\n    role: radio-unit\n    power: {{ pdu: relays, outlet: {OUTLET} }}\n    \
             console:\n      serial: {{ port: {}, baud: 115200 }}\n",
            board.addr().port(),
            console.path().display()
        ),
        dir.path(),
    )
    .expect("bench rig");
    let (with, without) = (plan(switches), plan(0));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    println!("power step: {switches} switches (off/on) per round, {rounds} rounds, console open and quiet");
    let mut ratios = Vec::new();
    let mut steps_us = Vec::new();
    let mut bare_us = Vec::new();
    runtime.block_on(async {
        // Warm up both paths once (connections, page cache).
        run_plan(&rig, &with, dir.path()).await;
        bare_modbus(board.addr(), switches).await;
        for round in 1..=rounds {
            let full = run_plan(&rig, &with, dir.path()).await;
            let frame = run_plan(&rig, &without, dir.path()).await;
            let bare = bare_modbus(board.addr(), switches).await;
            let step = full.saturating_sub(frame).as_secs_f64() * 1e6 / switches as f64;
            let baseline = bare.as_secs_f64() * 1e6 / switches as f64;
            println!("  round {round}: power step {step:.1} µs, bare write+read-back {baseline:.1} µs, ratio {:.2}x", step / baseline);
            ratios.push(step / baseline);
            steps_us.push(step);
            bare_us.push(baseline);
        }
    });
    let median = |values: &mut Vec<f64>| {
        values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        values[values.len() / 2]
    };
    let (lo, hi) = (ratios.iter().cloned().fold(f64::MAX, f64::min), ratios.iter().cloned().fold(0.0, f64::max));
    println!(
        "power step: median {:.1} µs, bare Modbus write+read-back median {:.1} µs, ratio {:.2}x (range {lo:.2}x..{hi:.2}x over {rounds} rounds; goal <= 1.5x)",
        median(&mut steps_us),
        median(&mut bare_us),
        median(&mut ratios)
    );
    drop(board);
}
