//! A bundle sealed by a previous release verifies with this crate alone: what a
//! regulator's verifier links (no agents, no device I/O, no command line). The
//! fixture is a demo bundle sealed by commit 47b8afb, the last release before the
//! workspace was split into crates; `proofrig verify` on it is tested in the
//! proofrig crate.

use std::path::{Path, PathBuf};

use proofrig_evidence::signing;
use proofrig_evidence::verify::Status;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn the_previous_release_bundle_verifies_with_the_evidence_crate_alone() {
    let key = signing::load_verifying_key(&fixtures().join("bundle-47b8afb.pub")).unwrap();
    let report = proofrig_evidence::verify_bundle(&fixtures().join("bundle-47b8afb"), Some(&key));
    assert_eq!(report.status, Status::Verified, "{report:#?}");
    assert!(report.pinned);
    assert!(report.checks.iter().any(|c| c.what.contains("verdicts replay")), "{report:#?}");
}

#[test]
fn the_previous_release_bundle_under_another_key_is_not_verified() {
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let report = proofrig_evidence::verify_bundle(&fixtures().join("bundle-47b8afb"), Some(&other));
    assert_ne!(report.status, Status::Verified, "{report:#?}");
}
