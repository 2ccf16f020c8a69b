//! A bundle sealed by a previous release must keep verifying: a lab's archive and a
//! regulator's copy outlive the binary that sealed them. `crates/evidence/tests/fixtures/bundle-47b8afb/` is a
//! demo bundle (TS 33.117 4.2.3.4.2.2 on the simulated lab) sealed by commit 47b8afb,
//! the last release before the workspace was split into crates; its key is beside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../evidence/tests/fixtures/bundle-47b8afb")
}

fn verify(bundle: &Path) -> Output {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../evidence/tests/fixtures/bundle-47b8afb.pub");
    Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["verify".as_ref(), bundle.as_os_str(), "--key".as_ref(), key.as_os_str()])
        .stdin(Stdio::null())
        .output()
        .expect("run proofrig verify")
}

#[test]
fn a_bundle_sealed_by_the_previous_release_still_verifies() {
    let out = verify(&fixture());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("VERIFIED"), "{stdout}");
    assert!(stdout.contains("4 case verdict(s) and the run verdict FAIL agree with the journal"), "{stdout}");
}

#[test]
fn the_previous_release_bundle_edited_is_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bundle");
    copy_dir(&fixture(), &copy);
    let journal = copy.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("\"PASS\""), "the fixture's journal records a PASS");
    std::fs::write(&journal, text.replacen("\"PASS\"", "\"FAIL\"", 1)).unwrap();
    let out = verify(&copy);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("TAMPERED"), "{stdout}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
