//! Re-deriving what one action observed from the raw events of its range, as `verify`
//! does for every step and every call a script made.
//!
//! Each action's recorded output is checked field by field against the events the
//! agents recorded while it ran: what went over the wire (bytes, datagrams, the SSH
//! command and its exit, a fetched file's digest), what the outlet read back, each TCP
//! connection a scan made. A field nothing recorded is not taken on trust: it is
//! either re-derived or must be what the step's spec says.
//!
//! A failed action is checked too, never skipped. The evidence each failure needs:
//! - every class: the failure on record in its range, as the executor notes it the
//!   moment it happens (`<class>: <message>` on the device's `proofrig` channel);
//! - ABORTED: that note reads `aborted: stopped by the operator`, the signal record
//!   (the executor also records it where the stop leaves steps or cases unrun, and
//!   replay requires a run marked aborted to have one, and nothing but restore steps to
//!   run after it);
//! - INFRA and ERROR: besides the note, the failure must not hide what the events show
//!   the action did: a command that ran to its exit, a login the server answered, a
//!   power switch the outlet confirmed, a scan with every port accounted for, a wait
//!   whose pattern the console showed. (What made it fail is not always on the wire: a
//!   secret file the lab could not read, a rig value missing. The note says it.)
//! - FAIL (a death string): the console shows the death string as the first thing the
//!   wait met.
//!
//! A stop by the operator (the action may have finished as the stop came) and a step its
//! time limit cut off (the executor noted the deadline) are exempt from the INFRA/ERROR
//! rule, since then the agent's work and the failure overlap.

use serde_json::{json, Value};

use proofrig_model::events::{Direction, Event, EventKind, PowerState};
use proofrig_model::rig::Rig;
use proofrig_model::wire::ssh_shell;

use super::console_replay::{CommandRun, Consoles, LoginReplay};
use crate::notes::{failure_note, EXECUTOR_CHANNEL, NOTE_DEADLINE};
use proofrig_plan::{ActionKind, Step};

/// What a check of one action needs besides its own record and events.
pub struct Context<'a> {
    pub rig: &'a Rig,
    pub consoles: &'a mut Consoles,
    /// Devices a step's time limit cut off: their abandoned agent threads may still
    /// record, in any step's range.
    pub cut_off: &'a std::collections::BTreeSet<String>,
}

/// One action's record: a declarative step, or one call of a script step.
pub struct Action<'v> {
    /// The action's name as recorded (a script's call may name anything).
    pub action: &'v str,
    pub device: &'v str,
    pub spec: &'v Value,
    pub output: &'v Value,
    /// The plan's step, for a declarative step (a script's calls have none).
    pub step: Option<&'v Step>,
}

/// Whether the executor noted that a step's time limit cut `device`'s action off.
pub fn cut_off(device: &str, events: &[&Event]) -> bool {
    events.iter().any(|e| matches!(&e.kind, EventKind::Note { channel, text } if channel.device == device && channel.channel == EXECUTOR_CHANNEL && text.starts_with(NOTE_DEADLINE)))
}

/// Check `action`'s recorded output against `events`, the events of its range (see
/// the module doc). The console's state is kept in `ctx` across actions.
pub fn check(ctx: &mut Context<'_>, action: &Action<'_>, events: &[&Event]) -> Result<(), String> {
    let Action { action: name, device, spec, output, step } = *action;
    // A skipped step did not run (whether it should have is checked against the rig).
    if output.get("skipped").is_some() {
        return match own_events(device, events).next() {
            Some(event) => Err(format!("the step is recorded as skipped, yet event {} in its range is its own", event.seq)),
            None => Ok(()),
        };
    }
    for event in events {
        if !belongs_to(event, device) && !crate::notes::outside_allowed(event) && !ctx.cut_off.iter().any(|d| belongs_to(event, d)) {
            return Err(format!("event {} of another device lies in the range of this step on {device}", event.seq));
        }
    }
    let cut = cut_off(device, events);
    if let Some(note) = failure_note(output) {
        let on_record = events.iter().any(|e| matches!(&e.kind, EventKind::Note { channel, text } if channel.device == device && channel.channel == EXECUTOR_CHANNEL && *text == note));
        if !on_record {
            return Err(format!("the step is recorded as failed (`{note}`), but its events hold no record of that failure"));
        }
    }
    let failure = output.get("error").map(|e| e["class"].as_str().unwrap_or_default());
    // The operator's stop may overlap whatever the action did; so may a deadline.
    let exempt = cut || failure == Some("aborted");
    let console = ctx.rig.device(device).ok().and_then(|d| d.console.clone());
    let deaths = console.as_ref().map(|c| c.death_strings.clone()).unwrap_or_default();
    let text = |key: &str| spec.get(key).and_then(Value::as_str).unwrap_or_default();
    let Some(kind) = ActionKind::from_name(name) else {
        return Err(format!("`{name}` is not an action proofrig performs"));
    };
    match kind {
        ActionKind::ConsoleExpect => ctx.consoles.expect(device, spec, output, &deaths, exempt),
        ActionKind::ConsoleRun => {
            let sent = bytes_on(events, device, "console", Direction::Out);
            ctx.consoles.run(&CommandRun {
                device,
                command: text("command"),
                output,
                sent: &sent,
                prompt: console.as_ref().and_then(|c| c.prompt.as_deref()),
                deaths: &deaths,
                cut_off: exempt,
                trimmed: false,
            })
        }
        ActionKind::ConsoleSend => console_send(device, spec, output, events, failure.is_some()),
        ActionKind::ConsoleLogin => {
            ctx.consoles.login(&LoginReplay { device, spec, output, events, console: console.as_ref(), deaths: &deaths, exempt })
        }
        ActionKind::SshExec => ssh_exec(device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::SshFetch => ssh_fetch(device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::SshLogin => ssh_login(device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::SshSu => super::console_replay::switch_user(device, spec, output, events, exempt),
        ActionKind::SshAudit => ssh_audit(device, output, events, failure.is_some() && !exempt),
        ActionKind::SshNegotiate => ssh_negotiate(device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::SshIdle => ssh_idle(device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::Power => power(ctx.rig, device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::TcpScan => tcp_scan(ctx.rig, device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::UdpScan => udp_scan(ctx.rig, device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::SnmpProbe => snmp_probe(ctx.rig, device, spec, output, events, failure.is_some()),
        ActionKind::HttpRequest => http_request(ctx.rig, device, spec, output, events, failure.is_some(), exempt),
        ActionKind::SyslogReceive => syslog_receive(device, spec, output, events, failure.is_some() && !exempt),
        ActionKind::TlsAudit => tls_audit(ctx.rig, device, spec, output, events, failure.is_some(), exempt),
        ActionKind::Wait if failure.is_none() && output != &json!({"waited_ms": spec["ms"].as_u64().unwrap_or(0)}) => {
            Err("the recorded wait is not the one the step asks for".into())
        }
        ActionKind::Set if failure.is_none() && output != spec => Err("the recorded values are not the ones the step sets".into()),
        ActionKind::Assert if failure.is_none() => match step.map(|s| &s.action) {
            Some(proofrig_plan::Action::Assert(assert)) if *output == assert.output(spec) => Ok(()),
            _ => Err("the recorded comparison (value, operator, operand) is not what the step's resolved spec says".into()),
        },
        ActionKind::Wait | ActionKind::Set | ActionKind::Assert => Ok(()),
        // A script step is checked call by call (a skipped one returned above), and
        // no call of a script is a script.
        ActionKind::Script => Err(format!("`{name}` is not an action proofrig performs")),
    }
}

/// Whether `event` is about `device`.
pub fn belongs_to(event: &Event, device: &str) -> bool {
    match &event.kind {
        EventKind::Power { device: d, .. } => d == device,
        kind => kind.channel().is_some_and(|c| c.device == device),
    }
}

/// The events of `device` in a range that the step itself caused (not the console's
/// own output, nor what may stand outside any step).
fn own_events<'e>(device: &'e str, events: &'e [&'e Event]) -> impl Iterator<Item = &'e &'e Event> + 'e {
    events.iter().filter(move |e| belongs_to(e, device) && !crate::notes::outside_allowed(e))
}

pub fn bytes_on(events: &[&Event], device: &str, channel: &str, direction: Direction) -> Vec<u8> {
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

fn notes<'e>(events: &'e [&'e Event], device: &'e str, channel: &'e str) -> impl Iterator<Item = &'e str> + 'e {
    events.iter().filter_map(move |e| match &e.kind {
        EventKind::Note { channel: c, text } if c.device == device && c.channel == channel => Some(text.as_str()),
        _ => None,
    })
}

fn console_send(device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    if failed {
        return Ok(());
    }
    let text = spec["text"].as_str().unwrap_or_default();
    if output["sent"].as_str() != Some(text) {
        return Err("the recorded text sent is not the step's text".into());
    }
    let mut expected = text.as_bytes().to_vec();
    if spec["newline"].as_bool().unwrap_or(true) {
        expected.push(b'\n');
    }
    if !sent_as_recorded(&expected, &bytes_on(events, device, "console", Direction::Out)) {
        return Err("the bytes sent to the console in the step's range are not the step's text".into());
    }
    Ok(())
}

/// Whether `recorded`, the console's outbound bytes of a step, can be the recording of
/// `sent`. The recorder holds back a tail that could begin a secret until later bytes
/// decide it (a plan may type a password in parts): then only a prefix of `sent` is
/// recorded in the step, and a later recording may show the secret's marker in place of
/// the held bytes and the first of its own. So: exactly `sent`; or, without a marker, a
/// prefix of it; or, around markers, a prefix of `sent`, pieces of it in order, and a
/// suffix of it.
fn sent_as_recorded(sent: &[u8], recorded: &[u8]) -> bool {
    let pieces = split_markers(recorded);
    match pieces.as_slice() {
        [] => true,
        [only] => sent.starts_with(only),
        [first, middle @ .., last] => {
            let mut rest = match sent.strip_prefix(first.as_slice()) {
                Some(rest) => rest,
                None => return false,
            };
            for piece in middle {
                match memchr::memmem::find(rest, piece) {
                    Some(at) => rest = &rest[at + piece.len()..],
                    None => return false,
                }
            }
            rest.ends_with(last)
        }
    }
}

/// `bytes` cut at each redaction marker (`«redacted:...»`), markers left out.
fn split_markers(bytes: &[u8]) -> Vec<Vec<u8>> {
    let (open, close) = ("«redacted:".as_bytes(), "»".as_bytes());
    let mut pieces = Vec::new();
    let mut rest = bytes;
    while let Some(at) = memchr::memmem::find(rest, open) {
        pieces.push(rest[..at].to_vec());
        let after = &rest[at + open.len()..];
        rest = memchr::memmem::find(after, close).map_or(&[][..], |end| &after[end + close.len()..]);
    }
    pieces.push(rest.to_vec());
    pieces
}

fn ssh_exec(device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let execs: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SshExec { channel, command } if channel.device == device => Some(command.as_str()),
            _ => None,
        })
        .collect();
    let exit = events.iter().find_map(|e| match &e.kind {
        EventKind::SshExit { channel, exit_status, signal, timed_out } if channel.device == device => {
            Some((*exit_status, signal.clone(), *timed_out))
        }
        _ => None,
    });
    if failed {
        if matches!(exit, Some((Some(_), _, false))) {
            return Err("the step is recorded as failed, but the command ran to its exit on the device".into());
        }
        return Ok(());
    }
    let command = spec["command"].as_str().unwrap_or_default();
    if execs != [command] {
        return Err("the command run on the device is not the step's command".into());
    }
    let Some((status, signal, false)) = exit else {
        return Err("the command's exit is not on record, or it was cut off".into());
    };
    let (stdout, stderr) = match in_session_shell(device, command, events)? {
        Some(ran) => {
            if Some(ran.exit_status) != status || signal.is_some() {
                return Err("the recorded exit differs from the status the device's shell printed".into());
            }
            (String::from_utf8_lossy(&ran.stdout).into_owned(), String::from_utf8_lossy(&ran.stderr).into_owned())
        }
        None => (
            String::from_utf8_lossy(&bytes_on(events, device, "ssh:exec:stdout", Direction::In)).into_owned(),
            String::from_utf8_lossy(&bytes_on(events, device, "ssh:exec:stderr", Direction::In)).into_owned(),
        ),
    };
    if Some(stdout.as_str()) != output["stdout"].as_str() || Some(stderr.as_str()) != output["stderr"].as_str() {
        return Err("the recorded stdout/stderr differ from the bytes on the wire".into());
    }
    if status.map(i64::from) != output["exit_status"].as_i64() {
        return Err("the recorded exit status differs from the one the server sent".into());
    }
    if signal.as_deref() != output["exit_signal"].as_str() {
        return Err("the recorded exit signal differs from the one the server sent".into());
    }
    Ok(())
}

/// A command run through the session's long-lived shell (`ssh.persistent_shell`):
/// its output and status as the shell's bytes after the command was sent show them
/// (see `proofrig_model::wire::ssh_shell`). None: the command had a channel of its own.
fn in_session_shell(device: &str, command: &str, events: &[&Event]) -> Result<Option<ssh_shell::CommandOutput>, String> {
    let sent: Vec<(u64, &[u8])> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Bytes { channel, direction: Direction::Out, data }
                if channel.device == device && channel.channel == ssh_shell::SHELL_IN =>
            {
                Some((e.seq, data.as_slice()))
            }
            _ => None,
        })
        .collect();
    let Some(&(wrapper_seq, wrapper)) = sent.last() else { return Ok(None) };
    let wrapper = std::str::from_utf8(wrapper).map_err(|_| "what was sent to the device's shell is not text".to_string())?;
    let tag = ssh_shell::tag_of(wrapper).ok_or("what was sent to the device's shell is not a command proofrig wraps")?;
    if wrapper != ssh_shell::wrap(command, tag) {
        return Err("the text sent to the device's shell is not the step's command".into());
    }
    // Before it, at most the request that started the shell.
    if sent.len() > 2 || sent.len() == 2 && !std::str::from_utf8(sent[0].1).is_ok_and(|first| first.starts_with("printf 'PRF_")) {
        return Err("more was sent to the device's shell than the step's command".into());
    }
    let after = |name: &str| -> Vec<u8> {
        events
            .iter()
            .filter(|e| e.seq > wrapper_seq)
            .filter_map(|e| match &e.kind {
                EventKind::Bytes { channel, direction: Direction::In, data } if channel.device == device && channel.channel == name => {
                    Some(data.as_slice())
                }
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    };
    let (stdout, stderr) = (after(ssh_shell::SHELL_STDOUT), after(ssh_shell::SHELL_STDERR));
    ssh_shell::command_output(&stdout, &stderr, tag).map(Some).ok_or_else(|| "the command's end marker is not on record".to_string())
}

fn ssh_fetch(device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let fetched = events.iter().find_map(|e| match &e.kind {
        EventKind::FileFetched { channel, path, len, sha256 } if channel.device == device => Some((path.as_str(), *len, sha256.as_str())),
        _ => None,
    });
    if failed {
        return match fetched {
            Some(_) => Err("the step is recorded as failed, but the file was fetched".into()),
            None => Ok(()),
        };
    }
    let Some((path, len, sha256)) = fetched else { return Err("no file was fetched in the step's range".into()) };
    if Some(path) != spec["path"].as_str() || output["path"] != spec["path"] {
        return Err("the file fetched is not the step's file".into());
    }
    if Some(sha256) != output["sha256"].as_str() || Some(len) != output["len"].as_u64() {
        return Err("the recorded file digest or length differs from the fetch event".into());
    }
    // Its text: the bytes recorded as fetched (files up to 64 KiB), as text when UTF-8.
    let bytes = bytes_on(events, device, "ssh:fetch", Direction::In);
    let text = (len <= crate::outputs::FETCH_TEXT_LIMIT as u64).then(|| std::str::from_utf8(&bytes).ok()).flatten();
    if len <= crate::outputs::FETCH_TEXT_LIMIT as u64 && bytes.is_empty() != (len == 0) {
        return Err("the fetched file's bytes are not on record".into());
    }
    // Their digest is the file's, unless a secret in them is recorded as its marker.
    let redacted = memchr::memmem::find(&bytes, "«redacted:".as_bytes()).is_some();
    if !bytes.is_empty()
        && !redacted
        && (bytes.len() as u64 != len || hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)) != sha256)
    {
        return Err("the fetched file's recorded bytes are not the file the fetch event describes".into());
    }
    if output["text"].as_str() != text {
        return Err("the recorded text of the file is not the file's bytes".into());
    }
    Ok(())
}

/// The SSH login attempts the server answered in a range: (user, accepted, source).
fn login_attempts<'e>(events: &[&'e Event], device: &str) -> Vec<(&'e str, bool, Option<&'e str>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SshAuth { channel, user, accepted, source, .. } if channel.device == device && channel.channel == "ssh:login" => {
                Some((user.as_str(), *accepted, source.as_deref()))
            }
            _ => None,
        })
        .collect()
}

fn ssh_login(device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let user = spec["user"].as_str().unwrap_or_default();
    let auth = login_attempts(events, device);
    if failed {
        return match auth.is_empty() {
            true => Ok(()),
            false => Err("the step is recorded as failed, but the server answered the login attempt".into()),
        };
    }
    if output.get("user").is_some_and(|u| u != user) {
        return Err("the recorded account is not the step's".into());
    }
    let offered: Option<Vec<String>> = notes(events, device, "ssh:login")
        .find_map(|n| n.strip_prefix(proofrig_model::wire::ssh::METHODS_OFFERED))
        .map(|m| m.split(',').filter(|m| !m.is_empty()).map(String::from).collect());
    if let Some(reason) = output["negotiation_refused"].as_str() {
        let noted = notes(events, device, "ssh:login").any(|n| {
            n.starts_with(&format!("login attempt as {user} (")) && n.ends_with(&format!("): algorithm negotiation refused: {reason}"))
        });
        if !noted || !auth.is_empty() || output["accepted"] != false {
            return Err("the login is recorded as refused at the algorithm negotiation, which the attempt's events do not show".into());
        }
        return Ok(());
    }
    let [(auth_user, accepted, source)] = auth.as_slice() else {
        return Err("the login attempt's authentication is not on record once in its range".into());
    };
    if *auth_user != user || Some(*accepted) != output["accepted"].as_bool() {
        return Err("the recorded login outcome differs from the authentication event".into());
    }
    if offered.as_ref().map(|o| json!(o)) != Some(output["methods_offered"].clone()) {
        return Err("the recorded methods offered differ from what the server offered".into());
    }
    // A later step may pick the device's log record of this attempt by its source;
    // that source must be the one the authentication event recorded.
    let claimed = match (output["source_address"].as_str(), output["source_port"].as_u64()) {
        (Some(address), Some(port)) => {
            Some(std::net::SocketAddr::new(address.parse().map_err(|_| "the recorded source address does not parse")?, port as u16))
        }
        (None, None) => None,
        _ => return Err("the recorded source of the login attempt is half missing".into()),
    };
    if claimed != source.and_then(|s| s.parse::<std::net::SocketAddr>().ok()) {
        return Err("the recorded source of the login attempt differs from the authentication event".into());
    }
    Ok(())
}

/// A `syslog_receive` step: its records are the datagrams (or TCP reads) recorded in
/// its range, its login the one authentication event there, and which records name
/// that login follows from both by the shared rule; the whole output must be what they
/// give.
fn syslog_receive(device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    use proofrig_model::wire::syslog as wire;
    let auth = login_attempts(events, device);
    if failed {
        return match auth.is_empty() {
            true => Ok(()),
            false => Err("the step is recorded as failed, but the server answered its login attempt".into()),
        };
    }
    let listen = wire::Listen::parse(spec["listen"].as_str().unwrap_or_default())?;
    let user = spec["refused_login"].as_str().unwrap_or_default();
    let [(auth_user, accepted, source)] = auth.as_slice() else {
        return Err("the step's login attempt is not on record once in its range".into());
    };
    if *auth_user != user {
        return Err("the login on record is not of the step's account".into());
    }
    let channel = wire::channel(listen.transport);
    let arrivals: Vec<(String, Vec<u8>)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Datagram { channel: c, direction: Direction::In, peer, data } if c.device == device && c.channel == channel => {
                Some((peer.clone(), data.clone()))
            }
            _ => None,
        })
        .collect();
    let arrivals = wire::joined(listen.transport, &arrivals);
    let records = wire::records(listen.transport, &arrivals);
    let source = source.and_then(|s| s.parse::<std::net::SocketAddr>().ok());
    if *output != wire::output(&listen, user, source, *accepted, &records) {
        return Err("the recorded login, records or matching records are not what the step's recorded login and log datagrams give".into());
    }
    Ok(())
}

/// An `ssh_idle` step: the shell's recorded bytes and end say it all. Nothing may have
/// been typed into it; `prompt_seen` is whether the device sent anything; `ended` is
/// whether the device ended the shell (recorded as lost) rather than the step closing it.
fn ssh_idle(device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    const SHELL: &str = "ssh:shell";
    if failed {
        return Ok(());
    }
    if !bytes_on(events, device, SHELL, Direction::Out).is_empty() {
        return Err("something was typed into the shell the step was to leave idle".into());
    }
    let on_shell = |e: &&&Event| e.kind.channel().is_some_and(|c| c.device == device && c.channel == SHELL);
    let prompt_seen = !bytes_on(events, device, SHELL, Direction::In).is_empty();
    let ended = events.iter().filter(on_shell).any(|e| matches!(e.kind, EventKind::ChannelLost { .. }));
    let expected = json!({"idle_ms": spec["idle_ms"], "prompt_seen": prompt_seen, "ended": ended && prompt_seen});
    if *output != expected {
        return Err("the recorded prompt or end of the idle shell is not what its recorded bytes and end show".into());
    }
    Ok(())
}

fn ssh_audit(device: &str, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let raw = bytes_on(events, device, "ssh:audit", Direction::In);
    let offer = proofrig_model::wire::ssh::parse_server_offer(&raw);
    if failed {
        return match offer {
            Ok(_) => Err("the step is recorded as failed, but the server's offer is on record".into()),
            Err(_) => Ok(()),
        };
    }
    let offer = offer.map_err(|e| format!("the recorded server bytes do not parse: {e}"))?;
    let derived = crate::outputs::audit_output(&offer);
    if &derived != output {
        let key = derived
            .as_object()
            .into_iter()
            .flatten()
            .find(|(k, v)| output.get(k.as_str()) != Some(v))
            .map_or("output".to_string(), |(k, _)| k.clone());
        return Err(format!("the recorded `{key}` differs from the server's KEXINIT bytes"));
    }
    Ok(())
}

fn ssh_negotiate(device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let note = notes(events, device, "ssh:negotiate").filter(|n| n.starts_with("negotiation ")).last();
    if failed {
        return match note {
            Some(_) => Err("the step is recorded as failed, but the negotiation's outcome is on record".into()),
            None => Ok(()),
        };
    }
    let claimed = format!(
        "negotiation {}: {}",
        if output["negotiated"].as_bool() == Some(true) { "accepted" } else { "refused" },
        output["detail"].as_str().unwrap_or_default()
    );
    if note != Some(claimed.as_str()) || output.as_object().map(|o| o.len()) != Some(2) {
        return Err("the recorded negotiation outcome differs from what the probe recorded on the wire".into());
    }
    // What was offered went over the wire: exactly the step's lists.
    let list = |key: &str| -> Option<Vec<String>> {
        let items: Vec<String> = spec[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
        (!items.is_empty()).then_some(items)
    };
    let offer = proofrig_model::wire::ssh::ClientOffer {
        kex: list("kex"),
        host_key: list("host_key"),
        ciphers: list("ciphers"),
        macs: list("macs"),
    };
    if !bytes_on(events, device, "ssh:negotiate", Direction::Out).ends_with(&proofrig_model::wire::ssh::client_kexinit(&offer)) {
        return Err("the algorithms offered on the wire are not the step's".into());
    }
    Ok(())
}

fn power(rig: &Rig, device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let switched: Vec<(&str, &str, &str, PowerState, PowerState, bool)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Power { device: d, pdu, outlet, action, requested, readback, ok, .. } if d == device => {
                Some((pdu.as_str(), outlet.as_str(), action.as_str(), *requested, *readback, *ok))
            }
            _ => None,
        })
        .collect();
    let actions: Vec<&str> = switched.iter().map(|s| s.2).collect();
    let wanted: &[&[&str]] = match spec["action"].as_str() {
        Some("on") => &[&["on"]],
        Some("off") => &[&["off"]],
        Some("cycle") => &[&["cycle"], &["cycle-off", "cycle-on"]],
        _ => &[],
    };
    let outlet = rig.device(device).ok().and_then(|d| d.power.clone());
    let confirmed = wanted.contains(&actions.as_slice())
        && switched.iter().all(|(pdu, out, action, requested, readback, ok)| {
            let requested_ok = *requested == if action.ends_with("off") { PowerState::Off } else { PowerState::On };
            *ok && requested_ok
                && (*readback == *requested || *readback == PowerState::Unknown)
                && outlet.as_ref().is_some_and(|o| o.pdu == *pdu && o.outlet.to_string() == *out)
        });
    if failed {
        return match confirmed {
            true => Err("the step is recorded as failed, but the outlet confirmed the switch".into()),
            false => Ok(()),
        };
    }
    if !confirmed {
        return Err("the power switches in the step's range are not the step's action on the device's outlet, each confirmed".into());
    }
    if Some(switched.last().map(|s| s.4.to_string()).unwrap_or_default().as_str()) != output["state"].as_str()
        || output.as_object().map(|o| o.len()) != Some(1)
    {
        return Err("the recorded power state differs from the outlet's read-back event".into());
    }
    Ok(())
}

/// Where a network step went: its `address:`, or the device's SSH host.
fn network_target(rig: &Rig, device: &str, spec: &Value) -> Option<String> {
    match spec.get("address").and_then(Value::as_str) {
        Some(address) => Some(address.to_string()),
        None => rig.device(device).ok()?.ssh.as_ref().map(|s| s.host.clone()),
    }
}

/// `address` (as recorded) is the network target, and the IP address `ip` the events
/// went to is where it leads (checked when the target is written as an address).
fn same_target(target: Option<&str>, recorded: &Value, ip: &str) -> bool {
    let Some(target) = target else { return false };
    let resolved = match target.parse::<std::net::IpAddr>() {
        Ok(parsed) => ip.parse::<std::net::IpAddr>().ok() == Some(parsed),
        Err(_) => true,
    };
    recorded.as_str() == Some(target) && resolved
}

fn tcp_scan(rig: &Rig, device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let recorded: Vec<proofrig_model::wire::tcp::Recorded> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TcpConnect { channel, address, attempt, outcome, ports, local }
                if channel.device == device && channel.channel == proofrig_model::wire::tcp::CHANNEL =>
            {
                Some(proofrig_model::wire::tcp::Recorded { address, attempt: *attempt, outcome, ports, local: local.as_deref() })
            }
            _ => None,
        })
        .collect();
    let ports = proofrig_plan::parse_ports(spec["ports"].as_str().unwrap_or_default());
    let ip = recorded.first().map(|r| r.address).unwrap_or_default();
    let derived = ports.as_ref().ok().map(|ports| proofrig_model::wire::tcp::open_ports_connected(ip, ports, recorded.iter().copied()));
    if failed {
        return match derived {
            Some(Ok(_)) => Err("the step is recorded as failed, but every port's connection attempts are on record".into()),
            _ => Ok(()),
        };
    }
    let ports = ports.map_err(|e| format!("the step's ports do not parse: {e}"))?;
    let open =
        derived.expect("the ports parse").map_err(|e| format!("the scan's recorded connections are no scan of the step's ports: {e}"))?;
    if !same_target(network_target(rig, device, spec).as_deref(), &output["address"], ip) {
        return Err("the recorded address is not the one the step scans".into());
    }
    if *output != json!({"address": output["address"], "scanned": ports.len(), "open": open}) {
        return Err("the recorded open ports differ from the connections the scan made".into());
    }
    Ok(())
}

fn udp_scan(rig: &Rig, device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let note = notes(events, device, proofrig_model::wire::udp::CHANNEL).last();
    if failed {
        return match note {
            Some(_) => Err("the step is recorded as failed, but the scan's summary is on record".into()),
            None => Ok(()),
        };
    }
    let ports = proofrig_plan::parse_ports(spec["ports"].as_str().unwrap_or_default())
        .map_err(|e| format!("the step's ports do not parse: {e}"))?;
    let datagrams: Vec<(Direction, &str, &[u8])> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Datagram { channel, direction, peer, data }
                if channel.device == device && channel.channel == proofrig_model::wire::udp::CHANNEL =>
            {
                Some((*direction, peer.as_str(), data.as_slice()))
            }
            _ => None,
        })
        .collect();
    // The open ports follow from the answers recorded, each after the probe it answers.
    let open = proofrig_model::wire::udp::open_ports_answered(datagrams.iter().map(|(d, p, _)| (*d, *p)));
    if output["open"] != json!(open) {
        return Err("the recorded open UDP ports differ from the answers on the wire".into());
    }
    let address: std::net::IpAddr =
        output["address"].as_str().and_then(|a| a.parse().ok()).ok_or("the recorded scan address does not parse")?;
    for pair in datagrams.chunks(2) {
        let [(Direction::Out, out_peer, probe), (Direction::In, in_peer, _)] = pair else {
            return Err("the scan's datagrams are not probes each followed by its answer".into());
        };
        let port = out_peer.parse::<std::net::SocketAddr>().ok().filter(|p| p.ip() == address && out_peer == in_peer).map(|p| p.port());
        if port.is_none_or(|port| *probe != proofrig_model::wire::udp::probe_payload(port).as_slice() || !ports.contains(&port)) {
            return Err("an answered probe went elsewhere than the scan's address and ports".into());
        }
    }
    let target = network_target(rig, device, spec);
    if !same_target(target.as_deref(), &json!(target.as_deref()), &address.to_string()) {
        return Err("the recorded address is not the one the step scans".into());
    }
    // The closed and silent ports from the scan's note (an absence leaves no datagram):
    // together with the open ones, every port scanned, once.
    let silent: Vec<u16> = serde_json::from_value(output["open_filtered"].clone()).map_err(|_| "the recorded silent ports do not parse")?;
    let closed = output["closed"].as_u64().unwrap_or(0) as usize;
    let outcome = proofrig_model::wire::udp::UdpScanOutcome { address, open: open.clone(), open_filtered: silent.clone(), closed };
    let accounted = open.len() + silent.len() + closed == ports.len() && silent.iter().all(|p| ports.contains(p) && !open.contains(p));
    if !accounted || *output != crate::outputs::udp_scan_output(&outcome, ports.len()) {
        return Err("the recorded ports do not account for every port scanned exactly once".into());
    }
    if note != Some(outcome.summary(ports.len()).as_str()) {
        return Err("the recorded closed and silent UDP ports differ from what the scan noted".into());
    }
    Ok(())
}

fn snmp_probe(rig: &Rig, device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool) -> Result<(), String> {
    let channel = proofrig_model::wire::snmp::CHANNEL;
    let datagrams = |wanted: Direction| {
        events.iter().filter_map(move |e| match &e.kind {
            EventKind::Datagram { channel: c, direction, data, peer }
                if *direction == wanted && c.device == device && c.channel == channel =>
            {
                Some((peer.as_str(), data.as_slice()))
            }
            _ => None,
        })
    };
    if failed {
        return Ok(());
    }
    let probes: Vec<proofrig_model::wire::snmp::ProbeResult> =
        serde_json::from_value(output["probes"].clone()).map_err(|e| format!("the recorded SNMP probes do not parse: {e}"))?;
    // The requests are the step's: each version with each community, in that order.
    let communities = proofrig_plan::parse_communities(spec["communities"].as_str().unwrap_or_default())
        .map_err(|e| format!("the step's communities do not parse: {e}"))?;
    let versions: Vec<proofrig_model::wire::snmp::SnmpVersion> = match spec.get("versions") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| format!("the step's versions do not parse: {e}"))?,
        _ => vec![proofrig_model::wire::snmp::SnmpVersion::V1, proofrig_model::wire::snmp::SnmpVersion::V2c],
    };
    let asked: Vec<(proofrig_model::wire::snmp::SnmpVersion, &str)> =
        versions.iter().flat_map(|v| communities.iter().map(move |c| (*v, c.as_str()))).collect();
    if asked != probes.iter().map(|p| (p.version, p.community.as_str())).collect::<Vec<_>>() {
        return Err("the recorded SNMP requests are not the step's versions and communities".into());
    }
    let peer = format!("{}:{}", output["address"].as_str().unwrap_or_default(), output["port"]);
    let peer = peer
        .parse::<std::net::SocketAddr>()
        .or_else(|_| format!("[{}]:{}", output["address"].as_str().unwrap_or_default(), output["port"]).parse())
        .map_err(|_| "the recorded SNMP agent address does not parse")?;
    if output["port"].as_u64() != Some(spec["port"].as_u64().unwrap_or(161))
        || datagrams(Direction::Out).chain(datagrams(Direction::In)).any(|(p, _)| p.parse::<std::net::SocketAddr>().ok() != Some(peer))
        || !same_target(network_target(rig, device, spec).as_deref(), &json!(network_target(rig, device, spec)), &peer.ip().to_string())
    {
        return Err("the SNMP datagrams went elsewhere than the step's agent".into());
    }
    let sent: Vec<_> = datagrams(Direction::Out).filter_map(|(_, d)| proofrig_model::wire::snmp::parse_message(d)).collect();
    let requests: Vec<_> = probes.iter().map(|p| (p.version, p.community.clone(), p.request_id)).collect();
    let every_request_sent = requests.len() == sent.len()
        && requests.iter().zip(&sent).all(|((version, community, id), s)| {
            s.version == version.wire() && s.community == community.as_bytes() && s.request_id == i64::from(*id)
        });
    if !every_request_sent {
        return Err("the recorded SNMP requests differ from the datagrams sent".into());
    }
    let answered = proofrig_model::wire::snmp::answered_probes(&requests, datagrams(Direction::In).map(|(_, d)| d));
    if answered != probes.iter().map(|p| p.answered).collect::<Vec<_>>() {
        return Err("which SNMP requests were answered differs from the datagrams received".into());
    }
    let claimed = proofrig_model::wire::snmp::answered_labels(&probes);
    if output["answered"] != json!(claimed) {
        return Err("the recorded `answered` list differs from the probes answered".into());
    }
    let unreachable_noted = notes(events, device, channel).any(|text| text.contains(": port unreachable"));
    if output["port_unreachable"].as_bool() != Some(unreachable_noted) {
        return Err("the recorded `port_unreachable` differs from what the probe noted on the wire".into());
    }
    if output.as_object().map(|o| o.len()) != Some(5) {
        return Err("the recorded SNMP probe has fields no probe records".into());
    }
    Ok(())
}

/// An `http_request` step: the request bytes are the step's, sent where the step says,
/// and its output is what the response bytes received say ([`proofrig_model::wire::http`]).
/// A failed request must not have received a response that parses.
fn http_request(
    rig: &Rig,
    device: &str,
    spec: &Value,
    output: &Value,
    events: &[&Event],
    failed: bool,
    exempt: bool,
) -> Result<(), String> {
    use proofrig_model::wire::http as wire;
    let sent = bytes_on(events, device, wire::CHANNEL, Direction::Out);
    let received = bytes_on(events, device, wire::CHANNEL, Direction::In);
    let method = wire::spec_method(spec);
    let head = method == "HEAD";
    if failed {
        return match wire::parse_response(&received, head) {
            Ok(response) if !exempt => {
                Err(format!("the request is recorded as failed, yet the bytes received are a whole HTTP response ({})", response.status))
            }
            _ => Ok(()),
        };
    }
    let port = wire::spec_port(spec).map_err(|e| format!("the step's {e}"))?;
    let target = network_target(rig, device, spec);
    let opened: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ChannelOpened { channel, detail } if channel.device == device && channel.channel == wire::CHANNEL => {
                detail.strip_prefix("HTTP to ")
            }
            _ => None,
        })
        .collect();
    let peer = match opened.as_slice() {
        [one] => one.parse::<std::net::SocketAddr>().map_err(|_| "the recorded HTTP connection names no address")?,
        _ => return Err(format!("the step made {} HTTP connections; a request makes one", opened.len())),
    };
    let address = output["address"].as_str().unwrap_or_default();
    if peer.port() != port || !same_target(target.as_deref(), &output["address"], &peer.ip().to_string()) {
        return Err("the HTTP request went elsewhere than the step's web server".into());
    }
    let headers = wire::spec_headers(spec);
    let host = wire::host_header(address, port);
    let path = spec["path"].as_str().unwrap_or_default();
    if sent != wire::request(&wire::Request { method, path, host: &host, headers: &headers }) {
        return Err("the bytes sent are not the step's HTTP request".into());
    }
    let response = wire::parse_response(&received, head).map_err(|e| format!("the bytes received are no HTTP response: {e}"))?;
    if *output != wire::output(address, port, method, path, &response) {
        return Err(format!(
            "the recorded HTTP response (status {}) is not what the bytes received say (status {})",
            output["status"], response.status
        ));
    }
    Ok(())
}

/// One connection of a `tls_audit` step as recorded: where it went, the hello sent, the answer.
struct TlsConnection {
    peer: String,
    opened_ns: u64,
    sent: Vec<u8>,
    received: Vec<u8>,
}

fn tls_connections(events: &[&Event], device: &str) -> Vec<TlsConnection> {
    use proofrig_model::wire::tls::CHANNEL;
    let mut out: Vec<TlsConnection> = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::ChannelOpened { channel, detail } if channel.device == device && channel.channel == CHANNEL => {
                let peer = detail.strip_prefix("TLS to ").unwrap_or_default().to_string();
                out.push(TlsConnection { peer, opened_ns: event.at.wall_ns, sent: Vec::new(), received: Vec::new() });
            }
            EventKind::Bytes { channel, direction, data } if channel.device == device && channel.channel == CHANNEL => {
                if let Some(last) = out.last_mut() {
                    match direction {
                        Direction::Out => last.sent.extend_from_slice(data),
                        Direction::In => last.received.extend_from_slice(data),
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A `tls_audit` step, replayed: every connection went to the step's server, each
/// hello is the one the audit sends after the answers before it
/// ([`proofrig_model::wire::tls::Audit`]), the audit ran to its end, the time the
/// certificate was judged at is the step's, and the output is what the answers say.
/// A failed audit must not have recorded answers that complete it (unless the operator's
/// stop or a deadline cut it, which may overlap a complete audit).
fn tls_audit(rig: &Rig, device: &str, spec: &Value, output: &Value, events: &[&Event], failed: bool, exempt: bool) -> Result<(), String> {
    use proofrig_model::wire::tls as wire;
    let connections = tls_connections(events, device);
    let server_name = wire::spec_server_name(spec);
    let mut audit = wire::Audit::new();
    for (i, connection) in connections.iter().enumerate() {
        let Some(offer) = audit.next() else {
            return Err(format!("the step made {} TLS connections; the audit ends after {i}", connections.len()));
        };
        if connection.sent != wire::client_hello(&offer, server_name) {
            return Err(format!(
                "the bytes sent on TLS connection {} are not the audit's {} hello",
                i + 1,
                wire::version_name(offer.version)
            ));
        }
        audit.record(offer, wire::parse_answer(&connection.received));
    }
    let complete = audit.next().is_none() && audit.not_tls().is_none() && !connections.is_empty();
    if failed {
        return match complete && !exempt {
            true => Err("the audit is recorded as failed, yet its recorded answers complete it".into()),
            false => Ok(()),
        };
    }
    if !complete {
        return Err(format!("the recorded TLS answers do not complete the audit ({} connections)", connections.len()));
    }
    let port = wire::spec_port(spec).map_err(|e| format!("the step's {e}"))?;
    let target = network_target(rig, device, spec);
    for connection in &connections {
        let peer = connection.peer.parse::<std::net::SocketAddr>().map_err(|_| "a recorded TLS connection names no address")?;
        if peer.port() != port || !same_target(target.as_deref(), &output["address"], &peer.ip().to_string()) {
            return Err("a TLS connection went elsewhere than the step's server".into());
        }
    }
    // The agent reads the clock just before its first connection.
    let checked_at = output["checked_at"].as_i64().ok_or("the audit records no time its certificate was judged at")?;
    let opened = (connections[0].opened_ns / 1_000_000_000) as i64;
    if !(opened - 10..=opened).contains(&checked_at) {
        return Err(format!("the audit's recorded time ({checked_at}) is not when its first connection was made ({opened})"));
    }
    let address = output["address"].as_str().unwrap_or_default();
    let derived = audit.output(&wire::OutputContext { address, port, server_name, checked_at });
    if *output != derived {
        return Err(format!(
            "the recorded TLS audit (versions {}, suites {}) is not what the answers received say (versions {}, suites {})",
            output["accepted_versions"], output["accepted_suites"], derived["accepted_versions"], derived["accepted_suites"]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::events::{ChannelId, Timestamp};

    /// The events of `command` run through the session's shell with `tag`, printing
    /// `stdout` (then its marker with `status`) and `stderr`.
    fn shell_run(command: &str, tag: &str, stdout: &str, stderr: &str, status: i32) -> Vec<Event> {
        let at = Timestamp { wall_ns: 0, mono_ns: 0 };
        let channel = |name: &str| ChannelId::new("ru1", name);
        let kinds = vec![
            EventKind::SshExec { channel: channel("ssh:exec"), command: command.into() },
            EventKind::Bytes {
                channel: channel(ssh_shell::SHELL_IN),
                direction: Direction::Out,
                data: ssh_shell::wrap(command, tag).into(),
            },
            EventKind::Bytes {
                channel: channel(ssh_shell::SHELL_STDOUT),
                direction: Direction::In,
                data: format!("{stdout}PRF_{tag}_OUT:{status}\n").into(),
            },
            EventKind::Bytes {
                channel: channel(ssh_shell::SHELL_STDERR),
                direction: Direction::In,
                data: format!("{stderr}PRF_{tag}_ERR\n").into(),
            },
            EventKind::SshExit { channel: channel("ssh:exec"), exit_status: Some(status), signal: None, timed_out: false },
        ];
        kinds.into_iter().enumerate().map(|(seq, kind)| Event { seq: seq as u64 + 10, at, kind }).collect()
    }

    fn rederived(events: &[Event], command: &str, stdout: &str, stderr: &str, status: i32) -> Result<(), String> {
        let refs: Vec<&Event> = events.iter().collect();
        let output = json!({"stdout": stdout, "stderr": stderr, "exit_status": status, "exit_signal": null});
        ssh_exec("ru1", &json!({"command": command}), &output, &refs, false)
    }

    #[test]
    fn a_command_through_the_session_s_shell_is_derived_from_its_bytes_and_markers() {
        let events = shell_run("id -u", "0a1b", "1000\n", "", 0);
        assert_eq!(rederived(&events, "id -u", "1000\n", "", 0), Ok(()));
        // What the step says must be what the bytes before the markers say.
        assert!(rederived(&events, "id -u", "0\n", "", 0).is_err(), "a forged output");
        assert!(rederived(&events, "id -u", "1000\n", "", 1).is_err(), "a forged status");
        assert!(rederived(&events, "id -g", "1000\n", "", 0).is_err(), "another command");
        // The status the shell printed and the exit on record must agree.
        let mut forged = events.clone();
        forged[4].kind =
            EventKind::SshExit { channel: ChannelId::new("ru1", "ssh:exec"), exit_status: Some(1), signal: None, timed_out: false };
        assert!(rederived(&forged, "id -u", "1000\n", "", 1).is_err());
        // The command sent to the shell must be the step's, wrapped as proofrig wraps it.
        let mut forged = events.clone();
        forged[1].kind = EventKind::Bytes {
            channel: ChannelId::new("ru1", ssh_shell::SHELL_IN),
            direction: Direction::Out,
            data: ssh_shell::wrap("id -u; rm -rf /tmp/x", "0a1b").into(),
        };
        assert!(rederived(&forged, "id -u", "1000\n", "", 0).is_err());
        // A marker missing (the command's end not on record) is no answer.
        let mut cut = events.clone();
        cut.remove(3);
        assert!(rederived(&cut, "id -u", "1000\n", "", 0).is_err());
    }
}
