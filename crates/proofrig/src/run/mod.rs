//! Running plans on a rig: the executor, the agents it drives, the pure verdict
//! function, and the replay `verify` uses to recompute verdicts.

pub mod actions;
pub mod console_replay;
pub mod executor;
pub mod judge;
pub mod progress;
pub mod rederive;
pub mod replay;
pub mod script;
