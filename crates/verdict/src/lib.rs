//! Verdicts and how they roll up.
//!
//! A lab's verdict vocabulary has to keep "the device is non-compliant" (FAIL) apart
//! from "our test broke" (ERROR) and "the bench broke" (INFRA), or a flaky PDU reads
//! as a security finding. Roll-up takes the most severe verdict and keeps the counts,
//! so nothing hides anything: one FAIL among a hundred PASSes is still a FAIL, and
//! the hundred PASSes are still visible.

pub mod judge;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Outcome of a step, a case or a run. Declared from most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The device was shown non-compliant.
    Fail,
    /// The test logic failed; the device's state is unknown.
    Error,
    /// The rig, an agent or a PDU failed; the test could not run.
    Infra,
    /// Stopped by a person or a signal.
    Aborted,
    /// The evidence does not decide either way.
    Inconclusive,
    /// The device was shown compliant, with positive evidence.
    Pass,
    /// Deliberately not run (a reason is required).
    Skip,
    /// Not reached, e.g. after a break condition.
    NotRun,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Fail,
        Verdict::Error,
        Verdict::Infra,
        Verdict::Aborted,
        Verdict::Inconclusive,
        Verdict::Pass,
        Verdict::Skip,
        Verdict::NotRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
            Verdict::Infra => "INFRA",
            Verdict::Aborted => "ABORTED",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Pass => "PASS",
            Verdict::Skip => "SKIP",
            Verdict::NotRun => "NOT_RUN",
        }
    }

    /// The more severe of two verdicts.
    pub fn worst(self, other: Verdict) -> Verdict {
        self.min(other)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rolled-up verdict with the counts it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    pub verdict: Verdict,
    pub counts: BTreeMap<Verdict, usize>,
}

impl Rollup {
    /// Roll up any number of verdicts; nothing at all is NOT_RUN.
    pub fn of(verdicts: impl IntoIterator<Item = Verdict>) -> Self {
        let mut counts = BTreeMap::new();
        let mut verdict: Option<Verdict> = None;
        for v in verdicts {
            *counts.entry(v).or_insert(0) += 1;
            verdict = Some(verdict.map_or(v, |w| w.worst(v)));
        }
        Rollup { verdict: verdict.unwrap_or(Verdict::NotRun), counts }
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.counts.get(&verdict).copied().unwrap_or(0)
    }

    /// `3 PASS, 1 FAIL` in severity order, for tables and summaries.
    pub fn summary(&self) -> String {
        Verdict::ALL.iter().filter(|v| self.count(**v) > 0).map(|v| format!("{} {}", self.count(*v), v)).collect::<Vec<_>>().join(", ")
    }
}

/// A case's verdict from its steps' verdicts: the worst step, except that a case
/// passes only if at least one check actually ran against the device and passed.
/// A case whose steps all "passed" without any check reaching the device has proved
/// nothing and is INCONCLUSIVE.
pub fn case_verdict(steps: &[Verdict], checks_passed: usize) -> Verdict {
    let rolled = Rollup::of(steps.iter().copied()).verdict;
    match rolled {
        Verdict::Pass if checks_passed == 0 => Verdict::Inconclusive,
        Verdict::Skip | Verdict::NotRun if steps.is_empty() => Verdict::NotRun,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    #[test]
    fn severity_order_is_the_documented_one() {
        let mut all = vec![NotRun, Pass, Skip, Inconclusive, Infra, Aborted, Error, Fail];
        all.sort();
        assert_eq!(all, Verdict::ALL.to_vec());
        assert_eq!(Pass.worst(Skip), Pass);
        assert_eq!(Infra.worst(Error), Error);
    }

    #[test]
    fn roll_up_keeps_the_worst_and_every_count() {
        let r = Rollup::of([Pass, Pass, Fail, Skip, Infra]);
        assert_eq!(r.verdict, Fail);
        assert_eq!(r.count(Pass), 2);
        assert_eq!(r.summary(), "1 FAIL, 1 INFRA, 2 PASS, 1 SKIP");
        assert_eq!(Rollup::of([]).verdict, NotRun);
    }

    #[test]
    fn a_case_without_a_passed_check_cannot_pass() {
        assert_eq!(case_verdict(&[Pass, Pass], 0), Inconclusive);
        assert_eq!(case_verdict(&[Pass, Pass], 1), Pass);
        assert_eq!(case_verdict(&[Pass, Infra, NotRun], 1), Infra);
        assert_eq!(case_verdict(&[], 0), NotRun);
    }
}
