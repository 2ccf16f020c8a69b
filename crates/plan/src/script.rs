//! `script` steps: Rhai for the logic a declarative step cannot say (a loop over
//! the vendor's default accounts, parsing a command's output), without giving up
//! the two things every step guarantees: it only reaches devices through the agents,
//! and its verdict can be recomputed from the journal.
//!
//! The sandbox: Rhai has no file, process or network access of its own, modules are
//! compiled out (`no_module`) and `eval` is disabled. The only way out is the
//! functions registered here, each of which is a declarative step's action (`ssh_exec`,
//! `ssh_login`, `console_run`, ... or `agent(action, spec)` for any of them) performed
//! by the executor exactly as that step would be. An operation limit bounds CPU and
//! the step's timeout bounds wall time. Time and randomness are compiled out
//! (`no_time`), so a script is a pure function of what its calls returned.
//!
//! That is what makes it replayable: every call is recorded in the step's output with
//! its spec, its output and the journal range of its raw events. `verify` runs the
//! script again, answering each call from the record (after checking the record
//! against the raw events and that the script asks for exactly the recorded call),
//! and requires the same findings, checks and result. The step's verdict is then
//! `proofrig_verdict::judge::judge_script` of that output, like any other step.
//!
//! A call that ends INFRA, ERROR or ABORTED stops the script with that verdict
//! (scripts cannot catch it, so a bench fault never turns into a PASS); a call that
//! ends FAIL is a finding and the script goes on, so every finding is collected.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext, Position, Scope};
use serde_json::{json, Map, Value};

use proofrig_verdict::judge::{failure_output, judge, FailureClass};
use proofrig_verdict::Verdict;

use crate::{ActionKind, ScriptOrigin, Step};

/// Operations a script may perform (roughly, expression nodes evaluated). Generous
/// for parsing command output, small enough to stop a runaway loop in about a second.
pub const MAX_OPERATIONS: u64 = 5_000_000;

/// One agent call a script makes: a declarative step's action and its spec.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub spec: Value,
    /// The spec read as a step, as the executor performs it; its action is the call's.
    pub step: Step,
    /// Script line of the call, for the record.
    pub line: usize,
    /// The call's own time limit (`timeout_ms` in its spec), within the step's; else
    /// the action's default.
    pub timeout: Option<Duration>,
}

/// What the executor (or, in replay, the record) answers to a call.
pub enum Answer {
    /// The action's output, already redacted, and the journal range of its events.
    Done { output: Value, first_seq: u64, last_seq: u64 },
    /// Stop the script with this output's error (replay: the record ends here).
    Stop(Value),
}

/// Performs a script's calls.
pub trait Caller {
    fn call(&mut self, request: &CallRequest) -> Answer;
}

/// Why a running script was told to stop.
pub const RUNNING: u8 = 0;
pub const ABORTED: u8 = 1;
pub const TIMED_OUT: u8 = 2;

/// How a script run may be stopped from outside.
pub struct Control {
    /// Set by the executor on Ctrl-C ([`ABORTED`]) or at the step's deadline ([`TIMED_OUT`]).
    pub cancel: Arc<AtomicU8>,
    /// The step's time limit, for the message.
    pub timeout: Duration,
    /// Replay: stop after this many operations with `stop_error` (where the run stopped).
    pub stop_after: Option<(u64, Value)>,
}

impl Control {
    pub fn live(cancel: Arc<AtomicU8>, timeout: Duration) -> Self {
        Self { cancel, timeout, stop_after: None }
    }
}

/// What a script did so far; becomes the step's output.
#[derive(Default)]
struct State {
    calls: Vec<Value>,
    passed: Vec<String>,
    findings: Vec<String>,
    inconclusive: Vec<String>,
    notes: Vec<String>,
    operations: u64,
    /// The operation at which a Ctrl-C or the time limit stopped the script.
    cancelled_at: Option<u64>,
    /// The error that stopped the script, as a step output (`{"error": ...}`).
    stopped: Option<Value>,
}

#[derive(Clone)]
struct Runner {
    state: Rc<RefCell<State>>,
    caller: Rc<RefCell<Box<dyn Caller>>>,
    origin: Option<ScriptOrigin>,
}

fn line_of(pos: Position) -> usize {
    pos.line().unwrap_or(0)
}

fn terminated(pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(Dynamic::UNIT, pos))
}

impl Runner {
    fn at(&self, pos: Position) -> String {
        let line = line_of(pos);
        match &self.origin {
            Some(origin) => format!("{} (script line {line})", origin.describe(line, pos.position().unwrap_or(1))),
            None => format!("script line {line}"),
        }
    }

    /// Stop the script with an error output; nothing the script does afterwards counts.
    fn stop(&self, class: FailureClass, message: String, pos: Position) -> Box<EvalAltResult> {
        let mut state = self.state.borrow_mut();
        if state.stopped.is_none() {
            state.stopped = Some(failure_output(class, &message));
        }
        terminated(pos)
    }

    fn perform(&self, action: &str, spec: Value, pos: Position) -> Result<Dynamic, Box<EvalAltResult>> {
        if self.state.borrow().stopped.is_some() {
            return Err(terminated(pos));
        }
        if ActionKind::from_name(action).is_some_and(|kind| !agent_call(kind)) {
            return Err(self.stop(
                FailureClass::Error,
                format!("{}: `{action}` is not an agent call; use the script's own logic", self.at(pos)),
                pos,
            ));
        }
        // A call's own time limit is the one key a step has beside its action's.
        let mut body = spec.clone();
        let timeout = match body.as_object_mut().and_then(|b| b.remove("timeout_ms")) {
            None => None,
            Some(ms) => match ms.as_u64() {
                Some(ms) => Some(Duration::from_millis(ms)),
                None => {
                    return Err(self.stop(
                        FailureClass::Error,
                        format!("{}: `timeout_ms` of `{action}` is {ms}, not a number of milliseconds", self.at(pos)),
                        pos,
                    ))
                }
            },
        };
        // The same model as a declarative step: a misspelt field is refused the same way.
        let step = match serde_json::from_value::<Step>(json!({ action: body })) {
            Ok(step) => step,
            Err(why) => return Err(self.stop(FailureClass::Error, format!("{}: `{action}` with {spec}: {why}", self.at(pos)), pos)),
        };
        // Only the rig's secrets are known to the redactor before the run starts.
        if step.action.credential().is_some_and(|c| c.as_secret_ref().is_some()) {
            return Err(self.stop(
                FailureClass::Error,
                format!(
                    "{}: a script names secrets as #{{secret: \"NAME\"}} (a secret of the rig's device), not by env or file",
                    self.at(pos)
                ),
                pos,
            ));
        }
        let action = step.kind();
        let request = CallRequest { spec, step, line: line_of(pos), timeout };
        let answer = self.caller.borrow_mut().call(&request);
        let (output, first_seq, last_seq) = match answer {
            Answer::Done { output, first_seq, last_seq } => (output, first_seq, last_seq),
            Answer::Stop(error) => {
                self.state.borrow_mut().stopped.get_or_insert(error);
                return Err(terminated(pos));
            }
        };
        let judged = judge(action, &request.spec, &output);
        let mut state = self.state.borrow_mut();
        state.calls.push(json!({
            "line": request.line,
            "action": action.as_str(),
            "spec": request.spec,
            "output": output,
            "verdict": judged.verdict,
            "message": judged.message,
            "first_seq": first_seq,
            "last_seq": last_seq,
        }));
        match judged.verdict {
            Verdict::Infra | Verdict::Error | Verdict::Aborted => {
                let class = match judged.verdict {
                    Verdict::Infra => FailureClass::Infra,
                    Verdict::Aborted => FailureClass::Aborted,
                    _ => FailureClass::Error,
                };
                drop(state);
                return Err(self.stop(class, format!("{action} at {}: {}", self.at(pos), judged.message), pos));
            }
            Verdict::Fail => state.findings.push(judged.message.clone()),
            _ if judged.check_passed => state.passed.push(judged.message.clone()),
            _ => {}
        }
        rhai::serde::to_dynamic(&output)
    }

    fn check(&self, holds: bool, message: &str) -> Result<bool, Box<EvalAltResult>> {
        let mut state = self.state.borrow_mut();
        if state.stopped.is_some() {
            return Err(terminated(Position::NONE));
        }
        if holds {
            state.passed.push(message.to_string());
        } else {
            state.findings.push(message.to_string());
        }
        Ok(holds)
    }
}

/// Whether a script may call an action of `kind` (`agent(...)`): every action that
/// reaches a device, or waits; the others are what the script's own logic does.
fn agent_call(kind: ActionKind) -> bool {
    match kind {
        ActionKind::Power
        | ActionKind::Wait
        | ActionKind::ConsoleSend
        | ActionKind::ConsoleExpect
        | ActionKind::ConsoleLogin
        | ActionKind::ConsoleRun
        | ActionKind::SshExec
        | ActionKind::SshFetch
        | ActionKind::SshLogin
        | ActionKind::SshSu
        | ActionKind::SshAudit
        | ActionKind::SshIdle
        | ActionKind::SshNegotiate
        | ActionKind::TcpScan
        | ActionKind::UdpScan
        | ActionKind::SnmpProbe
        | ActionKind::HttpRequest
        | ActionKind::SyslogReceive
        | ActionKind::TlsAudit => true,
        ActionKind::Script | ActionKind::Assert | ActionKind::Set => false,
    }
}

/// Turn a Rhai value into JSON (maps, arrays, strings, numbers, booleans, unit).
fn to_json(value: &Dynamic) -> Value {
    rhai::serde::from_dynamic::<Value>(value).unwrap_or_else(|_| Value::String(value.to_string()))
}

fn credential(password: Dynamic) -> Value {
    if password.is_map() {
        to_json(&password)
    } else {
        json!({ "value": password.to_string() })
    }
}

/// The engine with the sandbox limits and everything a script may call.
fn engine(runner: Option<&Runner>) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_string_size(4 << 20);
    engine.set_max_array_size(100_000);
    engine.set_max_map_size(100_000);
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(64, 32);
    engine.disable_symbol("eval");
    engine.set_strict_variables(true);

    // Text helpers: regular expressions are what parsing command output needs most.
    // Rhai's own `trim` changes a variable in place; this one returns the trimmed text,
    // so it works on a capture (read-only) and inside an expression.
    engine.register_fn("trim_text", |text: &str| text.trim().to_string());
    engine.register_fn("matches", |text: &str, pattern: &str| -> Result<bool, Box<EvalAltResult>> { Ok(regex(pattern)?.is_match(text)) });
    engine.register_fn("captures", |text: &str, pattern: &str| -> Result<rhai::Array, Box<EvalAltResult>> {
        let re = regex(pattern)?;
        Ok(match re.captures(text) {
            Some(caps) => caps.iter().map(|m| m.map_or(Dynamic::UNIT, |m| Dynamic::from(m.as_str().to_string()))).collect(),
            None => rhai::Array::new(),
        })
    });
    engine.register_fn("find_all", |text: &str, pattern: &str| -> Result<rhai::Array, Box<EvalAltResult>> {
        Ok(regex(pattern)?.find_iter(text).map(|m| Dynamic::from(m.as_str().to_string())).collect())
    });

    engine.register_fn("elf_examine", elf_examine);

    let Some(runner) = runner else { return engine };
    let r = runner.clone();
    engine.register_fn("agent", move |ctx: NativeCallContext, action: &str, spec: rhai::Map| {
        r.perform(action, to_json(&Dynamic::from_map(spec)), ctx.call_position())
    });
    let r = runner.clone();
    engine.register_fn("ssh_exec", move |ctx: NativeCallContext, command: &str| {
        r.perform(ActionKind::SshExec.as_str(), json!({"command": command}), ctx.call_position())
    });
    let r = runner.clone();
    engine.register_fn("ssh_login", move |ctx: NativeCallContext, user: &str, password: Dynamic| {
        r.perform(ActionKind::SshLogin.as_str(), json!({"user": user, "password": credential(password)}), ctx.call_position())
    });
    let r = runner.clone();
    engine.register_fn("ssh_login", move |ctx: NativeCallContext, user: &str, password: Dynamic, expect: &str| {
        r.perform(
            ActionKind::SshLogin.as_str(),
            json!({"user": user, "password": credential(password), "expect": expect}),
            ctx.call_position(),
        )
    });
    let r = runner.clone();
    engine.register_fn("console_run", move |ctx: NativeCallContext, command: &str| {
        r.perform(ActionKind::ConsoleRun.as_str(), json!({"command": command}), ctx.call_position())
    });
    let r = runner.clone();
    engine.register_fn("console_send", move |ctx: NativeCallContext, text: &str| {
        r.perform(ActionKind::ConsoleSend.as_str(), json!({"text": text}), ctx.call_position())
    });
    let r = runner.clone();
    engine.register_fn("wait", move |ctx: NativeCallContext, ms: i64| {
        r.perform(ActionKind::Wait.as_str(), json!({"ms": ms.max(0)}), ctx.call_position())
    });
    let r = runner.clone();
    engine.register_fn("power", move |ctx: NativeCallContext, action: &str| {
        r.perform(ActionKind::Power.as_str(), json!({"action": action}), ctx.call_position())
    });

    let r = runner.clone();
    engine.register_fn("check", move |holds: bool, message: &str| r.check(holds, message));
    // What held and what failed in words that are true of each outcome: a passing
    // check's evidence reads as what was verified, not as the alarm it guards against.
    let r = runner.clone();
    engine.register_fn("check", move |holds: bool, passed: &str, failed: &str| r.check(holds, if holds { passed } else { failed }));
    let r = runner.clone();
    engine.register_fn("fail", move |message: &str| r.check(false, message).map(|_| ()));
    let r = runner.clone();
    engine.register_fn("inconclusive", move |message: &str| {
        r.state.borrow_mut().inconclusive.push(message.to_string());
    });
    let r = runner.clone();
    engine.register_fn("note", move |message: &str| r.state.borrow_mut().notes.push(message.to_string()));
    let r = runner.clone();
    engine.on_print(move |text| r.state.borrow_mut().notes.push(text.to_string()));
    let r = runner.clone();
    engine.on_debug(move |text, _, _| r.state.borrow_mut().notes.push(text.to_string()));
    engine
}

fn regex(pattern: &str) -> Result<regex::Regex, Box<EvalAltResult>> {
    regex::Regex::new(pattern).map_err(|e| format!("invalid regular expression `{pattern}`: {e}").into())
}

/// `elf_examine(reads)`: what a program's ELF headers say of its build (see
/// [`crate::elf`]). `reads` maps `"OFFSET+LENGTH"` to what `od -An -v -tx1 -j OFFSET
/// -N LENGTH FILE` printed. The answer is one of `#{ read: #{ offset, length, key } }`
/// (read that range next and store it under `key`), `#{ problem }` (not an ELF program,
/// or a dump that is not `od` bytes), or the facts: `#{ bits, pie, shared_object,
/// static_link, nx, relro: "full"|"partial"|"none", canary: "yes"|"no"|"unknown" }`.
fn elf_examine(reads: rhai::Map) -> Result<rhai::Map, Box<EvalAltResult>> {
    use crate::elf::{examine, od_bytes, Examined, Piece};
    let mut pieces = Vec::new();
    for (key, text) in &reads {
        let range = key.split_once('+').and_then(|(o, l)| Some((o.parse::<u64>().ok()?, l.parse::<u64>().ok()?)));
        let Some((offset, asked)) = range else {
            return Err(
                format!("elf_examine: the key `{key}` is not OFFSET+LENGTH; store each read under the key it was asked with").into()
            );
        };
        let text = text.clone().into_immutable_string().map_err(|t| format!("elf_examine: the read `{key}` is a {t}, not od's text"))?;
        match od_bytes(&text) {
            Ok(bytes) => pieces.push(Piece { offset, asked, bytes }),
            Err(problem) => {
                return Ok(rhai::Map::from([("problem".into(), format!("the dump of bytes {key} is not od's: {problem}").into())]))
            }
        }
    }
    let mut answer = rhai::Map::new();
    match examine(&pieces) {
        Examined::Read { offset, length } => {
            let read = rhai::Map::from([
                ("offset".into(), Dynamic::from(offset as i64)),
                ("length".into(), Dynamic::from(length as i64)),
                ("key".into(), format!("{offset}+{length}").into()),
            ]);
            answer.insert("read".into(), read.into());
        }
        Examined::Unreadable(problem) => {
            answer.insert("problem".into(), problem.into());
        }
        Examined::Done(h) => {
            answer.insert("bits".into(), Dynamic::from(i64::from(h.bits)));
            answer.insert("pie".into(), h.pie.into());
            answer.insert("shared_object".into(), h.shared_object.into());
            answer.insert("static_link".into(), h.static_link.into());
            answer.insert("nx".into(), h.nx.into());
            answer.insert("relro".into(), h.relro.name().into());
            let canary = match h.canary {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            };
            answer.insert("canary".into(), canary.into());
        }
    }
    Ok(answer)
}

/// The names a script sees: `device`, `param` and every capture in the case scope.
/// Plain variables, not constants: Rhai's optimizer writes a constant's value into
/// every use of its name when it compiles, a function's own parameter of that name
/// included, so `fn f(device) { device }` answered the capture, not its argument.
/// (Functions do not see the script's variables, as Rhai's functions see nothing
/// outside themselves.)
fn scope_of(variables: &Value) -> Scope<'static> {
    let mut scope = Scope::new();
    if let Value::Object(map) = variables {
        for (name, value) in map {
            let value = rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT);
            scope.push_dynamic(name.clone(), value);
        }
    }
    scope
}

/// Compile a script as `plan check` does: syntax, and every variable it reads must
/// be `device`, `param` or a capture of an earlier step. Returns (line, column, message).
pub fn check(source: &str, known: &[String]) -> Result<(), (usize, usize, String)> {
    let engine = engine(None);
    let mut scope = Scope::new();
    for name in known {
        scope.push(name.clone(), ());
    }
    engine.compile_with_scope(&scope, source).map(|_| ()).map_err(|err| {
        let pos = err.position();
        (pos.line().unwrap_or(1), pos.position().unwrap_or(1), err.err_type().to_string())
    })
}

/// Run a script to its end and return the step's output.
pub fn evaluate(source: &str, origin: Option<&ScriptOrigin>, variables: &Value, caller: Box<dyn Caller>, control: Control) -> Value {
    let runner = Runner { state: Rc::new(RefCell::new(State::default())), caller: Rc::new(RefCell::new(caller)), origin: origin.cloned() };
    let mut engine = engine(Some(&runner));
    let progress_state = runner.state.clone();
    let cancel = control.cancel.clone();
    let stop_after = control.stop_after.clone();
    engine.on_progress(move |operations| {
        let mut state = progress_state.borrow_mut();
        state.operations = operations;
        if let Some((limit, error)) = &stop_after {
            if operations >= *limit {
                state.cancelled_at.get_or_insert(operations);
                state.stopped.get_or_insert_with(|| error.clone());
                return Some(Dynamic::UNIT);
            }
        }
        match cancel.load(Ordering::Relaxed) {
            RUNNING => None,
            why => {
                state.cancelled_at.get_or_insert(operations);
                let error = if why == ABORTED {
                    failure_output(FailureClass::Aborted, "stopped by the operator")
                } else {
                    failure_output(FailureClass::Error, &format!("the script did not finish within {} ms", control.timeout.as_millis()))
                };
                state.stopped.get_or_insert(error);
                Some(Dynamic::UNIT)
            }
        }
    });

    let mut scope = scope_of(variables);
    let result = engine
        .compile_with_scope(&scope, source)
        .map_err(|e| e.into())
        .and_then(|ast| engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast));
    let result = match result {
        Ok(value) => Some(to_json(&value)),
        Err(err) => {
            let already_stopped = runner.state.borrow().stopped.is_some();
            if !already_stopped {
                let pos = err.position();
                let message = match &*err {
                    EvalAltResult::ErrorTooManyOperations(_) => {
                        format!("the script exceeded its limit of {MAX_OPERATIONS} operations (does a loop never end?)")
                    }
                    // Rhai appends "(line N, position M)"; the location is said in our own terms.
                    other => other.unwrap_inner().to_string().split(" (line ").next().unwrap_or_default().to_string(),
                };
                let _ = runner.stop(FailureClass::Error, format!("script error at {}: {message}", runner.at(pos)), pos);
            }
            None
        }
    };
    drop(engine);
    let state = runner.state.borrow();
    let mut output = Map::new();
    output.insert("calls".into(), Value::Array(state.calls.clone()));
    output.insert("passed".into(), json!(state.passed));
    output.insert("findings".into(), json!(state.findings));
    output.insert("inconclusive".into(), json!(state.inconclusive));
    output.insert("notes".into(), json!(state.notes));
    output.insert("result".into(), result.unwrap_or(Value::Null));
    output.insert("operations".into(), json!(state.operations));
    if let Some(at) = state.cancelled_at {
        output.insert("cancelled_at_operation".into(), json!(at));
    }
    if let Some(Value::Object(error)) = &state.stopped {
        output.extend(error.clone());
    }
    Value::Object(output)
}

/// Answers a replayed script's calls from the record, checking that the script asks
/// for exactly what was recorded, in the same order.
struct RecordedCaller {
    calls: Vec<Value>,
    next: usize,
    stop: Value,
    disagreement: Rc<RefCell<Option<String>>>,
}

impl Caller for RecordedCaller {
    fn call(&mut self, request: &CallRequest) -> Answer {
        let Some(record) = self.calls.get(self.next).cloned() else {
            if self.stop.get("error").is_none() {
                *self.disagreement.borrow_mut() =
                    Some(format!("the script asks for a call at line {} that the record does not have", request.line));
            }
            return Answer::Stop(self.stop.clone());
        };
        self.next += 1;
        if record["action"] != request.step.kind().as_str() || record["spec"] != request.spec {
            *self.disagreement.borrow_mut() = Some(format!(
                "call {} (script line {}) asks for {} {} but the record has {} {}",
                self.next,
                request.line,
                request.step.kind(),
                request.spec,
                record["action"],
                record["spec"]
            ));
            return Answer::Stop(failure_output(FailureClass::Error, "replay disagreement"));
        }
        Answer::Done {
            output: record["output"].clone(),
            first_seq: record["first_seq"].as_u64().unwrap_or(0),
            last_seq: record["last_seq"].as_u64().unwrap_or(0),
        }
    }
}

/// Run a recorded script step again from its record, as `verify` does. `Ok` when the
/// script, fed the recorded call outputs, gives exactly the recorded output. Checking
/// each recorded call against its raw events is the caller's part (see replay.rs).
pub fn replay(source: &str, origin: Option<&ScriptOrigin>, variables: &Value, recorded: &Value) -> Result<(), String> {
    let calls = recorded["calls"].as_array().cloned().unwrap_or_default();
    let stop = recorded.get("error").map(|e| json!({ "error": e })).unwrap_or(Value::Null);
    let disagreement = Rc::new(RefCell::new(None));
    let caller = Box::new(RecordedCaller { calls, next: 0, stop: stop.clone(), disagreement: disagreement.clone() });
    // A run stopped from outside (Ctrl-C, time limit) stops the replay at the same
    // operation; any other stop (a call's failure, a script error) recurs by itself.
    let stop_after = recorded["cancelled_at_operation"].as_u64().map(|ops| (ops, stop.clone()));
    let control = Control { cancel: Arc::new(AtomicU8::new(RUNNING)), timeout: Duration::ZERO, stop_after };
    let again = evaluate(source, origin, variables, caller, control);
    if let Some(why) = disagreement.borrow_mut().take() {
        return Err(why);
    }
    if &again != recorded {
        let differing = ["calls", "passed", "findings", "inconclusive", "notes", "result", "error", "operations", "cancelled_at_operation"]
            .into_iter()
            .find(|k| again.get(*k) != recorded.get(*k))
            .unwrap_or("output");
        return Err(format!("the script's recorded `{differing}` is not what the script gives from its recorded calls"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_verdict::judge::Judgement;

    /// Answers every call with a fixed output, as a device would.
    struct Fixed(Vec<Value>);
    impl Caller for Fixed {
        fn call(&mut self, _: &CallRequest) -> Answer {
            let output = if self.0.len() > 1 { self.0.remove(0) } else { self.0[0].clone() };
            Answer::Done { output, first_seq: 0, last_seq: 0 }
        }
    }

    fn verdict_of(output: &Value) -> Judgement {
        judge(ActionKind::Script, &Value::Null, output)
    }

    fn run(source: &str, outputs: Vec<Value>) -> Value {
        let variables = json!({"device": {"name": "ru1", "declared": {"accounts": ["admin", "guest"]}}, "param": {}});
        evaluate(
            source,
            None,
            &variables,
            Box::new(Fixed(outputs)),
            Control::live(Arc::new(AtomicU8::new(RUNNING)), Duration::from_secs(5)),
        )
    }

    #[test]
    fn a_function_parameter_is_its_argument_not_the_capture_of_the_same_name() {
        // `device` is a capture in every script's scope; a function's own `device` is
        // whatever the call passes.
        let source = r#"
            fn name_of(device) { device }
            name_of("the argument")
        "#;
        let output = run(source, vec![json!({})]);
        assert_eq!(output["result"], json!("the argument"), "{output}");
    }

    #[test]
    fn findings_are_collected_and_decide_the_verdict() {
        let source = r#"
            for user in device.declared.accounts {
                let login = ssh_login(user, user);
                check(!login.accepted, `default account ${user} accepted its documented password`);
            }
            "done"
        "#;
        let output = run(source, vec![json!({"accepted": true}), json!({"accepted": false})]);
        assert_eq!(output["findings"], json!(["default account admin accepted its documented password"]));
        assert_eq!(output["calls"].as_array().unwrap().len(), 2);
        assert_eq!(output["calls"][0]["spec"], json!({"user": "admin", "password": {"value": "admin"}}));
        assert_eq!(output["result"], json!("done"));
        let judged = verdict_of(&output);
        assert_eq!(judged.verdict, Verdict::Fail);
        assert!(judged.touched_device);
    }

    #[test]
    fn an_infra_failure_stops_the_script_and_cannot_be_caught() {
        let source = r#"
            try { ssh_exec("id"); } catch (e) { }
            check(true, "would pass");
        "#;
        let output = run(source, vec![failure_output(FailureClass::Infra, "ssh to ru1: connection refused")]);
        let judged = verdict_of(&output);
        assert_eq!(judged.verdict, Verdict::Infra, "{output}");
        assert!(judged.message.contains("connection refused") && judged.message.contains("script line 2"), "{}", judged.message);
        assert_eq!(output["passed"], json!([]));
    }

    #[test]
    fn the_sandbox_has_no_way_out_and_a_runaway_loop_is_stopped() {
        assert!(check(r#"import "x" as y;"#, &[]).is_err(), "modules are compiled out");
        assert!(check(r#"eval("1")"#, &[]).is_err(), "eval is disabled");
        let err = check("let x = devise.name;", &["device".into(), "param".into()]).unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.2.contains("devise"), "{err:?}");
        let output = run("loop { }", vec![json!({})]);
        let judged = verdict_of(&output);
        assert_eq!(judged.verdict, Verdict::Error);
        assert!(judged.message.contains("operations"), "{}", judged.message);
    }

    #[test]
    fn a_runtime_error_names_the_plan_file_line_and_the_script_line() {
        let text = "plan: p\ntitle: t\ncases:\n  - id: C\n    title: c\n    scas: { spec: TS 33.117, clause: 4.3.2.7, test_name: C, requirement: r }\n    purpose: p\n    expected: e\n    evidence: e\n    steps:\n      - script: |\n          let x = 1;\n          let y = x.no_such_method();\n";
        let plan = crate::Plan::parse("p.yaml", text).unwrap();
        let step = &plan.spec.cases[0].steps[0];
        let variables = json!({"device": {}, "param": {}});
        let output = evaluate(
            step.script().unwrap(),
            step.script_origin.as_ref(),
            &variables,
            Box::new(Fixed(vec![json!({})])),
            Control::live(Arc::new(AtomicU8::new(RUNNING)), Duration::from_secs(5)),
        );
        let judged = verdict_of(&output);
        assert_eq!(judged.verdict, Verdict::Error);
        assert!(
            judged.message.contains("p.yaml:13:")
                && judged.message.contains("(script line 2)")
                && judged.message.contains("no_such_method"),
            "{}",
            judged.message
        );
    }

    /// Answers, then lets the step's deadline pass (as if the device were slow).
    struct Slow(Arc<AtomicU8>);
    impl Caller for Slow {
        fn call(&mut self, _: &CallRequest) -> Answer {
            self.0.store(TIMED_OUT, Ordering::Relaxed);
            Answer::Done { output: json!({"stdout": "", "stderr": "", "exit_status": 0}), first_seq: 0, last_seq: 0 }
        }
    }

    #[test]
    fn a_script_stopped_by_its_time_limit_is_an_error_that_replays() {
        let source = r#"
            ssh_exec("id");
            let n = 0;
            while true { n += 1; if n % 1000 == 0 { check(true, "still going"); } }
        "#;
        let cancel = Arc::new(AtomicU8::new(RUNNING));
        let variables = json!({"device": {}, "param": {}});
        let output = evaluate(source, None, &variables, Box::new(Slow(cancel.clone())), Control::live(cancel, Duration::from_millis(50)));
        let judged = verdict_of(&output);
        assert_eq!(judged.verdict, Verdict::Error);
        assert!(judged.message.contains("did not finish within 50 ms"), "{}", judged.message);
        replay(source, None, &variables, &output).expect("the replay stops where the run stopped");
    }

    #[test]
    fn checking_nothing_is_no_evidence_and_ambiguity_is_inconclusive() {
        let judged = verdict_of(&run("let x = 1;", vec![json!({})]));
        assert_eq!((judged.verdict, judged.check_passed), (Verdict::Pass, false));
        let judged = verdict_of(&run(r#"inconclusive("the log has no timestamps");"#, vec![json!({})]));
        assert_eq!(judged.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn replay_recomputes_the_output_and_catches_an_edited_record() {
        let source = r#"
            let out = ssh_exec("stat -c '%a %n' /etc/shadow");
            let mode = parse_int(captures(out.stdout, "^(\\d+) ")[1], 8);
            check((mode & 0o007) == 0, `/etc/shadow is mode ${out.stdout}`);
        "#;
        let variables = json!({"device": {}, "param": {}});
        let output = run(source, vec![json!({"stdout": "644 /etc/shadow\n", "stderr": "", "exit_status": 0})]);
        assert_eq!(verdict_of(&output).verdict, Verdict::Fail, "{output}");
        replay(source, None, &variables, &output).unwrap();

        // A forger who turns the finding into a pass is caught: the script, fed the
        // recorded output, finds it again.
        let mut forged = output.clone();
        forged["findings"] = json!([]);
        forged["passed"] = json!(["/etc/shadow is mode 640"]);
        assert!(replay(source, None, &variables, &forged).unwrap_err().contains("passed"));
        // So is one who edits what the device answered to match a pass: the script then
        // disagrees with the recorded findings (and verify also checks the raw bytes).
        let mut forged = output.clone();
        forged["calls"][0]["output"]["stdout"] = json!("640 /etc/shadow\n");
        assert!(replay(source, None, &variables, &forged).is_err());
        // And one who records a different call than the script makes.
        let mut forged = output;
        forged["calls"][0]["spec"]["command"] = json!("true");
        assert!(replay(source, None, &variables, &forged).unwrap_err().contains("asks for"));
    }
}
