//! Waiting for what a device says and answering it, over any [`ByteStream`]
//! (serial consoles now, SSH shells too).
//!
//! Matching runs on a *text view* of the output: terminal control sequences are
//! stripped by a streaming [`AnsiFilter`], so colour codes and busybox's `ESC[6n`
//! never break a prompt pattern. The transcript is untouched: the pump has already
//! recorded the raw bytes before they reach this engine.
//!
//! Memory is bounded. Unconsumed text lives in a window (64 KiB by default); on a
//! chatty console the oldest text scrolls out and is counted in
//! [`Match::discarded`]. **A pattern must fit in the window** to be found, and text
//! that scrolled out cannot be matched any more (it is still in the transcript).
//! Incoming text is moved into the window in steps, and every step is searched, so a
//! pattern or death string is not skipped because a large read overflowed the window.
//!
//! Patterns are `regex::bytes::Regex` over the current window: `$` means "end of what
//! has arrived so far", which is what prompt patterns like `[#$] ?$` rely on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use regex::bytes::Regex;
use tokio::time::Instant;

use crate::channel::{ByteStream, ChannelError};
use proofrig_model::ansi::AnsiFilter;
use proofrig_model::events::ChannelId;
use proofrig_model::prompts::{
    account_of_prompt, DEFAULT_LOGIN_FAILURE, DEFAULT_LOGIN_PROMPT, DEFAULT_PASSWORD_PROMPT, DEFAULT_PROMPT, DEFAULT_WINDOW,
};
use proofrig_model::rig::{Console, ConsoleLogin, SlowSend};
use proofrig_model::secret::Secret;

/// A line that is only a password prompt (for leaving it out of what `su` said).
static DEFAULT_PASSWORD_PROMPT_TEXT: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^[Pp]assword: ?$").expect("a valid pattern"));

/// How much of the recent output a timeout error shows.
const TAIL_CHARS: usize = 200;
/// Recent text kept for error messages, consumed or not.
const RECENT_BYTES: usize = 1024;
/// Text shown on each side of a death string.
const DEATH_CONTEXT: usize = 120;
/// Before the user name is sent, how long a silent console may stay silent before
/// we press Enter to make it print its login prompt again.
const LOGIN_POKE: Duration = Duration::from_millis(1000);
/// Before a console login logs out a shell it found open, how long the console must
/// have been quiet after its prompt (see [`Expect::login`]).
const OPEN_SHELL_QUIET: Duration = Duration::from_millis(500);
/// How many nested shells a console login logs out before it gives up.
pub use proofrig_model::prompts::MAX_LOGOUTS;

/// How a console login went when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoginOutcome {
    /// The account that logged in.
    pub user: String,
    /// Shells found open before the login, in the order they were logged out.
    pub logged_out: Vec<OpenShell>,
}

/// A shell found open at the console before a login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenShell {
    /// The prompt's line, as the console showed it.
    pub prompt: String,
    /// Whose shell it was, read from the prompt (`root@ru1:~#`), if it says.
    pub account: Option<String>,
}

impl OpenShell {
    fn from_prompt(found: &Match) -> OpenShell {
        let before = found.before_text();
        let line = before.rsplit(['\n', '\r']).next().unwrap_or_default();
        let prompt = format!("{line}{}", found.matched_text()).trim().to_string();
        OpenShell { account: account_of_prompt(&prompt), prompt }
    }
}

/// What `expect` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Which of the given patterns matched (the one starting earliest in the stream;
    /// on a tie, the first in the list).
    pub index: usize,
    /// Text between the previous match and this one (control sequences stripped).
    pub before: Vec<u8>,
    /// The matched text.
    pub matched: Vec<u8>,
    /// Capture groups; `groups[0]` is the whole match.
    pub groups: Vec<Option<Vec<u8>>>,
    /// Bytes of text that scrolled out of the window before this match and are
    /// therefore missing from `before` (0 unless the console flooded).
    pub discarded: u64,
}

impl Match {
    pub fn before_text(&self) -> String {
        String::from_utf8_lossy(&self.before).into_owned()
    }

    pub fn matched_text(&self) -> String {
        String::from_utf8_lossy(&self.matched).into_owned()
    }

    pub fn group_text(&self, group: usize) -> Option<String> {
        self.groups.get(group)?.as_ref().map(|g| String::from_utf8_lossy(g).into_owned())
    }
}

/// Output and exit status of a command run at a shell prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// What the command printed, lines joined with `\n`, without the echoed command
    /// line and without the trailing newline.
    pub output: String,
    pub exit_status: i32,
}

/// How `su` to another account went, at a shell prompt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwitchOutcome {
    /// The account `su` was asked for.
    pub user: String,
    /// `su` ran the command as that account: it exited 0 and the command printed a uid.
    pub accepted: bool,
    /// `su`'s exit status, as the shell printed it.
    pub status: i32,
    /// The uid the command printed as the switched-to account.
    pub uid: Option<u32>,
    /// Whether `su` asked for a password (it does not when the caller is root).
    pub asked_password: bool,
    /// What `su` printed besides the markers (`su: Authentication failure`).
    pub response: String,
}

/// Why a wait or exchange failed. Every message names the channel.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error("{channel}: timed out after {waited:?} waiting for {patterns:?}; last output: {tail:?}")]
    Timeout { channel: ChannelId, waited: Duration, patterns: Vec<String>, tail: String },
    #[error("{channel}: death string `{pattern}` seen, the device is dying: {context:?}")]
    DeathString { channel: ChannelId, pattern: String, context: String },
    #[error(transparent)]
    Lost(#[from] ChannelError),
    #[error("{channel}: login as `{user}` refused: {response:?}; check the user and the password the rig points to")]
    LoginRefused { channel: ChannelId, user: String, response: String },
    /// `prompt` is the shell prompt shown after the last `exit`; `logged_out`, the shells
    /// each `exit` answered.
    #[error("{channel}: a shell is still open after logging out {tries} shells (prompt `{prompt}`); log it out by hand (`proofrig console`) and run again")]
    StillLoggedIn { channel: ChannelId, prompt: String, tries: usize, logged_out: Vec<OpenShell> },
    #[error("{channel}: the console asks for a password for `{user}` but none was given; add `password: {{ env: ... }}` to the console login in the rig")]
    PasswordRequired { channel: ChannelId, user: String },
    #[error("{channel}: invalid {what} pattern `{pattern}`: {reason}")]
    BadPattern { channel: ChannelId, what: &'static str, pattern: String, reason: String },
    #[error("{channel}: `{command}` ended with exit status `{status}`, which is not a number a shell returns")]
    BadExitStatus { channel: ChannelId, command: String, status: String },
}

enum Hit {
    Pattern { index: usize, start: usize, end: usize },
    Death { index: usize, start: usize, end: usize },
}

/// An expect session over one byte stream.
pub struct Expect {
    stream: ByteStream,
    filter: AnsiFilter,
    /// Unconsumed text being matched.
    window: Vec<u8>,
    window_limit: usize,
    /// Filtered text not yet moved into the window.
    pending: Vec<u8>,
    pending_pos: usize,
    discarded: u64,
    /// Raw bytes received so far: what tells a device that is talking (booting) from
    /// one that is silent.
    received: u64,
    recent: VecDeque<u8>,
    death: Vec<(String, Regex)>,
    prompt: Regex,
    slow_send: Option<SlowSend>,
    line_ending: Vec<u8>,
}

impl std::fmt::Debug for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expect").field("channel", self.stream.channel()).finish_non_exhaustive()
    }
}

impl Expect {
    /// An engine with the default prompt, no death strings, fast sending and `\n` as Enter.
    pub fn new(stream: ByteStream) -> Self {
        Self {
            stream,
            filter: AnsiFilter::new(),
            window: Vec::new(),
            window_limit: DEFAULT_WINDOW,
            pending: Vec::new(),
            pending_pos: 0,
            discarded: 0,
            received: 0,
            recent: VecDeque::with_capacity(RECENT_BYTES),
            death: Vec::new(),
            prompt: Regex::new(DEFAULT_PROMPT).expect("default prompt is a valid regex"),
            slow_send: None,
            line_ending: b"\n".to_vec(),
        }
    }

    /// An engine set up the way the rig describes the console: prompt, death strings, slow send.
    pub fn for_console(stream: ByteStream, console: &Console) -> Result<Self, ExpectError> {
        let mut engine = Self::new(stream);
        if let Some(prompt) = &console.prompt {
            engine.prompt = engine.compile("prompt", prompt)?;
        }
        engine.set_death_strings(&console.death_strings)?;
        engine.slow_send = console.slow_send;
        Ok(engine)
    }

    pub fn channel(&self) -> &ChannelId {
        self.stream.channel()
    }

    /// Patterns (regular expressions, as in the rig) that abort any wait when seen.
    /// Each occurrence is reported once, by the wait during which it arrives.
    pub fn set_death_strings(&mut self, patterns: &[String]) -> Result<(), ExpectError> {
        self.death = patterns.iter().map(|p| Ok((p.clone(), self.compile("death string", p)?))).collect::<Result<_, ExpectError>>()?;
        Ok(())
    }

    pub fn set_prompt(&mut self, prompt: Regex) {
        self.prompt = prompt;
    }

    pub fn prompt(&self) -> &Regex {
        &self.prompt
    }

    pub fn set_slow_send(&mut self, slow_send: Option<SlowSend>) {
        self.slow_send = slow_send;
    }

    /// What `send_line` appends (default `\n`; some consoles want `\r`).
    pub fn set_line_ending(&mut self, ending: &[u8]) {
        self.line_ending = ending.to_vec();
    }

    /// Change the window size (at least 1 KiB). Patterns must fit in it.
    pub fn set_window_limit(&mut self, bytes: usize) {
        self.window_limit = bytes.max(1024);
        self.trim_window();
    }

    pub fn window_limit(&self) -> usize {
        self.window_limit
    }

    /// Text currently held for matching (never more than the window limit).
    pub fn buffered(&self) -> usize {
        self.window.len()
    }

    /// How many bytes of text received so far no wait has consumed, including what
    /// arrived and was not read yet. A count of text after the ANSI filter: never more
    /// than the raw bytes it came from, except where invalid UTF-8 (never part of a
    /// secret value) became a replacement character.
    pub fn unconsumed(&mut self) -> usize {
        // A lost stream keeps what it had; its end is recorded, and counted, elsewhere.
        if let Ok(unread) = self.stream.read_now() {
            self.ingest(&unread);
        }
        self.window.len() + self.pending.len() - self.pending_pos
    }

    /// Whether the text received and not consumed yet is only white space.
    fn unread_is_blank(&self) -> bool {
        self.window.iter().chain(&self.pending[self.pending_pos..]).all(u8::is_ascii_whitespace)
    }

    /// Forget everything received so far that no wait has consumed.
    pub fn clear(&mut self) -> Result<(), ExpectError> {
        let unread = self.stream.read_now()?;
        self.ingest(&unread);
        self.window.clear();
        self.pending.clear();
        self.pending_pos = 0;
        Ok(())
    }

    /// Wait until the device has said nothing for `quiet` (at most `limit`), then
    /// forget everything received so far, as [`Expect::clear`] does. Output a device
    /// printed before something that restarts it (a power cycle, a reboot command)
    /// must not satisfy a wait for what it prints after: its old boot log and login
    /// prompt look exactly like the new ones. Silence is counted from the last bytes
    /// the stream received (or its opening), not from this call: a console that has
    /// been quiet long enough is forgotten at once, with no wait on the critical path.
    /// Returns the bytes of text forgotten.
    pub async fn settle(&mut self, quiet: Duration, limit: Duration) -> Result<usize, ExpectError> {
        self.read_until_quiet(quiet, None, Instant::now() + limit).await?;
        let forgotten = self.window.len() + self.pending.len() - self.pending_pos;
        self.window.clear();
        self.pending.clear();
        self.pending_pos = 0;
        Ok(forgotten)
    }

    /// Read until the device has said nothing for `quiet` (counted from its last
    /// bytes, read or not, and at the earliest from `since`) or `deadline` passes, and
    /// take what is left unread.
    async fn read_until_quiet(&mut self, quiet: Duration, since: Option<Instant>, deadline: Instant) -> Result<(), ExpectError> {
        loop {
            let silent = since.map_or(self.stream.silent_for(), |since| self.stream.silent_for().min(since.elapsed()));
            if silent >= quiet || Instant::now() >= deadline {
                break;
            }
            let until = (Instant::now() + (quiet - silent)).min(deadline);
            match tokio::time::timeout_at(until, self.stream.read()).await {
                Ok(Ok(chunk)) => self.ingest(&chunk),
                Ok(Err(lost)) => return Err(ExpectError::Lost(lost)),
                // Quiet until `until`: the next turn sees the silence.
                Err(_) => {}
            }
        }
        let unread = self.stream.read_now()?;
        self.ingest(&unread);
        Ok(())
    }

    pub fn stream(&self) -> &ByteStream {
        &self.stream
    }

    /// Give the stream back; text buffered for matching is dropped (it is in the transcript).
    pub fn into_stream(self) -> ByteStream {
        self.stream
    }

    /// Wait until one of `patterns` appears, consuming the output through the match.
    pub async fn expect(&mut self, patterns: &[Regex], timeout: Duration) -> Result<Match, ExpectError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.search(patterns) {
                Some(Hit::Pattern { index, start, end }) => return Ok(self.take_match(patterns, index, start, end)),
                Some(Hit::Death { index, start, end }) => return Err(self.death_error(index, start, end)),
                None => {}
            }
            match tokio::time::timeout_at(deadline, self.stream.read()).await {
                Err(_) => return Err(self.timeout_error(patterns, timeout)),
                Ok(Err(lost)) => return Err(ExpectError::Lost(lost)),
                Ok(Ok(chunk)) => self.ingest(&chunk),
            }
        }
    }

    /// Wait for the shell prompt.
    pub async fn expect_prompt(&mut self, timeout: Duration) -> Result<Match, ExpectError> {
        let prompt = self.prompt.clone();
        self.expect(std::slice::from_ref(&prompt), timeout).await
    }

    /// Send bytes, in chunks with pauses if the console needs slow sending.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ExpectError> {
        let Some(slow) = self.slow_send.filter(|s| s.chunk > 0) else {
            return Ok(self.stream.write(data).await?);
        };
        for (i, chunk) in data.chunks(slow.chunk).enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(slow.delay_ms)).await;
            }
            self.stream.write(chunk).await?;
        }
        Ok(())
    }

    /// Send a line of text followed by the line ending.
    pub async fn send_line(&mut self, line: &str) -> Result<(), ExpectError> {
        let mut data = Vec::with_capacity(line.len() + self.line_ending.len());
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(&self.line_ending);
        self.send(&data).await
    }

    /// Send a secret followed by the line ending; the transcript shows only its label.
    pub async fn send_secret_line(&mut self, secret: &Secret) -> Result<(), ExpectError> {
        let ending = self.line_ending.clone();
        let Some(slow) = self.slow_send.filter(|s| s.chunk > 0) else {
            return Ok(self.stream.write_secret(secret, &ending).await?);
        };
        // Chunk on character boundaries so each chunk is still a (partial) secret string.
        let value = secret.expose();
        let mut chunk_start = 0;
        let mut first = true;
        let mut pieces = Vec::new();
        for (offset, c) in value.char_indices() {
            if offset + c.len_utf8() - chunk_start > slow.chunk && offset > chunk_start {
                pieces.push(&value[chunk_start..offset]);
                chunk_start = offset;
            }
        }
        if chunk_start < value.len() {
            pieces.push(&value[chunk_start..]);
        }
        for piece in pieces {
            if !first {
                tokio::time::sleep(Duration::from_millis(slow.delay_ms)).await;
            }
            first = false;
            self.stream.write_secret(&Secret::new(secret.label(), piece), b"").await?;
        }
        if !first {
            tokio::time::sleep(Duration::from_millis(slow.delay_ms)).await;
        }
        self.send(&ending).await
    }

    /// Log in at a console: answer the login and password prompts until the shell
    /// prompt appears. Pressing Enter wakes a console that printed its prompt before
    /// we connected.
    ///
    /// A shell prompt before the user name was sent is a shell someone left open (a
    /// technician's root shell, say): finding it proves nothing about the login, so it
    /// is logged out (`exit`, up to [`MAX_LOGOUTS`] nested shells) and the login is
    /// done for real. The outcome names each shell logged out and whose it was.
    pub async fn login(&mut self, login: &ConsoleLogin, password: Option<&Secret>, timeout: Duration) -> Result<LoginOutcome, ExpectError> {
        let login_prompt = self.compile("login prompt", login.login_prompt.as_deref().unwrap_or(DEFAULT_LOGIN_PROMPT))?;
        let password_prompt = self.compile("password prompt", login.password_prompt.as_deref().unwrap_or(DEFAULT_PASSWORD_PROMPT))?;
        let failure = self.compile("login failure", login.failure.as_deref().unwrap_or(DEFAULT_LOGIN_FAILURE))?;
        let patterns = [login_prompt, password_prompt, failure, self.prompt.clone()];
        const LOGIN: usize = 0;
        const PASSWORD: usize = 1;
        const FAILURE: usize = 2;
        const SHELL: usize = 3;

        let deadline = Instant::now() + timeout;
        // Enter is pressed only at a console that stayed silent for a whole LOGIN_POKE:
        // a device still printing is booting, and a key pressed then may stop its boot
        // loader's countdown (a protected one then asks for its own password, an open
        // one drops to its prompt), which no login prompt follows.
        let mut heard = self.received;
        let mut user_sent = false;
        let mut password_sent = false;
        let mut outcome = LoginOutcome { user: login.user.clone(), logged_out: Vec::new() };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if user_sent { left } else { left.min(LOGIN_POKE) };
            let found = match self.expect(&patterns, wait).await {
                Err(ExpectError::Timeout { .. }) if !user_sent && !left.is_zero() && wait < left => {
                    if self.received == heard {
                        self.send(&self.line_ending.clone()).await?;
                    }
                    heard = self.received;
                    continue;
                }
                Err(ExpectError::Timeout { channel, patterns, tail, .. }) => {
                    return Err(ExpectError::Timeout { channel, waited: timeout, patterns, tail })
                }
                other => other?,
            };
            // Before the user name is sent, act only on the console's latest state: a
            // prompt another one followed is old text (an earlier step left it unread, or
            // a login prompt came again after Enter). A shell prompt is an open shell only
            // if the console stayed quiet after it, with nothing printed since: logging a
            // shell out types `exit`, which must not land at a login prompt on its way
            // (after an `exit` an earlier step typed, say, whose echo followed the prompt).
            // The quiet time counts from now: what was typed last may not have been
            // echoed yet. Nothing else coming, Enter is pressed as above and the shell
            // prompts again.
            if !user_sent {
                let moved_on = found.index == SHELL && {
                    let quiet = login.shell_quiet_ms.map_or(OPEN_SHELL_QUIET, Duration::from_millis);
                    self.read_until_quiet(quiet, Some(Instant::now()), deadline).await?;
                    !self.unread_is_blank()
                };
                if moved_on || self.search(&patterns).is_some() {
                    continue;
                }
            }
            match found.index {
                LOGIN if password_sent => return Err(self.refused(login, "asked for the login again")),
                LOGIN => {
                    self.send_line(&login.user).await?;
                    user_sent = true;
                }
                PASSWORD => {
                    let Some(password) = password else {
                        return Err(ExpectError::PasswordRequired { channel: self.channel().clone(), user: login.user.clone() });
                    };
                    if password_sent {
                        return Err(self.refused(login, "asked for the password again"));
                    }
                    self.send_secret_line(password).await?;
                    password_sent = true;
                }
                FAILURE => {
                    let response = format!("{}{}", tail_of(&found.before, 80), found.matched_text());
                    return Err(self.refused(login, response.trim()));
                }
                _ if !user_sent => {
                    let shell = OpenShell::from_prompt(&found);
                    if outcome.logged_out.len() >= MAX_LOGOUTS {
                        return Err(ExpectError::StillLoggedIn {
                            channel: self.channel().clone(),
                            prompt: shell.prompt,
                            tries: MAX_LOGOUTS,
                            logged_out: outcome.logged_out,
                        });
                    }
                    outcome.logged_out.push(shell);
                    self.send_line("exit").await?;
                }
                _ => return Ok(outcome),
            }
        }
    }

    /// Run a command at the shell prompt and return its output and exit status.
    ///
    /// Types `COMMAND; echo PRF_<tag>''_E:$?` and waits for `PRF_<tag>_E:<status>`:
    /// the quotes make the echoed command line differ from the marker the shell prints,
    /// and the tag is fresh for every call, so neither the echo nor an earlier command's
    /// output can be mistaken for this one's end. Then waits for the prompt, so the
    /// next command starts clean. The command must be a plain command line (no
    /// trailing `&` or `#` comment, since the marker is appended with `;`).
    pub async fn run(&mut self, command: &str, timeout: Duration) -> Result<CommandOutput, ExpectError> {
        let deadline = Instant::now() + timeout;
        let tag = marker_tag();
        let typed_marker = format!("PRF_{tag}''_E:$?");
        let done = Regex::new(&format!(r"PRF_{tag}_E:(-?\d+)\r?\n")).expect("marker pattern is valid");
        self.send_line(&format!("{command}; echo {typed_marker}")).await?;
        let found = self.expect(std::slice::from_ref(&done), timeout).await?;
        let status_text = found.group_text(1).unwrap_or_default();
        let exit_status = status_text.parse::<i32>().map_err(|_| ExpectError::BadExitStatus {
            channel: self.channel().clone(),
            command: command.to_string(),
            status: status_text.clone(),
        })?;

        let before = found.before_text();
        // Drop the echoed command line (and anything before it) if the console echoes.
        let output = match before.rfind(&typed_marker) {
            Some(at) => match before[at..].find('\n') {
                Some(eol) => &before[at + eol + 1..],
                None => "",
            },
            None => before.as_str(),
        };
        let mut output = output.replace("\r\n", "\n").replace('\r', "");
        if output.ends_with('\n') {
            output.pop();
        }

        let left = deadline.saturating_duration_since(Instant::now());
        self.expect_prompt(left).await?;
        Ok(CommandOutput { output, exit_status })
    }

    /// Switch to `user` with the device's own `su`, typing `password` at its prompt:
    /// the device's password check, for a run that must show a password is real without
    /// a console. `su` runs `id -u` as `user`; the shell then prints `su`'s exit status.
    /// Both are printed behind fresh markers the echoed command line cannot match (as
    /// [`Expect::run`] does), so neither an echo nor earlier output is mistaken for them.
    pub async fn switch_user(&mut self, user: &str, password: &Secret, timeout: Duration) -> Result<SwitchOutcome, ExpectError> {
        let deadline = Instant::now() + timeout;
        let tag = marker_tag();
        let uid_marker = regex::Regex::new(&format!(r"PRF_{tag}_U:(\d+)")).expect("marker pattern is valid");
        let done = Regex::new(&format!(r"PRF_{tag}_S:(-?\d+)\r?\n")).expect("marker pattern is valid");
        let password_prompt = self.compile("password prompt", DEFAULT_PASSWORD_PROMPT)?;
        // `""` and `''` split the markers in the typed line (and so in its echo); the
        // shells that run them join them again.
        self.send_line(&format!("su {user} -c 'echo PRF_{tag}_\"\"U:$(id -u)'; echo PRF_{tag}\'\'_S:$?")).await?;
        let patterns = [password_prompt, done];
        let mut asked_password = false;
        let mut said = String::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let found = self.expect(&patterns, left).await?;
            said.push_str(&found.before_text());
            if found.index == 1 {
                break found;
            }
            if asked_password {
                // Asked again: no second try; cancel, and read su's status.
                self.send(b"\x03").await?;
            } else {
                self.send_secret_line(password).await?;
                asked_password = true;
            }
        };
        let status_text = found.group_text(1).unwrap_or_default();
        let status = status_text.parse::<i32>().map_err(|_| ExpectError::BadExitStatus {
            channel: self.channel().clone(),
            command: format!("su {user}"),
            status: status_text.clone(),
        })?;
        let uid = uid_marker.captures(&said).and_then(|c| c[1].parse::<u32>().ok());
        let response = said
            .lines()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.contains(&format!("PRF_{tag}")) && !DEFAULT_PASSWORD_PROMPT_TEXT.is_match(l))
            .collect::<Vec<_>>()
            .join("\n");
        let left = deadline.saturating_duration_since(Instant::now());
        self.expect_prompt(left).await?;
        Ok(SwitchOutcome { user: user.to_string(), accepted: status == 0 && uid.is_some(), status, uid, asked_password, response })
    }

    fn compile(&self, what: &'static str, pattern: &str) -> Result<Regex, ExpectError> {
        Regex::new(pattern).map_err(|err| ExpectError::BadPattern {
            channel: self.channel().clone(),
            what,
            pattern: pattern.to_string(),
            reason: err.to_string().lines().last().unwrap_or_default().trim().to_string(),
        })
    }

    fn refused(&self, login: &ConsoleLogin, response: &str) -> ExpectError {
        ExpectError::LoginRefused { channel: self.channel().clone(), user: login.user.clone(), response: response.into() }
    }

    fn ingest(&mut self, raw: &[u8]) {
        self.received += raw.len() as u64;
        if self.pending_pos == self.pending.len() {
            self.pending.clear();
            self.pending_pos = 0;
        }
        let from = self.pending.len();
        self.filter.filter(raw, &mut self.pending);
        let fresh = &self.pending[from..];
        let keep = fresh.len().min(RECENT_BYTES);
        let overflow = (self.recent.len() + keep).saturating_sub(RECENT_BYTES);
        self.recent.drain(..overflow);
        self.recent.extend(&fresh[fresh.len() - keep..]);
    }

    /// Find the earliest pattern or death string, moving pending text into the
    /// window step by step so that nothing is skipped when a read overflows it.
    fn search(&mut self, patterns: &[Regex]) -> Option<Hit> {
        loop {
            if let Some(hit) = self.earliest(patterns) {
                return Some(hit);
            }
            let remaining = self.pending.len() - self.pending_pos;
            if remaining == 0 {
                return None;
            }
            let step =
                if self.window.len() + remaining <= self.window_limit { remaining } else { (self.window_limit / 4).max(1).min(remaining) };
            self.window.extend_from_slice(&self.pending[self.pending_pos..self.pending_pos + step]);
            self.pending_pos += step;
            self.trim_window();
        }
    }

    fn trim_window(&mut self) {
        let excess = self.window.len().saturating_sub(self.window_limit);
        if excess > 0 {
            self.window.drain(..excess);
            self.discarded += excess as u64;
        }
    }

    fn earliest(&self, patterns: &[Regex]) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        let mut best_start = usize::MAX;
        for (index, pattern) in patterns.iter().enumerate() {
            if let Some(m) = pattern.find(&self.window) {
                if m.start() < best_start {
                    best_start = m.start();
                    best = Some(Hit::Pattern { index, start: m.start(), end: m.end() });
                }
            }
        }
        // On a tie the caller's pattern wins: waiting for a panic on purpose is allowed.
        for (index, (_, pattern)) in self.death.iter().enumerate() {
            if let Some(m) = pattern.find(&self.window) {
                if m.start() < best_start {
                    best_start = m.start();
                    best = Some(Hit::Death { index, start: m.start(), end: m.end() });
                }
            }
        }
        best
    }

    fn take_match(&mut self, patterns: &[Regex], index: usize, start: usize, end: usize) -> Match {
        let groups = patterns[index]
            .captures(&self.window)
            .map(|caps| caps.iter().map(|g| g.map(|g| g.as_bytes().to_vec())).collect())
            .unwrap_or_default();
        let found = Match {
            index,
            before: self.window[..start].to_vec(),
            matched: self.window[start..end].to_vec(),
            groups,
            discarded: std::mem::take(&mut self.discarded),
        };
        self.window.drain(..end);
        found
    }

    fn death_error(&mut self, index: usize, start: usize, end: usize) -> ExpectError {
        let from = start.saturating_sub(DEATH_CONTEXT);
        let to = (end + DEATH_CONTEXT).min(self.window.len());
        let context = String::from_utf8_lossy(&self.window[from..to]).into_owned();
        self.window.drain(..end);
        ExpectError::DeathString { channel: self.channel().clone(), pattern: self.death[index].0.clone(), context }
    }

    fn timeout_error(&self, patterns: &[Regex], waited: Duration) -> ExpectError {
        let recent: Vec<u8> = self.recent.iter().copied().collect();
        ExpectError::Timeout {
            channel: self.channel().clone(),
            waited,
            patterns: patterns.iter().map(|p| p.as_str().to_string()).collect(),
            tail: tail_of(&recent, TAIL_CHARS),
        }
    }
}

/// The last `chars` characters of `text`, as lossy UTF-8.
fn tail_of(text: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let skip = text.chars().count().saturating_sub(chars);
    text.chars().skip(skip).collect()
}

/// A short tag that is fresh for every command of this process (the console's command
/// markers, and those of the SSH session's shell).
pub(crate) fn marker_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; the counter makes tags differ per call.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Feed, WriteRequest};
    use std::sync::Arc;
    use tokio::sync::mpsc;

    /// An engine over a bare feed (no device), plus a sink for what it writes.
    fn engine() -> (Expect, Arc<Feed>, mpsc::Receiver<WriteRequest>) {
        let feed = Feed::new(1 << 20);
        let (tx, rx) = mpsc::channel(4);
        let stream = ByteStream::new(ChannelId::new("dut", "console"), feed.clone(), tx);
        (Expect::new(stream), feed, rx)
    }

    fn re(p: &str) -> Regex {
        Regex::new(p).unwrap()
    }

    #[tokio::test]
    async fn unconsumed_text_counts_what_a_wait_left_and_what_was_not_read_yet() {
        let (mut e, feed, _rx) = engine();
        assert_eq!(e.unconsumed(), 0);
        feed.push(b"boot ok\r\n# hun");
        e.expect(&[re("# ")], Duration::from_secs(1)).await.unwrap();
        assert_eq!(e.unconsumed(), 3);
        // Arrived, not read by any wait yet; an escape sequence is no text.
        feed.push(b"\x1b[0mter2");
        assert_eq!(e.unconsumed(), 7);
        // A match ending inside what a redactor would hold ("hun...") leaves fewer
        // bytes unread than it holds: the executor's cue to record them in the step.
        e.expect(&[re("hu")], Duration::from_secs(1)).await.unwrap();
        assert_eq!(e.unconsumed(), 5);
    }

    #[tokio::test]
    async fn earliest_match_wins_and_before_excludes_control_sequences() {
        let (mut e, feed, _rx) = engine();
        feed.push(b"noise \x1b[31mBBB\x1b[0m then AAA");
        let m = e.expect(&[re("AAA"), re("BBB")], Duration::from_secs(1)).await.unwrap();
        assert_eq!((m.index, m.before_text().as_str(), m.matched_text().as_str()), (1, "noise ", "BBB"));
        let m = e.expect(&[re("AAA"), re("BBB")], Duration::from_secs(1)).await.unwrap();
        assert_eq!((m.index, m.before_text().as_str()), (0, " then "));
    }

    #[tokio::test]
    async fn pattern_split_across_reads_and_escape_split_across_reads() {
        let (mut e, feed, _rx) = engine();
        let f = feed.clone();
        let writer = tokio::spawn(async move {
            for piece in [&b"root@ru1:~\x1b["[..], b"0m", b"# "] {
                f.push(piece);
                tokio::task::yield_now().await;
            }
        });
        let m = e.expect(&[re(r"ru1:~# $")], Duration::from_secs(2)).await.unwrap();
        assert_eq!(m.matched_text(), "ru1:~# ");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn timeout_shows_the_tail_of_what_was_said() {
        let (mut e, feed, _rx) = engine();
        let long = format!("{}THE END", "x".repeat(500));
        feed.push(long.as_bytes());
        let err = e.expect(&[re("never")], Duration::from_millis(50)).await.unwrap_err();
        let ExpectError::Timeout { tail, patterns, channel, .. } = &err else { panic!("{err}") };
        assert_eq!(tail.chars().count(), TAIL_CHARS);
        assert!(tail.ends_with("THE END"));
        assert_eq!(patterns, &["never".to_string()]);
        assert_eq!(channel.device, "dut");
        assert!(err.to_string().contains("dut/console"));
    }

    #[tokio::test]
    async fn death_string_beats_a_later_match_and_is_reported_once() {
        let (mut e, feed, _rx) = engine();
        e.set_death_strings(&["Kernel panic".into(), r"Oops: \d+".into()]).unwrap();
        feed.push(b"booting\r\nKernel panic - not syncing\r\nlogin: ");
        let err = e.expect(&[re("login: $")], Duration::from_secs(1)).await.unwrap_err();
        let ExpectError::DeathString { pattern, context, .. } = err else { panic!("{err}") };
        assert_eq!(pattern, "Kernel panic");
        assert!(context.contains("not syncing"));
        // Reported once: the next wait continues after it.
        assert_eq!(e.expect(&[re("login: $")], Duration::from_secs(1)).await.unwrap().matched_text(), "login: ");
        assert!(e.set_death_strings(&["Oops(".into()]).is_err());
    }

    #[tokio::test]
    async fn window_stays_bounded_and_nothing_is_skipped_in_a_large_read() {
        let (mut e, feed, _rx) = engine();
        e.set_window_limit(4096);
        let mut flood = "y".repeat(100_000);
        flood.insert_str(50_000, "NEEDLE");
        feed.push(flood.as_bytes());
        let m = e.expect(&[re("NEEDLE")], Duration::from_secs(1)).await.unwrap();
        assert!(m.discarded > 40_000, "{}", m.discarded);
        assert!(m.before.len() <= 4096);
        assert!(e.buffered() <= 4096);
        let err = e.expect(&[re("never")], Duration::from_millis(20)).await.unwrap_err();
        assert!(matches!(err, ExpectError::Timeout { .. }));
        assert!(e.buffered() <= 4096);
    }

    #[tokio::test]
    async fn lost_stream_ends_the_wait_with_the_loss() {
        let (mut e, feed, _rx) = engine();
        feed.close(ChannelError::lost(&ChannelId::new("dut", "console"), "EIO"));
        let err = e.expect(&[re("x")], Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, ExpectError::Lost(ChannelError::ConsoleLost { .. })));
    }

    #[tokio::test]
    async fn settle_forgets_what_came_before_once_the_device_is_quiet() {
        let (mut e, feed, _rx) = engine();
        feed.push(b"old boot\r\nru1 login: ");
        let f = feed.clone();
        let late = tokio::spawn(async move {
            // Still part of the old output: arrives within the quiet time.
            tokio::time::sleep(Duration::from_millis(20)).await;
            f.push(b"\r\nru1 login: ");
        });
        let forgotten = e.settle(Duration::from_millis(150), Duration::from_secs(2)).await.unwrap();
        late.await.unwrap();
        assert_eq!(forgotten, "old boot\r\nru1 login: \r\nru1 login: ".len());
        assert_eq!(e.buffered(), 0);
        let err = e.expect(&[re("login: $")], Duration::from_millis(30)).await.unwrap_err();
        assert!(matches!(err, ExpectError::Timeout { .. }), "the old prompt must not match: {err}");
        feed.push(b"U-Boot\r\nru1 login: ");
        assert_eq!(e.expect(&[re("login: $")], Duration::from_secs(1)).await.unwrap().before_text(), "U-Boot\r\nru1 ");

        // A console that never goes quiet is cut off at the limit.
        let f = feed.clone();
        let chatter = tokio::spawn(async move {
            for _ in 0..40 {
                f.push(b"x");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let started = Instant::now();
        e.settle(Duration::from_millis(100), Duration::from_millis(150)).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(350), "{:?}", started.elapsed());
        chatter.abort();
    }

    #[tokio::test]
    async fn settle_does_not_wait_on_a_console_already_quiet_long_enough() {
        let (mut e, feed, _rx) = engine();
        feed.push(b"# ");
        // Quiet since its last bytes for longer than the settle asks: no wait.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let started = Instant::now();
        let forgotten = e.settle(Duration::from_millis(100), Duration::from_secs(2)).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(50), "waited {:?} on a quiet console", started.elapsed());
        assert_eq!(forgotten, 2, "the unread prompt is still forgotten");
        // Bytes that just came make it wait for the quiet time.
        feed.push(b"late\r\n");
        let started = Instant::now();
        e.settle(Duration::from_millis(100), Duration::from_secs(2)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(90), "waited only {:?} after fresh output", started.elapsed());
    }

    #[tokio::test]
    async fn a_console_that_answers_every_exit_with_a_new_shell_is_still_logged_in() {
        // BusyBox init respawning `-/bin/sh` on the console: no login is ever asked for.
        let (mut e, feed, mut rx) = engine();
        let prompt = "\x1b[6nroot@ru-bb:/# ";
        feed.push(prompt.as_bytes());
        let device = feed.clone();
        let console = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(write) = rx.recv().await {
                let line = String::from_utf8_lossy(&write.data).into_owned();
                let _ = write.done.send(Ok(()));
                device.push(format!("{}\r\n{prompt}", line.trim_end()).as_bytes());
                lines.push(line);
            }
            lines
        });
        let login = ConsoleLogin::as_user("root");
        let err = e.login(&login, Some(&Secret::new("env:PW", "pw")), Duration::from_secs(5)).await.unwrap_err();
        let ExpectError::StillLoggedIn { prompt, tries, logged_out, channel } = &err else { panic!("{err}") };
        assert_eq!((prompt.as_str(), *tries, channel.device.as_str()), ("root@ru-bb:/#", MAX_LOGOUTS, "dut"));
        assert_eq!(logged_out.len(), MAX_LOGOUTS, "{logged_out:?}");
        assert!(logged_out.iter().all(|s| s.prompt == "root@ru-bb:/#" && s.account.as_deref() == Some("root")), "{logged_out:?}");
        drop(e);
        // One `exit` per shell, and nothing else: no user name, no password.
        assert_eq!(console.await.unwrap(), vec!["exit\n"; MAX_LOGOUTS]);
    }

    /// A getty, `login` and a shell on a console: answers each line written, as a
    /// device does, starting in `state` (`login` or `shell`). Returns the lines it was sent.
    fn getty(state: &'static str, feed: Arc<Feed>, mut rx: mpsc::Receiver<WriteRequest>) -> tokio::task::JoinHandle<Vec<String>> {
        tokio::spawn(async move {
            let (mut lines, mut state, mut typed) = (Vec::new(), state, String::new());
            while let Some(write) = rx.recv().await {
                typed.push_str(&String::from_utf8_lossy(&write.data));
                let _ = write.done.send(Ok(()));
                let Some(eol) = typed.find('\n') else { continue };
                let line = typed[..eol].trim_end().to_string();
                typed.drain(..=eol);
                let (answer, next) = match (state, line.as_str()) {
                    ("login", "") => ("\r\nru1 login: ", "login"),
                    ("login", _) => ("\r\nPassword: ", "password"),
                    ("password", "pw") => ("\r\nroot@ru1:~# ", "shell"),
                    ("password", _) => ("\r\nLogin incorrect\r\nru1 login: ", "login"),
                    (_, "exit") => ("exit\r\nlogout\r\n\r\nru1 login: ", "login"),
                    (_, _) => ("\r\nsh: not found\r\nroot@ru1:~# ", "shell"),
                };
                feed.push(format!("{}{answer}", if state == "password" { "" } else { line.as_str() }).as_bytes());
                state = next;
                lines.push(line);
            }
            lines
        })
    }

    /// Logs in as root at a [`getty`] starting in `state`, the console having shown
    /// `shown`: each piece of text after its delay from the start. The outcome and the
    /// lines the console was sent.
    async fn login_after(state: &'static str, shown: &[(Duration, &'static [u8])]) -> (LoginOutcome, Vec<String>) {
        let (outcome, sent) = login_attempt(ConsoleLogin::as_user("root"), state, shown).await;
        (outcome.unwrap(), sent)
    }

    /// [`login_after`] with `login`, whatever its outcome.
    async fn login_attempt(
        login: ConsoleLogin,
        state: &'static str,
        shown: &[(Duration, &'static [u8])],
    ) -> (Result<LoginOutcome, ExpectError>, Vec<String>) {
        let (mut e, feed, rx) = engine();
        let console = feed.clone();
        let shown = shown.to_vec();
        tokio::spawn(async move {
            let start = Instant::now();
            for (at, text) in shown {
                tokio::time::sleep_until(start + at).await;
                console.push(text);
            }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let device = getty(state, feed, rx);
        let outcome = e.login(&login, Some(&Secret::new("env:PW", "pw")), Duration::from_secs(5)).await;
        drop(e);
        (outcome, device.await.unwrap())
    }

    #[tokio::test]
    async fn a_login_acts_on_the_console_s_latest_prompt_not_on_old_text_left_unread() {
        let now = Duration::ZERO;
        // An earlier step left a shell prompt unread and then typed `exit`: the console
        // went on to its login prompt. Typing `exit` there would be taken as a user name.
        let (outcome, sent) = login_after("login", &[(now, b"passwd: changed\r\nroot@ru1:~# exit\r\n\r\nru1 login: ")]).await;
        assert!(outcome.logged_out.is_empty(), "no shell was open: {outcome:?}");
        assert_eq!(sent, ["root", "pw"]);
        // Old text of a refused login is not this login's refusal.
        let (_, sent) = login_after("login", &[(now, b"ru1 login: oper\r\nPassword: \r\nLogin incorrect\r\nru1 login: ")]).await;
        assert_eq!(sent, ["root", "pw"]);
    }

    #[tokio::test]
    async fn a_shell_prompt_is_logged_out_only_once_the_console_is_quiet_after_it() {
        let (now, soon, late) = (Duration::ZERO, OPEN_SHELL_QUIET / 3, OPEN_SHELL_QUIET * 3);
        // The shell prompt is there when the login starts; the console's answer to an
        // `exit` typed just before comes a moment later.
        let (outcome, sent) = login_after("login", &[(now, b"root@ru1:~# "), (soon, b"exit\r\n\r\nru1 login: ")]).await;
        assert!(outcome.logged_out.is_empty(), "{outcome:?}");
        assert_eq!(sent, ["root", "pw"]);
        // The `exit` echoed after the prompt, the login prompt only after the quiet
        // time (a getty slow to start again): still not a shell to log out.
        let shown: [(Duration, &[u8]); 3] = [(now, b"root@ru1:~# "), (soon, b"exit\r\n"), (late, b"\r\nru1 login: ")];
        let (outcome, sent) = login_after("login", &shown).await;
        assert!(outcome.logged_out.is_empty(), "{outcome:?}");
        assert_eq!(sent, ["root", "pw"]);
        // A shell really left open is logged out, and the login done for real.
        let (outcome, sent) = login_after("shell", &[(now, b"root@ru1:~# ")]).await;
        assert_eq!(outcome.logged_out, vec![OpenShell { prompt: "root@ru1:~#".into(), account: Some("root".into()) }]);
        assert_eq!(sent, ["exit", "root", "pw"]);
    }

    #[tokio::test]
    async fn a_rig_gives_a_lagging_console_a_longer_quiet_time() {
        let (now, lag) = (Duration::ZERO, OPEN_SHELL_QUIET * 2);
        let shown: [(Duration, &[u8]); 2] = [(now, b"root@ru1:~# "), (lag, b"exit\r\n\r\nru1 login: ")];
        // The default quiet time ends before the echo comes: the shell is taken as open,
        // and its `exit` lands at the login prompt as a user name.
        let (outcome, sent) = login_attempt(ConsoleLogin::as_user("root"), "login", &shown).await;
        assert!(matches!(&outcome, Err(ExpectError::LoginRefused { .. })), "{outcome:?}");
        assert_eq!(sent[0], "exit");
        // The rig's longer one waits for it.
        let patient = ConsoleLogin { shell_quiet_ms: Some(OPEN_SHELL_QUIET.as_millis() as u64 * 4), ..ConsoleLogin::as_user("root") };
        let (outcome, sent) = login_attempt(patient, "login", &shown).await;
        let outcome = outcome.unwrap();
        assert!(outcome.logged_out.is_empty(), "{outcome:?}");
        assert_eq!(sent, ["root", "pw"]);
    }

    #[test]
    fn marker_tags_are_fresh() {
        assert_ne!(marker_tag(), marker_tag());
    }
}
