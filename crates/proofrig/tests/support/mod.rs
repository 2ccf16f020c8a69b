//! Bundles for the evidence tests, built the way the executor builds them: a
//! `BundleWriter`, journal entries appended one by one, then `seal`. Also the
//! tamperer's tool: re-seal an existing bundle after editing its journal.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use proofrig_evidence::bundle::{BundleWriter, InputRefs, JOURNAL, RESULTS, RIG};
use proofrig_evidence::journal::{read_chain, Record};
use proofrig_evidence::record::{CaseKey, CaseResult, DeviceIdentity, JournalEntry, Phase, RunResult, StepResult};
use proofrig_evidence::signing;
use proofrig_model::events::{ChannelId, Direction, Event, EventKind, Timestamp};
use proofrig_model::rig::Identity;
use proofrig_plan::ScasRef;
use proofrig_verdict::{Rollup, Verdict};

pub const RUN_ID: &str = "2026-11-21T06-13-27Z-test";
pub const EXCERPT_FAIL: &str = "debug1: kex: server->client cipher: 3des-cbc\n<script>alert('owned')</script>";

pub const PLAN_SSH: &[u8] = b"plan: ssh-hardening\ntitle: SSH hardening\ncases: []  # bytes only; replay is injected\n";
pub const PLAN_ACCOUNTS: &[u8] = b"plan: accounts\ntitle: Accounts\ncases: []\n";
pub const RIG_YAML: &[u8] = b"rig: bench\ndevices:\n  ru1: {role: radio-unit}\n  core1: {role: core}\n";

/// One case on one device, as the test wants it to have gone.
#[derive(Debug, Clone)]
pub struct CaseSpec {
    pub plan: &'static str,
    pub case: &'static str,
    pub device: &'static str,
    pub clause: &'static str,
    pub test_name: &'static str,
    pub verdict: Verdict,
    /// Verdicts of the main steps (empty for a skipped case).
    pub steps: Vec<Verdict>,
    pub excerpt: &'static str,
    pub skip_reason: Option<&'static str>,
}

impl CaseSpec {
    pub fn key(&self) -> CaseKey {
        CaseKey { plan: self.plan.into(), case: self.case.into(), device: self.device.into() }
    }

    pub fn scas(&self) -> ScasRef {
        ScasRef {
            spec: "TS 33.117".into(),
            version: Some("18.1.0".into()),
            clause: self.clause.into(),
            test_name: self.test_name.into(),
            requirement: format!("requirement of {}", self.test_name),
            requirement_clause: None,
            threats: vec![],
        }
    }
}

/// PASS, FAIL with an excerpt, INFRA, SKIP, and a second plan.
pub fn standard_cases() -> Vec<CaseSpec> {
    vec![
        CaseSpec {
            plan: "ssh-hardening",
            case: "root-login",
            device: "ru1",
            clause: "4.2.3.4.2.1",
            test_name: "TC_REMOTE_LOGIN_RESTRICTIONS_PRIVILEGED_USERS",
            verdict: Verdict::Pass,
            steps: vec![Verdict::Pass, Verdict::Pass],
            excerpt: "Permission denied (publickey,password).",
            skip_reason: None,
        },
        CaseSpec {
            plan: "ssh-hardening",
            case: "weak-ciphers",
            device: "ru1",
            clause: "4.2.3.2.2",
            test_name: "TC_CRYPTO_WEAK_CIPHERS",
            verdict: Verdict::Fail,
            steps: vec![Verdict::Pass, Verdict::Fail],
            excerpt: EXCERPT_FAIL,
            skip_reason: None,
        },
        CaseSpec {
            plan: "ssh-hardening",
            case: "weak-ciphers",
            device: "core1",
            clause: "4.2.3.2.2",
            test_name: "TC_CRYPTO_WEAK_CIPHERS",
            verdict: Verdict::Infra,
            steps: vec![Verdict::Infra],
            excerpt: "connect to 127.0.0.1:2223: connection refused",
            skip_reason: None,
        },
        CaseSpec {
            plan: "ssh-hardening",
            case: "banner",
            device: "core1",
            clause: "4.2.3.4.10",
            test_name: "TC_BANNER",
            verdict: Verdict::Skip,
            steps: vec![],
            excerpt: "",
            skip_reason: Some("core1 has no login banner by design (waiver W-12)"),
        },
        CaseSpec {
            plan: "accounts",
            case: "lockout",
            device: "ru1",
            clause: "4.2.3.4.3.1",
            test_name: "TC_ACCOUNT_LOCKOUT",
            verdict: Verdict::Pass,
            steps: vec![Verdict::Pass],
            excerpt: "pam_faillock: account locked",
            skip_reason: None,
        },
    ]
}

pub fn run_result(cases: &[CaseSpec]) -> RunResult {
    let rollup = Rollup::of(cases.iter().map(|c| c.verdict));
    RunResult {
        run_id: RUN_ID.into(),
        proofrig_version: env!("CARGO_PKG_VERSION").into(),
        operator: "alice <tester>".into(),
        host: "lab-host-1".into(),
        rig_name: "bench".into(),
        started: "2026-11-21T06:13:27Z".into(),
        ended: "2026-11-21T06:20:02Z".into(),
        aborted: false,
        verdict: rollup.verdict,
        rollup,
        cases: cases
            .iter()
            .map(|c| CaseResult {
                key: c.key(),
                title: format!("{} on {}", c.case, c.device),
                scas: Some(c.scas()),
                purpose: format!("Purpose of {}.", c.case),
                expected: format!("Expected result of {}.", c.case),
                verdict: c.verdict,
                skip_reason: c.skip_reason.map(String::from),
                steps: c
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, v)| StepResult {
                        phase: Phase::Steps,
                        index: i,
                        label: format!("step {i}"),
                        action: "ssh_exec".into(),
                        verdict: *v,
                        message: format!("step {i} of {} found {v}", c.case),
                        record: 0,
                        duration_ms: 120,
                    })
                    .collect(),
                evidence_excerpt: c.excerpt.into(),
                duration_ms: 1500,
            })
            .collect(),
        devices: vec![
            DeviceIdentity {
                device: "ru1".into(),
                role: "radio-unit".into(),
                declared: Identity {
                    vendor: Some("Example Networks".into()),
                    model: Some("RU-4400".into()),
                    serial: Some("RU44-000123".into()),
                    firmware: Some("4.2.1".into()),
                    command: None,
                },
                reported: Some("RU-4400 fw 4.2.1 <b>".into()),
            },
            DeviceIdentity { device: "core1".into(), role: "core".into(), declared: Identity::default(), reported: None },
        ],
    }
}

/// The journal a run of `cases` writes, ending with RunFinished saying `run_verdict`.
pub fn journal_entries(cases: &[CaseSpec], inputs: &InputRefs, run_verdict: Verdict) -> Vec<JournalEntry> {
    let mut entries = vec![JournalEntry::RunStarted {
        run_id: RUN_ID.into(),
        proofrig_version: env!("CARGO_PKG_VERSION").into(),
        operator: "alice <tester>".into(),
        host: "lab-host-1".into(),
        started: "2026-11-21T06:13:27Z".into(),
        plans: inputs.plans.clone(),
        rig: inputs.rig.clone(),
        rig_name: "bench".into(),
        parameters: Default::default(),
        only_device: None,
        job: None,
        side_by_side: false,
    }];
    let mut seq = 0;
    for c in cases {
        entries.push(JournalEntry::CaseStarted { key: c.key(), title: c.case.into(), scas: Some(c.scas()) });
        for (i, verdict) in c.steps.iter().enumerate() {
            entries.push(JournalEntry::StepStarted {
                key: c.key(),
                phase: Phase::Steps,
                index: i,
                action: "ssh_exec".into(),
                label: format!("step {i}"),
                spec: serde_json::json!({"ssh_exec": "sshd -T"}),
                attempt: 1,
            });
            entries.push(JournalEntry::Event {
                event: Event {
                    seq,
                    at: Timestamp { wall_ns: 1_700_000_000_000_000_000 + seq, mono_ns: seq * 1000 },
                    kind: EventKind::Bytes {
                        channel: ChannelId::new(c.device, "ssh"),
                        direction: Direction::In,
                        data: c.excerpt.as_bytes().to_vec(),
                    },
                },
            });
            entries.push(JournalEntry::StepFinished {
                key: c.key(),
                phase: Phase::Steps,
                index: i,
                attempt: 1,
                verdict: *verdict,
                message: format!("step {i} found {verdict}"),
                output: serde_json::json!({"stdout": c.excerpt}),
                first_seq: seq,
                last_seq: seq,
            });
            seq += 1;
        }
        entries.push(JournalEntry::CaseFinished {
            key: c.key(),
            verdict: c.verdict,
            rollup: Rollup::of(c.steps.iter().copied()),
            checks_passed: c.steps.iter().filter(|v| **v == Verdict::Pass).count(),
            skip_reason: c.skip_reason.map(String::from),
            unready: None,
        });
    }
    entries.push(JournalEntry::RunFinished {
        verdict: run_verdict,
        rollup: Rollup::of(cases.iter().map(|c| c.verdict)),
        ended: "2026-11-21T06:20:02Z".into(),
        aborted: false,
    });
    entries
}

/// A lab key pair on disk.
pub struct Keys {
    pub private: PathBuf,
    pub public: PathBuf,
    pub signing: SigningKey,
    pub verifying: VerifyingKey,
}

pub fn keys(dir: &Path, name: &str) -> Keys {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let verifying = signing::generate(&private, &public).unwrap();
    let signing = signing::load_signing_key(&private).unwrap();
    Keys { private, public, signing, verifying }
}

pub fn create_writer(out: &Path) -> BundleWriter {
    BundleWriter::create(
        out,
        RUN_ID,
        (Path::new("/lab/rigs/bench.yaml"), RIG_YAML),
        &[(Path::new("/lab/plans/ssh.yaml"), PLAN_SSH), (Path::new("plans/accounts.yaml"), PLAN_ACCOUNTS)],
    )
    .unwrap()
}

/// An honest sealed bundle of `cases` under `out`.
pub fn sealed_bundle(out: &Path, cases: &[CaseSpec], key: &SigningKey) -> PathBuf {
    let writer = create_writer(out);
    let result = run_result(cases);
    for entry in journal_entries(cases, writer.input_refs(), result.verdict) {
        writer.journal().append(&entry).unwrap();
    }
    writer.seal(&result, key, &proofrig_report::Standard).unwrap().dir
}

/// The tamperer: rebuild `original` under `out` with every journal entry passed
/// through `edit_entry` and the results through `edit_result`, then recompute the
/// chain, the digests, the manifest and the statements, and sign with `key`.
pub fn reseal(
    original: &Path,
    out: &Path,
    key: &SigningKey,
    edit_entry: impl Fn(&mut serde_json::Value),
    edit_result: impl Fn(&mut RunResult),
) -> PathBuf {
    let rig = std::fs::read(original.join(RIG)).unwrap();
    let ssh = std::fs::read(original.join("inputs/plans/ssh.yaml")).unwrap();
    let accounts = std::fs::read(original.join("inputs/plans/accounts.yaml")).unwrap();
    let writer = BundleWriter::create(
        out,
        RUN_ID,
        (Path::new("bench.yaml"), &rig),
        &[(Path::new("ssh.yaml"), &ssh), (Path::new("accounts.yaml"), &accounts)],
    )
    .unwrap();
    let (records, _) = read_chain(&original.join(JOURNAL)).unwrap().unwrap();
    for record in records {
        let mut entry = record.entry;
        edit_entry(&mut entry);
        writer.journal().append(&entry).unwrap();
    }
    let mut result: RunResult = serde_json::from_slice(&std::fs::read(original.join(RESULTS)).unwrap()).unwrap();
    edit_result(&mut result);
    writer.seal(&result, key, &proofrig_report::Standard).unwrap().dir
}

/// Whether a journal entry is about `case` on `device`.
pub fn is_case(entry: &serde_json::Value, case: &str, device: &str) -> bool {
    entry["case"] == case && entry["device"] == device
}

/// The journal's records, for finding record numbers.
pub fn records(bundle: &Path) -> Vec<Record> {
    read_chain(&bundle.join(JOURNAL)).unwrap().unwrap().0
}

/// The tamperer with the key, editing signed content directly: recompute every
/// subject digest from the files as they now are, let `edit` change the decoded
/// statements (test-result first, proofrig second), and sign them again.
pub fn resign(bundle: &Path, key: &SigningKey, edit: impl Fn(&mut [serde_json::Value; 2])) {
    use proofrig_evidence::bundle::{list_files, sha256_file, ATTESTATION};
    let text = std::fs::read_to_string(bundle.join(ATTESTATION)).unwrap();
    let mut statements: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            let envelope: signing::Envelope = serde_json::from_str(l).unwrap();
            serde_json::from_slice(&envelope.payload_bytes().unwrap()).unwrap()
        })
        .collect();
    let subjects: Vec<serde_json::Value> = list_files(bundle)
        .unwrap()
        .into_iter()
        .filter(|f| f.path != ATTESTATION)
        .map(|f| serde_json::json!({"name": f.path, "digest": {"sha256": sha256_file(&bundle.join(&f.path)).unwrap().0}}))
        .collect();
    for statement in &mut statements {
        statement["subject"] = subjects.clone().into();
    }
    let mut pair: [serde_json::Value; 2] = [statements[0].take(), statements[1].take()];
    edit(&mut pair);
    let mut out = String::new();
    for statement in &pair {
        let envelope = signing::sign(key, "application/vnd.in-toto+json", &serde_json::to_vec(statement).unwrap());
        out.push_str(&serde_json::to_string(&envelope).unwrap());
        out.push('\n');
    }
    std::fs::write(bundle.join(ATTESTATION), out).unwrap();
}

/// Edit a JSON file of the bundle in place.
pub fn edit_json(path: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}
