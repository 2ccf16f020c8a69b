//! Evidence: the hash-chained journal of a run and the signatures that seal it.

pub mod journal;
pub mod record;
pub mod signing;
