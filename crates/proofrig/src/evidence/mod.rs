//! Evidence: the hash-chained journal of a run, the bundle that seals it, and its verification.

pub mod attestation;
pub mod bundle;
pub mod checkpoint;
pub mod journal;
pub mod record;
pub mod signing;
pub mod stopped;
pub mod verify;
