//! The library's scripted cases (predefined accounts, failed-login lockout, password
//! structure, file permissions) decide correctly both ways on the simulated lab, and
//! their verdicts replay from the journal alone; a forged script result is caught.

mod simrun;

use proofrig_evidence::replay::replay;
use proofrig_model::rig::Rig;
use proofrig_simlab::{SimLab, SimLabConfig};
use proofrig_verdict::Verdict;
use serde_json::Value;
use simrun::{assert_replays as replays, library, plan, run_on, verdict, Ran};

async fn run(lab: &SimLab, plans: Vec<proofrig_plan::Plan>) -> Ran {
    simrun::run(lab, plans, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_cases_pass_hardened_fail_weak_and_replay() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();

    let accounts = run(&lab, vec![plan("predefined-accounts.yaml")]).await;
    for device in ["ru1", "core1"] {
        let (v, why) = verdict(&accounts, device);
        assert_eq!(v, Verdict::Pass, "{device}: {why}");
    }
    for device in ["ru2", "core2"] {
        let (v, why) = verdict(&accounts, device);
        assert_eq!(v, Verdict::Fail, "{device}: {why}");
        assert!(why.contains("default account admin accepted its documented password"), "{why}");
    }
    replays(&accounts);

    let files = run(&lab, vec![plan("filesystem-permissions.yaml")]).await;
    assert_eq!(verdict(&files, "ru1").0, Verdict::Pass, "{}", verdict(&files, "ru1").1);
    let (v, why) = verdict(&files, "ru2");
    assert_eq!(v, Verdict::Fail, "{why}");
    assert!(why.contains("/etc/shadow is mode 644") && why.contains("readable by every user"), "{why}");
    replays(&files);

    let passwords = run(&lab, vec![plan("password-structure.yaml")]).await;
    assert_eq!(verdict(&passwords, "core1").0, Verdict::Pass, "{}", verdict(&passwords, "core1").1);
    let (v, why) = verdict(&passwords, "core2");
    assert_eq!(v, Verdict::Fail, "{why}");
    assert!(why.contains("the device accepted the password") && why.contains("shorter than 12 characters"), "{why}");
    replays(&passwords);
    // The restore step set the real password back: the next plan still logs in.
    let again = run(&lab, vec![plan("filesystem-permissions.yaml")]).await;
    assert_eq!(verdict(&again, "core2").0, Verdict::Fail, "core2 still answers with the rig's password: {}", verdict(&again, "core2").1);
    let secret = lab.device("core2").unwrap().secret("oper_password").unwrap().to_string();
    let journal = std::fs::read_to_string(&passwords.journal_path).unwrap();
    assert!(journal.contains("ssh:exec:stdin"), "what was sent on stdin is in the transcript");
    assert!(!journal.contains(&secret), "a secret sent on stdin stays out of the journal");

    let lockout = run(&lab, vec![plan("failed-login-attempts.yaml")]).await;
    for device in ["ru1", "core1"] {
        let (v, why) = verdict(&lockout, device);
        assert_eq!(v, Verdict::Pass, "{device}: {why}");
    }
    for device in ["ru2", "core2"] {
        let (v, why) = verdict(&lockout, device);
        assert_eq!(v, Verdict::Fail, "{device}: {why}");
        assert!(why.contains("was accepted at once: no lockout"), "{why}");
    }
    replays(&lockout);

    forged_script_result_is_caught(&accounts);
    lab.stop().await;
}

/// Turn the weak device's finding into a pass, fixing verdicts and messages to match,
/// and recompute the hash chain: the replayed script finds the account again.
fn forged_script_result_is_caught(ran: &Ran) {
    let records = simrun::rewrite(ran, |entry| {
        if entry["device"] == "ru2" && entry["type"] == "step_finished" {
            let finding = entry["output"]["findings"][0].clone();
            entry["output"]["findings"] = Value::Array(vec![]);
            entry["output"]["passed"] = Value::Array(vec![finding.clone()]);
            entry["verdict"] = "PASS".into();
            entry["message"] = format!("1 check held: {}", finding.as_str().unwrap()).into();
        }
        if entry["device"] == "ru2" && entry["type"] == "case_finished" {
            entry["verdict"] = "PASS".into();
        }
    });
    let err = replay(&ran.plans, &ran.rig, &records).expect_err("a forged script result is caught");
    assert!(err.detail.contains("script") && err.case.as_deref() == Some("TC_PREDEFINED_ACCOUNT_DELETION on ru2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_devices_give_infra_and_ambiguous_evidence_inconclusive_never_pass() {
    // With an idle timeout, so the rig declares all the library needs (4.2.3.5.2 reads it).
    let config = SimLabConfig::fast().with_console_idle_timeout(std::time::Duration::from_secs(2));
    let mut lab = SimLab::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rig_path = lab.write_rig(&dir.path().join("lab")).unwrap();
    let rig_text = std::fs::read_to_string(&rig_path).unwrap();

    // Ambiguous: the vendor documents no default accounts, so nothing can be shown.
    let undocumented = dir.path().join("undocumented.yaml");
    std::fs::write(&undocumented, rig_text.replace("default_accounts: [{ user: admin, password: admin }]", "default_accounts: []"))
        .unwrap();
    let ran =
        run_on(Rig::load(&undocumented).unwrap(), tempfile::tempdir().unwrap(), vec![plan("predefined-accounts.yaml")], &[], None).await;
    for case in &ran.result.cases {
        assert_eq!(case.verdict, Verdict::Inconclusive, "{}: {}", case.key.device, case.evidence_excerpt);
        assert!(case.evidence_excerpt.contains("documents no default accounts"), "{}", case.evidence_excerpt);
    }

    // Ambiguous: a password-change command that cannot set the account's password at all
    // (it names another account) refuses every weak password too; that proves nothing.
    let elsewhere = dir.path().join("changes-root.yaml");
    let changes_root = rig_text.replace("password_change_command: \"passwd --stdin\"", "password_change_command: \"passwd --stdin root\"");
    assert_ne!(changes_root, rig_text, "the rig declares its password-change command");
    std::fs::write(&elsewhere, changes_root).unwrap();
    let ran = run_on(Rig::load(&elsewhere).unwrap(), tempfile::tempdir().unwrap(), vec![plan("password-structure.yaml")], &[], None).await;
    assert!(!ran.result.cases.is_empty());
    for case in &ran.result.cases {
        assert_eq!(case.verdict, Verdict::Inconclusive, "{}: {}", case.key.device, case.evidence_excerpt);
        assert!(case.evidence_excerpt.contains("did not set oper's own password to its real one"), "{}", case.evidence_excerpt);
    }
    replays(&ran);

    // Unreachable: the same rig once the whole lab (PDU, SSH servers, consoles) is gone.
    lab.stop().await;
    let plans = library();
    assert!(plans.len() >= 7, "the whole library runs here");
    let ran = run_on(Rig::load(&rig_path).unwrap(), tempfile::tempdir().unwrap(), plans, &[], None).await;
    for case in &ran.result.cases {
        assert_eq!(case.verdict, Verdict::Infra, "{} on {}: {}", case.key.case, case.key.device, case.evidence_excerpt);
    }
    replays(&ran);
}

/// A script that types on the console, waits, then looks for the answer: the answer
/// arrives during the wait, so its bytes are journaled in the `wait` call's range, not
/// the `console_expect` call's. The expect still matched them (they were unread), and
/// replay must find them there too, as it does for a declarative wait that follows a
/// step which left console output unread.
const BETWEEN_CALLS: &str = r#"
plan: script-between-calls
title: Console output that arrives between two calls of a script
cases:
  - id: TC_SCRIPT_BETWEEN_CALLS
    title: The expect matches what arrived during the wait before it
    scas: { spec: TS 33.117, clause: "4.2", test_name: TC_SCRIPT_BETWEEN_CALLS, requirement: "none, a test of replay" }
    purpose: Show that replay finds console output a call consumed though an earlier call's range holds it.
    expected: The echoed line is matched and the journal replays.
    evidence: The journal.
    devices: { names: [ru1] }
    steps:
      - console_login: {}
      - script: |
          console_send("echo prf-between-calls");
          wait(500);
          let seen = agent("console_expect", #{patterns: ["prf-between-calls\r?\n[^\n]*[#$] $"]});
          check(seen.matched, "the echoed line and the prompt came back");
          let again = console_run("echo prf-second");
          check(again.output.contains("prf-second"), "a later command's output is its own");
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_output_that_arrives_between_a_scripts_calls_replays() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let plans = vec![proofrig_plan::Plan::parse("script-between-calls.yaml", BETWEEN_CALLS).expect("a valid plan")];
    let ran = run(&lab, plans).await;
    let (v, why) = verdict(&ran, "ru1");
    assert_eq!(v, Verdict::Pass, "{why}");
    // The precondition of the test: the echoed line is journaled before the
    // `console_expect` call's range begins (in the wait's range, or between calls).
    let script = ran.result.cases[0].steps.iter().find(|s| s.label == "script").expect("the script step");
    let output = &ran.records.iter().find(|r| r.n == script.record).unwrap().entry["output"];
    let expect = output["calls"].as_array().unwrap().iter().find(|c| c["action"] == "console_expect").expect("the expect call").clone();
    let echoed_at = ran
        .records
        .iter()
        .filter(|r| {
            r.entry["type"] == "event" && r.entry["event"]["kind"] == "bytes" && r.entry["event"]["channel"]["channel"] == "console"
        })
        .find(|r| {
            r.entry["event"]["direction"] == "in"
                && String::from_utf8_lossy(&base64_decode(r.entry["event"]["data"].as_str().unwrap())).contains("prf-between-calls\r\n")
        })
        .map(|r| r.entry["event"]["seq"].as_u64().unwrap())
        .expect("the echoed line is in the journal");
    assert!(echoed_at < expect["first_seq"].as_u64().unwrap(), "the answer arrived before the expect call: seq {echoed_at}\n{output}");
    replays(&ran);
    // Reaching back is not a licence: a matched text the console never showed is caught.
    let forged = simrun::rewrite(&ran, |entry| {
        if let Some(calls) = entry.pointer_mut("/output/calls").and_then(serde_json::Value::as_array_mut) {
            for call in calls.iter_mut().filter(|c| c["action"] == "console_expect") {
                call["output"]["matched_text"] = "prf-never-shown\r\nroot@ru1:~# ".into();
            }
        }
    });
    let err = replay(&ran.plans, &ran.rig, &forged).expect_err("a matched text the console never showed");
    assert!(err.to_string().contains("call 3 (console_expect, script line 3): the console did not show `prf-never-shown"), "{err}");
    lab.stop().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// A rig that lacks a value a case reads (here `declared.lockout`) stops that case
/// before anything is sent to the device: ERROR naming the device, the key, the rig and
/// how to write the key, never a script's internals; the journal still replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rig_without_a_declared_value_is_an_error_before_the_device_is_touched() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rig = simrun::rig_of(&lab, dir.path(), |text| {
        let kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("lockout:")).collect();
        assert!(kept.len() < text.lines().count(), "the sim rig declares a lockout to remove");
        kept.join("\n")
    });
    let ran = run_on(rig, dir, vec![plan("failed-login-attempts.yaml")], &[], Some("ru1")).await;
    let case = &ran.result.cases[0];
    assert_eq!(case.verdict, Verdict::Error, "{}", case.evidence_excerpt);
    let why = &case.evidence_excerpt;
    assert!(
        why.contains("device ru1") && why.contains("declared.lockout") && why.contains("lockout: { attempts: 3, seconds: 60 }"),
        "{why}"
    );
    assert!(why.contains("Nothing was sent to the device"), "{why}");
    assert!(!why.contains("getter") && !why.contains("property"), "no script internals: {why}");
    // Nothing between the case's start and end touched a device.
    let entries: Vec<Value> = ran.records.iter().map(|r| r.entry.clone()).collect();
    let start = entries.iter().position(|e| e["type"] == "case_started").unwrap();
    let end = entries.iter().position(|e| e["type"] == "case_finished").unwrap();
    assert!(entries[start..end].iter().all(|e| e["type"] != "event" && e["type"] != "step_started"), "{:?}", &entries[start..end]);
    replays(&ran);
    // The recorded reason is part of what replay checks.
    let records = simrun::rewrite(&ran, |entry| {
        if entry["type"] == "case_finished" {
            entry["unready"] = Value::Null;
            entry["verdict"] = "INCONCLUSIVE".into();
        }
    });
    assert!(replay(&ran.plans, &ran.rig, &records).is_err(), "a case made to look as if it ran is caught");
    lab.stop().await;
}
