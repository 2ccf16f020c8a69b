//! Recomputing a run's verdicts from its journal, as `proofrig verify` does.
//!
//! A third party holds the plans, the rig and the journal, nothing else. Replay walks
//! the journal and, for every step, (1) re-resolves the step from the plan and the
//! values earlier steps recorded, and compares it with the recorded spec, (2) re-derives
//! the recorded output from the raw events of the step's range (`rederive`: the bytes on
//! the wire, the SSH command and its exit status, the outlet's read-back, each connection
//! a scan made; console waits against the console as the expect engine read it,
//! `console_replay`), failures included, and (3) recomputes the verdict with the same
//! pure `judge` the executor used. Case and run verdicts are rolled up again. The first
//! disagreement is reported with its record number.
//!
//! Every event is accounted for: sequence numbers run without a gap; each step's (and
//! script call's) range lies within its own records, in order, none overlapping; and an
//! event outside every range is one of the few the executor does not cause within a
//! step (`notes::outside_allowed`), or one of the device identity reads, which are
//! re-derived too. The cases run are exactly the plan's cases on the rig's devices, in
//! order, unless the run records the operator's stop.
//!
//! No secret is needed: where a device printed one, both the raw events and the
//! recorded output carry the same redaction marker, so they are compared as they are.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use proofrig_model::events::{Direction, Event, EventKind};
use proofrig_model::rig::Rig;

use super::console_replay::Consoles;
use super::rederive::{self, bytes_on, Action};
use crate::journal::Record;
use crate::notes::{failure_note, is_abort, outside_allowed, EXECUTOR_CHANNEL};
use crate::record::{CaseKey, JournalEntry, Phase};
use crate::verify::{JournalRecord, ReplayInput, ReplayMismatch};
use proofrig_plan::scope::{absorb, base_scope, select, Lanes};
use proofrig_plan::tally::CaseTally;
use proofrig_plan::{Case, Plan, Step};
use proofrig_verdict::judge::judge;
use proofrig_verdict::{Rollup, Verdict};

/// Where a replay disagrees with the journal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{detail}", record.map(|r| format!("record {r}: ")).unwrap_or_default(), case.as_ref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct Disagreement {
    pub record: Option<u64>,
    pub case: Option<String>,
    pub detail: String,
}

/// What a successful replay recomputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub cases: Vec<(CaseKey, Verdict)>,
    pub run: Rollup,
    pub steps: usize,
    /// Whether the journal ends with the run's end (a crashed run does not).
    pub finished: bool,
}

struct OpenCase<'a> {
    key: CaseKey,
    /// Its place in the selection.
    place: usize,
    case: &'a Case,
    scope: Value,
    /// The case's verdicts so far, counted as the executor counts them.
    tally: CaseTally,
    next_step: usize,
    pending: Option<(Phase, usize, u32, Value)>,
    /// The attempt that must come next: a step that ended INFRA with retries left is
    /// tried again at once.
    retry: Option<(Phase, usize, u32)>,
}

/// A step's phase, index and attempt.
type StepAt = (Phase, usize, u32);

/// A StepFinished record's fields.
struct StepEnd {
    key: CaseKey,
    phase: Phase,
    index: usize,
    attempt: u32,
    verdict: Verdict,
    message: String,
    output: Value,
    first_seq: u64,
    last_seq: u64,
}

/// Replay `records` against the plans and rig they were made from.
pub fn replay(plans: &[Plan], rig: &Rig, records: &[Record]) -> Result<Replayed, Disagreement> {
    let mut replayer = Replayer::new(plans, rig);
    for record in records {
        let entry: JournalEntry = serde_json::from_value(record.entry.clone()).map_err(|e| not_an_entry(record.n, e))?;
        replayer.record(record.n, entry)?;
    }
    Ok(replayer.finish())
}

/// Where a record is not a journal entry proofrig writes.
pub fn not_an_entry(n: u64, why: impl std::fmt::Display) -> Disagreement {
    Disagreement { record: Some(n), case: None, detail: format!("not a journal entry proofrig writes: {why}") }
}

/// A replay fed one record at a time, in journal order, so a journal of any size is
/// replayed while it is read.
///
/// A run's devices may run side by side, each lane of cases (`scope::Lanes`: a device,
/// or the devices a case's steps join) with its own open case and step, their records
/// interleaved in the one journal. So every event is attributed to the lane of its
/// device (its channel's, or its outlet's), and a lane keeps the events recorded after
/// its open step's StepStarted until that step finishes: the recorder numbers and
/// journals events under one lock, and the executor takes a step's first sequence
/// number after journaling StepStarted and its last one before journaling
/// StepFinished, so every event of a step's range that is its lane's lies between the
/// two. Events of other lanes in between are theirs, checked against their own steps.
/// A run whose devices ran one after another (RunStarted does not say `side_by_side`)
/// is held to one open case at a time, in the selection's order. Each console's text
/// is kept from where its next wait starts (see `console_replay`).
pub struct Replayer<'a> {
    plans: &'a [Plan],
    rig: &'a Rig,
    params: BTreeMap<String, Value>,
    /// The case instances the run must run, in order.
    selected: Vec<CaseKey>,
    /// Whether RunStarted says the devices ran side by side.
    side_by_side: bool,
    /// How many cases started, for a run whose devices ran one after another.
    next_case: usize,
    /// The lane of each device: the selection's lanes, then one per other device seen.
    lane_of: BTreeMap<String, usize>,
    lanes: Vec<Lane<'a>>,
    /// The sequence number the next event must have.
    next_seq: u64,
    consoles: Consoles,
    /// Devices a step's time limit cut off (the executor noted the deadline): the agent
    /// threads it abandoned may still record about them, outside any range.
    cut_off: BTreeSet<String>,
    /// Devices whose identity the run reported.
    reported: BTreeSet<String>,
    /// Whether the operator's stop is on record.
    aborted: bool,
    /// The cases finished, with their place in the selection.
    finished_cases: Vec<(usize, CaseKey, Verdict)>,
    steps: usize,
    finished: bool,
}

/// One lane's state: its cases, the one open, and the events of its open step.
#[derive(Default)]
struct Lane<'a> {
    /// Its case instances' places in the selection, in order, and how many started.
    cases: Vec<usize>,
    next_case: usize,
    open: Option<OpenCase<'a>>,
    /// Events of the open step, by sequence number.
    events: BTreeMap<u64, Event>,
    /// `next_seq` when the open step started.
    step_started_seq: u64,
    /// Events outside any step that no rule has placed yet (an identity read, until
    /// its DeviceReported), with their record numbers.
    loose: Vec<(u64, Event)>,
}

impl Lane<'_> {
    fn label(&self) -> Option<String> {
        self.open.as_ref().map(|c| format!("{} on {}", c.key.case, c.key.device))
    }
}

/// The device an event is about: its channel's, or a power action's outlet's.
fn device_of(event: &Event) -> &str {
    match &event.kind {
        EventKind::Power { device, .. } => device,
        kind => kind.channel().map_or("", |c| c.device.as_str()),
    }
}

impl<'a> Replayer<'a> {
    pub fn new(plans: &'a [Plan], rig: &'a Rig) -> Self {
        Replayer {
            plans,
            rig,
            params: BTreeMap::new(),
            selected: Vec::new(),
            side_by_side: false,
            next_case: 0,
            lane_of: BTreeMap::new(),
            lanes: Vec::new(),
            next_seq: 0,
            consoles: Consoles::default(),
            cut_off: BTreeSet::new(),
            reported: BTreeSet::new(),
            aborted: false,
            finished_cases: Vec::new(),
            steps: 0,
            finished: false,
        }
    }

    /// What the records so far recompute to, the cases in the selection's order.
    pub fn finish(mut self) -> Replayed {
        self.finished_cases.sort_by_key(|(place, _, _)| *place);
        let cases: Vec<(CaseKey, Verdict)> = self.finished_cases.into_iter().map(|(_, key, verdict)| (key, verdict)).collect();
        let run = Rollup::of(cases.iter().map(|(_, v)| *v));
        Replayed { cases, run, steps: self.steps, finished: self.finished }
    }

    /// The lane of `device`; a device no selected case touches gets a lane of its own.
    fn lane(&mut self, device: &str) -> usize {
        if let Some(lane) = self.lane_of.get(device) {
            return *lane;
        }
        self.lanes.push(Lane::default());
        self.lane_of.insert(device.to_string(), self.lanes.len() - 1);
        self.lanes.len() - 1
    }

    /// The lane a record is about, if it is about one: a case's or a step's, an event's.
    fn lane_of_entry(&mut self, entry: &JournalEntry) -> Option<usize> {
        match entry {
            JournalEntry::CaseStarted { key, .. }
            | JournalEntry::CaseFinished { key, .. }
            | JournalEntry::StepStarted { key, .. }
            | JournalEntry::StepFinished { key, .. } => Some(self.lane(&key.device)),
            JournalEntry::Event { event } => Some(self.lane(device_of(event))),
            JournalEntry::DeviceReported { device, .. } => Some(self.lane(device)),
            _ => None,
        }
    }

    /// The next record, `n`, whose entry is `entry`. The first disagreement is an error;
    /// feed nothing more after it.
    pub fn record(&mut self, n: u64, entry: JournalEntry) -> Result<(), Disagreement> {
        let lane = self.lane_of_entry(&entry);
        let label: Option<String> = match lane {
            Some(lane) => self.lanes[lane].label(),
            None => self.lanes.iter().find_map(Lane::label),
        };
        let at = |case: &Option<String>, detail: String| Disagreement { record: Some(n), case: case.clone(), detail };
        // A case or step record ends any stretch of events outside the steps (of its
        // lane; of every lane when the devices ran one after another): an event no rule
        // placed by then has no place at all.
        if matches!(
            entry,
            JournalEntry::RunStarted { .. }
                | JournalEntry::CaseStarted { .. }
                | JournalEntry::StepStarted { .. }
                | JournalEntry::CaseFinished { .. }
        ) {
            let ends = |l: usize| lane.is_none() || !self.side_by_side || Some(l) == lane;
            if let Some((record, event)) = self.lanes.iter().enumerate().filter(|(l, _)| ends(*l)).find_map(|(_, l)| l.loose.first()) {
                return Err(Disagreement { record: Some(*record), case: label, detail: unplaced(event) });
            }
        }
        match entry {
            JournalEntry::RunStarted { parameters, only_device, side_by_side, .. } => {
                self.params = parameters;
                let selected = select(self.plans, self.rig, only_device.as_deref());
                self.selected = selected
                    .iter()
                    .map(|s| CaseKey { plan: s.plan.spec.plan.clone(), case: s.case.id.clone(), device: s.device.clone() })
                    .collect();
                let lanes = Lanes::of(&selected);
                // Lanes given to events before RunStarted (none in a run's journal) go.
                self.lanes = lanes.cases.into_iter().map(|cases| Lane { cases, ..Lane::default() }).collect();
                self.lane_of = lanes.of_device;
                self.side_by_side = side_by_side;
            }
            JournalEntry::Event { event } => self.event(n, event, lane.expect("an event has a lane"), &label)?,
            JournalEntry::DeviceReported { device, command, output, error } => {
                let lane = lane.expect("a device has a lane");
                let loose = std::mem::take(&mut self.lanes[lane].loose);
                self.device_reported(&device, &command, &output, error.as_deref(), &loose)
                    .map_err(|detail| at(&None, format!("device {device}'s identity: {detail}")))?;
                self.reported.insert(device);
            }
            // A signature over the records before it, checked by `verify`; it decides nothing.
            JournalEntry::Checkpoint(_) => {}
            // `proofrig seal` ended a run that stopped: what it says was open must be.
            JournalEntry::RunSealedIncomplete(sealed) => {
                let mut open: Vec<(CaseKey, Option<StepAt>)> = self
                    .lanes
                    .iter()
                    .filter_map(|l| l.open.as_ref())
                    .map(|c| (c.key.clone(), c.pending.as_ref().map(|(p, i, a, _)| (*p, *i, *a))))
                    .collect();
                let mut said: Vec<(CaseKey, Option<StepAt>)> =
                    sealed.open().map(|(key, step)| (key.clone(), step.map(|s| (s.phase, s.index, s.attempt)))).collect();
                open.sort_by(|a, b| a.0.cmp(&b.0));
                said.sort_by(|a, b| a.0.cmp(&b.0));
                if said != open {
                    return Err(at(&label, "the seal record names other open cases or steps than the journal shows".into()));
                }
            }
            JournalEntry::CaseStarted { key, .. } => self.case_started(key, lane.expect("a case has a lane"), &at, &label)?,
            JournalEntry::StepStarted { key, phase, index, spec, attempt, .. } => {
                let aborted = self.aborted;
                let lane = &mut self.lanes[lane.expect("a step has a lane")];
                let Some(current) = lane.open.as_mut() else { return Err(at(&None, "a step outside any case".into())) };
                if key != current.key {
                    return Err(at(&label, "the step belongs to another case".into()));
                }
                let step =
                    step_of(current.case, phase, index).ok_or_else(|| at(&label, format!("the plan has no {phase:?} step {index}")))?;
                match current.retry.take() {
                    Some(retry) if retry != (phase, index, attempt) => {
                        return Err(at(&label, format!("step {} ended INFRA with retries left, but is not tried again next", retry.1 + 1)));
                    }
                    Some(_) => {}
                    None if attempt != 1 => {
                        return Err(at(&label, format!("attempt {attempt} of step {} follows no failed attempt", index + 1)))
                    }
                    None => {}
                }
                if current.pending.is_some() {
                    return Err(at(&label, format!("step {} starts before the case's previous step finished", index + 1)));
                }
                if phase == Phase::Steps && attempt == 1 {
                    // Steps run in order; skipped indices are NOT_RUN only after a stop.
                    if index != current.next_step || current.tally.stopped() || aborted {
                        return Err(at(
                            &label,
                            format!("step {} ran out of order, after the case stopped, or after the operator stopped the run", index + 1),
                        ));
                    }
                    current.next_step = index + 1;
                }
                let expected = proofrig_plan::scope::resolve(step, &current.scope).unwrap_or(Value::Null);
                if expected != spec {
                    return Err(at(
                        &label,
                        format!(
                            "step {} ({}) was recorded as {spec} but the plan and earlier outputs give {expected}",
                            index + 1,
                            step.kind()
                        ),
                    ));
                }
                current.pending = Some((phase, index, attempt, spec));
                lane.events.clear();
                lane.step_started_seq = self.next_seq;
            }
            JournalEntry::StepFinished { key, phase, index, attempt, verdict, message, output, first_seq, last_seq } => {
                let finished = StepEnd { key, phase, index, attempt, verdict, message, output, first_seq, last_seq };
                self.step_finished(finished, lane.expect("a step has a lane"), &at, &label)?;
            }
            JournalEntry::CaseFinished { key, verdict, rollup, checks_passed, unready, .. } => {
                let lane = &mut self.lanes[lane.expect("a case has a lane")];
                let Some(current) = lane.open.take() else { return Err(at(&None, "a case finishes that did not start".into())) };
                if key != current.key {
                    return Err(at(&label, "the finished case is not the one that started".into()));
                }
                if current.pending.is_some() || current.retry.is_some() {
                    return Err(at(&label, "the case finishes with a step still to finish or to try again".into()));
                }
                let plan = self.plans.iter().find(|p| p.spec.plan == key.plan).expect("found at the case's start");
                let not_ready = proofrig_plan::catalogue::unready(plan, current.case, self.rig, &key.device);
                if not_ready != unready {
                    return Err(at(
                        &label,
                        "whether the rig gives what the case needs is recorded otherwise than the plan and rig show".into(),
                    ));
                }
                let outcome = if current.case.skip.is_some() {
                    CaseTally::skipped().outcome()
                } else if not_ready.is_some() {
                    if current.next_step != 0 || !current.tally.is_empty() {
                        return Err(at(&label, "steps ran in a case the rig was not ready for".into()));
                    }
                    CaseTally::unready(current.case).outcome()
                } else {
                    // Steps left out: only after a stop (the case's, or the operator's).
                    let not_run = current.tally.steps_left();
                    if not_run > 0 && !current.tally.stopped() && !self.aborted {
                        return Err(at(
                            &label,
                            format!("{not_run} step(s) of the case never ran, yet neither the case nor the run was stopped"),
                        ));
                    }
                    let outcome = current.tally.outcome();
                    if outcome.checks_passed != checks_passed {
                        return Err(at(
                            &label,
                            format!("recorded {checks_passed} passed checks, the evidence shows {}", outcome.checks_passed),
                        ));
                    }
                    outcome
                };
                let (expected, recomputed) = (outcome.verdict, outcome.rollup);
                if expected != verdict {
                    return Err(at(&label, format!("the case is recorded {verdict} but its steps give {expected}")));
                }
                if recomputed != rollup {
                    return Err(at(
                        &label,
                        format!("the case's step counts are recorded as {} but its steps give {}", rollup.summary(), recomputed.summary()),
                    ));
                }
                self.finished_cases.push((current.place, key, verdict));
            }
            JournalEntry::RunFinished { verdict, rollup, aborted, .. } => {
                if self.lanes.iter().any(|l| l.open.is_some()) {
                    return Err(at(&label, "the run ends inside a case".into()));
                }
                // Closing the channels at the run's end records their closes and what
                // their streams still held; nothing else stands after a lane's last case.
                if let Some((record, event)) = self.lanes.iter().flat_map(|l| &l.loose).find(|(_, e)| !closes_run(e)) {
                    return Err(Disagreement { record: Some(*record), case: None, detail: unplaced(event) });
                }
                if aborted != self.aborted {
                    return Err(at(
                        &None,
                        format!(
                            "the run is recorded as {}aborted, but the operator's stop is {}on record",
                            if aborted { "" } else { "not " },
                            if self.aborted { "" } else { "not " }
                        ),
                    ));
                }
                let mut verdicts: Vec<Verdict> = self.finished_cases.iter().map(|(_, _, v)| *v).collect();
                let missing = self.selected.len().saturating_sub(self.finished_cases.len());
                if missing > 0 && !aborted {
                    return Err(at(&None, format!("{missing} selected case(s) never ran, yet the run was not aborted")));
                }
                verdicts.extend(std::iter::repeat_n(Verdict::NotRun, missing));
                let recomputed = Rollup::of(verdicts);
                if recomputed.verdict != verdict || recomputed != rollup {
                    return Err(at(
                        &None,
                        format!(
                            "the run is recorded {verdict} ({}) but its cases give {} ({})",
                            rollup.summary(),
                            recomputed.verdict,
                            recomputed.summary()
                        ),
                    ));
                }
                self.finished = true;
            }
        }
        Ok(())
    }

    /// A case starts in `lane`: the next of its lane's cases (of the run's, when the
    /// devices ran one after another), none of its lane open, the run not stopped.
    fn case_started(
        &mut self,
        key: CaseKey,
        lane: usize,
        at: &impl Fn(&Option<String>, String) -> Disagreement,
        label: &Option<String>,
    ) -> Result<(), Disagreement> {
        if self.lanes[lane].open.is_some() || (!self.side_by_side && self.lanes.iter().any(|l| l.open.is_some())) {
            return Err(at(label, "a case starts before the previous one finished".into()));
        }
        if self.aborted {
            return Err(at(&None, format!("case {} on {} starts after the operator stopped the run", key.case, key.device)));
        }
        let place = if self.side_by_side {
            let Lane { cases, next_case, .. } = &mut self.lanes[lane];
            let place = cases.get(*next_case).copied();
            *next_case += 1;
            place
        } else {
            self.next_case += 1;
            (self.next_case <= self.selected.len()).then(|| self.next_case - 1)
        };
        let Some(place) = place else {
            return Err(at(&None, format!("case {} on {} runs after every case the plans and the rig select", key.case, key.device)));
        };
        let expected = &self.selected[place];
        if *expected != key {
            return Err(at(
                &None,
                format!(
                    "case {} on {} runs where the plans and the rig put case {} on {}",
                    key.case, key.device, expected.case, expected.device
                ),
            ));
        }
        let plan = self
            .plans
            .iter()
            .find(|p| p.spec.plan == key.plan)
            .ok_or_else(|| at(&None, format!("plan `{}` is not among the bundle's plans", key.plan)))?;
        let case = plan
            .spec
            .cases
            .iter()
            .find(|c| c.id == key.case)
            .ok_or_else(|| at(&None, format!("plan `{}` has no case `{}`", key.plan, key.case)))?;
        let device = self.rig.device(&key.device).map_err(|e| at(&None, e.to_string()))?;
        if device.identity.command.is_some() && !self.reported.contains(&key.device) {
            return Err(at(
                &None,
                format!("the rig says how to ask {} who it is, but its answer is not on record before its first case", key.device),
            ));
        }
        let scope = base_scope(plan, &self.params, &key.device, device);
        self.lanes[lane].open =
            Some(OpenCase { key, place, case, scope, tally: CaseTally::new(case), next_step: 0, pending: None, retry: None });
        Ok(())
    }

    /// A step of `lane`'s open case finishes: its range, its events (its lane's), its
    /// output, its verdict.
    fn step_finished(
        &mut self,
        end: StepEnd,
        lane: usize,
        at: &impl Fn(&Option<String>, String) -> Disagreement,
        label: &Option<String>,
    ) -> Result<(), Disagreement> {
        let StepEnd { key, phase, index, attempt, verdict, message, output, first_seq, last_seq } = end;
        let next_seq = self.next_seq;
        let Lane { open, events, step_started_seq, .. } = &mut self.lanes[lane];
        let Some(current) = open.as_mut() else { return Err(at(&None, "a step outside any case".into())) };
        let pending = current.pending.take();
        if key != current.key || pending.as_ref().map(|(p, i, a, _)| (*p, *i, *a)) != Some((phase, index, attempt)) {
            return Err(at(label, "a step finishes that did not start".into()));
        }
        let spec = pending.map(|(_, _, _, s)| s).unwrap_or(Value::Null);
        let step = step_of(current.case, phase, index).expect("checked at start");
        let device = step.device.clone().unwrap_or_else(|| key.device.clone());
        let skip = proofrig_plan::scope::missing_channel(step, &current.scope);
        if skip.is_some() != output.get("skipped").is_some() {
            return Err(at(
                label,
                format!("step {} ({}) was skipped or run against what the rig says the device has", index + 1, step.kind()),
            ));
        }
        // The executor writes an empty range that starts at event 0 as 0..=0 (its
        // last number is one less than the next, saturated): empty while there is
        // no event 0.
        let range = if (first_seq, last_seq) == (0, 0) && next_seq == 0 {
            Range { start: 0, end: 0 }
        } else {
            Range { start: first_seq, end: last_seq.saturating_add(1) }
        };
        if range.start < *step_started_seq || range.end > next_seq || range.start > range.end {
            return Err(at(
                label,
                format!(
                    "step {} ({}): its range of events {first_seq}..={last_seq} does not lie within its own records",
                    index + 1,
                    step.kind()
                ),
            ));
        }
        let events = std::mem::take(events);
        if events.values().any(|e| rederive::cut_off(&device, &[e])) {
            self.cut_off.insert(device.clone());
        }
        let mut ctx = rederive::Context { rig: self.rig, consoles: &mut self.consoles, cut_off: &self.cut_off };
        if let Err(detail) = check_step_events(&mut ctx, step, &device, &spec, &output, range, &events) {
            return Err(at(label, format!("step {} ({}): {detail}", index + 1, step.kind())));
        }
        if let (Some(source), None) = (step.script(), &skip) {
            if let Err(detail) = proofrig_plan::script::replay(source, step.script_origin.as_ref(), &current.scope, &output) {
                return Err(at(label, format!("step {} (script): {detail}", index + 1)));
            }
        }
        let judged = judge(step.kind(), &spec, &output);
        if judged.verdict != verdict || judged.message != message {
            return Err(at(
                label,
                format!(
                    "step {} ({}) is recorded {verdict} (\"{message}\") but its evidence gives {} (\"{}\")",
                    index + 1,
                    step.kind(),
                    judged.verdict,
                    judged.message
                ),
            ));
        }
        self.steps += 1;
        if CaseTally::retries(step, verdict, attempt) {
            current.retry = Some((phase, index, attempt + 1));
        } else {
            match phase {
                Phase::Steps => current.tally.main_step(step, &judged),
                Phase::Restore => current.tally.restore_step(&judged),
            }
            if !spec.is_null() {
                absorb(&mut current.scope, step, &spec, &output);
            }
        }
        Ok(())
    }

    /// An agent event of `lane`: numbered next, and kept with its lane's open step, or
    /// placed now.
    fn event(&mut self, n: u64, event: Event, lane: usize, label: &Option<String>) -> Result<(), Disagreement> {
        if event.seq != self.next_seq {
            return Err(Disagreement {
                record: Some(n),
                case: label.clone(),
                detail: format!(
                    "event {} follows event {}: the event sequence numbers have a gap or run backwards",
                    event.seq,
                    self.next_seq as i128 - 1
                ),
            });
        }
        self.next_seq += 1;
        if is_abort(&event) {
            self.aborted = true;
        }
        let lane = &mut self.lanes[lane];
        if lane.open.as_ref().is_some_and(|c| c.pending.is_some()) {
            lane.events.insert(event.seq, event);
            return Ok(());
        }
        self.consoles.feed(&event);
        if !outside_allowed(&event) && !self.cut_off.iter().any(|d| rederive::belongs_to(&event, d)) {
            lane.loose.push((n, event));
        }
        Ok(())
    }

    /// A device's answer to its identity command: re-derived from the events of the
    /// read (`loose`, its lane's events since the lane's last record that was not an
    /// event).
    fn device_reported(
        &mut self,
        device: &str,
        command: &str,
        output: &str,
        error: Option<&str>,
        loose: &[(u64, Event)],
    ) -> Result<(), String> {
        let rig_device = self.rig.device(device).map_err(|e| e.to_string())?;
        if rig_device.identity.command.as_deref() != Some(command) {
            return Err("the command asked is not the rig's identity command".into());
        }
        if self.reported.contains(device) {
            return Err("asked a second time".into());
        }
        if let Some((_, event)) = loose.iter().find(|(_, e)| !rederive::belongs_to(e, device)) {
            return Err(unplaced(event));
        }
        let events: Vec<&Event> = loose.iter().map(|(_, e)| e).collect();
        if rig_device.ssh.is_some() {
            let execs: Vec<&str> = events
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::SshExec { command, .. } => Some(command.as_str()),
                    _ => None,
                })
                .collect();
            let exited = events.iter().any(|e| matches!(&e.kind, EventKind::SshExit { exit_status: Some(_), timed_out: false, .. }));
            let answer = String::from_utf8_lossy(&bytes_on(&events, device, "ssh:exec:stdout", Direction::In)).trim().to_string();
            return match (error, execs.as_slice()) {
                (Some(_), _) if exited => Err("recorded as not answered, but the command ran to its exit".into()),
                (Some(_), _) if !output.is_empty() => Err("recorded as not answered, yet with an answer".into()),
                (Some(_), _) => Ok(()),
                (None, [asked]) if *asked == command && exited && answer == output => Ok(()),
                (None, _) => Err("the recorded answer is not what the identity command printed over SSH".into()),
            };
        }
        let console = rig_device.console.clone().ok_or("the device has neither SSH nor a console to be asked on")?;
        let sent = bytes_on(&events, device, "console", Direction::Out);
        let recorded = match error {
            Some(why) if !output.is_empty() => return Err(format!("recorded as not answered ({why}), yet with an answer")),
            Some(why) => serde_json::json!({"error": {"class": "error", "message": why}}),
            None => serde_json::json!({"output": output, "exit_status": Value::Null}),
        };
        // The answer is the command's output, trimmed; its exit status is not recorded.
        self.consoles.identity(device, command, &recorded, &sent, console.prompt.as_deref(), &console.death_strings)
    }
}

/// A step's (or script call's) range of events, `start..end` (recorded as
/// `first_seq..=last_seq`).
#[derive(Debug, Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
}

impl Range {
    fn contains(&self, seq: u64) -> bool {
        self.start <= seq && seq < self.end
    }
}

/// Check every event of a finished step (`events`, all those journaled while it ran):
/// each action's output against the events of its range (a script's: each call's), and
/// every other event is one that may stand outside a range. Console events are taken
/// in, in order, as the walk passes them.
fn check_step_events(
    ctx: &mut rederive::Context<'_>,
    step: &Step,
    device: &str,
    spec: &Value,
    output: &Value,
    range: Range,
    events: &BTreeMap<u64, Event>,
) -> Result<(), String> {
    struct Part<'v> {
        action: Action<'v>,
        range: Range,
        name: String,
    }
    let mut parts: Vec<Part> = Vec::new();
    if step.script().is_some() && output.get("skipped").is_none() {
        let mut next = range.start;
        let calls = output["calls"].as_array().map(Vec::as_slice).unwrap_or_default();
        for (n, call) in calls.iter().enumerate() {
            let action = call["action"].as_str().unwrap_or_default();
            let name = format!("call {} ({action}, script line {})", n + 1, call["line"]);
            let (Some(first), Some(last)) = (call["first_seq"].as_u64(), call["last_seq"].as_u64()) else {
                return Err(format!("{name}: its range of events is not recorded"));
            };
            // 0..=0 is also how the executor writes an empty range at event 0: so it is
            // when there is no event 0, or the next call's range starts there too.
            let empty_at_zero =
                (first, last) == (0, 0) && (!events.contains_key(&0) || calls.get(n + 1).is_some_and(|c| c["first_seq"] == 0));
            let call_range = if empty_at_zero { Range { start: 0, end: 0 } } else { Range { start: first, end: last.saturating_add(1) } };
            if !empty_at_zero {
                if call_range.start < next || call_range.end > range.end || call_range.start > call_range.end {
                    return Err(format!("{name}: its range of events {first}..={last} lies outside the step's, before an earlier call's end, or runs backwards"));
                }
                next = call_range.end;
            }
            parts.push(Part {
                action: Action { action, device, spec: &call["spec"], output: &call["output"], step: None },
                range: call_range,
                name,
            });
        }
    } else {
        parts.push(Part {
            action: Action { action: step.kind().as_str(), device, spec, output, step: Some(step) },
            range,
            name: String::new(),
        });
    }
    // The script's own failure (after its calls) is noted within the step's range.
    let step_note = if step.script().is_some() { failure_note(output) } else { None };
    let mut step_note_found = false;
    let mut pending = events.values().peekable();
    let mut outside = |event: &Event, ctx: &mut rederive::Context<'_>| -> Result<(), String> {
        ctx.consoles.feed(event);
        let own_note = range.contains(event.seq)
            && matches!(&event.kind, EventKind::Note { channel, text } if channel.device == device && channel.channel == EXECUTOR_CHANNEL && Some(text) == step_note.as_ref());
        step_note_found |= own_note;
        if own_note || outside_allowed(event) || ctx.cut_off.iter().any(|d| rederive::belongs_to(event, d)) {
            Ok(())
        } else {
            Err(unplaced(event))
        }
    };
    for part in &parts {
        while let Some(event) = pending.next_if(|e| e.seq < part.range.start) {
            outside(event, ctx)?;
        }
        let mut own: Vec<&Event> = Vec::new();
        while let Some(event) = pending.next_if(|e| e.seq < part.range.end) {
            ctx.consoles.feed(event);
            own.push(event);
        }
        rederive::check(ctx, &part.action, &own)
            .map_err(|detail| if part.name.is_empty() { detail } else { format!("{}: {detail}", part.name) })?;
    }
    for event in pending {
        outside(event, ctx)?;
    }
    if let Some(note) = step_note.filter(|_| !step_note_found) {
        return Err(format!("the script is recorded as failed (`{note}`), but its events hold no record of that failure"));
    }
    Ok(())
}

/// What closing the channels at the run's end records: the closes and the last bytes.
fn closes_run(event: &Event) -> bool {
    matches!(event.kind, EventKind::ChannelClosed { .. } | EventKind::ChannelLost { .. } | EventKind::Bytes { .. })
}

/// Why an event outside every range is wrong there.
fn unplaced(event: &Event) -> String {
    let what = event.kind.channel().map_or_else(|| "a power action".to_string(), |c| format!("on {c}"));
    format!("event {} ({what}) lies outside the range of every step and is none of the events that may (console output, a channel's loss or close, the operator's stop, a device's identity read)", event.seq)
}

fn step_of(case: &Case, phase: Phase, index: usize) -> Option<&proofrig_plan::Step> {
    match phase {
        Phase::Steps => case.steps.get(index),
        Phase::Restore => case.restore.get(index),
    }
}

/// The verdict replay `proofrig verify` runs: recompute every verdict from the plans,
/// the rig and the journal, and check the signed statement says the same, record by
/// record as `verify` reads the journal. A disagreement of the recompute is reported
/// before one with the signed statement, wherever each shows.
pub fn replay_bundle(input: &ReplayInput, records: &mut dyn Iterator<Item = JournalRecord>) -> Result<(), ReplayMismatch> {
    let mismatch = |detail: String| ReplayMismatch { record: None, case: None, detail };
    let rig_text = String::from_utf8_lossy(&input.rig);
    let rig = proofrig_model::rig::Rig::parse("inputs/rig.yaml", &rig_text, std::path::Path::new("."))
        .map_err(|e| mismatch(format!("the bundle's rig does not load: {e}")))?;
    let mut plans = Vec::new();
    for (name, bytes) in &input.plans {
        let plan = proofrig_plan::Plan::parse(name, &String::from_utf8_lossy(bytes))
            .map_err(|e| mismatch(format!("the bundle's plan {name} does not load: {e}")))?;
        plans.push(plan);
    }
    let disagreement = |d: Disagreement| ReplayMismatch { record: d.record, case: d.case, detail: d.detail };
    let mut recompute = Replayer::new(&plans, &rig);
    let mut signed = crate::verify::RecordedVerdicts::new(input);
    for record in records {
        if let Ok(check) = &mut signed {
            if let Err(mismatch) = check.record(&record) {
                signed = Err(mismatch);
            }
        }
        let entry = record.entry.map_err(|other| disagreement(not_an_entry(record.n, other.reason)))?;
        recompute.record(record.n, entry).map_err(disagreement)?;
    }
    signed?.finish()
}
