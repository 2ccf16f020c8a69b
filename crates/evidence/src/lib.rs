//! Evidence: the hash-chained journal of a run, the bundle that seals it, and its
//! verification with every verdict replayed from the raw events.
//!
//! API boundary: the bundle format (`bundle::MANIFEST_FORMAT`, the journal's records,
//! the statements) is what a lab archives and a regulator checks, years later, with
//! whatever release they have. A verifier links this crate and what it needs (plan,
//! verdict, model), never device I/O; [`verify_bundle`] is all it calls.

pub mod attestation;
pub mod bundle;
pub mod checkpoint;
pub mod console_replay;
pub mod journal;
pub mod notes;
pub mod outputs;
pub mod record;
pub mod rederive;
pub mod replay;
pub mod signing;
pub mod stopped;
pub mod verify;

/// Verify a bundle as `proofrig verify` and a regulator do: signatures (against
/// `pinned` when given), every file, the hash chain and checkpoints, and every verdict
/// recomputed from the plans, the rig and the journal.
pub fn verify_bundle(bundle: &std::path::Path, pinned: Option<&ed25519_dalek::VerifyingKey>) -> verify::VerifyReport {
    verify::verify(bundle, pinned, &replay::replay_bundle)
}
