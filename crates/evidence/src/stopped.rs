//! Sealing a run that stopped without finishing: `proofrig seal RUN_DIR`.
//!
//! A run killed mid-way (kill -9, a crash, a forced quit, the machine lost power)
//! leaves a journal that is a verifiable prefix, signed by its checkpoints up to the
//! last one, and no attestation. The lab still owes someone that evidence: what ran,
//! what it found, and that the device may be left changed because restore steps did
//! not run. Sealing it afterwards with the lab's key makes it one signed bundle again,
//! one `verify` reports as INCOMPLETE (sealed after the run stopped), never as a
//! finished run.
//!
//! Nothing is sealed that does not hold: the journal's chain must be intact (a record
//! cut off mid-write at its end is removed, and its size recorded), every checkpoint
//! must check against the sealing key, the inputs must be the ones RunStarted names,
//! and the directory must hold nothing a run does not write. Sealing appends one
//! record, RunSealedIncomplete, saying what was open and what did not run, then writes
//! the reports, the manifest and the statements as a normal seal does. The run's
//! verdict is its cases' worst and at least ABORTED (the verdict for a run stopped by
//! a signal): the case that was open is ABORTED (or worse, if a step of it already
//! found worse), cases never started are NOT_RUN.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ed25519_dalek::SigningKey;
use proofrig_model::rig::Rig;

use crate::attestation::JournalHead;
use crate::bundle::{self, BundleError, InputRefs, Reports, SealFiles, ATTESTATION, JOURNAL, PLANS_DIR, RIG};
use crate::journal::{record_line, ChainBreak, ChainReader, Hashing, JournalLines};
use crate::record::{
    CaseKey, CaseResult, DeviceIdentity, JournalEntry, OpenCase, OpenStep, Phase, RunResult, SealedIncomplete, StepResult,
};
use crate::signing;
use crate::verify::CheckpointWalk;
use proofrig_plan::scope::select;
use proofrig_plan::Plan;
use proofrig_verdict::{Rollup, Verdict};

/// Why a run directory was not sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{dir} is not a run's bundle directory: {reason}")]
    NotABundle { dir: String, reason: String },
    #[error("{dir} is already sealed ({what}); a sealed bundle is never sealed again")]
    AlreadySealed { dir: String, what: String },
    #[error(
        "the run finished (RunFinished is record {record} of {journal}); only its sealing was cut short. `proofrig seal` seals runs that stopped before they finished"
    )]
    Finished { journal: String, record: u64 },
    #[error("{journal}: {reason}; a journal that does not hold is not sealed (sealing it would sign an edit)")]
    Broken { journal: String, reason: String },
    #[error("{path} differs from the file RunStarted (record 0) names; the inputs changed after the run, so it is not sealed")]
    InputChanged { path: String },
    #[error("{dir} holds file(s) a run does not write before it is sealed: {files}; move them away and seal again")]
    UnexpectedFiles { dir: String, files: String },
    #[error("the bundle's {what} does not load: {reason}")]
    Inputs { what: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl SealError {
    /// Whether the directory itself was wrong (not a bundle at all): a usage error.
    pub fn is_usage(&self) -> bool {
        matches!(self, SealError::NotABundle { .. })
    }
}

/// A run sealed after it stopped.
#[derive(Debug, Clone)]
pub struct StoppedSeal {
    pub dir: PathBuf,
    pub key_id: String,
    pub result: RunResult,
    /// The RunSealedIncomplete record: its number and what it says.
    pub record: u64,
    pub sealed: SealedIncomplete,
}

/// Seal the stopped run in `dir` with `key`, as of `now` (RFC 3339).
pub fn seal_stopped(dir: &Path, key: &SigningKey, now: &str, reports: &dyn Reports) -> Result<StoppedSeal, SealError> {
    let name = dir.display().to_string();
    if !dir.is_dir() {
        return Err(SealError::NotABundle { dir: name, reason: "not a directory".into() });
    }
    let journal_path = dir.join(JOURNAL);
    if !journal_path.is_file() {
        return Err(SealError::NotABundle { dir: name, reason: format!("it has no {JOURNAL}") });
    }
    if std::fs::symlink_metadata(dir.join(ATTESTATION)).is_ok() {
        return Err(SealError::AlreadySealed { dir: name, what: format!("it holds {ATTESTATION}") });
    }
    let journal = read_journal(&journal_path, key)?;
    check_files(dir)?;
    for input in journal.inputs.plans.iter().chain([&journal.inputs.rig]) {
        let path = dir.join(&input.path);
        let inside = Path::new(&input.path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let matches = inside && bundle::sha256_file(&path).is_ok_and(|(digest, _)| digest.eq_ignore_ascii_case(&input.sha256));
        if !matches {
            return Err(SealError::InputChanged { path: input.path.clone() });
        }
    }
    let (plans, rig) = load_inputs(dir, &journal.inputs)?;
    let (result, sealed) = outcome(&journal, &plans, &rig, now);

    // Everything holds: now the journal is changed, once, and sealed.
    let file = std::fs::OpenOptions::new().write(true).open(&journal_path).map_err(write_err(&journal_path))?;
    if sealed.dropped_bytes > 0 {
        file.set_len(journal.complete_bytes).map_err(write_err(&journal_path))?;
    }
    let body = serde_json::to_vec(&JournalEntry::RunSealedIncomplete(sealed.clone()))
        .map_err(|e| write_err(&journal_path)(io::Error::other(e)))?;
    let (line, head) = record_line(journal.records, &journal.head, &body);
    let mut file = std::fs::OpenOptions::new().append(true).open(&journal_path).map_err(write_err(&journal_path))?;
    file.write_all(&line).and_then(|_| file.sync_all()).map_err(write_err(&journal_path))?;
    drop(file);

    let head = JournalHead { records: journal.records + 1, head_sha256: hex::encode(head) };
    let done =
        bundle::seal_files(SealFiles { dir, inputs: &journal.inputs, result: &result, key, journal: head, incomplete: true }, reports)?;
    Ok(StoppedSeal { dir: done.dir, key_id: done.key_id, result, record: journal.records, sealed })
}

fn write_err(path: &Path) -> impl Fn(io::Error) -> SealError + '_ {
    move |source| SealError::Write { path: path.display().to_string(), source }
}

/// A journal line source that counts the bytes of the complete lines it read.
struct Counted<R> {
    lines: Hashing<R>,
    complete: Rc<Cell<u64>>,
}

impl<R: BufRead> JournalLines for Counted<R> {
    fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<usize> {
        let read = self.lines.next_line(line)?;
        if line.last() == Some(&b'\n') {
            self.complete.set(self.complete.get() + line.len() as u64);
        }
        Ok(read)
    }

    fn line_hash(&mut self, line: &[u8]) -> [u8; 32] {
        self.lines.line_hash(line)
    }
}

/// A case as the journal shows it.
#[derive(Default)]
struct CaseSeen {
    title: String,
    scas: Option<proofrig_plan::ScasRef>,
    steps: Vec<StepResult>,
    /// The step started and not finished, with its action and label.
    open_step: Option<OpenStep>,
    finished: Option<Verdict>,
}

/// What the journal of a stopped run holds.
struct StoppedJournal {
    run_id: String,
    operator: String,
    host: String,
    started: String,
    rig_name: String,
    inputs: InputRefs,
    only_device: Option<String>,
    cases: BTreeMap<CaseKey, CaseSeen>,
    /// The cases started and not finished, in the order they started: one at most
    /// when the devices ran one after another, one per lane when side by side.
    open: Vec<CaseKey>,
    reported: BTreeMap<String, String>,
    /// The latest wall-clock time a record shows (RFC 3339).
    last_seen: Option<String>,
    records: u64,
    head: [u8; 32],
    complete_bytes: u64,
    dropped_bytes: u64,
    signed_through: Option<u64>,
}

/// Read and check the journal: an intact chain (a cut-off last record aside), valid
/// checkpoints by `key`, RunStarted first, neither RunFinished nor a seal record.
fn read_journal(path: &Path, key: &SigningKey) -> Result<StoppedJournal, SealError> {
    let name = path.display().to_string();
    let read_err = |source| SealError::Read { path: name.clone(), source };
    let broken = |reason: String| SealError::Broken { journal: name.clone(), reason };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let complete = Rc::new(Cell::new(0));
    let lines = Counted { lines: Hashing(io::BufReader::with_capacity(bundle::HASH_BUFFER, file)), complete: complete.clone() };
    let mut reader = ChainReader::<_, JournalEntry>::new(lines, &name);
    let verifying = key.verifying_key();
    let mut walk = CheckpointWalk::new(Some(&verifying));
    let mut journal: Option<StoppedJournal> = None;
    let mut head = crate::journal::genesis();
    for record in reader.by_ref() {
        head = record.hash;
        let entry = record
            .entry
            .map_err(|other| broken(format!("record {} is not a journal entry proofrig writes: {}", record.n, other.reason)))?;
        let checkpoint = match &entry {
            JournalEntry::Checkpoint(checkpoint) => Some(Ok(checkpoint)),
            _ => None,
        };
        walk.record(record.n, record.hash, entry.kind(), checkpoint);
        if let Some((n, why)) = &walk.failure {
            return Err(broken(format!(
                "record {n}: {why} (the run's checkpoints must check against the key sealing it, {})",
                signing::key_id(&verifying)
            )));
        }
        match (&mut journal, entry) {
            (None, JournalEntry::RunStarted { run_id, operator, host, started, plans, rig, rig_name, only_device, .. }) => {
                journal = Some(StoppedJournal {
                    run_id,
                    operator,
                    host,
                    started: started.clone(),
                    rig_name,
                    inputs: InputRefs { rig, plans },
                    only_device,
                    cases: BTreeMap::new(),
                    open: Vec::new(),
                    reported: BTreeMap::new(),
                    last_seen: Some(started),
                    records: 0,
                    head: [0; 32],
                    complete_bytes: 0,
                    dropped_bytes: 0,
                    signed_through: None,
                })
            }
            (None, other) => return Err(broken(format!("record 0 is {}, not RunStarted", other.kind()))),
            (Some(journal), entry) => match journal.see(record.n, entry) {
                Ok(()) => {}
                Err(Unsealable::Broken(reason)) => return Err(broken(reason)),
                Err(Unsealable::Finished) => return Err(SealError::Finished { journal: name.clone(), record: record.n }),
                Err(Unsealable::Sealed) => {
                    return Err(SealError::AlreadySealed {
                        dir: path.parent().unwrap_or(path).display().to_string(),
                        what: format!("record {} of {JOURNAL} is RunSealedIncomplete", record.n),
                    })
                }
            },
        }
    }
    let end = reader.finish().map_err(|e| SealError::Read { path: name.clone(), source: io::Error::other(e.to_string()) })?;
    let records = match end {
        Ok((_, records)) => records,
        // A crash during a write: the records before it are whole and chained.
        Err(ChainBreak::TruncatedRecord { n, .. }) => n,
        Err(brk) => return Err(broken(format!("{brk}; an edited or removed record, not a crash"))),
    };
    let Some(mut journal) = journal else {
        return Err(SealError::NotABundle { dir: name, reason: "its journal is empty: the run recorded nothing".into() });
    };
    journal.records = records;
    journal.head = head;
    journal.complete_bytes = complete.get();
    journal.dropped_bytes = size - complete.get();
    journal.signed_through = walk.extent().map(|e| e.record);
    Ok(journal)
}

/// Why a record stops the sealing.
enum Unsealable {
    Broken(String),
    /// RunFinished: the run finished.
    Finished,
    /// RunSealedIncomplete: sealed before.
    Sealed,
}

impl StoppedJournal {
    fn see(&mut self, n: u64, entry: JournalEntry) -> Result<(), Unsealable> {
        let broken = |what: &str| Unsealable::Broken(format!("record {n}: {what}"));
        match entry {
            JournalEntry::RunStarted { .. } => return Err(broken("a second RunStarted")),
            JournalEntry::RunFinished { .. } => return Err(Unsealable::Finished),
            JournalEntry::RunSealedIncomplete(_) => return Err(Unsealable::Sealed),
            JournalEntry::Event { event } => {
                self.last_seen = Some(
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(event.at.wall_ns))
                        .to_string(),
                );
            }
            JournalEntry::Checkpoint(checkpoint) => self.last_seen = Some(checkpoint.at),
            JournalEntry::DeviceReported { device, output, error: None, .. } => {
                self.reported.insert(device, output.trim().to_string());
            }
            JournalEntry::DeviceReported { .. } => {}
            JournalEntry::CaseStarted { key, title, scas } => {
                self.cases.insert(key.clone(), CaseSeen { title, scas, ..Default::default() });
                self.open.push(key);
            }
            JournalEntry::StepStarted { key, phase, index, action, label, attempt, .. } => {
                let case = self.cases.get_mut(&key).ok_or_else(|| broken("a step of a case that never started"))?;
                case.open_step = Some(OpenStep { phase, index, attempt, action, label });
            }
            JournalEntry::StepFinished { key, phase, index, verdict, message, .. } => {
                let case = self.cases.get_mut(&key).ok_or_else(|| broken("a step of a case that never started"))?;
                let open = case.open_step.take();
                let (action, label) = open.map(|s| (s.action, s.label)).unwrap_or_default();
                case.steps.retain(|s| !(s.phase == phase && s.index == index));
                case.steps.push(StepResult { phase, index, label, action, verdict, message, record: n, duration_ms: 0 });
            }
            JournalEntry::CaseFinished { key, verdict, .. } => {
                let case = self.cases.get_mut(&key).ok_or_else(|| broken("a case finishes that never started"))?;
                case.finished = Some(verdict);
                self.open.retain(|open| *open != key);
            }
        }
        Ok(())
    }
}

/// A run directory holds, before sealing, its inputs and its journal only.
fn check_files(dir: &Path) -> Result<(), SealError> {
    let entries = bundle::list_files(dir).map_err(|source| SealError::Read { path: dir.display().to_string(), source })?;
    let unexpected: Vec<String> = entries
        .into_iter()
        .filter(|e| {
            let plan = e.path.strip_prefix(PLANS_DIR).and_then(|rest| rest.strip_prefix('/')).is_some_and(|rest| !rest.contains('/'));
            e.not_a_file.is_some() || !(e.path == JOURNAL || e.path == RIG || plan)
        })
        .map(|e| e.path)
        .collect();
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(SealError::UnexpectedFiles { dir: dir.display().to_string(), files: unexpected.join(", ") })
    }
}

fn load_inputs(dir: &Path, inputs: &InputRefs) -> Result<(Vec<Plan>, Rig), SealError> {
    let read = |path: &str| {
        std::fs::read_to_string(dir.join(path)).map_err(|source| SealError::Read { path: dir.join(path).display().to_string(), source })
    };
    let rig = Rig::parse(RIG, &read(&inputs.rig.path)?, Path::new("."))
        .map_err(|e| SealError::Inputs { what: "rig".into(), reason: e.to_string() })?;
    let mut plans = Vec::new();
    for plan in &inputs.plans {
        let parsed = Plan::parse(&plan.path, &read(&plan.path)?)
            .map_err(|e| SealError::Inputs { what: format!("plan {}", plan.path), reason: e.to_string() })?;
        plans.push(parsed);
    }
    Ok((plans, rig))
}

/// The run's result and the seal record, from what the journal shows.
fn outcome(journal: &StoppedJournal, plans: &[Plan], rig: &Rig, now: &str) -> (RunResult, SealedIncomplete) {
    let selected = select(plans, rig, journal.only_device.as_deref());
    let mut cases = Vec::new();
    let mut not_started = 0;
    let mut open_restore: BTreeMap<&CaseKey, usize> = BTreeMap::new();
    for sel in &selected {
        let key = CaseKey { plan: sel.plan.spec.plan.clone(), case: sel.case.id.clone(), device: sel.device.clone() };
        let seen = journal.cases.get(&key);
        let open = journal.open.iter().find(|open| **open == key);
        if let Some(open) = open {
            open_restore.insert(open, sel.case.restore.len());
        }
        let (verdict, excerpt) = match seen {
            Some(CaseSeen { finished: Some(verdict), steps, .. }) => {
                let worst = steps.iter().filter(|s| s.verdict != Verdict::Pass && s.verdict != Verdict::Skip).map(|s| s.message.as_str());
                (*verdict, worst.collect::<Vec<_>>().join("\n"))
            }
            // A finding recorded before the stop still stands (as after Ctrl-C).
            Some(seen) if open.is_some() => (
                seen.steps.iter().fold(Verdict::Aborted, |worst, s| worst.worst(s.verdict)),
                "the run stopped during this case (it never finished, and its restore steps did not run)".to_string(),
            ),
            _ => {
                not_started += 1;
                (Verdict::NotRun, "not run: the run stopped before this case".to_string())
            }
        };
        cases.push(CaseResult {
            key: key.clone(),
            title: seen.map_or_else(|| sel.case.title.clone(), |s| s.title.clone()),
            scas: seen.map_or_else(|| sel.case.scas.clone(), |s| s.scas.clone()),
            purpose: sel.case.purpose.clone(),
            expected: sel.case.expected.clone(),
            verdict,
            skip_reason: if verdict == Verdict::Skip { sel.case.skip.clone() } else { None },
            steps: seen.map(|s| s.steps.clone()).unwrap_or_default(),
            evidence_excerpt: excerpt,
            duration_ms: 0,
        });
    }
    let mut rollup = Rollup::of(cases.iter().map(|c| c.verdict));
    let verdict = rollup.verdict.worst(Verdict::Aborted);
    rollup.verdict = verdict;

    let mut open: Vec<OpenCase> = journal
        .open
        .iter()
        .map(|key| OpenCase { case: key.clone(), step: journal.cases.get(key).and_then(|c| c.open_step.clone()) })
        .collect();
    let note = note(journal, &open, &open_restore, not_started);
    let first = (!open.is_empty()).then(|| open.remove(0));
    let sealed = SealedIncomplete {
        sealed: now.to_string(),
        signed_through: journal.signed_through,
        open_case: first.as_ref().map(|o| o.case.clone()),
        open_step: first.and_then(|o| o.step),
        also_open: open,
        dropped_bytes: journal.dropped_bytes,
        verdict,
        rollup: rollup.clone(),
        note,
    };
    let devices = DeviceIdentity::of_devices_in(rig, &cases, |name| journal.reported.get(name).cloned());
    let result = RunResult {
        run_id: journal.run_id.clone(),
        proofrig_version: env!("CARGO_PKG_VERSION").to_string(),
        operator: journal.operator.clone(),
        host: journal.host.clone(),
        rig_name: journal.rig_name.clone(),
        started: journal.started.clone(),
        ended: journal.last_seen.clone().unwrap_or_else(|| journal.started.clone()),
        aborted: true,
        verdict,
        rollup,
        cases,
        devices,
    };
    (result, sealed)
}

/// What stopped, and what did not run, in one sentence.
fn note(journal: &StoppedJournal, open: &[OpenCase], restore_steps: &BTreeMap<&CaseKey, usize>, not_started: usize) -> String {
    let mut note = match open {
        [] => "the run stopped between cases: no case was open, so no restore step was left undone".to_string(),
        open => open
            .iter()
            .map(|o| stopped_in(&o.case, o.step.as_ref(), restore_steps.get(&o.case).copied().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("; "),
    };
    if not_started > 0 {
        note.push_str(&format!("; {not_started} case(s) never started (NOT_RUN)"));
    }
    if journal.dropped_bytes > 0 {
        note.push_str(&format!("; a record cut off mid-write at the journal's end ({} bytes) was removed", journal.dropped_bytes));
    }
    note
}

/// Where the run stopped in the open case `key`, and what of it did not run.
fn stopped_in(key: &CaseKey, open_step: Option<&OpenStep>, restore_steps: usize) -> String {
    let what = |step: &OpenStep| match step.label.as_str() {
        label if label == step.action || label.is_empty() => step.action.clone(),
        label => format!("{}: {label}", step.action),
    };
    match open_step {
        Some(step) if step.phase == Phase::Restore => format!(
            "the run stopped during restore step {} ({}) of {} on {}; that step did not finish and the restore steps after it did not run, so the device may be left changed",
            step.index + 1,
            what(step),
            key.case,
            key.device
        ),
        Some(step) => format!(
            "the run stopped during step {} ({}) of {} on {}; that step did not finish, the case's later steps and its {restore_steps} restore step(s) did not run, so the device may be left changed",
            step.index + 1,
            what(step),
            key.case,
            key.device
        ),
        None => format!(
            "the run stopped inside {} on {} between two steps; its remaining steps and its {restore_steps} restore step(s) did not run, so the device may be left changed",
            key.case, key.device
        ),
    }
}
