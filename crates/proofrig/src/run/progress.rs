//! Progress of a run for the person watching it: one line per case and per step.
//!
//! Long runs must show they are alive and what they are doing; a tester watching a
//! case should see each step's verdict and message as it happens, not at the end.

use std::io::Write;
use std::time::Duration;

use crate::evidence::record::{CaseKey, Phase};
use crate::verdict::Verdict;

/// Receives progress events from the executor.
pub trait Progress: Send {
    fn run_started(&mut self, run_id: &str, cases: usize);
    fn case_started(&mut self, number: usize, of: usize, key: &CaseKey, title: &str);
    #[allow(clippy::too_many_arguments)]
    fn step_finished(&mut self, phase: Phase, index: usize, label: &str, verdict: Verdict, message: &str, took: Duration, will_retry: bool);
    fn case_finished(&mut self, key: &CaseKey, verdict: Verdict);
}

/// Prints progress to stderr (stdout is kept for the verdict table).
pub struct Terminal {
    pub quiet: bool,
}

impl Progress for Terminal {
    fn run_started(&mut self, run_id: &str, cases: usize) {
        if !self.quiet {
            eprintln!("run {run_id}: {cases} case(s)");
        }
    }

    fn case_started(&mut self, number: usize, of: usize, key: &CaseKey, title: &str) {
        if !self.quiet {
            eprintln!("[{number}/{of}] {} on {}: {title}", key.case, key.device);
        }
    }

    fn step_finished(&mut self, phase: Phase, index: usize, label: &str, verdict: Verdict, message: &str, took: Duration, will_retry: bool) {
        if self.quiet {
            return;
        }
        let phase = match phase {
            Phase::Steps => "step",
            Phase::Restore => "restore",
        };
        let retry = if will_retry { " (infrastructure fault, retrying)" } else { "" };
        eprintln!("      {phase} {}: {label}: {verdict} in {:.1}s: {message}{retry}", index + 1, took.as_secs_f64());
        let _ = std::io::stderr().flush();
    }

    fn case_finished(&mut self, key: &CaseKey, verdict: Verdict) {
        if !self.quiet {
            eprintln!("      => {} on {}: {verdict}", key.case, key.device);
        }
    }
}

/// Discards progress (tests, benchmarks).
pub struct Silent;

impl Progress for Silent {
    fn run_started(&mut self, _: &str, _: usize) {}
    fn case_started(&mut self, _: usize, _: usize, _: &CaseKey, _: &str) {}
    fn step_finished(&mut self, _: Phase, _: usize, _: &str, _: Verdict, _: &str, _: Duration, _: bool) {}
    fn case_finished(&mut self, _: &CaseKey, _: Verdict) {}
}
