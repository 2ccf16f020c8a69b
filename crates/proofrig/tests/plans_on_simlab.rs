//! The bundled plans decide correctly both ways on the simulated lab, and every
//! verdict they leave in a journal can be recomputed, and tampering with it caught.

mod simrun;

use proofrig_evidence::record::CaseKey;
use proofrig_evidence::replay::replay;
use proofrig_plan::Plan;
use proofrig_simlab::{SimLab, SimLabConfig};
use proofrig_verdict::Verdict;
use serde_json::Value;
use simrun::{plan, rewrite, run, verdict, Ran};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_plans_pass_hardened_fail_weak_and_replay() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();

    let algorithms = run(&lab, vec![plan("ssh-algorithms.yaml")], &[]).await;
    for hardened in ["ru1", "core1"] {
        let (v, why) = verdict(&algorithms, hardened);
        assert_eq!(v, Verdict::Pass, "{hardened}: {why}");
    }
    for weak in ["ru2", "core2"] {
        let (v, why) = verdict(&algorithms, weak);
        assert_eq!(v, Verdict::Fail, "{weak}: {why}");
        assert!(why.contains("not in the allowed list") && why.contains("cbc"), "the failure names the evidence: {why}");
        assert!(
            why.contains("only kex diffie-hellman-group1-sha1 was accepted"),
            "the server itself agreed to the legacy key exchange: {why}"
        );
        assert!(why.contains("only macs hmac-sha1 was accepted"), "{why}");
    }

    let root = run(&lab, vec![plan("remote-root-login.yaml")], &[]).await;
    assert_eq!(verdict(&root, "ru1").0, Verdict::Pass, "{}", verdict(&root, "ru1").1);
    let (v, why) = verdict(&root, "ru2");
    assert_eq!(v, Verdict::Fail);
    assert!(why.contains("SSH login as root with its password was accepted"), "{why}");
    let (_, why) = verdict(&root, "ru1");
    assert!(why.contains("root's password was accepted on the console, so the refused SSH login tried the real password"), "{why}");

    // A narrow scan keeps the test quick; the weak devices' extra listeners sit on other ports.
    // The hardened devices' documented web port is high; the weak ones' 80 is among their extra listeners.
    let ports_param = simrun::high_ports(&lab);
    let weak_extra: Vec<String> = lab.device("ru2").unwrap().device().os().listeners().iter().map(|l| l.addr.port().to_string()).collect();
    let scan_ports = format!("{ports_param},{}", weak_extra.join(","));
    let open = run(&lab, vec![plan("open-ports.yaml")], &[("ports", Value::String(scan_ports))]).await;
    assert_eq!(verdict(&open, "core1").0, Verdict::Pass, "{}", verdict(&open, "core1").1);
    let (v, why) = verdict(&open, "ru2");
    assert_eq!(v, Verdict::Fail);
    assert!(why.contains("unexpected:"), "{why}");

    // Each device was asked who it is, and said so in its own words.
    let ru2 = root.result.devices.iter().find(|d| d.device == "ru2").expect("ru2 took part");
    let reported = ru2.reported.as_deref().expect("the sim rig gives an identity command");
    assert!(reported.contains(ru2.declared.serial.as_deref().unwrap()), "{reported}");

    for ran in [&algorithms, &root, &open] {
        let replayed = replay(&ran.plans, &ran.rig, &ran.records).expect("an untouched journal replays");
        let recorded: Vec<(CaseKey, Verdict)> = ran.result.cases.iter().map(|c| (c.key.clone(), c.verdict)).collect();
        assert_eq!(replayed.cases, recorded);
        assert!(replayed.finished);
    }
    let console = run(&lab, vec![Plan::parse("console.yaml", CONSOLE_PLAN).unwrap()], &[]).await;
    let (v, why) = verdict(&console, "ru1");
    assert_eq!(v, Verdict::Pass, "{why}");
    assert_eq!(verdict(&console, "ru2").0, Verdict::Fail, "the weak device lets `oper` read /etc/shadow");
    replay(&console.plans, &console.rig, &console.records).expect("console steps replay from the transcript");

    tamper_with_a_verdict_and_rechain(&algorithms);
    tamper_with_an_output_and_its_verdict(&root);
    lab.stop().await;
}

/// Console steps end to end: log in, run commands with their exit status, check output.
const CONSOLE_PLAN: &str = r#"
plan: console-check
title: Console commands
cases:
  - id: TC_CONSOLE_CHECK
    title: The console runs commands with their exit status
    scas: { spec: TS 33.117, clause: 4.3.2.7, test_name: TC_CONSOLE_CHECK, requirement: Sensitive files are protected. }
    purpose: Exercise console_login, console_run and captures.
    expected: root is who it says; /etc/shadow is not readable by others.
    evidence: The console transcript.
    devices: { roles: [radio-unit] }
    steps:
      - console_login: { user: root, password: { secret: root_password } }
      - console_run: { command: "whoami", expect_status: 0 }
        capture: who
      - assert: { value: "${who.output}", matches: "^root$" }
      - console_run: { command: "stat -c '%a' /etc/shadow", expect_status: 0 }
        capture: shadow
      - assert: { value: "${shadow.output}", not_matches: "[4567]$", message: /etc/shadow is readable by others }
    restore:
      - console_send: { text: exit }
"#;

fn tamper_with_a_verdict_and_rechain(ran: &Ran) {
    let records = rewrite(ran, |entry| {
        let weak_case = entry["device"] == "ru2";
        match entry["type"].as_str() {
            Some("step_finished") if weak_case && entry["verdict"] == "FAIL" => entry["verdict"] = "PASS".into(),
            Some("case_finished") if weak_case => entry["verdict"] = "PASS".into(),
            _ => {}
        }
    });
    let err = replay(&ran.plans, &ran.rig, &records).expect_err("a flipped verdict is caught");
    assert!(err.detail.contains("recorded PASS") && err.case.as_deref() == Some("TC_PROTECT_DATA_INFO_TRANSFER_1 on ru2"), "{err}");
}

fn tamper_with_an_output_and_its_verdict(ran: &Ran) {
    // Claim the weak device refused root, and fix the verdict and message to match:
    // the judge agrees with the forged output, but the raw authentication event does not.
    let records = rewrite(ran, |entry| {
        if entry["device"] == "ru2" && entry["type"] == "step_finished" && entry["index"] == 1 && entry["phase"] == "steps" {
            let calls = entry["output"]["calls"].as_array_mut().expect("the decision is a script's");
            let login = calls.iter_mut().find(|c| c["action"] == "ssh_login").expect("the script logs in as root");
            login["output"]["accepted"] = false.into();
            login["verdict"] = "PASS".into();
            login["message"] = "SSH login as `root` was refused".into();
            let finding = entry["output"]["findings"].as_array_mut().unwrap().remove(0);
            entry["output"]["passed"].as_array_mut().unwrap().push(finding);
            entry["verdict"] = "PASS".into();
            entry["message"] = "3 checks held".into();
        }
        if entry["device"] == "ru2" && entry["type"] == "case_finished" {
            entry["verdict"] = "PASS".into();
        }
    });
    let err = replay(&ran.plans, &ran.rig, &records).expect_err("a forged output is caught");
    assert!(err.detail.contains("authentication event"), "{err}");
}

/// Each step keeps its own time limit: the executor moves one timer from step to step
/// instead of making a new one each time, so a short limit after a long one, and a
/// long one after a short one that fired, must both still hold.
const TIME_LIMITS_PLAN: &str = r#"
plan: time-limits
title: Step time limits
cases:
  - id: TC_TIME_LIMITS
    title: A step past its time limit is INFRA; the steps around it keep their own limits
    scas: { spec: TS 33.117, clause: "4.2", test_name: TC_TIME_LIMITS, requirement: "none: the executor's own behaviour" }
    purpose: Exercise per-step time limits.
    expected: The over-long wait is stopped at its limit; the quick ones pass.
    evidence: The journal.
    devices: { names: [ru1] }
    steps:
      - wait: { ms: 20 }
        timeout_ms: 10000
      - wait: { ms: 8000 }
        timeout_ms: 300
        on_failure: continue
      - wait: { ms: 20 }
        timeout_ms: 10000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_time_limit_is_infra_and_the_others_keep_their_own_limits() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let started = std::time::Instant::now();
    let ran = run(&lab, vec![Plan::parse("time-limits.yaml", TIME_LIMITS_PLAN).unwrap()], &[]).await;
    let took = started.elapsed();
    let case = &ran.result.cases[0];
    let steps: Vec<(Verdict, &str)> = case.steps.iter().map(|s| (s.verdict, s.message.as_str())).collect();
    assert_eq!(steps.iter().map(|s| s.0).collect::<Vec<_>>(), [Verdict::Pass, Verdict::Infra, Verdict::Pass], "{steps:?}");
    assert!(
        steps[1].1.contains("wait on ru1 did not finish within 300 ms"),
        "the INFRA names the action, device and limit: {}",
        steps[1].1
    );
    // The 8 s wait was cut at its 300 ms limit, not at the 10 s one set just before it.
    assert!(took < std::time::Duration::from_secs(6), "the run took {took:?}: the 300 ms limit did not stop the 8 s wait");
    assert_eq!(case.verdict, Verdict::Infra);
    simrun::assert_replays(&ran);
    lab.stop().await;
}

/// Leaves a shell open at the console, as a technician who walked away would.
const LEAVE_LOGGED_IN: &str = r#"
plan: leave-logged-in
title: A technician leaves a shell open
cases:
  - id: TC_LEAVE_LOGGED_IN
    title: Log in on the console and walk away
    scas: { spec: TS 33.117, clause: 4.3.2.7, test_name: TC_LEAVE_LOGGED_IN, requirement: r }
    purpose: p
    expected: e
    evidence: e
    devices: { names: [ru1] }
    steps:
      - console_login: { user: oper, password: { secret: oper_password } }
      - console_run: { command: "whoami", expect_status: 0 }
"#;

/// A console login that finds a shell already open logs it out and logs in for real,
/// saying whose shell it was: finding `oper@ru1:~$` proves nothing about root's login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_login_logs_out_a_shell_left_open_and_says_whose_it_was() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rig = simrun::rig_of(&lab, dir.path(), |text| text);
    let plans = vec![Plan::parse("leave.yaml", LEAVE_LOGGED_IN).unwrap(), plan("remote-root-login.yaml")];
    let ran = simrun::run_on(rig, dir, plans, &[], Some("ru1")).await;
    let root = ran.result.cases.iter().find(|c| c.key.case == "TC_REMOTE_LOGIN_RESTRICTIONS_PRIVILEGED_USERS").unwrap();
    assert_eq!(root.verdict, Verdict::Pass, "{}", root.evidence_excerpt);
    let record = ran
        .records
        .iter()
        .find(|r| r.entry["type"] == "step_finished" && r.entry["case"] == root.key.case && r.entry["index"] == 1)
        .unwrap();
    let login = record.entry["output"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "console_login")
        .expect("the script logs in on the console")
        .clone();
    assert_eq!(login["output"]["logged_out"][0]["account"], "oper", "{login}");
    assert_eq!(login["output"]["user"], "root", "{login}");
    let message = login["message"].as_str().unwrap();
    assert_eq!(message, "console login as `root` was accepted (after logging out a shell left open as `oper`)");
    simrun::assert_replays(&ran);
    lab.stop().await;
}

/// Power-cycles the device and logs in on its console at once, while it boots.
const LOGIN_WHILE_BOOTING: &str = r#"
plan: login-while-booting
title: Log in on a console that is still booting
cases:
  - id: TC_LOGIN_WHILE_BOOTING
    title: A console login waits out the boot
    scas: { spec: TS 33.117, clause: 4.3.2.7, test_name: TC_LOGIN_WHILE_BOOTING, requirement: r }
    purpose: p
    expected: e
    evidence: e
    devices: { names: [ru1, ru2] }
    steps:
      - power: { action: cycle }
      - console_login: { user: root, password: { secret: root_password } }
      - console_run: { command: "id -u", expect_status: 0 }
"#;

/// A console login started while the device boots presses no key until the console
/// has gone quiet: a key during the boot loader's countdown would stop the boot (the
/// hardened device's boot loader then asks for its own password, the weak one opens
/// its prompt), and no login prompt would come. With the real boot timings (banner,
/// a countdown, the kernel log), both profiles boot through and let root in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_login_during_the_boot_waits_for_the_login_prompt() {
    let mut lab = SimLab::start(SimLabConfig::default()).await.unwrap();
    let ran = run(&lab, vec![Plan::parse("booting.yaml", LOGIN_WHILE_BOOTING).unwrap()], &[]).await;
    for device in ["ru1", "ru2"] {
        let (v, why) = verdict(&ran, device);
        assert_eq!(v, Verdict::Pass, "{device}: {why}");
    }
    simrun::assert_replays(&ran);
    lab.stop().await;
}

/// The devices go side by side: their cases overlap in the journal (a case opens on
/// one device while another's is open), each device's cases in order, and the results
/// in the selection's order. `--one-device-at-a-time` runs them one after another, one
/// case open at a time, to the same verdicts; both replay, and each is held to its own
/// mode: a side-by-side journal said to be one after another does not replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_go_side_by_side_or_one_at_a_time_to_the_same_verdicts() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let plans = vec![plan("ssh-algorithms.yaml"), plan("remote-root-login.yaml")];
    let rig = |dir: &tempfile::TempDir| simrun::rig_of(&lab, dir.path(), |text| text);
    let dir = tempfile::tempdir().unwrap();
    let side = simrun::run_in_mode(rig(&dir), dir, plans.clone(), &[], None, false).await;
    let dir = tempfile::tempdir().unwrap();
    let apart = simrun::run_in_mode(rig(&dir), dir, plans.clone(), &[], None, true).await;
    lab.stop().await;

    // Most cases open at once, and the order each device's cases started in.
    let shape = |ran: &Ran| {
        let (mut open, mut most) = (0usize, 0usize);
        let mut order: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for record in &ran.records {
            match record.entry["type"].as_str() {
                Some("case_started") => {
                    open += 1;
                    most = most.max(open);
                    let device = record.entry["device"].as_str().unwrap().to_string();
                    order.entry(device).or_default().push(record.entry["case"].as_str().unwrap().to_string());
                }
                Some("case_finished") => open -= 1,
                _ => {}
            }
        }
        (most, order)
    };
    let (side_most, side_order) = shape(&side);
    let (apart_most, apart_order) = shape(&apart);
    assert_eq!(side.records[0].entry["side_by_side"], true);
    assert!(apart.records[0].entry.get("side_by_side").is_none(), "one after another, RunStarted reads as before");
    assert_eq!(side_most, 4, "a case open on each of the four devices at once");
    assert_eq!(apart_most, 1);
    assert_eq!(side_order, apart_order, "each device's cases in the same order");
    let verdicts = |ran: &Ran| ran.result.cases.iter().map(|c| (c.key.clone(), c.verdict)).collect::<Vec<(CaseKey, Verdict)>>();
    assert_eq!(verdicts(&side), verdicts(&apart), "the same verdicts, in the selection's order");
    simrun::assert_replays(&side);
    simrun::assert_replays(&apart);

    // The side-by-side journal claimed to be one after another: another device's
    // identity read, or case, stands inside the first device's case, and replay says so.
    let forged = rewrite(&side, |entry| {
        if entry["type"] == "run_started" {
            entry.as_object_mut().unwrap().remove("side_by_side");
        }
    });
    let err = replay(&side.plans, &side.rig, &forged).unwrap_err();
    assert!(
        err.detail.contains("a case starts before the previous one finished")
            || err.detail.contains("lies outside the range of every step"),
        "{err}"
    );
}
