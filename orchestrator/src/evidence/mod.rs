//! Evidence: the hash-chained journal of a run and the bundle that seals it.

pub mod attestation;
pub mod bundle;
pub mod journal;
pub mod record;
pub mod signing;
