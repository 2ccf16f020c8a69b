//! Verify throughput: can `proofrig verify` check a bundle carrying a large console
//! transcript at a good fraction of the speed of `sha256sum` over the same files?
//!
//! A bundle is sealed whose journal holds `PROOFRIG_BENCH_MB` MB (default 200; MB =
//! 10^6 bytes) of console output as Bytes events of 4 KiB each, the way a serial
//! pump records a long boot, inside the steps of a real plan: one case of
//! `PROOFRIG_BENCH_STEPS` (default 200) `console_expect` steps on a rig device with a
//! console, each watching its share of the boot log until `login: ` shows. Every
//! record is what the executor would have written (specs resolved, verdicts and
//! messages from `judge`), so the full replay recomputes and accepts them. Then,
//! alternating (so the machine's load weighs on all alike), for
//! `PROOFRIG_BENCH_ROUNDS` rounds (default 3):
//! - **baseline**: `sha256sum` over every file of the bundle (page cache warm);
//! - **proofrig**: `proofrig_evidence::verify_bundle` with the pinned key: the
//!   function `proofrig verify --key` calls, with its full replay (every step
//!   re-resolved from the plan, its output checked against the raw console bytes of
//!   its step, its verdict judged again, the case and run rolled up again, and the
//!   verdicts compared with the signed ones), only without printing;
//! - for reference, proofrig's own streaming SHA-256 of every file (the sha2 crate
//!   uses the CPU's SHA instructions where it has them; coreutils may not).
//!
//! The best round of each counts. verify does strictly more than the baseline (it
//! also hashes every journal line for the chain, parses every record and replays
//! it), so the goal (from the issue) is proofrig >= 0.8x the baseline. The process's
//! peak resident memory is printed too; verify streams the journal, so it should
//! stay near the events of one step, whatever the bundle's size.
//!
//! `PROOFRIG_BENCH_KIND=ssh_shell` makes the steps `ssh_exec` commands run through the
//! session's long-lived shell (`ssh.persistent_shell`), each printing its share of the
//! bytes between its markers: replay then rebuilds each wrapper and derives each
//! output from the raw stream.
//!
//! `PROOFRIG_BENCH_KEEP=DIR` seals the bundle under DIR and keeps it (and the public
//! key), to time `proofrig verify` itself, e.g. under `/usr/bin/time -v`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::EncodePublicKey;
use proofrig_evidence::bundle::{list_files, sha256_file, BundleWriter};
use proofrig_evidence::record::{CaseKey, CaseResult, JournalEntry, Phase, RunResult, StepResult};
use proofrig_evidence::signing;
use proofrig_evidence::verify::Status;
use proofrig_model::events::{ChannelId, Direction, Event, EventKind, Timestamp};
use proofrig_model::rig::Rig;
use proofrig_model::wire::ssh_shell;
use proofrig_plan::scope::base_scope;
use proofrig_plan::tally::{CaseOutcome, CaseTally};
use proofrig_plan::Plan;
use proofrig_verdict::judge::judge;
use proofrig_verdict::Rollup;
use serde_json::json;

mod settings;
use settings::env_usize;

const CHUNK: usize = 4096;
const DEVICE: &str = "ru1";
const PROMPT: &str = "ru1 login: ";
const RIG: &str = "rig: bench\ndevices:\n  ru1:\n    role: radio-unit\n    console:\n      tcp: { host: 127.0.0.1, port: 7001, protocol: raw }\n    \
                   ssh: { host: 127.0.0.1, user: oper, password: { env: BENCH_PW }, host_key: \"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\", persistent_shell: true }\n";

/// The command of the `ssh_shell` kind's steps.
const SSH_COMMAND: &str = "cat /var/log/messages";

fn boot_text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "[{:>5}.{:06}] pci 0000:00:{:02x}.0: [8086:{:04x}] type 00 class 0x060000 conventional PCI endpoint\r\n",
                i / 1000,
                i % 1000 * 997,
                i % 32,
                i % 65536
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn plan_yaml(steps: usize, ssh: bool) -> String {
    let mut text = String::from(
        "plan: bench-verify\n\
         title: Verify throughput\n\
         cases:\n\
         \x20 - id: BENCH_LONG_BOOTS\n\
         \x20   title: Long boot logs\n\
         \x20   scas: { spec: TS 33.117, clause: \"4.2\", test_name: BENCH_LONG_BOOTS, requirement: \"none, a benchmark\" }\n\
         \x20   purpose: carry a large console transcript through verify\n\
         \x20   expected: every boot reaches the login prompt\n\
         \x20   evidence: the journal\n\
         \x20   devices: { names: [ru1] }\n\
         \x20   steps:\n",
    );
    for _ in 0..steps {
        if ssh {
            text.push_str(&format!("      - ssh_exec: {{ command: \"{SSH_COMMAND}\", expect_status: 0 }}\n"));
        } else {
            text.push_str("      - console_expect: { patterns: ['login: $'] }\n");
        }
    }
    text
}

/// Seal a bundle of `megabytes` of console output over `steps` console_expect steps.
fn seal(dir: &Path, megabytes: usize, steps: usize, ssh: bool, signer: &ed25519_dalek::SigningKey) -> PathBuf {
    let plan_text = plan_yaml(steps, ssh);
    let plan = Plan::parse("plan.yaml", &plan_text).expect("the bench plan is valid");
    let rig = Rig::parse("rig.yaml", RIG, Path::new(".")).expect("the bench rig is valid");
    let writer =
        BundleWriter::create(dir, "bench", (Path::new("rig.yaml"), RIG.as_bytes()), &[(Path::new("plan.yaml"), plan_text.as_bytes())])
            .unwrap();
    let refs = writer.input_refs().clone();
    let journal = writer.journal().clone();
    let append = |entry: &JournalEntry| journal.append(entry).unwrap();
    append(&JournalEntry::RunStarted {
        run_id: "bench".into(),
        proofrig_version: env!("CARGO_PKG_VERSION").into(),
        operator: "bench".into(),
        host: "bench".into(),
        started: "2026-01-01T00:00:00Z".into(),
        plans: refs.plans.clone(),
        rig: refs.rig.clone(),
        rig_name: "bench".into(),
        parameters: Default::default(),
        only_device: None,
        job: None,
        side_by_side: false,
    });
    let case = &plan.spec.cases[0];
    let key = CaseKey { plan: plan.spec.plan.clone(), case: case.id.clone(), device: DEVICE.into() };
    append(&JournalEntry::CaseStarted { key: key.clone(), title: case.title.clone(), scas: case.scas.clone() });
    let scope = base_scope(&plan, &BTreeMap::new(), DEVICE, rig.device(DEVICE).unwrap());
    let text = boot_text(1 << 20);
    let chunks_per_step = (megabytes * 1_000_000 / CHUNK).div_ceil(steps);
    let console = ChannelId::new(DEVICE, "console");
    let seq = std::cell::Cell::new(0u64);
    // Any event, numbered and stamped in order; returns its number.
    let raw = |kind: EventKind| {
        let n = seq.get();
        let at = Timestamp { wall_ns: 1_700_000_000_000_000_000 + n * 1000, mono_ns: n * 1000 };
        append(&JournalEntry::Event { event: Event { seq: n, at, kind } });
        seq.set(n + 1);
        n
    };
    // What the console showed since the last match, as the expect engine sees it.
    let mut shown: Vec<u8> = Vec::new();
    let mut filter = proofrig_model::ansi::AnsiFilter::new();
    let mut event = |data: Vec<u8>| {
        filter.filter(&data, &mut shown);
        let n = raw(EventKind::Bytes { channel: console.clone(), direction: Direction::In, data });
        (n, std::mem::take(&mut shown))
    };
    let (mut tally, mut results) = (CaseTally::new(case), Vec::new());
    for (index, step) in case.steps.iter().enumerate() {
        let spec = proofrig_plan::scope::resolve(step, &scope).unwrap();
        append(&JournalEntry::StepStarted {
            key: key.clone(),
            phase: Phase::Steps,
            index,
            action: step.kind().as_str().into(),
            label: step.label(),
            spec: spec.clone(),
            attempt: 1,
        });
        let (first_seq, last_seq, output) = if ssh {
            // A command through the session's shell: its wrapper sent, its output in
            // chunks, the markers, the exit (`proofrig_model::wire::ssh_shell`).
            let tag = format!("{index:016x}");
            let exec = ChannelId::new(DEVICE, "ssh:exec");
            let bytes =
                |channel: &str, direction, data: Vec<u8>| EventKind::Bytes { channel: ChannelId::new(DEVICE, channel), direction, data };
            let first_seq = raw(EventKind::SshExec { channel: exec.clone(), command: SSH_COMMAND.into() });
            raw(bytes(ssh_shell::SHELL_IN, Direction::Out, ssh_shell::wrap(SSH_COMMAND, &tag).into_bytes()));
            let mut stdout = Vec::new();
            for chunk in 0..chunks_per_step {
                let at = (chunk * CHUNK) % (text.len() - CHUNK);
                stdout.extend_from_slice(&text[at..at + CHUNK]);
                raw(bytes(ssh_shell::SHELL_STDOUT, Direction::In, text[at..at + CHUNK].to_vec()));
            }
            raw(bytes(ssh_shell::SHELL_STDOUT, Direction::In, format!("PRF_{tag}_OUT:0\n").into_bytes()));
            raw(bytes(ssh_shell::SHELL_STDERR, Direction::In, format!("PRF_{tag}_ERR\n").into_bytes()));
            let last_seq = raw(EventKind::SshExit { channel: exec, exit_status: Some(0), signal: None, timed_out: false });
            let output = json!({"stdout": String::from_utf8_lossy(&stdout), "stderr": "", "exit_status": 0, "exit_signal": null});
            (first_seq, last_seq, output)
        } else {
            let (first_seq, mut step_text) = event(text[..CHUNK].to_vec());
            for chunk in 1..chunks_per_step {
                let at = (chunk * CHUNK) % (text.len() - CHUNK);
                step_text.extend(event(text[at..at + CHUNK].to_vec()).1);
            }
            let (last_seq, last) = event(format!("\r\n{PROMPT}").into_bytes());
            step_text.extend(last);
            // The wait matches `login: ` at the end; what came before it is its `before`.
            let before = String::from_utf8_lossy(&step_text[..step_text.len() - "login: ".len()]).into_owned();
            let before = proofrig_evidence::console_replay::tail_chars(&before, proofrig_evidence::console_replay::BEFORE_CHARS);
            (first_seq, last_seq, json!({"matched": true, "index": 0, "pattern": "login: $", "matched_text": "login: ", "before": before}))
        };
        let judged = judge(step.kind(), &spec, &output);
        let record = append(&JournalEntry::StepFinished {
            key: key.clone(),
            phase: Phase::Steps,
            index,
            attempt: 1,
            verdict: judged.verdict,
            message: judged.message.clone(),
            output,
            first_seq,
            last_seq,
        });
        tally.main_step(step, &judged);
        results.push(StepResult {
            phase: Phase::Steps,
            index,
            label: step.label(),
            action: step.kind().as_str().into(),
            verdict: judged.verdict,
            message: judged.message,
            record,
            duration_ms: 1000,
        });
    }
    let CaseOutcome { verdict, rollup, checks_passed } = tally.outcome();
    append(&JournalEntry::CaseFinished { key: key.clone(), verdict, rollup, checks_passed, skip_reason: None, unready: None });
    let rollup = Rollup::of([verdict]);
    append(&JournalEntry::RunFinished {
        verdict: rollup.verdict,
        rollup: rollup.clone(),
        ended: "2026-01-01T01:00:00Z".into(),
        aborted: false,
    });
    let result = RunResult {
        run_id: "bench".into(),
        proofrig_version: env!("CARGO_PKG_VERSION").into(),
        operator: "bench".into(),
        host: "bench".into(),
        rig_name: "bench".into(),
        started: "2026-01-01T00:00:00Z".into(),
        ended: "2026-01-01T01:00:00Z".into(),
        aborted: false,
        verdict: rollup.verdict,
        rollup,
        cases: vec![CaseResult {
            key,
            title: case.title.clone(),
            scas: case.scas.clone(),
            purpose: case.purpose.clone(),
            expected: case.expected.clone(),
            verdict,
            skip_reason: None,
            steps: results,
            evidence_excerpt: PROMPT.into(),
            duration_ms: 1000 * steps as u64,
        }],
        devices: vec![],
    };
    writer.seal(&result, signer, &proofrig_report::Standard).unwrap().dir
}

/// Peak resident memory of this process so far, in MB.
fn max_rss_mb() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn main() {
    let megabytes = env_usize("PROOFRIG_BENCH_MB", 200);
    let steps = env_usize("PROOFRIG_BENCH_STEPS", 200).max(1);
    let rounds = env_usize("PROOFRIG_BENCH_ROUNDS", 3);
    // `ssh_shell`: the steps are SSH commands through the session's shell, each printing
    // its share of the bytes; otherwise console waits.
    let ssh = std::env::var("PROOFRIG_BENCH_KIND").is_ok_and(|kind| kind == "ssh_shell");
    let tmp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("PROOFRIG_BENCH_KEEP").map(PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let started = Instant::now();
    let bundle = seal(&out, megabytes, steps, ssh, &key);
    let files: Vec<_> = list_files(&bundle).unwrap().into_iter().map(|f| bundle.join(f.path)).collect();
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    println!(
        "bundle: {:.0} MB in {} files ({} MB of {} in the journal, over {steps} {} steps), sealed in {:.1?}; key {}",
        bytes as f64 / 1e6,
        files.len(),
        megabytes,
        if ssh { "SSH command output through the session's shell" } else { "console bytes" },
        if ssh { "ssh_exec" } else { "console_expect" },
        started.elapsed(),
        signing::key_id(&key.verifying_key())
    );
    if std::env::var_os("PROOFRIG_BENCH_KEEP").is_some() {
        let public = out.join("bench.pub");
        let pem = key.verifying_key().to_public_key_pem(Default::default()).unwrap();
        std::fs::write(&public, pem).unwrap();
        println!("kept: proofrig verify {} --key {}", bundle.display(), public.display());
    }
    let rss_before = max_rss_mb();

    let mut baseline = Duration::MAX;
    let mut proofrig = Duration::MAX;
    let mut hashing = Duration::MAX;
    for round in 0..rounds {
        let t = Instant::now();
        let out = Command::new("sha256sum").args(&files).output().expect("run sha256sum");
        assert!(out.status.success());
        baseline = baseline.min(t.elapsed());

        let t = Instant::now();
        let report = proofrig_evidence::verify_bundle(&bundle, Some(&key.verifying_key()));
        proofrig = proofrig.min(t.elapsed());
        assert_eq!(report.status, Status::Verified, "{}", report.summary);
        assert!(report.checks.iter().any(|c| c.what == "verdicts replay from the journal" && c.passed()));

        let t = Instant::now();
        for file in &files {
            sha256_file(file).unwrap();
        }
        hashing = hashing.min(t.elapsed());
        println!("round {}: sha256sum {:.2?}, verify {:.2?}, hashing only {:.2?}", round + 1, baseline, proofrig, hashing);
    }
    let rate = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "sha256sum {:.0} MB/s, proofrig verify (full replay) {:.0} MB/s: {:.2}x the baseline (goal >= 0.8x)",
        rate(baseline),
        rate(proofrig),
        baseline.as_secs_f64() / proofrig.as_secs_f64()
    );
    println!(
        "proofrig's own SHA-256 of every file {:.0} MB/s: verify runs at {:.2}x pure hashing",
        rate(hashing),
        hashing.as_secs_f64() / proofrig.as_secs_f64()
    );
    println!(
        "peak resident memory: {:.0} MB after sealing, {:.0} MB after verifying (journal {:.0} MB, {:.1} MB of console bytes per step)",
        rss_before,
        max_rss_mb(),
        std::fs::metadata(bundle.join("journal.jsonl")).unwrap().len() as f64 / 1e6,
        megabytes as f64 / steps as f64
    );
}
