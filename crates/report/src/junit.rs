//! JUnit XML of a run, so CI systems show SCAS cases next to their other tests.
//!
//! JUnit has four outcomes; proofrig has eight verdicts. A device shown
//! non-compliant is a `failure`; anything that kept a case from deciding (our test,
//! the bench, an abort, missing evidence) is an `error`, so CI never shows a broken
//! bench as a pass; deliberately skipped or unreached cases are `skipped`, with why.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use proofrig_evidence::record::{CaseResult, RunResult};
use proofrig_verdict::Verdict;

/// The whole run as a JUnit report: one test suite per plan, one test case per case and device.
pub fn junit_xml(result: &RunResult) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("proofrig run {}", result.run_id));
    let mut suites: Vec<TestSuite> = Vec::new();
    for case in &result.cases {
        let position = match suites.iter().position(|s| s.name.as_str() == case.key.plan) {
            Some(position) => position,
            None => {
                let mut suite = TestSuite::new(case.key.plan.as_str());
                suite.add_property(("run_id", result.run_id.as_str()));
                suite.add_property(("rig", result.rig_name.as_str()));
                suites.push(suite);
                suites.len() - 1
            }
        };
        suites[position].add_test_case(test_case(case));
    }
    for suite in &mut suites {
        let total: u128 = suite.test_cases.iter().filter_map(|c| c.time).map(|t| t.as_millis()).sum();
        suite.set_time(Duration::from_millis(total.min(u64::MAX as u128) as u64));
    }
    report.add_test_suites(suites);
    report.to_string()
}

fn test_case(case: &CaseResult) -> TestCase {
    let message = decisive_message(case);
    let status = match case.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Fail => non_success(NonSuccessKind::Failure, case.verdict, &message),
        Verdict::Error | Verdict::Infra | Verdict::Aborted | Verdict::Inconclusive => {
            non_success(NonSuccessKind::Error, case.verdict, &message)
        }
        Verdict::Skip | Verdict::NotRun => {
            let mut status = TestCaseStatus::skipped();
            let reason = case.skip_reason.clone().unwrap_or_else(|| match case.verdict {
                Verdict::NotRun => "not run: the run stopped before reaching this case".to_string(),
                _ => "skipped".to_string(),
            });
            status.set_message(format!("{}: {reason}", case.verdict)).set_type(case.verdict.as_str());
            status
        }
    };
    let mut test = TestCase::new(format!("{} [{}]", case.key.case, case.key.device), status);
    test.set_classname(format!("{} {}", case.scas_shown().spec, case.scas_shown().clause));
    test.set_time(Duration::from_millis(case.duration_ms));
    test.add_property(("test_name", case.scas_shown().test_name.as_str()));
    if !case.evidence_excerpt.is_empty() {
        test.set_system_out(case.evidence_excerpt.as_str());
    }
    test
}

fn non_success(kind: NonSuccessKind, verdict: Verdict, message: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    status.set_message(format!("{verdict}: {message}")).set_type(verdict.as_str());
    status
}

/// The message of the first step that carries the case's verdict: that is the
/// sentence a CI user needs to see first.
fn decisive_message(case: &CaseResult) -> String {
    case.steps
        .iter()
        .find(|s| s.verdict == case.verdict)
        .or_else(|| case.steps.iter().min_by_key(|s| s.verdict))
        .map(|s| s.message.clone())
        .unwrap_or_else(|| case.title.clone())
}
