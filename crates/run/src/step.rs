//! One step's action through the agents, as the executor and a script's calls both
//! perform it: unless the operator aborts, with its failure recorded as evidence in
//! its range, and the range ended so replay finds the step's events inside it.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use proofrig_evidence::notes::{failure_note, EXECUTOR_CHANNEL};
use proofrig_model::events::{ChannelId, Direction, Recorder};
use proofrig_plan::{ActionKind, Step};
use proofrig_verdict::judge::{failure_output, FailureClass};

use crate::actions::Agents;

/// Record a failed step's (or script call's) failure as its evidence, within its
/// range: `<class>: <message>` on the device's [`EXECUTOR_CHANNEL`]. Nothing for an
/// output that is not a failure.
pub(crate) fn record_failure(recorder: &Recorder, device: &str, output: &Value) {
    if let Some(note) = failure_note(output) {
        recorder.emit(proofrig_model::events::EventKind::Note { channel: ChannelId::new(device, EXECUTOR_CHANNEL), text: note });
    }
}

/// The last sequence number of a step's (or a script call's) range of events, after
/// recording what the redactor holds back that belongs in that range.
///
/// Bytes held on a console, because they could begin a secret, stay held: the device
/// goes on printing, and releasing them would put the first part of a password its
/// boot log or an echo prints, split by the step's end, in the journal in clear. They
/// are recorded when later bytes decide them, in a later step's range. Replay does not
/// miss them there: a console wait is replayed against the console bytes since the
/// last step that consumed the console, kept across steps, so bytes a wait left
/// unread may land in any step before the wait that reads them.
///
/// Except where the step's own console wait consumed some of those held bytes (its
/// match ends inside them): replay looks for what the step matched within the bytes
/// up to the step's end, and would not find it. Then the console is flushed fully, in
/// clear, as the cautious choice for replay; the step matched those bytes, so they are
/// in its output too, unless it matched only part of them (the end of a pattern, or a
/// prompt, that looks like the beginning of a secret, which is rare). Which is the case
/// is told by counting the text the wait left unread: held bytes are the stream's
/// last ones, so the wait consumed some of them only when fewer bytes than are held
/// were left unread. The count is of filtered text, and bytes the console's pump has
/// recorded but not yet handed over are not in it: it errs towards flushing.
///
/// Only the device's own streams are flushed: another device's belong to its own
/// steps, which may be going on side by side with this one.
///
/// Of those, every stream but the console is flushed fully, as before: each is an exchange that ends
/// within its step (an SSH command's output ends at its exit, an audit or negotiation
/// reads one answer), so no later byte would decide what it holds, and replay reads
/// some of them (the audit's server offer) within the step.
pub(crate) fn end_of_range(recorder: &Recorder, agents: &mut Agents, device: &str, action: ActionKind) -> u64 {
    let unread = match action {
        ActionKind::ConsoleExpect | ActionKind::ConsoleRun => agents.console_unconsumed(device),
        ActionKind::Power
        | ActionKind::Wait
        | ActionKind::ConsoleSend
        | ActionKind::ConsoleLogin
        | ActionKind::SshExec
        | ActionKind::SshFetch
        | ActionKind::SshLogin
        | ActionKind::SshSu
        | ActionKind::SshAudit
        | ActionKind::SshNegotiate
        | ActionKind::SshIdle
        | ActionKind::TcpScan
        | ActionKind::UdpScan
        | ActionKind::SnmpProbe
        | ActionKind::HttpRequest
        | ActionKind::SyslogReceive
        | ActionKind::TlsAudit
        | ActionKind::Set
        | ActionKind::Assert
        | ActionKind::Script => None,
    };
    recorder.flush_device_at_step_end(device, flushes_fully_at_step_end(device, unread)).saturating_sub(1)
}

/// Which streams a step's end records in full (see [`end_of_range`]): every stream but
/// a console, and the console of `device` when its wait, which left `unread` bytes of
/// text unread, consumed some of what the redactor holds.
pub fn flushes_fully_at_step_end(device: &str, unread: Option<usize>) -> impl Fn(&ChannelId, Direction, usize) -> bool + '_ {
    move |channel, direction, held| {
        channel.channel != "console"
            || (channel.device == device && direction == Direction::In && unread.is_some_and(|unread| held > unread))
    }
}

/// What performing an action needs from the run while it goes: the agents, the
/// recorder, and the operator's abort signal.
pub(crate) struct Live<'a> {
    pub agents: &'a mut Agents,
    pub recorder: &'a Recorder,
    pub abort: &'a mut watch::Receiver<bool>,
}

/// Perform a step's action on `device` unless the operator aborts first or meanwhile;
/// a failure or the abort becomes the step's output. Script calls go through here too.
pub(crate) async fn perform_or_abort(live: &mut Live<'_>, device: &str, step: &Step, spec: &Value, timeout: Duration) -> Value {
    let Live { agents, abort, .. } = live;
    if *abort.borrow() {
        return failure_output(FailureClass::Aborted, "stopped by the operator");
    }
    tokio::select! {
        result = agents.perform(device, step, spec, timeout) => match result {
            Ok(output) => output,
            Err((class, message)) => failure_output(class, &message),
        },
        _ = wait_for_abort(abort) => failure_output(FailureClass::Aborted, "stopped by the operator"),
    }
}

pub(crate) async fn wait_for_abort(abort: &mut watch::Receiver<bool>) {
    while !*abort.borrow() {
        if abort.changed().await.is_err() {
            // Nobody can abort any more: wait forever.
            std::future::pending::<()>().await;
        }
    }
}
