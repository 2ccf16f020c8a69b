//! What the executor records about itself, as notes on a device's `proofrig` channel,
//! and replay reads back as evidence: the words are part of the bundle format.

use serde_json::Value;

/// The channel (of the device a step runs on) where the executor records what it
/// observed itself, as notes replay reads as evidence: a step's or script call's
/// failure (`<class>: <message>`, at the moment the step fails, within its range), the
/// operator's stop ([`NOTE_ABORTED`], the signal record), a step cut off by its time
/// limit ([`NOTE_DEADLINE`]), and the console output forgotten before a power switch
/// ([`NOTE_CONSOLE_CLEARED`]).
pub const EXECUTOR_CHANNEL: &str = "proofrig";
/// The operator stopped the run (Ctrl-C, SIGTERM): recorded by the first step that
/// sees it, or where the executor stops running steps because of it.
pub const NOTE_ABORTED: &str = "aborted: stopped by the operator";
/// The start of the note recorded when a step's time limit cut its action off.
pub const NOTE_DEADLINE: &str = "deadline: ";
/// Recorded when the console's unread output was forgotten before a power switch:
/// a console wait after it only sees what came after this note.
pub const NOTE_CONSOLE_CLEARED: &str = "console output before the power switch forgotten";

/// The note the executor records for a failed step's `output`, if it is a failure.
pub fn failure_note(output: &Value) -> Option<String> {
    let error = output.get("error")?;
    Some(format!("{}: {}", error["class"].as_str().unwrap_or("error"), error["message"].as_str().unwrap_or_default()))
}
