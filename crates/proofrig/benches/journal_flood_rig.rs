//! Journal flood on a whole rig: every console of a 16-device rig flooding at 3 Mbaud
//! at once, into one hash-chained journal, without losing a byte.
//!
//! Issue 17's scale goal. `PROOFRIG_BENCH_CONSOLES` PTYs (default 16), each written by
//! its own thread with boot-log text at 300 KB/s (3 Mbaud, 8N1) in 1 ms slices for
//! `PROOFRIG_BENCH_SECS` seconds (default 10); each slave captured with `open_console`
//! as device `ruNN`, all through one `Recorder` whose sink is the real journal
//! (`JournalSink` over `JournalWriter`), as during a run. Nobody reads the consoles'
//! streams, as during a long boot. Afterwards the journal is read back with
//! `read_chain` (the chain must verify) and each device's console `In` bytes,
//! concatenated in journal order, must hash to what its writer wrote: no byte lost,
//! altered or moved between devices. Reported: whether every writer kept its schedule
//! (a PTY whose reader falls behind fills and blocks its writer), the largest backlog
//! and the drain lag (last byte written to last byte journaled), the journal's size,
//! and the process's CPU time per journaled MB.
//!
//! Run: `cargo bench -p proofrig --bench journal_flood_rig`.

use std::collections::BTreeMap;
use std::io::Write;
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

mod settings;
use settings::env_usize;

const BAUD: u32 = 3_000_000;
const RATE: usize = BAUD as usize / 10;
const TICK: Duration = Duration::from_millis(1);

/// The journal, and a count of the console bytes each device has had recorded.
struct CountingSink {
    journal: JournalSink,
    recorded: Mutex<(usize, Instant)>,
}

impl EventSink for CountingSink {
    fn append(&self, event: Event) {
        let len = match &event.kind {
            EventKind::Bytes { direction: Direction::In, data, .. } => data.len(),
            _ => 0,
        };
        self.journal.append(event);
        if len > 0 {
            let mut recorded = self.recorded.lock().unwrap();
            recorded.0 += len;
            recorded.1 = Instant::now();
        }
    }
}

/// CPU time the whole process has used.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let consoles = env_usize("PROOFRIG_BENCH_CONSOLES", 16).max(1);
    let seconds = env_usize("PROOFRIG_BENCH_SECS", 10).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("journal.jsonl");
    let data = Arc::new(boot_log(RATE * seconds));
    let expected: Vec<u8> = Sha256::digest(data.as_slice()).to_vec();
    let sink = Arc::new(CountingSink {
        journal: JournalSink(Arc::new(JournalWriter::create(&path).expect("create the journal"))),
        recorded: Mutex::new((0, Instant::now())),
    });
    let recorder = Recorder::new(sink.clone());

    let ptys: Vec<PtyPair> = (0..consoles).map(|_| PtyPair::open()).collect();
    let mut streams = Vec::new();
    for (n, pty) in ptys.iter().enumerate() {
        streams.push(
            runtime
                .block_on(open_console(&format!("ru{n:02}"), &Console::serial(pty.path(), BAUD), recorder.clone()))
                .expect("open_console"),
        );
    }
    let cpu = process_cpu();
    let started = Instant::now();
    let writers: Vec<_> = ptys
        .into_iter()
        .map(|pty| {
            let (mut master, _path, keep) = pty.into_master_file();
            let data = data.clone();
            std::thread::spawn(move || {
                let begun = Instant::now();
                let mut late = Duration::ZERO;
                for (k, piece) in data.chunks(RATE * TICK.as_micros() as usize / 1_000_000).enumerate() {
                    let due = begun + TICK * k as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    master.write_all(piece).expect("write to the PTY master");
                    late = late.max(Instant::now().saturating_duration_since(due));
                }
                (late, Instant::now(), master, keep)
            })
        })
        .collect();
    let mut max_late = Duration::ZERO;
    let mut last_written = started;
    let mut masters = Vec::new();
    for writer in writers {
        let (late, done, master, keep) = writer.join().unwrap();
        max_late = max_late.max(late);
        last_written = last_written.max(done);
        masters.push((master, keep));
    }
    let total = consoles * data.len();
    let limit = Instant::now() + Duration::from_secs(60);
    while sink.recorded.lock().unwrap().0 < total {
        assert!(
            Instant::now() < limit,
            "only {} of {total} bytes recorded a minute after the writers ended",
            sink.recorded.lock().unwrap().0
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let drained = sink.recorded.lock().unwrap().1;
    for stream in streams {
        runtime.block_on(stream.close());
    }
    sink.journal.0.flush().expect("the journal is written");
    let cpu = process_cpu() - cpu;
    drop(masters);

    let file_bytes = std::fs::metadata(&path).unwrap().len();
    let (records, _head) = read_chain(&path).expect("read the journal").expect("the journal's chain is intact");
    let count = records.len();
    let mut per_device: BTreeMap<String, Sha256> = BTreeMap::new();
    let mut bytes: BTreeMap<String, usize> = BTreeMap::new();
    for record in records {
        let entry: JournalEntry = serde_json::from_value(record.entry).expect("a journal entry");
        if let JournalEntry::Event { event: Event { kind: EventKind::Bytes { channel, direction: Direction::In, data }, .. } } = entry {
            per_device.entry(channel.device.clone()).or_default().update(&data);
            *bytes.entry(channel.device).or_default() += data.len();
        }
    }
    assert_eq!(per_device.len(), consoles, "every console's bytes are in the journal");
    for (device, hasher) in per_device {
        assert_eq!(bytes[&device], data.len(), "{device}: {} of {} bytes journaled", bytes[&device], data.len());
        assert_eq!(hasher.finalize().to_vec(), expected, "{device}: the journaled bytes differ from what was written");
    }
    let mb = total as f64 / 1e6;
    println!(
        "journal flood, rig of {consoles} consoles at 3 Mbaud each for {seconds} s: {mb:.1} MB journaled ({:.1} MB/s together), 0 bytes lost, every device's bytes in order (SHA-256), chain intact",
        mb / last_written.duration_since(started).as_secs_f64()
    );
    println!(
        "  writers at most {:.1} ms behind their schedule; drain lag {:.1} ms; journal {count} records, {:.1} MB; process CPU {:.2} s ({:.0} ms per journaled MB)",
        max_late.as_secs_f64() * 1e3,
        drained.saturating_duration_since(last_written).as_secs_f64() * 1e3,
        file_bytes as f64 / 1e6,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e3 / mb
    );
}
