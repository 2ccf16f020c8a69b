//! The pump behind every console [`ByteStream`]: one task, on the console's own
//! thread, that owns the transport.
//!
//! It reads the device continuously (whether or not anyone is reading the stream),
//! records each chunk through the [`Recorder`] before offering it to the [`Feed`], and
//! performs write requests in order, recording them just before they go on the wire so
//! the transcript shows our keystrokes before the device's echo of them.
//!
//! Every pump runs on its own thread with a single-threaded reactor (see
//! [`start_pump`] for why).
//!
//! Reading and writing are polled from that one task with a hand-written `poll_fn` instead
//! of `select!` over two futures: the transport is borrowed mutably by both directions,
//! and polling `poll_read`/`poll_write` directly is cancellation-safe by construction
//! (a `Ready` always carries the bytes it moved). The order of the two is alternated on
//! every wake-up so neither a flooding device nor a long write can starve the other.
//!
//! A [`WireCodec`] sits between the wire and the transcript. For local ttys and raw TCP
//! it is transparent (zero copies on the hot path); for telnet/RFC 2217 it strips the
//! protocol so the transcript holds only the device's data.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use crate::channel::{ByteStream, ChannelError, Feed, WriteRequest, DEFAULT_FEED_CAPACITY};
use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};

/// Size of one read from the transport. Large so a fast line costs few syscalls;
/// a PTY hands out at most 4 KiB per read anyway, a socket can give more.
const READ_CHUNK: usize = 64 * 1024;

/// What a codec found in one chunk read from the wire.
#[derive(Default)]
pub(crate) struct Decoded {
    /// Device data, for the transcript and the reader.
    pub data: Vec<u8>,
    /// Protocol answers to send back (already encoded for the wire).
    pub replies: Vec<u8>,
    /// Protocol events a reader of the evidence should see.
    pub notes: Vec<String>,
    /// Set once when the start-up negotiation has finished, with a summary.
    pub settled: Option<String>,
}

/// Translates between device data and what travels on the wire.
pub(crate) trait WireCodec: Send + 'static {
    /// True when wire bytes and device data are the same (no protocol).
    fn is_transparent(&self) -> bool;
    /// Bytes to send as soon as the connection is up.
    fn greeting(&mut self) -> Vec<u8> {
        Vec::new()
    }
    /// Consume wire bytes; only called when not transparent.
    fn decode(&mut self, wire: &[u8], out: &mut Decoded);
    /// Encode device data for the wire; only called when not transparent.
    fn encode(&mut self, data: &[u8], wire: &mut Vec<u8>);
}

/// Plain bytes: local ttys and raw TCP consoles.
pub(crate) struct Transparent;

impl WireCodec for Transparent {
    fn is_transparent(&self) -> bool {
        true
    }
    fn decode(&mut self, wire: &[u8], out: &mut Decoded) {
        out.data.extend_from_slice(wire);
    }
    fn encode(&mut self, data: &[u8], wire: &mut Vec<u8>) {
        wire.extend_from_slice(data);
    }
}

/// Turns transport errors into loss reasons that name the endpoint.
pub(crate) trait LossReason: Send + 'static {
    fn eof(&self) -> String;
    fn error(&self, op: &str, err: &io::Error) -> String;
}

/// Everything a pump needs besides the transport itself.
pub(crate) struct PumpSetup<C, L> {
    pub channel: ChannelId,
    /// Recorded as `ChannelOpened` once the transport is attached.
    pub opened_detail: String,
    pub recorder: Recorder,
    pub codec: C,
    pub loss: L,
    /// Fired with the codec's summary when its start-up negotiation settles.
    pub settled: Option<oneshot::Sender<String>>,
}

struct Outgoing {
    wire: Vec<u8>,
    written: usize,
    done: Option<oneshot::Sender<Result<(), ChannelError>>>,
}

enum Wake {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
    Request(Option<WriteRequest>),
}

/// Start the pump for a transport on its own thread and return the stream that talks
/// to it, once the transport is attached.
///
/// Each console gets a thread running a single-threaded tokio reactor. The
/// transport's readiness events then wake exactly the thread that reads it: on a
/// multi-threaded runtime the idle worker parked in `epoll_wait` is woken for every
/// burst of console output as well, an extra thread wake-up per 4 KiB PTY read that
/// cost ~15% of capture throughput on a flooding console. It also keeps capture going
/// at full speed however busy the caller's runtime is. A bench has tens of consoles
/// at most, so a thread each is cheap.
///
/// `attach` runs on that thread (it may block, e.g. in open(2)) and must create the
/// transport there, so that it registers with the thread's reactor. Its error is
/// returned as is; `ChannelOpened` is recorded only once it succeeded.
pub(crate) async fn start_pump<T, C, L, E, F>(attach: F, setup: PumpSetup<C, L>) -> Result<ByteStream, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    E: From<io::Error> + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin,
    C: WireCodec,
    L: LossReason,
{
    let feed = Feed::new(DEFAULT_FEED_CAPACITY);
    let (requests_tx, requests) = mpsc::channel(16);
    let stream = ByteStream::new(setup.channel.clone(), feed.clone(), requests_tx);
    let (attached_tx, attached) = oneshot::channel::<Result<(), E>>();
    let mut thread_name = format!("console-{}", setup.channel.device);
    thread_name.truncate(15);
    std::thread::Builder::new().name(thread_name).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                let _ = attached_tx.send(Err(E::from(err)));
                return;
            }
        };
        runtime.block_on(async move {
            let io = match attach() {
                Ok(io) => io,
                Err(err) => {
                    let _ = attached_tx.send(Err(err));
                    return;
                }
            };
            setup.recorder.emit(EventKind::ChannelOpened { channel: setup.channel.clone(), detail: setup.opened_detail.clone() });
            let _ = attached_tx.send(Ok(()));
            run_pump(io, setup, feed, requests).await;
        });
    })?;
    match attached.await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(E::from(io::Error::other("the console thread ended before the transport was attached"))),
    }
}

async fn run_pump<T, C, L>(mut io: T, setup: PumpSetup<C, L>, feed: Arc<Feed>, mut requests: mpsc::Receiver<WriteRequest>)
where
    T: AsyncRead + AsyncWrite + Unpin,
    C: WireCodec,
    L: LossReason,
{
    let PumpSetup { channel, recorder, mut codec, loss, mut settled, .. } = setup;
    let transparent = codec.is_transparent();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut outbox: VecDeque<Outgoing> = VecDeque::new();
    let greeting = codec.greeting();
    if !greeting.is_empty() {
        outbox.push_back(Outgoing { wire: greeting, written: 0, done: None });
    }
    let mut decoded = Decoded::default();
    let mut writes_first = false;

    let lost_reason = loop {
        writes_first = !writes_first;
        let wake = poll_fn(|cx| {
            if outbox.is_empty() {
                if let Poll::Ready(request) = requests.poll_recv(cx) {
                    return Poll::Ready(Wake::Request(request));
                }
            }
            for write_turn in [writes_first, !writes_first] {
                if write_turn {
                    if let Some(front) = outbox.front() {
                        if let Poll::Ready(result) = Pin::new(&mut io).poll_write(cx, &front.wire[front.written..]) {
                            return Poll::Ready(Wake::Wrote(result));
                        }
                    }
                } else {
                    let mut read_buf = ReadBuf::new(&mut buf);
                    if let Poll::Ready(result) = Pin::new(&mut io).poll_read(cx, &mut read_buf) {
                        let n = read_buf.filled().len();
                        return Poll::Ready(Wake::Read(result.map(|()| n)));
                    }
                }
            }
            Poll::Pending
        })
        .await;

        match wake {
            Wake::Request(None) => {
                // The ByteStream was dropped: release the port first, so that whoever
                // sees ChannelClosed can open it again at once.
                drop(io);
                recorder.emit(EventKind::ChannelClosed { channel: channel.clone() });
                feed.close(ChannelError::Closed { channel: channel.clone() });
                return;
            }
            Wake::Request(Some(request)) => {
                request.record(&recorder, &channel);
                let wire = if transparent {
                    request.data
                } else {
                    let mut wire = Vec::with_capacity(request.data.len() + 8);
                    codec.encode(&request.data, &mut wire);
                    wire
                };
                if wire.is_empty() {
                    let _ = request.done.send(Ok(()));
                } else {
                    outbox.push_back(Outgoing { wire, written: 0, done: Some(request.done) });
                }
            }
            Wake::Wrote(Ok(0)) => break loss.error("writing to", &io::Error::from(io::ErrorKind::WriteZero)),
            Wake::Wrote(Ok(n)) => {
                let front = outbox.front_mut().expect("a write completes only when something was queued");
                front.written += n;
                if front.written == front.wire.len() {
                    let finished = outbox.pop_front().expect("front exists");
                    if let Some(done) = finished.done {
                        let _ = done.send(Ok(()));
                    }
                }
            }
            Wake::Wrote(Err(err)) if retryable(&err) => {}
            Wake::Wrote(Err(err)) => break loss.error("writing to", &err),
            Wake::Read(Ok(0)) => break loss.eof(),
            Wake::Read(Ok(n)) => {
                let wire = &buf[..n];
                if transparent {
                    recorder.bytes(&channel, Direction::In, wire);
                    feed.push(wire);
                    continue;
                }
                codec.decode(wire, &mut decoded);
                for text in decoded.notes.drain(..) {
                    recorder.emit(EventKind::Note { channel: channel.clone(), text });
                }
                if !decoded.data.is_empty() {
                    recorder.bytes(&channel, Direction::In, &decoded.data);
                    feed.push(&decoded.data);
                    decoded.data.clear();
                }
                if !decoded.replies.is_empty() {
                    outbox.push_back(Outgoing { wire: std::mem::take(&mut decoded.replies), written: 0, done: None });
                }
                if let Some(summary) = decoded.settled.take() {
                    if let Some(settled) = settled.take() {
                        let _ = settled.send(summary);
                    }
                }
            }
            Wake::Read(Err(err)) if retryable(&err) => {}
            Wake::Read(Err(err)) => break loss.error("reading", &err),
        }
    };

    // The device side is gone. Close the transport now, tell everyone, and keep
    // answering writes with the loss until the stream is dropped.
    drop(io);
    recorder.emit(EventKind::ChannelLost { channel: channel.clone(), reason: lost_reason.clone() });
    let lost = ChannelError::lost(&channel, lost_reason);
    feed.close(lost.clone());
    for pending in outbox.drain(..) {
        if let Some(done) = pending.done {
            let _ = done.send(Err(lost.clone()));
        }
    }
    while let Some(request) = requests.recv().await {
        let _ = request.done.send(Err(lost.clone()));
    }
}

fn retryable(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock)
}
