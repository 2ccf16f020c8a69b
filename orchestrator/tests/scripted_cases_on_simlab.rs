//! The library's scripted cases (predefined accounts, failed-login lockout, password
//! structure, file permissions) decide correctly both ways on the simulated lab, and
//! their verdicts replay from the journal alone; a forged script result is caught.

mod simrun;

use proofrig::run::replay::replay;
use proofrig::verdict::Verdict;
use proofrig_agents::rig::Rig;
use proofrig_simlab::{SimLab, SimLabConfig};
use serde_json::Value;
use simrun::{assert_replays as replays, library, plan, run_on, verdict, Ran};

async fn run(lab: &SimLab, plans: Vec<proofrig::plan::Plan>) -> Ran {
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
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rig_path = lab.write_rig(&dir.path().join("lab")).unwrap();
    let rig_text = std::fs::read_to_string(&rig_path).unwrap();

    // Ambiguous: the vendor documents no default accounts, so nothing can be shown.
    let undocumented = dir.path().join("undocumented.yaml");
    std::fs::write(&undocumented, rig_text.replace("default_accounts: [{ user: admin, password: admin }]", "default_accounts: []")).unwrap();
    let ran = run_on(Rig::load(&undocumented).unwrap(), tempfile::tempdir().unwrap(), vec![plan("predefined-accounts.yaml")], &[], None).await;
    for case in &ran.result.cases {
        assert_eq!(case.verdict, Verdict::Inconclusive, "{}: {}", case.key.device, case.evidence_excerpt);
        assert!(case.evidence_excerpt.contains("documents no default accounts"), "{}", case.evidence_excerpt);
    }

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
