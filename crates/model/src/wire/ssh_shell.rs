//! Commands run through one long-lived shell on the device (the rig's
//! `ssh.persistent_shell`), and the rules `verify` reads their bytes again with.
//!
//! Why: a device that forks slowly (a radio unit's small CPU, a busy core network
//! function) pays for every SSH command twice over on a channel of its own: the SSH
//! server forks a session for it, and that session starts the user's shell, which then
//! starts the command. One shell, started once and fed commands on its standard input,
//! starts only what each command itself needs. What a plan relies on stays exact:
//! each command's standard output and standard error apart, its exit status, and a
//! fresh environment for each (it runs in a subshell, so `cd`, variables and `exit`
//! end with it). What differs is written in rigs/README.md: `$$` names the long-lived
//! shell (so commands that ask for their own shell's identity are given a channel of
//! their own, see [`needs_own_session`]), standard input is empty (`/dev/null`), and a
//! command killed by a signal reports the shell's `128 + signal` status.
//!
//! The shell is told where each command ends by a marker on each stream, holding a
//! tag fresh for that command: `PRF_<tag>_OUT:<status>` after its standard output and
//! `PRF_<tag>_ERR` after its standard error, each on a line of its own. What a command
//! prints is everything the stream received after the command was sent and before its
//! marker; the marker, and anything after it, is not the command's. A command cannot
//! forge its end: the tag is not known before the command is sent, and the wrapper's
//! text is sent on standard input, which the shell reads and does not echo.
//!
//! The journal holds, on the device's `ssh:exec` channel, the command asked for
//! (`SshExec`) and its exit (`SshExit`, status from the marker), and the raw bytes:
//! [`SHELL_IN`] the wrapper sent, [`SHELL_STDOUT`] and [`SHELL_STDERR`] what came back,
//! markers included. Replay builds the wrapper again from the command and the tag it
//! finds in the sent bytes, and derives the output with [`command_output`].

/// The channel of the bytes sent to the shell (sub-channel of `ssh:exec`, so a
/// command's exit ends its streams for the redactor).
pub const SHELL_IN: &str = "ssh:exec:sh";
/// The shell's standard output.
pub const SHELL_STDOUT: &str = "ssh:exec:sh:stdout";
/// The shell's standard error.
pub const SHELL_STDERR: &str = "ssh:exec:sh:stderr";

/// What the SSH server is asked to run for the shell: the user's own shell, reading
/// commands from standard input.
pub const SHELL_REQUEST: &str = "exec \"${SHELL:-/bin/sh}\"";

/// The lines that ask a fresh shell to say it is ready, on both streams.
pub fn ready_request(tag: &str) -> String {
    format!("printf 'PRF_{tag}_READY\\n'; printf 'PRF_{tag}_READY\\n' >&2\n")
}

/// Whether a fresh shell has said it is ready on both streams.
pub fn is_ready(stdout: &[u8], stderr: &[u8], tag: &str) -> bool {
    let marker = format!("PRF_{tag}_READY\n");
    memchr::memmem::find(stdout, marker.as_bytes()).is_some() && memchr::memmem::find(stderr, marker.as_bytes()).is_some()
}

/// The text sent to the shell for `command`: the command in a subshell, from `eval`
/// so that no quoting or syntax of its own can reach the wrapper, then the markers.
pub fn wrap(command: &str, tag: &str) -> String {
    let quoted = command.replace('\'', "'\\''");
    format!("(eval '{quoted}') </dev/null; printf 'PRF_{tag}_OUT:%d\\n' $?; printf 'PRF_{tag}_ERR\\n' >&2\n")
}

/// The tag of a wrapper as sent (None: not a wrapper this module writes). Replay
/// builds the wrapper again with it and requires exactly that on the wire.
pub fn tag_of(sent: &str) -> Option<&str> {
    const BEFORE: &str = "') </dev/null; printf 'PRF_";
    let start = sent.rfind(BEFORE)? + BEFORE.len();
    let end = start + sent[start..].find("_OUT:")?;
    Some(&sent[start..end])
}

/// Commands that ask for their own shell's identity (`$$`, `$PPID`): in the long-lived
/// shell they would name it, not a shell of their own, so they get a channel of their own.
pub fn needs_own_session(command: &str) -> bool {
    command.contains("$$") || command.contains("PPID")
}

/// A command's output and exit status, read from what the shell's streams received
/// after the command was sent. None while either marker is still to come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_status: i32,
}

/// Split what the shell printed into the command's output: both markers must be there.
pub fn command_output(stdout: &[u8], stderr: &[u8], tag: &str) -> Option<CommandOutput> {
    let out_marker = format!("PRF_{tag}_OUT:");
    let at = memchr::memmem::find(stdout, out_marker.as_bytes())?;
    let rest = &stdout[at + out_marker.len()..];
    let line_end = memchr::memchr(b'\n', rest)?;
    let exit_status = std::str::from_utf8(&rest[..line_end]).ok()?.parse().ok()?;
    let err_marker = format!("PRF_{tag}_ERR\n");
    let err_at = memchr::memmem::find(stderr, err_marker.as_bytes())?;
    Some(CommandOutput { stdout: stdout[..at].to_vec(), stderr: stderr[..err_at].to_vec(), exit_status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_quotes_any_command_and_names_its_tag() {
        let sent = wrap("echo 'it''s' \"$HOME\"; exit 3", "a1b2");
        assert_eq!(tag_of(&sent), Some("a1b2"));
        assert!(sent.starts_with("(eval 'echo '\\''it'\\'''\\''s'\\'' \"$HOME\"; exit 3') </dev/null;"), "{sent}");
        assert_eq!(tag_of("echo hi"), None);
    }

    #[test]
    fn output_is_what_came_before_each_marker() {
        let out = command_output(b"no newline at endPRF_t1_OUT:3\nlater", b"warning\nPRF_t1_ERR\n", "t1").unwrap();
        assert_eq!(out, CommandOutput { stdout: b"no newline at end".to_vec(), stderr: b"warning\n".to_vec(), exit_status: 3 });
        // Another command's marker is not this one's; a marker still to come is None.
        assert_eq!(command_output(b"xPRF_t2_OUT:0\n", b"PRF_t1_ERR\n", "t1"), None);
        assert_eq!(command_output(b"xPRF_t1_OUT:0\n", b"", "t1"), None);
        assert_eq!(command_output(b"xPRF_t1_OUT:0", b"PRF_t1_ERR\n", "t1"), None, "the status line is not complete");
    }

    #[test]
    fn commands_that_ask_for_their_shell_get_their_own_session() {
        assert!(needs_own_session("echo $$; exit"));
        assert!(needs_own_session("ps -o pid= -p $PPID"));
        assert!(!needs_own_session("cat /etc/passwd"));
    }
}
