//! The raw byte channel every interactive transport presents upward.
//!
//! A serial console, a ser2net socket and an SSH shell all look the same to the
//! expect engine: a [`ByteStream`]. Behind each stream runs a *pump* (a dedicated
//! thread per channel: a small runtime of its own for serial, libssh2 for SSH) that
//! owns the transport, reads it continuously, records every byte through the
//! [`Recorder`] the moment it crosses the wire, and only then offers it to whoever
//! is reading. Output that arrives while
//! nobody expects anything is therefore still in the transcript.
//!
//! The hand-over buffer ([`Feed`]) is bounded: on a chatty console nobody reads,
//! the oldest unread bytes are dropped from the *feed* (never from the transcript)
//! and counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
use proofrig_model::secret::Secret;

/// Default amount of unread device output kept for readers (1 MiB).
pub const DEFAULT_FEED_CAPACITY: usize = 1 << 20;

/// Why a channel stopped working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The device side went away: EOF, EIO, broken pipe, TCP reset, SSH channel closed.
    #[error("console lost on {channel}: {reason}")]
    ConsoleLost { channel: ChannelId, reason: String },
    /// The stream was closed from our side.
    #[error("{channel} is closed")]
    Closed { channel: ChannelId },
}

impl ChannelError {
    pub fn lost(channel: &ChannelId, reason: impl Into<String>) -> Self {
        ChannelError::ConsoleLost { channel: channel.clone(), reason: reason.into() }
    }
}

struct FeedState {
    buf: VecDeque<u8>,
    dropped: u64,
    end: Option<ChannelError>,
    /// When the pump last offered bytes, or when the feed was made.
    last_push: Instant,
}

/// Bounded hand-over buffer between a pump and a reader.
pub struct Feed {
    capacity: usize,
    state: Mutex<FeedState>,
    notify: Notify,
}

impl Feed {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            state: Mutex::new(FeedState { buf: VecDeque::new(), dropped: 0, end: None, last_push: Instant::now() }),
            notify: Notify::new(),
        })
    }

    /// Offer bytes that were already recorded. Drops the oldest unread bytes if full.
    pub fn push(&self, data: &[u8]) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.buf.extend(data);
            state.last_push = Instant::now();
            let excess = state.buf.len().saturating_sub(self.capacity);
            if excess > 0 {
                state.buf.drain(..excess);
                state.dropped += excess as u64;
            }
        }
        self.notify.notify_one();
    }

    /// Mark the end of the stream; readers get the error once the buffer is drained.
    pub fn close(&self, why: ChannelError) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.end.is_none() {
                state.end = Some(why);
            }
        }
        self.notify.notify_one();
    }

    /// Wait until the pump has ended the stream (after recording how it ended).
    pub async fn ended(&self) {
        loop {
            let notified = self.notify.notified();
            if self.state.lock().unwrap_or_else(|p| p.into_inner()).end.is_some() {
                // Leave the wake-up for a reader that may be waiting too.
                self.notify.notify_one();
                return;
            }
            notified.await;
        }
    }

    /// How long the pump has offered nothing: since its last bytes, or since the feed
    /// was made if none came.
    pub fn silent_for(&self) -> Duration {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).last_push.elapsed()
    }

    /// Bytes dropped from the feed because nobody read them in time.
    pub fn dropped(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).dropped
    }

    /// Wait for the next unread bytes, or the reason the stream ended.
    pub async fn take(&self) -> Result<Vec<u8>, ChannelError> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if !state.buf.is_empty() {
                    return Ok(state.buf.drain(..).collect());
                }
                if let Some(end) = &state.end {
                    return Err(end.clone());
                }
            }
            notified.await;
        }
    }

    /// Unread bytes, without waiting; an empty vector if there are none.
    pub fn take_now(&self) -> Result<Vec<u8>, ChannelError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.buf.is_empty() {
            if let Some(end) = &state.end {
                return Err(end.clone());
            }
        }
        Ok(state.buf.drain(..).collect())
    }
}

/// A request to write to the device, served by the pump so that the transcript
/// records writes in wire order.
pub struct WriteRequest {
    pub data: Vec<u8>,
    /// When set, the transcript records this secret label instead of the bytes.
    pub redact_as: Option<String>,
    pub done: oneshot::Sender<Result<(), ChannelError>>,
}

impl WriteRequest {
    /// Record this write as the pump performs it (bytes, or the redaction marker).
    pub fn record(&self, recorder: &Recorder, channel: &ChannelId) {
        match &self.redact_as {
            None => {
                recorder.bytes(channel, Direction::Out, &self.data);
            }
            Some(label) => {
                recorder.emit(EventKind::Redacted {
                    channel: channel.clone(),
                    direction: Direction::Out,
                    secret: label.clone(),
                    len: self.data.len(),
                });
            }
        }
    }
}

/// One end of an interactive byte channel: read what the device said, write to it.
pub struct ByteStream {
    channel: ChannelId,
    feed: Arc<Feed>,
    writes: mpsc::Sender<WriteRequest>,
}

impl ByteStream {
    /// Used by pumps: `feed` receives recorded device output, `writes` carries requests to the pump.
    pub fn new(channel: ChannelId, feed: Arc<Feed>, writes: mpsc::Sender<WriteRequest>) -> Self {
        Self { channel, feed, writes }
    }

    pub fn channel(&self) -> &ChannelId {
        &self.channel
    }

    /// The next bytes from the device (already recorded), or why there will be none.
    pub async fn read(&mut self) -> Result<Vec<u8>, ChannelError> {
        self.feed.take().await
    }

    /// Unread bytes without waiting.
    pub fn read_now(&mut self) -> Result<Vec<u8>, ChannelError> {
        self.feed.take_now()
    }

    /// Bytes of output dropped because nobody read them (they are still in the transcript).
    pub fn dropped(&self) -> u64 {
        self.feed.dropped()
    }

    /// How long the device has said nothing on this stream: since its last bytes
    /// arrived (read or not), or since the stream was opened.
    pub fn silent_for(&self) -> Duration {
        self.feed.silent_for()
    }

    /// Close the channel and wait until its pump has recorded the end, so nothing
    /// about this channel is recorded after `close` returns.
    pub async fn close(self) {
        let ByteStream { feed, writes, .. } = self;
        drop(writes);
        feed.ended().await;
    }

    /// Write bytes to the device and wait until the transport accepted them.
    pub async fn write(&self, data: &[u8]) -> Result<(), ChannelError> {
        self.request(data.to_vec(), None).await
    }

    /// Write a secret followed by `suffix` (e.g. `\n`); the transcript shows only its label.
    pub async fn write_secret(&self, secret: &Secret, suffix: &[u8]) -> Result<(), ChannelError> {
        self.request(secret.expose().as_bytes().to_vec(), Some(secret.label().to_string())).await?;
        if !suffix.is_empty() {
            self.write(suffix).await?;
        }
        Ok(())
    }

    async fn request(&self, data: Vec<u8>, redact_as: Option<String>) -> Result<(), ChannelError> {
        let (done, answer) = oneshot::channel();
        let closed = || ChannelError::Closed { channel: self.channel.clone() };
        self.writes.send(WriteRequest { data, redact_as, done }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

impl std::fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteStream").field("channel", &self.channel).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ChannelId {
        ChannelId::new("dev", "console")
    }

    #[tokio::test]
    async fn feed_is_bounded_and_counts_what_it_dropped() {
        let feed = Feed::new(8);
        feed.push(b"0123456789abcdef");
        assert_eq!(feed.take().await.unwrap(), b"89abcdef");
        assert_eq!(feed.dropped(), 8);
    }

    #[tokio::test]
    async fn reader_gets_buffered_bytes_before_the_loss() {
        let feed = Feed::new(64);
        feed.push(b"last words");
        feed.close(ChannelError::lost(&id(), "EOF"));
        assert_eq!(feed.take().await.unwrap(), b"last words");
        assert!(matches!(feed.take().await, Err(ChannelError::ConsoleLost { .. })));
    }

    #[tokio::test]
    async fn close_waits_for_the_pump_to_end_the_stream() {
        let feed = Feed::new(64);
        let (writes, mut requests) = mpsc::channel::<WriteRequest>(1);
        let stream = ByteStream::new(id(), feed.clone(), writes);
        let pump_feed = feed.clone();
        let pump = tokio::spawn(async move {
            // A pump ends when its request channel closes, recording first.
            while requests.recv().await.is_some() {}
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            pump_feed.close(ChannelError::Closed { channel: id() });
        });
        stream.close().await;
        assert!(matches!(feed.take_now(), Err(ChannelError::Closed { .. })), "close returned before the pump ended");
        pump.await.unwrap();
    }

    #[tokio::test]
    async fn waiting_reader_wakes_on_push() {
        let feed = Feed::new(64);
        let f2 = feed.clone();
        let reader = tokio::spawn(async move { f2.take().await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        feed.push(b"hi");
        assert_eq!(reader.await.unwrap().unwrap(), b"hi");
    }
}
