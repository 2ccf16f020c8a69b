//! The append-only, hash-chained journal of a run.
//!
//! One JSON record per line: `{"n":N,"prev":"<hex>","entry":{...}}`. A record's hash
//! is the SHA-256 of its line (without the newline); each record names the previous
//! record's hash, and the first names [`genesis`]. Changing, removing or reordering
//! any record breaks the chain at a record number a verifier can name.
//!
//! Records are numbered and queued by [`JournalWriter::append`] on the caller's
//! thread; the journal's own writer thread encodes, chains (SHA-256) and writes them,
//! in order, within [`WRITE_DELAY`] (at once when about [`WRITE_AT`] bytes are queued).
//! The threads a step waits for (the stepping thread, an SSH session's thread, a
//! console's pump) thus neither hash nor wait on a `write(2)`, and entries handed over
//! owned ([`JournalWriter::append_owned`]: agent events and step records) are not even
//! serialized there. On a device answering in 0.2 ms that work was most of what the
//! journal cost a step (BENCHMARKS.md). What a crash can lose is bounded: the records
//! of the last few milliseconds, never a record in the middle, so the file is always a
//! prefix that verifies (as incomplete). A normal end, Ctrl-C, a forced quit and
//! dropping the writer all write everything queued first; `close` and `flush` wait
//! until it is written.
//!
//! A prefix nobody signed proves little: anyone who can write the file can rebuild
//! the chain. A journal made with a [`HeadSigner`] ([`JournalWriter::create_signed`])
//! therefore signs its own head as it goes, as records of the chain (checkpoints):
//! right after each record the signer names (a case's end), and whenever records
//! have stood unsigned for the signer's interval. The appender only numbers and
//! queues a checkpoint (one more queue slot, no work per step); the writer thread
//! signs it when it chains it, so it signs exactly the records before it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest a record waits in memory before the writer thread writes it.
pub const WRITE_DELAY: Duration = Duration::from_millis(2);
/// Queued bytes that wake the writer thread at once (a console flood).
pub const WRITE_AT: usize = 256 * 1024;
/// Queued bytes at which an appender writes the queue itself, so a disk slower than
/// the devices holds the run back instead of growing memory.
const QUEUE_LIMIT: usize = 8 * 1024 * 1024;
/// Rounds of [`WRITE_DELAY`] with nothing to write after which the writer thread
/// sleeps until woken, rather than looking every few milliseconds through a long
/// device wait.
const IDLE_ROUNDS: u32 = 50;

/// The `prev` of record 0: the hash of a fixed label, so an empty prefix is recognisable.
pub fn genesis() -> [u8; 32] {
    Sha256::digest(b"proofrig journal v1").into()
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write journal {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("cannot read journal {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot encode journal record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("journal {path} is sealed; nothing more can be appended to it")]
    Closed { path: String },
    #[error("journal {path}: the run has ended; a late agent event belongs to no step and is not journaled")]
    RunEnded { path: String },
    #[error("cannot start the journal's writer thread: {0}")]
    Thread(std::io::Error),
}

/// An entry handed to the journal owned, for the writer thread to serialize
/// ([`JournalWriter::append_owned`]).
pub trait OwnedEntry: Serialize + Send + 'static {
    /// About how long its line will be: decides when the writer thread is woken at
    /// once and when an appender must write the queue itself. A guess is fine; a
    /// console chunk should count its bytes.
    fn approx_len(&self) -> usize;

    /// An agent event (recorded by a channel's pump or an agent's thread) rather than a
    /// record the executor writes: refused once the run has ended
    /// ([`JournalWriter::end_agent_events`]).
    const AGENT_EVENT: bool = false;
}

/// Signs the journal's head as the run goes (see the module doc). The journal knows
/// nothing of what it signs with or what its records mean: the evidence layer does.
pub trait HeadSigner: Send + Sync + 'static {
    /// Whether the record whose serialized entry is `body` must be followed at once
    /// by a checkpoint (a case's end). Asked only of records appended serialized
    /// ([`JournalWriter::append`]), never of agent events or step records.
    fn signs_after(&self, body: &[u8]) -> bool;
    /// Write into `out` the entry of a checkpoint signing the journal's first
    /// `records` records, the last of which hashes to `head`.
    fn checkpoint(&self, records: u64, head: &[u8; 32], out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
    /// The longest records may stand unsigned while the journal is open.
    fn interval(&self) -> Duration;
}

/// An owned entry, type-erased for the queue.
trait Encode: Send {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
}

impl<T: Serialize + Send> Encode for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }
}

/// A record appended but not yet encoded.
enum Pending {
    /// Serialized by the appender: the next `len` bytes of [`Queue::serialized`].
    Serialized(usize),
    /// Handed over owned; the writer thread serializes it.
    Owned(Box<dyn Encode>),
    /// A checkpoint: the writer thread has the [`HeadSigner`] sign the head before it.
    Checkpoint,
}

/// The records appended but not yet written, in chain order.
struct Queue {
    pending: Vec<Pending>,
    /// The bodies of the [`Pending::Serialized`] records, one after the other.
    serialized: Vec<u8>,
    /// About how many bytes the pending records will take.
    queued_bytes: usize,
    /// The next record number.
    next: u64,
    /// The first write or encoding error: nothing is written or accepted after it.
    failed: Option<String>,
    /// Set when the bundle is sealed: a late event must not change what was signed.
    closed: bool,
    /// Set when the run ends, before its RunFinished record: an agent thread the run
    /// abandoned (a step's deadline cut it off) may still record, and nothing may
    /// follow RunFinished but checkpoints, or the bundle cannot be sealed.
    agent_events_ended: bool,
    /// Set when the writer is dropped: the writer thread writes what is left and ends.
    stopping: bool,
    /// The writer thread sleeps until woken (the journal has been idle a while); while
    /// it is not, it looks at the queue every [`WRITE_DELAY`] by itself, so appending
    /// costs no wake-up (a futex call, and on 2 cores often a context switch).
    writer_asleep: bool,
}

/// The file side and the chain, locked while a batch is encoded and written, so
/// batches reach the file in order.
struct Output {
    file: File,
    /// Hash of the last record written and the next record number to write.
    prev: [u8; 32],
    next: u64,
    /// Reused buffers: the batch's lines, one record's body, and the emptied queue of
    /// the last batch, swapped in as the next queue.
    lines: Vec<u8>,
    body: Vec<u8>,
    spare_pending: Vec<Pending>,
    spare_serialized: Vec<u8>,
    /// Records covered by the last checkpoint written (itself included), and when it
    /// was written: the writer thread signs again when records stand unsigned too long.
    signed: u64,
    signed_at: Instant,
}

struct Shared {
    path: String,
    signer: Option<Box<dyn HeadSigner>>,
    queue: Mutex<Queue>,
    /// Wakes the writer thread: the queue became non-empty while it was asleep, grew
    /// past [`WRITE_AT`], or the writer is stopping.
    wake: Condvar,
    output: Mutex<Output>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn write_error(&self, reason: &str) -> JournalError {
        JournalError::Write { path: self.path.clone(), source: std::io::Error::other(reason.to_string()) }
    }

    /// Encode, chain and write every record queued so far, in order. After a failure
    /// nothing more is written: the file stays a verifiable prefix.
    fn write_queued(&self) -> Result<(), JournalError> {
        let mut output = lock(&self.output);
        let output = &mut *output;
        let mut pending = std::mem::take(&mut output.spare_pending);
        let mut serialized = std::mem::take(&mut output.spare_serialized);
        {
            let mut queue = lock(&self.queue);
            if let Some(reason) = queue.failed.clone() {
                // What could not be written is dropped, not retried out of order.
                queue.pending.clear();
                queue.serialized.clear();
                queue.queued_bytes = 0;
                (output.spare_pending, output.spare_serialized) = (pending, serialized);
                return Err(self.write_error(&reason));
            }
            std::mem::swap(&mut queue.pending, &mut pending);
            std::mem::swap(&mut queue.serialized, &mut serialized);
            queue.queued_bytes = 0;
        }
        let (mut prev, mut next) = (output.prev, output.next);
        let mut encoding_failed = None;
        let mut signed = None;
        let mut offset = 0;
        for record in pending.drain(..) {
            if encoding_failed.is_some() {
                continue;
            }
            let body = match &record {
                Pending::Serialized(len) => {
                    offset += len;
                    &serialized[offset - len..offset]
                }
                Pending::Owned(entry) => {
                    output.body.clear();
                    if let Err(err) = entry.encode(&mut output.body) {
                        encoding_failed = Some(format!("cannot encode record {next}: {err}"));
                        continue;
                    }
                    &output.body[..]
                }
                Pending::Checkpoint => {
                    output.body.clear();
                    let signer = self.signer.as_ref().expect("checkpoints are queued only with a signer");
                    if let Err(err) = signer.checkpoint(next, &prev, &mut output.body) {
                        encoding_failed = Some(format!("cannot encode the checkpoint at record {next}: {err}"));
                        continue;
                    }
                    signed = Some(next + 1);
                    &output.body[..]
                }
            };
            prev = push_line(&mut output.lines, next, &prev, body);
            next += 1;
        }
        serialized.clear();
        if output.body.capacity() > 1 << 20 {
            // A rare huge record (a fetched file's listing) must not stay allocated.
            output.body = Vec::new();
        }
        (output.spare_pending, output.spare_serialized) = (pending, serialized);
        let written = output.file.write_all(&output.lines);
        output.lines.clear();
        let failure = match written {
            Ok(()) => {
                (output.prev, output.next) = (prev, next);
                if let Some(signed) = signed {
                    (output.signed, output.signed_at) = (signed, Instant::now());
                }
                encoding_failed
                    .map(|reason| (reason.clone(), JournalError::Write { path: self.path.clone(), source: std::io::Error::other(reason) }))
            }
            Err(source) => Some((source.to_string(), JournalError::Write { path: self.path.clone(), source })),
        };
        match failure {
            None => Ok(()),
            Some((reason, err)) => {
                lock(&self.queue).failed.get_or_insert(reason);
                Err(err)
            }
        }
    }

    /// The writer thread: every [`WRITE_DELAY`], writes what was queued meanwhile in one
    /// `write(2)`; after [`IDLE_ROUNDS`] rounds with nothing queued, sleeps until an
    /// append wakes it, or, with records unsigned, until their checkpoint is due.
    fn write_loop(&self) {
        let mut idle_rounds = 0;
        loop {
            // Before the queue is locked: the lock order is output, then queue.
            let due = self.checkpoint_if_due();
            let mut queue = lock(&self.queue);
            if queue.pending.is_empty() && !queue.stopping && idle_rounds >= IDLE_ROUNDS {
                // With a signer, look again within its interval at the latest: records
                // another thread wrote since `due` was taken may be unsigned.
                let due = due.or_else(|| self.signer.as_ref().map(|s| Instant::now() + s.interval()));
                queue.writer_asleep = true;
                while queue.writer_asleep && !queue.stopping {
                    queue = match due.map(|at| at.saturating_duration_since(Instant::now())) {
                        None => self.wake.wait(queue).unwrap_or_else(|p| p.into_inner()),
                        Some(left) if left.is_zero() => break,
                        Some(left) => self.wake.wait_timeout(queue, left).unwrap_or_else(|p| p.into_inner()).0,
                    };
                }
                queue.writer_asleep = false;
                idle_rounds = 0;
            }
            if !queue.stopping && queue.queued_bytes < WRITE_AT {
                queue = self.wake.wait_timeout(queue, WRITE_DELAY).unwrap_or_else(|p| p.into_inner()).0;
            }
            let (stopping, empty) = (queue.stopping, queue.pending.is_empty());
            drop(queue);
            if empty {
                if stopping {
                    return;
                }
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            // A failure is kept in the queue, where appends and `failure` report it.
            let _ = self.write_queued();
        }
    }

    /// When the records written since the last checkpoint must be signed; `None`
    /// without a signer or with nothing unsigned.
    fn checkpoint_due(&self) -> Option<Instant> {
        let signer = self.signer.as_ref()?;
        let output = lock(&self.output);
        (output.next > output.signed).then(|| output.signed_at + signer.interval())
    }

    /// Queue and write a checkpoint if records have stood unsigned for the interval;
    /// returns when the next one is due, if records are unsigned.
    fn checkpoint_if_due(&self) -> Option<Instant> {
        let due = self.checkpoint_due()?;
        if due > Instant::now() {
            return Some(due);
        }
        {
            let mut queue = lock(&self.queue);
            if queue.closed || queue.failed.is_some() {
                return None;
            }
            queue.next += 1;
            queue.pending.push(Pending::Checkpoint);
        }
        let _ = self.write_queued();
        self.checkpoint_due()
    }
}

/// Append record `n` with body `body` after the record hashed `prev` to `lines`;
/// returns its hash.
///
/// The line is `{"n":N,"prev":"<hex>","entry":BODY}`, byte for byte what serde_json
/// makes of such a struct.
fn push_line(lines: &mut Vec<u8>, n: u64, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let start = lines.len();
    lines.extend_from_slice(b"{\"n\":");
    lines.extend_from_slice(itoa(n, &mut [0; 20]));
    lines.extend_from_slice(b",\"prev\":\"");
    lines.extend_from_slice(&hex_of(prev));
    lines.extend_from_slice(b"\",\"entry\":");
    lines.extend_from_slice(body);
    lines.push(b'}');
    let hash = Sha256::digest(&lines[start..]).into();
    lines.push(b'\n');
    hash
}

/// Record `n` with entry `body` after the record hashed `prev`, as the writer writes
/// it (newline included), and its hash: for appending to a journal whose writer is
/// gone (`proofrig seal`, after a crash).
pub fn record_line(n: u64, prev: &[u8; 32], body: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let mut line = Vec::with_capacity(body.len() + 100);
    let hash = push_line(&mut line, n, prev, body);
    (line, hash)
}

/// Appends records, keeping the chain.
pub struct JournalWriter {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl JournalWriter {
    pub fn create(path: &Path) -> Result<Self, JournalError> {
        Self::create_with(path, None)
    }

    /// A journal that signs its head as it goes with `signer` (see the module doc).
    pub fn create_signed(path: &Path, signer: Box<dyn HeadSigner>) -> Result<Self, JournalError> {
        Self::create_with(path, Some(signer))
    }

    fn create_with(path: &Path, signer: Option<Box<dyn HeadSigner>>) -> Result<Self, JournalError> {
        let name = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map_err(|source| JournalError::Write { path: name.clone(), source })?;
        Self::writing_to(file, name, signer)
    }

    /// A journal written to `file`, already open; `name` labels errors.
    fn writing_to(file: File, name: String, signer: Option<Box<dyn HeadSigner>>) -> Result<Self, JournalError> {
        let shared = Arc::new(Shared {
            path: name,
            signer,
            queue: Mutex::new(Queue {
                pending: Vec::with_capacity(1024),
                serialized: Vec::with_capacity(64 * 1024),
                queued_bytes: 0,
                next: 0,
                failed: None,
                closed: false,
                agent_events_ended: false,
                stopping: false,
                writer_asleep: false,
            }),
            wake: Condvar::new(),
            output: Mutex::new(Output {
                file,
                prev: genesis(),
                next: 0,
                lines: Vec::with_capacity(64 * 1024),
                body: Vec::new(),
                spare_pending: Vec::with_capacity(1024),
                spare_serialized: Vec::with_capacity(64 * 1024),
                signed: 0,
                signed_at: Instant::now(),
            }),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new().name("journal-writer".into()).spawn(move || shared.write_loop()).map_err(JournalError::Thread)?
        };
        Ok(Self { shared, writer: Some(writer) })
    }

    /// Append one entry, serialized now on the caller's thread; the writer thread
    /// chains and writes it within [`WRITE_DELAY`]. Returns its record number.
    pub fn append<T: Serialize + ?Sized>(&self, entry: &T) -> Result<u64, JournalError> {
        thread_local! {
            // Reused per thread: a fresh Vec regrew several times for every record.
            static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BODY.with(|body| {
            let mut body = body.borrow_mut();
            body.clear();
            serde_json::to_writer(&mut *body, entry)?;
            let checkpoint = self.shared.signer.as_ref().is_some_and(|s| s.signs_after(&body));
            let appended = self.enqueue(body.len(), checkpoint, false, |queue| {
                queue.serialized.extend_from_slice(&body);
                Pending::Serialized(body.len())
            });
            if body.capacity() > 1 << 20 {
                *body = Vec::new();
            }
            appended
        })
    }

    /// Append one entry handed over owned: numbered now, serialized, chained and
    /// written by the writer thread within [`WRITE_DELAY`], in order with every other
    /// record. Returns its record number. For what is journaled on the threads a step
    /// waits for (agent events, step records): on them this is a lock and a push.
    ///
    /// Should the entry fail to serialize there (serde_json fails only on a map with
    /// keys that are not strings), the journal stops at the record before it, and that
    /// failure is reported like a write error: by later appends, `flush` and `failure`.
    pub fn append_owned<T: OwnedEntry>(&self, entry: T) -> Result<u64, JournalError> {
        let len = entry.approx_len();
        self.enqueue(len, false, T::AGENT_EVENT, move |_| Pending::Owned(Box::new(entry)))
    }

    /// From now on agent events are refused (`JournalError::RunEnded`); the executor's
    /// own records (RunFinished) are still appended. For the run's end.
    pub fn end_agent_events(&self) {
        lock(&self.shared.queue).agent_events_ended = true;
    }

    /// Number and queue one record, and after it a checkpoint if `checkpoint`.
    fn enqueue(
        &self,
        len: usize,
        checkpoint: bool,
        agent_event: bool,
        record: impl FnOnce(&mut Queue) -> Pending,
    ) -> Result<u64, JournalError> {
        let shared = &*self.shared;
        let mut queue = lock(&shared.queue);
        if queue.closed {
            return Err(JournalError::Closed { path: shared.path.clone() });
        }
        if agent_event && queue.agent_events_ended {
            return Err(JournalError::RunEnded { path: shared.path.clone() });
        }
        if let Some(reason) = &queue.failed {
            return Err(shared.write_error(reason));
        }
        let n = queue.next;
        queue.next += 1;
        let pending = record(&mut queue);
        queue.pending.push(pending);
        if checkpoint {
            queue.next += 1;
            queue.pending.push(Pending::Checkpoint);
        }
        let before = queue.queued_bytes;
        queue.queued_bytes += len;
        let queued = queue.queued_bytes;
        let wake = std::mem::take(&mut queue.writer_asleep) || (before < WRITE_AT && queued >= WRITE_AT);
        drop(queue);
        if wake {
            shared.wake.notify_one();
        }
        if queued >= QUEUE_LIMIT {
            shared.write_queued()?;
        }
        Ok(n)
    }

    /// Write every record appended so far to the OS before returning.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.shared.write_queued()
    }

    /// Hash of the last record written (the chain head) and the record count, after
    /// writing what is queued.
    pub fn head(&self) -> ([u8; 32], u64) {
        let _ = self.shared.write_queued();
        let output = lock(&self.shared.output);
        (output.prev, output.next)
    }

    /// The first write error, if any happened (the run must then not claim completeness).
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.queue).failed.clone()
    }

    /// Refuse every later append, write what is queued; returns the final head and
    /// record count. A write error shows in [`JournalWriter::failure`].
    ///
    /// Sealing signs the journal's digest, so anything still holding the writer (a
    /// straggling agent task) must get an error instead of changing the file.
    pub fn close(&self) -> ([u8; 32], u64) {
        lock(&self.shared.queue).closed = true;
        self.head()
    }

    /// Write what is queued and fsync, for the end of a run.
    pub fn sync(&self) -> Result<(), JournalError> {
        self.shared.write_queued()?;
        let output = lock(&self.shared.output);
        output.file.sync_all().map_err(|source| JournalError::Write { path: self.shared.path.clone(), source })
    }
}

impl Drop for JournalWriter {
    /// Whatever is still queued is written before the writer goes.
    fn drop(&mut self) {
        lock(&self.shared.queue).stopping = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Lowercase hex of a hash, without allocating.
fn hex_of(hash: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, byte) in hash.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

/// Decimal digits of `n`, as serde_json writes a `u64`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A record read back, with its own hash.
#[derive(Debug, Clone)]
pub struct Record {
    pub n: u64,
    pub hash: [u8; 32],
    pub entry: serde_json::Value,
}

/// Why a journal does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("record {n} (line {line}) is not a journal record: {reason}")]
    Malformed { n: u64, line: u64, reason: String },
    #[error("record {n} (line {line}) is numbered {found}")]
    Numbering { n: u64, line: u64, found: u64 },
    #[error("record {n} (line {line}) does not follow the record before it: its `prev` does not match that record's hash")]
    Link { n: u64, line: u64 },
    #[error("the journal ends in the middle of record {n} (line {line}): the run was cut short")]
    TruncatedRecord { n: u64, line: u64 },
}

/// A journal whose chain holds: its records and the hash of the last one.
pub type VerifiedChain = (Vec<Record>, [u8; 32]);

/// How reading a chain ended: the chain head and the record count, where it breaks,
/// or an I/O error.
pub type ChainEnd = Result<Result<([u8; 32], u64), ChainBreak>, JournalError>;

/// Read and check the chain. The outer error is I/O; the inner one says where the chain breaks.
pub fn read_chain(path: &Path) -> Result<Result<VerifiedChain, ChainBreak>, JournalError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| JournalError::Read { path: name.clone(), source })?;
    read_chain_from(&mut BufReader::with_capacity(1 << 20, file), &name)
}

/// [`read_chain`] over any reader. `name` only labels I/O errors. Stops at the first
/// break without reading further. Holds every record: to look at a journal record by
/// record, use a [`ChainReader`].
pub fn read_chain_from(reader: &mut impl BufRead, name: &str) -> Result<Result<VerifiedChain, ChainBreak>, JournalError> {
    let mut chain = ChainReader::<_, serde_json::Value>::new(Hashing(reader), name);
    let records: Vec<Record> =
        chain.by_ref().map(|r| Record { n: r.n, hash: r.hash, entry: r.entry.unwrap_or_else(|other| other.value) }).collect();
    Ok(chain.finish()?.map(|(head, _)| (records, head)))
}

/// A record as a [`ChainReader`] hands it on: numbered and linked to the one before.
#[derive(Debug)]
pub struct ChainRecord<T> {
    pub n: u64,
    /// SHA-256 of the record's line.
    pub hash: [u8; 32],
    /// The entry as a `T`, or, when it is not one, why not and the entry as JSON.
    pub entry: Result<T, OtherEntry>,
}

/// An entry that is JSON but not the kind of entry the reader was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherEntry {
    /// Why it is not one (serde's message).
    pub reason: String,
    pub value: serde_json::Value,
}

/// Where a [`ChainReader`] gets its lines.
pub trait JournalLines {
    /// Append the next line, with its newline if it has one, to `line`; 0 at the end.
    fn next_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<usize>;
    /// SHA-256 of the complete line just read, without its newline. Called once for
    /// each such line, in order, until the reader stops.
    fn line_hash(&mut self, line: &[u8]) -> [u8; 32];
}

/// The lines of a buffered reader, each hashed when it is checked.
pub struct Hashing<R>(pub R);

impl<R: BufRead> JournalLines for Hashing<R> {
    fn next_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<usize> {
        self.0.read_until(b'\n', line)
    }

    fn line_hash(&mut self, line: &[u8]) -> [u8; 32] {
        Sha256::digest(line).into()
    }
}

/// Reads a journal record by record, checking the chain as it goes: an iterator of
/// the records that link up, which stops at the end or at the first break, after
/// which [`ChainReader::finish`] says which. Holds one line at a time.
///
/// Each line is parsed once, straight into `{n, prev, entry: T}`. Any line that does
/// not parse that way (not JSON, or an entry that is no `T`) is parsed again as plain
/// JSON and judged exactly as [`read_chain`] always did, so the fast way decides
/// nothing differently.
pub struct ChainReader<R, T> {
    reader: R,
    name: String,
    line: Vec<u8>,
    prev: [u8; 32],
    n: u64,
    end: Option<ChainEnd>,
    entry: PhantomData<fn() -> T>,
}

impl<R: JournalLines, T: DeserializeOwned> ChainReader<R, T> {
    /// `name` only labels I/O errors. A plain reader's lines come through [`Hashing`].
    pub fn new(reader: R, name: &str) -> Self {
        ChainReader { reader, name: name.to_string(), line: Vec::new(), prev: genesis(), n: 0, end: None, entry: PhantomData }
    }

    /// Read to the end (or the first break) and say how the chain ended.
    pub fn finish(mut self) -> ChainEnd {
        while self.next().is_some() {}
        self.end.take().expect("set when the records run out")
    }

    fn read_record(&mut self) -> Result<Option<ChainRecord<T>>, ChainEnd> {
        let n = self.n;
        let line_no = n + 1;
        self.line.clear();
        let read = self.reader.next_line(&mut self.line).map_err(|source| Err(JournalError::Read { path: self.name.clone(), source }))?;
        if read == 0 {
            return Ok(None);
        }
        if self.line.last() != Some(&b'\n') {
            return Err(Ok(Err(ChainBreak::TruncatedRecord { n, line: line_no })));
        }
        self.line.pop();
        let (number, prev, entry) = match serde_json::from_slice::<LineFields<T>>(&self.line) {
            Ok(fields) => {
                let entry = match fields.entry {
                    Some(entry) => Ok(entry),
                    None => typed(serde_json::Value::Null),
                };
                (fields.n, fields.prev, entry)
            }
            Err(_) => match serde_json::from_slice::<serde_json::Value>(&self.line) {
                Err(err) => return Err(Ok(Err(ChainBreak::Malformed { n, line: line_no, reason: err.to_string() }))),
                Ok(mut value) => {
                    let take = |key: &str, value: &mut serde_json::Value| value.as_object_mut().and_then(|m| m.remove(key));
                    let (number, prev) = (take("n", &mut value), take("prev", &mut value));
                    (number, prev, typed(take("entry", &mut value).unwrap_or(serde_json::Value::Null)))
                }
            },
        };
        let found = number.as_ref().and_then(|v| v.as_u64());
        if found != Some(n) {
            return Err(Ok(Err(match found {
                Some(found) => ChainBreak::Numbering { n, line: line_no, found },
                None => ChainBreak::Malformed { n, line: line_no, reason: "no record number".into() },
            })));
        }
        let linked = prev.as_ref().and_then(|v| v.as_str()).and_then(|h| hex::decode(h).ok());
        if linked.as_deref() != Some(&self.prev[..]) {
            return Err(Ok(Err(ChainBreak::Link { n, line: line_no })));
        }
        let hash = self.reader.line_hash(&self.line);
        self.prev = hash;
        self.n += 1;
        Ok(Some(ChainRecord { n, hash, entry }))
    }
}

impl<R: JournalLines, T: DeserializeOwned> Iterator for ChainReader<R, T> {
    type Item = ChainRecord<T>;

    fn next(&mut self) -> Option<ChainRecord<T>> {
        if self.end.is_some() {
            return None;
        }
        match self.read_record() {
            Ok(Some(record)) => Some(record),
            Ok(None) => {
                self.end = Some(Ok(Ok((self.prev, self.n))));
                None
            }
            Err(end) => {
                self.end = Some(end);
                None
            }
        }
    }
}

/// An entry as a `T`, or why it is not one.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, OtherEntry> {
    T::deserialize(&value).map_err(|err| OtherEntry { reason: err.to_string(), value })
}

/// A record line's fields, the entry parsed straight as a `T`. Fails (and the line is
/// then looked at as plain JSON) on anything but an object whose entry is a `T`.
struct LineFields<T> {
    n: Option<serde_json::Value>,
    prev: Option<serde_json::Value>,
    entry: Option<T>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LineFields<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<fn() -> T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = LineFields<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a journal record")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LineFields<T>, A::Error> {
                let mut fields = LineFields { n: None, prev: None, entry: None };
                // A repeated key counts as plain JSON does: the last one.
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::N => fields.n = Some(map.next_value()?),
                        Key::Prev => fields.prev = Some(map.next_value()?),
                        Key::Entry => fields.entry = Some(map.next_value()?),
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }

        deserializer.deserialize_map(Fields(PhantomData))
    }
}

enum Key {
    N,
    Prev,
    Entry,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyName;

        impl Visitor<'_> for KeyName {
            type Value = Key;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "n" => Key::N,
                    "prev" => Key::Prev,
                    "entry" => Key::Entry,
                    _ => Key::Other,
                })
            }
        }

        deserializer.deserialize_str(KeyName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, entries: usize) -> std::path::PathBuf {
        let path = dir.join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        for i in 0..entries {
            journal.append(&json!({"kind": "note", "i": i})).unwrap();
        }
        path
    }

    #[derive(Serialize)]
    struct RecordOut<'a, T: Serialize> {
        n: u64,
        prev: &'a str,
        entry: &'a T,
    }

    #[test]
    fn each_line_is_what_serde_json_makes_of_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        let entries: Vec<serde_json::Value> =
            (0..12u64).map(|i| json!({"type": "note", "i": i, "text": "quote \" and «é» and \u{1}", "big": u64::MAX - i})).collect();
        for entry in &entries {
            journal.append(entry).unwrap();
        }
        journal.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut prev = genesis();
        for ((n, line), entry) in text.lines().enumerate().zip(&entries) {
            let expected = serde_json::to_string(&RecordOut { n: n as u64, prev: &hex::encode(prev), entry }).unwrap();
            assert_eq!(line, expected);
            prev = Sha256::digest(line.as_bytes()).into();
        }
        assert_eq!(journal.head(), (prev, 12));
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn a_written_chain_reads_back_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 5);
        let (records, _head) = read_chain(&path).unwrap().unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[3].entry["i"], 3);
    }

    #[test]
    fn every_edit_removal_and_cut_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        std::fs::write(&path, text.replacen("\"i\":2", "\"i\":9", 1)).unwrap();
        assert_eq!(read_chain(&path).unwrap().unwrap_err(), ChainBreak::Link { n: 3, line: 4 });

        let without_second = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        std::fs::write(&path, without_second).unwrap();
        assert!(matches!(read_chain(&path).unwrap().unwrap_err(), ChainBreak::Numbering { n: 1, .. }));

        std::fs::write(&path, &text[..text.len() - 5]).unwrap();
        assert_eq!(read_chain(&path).unwrap().unwrap_err(), ChainBreak::TruncatedRecord { n: 3, line: 4 });
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Note {
        kind: String,
        i: u64,
    }

    #[test]
    fn a_chain_reader_parses_each_entry_once_and_keeps_what_is_no_entry_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        journal.append(&json!({"kind": "note", "i": 0})).unwrap();
        journal.append(&json!({"kind": "other"})).unwrap();
        journal.append(&json!(["not", "an", "object"])).unwrap();
        journal.append(&json!({"kind": "note", "i": 3})).unwrap();
        journal.flush().unwrap();
        let file = BufReader::new(File::open(&path).unwrap());
        let mut chain = ChainReader::<_, Note>::new(Hashing(file), "journal");
        let records: Vec<ChainRecord<Note>> = chain.by_ref().collect();
        let (values, head) = read_chain(&path).unwrap().unwrap();
        assert_eq!(chain.finish().unwrap().unwrap(), (head, 4));
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].entry, Ok(Note { kind: "note".into(), i: 0 }));
        assert_eq!(records[3].entry, Ok(Note { kind: "note".into(), i: 3 }));
        for (record, value) in records.iter().zip(&values) {
            assert_eq!((record.n, record.hash), (value.n, value.hash));
            if let Err(other) = &record.entry {
                // Judged as a plain JSON value is: the same message serde gives for it.
                assert_eq!(other.value, value.entry);
                assert_eq!(other.reason, serde_json::from_value::<Note>(value.entry.clone()).unwrap_err().to_string());
            }
        }
        assert!(records[1].entry.as_ref().is_err_and(|e| e.reason.contains("missing field `i`")));
    }

    /// How the chain was checked before records were streamed: every line parsed as
    /// plain JSON, then number, link and hash.
    fn reference_read(text: &[u8]) -> Result<([u8; 32], u64), ChainBreak> {
        let mut prev = genesis();
        let mut n = 0u64;
        for line in text.split_inclusive(|b| *b == b'\n') {
            let line_no = n + 1;
            let Some(line) = line.strip_suffix(b"\n") else { return Err(ChainBreak::TruncatedRecord { n, line: line_no }) };
            let value: serde_json::Value =
                serde_json::from_slice(line).map_err(|err| ChainBreak::Malformed { n, line: line_no, reason: err.to_string() })?;
            match value.get("n").and_then(|v| v.as_u64()) {
                Some(found) if found == n => {}
                Some(found) => return Err(ChainBreak::Numbering { n, line: line_no, found }),
                None => return Err(ChainBreak::Malformed { n, line: line_no, reason: "no record number".into() }),
            }
            let linked = value.get("prev").and_then(|v| v.as_str()).and_then(|h| hex::decode(h).ok());
            if linked.as_deref() != Some(&prev[..]) {
                return Err(ChainBreak::Link { n, line: line_no });
            }
            prev = Sha256::digest(line).into();
            n += 1;
        }
        Ok((prev, n))
    }

    #[test]
    fn a_chain_reader_breaks_where_read_chain_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let prev1 = &lines[1][lines[1].find("\"prev\"").unwrap()..lines[1].find(",\"entry\"").unwrap()];
        let cases = [
            text.replacen("\"i\":2", "\"i\":9", 1),
            format!("{}\n{}\n", lines[0], lines[2]),
            text[..text.len() - 5].to_string(),
            format!("{}\n[1,2]\n", lines[0]),
            format!("{}\nnot json\n", lines[0]),
            format!("{}\n{{{prev1},\"entry\":{{}},\"n\":1}}\n", lines[0]),
            format!("{}\n{{\"n\":1,\"entry\":{{}}}}\n", lines[0]),
            format!("{}\n{{\"n\":\"1\",{prev1},\"entry\":{{}}}}\n", lines[0]),
        ];
        for edited in cases {
            std::fs::write(&path, &edited).unwrap();
            let expected = reference_read(edited.as_bytes());
            let plain = read_chain(&path).unwrap().map(|(records, head)| (head, records.len() as u64));
            assert_eq!(plain, expected, "{edited}");
            let file = BufReader::new(File::open(&path).unwrap());
            let typed = ChainReader::<_, Note>::new(Hashing(file), "journal").finish().unwrap();
            assert_eq!(typed, expected, "{edited}");
        }
        // A record whose keys come in another order or escaped still reads the same.
        std::fs::write(&path, format!("{}\n{{{prev1},\"entry\":{{\"i\":1,\"kind\":\"note\"}},\"\\u006e\":1}}\n", lines[0])).unwrap();
        let file = BufReader::new(File::open(&path).unwrap());
        let records: Vec<_> = ChainReader::<_, Note>::new(Hashing(file), "journal").collect();
        assert_eq!(records[1].entry, Ok(Note { kind: "note".into(), i: 1 }));
    }

    #[test]
    fn a_closed_journal_refuses_appends_and_keeps_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let journal = JournalWriter::create(&dir.path().join("journal.jsonl")).unwrap();
        journal.append(&json!({"kind": "note"})).unwrap();
        let head = journal.close();
        assert_eq!(head, journal.head());
        assert!(matches!(journal.append(&json!({"kind": "late"})), Err(JournalError::Closed { .. })));
        assert_eq!(journal.head(), head);
        let (records, chain_head) = read_chain(&dir.path().join("journal.jsonl")).unwrap().unwrap();
        assert_eq!((chain_head, records.len() as u64), head);
    }

    #[test]
    fn records_reach_the_file_without_anyone_flushing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        journal.append(&json!({"kind": "note", "i": 0})).unwrap();
        journal.append(&json!({"kind": "note", "i": 1})).unwrap();
        // The writer thread writes within WRITE_DELAY; a generous bound against a hang.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 2 {
            assert!(std::time::Instant::now() < deadline, "queued records were never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        let (records, head) = read_chain(&path).unwrap().unwrap();
        assert_eq!((head, records.len() as u64), journal.head());
    }

    #[test]
    fn dropping_the_writer_writes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        for i in 0..1000 {
            journal.append(&json!({"kind": "note", "i": i})).unwrap();
        }
        let head = journal.head();
        drop(journal);
        let (records, chain_head) = read_chain(&path).unwrap().unwrap();
        assert_eq!((chain_head, records.len() as u64), head);
    }

    #[test]
    fn the_file_is_a_verifiable_prefix_at_every_moment_of_a_busy_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = Arc::new(JournalWriter::create(&path).unwrap());
        let appenders: Vec<_> = (0..3)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..3000 {
                        // Some records large enough to cross WRITE_AT on their own.
                        let text = "x".repeat(if i % 500 == 0 { WRITE_AT } else { i % 97 });
                        // One thread hands its records over, as agents do; the others
                        // serialize them themselves.
                        if t == 0 {
                            journal.append_owned(OwnedNote { kind: "note".into(), i: i as u64, text }).unwrap();
                        } else {
                            journal.append(&json!({"kind": "note", "thread": t, "i": i, "text": text})).unwrap();
                        }
                    }
                })
            })
            .collect();
        let mut reads = 0;
        while appenders.iter().any(|a| !a.is_finished()) || reads == 0 {
            // A crash now would leave this file: whole records that chain, perhaps
            // ending in a part-written one, never a gap.
            match read_chain(&path).unwrap() {
                Ok(_) | Err(ChainBreak::TruncatedRecord { .. }) => {}
                Err(other) => panic!("a journal being written reads as broken: {other}"),
            }
            reads += 1;
        }
        appenders.into_iter().for_each(|a| a.join().unwrap());
        let head = journal.close();
        let (records, chain_head) = read_chain(&path).unwrap().unwrap();
        assert_eq!((chain_head, records.len() as u64), head);
        assert_eq!(head.1, 9000);
    }

    /// A record handed over owned, as agent events and step records are.
    #[derive(Serialize)]
    struct OwnedNote {
        kind: String,
        i: u64,
        text: String,
    }

    impl OwnedEntry for OwnedNote {
        fn approx_len(&self) -> usize {
            self.text.len() + 40
        }
    }

    /// An agent event, as far as the journal can tell.
    #[derive(Serialize)]
    struct OwnedEvent {
        text: String,
    }

    impl OwnedEntry for OwnedEvent {
        fn approx_len(&self) -> usize {
            self.text.len() + 40
        }
        const AGENT_EVENT: bool = true;
    }

    #[test]
    fn after_the_runs_end_agent_events_are_refused_and_the_runs_own_records_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        assert_eq!(journal.append_owned(OwnedEvent { text: "during".into() }).unwrap(), 0);
        journal.end_agent_events();
        let late = journal.append_owned(OwnedEvent { text: "late".into() });
        assert!(matches!(late, Err(JournalError::RunEnded { .. })), "{late:?}");
        assert_eq!(
            journal.append(&serde_json::json!({"type": "run_finished"})).unwrap(),
            1,
            "the run's end is still journaled, numbered next"
        );
        journal.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("during") && !text.contains("late") && text.lines().last().unwrap().contains("run_finished"), "{text}");
    }

    #[test]
    fn owned_and_serialized_records_are_numbered_and_chained_in_the_order_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        let mut expected = Vec::new();
        for i in 0..200u64 {
            let text = format!("«{i}» \"quoted\"");
            let n = if i % 3 == 0 {
                journal.append(&json!({"kind": "serialized", "i": i, "text": text})).unwrap()
            } else {
                journal.append_owned(OwnedNote { kind: "owned".into(), i, text: text.clone() }).unwrap()
            };
            assert_eq!(n, i, "append returns the record's number");
            let kind = if i % 3 == 0 { "serialized" } else { "owned" };
            expected.push(json!({"kind": kind, "i": i, "text": text}));
        }
        let head = journal.close();
        let (records, chain_head) = read_chain(&path).unwrap().unwrap();
        assert_eq!((chain_head, 200), head);
        let entries: Vec<_> = records.into_iter().map(|r| r.entry).collect();
        assert_eq!(entries, expected);
    }

    /// serde_json refuses a map whose keys are not strings.
    #[derive(Serialize)]
    struct Unencodable(std::collections::BTreeMap<(u8, u8), u8>);

    impl OwnedEntry for Unencodable {
        fn approx_len(&self) -> usize {
            40
        }
    }

    #[test]
    fn a_record_that_cannot_be_encoded_stops_the_journal_at_the_record_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = JournalWriter::create(&path).unwrap();
        journal.append(&json!({"kind": "note", "i": 0})).unwrap();
        journal.append_owned(OwnedNote { kind: "note".into(), i: 1, text: String::new() }).unwrap();
        journal.append_owned(Unencodable([((1, 2), 3)].into())).unwrap();
        journal.append(&json!({"kind": "note", "i": 3})).unwrap();
        assert!(matches!(journal.flush(), Err(JournalError::Write { .. })));
        let reason = journal.failure().expect("the failure is kept");
        assert!(reason.contains("cannot encode record 2"), "{reason}");
        assert!(journal.append(&json!({"kind": "late"})).is_err());
        // The file holds the records before it, and they verify.
        let (records, _) = read_chain(&path).unwrap().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(journal.head().1, 2);
    }

    #[test]
    fn a_write_error_is_reported_and_nothing_is_accepted_after_it() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let journal = JournalWriter::writing_to(full, "/dev/full".into(), None).unwrap();
        journal.append(&json!({"kind": "note"})).unwrap();
        assert!(matches!(journal.flush(), Err(JournalError::Write { .. })));
        let reason = journal.failure().expect("the failure is kept");
        assert!(reason.contains("No space left"), "{reason}");
        assert!(matches!(journal.append(&json!({"kind": "late"})), Err(JournalError::Write { .. })));
        assert!(journal.sync().is_err());
    }

    /// Signs nothing: records what it was asked to sign, as `{"kind":"checkpoint",...}`.
    struct NoteSigner {
        interval: Duration,
    }

    impl HeadSigner for NoteSigner {
        fn signs_after(&self, body: &[u8]) -> bool {
            body.starts_with(br#"{"kind":"case_end""#)
        }

        fn checkpoint(&self, records: u64, head: &[u8; 32], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
            serde_json::to_writer(out, &json!({"kind": "checkpoint", "records": records, "head": hex::encode(head)}))
        }

        fn interval(&self) -> Duration {
            self.interval
        }
    }

    fn signed_journal(path: &Path, interval: Duration) -> JournalWriter {
        JournalWriter::create_signed(path, Box::new(NoteSigner { interval })).unwrap()
    }

    /// Each checkpoint of the file signs exactly the records before it.
    fn checkpoints(path: &Path) -> Vec<u64> {
        let (records, _) = read_chain(path).unwrap().unwrap();
        let mut found = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if record.entry["kind"] == "checkpoint" {
                assert_eq!(record.entry["records"], record.n, "a checkpoint signs the records before it");
                assert_eq!(record.entry["head"], hex::encode(records[i - 1].hash), "and the head before it");
                found.push(record.n);
            }
        }
        found
    }

    #[test]
    fn a_case_end_is_followed_by_a_checkpoint_at_once_and_numbers_stay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = signed_journal(&path, Duration::from_secs(3600));
        assert_eq!(journal.append(&json!({"kind": "note"})).unwrap(), 0);
        assert_eq!(journal.append_owned(OwnedNote { kind: "event".into(), i: 1, text: String::new() }).unwrap(), 1);
        assert_eq!(journal.append(&json!({"kind": "case_end"})).unwrap(), 2);
        // The checkpoint took number 3.
        assert_eq!(journal.append(&json!({"kind": "note"})).unwrap(), 4);
        // An owned record is never asked about: agent events never end a case.
        assert_eq!(journal.append_owned(OwnedNote { kind: "case_end".into(), i: 5, text: String::new() }).unwrap(), 5);
        let head = journal.close();
        assert_eq!(head.1, 6);
        assert_eq!(checkpoints(&path), [3]);
    }

    #[test]
    fn records_left_unsigned_are_signed_within_the_interval_even_when_the_journal_goes_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let journal = signed_journal(&path, Duration::from_millis(300));
        journal.append(&json!({"kind": "note", "i": 0})).unwrap();
        journal.append(&json!({"kind": "note", "i": 1})).unwrap();
        // Nobody appends: the writer falls asleep, and must wake to sign.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while checkpoints(&path).is_empty() {
            assert!(std::time::Instant::now() < deadline, "unsigned records were never signed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(checkpoints(&path), [2]);
        // Nothing new: no more checkpoints, however long it waits.
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(checkpoints(&path), [2]);
        journal.append(&json!({"kind": "note", "i": 3})).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while checkpoints(&path).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "the new record was never signed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(checkpoints(&path), [2, 4]);
        // A closed journal is sealed whole: no checkpoint after closing.
        journal.append(&json!({"kind": "note", "i": 5})).unwrap();
        let head = journal.close();
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(head.1, 6);
        assert_eq!(read_chain(&path).unwrap().unwrap().0.len(), 6);
    }

    #[test]
    fn the_writer_refuses_to_overwrite_an_existing_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 1);
        assert!(JournalWriter::create(&path).is_err());
    }
}
