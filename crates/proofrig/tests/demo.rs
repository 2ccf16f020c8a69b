//! `proofrig demo` as on a fresh machine: every plan of the library, however many,
//! runs on both profiles of the simulated lab, passes on the hardened devices and
//! fails on the weak ones, and each plan's bundle verifies.

use std::path::Path;
use std::process::{Command, Stdio};

use proofrig_plan::Plan;

mod verdicts;

#[test]
fn the_demo_runs_the_whole_library_and_every_bundle_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .current_dir(dir.path())
        .args(["demo", "--out", "results", "--quiet"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(stdout.contains("ran and was verified in"), "the demo says how long the library took: {all}");

    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans");
    let mut files: Vec<_> = std::fs::read_dir(&library)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let table = verdicts::table();
    let header = stdout.lines().find(|l| l.starts_with("clause ")).expect("the verdict matrix");
    for device in ["ru1", "ru2", "core1", "core2"] {
        assert!(header.split_whitespace().any(|c| c == device), "a column per device of both profiles: {header}");
    }
    for file in &files {
        let name = format!("testplans/{}", file.file_name().unwrap().to_string_lossy());
        let line = stdout.lines().find(|l| l.trim_end().ends_with(&name)).unwrap_or_else(|| panic!("no bundle for {name}:\n{all}"));
        assert!(line.starts_with("VERIFIED "), "{line}");
        let bundle = dir.path().join(line.split_whitespace().nth(1).unwrap());
        assert!(bundle.join("report.html").is_file(), "{}", bundle.display());
        for case in Plan::load(file).unwrap().spec.cases {
            let scas = case.scas.as_ref().unwrap_or_else(|| panic!("{}: every case of the library is a SCAS test case", case.id));
            // A case the specification gives no test name is in the matrix by its clause.
            let name = verdicts::key(&scas.clause, &scas.test_name);
            // The clause, then the test name as the specification prints it (4.2.3.5.2's has
            // spaces in it), then the verdicts.
            let row = stdout
                .lines()
                .find_map(|l| after_name(l, &scas.clause, &scas.test_name))
                .unwrap_or_else(|| panic!("{name} is not in the matrix:\n{stdout}"));
            let verdicts: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(verdicts.len(), 4, "{row}");
            // Every case of the library decides both ways: the hardened devices (ru1,
            // core1) comply, the weak ones (ru2, core2) do not, as the verdict table says.
            let expected =
                |column: &str| table.column(column).get(&name).cloned().unwrap_or_else(|| panic!("{name} has no row in the verdict table"));
            let (hardened, weak) = (expected("sim hardened"), expected("sim weak"));
            assert_eq!((hardened.as_str(), weak.as_str()), ("PASS", "FAIL"), "the simulated lab decides every case both ways");
            assert_eq!(verdicts, [&hardened, &weak, &hardened, &weak], "{name} does not decide both ways:\n{stdout}");
        }
    }
}

/// What follows `clause` and `test` at the start of a matrix row, if it is their row.
fn after_name<'a>(line: &'a str, clause: &str, test: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(clause)?.strip_prefix(' ')?.trim_start();
    if test.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(test).filter(|r| r.is_empty() || r.starts_with(' '))
}
