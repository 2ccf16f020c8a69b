//! Console capture throughput: can proofrig record a flooding serial console as fast
//! as a program that does nothing but read it?
//!
//! A writer thread floods a PTY master with boot-log-like text. Two readers take
//! turns, each on a fresh PTY of the same kind:
//! - **baseline "plain read loop on the same PTY"**: a blocking read loop on the slave
//!   with a 64 KiB buffer, hashing what it reads with SHA-256 (so it too proves it got
//!   every byte, and does the same per-byte work as the measuring sink below);
//! - **proofrig**: `open_console` on the slave, with a recorder whose sink hashes every
//!   `In` byte with SHA-256. Nobody reads the ByteStream, as during a long boot.
//!
//! Both digests must equal the digest of what was written, or the bench fails.
//! Rounds alternate between the two (the machine's load then weighs on both alike)
//! and the best round of each counts. Environment:
//! - `PROOFRIG_BENCH_MB`: flood size per round (default 100; MB = 10^6 bytes);
//! - `PROOFRIG_BENCH_ROUNDS`: rounds per side (default 3).
//!
//! The goal is proofrig >= 0.9x the baseline.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proofrig_agents::serial::open_console;
use proofrig_model::events::{Direction, Event, EventKind, EventSink, Recorder};
use proofrig_model::rig::Console;
use proofrig_testpeers::pty::{boot_log, PtyPair};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

const WRITE_CHUNK: usize = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;
const LIMIT: Duration = Duration::from_secs(300);

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// Write `data` into the PTY master from a thread. The thread hands the master back
/// instead of closing it: closing it hangs up the line, and the kernel then throws
/// away whatever the reader has not read yet.
fn spawn_writer(mut master: std::fs::File, data: Arc<Vec<u8>>) -> std::thread::JoinHandle<std::fs::File> {
    std::thread::spawn(move || {
        for chunk in data.chunks(WRITE_CHUNK) {
            master.write_all(chunk).expect("write to the PTY master");
        }
        master
    })
}

/// The baseline: a plain blocking read loop on the slave. Returns seconds taken.
fn plain_read_loop(data: &Arc<Vec<u8>>, expected: &[u8], hash: bool) -> f64 {
    let pty = PtyPair::open();
    let mut slave = std::fs::OpenOptions::new().read(true).write(true).open(pty.path()).expect("open the PTY slave");
    let (master, _path, _keep) = pty.into_master_file();
    let started = Instant::now();
    let writer = spawn_writer(master, data.clone());
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut seen = 0;
    while seen < data.len() {
        let n = slave.read(&mut buf).expect("read the PTY slave");
        assert!(n > 0, "unexpected end of file on the PTY slave");
        if hash {
            hasher.update(&buf[..n]);
        }
        seen += n;
    }
    let secs = started.elapsed().as_secs_f64();
    writer.join().unwrap();
    if hash {
        assert_eq!(hasher.finalize().as_slice(), expected, "the plain read loop lost or altered bytes");
    }
    secs
}

/// Hashes every recorded `In` byte; wakes the waiter at each event.
struct DigestSink {
    state: Mutex<(Sha256, usize)>,
    total: usize,
    notify: Notify,
}

impl EventSink for DigestSink {
    fn append(&self, event: Event) {
        if let EventKind::Bytes { direction: Direction::In, data, .. } = &event.kind {
            let mut state = self.state.lock().unwrap();
            state.0.update(data);
            state.1 += data.len();
            if state.1 >= self.total {
                self.notify.notify_waiters();
            }
        }
    }
}

/// proofrig's capture: open_console on the slave, digest sink. Returns seconds taken.
fn proofrig_capture(runtime: &tokio::runtime::Runtime, data: &Arc<Vec<u8>>, expected: &[u8]) -> f64 {
    let pty = PtyPair::open();
    let console = Console::serial(pty.path(), 115_200);
    let sink = Arc::new(DigestSink { state: Mutex::new((Sha256::new(), 0)), total: data.len(), notify: Notify::new() });
    let stream = runtime.block_on(open_console("bench", &console, Recorder::new(sink.clone()))).expect("open_console on the PTY slave");
    let (master, _path, _keep) = pty.into_master_file();
    let started = Instant::now();
    let writer = spawn_writer(master, data.clone());
    let finished = runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            loop {
                let notified = sink.notify.notified();
                if sink.state.lock().unwrap().1 >= data.len() {
                    return;
                }
                notified.await;
            }
        })
        .await
    });
    let secs = started.elapsed().as_secs_f64();
    {
        let state = sink.state.lock().unwrap();
        assert!(finished.is_ok(), "proofrig recorded only {} of {} bytes within {LIMIT:?}", state.1, data.len());
        assert_eq!(state.1, data.len(), "proofrig recorded more bytes than were written");
        assert_eq!(state.0.clone().finalize().as_slice(), expected, "proofrig's capture lost or altered bytes");
    }
    writer.join().unwrap();
    drop(stream);
    secs
}

fn main() {
    let megabytes = env_usize("PROOFRIG_BENCH_MB", 100);
    let rounds = env_usize("PROOFRIG_BENCH_ROUNDS", 3).max(1);
    let data = Arc::new(boot_log(megabytes * 1_000_000));
    let expected = Sha256::digest(data.as_slice()).to_vec();
    // A caller's ordinary multi-threaded runtime; the console pump brings its own thread.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let rate = |secs: f64| data.len() as f64 / secs / 1e6;

    let sha_started = Instant::now();
    let _ = Sha256::digest(data.as_slice());
    let sha_rate = rate(sha_started.elapsed().as_secs_f64());

    let (mut baseline, mut proofrig, mut read_only) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        baseline.push(rate(plain_read_loop(&data, &expected, true)));
        proofrig.push(rate(proofrig_capture(&runtime, &data, &expected)));
        read_only.push(rate(plain_read_loop(&data, &expected, false)));
    }
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let list = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" ");
    println!(
        "console capture: proofrig {:.0} MB/s, baseline plain read loop {:.0} MB/s, ratio {:.2}x (goal >= 0.9x)",
        best(&proofrig),
        best(&baseline),
        best(&proofrig) / best(&baseline)
    );
    println!(
        "  {megabytes} MB per round, best of {rounds}, every byte verified by SHA-256 on both sides; \
         rounds (MB/s): proofrig [{}], baseline [{}]",
        list(&proofrig),
        list(&baseline)
    );
    println!("  for context: plain read loop without hashing {:.0} MB/s, SHA-256 alone {sha_rate:.0} MB/s", best(&read_only));
}
