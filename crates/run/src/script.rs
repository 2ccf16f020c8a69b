//! A `script` step run live: the script on its own thread (Rhai is synchronous), each
//! of its calls performed on the executor's task through the same agents as any step
//! and recorded the same way. The language, its sandbox and its replay on recorded
//! answers live in `proofrig_plan::script`; this is only the live caller.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use proofrig_plan::script::{evaluate, Answer, CallRequest, Caller, Control, ABORTED, RUNNING, TIMED_OUT};
use proofrig_plan::Step;
use proofrig_verdict::judge::{failure_output, FailureClass};

use crate::step::{end_of_range, perform_or_abort, record_failure, wait_for_abort, Live};

/// A script's call on its way from the script's thread to the executor.
enum Message {
    Call(Box<CallRequest>, tokio::sync::oneshot::Sender<Answer>),
    Done(Value),
}

/// Sends each call to the executor's task and waits for its answer.
struct ChannelCaller(tokio::sync::mpsc::UnboundedSender<Message>);

impl Caller for ChannelCaller {
    fn call(&mut self, request: &CallRequest) -> Answer {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.0.send(Message::Call(Box::new(request.clone()), reply)).is_err() {
            return Answer::Stop(failure_output(FailureClass::Error, "the executor stopped answering the script"));
        }
        answer
            .blocking_recv()
            .unwrap_or_else(|_| Answer::Stop(failure_output(FailureClass::Error, "the executor stopped answering the script")))
    }
}

/// Run a `script` step on `device`: the script on its own thread (Rhai is
/// synchronous), its calls performed here through the same agents as any step.
pub(crate) async fn perform(live: &mut Live<'_>, device: &str, step: &Step, variables: Value, timeout: Duration) -> Value {
    let source = step.script().unwrap_or_default().to_string();
    let origin = step.script_origin.clone();
    let cancel = Arc::new(AtomicU8::new(RUNNING));
    let (sender, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let thread = {
        let cancel = cancel.clone();
        let sender = sender.clone();
        std::thread::Builder::new().name(format!("script {device}")).spawn(move || {
            let output =
                evaluate(&source, origin.as_ref(), &variables, Box::new(ChannelCaller(sender.clone())), Control::live(cancel, timeout));
            let _ = sender.send(Message::Done(output));
        })
    };
    drop(sender);
    if let Err(why) = thread {
        return failure_output(FailureClass::Infra, &format!("cannot start the script's thread: {why}"));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let cancelled = cancel.load(Ordering::Relaxed) != RUNNING;
        tokio::select! {
            message = messages.recv() => match message {
                Some(Message::Done(output)) => return output,
                Some(Message::Call(request, reply)) => {
                    let answer = call(live, device, &request, deadline).await;
                    let _ = reply.send(answer);
                }
                None => return failure_output(FailureClass::Error, "the script's thread ended without a result"),
            },
            _ = wait_for_abort(live.abort), if !cancelled => cancel.store(ABORTED, Ordering::Relaxed),
            _ = tokio::time::sleep_until(deadline), if !cancelled => cancel.store(TIMED_OUT, Ordering::Relaxed),
        }
    }
}

/// Perform one call of a script, recording the journal range of its events.
async fn call(live: &mut Live<'_>, device: &str, request: &CallRequest, deadline: tokio::time::Instant) -> Answer {
    let recorder = live.recorder;
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let action = request.step.kind();
    let limit = request.timeout.unwrap_or_else(|| super::actions::default_timeout(action));
    let capped = remaining < limit;
    let first_seq = recorder.next_seq();
    let timeout = limit.min(remaining).max(Duration::from_millis(1));
    let mut output = perform_or_abort(live, device, &request.step, &request.spec, timeout).await;
    // A call cut short by the script's own time limit is the script's failure, not the bench's.
    if capped && output["error"]["class"] == "infra" && tokio::time::Instant::now() >= deadline {
        output = failure_output(FailureClass::Error, &format!("the script ran out of time during {action}"));
    }
    // Redacted before the script sees it, exactly as a step's output, so replay
    // (which only has the redacted record) feeds the script the same values.
    recorder.redactor().redact_json(&mut output);
    record_failure(recorder, device, &output);
    let last_seq = end_of_range(recorder, live.agents, device, action);
    Answer::Done { output, first_seq, last_seq }
}
