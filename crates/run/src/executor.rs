//! Runs plans on a rig: cases, steps, retries, break conditions, restore steps,
//! abort, and the journal records that make every verdict replayable.
//!
//! For each case and each device it applies to, steps run in order. Each step's
//! `${...}` are resolved against the case scope, the action is performed through the
//! agents, what it observed is journaled, and `judge` decides the verdict from that
//! record alone. Retries are for infrastructure faults only; a FAIL is never retried.
//! Restore steps run whatever happened, including after Ctrl-C.
//!
//! A rig's devices are tested side by side: a device's cases take as long as its
//! boots, logins and idle timeouts take, and nothing in one device's cases waits for
//! another's, so a run with several devices takes about as long as its slowest device,
//! not their sum. Each lane of devices (see `proofrig_plan::scope::Lanes`) runs its
//! cases in order through agents of its own; what the devices share on the bench is
//! taken in turns (a PDU's commands, the lab host's log server address and scans, see
//! `actions`). Their records interleave in the one journal, each event on its device's
//! channel, which is how replay tells them apart; RunStarted says the run went side by
//! side. `one_device_at_a_time` runs one lane of every case instead, in the selection's
//! order, as before.
//!
//! Secrets stay out of the journal: the run's recorder ([`run_recorder`]) knows every
//! secret of the rig and the plans and redacts whatever a device prints of them, and
//! each step's output is redacted the same way before it is judged and journaled, so
//! replay compares redacted with redacted and needs no secret. `judge` therefore
//! decides on redacted text: a plan must never assert on a secret's value (it would
//! have to write the value down to do so, which is wrong anyway).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use proofrig_model::events::{ChannelId, Event, EventSink, Recorder};
use proofrig_model::redact::Redactor;
use proofrig_model::rig::Rig;
use proofrig_model::secret::SecretRef;

use super::actions::{default_timeout, Agents};
use super::progress::{Progress, StepDone};
use super::step::{end_of_range, perform_or_abort, record_failure, wait_for_abort, Live};
use proofrig_evidence::bundle::InputRefs;
use proofrig_evidence::journal::{JournalError, JournalWriter};
use proofrig_evidence::notes::{EXECUTOR_CHANNEL, NOTE_ABORTED};
use proofrig_evidence::record::{
    CaseKey, CaseResult, DeviceIdentity, EventRecord, JobTicket, JournalEntry, Phase, RunResult, StepRecord, StepResult,
};
use proofrig_plan::scope::{absorb, base_scope, missing_channel, select, Lanes, Selected};
use proofrig_plan::tally::{CaseOutcome, CaseTally};
use proofrig_plan::{Case, Credential, Plan, Step};
use proofrig_verdict::judge::{failure_output, judge, FailureClass};
use proofrig_verdict::{Rollup, Verdict};

/// Pause before retrying a step that failed for an infrastructure reason.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Appends agent events to the journal, in the order the recorder stamped them.
/// Handed over owned: the journal's writer thread serializes them, not the agent's
/// thread that a step is waiting for.
pub struct JournalSink(pub Arc<JournalWriter>);

impl EventSink for JournalSink {
    fn append(&self, event: Event) {
        // A write error is remembered by the writer and reported when the run ends; an
        // event after the run's end (an abandoned agent thread) belongs to no step.
        if let Err(JournalError::RunEnded { .. }) = self.0.append_owned(EventRecord(event)) {
            tracing::debug!("an agent event after the run's end was not journaled");
        }
    }
}

/// The secrets a run keeps out of its evidence: every secret the rig references and
/// every `{ env: }` / `{ file: }` credential of the plans, read now, at run start.
/// One that cannot be read is left out with a warning instead of stopping the run:
/// the step that needs it fails with the reason.
pub fn run_redactor(rig: &Rig, plans: &[Plan]) -> Redactor {
    let mut redactor = Redactor::new();
    let mut unreadable = redactor.add_rig(rig);
    let credentials = plans
        .iter()
        .flat_map(|plan| &plan.spec.cases)
        .flat_map(|case| case.steps.iter().chain(&case.restore))
        .filter_map(|step| step.action.credential())
        .filter_map(Credential::as_secret_ref);
    let mut references: Vec<SecretRef> = Vec::new();
    for reference in credentials {
        if !references.contains(&reference) {
            references.push(reference);
        }
    }
    unreadable.extend(references.iter().filter_map(|reference| redactor.add_reference(reference).err()));
    for err in unreadable {
        tracing::warn!("{err}; this secret is not redacted from the evidence, and a step that uses it will fail");
    }
    redactor
}

/// The recorder of a run: every event goes to the journal, with the run's secrets
/// ([`run_redactor`]) redacted.
pub fn run_recorder(journal: &Arc<JournalWriter>, rig: &Rig, plans: &[Plan]) -> Recorder {
    Recorder::with_redactor(Arc::new(JournalSink(journal.clone())), run_redactor(rig, plans))
}

/// What to run.
pub struct RunRequest {
    pub run_id: String,
    pub plans: Vec<Plan>,
    pub rig: Rig,
    /// Only this device (`--device`).
    pub only_device: Option<String>,
    /// `--param NAME=VALUE` overrides.
    pub params: BTreeMap<String, Value>,
    pub operator: String,
    pub host: String,
    /// The plan and rig files as the bundle holds them, named in RunStarted.
    pub inputs: InputRefs,
    /// The lab service's job this run is, journaled in RunStarted (None from the
    /// command line).
    pub job: Option<JobTicket>,
    /// Run the devices one after another (`--one-device-at-a-time`), not side by side:
    /// for a bench whose devices share wiring the rig does not describe, and as the
    /// baseline the side-by-side run is measured against.
    pub one_device_at_a_time: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot write the journal: {0}")]
    Journal(String),
    #[error("cannot set up the agents: {0}")]
    Agents(String),
    #[error("no device of rig `{rig}` matches: {what}")]
    NothingSelected { rig: String, what: String },
}

impl From<JournalError> for RunError {
    fn from(err: JournalError) -> Self {
        RunError::Journal(err.to_string())
    }
}

struct CaseRun {
    steps: Vec<StepResult>,
    /// The case's verdicts so far, as replay counts them again.
    tally: CaseTally,
    decisive: Option<(Verdict, String, Arc<Value>)>,
}

/// Run everything, journaling as it goes, from RunStarted to RunFinished. Returns the run's result for reports.
///
/// The selected cases go in lanes ([`Lanes`]: a device, with any device its cases'
/// steps name), all lanes at once unless `one_device_at_a_time`; each lane runs its
/// cases in the selection's order, and the results keep that order too. The lanes are
/// driven together on this task: what they share (the journal, the recorder, the
/// progress printer, the operator's stop) needs no more than a lock held for a call,
/// and between an abort check and the record it leads to no other lane runs.
pub async fn execute(
    request: RunRequest,
    journal: Arc<JournalWriter>,
    recorder: Recorder,
    progress: &mut dyn Progress,
    abort: watch::Receiver<bool>,
) -> Result<RunResult, RunError> {
    let started = now();
    let side_by_side = !request.one_device_at_a_time;
    journal.append(&JournalEntry::RunStarted {
        run_id: request.run_id.clone(),
        proofrig_version: env!("CARGO_PKG_VERSION").to_string(),
        operator: request.operator.clone(),
        host: request.host.clone(),
        started: started.clone(),
        plans: request.inputs.plans.clone(),
        rig: request.inputs.rig.clone(),
        rig_name: request.rig.name().to_string(),
        parameters: request.params.clone(),
        only_device: request.only_device.clone(),
        job: request.job.clone(),
        side_by_side,
    })?;
    let selected = select(&request.plans, &request.rig, request.only_device.as_deref());
    if selected.is_empty() {
        return Err(RunError::NothingSelected {
            rig: request.rig.name().to_string(),
            what: match &request.only_device {
                Some(d) => format!("no case applies to device `{d}`"),
                None => "no case's `devices:` selection matches a device".into(),
            },
        });
    }
    let agents = Agents::new(request.rig.clone(), recorder.clone()).map_err(|e| RunError::Agents(e.to_string()))?;
    progress.run_started(&request.run_id, selected.len());
    let lanes: Vec<Vec<usize>> = if side_by_side { Lanes::of(&selected).cases } else { vec![(0..selected.len()).collect()] };
    let shared_progress = SharedProgress(Mutex::new(progress));
    let abort_recorded = AtomicBool::new(false);
    let run = RunContext {
        request: &request,
        selected: &selected,
        journal: &journal,
        recorder: &recorder,
        progress: &shared_progress,
        abort_recorded: &abort_recorded,
    };
    let lanes = lanes.iter().map(|cases| run_lane(&run, cases, agents.another_lane(), abort.clone()));
    let mut cases: Vec<(usize, CaseResult)> = Vec::new();
    let mut reported: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut failed = None;
    // Driven together on this task, not spawned: no lane runs between another lane's
    // check of the abort and the record it writes, which replay relies on.
    for lane in futures_util::future::join_all(lanes).await {
        match lane {
            Ok(done) => {
                cases.extend(done.cases);
                reported.extend(done.reported);
            }
            Err(err) => failed = failed.or(Some(err)),
        }
    }
    if let Some(err) = failed {
        return Err(err);
    }
    cases.sort_by_key(|(number, _)| *number);
    let cases: Vec<CaseResult> = cases.into_iter().map(|(_, case)| case).collect();
    // The stop is on record exactly when a lane stopped for it.
    let aborted = abort_recorded.load(Ordering::SeqCst);
    drop(agents);
    // Closing released what the channels held; this catches any stream left open.
    recorder.flush_held_bytes();

    let rollup = Rollup::of(cases.iter().map(|c| c.verdict));
    let ended = now();
    // A thread a step's deadline abandoned may still record; after this, what it
    // records is not journaled: RunFinished is the last record (checkpoints aside).
    journal.end_agent_events();
    journal.append(&JournalEntry::RunFinished { verdict: rollup.verdict, rollup: rollup.clone(), ended: ended.clone(), aborted })?;
    // The run's end is a point where the whole journal must be on file: what follows
    // (sealing, or an error path that leaves the bundle unsealed) reads it.
    journal.flush()?;
    let devices = DeviceIdentity::of_devices_in(&request.rig, &cases, |name| reported.get(name).cloned().flatten());
    Ok(RunResult {
        run_id: request.run_id,
        proofrig_version: env!("CARGO_PKG_VERSION").to_string(),
        operator: request.operator,
        host: request.host,
        rig_name: request.rig.name().to_string(),
        started,
        ended,
        aborted,
        verdict: rollup.verdict,
        rollup,
        cases,
        devices,
    })
}

/// Progress shared by the lanes of a run: one call at a time, never held across an await.
struct SharedProgress<'p>(Mutex<&'p mut dyn Progress>);

impl SharedProgress<'_> {
    fn with(&self, call: impl FnOnce(&mut dyn Progress)) {
        let mut progress = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        call(&mut **progress)
    }
}

/// What the lanes of a run share.
struct RunContext<'r> {
    request: &'r RunRequest,
    selected: &'r [Selected<'r>],
    journal: &'r Arc<JournalWriter>,
    recorder: &'r Recorder,
    progress: &'r SharedProgress<'r>,
    /// Whether the operator's stop is on record (an ABORTED step records it itself).
    abort_recorded: &'r AtomicBool,
}

impl RunContext<'_> {
    fn write(&self, entry: &JournalEntry) -> Result<u64, RunError> {
        Ok(self.journal.append(entry)?)
    }

    /// Put the operator's stop on record, once for the run, on `device`'s channel.
    fn record_abort(&self, device: &str) {
        if !self.abort_recorded.swap(true, Ordering::SeqCst) {
            self.recorder.emit(proofrig_model::events::EventKind::Note {
                channel: ChannelId::new(device, EXECUTOR_CHANNEL),
                text: NOTE_ABORTED.into(),
            });
        }
    }
}

/// What a lane did: its cases' results (with their places in the selection), and the
/// identities its devices reported.
#[derive(Default)]
struct LaneDone {
    cases: Vec<(usize, CaseResult)>,
    reported: BTreeMap<String, Option<String>>,
}

/// Run one lane's cases (their places in the selection) in order, through its own agents.
async fn run_lane(
    run: &RunContext<'_>,
    cases: &[usize],
    mut agents: Agents,
    mut abort: watch::Receiver<bool>,
) -> Result<LaneDone, RunError> {
    let mut done = LaneDone::default();
    // Whether the lane stopped for the operator.
    let mut aborted = false;
    for &number in cases {
        let sel = &run.selected[number];
        if !aborted && *abort.borrow() {
            // Stopped between two cases: no other case of the lane starts, on record.
            run.record_abort(&sel.device);
            aborted = true;
        }
        if aborted {
            let key = CaseKey { plan: sel.plan.spec.plan.clone(), case: sel.case.id.clone(), device: sel.device.clone() };
            done.cases.push((number, not_run_case(&key, sel.case)));
            continue;
        }
        if !done.reported.contains_key(&sel.device) {
            let answer = report_identity(run, &sel.device, &mut agents).await?;
            done.reported.insert(sel.device.clone(), answer);
        }
        let case = run_case(run, number, &mut agents, &mut abort, &mut aborted).await?;
        done.cases.push((number, case));
    }
    agents.close().await;
    Ok(done)
}

/// Run the case at `number` in the selection: its steps, then its restore steps.
/// `aborted` is set when the operator's stop ended it.
async fn run_case(
    run: &RunContext<'_>,
    number: usize,
    agents: &mut Agents,
    abort: &mut watch::Receiver<bool>,
    aborted: &mut bool,
) -> Result<CaseResult, RunError> {
    let sel = &run.selected[number];
    let request = run.request;
    let key = CaseKey { plan: sel.plan.spec.plan.clone(), case: sel.case.id.clone(), device: sel.device.clone() };
    run.progress.with(|p| p.case_started(number + 1, run.selected.len(), &key, &sel.case.title));
    run.write(&JournalEntry::CaseStarted { key: key.clone(), title: sel.case.title.clone(), scas: sel.case.scas.clone() })?;
    let case_start = Instant::now();
    let device = request.rig.device(&sel.device).expect("selected from the rig").clone();
    let mut scope = base_scope(sel.plan, &request.params, &sel.device, &device);
    // Shared with every step record of the case, which the journal serializes later.
    let shared_key = Arc::new(key.clone());

    let mut case = CaseRun { steps: Vec::new(), tally: CaseTally::new(sel.case), decisive: None };
    // A rig that lacks what the case needs (a declared value, a secret, a channel)
    // stops it before anything is sent: the case is ERROR, its steps NOT_RUN.
    // (None for a skipped case: `unready` says nothing of a case that does not run.)
    let unready = proofrig_plan::catalogue::unready(sel.plan, sel.case, &request.rig, &sel.device);
    if sel.case.skip.is_some() {
        case.tally = CaseTally::skipped();
    } else if let Some(why) = &unready {
        case.tally = CaseTally::unready(sel.case);
        case.decisive = Some((Verdict::Error, why.clone(), Arc::new(json!({}))));
        run.progress.with(|p| {
            p.step_finished(&StepDone {
                key: &key,
                phase: Phase::Steps,
                index: 0,
                label: "the rig gives what the case needs",
                verdict: Verdict::Error,
                message: why,
                took: Duration::ZERO,
                will_retry: false,
            })
        });
    } else {
        for (index, step) in sel.case.steps.iter().enumerate() {
            if !case.tally.stopped() && *abort.borrow() {
                // The stop is what leaves these steps NOT_RUN: it goes on record.
                run.record_abort(&sel.device);
            }
            if case.tally.stopped() || (*abort.borrow()) {
                // NOT_RUN: the tally counts the steps left when the case ends.
                continue;
            }
            let tools = &mut StepTools { agents: &mut *agents, recorder: run.recorder, journal: run.journal, progress: run.progress };
            let at = StepAt { key: &shared_key, phase: Phase::Steps, index };
            let verdict = run_step(tools, at, step, &mut scope, &mut case, abort).await?;
            if verdict == Verdict::Aborted {
                *aborted = true;
                run.abort_recorded.store(true, Ordering::SeqCst);
            }
        }
        // Restore steps always run: a changed device must be put back, even after an abort.
        let restore_abort = watch::channel(false).1;
        for (index, step) in sel.case.restore.iter().enumerate() {
            let mut never = restore_abort.clone();
            let tools = &mut StepTools { agents: &mut *agents, recorder: run.recorder, journal: run.journal, progress: run.progress };
            let at = StepAt { key: &shared_key, phase: Phase::Restore, index };
            run_step(tools, at, step, &mut scope, &mut case, &mut never).await?;
        }
        if *abort.borrow() {
            // The stop leaves the cases after this one NOT_RUN: on record.
            run.record_abort(&sel.device);
            *aborted = true;
        }
    }
    let CaseOutcome { verdict, rollup, checks_passed } = case.tally.outcome();
    run.write(&JournalEntry::CaseFinished {
        key: key.clone(),
        verdict,
        rollup,
        checks_passed,
        skip_reason: sel.case.skip.clone(),
        unready,
    })?;
    // Every finding first (one per line), then the output behind the worst one.
    let findings: Vec<&str> =
        case.steps.iter().filter(|s| s.verdict != Verdict::Pass && s.verdict != Verdict::Skip).map(|s| s.message.as_str()).collect();
    let evidence_excerpt = match (&case.decisive, verdict) {
        (Some((_, _, output)), _) if findings.len() > 1 => format!("{}\n\n{}", findings.join("\n"), render_output(output)),
        (Some((_, message, output)), _) => format!("{message}\n\n{}", render_output(output)),
        (None, Verdict::Skip) => format!("skipped: {}", sel.case.skip.clone().unwrap_or_default()),
        (None, Verdict::Inconclusive) => "no check reached the device, so nothing was shown either way".into(),
        (None, _) => String::new(),
    };
    run.progress.with(|p| p.case_finished(&key, verdict));
    Ok(CaseResult {
        key,
        title: sel.case.title.clone(),
        scas: sel.case.scas.clone(),
        purpose: sel.case.purpose.clone(),
        expected: sel.case.expected.clone(),
        verdict,
        skip_reason: sel.case.skip.clone(),
        steps: case.steps,
        evidence_excerpt,
        duration_ms: case_start.elapsed().as_millis() as u64,
    })
}

/// Ask the device who it is, if its rig says how, and journal the answer.
async fn report_identity(run: &RunContext<'_>, device: &str, agents: &mut Agents) -> Result<Option<String>, RunError> {
    let Some(command) = run.request.rig.device(device).ok().and_then(|d| d.identity.command.clone()) else {
        return Ok(None);
    };
    let (output, error) = match agents.read_identity(device, &command).await {
        Ok(answer) => (answer, None),
        Err(why) => (String::new(), Some(why)),
    };
    run.write(&JournalEntry::DeviceReported { device: device.to_string(), command, output: output.clone(), error })?;
    Ok((!output.is_empty()).then_some(output))
}

/// What the steps of a run work through: the agents that reach the devices, the
/// recorder and journal that keep what happened, and the progress printer.
struct StepTools<'a, 'p> {
    agents: &'a mut Agents,
    recorder: &'a Recorder,
    journal: &'a JournalWriter,
    progress: &'a SharedProgress<'p>,
}

/// Where a step stands in the run: its case, phase and index.
#[derive(Clone, Copy)]
struct StepAt<'a> {
    key: &'a Arc<CaseKey>,
    phase: Phase,
    index: usize,
}

/// Run one step (with its retries) of the case at `at`, journaling it, and fold its
/// verdict into the case's `run`.
async fn run_step(
    tools: &mut StepTools<'_, '_>,
    at: StepAt<'_>,
    step: &Step,
    scope: &mut Value,
    run: &mut CaseRun,
    abort: &mut watch::Receiver<bool>,
) -> Result<Verdict, RunError> {
    let StepTools { agents, recorder, journal, progress } = tools;
    let (agents, recorder, journal) = (&mut **agents, *recorder, *journal);
    let StepAt { key, phase, index } = at;
    let action = step.kind();
    let label = step.label();
    let device = step.device.as_deref().unwrap_or(&key.device);
    let timeout = step.timeout_ms.map(Duration::from_millis).unwrap_or_else(|| default_timeout(action));
    let (spec, unresolved) = match proofrig_plan::scope::resolve(step, scope) {
        Ok(spec) => (Arc::new(spec), None),
        Err(unresolved) => (Arc::new(Value::Null), Some(unresolved)),
    };
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        // The step records are handed to the journal with the key, spec and output
        // shared, not copied; its writer thread serializes them, off this thread,
        // which the next step waits for.
        journal.append_owned(StepRecord::Started {
            key: key.clone(),
            phase,
            index,
            action: action.as_str(),
            label: label.clone(),
            spec: spec.clone(),
            attempt,
        })?;
        let first_seq = recorder.next_seq();
        let mut output = match (&unresolved, missing_channel(step, scope)) {
            (_, Some(skip)) => skip,
            (Some(unresolved), None) => failure_output(FailureClass::Error, &unresolved.to_string()),
            (None, None) if step.script().is_some() => {
                super::script::perform(&mut Live { agents, recorder, abort }, device, step, scope.clone(), timeout).await
            }
            (None, None) => perform_or_abort(&mut Live { agents, recorder, abort }, device, step, &spec, timeout).await,
        };
        // Whatever a device printed of a secret is cut from the output exactly as from
        // the transcript, so the two still agree in replay (see the module doc).
        recorder.redactor().redact_json(&mut output);
        record_failure(recorder, device, &output);
        let last_seq = end_of_range(recorder, agents, device, action);
        let judgement = judge(action, &spec, &output);
        let output = Arc::new(output);
        let record = journal.append_owned(StepRecord::Finished {
            key: key.clone(),
            phase,
            index,
            attempt,
            verdict: judgement.verdict,
            message: judgement.message.clone(),
            output: output.clone(),
            first_seq,
            last_seq,
        })?;
        let retry = CaseTally::retries(step, judgement.verdict, attempt);
        progress.with(|p| {
            p.step_finished(&StepDone {
                key,
                phase,
                index,
                label: &label,
                verdict: judgement.verdict,
                message: &judgement.message,
                took: started.elapsed(),
                will_retry: retry,
            })
        });
        if retry {
            attempt += 1;
            // A bench fault (a device still booting, a PDU busy) needs a moment to
            // clear; `retries` then bounds the wait in time as well as in attempts.
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                _ = wait_for_abort(abort) => {}
            }
            continue;
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        if unresolved.is_none() {
            absorb(scope, step, &spec, &output);
        }
        match phase {
            Phase::Steps => run.tally.main_step(step, &judgement),
            Phase::Restore => run.tally.restore_step(&judgement),
        }
        // The evidence shown for a case: its worst step, or the last check that passed.
        // A passing check of a restore step (the device is back) is not what the case
        // shows, so it never stands in for the main steps' evidence.
        let shows_the_case = phase == Phase::Steps || judgement.verdict != Verdict::Pass;
        let replace = shows_the_case
            && match &run.decisive {
                None => judgement.verdict != Verdict::Pass || judgement.check_passed,
                Some((v, _, _)) => judgement.verdict < *v || (judgement.verdict == *v && judgement.check_passed && *v == Verdict::Pass),
            };
        if replace {
            run.decisive = Some((judgement.verdict, judgement.message.clone(), output));
        }
        run.steps.push(StepResult {
            phase,
            index,
            label,
            action: action.as_str().to_string(),
            verdict: judgement.verdict,
            message: judgement.message,
            record,
            duration_ms,
        });
        return Ok(judgement.verdict);
    }
}

fn not_run_case(key: &CaseKey, case: &Case) -> CaseResult {
    CaseResult {
        key: key.clone(),
        title: case.title.clone(),
        scas: case.scas.clone(),
        purpose: case.purpose.clone(),
        expected: case.expected.clone(),
        verdict: Verdict::NotRun,
        skip_reason: None,
        steps: Vec::new(),
        evidence_excerpt: "not run: the run was aborted before this case".into(),
        duration_ms: 0,
    }
}

/// A readable rendering of a step output for the evidence excerpt.
pub fn render_output(output: &Value) -> String {
    let mut text = match output {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) if s.contains('\n') => format!("{k}:\n{}", s.trim_end()),
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    };
    if text.len() > 4000 {
        let cut = (0..=4000).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(cut);
        text.push_str("\n… (full output in the journal)");
    }
    text
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
