//! A technician's hands at the dashboard: power actions and live consoles on a rig
//! they hold a reservation of, carried out here, where the rig is wired.
//!
//! The server sends a [`BenchOp`] with the reservation's fencing token. Before
//! anything is touched, [`crate::accept::Assignments::admit_bench`] checks that the
//! rig is served here, that no job runs on it, and that the token is not older than
//! one accepted for the rig (a reservation that passed to someone else, or a job
//! that ran since, makes it stale), and records it. Then:
//!
//! - **power** goes through the same controller as `proofrig power`, recorded as a
//!   session transcript in the lab host's `sessions/` directory;
//! - a **console** is opened like `proofrig console` (recorded the same way: what is
//!   typed at a password prompt as its length only), answered once open, and then
//!   streamed: the device's output goes up by offset ([`ConsoleOutput`]), typed keys
//!   come down ([`ConsoleWait`]), until the server says the session is over (the
//!   person left, their reservation ended), the device's channel fails, a job or a
//!   newer reservation takes the rig, or the server has been unreachable for
//!   [`UNREACHABLE_LIMIT`] (nobody can be watching the lease then).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proofrig_agents::power::PowerController;
use proofrig_agents::serial::open_console;
use proofrig_model::rig::Rig;
use proofrig_proto::ids::FencingToken;
use proofrig_proto::labhost::{
    BenchAction, BenchOp, BenchOpAnswer, BenchOutcome, ConsoleOutput, ConsoleWait, LabHostMessage, ServerMessage,
};
use proofrig_proto::wire::MAX_POLL_WAIT;
use tokio::sync::{mpsc, watch};

use crate::link::{AgentError, Link};
use crate::session::{forward, PasswordPrompt, SessionLog};

/// A console whose server has not answered for this long is closed.
pub const UNREACHABLE_LIMIT: Duration = Duration::from_secs(30);
/// The most output sent in one message.
const OUTPUT_CHUNK_MAX: usize = 64 * 1024;

/// The bench operations of this lab host: those being carried out, those answered
/// (a resent operation gets its answer again, and is never carried out twice), and
/// the open consoles (closed when a job or a newer token takes their rig).
#[derive(Default)]
pub struct Bench {
    state: Mutex<BenchState>,
}

#[derive(Default)]
struct BenchState {
    busy: std::collections::HashSet<u64>,
    answered: HashMap<u64, BenchOpAnswer>,
    consoles: Vec<OpenConsole>,
}

struct OpenConsole {
    op: u64,
    by: String,
    rig: String,
    device: String,
    fencing: FencingToken,
    close: watch::Sender<Option<String>>,
}

/// What to do with an operation that arrived.
pub enum Arrived {
    /// New: carry it out.
    New,
    /// Being carried out: nothing.
    Busy,
    /// Answered before: send this again.
    Answered(BenchOpAnswer),
}

impl Bench {
    fn with<T>(&self, f: impl FnOnce(&mut BenchState) -> T) -> T {
        f(&mut self.state.lock().expect("the bench's lock is never poisoned"))
    }

    pub fn arrived(&self, op: u64) -> Arrived {
        self.with(|s| {
            if let Some(answer) = s.answered.get(&op) {
                return Arrived::Answered(answer.clone());
            }
            match s.busy.insert(op) {
                true => Arrived::New,
                false => Arrived::Busy,
            }
        })
    }

    /// Keep `answer` (the newest 256 answers are kept).
    pub fn answered(&self, answer: &BenchOpAnswer) {
        self.with(|s| {
            s.busy.remove(&answer.op);
            if s.answered.len() >= 256 {
                if let Some(oldest) = s.answered.keys().min().copied() {
                    s.answered.remove(&oldest);
                }
            }
            s.answered.insert(answer.op, answer.clone());
        });
    }

    /// Close every console on `rig` opened under a token older than `fencing` (a job
    /// or a newer reservation took the rig), or every console on it when `None`.
    pub fn take_rig(&self, rig: &str, fencing: Option<FencingToken>, why: &str) {
        self.with(|s| {
            for c in s.consoles.iter().filter(|c| c.rig == rig && fencing.is_none_or(|f| c.fencing < f)) {
                let _ = c.close.send(Some(why.to_string()));
            }
        });
    }

    /// Close every open console (the agent stops).
    pub fn close_all(&self, why: &str) {
        self.with(|s| {
            for c in &s.consoles {
                let _ = c.close.send(Some(why.to_string()));
            }
        });
    }

    /// Take the device's console for `op`: a console is one session at a time, as a
    /// serial port is (two readers would each get half of what the device prints).
    fn register(&self, op: &BenchOp) -> Result<watch::Receiver<Option<String>>, String> {
        self.with(|s| {
            if let Some(open) = s.consoles.iter().find(|c| c.rig == op.rig && c.device == op.device) {
                return Err(format!(
                    "the console of {} on rig {} is open already (by {}, bench operation {}); close that session first",
                    op.device, op.rig, open.by, open.op
                ));
            }
            let (close, closed) = watch::channel(None);
            s.consoles.push(OpenConsole {
                op: op.op,
                by: op.by.clone(),
                rig: op.rig.clone(),
                device: op.device.clone(),
                fencing: op.fencing,
                close,
            });
            Ok(closed)
        })
    }

    fn unregister(&self, op: u64) {
        self.with(|s| s.consoles.retain(|c| c.op != op));
    }
}

/// Carry out a power action on `rig` (admitted already); the answer.
pub async fn power(op: &BenchOp, rig: &Rig, sessions: &Path) -> BenchOutcome {
    if let Err(e) = rig.device(&op.device) {
        return BenchOutcome::Refused { reason: e.to_string() };
    }
    let log = match SessionLog::create(sessions, rig, &op.device, "power") {
        Ok(log) => log,
        Err(e) => return BenchOutcome::Failed { reason: format!("cannot record the session in {}: {e}", sessions.display()) },
    };
    note(&log, &op.device, &format!("{} by {} from the dashboard, under {}", op.action.name(), op.by, op.fencing));
    let controller = match PowerController::new(rig, log.recorder.clone()) {
        Ok(c) => c,
        Err(e) => return BenchOutcome::Refused { reason: e.to_string() },
    };
    let done = match op.action {
        BenchAction::PowerOn => controller.on(&op.device).await,
        BenchAction::PowerOff => controller.off(&op.device).await,
        BenchAction::PowerCycle => controller.cycle(&op.device, None).await,
        BenchAction::Console => unreachable!("a console is not a power action"),
    };
    match done {
        Ok(state) => BenchOutcome::Done { detail: format!("{}: power {state}; recorded in {}", op.device, file_name(&log.path)) },
        Err(e) => BenchOutcome::Failed { reason: e.to_string() },
    }
}

fn note(log: &SessionLog, device: &str, text: &str) {
    log.recorder.emit(proofrig_model::events::EventKind::Note {
        channel: proofrig_model::events::ChannelId::new(device, "bench"),
        text: text.to_string(),
    });
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Where a lab host's bench sessions are recorded, under its state directory.
pub fn sessions_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions")
}

/// Open the console (admitted already) and serve it until the session is over. The
/// answer is sent as soon as the console is open (or could not be), through `answer`.
pub async fn console(bench: Arc<Bench>, link: Link, op: BenchOp, rig: Rig, sessions: PathBuf, answer: impl AsyncFnOnce(BenchOutcome)) {
    let spec = match rig.device(&op.device) {
        Ok(spec) => spec,
        Err(e) => return answer(BenchOutcome::Refused { reason: e.to_string() }).await,
    };
    let Some(console_spec) = spec.console.clone() else {
        return answer(BenchOutcome::Refused { reason: format!("device `{}` of rig {} has no console", op.device, op.rig) }).await;
    };
    let closed = match bench.register(&op) {
        Ok(closed) => closed,
        Err(reason) => return answer(BenchOutcome::Refused { reason }).await,
    };
    let log = match SessionLog::create(&sessions, &rig, &op.device, "console") {
        Ok(log) => log,
        Err(e) => {
            bench.unregister(op.op);
            return answer(BenchOutcome::Failed { reason: format!("cannot record the session in {}: {e}", sessions.display()) }).await;
        }
    };
    note(&log, &op.device, &format!("console opened by {} from the dashboard, under {}", op.by, op.fencing));
    let stream = match open_console(&op.device, &console_spec, log.recorder.clone()).await {
        Ok(stream) => stream,
        Err(e) => {
            bench.unregister(op.op);
            return answer(BenchOutcome::Failed { reason: e.to_string() }).await;
        }
    };
    let prompt = PasswordPrompt::new(console_spec.login.as_ref().and_then(|l| l.password_prompt.as_deref()));
    answer(BenchOutcome::Done { detail: format!("console open; recorded on the lab host in {}", file_name(&log.path)) }).await;
    let why = serve(&link, &op, stream, prompt, closed).await;
    note(&log, &op.device, &format!("console closed: {why}"));
    tracing::info!("console of {} on rig {} (bench operation {}) closed: {why}", op.device, op.rig, op.op);
    bench.unregister(op.op);
}

/// Relay the console until the session is over; why it ended.
async fn serve(
    link: &Link,
    op: &BenchOp,
    mut stream: proofrig_agents::channel::ByteStream,
    mut prompt: PasswordPrompt,
    mut closed: watch::Receiver<Option<String>>,
) -> String {
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (ended_tx, mut ended) = watch::channel::<Option<String>>(None);
    let up = tokio::spawn(send_output(link.clone(), op.clone(), out_rx, ended_tx.clone()));
    let down = tokio::spawn(fetch_input(link.clone(), op.clone(), in_tx, ended_tx.clone()));
    let why = loop {
        tokio::select! {
            read = stream.read() => match read {
                Ok(bytes) => {
                    prompt.device_said(&bytes);
                    let _ = out_tx.send(bytes);
                }
                Err(e) => {
                    let _ = ended_tx.send(Some(format!("the device's console failed: {e}")));
                }
            },
            keys = in_rx.recv() => match keys {
                Some(keys) => {
                    if let Err(e) = forward(&stream, &mut prompt, &keys).await {
                        let _ = ended_tx.send(Some(format!("cannot type on the device's console: {e}")));
                    }
                }
                None => break "the server link ended".to_string(),
            },
            _ = closed.changed() => {
                if let Some(why) = closed.borrow().clone() {
                    break why;
                }
            }
            _ = ended.changed() => {
                if let Some(why) = ended.borrow().clone() {
                    break why;
                }
            }
        }
    };
    // Tell the server (if it was not the one that ended it), then stop the pumps.
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), up).await;
    down.abort();
    let _ = link
        .send(&LabHostMessage::ConsoleOutput(ConsoleOutput {
            op: op.op,
            fencing: op.fencing,
            offset: u64::MAX,
            data: Vec::new(),
            ended: Some(why.clone()),
        }))
        .await;
    why
}

/// The device's output up to the server, in order, by offset; a gap the server
/// reports is sent again from what it holds.
async fn send_output(link: Link, op: BenchOp, mut bytes: mpsc::UnboundedReceiver<Vec<u8>>, ended: watch::Sender<Option<String>>) {
    let (mut pending, mut offset) = (Vec::<u8>::new(), 0u64);
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    loop {
        if pending.is_empty() {
            match bytes.recv().await {
                Some(b) => pending.extend_from_slice(&b),
                None => return,
            }
        }
        while let Ok(b) = bytes.try_recv() {
            pending.extend_from_slice(&b);
        }
        let take = pending.len().min(OUTPUT_CHUNK_MAX);
        let message = LabHostMessage::ConsoleOutput(ConsoleOutput {
            op: op.op,
            fencing: op.fencing,
            offset,
            data: pending[..take].to_vec(),
            ended: None,
        });
        match link.send(&message).await {
            Ok(answer) => {
                unreachable_since = None;
                for m in answer {
                    if let ServerMessage::ConsoleHeld(held) = m {
                        let sent = held.held.saturating_sub(offset).min(take as u64) as usize;
                        pending.drain(..sent);
                        offset += sent as u64;
                        if let Some(why) = held.close {
                            let _ = ended.send(Some(why));
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                if !keep_trying(&mut unreachable_since, &e, &ended).await {
                    return;
                }
            }
        }
    }
}

/// What the person typed, down from the server, to the device.
async fn fetch_input(link: Link, op: BenchOp, keys: mpsc::UnboundedSender<Vec<u8>>, ended: watch::Sender<Option<String>>) {
    let mut from = 0u64;
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    loop {
        let wait =
            LabHostMessage::ConsoleWait(ConsoleWait { op: op.op, fencing: op.fencing, from, wait_ms: MAX_POLL_WAIT.as_millis() as u64 });
        match link.send(&wait).await {
            Ok(answer) => {
                unreachable_since = None;
                for m in answer {
                    if let ServerMessage::ConsoleInput(input) = m {
                        if input.offset <= from && input.offset + input.data.len() as u64 > from {
                            let fresh = input.data[(from - input.offset) as usize..].to_vec();
                            from += fresh.len() as u64;
                            if keys.send(fresh).is_err() {
                                return;
                            }
                        }
                        if let Some(why) = input.close {
                            let _ = ended.send(Some(why));
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                if !keep_trying(&mut unreachable_since, &e, &ended).await {
                    return;
                }
            }
        }
    }
}

/// After a failed request: whether to try again (after a pause), or the session is
/// over (`ended` says why).
async fn keep_trying(since: &mut Option<tokio::time::Instant>, e: &AgentError, ended: &watch::Sender<Option<String>>) -> bool {
    if let Some(why) = given_up(since, e) {
        let _ = ended.send(Some(why));
        return false;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    true
}

/// A failed request: a refusal ends the session; the server unreachable for
/// [`UNREACHABLE_LIMIT`] does too.
fn given_up(since: &mut Option<tokio::time::Instant>, e: &AgentError) -> Option<String> {
    if let AgentError::Refused(r) = e {
        if r.code != proofrig_proto::labhost::RefusalCode::Busy {
            return Some(format!("the server refused the console session: {}", r.message));
        }
    }
    let first = *since.get_or_insert_with(tokio::time::Instant::now);
    (first.elapsed() >= UNREACHABLE_LIMIT).then(|| format!("the server has been unreachable for {} s: {e}", UNREACHABLE_LIMIT.as_secs()))
}
