//! Journal flood: does the hash-chained journal keep up with a console flooding at
//! 3 Mbaud, without losing a byte?
//!
//! A 3 Mbaud serial line carries at most 300 KB/s (10 bits per byte on the wire). A
//! writer thread floods a PTY master with boot-log text; proofrig captures the slave
//! with `open_console`, through a `Recorder` whose sink is the real journal (a
//! `JournalSink` over a `JournalWriter`: one hash-chained JSON line per chunk, payload
//! in base64, flushed to the OS per record), exactly as during a run. Nobody reads the
//! console stream, as during a long boot. Afterwards the journal is read back with
//! `read_chain` (the chain must verify), the console's `In` bytes are concatenated,
//! and their SHA-256 must equal that of what was written: no byte lost or altered.
//!
//! - **paced**: 300 KB/s, written in 1 ms slices on a fixed schedule, for
//!   `PROOFRIG_BENCH_SECS` seconds (default 10). Reported: the journal's size and
//!   record count; the largest lag between a byte being written and being journaled;
//!   the largest backlog (written, not yet journaled); the drain lag (last byte
//!   written to last byte journaled); whether the writer kept its schedule (a PTY
//!   whose reader falls behind fills up and blocks the writer). For comparison the
//!   same run with the baseline sink.
//! - **unpaced**: `PROOFRIG_BENCH_MB` MB (default 100; MB = 10^6 bytes) as fast as
//!   the PTY goes, to show the headroom, alternating with the baseline for
//!   `PROOFRIG_BENCH_ROUNDS` rounds (default 3), best of each.
//!
//! Baseline: the same capture with a sink that only hashes the `In` bytes (no
//! journal), same data, same process. Its digest must match too.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proofrig_agents::serial::open_console;
use proofrig_evidence::journal::{read_chain, JournalWriter};
use proofrig_evidence::record::JournalEntry;
use proofrig_model::events::{Direction, Event, EventKind, EventSink, Recorder};
use proofrig_model::rig::Console;
use proofrig_run::executor::JournalSink;
use proofrig_testpeers::pty::{boot_log, PtyPair};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

mod settings;
use settings::env_usize;

/// 3 Mbaud, 8N1: 10 bits on the wire per byte.
const BAUD: u32 = 3_000_000;
const PACED_RATE: usize = BAUD as usize / 10;
const TICK: Duration = Duration::from_millis(1);
const UNPACED_CHUNK: usize = 64 * 1024;

/// What the writer did: cumulative bytes after each write, when the write returned.
struct Written {
    started: Instant,
    marks: Vec<(usize, Instant)>,
    /// Paced only: how far behind its schedule a write finished, at worst.
    max_late: Duration,
    /// Handed back rather than closed: closing it hangs up the line, and the kernel
    /// then throws away whatever the reader has not read yet.
    _master: std::fs::File,
}

fn spawn_writer(mut master: std::fs::File, data: Arc<Vec<u8>>, paced: bool) -> std::thread::JoinHandle<Written> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut marks = Vec::new();
        let mut written = 0;
        let mut max_late = Duration::ZERO;
        let slice = if paced { PACED_RATE * TICK.as_micros() as usize / 1_000_000 } else { UNPACED_CHUNK };
        for (k, piece) in data.chunks(slice).enumerate() {
            let due = started + TICK * k as u32;
            if paced {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            master.write_all(piece).expect("write to the PTY master");
            let done = Instant::now();
            if paced {
                max_late = max_late.max(done.saturating_duration_since(due));
            }
            written += piece.len();
            marks.push((written, done));
        }
        Written { started, marks, max_late, _master: master }
    })
}

/// Either the real journal or the baseline's hash, plus the bookkeeping both share:
/// how many console bytes had been recorded, and when.
struct FloodSink {
    journal: Option<JournalSink>,
    state: Mutex<SinkState>,
    total: usize,
    notify: Notify,
}

struct SinkState {
    hasher: Option<Sha256>,
    in_bytes: usize,
    marks: Vec<(usize, Instant)>,
    /// Time spent in this sink (journal append or hashing), i.e. the pump's cost of recording.
    busy: Duration,
}

impl EventSink for FloodSink {
    fn append(&self, event: Event) {
        let entered = Instant::now();
        let received = match &event.kind {
            EventKind::Bytes { direction: Direction::In, data, .. } => Some(data.len()),
            _ => None,
        };
        // The baseline hashes what it receives; proofrig's side hands it to the journal.
        let mut baseline_digest = None;
        match &self.journal {
            Some(journal) => journal.append(event),
            None => baseline_digest = Some(event),
        }
        let mut state = self.state.lock().unwrap();
        if let (Some(hasher), Some(Event { kind: EventKind::Bytes { direction: Direction::In, data, .. }, .. })) =
            (state.hasher.as_mut(), &baseline_digest)
        {
            hasher.update(data);
        }
        if let Some(len) = received {
            state.in_bytes += len;
            let now = Instant::now();
            let in_bytes = state.in_bytes;
            state.marks.push((in_bytes, now));
            state.busy += now - entered;
            if in_bytes >= self.total {
                self.notify.notify_waiters();
            }
        }
    }
}

struct Capture {
    written: Written,
    /// Cumulative console bytes recorded after each event, and when.
    recorded: Vec<(usize, Instant)>,
    busy: Duration,
    /// The baseline's digest of what it saw.
    digest: Option<Vec<u8>>,
}

impl Capture {
    fn seconds(&self) -> f64 {
        self.recorded.last().unwrap().1.duration_since(self.written.started).as_secs_f64()
    }
}

/// Capture `data` written into a fresh PTY, recording into the journal at `journal`
/// (or, without one, into the hash-only baseline sink).
fn capture(runtime: &tokio::runtime::Runtime, data: &Arc<Vec<u8>>, paced: bool, journal: Option<&Path>) -> Capture {
    let pty = PtyPair::open();
    let console = Console::serial(pty.path(), BAUD);
    let journal = journal.map(|path| JournalSink(Arc::new(JournalWriter::create(path).expect("create the journal"))));
    let hasher = journal.is_none().then(Sha256::new);
    let sink = Arc::new(FloodSink {
        journal,
        state: Mutex::new(SinkState { hasher, in_bytes: 0, marks: Vec::new(), busy: Duration::ZERO }),
        total: data.len(),
        notify: Notify::new(),
    });
    let stream = runtime.block_on(open_console("flood", &console, Recorder::new(sink.clone()))).expect("open_console on the PTY slave");
    let (master, _path, _keep) = pty.into_master_file();
    let writer = spawn_writer(master, data.clone(), paced);
    // Generous: past this the capture is broken, not slow.
    let limit = Duration::from_secs(120) + Duration::from_secs_f64(data.len() as f64 / PACED_RATE as f64);
    let finished = runtime.block_on(async {
        tokio::time::timeout(limit, async {
            loop {
                let notified = sink.notify.notified();
                if sink.state.lock().unwrap().in_bytes >= data.len() {
                    return;
                }
                notified.await;
            }
        })
        .await
    });
    let written = writer.join().unwrap();
    // Close before the master goes: the journal ends with ChannelClosed, not a hang-up.
    runtime.block_on(stream.close());
    if let Some(journal) = &sink.journal {
        journal.0.flush().expect("the journal is written");
    }
    let mut state = sink.state.lock().unwrap();
    assert!(finished.is_ok(), "only {} of {} bytes were recorded within {limit:?}", state.in_bytes, data.len());
    assert_eq!(state.in_bytes, data.len(), "more bytes were recorded than written");
    Capture {
        written,
        recorded: std::mem::take(&mut state.marks),
        busy: state.busy,
        digest: state.hasher.take().map(|h| h.finalize().to_vec()),
    }
}

/// What the journal holds, read back through `read_chain`.
struct ReadBack {
    records: usize,
    file_bytes: u64,
    console_bytes: usize,
    digest: Vec<u8>,
}

fn read_back(path: &Path) -> ReadBack {
    let file_bytes = std::fs::metadata(path).unwrap().len();
    let (records, _head) = read_chain(path).expect("read the journal").expect("the journal's chain is intact");
    let count = records.len();
    let mut hasher = Sha256::new();
    let mut console_bytes = 0;
    for record in records {
        let entry: JournalEntry = serde_json::from_value(record.entry).expect("a journal entry");
        if let JournalEntry::Event { event: Event { kind: EventKind::Bytes { direction: Direction::In, data, .. }, .. } } = entry {
            hasher.update(&data);
            console_bytes += data.len();
        }
    }
    ReadBack { records: count, file_bytes, console_bytes, digest: hasher.finalize().to_vec() }
}

/// Capture into a journal, read it back, check every byte; returns both.
fn journaled(runtime: &tokio::runtime::Runtime, data: &Arc<Vec<u8>>, expected: &[u8], paced: bool, dir: &Path) -> (Capture, ReadBack) {
    let path = dir.join("journal.jsonl");
    let capture = capture(runtime, data, paced, Some(&path));
    let back = read_back(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back.console_bytes, data.len(), "the journal holds {} console bytes of {}", back.console_bytes, data.len());
    assert_eq!(back.digest, expected, "the journal's console bytes differ from what was written");
    (capture, back)
}

fn hash_only(runtime: &tokio::runtime::Runtime, data: &Arc<Vec<u8>>, expected: &[u8], paced: bool) -> Capture {
    let capture = capture(runtime, data, paced, None);
    assert_eq!(capture.digest.as_deref(), Some(expected), "the hash-only capture lost or altered bytes");
    capture
}

/// Largest lag from a byte's write to its recording, largest backlog, and drain lag.
struct Lag {
    max_lag: Duration,
    max_backlog: usize,
    drain: Duration,
}

fn lag(written: &[(usize, Instant)], recorded: &[(usize, Instant)]) -> Lag {
    let mut max_lag = Duration::ZERO;
    let mut j = 0;
    for &(bytes, at) in written {
        while recorded[j].0 < bytes {
            j += 1;
        }
        max_lag = max_lag.max(recorded[j].1.saturating_duration_since(at));
    }
    let (mut max_backlog, mut done, mut j) = (0, 0, 0);
    for &(bytes, at) in written {
        while j < recorded.len() && recorded[j].1 <= at {
            done = recorded[j].0;
            j += 1;
        }
        max_backlog = max_backlog.max(bytes.saturating_sub(done));
    }
    let drain = recorded.last().unwrap().1.saturating_duration_since(written.last().unwrap().1);
    Lag { max_lag, max_backlog, drain }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let seconds = env_usize("PROOFRIG_BENCH_SECS", 10).max(1);
    let megabytes = env_usize("PROOFRIG_BENCH_MB", 100).max(1);
    let rounds = env_usize("PROOFRIG_BENCH_ROUNDS", 3).max(1);
    // A caller's ordinary multi-threaded runtime; the console pump brings its own thread.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // Paced at the line rate.
    let data = Arc::new(boot_log(PACED_RATE * seconds));
    let expected = Sha256::digest(data.as_slice()).to_vec();
    let (paced, back) = journaled(&runtime, &data, &expected, true, tmp.path());
    let paced_base = hash_only(&runtime, &data, &expected, true);
    let (j, b) = (lag(&paced.written.marks, &paced.recorded), lag(&paced_base.written.marks, &paced_base.recorded));
    let writing = paced.written.marks.last().unwrap().1.duration_since(paced.written.started).as_secs_f64();
    println!(
        "journal flood: paced 3 Mbaud ({} KB/s) for {seconds} s: {:.1} MB journaled, 0 bytes lost, chain intact; \
         max lag {:.1} ms, max backlog {:.1} KB, drain lag {:.2} ms",
        PACED_RATE / 1000,
        data.len() as f64 / 1e6,
        ms(j.max_lag),
        j.max_backlog as f64 / 1e3,
        ms(j.drain)
    );
    println!(
        "  journal: {} records, {:.1} MB ({:.2} bytes of journal per console byte); recording took {:.1}% of the time \
         ({:.1} µs per record)",
        back.records,
        back.file_bytes as f64 / 1e6,
        back.file_bytes as f64 / data.len() as f64,
        paced.busy.as_secs_f64() / paced.seconds() * 100.0,
        paced.busy.as_secs_f64() * 1e6 / paced.recorded.len() as f64
    );
    println!(
        "  writer: {:.1} KB/s achieved, at most {:.1} ms behind its schedule; baseline hash-only sink: max lag {:.1} ms, \
         max backlog {:.1} KB, drain lag {:.2} ms",
        data.len() as f64 / writing / 1e3,
        ms(paced.written.max_late),
        ms(b.max_lag),
        b.max_backlog as f64 / 1e3,
        ms(b.drain)
    );

    // Unpaced: as fast as the PTY goes.
    let data = Arc::new(boot_log(megabytes * 1_000_000));
    let expected = Sha256::digest(data.as_slice()).to_vec();
    let rate = |c: &Capture| data.len() as f64 / c.seconds() / 1e6;
    let (mut journal_rates, mut base_rates) = (Vec::new(), Vec::new());
    let (mut last, mut last_base) = (None, None);
    for _ in 0..rounds {
        let (capture, back) = journaled(&runtime, &data, &expected, false, tmp.path());
        journal_rates.push(rate(&capture));
        last = Some((capture, back));
        let base = hash_only(&runtime, &data, &expected, false);
        base_rates.push(rate(&base));
        last_base = Some(base);
    }
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let list = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" ");
    println!(
        "unpaced: journal {:.0} MB/s vs hash-only sink {:.0} MB/s ({:.2}x), {:.0}x the 3 Mbaud line rate",
        best(&journal_rates),
        best(&base_rates),
        best(&journal_rates) / best(&base_rates),
        best(&journal_rates) * 1e6 / PACED_RATE as f64
    );
    let (capture, back) = last.unwrap();
    let base = last_base.unwrap();
    let l = lag(&capture.written.marks, &capture.recorded);
    println!(
        "  {megabytes} MB per round, best of {rounds} alternating; rounds (MB/s): journal [{}], hash-only [{}]; every round \
         read back and verified by SHA-256, 0 bytes lost",
        list(&journal_rates),
        list(&base_rates)
    );
    println!(
        "  last journal round: {} records, {:.0} MB of journal, {:.1} µs per record in the sink; max backlog {:.0} KB, \
         drain lag {:.1} ms",
        back.records,
        back.file_bytes as f64 / 1e6,
        capture.busy.as_secs_f64() * 1e6 / capture.recorded.len() as f64,
        l.max_backlog as f64 / 1e3,
        ms(l.drain)
    );
    println!(
        "  bytes per console read (last rounds): journal {:.1} KB, hash-only {:.1} KB; time in the sink per MB: \
         journal {:.1} ms, hash-only {:.1} ms",
        data.len() as f64 / capture.recorded.len() as f64 / 1e3,
        data.len() as f64 / base.recorded.len() as f64 / 1e3,
        capture.busy.as_secs_f64() * 1e3 / megabytes as f64,
        base.busy.as_secs_f64() * 1e3 / megabytes as f64
    );
}
