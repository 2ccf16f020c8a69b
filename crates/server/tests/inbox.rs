//! Bundles arrive verified: a real sealed bundle uploaded in chunks, interrupted and
//! resumed, stored byte for byte and verified against the lab host's pinned key, with
//! a receipt signed by the server; resends stored once; contradicting bytes, a wrong
//! digest and bad paths refused; a bundle signed by another key or edited on the way
//! kept but flagged.

use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use proofrig_proto::bytes::sha256_hex;
use proofrig_proto::files::BundleFile;
use proofrig_proto::ids::{Attempt, FencingToken, JobId};
use proofrig_proto::labhost::{BundleCheck, RefusalCode, UploadChunk, UploadOffer};
use proofrig_server::inbox::{Inbox, Limits, Progress, Sender};
use proofrig_verdict::Verdict;

/// The plan of these tests: one case that needs no device.
fn plan() -> String {
    no_device_plan("upload-check", "TC_UP")
}

fn lab_key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn server_key() -> SigningKey {
    SigningKey::from_bytes(&[6; 32])
}

/// A bundle sealed by the job use case, as a lab host seals one.
fn sealed_bundle(out: &Path, key: &SigningKey) -> PathBuf {
    let setup = proofrig_run::job::RunSetup {
        plans: vec![proofrig_plan::Plan::parse("upload-check.yaml", &plan()).unwrap()],
        rig: proofrig_model::rig::Rig::parse("desk.yaml", &desk_rig("desk"), Path::new(".")).unwrap(),
        only_device: None,
        params: BTreeMap::new(),
        out_dir: out.to_path_buf(),
        key: key.clone(),
        job: None,
        one_device_at_a_time: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let job = proofrig_run::job::Job::create(setup, "up").unwrap();
        let (_abort, abort) = tokio::sync::watch::channel(false);
        let host = proofrig_run::job::RunHost { operator: "labhost".into(), host: "bench-a".into() };
        job.run(host, &mut proofrig_run::progress::Silent, abort, &proofrig_report::Standard).await.unwrap().dir
    })
}

/// Every file of a bundle as (relative path, bytes), sorted.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((path.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const JOB: JobId = JobId(3);
const ATTEMPT: Attempt = Attempt(1);
const FENCE: FencingToken = FencingToken(9);

fn offer(run_id: &str, files: &[(String, Vec<u8>)]) -> UploadOffer {
    UploadOffer {
        job: JOB,
        attempt: ATTEMPT,
        fencing: FENCE,
        run_id: run_id.into(),
        files: files
            .iter()
            .map(|(path, bytes)| BundleFile { path: path.clone(), len: bytes.len() as u64, sha256: sha256_hex(bytes) })
            .collect(),
    }
}

fn chunk(path: &str, whole: &[u8], offset: usize, len: usize) -> UploadChunk {
    let end = (offset + len).min(whole.len());
    UploadChunk {
        job: JOB,
        attempt: ATTEMPT,
        fencing: FENCE,
        path: path.into(),
        offset: offset as u64,
        len: whole.len() as u64,
        sha256: sha256_hex(whole),
        data: whole[offset..end].to_vec(),
    }
}

fn sender(key: &ed25519_dalek::VerifyingKey) -> Sender<'_> {
    Sender { lab_host: "bench-a", key, received_at: "2026-12-05T08:00:00Z", live: None, witnessed: &[] }
}

/// Upload every file in chunks of `size` from where the server says it holds them.
fn upload_rest(inbox: &Inbox, run_id: &str, files: &[(String, Vec<u8>)], size: usize) -> Option<Progress> {
    let key = lab_key().verifying_key();
    let held = inbox.offer(&offer(run_id, files)).unwrap();
    let mut last = None;
    for ((path, bytes), file) in files.iter().zip(&held.files) {
        let mut at = file.held as usize;
        while at < bytes.len() {
            last = Some(inbox.chunk(&chunk(path, bytes, at, size), &sender(&key), &server_key()).unwrap());
            at += size;
        }
    }
    last
}

#[test]
fn an_interrupted_upload_resumes_and_the_bundle_is_stored_verified_with_a_signed_receipt() {
    let lab = tempfile::tempdir().unwrap();
    let bundle = sealed_bundle(lab.path(), &lab_key());
    let run_id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let files = files_of(&bundle);
    let root = tempfile::tempdir().unwrap();
    {
        // The first connection sends half of the journal, then drops.
        let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
        inbox.offer(&offer(&run_id, &files)).unwrap();
        let (path, journal) = files.iter().find(|(p, _)| p == "journal.jsonl").unwrap();
        let progress =
            inbox.chunk(&chunk(path, journal, 0, journal.len() / 2), &sender(&lab_key().verifying_key()), &server_key()).unwrap();
        assert!(matches!(progress, Progress::Held(ref h) if h.held == (journal.len() / 2) as u64), "{progress:?}");
    }
    // The server restarted: the offer again says what it holds, and the rest follows.
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    let held = inbox.offer(&offer(&run_id, &files)).unwrap();
    assert!(held.files.iter().any(|f| f.path == "journal.jsonl" && f.held > 0), "{held:?}");
    let Some(Progress::Stored(uploaded)) = upload_rest(&inbox, &run_id, &files, 4096) else { panic!("not stored") };
    assert_eq!(uploaded.run_id, run_id);
    // No device was touched, so the honest verdict is INCONCLUSIVE, as verify recomputed it.
    assert_eq!(uploaded.check, BundleCheck::Verified { verdict: Verdict::Inconclusive });
    assert_eq!(files_of(&inbox.bundle(&run_id)), files, "stored byte for byte as sealed");
    let receipt = inbox.read_receipt(&run_id, &server_key().verifying_key()).unwrap();
    assert_eq!((receipt.job, receipt.lab_host.as_str()), (JOB, "bench-a"));
    assert_eq!(receipt.lab_host_key, proofrig_evidence::signing::key_id(&lab_key().verifying_key()));
    assert_eq!(receipt.check, uploaded.check);
    assert!(inbox.read_receipt(&run_id, &lab_key().verifying_key()).is_err(), "the receipt is the server's signature, not anyone's");
    // Offered again after it is stored (a lab host that missed the answer): all held.
    let again = inbox.offer(&offer(&run_id, &files)).unwrap();
    assert!(again.files.iter().zip(&files).all(|(h, (_, b))| h.held == b.len() as u64));
}

#[test]
fn resent_bytes_are_stored_once_and_contradicting_ones_change_nothing() {
    let lab = tempfile::tempdir().unwrap();
    let bundle = sealed_bundle(lab.path(), &lab_key());
    let run_id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let files = files_of(&bundle);
    let root = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    inbox.offer(&offer(&run_id, &files)).unwrap();
    let key = lab_key().verifying_key();
    let (path, journal) = files.iter().find(|(p, _)| p == "journal.jsonl").unwrap();
    inbox.chunk(&chunk(path, journal, 0, 100), &sender(&key), &server_key()).unwrap();
    inbox.chunk(&chunk(path, journal, 0, 100), &sender(&key), &server_key()).unwrap();
    let overlap = inbox.chunk(&chunk(path, journal, 50, 100), &sender(&key), &server_key()).unwrap();
    assert!(matches!(overlap, Progress::Held(ref h) if h.held == 150), "{overlap:?}");
    let mut forged = chunk(path, journal, 100, 100);
    forged.data[0] ^= 1;
    let refused = inbox.chunk(&forged, &sender(&key), &server_key()).unwrap_err();
    assert_eq!(refused.code, RefusalCode::Conflict, "{}", refused.message);
    let gap = inbox.chunk(&chunk(path, journal, 400, 10), &sender(&key), &server_key()).unwrap();
    assert!(matches!(gap, Progress::Held(ref h) if h.held == 150), "a gap is answered with where to resume: {gap:?}");
    // Offered again with other files for the same run: a conflict.
    let mut other = files.clone();
    other[0].1.push(b'x');
    assert_eq!(inbox.offer(&offer(&run_id, &other)).unwrap_err().code, RefusalCode::Conflict);
}

#[test]
fn bad_paths_unoffered_files_and_wrong_digests_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    let files = vec![("journal.jsonl".to_string(), b"{}\n".to_vec())];
    for bad in ["../etc/passwd", "/abs", "a/../../b"] {
        let err = inbox.offer(&offer("run-1", &[(bad.to_string(), b"x".to_vec())])).unwrap_err();
        assert_eq!(err.code, RefusalCode::Invalid, "{bad}: {}", err.message);
    }
    assert_eq!(inbox.offer(&offer("../run", &files)).unwrap_err().code, RefusalCode::Invalid);
    let small = Inbox::open(root.path(), Limits { max_files: 10, max_file_bytes: 2, max_total_bytes: 10 }).unwrap();
    assert_eq!(small.offer(&offer("run-2", &files)).unwrap_err().code, RefusalCode::TooLarge);
    inbox.offer(&offer("run-1", &files)).unwrap();
    let key = lab_key().verifying_key();
    let unoffered = chunk("report.html", b"<html>", 0, 6);
    assert_eq!(inbox.chunk(&unoffered, &sender(&key), &server_key()).unwrap_err().code, RefusalCode::Invalid);
    // Bytes that do not hash to the offered digest: discarded, to be sent again.
    let mut wrong = chunk("journal.jsonl", b"{}\n", 0, 3);
    wrong.data = b"{]\n".to_vec();
    let err = inbox.chunk(&wrong, &sender(&key), &server_key()).unwrap_err();
    assert_eq!(err.code, RefusalCode::Conflict, "{}", err.message);
    assert!(err.message.contains("discarded"), "{}", err.message);
    let held = inbox.offer(&offer("run-1", &files)).unwrap();
    assert_eq!(held.files[0].held, 0);
}

#[test]
fn a_bundle_signed_by_another_key_or_edited_on_the_way_is_kept_but_flagged() {
    let lab = tempfile::tempdir().unwrap();
    // Signed by a key that is not the lab host's.
    let bundle = sealed_bundle(lab.path(), &SigningKey::from_bytes(&[77; 32]));
    let run_id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let files = files_of(&bundle);
    let root = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    let Some(Progress::Stored(uploaded)) = upload_rest(&inbox, &run_id, &files, 1 << 20) else { panic!("not stored") };
    assert!(matches!(uploaded.check, BundleCheck::Flagged { .. }), "{:?}", uploaded.check);
    assert!(inbox.bundle(&run_id).join("journal.jsonl").exists(), "kept");
    assert_eq!(inbox.read_receipt(&run_id, &server_key().verifying_key()).unwrap().check, uploaded.check);

    // Signed by the lab host, then edited: a verdict in results.json changed.
    let lab = tempfile::tempdir().unwrap();
    let bundle = sealed_bundle(lab.path(), &lab_key());
    let run_id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let mut files = files_of(&bundle);
    let results = files.iter_mut().find(|(p, _)| p == "results.json").unwrap();
    results.1 = String::from_utf8(results.1.clone()).unwrap().replacen("INCONCLUSIVE", "PASS", 1).into_bytes();
    let Some(Progress::Stored(uploaded)) = upload_rest(&inbox, &run_id, &files, 1 << 20) else { panic!("not stored") };
    let BundleCheck::Flagged { reason } = &uploaded.check else { panic!("an edited bundle verified: {:?}", uploaded.check) };
    assert!(reason.contains("Tampered"), "{reason}");
}

/// Sends every file of `files` in one go, as `from`.
fn upload_as(inbox: &Inbox, run_id: &str, files: &[(String, Vec<u8>)], from: &Sender<'_>) -> Progress {
    inbox.offer(&offer(run_id, files)).unwrap();
    let mut last = None;
    for (path, bytes) in files {
        last = Some(inbox.chunk(&chunk(path, bytes, 0, bytes.len()), from, &server_key()).unwrap());
    }
    last.unwrap()
}

#[test]
fn a_journal_rewritten_after_the_server_witnessed_it_is_flagged_even_when_signed_by_the_lab_key() {
    use proofrig_server::witness::Witnessed;
    let lab = tempfile::tempdir().unwrap();
    let bundle = sealed_bundle(lab.path(), &lab_key());
    let run_id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let files = files_of(&bundle);
    let journal = &files.iter().find(|(p, _)| p == "journal.jsonl").unwrap().1;
    let key = lab_key().verifying_key();
    let head_of_first = {
        let first = &journal[..journal.iter().position(|&b| b == b'\n').unwrap()];
        sha256_hex(first)
    };
    let seen = |records: u64, head: String| Witnessed {
        job: JobId(21),
        attempt: Attempt(1),
        lab_host: "bench-a".into(),
        records,
        head,
        bytes: 0,
        at: "2026-12-05T08:00:00Z".into(),
    };

    // What the server held and witnessed is what arrives: verified, and the receipt lists it.
    let root = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    let held = root.path().join("held.jsonl");
    std::fs::write(&held, &journal[..journal.len() / 2]).unwrap();
    let witnessed = [seen(1, head_of_first.clone())];
    let from = Sender { live: Some(&held), witnessed: &witnessed, ..sender(&key) };
    let Progress::Stored(stored) = upload_as(&inbox, &run_id, &files, &from) else { panic!("not stored") };
    assert!(matches!(stored.check, BundleCheck::Verified { .. }), "{:?}", stored.check);
    let receipt = inbox.read_receipt(&run_id, &server_key().verifying_key()).unwrap();
    assert_eq!(receipt.witnessed, witnessed);

    // The server held other bytes than the bundle's journal begins with: flagged.
    let root = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    let mut other = journal[..200].to_vec();
    other[150] ^= 1;
    std::fs::write(&held, &other).unwrap();
    let from = Sender { live: Some(&held), ..sender(&key) };
    let Progress::Stored(stored) = upload_as(&inbox, &run_id, &files, &from) else { panic!("not stored") };
    assert!(matches!(&stored.check, BundleCheck::Flagged { reason } if reason.contains("rewritten")), "{:?}", stored.check);

    // A signed statement the journal does not match (its head differs): flagged too.
    let root = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    let witnessed = [seen(1, "00".repeat(32))];
    let from = Sender { witnessed: &witnessed, ..sender(&key) };
    let Progress::Stored(stored) = upload_as(&inbox, &run_id, &files, &from) else { panic!("not stored") };
    assert!(matches!(&stored.check, BundleCheck::Flagged { reason } if reason.contains("rewritten")), "{:?}", stored.check);
}

#[test]
fn a_server_that_fails_between_the_last_chunk_and_the_receipt_settles_the_upload_when_it_is_offered_again() {
    let lab = tempfile::tempdir().unwrap();
    let bundle = sealed_bundle(lab.path(), &lab_key());
    let run_id = bundle.file_name().unwrap().to_string_lossy().into_owned();
    let files = files_of(&bundle);
    let root = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(root.path(), Limits::default()).unwrap();
    let key = lab_key().verifying_key();
    // The receipt cannot be written (as if the server died there): the last chunk fails.
    let blocker = root.path().join("receipts").join(format!("{run_id}.tmp"));
    std::fs::create_dir_all(&blocker).unwrap();
    inbox.offer(&offer(&run_id, &files)).unwrap();
    let mut last = None;
    for (path, bytes) in &files {
        last = Some(inbox.chunk(&chunk(path, bytes, 0, bytes.len()), &sender(&key), &server_key()));
    }
    let err = last.unwrap().unwrap_err();
    assert_eq!(err.code, RefusalCode::Busy, "{}", err.message);
    assert!(!inbox.bundle(&run_id).exists(), "no bundle is stored without its receipt");
    assert!(!inbox.receipt(&run_id).exists());

    // Back: the lab host offers again; every file is held, so the upload is settled now.
    std::fs::remove_dir(&blocker).unwrap();
    let held = inbox.offer(&offer(&run_id, &files)).unwrap();
    assert!(held.files.iter().zip(&files).all(|(h, (_, bytes))| h.held == bytes.len() as u64), "{held:?}");
    let settled = inbox.settle(&offer(&run_id, &files), &sender(&key), &server_key()).unwrap().expect("settled");
    assert!(matches!(settled.check, BundleCheck::Verified { .. }), "{:?}", settled.check);
    assert_eq!(files_of(&inbox.bundle(&run_id)), files, "stored byte for byte");
    // Settled again (another resend): the same answer, from the receipt; nothing redone.
    let again = inbox.settle(&offer(&run_id, &files), &sender(&key), &server_key()).unwrap().expect("settled");
    assert_eq!(again, settled);
}
