//! proofrig: plans, runs, evidence and the command line, over the agents crate.

pub mod cli;
pub mod evidence;
pub mod verdict;
pub mod plan;
pub mod report;
mod session;
mod table;
mod terminal;
pub mod run;
