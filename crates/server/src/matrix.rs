//! The compliance matrix: for one product (vendor and model) at one firmware version,
//! every TS 33.117 test case of the library, the latest verdict on each device, and
//! what is missing.
//!
//! A pure function ([`build`]) of the library's cases and the verified runs' results,
//! so it is tested like `judge`; the dashboard feeds it the results of verified
//! bundles only (a flagged bundle is never a result) and renders it as a page, a CSV
//! file and a standalone HTML page. "Latest" is by the run's end time; a case never
//! run on a device of the product, or whose latest verdict is INCONCLUSIVE or ERROR
//! (or INFRA, ABORTED), is listed as missing, with why.

use std::collections::{BTreeMap, BTreeSet};

use proofrig_evidence::record::RunResult;
use proofrig_verdict::Verdict;

/// A product: vendor and model as the rig files declare them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Product {
    pub vendor: String,
    pub model: String,
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.vendor, self.model)
    }
}

/// A test case of the library, by its SCAS reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryCase {
    pub clause: String,
    pub test_name: String,
    pub title: String,
}

/// A verified run's results, and where to see its evidence.
pub struct RunInput<'a> {
    pub run_id: &'a str,
    pub result: &'a RunResult,
}

/// One device's latest verdict for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub verdict: Verdict,
    pub run_id: String,
    pub ended: String,
}

/// One row: a library case, its latest verdict per device, and why it is missing, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub case: LibraryCase,
    pub cells: BTreeMap<String, Cell>,
    pub missing: Option<String>,
}

/// The matrix of one product at one firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub product: Product,
    pub firmware: String,
    /// The devices of that product and firmware seen in the runs.
    pub devices: Vec<String>,
    pub rows: Vec<Row>,
}

fn unset(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(undeclared)".into())
}

/// Every (product, firmware) the runs tested, in order.
pub fn products(runs: &[RunInput<'_>]) -> BTreeSet<(Product, String)> {
    runs.iter()
        .flat_map(|r| &r.result.devices)
        .map(|d| (Product { vendor: unset(&d.declared.vendor), model: unset(&d.declared.model) }, unset(&d.declared.firmware)))
        .collect()
}

/// The matrix of `product` at `firmware` (see the module doc).
pub fn build(library: &[LibraryCase], runs: &[RunInput<'_>], product: &Product, firmware: &str) -> Matrix {
    // The devices of this product and firmware, per run (a device name means another
    // device in another rig; it is named with its rig).
    let mut devices = BTreeSet::new();
    let mut latest: BTreeMap<(String, String, String), Cell> = BTreeMap::new();
    for run in runs {
        let ours: BTreeMap<&str, String> = run
            .result
            .devices
            .iter()
            .filter(|d| {
                unset(&d.declared.vendor) == product.vendor
                    && unset(&d.declared.model) == product.model
                    && unset(&d.declared.firmware) == firmware
            })
            .map(|d| (d.device.as_str(), format!("{}/{}", run.result.rig_name, d.device)))
            .collect();
        for case in &run.result.cases {
            let (Some(scas), Some(device)) = (&case.scas, ours.get(case.key.device.as_str())) else { continue };
            devices.insert(device.clone());
            // By clause and test name: the specification leaves some test names empty.
            let key = (scas.clause.clone(), scas.test_name.clone(), device.clone());
            let cell = Cell { verdict: case.verdict, run_id: run.run_id.to_string(), ended: run.result.ended.clone() };
            match latest.get(&key) {
                Some(held) if held.ended >= cell.ended => {}
                _ => {
                    latest.insert(key, cell);
                }
            }
        }
    }
    let rows = library
        .iter()
        .map(|case| {
            let cells: BTreeMap<String, Cell> = devices
                .iter()
                .filter_map(|d| latest.get(&(case.clause.clone(), case.test_name.clone(), d.clone())).map(|c| (d.clone(), c.clone())))
                .collect();
            let undecided: Vec<String> = cells
                .iter()
                .filter(|(_, c)| matches!(c.verdict, Verdict::Inconclusive | Verdict::Error | Verdict::Infra | Verdict::Aborted))
                .map(|(d, c)| format!("{d}: {}", c.verdict))
                .collect();
            let missing = if cells.is_empty() {
                Some("never run".to_string())
            } else if !undecided.is_empty() {
                Some(undecided.join(", "))
            } else {
                None
            };
            Row { case: case.clone(), cells, missing }
        })
        .collect();
    Matrix { product: product.clone(), firmware: firmware.to_string(), devices: devices.into_iter().collect(), rows }
}

/// The matrix as CSV (RFC 4180): clause, test, title, one column per device, missing.
pub fn csv(matrix: &Matrix) -> String {
    let field = |text: &str| match text.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_string(),
    };
    let mut out = String::new();
    let mut header = vec!["clause".to_string(), "test_name".to_string(), "title".to_string()];
    header.extend(matrix.devices.iter().cloned());
    header.push("missing".into());
    out.push_str(&header.iter().map(|h| field(h)).collect::<Vec<_>>().join(","));
    out.push_str("\r\n");
    for row in &matrix.rows {
        let mut line = vec![field(&row.case.clause), field(&row.case.test_name), field(&row.case.title)];
        for d in &matrix.devices {
            line.push(row.cells.get(d).map(|c| c.verdict.as_str().to_string()).unwrap_or_default());
        }
        line.push(field(row.missing.as_deref().unwrap_or("")));
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_evidence::record::{CaseKey, CaseResult, DeviceIdentity};
    use proofrig_model::rig::Identity;
    use proofrig_plan::ScasRef;

    fn device(name: &str, firmware: &str) -> DeviceIdentity {
        DeviceIdentity {
            device: name.into(),
            role: "radio-unit".into(),
            declared: Identity {
                vendor: Some("Acme".into()),
                model: Some("RU-9".into()),
                firmware: Some(firmware.into()),
                ..Default::default()
            },
            reported: None,
        }
    }

    fn case(device: &str, test: &str, verdict: Verdict) -> CaseResult {
        CaseResult {
            key: CaseKey { plan: "p".into(), case: test.into(), device: device.into() },
            title: test.into(),
            scas: Some(ScasRef {
                spec: "TS 33.117".into(),
                version: None,
                clause: "4.2.3".into(),
                test_name: test.into(),
                requirement: "r".into(),
                requirement_clause: None,
                threats: vec![],
            }),
            purpose: String::new(),
            expected: String::new(),
            verdict,
            skip_reason: None,
            steps: vec![],
            evidence_excerpt: String::new(),
            duration_ms: 0,
        }
    }

    fn result(ended: &str, devices: Vec<DeviceIdentity>, cases: Vec<CaseResult>) -> RunResult {
        let mut r: RunResult = serde_json::from_value(serde_json::json!({
            "run_id": "r", "proofrig_version": "0", "operator": "o", "host": "h", "rig_name": "bench-1",
            "started": ended, "ended": ended, "aborted": false, "verdict": "PASS",
            "rollup": { "verdict": "PASS", "counts": {} }, "cases": [], "devices": []
        }))
        .unwrap();
        r.devices = devices;
        r.cases = cases;
        r
    }

    fn library() -> Vec<LibraryCase> {
        ["TC_A", "TC_B", "TC_C"]
            .iter()
            .map(|t| LibraryCase { clause: "4.2.3".into(), test_name: t.to_string(), title: t.to_string() })
            .collect()
    }

    #[test]
    fn the_latest_verdict_per_device_wins_and_what_is_missing_says_why() {
        let old = result(
            "2026-12-01T10:00:00Z",
            vec![device("ru1", "1.0")],
            vec![case("ru1", "TC_A", Verdict::Fail), case("ru1", "TC_B", Verdict::Pass)],
        );
        let new = result(
            "2026-12-02T10:00:00Z",
            vec![device("ru1", "1.0")],
            vec![case("ru1", "TC_A", Verdict::Pass), case("ru1", "TC_B", Verdict::Error)],
        );
        let other_fw = result("2026-12-03T10:00:00Z", vec![device("ru1", "2.0")], vec![case("ru1", "TC_C", Verdict::Pass)]);
        let runs = [
            RunInput { run_id: "new", result: &new },
            RunInput { run_id: "old", result: &old },
            RunInput { run_id: "fw2", result: &other_fw },
        ];
        let product = Product { vendor: "Acme".into(), model: "RU-9".into() };
        assert_eq!(products(&runs).len(), 2, "two firmware versions of one product");
        let m = build(&library(), &runs, &product, "1.0");
        assert_eq!(m.devices, ["bench-1/ru1"]);
        let a = &m.rows[0];
        assert_eq!((a.cells["bench-1/ru1"].verdict, a.cells["bench-1/ru1"].run_id.as_str(), &a.missing), (Verdict::Pass, "new", &None));
        assert_eq!(m.rows[1].missing.as_deref(), Some("bench-1/ru1: ERROR"), "the latest is ERROR, the older PASS does not count");
        assert_eq!(m.rows[2].missing.as_deref(), Some("never run"), "TC_C ran on firmware 2.0 only");
        let text = csv(&m);
        assert!(text.starts_with("clause,test_name,title,bench-1/ru1,missing\r\n"), "{text}");
        assert!(text.contains("4.2.3,TC_B,TC_B,ERROR,bench-1/ru1: ERROR\r\n"), "{text}");
        assert!(text.contains("4.2.3,TC_C,TC_C,,never run\r\n"), "{text}");
    }
}
