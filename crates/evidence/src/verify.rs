//! Checking a bundle offline: `proofrig verify`.
//!
//! A regulator runs this without trusting the lab, so every check says what it
//! looked at and, when it fails, which file, journal record or case is wrong. Three
//! outcomes are kept apart because they mean different things to the reader:
//! *verified* (sealed, every byte accounted for, verdicts replay), *incomplete* (the
//! run never sealed: a crash, not a forgery; the journal prefix is checked and its
//! end reported) and *tampered* (something changed after sealing, or the journal was
//! edited). A run signs its journal's head as it goes (checkpoints), so for a run
//! that never sealed `verify` also says how far its journal is signed, and a
//! checkpoint that does not check is tampering; a run sealed after it stopped
//! (`proofrig seal`) is signed whole and still incomplete. Files are hashed
//! streaming with large buffers and the journal is read
//! once: hashed, chain-checked and replayed record by record in the same pass,
//! holding one record at a time (the replay keeps the events of the step it is in),
//! so a bundle with a gigabyte of console transcript verifies at close to disk speed
//! in memory bounded by its largest step, not by its size.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::{Component, Path};
use std::sync::{mpsc, Arc};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::attestation::{
    ScasRunPredicate, Statement, Subject, TestResultPredicate, PAYLOAD_TYPE, SCAS_RUN_PREDICATE, STATEMENT_TYPE, TEST_RESULT_PREDICATE,
};
use crate::bundle::{self, Manifest, ATTESTATION, HASH_BUFFER, JOURNAL, MANIFEST, MANIFEST_FORMAT, RESULTS};
use crate::checkpoint;
use crate::journal::{genesis, ChainBreak, ChainReader, ChainRecord, Hashing, JournalError, JournalLines, OtherEntry};
use crate::record::{Checkpoint, FileRef, JournalEntry, Phase, SealedIncomplete};
use crate::signing::{Envelope, SignatureCheck};
use proofrig_verdict::Verdict;

/// What the replay of a bundle's verdicts starts from: the inputs and the signed
/// proofrig predicate to compare against. The journal comes record by record.
#[derive(Debug, Clone)]
pub struct ReplayInput {
    /// Each plan file: its path in the bundle and its exact bytes.
    pub plans: Vec<(String, Vec<u8>)>,
    /// The rig file's exact bytes.
    pub rig: Vec<u8>,
    /// The `urn:proofrig:predicate:scas-run:v1` predicate as signed.
    pub predicate: serde_json::Value,
}

/// A journal record as `verify` hands it to the replay: numbered and linked to the
/// one before, its entry parsed (or, if it is not a proofrig entry, kept as JSON).
pub type JournalRecord = ChainRecord<JournalEntry>;

/// The first place where recomputed verdicts differ from the recorded or signed ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ReplayMismatch {
    /// The journal record where the difference shows.
    pub record: Option<u64>,
    /// `<plan>/<case>@<device>`.
    pub case: Option<String>,
    pub detail: String,
}

impl fmt::Display for ReplayMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(case) = &self.case {
            write!(f, "case {case}: ")?;
        }
        if let Some(record) = self.record {
            write!(f, "journal record {record}: ")?;
        }
        f.write_str(&self.detail)
    }
}

/// The replay `verify` runs. It pulls the journal's records in order while `verify`
/// reads, hashes and chain-checks them, and may stop at its first disagreement
/// (`verify` reads the rest for the chain and the digest). Its outcome is reported
/// only when every integrity check has passed.
pub type Replay<'a> = &'a dyn Fn(&ReplayInput, &mut dyn Iterator<Item = JournalRecord>) -> Result<(), ReplayMismatch>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Sealed, signed, every file matches, verdicts replay.
    Verified,
    /// Never sealed: the journal prefix was checked, nothing more can be.
    Incomplete,
    /// Something changed after sealing, or the journal itself was edited.
    Tampered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Passed,
    Failed,
    /// Not attempted because an earlier check failed.
    NotRun,
}

/// One thing `verify` looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub state: CheckState,
    /// What was found; on failure, what is wrong and where.
    pub detail: String,
    /// The bundle file concerned, as a path inside the bundle.
    pub file: Option<String>,
    pub record: Option<u64>,
    pub case: Option<String>,
}

impl Check {
    fn new(what: impl Into<String>, state: CheckState, detail: impl Into<String>) -> Self {
        Check { what: what.into(), state, detail: detail.into(), file: None, record: None, case: None }
    }

    fn file(mut self, file: &str) -> Self {
        self.file = Some(file.to_string());
        self
    }

    fn record(mut self, record: Option<u64>) -> Self {
        self.record = record;
        self
    }

    fn case(mut self, case: Option<String>) -> Self {
        self.case = case;
        self
    }

    pub fn passed(&self) -> bool {
        self.state == CheckState::Passed
    }
}

/// Everything `verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub status: Status,
    pub checks: Vec<Check>,
    /// Key id of the key that signed the statements, when a signature checked out.
    pub signer: Option<String>,
    /// Whether the signer is the key given with `--key`.
    pub pinned: bool,
    /// Journal records whose chain holds (for an incomplete run: the verified prefix).
    pub records_verified: Option<u64>,
    /// How far the run itself signed its journal as it went (its last valid checkpoint).
    pub signed_through: Option<SignedExtent>,
    /// One line: why the status is what it is.
    pub summary: String,
}

/// How far a journal is signed by the checkpoints the run wrote as it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedExtent {
    /// The last valid checkpoint's record number: records 0 to this one are signed.
    pub record: u64,
    /// When it was signed (as it says, and signs).
    pub at: String,
    /// The key that signed the checkpoints.
    pub keyid: String,
    /// Checked against the key given with `--key`.
    pub pinned: bool,
    /// How many checkpoints checked out.
    pub checkpoints: u64,
}

impl VerifyReport {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.state == CheckState::Failed)
    }
}

/// Check the bundle in `bundle_dir`. `pinned` is the lab's public key (`--key`);
/// without it the signatures are checked against the key they carry and the
/// report says that nobody vouched for that key. `replay` recomputes the verdicts.
pub fn verify(bundle_dir: &Path, pinned: Option<&VerifyingKey>, replay: Replay<'_>) -> VerifyReport {
    let mut v = Verifier { dir: bundle_dir, checks: Vec::new(), signer: None, pinned: false, records_verified: None, signed_through: None };
    match std::fs::symlink_metadata(bundle_dir.join(ATTESTATION)) {
        Ok(meta) if meta.is_file() => {
            v.pass("attestation present", ATTESTATION, format!("{ATTESTATION} ({} bytes)", meta.len()));
        }
        Ok(_) => {
            v.fail("attestation present", ATTESTATION, format!("{ATTESTATION} is not a regular file"));
            return v.finish(None);
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => return v.unsealed(pinned),
        Err(err) => {
            v.fail("attestation present", ATTESTATION, format!("cannot read {ATTESTATION}: {err}"));
            return v.finish(None);
        }
    }
    v.sealed(pinned, replay)
}

struct Verifier<'a> {
    dir: &'a Path,
    checks: Vec<Check>,
    signer: Option<String>,
    pinned: bool,
    records_verified: Option<u64>,
    signed_through: Option<SignedExtent>,
}

/// The journal as read in its single pass.
struct JournalPass {
    digest: Option<(String, u64)>,
    chain: Result<Result<ChainSummary, ChainBreak>, JournalError>,
    /// What its checkpoints showed (of the records read: all of them, unless the chain broke).
    checkpoints: CheckpointWalk,
    /// What the replay found; `None` when it could not start (its inputs were unreadable).
    replay: Option<Result<(), ReplayMismatch>>,
}

/// What the checks need of an intact chain, kept while its records stream past.
struct ChainSummary {
    head: [u8; 32],
    records: u64,
    /// Record 0's entry.
    first: Option<serde_json::Value>,
    /// The last record that is no checkpoint.
    last: Option<LastRecord>,
    /// The record `proofrig seal` appends to a run that stopped, if it is there.
    sealed_incomplete: Option<(u64, SealedIncomplete)>,
}

/// The last record read: its number, its entry's type and, for RunFinished, its verdict.
struct LastRecord {
    n: u64,
    kind: String,
    verdict: Option<String>,
}

impl LastRecord {
    fn of(n: u64, entry: &Result<JournalEntry, OtherEntry>) -> Self {
        let (kind, verdict) = match entry {
            Ok(entry) => (
                entry.kind().to_string(),
                match entry {
                    JournalEntry::RunFinished { verdict, .. } => Some(verdict.as_str().to_string()),
                    JournalEntry::RunSealedIncomplete(sealed) => Some(sealed.verdict.as_str().to_string()),
                    _ => None,
                },
            ),
            Err(other) => (entry_type(&other.value).to_string(), other.value["verdict"].as_str().map(String::from)),
        };
        LastRecord { n, kind, verdict }
    }
}

/// The records as they stream to the replay, noting what [`ChainSummary`] needs and
/// checking the checkpoints.
struct Tracked<I> {
    records: I,
    first: Option<serde_json::Value>,
    last: Option<LastRecord>,
    sealed_incomplete: Option<(u64, SealedIncomplete)>,
    checkpoints: CheckpointWalk,
}

impl<I: Iterator<Item = JournalRecord>> Iterator for Tracked<I> {
    type Item = JournalRecord;

    fn next(&mut self) -> Option<JournalRecord> {
        let record = self.records.next()?;
        if record.n == 0 {
            self.first = Some(match &record.entry {
                Ok(entry) => serde_json::to_value(entry).unwrap_or_default(),
                Err(other) => other.value.clone(),
            });
        }
        let (kind, checkpoint) = match &record.entry {
            Ok(JournalEntry::Checkpoint(checkpoint)) => ("checkpoint", Some(Ok(checkpoint))),
            Ok(entry) => (entry.kind(), None),
            Err(other) => match entry_type(&other.value) {
                "checkpoint" => ("checkpoint", Some(Err(other.reason.clone()))),
                kind => (kind, None),
            },
        };
        self.checkpoints.record(record.n, record.hash, kind, checkpoint);
        if kind != "checkpoint" {
            self.last = Some(LastRecord::of(record.n, &record.entry));
        }
        if let Ok(JournalEntry::RunSealedIncomplete(sealed)) = &record.entry {
            self.sealed_incomplete = Some((record.n, sealed.clone()));
        }
        Some(record)
    }
}

/// The checkpoints of a journal, checked record by record as it streams past.
///
/// Each must sign exactly the records before it, with one key (the pinned one when
/// given). A run that signs as it goes writes one right after RunStarted, so when
/// record 1 is a checkpoint, RunStarted, every CaseFinished and RunFinished must be
/// followed by one at once (or by the end of what the run wrote): otherwise one was
/// removed, to move the signed extent back before an edit.
pub(crate) struct CheckpointWalk {
    pinned: Option<VerifyingKey>,
    /// Hash of the record before the current one.
    prev: [u8; 32],
    signing_run: bool,
    /// A record a checkpoint must follow at once: its number and kind.
    owed: Option<(u64, &'static str)>,
    count: u64,
    last: Option<(u64, String)>,
    keyids: BTreeSet<String>,
    all_pinned: bool,
    /// The first checkpoint that does not check, or the first one missing.
    pub(crate) failure: Option<(u64, String)>,
}

impl CheckpointWalk {
    pub(crate) fn new(pinned: Option<&VerifyingKey>) -> Self {
        CheckpointWalk {
            pinned: pinned.copied(),
            prev: genesis(),
            signing_run: false,
            owed: None,
            count: 0,
            last: None,
            keyids: BTreeSet::new(),
            all_pinned: true,
            failure: None,
        }
    }

    /// Record `n`, hashed `hash`, of type `kind`; for a checkpoint, the checkpoint (or
    /// why its entry is not one).
    pub(crate) fn record(&mut self, n: u64, hash: [u8; 32], kind: &str, checkpoint: Option<Result<&Checkpoint, String>>) {
        if n == 1 {
            self.signing_run = kind == "checkpoint";
        }
        if let Some((owed, owed_kind)) = self.owed.take() {
            if self.signing_run && kind != "checkpoint" && kind != "run_sealed_incomplete" {
                self.fail(
                    n,
                    format!(
                        "record {owed} ({owed_kind}) is not followed by a checkpoint, though this run signed its journal as it went and writes one there: a checkpoint was removed"
                    ),
                );
            }
        }
        match (kind, checkpoint) {
            ("checkpoint", Some(Ok(checkpoint))) => match checkpoint::check(checkpoint, n, &self.prev, self.pinned.as_ref()) {
                Ok(signed) => {
                    self.count += 1;
                    self.last = Some((n, checkpoint.at.clone()));
                    self.all_pinned &= signed.pinned;
                    self.keyids.insert(signed.keyid);
                    if self.keyids.len() > 1 {
                        let keys = self.keyids.iter().cloned().collect::<Vec<_>>().join(", ");
                        self.fail(n, format!("the checkpoints are signed by different keys: {keys}"));
                    }
                }
                Err(why) => self.fail(n, why),
            },
            ("checkpoint", Some(Err(why))) => self.fail(n, format!("its entry is not a checkpoint: {why}")),
            ("checkpoint", None) => self.fail(n, "its entry is not a checkpoint".into()),
            ("run_started", _) => self.owed = Some((n, "RunStarted")),
            ("case_finished", _) => self.owed = Some((n, "CaseFinished")),
            ("run_finished", _) => self.owed = Some((n, "RunFinished")),
            _ => {}
        }
        self.prev = hash;
    }

    fn fail(&mut self, n: u64, why: String) {
        self.failure.get_or_insert((n, why));
    }

    /// How far the journal is signed, if any checkpoint checked out and none failed.
    pub(crate) fn extent(&self) -> Option<SignedExtent> {
        if self.failure.is_some() {
            return None;
        }
        let (record, at) = self.last.clone()?;
        Some(SignedExtent {
            record,
            at,
            keyid: self.keyids.iter().next().cloned().unwrap_or_default(),
            pinned: self.all_pinned && self.pinned.is_some(),
            checkpoints: self.count,
        })
    }
}

/// Only an entry's `type` (and a checkpoint's fields), for walking a journal without
/// decoding its records.
#[derive(serde::Deserialize)]
struct EntryKind {
    #[serde(rename = "type", default)]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    records: Option<u64>,
    #[serde(default)]
    head_sha256: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    keyid: Option<String>,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    sig: Option<String>,
}

impl EntryKind {
    /// The checkpoint this entry is, or why it is none.
    fn checkpoint(self) -> Result<Checkpoint, String> {
        match (self.records, self.head_sha256, self.at, self.keyid, self.public_key, self.sig) {
            (Some(records), Some(head_sha256), Some(at), Some(keyid), Some(public_key), Some(sig)) => {
                Ok(Checkpoint { records, head_sha256, at, keyid, public_key, sig })
            }
            _ => Err("a field of a checkpoint is missing".into()),
        }
    }
}

/// The attestation, parsed.
struct Sealed {
    envelopes: Vec<(usize, Envelope)>,
    test_result: Statement<TestResultPredicate>,
    scas: Statement<ScasRunPredicate>,
    scas_value: serde_json::Value,
}

impl<'a> Verifier<'a> {
    fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    fn pass(&mut self, what: &str, file: &str, detail: impl Into<String>) {
        self.push(Check::new(what, CheckState::Passed, detail).file(file));
    }

    fn fail(&mut self, what: &str, file: &str, detail: impl Into<String>) {
        self.push(Check::new(what, CheckState::Failed, detail).file(file));
    }

    fn not_run(&mut self, what: &str, why: &str) {
        self.push(Check::new(what, CheckState::NotRun, why));
    }

    fn finish(self, incomplete: Option<String>) -> VerifyReport {
        let first_failure = self.checks.iter().find(|c| c.state == CheckState::Failed);
        let (status, summary) = match (incomplete, first_failure) {
            (Some(why), None) => (Status::Incomplete, why),
            (_, Some(check)) => (Status::Tampered, format!("{}: {}", check.what, check.detail)),
            (None, None) => (Status::Verified, "every check passed".to_string()),
        };
        VerifyReport {
            status,
            checks: self.checks,
            signer: self.signer,
            pinned: self.pinned,
            records_verified: self.records_verified,
            signed_through: self.signed_through,
            summary,
        }
    }

    /// Note how far the run signed its journal; a checkpoint that does not check is a failure.
    /// `sealed`: the statements sign the whole journal, so a journal without
    /// checkpoints (from before them) is no concern.
    fn check_checkpoints(&mut self, walk: &CheckpointWalk, records: u64, sealed: bool) -> Option<SignedExtent> {
        let what = "journal checkpoints";
        if let Some((n, why)) = &walk.failure {
            self.push(Check::new(what, CheckState::Failed, format!("{JOURNAL} record {n}: {why}")).file(JOURNAL).record(Some(*n)));
            return None;
        }
        let Some(extent) = walk.extent() else {
            if sealed {
                return None;
            }
            self.push(
                Check::new(what, CheckState::NotRun, format!("{JOURNAL} holds no checkpoint: the run did not sign its journal as it went"))
                    .file(JOURNAL),
            );
            return None;
        };
        let unsigned = records.saturating_sub(extent.record + 1);
        self.pass(
            what,
            JOURNAL,
            format!(
                "{} checkpoint(s) by {}{}; signed through record {} of {records} (at {}){}",
                extent.checkpoints,
                extent.keyid,
                if extent.pinned { " (pinned)" } else { " (UNPINNED)" },
                extent.record,
                extent.at,
                match unsigned {
                    0 => String::new(),
                    n => format!(", {n} record(s) after it"),
                }
            ),
        );
        self.signed_through = Some(extent.clone());
        Some(extent)
    }

    /// No attestation: a run that never sealed, unless the journal itself is broken.
    /// Its checkpoints say how far it is signed.
    fn unsealed(mut self, pinned: Option<&VerifyingKey>) -> VerifyReport {
        let journal_path = self.dir.join(JOURNAL);
        if !journal_path.exists() {
            self.fail(
                "attestation present",
                ATTESTATION,
                format!("neither {ATTESTATION} nor {JOURNAL} exists: this is not a proofrig bundle, or its files were removed"),
            );
            return self.finish(None);
        }
        self.push(
            Check::new(
                "attestation present",
                CheckState::NotRun,
                format!("no {ATTESTATION}: the run was never sealed, so only the journal can be checked"),
            )
            .file(ATTESTATION),
        );
        let what = "journal prefix chain intact";
        let mut walk = CheckpointWalk::new(pinned);
        let chain = File::open(&journal_path)
            .map_err(|source| JournalError::Read { path: journal_path.display().to_string(), source })
            .and_then(|file| {
                let reader = io::BufReader::with_capacity(HASH_BUFFER, file);
                let mut records = ChainReader::<_, EntryKind>::new(Hashing(reader), &journal_path.display().to_string());
                let mut last = None;
                for record in records.by_ref() {
                    let (kind, checkpoint) = match record.entry {
                        Ok(entry) => {
                            let kind = entry.kind.as_ref().and_then(|k| k.as_str()).unwrap_or("an untyped record").to_string();
                            let checkpoint = (kind == "checkpoint").then(|| entry.checkpoint());
                            (kind, checkpoint)
                        }
                        Err(other) => (entry_type(&other.value).to_string(), None),
                    };
                    walk.record(record.n, record.hash, &kind, checkpoint.as_ref().map(|c| c.as_ref().map_err(Clone::clone)));
                    if kind != "checkpoint" {
                        last = Some((record.n, kind));
                    }
                }
                Ok(records.finish()?.map(|(_, count)| (count, last)))
            });
        let sealing_started = [MANIFEST, RESULTS].iter().any(|f| self.dir.join(f).exists());
        let sealing_note = if sealing_started {
            format!(" {MANIFEST} or {RESULTS} exists, so sealing started and did not finish, or the attestation was removed.")
        } else {
            String::new()
        };
        let (count, end) = match chain {
            Err(err) => {
                self.fail(what, JOURNAL, format!("cannot read {JOURNAL}: {err}"));
                return self.finish(None);
            }
            Ok(Ok((count, last))) => {
                self.records_verified = Some(count);
                let end = match last {
                    Some((n, kind)) => format!(
                        "it ends after record {n} ({kind}){}",
                        if kind == "run_finished" {
                            ": the run finished but was never sealed"
                        } else {
                            ": the run stopped before it finished"
                        }
                    ),
                    None => "it is empty: the run stopped before recording anything".to_string(),
                };
                self.pass(what, JOURNAL, format!("{count} record(s) verify; {end}"));
                (count, format!("{end}.{sealing_note}"))
            }
            Ok(Err(ChainBreak::TruncatedRecord { n, line })) => {
                self.records_verified = Some(n);
                self.pass(
                    what,
                    JOURNAL,
                    format!("{n} record(s) verify; record {n} (line {line}) was cut off mid-write, as a crash leaves it"),
                );
                (n, format!("the journal ends in the middle of record {n} (line {line}): the run was cut short.{sealing_note}"))
            }
            Ok(Err(brk)) => {
                self.push(
                    Check::new(what, CheckState::Failed, format!("{JOURNAL}: {brk}; an edited or removed record, not a crash"))
                        .file(JOURNAL)
                        .record(Some(break_record(&brk))),
                );
                self.records_verified = Some(break_record(&brk));
                return self.finish(None);
            }
        };
        let signed = match self.check_checkpoints(&walk, count, false) {
            Some(extent) => {
                self.signer = Some(extent.keyid.clone());
                self.pinned = extent.pinned;
                let unsigned = count.saturating_sub(extent.record + 1);
                format!(
                    "signed through record {} of {count} (at {}) by {}{}; {}",
                    extent.record,
                    extent.at,
                    extent.keyid,
                    if extent.pinned { "" } else { " (UNPINNED)" },
                    match unsigned {
                        0 => "no record after it".to_string(),
                        n => format!(
                            "the {n} record(s) after it (records {} to {}) are unsigned: anyone with write access could have changed them",
                            extent.record + 1,
                            count - 1
                        ),
                    }
                )
            }
            None => {
                "no record of it is signed: the journal holds no valid checkpoint, so anyone with write access could have written all of it"
                    .to_string()
            }
        };
        self.check_unsealed_inputs(&journal_path);
        self.finish(Some(format!("the run was never sealed; {count} journal record(s) verify; {signed}; {end}")))
    }

    /// Even unsealed, the inputs are bound to the journal: RunStarted names their digests.
    fn check_unsealed_inputs(&mut self, journal_path: &Path) {
        let what = "inputs are the ones the journal names";
        let mut first = Vec::new();
        let read = File::open(journal_path).and_then(|f| io::BufReader::new(f).read_until(b'\n', &mut first));
        let entry = match read {
            Ok(_) => serde_json::from_slice::<serde_json::Value>(&first).ok().map(|mut v| v["entry"].take()),
            Err(err) => return self.fail(what, JOURNAL, format!("cannot read {JOURNAL}: {err}")),
        };
        let Some(entry) = entry.filter(|e| entry_type(e) == "run_started") else {
            return self.not_run(what, "the journal does not start with RunStarted");
        };
        let Ok(mut inputs) = serde_json::from_value::<Vec<FileRef>>(entry["plans"].clone()) else {
            return self.fail(what, JOURNAL, format!("{JOURNAL} record 0: RunStarted does not list its plans"));
        };
        match serde_json::from_value::<FileRef>(entry["rig"].clone()) {
            Ok(rig) => inputs.push(rig),
            Err(_) => return self.fail(what, JOURNAL, format!("{JOURNAL} record 0: RunStarted does not name its rig")),
        }
        for input in &inputs {
            let path = input.path.as_str();
            if let Err(why) = safe_bundle_path(path) {
                return self.fail(what, JOURNAL, format!("{JOURNAL} record 0: the input `{path}` {why}"));
            }
            match bundle::sha256_file(&self.dir.join(path)) {
                Ok((digest, _)) if digest.eq_ignore_ascii_case(&input.sha256) => {}
                Ok(_) => return self.fail(what, path, format!("{path} differs from the file RunStarted (record 0) names")),
                Err(err) => return self.fail(what, path, format!("cannot read {path}: {err}")),
            }
        }
        self.pass(what, JOURNAL, format!("{} input file(s) match RunStarted (record 0)", inputs.len()));
    }

    fn sealed(mut self, pinned: Option<&VerifyingKey>, replay: Replay<'_>) -> VerifyReport {
        let Some(sealed) = self.read_attestation() else {
            for what in ["signatures", "file digests", "journal", "replay"] {
                self.not_run(what, "the attestation could not be read");
            }
            return self.finish(None);
        };
        self.check_signatures(&sealed, pinned);

        let subjects = &sealed.scas.subject;
        if sealed.test_result.subject == *subjects {
            self.pass("both statements cover the same files", ATTESTATION, format!("{} files", subjects.len()));
        } else {
            self.fail(
                "both statements cover the same files",
                ATTESTATION,
                "the test-result and proofrig statements list different files or digests",
            );
        }
        let predicate = &sealed.scas.predicate;
        self.check_required_subjects(subjects, predicate);

        let replay_input = self.replay_input(predicate, sealed.scas_value);
        let journal = self.journal_pass(pinned, replay_input.as_ref().ok().map(|input| (input, replay)));
        self.check_digests(subjects, &journal);
        self.check_no_extra_files(subjects);
        self.check_manifest(subjects, predicate);
        self.check_results(predicate);
        let mut expected = predicate.test_result();
        expected.url = sealed.test_result.predicate.url.clone();
        if expected == sealed.test_result.predicate {
            self.pass(
                "the two statements agree",
                ATTESTATION,
                format!("test result {} with the same passed, warned and failed tests", expected.result),
            );
        } else {
            self.fail(
                "the two statements agree",
                ATTESTATION,
                "the test-result statement's result, configuration or test lists differ from the proofrig statement's cases",
            );
        }

        if !self.check_journal(&journal, predicate) {
            self.not_run("replay", "the journal does not verify, so there is nothing to replay");
            return self.finish(None);
        }
        let sealed_incomplete = journal.chain.as_ref().ok().and_then(|c| c.as_ref().ok()).and_then(|c| c.sealed_incomplete.clone());
        let records = self.records_verified.unwrap_or(0);
        let extent = self.check_checkpoints(&journal.checkpoints, records, true);
        self.check_checkpoint_signer(extent.as_ref(), sealed_incomplete.as_ref());
        let replayed = match (replay_input, journal.replay) {
            (Err(check), _) => {
                self.push(check);
                return self.finish(None);
            }
            (Ok(_), replayed) => replayed.expect("the replay ran: its inputs were read"),
        };
        let what = "verdicts replay from the journal";
        match replayed {
            Ok(()) => self.push(Check::new(
                what,
                CheckState::Passed,
                format!("{} case verdict(s) and the run verdict {} agree with the journal", predicate.cases.len(), predicate.verdict),
            )),
            Err(mismatch) => self.push(
                Check::new(what, CheckState::Failed, mismatch.to_string())
                    .file(JOURNAL)
                    .record(mismatch.record)
                    .case(mismatch.case.clone()),
            ),
        }
        let incomplete = sealed_incomplete.map(|(n, sealed)| sealed_incomplete_summary(n, &sealed, extent.as_ref()));
        self.finish(incomplete)
    }

    /// The checkpoints and the statements are signed by one key, and the seal record of
    /// a run sealed after it stopped names the run's own last checkpoint.
    fn check_checkpoint_signer(&mut self, extent: Option<&SignedExtent>, sealed: Option<&(u64, SealedIncomplete)>) {
        let what = "checkpoints signed by the bundle's signer";
        if let (Some(extent), Some(signer)) = (extent, self.signer.clone()) {
            if extent.keyid == signer {
                self.pass(what, JOURNAL, format!("{signer} signed the checkpoints and the statements"));
            } else {
                self.fail(what, JOURNAL, format!("the checkpoints are signed by {} but the statements by {signer}", extent.keyid));
            }
        }
        if let Some((n, sealed)) = sealed {
            let found = extent.map(|e| e.record);
            if sealed.signed_through != found {
                let say = |r: Option<u64>| r.map_or("no checkpoint".to_string(), |r| format!("record {r}"));
                self.push(
                    Check::new(
                        "seal record names the run's last checkpoint",
                        CheckState::Failed,
                        format!(
                            "{JOURNAL} record {n}: it says the run signed through {} but its last checkpoint is {}",
                            say(sealed.signed_through),
                            say(found)
                        ),
                    )
                    .file(JOURNAL)
                    .record(Some(*n)),
                );
            }
        }
    }

    fn read_attestation(&mut self) -> Option<Sealed> {
        let what = "attestation holds two in-toto statements";
        let bytes = match std::fs::read(self.dir.join(ATTESTATION)) {
            Ok(bytes) => bytes,
            Err(err) => {
                self.fail(what, ATTESTATION, format!("cannot read {ATTESTATION}: {err}"));
                return None;
            }
        };
        match parse_attestation(&bytes) {
            Ok(sealed) => {
                self.pass(what, ATTESTATION, "a test-result statement and a proofrig statement, as DSSE envelopes");
                Some(sealed)
            }
            Err(detail) => {
                self.fail(what, ATTESTATION, format!("{ATTESTATION}: {detail}"));
                None
            }
        }
    }

    fn check_signatures(&mut self, sealed: &Sealed, pinned: Option<&VerifyingKey>) {
        let mut signers = BTreeSet::new();
        let mut all_pinned = pinned.is_some();
        let mut failed = false;
        for (line, envelope) in &sealed.envelopes {
            let label = match statement_kind(envelope) {
                Some(TEST_RESULT_PREDICATE) => "test-result statement",
                _ => "proofrig statement",
            };
            let what = format!("signature of the {label}");
            match check_envelope(envelope, pinned) {
                Ok(SignatureCheck::Pinned { keyid }) => {
                    self.pass(&what, ATTESTATION, format!("signed by the pinned key {keyid}"));
                    signers.insert(keyid);
                }
                Ok(SignatureCheck::Unpinned { keyid }) => {
                    self.pass(&what, ATTESTATION, format!("validly signed by {keyid}, a key nobody pinned (UNPINNED)"));
                    signers.insert(keyid);
                    all_pinned = false;
                }
                Ok(SignatureCheck::Invalid { reason }) | Err(reason) => {
                    all_pinned = false;
                    failed = true;
                    // Say who did sign, if anyone validly did: that is what a reader asks next.
                    let actual = match (pinned, envelope.check(None)) {
                        (Some(_), SignatureCheck::Unpinned { keyid }) => format!(" (it is validly signed by {keyid})"),
                        _ => String::new(),
                    };
                    self.fail(&what, ATTESTATION, format!("{ATTESTATION} line {line}: {reason}{actual}"));
                }
            }
        }
        if signers.len() > 1 {
            self.fail(
                "one signer for both statements",
                ATTESTATION,
                format!("the statements are signed by different keys: {}", signers.iter().cloned().collect::<Vec<_>>().join(", ")),
            );
        }
        if signers.len() == 1 && !failed {
            self.signer = signers.into_iter().next();
            self.pinned = all_pinned;
        }
    }

    fn check_required_subjects(&mut self, subjects: &[Subject], predicate: &ScasRunPredicate) {
        let what = "the statements cover the run's files";
        let mut required: Vec<&str> = vec![JOURNAL, MANIFEST, RESULTS, predicate.rig.path.as_str()];
        required.extend(predicate.plans.iter().map(|p| p.path.as_str()));
        let names: BTreeSet<&str> = subjects.iter().map(|s| s.name.as_str()).collect();
        let missing: Vec<&str> = required.into_iter().filter(|r| !names.contains(r)).collect();
        let duplicates = names.len() != subjects.len();
        if !missing.is_empty() {
            self.fail(what, ATTESTATION, format!("the signed subjects do not include {}", missing.join(", ")));
        } else if duplicates {
            self.fail(what, ATTESTATION, "a file is listed twice among the signed subjects");
        } else {
            self.pass(what, ATTESTATION, "journal, inputs, results and manifest are all signed");
        }
    }

    /// Hash the journal, check its chain and feed `replay` its records, in one read
    /// of the file, one record at a time.
    fn journal_pass(&self, pinned: Option<&VerifyingKey>, replay: Option<(&ReplayInput, Replay<'_>)>) -> JournalPass {
        let path = self.dir.join(JOURNAL);
        let name = path.display().to_string();
        let read_error = |source| JournalPass {
            digest: None,
            chain: Err(JournalError::Read { path: name.clone(), source }),
            checkpoints: CheckpointWalk::new(pinned),
            replay: None,
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(source) => return read_error(source),
        };
        // One thread reads and digests the file while this one checks the chain
        // (which hashes each line again and parses it) and replays: on a bundle with a
        // large transcript that is most of verify's time.
        let (chunks, received) = mpsc::sync_channel::<Block>(8);
        std::thread::scope(|scope| {
            let digester = scope.spawn(move || digest_and_forward(file, chunks));
            let reader = ChainReader::<_, JournalEntry>::new(ChunkReader::new(received), &name);
            let mut records =
                Tracked { records: reader, first: None, last: None, sealed_incomplete: None, checkpoints: CheckpointWalk::new(pinned) };
            let replayed = replay.map(|(input, replay)| replay(input, &mut records));
            // Whatever the replay left: the chain and the digest need every record.
            records.by_ref().for_each(drop);
            let Tracked { records: reader, first, last, sealed_incomplete, checkpoints } = records;
            let chain =
                reader.finish().map(|chain| chain.map(|(head, records)| ChainSummary { head, records, first, last, sealed_incomplete }));
            match digester.join() {
                Ok(Ok(digest)) => JournalPass { digest: Some(digest), chain, checkpoints, replay: replayed },
                Ok(Err(source)) => read_error(source),
                Err(_) => read_error(io::Error::other("the journal digest thread panicked")),
            }
        })
    }

    fn check_digests(&mut self, subjects: &[Subject], journal: &JournalPass) {
        for subject in subjects {
            let name = subject.name.as_str();
            let what = format!("{name} matches its signed digest");
            if let Err(why) = safe_bundle_path(name) {
                self.fail(&what, ATTESTATION, format!("the signed subject `{name}` {why}"));
                continue;
            }
            let Some(expected) = subject.sha256_hex() else {
                self.fail(&what, ATTESTATION, format!("the signed subject `{name}` has no sha256 digest"));
                continue;
            };
            let path = self.dir.join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => {
                    self.fail(&what, name, format!("{name} is not a regular file"));
                    continue;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    self.fail(&what, name, format!("{name} is missing from the bundle"));
                    continue;
                }
                Err(err) => {
                    self.fail(&what, name, format!("cannot read {name}: {err}"));
                    continue;
                }
            }
            let actual = if name == JOURNAL {
                journal.digest.clone().ok_or_else(|| match &journal.chain {
                    Err(err) => err.to_string(),
                    Ok(_) => "cannot read the journal".to_string(),
                })
            } else {
                bundle::sha256_file(&path).map_err(|err| format!("cannot read {name}: {err}"))
            };
            match actual {
                Ok((digest, size)) if digest.eq_ignore_ascii_case(expected) => {
                    self.pass(&what, name, format!("sha256 {} ({size} bytes)", short(&digest)));
                }
                Ok((digest, _)) => self.fail(
                    &what,
                    name,
                    format!("{name} was changed after sealing: sha256 is {} but {} was signed", short(&digest), short(expected)),
                ),
                Err(detail) => self.fail(&what, name, detail),
            }
        }
    }

    fn check_no_extra_files(&mut self, subjects: &[Subject]) {
        let what = "no unsigned files in the bundle";
        let listed: BTreeSet<&str> = subjects.iter().map(|s| s.name.as_str()).collect();
        match bundle::list_files(self.dir) {
            Err(err) => self.fail(what, ".", format!("cannot list {}: {err}", self.dir.display())),
            Ok(entries) => {
                let extra: Vec<String> =
                    entries.into_iter().filter(|e| e.path != ATTESTATION && !listed.contains(e.path.as_str())).map(|e| e.path).collect();
                match extra.first() {
                    None => self.pass(what, ".", "every file is covered by the signatures"),
                    Some(first) => {
                        let file = first.clone();
                        self.fail(what, &file, format!("not covered by the signatures: {}", extra.join(", ")));
                    }
                }
            }
        }
    }

    fn check_manifest(&mut self, subjects: &[Subject], predicate: &ScasRunPredicate) {
        let what = "manifest agrees with the statements";
        let manifest: Manifest = match read_json(&self.dir.join(MANIFEST)) {
            Ok(manifest) => manifest,
            Err(err) => return self.fail(what, MANIFEST, format!("{MANIFEST}: {err}")),
        };
        let mut differences = Vec::new();
        if manifest.format != MANIFEST_FORMAT {
            differences.push(format!("format is `{}`, expected `{MANIFEST_FORMAT}`", manifest.format));
        }
        if manifest.run_id != predicate.run_id {
            differences.push(format!("run id `{}` vs `{}`", manifest.run_id, predicate.run_id));
        }
        if manifest.rig != predicate.rig {
            differences.push("the rig".to_string());
        }
        if manifest.plans != predicate.plans {
            differences.push("the plans".to_string());
        }
        if manifest.journal != predicate.journal {
            differences.push("the journal head or record count".to_string());
        }
        if manifest.verdict != predicate.verdict || manifest.aborted != predicate.aborted {
            differences.push(format!("the run verdict ({} vs {})", manifest.verdict, predicate.verdict));
        }
        let signed: BTreeMap<&str, Option<&str>> =
            subjects.iter().filter(|s| s.name != MANIFEST).map(|s| (s.name.as_str(), s.sha256_hex())).collect();
        let listed: BTreeMap<&str, Option<&str>> = manifest.files.iter().map(|f| (f.path.as_str(), Some(f.sha256.as_str()))).collect();
        if signed != listed {
            let odd: Vec<&str> = signed
                .keys()
                .chain(listed.keys())
                .filter(|k| signed.get(*k) != listed.get(*k))
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            differences.push(format!("the file list ({})", odd.join(", ")));
        }
        if differences.is_empty() {
            self.pass(what, MANIFEST, format!("run {}, {} files", manifest.run_id, manifest.files.len()));
        } else {
            self.fail(what, MANIFEST, format!("{MANIFEST} differs from the signed statement in {}", differences.join("; ")));
        }
    }

    /// results.json feeds the reports people read; its verdicts must be the signed ones.
    fn check_results(&mut self, predicate: &ScasRunPredicate) {
        let what = "results.json agrees with the statements";
        let results: serde_json::Value = match read_json(&self.dir.join(RESULTS)) {
            Ok(results) => results,
            Err(err) => return self.fail(what, RESULTS, format!("{RESULTS}: {err}")),
        };
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let found: Vec<(String, String, String, String)> = results["cases"]
            .as_array()
            .map(|cases| cases.iter().map(|c| (text(&c["plan"]), text(&c["case"]), text(&c["device"]), text(&c["verdict"]))).collect())
            .unwrap_or_default();
        let signed: Vec<(String, String, String, String)> =
            predicate.cases.iter().map(|c| (c.plan.clone(), c.case.clone(), c.device.clone(), c.verdict.as_str().to_string())).collect();
        let mut differences = Vec::new();
        if text(&results["run_id"]) != predicate.run_id {
            differences.push("the run id".to_string());
        }
        if text(&results["verdict"]) != predicate.verdict.as_str() {
            differences.push(format!("the run verdict ({} vs {})", text(&results["verdict"]), predicate.verdict));
        }
        if found != signed {
            match found.iter().zip(&signed).find(|(a, b)| a != b) {
                Some((a, b)) => differences.push(format!("case {}/{}@{} ({} vs {})", b.0, b.1, b.2, a.3, b.3)),
                None => differences.push(format!("the number of cases ({} vs {})", found.len(), signed.len())),
            }
        }
        if differences.is_empty() {
            self.pass(what, RESULTS, format!("{} case(s), run verdict {}", signed.len(), predicate.verdict));
        } else {
            self.fail(what, RESULTS, format!("{RESULTS} differs from the signed statement in {}", differences.join("; ")));
        }
    }

    /// The chain, its head against the signed one, and that it spans the whole run.
    fn check_journal(&mut self, journal: &JournalPass, predicate: &ScasRunPredicate) -> bool {
        let what = "journal chain intact and complete";
        let chain = match &journal.chain {
            Err(err) => {
                self.fail(what, JOURNAL, format!("cannot read {JOURNAL}: {err}"));
                return false;
            }
            Ok(Err(brk)) => {
                self.records_verified = Some(break_record(brk));
                self.push(Check::new(what, CheckState::Failed, format!("{JOURNAL}: {brk}")).file(JOURNAL).record(Some(break_record(brk))));
                return false;
            }
            Ok(Ok(chain)) => chain,
        };
        let count = chain.records;
        self.records_verified = Some(count);
        let head_hex = hex::encode(chain.head);
        if count != predicate.journal.records || head_hex != predicate.journal.head_sha256 {
            self.fail(
                what,
                JOURNAL,
                format!(
                    "{JOURNAL} has {count} records ending in {} but {} records ending in {} were signed",
                    short(&head_hex),
                    predicate.journal.records,
                    short(&predicate.journal.head_sha256)
                ),
            );
            return false;
        }
        self.pass(what, JOURNAL, format!("{count} records, head {} as signed", short(&head_hex)));

        let what = "journal spans the whole run";
        let started = chain.first.as_ref().filter(|e| entry_type(e) == "run_started");
        let problem = match (started, &chain.last) {
            (None, _) => Some((0, "the first record is not RunStarted".to_string())),
            (Some(entry), _) if entry["run_id"] != predicate.run_id.as_str() => {
                Some((0, format!("RunStarted is for run `{}`", entry["run_id"].as_str().unwrap_or("?"))))
            }
            (Some(entry), _)
                if serde_json::from_value::<Vec<crate::record::FileRef>>(entry["plans"].clone()).ok().as_ref()
                    != Some(&predicate.plans)
                    || entry["rig"]["path"] != predicate.rig.path.as_str()
                    || entry["rig"]["sha256"] != predicate.rig.sha256.as_str() =>
            {
                Some((0, "RunStarted names other plan or rig files than the ones in the bundle".to_string()))
            }
            (_, Some(last)) if last.kind == "run_sealed_incomplete" && !predicate.incomplete => {
                Some((last.n, "the journal ends with RunSealedIncomplete but the statement is of a finished run".to_string()))
            }
            (_, Some(last)) if last.kind == "run_finished" && predicate.incomplete => {
                Some((last.n, "the statement is of a run sealed after it stopped, but the journal ends with RunFinished".to_string()))
            }
            (_, Some(last)) if last.kind == "run_sealed_incomplete" && !predicate.aborted => {
                Some((last.n, "a run sealed after it stopped is signed as not aborted".to_string()))
            }
            (_, Some(last)) if last.kind != "run_finished" && last.kind != "run_sealed_incomplete" => {
                Some((last.n, format!("the last record is {}, not RunFinished", last.kind)))
            }
            (_, Some(last)) if last.verdict.as_deref() != Some(predicate.verdict.as_str()) => Some((
                last.n,
                format!(
                    "{} says {} but {} was signed",
                    if last.kind == "run_finished" { "RunFinished" } else { "RunSealedIncomplete" },
                    last.verdict.as_deref().unwrap_or("?"),
                    predicate.verdict
                ),
            )),
            _ => None,
        };
        match problem {
            Some((record, detail)) => {
                self.push(
                    Check::new(what, CheckState::Failed, format!("{JOURNAL} record {record}: {detail}")).file(JOURNAL).record(Some(record)),
                );
                false
            }
            None => {
                let end = match chain.last.as_ref().map(|l| l.kind.as_str()) {
                    Some("run_sealed_incomplete") => "RunSealedIncomplete, written when it was sealed after it stopped",
                    _ => "RunFinished",
                };
                self.pass(what, JOURNAL, format!("RunStarted for run {} through {end} ({})", predicate.run_id, predicate.verdict));
                true
            }
        }
    }

    fn replay_input(&self, predicate: &ScasRunPredicate, value: serde_json::Value) -> Result<ReplayInput, Check> {
        let read = |path: &str| {
            std::fs::read(self.dir.join(path)).map_err(|err| {
                Check::new("verdicts replay from the journal", CheckState::Failed, format!("cannot read {path}: {err}")).file(path)
            })
        };
        let mut plans = Vec::with_capacity(predicate.plans.len());
        for plan in &predicate.plans {
            plans.push((plan.path.clone(), read(&plan.path)?));
        }
        Ok(ReplayInput { plans, rig: read(&predicate.rig.path)?, predicate: value })
    }
}

/// Why a bundle sealed after its run stopped is incomplete, for the summary line.
fn sealed_incomplete_summary(n: u64, sealed: &SealedIncomplete, extent: Option<&SignedExtent>) -> String {
    let signed = match extent {
        Some(e) if e.record + 1 == n => format!("the run itself had signed every record of it (through record {}, at {})", e.record, e.at),
        Some(e) => format!(
            "the run itself had signed it through record {} of {n} (at {}); records {} to {} were signed only when it was sealed",
            e.record,
            e.at,
            e.record + 1,
            n - 1
        ),
        None => "the run itself had signed none of it (no checkpoint): every record was signed only when it was sealed".to_string(),
    };
    format!(
        "sealed after the run stopped without finishing (by `proofrig seal` at {}, record {n}): {}; the signatures are valid and its {n} record(s) replay; {signed}",
        sealed.sealed, sealed.note
    )
}

/// A block of the journal and the SHA-256 of each line that ends in it.
type Block = (Arc<Vec<u8>>, Vec<[u8; 32]>);

/// Read `file` in large blocks, hash every byte and hand each block on, with the
/// hash of each line ending in it (so the chain check need not hash the lines
/// again). Keeps hashing when the receiver stops early (at a chain break): the
/// digest still needs the whole file.
fn digest_and_forward(mut file: File, chunks: mpsc::SyncSender<Block>) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut line = Sha256::new();
    let mut len = 0u64;
    let mut forwarding = true;
    loop {
        let mut block = vec![0u8; HASH_BUFFER];
        let mut filled = 0;
        while filled < block.len() {
            match file.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if filled == 0 {
            return Ok((hex::encode(hasher.finalize()), len));
        }
        block.truncate(filled);
        let block = Arc::new(block);
        if forwarding {
            let mut lines = Vec::new();
            let mut rest = &block[..];
            while let Some(end) = memchr::memchr(b'\n', rest) {
                line.update(&rest[..end]);
                lines.push(line.finalize_reset().into());
                rest = &rest[end + 1..];
            }
            line.update(rest);
            forwarding = chunks.send((Arc::clone(&block), lines)).is_ok();
        }
        hasher.update(&block[..]);
        len += filled as u64;
    }
}

/// The journal's lines as they arrive from [`digest_and_forward`], blocks without
/// copying and line hashes as computed there. A closed channel reads as the end of
/// the file; the digester reports why.
struct ChunkReader {
    chunks: mpsc::Receiver<Block>,
    current: Arc<Vec<u8>>,
    at: usize,
    hashes: std::collections::VecDeque<[u8; 32]>,
}

impl ChunkReader {
    fn new(chunks: mpsc::Receiver<Block>) -> Self {
        ChunkReader { chunks, current: Arc::new(Vec::new()), at: 0, hashes: Default::default() }
    }
}

impl JournalLines for ChunkReader {
    fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<usize> {
        let mut read = 0;
        loop {
            if self.at == self.current.len() {
                match self.chunks.recv() {
                    Ok((block, hashes)) => {
                        self.current = block;
                        self.at = 0;
                        self.hashes.extend(hashes);
                    }
                    Err(_) => return Ok(read),
                }
            }
            let available = &self.current[self.at..];
            let (taken, done) = match memchr::memchr(b'\n', available) {
                Some(end) => (end + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..taken]);
            self.at += taken;
            read += taken;
            if done {
                return Ok(read);
            }
        }
    }

    fn line_hash(&mut self, line: &[u8]) -> [u8; 32] {
        // The digester split the same bytes at the same newlines, in the same order.
        self.hashes.pop_front().unwrap_or_else(|| Sha256::digest(line).into())
    }
}

fn parse_attestation(bytes: &[u8]) -> Result<Sealed, String> {
    if bytes.last() != Some(&b'\n') {
        return Err("the file does not end with a newline (cut short or edited)".into());
    }
    let lines: Vec<&[u8]> = bytes[..bytes.len() - 1].split(|b| *b == b'\n').collect();
    if lines.len() != 2 {
        return Err(format!("{} line(s), expected 2 (a test-result and a proofrig statement)", lines.len()));
    }
    let mut envelopes = Vec::new();
    let mut test_result = None;
    let mut scas = None;
    for (i, line) in lines.iter().enumerate() {
        let at = i + 1;
        let envelope: Envelope = serde_json::from_slice(line).map_err(|e| format!("line {at} is not a DSSE envelope: {e}"))?;
        // proofrig writes envelopes in one exact form; any other encoding of the same
        // content means the file was rewritten, and a byte flip must never go unseen.
        if serde_json::to_vec(&envelope).ok().as_deref() != Some(*line) {
            return Err(format!("line {at} is not byte-for-byte the envelope proofrig wrote (re-encoded or edited)"));
        }
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(format!("line {at} has payload type `{}`, expected `{PAYLOAD_TYPE}`", envelope.payload_type));
        }
        let payload = envelope.payload_bytes().map_err(|e| format!("line {at}: the payload is not base64: {e}"))?;
        let statement: Statement<serde_json::Value> =
            serde_json::from_slice(&payload).map_err(|e| format!("line {at}: the payload is not an in-toto statement: {e}"))?;
        if statement.statement_type != STATEMENT_TYPE {
            return Err(format!("line {at}: `_type` is `{}`, expected `{STATEMENT_TYPE}`", statement.statement_type));
        }
        match statement.predicate_type.as_str() {
            TEST_RESULT_PREDICATE if test_result.is_none() => test_result = Some(typed(statement, at)?),
            SCAS_RUN_PREDICATE if scas.is_none() => {
                let value = statement.predicate.clone();
                scas = Some((typed::<ScasRunPredicate>(statement, at)?, value));
            }
            other => return Err(format!("line {at}: unexpected or repeated predicate type `{other}`")),
        }
        envelopes.push((at, envelope));
    }
    let (Some(test_result), Some((scas, scas_value))) = (test_result, scas) else {
        return Err("a statement is missing".into());
    };
    Ok(Sealed { envelopes, test_result, scas, scas_value })
}

fn typed<P: DeserializeOwned>(statement: Statement<serde_json::Value>, at: usize) -> Result<Statement<P>, String> {
    let predicate = serde_json::from_value(statement.predicate)
        .map_err(|e| format!("line {at}: the {} predicate does not parse: {e}", statement.predicate_type))?;
    Ok(Statement {
        statement_type: statement.statement_type,
        subject: statement.subject,
        predicate_type: statement.predicate_type,
        predicate,
    })
}

fn statement_kind(envelope: &Envelope) -> Option<&'static str> {
    let payload = envelope.payload_bytes().ok()?;
    let statement: Statement<serde_json::Value> = serde_json::from_slice(&payload).ok()?;
    [TEST_RESULT_PREDICATE, SCAS_RUN_PREDICATE].into_iter().find(|t| *t == statement.predicate_type)
}

/// The DSSE check plus what it does not cover: the `keyid` and `publicKey` fields
/// are outside the signed bytes, so they must name the key that actually verified.
fn check_envelope(envelope: &Envelope, pinned: Option<&VerifyingKey>) -> Result<SignatureCheck, String> {
    let [signature] = envelope.signatures.as_slice() else {
        return Err(format!("{} signatures, expected exactly one", envelope.signatures.len()));
    };
    let checked = envelope.check(pinned);
    let keyid = match &checked {
        SignatureCheck::Pinned { keyid } | SignatureCheck::Unpinned { keyid } => keyid,
        SignatureCheck::Invalid { .. } => return Ok(checked),
    };
    if &signature.keyid != keyid {
        return Err(format!("the envelope says it was signed by {} but the signature is by {keyid}", signature.keyid));
    }
    if let (Some(embedded), Some(pinned)) = (&signature.public_key, pinned) {
        let matches = STANDARD.decode(embedded).ok().is_some_and(|bytes| bytes == pinned.as_bytes());
        if !matches {
            return Err(format!("the envelope carries a public key other than the pinned {keyid}"));
        }
    }
    Ok(checked)
}

/// A subject must name a file inside the bundle, never outside it.
fn safe_bundle_path(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.contains('\\') || name.contains("//") || name.ends_with('/') {
        return Err("is not a plain relative path");
    }
    if name == ATTESTATION {
        return Err("is the attestation itself");
    }
    if Path::new(name).components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(())
    } else {
        Err("points outside the bundle")
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("does not parse: {e}"))
}

fn entry_type(entry: &serde_json::Value) -> &str {
    entry["type"].as_str().unwrap_or("an untyped record")
}

fn break_record(brk: &ChainBreak) -> u64 {
    match brk {
        ChainBreak::Malformed { n, .. }
        | ChainBreak::Numbering { n, .. }
        | ChainBreak::Link { n, .. }
        | ChainBreak::TruncatedRecord { n, .. } => *n,
    }
}

fn short(hex: &str) -> String {
    hex.chars().take(16).collect()
}

/// A replay that recomputes nothing: it checks that the verdicts recorded in the
/// journal (StepFinished, CaseFinished, RunFinished) are the ones signed in the
/// predicate. It catches a predicate edited apart from the journal; only a real
/// recompute from the plans catches a journal and predicate edited together.
pub fn recorded_verdicts_agree(input: &ReplayInput, records: &mut dyn Iterator<Item = JournalRecord>) -> Result<(), ReplayMismatch> {
    let mut check = RecordedVerdicts::new(input)?;
    for record in records {
        check.record(&record)?;
    }
    check.finish()
}

type CaseName = (String, String, String);

/// [`recorded_verdicts_agree`], fed one record at a time.
pub struct RecordedVerdicts {
    verdict: Verdict,
    signed: BTreeMap<CaseName, Verdict>,
    /// The final attempt of each main step, per case.
    steps: BTreeMap<CaseName, BTreeMap<u64, Verdict>>,
    finished: BTreeSet<CaseName>,
    /// The cases a run sealed after it stopped had open (signed ABORTED, never finished).
    open_at_seal: Vec<CaseName>,
}

/// What [`RecordedVerdicts`] looks at in a record.
enum Recorded {
    /// A main step's final verdict, when the record names both its index and verdict.
    Step(CaseName, Option<(u64, Verdict)>),
    Case(CaseName, Option<Verdict>),
    Run(Option<Verdict>),
    /// `proofrig seal` ended a run that stopped: the cases it had open, and the verdict.
    SealedIncomplete(Vec<CaseName>, Option<Verdict>),
    Other,
}

impl Recorded {
    fn of(entry: &Result<JournalEntry, OtherEntry>) -> Self {
        let e = match entry {
            Ok(JournalEntry::StepFinished { key, phase: Phase::Steps, index, verdict, .. }) => {
                return Recorded::Step((key.plan.clone(), key.case.clone(), key.device.clone()), Some((*index as u64, *verdict)))
            }
            Ok(JournalEntry::CaseFinished { key, verdict, .. }) => {
                return Recorded::Case((key.plan.clone(), key.case.clone(), key.device.clone()), Some(*verdict))
            }
            Ok(JournalEntry::RunFinished { verdict, .. }) => return Recorded::Run(Some(*verdict)),
            Ok(JournalEntry::RunSealedIncomplete(sealed)) => {
                let open = sealed.open().map(|(k, _)| (k.plan.clone(), k.case.clone(), k.device.clone())).collect();
                return Recorded::SealedIncomplete(open, Some(sealed.verdict));
            }
            Ok(_) => return Recorded::Other,
            // Not an entry proofrig writes: read what it says as leniently as it is written.
            Err(other) => &other.value,
        };
        let key_of = |e: &serde_json::Value| {
            let text = |f: &str| e[f].as_str().unwrap_or_default().to_string();
            (text("plan"), text("case"), text("device"))
        };
        let verdict_of = |e: &serde_json::Value| serde_json::from_value::<Verdict>(e["verdict"].clone()).ok();
        match entry_type(e) {
            "step_finished" if e["phase"] == "steps" => Recorded::Step(key_of(e), e["index"].as_u64().zip(verdict_of(e))),
            "case_finished" => Recorded::Case(key_of(e), verdict_of(e)),
            "run_finished" => Recorded::Run(verdict_of(e)),
            "run_sealed_incomplete" => {
                let first = e["open_case"].is_object().then(|| key_of(&e["open_case"]));
                let more = e["also_open"].as_array().into_iter().flatten().map(|o| key_of(&o["case"]));
                Recorded::SealedIncomplete(first.into_iter().chain(more).collect(), verdict_of(e))
            }
            _ => Recorded::Other,
        }
    }
}

impl RecordedVerdicts {
    pub fn new(input: &ReplayInput) -> Result<Self, ReplayMismatch> {
        let predicate: ScasRunPredicate = serde_json::from_value(input.predicate.clone()).map_err(|e| ReplayMismatch {
            record: None,
            case: None,
            detail: format!("the proofrig predicate does not parse: {e}"),
        })?;
        let signed = predicate.cases.iter().map(|c| ((c.plan.clone(), c.case.clone(), c.device.clone()), c.verdict)).collect();
        Ok(RecordedVerdicts {
            verdict: predicate.verdict,
            signed,
            steps: BTreeMap::new(),
            finished: BTreeSet::new(),
            open_at_seal: Vec::new(),
        })
    }

    /// The next record; the first disagreement is an error.
    pub fn record(&mut self, record: &JournalRecord) -> Result<(), ReplayMismatch> {
        let name = |k: &CaseName| format!("{}/{}@{}", k.0, k.1, k.2);
        match Recorded::of(&record.entry) {
            Recorded::Step(key, Some((index, verdict))) => {
                self.steps.entry(key).or_default().insert(index, verdict);
            }
            Recorded::Step(_, None) | Recorded::Other => {}
            Recorded::Case(key, recorded) => {
                let mismatch = |detail: String| ReplayMismatch { record: Some(record.n), case: Some(name(&key)), detail };
                let Some(recorded) = recorded else { return Err(mismatch("CaseFinished has no verdict".into())) };
                match self.signed.get(&key) {
                    None => return Err(mismatch("the journal finishes a case the statement does not list".into())),
                    Some(s) if *s != recorded => {
                        return Err(mismatch(format!("the journal records {recorded} but the statement says {s}")))
                    }
                    Some(_) => {}
                }
                let failed_step = self.steps.get(&key).is_some_and(|s| s.values().any(|v| *v == Verdict::Fail));
                if failed_step && recorded != Verdict::Fail {
                    return Err(mismatch(format!("a step recorded FAIL but the case is recorded as {recorded}")));
                }
                self.finished.insert(key);
            }
            Recorded::SealedIncomplete(open, recorded) => {
                for key in &open {
                    let mismatch = |detail: String| ReplayMismatch { record: Some(record.n), case: Some(name(key)), detail };
                    if self.finished.contains(key) {
                        return Err(mismatch("the case it names as open had finished".into()));
                    }
                    // At least ABORTED, and no better than its steps so far.
                    let steps = self.steps.get(key).into_iter().flat_map(|s| s.values());
                    let floor = steps.fold(Verdict::Aborted, |worst, v| worst.worst(*v));
                    match self.signed.get(key) {
                        Some(signed) if signed.worst(floor) == *signed => {}
                        signed => {
                            return Err(mismatch(format!(
                                "the case open when the run stopped is signed {} but its steps so far give at least {floor}",
                                signed.map_or("nothing", |v| v.as_str())
                            )))
                        }
                    }
                }
                let mismatch = |detail: String| ReplayMismatch { record: Some(record.n), case: open.first().map(name), detail };
                // The cases that finished, the open ones, and the run at least ABORTED.
                let worst =
                    self.finished.iter().chain(&open).filter_map(|k| self.signed.get(k)).fold(Verdict::Aborted, |worst, v| worst.worst(*v));
                if recorded != Some(worst) || self.verdict != worst {
                    return Err(mismatch(format!(
                        "RunSealedIncomplete records {} and the statement says {}, but the finished cases give {worst}",
                        recorded.map_or("no verdict", Verdict::as_str),
                        self.verdict
                    )));
                }
                self.open_at_seal = open;
            }
            Recorded::Run(recorded) => {
                if recorded != Some(self.verdict) {
                    return Err(ReplayMismatch {
                        record: Some(record.n),
                        case: None,
                        detail: format!(
                            "RunFinished records {} but the statement says {}",
                            recorded.map_or("no verdict", Verdict::as_str),
                            self.verdict
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The journal ended: every case the statement lists as run must have finished.
    pub fn finish(self) -> Result<(), ReplayMismatch> {
        for (key, verdict) in &self.signed {
            if self.open_at_seal.contains(key) {
                continue;
            }
            if !self.finished.contains(key) && !matches!(verdict, Verdict::NotRun | Verdict::Skip) {
                return Err(ReplayMismatch {
                    record: None,
                    case: Some(format!("{}/{}@{}", key.0, key.1, key.2)),
                    detail: format!("the statement says {verdict} but the journal never finishes this case"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_cannot_point_outside_the_bundle() {
        for bad in ["", "/etc/passwd", "../x", "inputs/../../x", "a//b", "a\\b", "./x", ATTESTATION] {
            assert!(safe_bundle_path(bad).is_err(), "{bad}");
        }
        safe_bundle_path("inputs/plans/ssh.yaml").unwrap();
    }
}
