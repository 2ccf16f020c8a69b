//! A case's tally, step by step, and the case verdict it gives.
//!
//! The executor decides a case as it runs it and replay decides it again from the
//! journal; if they counted differently, an honest bundle would not verify. So both
//! feed one [`CaseTally`] each step's final judgement, ask it whether the case is
//! stopped, and take the case's verdict, roll-up and passed checks from it. The rules:
//! a step tried again (INFRA with retries left) counts only by its last attempt; a
//! check counts only if some step reached the device and passed; a main step's verdict
//! may stop the case (its `on_failure`), a restore step's never does; main steps that
//! did not run are NOT_RUN; a skipped case is SKIP, and a case the rig is not ready
//! for is ERROR with every step NOT_RUN.

use proofrig_verdict::judge::Judgement;
use proofrig_verdict::{case_verdict, Rollup, Verdict};

use crate::{Case, OnFailure, Step};

/// One case's steps so far.
#[derive(Debug, Clone)]
pub struct CaseTally {
    verdicts: Vec<Verdict>,
    checks_passed: usize,
    touched_device: bool,
    stopped: bool,
    /// Main steps not yet accounted for: NOT_RUN if the case ends before them.
    steps_left: usize,
}

/// What a finished case comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub verdict: Verdict,
    /// Its steps' verdicts rolled up (main steps not run as NOT_RUN).
    pub rollup: Rollup,
    /// Checks that passed, counted only when some step reached the device and passed.
    pub checks_passed: usize,
}

impl CaseTally {
    /// A case about to run its steps.
    pub fn new(case: &Case) -> Self {
        Self { verdicts: Vec::new(), checks_passed: 0, touched_device: false, stopped: false, steps_left: case.steps.len() }
    }

    /// A skipped case: SKIP, its steps not counted.
    pub fn skipped() -> Self {
        Self { verdicts: vec![Verdict::Skip], checks_passed: 0, touched_device: false, stopped: false, steps_left: 0 }
    }

    /// A case the rig is not ready for: ERROR, then every step NOT_RUN.
    pub fn unready(case: &Case) -> Self {
        let verdicts = std::iter::once(Verdict::Error).chain(std::iter::repeat_n(Verdict::NotRun, case.steps.len())).collect();
        Self { verdicts, checks_passed: 0, touched_device: false, stopped: false, steps_left: 0 }
    }

    /// Whether the attempt `attempt` of `step` that ended `verdict` is tried again:
    /// retries are for the bench's faults only (INFRA), and bounded by the step's.
    pub fn retries(step: &Step, verdict: Verdict, attempt: u32) -> bool {
        verdict == Verdict::Infra && attempt <= step.retries
    }

    /// A main step (`steps:`) ended, its last attempt judged `judged`: counted, and the
    /// case stopped if its `on_failure` says so.
    pub fn main_step(&mut self, step: &Step, judged: &Judgement) {
        self.count(judged);
        self.steps_left = self.steps_left.saturating_sub(1);
        self.stopped |= stops_case(step.on_failure, judged.verdict);
    }

    /// A restore step ended, its last attempt judged `judged`: counted; it never stops
    /// the case.
    pub fn restore_step(&mut self, judged: &Judgement) {
        self.count(judged);
    }

    fn count(&mut self, judged: &Judgement) {
        self.verdicts.push(judged.verdict);
        self.checks_passed += usize::from(judged.check_passed);
        self.touched_device |= judged.touched_device && judged.verdict == Verdict::Pass;
    }

    /// Whether a main step's verdict stopped the case: the main steps after it do not run.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Main steps of the case not run (yet).
    pub fn steps_left(&self) -> usize {
        self.steps_left
    }

    /// Whether no step has been counted.
    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty()
    }

    /// The case's verdict, roll-up and passed checks, the main steps not run counted
    /// NOT_RUN. A case passes only with a passed check, and a check counts only when a
    /// step reached the device and passed (see [`case_verdict`]).
    pub fn outcome(&self) -> CaseOutcome {
        let verdicts = self.verdicts.iter().copied().chain(std::iter::repeat_n(Verdict::NotRun, self.steps_left));
        let rollup = Rollup::of(verdicts.clone());
        let checks_passed = if self.touched_device { self.checks_passed } else { 0 };
        let verdict = case_verdict(&verdicts.collect::<Vec<_>>(), checks_passed);
        CaseOutcome { verdict, rollup, checks_passed }
    }
}

/// Whether a step's verdict stops the rest of the case's steps.
fn stops_case(on_failure: OnFailure, verdict: Verdict) -> bool {
    match on_failure {
        OnFailure::Continue => false,
        OnFailure::Stop => verdict != Verdict::Pass,
        OnFailure::Default => matches!(verdict, Verdict::Error | Verdict::Infra | Verdict::Aborted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    fn case(steps: &str) -> Case {
        let text = format!("plan: p\ntitle: P\ncases:\n  - id: C\n    title: C\n    scas: {{ spec: TS 33.117, clause: \"4.2\", test_name: C, requirement: r }}\n    purpose: p\n    expected: e\n    evidence: j\n    steps:\n{steps}");
        crate::Plan::parse("p.yaml", &text).expect("a valid plan").spec.cases.remove(0)
    }

    fn judged(verdict: Verdict, check_passed: bool, touched_device: bool) -> Judgement {
        Judgement { verdict, message: String::new(), check_passed, touched_device }
    }

    #[test]
    fn a_check_counts_only_once_a_step_reached_the_device_and_passed() {
        let case = case("      - wait: { ms: 1 }\n      - assert: { value: 1, equals: 1 }\n");
        let mut tally = CaseTally::new(&case);
        tally.main_step(&case.steps[1], &judged(Pass, true, false));
        assert_eq!(tally.outcome(), CaseOutcome { verdict: Inconclusive, rollup: Rollup::of([Pass, NotRun]), checks_passed: 0 });
        // A FAIL touches the device, but only a PASS that touched it makes checks count.
        tally.main_step(&case.steps[0], &judged(Fail, false, true));
        assert_eq!(tally.outcome().checks_passed, 0);
        tally.restore_step(&judged(Pass, false, true));
        assert_eq!(tally.outcome(), CaseOutcome { verdict: Fail, rollup: Rollup::of([Pass, Fail, Pass]), checks_passed: 1 });
    }

    #[test]
    fn what_stops_a_case_and_what_is_then_not_run() {
        let case = case("      - wait: { ms: 1 }\n      - wait: { ms: 1 }\n        on_failure: stop\n      - wait: { ms: 1 }\n        on_failure: continue\n      - wait: { ms: 1 }\n");
        let stops = |index: usize, verdict: Verdict| {
            let mut tally = CaseTally::new(&case);
            tally.main_step(&case.steps[index], &judged(verdict, false, false));
            tally.stopped()
        };
        assert!(!stops(0, Fail), "a finding does not stop the case: every finding is collected");
        assert!(stops(0, Error) && stops(0, Infra) && stops(0, Aborted));
        assert!(stops(1, Fail) && stops(1, Inconclusive) && !stops(1, Pass));
        assert!(!stops(2, Error));
        let mut tally = CaseTally::new(&case);
        tally.main_step(&case.steps[0], &judged(Error, false, true));
        tally.restore_step(&judged(Error, false, true));
        assert_eq!(tally.steps_left(), 3);
        assert_eq!(tally.outcome().rollup, Rollup::of([Error, Error, NotRun, NotRun, NotRun]));
        assert_eq!(tally.outcome().verdict, Error);
    }

    #[test]
    fn skipped_unready_and_retried() {
        let case = case("      - wait: { ms: 1 }\n        retries: 1\n      - wait: { ms: 1 }\n");
        assert_eq!(CaseTally::skipped().outcome(), CaseOutcome { verdict: Skip, rollup: Rollup::of([Skip]), checks_passed: 0 });
        let unready = CaseTally::unready(&case);
        assert!(!unready.is_empty() && unready.steps_left() == 0);
        assert_eq!(unready.outcome(), CaseOutcome { verdict: Error, rollup: Rollup::of([Error, NotRun, NotRun]), checks_passed: 0 });
        assert!(CaseTally::retries(&case.steps[0], Infra, 1));
        assert!(!CaseTally::retries(&case.steps[0], Infra, 2));
        assert!(!CaseTally::retries(&case.steps[0], Error, 1), "a test's error is not the bench's: never retried");
        assert!(!CaseTally::retries(&case.steps[1], Infra, 1));
        assert!(CaseTally::new(&case).is_empty());
        assert_eq!(CaseTally::new(&case).outcome().verdict, NotRun);
    }
}
