//! Runs plans on a rig: cases, steps, retries, break conditions, restore steps,
//! abort, and the journal records that make every verdict replayable.
//!
//! For each case and each device it applies to, steps run in order. Each step's
//! `${...}` are resolved against the case scope, the action is performed through the
//! agents, what it observed is journaled, and `judge` decides the verdict from that
//! record alone. Retries are for infrastructure faults only; a FAIL is never retried.
//! Restore steps run whatever happened, including after Ctrl-C.
//!
//! Secrets stay out of the journal: the run's recorder ([`run_recorder`]) knows every
//! secret of the rig and the plans and redacts whatever a device prints of them, and
//! each step's output is redacted the same way before it is judged and journaled, so
//! replay compares redacted with redacted and needs no secret. `judge` therefore
//! decides on redacted text: a plan must never assert on a secret's value (it would
//! have to write the value down to do so, which is wrong anyway).

use std::collections::BTreeMap;
use std::sync::Arc;
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
use proofrig_plan::scope::{absorb, base_scope, missing_channel, select};
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
pub async fn execute(
    request: RunRequest,
    journal: Arc<JournalWriter>,
    recorder: Recorder,
    progress: &mut dyn Progress,
    mut abort: watch::Receiver<bool>,
) -> Result<RunResult, RunError> {
    let started = now();
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
    let write = |entry: &JournalEntry| Ok(journal.append(entry)?);
    let mut agents = Agents::new(request.rig.clone(), recorder.clone()).map_err(|e| RunError::Agents(e.to_string()))?;
    progress.run_started(&request.run_id, selected.len());

    let mut cases = Vec::new();
    let mut aborted = false;
    // Whether the operator's stop is on record (an ABORTED step records it itself).
    let mut abort_recorded = false;
    let record_abort = |device: &str, recorded: &mut bool| {
        if !*recorded {
            recorder.emit(proofrig_model::events::EventKind::Note {
                channel: ChannelId::new(device, EXECUTOR_CHANNEL),
                text: NOTE_ABORTED.into(),
            });
            *recorded = true;
        }
    };
    let mut reported: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (number, sel) in selected.iter().enumerate() {
        if !reported.contains_key(&sel.device) && !aborted {
            let answer = report_identity(&request.rig, &sel.device, &mut agents, &write).await?;
            reported.insert(sel.device.clone(), answer);
        }
        let key = CaseKey { plan: sel.plan.spec.plan.clone(), case: sel.case.id.clone(), device: sel.device.clone() };
        if aborted {
            cases.push(not_run_case(&key, sel.case));
            continue;
        }
        progress.case_started(number + 1, selected.len(), &key, &sel.case.title);
        write(&JournalEntry::CaseStarted { key: key.clone(), title: sel.case.title.clone(), scas: sel.case.scas.clone() })?;
        let case_start = Instant::now();
        let device = request.rig.device(&sel.device).expect("selected from the rig").clone();
        let mut scope = base_scope(sel.plan, &request.params, &sel.device, &device);
        // Shared with every step record of the case, which the journal serializes later.
        let shared_key = Arc::new(key.clone());

        let mut run = CaseRun { steps: Vec::new(), tally: CaseTally::new(sel.case), decisive: None };
        // A rig that lacks what the case needs (a declared value, a secret, a channel)
        // stops it before anything is sent: the case is ERROR, its steps NOT_RUN.
        // (None for a skipped case: `unready` says nothing of a case that does not run.)
        let unready = proofrig_plan::catalogue::unready(sel.plan, sel.case, &request.rig, &sel.device);
        if sel.case.skip.is_some() {
            run.tally = CaseTally::skipped();
        } else if let Some(why) = &unready {
            run.tally = CaseTally::unready(sel.case);
            run.decisive = Some((Verdict::Error, why.clone(), Arc::new(json!({}))));
            progress.step_finished(&StepDone {
                phase: Phase::Steps,
                index: 0,
                label: "the rig gives what the case needs",
                verdict: Verdict::Error,
                message: why,
                took: Duration::ZERO,
                will_retry: false,
            });
        } else {
            for (index, step) in sel.case.steps.iter().enumerate() {
                if !run.tally.stopped() && *abort.borrow() {
                    // The stop is what leaves these steps NOT_RUN: it goes on record.
                    record_abort(&sel.device, &mut abort_recorded);
                }
                if run.tally.stopped() || (*abort.borrow()) {
                    // NOT_RUN: the tally counts the steps left when the case ends.
                    continue;
                }
                let tools = &mut StepTools { agents: &mut agents, recorder: &recorder, journal: &journal, progress: &mut *progress };
                let at = StepAt { key: &shared_key, phase: Phase::Steps, index };
                let verdict = run_step(tools, at, step, &mut scope, &mut run, &mut abort).await?;
                if verdict == Verdict::Aborted {
                    aborted = true;
                    abort_recorded = true;
                }
            }
            // Restore steps always run: a changed device must be put back, even after an abort.
            let restore_abort = watch::channel(false).1;
            for (index, step) in sel.case.restore.iter().enumerate() {
                let mut never = restore_abort.clone();
                let tools = &mut StepTools { agents: &mut agents, recorder: &recorder, journal: &journal, progress: &mut *progress };
                let at = StepAt { key: &shared_key, phase: Phase::Restore, index };
                run_step(tools, at, step, &mut scope, &mut run, &mut never).await?;
            }
            if *abort.borrow() {
                // The stop leaves the cases after this one NOT_RUN: on record.
                record_abort(&sel.device, &mut abort_recorded);
                aborted = true;
            }
        }
        let CaseOutcome { verdict, rollup, checks_passed } = run.tally.outcome();
        write(&JournalEntry::CaseFinished {
            key: key.clone(),
            verdict,
            rollup,
            checks_passed,
            skip_reason: sel.case.skip.clone(),
            unready,
        })?;
        // Every finding first (one per line), then the output behind the worst one.
        let findings: Vec<&str> =
            run.steps.iter().filter(|s| s.verdict != Verdict::Pass && s.verdict != Verdict::Skip).map(|s| s.message.as_str()).collect();
        let evidence_excerpt = match (&run.decisive, verdict) {
            (Some((_, message, output)), _) if findings.len() > 1 => format!("{}\n\n{}", findings.join("\n"), render_output(output)),
            (Some((_, message, output)), _) => format!("{message}\n\n{}", render_output(output)),
            (None, Verdict::Skip) => format!("skipped: {}", sel.case.skip.clone().unwrap_or_default()),
            (None, Verdict::Inconclusive) => "no check reached the device, so nothing was shown either way".into(),
            (None, _) => String::new(),
        };
        progress.case_finished(&key, verdict);
        cases.push(CaseResult {
            key,
            title: sel.case.title.clone(),
            scas: sel.case.scas.clone(),
            purpose: sel.case.purpose.clone(),
            expected: sel.case.expected.clone(),
            verdict,
            skip_reason: sel.case.skip.clone(),
            steps: run.steps,
            evidence_excerpt,
            duration_ms: case_start.elapsed().as_millis() as u64,
        });
    }
    agents.close().await;
    // Closing released what the channels held; this catches any stream left open.
    recorder.flush_held_bytes();

    let rollup = Rollup::of(cases.iter().map(|c| c.verdict));
    let ended = now();
    // A thread a step's deadline abandoned may still record; after this, what it
    // records is not journaled: RunFinished is the last record (checkpoints aside).
    journal.end_agent_events();
    write(&JournalEntry::RunFinished { verdict: rollup.verdict, rollup: rollup.clone(), ended: ended.clone(), aborted })?;
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

/// Ask the device who it is, if its rig says how, and journal the answer.
async fn report_identity(
    rig: &Rig,
    device: &str,
    agents: &mut Agents,
    write: &impl Fn(&JournalEntry) -> Result<u64, RunError>,
) -> Result<Option<String>, RunError> {
    let Some(command) = rig.device(device).ok().and_then(|d| d.identity.command.clone()) else {
        return Ok(None);
    };
    let (output, error) = match agents.read_identity(device, &command).await {
        Ok(answer) => (answer, None),
        Err(why) => (String::new(), Some(why)),
    };
    write(&JournalEntry::DeviceReported { device: device.to_string(), command, output: output.clone(), error })?;
    Ok((!output.is_empty()).then_some(output))
}

/// What the steps of a run work through: the agents that reach the devices, the
/// recorder and journal that keep what happened, and the progress printer.
struct StepTools<'a> {
    agents: &'a mut Agents,
    recorder: &'a Recorder,
    journal: &'a JournalWriter,
    progress: &'a mut dyn Progress,
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
    tools: &mut StepTools<'_>,
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
        progress.step_finished(&StepDone {
            phase,
            index,
            label: &label,
            verdict: judgement.verdict,
            message: &judgement.message,
            took: started.elapsed(),
            will_retry: retry,
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
