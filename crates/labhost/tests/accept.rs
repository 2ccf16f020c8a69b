//! A lab host's side of an assignment, without the network: what it refuses and
//! why (in the contract's order), that a resend starts nothing, that the fencing
//! tokens it accepted survive a restart, and that what it runs is sealed with the
//! job's ticket and verifies.

use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use std::collections::BTreeMap;
use std::path::Path;

use proofrig_evidence::journal::read_chain;
use proofrig_evidence::record::{JobTicket, JournalEntry};
use proofrig_evidence::verify::Status;
use proofrig_labhost::accept::{Accepted, Assignments, LabHostSetup};
use proofrig_labhost::fences::Fences;
use proofrig_labhost::rigs::ServedRigs;
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId, UnixMillis};
use proofrig_proto::labhost::{Assignment, AssignmentRefusal, Lease};
use proofrig_run::job::RunHost;
use proofrig_run::progress::Silent;

/// The plan of these tests: one case that needs no device.
fn plan() -> String {
    no_device_plan("labhost-check", "TC_HOST")
}

fn rig() -> String {
    desk_rig("bench-3")
}

struct Host {
    state: tempfile::TempDir,
    rigs: tempfile::TempDir,
    out: tempfile::TempDir,
    key: ed25519_dalek::SigningKey,
}

impl Host {
    fn new() -> Host {
        let rigs = tempfile::tempdir().unwrap();
        std::fs::write(rigs.path().join("bench-3.yaml"), rig()).unwrap();
        Host {
            state: tempfile::tempdir().unwrap(),
            rigs,
            out: tempfile::tempdir().unwrap(),
            key: ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
        }
    }

    /// The lab host as it starts: its rigs and the tokens it kept read from disk.
    fn start(&self) -> Assignments {
        Assignments::new(LabHostSetup {
            id: LabHostId("bench-a".into()),
            rigs: ServedRigs::load(self.rigs.path()).unwrap(),
            fences: Fences::open(self.state.path()).unwrap(),
            out_dir: self.out.path().to_path_buf(),
            key: self.key.clone(),
        })
    }
}

fn assignment(job: u64, fencing: u64) -> Assignment {
    Assignment {
        job: JobId(job),
        attempt: Attempt(1),
        retry_of: None,
        fencing: FencingToken(fencing),
        lease: Lease { expires_at: UnixMillis(0), valid_for_ms: 60_000 },
        rig: "bench-3".into(),
        rig_sha256: proofrig_proto::bytes::sha256_hex(rig().as_bytes()),
        plans: vec![PlanFile { name: "labhost-check.yaml".into(), bytes: plan().as_bytes().to_vec() }],
        params: BTreeMap::new(),
        device: None,
    }
}

fn refusal(host: &mut Assignments, a: &Assignment) -> (AssignmentRefusal, String) {
    match host.accept(a) {
        Ok(_) => panic!("job {} was accepted", a.job.0),
        Err(refused) => (refused.why, refused.reason),
    }
}

fn run_started(bundle: &Path) -> JournalEntry {
    let (records, _) = read_chain(&bundle.join("journal.jsonl")).unwrap().unwrap();
    serde_json::from_value(records[0].entry.clone()).unwrap()
}

#[tokio::test]
async fn an_accepted_job_runs_under_its_ticket_and_its_bundle_verifies() {
    let host = Host::new();
    let mut assignments = host.start();
    let Accepted::Start { answer, job } = assignments.accept(&assignment(7, 12)).unwrap() else { panic!("not started") };
    assert_eq!((answer.job, answer.fencing), (JobId(7), FencingToken(12)));
    let (_abort, abort) = tokio::sync::watch::channel(false);
    let sealed = job
        .run(RunHost { operator: "labhost".into(), host: "bench-a".into() }, &mut Silent, abort, &proofrig_report::Standard)
        .await
        .unwrap();
    assignments.finished("bench-3");
    assert_eq!(sealed.dir.file_name().unwrap().to_string_lossy(), answer.run_id, "the answer names the bundle");
    let JournalEntry::RunStarted { job, .. } = run_started(&sealed.dir) else { panic!("no RunStarted first") };
    assert_eq!(job, Some(JobTicket { job: 7, attempt: 1, fencing_token: 12, lab_host: "bench-a".into() }));
    let report = proofrig_evidence::verify_bundle(&sealed.dir, Some(&host.key.verifying_key()));
    assert_eq!(report.status, Status::Verified, "{report:#?}");
}

#[test]
fn a_resent_assignment_is_answered_again_and_starts_nothing() {
    let host = Host::new();
    let mut assignments = host.start();
    let Accepted::Start { answer, .. } = assignments.accept(&assignment(7, 12)).unwrap() else { panic!("not started") };
    let Accepted::Again(again) = assignments.accept(&assignment(7, 12)).unwrap() else { panic!("a resend started a second run") };
    assert_eq!(again, answer);
    assert_eq!(std::fs::read_dir(host.out.path()).unwrap().count(), 1, "one bundle");
    // Another job for the busy rig, under a newer lease, waits its turn.
    let (why, reason) = refusal(&mut assignments, &assignment(8, 13));
    assert_eq!(why, AssignmentRefusal::Rig);
    assert!(reason.contains("busy") && reason.contains("job 7"), "{reason}");
}

#[test]
fn a_late_copy_of_an_assignment_whose_run_ended_or_began_before_a_restart_starts_nothing() {
    let host = Host::new();
    let mut assignments = host.start();
    let Accepted::Start { answer, .. } = assignments.accept(&assignment(7, 12)).unwrap() else { panic!("not started") };
    // The run ended; a copy of its assignment still in flight arrives.
    assignments.finished("bench-3");
    let Accepted::Again(again) = assignments.accept(&assignment(7, 12)).unwrap() else { panic!("an ended run started again") };
    assert_eq!(again, answer);
    assert_eq!(std::fs::read_dir(host.out.path()).unwrap().count(), 1, "one bundle");
    // After a restart the token it ran under is on disk: refused, never a second run.
    drop(assignments);
    let mut restarted = host.start();
    let (why, reason) = refusal(&mut restarted, &assignment(7, 12));
    assert_eq!(why, AssignmentRefusal::StaleFence);
    assert!(reason.contains("already started on this lab host"), "{reason}");
    assert_eq!(std::fs::read_dir(host.out.path()).unwrap().count(), 1, "still one bundle");
    assert!(matches!(restarted.accept(&assignment(8, 13)).unwrap(), Accepted::Start { .. }), "a newer lease runs");
}

#[test]
fn a_stale_lease_is_refused_even_after_the_lab_host_restarts() {
    let host = Host::new();
    let mut assignments = host.start();
    assert!(matches!(assignments.accept(&assignment(7, 12)).unwrap(), Accepted::Start { .. }));
    assignments.finished("bench-3");
    drop(assignments);
    let mut restarted = host.start();
    let (why, reason) = refusal(&mut restarted, &assignment(6, 11));
    assert_eq!(why, AssignmentRefusal::StaleFence);
    assert!(reason.contains("fencing token 11 is stale") && reason.contains("fencing token 12"), "{reason}");
    assert!(matches!(restarted.accept(&assignment(9, 14)).unwrap(), Accepted::Start { .. }), "a newer lease runs");
}

#[test]
fn an_assignment_for_a_rig_it_does_not_serve_or_that_changed_is_refused_for_the_rig() {
    let host = Host::new();
    let mut assignments = host.start();
    let mut elsewhere = assignment(7, 12);
    elsewhere.rig = "bench-9".into();
    let (why, reason) = refusal(&mut assignments, &elsewhere);
    assert_eq!(why, AssignmentRefusal::Rig);
    assert!(reason.contains("`bench-9` is not served by lab host bench-a (it serves: bench-3)"), "{reason}");
    let mut changed = assignment(7, 12);
    changed.rig_sha256 = "00".repeat(32);
    let (why, reason) = refusal(&mut assignments, &changed);
    assert_eq!(why, AssignmentRefusal::Rig);
    assert!(reason.contains("bench-3.yaml changed since it was advertised"), "{reason}");
    assert_eq!(std::fs::read_dir(host.out.path()).unwrap().count(), 0, "nothing was created");
}

#[test]
fn a_plan_that_cannot_run_anywhere_is_refused_for_the_plan_where_it_is_wrong() {
    let host = Host::new();
    let mut assignments = host.start();
    let mut escaping = assignment(7, 12);
    escaping.plans[0].name = "../labhost-check.yaml".into();
    let (why, reason) = refusal(&mut assignments, &escaping);
    assert_eq!(why, AssignmentRefusal::Plan);
    assert!(reason.contains("without directories"), "{reason}");
    let mut broken = assignment(7, 12);
    broken.plans[0].bytes = plan().replace("- set:", "- sett:").into_bytes();
    let (why, reason) = refusal(&mut assignments, &broken);
    assert_eq!(why, AssignmentRefusal::Plan);
    assert!(reason.contains("labhost-check.yaml:12:9") && reason.contains("`sett`"), "{reason}");
    // Refused jobs leave no token behind: a later job under token 12 still runs.
    assert!(matches!(assignments.accept(&assignment(8, 12)).unwrap(), Accepted::Start { .. }));
}
