//! Running plans in process against a simulated lab (or any rig) the way `proofrig
//! run` does, journal included, for the tests that check verdicts both ways and their
//! replay. Shared by the test binaries that `mod simrun;` it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proofrig_evidence::bundle::InputRefs;
use proofrig_evidence::journal::{read_chain, JournalWriter, Record};
use proofrig_evidence::record::{CaseKey, FileRef, RunResult};
use proofrig_evidence::replay::replay;
use proofrig_model::rig::Rig;
use proofrig_plan::Plan;
use proofrig_run::executor::{execute, run_recorder, RunRequest};
use proofrig_run::progress::Silent;
use proofrig_simlab::SimLab;
use proofrig_verdict::Verdict;
use serde_json::Value;

/// A plan of the bundled library, by file name.
pub fn plan(name: &str) -> Plan {
    Plan::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans").join(name)).unwrap()
}

/// Every plan of the library, as the demo and `catalogue` see it.
pub fn library() -> Vec<Plan> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans");
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    paths.sort();
    paths.iter().map(|p| Plan::load(p).unwrap()).collect()
}

/// One finished run: its result, its journal, and what it ran on.
pub struct Ran {
    pub result: RunResult,
    pub records: Vec<Record>,
    pub journal_path: PathBuf,
    pub plans: Vec<Plan>,
    pub rig: Rig,
    pub dir: tempfile::TempDir,
}

/// The lab's rig as it writes it, edited by `edit` (to break a channel, drop a value).
pub fn rig_of(lab: &SimLab, dir: &Path, edit: impl FnOnce(String) -> String) -> Rig {
    let path = lab.write_rig(&dir.join("lab")).unwrap();
    let text = edit(std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, text).unwrap();
    Rig::load(&path).unwrap()
}

/// The lab's devices' own high TCP ports, comma-separated, to add to a narrow scan
/// (a scan of every port would make a test slow): each SSH port, and a documented web
/// port above 1024 (a weak device's web server sits on 80, among the well-known ones).
pub fn high_ports(lab: &SimLab) -> String {
    let ports =
        lab.devices().iter().flat_map(|d| [Some(d.ssh_addr().port()), d.web_port().filter(|p| *p > 1024), Some(d.tls_port())]).flatten();
    ports.map(|p| p.to_string()).collect::<Vec<_>>().join(",")
}

/// Run `plans` on the lab with its own rig.
pub async fn run(lab: &SimLab, plans: Vec<Plan>, params: &[(&str, Value)]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig_of(lab, dir.path(), |text| text);
    run_on(rig, dir, plans, params, None).await
}

/// Run `plans` on `rig` (on one device only, if given), journaling into `dir`, with the
/// run's secrets redacted as `proofrig run` does.
pub async fn run_on(rig: Rig, dir: tempfile::TempDir, plans: Vec<Plan>, params: &[(&str, Value)], only: Option<&str>) -> Ran {
    run_in_mode(rig, dir, plans, params, only, false).await
}

/// [`run_on`], the devices one after another when `one_device_at_a_time` (as
/// `proofrig run --one-device-at-a-time`), side by side otherwise.
pub async fn run_in_mode(
    rig: Rig,
    dir: tempfile::TempDir,
    plans: Vec<Plan>,
    params: &[(&str, Value)],
    only: Option<&str>,
    one_device_at_a_time: bool,
) -> Ran {
    let journal_path = dir.path().join("journal.jsonl");
    let journal = Arc::new(JournalWriter::create(&journal_path).unwrap());
    let input = |path: &str| FileRef { path: path.into(), sha256: String::new() };
    let params: BTreeMap<String, Value> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let recorder = run_recorder(&journal, &rig, &plans);
    let request = RunRequest {
        run_id: "test".into(),
        plans: plans.clone(),
        rig: rig.clone(),
        only_device: only.map(String::from),
        params,
        operator: "tester".into(),
        host: "localhost".into(),
        inputs: InputRefs { rig: input("rig.yaml"), plans: plans.iter().map(|p| input(&p.path.display().to_string())).collect() },
        job: None,
        one_device_at_a_time,
    };
    let (_abort, abort_rx) = tokio::sync::watch::channel(false);
    let result = execute(request, journal.clone(), recorder, &mut Silent, abort_rx).await.unwrap();
    let (records, _) = read_chain(&journal_path).unwrap().unwrap();
    Ran { result, records, journal_path, plans, rig, dir }
}

/// The verdict of the (only) case on `device`, and the evidence shown for it.
pub fn verdict(ran: &Ran, device: &str) -> (Verdict, String) {
    let case = ran.result.cases.iter().find(|c| c.key.device == device).unwrap_or_else(|| panic!("no case on {device}"));
    (case.verdict, case.evidence_excerpt.clone())
}

/// The journal replays to exactly the verdicts the run reported.
pub fn assert_replays(ran: &Ran) {
    let replayed = replay(&ran.plans, &ran.rig, &ran.records).unwrap_or_else(|e| panic!("an untouched journal replays: {e}"));
    let recorded: Vec<(CaseKey, Verdict)> = ran.result.cases.iter().map(|c| (c.key.clone(), c.verdict)).collect();
    assert_eq!(replayed.cases, recorded);
    assert!(replayed.finished);
}

/// Rewrite the journal with `edit` applied to each entry and the hash chain
/// recomputed, as someone covering their tracks would; returns the forged records.
pub fn rewrite(ran: &Ran, mut edit: impl FnMut(&mut Value)) -> Vec<Record> {
    let path = ran.journal_path.with_file_name("tampered.jsonl");
    let _ = std::fs::remove_file(&path);
    let journal = JournalWriter::create(&path).unwrap();
    for record in &ran.records {
        let mut entry = record.entry.clone();
        edit(&mut entry);
        journal.append(&entry).unwrap();
    }
    journal.flush().unwrap();
    read_chain(&path).unwrap().expect("the forger's chain is internally consistent").0
}
