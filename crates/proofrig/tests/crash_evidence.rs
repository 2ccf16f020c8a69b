//! A run killed mid-way, as a lab's run dies (kill -9, a crash): its journal is
//! signed as far as its last checkpoint and `verify` says so; an edit inside the
//! signed part, chain rebuilt without the key, is caught; `proofrig seal` seals it as
//! INCOMPLETE with the lab's key, saying the open case's restore steps did not run; an
//! edit after that is caught, and nothing is sealed twice. The real binary, on the
//! simulated lab.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use proofrig_evidence::bundle::{BundleWriter, ATTESTATION, JOURNAL};
use proofrig_evidence::journal::{genesis, read_chain, record_line, Record};
use proofrig_evidence::signing;
use proofrig_evidence::verify::Status;
use proofrig_evidence::verify_bundle;
use proofrig_simlab::{SimLab, SimLabConfig};

/// Two cases on one device: the first finishes at once; the second waits long
/// enough to be killed in, and has a restore step that will not run.
const PLAN: &str = r#"
plan: crash-check
title: A run that is killed mid-way
cases:
  - id: TC_FINISHES
    title: Finishes before the kill
    scas: { spec: TS 33.117, clause: 4.2.3.4.5, test_name: TC_FINISHES, requirement: The device answers. }
    purpose: A case that is over, and signed, before the run dies.
    expected: The command runs.
    evidence: The journal.
    steps:
      - ssh_exec: { command: "echo first", expect_status: 0 }
  - id: TC_KILLED
    title: Killed mid-case
    scas: { spec: TS 33.117, clause: 4.2.3.4.5, test_name: TC_KILLED, requirement: The device answers. }
    purpose: A case the run dies in.
    expected: Never decided.
    evidence: The journal.
    steps:
      - ssh_exec: { command: "echo before", expect_status: 0 }
      - wait: { ms: 120000 }
      - ssh_exec: { command: "echo never", expect_status: 0 }
    restore:
      - name: put the device back
        ssh_exec: { command: "echo restored", expect_status: 0 }
"#;

fn proofrig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(Stdio::null()).output().expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The one bundle directory under `results`, once it exists.
fn bundle_in(results: &Path) -> Option<PathBuf> {
    std::fs::read_dir(results).ok()?.next()?.ok().map(|e| e.path())
}

/// Kill `child` with SIGKILL once `ready` holds of its bundle's journal.
fn kill_when(child: &mut Child, results: &Path, ready: impl Fn(&[Record]) -> bool) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "the run never got there");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended before it was killed: {status}");
        }
        if let Some(bundle) = bundle_in(results) {
            // A read while a record is being written may end mid-record: look again.
            if let Ok(Ok((records, _))) = read_chain(&bundle.join(JOURNAL)) {
                if ready(&records) {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
                    let status = child.wait().unwrap();
                    use std::os::unix::process::ExitStatusExt;
                    assert_eq!(status.signal(), Some(9), "the run died of SIGKILL: {status}");
                    return bundle;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rewrite the journal at `path` record by record through `edit` (false drops the
/// record), rebuilding the hash chain, as someone without the lab's key would: the
/// records left alone keep their bytes.
fn rewrite_chain(path: &Path, mut edit: impl FnMut(&mut serde_json::Value) -> bool) {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut out, mut prev, mut n) = (Vec::new(), genesis(), 0);
    for line in text.lines() {
        let body = &line[line.find(",\"entry\":").unwrap() + 9..line.len() - 1];
        let mut entry: serde_json::Value = serde_json::from_str(body).unwrap();
        let before = entry.clone();
        if !edit(&mut entry) {
            continue;
        }
        let body = if entry == before { body.as_bytes().to_vec() } else { serde_json::to_vec(&entry).unwrap() };
        let (line, hash) = record_line(n, &prev, &body);
        out.extend(line);
        (prev, n) = (hash, n + 1);
    }
    std::fs::write(path, out).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walk(from) {
        let target = to.join(entry.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A simulated lab and what a run on it needs: its rig, a signing key pair, the plan
/// `name` written out, and where results go, all in a temporary directory.
struct Bench {
    runtime: tokio::runtime::Runtime,
    lab: SimLab,
    tmp: tempfile::TempDir,
    rig: PathBuf,
    key: PathBuf,
    public: PathBuf,
    verifying: ed25519_dalek::VerifyingKey,
    plan: PathBuf,
    results: PathBuf,
}

impl Bench {
    fn start(name: &str, plan_text: &str) -> Bench {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let lab = runtime.block_on(SimLab::start(SimLabConfig::fast())).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let rig = lab.write_rig(&tmp.path().join("lab")).unwrap();
        let (key, public) = (tmp.path().join("lab.key"), tmp.path().join("lab.pub"));
        let verifying = signing::generate(&key, &public).unwrap();
        let plan = tmp.path().join(name);
        std::fs::write(&plan, plan_text).unwrap();
        let results = tmp.path().join("results");
        Bench { runtime, lab, tmp, rig, key, public, verifying, plan, results }
    }
}

#[test]
fn a_killed_run_is_signed_as_far_as_it_got_and_seals_as_incomplete() {
    let Bench { runtime, mut lab, tmp, rig, key, public, verifying, plan, results } = Bench::start("crash-check.yaml", PLAN);

    // Without its key, a run touches nothing: it stops before the bundle exists.
    let bad_key = tmp.path().join("bad.key");
    std::fs::write(&bad_key, "not a key").unwrap();
    let out = proofrig(&["run", &s(&plan), "--rig", &s(&rig), "--device", "ru1", "--key", &s(&bad_key), "--out", &s(&results)]);
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));
    assert!(all(&out).contains("bad.key is not an Ed25519 private key"), "{}", all(&out));
    assert!(!results.exists(), "nothing was run without the key");

    let mut child = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["run", &s(&plan), "--rig", &s(&rig), "--device", "ru1", "--key", &s(&key), "--out", &s(&results), "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed while the second case waits: the first case finished, its restore never will.
    let bundle =
        kill_when(&mut child, &results, |records| records.iter().any(|r| r.entry["type"] == "step_started" && r.entry["action"] == "wait"));
    assert!(!bundle.join(ATTESTATION).exists());
    let (records, _) = read_chain(&bundle.join(JOURNAL)).unwrap().expect("a killed run leaves a prefix that chains");
    let count = records.len() as u64;
    // The first case's end is signed at once: a checkpoint right after its CaseFinished.
    let finished = records.iter().find(|r| r.entry["type"] == "case_finished" && r.entry["case"] == "TC_FINISHES").unwrap();
    let after = &records[finished.n as usize + 1];
    assert_eq!(after.entry["type"], "checkpoint", "{:?}", after.entry);
    assert_eq!(after.entry["records"], finished.n + 1);
    assert_eq!(records[1].entry["type"], "checkpoint", "RunStarted is signed at once");
    let last_checkpoint = records.iter().rev().find(|r| r.entry["type"] == "checkpoint").unwrap();

    // INCOMPLETE, exit 2, and how far it is signed.
    let out = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("INCOMPLETE: the run was never sealed"), "{text}");
    let at = last_checkpoint.entry["at"].as_str().unwrap();
    assert!(last.contains(&format!("signed through record {} of {count} (at {at})", last_checkpoint.n)), "{text}");
    let unsigned = count - last_checkpoint.n - 1;
    if unsigned > 0 {
        assert!(last.contains(&format!("the {unsigned} record(s) after it")) && last.contains("are unsigned"), "{text}");
    }
    assert!(text.contains(&format!("Signer: {} (pinned", signing::key_id(&verifying))), "{text}");
    let report = verify_bundle(&bundle, Some(&verifying));
    assert_eq!(report.status, Status::Incomplete, "{}", report.summary);
    let extent = report.signed_through.expect("the prefix is signed");
    assert_eq!(extent.record, last_checkpoint.n);
    assert!(extent.record > finished.n, "the finished case is inside the signed prefix");

    // A forger without the key edits the finished case's answer inside the signed
    // prefix and rebuilds the chain: the checkpoint after it no longer signs that head.
    let forged = tmp.path().join("forged");
    copy_dir(&bundle, &forged);
    let mut edited = false;
    rewrite_chain(&forged.join(JOURNAL), |entry| {
        if entry["type"] == "step_finished" && entry["case"] == "TC_FINISHES" {
            entry["message"] = "a different story".into();
            edited = true;
        }
        true
    });
    assert!(edited);
    let out = proofrig(&["verify", &s(&forged), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    assert!(last.starts_with("TAMPERED: journal checkpoints"), "{}", all(&out));
    assert!(last.contains(&format!("record {}", after.n)) && last.contains("another head"), "{}", all(&out));
    // Nor will it be sealed.
    let out = proofrig(&["seal", &s(&forged), "--key", &s(&key)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("another head"), "{}", all(&out));

    // Dropping every checkpoint instead leaves a journal nobody signed, and verify says so.
    let unsigned_copy = tmp.path().join("unsigned");
    copy_dir(&bundle, &unsigned_copy);
    rewrite_chain(&unsigned_copy.join(JOURNAL), |entry| entry["type"] != "checkpoint");
    let out = proofrig(&["verify", &s(&unsigned_copy), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(all(&out).contains("no record of it is signed"), "{}", all(&out));
    // Dropping only the later ones is seen: a case's end must be followed by one.
    let dropped_later = tmp.path().join("dropped-later");
    copy_dir(&bundle, &dropped_later);
    let mut n = 0;
    rewrite_chain(&dropped_later.join(JOURNAL), |entry| {
        n += 1;
        n <= 2 || entry["type"] != "checkpoint"
    });
    let out = proofrig(&["verify", &s(&dropped_later), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("is not followed by a checkpoint"), "{}", all(&out));

    // A crash in the middle of a write leaves part of a record: sealing removes it, and says so.
    let cut = tmp.path().join("cut");
    copy_dir(&bundle, &cut);
    let partial = format!("{{\"n\":{count},\"prev\":\"00ab");
    std::fs::OpenOptions::new().append(true).open(cut.join(JOURNAL)).unwrap().write_all(partial.as_bytes()).unwrap();
    let out = proofrig(&["verify", &s(&cut), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(all(&out).contains(&format!("ends in the middle of record {count}")), "{}", all(&out));
    let out = proofrig(&["seal", &s(&cut), "--key", &s(&key)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(all(&out).contains(&format!("({} bytes) was removed", partial.len())), "{}", all(&out));
    let out = proofrig(&["verify", &s(&cut), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().starts_with("INCOMPLETE: sealed after"), "{}", all(&out));
    // Sealing with another key than the run's is refused: its checkpoints would not check.
    let other = tmp.path().join("other.key");
    signing::generate(&other, &tmp.path().join("other.pub")).unwrap();
    let out = proofrig(&["seal", &s(&bundle), "--key", &s(&other)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("not by the pinned key"), "{}", all(&out));

    // Sealed after the crash with the lab's key: INCOMPLETE, naming what did not run.
    let out = proofrig(&["seal", &s(&bundle), "--key", &s(&key)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = all(&out);
    assert!(text.contains("as INCOMPLETE"), "{text}");
    assert!(text.contains("step 2 (wait") && text.contains("TC_KILLED on ru1"), "{text}");
    assert!(text.contains("its 1 restore step(s) did not run"), "{text}");
    assert!(text.contains("run verdict: ABORTED"), "{text}");
    let (sealed_records, _) = read_chain(&bundle.join(JOURNAL)).unwrap().unwrap();
    let seal_record = sealed_records.last().unwrap();
    assert_eq!(seal_record.n, count);
    assert_eq!(seal_record.entry["type"], "run_sealed_incomplete");
    assert_eq!(seal_record.entry["open_case"]["case"], "TC_KILLED");
    assert_eq!(seal_record.entry["open_step"]["action"], "wait");
    assert_eq!(seal_record.entry["signed_through"], last_checkpoint.n);
    let results_json: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    assert_eq!(results_json["verdict"], "ABORTED");
    assert_eq!(results_json["aborted"], true);
    let verdicts: Vec<(&str, &str)> =
        results_json["cases"].as_array().unwrap().iter().map(|c| (c["case"].as_str().unwrap(), c["verdict"].as_str().unwrap())).collect();
    assert_eq!(verdicts, [("TC_FINISHES", "PASS"), ("TC_KILLED", "ABORTED")]);

    let out = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("✓ signature of the proofrig statement: signed by the pinned key"), "{text}");
    assert!(text.contains("✓ verdicts replay from the journal"), "{text}");
    assert!(text.contains("✓ journal checkpoints"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("INCOMPLETE: sealed after the run stopped without finishing"), "{text}");
    assert!(last.contains(&format!("signed it through record {} of {count}", last_checkpoint.n)) || unsigned == 0, "{text}");
    let report = verify_bundle(&bundle, Some(&verifying));
    assert_eq!(report.status, Status::Incomplete, "{}", report.summary);
    assert!(report.pinned && report.failures().next().is_none(), "{}", report.summary);

    // Any edit after sealing is tampering.
    let html = bundle.join("report.html");
    let original = std::fs::read(&html).unwrap();
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&html, &bytes).unwrap();
    let out = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().starts_with("TAMPERED: report.html"), "{}", all(&out));
    std::fs::write(&html, &original).unwrap();
    let journal = bundle.join(JOURNAL);
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, text.replacen("did not run", "did run", 1)).unwrap();
    let out = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    std::fs::write(&journal, text).unwrap();

    // Sealed once only; and only a bundle.
    let out = proofrig(&["seal", &s(&bundle), "--key", &s(&key)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("already sealed"), "{}", all(&out));
    let out = proofrig(&["seal", &s(&tmp.path().join("nope")), "--key", &s(&key)]);
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));

    runtime.block_on(lab.stop());
}

/// The first case of [`PLAN`] alone: a run that finishes.
fn finishing_plan() -> String {
    PLAN[..PLAN.find("  - id: TC_KILLED").unwrap()].to_string()
}

#[test]
fn a_finished_run_carries_checkpoints_that_verify_checks_too() {
    let Bench { runtime, mut lab, tmp, rig, key, verifying, plan, results, .. } = Bench::start("finishes.yaml", &finishing_plan());
    let out = proofrig(&["run", &s(&plan), "--rig", &s(&rig), "--device", "ru1", "--key", &s(&key), "--out", &s(&results), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let bundle = bundle_in(&results).unwrap();
    let (records, _) = read_chain(&bundle.join(JOURNAL)).unwrap().unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.entry["type"].as_str().unwrap()).collect();
    // Signed after RunStarted, after the case's end and after RunFinished, which sealing accepts.
    assert_eq!(kinds[..2], ["run_started", "checkpoint"]);
    assert_eq!(kinds[kinds.len() - 2..], ["run_finished", "checkpoint"]);
    let at = kinds.iter().position(|k| *k == "case_finished").unwrap();
    assert_eq!(kinds[at + 1], "checkpoint");
    let report = verify_bundle(&bundle, Some(&verifying));
    assert_eq!(report.status, Status::Verified, "{}", report.summary);
    assert!(report.checks.iter().any(|c| c.what == "journal checkpoints" && c.passed()), "{}", report.summary);
    assert_eq!(report.signed_through.map(|e| e.record), Some(records.len() as u64 - 1));

    // The lab's own key seals the same records again, re-encoded (as a tool rewriting
    // the journal would): statements, digests and replay all hold, but each checkpoint
    // signed the bytes the run wrote, and record 0's changed.
    let result: proofrig_evidence::record::RunResult =
        serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    let rig_bytes = std::fs::read(bundle.join("inputs/rig.yaml")).unwrap();
    let plan_bytes = std::fs::read(bundle.join("inputs/plans/finishes.yaml")).unwrap();
    let writer = BundleWriter::create(
        &tmp.path().join("forged"),
        &result.run_id,
        (Path::new("rig.yaml"), &rig_bytes),
        &[(Path::new("finishes.yaml"), &plan_bytes)],
    )
    .unwrap();
    for record in &records {
        writer.journal().append(&record.entry).unwrap();
    }
    let forged = writer.seal(&result, &signing::load_signing_key(&key).unwrap(), &proofrig_report::Standard).unwrap().dir;
    let report = verify_bundle(&forged, Some(&verifying));
    assert_eq!(report.status, Status::Tampered, "{}", report.summary);
    assert!(report.summary.starts_with("journal checkpoints: journal.jsonl record 1: it signs another head"), "{}", report.summary);
    assert!(report.checks.iter().any(|c| c.what == "verdicts replay from the journal" && c.passed()), "{}", report.summary);
    runtime.block_on(lab.stop());
}

/// The devices go side by side: a run killed while each of the four devices waits in
/// its second case has a case open on every device. `seal` names each of them, with
/// its open step, as stopped (ABORTED, its restore steps not run), and the bundle
/// replays as INCOMPLETE with nothing recorded lost.
#[test]
fn a_run_killed_with_a_case_open_on_every_device_seals_each_as_stopped() {
    let Bench { runtime, mut lab, tmp: _tmp, rig, key, public, verifying, plan, results } = Bench::start("crash-check.yaml", PLAN);
    // In the rig's order, as the selection (and so the results) has them.
    let devices: Vec<String> = proofrig_model::rig::Rig::load(&rig).unwrap().devices().map(|(name, _)| name.to_string()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["run", &s(&plan), "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&results), "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bundle = kill_when(&mut child, &results, |records| {
        records.iter().filter(|r| r.entry["type"] == "step_started" && r.entry["action"] == "wait").count() == devices.len()
    });
    let (records, _) = read_chain(&bundle.join(JOURNAL)).unwrap().expect("a killed run leaves a prefix that chains");
    assert_eq!(records[0].entry["side_by_side"], true, "the devices went side by side");

    let out = proofrig(&["seal", &s(&bundle), "--key", &s(&key)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = all(&out);
    for device in &devices {
        assert!(text.contains(&format!("step 2 (wait) of TC_KILLED on {device}")), "{device}: {text}");
    }
    let (sealed_records, _) = read_chain(&bundle.join(JOURNAL)).unwrap().unwrap();
    let seal_record = &sealed_records.last().unwrap().entry;
    assert_eq!(seal_record["type"], "run_sealed_incomplete");
    let mut open: Vec<(String, String)> = std::iter::once((&seal_record["open_case"], &seal_record["open_step"]))
        .chain(seal_record["also_open"].as_array().unwrap().iter().map(|o| (&o["case"], &o["step"])))
        .map(|(case, step)| (case["device"].as_str().unwrap().to_string(), format!("{}:{}", case["case"], step["action"])))
        .collect();
    open.sort();
    let mut expected: Vec<(String, String)> = devices.iter().map(|d| (d.clone(), "\"TC_KILLED\":\"wait\"".to_string())).collect();
    expected.sort();
    assert_eq!(open, expected);
    let results_json: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    let verdicts: Vec<(&str, &str, &str)> = results_json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["case"].as_str().unwrap(), c["device"].as_str().unwrap(), c["verdict"].as_str().unwrap()))
        .collect();
    let mut expected: Vec<(&str, &str, &str)> = devices.iter().map(|d| ("TC_FINISHES", d.as_str(), "PASS")).collect();
    expected.extend(devices.iter().map(|d| ("TC_KILLED", d.as_str(), "ABORTED")));
    assert_eq!(verdicts, expected, "in the selection's order, whatever order they ran in");

    let out = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("✓ verdicts replay from the journal"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("INCOMPLETE: sealed after the run stopped without finishing"), "{text}");
    let report = verify_bundle(&bundle, Some(&verifying));
    assert_eq!(report.status, Status::Incomplete, "{}", report.summary);
    runtime.block_on(lab.stop());
}

/// The operator's stop reaches every device: Ctrl-C while each device waits in its
/// second case stops all four at once; each case's restore step still runs, the run
/// is ABORTED and verifies.
#[test]
fn ctrl_c_stops_every_device_and_runs_each_restore() {
    let Bench { runtime, mut lab, tmp: _tmp, rig, key, public, plan, results, .. } = Bench::start("crash-check.yaml", PLAN);
    let devices: Vec<String> = lab.devices().iter().map(|d| d.name().to_string()).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["run", &s(&plan), "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&results), "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "the devices never all waited");
        let waiting = bundle_in(&results)
            .and_then(|b| read_chain(&b.join(JOURNAL)).ok()?.ok())
            .is_some_and(|(records, _)| records.iter().filter(|r| r.entry["action"] == "wait").count() == devices.len());
        if waiting {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "every device stopped at once, not after its two-minute wait");
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let bundle = bundle_in(&results).unwrap();
    let results_json: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    assert_eq!(results_json["aborted"], true);
    for device in &devices {
        let case = results_json["cases"].as_array().unwrap().iter().find(|c| c["case"] == "TC_KILLED" && c["device"] == *device).unwrap();
        assert_eq!(case["verdict"], "ABORTED", "{device}: {case}");
        let restored = case["steps"].as_array().unwrap().iter().any(|s| s["phase"] == "restore" && s["verdict"] == "PASS");
        assert!(restored, "{device}: its restore step ran: {case}");
    }
    let out = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    runtime.block_on(lab.stop());
}
