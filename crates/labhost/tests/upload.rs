//! A lab host's job from assignment to a verified bundle on the server, without the
//! network: the lab host accepts and runs it, offers the sealed bundle, sends part of
//! it, loses the link, offers again and sends only the rest; the server's inbox
//! stores it byte for byte, verified against the lab host's key, and its receipt names
//! the job.

use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use std::collections::BTreeMap;

use proofrig_labhost::accept::{Accepted, Assignments, LabHostSetup};
use proofrig_labhost::fences::Fences;
use proofrig_labhost::rigs::ServedRigs;
use proofrig_labhost::upload::{chunks, offer, UploadFor};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId, UnixMillis};
use proofrig_proto::labhost::{Assignment, BundleCheck, Lease};
use proofrig_server::inbox::{Inbox, Limits, Progress, Sender};
use proofrig_verdict::Verdict;

/// The plan of these tests: one case that needs no device.
fn plan() -> String {
    no_device_plan("upload-path", "TC_PATH")
}

fn rig() -> String {
    desk_rig("bench-3")
}

#[tokio::test]
async fn a_job_goes_from_assignment_to_a_verified_bundle_on_the_server_across_a_dropped_link() {
    let (rigs, state, out, inbox_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(rigs.path().join("bench-3.yaml"), rig()).unwrap();
    let lab_key = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let server_key = ed25519_dalek::SigningKey::from_bytes(&[12; 32]);
    let mut assignments = Assignments::new(LabHostSetup {
        id: LabHostId("bench-a".into()),
        rigs: ServedRigs::load(rigs.path()).unwrap(),
        fences: Fences::open(state.path()).unwrap(),
        out_dir: out.path().to_path_buf(),
        key: lab_key.clone(),
    });
    let assignment = Assignment {
        job: JobId(21),
        attempt: Attempt(1),
        retry_of: None,
        fencing: FencingToken(5),
        lease: Lease { expires_at: UnixMillis(0), valid_for_ms: 60_000 },
        rig: "bench-3".into(),
        rig_sha256: proofrig_proto::bytes::sha256_hex(rig().as_bytes()),
        plans: vec![PlanFile { name: "upload-path.yaml".into(), bytes: plan().as_bytes().to_vec() }],
        params: BTreeMap::new(),
        device: None,
    };
    let Accepted::Start { answer, job } = assignments.accept(&assignment).unwrap() else { panic!("not started") };
    let (_abort, abort) = tokio::sync::watch::channel(false);
    let host = proofrig_run::job::RunHost { operator: "labhost:bench-a".into(), host: "bench-a".into() };
    let sealed = job.run(host, &mut proofrig_run::progress::Silent, abort, &proofrig_report::Standard).await.unwrap();
    assignments.finished("bench-3");

    let run = UploadFor { job: answer.job, attempt: answer.attempt, fencing: answer.fencing };
    let offered = offer(&sealed.dir, run).unwrap();
    assert_eq!(offered.run_id, answer.run_id);
    let from =
        Sender { lab_host: "bench-a", key: &lab_key.verifying_key(), received_at: "2026-12-05T08:00:00Z", live: None, witnessed: &[] };
    let inbox = Inbox::open(inbox_dir.path(), Limits::default()).unwrap();

    // The first connection sends two files, then the link drops.
    let held = inbox.offer(&offered).unwrap();
    let first: Vec<_> = chunks(&sealed.dir, &offered, &held).take(2).collect::<Result<_, _>>().unwrap();
    for chunk in &first {
        assert!(matches!(inbox.chunk(chunk, &from, &server_key).unwrap(), Progress::Held(_)));
    }
    // Offered again, the server says what it holds; only the rest goes.
    let held = inbox.offer(&offered).unwrap();
    let rest: Vec<_> = chunks(&sealed.dir, &offered, &held).collect::<Result<_, _>>().unwrap();
    assert_eq!(rest.len(), offered.files.len() - 2, "the two files already held are not sent again");
    let mut stored = None;
    for chunk in &rest {
        if let Progress::Stored(uploaded) = inbox.chunk(chunk, &from, &server_key).unwrap() {
            stored = Some(uploaded);
        }
    }
    let uploaded = stored.expect("the last chunk stores the bundle");
    assert_eq!(uploaded.check, BundleCheck::Verified { verdict: Verdict::Inconclusive });
    let receipt = inbox.read_receipt(&answer.run_id, &server_key.verifying_key()).unwrap();
    assert_eq!((receipt.job, receipt.attempt, receipt.lab_host.as_str()), (JobId(21), Attempt(1), "bench-a"));
    for file in &offered.files {
        let kept = std::fs::read(inbox.bundle(&answer.run_id).join(&file.path)).unwrap();
        assert_eq!(kept, std::fs::read(sealed.dir.join(&file.path)).unwrap(), "{} stored as sealed", file.path);
    }
}
