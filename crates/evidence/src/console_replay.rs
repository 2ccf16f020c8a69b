//! A device's console as the expect engine read it, rebuilt from the journal, so that
//! a console step's output is re-derived from the recorded bytes instead of merely
//! being found somewhere in them.
//!
//! The engine (`proofrig_model::expect`) keeps the text a console printed since its
//! last match, matches patterns against it as text arrives, and a wait consumes the
//! text through its match. Replay keeps the same, per device: the text view of the
//! console (the same ANSI filter over the recorded bytes), where the next wait starts
//! (the *cursor*), and where recorded chunks ended. A console wait then replays
//! exactly: the recorded match must be the earliest hit (of the step's patterns and the
//! rig's death strings) in the text from the cursor up to a point where a read could
//! have ended, the text before it must be the recorded `before`, and a timeout must
//! leave no hit at all. Where the engine's reads ended is not recorded (a read may take
//! several recorded chunks at once), so the points tried are the match's own end and
//! the recorded chunk ends after it.
//!
//! The cursor moves as the engine's does: to the end of each match; to the end of the
//! text when the console is opened (a new engine), and where the executor forgot the
//! unread output before a power switch (its note); after a timeout, to at most one
//! window's length before the end (the engine keeps no more). What lies beyond the
//! cursor is kept up to [`MAX_UNREAD`]; a console that prints more than that with no
//! wait reading it has its oldest text dropped, as the engine's own feed would.

use std::collections::BTreeMap;

use regex::bytes::Regex;
use serde_json::Value;

use proofrig_model::ansi::AnsiFilter;
use proofrig_model::events::{Direction, Event, EventKind};
use proofrig_model::prompts::{DEFAULT_PROMPT, DEFAULT_WINDOW};

use crate::notes::{EXECUTOR_CHANNEL, NOTE_CONSOLE_CLEARED};

/// Unread console text kept per device (the engine's feed holds 1 MiB of unread bytes).
pub const MAX_UNREAD: usize = 4 << 20;
/// Text kept before the cursor, for a timeout's `tail` (the engine keeps 1 KiB).
const KEPT_BEFORE: usize = 4096;
/// How much of the text before a match a `console_expect` records.
pub const BEFORE_CHARS: usize = 2000;
/// Occurrences of a recorded match tried, and chunk ends tried after each.
const OCCURRENCES_TRIED: usize = 64;
const ENDS_TRIED: usize = 16;

/// Every device's console, as the journal shows it so far.
#[derive(Default)]
pub struct Consoles {
    devices: BTreeMap<String, Console>,
}

#[derive(Default)]
struct Console {
    /// Text view of the console; `text[0]` is at offset `base` of the whole text.
    text: Vec<u8>,
    base: usize,
    /// Where the next wait starts, as an offset of the whole text.
    cursor: usize,
    /// Offsets where recorded chunks ended, after the cursor, with the chunk's event.
    ends: std::collections::VecDeque<(usize, u64)>,
    filter: AnsiFilter,
}

/// What a wait found: one of its patterns, or one of the rig's death strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Pattern { index: usize, start: usize, end: usize },
    Death { index: usize, start: usize, end: usize },
}

impl Hit {
    fn span(self) -> (usize, usize) {
        match self {
            Hit::Pattern { start, end, .. } | Hit::Death { start, end, .. } => (start, end),
        }
    }

    /// The span of a hit of pattern `wanted`.
    fn of(self, wanted: usize) -> Option<(usize, usize)> {
        match self {
            Hit::Pattern { index, start, end } if index == wanted => Some((start, end)),
            _ => None,
        }
    }

    /// The same hit in text that starts `by` bytes earlier.
    fn shifted(self, by: usize) -> Hit {
        match self {
            Hit::Pattern { index, start, end } => Hit::Pattern { index, start: start + by, end: end + by },
            Hit::Death { index, start, end } => Hit::Death { index, start: start + by, end: end + by },
        }
    }
}

/// The patterns a wait looks for and the rig's death strings, compiled.
pub struct Wait {
    pub patterns: Vec<Regex>,
    pub deaths: Vec<Regex>,
}

impl Wait {
    pub fn new(patterns: &[String], deaths: &[String]) -> Result<Wait, String> {
        let compile = |p: &String| Regex::new(p).map_err(|e| format!("`{p}` is not a valid pattern: {e}"));
        Ok(Wait {
            patterns: patterns.iter().map(compile).collect::<Result<_, _>>()?,
            deaths: deaths.iter().map(compile).collect::<Result<_, _>>()?,
        })
    }

    /// The hit the engine reports in `window`: the one starting earliest; on a tie a
    /// pattern before a death string, and the first pattern listed.
    pub fn earliest(&self, window: &[u8]) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        let mut best_start = usize::MAX;
        for (index, pattern) in self.patterns.iter().enumerate() {
            if let Some(m) = pattern.find(window) {
                if m.start() < best_start {
                    best_start = m.start();
                    best = Some(Hit::Pattern { index, start: m.start(), end: m.end() });
                }
            }
        }
        for (index, pattern) in self.deaths.iter().enumerate() {
            if let Some(m) = pattern.find(window) {
                if m.start() < best_start {
                    best_start = m.start();
                    best = Some(Hit::Death { index, start: m.start(), end: m.end() });
                }
            }
        }
        best
    }
}

/// A `console_run` of `command` on `device`, to replay against the console's bytes.
#[derive(Clone, Copy)]
pub struct CommandRun<'a> {
    pub device: &'a str,
    pub command: &'a str,
    /// The step's recorded output.
    pub output: &'a Value,
    /// The console's outbound bytes during the step.
    pub sent: &'a [u8],
    /// The rig's shell prompt, if it declares one.
    pub prompt: Option<&'a str>,
    pub deaths: &'a [String],
    /// The step's time limit cut it off.
    pub cut_off: bool,
    /// Only the output, trimmed, is recorded (an identity read).
    pub trimmed: bool,
}

/// A `console_login` on `device`, to replay against the console's bytes.
#[derive(Clone, Copy)]
pub struct LoginReplay<'a> {
    pub device: &'a str,
    pub spec: &'a Value,
    pub output: &'a Value,
    /// The step's events (the lines sent are read from them).
    pub events: &'a [&'a Event],
    pub console: Option<&'a proofrig_model::rig::Console>,
    pub deaths: &'a [String],
    /// The step's time limit cut it off.
    pub exempt: bool,
}

impl Consoles {
    /// Take in the next event of the journal (in sequence order).
    pub fn feed(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Bytes { channel, direction: Direction::In, data } if channel.channel == "console" => {
                self.console(&channel.device).push(data, event.seq);
            }
            EventKind::ChannelOpened { channel, .. } if channel.channel == "console" => {
                let console = self.console(&channel.device);
                console.filter = AnsiFilter::new();
                console.skip_to_end();
            }
            EventKind::Note { channel, text } if channel.channel == EXECUTOR_CHANNEL && text == NOTE_CONSOLE_CLEARED => {
                self.console(&channel.device).skip_to_end();
            }
            _ => {}
        }
    }

    fn console(&mut self, device: &str) -> &mut Console {
        if !self.devices.contains_key(device) {
            self.devices.insert(device.to_string(), Console::default());
        }
        self.devices.get_mut(device).expect("inserted above")
    }

    /// Replay a `console_expect` of `device` (see the module doc); on success the
    /// cursor is where the engine's was after it.
    pub fn expect(&mut self, device: &str, spec: &Value, output: &Value, deaths: &[String], cut_off: bool) -> Result<(), String> {
        let patterns: Vec<String> =
            spec["patterns"].as_array().into_iter().flatten().map(|p| p.as_str().unwrap_or_default().to_string()).collect();
        let console = self.console(device);
        let wait = match Wait::new(&patterns, deaths) {
            Ok(wait) => wait,
            // The engine could not wait either.
            Err(_) if output["error"]["class"] == "error" => return Ok(()),
            Err(why) => return Err(why),
        };
        if let Some(error) = output.get("error") {
            return console.failed_wait(&wait, error, cut_off);
        }
        if output["matched"].as_bool() == Some(true) {
            let index = output["index"].as_u64().ok_or("the recorded match has no pattern index")? as usize;
            if output["pattern"].as_str() != patterns.get(index).map(String::as_str) {
                return Err(format!("the recorded pattern is not pattern {} of the step", index + 1));
            }
            let matched = output["matched_text"].as_str().unwrap_or_default().as_bytes();
            let unread = console.unread();
            let hits = place(
                unread,
                &console.ends_after_cursor(),
                &wait,
                matched,
                |hit| matches!(hit, Hit::Pattern { index: i, .. } if i == index),
            );
            if hits.is_empty() {
                return Err(format!(
                    "the console did not show `{}` as the first thing pattern {} or another of the step's patterns matched since the last wait",
                    String::from_utf8_lossy(matched),
                    index + 1
                ));
            }
            // Where a read ended decides which of several places a prompt (`$`) matched
            // at; the text before the match tells which it was.
            let recorded_before = output["before"].as_str();
            let hit = hits
                .into_iter()
                .find(|hit| recorded_before == Some(tail_chars(&String::from_utf8_lossy(&unread[..hit.span().0]), BEFORE_CHARS).as_str()));
            let Some(hit) = hit else {
                return Err("the recorded text before the match is not what the console showed before it".into());
            };
            console.consume(hit.span().1);
            return Ok(());
        }
        // A timeout: nothing the wait looked for may have shown.
        if let Some(hit) = wait.earliest(console.unread()) {
            let (start, end) = hit.span();
            return Err(format!(
                "the wait is recorded as timed out, but the console showed `{}`, which it was waiting for",
                String::from_utf8_lossy(&console.unread()[start..end])
            ));
        }
        let tail = output["tail"].as_str().unwrap_or_default();
        if !console.recently_showed(tail) {
            return Err("the recorded last output of the wait is not what the console showed last".into());
        }
        // The engine keeps one window of unread text.
        console.keep_one_window();
        Ok(())
    }

    /// Replay a device's identity read over its console: a command like a
    /// `console_run`'s, whose answer is its output, trimmed (`output["output"]`).
    pub fn identity(
        &mut self,
        device: &str,
        command: &str,
        output: &Value,
        sent: &[u8],
        prompt: Option<&str>,
        deaths: &[String],
    ) -> Result<(), String> {
        self.run(&CommandRun { device, command, output, sent, prompt, deaths, cut_off: false, trimmed: true })
    }

    /// Replay a `console_run` (see [`CommandRun`]).
    pub fn run(&mut self, step: &CommandRun<'_>) -> Result<(), String> {
        let CommandRun { device, command, output, sent, prompt, deaths, cut_off, trimmed } = *step;
        let console = self.console(device);
        let sent = String::from_utf8_lossy(sent);
        let typed = format!("{command}; echo PRF_");
        let tag = sent.find(&typed).map(|at| &sent[at + typed.len()..]).and_then(|rest| {
            let tag = rest.get(..12)?;
            (tag.bytes().all(|b| b.is_ascii_hexdigit()) && rest[12..].starts_with("''_E:$?\n")).then_some(tag)
        });
        let Some(tag) = tag else {
            // Nothing was typed: only a failure before the command went out agrees.
            return if output.get("error").is_some() {
                Ok(())
            } else {
                Err("the command line the step's output claims was never sent to the console".into())
            };
        };
        let done = Wait::new(&[format!(r"PRF_{tag}_E:(-?\d+)\r?\n")], deaths)?;
        let prompt = Wait::new(&[prompt.unwrap_or(DEFAULT_PROMPT).to_string()], deaths)?;
        let unread = console.unread();
        let ends = console.ends_after_cursor();
        let marker = first_hit(unread, &ends, &done);
        let after = match marker {
            Some(Hit::Pattern { end, .. }) => first_hit(&unread[end..], &relative(&ends, end), &prompt).map(|hit| (end, hit)),
            _ => None,
        };
        if let Some(error) = output.get("error") {
            let died = matches!(marker, Some(Hit::Death { .. })) || matches!(after, Some((_, Hit::Death { .. })));
            match error["class"].as_str() {
                Some("fail") if !died => return Err("the step is recorded as a death string seen, but the console showed none".into()),
                Some("infra" | "error") if !cut_off && matches!(after, Some((_, Hit::Pattern { .. }))) => {
                    return Err(
                        "the step is recorded as failed, but the console shows the command ran to its end and the prompt came back".into(),
                    );
                }
                _ => {}
            }
            match (marker, after) {
                (_, Some((offset, hit))) => console.consume(offset + hit.span().1),
                (Some(hit), None) => console.consume(hit.span().1),
                (None, None) => {}
            }
            return Ok(());
        }
        let Some(Hit::Pattern { start, end, .. }) = marker else {
            return Err("the console never showed the command's end marker".into());
        };
        let status_text = String::from_utf8_lossy(&unread[start..end]);
        let status: Option<i64> = status_text.trim_end().rsplit(':').next().and_then(|s| s.parse().ok());
        if !trimmed && status != output["exit_status"].as_i64() {
            return Err(format!(
                "the recorded exit status differs from the one the console printed ({})",
                status.map_or("none".into(), |s| s.to_string())
            ));
        }
        let printed = command_output(&String::from_utf8_lossy(&unread[..start]), tag);
        if output["output"].as_str() != Some(if trimmed { printed.trim() } else { printed.as_str() }) {
            return Err("the recorded command output is not what the console printed before the command's end marker".into());
        }
        match after {
            Some((offset, Hit::Pattern { end, .. })) => console.consume(offset + end),
            _ => return Err("the console never showed the prompt after the command, which the step waits for".into()),
        }
        Ok(())
    }
}

impl Consoles {
    /// Replay a `console_login` on `device` (the engine's `Expect::login`): every line
    /// it sent answers a hit before it (the user name a login prompt, the password a
    /// password prompt, `exit` a shell left open): after the user name, the next hit;
    /// before it, the latest the console had shown by the end of a read (older hits
    /// are passed over, as the engine does), and the outcome is the hit after the
    /// last line (a shell prompt: accepted; the failure text, or a prompt asked again
    /// after the password: refused; a shell prompt again after `MAX_LOGOUTS` exits and
    /// no user name sent: a console that cannot be logged out, for a step that asks
    /// with `still_logged_in: fail`).
    pub fn login(&mut self, step: &LoginReplay<'_>) -> Result<(), String> {
        let LoginReplay { device, spec, output, events, console, deaths, exempt } = *step;
        use proofrig_model::prompts::{
            account_of_prompt, DEFAULT_LOGIN_FAILURE, DEFAULT_LOGIN_PROMPT, DEFAULT_PASSWORD_PROMPT, MAX_LOGOUTS,
        };
        const LOGIN: usize = 0;
        const PASSWORD: usize = 1;
        const FAILURE: usize = 2;
        const PROMPT: usize = 3;
        let login = console.and_then(|c| c.login.clone());
        let user =
            spec["user"].as_str().map(String::from).or_else(|| login.as_ref().map(|l| l.user.clone())).unwrap_or_else(|| "root".into());
        let pattern = |own: Option<&String>, default: &str| own.cloned().unwrap_or_else(|| default.to_string());
        let patterns = [
            pattern(login.as_ref().and_then(|l| l.login_prompt.as_ref()), DEFAULT_LOGIN_PROMPT),
            pattern(login.as_ref().and_then(|l| l.password_prompt.as_ref()), DEFAULT_PASSWORD_PROMPT),
            pattern(login.as_ref().and_then(|l| l.failure.as_ref()), DEFAULT_LOGIN_FAILURE),
            pattern(console.and_then(|c| c.prompt.as_ref()), DEFAULT_PROMPT),
        ];
        let wait = match Wait::new(&patterns, deaths) {
            Ok(wait) => wait,
            Err(_) if output["error"]["class"] == "error" => return Ok(()),
            Err(why) => return Err(why),
        };
        let console = self.console(device);
        let unread = console.unread().to_vec();
        let ends = console.ends_after_cursor();
        // A shell prompt as the engine names it: the line it ends, trimmed (`OpenShell`).
        let prompt = |pos: usize, start: usize, end: usize| {
            let before = String::from_utf8_lossy(&unread[pos..pos + start]).into_owned();
            let last_line = before.rsplit(['\n', '\r']).next().unwrap_or_default().to_string();
            format!("{last_line}{}", String::from_utf8_lossy(&unread[pos + start..pos + end])).trim().to_string()
        };
        // Replay each line sent, in order, against what the console had shown by then.
        // Before the user name is sent the engine acts on the console's latest state: it
        // passes over a hit that more text followed (old text left unread). Where its
        // reads ended is not recorded, so which hit a line answered is not always one:
        // every reading the lines allow is followed (a few at most).
        let mut paths = vec![LoginPath::default()];
        for (seq, line) in sent_lines(device, events) {
            if line.is_empty() {
                // Enter, to wake a console that printed its login prompt before we came.
                continue;
            }
            let mut next = Vec::new();
            for path in &paths {
                let wanted = match line.as_str() {
                    SECRET_LINE => PASSWORD,
                    "exit" if !path.user_sent => PROMPT,
                    _ if line == user => LOGIN,
                    _ => return Err(format!("the console was sent `{line}`, which a login does not send")),
                };
                let shown = console.shown_before(seq).max(path.pos);
                let (text, ends) = (&unread[path.pos..shown], relative(&ends, path.pos));
                let answered: Vec<(usize, usize)> = if path.user_sent {
                    first_hit(text, &ends, &wait).into_iter().filter_map(|h| h.of(wanted)).collect()
                } else {
                    latest_state_hits(text, &ends, &wait).into_iter().rev().filter_map(|h| h.of(wanted)).take(READINGS).collect()
                };
                for (start, end) in answered {
                    let mut path = path.clone();
                    match wanted {
                        LOGIN => path.user_sent = true,
                        PASSWORD => path.password_sent = true,
                        _ => {
                            let shown = prompt(path.pos, start, end);
                            path.logged_out.push(serde_json::json!({"account": account_of_prompt(&shown), "prompt": shown}));
                        }
                    }
                    path.pos += end;
                    next.push(path);
                }
            }
            next.truncate(READINGS);
            if next.is_empty() {
                return Err(format!("the login sent `{line}` without the console asking for it first"));
            }
            paths = next;
        }
        let refused = |response: String| serde_json::json!({"accepted": false, "user": user, "response": response});
        // Only a step that asks (`still_logged_in: fail`) records a console it could not
        // log out as what it found; for the others that is an error of the bench.
        let tells_still_logged_in = spec["still_logged_in"] == "fail";
        let mut first_error = None;
        for path in &paths {
            let LoginPath { pos, user_sent, password_sent, ref logged_out } = *path;
            let rest = relative(&ends, pos);
            let lasts: Vec<Option<Hit>> = if user_sent {
                vec![first_hit(&unread[pos..], &rest, &wait)]
            } else {
                match latest_state_hits(&unread[pos..], &rest, &wait) {
                    hits if hits.is_empty() => vec![None],
                    hits => hits.into_iter().map(Some).collect(),
                }
            };
            for last in lasts {
                let derived = match last {
                    Some(Hit::Pattern { index: PROMPT, .. }) if user_sent => {
                        Some(serde_json::json!({"accepted": true, "user": user, "logged_out": logged_out}))
                    }
                    Some(Hit::Pattern { index: PROMPT, start, end }) if tells_still_logged_in && logged_out.len() == MAX_LOGOUTS => Some(
                        serde_json::json!({"accepted": false, "user": user, "still_logged_in": true, "prompt": prompt(pos, start, end),
                            "exits": MAX_LOGOUTS, "logged_out": logged_out}),
                    ),
                    Some(Hit::Pattern { index: FAILURE, start, end }) => {
                        let before = String::from_utf8_lossy(&unread[pos..pos + start]).into_owned();
                        Some(refused(
                            format!("{}{}", tail_chars(&before, 80), String::from_utf8_lossy(&unread[pos + start..pos + end]))
                                .trim()
                                .to_string(),
                        ))
                    }
                    Some(Hit::Pattern { index: LOGIN, .. }) if password_sent => Some(refused("asked for the login again".into())),
                    Some(Hit::Pattern { index: PASSWORD, .. }) if password_sent => Some(refused("asked for the password again".into())),
                    _ => None,
                };
                let judged: Result<(), String> = match (output.get("error"), derived) {
                    (None, Some(derived)) if derived == *output => Ok(()),
                    (None, _) => Err("the recorded login outcome is not what the console showed".into()),
                    (Some(error), _) if error["class"] == "fail" => match last {
                        Some(Hit::Death { .. }) => Ok(()),
                        _ => Err("the login is recorded as a death string seen, but the console showed none".into()),
                    },
                    (Some(_), Some(_)) if !exempt => Err("the login is recorded as failed, but the console shows how it ended".into()),
                    // A shell still open after logging out as many as the login does, a timeout,
                    // a lost console: nothing the console showed says otherwise.
                    (Some(_), _) => Ok(()),
                };
                match judged {
                    Ok(()) => {
                        console.consume(pos + last.map_or(0, |hit| hit.span().1));
                        return Ok(());
                    }
                    Err(why) => {
                        first_error.get_or_insert(why);
                    }
                }
            }
        }
        Err(first_error.unwrap_or_else(|| "the login could not be replayed".into()))
    }
}

/// How many readings of a login's lines replay follows at most (see [`Consoles::login`]).
const READINGS: usize = 16;

/// Where a console login stands after the lines sent so far, in one reading of them.
#[derive(Clone, Default)]
struct LoginPath {
    pos: usize,
    user_sent: bool,
    password_sent: bool,
    logged_out: Vec<Value>,
}

/// The hits a login can act on before its user name is sent (`Expect::login`), in
/// order: walking the hits in `text` as the engine meets them, one it may act on is a
/// hit whose following hit had not arrived by the end of the read that brought it (at
/// the least, the first recorded chunk end at or after it), and a death string, where
/// the walk stops. The engine passes over the others.
fn latest_state_hits(text: &[u8], ends: &[usize], wait: &Wait) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut from = 0;
    while let Some(hit) = first_hit(&text[from..], &relative(ends, from), wait) {
        let hit = hit.shifted(from);
        hits.push(hit);
        if matches!(hit, Hit::Death { .. }) {
            break;
        }
        from = hit.span().1;
    }
    let read_end = |at: usize| ends.iter().copied().find(|e| *e >= at).unwrap_or(text.len());
    (0..hits.len())
        .filter(|&i| match (hits[i], hits.get(i + 1)) {
            (Hit::Death { .. }, _) | (_, None) => true,
            (hit, Some(next)) => next.span().1 > read_end(hit.span().1),
        })
        .map(|i| hits[i])
        .collect()
}

/// Replay an `ssh_su` on `device` (`Expect::switch_user` in an SSH shell of its own,
/// opened and closed within the step): the `su` line sent, each password prompt
/// answered, and the outcome (`su`'s exit status and the uid its command printed, as
/// the shell printed them; what `su` said besides) derived from the shell's text.
pub fn switch_user(device: &str, spec: &Value, output: &Value, events: &[&Event], exempt: bool) -> Result<(), String> {
    const SHELL: &str = "ssh:shell";
    let mut filter = AnsiFilter::new();
    let (mut text, mut ends, mut sent) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        match &event.kind {
            EventKind::Bytes { channel, direction: Direction::In, data } if channel.device == device && channel.channel == SHELL => {
                filter.filter(data, &mut text);
                ends.push(text.len());
            }
            EventKind::Bytes { channel, direction: Direction::Out, data } if channel.device == device && channel.channel == SHELL => {
                sent.extend_from_slice(data)
            }
            _ => {}
        }
    }
    let user = spec["user"].as_str().unwrap_or_default();
    let sent = String::from_utf8_lossy(&sent);
    let typed = format!("su {user} -c 'echo PRF_");
    let tag = sent.find(&typed).map(|at| &sent[at + typed.len()..]).and_then(|rest| {
        let tag = rest.get(..12)?;
        let line = format!("{tag}_\"\"U:$(id -u)'; echo PRF_{tag}''_S:$?\n");
        (tag.bytes().all(|b| b.is_ascii_hexdigit()) && rest.starts_with(&line)).then_some(tag)
    });
    let Some(tag) = tag else {
        return if output.get("error").is_some() { Ok(()) } else { Err("the `su` line the step's output answers was never sent".into()) };
    };
    let wait = Wait::new(&[proofrig_model::prompts::DEFAULT_PASSWORD_PROMPT.to_string(), format!(r"PRF_{tag}_S:(-?\d+)\r?\n")], &[])?;
    let prompt = Wait::new(&[DEFAULT_PROMPT.to_string()], &[])?;
    let (mut pos, mut asked, mut said) = (0, false, String::new());
    let mut done = None;
    while let Some(Hit::Pattern { index, start, end }) = first_hit(&text[pos..], &relative(&ends, pos), &wait) {
        said.push_str(&String::from_utf8_lossy(&text[pos..pos + start]));
        if index == 1 {
            done = Some((pos + start, pos + end));
            break;
        }
        asked = true;
        pos += end;
    }
    let ended = done.and_then(|(_, end)| first_hit(&text[end..], &relative(&ends, end), &prompt).map(|_| end));
    if output.get("error").is_some() {
        return match ended {
            Some(_) if !exempt => {
                Err("the step is recorded as failed, but the shell shows `su` ran to its end and the prompt came back".into())
            }
            _ => Ok(()),
        };
    }
    let (Some((start, end)), Some(_)) = (done, ended) else {
        return Err("the shell never showed `su`'s end marker and the prompt after it".into());
    };
    let status: Option<i64> = String::from_utf8_lossy(&text[start..end]).trim_end().rsplit(':').next().and_then(|s| s.parse().ok());
    let uid: Option<u64> =
        regex::Regex::new(&format!(r"PRF_{tag}_U:(\d+)")).ok().and_then(|re| re.captures(&said).and_then(|c| c[1].parse().ok()));
    let prompt_line = regex::Regex::new(r"^[Pp]assword: ?$").expect("a valid pattern");
    let response = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(&format!("PRF_{tag}")) && !prompt_line.is_match(l))
        .collect::<Vec<_>>()
        .join("\n");
    let derived = serde_json::json!({"user": user, "accepted": status == Some(0) && uid.is_some(), "status": status, "uid": uid, "asked_password": asked, "response": response});
    if derived != *output {
        return Err("the recorded outcome of `su` is not what the shell printed".into());
    }
    Ok(())
}

/// What `sent_lines` shows for a line that was a secret (a password).
const SECRET_LINE: &str = "\u{1}secret";

/// The lines proofrig sent `device`'s console in `events`, each with the sequence number
/// of its first event; a secret (sent as a reference) reads [`SECRET_LINE`].
fn sent_lines(device: &str, events: &[&Event]) -> Vec<(u64, String)> {
    let mut lines = Vec::new();
    let mut line: Option<(u64, String)> = None;
    for event in events {
        let piece = match &event.kind {
            EventKind::Bytes { channel, direction: Direction::Out, data } if channel.device == device && channel.channel == "console" => {
                String::from_utf8_lossy(data).into_owned()
            }
            EventKind::Redacted { channel, direction: Direction::Out, .. } if channel.device == device && channel.channel == "console" => {
                SECRET_LINE.to_string()
            }
            _ => continue,
        };
        for c in piece.split_inclusive('\n') {
            let (seq, text) = line.get_or_insert_with(|| (event.seq, String::new()));
            if let Some(done) = c.strip_suffix('\n') {
                if !(text.as_str() == SECRET_LINE && done == SECRET_LINE) {
                    text.push_str(done);
                }
                lines.push((*seq, std::mem::take(text)));
                line = None;
            } else if !(text.as_str() == SECRET_LINE && c == SECRET_LINE) {
                text.push_str(c);
            }
        }
    }
    lines.extend(line);
    lines
}

impl Console {
    fn end(&self) -> usize {
        self.base + self.text.len()
    }

    fn push(&mut self, data: &[u8], seq: u64) {
        self.filter.filter(data, &mut self.text);
        let end = self.end();
        if end > self.cursor && self.ends.back().map(|e| e.0) != Some(end) {
            self.ends.push_back((end, seq));
        }
        if end - self.cursor > MAX_UNREAD {
            self.consume(end - self.cursor - MAX_UNREAD);
        }
    }

    fn unread(&self) -> &[u8] {
        &self.text[self.cursor - self.base..]
    }

    fn ends_after_cursor(&self) -> Vec<usize> {
        self.ends.iter().map(|e| e.0 - self.cursor).collect()
    }

    /// How much unread text the console had shown before event `seq` was recorded.
    fn shown_before(&self, seq: u64) -> usize {
        self.ends.iter().take_while(|e| e.1 < seq).last().map_or(0, |e| e.0 - self.cursor)
    }

    /// The wait consumed `len` bytes of text from the cursor.
    fn consume(&mut self, len: usize) {
        self.cursor += len;
        while self.ends.front().is_some_and(|e| e.0 <= self.cursor) {
            self.ends.pop_front();
        }
        // Text before the cursor is dropped once it is most of what is kept (so a console
        // read in small steps is not moved in memory at each one).
        let keep_from = self.cursor.saturating_sub(KEPT_BEFORE).max(self.base);
        let dead = keep_from - self.base;
        if dead > KEPT_BEFORE && dead > self.text.len() / 2 {
            self.text.drain(..dead);
            self.base = keep_from;
        }
    }

    fn skip_to_end(&mut self) {
        let unread = self.end() - self.cursor;
        self.consume(unread);
    }

    fn keep_one_window(&mut self) {
        let unread = self.end() - self.cursor;
        self.consume(unread.saturating_sub(DEFAULT_WINDOW));
    }

    /// Whether `tail`, a timeout's view of the last output, was the end of what the
    /// console showed. The tail is cut by characters from raw text, so its first word
    /// may be a part of one the journal shows whole (or redacted); it is left out.
    fn recently_showed(&self, tail: &str) -> bool {
        let shown = normalize(&String::from_utf8_lossy(&self.text));
        let tail = normalize(tail);
        let rest = tail.split_once(' ').map_or("", |(_, rest)| rest);
        shown.contains(rest)
    }

    /// A console wait that failed: whatever it says, it must not hide what the wait
    /// would have found (a death string must be there for a FAIL).
    fn failed_wait(&mut self, wait: &Wait, error: &Value, cut_off: bool) -> Result<(), String> {
        let hit = first_hit(self.unread(), &self.ends_after_cursor(), wait);
        match (error["class"].as_str(), hit) {
            (Some("fail"), Some(hit @ Hit::Death { .. })) => {
                self.consume(hit.span().1);
                Ok(())
            }
            (Some("fail"), _) => {
                Err("the step is recorded as a death string seen, but the console showed none before anything else the wait looked for"
                    .into())
            }
            (Some("aborted"), _) | (_, None) => Ok(()),
            (_, Some(_)) if cut_off => Ok(()),
            (_, Some(hit)) => {
                let (start, end) = hit.span();
                Err(format!(
                    "the step is recorded as failed, but the console showed `{}`, which the wait was looking for",
                    String::from_utf8_lossy(&self.unread()[start..end])
                ))
            }
        }
    }
}

/// The hit the engine finds first reading `text` in recorded chunks: the earliest hit
/// in the text up to the first chunk end where there is one. At each chunk end, only
/// the last window of text is searched, as much as the engine keeps: anything earlier
/// was searched at an earlier end.
fn first_hit(text: &[u8], ends: &[usize], wait: &Wait) -> Option<Hit> {
    ends.iter().copied().chain(std::iter::once(text.len())).filter(|e| *e <= text.len()).find_map(|end| {
        let from = end.saturating_sub(DEFAULT_WINDOW);
        wait.earliest(&text[from..end]).map(|hit| hit.shifted(from))
    })
}

/// Where in `text` the engine can have found `matched` as a hit `wanted` accepts, in
/// order: each occurrence that is the earliest hit in the text up to its own end, or up
/// to one of the recorded chunk ends after it (see the module doc).
fn place(text: &[u8], ends: &[usize], wait: &Wait, matched: &[u8], wanted: impl Fn(Hit) -> bool) -> Vec<Hit> {
    let mut found = Vec::new();
    let starts: Vec<usize> = if matched.is_empty() {
        std::iter::once(0).chain(ends.iter().copied()).collect()
    } else {
        memchr::memmem::find_iter(text, matched).take(OCCURRENCES_TRIED).collect()
    };
    for start in starts {
        let end = start + matched.len();
        let reads =
            std::iter::once(end).chain(ends.iter().copied().filter(|e| *e > end).take(ENDS_TRIED)).chain(std::iter::once(text.len()));
        for read in reads.filter(|r| *r >= end && *r <= text.len()) {
            if let Some(hit) = wait.earliest(&text[..read]) {
                if wanted(hit) && hit.span() == (start, end) {
                    found.push(hit);
                    break;
                }
            }
        }
    }
    found
}

fn relative(ends: &[usize], from: usize) -> Vec<usize> {
    ends.iter().filter(|e| **e > from).map(|e| e - from).collect()
}

/// What `Expect::run` returns as a command's output, from the text before its end
/// marker: after the echoed command line, line endings made `\n`, without the last one.
pub fn command_output(before: &str, tag: &str) -> String {
    let typed = format!("PRF_{tag}''_E:$?");
    let output = match before.rfind(&typed) {
        Some(at) => match before[at..].find('\n') {
            Some(eol) => &before[at + eol + 1..],
            None => "",
        },
        None => before,
    };
    let mut output = output.replace("\r\n", "\n").replace('\r', "");
    if output.ends_with('\n') {
        output.pop();
    }
    output
}

/// The last `max` characters of `text`.
pub fn tail_chars(text: &str, max: usize) -> String {
    match max.checked_sub(1).and_then(|skip| text.char_indices().rev().nth(skip)) {
        Some((start, _)) => text[start..].to_string(),
        None if max == 0 => String::new(),
        None => text.to_string(),
    }
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
    use super::*;
    use proofrig_model::events::{ChannelId, Timestamp};
    use serde_json::json;

    fn chunk(seq: u64, data: &str) -> Event {
        Event {
            seq,
            at: Timestamp { wall_ns: 0, mono_ns: 0 },
            kind: EventKind::Bytes { channel: ChannelId::new("ru1", "console"), direction: Direction::In, data: data.as_bytes().to_vec() },
        }
    }

    fn command_run<'a>(output: &'a Value, sent: &'a [u8]) -> CommandRun<'a> {
        CommandRun { device: "ru1", command: "id", output, sent, prompt: None, deaths: &[], cut_off: false, trimmed: false }
    }

    fn console(chunks: &[&str]) -> Consoles {
        let mut consoles = Consoles::default();
        for (seq, data) in chunks.iter().enumerate() {
            consoles.feed(&chunk(seq as u64, data));
        }
        consoles
    }

    #[test]
    fn a_match_is_the_earliest_hit_and_consumes_the_text_through_it() {
        let mut consoles = console(&["U-Boot 2024\r\nHit any key to stop autoboot:  3 ", "\r\n=> "]);
        let spec = json!({"patterns": ["=> ", "autoboot"]});
        // The engine saw "autoboot" first (it starts earlier), not the prompt.
        let prompt = json!({"matched": true, "index": 0, "pattern": "=> ", "matched_text": "=> ", "before": "U-Boot 2024\r\nHit any key to stop autoboot:  3 \r\n"});
        assert!(consoles.expect("ru1", &spec, &prompt, &[], false).is_err());
        let autoboot = json!({"matched": true, "index": 1, "pattern": "autoboot", "matched_text": "autoboot", "before": "U-Boot 2024\r\nHit any key to stop "});
        consoles.expect("ru1", &spec, &autoboot, &[], false).unwrap();
        // Then the prompt, with what lay between the two as its `before`.
        let prompt = json!({"matched": true, "index": 0, "pattern": "=> ", "matched_text": "=> ", "before": ":  3 \r\n"});
        consoles.expect("ru1", &spec, &prompt, &[], false).unwrap();
    }

    #[test]
    fn a_timeout_needs_the_text_to_show_nothing_the_wait_looked_for() {
        let spec = json!({"patterns": ["=> "], "on_timeout": "pass"});
        let timed_out = json!({"matched": false, "tail": "Starting kernel ..."});
        console(&["Starting kernel ..."]).expect("ru1", &spec, &timed_out, &[], false).unwrap();
        let err = console(&["=> ", "Starting kernel ..."]).expect("ru1", &spec, &timed_out, &[], false).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }

    #[test]
    fn a_prompt_at_the_end_of_a_read_matches_where_the_read_ended() {
        // `$` is the end of what has arrived: the engine matched the first prompt when
        // the read ended there, even though more text followed later.
        let mut consoles = console(&["login: ", "root\r\nPassword: "]);
        let spec = json!({"patterns": ["login: ?$"]});
        let output = json!({"matched": true, "index": 0, "pattern": "login: ?$", "matched_text": "login: ", "before": ""});
        consoles.expect("ru1", &spec, &output, &[], false).unwrap();
    }

    /// A login's events, in order: console output (`<`), lines sent (`>`, `>secret`).
    fn login_events(script: &[&str]) -> Vec<Event> {
        let console = ChannelId::new("ru1", "console");
        script
            .iter()
            .enumerate()
            .map(|(seq, line)| {
                let kind = match line.split_at(1) {
                    ("<", text) => EventKind::Bytes { channel: console.clone(), direction: Direction::In, data: text.as_bytes().to_vec() },
                    (">", "secret") => {
                        EventKind::Redacted { channel: console.clone(), direction: Direction::Out, secret: "env:PW".into(), len: 7 }
                    }
                    (_, text) => EventKind::Bytes { channel: console.clone(), direction: Direction::Out, data: text.as_bytes().to_vec() },
                };
                Event { seq: seq as u64, at: Timestamp { wall_ns: 0, mono_ns: 0 }, kind }
            })
            .collect()
    }

    fn replay_login(script: &[&str], output: &Value) -> Result<(), String> {
        replay_login_of(&json!({}), script, output)
    }

    fn replay_login_of(spec: &Value, script: &[&str], output: &Value) -> Result<(), String> {
        let events = login_events(script);
        let mut consoles = Consoles::default();
        events.iter().for_each(|e| consoles.feed(e));
        let refs: Vec<&Event> = events.iter().collect();
        consoles.login(&LoginReplay { device: "ru1", spec, output, events: &refs, console: None, deaths: &[], exempt: false })
    }

    #[test]
    fn a_console_that_cannot_be_logged_out_is_derived_from_its_prompts_and_only_when_the_step_asks() {
        // BusyBox init respawning a root shell: each `exit` brings a new one, never a login.
        let respawned = "<exit\r\n\x1b[6nroot@ru-bb:/# ";
        let script = ["<\x1b[6nroot@ru-bb:/# ", ">exit\n", respawned, ">exit\n", respawned, ">exit\n", respawned];
        let asks = json!({"expect": "any", "still_logged_in": "fail"});
        let open = json!({"account": "root", "prompt": "root@ru-bb:/#"});
        let found = json!({"accepted": false, "user": "root", "still_logged_in": true, "prompt": "root@ru-bb:/#", "exits": 3,
            "logged_out": [open, open, open]});
        replay_login_of(&asks, &script, &found).unwrap();
        // Hidden as a login that went through, as a bench error, or with another prompt: caught.
        let accepted = json!({"accepted": true, "user": "root", "logged_out": [open, open, open]});
        assert!(replay_login_of(&asks, &script, &accepted).unwrap_err().contains("outcome"));
        let error = json!({"error": {"class": "error", "message": "a shell is still open"}});
        assert!(replay_login_of(&asks, &script, &error).unwrap_err().contains("shows how it ended"));
        let mut other = found.clone();
        other["prompt"] = json!("oper@ru-bb:/$");
        assert!(replay_login_of(&asks, &script, &other).is_err());
        // A step that does not ask gets the bench error, as before; the finding is not its to record.
        replay_login_of(&json!({"expect": "any"}), &script, &error).unwrap();
        assert!(replay_login_of(&json!({"expect": "any"}), &script, &found).is_err());
        // Fewer exits than the login makes before it gives up: not a console it could not log out.
        let short = &script[..5];
        let mut two = found.clone();
        two["logged_out"] = json!([open, open]);
        assert!(replay_login_of(&asks, short, &two).is_err());
    }

    #[test]
    fn a_login_replays_each_line_it_sent_and_its_outcome() {
        let accepted = ["<ru1 login: ", ">root\n", "<root\r\nPassword: ", ">secret", ">\n", "<\r\nroot@ru1:~# "];
        replay_login(&accepted, &json!({"accepted": true, "user": "root", "logged_out": []})).unwrap();
        let err = replay_login(&accepted, &json!({"accepted": false, "user": "root", "response": "Login incorrect"})).unwrap_err();
        assert!(err.contains("outcome"), "{err}");
        let refused = ["<ru1 login: ", ">root\n", "<root\r\nPassword: ", ">secret", ">\n", "<\r\nLogin incorrect\r\nru1 login: "];
        replay_login(&refused, &json!({"accepted": false, "user": "root", "response": "Login incorrect"})).unwrap();
        assert!(replay_login(&refused, &json!({"accepted": true, "user": "root", "logged_out": []})).is_err());
        // A shell left open is logged out first, and named; hiding it is caught.
        let open =
            ["<root@ru1:~# ", ">exit\n", "<exit\r\nru1 login: ", ">root\n", "<root\r\nPassword: ", ">secret", ">\n", "<\r\nroot@ru1:~# "];
        let logged_out = json!([{"account": "root", "prompt": "root@ru1:~#"}]);
        replay_login(&open, &json!({"accepted": true, "user": "root", "logged_out": logged_out})).unwrap();
        assert!(replay_login(&open, &json!({"accepted": true, "user": "root", "logged_out": []})).is_err());
        // A password sent when nothing asked for one is no login proofrig made.
        let unasked = ["<ru1 login: ", ">root\n", "<root\r\n", ">secret", ">\n", "<root@ru1:~# "];
        assert!(replay_login(&unasked, &json!({"accepted": true, "user": "root", "logged_out": []}))
            .unwrap_err()
            .contains("without the console asking"));
    }

    #[test]
    fn a_login_replays_as_acting_on_the_console_s_latest_state_not_on_old_text() {
        let accepted = json!({"accepted": true, "user": "root", "logged_out": []});
        let then_login = [">root\n", "<root\r\nPassword: ", ">secret", ">\n", "<\r\nroot@ru1:~# "];
        // An earlier step left a shell prompt unread and typed `exit`; by the login the
        // console had gone on to its login prompt, which the user name answered.
        let stale: Vec<&str> = ["<root@ru1:~# ", "<exit\r\nlogout\r\n\r\nru1 login: "].into_iter().chain(then_login).collect();
        replay_login(&stale, &accepted).unwrap();
        // Claiming the old prompt was a shell logged out: caught.
        let claimed = json!({"accepted": true, "user": "root", "logged_out": [{"account": "root", "prompt": "root@ru1:~#"}]});
        assert!(replay_login(&stale, &claimed).is_err());
        // An earlier refused login's text is not this login's refusal.
        let old_refusal: Vec<&str> =
            ["<ru1 login: oper\r\nPassword: \r\nLogin incorrect\r\nru1 login: "].into_iter().chain(then_login).collect();
        replay_login(&old_refusal, &accepted).unwrap();
        // A prompt read together with what followed it is not one the engine acts on:
        // an `exit` sent there answered nothing.
        let one_read = ["<root@ru1:~# exit\r\nlogout\r\n\r\nru1 login: ", ">exit\n", "<exit\r\nPassword: "];
        let err = replay_login(&one_read, &json!({"error": {"class": "error", "message": "timed out"}})).unwrap_err();
        assert!(err.contains("without the console asking"), "{err}");
    }

    #[test]
    fn a_command_replays_its_output_and_exit_status() {
        let tag = "0123456789ab";
        let line = format!("id; echo PRF_{tag}''_E:$?\n");
        let shown = [format!("id; echo PRF_{tag}''_E:$?\r\n"), format!("uid=0(root)\r\nPRF_{tag}_E:0\r\n"), "root@ru1:~# ".to_string()];
        let chunks: Vec<&str> = shown.iter().map(String::as_str).collect();
        let output = json!({"output": "uid=0(root)", "exit_status": 0});
        console(&chunks).run(&command_run(&output, line.as_bytes())).unwrap();
        let forged = json!({"output": "uid=0(root)", "exit_status": 1});
        assert!(console(&chunks).run(&command_run(&forged, line.as_bytes())).unwrap_err().contains("exit status"));
        let forged = json!({"output": "uid=1000(tester)", "exit_status": 0});
        assert!(console(&chunks).run(&command_run(&forged, line.as_bytes())).unwrap_err().contains("output"));
        assert!(console(&chunks).run(&command_run(&output, b"")).unwrap_err().contains("never sent"));
    }

    #[test]
    fn normalizing_in_one_pass_is_dropping_cr_then_joining_the_words() {
        for text in ["", " ", "\r", "a", " a\r\nb\t\tc ", "x\ry", "\u{a0}é\u{2003}ü\u{85}z\r", "  root@ru1:~# \r\n", "a \r b"] {
            let slow = text.replace('\r', "").split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(normalize(text), slow, "{text:?}");
        }
    }
}
