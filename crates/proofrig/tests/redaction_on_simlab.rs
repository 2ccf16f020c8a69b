//! A device that prints a secret does not put it into the evidence: on the simulated
//! lab, a password the console echoes and the device then logs is recorded as its
//! marker in the transcript and in the step outputs, and the journal still replays.
//!
//! Nothing in the simulated device reveals a password on its own, so the test makes it
//! do what real devices do when a rig is wrong: ru1's rig entry gets its login and
//! password prompts swapped, so proofrig types the root password at the `login:`
//! prompt, which echoes it, and the failed login then lands in the auth log as
//! "invalid user <password>", which `cat /var/log/auth.log` prints over SSH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use proofrig_evidence::bundle::InputRefs;
use proofrig_evidence::journal::{read_chain, JournalWriter, Record};
use proofrig_evidence::record::FileRef;
use proofrig_evidence::replay::replay;
use proofrig_model::events::Recorder;
use proofrig_model::rig::Rig;
use proofrig_plan::Plan;
use proofrig_run::executor::{execute, run_recorder, JournalSink, RunRequest};
use proofrig_run::progress::Silent;
use proofrig_simlab::{SimLab, SimLabConfig};
use serde_json::Value;

const PLAN: &str = r#"
plan: secret-echo
title: A device that prints its root password
cases:
  - id: TC_SECRET_ECHO
    title: The root password is echoed on the console and shows up in the auth log
    scas:
      spec: TS 33.117
      clause: 4.2.3.2.2
      test_name: TC_SECRET_ECHO
      requirement: >
        None of the device: the plan exercises proofrig's redaction, with a device
        that logs what was typed as a user name (as real ones do).
    purpose: Make the device print a secret on the console and over SSH.
    expected: The evidence names the secret's reference, never its value.
    evidence: The console transcript and the auth log.
    devices: { names: [ru1] }
    steps:
      - name: log in where the rig has the prompts swapped
        console_login: { expect: refused }
        timeout_ms: 10000
      - name: finish the login attempt with an empty password
        console_send: { text: "" }
      - name: the device refuses the odd user name
        console_expect: { patterns: ["Login incorrect"] }
        timeout_ms: 10000
      - name: the auth log shows what was typed as the user name
        ssh_exec: { command: "cat /var/log/auth.log" }
        timeout_ms: 10000
"#;

struct Ran {
    records: Vec<Record>,
    journal: Vec<u8>,
}

async fn run(rig: &Rig, plans: &[Plan], dir: &Path, redacting: bool) -> Ran {
    let journal_path = dir.join(if redacting { "journal.jsonl" } else { "unredacted.jsonl" });
    let journal = Arc::new(JournalWriter::create(&journal_path).unwrap());
    let input = |path: &str| FileRef { path: path.into(), sha256: String::new() };
    let recorder = if redacting { run_recorder(&journal, rig, plans) } else { Recorder::new(Arc::new(JournalSink(journal.clone()))) };
    let request = RunRequest {
        run_id: "test".into(),
        plans: plans.to_vec(),
        rig: rig.clone(),
        only_device: None,
        params: BTreeMap::new(),
        operator: "tester".into(),
        host: "localhost".into(),
        inputs: InputRefs { rig: input("rig.yaml"), plans: vec![input("plan.yaml")] },
        job: None,
        one_device_at_a_time: false,
    };
    let (_abort, abort_rx) = tokio::sync::watch::channel(false);
    execute(request, journal.clone(), recorder, &mut Silent, abort_rx).await.unwrap();
    let (records, _) = read_chain(&journal_path).unwrap().unwrap();
    Ran { records, journal: std::fs::read(&journal_path).unwrap() }
}

/// Each channel's recorded bytes, concatenated in sequence order (so a secret split
/// between two events would show whole).
fn transcripts(records: &[Record]) -> BTreeMap<String, Vec<u8>> {
    let mut events: Vec<&Value> = records.iter().filter(|r| r.entry["type"] == "event").map(|r| &r.entry["event"]).collect();
    events.sort_by_key(|e| e["seq"].as_u64());
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for event in events.into_iter().filter(|e| e["kind"] == "bytes") {
        let key = format!(
            "{}/{} {}",
            event["channel"]["device"].as_str().unwrap(),
            event["channel"]["channel"].as_str().unwrap(),
            event["direction"].as_str().unwrap()
        );
        let data = base64::engine::general_purpose::STANDARD.decode(event["data"].as_str().unwrap()).unwrap();
        out.entry(key).or_default().extend(data);
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn step_output(records: &[Record], action_index: u64) -> Value {
    records
        .iter()
        .find(|r| r.entry["type"] == "step_finished" && r.entry["index"] == action_index)
        .map(|r| r.entry["output"].clone())
        .expect("the step finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_device_prints_of_a_secret_is_redacted_and_the_journal_still_replays() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let generated = lab.write_rig(&dir.path().join("lab")).unwrap();
    let rig_text = std::fs::read_to_string(&generated).unwrap();
    // A rig mistake real benches make: the login and password prompts swapped (ru1 only).
    let swapped = rig_text.replacen("ru1-root\" } }", "ru1-root\" }, login_prompt: 'Password: ?$', password_prompt: 'login: ?$' }", 1);
    assert_ne!(swapped, rig_text, "ru1's console login is where the test expects it");
    let rig_path: PathBuf = dir.path().join("lab/swapped.yaml");
    std::fs::write(&rig_path, swapped).unwrap();
    let rig = Rig::load(&rig_path).unwrap();
    let plan_path = dir.path().join("plan.yaml");
    std::fs::write(&plan_path, PLAN).unwrap();
    let plans = vec![Plan::load(&plan_path).unwrap()];

    let root_password = lab.device("ru1").unwrap().secret("root_password").unwrap().to_string();
    let every_secret: Vec<String> = lab
        .devices()
        .iter()
        .flat_map(|d| ["root_password", "oper_password", "bootloader_password"].map(|name| d.secret(name).map(str::to_string)))
        .flatten()
        .collect();

    // Without redaction the same run would put the password into the journal: the test
    // really makes the device print it, on the console and over SSH.
    let unredacted = run(&rig, &plans, dir.path(), false).await;
    let raw = transcripts(&unredacted.records);
    assert!(contains(&raw["ru1/console in"], &root_password), "the console echoes the password");
    assert!(contains(&raw["ru1/ssh:exec:stdout in"], &format!("invalid user {root_password}")), "the auth log shows it");

    let ran = run(&rig, &plans, dir.path(), true).await;
    let journal_text = String::from_utf8_lossy(&ran.journal);
    let seen = transcripts(&ran.records);
    for secret in &every_secret {
        assert!(!journal_text.contains(secret.as_str()), "a secret value is in the journal file");
        for (channel, bytes) in &seen {
            assert!(!contains(bytes, secret), "a secret value is in the recorded bytes of {channel}");
        }
    }
    let marker = format!("«redacted:file:{}»", dir.path().join("lab/secrets/ru1-root").display());
    assert!(contains(&seen["ru1/console in"], &marker), "the console transcript shows the marker where the echo was");
    let stdout = step_output(&ran.records, 3)["stdout"].as_str().unwrap().to_string();
    assert!(stdout.contains(&format!("invalid user {marker}")), "the step output is redacted the same way: {stdout}");
    // The identity query at the start of the run also printed on this channel; the step's output is what came last.
    assert!(seen["ru1/ssh:exec:stdout in"].ends_with(stdout.as_bytes()), "output and transcript agree");

    let replayed = replay(&plans, &rig, &ran.records).expect("a redacted journal replays without any secret");
    assert!(replayed.finished);
    assert_eq!(replayed.steps, 4);
    lab.stop().await;
}

/// A password split by the end of a step: proofrig types its first half at the login
/// prompt in one step (a plan can do this; a device printing its password in its boot
/// log while a step ends does the same to the transcript), the echo arrives during
/// the next step, which reads nothing, and the rest comes in a later one. Neither
/// direction of the console may show the first half in clear, and the journal replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_split_by_the_end_of_a_step_shows_no_part_of_it_and_the_journal_replays() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::load(&lab.write_rig(&dir.path().join("lab")).unwrap()).unwrap();
    let root_password = lab.device("ru1").unwrap().secret("root_password").unwrap().to_string();
    let (first, rest) = root_password.split_at(root_password.len() / 2);
    assert!(first.len() >= 3, "the first half of {root_password:?} is too short to be told from chance");
    let plan = format!(
        r#"
plan: secret-split
title: A password split by a step boundary
cases:
  - id: TC_SECRET_SPLIT
    title: The root password is typed at the login prompt in two steps
    scas: {{ spec: TS 33.117, clause: 4.2.3.2.2, test_name: TC_SECRET_SPLIT, requirement: None of the device }}
    purpose: Split an echoed secret by step boundaries.
    expected: The evidence names the secret's reference, never a part of its value.
    evidence: The console transcript.
    devices: {{ names: [ru1] }}
    steps:
      - name: the device has booted to its login prompt
        console_expect: {{ patterns: ["login: "] }}
        timeout_ms: 30000
      - name: type the first half
        console_send: {{ text: "{first}", newline: false }}
      - name: the echo arrives while no step reads the console
        wait: {{ ms: 300 }}
      - name: type the rest
        console_send: {{ text: "{rest}" }}
      - name: the device asks for the password
        console_expect: {{ patterns: ["Password: "] }}
        timeout_ms: 10000
"#
    );
    let plan_path = dir.path().join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let plans = vec![Plan::load(&plan_path).unwrap()];

    let ran = run(&rig, &plans, dir.path(), true).await;
    let seen = transcripts(&ran.records);
    let marker = format!("«redacted:file:{}»", dir.path().join("lab/secrets/ru1-root").display());
    for channel in ["ru1/console in", "ru1/console out"] {
        assert!(contains(&seen[channel], &marker), "{channel} shows the marker: {:?}", String::from_utf8_lossy(&seen[channel]));
        assert!(!contains(&seen[channel], first), "{channel} shows the first half in clear: {:?}", String::from_utf8_lossy(&seen[channel]));
    }
    assert!(!String::from_utf8_lossy(&ran.journal).contains(&root_password));
    assert_eq!(step_output(&ran.records, 4)["matched"], true, "the login prompt took the typed password as a user name");
    let replayed = replay(&plans, &rig, &ran.records).expect("the journal replays");
    assert!(replayed.finished);
    assert_eq!(replayed.steps, 5);
    lab.stop().await;
}
