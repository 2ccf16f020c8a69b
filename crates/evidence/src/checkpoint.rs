//! Signed checkpoints: the journal's head, signed with the lab's key while the run goes.
//!
//! Sealing signs a bundle at the end of a run. A run that never gets there (killed,
//! crashed, the machine lost power) used to leave a journal whose chain anyone with
//! write access could rebuild around an edit. So the run signs the journal's head as
//! it goes, in records of the chain itself: a checkpoint follows RunStarted, every
//! CaseFinished and RunFinished at once, and any record left unsigned for
//! [`INTERVAL`]. `verify` then says how far a crashed run's journal is signed, and
//! an edit inside the signed part, chain rebuilt, no longer matches the head its
//! checkpoint signed.
//!
//! Checkpoints are journal records rather than a side file because then one file
//! holds the evidence, the chain orders and covers them (a later record commits to
//! each checkpoint, so none can be dropped or moved without breaking the chain), and
//! `verify` checks them in its one pass. The writer thread signs them as it chains
//! them (ARCHITECTURE.md, `evidence/`): the signature costs about 50 µs every
//! 10 s and at each case's end, never a step's time.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;

use crate::journal::HeadSigner;
use crate::record::{Checkpoint, JournalEntry};
use crate::signing::{key_id, pae};

/// The DSSE payload type of a signed journal head.
pub const PAYLOAD_TYPE: &str = "application/vnd.proofrig.journal-head+json";
/// The longest records of a running journal stand unsigned.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The entries after which a checkpoint follows at once, as serde_json begins them.
const SIGNED_AFTER: [&[u8]; 3] = [br#"{"type":"run_started""#, br#"{"type":"case_finished""#, br#"{"type":"run_finished""#];

/// The bytes a checkpoint's signature covers (inside the DSSE encoding).
#[derive(Serialize)]
struct SignedHead<'a> {
    records: u64,
    head_sha256: &'a str,
    at: &'a str,
}

fn signed_bytes(records: u64, head_sha256: &str, at: &str) -> Vec<u8> {
    let payload = serde_json::to_vec(&SignedHead { records, head_sha256, at }).expect("plain fields encode");
    pae(PAYLOAD_TYPE, &payload)
}

/// Signs a run's journal head with the lab's key (the one that seals the bundle).
pub struct LabHeadSigner {
    key: SigningKey,
    keyid: String,
    public_key: String,
    interval: Duration,
}

impl LabHeadSigner {
    pub fn new(key: SigningKey) -> Self {
        Self::with_interval(key, INTERVAL)
    }

    /// With another interval than [`INTERVAL`] (tests).
    pub fn with_interval(key: SigningKey, interval: Duration) -> Self {
        let verifying = key.verifying_key();
        LabHeadSigner { keyid: key_id(&verifying), public_key: STANDARD.encode(verifying.as_bytes()), key, interval }
    }

    /// The checkpoint signing `records` records ending in the record hashed `head`, now.
    pub fn sign(&self, records: u64, head: &[u8; 32]) -> Checkpoint {
        let at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let head_sha256 = hex::encode(head);
        let sig = self.key.sign(&signed_bytes(records, &head_sha256, &at));
        Checkpoint {
            records,
            head_sha256,
            at,
            keyid: self.keyid.clone(),
            public_key: self.public_key.clone(),
            sig: STANDARD.encode(sig.to_bytes()),
        }
    }
}

impl HeadSigner for LabHeadSigner {
    fn signs_after(&self, body: &[u8]) -> bool {
        SIGNED_AFTER.iter().any(|start| body.starts_with(start))
    }

    fn checkpoint(&self, records: u64, head: &[u8; 32], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, &JournalEntry::Checkpoint(self.sign(records, head)))
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}

/// A checkpoint that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub keyid: String,
    /// Signed by the key given to check against (not only by the key it carries).
    pub pinned: bool,
}

/// Check checkpoint record `n`, whose previous record hashes to `prev`: it signs
/// exactly the records before it, and its signature is by `pinned` (when given) or
/// at least by the key it carries. On failure, says what is wrong.
pub fn check(checkpoint: &Checkpoint, n: u64, prev: &[u8; 32], pinned: Option<&VerifyingKey>) -> Result<Signed, String> {
    if checkpoint.records != n {
        return Err(format!("it signs the first {} records but stands at record {n}", checkpoint.records));
    }
    if !checkpoint.head_sha256.eq_ignore_ascii_case(&hex::encode(prev)) {
        return Err("it signs another head than the record before it: records before it changed after it was signed".into());
    }
    let carried = STANDARD
        .decode(&checkpoint.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or("its public key is not an Ed25519 key in base64")?;
    if key_id(&carried) != checkpoint.keyid {
        return Err(format!("it names key {} but carries key {}", checkpoint.keyid, key_id(&carried)));
    }
    let key = pinned.unwrap_or(&carried);
    let signature = STANDARD
        .decode(&checkpoint.sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("its signature is not an Ed25519 signature in base64")?;
    let message = signed_bytes(checkpoint.records, &checkpoint.head_sha256, &checkpoint.at);
    if key.verify(&message, &signature).is_err() {
        return Err(match pinned {
            Some(pinned) if carried.verify(&message, &signature).is_ok() => {
                format!("it is signed by {}, not by the pinned key {}", checkpoint.keyid, key_id(pinned))
            }
            Some(pinned) => format!("its signature does not verify with the pinned key {}", key_id(pinned)),
            None => "its signature does not verify".into(),
        });
    }
    Ok(Signed { keyid: key_id(key), pinned: pinned.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_checks_only_where_it_was_signed_and_by_its_key() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let signer = LabHeadSigner::new(key.clone());
        let head = [3u8; 32];
        let checkpoint = signer.sign(5, &head);
        let signed = check(&checkpoint, 5, &head, Some(&key.verifying_key())).unwrap();
        assert!(signed.pinned);
        assert_eq!(check(&checkpoint, 5, &head, None).unwrap().keyid, key_id(&key.verifying_key()));

        assert!(check(&checkpoint, 6, &head, None).unwrap_err().contains("stands at record 6"));
        assert!(check(&checkpoint, 5, &[4u8; 32], None).unwrap_err().contains("another head"));
        let err = check(&checkpoint, 5, &head, Some(&other.verifying_key())).unwrap_err();
        assert!(err.contains("not by the pinned key"), "{err}");

        let mut later = checkpoint.clone();
        later.at = "2099-01-01T00:00:00.000Z".into();
        assert!(check(&later, 5, &head, None).unwrap_err().contains("does not verify"));
        // Re-signed by another key, that key's id and public key put in: only a pin catches it.
        let forged = LabHeadSigner::new(other.clone()).sign(5, &head);
        assert!(check(&forged, 5, &head, None).is_ok());
        assert!(check(&forged, 5, &head, Some(&key.verifying_key())).is_err());
        let mut mixed = forged.clone();
        mixed.keyid = checkpoint.keyid.clone();
        assert!(check(&mixed, 5, &head, None).unwrap_err().contains("carries key"));
    }

    #[test]
    fn checkpoints_follow_run_started_case_finished_and_run_finished_only() {
        let signer = LabHeadSigner::new(SigningKey::from_bytes(&[7u8; 32]));
        let rollup = proofrig_verdict::Rollup::of([]);
        let key = crate::record::CaseKey { plan: "p".into(), case: "c".into(), device: "d".into() };
        let finished = JournalEntry::CaseFinished {
            key,
            verdict: proofrig_verdict::Verdict::Pass,
            rollup: rollup.clone(),
            checks_passed: 1,
            skip_reason: None,
            unready: None,
        };
        assert!(signer.signs_after(&serde_json::to_vec(&finished).unwrap()));
        let run_finished =
            JournalEntry::RunFinished { verdict: proofrig_verdict::Verdict::Pass, rollup, ended: "e".into(), aborted: false };
        assert!(signer.signs_after(&serde_json::to_vec(&run_finished).unwrap()));
        let reported = JournalEntry::DeviceReported { device: "d".into(), command: "c".into(), output: String::new(), error: None };
        assert!(!signer.signs_after(&serde_json::to_vec(&reported).unwrap()));
        let unrelated = serde_json::json!({"note": {"type": "case_finished"}});
        assert!(!signer.signs_after(&serde_json::to_vec(&unrelated).unwrap()));
        let mut out = Vec::new();
        signer.checkpoint(3, &[1; 32], &mut out).unwrap();
        let entry: JournalEntry = serde_json::from_slice(&out).unwrap();
        assert!(matches!(entry, JournalEntry::Checkpoint(Checkpoint { records: 3, .. })));
    }
}
