//! Recomputing a run's verdicts from its journal, as `proofrig verify` does.
//!
//! A third party holds the plans, the rig and the journal, nothing else. Replay walks
//! the journal and, for every step, (1) re-resolves the step from the plan and the
//! values earlier steps recorded, and compares it with the recorded spec, (2) checks
//! that the recorded output is what the raw events of that step show (the bytes on
//! the wire, the SSH exit status, the outlet's read-back), and (3) recomputes the
//! verdict with the same pure `judge` the executor used. Case and run verdicts are
//! rolled up again. The first disagreement is reported with its record number.
//!
//! No secret is needed: where a device printed one, both the raw events and the
//! recorded output carry the same redaction marker, so they are compared as they are.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use proofrig_agents::ansi::AnsiFilter;
use proofrig_agents::events::{Direction, Event, EventKind};
use proofrig_agents::rig::Rig;

use super::actions::Agents;
use super::executor::{absorb, base_scope, select, stops_case, unready_verdicts};
use super::judge::judge;
use crate::evidence::journal::Record;
use crate::evidence::record::{CaseKey, JournalEntry, Phase};
use crate::plan::{Case, Plan};
use crate::verdict::{case_verdict, Rollup, Verdict};

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
    case: &'a Case,
    scope: Value,
    verdicts: Vec<Verdict>,
    checks_passed: usize,
    touched: bool,
    stopped: bool,
    next_step: usize,
    pending: Option<(Phase, usize, u32, Value)>,
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
/// replayed while it is read. It keeps only the agent events of the step that is
/// open (recorded after its StepStarted): the recorder numbers and journals events
/// under one lock, and the executor takes a step's first sequence number after
/// journaling StepStarted and its last one before journaling StepFinished, so every
/// event of a step's range lies between the two. Other events are dropped as they come.
pub struct Replayer<'a> {
    plans: &'a [Plan],
    rig: &'a Rig,
    params: BTreeMap<String, Value>,
    only_device: Option<String>,
    /// Events of the open step, by sequence number.
    events: BTreeMap<u64, Event>,
    /// Per device, where the console output the next console wait may consume begins
    /// (the first record of the last step that consumed or cleared the console).
    console_from: BTreeMap<String, u64>,
    /// Per device, console bytes received since then outside the open step: a wait
    /// may match text that arrived while another step ran (a `Password: ` printed in
    /// reply to a key sent by the step before). Bounded: a wait only ever matches
    /// within the expect window, so older bytes can go.
    console_backlog: BTreeMap<String, Backlog>,
    finished_cases: Vec<(CaseKey, Verdict)>,
    open: Option<OpenCase<'a>>,
    steps: usize,
    finished: bool,
}

impl<'a> Replayer<'a> {
    pub fn new(plans: &'a [Plan], rig: &'a Rig) -> Self {
        Replayer {
            plans,
            rig,
            params: BTreeMap::new(),
            only_device: None,
            events: BTreeMap::new(),
            console_from: BTreeMap::new(),
            console_backlog: BTreeMap::new(),
            finished_cases: Vec::new(),
            open: None,
            steps: 0,
            finished: false,
        }
    }

    /// What the records so far recompute to.
    pub fn finish(self) -> Replayed {
        let run = Rollup::of(self.finished_cases.iter().map(|(_, v)| *v));
        Replayed { cases: self.finished_cases, run, steps: self.steps, finished: self.finished }
    }

    /// The next record, `n`, whose entry is `entry`. The first disagreement is an error;
    /// feed nothing more after it.
    pub fn record(&mut self, n: u64, entry: JournalEntry) -> Result<(), Disagreement> {
        let Replayer { plans, rig, params, only_device, events, console_from, console_backlog, finished_cases, open, steps, finished } = self;
        let (plans, rig) = (*plans, *rig);
        let label: Option<String> = open.as_ref().map(|c| format!("{} on {}", c.key.case, c.key.device));
        let at = |case: &Option<String>, detail: String| Disagreement { record: Some(n), case: case.clone(), detail };
        match entry {
            JournalEntry::RunStarted { parameters, only_device: only, .. } => {
                *params = parameters;
                *only_device = only;
            }
            JournalEntry::Event { event } => {
                if open.as_ref().is_some_and(|c| c.pending.is_some()) {
                    events.insert(event.seq, event);
                } else if let EventKind::Bytes { channel, direction: Direction::In, .. } = &event.kind {
                    if channel.channel == "console" {
                        console_backlog.entry(channel.device.clone()).or_default().push(event);
                    }
                }
            }
            // An observation beside the verdicts; it decides nothing.
            JournalEntry::DeviceReported { .. } => {}
            // A signature over the records before it, checked by `verify`; it decides nothing.
            JournalEntry::Checkpoint(_) => {}
            // `proofrig seal` ended a run that stopped: what it says was open must be.
            JournalEntry::RunSealedIncomplete(sealed) => {
                let step = open.as_ref().and_then(|c| c.pending.as_ref()).map(|(p, i, a, _)| (*p, *i, *a));
                if sealed.open_case.as_ref() != open.as_ref().map(|c| &c.key) || sealed.open_step.as_ref().map(|s| (s.phase, s.index, s.attempt)) != step {
                    return Err(at(&label, "the seal record names another open case or step than the journal shows".into()));
                }
            }
            JournalEntry::CaseStarted { key, .. } => {
                if open.is_some() {
                    return Err(at(&label, "a case starts before the previous one finished".into()));
                }
                let plan = plans.iter().find(|p| p.spec.plan == key.plan).ok_or_else(|| at(&None, format!("plan `{}` is not among the bundle's plans", key.plan)))?;
                let case = plan.spec.cases.iter().find(|c| c.id == key.case).ok_or_else(|| at(&None, format!("plan `{}` has no case `{}`", key.plan, key.case)))?;
                let device = rig.device(&key.device).map_err(|e| at(&None, e.to_string()))?;
                let scope = base_scope(plan, params, &key.device, device);
                *open = Some(OpenCase { key, case, scope, verdicts: Vec::new(), checks_passed: 0, touched: false, stopped: false, next_step: 0, pending: None });
            }
            JournalEntry::StepStarted { key, phase, index, spec, attempt, .. } => {
                let Some(current) = open.as_mut() else { return Err(at(&None, "a step outside any case".into())) };
                if key != current.key {
                    return Err(at(&label, "the step belongs to another case".into()));
                }
                let step = step_of(current.case, phase, index).ok_or_else(|| at(&label, format!("the plan has no {phase:?} step {index}")))?;
                if phase == Phase::Steps && attempt == 1 {
                    // Steps run in order; skipped indices are NOT_RUN only after a stop.
                    if index != current.next_step || current.stopped {
                        return Err(at(&label, format!("step {} ran out of order or after the case stopped", index + 1)));
                    }
                    current.next_step = index + 1;
                }
                let expected = Agents::resolve(step, &current.scope).unwrap_or(Value::Null);
                if expected != spec {
                    return Err(at(&label, format!("step {} ({}) was recorded as {spec} but the plan and earlier outputs give {expected}", index + 1, step.action())));
                }
                current.pending = Some((phase, index, attempt, spec));
                events.clear();
            }
            JournalEntry::StepFinished { key, phase, index, attempt, verdict, message, output, first_seq, last_seq } => {
                let Some(current) = open.as_mut() else { return Err(at(&None, "a step outside any case".into())) };
                let pending = current.pending.take();
                if key != current.key || pending.as_ref().map(|(p, i, a, _)| (*p, *i, *a)) != Some((phase, index, attempt)) {
                    return Err(at(&label, "a step finishes that did not start".into()));
                }
                let spec = pending.map(|(_, _, _, s)| s).unwrap_or(Value::Null);
                let step = step_of(current.case, phase, index).expect("checked at start");
                // Console bytes from before this step that no wait has consumed yet: a
                // console wait (a step's, or a script call's) may match them.
                // Copied (a bounded tail), since the backlog changes below and a script's
                // replay needs them after that; only for the steps that may look.
                let console_from_here = console_from.get(&key.device).copied().unwrap_or(0).min(first_seq);
                let unread_console: Vec<Event> = if is_console_wait(step.action()) || step.script.is_some() {
                    console_backlog
                        .get(&key.device)
                        .into_iter()
                        .flat_map(|b| b.events.iter())
                        .filter(|e| e.seq >= console_from_here && e.seq < first_seq)
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
                let mut in_range: Vec<&Event> = Vec::new();
                let mut from = first_seq;
                if is_console_wait(step.action()) {
                    from = console_from_here;
                    in_range.extend(unread_console.iter());
                }
                // A pump may journal an event stamped just before the step began right
                // after StepStarted: it is among this step's events with a smaller number.
                if from <= last_seq {
                    in_range.extend(events.range(from..=last_seq).map(|(_, e)| e));
                }
                in_range.sort_by_key(|e| e.seq);
                in_range.dedup_by_key(|e| e.seq);
                if let Err(detail) = matches_raw_events(step.action(), &key.device, &output, &in_range) {
                    return Err(at(&label, format!("step {} ({}): {detail}", index + 1, step.action())));
                }
                if consumes_console(step.action()) {
                    // A later wait starts from this step: what came before is consumed.
                    console_from.insert(key.device.clone(), first_seq);
                    console_backlog.remove(&key.device);
                }
                // What this step's console received may still be consumed by a later
                // wait (a wait stops at its match; the bytes after it stay unread).
                // Only the newest bytes can matter, so only those are kept.
                let mut newest: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
                let mut counted: BTreeMap<String, usize> = BTreeMap::new();
                for event in events.values().rev() {
                    if let EventKind::Bytes { channel, direction: Direction::In, data } = &event.kind {
                        let bytes = counted.entry(channel.device.clone()).or_default();
                        if channel.channel == "console" && *bytes < CONSOLE_BACKLOG_BYTES {
                            *bytes += data.len();
                            newest.entry(channel.device.clone()).or_default().push(event);
                        }
                    }
                }
                for (device, kept) in newest {
                    let backlog = console_backlog.entry(device).or_default();
                    for event in kept.into_iter().rev() {
                        backlog.push(event.clone());
                    }
                }
                let skip = super::executor::missing_channel(step, &current.scope);
                if skip.is_some() != output.get("skipped").is_some() {
                    return Err(at(&label, format!("step {} ({}) was skipped or run against what the rig says the device has", index + 1, step.action())));
                }
                if step.script.is_some() && skip.is_none() {
                    if let Err(detail) = replay_script(step, &key.device, &current.scope, &output, events, first_seq, &unread_console) {
                        return Err(at(&label, format!("step {} (script): {detail}", index + 1)));
                    }
                }
                let judged = judge(step.action(), &spec, &output);
                if judged.verdict != verdict || judged.message != message {
                    return Err(at(
                        &label,
                        format!("step {} ({}) is recorded {verdict} (\"{message}\") but its evidence gives {} (\"{}\")", index + 1, step.action(), judged.verdict, judged.message),
                    ));
                }
                *steps += 1;
                let retried = verdict == Verdict::Infra && attempt <= step.retries;
                if !retried {
                    current.verdicts.push(verdict);
                    current.checks_passed += usize::from(judged.check_passed);
                    current.touched |= judged.touched_device && verdict == Verdict::Pass;
                    if phase == Phase::Steps && stops_case(step.on_failure, verdict) {
                        current.stopped = true;
                    }
                    if !spec.is_null() {
                        absorb(&mut current.scope, step, &spec, &output);
                    }
                }
            }
            JournalEntry::CaseFinished { key, verdict, rollup, checks_passed, unready, .. } => {
                let Some(mut current) = open.take() else { return Err(at(&None, "a case finishes that did not start".into())) };
                if key != current.key {
                    return Err(at(&label, "the finished case is not the one that started".into()));
                }
                let plan = plans.iter().find(|p| p.spec.plan == key.plan).expect("found at the case's start");
                let not_ready = if current.case.skip.is_some() { None } else { crate::plan::catalogue::unready(plan, current.case, rig, &key.device) };
                if not_ready != unready {
                    return Err(at(&label, "whether the rig gives what the case needs is recorded otherwise than the plan and rig show".into()));
                }
                let expected = if current.case.skip.is_some() {
                    current.verdicts = vec![Verdict::Skip];
                    Verdict::Skip
                } else if not_ready.is_some() {
                    if current.next_step != 0 || !current.verdicts.is_empty() {
                        return Err(at(&label, "steps ran in a case the rig was not ready for".into()));
                    }
                    current.verdicts = unready_verdicts(current.case);
                    Verdict::Error
                } else {
                    let not_run = current.case.steps.len().saturating_sub(current.next_step);
                    current.verdicts.extend(std::iter::repeat_n(Verdict::NotRun, not_run));
                    let checks = if current.touched { current.checks_passed } else { 0 };
                    if checks != checks_passed {
                        return Err(at(&label, format!("recorded {checks_passed} passed checks, the evidence shows {checks}")));
                    }
                    case_verdict(&current.verdicts, checks)
                };
                let recomputed = Rollup::of(current.verdicts.iter().copied());
                if expected != verdict {
                    return Err(at(&label, format!("the case is recorded {verdict} but its steps give {expected}")));
                }
                if recomputed != rollup {
                    return Err(at(&label, format!("the case's step counts are recorded as {} but its steps give {}", rollup.summary(), recomputed.summary())));
                }
                finished_cases.push((key, verdict));
            }
            JournalEntry::RunFinished { verdict, rollup, aborted, .. } => {
                if open.is_some() {
                    return Err(at(&label, "the run ends inside a case".into()));
                }
                let selected = select(plans, rig, only_device.as_deref());
                let mut verdicts: Vec<Verdict> = finished_cases.iter().map(|(_, v)| *v).collect();
                let missing = selected.len().saturating_sub(finished_cases.len());
                if missing > 0 && !aborted {
                    return Err(at(&None, format!("{missing} selected case(s) never ran, yet the run was not aborted")));
                }
                verdicts.extend(std::iter::repeat_n(Verdict::NotRun, missing));
                let recomputed = Rollup::of(verdicts);
                if recomputed.verdict != verdict || recomputed != rollup {
                    return Err(at(&None, format!("the run is recorded {verdict} ({}) but its cases give {} ({})", rollup.summary(), recomputed.verdict, recomputed.summary())));
                }
                *finished = true;
            }
        }
        Ok(())
    }
}

/// Console bytes kept per device between console waits (twice the expect window).
const CONSOLE_BACKLOG_BYTES: usize = 2 * proofrig_agents::expect::DEFAULT_WINDOW;

/// The newest console events of one device, at most about [`CONSOLE_BACKLOG_BYTES`].
#[derive(Default)]
struct Backlog {
    events: VecDeque<Event>,
    bytes: usize,
}

impl Backlog {
    fn push(&mut self, event: Event) {
        self.bytes += event_len(&event);
        self.events.push_back(event);
        while self.bytes > CONSOLE_BACKLOG_BYTES && self.events.len() > 1 {
            let dropped = self.events.pop_front().as_ref().map_or(0, event_len);
            self.bytes -= dropped;
        }
    }
}

fn event_len(event: &Event) -> usize {
    match &event.kind {
        EventKind::Bytes { data, .. } => data.len(),
        _ => 0,
    }
}

/// A script step: each recorded call agrees with its raw events, and the script fed
/// the recorded outputs gives the recorded findings, checks and result.
///
/// A call's events are those in its range; a console wait's also reach back to what
/// the console received since the last console wait before it (in the script, or
/// `unread_console` before the step), by the same rule as a declarative wait's: the
/// bytes a wait matches may have arrived during an earlier call, or between two calls
/// while the script computed.
fn replay_script(
    step: &crate::plan::Step,
    device: &str,
    scope: &Value,
    output: &Value,
    events: &BTreeMap<u64, Event>,
    step_first_seq: u64,
    unread_console: &[Event],
) -> Result<(), String> {
    // Where a console wait's search starts: None while nothing in the script has
    // consumed the console, so the unread bytes from before the step still count.
    let mut console_from: Option<u64> = None;
    for (n, call) in output["calls"].as_array().into_iter().flatten().enumerate() {
        let (first, last) = (call["first_seq"].as_u64().unwrap_or(0), call["last_seq"].as_u64().unwrap_or(0));
        let action = call["action"].as_str().unwrap_or_default();
        let mut in_range: Vec<&Event> = Vec::new();
        let mut from = first;
        if is_console_wait(action) {
            from = console_from.unwrap_or(step_first_seq).min(first);
            if console_from.is_none() {
                in_range.extend(unread_console.iter());
            }
        }
        if from <= last {
            in_range.extend(events.range(from..=last).map(|(_, e)| e));
        }
        in_range.sort_by_key(|e| e.seq);
        in_range.dedup_by_key(|e| e.seq);
        matches_raw_events(action, device, &call["output"], &in_range)
            .map_err(|detail| format!("call {} ({action}, script line {}): {detail}", n + 1, call["line"]))?;
        if consumes_console(action) {
            console_from = Some(first);
        }
    }
    super::script::replay(step.script.as_deref().unwrap_or_default(), step.script_origin.as_ref(), scope, output)
}

/// Steps whose recorded output is console text that must appear in the transcript.
fn is_console_wait(action: &str) -> bool {
    matches!(action, "console_run" | "console_expect")
}

/// Steps after which the console output before them can no longer be matched: they
/// consumed it (waits, logins) or cleared it (a power switch settles the console).
fn consumes_console(action: &str) -> bool {
    matches!(action, "console_run" | "console_expect" | "console_login" | "power")
}

fn step_of(case: &Case, phase: Phase, index: usize) -> Option<&crate::plan::Step> {
    match phase {
        Phase::Steps => case.steps.get(index),
        Phase::Restore => case.restore.get(index),
    }
}

fn bytes_on(events: &[&Event], device: &str, channel: &str, direction: Direction) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        if let EventKind::Bytes { channel: c, direction: d, data } = &event.kind {
            if c.device == device && c.channel == channel && *d == direction {
                out.extend_from_slice(data);
            }
        }
    }
    out
}

/// Does the recorded output agree with the raw events of the step?
fn matches_raw_events(action: &str, device: &str, output: &Value, events: &[&Event]) -> Result<(), String> {
    // A failed step claims nothing about the device; a skipped one did not run (and
    // whether it should have is checked against the rig separately).
    if output.get("error").is_some() || output.get("skipped").is_some() {
        return Ok(());
    }
    let text = |key: &str| output.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    match action {
        "ssh_exec" => {
            let stdout = String::from_utf8_lossy(&bytes_on(events, device, "ssh:exec:stdout", Direction::In)).into_owned();
            let stderr = String::from_utf8_lossy(&bytes_on(events, device, "ssh:exec:stderr", Direction::In)).into_owned();
            if stdout != text("stdout") || stderr != text("stderr") {
                return Err("the recorded stdout/stderr differ from the bytes on the wire".into());
            }
            let exit = events.iter().find_map(|e| match &e.kind {
                EventKind::SshExit { channel, exit_status, .. } if channel.device == device => Some(*exit_status),
                _ => None,
            });
            if exit.map(|s| s.map(i64::from)) != Some(output["exit_status"].as_i64()) {
                return Err("the recorded exit status differs from the one the server sent".into());
            }
        }
        "console_run" | "console_expect" => {
            let mut shown = Vec::new();
            let mut filter = AnsiFilter::new();
            for event in events {
                if let EventKind::Bytes { channel, direction: Direction::In, data } = &event.kind {
                    if channel.device == device && channel.channel == "console" {
                        filter.filter(data, &mut shown);
                    }
                }
            }
            // What the filter gives is UTF-8 (checking that is quicker than repairing).
            let shown = std::str::from_utf8(&shown).map_or_else(|_| String::from_utf8_lossy(&shown), std::borrow::Cow::Borrowed);
            let claimed = if action == "console_run" { text("output") } else { text("matched_text") };
            if !claimed.trim().is_empty() && !normalize(&shown).contains(&normalize(claimed.trim())) {
                return Err("the recorded console output does not appear in the console transcript of the step".into());
            }
        }
        "ssh_login" => {
            let auth = events.iter().rev().find_map(|e| match &e.kind {
                EventKind::SshAuth { channel, accepted, source, .. } if channel.device == device => Some((*accepted, source.as_deref())),
                _ => None,
            });
            if output["negotiation_refused"].is_null() && auth.map(|(accepted, _)| accepted) != output["accepted"].as_bool() {
                return Err("the recorded login outcome differs from the authentication event".into());
            }
            // A later step may pick the device's log record of this attempt by its source;
            // that source must be the one the authentication event recorded.
            let claimed = match (output["source_address"].as_str(), output["source_port"].as_u64()) {
                (Some(address), Some(port)) => Some(std::net::SocketAddr::new(address.parse().map_err(|_| "the recorded source address does not parse")?, port as u16)),
                _ => None,
            };
            let recorded = auth.and_then(|(_, source)| source).and_then(|s| s.parse::<std::net::SocketAddr>().ok());
            if claimed.is_some() && claimed != recorded {
                return Err("the recorded source of the login attempt differs from the authentication event".into());
            }
        }
        "ssh_audit" => {
            let raw = bytes_on(events, device, "ssh:audit", Direction::In);
            let offer = proofrig_agents::ssh::parse_server_offer(&raw).map_err(|e| format!("the recorded server bytes do not parse: {e}"))?;
            let derived = super::actions::audit_output(&offer);
            for key in ["banner", "kex", "host_key", "ciphers", "macs", "compression", "markers"] {
                if derived[key] != output[key] {
                    return Err(format!("the recorded `{key}` list differs from the server's KEXINIT bytes"));
                }
            }
        }
        "ssh_negotiate" => {
            let note = events.iter().rev().find_map(|e| match &e.kind {
                EventKind::Note { channel, text } if channel.device == device && channel.channel == "ssh:negotiate" => Some(text.clone()),
                _ => None,
            });
            let claimed = format!(
                "negotiation {}: {}",
                if output["negotiated"].as_bool() == Some(true) { "accepted" } else { "refused" },
                output["detail"].as_str().unwrap_or_default()
            );
            if note.as_deref() != Some(claimed.as_str()) {
                return Err("the recorded negotiation outcome differs from what the probe recorded on the wire".into());
            }
        }
        "power" => {
            let readback = events.iter().rev().find_map(|e| match &e.kind {
                EventKind::Power { device: d, readback, .. } if d == device => Some(readback.to_string()),
                _ => None,
            });
            if readback.as_deref() != output["state"].as_str() {
                return Err("the recorded power state differs from the outlet's read-back event".into());
            }
        }
        "udp_scan" => {
            // The open ports follow from the answers recorded; the closed and silent
            // ones from the scan's note (an absence leaves no datagram).
            let datagrams = events.iter().filter_map(|e| match &e.kind {
                EventKind::Datagram { channel, direction, peer, .. } if channel.device == device && channel.channel == proofrig_agents::udp::CHANNEL => {
                    Some((*direction, peer.as_str()))
                }
                _ => None,
            });
            let open = proofrig_agents::udp::open_ports_answered(datagrams);
            if output["open"] != serde_json::json!(open) {
                return Err("the recorded open UDP ports differ from the answers on the wire".into());
            }
            let ports = |key: &str| -> Vec<u16> { serde_json::from_value(output[key].clone()).unwrap_or_default() };
            let outcome = proofrig_agents::udp::UdpScanOutcome {
                address: output["address"].as_str().and_then(|a| a.parse().ok()).ok_or("the recorded scan address does not parse")?,
                open,
                open_filtered: ports("open_filtered"),
                closed: output["closed"].as_u64().unwrap_or(0) as usize,
            };
            let note = events.iter().rev().find_map(|e| match &e.kind {
                EventKind::Note { channel, text } if channel.device == device && channel.channel == proofrig_agents::udp::CHANNEL => Some(text.as_str()),
                _ => None,
            });
            let scanned = output["scanned"].as_u64().unwrap_or(0) as usize;
            if note != Some(outcome.summary(scanned).as_str()) || output["not_closed"] != serde_json::json!(outcome.not_closed()) {
                return Err("the recorded closed and silent UDP ports differ from what the scan noted".into());
            }
        }
        "snmp_probe" => {
            // Which requests were answered follows from the datagrams alone.
            let datagrams = |wanted: Direction| {
                events.iter().filter_map(move |e| match &e.kind {
                    EventKind::Datagram { channel, direction, data, .. }
                        if *direction == wanted && channel.device == device && channel.channel == proofrig_agents::snmp::CHANNEL =>
                    {
                        Some(data.as_slice())
                    }
                    _ => None,
                })
            };
            let probes: Vec<proofrig_agents::snmp::ProbeResult> =
                serde_json::from_value(output["probes"].clone()).map_err(|e| format!("the recorded SNMP probes do not parse: {e}"))?;
            let sent: Vec<_> = datagrams(Direction::Out).filter_map(proofrig_agents::snmp::parse_message).collect();
            let requests: Vec<_> = probes.iter().map(|p| (p.version, p.community.clone(), p.request_id)).collect();
            let every_request_sent = requests.len() == sent.len()
                && requests
                    .iter()
                    .zip(&sent)
                    .all(|((version, community, id), s)| s.version == version.wire() && s.community == community.as_bytes() && s.request_id == i64::from(*id));
            if !every_request_sent {
                return Err("the recorded SNMP requests differ from the datagrams sent".into());
            }
            let answered = proofrig_agents::snmp::answered_probes(&requests, datagrams(Direction::In));
            if answered != probes.iter().map(|p| p.answered).collect::<Vec<_>>() {
                return Err("which SNMP requests were answered differs from the datagrams received".into());
            }
            let claimed = proofrig_agents::snmp::answered_labels(&probes);
            if output["answered"] != serde_json::json!(claimed) {
                return Err("the recorded `answered` list differs from the probes answered".into());
            }
            let unreachable_noted = events.iter().any(|e| {
                matches!(&e.kind, EventKind::Note { channel, text } if channel.device == device && channel.channel == proofrig_agents::snmp::CHANNEL && text.contains(": port unreachable"))
            });
            if output["port_unreachable"].as_bool() != Some(unreachable_noted) {
                return Err("the recorded `port_unreachable` differs from what the probe noted on the wire".into());
            }
        }
        "ssh_fetch" => {
            let digest = events.iter().find_map(|e| match &e.kind {
                EventKind::FileFetched { sha256, .. } => Some(sha256.clone()),
                _ => None,
            });
            if digest.as_deref() != output["sha256"].as_str() {
                return Err("the recorded file digest differs from the fetch event".into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Line endings and runs of blanks vary between a terminal and a transcript: `\r` is
/// dropped, and each run of whitespace becomes one space, none at either end (as
/// `text.replace('\r', "").split_whitespace().collect::<Vec<_>>().join(" ")`, in one
/// pass: a step's transcript can be large).
fn normalize(text: &str) -> String {
    // ASCII bytes that belong to a word (not whitespace, not `\r`).
    const WORD: [bool; 128] = {
        let mut word = [true; 128];
        let mut blank = [b'\r', b' ', b'\t', b'\n', 0x0b, 0x0c].as_slice();
        while let [first, rest @ ..] = blank {
            word[*first as usize] = false;
            blank = rest;
        }
        word
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut blank = false;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let word = match byte {
            b'\r' => {
                at += 1;
                continue;
            }
            0x00..=0x7f if !WORD[usize::from(byte)] => {
                blank = true;
                at += 1;
                continue;
            }
            // A run of other ASCII characters.
            0x00..=0x7f => at..bytes[at..].iter().position(|&b| b >= 0x80 || !WORD[usize::from(b)]).map_or(bytes.len(), |n| at + n),
            // A character of 2 to 4 bytes: whitespace too if Unicode says so.
            _ => {
                let c = text[at..].chars().next().expect("inside the text");
                if c.is_whitespace() {
                    blank = true;
                    at += c.len_utf8();
                    continue;
                }
                at..at + c.len_utf8()
            }
        };
        if blank && !out.is_empty() {
            out.push(' ');
        }
        blank = false;
        at = word.end;
        out.push_str(&text[word]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizing_in_one_pass_is_dropping_cr_then_joining_the_words() {
        for text in ["", " ", "\r", "a", " a\r\nb\t\tc ", "x\ry", "\u{a0}é\u{2003}ü\u{85}z\r", "  root@ru1:~# \r\n", "a \r b"] {
            let slow = text.replace('\r', "").split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(normalize(text), slow, "{text:?}");
        }
    }
}
