//! Executor overhead: how much of a long plan's wall time does proofrig spend outside
//! the devices' own waits?
//!
//! A plan with one case of `PROOFRIG_BENCH_STEPS` steps (default 1000, rounded up to a
//! multiple of 4) runs on `ru1` of the in-process simulated lab
//! (`SimLabConfig::fast()`), through `execute` with a real hash-chained journal
//! (`JournalWriter` behind a `JournalSink`), the way `proofrig run` does. The steps
//! repeat `ssh_exec: true`, `ssh_exec: echo x` (both `expect_status: 0`),
//! `console_send: echo x` and a `console_expect` of the `x` line and the next prompt:
//! half SSH commands, half console round trips. (Not `console_run`: it ends each
//! command with `echo ...$?`, and the simulated shell has no `$?`, so it never returns
//! there.) Against it, in the same process, on the same lab:
//! - **baseline "direct agent calls"**: the same operations straight through the
//!   agents in a plain loop: `SshSession::exec` on one session, `Expect::send_line` and
//!   `Expect::expect` on one console, opened lazily and closed at the end just as the
//!   executor does, with a recorder that discards events. This is the time the
//!   devices (and the agents talking to them) need; whatever the executor takes
//!   beyond it is its overhead;
//! - for context, the same direct loop recording every agent event into a journal,
//!   which splits that overhead into "journaling the agents' events" and "the
//!   executor's own work" (resolving, judging, its step records).
//!
//! The same is then measured for a console-only plan (send and expect alternating) of
//! ten times as many steps, since they are quick: its device waits are short, so the
//! executor's cost per step shows plainly.
//!
//! The console is logged in once before any measurement and stays logged in, so no
//! side waits for a login prompt. Rounds alternate (`PROOFRIG_BENCH_ROUNDS`, default
//! 3) so the machine's load weighs on all alike, and the best round of each counts.
//!
//! overhead = (executor − baseline) / executor; the goal is <= 5% for the mixed plan.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proofrig::evidence::journal::{read_chain, JournalWriter};
use proofrig::evidence::bundle::InputRefs;
use proofrig::evidence::record::FileRef;
use proofrig::plan::Plan;
use proofrig::run::executor::{execute, JournalSink, RunRequest};
use proofrig::run::progress::Silent;
use proofrig::verdict::Verdict;
use proofrig_agents::events::Recorder;
use proofrig_agents::expect::Expect;
use proofrig_agents::rig::Rig;
use proofrig_agents::serial::open_console;
use proofrig_agents::ssh::SshSession;
use proofrig_simlab::{SimLab, SimLabConfig};
use regex::bytes::Regex;

const DEVICE: &str = "ru1";
/// What the executor hands the agents for a step with the default 30 s limit.
const AGENT_TIMEOUT: Duration = Duration::from_millis(29_900);
/// What a console round trip waits for: the command's output line, then the prompt.
const CONSOLE_DONE: &str = r"\nx\r?\n[^\n]*[#$] $";

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// One device operation, as a plan step and as a direct agent call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    SshTrue,
    SshEcho,
    ConsoleSend,
    ConsoleExpect,
}

impl Op {
    const ALL: [Op; 4] = [Op::SshTrue, Op::SshEcho, Op::ConsoleSend, Op::ConsoleExpect];

    fn step_yaml(self) -> String {
        match self {
            Op::SshTrue => "ssh_exec: { command: \"true\", expect_status: 0 }".into(),
            Op::SshEcho => "ssh_exec: { command: echo x, expect_status: 0 }".into(),
            Op::ConsoleSend => "console_send: { text: echo x }".into(),
            Op::ConsoleExpect => format!("console_expect: {{ patterns: ['{CONSOLE_DONE}'] }}"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Op::SshTrue => "ssh `true`",
            Op::SshEcho => "ssh `echo x`",
            Op::ConsoleSend => "console send",
            Op::ConsoleExpect => "console expect",
        }
    }
}

/// A plan shape: the operations its steps cycle through.
struct Variant {
    name: &'static str,
    cycle: &'static [Op],
}

const MIXED: Variant = Variant { name: "mixed", cycle: &Op::ALL };
const CONSOLE_ONLY: Variant = Variant { name: "console-only", cycle: &[Op::ConsoleSend, Op::ConsoleExpect] };

impl Variant {
    fn op(&self, step: usize) -> Op {
        self.cycle[step % self.cycle.len()]
    }

    /// One case of `steps` steps on `ru1`.
    fn plan(&self, steps: usize) -> Plan {
        let mut text = format!(
            "plan: bench-executor-overhead-{}\n\
             title: Executor overhead\n\
             cases:\n\
             \x20 - id: BENCH_TRIVIAL_STEPS\n\
             \x20   title: Trivial device operations\n\
             \x20   scas: {{ spec: TS 33.117, clause: \"4.2\", test_name: BENCH_TRIVIAL_STEPS, requirement: \"none, a benchmark\" }}\n\
             \x20   purpose: measure what the executor adds to each step\n\
             \x20   expected: every command exits 0 and every output appears\n\
             \x20   evidence: the journal\n\
             \x20   devices: {{ names: [{DEVICE}] }}\n\
             \x20   steps:\n",
            self.name
        );
        for step in 0..steps {
            text.push_str(&format!("      - {}\n", self.op(step).step_yaml()));
        }
        Plan::parse(&format!("bench-executor-overhead-{}.yaml", self.name), &text).expect("the generated plan is valid")
    }
}

/// Log in on the console once, outside any measurement, and leave the shell open.
async fn log_in_console(rig: &Rig) {
    let device = rig.device(DEVICE).unwrap();
    let console = device.console.clone().expect("ru1 has a console");
    let login = console.login.clone().expect("the sim rig gives a console login");
    let password = login.password.as_ref().map(|p| p.resolve().expect("the console password file"));
    let stream = open_console(DEVICE, &console, Recorder::discard()).await.expect("open the console");
    let mut expect = Expect::for_console(stream, &console).unwrap();
    expect.login(&login, password.as_ref(), Duration::from_secs(30)).await.expect("console login");
    expect.send_line("echo x").await.expect("type at the console");
    expect.expect(&[Regex::new(CONSOLE_DONE).unwrap()], AGENT_TIMEOUT).await.expect("a command at the console");
    expect.into_stream().close().await;
}

struct ExecutorRun {
    took: Duration,
    records: usize,
    journal_bytes: u64,
}

/// The plan through `execute`, journaling as `proofrig run` does.
async fn run_executor(rig: &Rig, plan: &Plan, steps: usize, dir: &Path) -> ExecutorRun {
    let path = dir.join("executor.jsonl");
    let journal = Arc::new(JournalWriter::create(&path).unwrap());
    let input = |path: &str| FileRef { path: path.into(), sha256: String::new() };
    let recorder = Recorder::new(Arc::new(JournalSink(journal.clone())));
    let request = RunRequest {
        run_id: "bench".into(),
        plans: vec![plan.clone()],
        rig: rig.clone(),
        only_device: None,
        params: BTreeMap::new(),
        operator: "bench".into(),
        host: "localhost".into(),
        inputs: InputRefs { rig: input("rig.yaml"), plans: vec![input("plan.yaml")] },
    };
    let (_abort, abort_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let result = execute(request, journal.clone(), recorder, &mut Silent, abort_rx).await.expect("the run completes");
    let took = started.elapsed();

    let case = &result.cases[0];
    let passed = case.steps.iter().filter(|s| s.verdict == Verdict::Pass).count();
    assert_eq!(
        (result.verdict, passed),
        (Verdict::Pass, steps),
        "every step must pass; first problem: {:?}",
        case.steps.iter().find(|s| s.verdict != Verdict::Pass).map(|s| &s.message)
    );
    let (records, _) = read_chain(&path).unwrap().expect("the journal's chain is intact");
    let journal_bytes = std::fs::metadata(&path).unwrap().len();
    std::fs::remove_file(&path).unwrap();
    ExecutorRun { took, records: records.len(), journal_bytes }
}

/// A direct run: its wall time, and the time spent in each kind of operation.
struct Direct {
    took: Duration,
    by_op: [Duration; 4],
}

/// The same operations straight through the agents, opened lazily like the executor does.
async fn run_direct(rig: &Rig, variant: &Variant, steps: usize, recorder: Recorder) -> Direct {
    let device = rig.device(DEVICE).unwrap();
    let console = device.console.clone().expect("ru1 has a console");
    let endpoint = device.ssh.clone().expect("ru1 has SSH");
    let done = Regex::new(CONSOLE_DONE).unwrap();
    let mut by_op = [Duration::ZERO; 4];
    let started = Instant::now();
    let mut session: Option<SshSession> = None;
    let mut expect: Option<Expect> = None;
    for step in 0..steps {
        let op = variant.op(step);
        let op_started = Instant::now();
        match op {
            Op::SshTrue | Op::SshEcho => {
                if session.is_none() {
                    session = Some(SshSession::connect(DEVICE, &endpoint, recorder.clone()).await.expect("SSH connect"));
                }
                let command = if op == Op::SshTrue { "true" } else { "echo x" };
                let out = session.as_ref().unwrap().exec(command, AGENT_TIMEOUT).await.expect("ssh exec");
                assert_eq!(out.exit_status, Some(0));
            }
            Op::ConsoleSend | Op::ConsoleExpect => {
                if expect.is_none() {
                    let stream = open_console(DEVICE, &console, recorder.clone()).await.expect("open the console");
                    expect = Some(Expect::for_console(stream, &console).unwrap());
                }
                let expect = expect.as_mut().unwrap();
                if op == Op::ConsoleSend {
                    expect.send_line("echo x").await.expect("console send");
                } else {
                    expect.expect(std::slice::from_ref(&done), AGENT_TIMEOUT).await.expect("console expect");
                }
            }
        }
        by_op[op as usize] += op_started.elapsed();
    }
    if let Some(expect) = expect {
        let _ = tokio::time::timeout(Duration::from_secs(5), expect.into_stream().close()).await;
    }
    if let Some(session) = session {
        session.close().await;
    }
    Direct { took: started.elapsed(), by_op }
}

/// The direct loop, recording every agent event into a journal of its own.
async fn run_direct_journaled(rig: &Rig, variant: &Variant, steps: usize, dir: &Path) -> Duration {
    let path = dir.join("direct.jsonl");
    let journal = Arc::new(JournalWriter::create(&path).unwrap());
    let took = run_direct(rig, variant, steps, Recorder::new(Arc::new(JournalSink(journal.clone())))).await.took;
    read_chain(&path).unwrap().expect("the journal's chain is intact");
    std::fs::remove_file(&path).unwrap();
    took
}

/// Alternating rounds of the three ways to perform one plan shape.
struct Measured {
    executor: Vec<Duration>,
    direct: Vec<Duration>,
    journaled: Vec<Duration>,
    /// Per-operation device time of the fastest direct round.
    by_op: [Duration; 4],
    records: usize,
    journal_bytes: u64,
}

async fn measure(rig: &Rig, variant: &Variant, steps: usize, rounds: usize, dir: &Path) -> Measured {
    let plan = variant.plan(steps);
    // Generous: a run that takes longer than this is broken, not slow.
    let limit = Duration::from_secs(60) + Duration::from_millis(100) * steps as u32;
    let mut m = Measured {
        executor: vec![],
        direct: vec![],
        journaled: vec![],
        by_op: [Duration::ZERO; 4],
        records: 0,
        journal_bytes: 0,
    };
    for _ in 0..rounds {
        let run = tokio::time::timeout(limit, run_executor(rig, &plan, steps, dir)).await.expect("executor run within the limit");
        m.executor.push(run.took);
        (m.records, m.journal_bytes) = (run.records, run.journal_bytes);

        let run = tokio::time::timeout(limit, run_direct(rig, variant, steps, Recorder::discard())).await.expect("direct run within the limit");
        if m.direct.iter().all(|t| run.took < *t) {
            m.by_op = run.by_op;
        }
        m.direct.push(run.took);

        let took = tokio::time::timeout(limit, run_direct_journaled(rig, variant, steps, dir)).await.expect("journaled run within the limit");
        m.journaled.push(took);
    }
    m
}

fn report(variant: &Variant, steps: usize, rounds: usize, m: &Measured) {
    let best = |times: &[Duration]| times.iter().copied().min().unwrap().as_secs_f64();
    let list = |times: &[Duration]| times.iter().map(|t| format!("{:.2}", t.as_secs_f64())).collect::<Vec<_>>().join(" ");
    let (exec, base, jour) = (best(&m.executor), best(&m.direct), best(&m.journaled));
    let us_per_step = |seconds: f64| seconds / steps as f64 * 1e6;
    let goal = if variant.name == MIXED.name { " (goal <= 5%)" } else { "" };
    println!(
        "executor overhead, {} plan: {steps} steps in {exec:.2} s, direct agent calls {base:.2} s, overhead {:.1}%{goal}, {:.0} µs/step",
        variant.name,
        (exec - base) / exec * 100.0,
        us_per_step(exec - base)
    );
    println!(
        "  best of {rounds} alternating rounds; rounds (s): executor [{}], direct [{}], direct + journaled events [{}]",
        list(&m.executor),
        list(&m.direct),
        list(&m.journaled)
    );
    println!(
        "  overhead split: journaling the agents' events {:.0} µs/step, the executor's own work {:.0} µs/step",
        us_per_step(jour - base),
        us_per_step(exec - jour)
    );
    let per_op: Vec<String> = Op::ALL
        .iter()
        .filter(|op| variant.cycle.contains(op))
        .map(|op| {
            let count = (0..steps).filter(|s| variant.op(*s) == *op).count();
            format!("{} {:.2} ms", op.label(), m.by_op[*op as usize].as_secs_f64() * 1e3 / count as f64)
        })
        .collect();
    println!("  device time per operation (fastest direct round): {}", per_op.join(", "));
    println!(
        "  the executor's journal: {} records, {:.2} MB ({:.1} records, {:.0} bytes per step), chain verified",
        m.records,
        m.journal_bytes as f64 / 1e6,
        m.records as f64 / steps as f64,
        m.journal_bytes as f64 / steps as f64
    );
}

fn main() {
    let steps = env_usize("PROOFRIG_BENCH_STEPS", 1000).max(1).div_ceil(4) * 4;
    let rounds = env_usize("PROOFRIG_BENCH_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    runtime.block_on(async {
        let mut lab = SimLab::start(SimLabConfig::fast()).await.expect("start the simulated lab");
        let rig = Rig::load(&lab.write_rig(&tmp.path().join("lab")).unwrap()).unwrap();
        tokio::time::timeout(Duration::from_secs(60), log_in_console(&rig)).await.expect("console login within 60 s");
        let mixed = measure(&rig, &MIXED, steps, rounds, tmp.path()).await;
        let console_only = measure(&rig, &CONSOLE_ONLY, steps * 10, rounds, tmp.path()).await;
        lab.stop().await;
        report(&MIXED, steps, rounds, &mixed);
        report(&CONSOLE_ONLY, steps * 10, rounds, &console_only);
    });
}
