//! TS 33.117 4.2.3.5.1 (session-logout.yaml) decided both ways on a real device: the
//! hardened BusyBox + dropbear device, whose console asks getty and login who logs in
//! (PASS), and the same device with the console a careless image ships, init
//! respawning a root shell there with no login (`console_without_login`), where `exit`
//! only brings the next shell (FAIL, naming the shell prompt seen after the exits).
//! `proofrig run` inside the device's network namespace, then `proofrig verify` of the
//! sealed bundle, which derives the console login's outcome again from the recorded
//! console bytes. Held to testplans/README.md's BusyBox console table. Another plan
//! that logs in on that console (4.2.3.4.1.1) still gets an ERROR: only a plan that
//! asks (`still_logged_in: fail`) takes the shell that will not log out as its finding.

mod verdicts;

use std::path::{Path, PathBuf};

use proofrig_testpeers::busybox::{BusyboxDevice, Profile};

const TEST: &str = "TC_PROTECTING_SESSION_LOGOUT";

/// Runs the library's `plan` (or a plan at a path) on `device`, inside its network
/// namespace, and verifies the bundle: (exit code, what the run said with its results,
/// bundle).
fn run_and_verify(device: &BusyboxDevice, dir: &Path, plan: &str) -> (i32, String, PathBuf) {
    let rig = device.write_rig(dir);
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans").join(plan);
    verdicts::run_and_verify_with(device.command(env!("CARGO_BIN_EXE_proofrig")), &[plan], &rig, dir, String::new)
}

/// The results of the case `test`.
fn case_of(bundle: &Path, test: &str) -> serde_json::Value {
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    results["cases"].as_array().into_iter().flatten().find(|c| c["scas"]["test_name"] == test).cloned().expect("the case ran")
}

fn messages(case: &serde_json::Value) -> String {
    case["steps"].as_array().into_iter().flatten().filter_map(|s| s["message"].as_str()).collect::<Vec<_>>().join("\n")
}

fn assert_table(column: &str, bundle: &Path, text: &str) {
    verdicts::table_named("busybox-console-verdict-table").assert_column(column, &verdicts::observed(bundle, None), text);
}

#[test]
fn the_hardened_busybox_console_logs_out() {
    let device = BusyboxDevice::start(Profile::Hardened);
    let dir = tempfile::tempdir().unwrap();
    let (code, text, bundle) = run_and_verify(&device, dir.path(), "session-logout.yaml");
    assert_table("BusyBox hardened", &bundle, &text);
    assert_eq!(code, 0, "{text}");
    let said = messages(&case_of(&bundle, TEST));
    assert!(said.contains("after exit the console showed its login prompt again"), "{said}");
}

#[test]
fn a_busybox_console_without_login_cannot_be_logged_out() {
    let device = BusyboxDevice::builder(Profile::Hardened).console_without_login().start();
    let dir = tempfile::tempdir().unwrap();
    let (code, text, bundle) = run_and_verify(&device, dir.path(), "session-logout.yaml");
    assert_table("BusyBox console without login", &bundle, &text);
    assert_eq!(code, 1, "a FAIL, not an ERROR: {text}");
    let case = case_of(&bundle, TEST);
    let said = messages(&case);
    assert!(
        said.contains(
            "the console cannot be logged out: after 3 exits it still shows a shell prompt (`root@ru-bb:/#`) and never asked anyone to log in"
        ),
        "{said}"
    );
    // The SSH half still ran and held: the finding is the console's alone.
    let excerpt = case["evidence_excerpt"].as_str().unwrap_or_default();
    assert!(excerpt.contains("passed: [\"the shell of the SSH session of oper (pid"), "{case}");
    assert!(excerpt.contains("is gone once the session ended with exit"), "{case}");
    assert!(!said.contains("login prompt again"), "{said}");
}

#[test]
fn another_plan_that_logs_in_on_a_console_without_login_is_an_error_not_a_verdict() {
    // 4.2.3.4.1.1 tries a wrong password on the console: a console that asks for none
    // and will not log out is a bench it cannot use (ERROR), never a refused login (PASS).
    let device = BusyboxDevice::builder(Profile::Hardened).console_without_login().start();
    let dir = tempfile::tempdir().unwrap();
    let (code, text, bundle) = run_and_verify(&device, dir.path(), "system-function-authentication.yaml");
    let case = case_of(&bundle, "TC_SYS_FUN_USAGE");
    assert_eq!(case["verdict"], "ERROR", "{case}\n{text}");
    assert_ne!(code, 0, "{text}");
    let said = messages(&case);
    assert!(said.contains("a shell is still open after logging out 3 shells (prompt `root@ru-bb:/#`)"), "{said}");
}

/// The first case leaves its shell's prompt read but not consumed (a wait that matched
/// text before it) and types `exit` as its last step;
/// the second logs in at once. Its login must act on where the console went (the
/// login prompt getty prints again), not on the prompt left unread: `exit` typed there
/// would be taken as a user name, and the root password refused as its password.
const LOGIN_AFTER_UNREAD_TEXT: &str = r#"
plan: login-after-unread-text
title: A console login after text an earlier case left unread
cases:
  - id: TC_LEAVES_ITS_PROMPT_UNREAD
    title: Logs in, then types a command and exit without reading the console
    scas: { spec: TS 33.117, clause: 4.2.3.5.1, test_name: TC_LEAVES_ITS_PROMPT_UNREAD, requirement: Sessions end at logout. }
    purpose: Leave the shell's prompt unread for the next login.
    expected: root is logged in.
    evidence: The console transcript.
    devices: { roles: [radio-unit] }
    steps:
      - console_login: { user: root, password: { secret: root_password } }
      - console_run: { command: "id -un", expect_status: 0 }
        capture: who
      - assert: { value: "${who.output}", matches: "^root$" }
      - console_send: { text: "echo left; echo unread" }
      - wait: { ms: 300 }
      # Reads the whole answer, prompt and all, and consumes it only up to `left`.
      - console_expect: { patterns: ["left"] }
      - console_send: { text: exit }
  - id: TC_LOGS_IN_AFTER_IT
    title: Logs in where the console is now
    scas: { spec: TS 33.117, clause: 4.2.3.5.1, test_name: TC_LOGS_IN_AFTER_IT, requirement: Sessions end at logout. }
    purpose: Log in after the unread text.
    expected: root is logged in, and no shell was found open.
    evidence: The console transcript.
    devices: { roles: [radio-unit] }
    steps:
      - console_login: { user: root, password: { secret: root_password } }
      - console_run: { command: "id -un", expect_status: 0 }
        capture: who
      - assert: { value: "${who.output}", matches: "^root$" }
"#;

#[test]
fn a_console_login_acts_on_where_the_console_went_not_on_a_prompt_left_unread() {
    let device = BusyboxDevice::start(Profile::Hardened);
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("login-after-unread-text.yaml");
    std::fs::write(&plan, LOGIN_AFTER_UNREAD_TEXT).unwrap();
    for round in 0..3 {
        let out = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&out).unwrap();
        let (code, text, bundle) = run_and_verify(&device, &out, &plan.display().to_string());
        assert_eq!(code, 0, "round {round}: {text}");
        let after = case_of(&bundle, "TC_LOGS_IN_AFTER_IT");
        assert_eq!(after["verdict"], "PASS", "round {round}: {after}\n{text}");
        let login = &after["steps"][0];
        assert_eq!(
            login["message"], "console login as `root` was accepted, as required",
            "round {round}: no shell was open: {login}\n{text}"
        );
    }
}
