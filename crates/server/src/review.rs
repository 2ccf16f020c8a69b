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

/// Make and sign a review of the bundle at `bundle` (its run id `run_id`).
pub fn sign(
    bundle: &Path,
    run_id: &str,
    reviewer: &str,
    decision: Decision,
    comment: &str,
    at: &str,
    key: &SigningKey,
) -> Result<Envelope, String> {
    let manifest = std::fs::read(bundle.join(MANIFEST)).map_err(|e| format!("{}: {e}", bundle.join(MANIFEST).display()))?;
    let statement = Statement {
        kind: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: format!("{run_id}/{MANIFEST}"),
            digest: [("sha256".to_string(), proofrig_proto::bytes::sha256_hex(&manifest))].into(),
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Summary {
            verifier: Verifier { id: format!("proofrig-server:{}", signing::key_id(&key.verifying_key())) },
            time_verified: at.into(),
            resource_uri: format!("proofrig:run/{run_id}"),
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
    let about = statement.subject.iter().find(|s| s.name.ends_with(MANIFEST)).and_then(|s| s.digest.get("sha256"));
    match about {
        Some(digest) if *digest == manifest => ReviewCheck::Counts { statement: Box::new(statement), pinned },
        Some(digest) => ReviewCheck::Void(format!(
            "it reviewed a manifest with SHA-256 {digest}, this bundle's is {manifest}: the bundle changed since, so the review no longer counts"
        )),
        None => ReviewCheck::Void("it names no manifest".into()),
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
        let envelope = sign(dir.path(), "run-1", "mona", Decision::Rejected, "ssh allows CBC", "2026-12-05T11:00:00Z", &key).unwrap();
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
}
