//! The `proofrig` command line: one module per command under [`cli`], over the
//! library crates (plan, run, evidence, report) and the agents.

pub mod cli;
mod progress;
mod session;
mod table;
mod terminal;
