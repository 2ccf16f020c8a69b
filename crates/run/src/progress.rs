//! Progress of a run for the person watching it: an event per case and per step.
//!
//! Long runs must show they are alive and what they are doing; a tester watching a
//! case should see each step's verdict and message as it happens, not at the end.
//!
//! A run's devices may go side by side: then events of several cases arrive
//! interleaved (one at a time: the executor serialises the calls), and each names its
//! case and device, so a line printed for it can say which it is.

use std::time::Duration;

use proofrig_evidence::record::{CaseKey, Phase};
use proofrig_verdict::Verdict;

/// A step (or one attempt of it) that just finished.
pub struct StepDone<'a> {
    /// The case (and device) the step belongs to.
    pub key: &'a CaseKey,
    pub phase: Phase,
    /// Its index among the case's steps (or restore steps), from 0.
    pub index: usize,
    pub label: &'a str,
    pub verdict: Verdict,
    pub message: &'a str,
    pub took: Duration,
    /// An infrastructure fault the step's `retries` will retry.
    pub will_retry: bool,
}

/// Receives progress events from the executor. The command line prints them; a lab
/// host streams them to the server.
pub trait Progress: Send {
    fn run_started(&mut self, run_id: &str, cases: usize);
    fn case_started(&mut self, number: usize, of: usize, key: &CaseKey, title: &str);
    fn step_finished(&mut self, step: &StepDone<'_>);
    fn case_finished(&mut self, key: &CaseKey, verdict: Verdict);
}

/// Discards progress (tests, benchmarks).
pub struct Silent;

impl Progress for Silent {
    fn run_started(&mut self, _: &str, _: usize) {}
    fn case_started(&mut self, _: usize, _: usize, _: &CaseKey, _: &str) {}
    fn step_finished(&mut self, _: &StepDone<'_>) {}
    fn case_finished(&mut self, _: &CaseKey, _: Verdict) {}
}
