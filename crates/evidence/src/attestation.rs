//! The two in-toto statements that seal a bundle, and how they are derived.
//!
//! A regulator's tooling understands the standard test-result predicate; proofrig's
//! own verifier needs more (the journal head, the SCAS clause of every case) to
//! replay the verdicts. So a bundle carries both, over the same subjects. The
//! test-result predicate is derived from proofrig's predicate by one function, used
//! both when sealing and when verifying, so the two can be checked against each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{FileRef, RunResult};
use proofrig_verdict::Verdict;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto test-result predicate, version 0.1.
pub const TEST_RESULT_PREDICATE: &str = "https://in-toto.io/attestation/test-result/v0.1";
/// proofrig's own predicate: everything `proofrig verify` needs to replay a run.
pub const SCAS_RUN_PREDICATE: &str = "urn:proofrig:predicate:scas-run:v1";

/// An in-toto Statement v1 with a predicate of type `P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement<P> {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: P,
}

/// A file of the bundle, by its path inside the bundle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    /// Algorithm name to hex digest; proofrig writes and checks `sha256`.
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn sha256(name: &str, hex: &str) -> Self {
        Subject { name: name.to_string(), digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]) }
    }

    pub fn sha256_hex(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }
}

/// The in-toto ResourceDescriptor fields proofrig uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// The in-toto test-result predicate, v0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResultPredicate {
    /// `PASSED`, `WARNED` or `FAILED`.
    pub result: String,
    /// The plans and the rig the run used.
    pub configuration: Vec<ResourceDescriptor>,
    /// A link to the run. A bundle is checked offline and has no such place, so
    /// proofrig leaves it out (the field is optional in the specification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub passed_tests: Vec<String>,
    #[serde(default)]
    pub warned_tests: Vec<String>,
    #[serde(default)]
    pub failed_tests: Vec<String>,
}

/// The rig a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RigRef {
    /// `rig:` of the rig file.
    pub name: String,
    /// Path inside the bundle.
    pub path: String,
    pub sha256: String,
}

/// Where the journal ended when the run was sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalHead {
    pub records: u64,
    /// Hex SHA-256 of the last record's line.
    pub head_sha256: String,
}

/// One case on one device, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseOutcome {
    pub plan: String,
    pub case: String,
    pub device: String,
    pub verdict: Verdict,
    pub spec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub clause: String,
    pub test_name: String,
    pub requirement: String,
}

impl CaseOutcome {
    /// The name the test-result predicate uses: `<plan>/<case id>@<device>`.
    pub fn test_name(&self) -> String {
        format!("{}/{}@{}", self.plan, self.case, self.device)
    }
}

/// proofrig's predicate (`urn:proofrig:predicate:scas-run:v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScasRunPredicate {
    pub run_id: String,
    pub proofrig_version: String,
    pub rig: RigRef,
    pub plans: Vec<FileRef>,
    pub journal: JournalHead,
    pub verdict: Verdict,
    pub aborted: bool,
    /// The run stopped without finishing (killed, crashed) and `proofrig seal` sealed
    /// it afterwards: the journal ends with its RunSealedIncomplete record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// How many cases ended with each verdict.
    pub counts: BTreeMap<Verdict, usize>,
    pub cases: Vec<CaseOutcome>,
}

impl ScasRunPredicate {
    pub fn from_run(result: &RunResult, rig: RigRef, plans: Vec<FileRef>, journal: JournalHead) -> Self {
        ScasRunPredicate {
            run_id: result.run_id.clone(),
            proofrig_version: result.proofrig_version.clone(),
            rig,
            plans,
            journal,
            verdict: result.verdict,
            aborted: result.aborted,
            incomplete: false,
            counts: result.rollup.counts.clone(),
            cases: result
                .cases
                .iter()
                .map(|c| {
                    // A case that is no SCAS test case (a health check) has no clause;
                    // its test name is its id.
                    let scas = c.scas.as_ref();
                    let text = |pick: fn(&proofrig_plan::ScasRef) -> &String| scas.map(pick).cloned().unwrap_or_default();
                    CaseOutcome {
                        plan: c.key.plan.clone(),
                        case: c.key.case.clone(),
                        device: c.key.device.clone(),
                        verdict: c.verdict,
                        spec: text(|s| &s.spec),
                        version: scas.and_then(|s| s.version.clone()),
                        clause: text(|s| &s.clause),
                        test_name: scas.map_or_else(|| c.key.case.clone(), |s| s.test_name.clone()),
                        requirement: text(|s| &s.requirement),
                    }
                })
                .collect(),
        }
    }

    /// The standard test-result predicate saying the same thing.
    pub fn test_result(&self) -> TestResultPredicate {
        let mut predicate = TestResultPredicate {
            result: String::new(),
            configuration: self
                .plans
                .iter()
                .map(|p| (p.path.as_str(), p.sha256.as_str()))
                .chain([(self.rig.path.as_str(), self.rig.sha256.as_str())])
                .map(|(name, sha256)| ResourceDescriptor {
                    name: name.to_string(),
                    digest: BTreeMap::from([("sha256".to_string(), sha256.to_string())]),
                })
                .collect(),
            url: None,
            passed_tests: Vec::new(),
            warned_tests: Vec::new(),
            failed_tests: Vec::new(),
        };
        for case in &self.cases {
            let list = match test_result_class(case.verdict) {
                TestResultClass::Passed => &mut predicate.passed_tests,
                TestResultClass::Warned => &mut predicate.warned_tests,
                TestResultClass::Failed => &mut predicate.failed_tests,
            };
            list.push(case.test_name());
        }
        predicate.result = if !predicate.failed_tests.is_empty() {
            "FAILED"
        } else if !predicate.warned_tests.is_empty() {
            "WARNED"
        } else {
            "PASSED"
        }
        .to_string();
        predicate
    }
}

/// The three outcomes of the test-result predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestResultClass {
    Passed,
    Warned,
    Failed,
}

/// Verdicts that say nothing against the device but prove nothing either are
/// "warned"; anything that stopped a case from proving compliance is "failed", so a
/// policy that accepts an empty `failedTests` never accepts a broken bench.
pub fn test_result_class(verdict: Verdict) -> TestResultClass {
    match verdict {
        Verdict::Pass => TestResultClass::Passed,
        Verdict::Skip | Verdict::NotRun | Verdict::Inconclusive => TestResultClass::Warned,
        Verdict::Fail | Verdict::Error | Verdict::Infra | Verdict::Aborted => TestResultClass::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(case: &str, device: &str, verdict: Verdict) -> CaseOutcome {
        CaseOutcome {
            plan: "ssh".into(),
            case: case.into(),
            device: device.into(),
            verdict,
            spec: "TS 33.117".into(),
            version: None,
            clause: "4.2.3.4.1".into(),
            test_name: "TC_X".into(),
            requirement: "r".into(),
        }
    }

    fn predicate(cases: Vec<CaseOutcome>) -> ScasRunPredicate {
        ScasRunPredicate {
            run_id: "r1".into(),
            proofrig_version: "0.1.0".into(),
            rig: RigRef { name: "bench".into(), path: "inputs/rig.yaml".into(), sha256: "aa".into() },
            plans: vec![FileRef { path: "inputs/plans/ssh.yaml".into(), sha256: "bb".into() }],
            journal: JournalHead { records: 3, head_sha256: "cc".into() },
            verdict: Verdict::Pass,
            aborted: false,
            incomplete: false,
            counts: BTreeMap::new(),
            cases,
        }
    }

    #[test]
    fn verdicts_map_onto_passed_warned_and_failed() {
        let p = predicate(vec![
            outcome("a", "ru1", Verdict::Pass),
            outcome("b", "ru1", Verdict::Skip),
            outcome("c", "ru1", Verdict::NotRun),
            outcome("d", "ru1", Verdict::Inconclusive),
        ])
        .test_result();
        assert_eq!(p.result, "WARNED");
        assert_eq!(p.passed_tests, ["ssh/a@ru1"]);
        assert_eq!(p.warned_tests, ["ssh/b@ru1", "ssh/c@ru1", "ssh/d@ru1"]);
        for bad in [Verdict::Fail, Verdict::Error, Verdict::Infra, Verdict::Aborted] {
            let p = predicate(vec![outcome("a", "ru1", Verdict::Pass), outcome("e", "core1", bad)]).test_result();
            assert_eq!(p.result, "FAILED", "{bad}");
            assert_eq!(p.failed_tests, ["ssh/e@core1"]);
        }
        assert_eq!(predicate(vec![outcome("a", "ru1", Verdict::Pass)]).test_result().result, "PASSED");
    }

    #[test]
    fn the_test_result_predicate_has_the_specified_field_names() {
        let p = predicate(vec![outcome("a", "ru1", Verdict::Pass)]).test_result();
        let json = serde_json::to_value(&p).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["configuration", "failedTests", "passedTests", "result", "warnedTests"]);
        assert_eq!(json["configuration"][1]["name"], "inputs/rig.yaml");
        assert_eq!(json["configuration"][1]["digest"]["sha256"], "aa");
    }
}
