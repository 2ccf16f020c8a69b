//! `proofrig keygen` and `proofrig verify` as a lab and a regulator use them: the
//! real binary, its output and its exit codes on bundles these tests seal.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use proofrig_evidence::bundle::{ATTESTATION, JOURNAL};
use proofrig_evidence::signing::{key_id, load_verifying_key};
use proofrig_verdict::Verdict;
use support::*;

fn proofrig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(Stdio::null()).output().expect("run proofrig")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keygen_writes_an_owner_only_private_key_and_refuses_to_overwrite_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let out = proofrig(&["keygen", "--out", path(&dir), "--name", "lab"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));

    let private = dir.join("lab.key");
    let public = dir.join("lab.pub");
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let id = key_id(&load_verifying_key(&public).unwrap());
    let text = stdout(&out);
    assert!(text.contains(&format!("key id: {id}")), "{text}");
    assert!(text.contains(&format!("proofrig verify results/<run-id> --key {}", public.display())), "{text}");

    let key_before = std::fs::read(&private).unwrap();
    let again = proofrig(&["keygen", "--out", path(&dir), "--name", "lab"]);
    assert_eq!(again.status.code(), Some(1), "{}", all(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("will not overwrite"), "{}", all(&again));
    assert_eq!(std::fs::read(&private).unwrap(), key_before, "the old key is untouched");

    let bad = proofrig(&["keygen", "--out", path(&dir), "--name", "../lab"]);
    assert_eq!(bad.status.code(), Some(3), "{}", all(&bad));
}

// Verifying a real run's bundle (exit 0, pinned and unpinned) is in run_cli.rs: the
// synthetic bundles here do not come from a plan, so their verdicts cannot replay.

#[test]
fn verify_exits_1_naming_the_changed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let other = keys(tmp.path(), "other");
    let bundle = sealed_bundle(tmp.path(), &standard_cases(), &lab.signing);

    let report = bundle.join("report.html");
    let mut bytes = std::fs::read(&report).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&report, &bytes).unwrap();
    let out = proofrig(&["verify", path(&bundle), "--key", path(&lab.public)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let text = stdout(&out);
    assert!(text.contains("✗ report.html matches its signed digest: report.html was changed after sealing"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("TAMPERED: report.html"), "{text}");
    bytes[at] ^= 0x01;
    std::fs::write(&report, &bytes).unwrap();

    // The wrong lab key: every signature fails, and the real signer is named.
    let out = proofrig(&["verify", path(&bundle), "--key", path(&other.public)]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("not signed by the pinned key {}", key_id(&other.verifying))), "{text}");
    assert!(text.contains(&format!("validly signed by {}", key_id(&lab.verifying))), "{text}");
    assert!(text.lines().last().unwrap().starts_with("TAMPERED: signature"), "{text}");
}

#[test]
fn verify_exits_2_for_a_run_that_never_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = create_writer(tmp.path());
    let entries = journal_entries(&standard_cases(), writer.input_refs(), Verdict::Fail);
    for entry in &entries[..5] {
        writer.journal().append(entry).unwrap();
    }
    let bundle = writer.dir().to_path_buf();
    drop(writer);
    assert!(!bundle.join(ATTESTATION).exists() && bundle.join(JOURNAL).exists());

    let out = proofrig(&["verify", path(&bundle)]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let last = stdout(&out).lines().last().unwrap().to_string();
    assert!(last.starts_with("INCOMPLETE: the run was never sealed; 5 journal record(s) verify"), "{last}");
}

#[test]
fn verify_exits_3_for_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = proofrig(&["verify", path(&tmp.path().join("nope"))]);
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));
    let not_a_key = tmp.path().join("lab.pub");
    std::fs::write(&not_a_key, "not a key").unwrap();
    let out = proofrig(&["verify", path(tmp.path()), "--key", path(&not_a_key)]);
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lab.pub"), "{}", all(&out));
}
