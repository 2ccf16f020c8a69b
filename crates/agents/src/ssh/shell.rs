//! Interactive shells: a PTY shell on its own SSH session, pumped by its own thread.
//!
//! The pump must read the device continuously (so output nobody waits for still lands
//! in the transcript) and serve writes as they come. It sleeps in one poll(2) on two
//! descriptors: the SSH socket, and a socketpair a forwarding task pokes whenever the
//! [`ByteStream`] queues a write. Every byte is recorded the moment it crosses the wire;
//! a lost connection is recorded as `ChannelLost` and ends the stream with
//! `ChannelError::ConsoleLost`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};
use tokio::sync::oneshot;

use super::connect::{open_session, Target};
use super::error::SshError;
use super::wire::{is_eagain, poll_timeout, Queued, Wire, WireError};
use super::ShellOptions;
use crate::channel::{ByteStream, ChannelError, Feed, WriteRequest, DEFAULT_FEED_CAPACITY};
use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};

const READ_CHUNK: usize = 32 * 1024;
/// Write requests queued between the ByteStream and the forwarding task.
const WRITE_QUEUE: usize = 64;

/// Open a shell session and start its pump; the returned stream drives it.
pub(crate) async fn open_shell(target: Arc<Target>, options: ShellOptions, recorder: Recorder) -> Result<ByteStream, SshError> {
    let device = target.device.clone();
    let channel = ChannelId::new(&device, "ssh:shell");
    let feed = Feed::new(DEFAULT_FEED_CAPACITY);
    let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| SshError::Protocol {
        device: device.clone(),
        operation: "opening a shell".into(),
        reason: format!("cannot create the wake-up socketpair: {e}"),
    })?;
    let _ = wake_tx.set_nonblocking(true);
    let _ = wake_rx.set_nonblocking(true);
    let (to_pump, pump_inbox) = mpsc::channel::<WriteRequest>();
    let (ready_tx, ready_rx) = oneshot::channel();

    let pump = Pump { target, recorder, channel: channel.clone(), feed: feed.clone(), inbox: pump_inbox, wake: wake_rx };
    std::thread::Builder::new()
        .name(format!("ssh-shell-{device}"))
        .spawn(move || pump.run(options, ready_tx))
        .map_err(|e| SshError::Protocol { device: device.clone(), operation: "opening a shell".into(), reason: e.to_string() })?;
    ready_rx.await.map_err(|_| SshError::Closed { device: device.clone() })??;

    let (writes, mut requests) = tokio::sync::mpsc::channel::<WriteRequest>(WRITE_QUEUE);
    let forward_channel = channel.clone();
    tokio::spawn(async move {
        let waker = Waker(wake_tx);
        while let Some(request) = requests.recv().await {
            if let Err(mpsc::SendError(request)) = to_pump.send(request) {
                let _ = request.done.send(Err(ChannelError::lost(&forward_channel, "the shell session has ended")));
                continue;
            }
            waker.wake();
        }
        // Dropping `to_pump` then `waker` tells the pump nobody will write any more.
        drop(to_pump);
        drop(waker);
    });
    Ok(ByteStream::new(channel, feed, writes))
}

/// Pokes the pump's poll(2). Also pokes on drop, so the pump notices the writer is gone.
struct Waker(UnixStream);

impl Waker {
    fn wake(&self) {
        // A full socketpair already holds a pending wake-up; nothing is lost.
        let _ = (&self.0).write(&[1]);
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.wake();
    }
}

struct PendingWrite {
    request: WriteRequest,
    written: usize,
    recorded: bool,
}

struct Pump {
    target: Arc<Target>,
    recorder: Recorder,
    channel: ChannelId,
    feed: Arc<Feed>,
    inbox: mpsc::Receiver<WriteRequest>,
    wake: UnixStream,
}

/// How the pump loop ended.
enum End {
    /// The device side went away (or the shell exited).
    Lost(String),
    /// Every ByteStream handle was dropped.
    Closed,
}

impl Pump {
    fn run(self, options: ShellOptions, ready: oneshot::Sender<Result<(), SshError>>) {
        let verified = match open_session(&self.target, &self.recorder, &self.channel) {
            Ok(verified) => verified,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let wire = verified.wire;
        let deadline = Some(Instant::now() + self.target.timeout);
        let opened = wire.retry(deadline, |s| s.channel_session()).and_then(|mut channel| {
            let dims = Some((options.cols, options.rows, 0, 0));
            wire.retry(deadline, |_| channel.request_pty(&options.term, None, dims))?;
            wire.retry(deadline, |_| channel.shell())?;
            Ok(channel)
        });
        let mut shell = match opened {
            Ok(shell) => shell,
            Err(e) => {
                let _ = ready.send(Err(self.target.failure("opening a PTY shell", e)));
                return;
            }
        };
        let end = if ready.send(Ok(())).is_err() {
            // The caller gave up while we were connecting.
            End::Closed
        } else {
            self.pump(&wire, &mut shell)
        };
        // Best effort; returns at once when the connection is already gone.
        let deadline = Some(Instant::now() + Duration::from_millis(500));
        let _ = wire.retry(deadline, |_| shell.close());
        let _ = wire.retry(deadline, |s| s.disconnect(None, "proofrig closing the shell", None));
        match &end {
            End::Lost(reason) => {
                self.recorder.emit(EventKind::ChannelLost { channel: self.channel.clone(), reason: reason.clone() });
                self.feed.close(ChannelError::lost(&self.channel, reason.clone()));
            }
            End::Closed => {
                self.recorder.emit(EventKind::ChannelClosed { channel: self.channel.clone() });
                self.feed.close(ChannelError::Closed { channel: self.channel.clone() });
            }
        }
        // Anything still queued will never be written.
        let reason = match end {
            End::Lost(reason) => reason,
            End::Closed => "the shell was closed".into(),
        };
        while let Ok(request) = self.inbox.try_recv() {
            let _ = request.done.send(Err(ChannelError::lost(&self.channel, reason.clone())));
        }
    }

    fn pump(&self, wire: &Wire, shell: &mut ssh2::Channel) -> End {
        let mut pending: VecDeque<PendingWrite> = VecDeque::new();
        let mut writer_gone = false;
        let mut stderr = shell.stderr();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut queued = Queued::default();
        // Once every writer is gone the wake socket reads as EOF forever; stop polling it.
        let mut wake_open = true;
        // open_session configured the interval; the pump only has to send them.
        let keepalive = self.target.keepalive_s > 0;
        let fail = |pending: &mut VecDeque<PendingWrite>, reason: String| {
            for write in pending.drain(..) {
                let _ = write.request.done.send(Err(ChannelError::lost(&self.channel, reason.clone())));
            }
            End::Lost(reason)
        };
        loop {
            loop {
                match self.inbox.try_recv() {
                    Ok(request) => pending.push_back(PendingWrite { request, written: 0, recorded: false }),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        writer_gone = true;
                        break;
                    }
                }
            }

            let mut read_some = false;
            for source in [&mut *shell as &mut dyn Read, &mut stderr] {
                match self.read_available(wire, source, &mut buf) {
                    Ok(read) => read_some |= read,
                    Err(e) => return fail(&mut pending, e.to_string()),
                }
            }
            if read_some {
                queued.read_some();
            }

            while let Some(front) = pending.front_mut() {
                if !front.recorded {
                    // Recorded as it goes on the wire, so the transcript keeps wire order.
                    front.request.record(&self.recorder, &self.channel);
                    front.recorded = true;
                }
                let data = &front.request.data[front.written..];
                if !data.is_empty() {
                    match shell.write(data) {
                        Ok(n) => front.written += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            let e = wire.io_failure(e);
                            return fail(&mut pending, format!("write failed: {e}"));
                        }
                    }
                }
                if front.written == front.request.data.len() {
                    let done = pending.pop_front().expect("front exists");
                    let _ = done.request.done.send(Ok(()));
                }
            }

            if shell.eof() {
                // No exit status here: it may not have arrived yet, and libssh2 would say 0.
                return fail(&mut pending, "the remote shell ended (EOF from the device)".into());
            }
            if writer_gone && pending.is_empty() {
                return End::Closed;
            }

            let mut next_keepalive = None;
            if keepalive {
                match wire.session.keepalive_send() {
                    Ok(seconds) => next_keepalive = Some(Duration::from_secs(u64::from(seconds.max(1)))),
                    Err(e) if is_eagain(&e) => next_keepalive = Some(Duration::from_secs(1)),
                    Err(e) => return fail(&mut pending, format!("keepalive failed: {}", e.message())),
                }
            }
            // Reading stderr, or writing, may have taken in output that arrived since
            // stdout was read; poll(2) would not see it on the socket.
            if queued.arrived(shell) {
                continue;
            }
            let mut socket_events = PollFlags::POLLIN;
            if wire.wanted_events().contains(PollFlags::POLLOUT) {
                socket_events |= PollFlags::POLLOUT;
            }
            let wake_events = if wake_open { PollFlags::POLLIN } else { PollFlags::empty() };
            let mut fds = [PollFd::new(wire.socket(), socket_events), PollFd::new(self.wake.as_fd(), wake_events)];
            match poll(&mut fds, poll_timeout(next_keepalive)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return fail(&mut pending, format!("poll failed: {e}")),
            }
            let mut sink = [0u8; 64];
            while wake_open {
                match (&self.wake).read(&mut sink) {
                    Ok(0) => wake_open = false,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// Read, record and hand over everything the shell has sent so far; returns whether
    /// there was anything.
    fn read_available(&self, wire: &Wire, source: &mut dyn Read, buf: &mut [u8]) -> Result<bool, WireError> {
        let mut read_some = false;
        loop {
            match source.read(buf) {
                Ok(0) => return Ok(read_some),
                Ok(n) => {
                    self.recorder.bytes(&self.channel, Direction::In, &buf[..n]);
                    self.feed.push(&buf[..n]);
                    read_some = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(read_some),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(wire.io_failure(e)),
            }
        }
    }
}
