//! What a run writes into its journal, and the results derived from it.
//!
//! The journal holds every agent event (raw bytes, SSH commands, power actions)
//! interleaved with the executor's own records (case and step boundaries, each
//! step's observed output and verdict). Everything a report or a verifier needs is
//! derivable from these records plus the plan: that is what makes verdicts
//! replayable.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use proofrig_model::events::{Event, EventKind};

use super::journal::OwnedEntry;

use proofrig_plan::ScasRef;
use proofrig_verdict::{Rollup, Verdict};

/// A file copied into the bundle, with its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path inside the bundle, with `/` separators (e.g. `inputs/plans/ssh.yaml`).
    pub path: String,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// Whether a step belongs to the case's main steps or its restore steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Steps,
    Restore,
}

/// Who and what a case instance is about: one case of one plan on one device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaseKey {
    /// Plan identifier (`plan:` of the plan file).
    pub plan: String,
    /// Case id within the plan.
    pub case: String,
    /// Rig device name.
    pub device: String,
}

/// The lab service's job a run is for, as the server assigned it, journaled in its
/// RunStarted record: the bundle itself says which job and attempt it is and under
/// which lease, so a stale or duplicated run can be told apart from the evidence
/// alone. The fencing token grows with every lease the server grants: of two runs of
/// one rig, the later lease has the larger token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTicket {
    /// The server's job id.
    pub job: u64,
    /// Which attempt of the job (1 for the first; a retry is a new attempt).
    pub attempt: u32,
    /// The fencing token of the lease the lab host held for the run.
    pub fencing_token: u64,
    /// The lab host that ran it, as the server enrolled it.
    pub lab_host: String,
}

/// One journal record's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JournalEntry {
    RunStarted {
        run_id: String,
        proofrig_version: String,
        operator: String,
        host: String,
        /// RFC 3339, UTC.
        started: String,
        plans: Vec<FileRef>,
        rig: FileRef,
        rig_name: String,
        /// Plan parameter overrides given on the command line.
        #[serde(default)]
        parameters: BTreeMap<String, serde_json::Value>,
        /// `--device`: the run was limited to this device.
        #[serde(default)]
        only_device: Option<String>,
        /// The lab service's job this run is, when a lab host ran it for the server.
        /// Absent for a run from the command line (and in bundles from before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<JobTicket>,
        /// The run's devices ran side by side (one lane of cases per device, see
        /// `proofrig_plan::scope::Lanes`), so their records interleave. Absent when they
        /// ran one after another (`--one-device-at-a-time`, and every bundle from
        /// before): replay then holds the run to one open case at a time, in order.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        side_by_side: bool,
    },
    /// An agent event, exactly as the recorder stamped it.
    Event { event: Event },
    /// What a device said about itself when asked with its rig's `identity.command`.
    DeviceReported {
        device: String,
        command: String,
        /// The answer (empty when asking failed).
        output: String,
        #[serde(default)]
        error: Option<String>,
    },
    CaseStarted {
        #[serde(flatten)]
        key: CaseKey,
        title: String,
        /// Absent for a case that is not a SCAS test case (a health check).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scas: Option<ScasRef>,
    },
    StepStarted {
        #[serde(flatten)]
        key: CaseKey,
        phase: Phase,
        index: usize,
        action: String,
        label: String,
        /// The step's action with every `${...}` resolved (secrets stay references).
        spec: serde_json::Value,
        attempt: u32,
    },
    StepFinished {
        #[serde(flatten)]
        key: CaseKey,
        phase: Phase,
        index: usize,
        attempt: u32,
        verdict: Verdict,
        /// One sentence a tester reads: what was checked and what was found.
        message: String,
        /// What the step observed (its output, or the error), as recorded evidence.
        output: serde_json::Value,
        /// Agent events of this step: sequence numbers `first_seq..=last_seq` (none if first > last).
        first_seq: u64,
        last_seq: u64,
    },
    CaseFinished {
        #[serde(flatten)]
        key: CaseKey,
        verdict: Verdict,
        rollup: Rollup,
        /// Checks that reached the device and passed (a PASS needs at least one).
        checks_passed: usize,
        #[serde(default)]
        skip_reason: Option<String>,
        /// Why the case could not run on the device (the rig lacks what it needs):
        /// the case is ERROR and no step ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unready: Option<String>,
    },
    RunFinished {
        verdict: Verdict,
        rollup: Rollup,
        /// RFC 3339, UTC.
        ended: String,
        aborted: bool,
    },
    /// The journal's head, signed with the lab's key while the run goes (after
    /// RunStarted, each CaseFinished and RunFinished, and whenever records stood
    /// unsigned for 10 s), so a run that never seals still carries signed evidence up
    /// to here. `verify` checks it; it decides no verdict.
    Checkpoint(Checkpoint),
    /// Written by `proofrig seal` at the end of a run that stopped without finishing
    /// (killed, crashed, forced to quit), before sealing it: the run's own records end
    /// before this one, and whatever was open did not finish, its restore steps included.
    RunSealedIncomplete(SealedIncomplete),
}

/// A signature over the journal's head: the first `records` records, the last of
/// which hashes to `head_sha256`. The signed bytes are the DSSE encoding of
/// [`crate::checkpoint::PAYLOAD_TYPE`] and `{"records":..,"head_sha256":..,"at":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// How many records it signs: the ones before it.
    pub records: u64,
    /// Hex SHA-256 of the last record it signs.
    pub head_sha256: String,
    /// When it was signed, RFC 3339, UTC (signed too).
    pub at: String,
    /// `ed25519:SHA256:...` of the signing key.
    pub keyid: String,
    /// The signer's public key (base64, raw 32 bytes), so an unpinned check can still
    /// show who signed; trust comes from `--key`, not from this field.
    pub public_key: String,
    /// Base64 Ed25519 signature.
    pub sig: String,
}

/// What `proofrig seal` records about a run that stopped without finishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedIncomplete {
    /// When it was sealed, RFC 3339, UTC.
    pub sealed: String,
    /// The last checkpoint the run itself wrote (its record number), if any: how far
    /// its records were signed before sealing.
    pub signed_through: Option<u64>,
    /// The case that had started and not finished, if one had.
    pub open_case: Option<CaseKey>,
    /// The step that had started and not finished, if one had.
    pub open_step: Option<OpenStep>,
    /// The other cases that had started and not finished, each with its open step:
    /// a run whose devices ran side by side stops with a case open on each. Absent
    /// when one case or none was open (and in bundles from before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_open: Vec<OpenCase>,
    /// Bytes of a record cut off mid-write at the journal's end, removed before sealing.
    pub dropped_bytes: u64,
    /// The run's verdict: its cases' worst, and at least ABORTED.
    pub verdict: Verdict,
    pub rollup: Rollup,
    /// One sentence a person reads: what stopped, and what did not run.
    pub note: String,
}

/// A case that started and did not finish, and its step that had, if one had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCase {
    pub case: CaseKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<OpenStep>,
}

impl SealedIncomplete {
    /// Every case it names as open, with its open step: `open_case`, then `also_open`.
    pub fn open(&self) -> impl Iterator<Item = (&CaseKey, Option<&OpenStep>)> {
        let first = self.open_case.as_ref().map(|key| (key, self.open_step.as_ref()));
        first.into_iter().chain(self.also_open.iter().map(|o| (&o.case, o.step.as_ref())))
    }
}

/// A step that started and did not finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenStep {
    pub phase: Phase,
    pub index: usize,
    pub attempt: u32,
    pub action: String,
    pub label: String,
}

impl JournalEntry {
    /// The entry's `type` as the journal spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            JournalEntry::RunStarted { .. } => "run_started",
            JournalEntry::Event { .. } => "event",
            JournalEntry::DeviceReported { .. } => "device_reported",
            JournalEntry::CaseStarted { .. } => "case_started",
            JournalEntry::StepStarted { .. } => "step_started",
            JournalEntry::StepFinished { .. } => "step_finished",
            JournalEntry::CaseFinished { .. } => "case_finished",
            JournalEntry::RunFinished { .. } => "run_finished",
            JournalEntry::Checkpoint(_) => "checkpoint",
            JournalEntry::RunSealedIncomplete(_) => "run_sealed_incomplete",
        }
    }
}

/// [`JournalEntry::Event`], borrowing its event: serializes to the same bytes without
/// copying the event (a console chunk) first.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventEntry<'a> {
    Event { event: &'a Event },
}

/// [`JournalEntry::StepStarted`] and [`JournalEntry::StepFinished`], borrowing their
/// fields: the executor writes two of these per step, and building the owned entries
/// meant copying the case key, the spec and the output only to serialize and drop
/// them. Serializes to the same bytes as the owned entry (same field order, same
/// flattened key).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepEntry<'a> {
    StepStarted {
        #[serde(flatten)]
        key: &'a CaseKey,
        phase: Phase,
        index: usize,
        action: &'a str,
        label: &'a str,
        spec: &'a serde_json::Value,
        attempt: u32,
    },
    StepFinished {
        #[serde(flatten)]
        key: &'a CaseKey,
        phase: Phase,
        index: usize,
        attempt: u32,
        verdict: Verdict,
        message: &'a str,
        output: &'a serde_json::Value,
        first_seq: u64,
        last_seq: u64,
    },
}

/// An agent event handed to the journal owned ([`JournalWriter::append_owned`]): the
/// writer thread serializes it as [`EventEntry`], off the agent's thread.
///
/// [`JournalWriter::append_owned`]: super::journal::JournalWriter::append_owned
#[derive(Debug)]
pub struct EventRecord(pub Event);

impl Serialize for EventRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        EventEntry::Event { event: &self.0 }.serialize(serializer)
    }
}

impl OwnedEntry for EventRecord {
    const AGENT_EVENT: bool = true;

    fn approx_len(&self) -> usize {
        match &self.0.kind {
            // Base64 makes 4 bytes of 3.
            EventKind::Bytes { data, .. } => 200 + data.len() / 3 * 4,
            _ => 200,
        }
    }
}

/// A step record handed to the journal owned ([`JournalWriter::append_owned`]): the
/// writer thread serializes it as the [`StepEntry`] it lends, off the stepping thread.
/// The case key, the spec and the output are shared with the executor, not copied.
///
/// [`JournalWriter::append_owned`]: super::journal::JournalWriter::append_owned
#[derive(Debug)]
pub enum StepRecord {
    Started {
        key: Arc<CaseKey>,
        phase: Phase,
        index: usize,
        action: &'static str,
        label: String,
        spec: Arc<serde_json::Value>,
        attempt: u32,
    },
    Finished {
        key: Arc<CaseKey>,
        phase: Phase,
        index: usize,
        attempt: u32,
        verdict: Verdict,
        message: String,
        output: Arc<serde_json::Value>,
        first_seq: u64,
        last_seq: u64,
    },
}

impl StepRecord {
    pub fn entry(&self) -> StepEntry<'_> {
        match self {
            StepRecord::Started { key, phase, index, action, label, spec, attempt } => {
                StepEntry::StepStarted { key, phase: *phase, index: *index, action, label, spec, attempt: *attempt }
            }
            StepRecord::Finished { key, phase, index, attempt, verdict, message, output, first_seq, last_seq } => StepEntry::StepFinished {
                key,
                phase: *phase,
                index: *index,
                attempt: *attempt,
                verdict: *verdict,
                message,
                output,
                first_seq: *first_seq,
                last_seq: *last_seq,
            },
        }
    }
}

impl Serialize for StepRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entry().serialize(serializer)
    }
}

impl OwnedEntry for StepRecord {
    fn approx_len(&self) -> usize {
        // Most are a few hundred bytes; a big output is rare and bounded by the step.
        512
    }
}

/// A step as reports show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub phase: Phase,
    pub index: usize,
    pub label: String,
    pub action: String,
    pub verdict: Verdict,
    pub message: String,
    /// Journal record number of the StepFinished record (for "see record N").
    pub record: u64,
    pub duration_ms: u64,
}

impl CaseResult {
    /// The case's SCAS reference as reports show it; for a case that is no SCAS test
    /// case (a health check), no document or clause and its id as the test name.
    pub fn scas_shown(&self) -> std::borrow::Cow<'_, ScasRef> {
        match &self.scas {
            Some(scas) => std::borrow::Cow::Borrowed(scas),
            None => std::borrow::Cow::Owned(ScasRef::none_for(&self.key.case)),
        }
    }
}

/// One case on one device, as reports show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    #[serde(flatten)]
    pub key: CaseKey,
    pub title: String,
    /// Absent for a case that is not a SCAS test case (a health check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scas: Option<ScasRef>,
    pub purpose: String,
    pub expected: String,
    pub verdict: Verdict,
    pub skip_reason: Option<String>,
    pub steps: Vec<StepResult>,
    /// The evidence behind the verdict, short enough to read (decisive step output).
    pub evidence_excerpt: String,
    pub duration_ms: u64,
}

/// Declared and reported identity of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    pub device: String,
    pub role: String,
    pub declared: proofrig_model::rig::Identity,
    /// What the device itself reported, where a step read it (free text).
    #[serde(default)]
    pub reported: Option<String>,
}

impl DeviceIdentity {
    /// Every device of `rig` that took part in `cases`, with what it `reported`.
    pub fn of_devices_in(
        rig: &proofrig_model::rig::Rig,
        cases: &[CaseResult],
        reported: impl Fn(&str) -> Option<String>,
    ) -> Vec<DeviceIdentity> {
        rig.devices()
            .filter(|(name, _)| cases.iter().any(|c| c.key.device == *name))
            .map(|(name, d)| DeviceIdentity {
                device: name.to_string(),
                role: d.role.clone(),
                declared: d.identity.clone(),
                reported: reported(name),
            })
            .collect()
    }
}

/// A whole run, as reports and the manifest show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub run_id: String,
    pub proofrig_version: String,
    pub operator: String,
    pub host: String,
    pub rig_name: String,
    pub started: String,
    pub ended: String,
    pub aborted: bool,
    pub verdict: Verdict,
    pub rollup: Rollup,
    pub cases: Vec<CaseResult>,
    pub devices: Vec<DeviceIdentity>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::events::{ChannelId, Direction, EventKind, Timestamp};

    #[test]
    fn a_borrowed_event_entry_is_the_same_json_as_the_owned_one() {
        let event = Event {
            seq: 42,
            at: Timestamp { wall_ns: 1_700_000_000_000_000_000, mono_ns: 17 },
            kind: EventKind::Bytes { channel: ChannelId::new("ru1", "console"), direction: Direction::In, data: b"login: \xff".to_vec() },
        };
        let owned = serde_json::to_string(&JournalEntry::Event { event: event.clone() }).unwrap();
        assert_eq!(serde_json::to_string(&EventEntry::Event { event: &event }).unwrap(), owned);
        assert_eq!(serde_json::to_string(&EventRecord(event)).unwrap(), owned);
    }

    #[test]
    fn borrowed_and_handed_over_step_entries_are_the_same_json_as_the_owned_ones() {
        let key = CaseKey { plan: "p\"lan".into(), case: "TC_\u{e9}".into(), device: "ru1".into() };
        let spec = serde_json::json!({"command": "echo \"x\"\n", "expect_status": 0, "stdin": {"secret": "pw"}});
        let output = serde_json::json!({"stdout": "x\r\n\u{1}", "stderr": "", "exit_status": 0, "exit_signal": null});
        let shared = (Arc::new(key.clone()), Arc::new(spec.clone()), Arc::new(output.clone()));
        for (phase, attempt, verdict) in [(Phase::Steps, 1, Verdict::Pass), (Phase::Restore, 3, Verdict::Infra)] {
            let owned = serde_json::to_string(&JournalEntry::StepStarted {
                key: key.clone(),
                phase,
                index: 7,
                action: "ssh_exec".into(),
                label: "run `x`".into(),
                spec: spec.clone(),
                attempt,
            })
            .unwrap();
            let borrowed =
                StepEntry::StepStarted { key: &key, phase, index: 7, action: "ssh_exec", label: "run `x`", spec: &spec, attempt };
            assert_eq!(serde_json::to_string(&borrowed).unwrap(), owned);
            let handed_over = StepRecord::Started {
                key: shared.0.clone(),
                phase,
                index: 7,
                action: "ssh_exec",
                label: "run `x`".into(),
                spec: shared.1.clone(),
                attempt,
            };
            assert_eq!(serde_json::to_string(&handed_over).unwrap(), owned);

            let message = "SSH command `echo \"x\"` exited 0, as required";
            let owned = serde_json::to_string(&JournalEntry::StepFinished {
                key: key.clone(),
                phase,
                index: 7,
                attempt,
                verdict,
                message: message.into(),
                output: output.clone(),
                first_seq: 12,
                last_seq: 11,
            })
            .unwrap();
            let borrowed = StepEntry::StepFinished {
                key: &key,
                phase,
                index: 7,
                attempt,
                verdict,
                message,
                output: &output,
                first_seq: 12,
                last_seq: 11,
            };
            assert_eq!(serde_json::to_string(&borrowed).unwrap(), owned);
            let handed_over = StepRecord::Finished {
                key: shared.0.clone(),
                phase,
                index: 7,
                attempt,
                verdict,
                message: message.into(),
                output: shared.2.clone(),
                first_seq: 12,
                last_seq: 11,
            };
            assert_eq!(serde_json::to_string(&handed_over).unwrap(), owned);
        }
    }

    #[test]
    fn an_entry_names_its_kind_as_the_journal_spells_it() {
        let rollup = Rollup::of([]);
        let key = CaseKey { plan: "p".into(), case: "c".into(), device: "d".into() };
        let entries = [
            JournalEntry::DeviceReported { device: "d".into(), command: "id".into(), output: String::new(), error: None },
            JournalEntry::CaseFinished {
                key,
                verdict: Verdict::Pass,
                rollup: rollup.clone(),
                checks_passed: 1,
                skip_reason: None,
                unready: None,
            },
            JournalEntry::RunFinished { verdict: Verdict::Pass, rollup: rollup.clone(), ended: "e".into(), aborted: false },
            JournalEntry::Checkpoint(Checkpoint {
                records: 1,
                head_sha256: "00".into(),
                at: "t".into(),
                keyid: "k".into(),
                public_key: "p".into(),
                sig: "s".into(),
            }),
            JournalEntry::RunSealedIncomplete(SealedIncomplete {
                sealed: "t".into(),
                signed_through: None,
                open_case: None,
                open_step: None,
                also_open: Vec::new(),
                dropped_bytes: 0,
                verdict: Verdict::Aborted,
                rollup,
                note: "n".into(),
            }),
        ];
        for entry in entries {
            assert_eq!(serde_json::to_value(&entry).unwrap()["type"], entry.kind());
        }
    }
}
