//! Running plans on a rig: the executor, the agents it drives and the live script
//! caller. Verdicts are decided by `proofrig_verdict::judge` from each step's output,
//! and everything observed goes to the journal of `proofrig_evidence`, so `verify`
//! can replay the run without this crate. [`job`] is the use case callers drive:
//! create a run's bundle, run it, seal it, with typed errors and nothing printed.

pub mod actions;
pub mod executor;
pub mod job;
pub mod progress;
pub mod script;
pub mod step;
