//! Verdicts as pure functions of recorded evidence.
//!
//! The executor performs a step, records what it observed (the step's *output*), and
//! only then asks [`judge`] for the verdict, passing nothing but the step's resolved
//! spec and that output. `proofrig verify` calls the same function on the recorded
//! outputs, so a verdict in a bundle can always be recomputed by a third party; if
//! anyone edits a verdict, the recomputation disagrees.

use serde_json::{json, Value};

use crate::action::ActionKind;
use crate::Verdict;

/// What a step's verdict is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub message: String,
    /// The step checked something on the device and the check held.
    pub check_passed: bool,
    /// The step exchanged data with the device (a PASS needs some contact).
    pub touched_device: bool,
}

impl Judgement {
    pub(crate) fn new(verdict: Verdict, message: impl Into<String>, check_passed: bool, touched_device: bool) -> Self {
        Self { verdict, message: message.into(), check_passed, touched_device }
    }
}

/// How an agent failure is classified in a step's output (`{"error": {...}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The rig, an agent or a PDU failed: the test could not run.
    Infra,
    /// The test logic failed; the device's state is unknown.
    Error,
    /// The device showed non-compliance (e.g. it died: a death string appeared).
    Fail,
    /// Stopped by a person or a signal.
    Aborted,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Infra => "infra",
            FailureClass::Error => "error",
            FailureClass::Fail => "fail",
            FailureClass::Aborted => "aborted",
        }
    }
}

/// The output recorded for a step whose action failed.
pub fn failure_output(class: FailureClass, message: &str) -> Value {
    json!({"error": {"class": class.as_str(), "message": message}})
}

/// Decide a step from its action, its resolved spec and what it observed.
pub fn judge(action: ActionKind, spec: &Value, output: &Value) -> Judgement {
    if let Some(judged) = judge_unperformed(output) {
        return judged;
    }
    match action {
        ActionKind::Power => {
            Judgement::new(Verdict::Pass, format!("power {}: outlet reads {}", text(&spec["action"]), text(&output["state"])), false, false)
        }
        ActionKind::Wait => Judgement::new(Verdict::Pass, format!("waited {} ms", spec["ms"]), false, false),
        ActionKind::Set => Judgement::new(Verdict::Pass, "values set", false, false),
        ActionKind::ConsoleSend => Judgement::new(Verdict::Pass, "sent to the console", false, true),
        ActionKind::ConsoleExpect => judge_expect(spec, output),
        // A console login without `expect` must succeed (it is how a test gets in); an
        // SSH login without one only records its outcome, for a script to judge.
        ActionKind::ConsoleLogin => judge_login(spec, output, "console login", Some("accepted")),
        ActionKind::SshLogin => judge_login(spec, output, "SSH login", None),
        ActionKind::SshSu => judge_su(output),
        ActionKind::ConsoleRun => judge_status(spec, output, "output", "console command"),
        ActionKind::SshExec => judge_status(spec, output, "stdout", "SSH command"),
        ActionKind::SshFetch => Judgement::new(
            Verdict::Pass,
            format!("fetched {} ({} bytes, sha256 {})", text(&spec["path"]), output["len"], text(&output["sha256"])),
            false,
            true,
        ),
        ActionKind::SshAudit => Judgement::new(
            Verdict::Pass,
            format!(
                "server offers {} ciphers, {} MACs, {} key exchange methods",
                count(&output["ciphers"]),
                count(&output["macs"]),
                count(&output["kex"])
            ),
            false,
            true,
        ),
        ActionKind::SshNegotiate => judge_negotiate(spec, output),
        // Whether the session ended is the case's to judge against the declared timeout;
        // without a prompt there was no interactive session to leave idle.
        ActionKind::SshIdle => match output["prompt_seen"].as_bool() {
            Some(true) => Judgement::new(
                Verdict::Pass,
                match output["ended"].as_bool() {
                    Some(true) => format!("the device ended the idle SSH session within {} ms", output["idle_ms"]),
                    _ => format!("the SSH session was still open after {} ms without input", output["idle_ms"]),
                },
                false,
                true,
            ),
            _ => Judgement::new(
                Verdict::Inconclusive,
                "the SSH shell showed no prompt, so no interactive session was left idle".to_string(),
                false,
                true,
            ),
        },
        ActionKind::TcpScan => Judgement::new(
            Verdict::Pass,
            format!(
                "{} of {} ports open on {}: {}",
                count(&output["open"]),
                output["scanned"],
                text(&output["address"]),
                list(&output["open"])
            ),
            false,
            true,
        ),
        ActionKind::UdpScan => judge_udp_scan(output),
        ActionKind::SnmpProbe => Judgement::new(
            Verdict::Pass,
            format!(
                "{} at {}:{}: {} of {} community requests answered: {}",
                if output["port_unreachable"].as_bool() == Some(true) { "no SNMP agent (port unreachable)" } else { "SNMP agent" },
                text(&output["address"]),
                output["port"],
                count(&output["answered"]),
                count(&output["probes"]),
                list(&output["answered"]),
            ),
            false,
            true,
        ),
        ActionKind::HttpRequest => Judgement::new(
            Verdict::Pass,
            format!(
                "{} {} on {}:{}: {} {}, {} bytes of body",
                text(&output["method"]),
                text(&output["path"]),
                text(&output["address"]),
                output["port"],
                output["status"],
                text(&output["reason"]),
                output["body_len"],
            ),
            false,
            true,
        ),
        ActionKind::SyslogReceive => judge_syslog(spec, output),
        ActionKind::TlsAudit => Judgement::new(
            Verdict::Pass,
            format!(
                "TLS server {}:{}: accepts {}; {} suites accepted over {} hellos",
                text(&output["address"]),
                output["port"],
                list(&output["accepted_versions"]),
                count(&output["accepted_suites"]),
                output["connections"],
            ),
            false,
            true,
        ),
        ActionKind::Assert => judge_assert(spec, output),
        ActionKind::Script => judge_script(output),
    }
}

/// A step or script call recorded under the name `action` (a journal's record, which
/// may name no action): judged as [`judge`] does its kind; a name that is no action
/// is ERROR, unless the output records a failure or a skip, which are judged as any
/// action's are.
pub fn judge_recorded(action: &str, spec: &Value, output: &Value) -> Judgement {
    match ActionKind::from_name(action) {
        Some(kind) => judge(kind, spec, output),
        None => judge_unperformed(output)
            .unwrap_or_else(|| Judgement::new(Verdict::Error, format!("unknown action `{action}` in the journal"), false, false)),
    }
}

/// The verdict of an output that records a failure (`{"error": ...}`) or a skip
/// (`{"skipped": ...}`), whatever the action; None for an output of an action that ran.
fn judge_unperformed(output: &Value) -> Option<Judgement> {
    if let Some(error) = output.get("error") {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_string();
        let verdict = match error.get("class").and_then(Value::as_str) {
            Some("infra") => Verdict::Infra,
            Some("fail") => Verdict::Fail,
            Some("aborted") => Verdict::Aborted,
            _ => Verdict::Error,
        };
        return Some(Judgement::new(verdict, message, false, verdict == Verdict::Fail));
    }
    let reason = output.get("skipped").and_then(Value::as_str)?;
    Some(Judgement::new(Verdict::Skip, reason, false, false))
}

/// A script step's verdict, from its output alone.
pub fn judge_script(output: &Value) -> Judgement {
    let strings =
        |key: &str| -> Vec<String> { output[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect() };
    let touched = output["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|call| judge_recorded(call["action"].as_str().unwrap_or_default(), &call["spec"], &call["output"]).touched_device);
    let summary = |items: &[String]| -> String {
        const SHOWN: usize = 6;
        let mut text = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
        if items.len() > SHOWN {
            text.push_str(&format!("; and {} more", items.len() - SHOWN));
        }
        text
    };
    let findings = strings("findings");
    if !findings.is_empty() {
        return Judgement::new(Verdict::Fail, summary(&findings), false, touched);
    }
    let inconclusive = strings("inconclusive");
    if !inconclusive.is_empty() {
        return Judgement::new(Verdict::Inconclusive, summary(&inconclusive), false, touched);
    }
    let passed = strings("passed");
    if passed.is_empty() {
        return Judgement::new(Verdict::Pass, "the script ran and checked nothing", false, touched);
    }
    let noun = if passed.len() == 1 { "check" } else { "checks" };
    Judgement::new(Verdict::Pass, format!("{} {noun} held: {}", passed.len(), summary(&passed)), true, touched)
}

/// A UDP scan that heard neither an answer nor a refusal learned nothing: something
/// drops the probes, and open ports cannot be told from filtered ones.
fn judge_udp_scan(output: &Value) -> Judgement {
    let (open, silent, closed) = (count(&output["open"]), count(&output["open_filtered"]), output["closed"].as_u64().unwrap_or(0));
    let summary = format!(
        "{} UDP ports of {}: open {}, open|filtered {}, {closed} closed",
        output["scanned"],
        text(&output["address"]),
        list(&output["open"]),
        list(&output["open_filtered"])
    );
    if open == 0 && closed == 0 && silent > 0 {
        let message = format!("{summary}: no port answered or refused, so a filter drops the probes and the scan cannot tell open from filtered; scan from where the device's own interface answers");
        return Judgement::new(Verdict::Inconclusive, message, false, true);
    }
    Judgement::new(Verdict::Pass, summary, false, true)
}

/// A `syslog_receive` step: PASS when the device's record of the refused login
/// arrived, FAIL when none did; ERROR when the wrong password was accepted (then there
/// was no refused login to log).
fn judge_syslog(spec: &Value, output: &Value) -> Judgement {
    let login = &output["login"];
    let attempt = format!(
        "the refused SSH login of `{}` from {} port {}",
        text(&login["user"]),
        text(&login["source_address"]),
        text(&login["source_port"])
    );
    if login["accepted"].as_bool() != Some(false) {
        let message = format!("the SSH login of `{}` with a wrong password was accepted, so there is no refused login whose record could be looked for; check the account and the device's authentication first", text(&login["user"]));
        return Judgement::new(Verdict::Error, message, false, true);
    }
    if login["source_port"].is_null() {
        let message = format!(
            "the SSH login of `{}` never reached authentication, so the device had no refused login to log; see the step's SSH events",
            text(&login["user"])
        );
        return Judgement::new(Verdict::Error, message, false, true);
    }
    let wait = spec["wait_ms"].as_u64().unwrap_or(5000);
    let received = output["received"].as_u64().unwrap_or(0);
    match output["matching"].as_array().and_then(|m| m.first()) {
        Some(record) => Judgement::new(
            Verdict::Pass,
            format!(
                "the device's record of {attempt} arrived at the log server {} from {}: {}",
                text(&output["listen"]),
                text(&record["peer"]),
                text(&record["text"])
            ),
            true,
            true,
        ),
        None => Judgement::new(
            Verdict::Fail,
            format!(
                "no record of {attempt} arrived at the log server {} within {wait} ms ({received} other records arrived)",
                text(&output["listen"])
            ),
            false,
            true,
        ),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn count(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(items) if items.is_empty() => "none".into(),
        Some(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        None => text(v),
    }
}

fn judge_expect(spec: &Value, output: &Value) -> Judgement {
    let on_timeout = spec.get("on_timeout").and_then(Value::as_str).unwrap_or("error");
    if output["matched"].as_bool() == Some(true) {
        let verdict = if on_timeout == "pass" { Verdict::Fail } else { Verdict::Pass };
        let message = if verdict == Verdict::Fail {
            format!("the console showed `{}`, which a compliant device never prints", text(&output["matched_text"]))
        } else {
            format!("the console showed `{}`", text(&output["matched_text"]))
        };
        return Judgement::new(verdict, message, verdict == Verdict::Pass, true);
    }
    match on_timeout {
        "pass" => Judgement::new(Verdict::Pass, "the pattern never appeared, as a compliant device behaves", true, true),
        "fail" => Judgement::new(Verdict::Fail, "the expected output never appeared", false, true),
        _ => Judgement::new(
            Verdict::Error,
            format!("timed out waiting for {}; last output: {}", list(&spec["patterns"]), text(&output["tail"])),
            false,
            true,
        ),
    }
}

fn judge_login(spec: &Value, output: &Value, what: &str, unless_said: Option<&str>) -> Judgement {
    // A console_login asked to tell (`still_logged_in: fail`): a console that answers
    // every `exit` with a shell prompt has no logout.
    if output["still_logged_in"].as_bool() == Some(true) {
        return Judgement::new(
            Verdict::Fail,
            format!(
                "the console cannot be logged out: after {} exits it still shows a shell prompt (`{}`) and never asked anyone to log in",
                text(&output["exits"]),
                text(&output["prompt"])
            ),
            false,
            true,
        );
    }
    let accepted = output["accepted"].as_bool() == Some(true);
    let outcome = if accepted { "accepted" } else { "refused" };
    // The account tried: the step's, or the rig's when the step names none.
    let user = match output.get("user").filter(|u| !u.is_null()) {
        Some(user) => text(user),
        None => text(&spec["user"]),
    };
    // Shells left open at the console were logged out first: say so, since the
    // transcript shows a prompt that was not this login's.
    let logged_out: Vec<String> = output["logged_out"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|shell| match shell["account"].as_str() {
            Some(account) => format!("`{account}`"),
            None => format!("unknown (prompt `{}`)", text(&shell["prompt"])),
        })
        .collect();
    let after = if logged_out.is_empty() {
        String::new()
    } else {
        format!(" (after logging out a shell left open as {})", logged_out.join(", then "))
    };
    let expected = match spec.get("expect").and_then(Value::as_str).or(unless_said) {
        Some("any") | None => return Judgement::new(Verdict::Pass, format!("{what} as `{user}` was {outcome}{after}"), false, true),
        Some(expected) => expected,
    };
    if outcome == expected {
        Judgement::new(Verdict::Pass, format!("{what} as `{user}` was {outcome}{after}, as required"), true, true)
    } else {
        Judgement::new(Verdict::Fail, format!("{what} as `{user}` was {outcome}{after}; a compliant device has it {expected}"), false, true)
    }
}

/// The device's own password check (`su` over SSH): only records the outcome, for a
/// script or a later step to weigh; a device without `su` is an ERROR, like any
/// missing command.
fn judge_su(output: &Value) -> Judgement {
    let user = text(&output["user"]);
    let status = output["status"].as_i64();
    if let Some(missing) = missing_command(&format!("su {user}"), status, &text(&output["response"]), "") {
        return Judgement::new(Verdict::Error, missing, false, true);
    }
    let outcome = if output["accepted"].as_bool() == Some(true) { "accepted" } else { "refused" };
    let shown = match output["response"].as_str().filter(|r| !r.is_empty()) {
        Some(response) => format!(" (`{}`)", excerpt(response, 120)),
        None => String::new(),
    };
    Judgement::new(
        Verdict::Pass,
        format!("su to `{user}` on the device was {outcome}, exit {}{shown}", status.map_or("none".into(), |s| s.to_string())),
        false,
        true,
    )
}

fn judge_status(spec: &Value, output: &Value, stream: &str, what: &str) -> Judgement {
    let status = output.get("exit_status").and_then(Value::as_i64);
    let shown = status.map_or("none".to_string(), |s| s.to_string());
    if let Some(missing) = missing_command(&text(&spec["command"]), status, &text(&output[stream]), &text(&output["stderr"])) {
        return Judgement::new(Verdict::Error, missing, false, true);
    }
    match spec.get("expect_status").and_then(Value::as_i64) {
        Some(expected) if Some(expected) == status => {
            Judgement::new(Verdict::Pass, format!("{what} `{}` exited {shown}, as required", text(&spec["command"])), true, true)
        }
        Some(expected) => Judgement::new(
            Verdict::Fail,
            format!(
                "{what} `{}` exited {shown}, a compliant device gives {expected}; output: {}",
                text(&spec["command"]),
                excerpt(&text(&output[stream]), 200)
            ),
            false,
            true,
        ),
        None => Judgement::new(Verdict::Pass, format!("{what} `{}` exited {shown}", text(&spec["command"])), false, true),
    }
}

/// A command the device does not have (exit 127, or 126 for one it cannot run, or a
/// shell's "not found"): never a finding about the device, since the check did not
/// run. The message names the command, so the plan or the rig can be fixed.
fn missing_command(command: &str, status: Option<i64>, stdout: &str, stderr: &str) -> Option<String> {
    let said = [stderr, stdout].into_iter().flat_map(str::lines).find_map(not_found_in);
    let missing = match (status, said) {
        (Some(0) | None, _) => return None,
        (Some(127), said) => said.unwrap_or_else(|| command.split_whitespace().next().unwrap_or(command).to_string()),
        (Some(126), said) => said.unwrap_or_else(|| command.split_whitespace().next().unwrap_or(command).to_string()),
        (Some(_), Some(said)) => said,
        (Some(_), None) => return None,
    };
    let status = status.map_or(String::new(), |s| format!(" (exit {s})"));
    Some(format!(
        "the device has no command `{missing}`{status}, so `{}` did not run and shows nothing about the device; \
         the plan needs a command this device has (see `proofrig catalogue`)",
        excerpt(command, 120)
    ))
}

/// The command named by a shell's complaint that it does not exist:
/// `sh: ss: not found`, `bash: line 1: ss: command not found`, `ss: applet not found`.
fn not_found_in(line: &str) -> Option<String> {
    let line = line.trim();
    let rest = line
        .strip_suffix(": not found")
        .or_else(|| line.strip_suffix(": command not found"))
        .or_else(|| line.strip_suffix(": applet not found"))?;
    let name = rest.rsplit(": ").next()?.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string())
}

fn judge_negotiate(spec: &Value, output: &Value) -> Judgement {
    let negotiated = output["negotiated"].as_bool() == Some(true);
    let outcome = if negotiated { "accepted" } else { "refused" };
    let offered = ["kex", "host_key", "ciphers", "macs"]
        .iter()
        .filter(|k| count(&spec[**k]) > 0)
        .map(|k| format!("{k} {}", list(&spec[*k])))
        .collect::<Vec<_>>()
        .join("; ");
    match spec.get("expect").and_then(Value::as_str) {
        Some(expected) if expected == outcome => {
            Judgement::new(Verdict::Pass, format!("a client offering only {offered} was {outcome}, as required"), true, true)
        }
        Some(expected) => Judgement::new(
            Verdict::Fail,
            format!("a client offering only {offered} was {outcome}; a compliant device has it {expected} ({})", text(&output["detail"])),
            false,
            true,
        ),
        None => Judgement::new(Verdict::Pass, format!("a client offering only {offered} was {outcome}"), false, true),
    }
}

/// Shorten long evidence for messages, keeping the start.
pub fn excerpt(text: &str, max: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect();
    let clean = clean.trim();
    if clean.chars().count() <= max {
        clean.to_string()
    } else {
        format!("{}…", clean.chars().take(max).collect::<String>())
    }
}

/// Items of a value seen as a set: arrays as their items, anything else as itself.
fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An assert's output is `{"value": ..., "operator": ..., "operand": ...}`: all resolved.
fn judge_assert(spec: &Value, output: &Value) -> Judgement {
    let value = &output["value"];
    let operand = &output["operand"];
    let operator = output["operator"].as_str().unwrap_or("");
    let lead = spec.get("message").and_then(Value::as_str).map(|m| format!("{m}: ")).unwrap_or_default();
    let held = spec.get("passed").and_then(Value::as_str);
    let pass = |m: String| Judgement::new(Verdict::Pass, held.map_or_else(|| m.clone(), |held| format!("{held} ({m})")), true, false);
    let fail = |m: String| Judgement::new(Verdict::Fail, format!("{lead}{m}"), false, false);
    let error = |m: String| Judgement::new(Verdict::Error, format!("{lead}{m}"), false, false);
    let show = |v: &Value| excerpt(&text(v), 300);
    match operator {
        "equals" if value == operand => pass(format!("{} equals {}", show(value), show(operand))),
        "equals" => fail(format!("found {}, expected {}", show(value), show(operand))),
        "not_equals" if value != operand => pass(format!("{} differs from {}", show(value), show(operand))),
        "not_equals" => fail(format!("found {}, which it must not be", show(value))),
        "matches" | "not_matches" => {
            let Some(pattern) = operand.as_str() else { return error("the pattern is not text".into()) };
            let re = match regex::Regex::new(pattern) {
                Ok(re) => re,
                Err(err) => return error(format!("invalid pattern `{pattern}`: {err}")),
            };
            let subject = text(value);
            let found = re.find(&subject);
            match (operator, found) {
                ("matches", Some(m)) => pass(format!("found `{}` matching `{pattern}`", excerpt(m.as_str(), 120))),
                ("matches", None) => fail(format!("nothing matches `{pattern}` in: {}", excerpt(&subject, 300))),
                (_, None) => pass(format!("nothing matches `{pattern}`")),
                (_, Some(m)) => fail(format!("found `{}` matching `{pattern}`", excerpt(m.as_str(), 120))),
            }
        }
        "one_of" => {
            if items(operand).contains(value) {
                pass(format!("{} is one of {}", show(value), show(operand)))
            } else {
                fail(format!("{} is not one of {}", show(value), show(operand)))
            }
        }
        "contains" => {
            let contained = match value {
                Value::Array(a) => a.contains(operand),
                Value::String(s) => s.contains(&text(operand)),
                _ => false,
            };
            if contained {
                pass(format!("contains {}", show(operand)))
            } else {
                fail(format!("{} does not contain {}", show(value), show(operand)))
            }
        }
        "subset_of" => {
            let allowed = items(operand);
            let outside: Vec<Value> = items(value).into_iter().filter(|v| !allowed.contains(v)).collect();
            if outside.is_empty() {
                pass(format!("all of {} are allowed", show(value)))
            } else {
                fail(format!("not in the allowed list: {}", list(&Value::Array(outside))))
            }
        }
        "disjoint_from" => {
            let forbidden = items(operand);
            let common: Vec<Value> = items(value).into_iter().filter(|v| forbidden.contains(v)).collect();
            if common.is_empty() {
                pass(format!("none of {} present", show(operand)))
            } else {
                fail(format!("present but forbidden: {}", list(&Value::Array(common))))
            }
        }
        "set_equals" => {
            let (found, wanted) = (items(value), items(operand));
            let extra: Vec<Value> = found.iter().filter(|v| !wanted.contains(v)).cloned().collect();
            let missing: Vec<Value> = wanted.iter().filter(|v| !found.contains(v)).cloned().collect();
            if extra.is_empty() && missing.is_empty() {
                pass(format!("exactly {}", show(operand)))
            } else {
                let mut parts = Vec::new();
                if !extra.is_empty() {
                    parts.push(format!("unexpected: {}", list(&Value::Array(extra))));
                }
                if !missing.is_empty() {
                    parts.push(format!("missing: {}", list(&Value::Array(missing))));
                }
                fail(parts.join("; "))
            }
        }
        "less_than" | "at_most" | "greater_than" | "at_least" => {
            let (Some(a), Some(b)) = (number(value), number(operand)) else {
                return error(format!("cannot compare {} with {} as numbers", show(value), show(operand)));
            };
            let (holds, word) = match operator {
                "less_than" => (a < b, "less than"),
                "at_most" => (a <= b, "at most"),
                "greater_than" => (a > b, "greater than"),
                _ => (a >= b, "at least"),
            };
            if holds {
                pass(format!("{a} is {word} {b}"))
            } else {
                fail(format!("{a} is not {word} {b}"))
            }
        }
        other => error(format!("unknown comparison `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_that_cannot_be_logged_out_fails_naming_its_prompt_whatever_the_step_expects() {
        let shell = json!({"account": "root", "prompt": "root@ru-bb:/#"});
        let output = json!({"accepted": false, "user": "root", "still_logged_in": true, "prompt": "root@ru-bb:/#", "exits": 3,
            "logged_out": [shell, shell, shell]});
        for expect in ["any", "accepted", "refused"] {
            let judged = judge(ActionKind::ConsoleLogin, &json!({"expect": expect, "still_logged_in": "fail"}), &output);
            assert_eq!(judged.verdict, Verdict::Fail, "{expect}: {}", judged.message);
            assert_eq!(
                judged.message,
                "the console cannot be logged out: after 3 exits it still shows a shell prompt (`root@ru-bb:/#`) and never asked anyone to log in"
            );
        }
        // A login that went through is judged as before.
        let accepted =
            judge(ActionKind::ConsoleLogin, &json!({"expect": "any"}), &json!({"accepted": true, "user": "root", "logged_out": []}));
        assert_eq!((accepted.verdict, accepted.message.as_str()), (Verdict::Pass, "console login as `root` was accepted"));
    }

    #[test]
    fn a_udp_scan_that_heard_nothing_at_all_is_inconclusive() {
        let scan = |open: Value, silent: Value, closed: u64| {
            judge(
                ActionKind::UdpScan,
                &json!({}),
                &json!({"address": "127.0.0.7", "scanned": 3, "open": open, "open_filtered": silent, "closed": closed}),
            )
        };
        let filtered = scan(json!([]), json!([53, 123, 161]), 0);
        assert_eq!(filtered.verdict, Verdict::Inconclusive, "{}", filtered.message);
        assert!(filtered.message.contains("a filter drops the probes"), "{}", filtered.message);
        // One refusal or one answer shows probes get through: the silent ports count.
        assert_eq!(scan(json!([]), json!([53, 123]), 1).verdict, Verdict::Pass);
        assert_eq!(scan(json!([161]), json!([53, 123]), 0).verdict, Verdict::Pass);
        let all_closed = scan(json!([]), json!([]), 3);
        assert_eq!(all_closed.verdict, Verdict::Pass);
        assert_eq!(all_closed.message, "3 UDP ports of 127.0.0.7: open none, open|filtered none, 3 closed");
    }

    fn assert_out(value: Value, operator: &str, operand: Value) -> Judgement {
        judge(
            ActionKind::Assert,
            &json!({"message": "offered ciphers"}),
            &json!({"value": value, "operator": operator, "operand": operand}),
        )
    }

    #[test]
    fn subset_failures_name_the_offending_items() {
        let j = assert_out(json!(["aes256-gcm", "aes128-cbc"]), "subset_of", json!(["aes256-gcm", "chacha20"]));
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(j.message, "offered ciphers: not in the allowed list: aes128-cbc");
        let j = assert_out(json!(["aes256-gcm"]), "subset_of", json!(["aes256-gcm", "chacha20"]));
        assert_eq!((j.verdict, j.check_passed), (Verdict::Pass, true));
    }

    #[test]
    fn a_passing_assert_reads_as_what_held_never_as_its_failure_message() {
        let spec = json!({"message": "insecure services accept connections", "passed": "no insecure service accepts connections"});
        let j = judge(ActionKind::Assert, &spec, &json!({"value": [], "operator": "equals", "operand": []}));
        assert_eq!((j.verdict, j.message.as_str()), (Verdict::Pass, "no insecure service accepts connections ([] equals [])"));
        let j = judge(ActionKind::Assert, &spec, &json!({"value": [23], "operator": "equals", "operand": []}));
        assert_eq!((j.verdict, j.message.as_str()), (Verdict::Fail, "insecure services accept connections: found [23], expected []"));
    }

    #[test]
    fn set_equality_lists_both_kinds_of_discrepancy() {
        let j = assert_out(json!([22, 23, 21]), "set_equals", json!([22, 830]));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.message.contains("unexpected: 23, 21") && j.message.contains("missing: 830"), "{}", j.message);
    }

    #[test]
    fn numbers_patterns_and_type_errors() {
        assert_eq!(assert_out(json!("5"), "at_least", json!(3)).verdict, Verdict::Pass);
        assert_eq!(assert_out(json!(2), "at_least", json!(3)).verdict, Verdict::Fail);
        assert_eq!(assert_out(json!("n/a"), "at_least", json!(3)).verdict, Verdict::Error);
        assert_eq!(assert_out(json!("-rw-r--r-- root /etc/shadow"), "not_matches", json!("^-......r")).verdict, Verdict::Fail);
    }

    #[test]
    fn login_expectations_decide_both_ways() {
        let refused = json!({"accepted": false});
        let spec = json!({"user": "root", "expect": "refused"});
        assert_eq!(judge(ActionKind::SshLogin, &spec, &refused).verdict, Verdict::Pass);
        let j = judge(ActionKind::SshLogin, &spec, &json!({"accepted": true}));
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(j.message, "SSH login as `root` was accepted; a compliant device has it refused");
    }

    #[test]
    fn a_log_record_of_the_refused_login_passes_and_none_fails() {
        let spec = json!({"listen": "udp:127.0.0.1:5514", "refused_login": "root", "wait_ms": 3000});
        let login = json!({"user": "root", "accepted": false, "source_address": "127.0.0.1", "source_port": 40000});
        let record =
            json!({"peer": "127.0.0.1:514", "facility": 4, "severity": 6, "text": "Failed password for root from 127.0.0.1 port 40000"});
        let arrived = json!({"listen": "udp:127.0.0.1:5514", "login": login, "received": 1, "records": [record], "matching": [record]});
        let j = judge(ActionKind::SyslogReceive, &spec, &arrived);
        assert_eq!((j.verdict, j.check_passed), (Verdict::Pass, true), "{}", j.message);
        let silent = json!({"listen": "udp:127.0.0.1:5514", "login": login, "received": 0, "records": [], "matching": []});
        let j = judge(ActionKind::SyslogReceive, &spec, &silent);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.message.contains("within 3000 ms"), "{}", j.message);
        // A wrong password let in, or a login that never reached authentication, decides nothing.
        let mut accepted = silent.clone();
        accepted["login"]["accepted"] = json!(true);
        assert_eq!(judge(ActionKind::SyslogReceive, &spec, &accepted).verdict, Verdict::Error);
        let mut unborn = silent.clone();
        unborn["login"]["source_port"] = Value::Null;
        assert_eq!(judge(ActionKind::SyslogReceive, &spec, &unborn).verdict, Verdict::Error);
    }

    #[test]
    fn a_command_the_device_lacks_is_an_error_never_a_finding() {
        let spec = json!({"command": "ss -ltnu", "expect_status": 0});
        for (status, stderr) in
            [(127, "sh: ss: not found\n"), (127, ""), (127, "bash: line 1: ss: command not found\n"), (1, "ss: applet not found\n")]
        {
            let j = judge(ActionKind::SshExec, &spec, &json!({"stdout": "", "stderr": stderr, "exit_status": status}));
            assert_eq!(j.verdict, Verdict::Error, "{status} {stderr:?}: {}", j.message);
            assert!(j.message.starts_with("the device has no command `ss`"), "{}", j.message);
        }
        // Without expect_status too: a missing command shows nothing either way.
        let j = judge(
            ActionKind::ConsoleRun,
            &json!({"command": "stat -c %a /etc/shadow"}),
            &json!({"output": "sh: stat: not found", "exit_status": 127}),
        );
        assert_eq!(j.verdict, Verdict::Error, "{}", j.message);
        assert!(j.message.contains("`stat`"), "{}", j.message);
        // A command that ran and failed is the device's answer, not a missing command.
        let j = judge(
            ActionKind::SshExec,
            &spec,
            &json!({"stdout": "", "stderr": "grep: /etc/x: No such file or directory\n", "exit_status": 2}),
        );
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(judge(ActionKind::SshExec, &spec, &json!({"stdout": "ok\n", "stderr": "", "exit_status": 0})).verdict, Verdict::Pass);
    }

    #[test]
    fn recorded_failures_keep_their_class() {
        let out = failure_output(FailureClass::Infra, "PDU `p` is unreachable");
        let j = judge(ActionKind::Power, &json!({"action": "on"}), &out);
        assert_eq!((j.verdict, j.message.as_str()), (Verdict::Infra, "PDU `p` is unreachable"));
    }

    #[test]
    fn a_recorded_name_that_is_no_action_is_an_error_unless_its_output_says_more() {
        let j = judge_recorded("ssh_teleport", &json!({}), &json!({"stdout": ""}));
        assert_eq!(
            (j.verdict, j.message.as_str(), j.touched_device),
            (Verdict::Error, "unknown action `ssh_teleport` in the journal", false)
        );
        let j = judge_recorded("ssh_teleport", &json!({}), &failure_output(FailureClass::Fail, "the device died"));
        assert_eq!((j.verdict, j.touched_device), (Verdict::Fail, true));
        assert_eq!(judge_recorded("ssh_teleport", &json!({}), &json!({"skipped": "no ssh"})).verdict, Verdict::Skip);
        let spec = json!({"command": "true", "expect_status": 0});
        let output = json!({"stdout": "", "stderr": "", "exit_status": 0});
        assert_eq!(judge_recorded("ssh_exec", &spec, &output), judge(ActionKind::SshExec, &spec, &output));
    }

    #[test]
    fn an_expect_meant_to_time_out_fails_when_the_pattern_shows() {
        let spec = json!({"patterns": ["=> "], "on_timeout": "pass"});
        assert_eq!(judge(ActionKind::ConsoleExpect, &spec, &json!({"matched": false})).verdict, Verdict::Pass);
        assert_eq!(judge(ActionKind::ConsoleExpect, &spec, &json!({"matched": true, "matched_text": "=> "})).verdict, Verdict::Fail);
    }
}
