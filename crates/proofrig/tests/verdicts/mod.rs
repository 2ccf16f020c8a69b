//! The verdict a security evaluator would give for every bundled case on every kind
//! of device the test suite runs the library on, as testplans/README.md states it in
//! its verdict table (with the reasons beside it). The tests that run the library on
//! those devices (the simulated lab, real OpenSSH servers, the BusyBox + dropbear
//! device) hold the run to the table, so the table is what the suite produces.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// How the table and a run name a case: its SCAS test name, or its clause where the
/// specification gives the test case no name (TS 33.117 4.2.3.6.3, for one).
pub fn key(clause: &str, test: &str) -> String {
    if test.is_empty() {
        clause.to_string()
    } else {
        test.to_string()
    }
}

/// The table: per column (device kind), [`key`] (SCAS test name) -> verdict.
pub struct Table {
    columns: Vec<String>,
    /// (clause, test name, one verdict per column)
    rows: Vec<(String, String, Vec<String>)>,
}

/// testplans/README.md's verdict table of the library on the simulated lab, OpenSSH
/// and BusyBox.
pub fn table() -> Table {
    table_named("verdict-table")
}

/// The table of testplans/README.md between `<!-- NAME -->` and `<!-- /NAME -->` (the
/// nginx and web host tables have their own columns).
pub fn table_named(name: &str) -> Table {
    let (begin, end) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans/README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(&begin).unwrap_or_else(|| panic!("{} has no `{begin}`", path.display()));
    let end = text.find(&end).unwrap_or_else(|| panic!("{} has no `{end}`", path.display()));
    let cells =
        |line: &str| -> Vec<String> { line.trim().trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_string()).collect() };
    let mut lines = text[start + begin.len()..end].lines().filter(|l| l.trim_start().starts_with('|'));
    let header = cells(lines.next().expect("a header row"));
    assert_eq!(&header[..2], ["clause", "test"], "the table starts with clause and test: {header:?}");
    let columns = header[2..].to_vec();
    let rows = lines
        .filter(|l| !l.contains("---"))
        .map(|l| {
            let c = cells(l);
            assert_eq!(c.len(), header.len(), "every row has a verdict per column: {l}");
            (c[0].clone(), c[1].clone(), c[2..].to_vec())
        })
        .collect();
    Table { columns, rows }
}

impl Table {
    /// [`key`] (the test name) -> expected verdict, in `column`.
    pub fn column(&self, column: &str) -> BTreeMap<String, String> {
        let at = self
            .columns
            .iter()
            .position(|c| c == column)
            .unwrap_or_else(|| panic!("no column `{column}` in the verdict table: {:?}", self.columns));
        self.rows.iter().map(|(clause, test, verdicts)| (key(clause, test), verdicts[at].clone())).collect()
    }

    /// Every case of the table ran on the `column` device with the verdict the table
    /// gives, and no case ran that the table does not list. `observed` is (test name,
    /// verdict, evidence); `context` is printed on a mismatch.
    pub fn assert_column(&self, column: &str, observed: &[(String, String, String)], context: &str) {
        let expected = self.column(column);
        let mut wrong = Vec::new();
        for (test, verdict) in &expected {
            match observed.iter().find(|(t, _, _)| t == test) {
                None => wrong.push(format!("{test}: did not run (the table expects {verdict})")),
                Some((_, got, why)) if got != verdict => wrong.push(format!("{test}: {got}, the table expects {verdict}: {why}")),
                Some(_) => {}
            }
        }
        for (test, got, _) in observed {
            if !expected.contains_key(test) {
                wrong.push(format!("{test} ran ({got}) but the verdict table has no row for it"));
            }
        }
        assert!(
            wrong.is_empty(),
            "on `{column}`, the run disagrees with testplans/README.md's verdict table:\n{}\n\n{context}",
            wrong.join("\n")
        );
    }
}

/// ([`key`]: the test name, verdict, evidence excerpt) of every case of a sealed bundle's results,
/// for `device` (all devices when None).
pub fn observed(bundle: &Path, device: Option<&str>) -> Vec<(String, String, String)> {
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    results["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| device.is_none_or(|d| c["device"] == d))
        .map(|c| {
            (
                key(c["scas"]["clause"].as_str().unwrap_or_default(), c["scas"]["test_name"].as_str().unwrap_or_default()),
                c["verdict"].as_str().unwrap_or_default().to_string(),
                c["evidence_excerpt"].as_str().unwrap_or_default().lines().next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `proofrig run` of `plans` on `rig` with a fresh lab key in `dir`, then `proofrig
/// verify` of its bundle, which must say VERIFIED. Returns the run's exit code, what it
/// printed with its results and `peer_log()` (what the peer logged, for a failing
/// test's message), and the bundle. `PROOFRIG_SHOW_EVIDENCE` prints it all.
pub fn run_and_verify(
    plans: &[std::path::PathBuf],
    rig: &Path,
    dir: &Path,
    peer_log: impl Fn() -> String,
) -> (i32, String, std::path::PathBuf) {
    run_and_verify_with(std::process::Command::new(env!("CARGO_BIN_EXE_proofrig")), plans, rig, dir, peer_log)
}

/// [`run_and_verify`] with `proofrig run` started as `run` (the proofrig binary inside
/// a device's network namespace, say); the bundle is verified outside, as a third
/// party would.
pub fn run_and_verify_with(
    mut run: std::process::Command,
    plans: &[std::path::PathBuf],
    rig: &Path,
    dir: &Path,
    peer_log: impl Fn() -> String,
) -> (i32, String, std::path::PathBuf) {
    use std::process::{Command, Output, Stdio};
    let proofrig = |args: &[String]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(Stdio::null()).output().expect("run proofrig")
    };
    let all =
        |out: &Output| format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (key, public) = (dir.join("lab.key"), dir.join("lab.pub"));
    proofrig_evidence::signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(plans.iter().map(|p| s(p)));
    args.extend(["--rig".into(), s(rig), "--key".into(), s(&key), "--out".into(), s(&dir.join("results")), "--quiet".into()]);
    let out = run.args(&args).stdin(Stdio::null()).output().expect("run proofrig");
    let bundle = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("bundle: ").map(std::path::PathBuf::from));
    let results = bundle.as_ref().and_then(|b| std::fs::read_to_string(b.join("results.json")).ok()).unwrap_or_default();
    let text = format!("{}\nresults.json:\n{results}\nthe peer's log:\n{}", all(&out), peer_log());
    let bundle = bundle.unwrap_or_else(|| panic!("no bundle: {text}"));
    let verified = proofrig(&["verify".into(), s(&bundle), "--key".into(), s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "the bundle verifies, every verdict replayed: {}\n{text}", all(&verified));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("VERIFIED"), "{}", all(&verified));
    if std::env::var_os("PROOFRIG_SHOW_EVIDENCE").is_some() {
        eprintln!("=== {}\n{text}", dir.display());
    }
    (out.status.code().unwrap_or(-1), text, bundle)
}
