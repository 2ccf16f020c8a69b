//! A manager's review of a run, as a signed statement that travels with the evidence.
//!
//! Why a signed statement and not a row in a database: a regulator reads the bundle,
//! not the lab's dashboard. A review is an in-toto Statement whose predicate is shaped
//! like a SLSA verification summary (who decided, when, what, on which policy), its
//! subject the bundle's `manifest.json` by SHA-256 (the manifest digests every other
//! file), signed by the server's key in a DSSE envelope: the server attests that this
//! authenticated manager made this decision about exactly these bytes. Reviews are kept
//! beside the bundle (`<inbox>/reviews/<run>.jsonl`, one envelope a line), `proofrig
//! fetch` saves them beside the downloaded bundle, and `proofrig verify` checks each
//! ([`check`]): a review of a bundle whose manifest changed no longer counts.
//!
//! A manager may also sign off a product's firmware as a whole, from its compliance
//! matrix ([`sign_matrix`]): one statement whose subjects are the manifests of every
//! run the matrix shows, kept beside each of those bundles (so each travels with its
//! evidence and `verify` checks it there) and with the matrix.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use proofrig_evidence::bundle::MANIFEST;
use proofrig_evidence::signing::{self, Envelope, SignatureCheck};

/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate: a SLSA verification summary, with the review's decision and comment.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// The policy a review applies: a person's judgement of the evidence.
pub const POLICY: &str = "https://proofrig.dev/policy/manager-review/v1";

/// What the manager decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Looked at; no decision yet.
    Reviewed,
    Accepted,
    Rejected,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Reviewed => "reviewed",
            Decision::Accepted => "accepted",
            Decision::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Decision> {
        [Decision::Reviewed, Decision::Accepted, Decision::Rejected].into_iter().find(|d| d.name() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub uri: String,
}

/// The predicate: SLSA verification summary fields, and the review's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub verifier: Verifier,
    pub time_verified: String,
    pub resource_uri: String,
    pub policy: Policy,
    /// `PASSED` when accepted, `FAILED` when rejected, `REVIEWED` otherwise.
    pub verification_result: String,
    pub reviewer: String,
    pub decision: Decision,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    pub predicate_type: String,
    pub predicate: Summary,
}

/// Who decided what, when: the part of a review that is not its subject.
#[derive(Debug, Clone, Copy)]
pub struct Verdict<'a> {
    pub reviewer: &'a str,
    pub decision: Decision,
    pub comment: &'a str,
    /// RFC 3339, the server's clock.
    pub at: &'a str,
}

/// Make and sign a review of the bundle at `bundle` (its run id `run_id`).
pub fn sign(bundle: &Path, run_id: &str, verdict: Verdict<'_>, key: &SigningKey) -> Result<Envelope, String> {
    sign_about(&[(run_id, bundle)], &format!("proofrig:run/{run_id}"), verdict, key)
}

/// Make and sign a review of a product's firmware as its compliance matrix shows it:
/// about every run of `runs` (run id, bundle), named `proofrig:matrix/VENDOR/MODEL/FIRMWARE`.
pub fn sign_matrix(
    runs: &[(&str, &Path)],
    product: &str,
    firmware: &str,
    verdict: Verdict<'_>,
    key: &SigningKey,
) -> Result<Envelope, String> {
    if runs.is_empty() {
        return Err(format!("the matrix of {product}, firmware {firmware}, shows no run to sign off"));
    }
    sign_about(runs, &matrix_uri(product, firmware), verdict, key)
}

/// The resource a matrix review names.
pub fn matrix_uri(product: &str, firmware: &str) -> String {
    format!("proofrig:matrix/{product}/{firmware}")
}

fn sign_about(runs: &[(&str, &Path)], resource_uri: &str, verdict: Verdict<'_>, key: &SigningKey) -> Result<Envelope, String> {
    let mut subject = Vec::with_capacity(runs.len());
    for (run_id, bundle) in runs {
        let manifest = std::fs::read(bundle.join(MANIFEST)).map_err(|e| format!("{}: {e}", bundle.join(MANIFEST).display()))?;
        subject.push(Subject {
            name: format!("{run_id}/{MANIFEST}"),
            digest: [("sha256".to_string(), proofrig_proto::bytes::sha256_hex(&manifest))].into(),
        });
    }
    let Verdict { reviewer, decision, comment, at } = verdict;
    let statement = Statement {
        kind: STATEMENT_TYPE.into(),
        subject,
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Summary {
            verifier: Verifier { id: format!("proofrig-server:{}", signing::key_id(&key.verifying_key())) },
            time_verified: at.into(),
            resource_uri: resource_uri.into(),
            policy: Policy { uri: POLICY.into() },
            verification_result: match decision {
                Decision::Accepted => "PASSED",
                Decision::Rejected => "FAILED",
                Decision::Reviewed => "REVIEWED",
            }
            .into(),
            reviewer: reviewer.into(),
            decision,
            comment: comment.into(),
        },
    };
    Ok(signing::sign(key, PAYLOAD_TYPE, &serde_json::to_vec(&statement).expect("plain data")))
}

/// How one review compares with a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewCheck {
    /// Signed (by the pinned key when one is given) and about exactly this bundle.
    Counts { statement: Box<Statement>, pinned: bool },
    /// It does not count, and why.
    Void(String),
}

/// Check one review envelope against the bundle at `bundle`.
pub fn check(bundle: &Path, envelope: &Envelope, server_key: Option<&VerifyingKey>) -> ReviewCheck {
    if envelope.payload_type != PAYLOAD_TYPE {
        return ReviewCheck::Void(format!("not an in-toto statement ({})", envelope.payload_type));
    }
    let pinned = match envelope.check(server_key) {
        SignatureCheck::Pinned { .. } => true,
        SignatureCheck::Unpinned { .. } => false,
        SignatureCheck::Invalid { reason } => return ReviewCheck::Void(format!("its signature does not hold: {reason}")),
    };
    let Ok(statement) = envelope
        .payload_bytes()
        .map_err(|e| e.to_string())
        .and_then(|p| serde_json::from_slice::<Statement>(&p).map_err(|e| e.to_string()))
    else {
        return ReviewCheck::Void("its statement does not read".into());
    };
    if statement.predicate_type != PREDICATE_TYPE {
        return ReviewCheck::Void(format!("not a review ({})", statement.predicate_type));
    }
    let manifest = match std::fs::read(bundle.join(MANIFEST)) {
        Ok(bytes) => proofrig_proto::bytes::sha256_hex(&bytes),
        Err(e) => return ReviewCheck::Void(format!("the bundle has no manifest to compare: {e}")),
    };
    // A run's review names one manifest; a matrix review one per run it covers.
    let about: Vec<&String> =
        statement.subject.iter().filter(|s| s.name.ends_with(MANIFEST)).filter_map(|s| s.digest.get("sha256")).collect();
    match about.as_slice() {
        [] => ReviewCheck::Void("it names no manifest".into()),
        digests if digests.iter().any(|d| **d == manifest) => ReviewCheck::Counts { statement: Box::new(statement), pinned },
        [digest] => ReviewCheck::Void(format!(
            "it reviewed a manifest with SHA-256 {digest}, this bundle's is {manifest}: the bundle changed since, so the review no longer counts"
        )),
        digests => ReviewCheck::Void(format!(
            "none of the {} manifests it reviewed has this bundle's SHA-256 {manifest}: the bundle changed since, so the review no longer counts",
            digests.len()
        )),
    }
}

/// Read the review envelopes of a file (one a line); lines that do not read are skipped.
pub fn read_all(path: &Path) -> Vec<Envelope> {
    std::fs::read_to_string(path).map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_counts_for_its_bundle_only_while_the_bundle_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), b"{\"verdict\":\"FAIL\"}").unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let verdict = Verdict { reviewer: "mona", decision: Decision::Rejected, comment: "ssh allows CBC", at: "2026-12-05T11:00:00Z" };
        let envelope = sign(dir.path(), "run-1", verdict, &key).unwrap();
        match check(dir.path(), &envelope, Some(&key.verifying_key())) {
            ReviewCheck::Counts { statement, pinned } => {
                assert!(pinned);
                assert_eq!(
                    (statement.predicate.decision, statement.predicate.verification_result.as_str()),
                    (Decision::Rejected, "FAILED")
                );
                assert_eq!(statement.predicate.reviewer, "mona");
                assert_eq!(statement.kind, STATEMENT_TYPE);
            }
            other => panic!("{other:?}"),
        }
        // Another server's key pinned: void. Unpinned: counts, said unpinned.
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert!(matches!(check(dir.path(), &envelope, Some(&other)), ReviewCheck::Void(_)));
        assert!(matches!(check(dir.path(), &envelope, None), ReviewCheck::Counts { pinned: false, .. }));
        // The bundle changed: the review no longer counts.
        std::fs::write(dir.path().join(MANIFEST), b"{\"verdict\":\"PASS\"}").unwrap();
        match check(dir.path(), &envelope, Some(&key.verifying_key())) {
            ReviewCheck::Void(why) => assert!(why.contains("no longer counts"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_matrix_review_counts_for_each_bundle_it_covers_and_not_for_one_that_changed() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        for (i, dir) in dirs.iter().enumerate() {
            std::fs::write(dir.path().join(MANIFEST), format!("{{\"run\":{i}}}")).unwrap();
        }
        let key = SigningKey::from_bytes(&[3; 32]);
        let verdict = Verdict { reviewer: "mona", decision: Decision::Accepted, comment: "fw 3.0.7 ok", at: "2026-12-05T11:00:00Z" };
        let covered = [("run-0", dirs[0].path()), ("run-1", dirs[1].path())];
        let envelope = sign_matrix(&covered, "proofrig SIM-RU-4400", "3.0.7", verdict, &key).unwrap();
        for dir in &dirs[..2] {
            match check(dir.path(), &envelope, Some(&key.verifying_key())) {
                ReviewCheck::Counts { statement, .. } => {
                    assert_eq!(statement.subject.len(), 2);
                    assert_eq!(statement.predicate.resource_uri, "proofrig:matrix/proofrig SIM-RU-4400/3.0.7");
                    assert_eq!(statement.predicate.verification_result, "PASSED");
                }
                other => panic!("{other:?}"),
            }
        }
        // A bundle the matrix did not show, or one changed since: the review does not count for it.
        assert!(
            matches!(check(dirs[2].path(), &envelope, Some(&key.verifying_key())), ReviewCheck::Void(why) if why.contains("no longer counts"))
        );
        std::fs::write(dirs[1].path().join(MANIFEST), b"{\"run\":9}").unwrap();
        assert!(matches!(check(dirs[1].path(), &envelope, Some(&key.verifying_key())), ReviewCheck::Void(_)));
        assert!(sign_matrix(&[], "p", "1", verdict, &key).unwrap_err().contains("no run"));
    }
}
