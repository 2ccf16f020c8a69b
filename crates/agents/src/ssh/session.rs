//! An SSH session to one device: a dedicated thread owning the libssh2 session, and the
//! async handle ([`SshSession`]) the rest of proofrig uses.
//!
//! Requests (exec, fetch, close) travel to the thread over a std channel and answers
//! come back over tokio oneshots, so async callers never block the runtime. While idle,
//! the thread wakes only to send keepalives. Interactive shells get their own session
//! and thread (see `shell`), because a shell's pump must read continuously while
//! commands run here one after another.

use std::io::Read;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::connect::{open_session, Target};
use super::error::SshError;
use super::wire::{Queued, Wire, WireError};
use super::{ConnectOptions, ExecOutput, NegotiatedAlgorithms, ShellOptions};
use crate::channel::ByteStream;
use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
use proofrig_model::rig::SshEndpoint;
use proofrig_model::wire::ssh_shell;

const READ_CHUNK: usize = 32 * 1024;

/// Run blocking work on its own named thread and await its result without blocking the
/// runtime. None if the thread could not be started or panicked.
pub(crate) async fn run_on_thread<T: Send + 'static>(name: String, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.await.ok()
}

enum Request {
    Exec {
        command: String,
        input: Vec<u8>,
        timeout: Duration,
        reply: oneshot::Sender<Result<ExecOutput, SshError>>,
    },
    /// A plan's command: through the session's long-lived shell where the rig asks for one.
    Run {
        command: String,
        timeout: Duration,
        reply: oneshot::Sender<Result<ExecOutput, SshError>>,
    },
    Fetch {
        path: String,
        reply: oneshot::Sender<Result<Vec<u8>, SshError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// An authenticated SSH session to a device whose host key matched its pin.
///
/// Cheap to share by reference; requests are served one at a time in arrival order.
/// Dropping it closes the session (use [`SshSession::close`] to wait for that).
pub struct SshSession {
    device: String,
    host_key_fingerprint: String,
    host_key_type: String,
    negotiated: NegotiatedAlgorithms,
    target: Arc<Target>,
    recorder: Recorder,
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("device", &self.device)
            .field("addr", &self.target.addr())
            .field("host_key", &self.host_key_fingerprint)
            .finish_non_exhaustive()
    }
}

impl SshSession {
    /// Connect, verify the host key against the endpoint's pin, and log in.
    pub async fn connect(device: &str, endpoint: &SshEndpoint, recorder: Recorder) -> Result<SshSession, SshError> {
        Self::connect_with(device, endpoint, ConnectOptions::default(), recorder).await
    }

    /// [`SshSession::connect`] with constrained client algorithms.
    pub async fn connect_with(
        device: &str,
        endpoint: &SshEndpoint,
        options: ConnectOptions,
        recorder: Recorder,
    ) -> Result<SshSession, SshError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (requests, inbox) = mpsc::channel();
        let (name, endpoint) = (device.to_string(), endpoint.clone());
        let thread_recorder = recorder.clone();
        std::thread::Builder::new()
            .name(format!("ssh-{device}"))
            .spawn(move || session_thread(name, endpoint, options, thread_recorder, ready_tx, inbox))
            .map_err(|e| SshError::Protocol {
                device: device.into(),
                operation: "starting the session thread".into(),
                reason: e.to_string(),
            })?;
        // The thread always answers unless it panicked.
        let ready = ready_rx.await.map_err(|_| SshError::Closed { device: device.into() })??;
        Ok(SshSession {
            device: ready.target.device.clone(),
            host_key_fingerprint: ready.host_key_fingerprint,
            host_key_type: ready.host_key_type,
            negotiated: ready.negotiated,
            target: ready.target,
            recorder,
            requests,
        })
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// `SHA256:...` of the host key the server proved it holds.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key_fingerprint
    }

    /// Algorithm of that key, e.g. `ssh-ed25519`.
    pub fn host_key_type(&self) -> &str {
        &self.host_key_type
    }

    pub fn negotiated(&self) -> &NegotiatedAlgorithms {
        &self.negotiated
    }

    /// Run `command`, collecting stdout, stderr and exit status. When `timeout` passes
    /// first, its channel is closed and `Timeout` returned; the session stays usable.
    /// The command itself may keep running on the device (SSH closes the channel, but
    /// sshd does not kill a command without a PTY); wrap it in `timeout(1)` on the
    /// device when that matters.
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        self.exec_with_input(command, &[], timeout).await
    }

    /// `exec` with `input` on the command's standard input, then end-of-file. This is
    /// how a secret reaches a command (`passwd --stdin USER`) without appearing on its
    /// command line; the input is recorded on `ssh:exec:stdin`, redacted like any bytes.
    pub async fn exec_with_input(&self, command: &str, input: &[u8], timeout: Duration) -> Result<ExecOutput, SshError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Exec { command: command.to_string(), input: input.to_vec(), timeout, reply })?;
        answer.await.map_err(|_| self.closed())?
    }

    /// Run a plan's `command` as [`SshSession::exec`] does, but through one long-lived
    /// shell of the session when the rig sets `ssh.persistent_shell` (see
    /// `proofrig_model::wire::ssh_shell` for how, and for what differs). Commands that
    /// ask for their own shell's identity, and any command when the shell cannot be
    /// started (noted once), get a channel of their own as `exec` gives them.
    pub async fn run(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Run { command: command.to_string(), timeout, reply })?;
        answer.await.map_err(|_| self.closed())?
    }

    /// Fetch a remote file (SFTP, or SCP when the server has no SFTP subsystem).
    /// Records `FileFetched` with the content's SHA-256. `timeout_ms` of the endpoint
    /// bounds each wait for data, not the whole transfer.
    pub async fn fetch(&self, remote_path: &str) -> Result<Vec<u8>, SshError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Fetch { path: remote_path.to_string(), reply })?;
        answer.await.map_err(|_| self.closed())?
    }

    /// An interactive shell with a PTY, on its own SSH session and thread, as a
    /// [`ByteStream`] for the expect engine. Every byte is recorded on `ssh:shell`.
    /// Must be called within a tokio runtime.
    pub async fn shell(&self) -> Result<ByteStream, SshError> {
        self.shell_with(ShellOptions::default()).await
    }

    pub async fn shell_with(&self, options: ShellOptions) -> Result<ByteStream, SshError> {
        super::shell::open_shell(self.target.clone(), options, self.recorder.clone()).await
    }

    /// Close the session and wait until the thread has disconnected and recorded it.
    pub async fn close(self) {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(Request::Close { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    fn send(&self, request: Request) -> Result<(), SshError> {
        self.requests.send(request).map_err(|_| self.closed())
    }

    fn closed(&self) -> SshError {
        SshError::Closed { device: self.device.clone() }
    }
}

struct Ready {
    target: Arc<Target>,
    host_key_fingerprint: String,
    host_key_type: String,
    negotiated: NegotiatedAlgorithms,
}

fn session_thread(
    device: String,
    endpoint: SshEndpoint,
    options: ConnectOptions,
    recorder: Recorder,
    ready: oneshot::Sender<Result<Ready, SshError>>,
    inbox: mpsc::Receiver<Request>,
) {
    let channel = ChannelId::new(&device, "ssh");
    let target = match Target::new(&device, &endpoint, options) {
        Ok(target) => Arc::new(target),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let verified = match open_session(&target, &recorder, &channel) {
        Ok(verified) => verified,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let info = Ready {
        target: target.clone(),
        host_key_fingerprint: verified.host_key.fingerprint.clone(),
        host_key_type: verified.host_key.algorithm.clone(),
        negotiated: verified.negotiated.clone(),
    };
    let mut worker =
        Worker { target, recorder, channel, wire: verified.wire, lost: None, abandoned: Vec::new(), shell: ShellState::NotStarted };
    if ready.send(Ok(info)).is_err() {
        // The caller gave up while we were connecting.
        worker.shutdown();
        return;
    }
    worker.serve(inbox);
}

/// The session thread's state.
struct Worker {
    target: Arc<Target>,
    recorder: Recorder,
    channel: ChannelId,
    wire: Wire,
    /// Set once the connection is gone; every later request fails with it.
    lost: Option<String>,
    /// Channels of timed-out commands, closed by us but not yet by the server.
    abandoned: Vec<ssh2::Channel>,
    /// The long-lived shell for a plan's commands (`ssh.persistent_shell`).
    shell: ShellState,
}

/// The session's command shell, if the rig asks for one.
enum ShellState {
    NotStarted,
    Running(ssh2::Channel),
    /// It could not be started (the reason is on record): commands get channels of their own.
    Unavailable,
}

impl Worker {
    fn serve(&mut self, inbox: mpsc::Receiver<Request>) {
        let mut next_keepalive = self.keepalive();
        loop {
            let request = match next_keepalive {
                Some(wait) => inbox.recv_timeout(wait),
                None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match request {
                Ok(Request::Exec { command, input, timeout, reply }) => {
                    let _ = reply.send(self.exec(&command, &input, timeout));
                }
                Ok(Request::Run { command, timeout, reply }) => {
                    let use_shell = self.target.persistent_shell && !ssh_shell::needs_own_session(&command);
                    let result = if use_shell { self.run_in_shell(&command, timeout) } else { self.exec(&command, &[], timeout) };
                    let _ = reply.send(result);
                }
                Ok(Request::Fetch { path, reply }) => {
                    let _ = reply.send(self.fetch(&path));
                }
                Ok(Request::Close { reply }) => {
                    self.shutdown();
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown();
                    return;
                }
            }
            next_keepalive = self.keepalive();
        }
    }

    /// Send a keepalive if due; returns how long until the next one (None: disabled).
    fn keepalive(&mut self) -> Option<Duration> {
        self.reap_abandoned();
        if self.target.keepalive_s == 0 || self.lost.is_some() {
            return None;
        }
        match self.wire.session.keepalive_send() {
            Ok(seconds) => Some(Duration::from_secs(u64::from(seconds.max(1)))),
            Err(e) if super::wire::is_eagain(&e) => Some(Duration::from_secs(1)),
            Err(e) => {
                self.mark_lost(format!("keepalive failed: {}", e.message()));
                None
            }
        }
    }

    fn mark_lost(&mut self, reason: String) {
        if self.lost.is_none() {
            self.recorder.emit(EventKind::ChannelLost { channel: self.channel.clone(), reason: reason.clone() });
            self.lost = Some(reason);
        }
    }

    /// Turn a failure into an error, remembering a lost connection.
    fn fail(&mut self, operation: &str, e: WireError) -> SshError {
        if e.is_connection_loss() {
            self.mark_lost(e.to_string());
        }
        self.target.failure(operation, e)
    }

    fn check_alive(&self, operation: &str) -> Result<(), SshError> {
        match &self.lost {
            None => Ok(()),
            Some(reason) => Err(SshError::ChannelLost {
                device: self.target.device.clone(),
                operation: operation.into(),
                reason: format!("the connection was lost earlier: {reason}"),
            }),
        }
    }

    fn shutdown(&mut self) {
        if let ShellState::Running(channel) = std::mem::replace(&mut self.shell, ShellState::NotStarted) {
            self.dispose(channel);
        }
        if self.lost.is_none() {
            let deadline = Instant::now() + Duration::from_millis(500);
            let _ = self.wire.retry(Some(deadline), |s| s.disconnect(None, "proofrig closing the session", None));
            self.recorder.emit(EventKind::ChannelClosed { channel: self.channel.clone() });
        }
        // After the disconnect the server drops the connection, so freeing parked
        // channels no longer waits for their commands.
        self.abandoned.clear();
    }

    fn exec(&mut self, command: &str, input: &[u8], timeout: Duration) -> Result<ExecOutput, SshError> {
        let operation = format!("exec `{command}`");
        self.check_alive(&operation)?;
        let device = self.target.device.clone();
        let exec_channel = ChannelId::new(&device, "ssh:exec");
        let stdout_channel = ChannelId::new(&device, "ssh:exec:stdout");
        let stderr_channel = ChannelId::new(&device, "ssh:exec:stderr");
        self.recorder.emit(EventKind::SshExec { channel: exec_channel.clone(), command: command.to_string() });
        let deadline = Some(Instant::now() + timeout);

        let record_failed_start = |recorder: &Recorder, e: &WireError| {
            recorder.emit(EventKind::SshExit {
                channel: exec_channel.clone(),
                exit_status: None,
                signal: None,
                timed_out: matches!(e, WireError::TimedOut),
            });
        };
        let mut channel = match self.wire.retry(deadline, |s| s.channel_session()) {
            Ok(channel) => channel,
            Err(e) => {
                record_failed_start(&self.recorder, &e);
                return Err(self.exec_failure(&operation, e, timeout));
            }
        };
        if let Err(e) = self.wire.retry(deadline, |_| channel.exec(command)) {
            record_failed_start(&self.recorder, &e);
            let error = self.exec_failure(&operation, e, timeout);
            self.dispose(channel);
            return Err(error);
        }
        // Standard input ends after `input` (at once when there is none), so a command
        // that reads it gets end-of-file rather than waiting for its time limit.
        if !input.is_empty() {
            self.recorder.bytes(&ChannelId::new(&device, "ssh:exec:stdin"), Direction::Out, input);
        }
        let written = write_all(&self.wire, &mut channel, input, deadline).and_then(|()| self.wire.retry(deadline, |_| channel.send_eof()));
        if let Err(e) = written {
            record_failed_start(&self.recorder, &e);
            let error = self.exec_failure(&operation, e, timeout);
            self.dispose(channel);
            return Err(error);
        }

        let mut output = ExecOutput::default();
        let mut stderr = channel.stderr();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut queued = Queued::default();
        let finished = loop {
            let progress = drain(&self.wire, &mut channel, &mut buf, &mut output.stdout, &self.recorder, &stdout_channel).and_then(|a| {
                drain(&self.wire, &mut stderr, &mut buf, &mut output.stderr, &self.recorder, &stderr_channel).map(|b| a || b)
            });
            match progress {
                Err(e) => break Err(e),
                Ok(_) if channel.eof() => break Ok(()),
                Ok(true) => queued.read_some(),
                // Reading stderr may have taken in stdout that arrived meanwhile.
                Ok(false) if queued.arrived(&channel) => {}
                Ok(false) => {
                    if let Err(e) = self.wire.wait(deadline) {
                        break Err(e);
                    }
                }
            }
        };
        // The stream shares the channel; the channel must be the last handle so that
        // dispose/abandon decide when libssh2 frees it.
        drop(stderr);

        match finished {
            Ok(()) => {}
            Err(WireError::TimedOut) => {
                // Closing the channel is all we can do: the ssh2 binding offers no
                // "signal" request, and sshd lets a command without a PTY run on after
                // its channel closes. sshd confirms the close only once the command
                // ends, so the channel is parked rather than waited for.
                self.abandon(channel);
                self.recorder.emit(EventKind::SshExit { channel: exec_channel, exit_status: None, signal: None, timed_out: true });
                return Err(self.exec_failure(&operation, WireError::TimedOut, timeout));
            }
            Err(e) => {
                self.recorder.emit(EventKind::SshExit { channel: exec_channel, exit_status: None, signal: None, timed_out: false });
                let error = self.exec_failure(&operation, e, timeout);
                self.dispose(channel);
                return Err(error);
            }
        }

        // The exit status (or signal) arrives before the server closes the channel.
        let closed = self.wire.retry(deadline, |_| channel.wait_close());
        let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
        output.exit_signal = signal.clone();
        // libssh2 reports 0 when no exit-status arrived; only trust it after a clean close.
        output.exit_status = match (&closed, &signal) {
            (Ok(()), None) => channel.exit_status().ok(),
            _ => None,
        };
        let timed_out = matches!(closed, Err(WireError::TimedOut));
        self.recorder.emit(EventKind::SshExit { channel: exec_channel, exit_status: output.exit_status, signal, timed_out });
        let result = match closed {
            Ok(()) => Ok(output),
            Err(e) => Err(self.exec_failure(&operation, e, timeout)),
        };
        if timed_out {
            self.abandon(channel);
        } else {
            self.dispose(channel);
        }
        result
    }

    /// Run `command` in the session's shell, starting it first if need be (see
    /// `proofrig_model::wire::ssh_shell`). Falls back to a channel of its own when the
    /// shell cannot be started.
    fn run_in_shell(&mut self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        let operation = format!("exec `{command}` (in the session's shell)");
        self.check_alive(&operation)?;
        if matches!(self.shell, ShellState::NotStarted) {
            self.shell = match self.start_shell() {
                Ok(channel) => ShellState::Running(channel),
                Err(why) => {
                    self.recorder.emit(EventKind::Note {
                        channel: ChannelId::new(&self.target.device, ssh_shell::SHELL_IN),
                        text: format!("no command shell ({why}): each command gets a channel of its own"),
                    });
                    ShellState::Unavailable
                }
            };
        }
        let ShellState::Running(mut channel) = std::mem::replace(&mut self.shell, ShellState::NotStarted) else {
            self.shell = ShellState::Unavailable;
            return self.exec(command, &[], timeout);
        };
        let device = self.target.device.clone();
        let exec_channel = ChannelId::new(&device, "ssh:exec");
        self.recorder.emit(EventKind::SshExec { channel: exec_channel.clone(), command: command.to_string() });
        let tag = crate::expect::marker_tag();
        let deadline = Some(Instant::now() + timeout);
        let sent = ssh_shell::wrap(command, &tag);
        self.recorder.bytes(&ChannelId::new(&device, ssh_shell::SHELL_IN), Direction::Out, sent.as_bytes());
        let result = write_all(&self.wire, &mut channel, sent.as_bytes(), deadline)
            .and_then(|()| self.read_until(&mut channel, deadline, |out, err| ssh_shell::command_output(out, err, &tag)));
        match result {
            Ok(done) => {
                self.shell = ShellState::Running(channel);
                self.recorder.emit(EventKind::SshExit {
                    channel: exec_channel,
                    exit_status: Some(done.exit_status),
                    signal: None,
                    timed_out: false,
                });
                Ok(ExecOutput { stdout: done.stdout, stderr: done.stderr, exit_status: Some(done.exit_status), exit_signal: None })
            }
            Err(e) => {
                // The shell is stuck in the command, or gone: the next command starts another.
                let timed_out = matches!(e, WireError::TimedOut);
                self.recorder.emit(EventKind::SshExit { channel: exec_channel, exit_status: None, signal: None, timed_out });
                if timed_out {
                    self.abandon(channel);
                } else {
                    self.dispose(channel);
                }
                Err(self.exec_failure(&operation, e, timeout))
            }
        }
    }

    /// Open the command shell and wait until it says it is ready on both streams.
    fn start_shell(&mut self) -> Result<ssh2::Channel, String> {
        let device = self.target.device.clone();
        let deadline = Some(Instant::now() + self.target.timeout);
        let mut channel = self.wire.retry(deadline, |s| s.channel_session()).map_err(|e| e.to_string())?;
        let started = self.wire.retry(deadline, |_| channel.exec(ssh_shell::SHELL_REQUEST)).map_err(|e| e.to_string());
        let tag = crate::expect::marker_tag();
        let request = ssh_shell::ready_request(&tag);
        let ready = started.and_then(|()| {
            self.recorder.bytes(&ChannelId::new(&device, ssh_shell::SHELL_IN), Direction::Out, request.as_bytes());
            let found = |out: &[u8], err: &[u8]| ssh_shell::is_ready(out, err, &tag).then_some(());
            write_all(&self.wire, &mut channel, request.as_bytes(), deadline)
                .and_then(|()| self.read_until(&mut channel, deadline, found))
                .map_err(|e| format!("it did not answer: {e}"))
        });
        match ready {
            Ok(()) => Ok(channel),
            Err(why) => {
                self.dispose(channel);
                Err(why)
            }
        }
    }

    /// Read the shell's two streams, recording every byte, until `done` finds what it
    /// looks for in what they received since this call began.
    fn read_until<T>(
        &self,
        channel: &mut ssh2::Channel,
        deadline: Option<Instant>,
        done: impl Fn(&[u8], &[u8]) -> Option<T>,
    ) -> Result<T, WireError> {
        let device = &self.target.device;
        let (stdout_channel, stderr_channel) =
            (ChannelId::new(device, ssh_shell::SHELL_STDOUT), ChannelId::new(device, ssh_shell::SHELL_STDERR));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stderr = channel.stderr();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut queued = Queued::default();
        loop {
            let progress = drain(&self.wire, channel, &mut buf, &mut out, &self.recorder, &stdout_channel)
                .and_then(|a| drain(&self.wire, &mut stderr, &mut buf, &mut err, &self.recorder, &stderr_channel).map(|b| a || b))?;
            if let Some(found) = done(&out, &err) {
                return Ok(found);
            }
            if channel.eof() {
                return Err(WireError::ChannelEnded);
            }
            if progress {
                queued.read_some();
            } else if !queued.arrived(channel) {
                self.wire.wait(deadline)?;
            }
        }
    }

    /// Send CLOSE for a channel whose command is still running and keep it until the
    /// server confirms, which happens only when the command ends.
    fn abandon(&mut self, mut channel: ssh2::Channel) {
        match channel.close() {
            Err(e) if super::wire::is_eagain(&e) => self.abandoned.push(channel),
            _ => self.dispose(channel),
        }
    }

    /// Free parked channels the server has closed meanwhile (never waits).
    fn reap_abandoned(&mut self) {
        self.abandoned.retain_mut(|channel| matches!(channel.close(), Err(e) if super::wire::is_eagain(&e)));
    }

    fn exec_failure(&mut self, operation: &str, e: WireError, timeout: Duration) -> SshError {
        match e {
            WireError::TimedOut => SshError::Timeout { device: self.target.device.clone(), operation: operation.into(), after: timeout },
            e => self.fail(operation, e),
        }
    }

    /// Free a channel without leaking it: ssh2's destructor cannot finish a close that
    /// meets EAGAIN, so it runs in blocking mode (bounded by the session timeout; at
    /// once on a dead connection).
    fn dispose(&self, channel: ssh2::Channel) {
        self.wire.blocking(|| drop(channel));
    }

    fn fetch(&mut self, path: &str) -> Result<Vec<u8>, SshError> {
        let operation = format!("fetch {path}");
        self.check_alive(&operation)?;
        let fetch_channel = ChannelId::new(&self.target.device, "ssh:fetch");
        let content = match self.fetch_sftp(path) {
            Ok(content) => content,
            Err(FetchFailure::NoSftp(why)) => {
                self.recorder.emit(EventKind::Note {
                    channel: fetch_channel.clone(),
                    text: format!("no SFTP subsystem ({why}); fetching {path} over SCP"),
                });
                self.fetch_scp(path)?
            }
            Err(FetchFailure::Failed(e)) => return Err(e),
        };
        let sha256: String = Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
        self.recorder.emit(EventKind::FileFetched { channel: fetch_channel, path: path.to_string(), len: content.len() as u64, sha256 });
        Ok(content)
    }

    fn fetch_sftp(&mut self, path: &str) -> Result<Vec<u8>, FetchFailure> {
        let operation = format!("fetch {path} (SFTP)");
        let timeout = self.target.timeout;
        let sftp = match self.wire.retry(Some(Instant::now() + timeout), |s| s.sftp()) {
            Ok(sftp) => sftp,
            Err(e) if e.is_connection_loss() || matches!(e, WireError::TimedOut) => {
                return Err(FetchFailure::Failed(self.fail(&operation, e)))
            }
            Err(e) => return Err(FetchFailure::NoSftp(e.to_string())),
        };
        let opened = self.wire.retry(Some(Instant::now() + timeout), |_| sftp.open(path));
        let mut file = match opened {
            Ok(file) => file,
            Err(WireError::Ssh(e)) if matches!(e.code(), ssh2::ErrorCode::SFTP(_)) => {
                self.wire.blocking(|| drop(sftp));
                return Err(FetchFailure::Failed(SshError::Fetch {
                    device: self.target.device.clone(),
                    path: path.into(),
                    reason: sftp_reason(&e),
                }));
            }
            Err(e) => return Err(FetchFailure::Failed(self.fail(&operation, e))),
        };
        let mut content = Vec::new();
        let read = read_to_end(&self.wire, &mut file, &mut content, timeout);
        self.wire.blocking(|| {
            drop(file);
            drop(sftp);
        });
        read.map_err(|e| FetchFailure::Failed(self.fail(&operation, e)))?;
        Ok(content)
    }

    fn fetch_scp(&mut self, path: &str) -> Result<Vec<u8>, SshError> {
        let operation = format!("fetch {path} (SCP)");
        let timeout = self.target.timeout;
        let started = self.wire.retry(Some(Instant::now() + timeout), |s| s.scp_recv(std::path::Path::new(path)));
        let (mut channel, stat) = match started {
            Ok(started) => started,
            Err(e) if !e.is_connection_loss() && !matches!(e, WireError::TimedOut) => {
                return Err(SshError::Fetch { device: self.target.device.clone(), path: path.into(), reason: e.to_string() })
            }
            Err(e) => return Err(self.fail(&operation, e)),
        };
        let mut content = Vec::with_capacity(stat.size() as usize);
        // scp_recv limits reads to the announced size, so end of data is Ok(0).
        let read = read_to_end(&self.wire, &mut channel, &mut content, timeout);
        if read.is_ok() {
            let deadline = Some(Instant::now() + timeout);
            let _ = self.wire.retry(deadline, |_| channel.send_eof());
            let _ = self.wire.retry(deadline, |_| channel.wait_eof());
            let _ = self.wire.retry(deadline, |_| channel.close());
            let _ = self.wire.retry(deadline, |_| channel.wait_close());
        }
        self.dispose(channel);
        read.map_err(|e| self.fail(&operation, e))?;
        if content.len() as u64 != stat.size() {
            return Err(SshError::Fetch {
                device: self.target.device.clone(),
                path: path.into(),
                reason: format!("SCP announced {} bytes but sent {}", stat.size(), content.len()),
            });
        }
        Ok(content)
    }
}

enum FetchFailure {
    /// The server has no SFTP subsystem (or refused it): SCP may still work.
    NoSftp(String),
    Failed(SshError),
}

fn sftp_reason(e: &ssh2::Error) -> String {
    match e.code() {
        ssh2::ErrorCode::SFTP(2) => "no such file".into(),
        ssh2::ErrorCode::SFTP(3) => "permission denied".into(),
        ssh2::ErrorCode::SFTP(code) => format!("SFTP error {code}: {}", e.message()),
        ssh2::ErrorCode::Session(_) => e.message().to_string(),
    }
}

/// Write all of `data` to `channel` (non-blocking), waiting on the socket as needed.
fn write_all(wire: &Wire, channel: &mut ssh2::Channel, data: &[u8], deadline: Option<Instant>) -> Result<(), WireError> {
    let mut sent = 0;
    while sent < data.len() {
        match std::io::Write::write(channel, &data[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wire.wait(deadline)?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(wire.io_failure(e)),
        }
    }
    Ok(())
}

/// Read everything available from `source` (non-blocking) into `out`, recording it.
/// Returns whether anything was read.
fn drain(
    wire: &Wire,
    source: &mut impl Read,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    recorder: &Recorder,
    channel: &ChannelId,
) -> Result<bool, WireError> {
    let mut progress = false;
    loop {
        match source.read(buf) {
            Ok(0) => return Ok(progress),
            Ok(n) => {
                recorder.bytes(channel, Direction::In, &buf[..n]);
                out.extend_from_slice(&buf[..n]);
                progress = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(progress),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(wire.io_failure(e)),
        }
    }
}

/// Read `source` to its end; `idle` bounds each wait for more data.
fn read_to_end(wire: &Wire, source: &mut impl Read, out: &mut Vec<u8>, idle: Duration) -> Result<(), WireError> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut deadline = Instant::now() + idle;
    loop {
        match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                deadline = Instant::now() + idle;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wire.wait(Some(deadline))?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(wire.io_failure(e)),
        }
    }
}
