//! The job use case as a lab host drives it: create the bundle, run, seal, with an
//! injected abort signal and host, nothing printed. A run for the lab service carries
//! its job ticket (job, attempt, fencing token, lab host) in the journal's RunStarted,
//! and the bundle verifies as any other; a run without one journals exactly what it
//! did before.

use std::collections::BTreeMap;
use std::path::Path;

use proofrig_evidence::journal::read_chain;
use proofrig_evidence::record::{JobTicket, JournalEntry};
use proofrig_evidence::verify::Status;
use proofrig_model::rig::Rig;
use proofrig_plan::Plan;
use proofrig_run::job::{Job, RunHost, RunSetup};
use proofrig_run::progress::Silent;
use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use proofrig_verdict::Verdict;

async fn run(out: &Path, job: Option<JobTicket>) -> (proofrig_run::job::Sealed, ed25519_dalek::VerifyingKey) {
    run_plan(out, Plan::parse("job-check.yaml", &no_device_plan("job-check", "TC_JOB")).unwrap(), job).await
}

async fn run_plan(out: &Path, plan: Plan, job: Option<JobTicket>) -> (proofrig_run::job::Sealed, ed25519_dalek::VerifyingKey) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let setup = RunSetup {
        plans: vec![plan],
        rig: Rig::parse("desk.yaml", &desk_rig("desk"), Path::new(".")).unwrap(),
        only_device: None,
        params: BTreeMap::new(),
        out_dir: out.to_path_buf(),
        key: key.clone(),
        job,
        one_device_at_a_time: false,
    };
    let job = Job::create(setup, "job").unwrap();
    let (_abort, abort) = tokio::sync::watch::channel(false);
    let host = RunHost { operator: "labhost:bench-a".into(), host: "bench-a".into() };
    let sealed = job.run(host, &mut Silent, abort, &proofrig_report::Standard).await.unwrap();
    (sealed, key.verifying_key())
}

fn run_started(bundle: &Path) -> (serde_json::Value, JournalEntry) {
    let (records, _) = read_chain(&bundle.join("journal.jsonl")).unwrap().unwrap();
    let raw = records.first().expect("a RunStarted record").entry.clone();
    (raw.clone(), serde_json::from_value(raw).unwrap())
}

#[tokio::test]
async fn a_job_for_the_lab_service_carries_its_ticket_into_the_journal_and_verifies() {
    let out = tempfile::tempdir().unwrap();
    let ticket = JobTicket { job: 17, attempt: 2, fencing_token: 40_001, lab_host: "bench-a".into() };
    let (sealed, key) = run(out.path(), Some(ticket.clone())).await;
    // Its check held but never touched the device: never PASS without evidence from it.
    assert_eq!(sealed.result.verdict, Verdict::Inconclusive, "{:?}", sealed.result.cases);
    assert_eq!(sealed.result.operator, "labhost:bench-a");
    let (_, entry) = run_started(&sealed.dir);
    let JournalEntry::RunStarted { job, host, .. } = entry else { panic!("the first record is {entry:?}") };
    assert_eq!(job, Some(ticket));
    assert_eq!(host, "bench-a");
    let report = proofrig_evidence::verify_bundle(&sealed.dir, Some(&key));
    assert_eq!(report.status, Status::Verified, "{report:#?}");
}

#[tokio::test]
async fn a_run_without_a_job_journals_no_ticket() {
    let out = tempfile::tempdir().unwrap();
    let (sealed, key) = run(out.path(), None).await;
    let (raw, _) = run_started(&sealed.dir);
    assert!(raw.to_string().contains("run_started") && !raw.to_string().contains("\"job\""), "{raw}");
    assert_eq!(proofrig_evidence::verify_bundle(&sealed.dir, Some(&key)).status, Status::Verified);
}

/// A rig's health check is no SCAS test case: its plan omits `scas`, and it runs,
/// seals and verifies like any other, its reports naming it by its id.
const HEALTH_CHECK: &str = r#"
plan: bench-health
title: Is the bench usable
cases:
  - id: HEALTH_VALUE
    title: The bench answers
    purpose: Decide whether the rig may take the next job.
    expected: The value holds.
    evidence: The journal.
    steps:
      - set: { answer: 42 }
      - assert: { value: "${answer}", equals: 42, message: "the answer is not 42", passed: "the answer is 42" }
"#;

#[tokio::test]
async fn a_health_check_without_a_scas_reference_runs_seals_and_verifies() {
    let plan = Plan::parse("bench-health.yaml", HEALTH_CHECK).unwrap();
    assert!(plan.spec.cases[0].scas.is_none());
    let out = tempfile::tempdir().unwrap();
    let (sealed, key) = run_plan(out.path(), plan, None).await;
    assert_eq!(sealed.result.cases[0].scas, None);
    assert_eq!(proofrig_evidence::verify_bundle(&sealed.dir, Some(&key)).status, Status::Verified);
    let report = std::fs::read_to_string(sealed.dir.join("report.html")).unwrap();
    assert!(report.contains("HEALTH_VALUE") && report.contains("not a SCAS test case"), "the report names the check by its id");
    let junit = std::fs::read_to_string(sealed.dir.join("junit.xml")).unwrap();
    assert!(junit.contains("HEALTH_VALUE"), "{junit}");
}
