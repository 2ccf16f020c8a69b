//! Progress of a run on the terminal: one line per case and per step on stderr,
//! as it happens (stdout is kept for the verdict table).
//!
//! The devices of a run go side by side, so lines of several cases interleave: each
//! line is written whole (one `eprintln!`, which holds stderr's lock) and names its
//! device and case.

use std::io::Write;

use proofrig_evidence::record::{CaseKey, Phase};
use proofrig_run::progress::{Progress, StepDone};
use proofrig_verdict::Verdict;

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

    fn step_finished(&mut self, step: &StepDone<'_>) {
        if self.quiet {
            return;
        }
        let phase = match step.phase {
            Phase::Steps => "step",
            Phase::Restore => "restore",
        };
        let retry = if step.will_retry { " (infrastructure fault, retrying)" } else { "" };
        let StepDone { key, index, label, verdict, message, took, .. } = step;
        eprintln!(
            "      {} {} {phase} {}: {label}: {verdict} in {:.1}s: {message}{retry}",
            key.device,
            key.case,
            index + 1,
            took.as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    }

    fn case_finished(&mut self, key: &CaseKey, verdict: Verdict) {
        if !self.quiet {
            eprintln!("      => {} on {}: {verdict}", key.case, key.device);
        }
    }
}
