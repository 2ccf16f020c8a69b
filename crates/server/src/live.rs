//! Running jobs' journals as they stream in, held by the server before the bundle
//! arrives.
//!
//! Why the server keeps them: a lab host that dies mid-run leaves its evidence up to
//! the last chunk the server holds (KernelCI lost events across a reconnect), and
//! what the server has held it has seen: a bundle uploaded later must carry exactly
//! these bytes at the start of its journal.
//!
//! A chunk names its byte offset in the journal file; [`proofrig_proto::resume::place`]
//! decides where it lands, so a resent chunk is stored once. Bytes a chunk repeats
//! must equal those held: a lab host whose journal changed after the server saw it is
//! refused ([`RefusalCode::Conflict`]), and the bytes held stay as they were.
//!
//! As whole records arrive their hash chain is checked ([`ChainTip`]): a chunk that
//! breaks it is refused and nothing of it is kept. At least every
//! [`WITNESS_INTERVAL`] while records come, and when the job ends, the server signs
//! what it holds ([`crate::witness`]).
//!
//! Layout: `<root>/<job>.<attempt>.jsonl`, one file per attempt, and beside it
//! `<job>.<attempt>.witness.jsonl`, the signed statements (one DSSE envelope a line).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use proofrig_evidence::signing::{self, Envelope};
use proofrig_proto::ids::{Attempt, JobId};
use proofrig_proto::labhost::{JournalChunk, JournalHeld, Refusal, RefusalCode};
use proofrig_proto::resume::{place, Placement};

use crate::inbox::{file_len, read_range};
use crate::witness::{ChainTip, Witnessed, WITNESS_INTERVAL, WITNESS_PAYLOAD_TYPE};

/// The live journals of running jobs.
pub struct Live {
    root: PathBuf,
    key: Arc<SigningKey>,
    tracked: Mutex<HashMap<(JobId, Attempt), Tracked>>,
    /// The statements signed for each attempt, read from their file once: every upload
    /// chunk of the attempt's bundle asks for them.
    statements: Mutex<HashMap<(JobId, Attempt), Vec<Witnessed>>>,
}

/// What the server knows of one journal: its checked chain, and its last witness.
struct Tracked {
    tip: ChainTip,
    witnessed: u64,
    last_witness: Option<Instant>,
}

/// Who sent a chunk, and when it arrived (RFC 3339): what a witness statement names.
pub struct Seen<'a> {
    pub lab_host: &'a str,
    pub at: &'a str,
}

fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

impl Live {
    pub fn open(root: &Path, key: Arc<SigningKey>) -> std::io::Result<Live> {
        std::fs::create_dir_all(root)?;
        Ok(Live { root: root.to_path_buf(), key, tracked: Mutex::default(), statements: Mutex::default() })
    }

    fn witness_file(&self, job: JobId, attempt: Attempt) -> PathBuf {
        self.root.join(format!("{}.{}.witness.jsonl", job.0, attempt.0))
    }

    /// The statements signed so far for an attempt, oldest first (none if it never
    /// streamed). Lines that do not read, or are not signed by this server, are skipped.
    pub fn witnessed(&self, job: JobId, attempt: Attempt) -> Vec<Witnessed> {
        let mut statements = self.statements.lock().expect("never poisoned");
        statements.entry((job, attempt)).or_insert_with(|| self.read_statements(job, attempt)).clone()
    }

    /// What an attempt's job and its upload no longer need held in memory, once its
    /// bundle is stored (its files stay; a later question reads them again).
    pub fn forget(&self, job: JobId, attempt: Attempt) {
        self.tracked.lock().expect("never poisoned").remove(&(job, attempt));
        self.statements.lock().expect("never poisoned").remove(&(job, attempt));
    }

    fn read_statements(&self, job: JobId, attempt: Attempt) -> Vec<Witnessed> {
        let Ok(text) = std::fs::read_to_string(self.witness_file(job, attempt)) else { return Vec::new() };
        let key = self.key.verifying_key();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Envelope>(line).ok())
            .filter(|e| e.payload_type == WITNESS_PAYLOAD_TYPE && matches!(e.check(Some(&key)), signing::SignatureCheck::Pinned { .. }))
            .filter_map(|e| e.payload_bytes().ok().and_then(|p| serde_json::from_slice(&p).ok()))
            .collect()
    }

    /// Sign what is held of an attempt's journal now, if records came since the last
    /// statement (the job ended: its last records do not wait for the interval).
    pub fn witness_now(&self, job: JobId, attempt: Attempt, seen: &Seen<'_>) -> Result<(), Refusal> {
        let mut tracked = self.tracked.lock().expect("never poisoned");
        let t = self.tracked_entry(&mut tracked, job, attempt)?;
        self.witness(job, attempt, t, seen, true)
    }

    fn tracked_entry<'m>(
        &self,
        map: &'m mut HashMap<(JobId, Attempt), Tracked>,
        job: JobId,
        attempt: Attempt,
    ) -> Result<&'m mut Tracked, Refusal> {
        if let std::collections::hash_map::Entry::Vacant(slot) = map.entry((job, attempt)) {
            // After a restart: check what is held again, and what was witnessed.
            let path = self.journal(job, attempt);
            let mut tip = ChainTip::default();
            match std::fs::read(&path) {
                Ok(bytes) => tip.advance(&bytes).map_err(|e| refuse(RefusalCode::Busy, format!("{}: {e}", path.display())))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(refuse(RefusalCode::Busy, format!("the server cannot read {}: {e}; resend later", path.display()))),
            }
            let witnessed = self.witnessed(job, attempt).last().map_or(0, |w| w.records);
            slot.insert(Tracked { tip, witnessed, last_witness: None });
        }
        Ok(map.get_mut(&(job, attempt)).expect("inserted above"))
    }

    fn witness(&self, job: JobId, attempt: Attempt, t: &mut Tracked, seen: &Seen<'_>, now: bool) -> Result<(), Refusal> {
        let due = now || t.last_witness.is_none_or(|at| at.elapsed() >= WITNESS_INTERVAL);
        if t.tip.records <= t.witnessed || !due {
            return Ok(());
        }
        let statement = Witnessed {
            job,
            attempt,
            lab_host: seen.lab_host.to_string(),
            records: t.tip.records,
            head: hex::encode(t.tip.head),
            bytes: t.tip.bytes,
            at: seen.at.to_string(),
        };
        let envelope = signing::sign(&self.key, WITNESS_PAYLOAD_TYPE, &serde_json::to_vec(&statement).expect("plain data"));
        let path = self.witness_file(job, attempt);
        let io = |e: std::io::Error| refuse(RefusalCode::Busy, format!("the server cannot write {}: {e}; resend later", path.display()));
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        let mut line = serde_json::to_vec(&envelope).expect("plain data");
        line.push(b'\n');
        file.write_all(&line).and_then(|()| file.sync_data()).map_err(io)?;
        // Read lazily from the file when not held yet (it holds this line now).
        if let Some(held) = self.statements.lock().expect("never poisoned").get_mut(&(job, attempt)) {
            held.push(statement);
        }
        t.witnessed = t.tip.records;
        t.last_witness = Some(Instant::now());
        Ok(())
    }

    /// Where the journal of an attempt is held.
    pub fn journal(&self, job: JobId, attempt: Attempt) -> PathBuf {
        self.root.join(format!("{}.{}.jsonl", job.0, attempt.0))
    }

    /// Take one chunk; answer how much of the journal is held now.
    pub fn chunk(&self, chunk: &JournalChunk, seen: &Seen<'_>) -> Result<JournalHeld, Refusal> {
        let mut tracked = self.tracked.lock().expect("never poisoned");
        let t = self.tracked_entry(&mut tracked, chunk.job, chunk.attempt)?;
        let path = self.journal(chunk.job, chunk.attempt);
        let io = |e: std::io::Error| refuse(RefusalCode::Busy, format!("the server cannot write {}: {e}; resend later", path.display()));
        let held = file_len(&path);
        let repeated = match place(held, chunk.offset, chunk.data.len()) {
            Placement::Gap { .. } => 0,
            Placement::Duplicate => chunk.data.len(),
            Placement::Append { overlap } => overlap,
        };
        if repeated > 0 && read_range(&path, chunk.offset, repeated).map_err(io)? != chunk.data[..repeated] {
            return Err(refuse(
                RefusalCode::Conflict,
                format!(
                    "{} attempt {}: journal bytes {}..{} differ from those the server already holds; a journal is never rewritten",
                    chunk.job,
                    chunk.attempt.0,
                    chunk.offset,
                    chunk.offset + repeated as u64
                ),
            ));
        }
        let mut held = held;
        if let Placement::Append { overlap } = place(held, chunk.offset, chunk.data.len()) {
            let new = &chunk.data[overlap..];
            // The chain must hold over the partial record held and the new bytes.
            let mut pending = read_range(&path, t.tip.bytes, (held - t.tip.bytes) as usize).unwrap_or_default();
            pending.extend_from_slice(new);
            let mut tip = t.tip.clone();
            tip.advance(&pending).map_err(|e| {
                refuse(RefusalCode::Conflict, format!("{} attempt {}: the journal's chain breaks: {e}", chunk.job, chunk.attempt.0))
            })?;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
            file.write_all(new).map_err(io)?;
            file.sync_data().map_err(io)?;
            held += new.len() as u64;
            t.tip = tip;
        }
        self.witness(chunk.job, chunk.attempt, t, seen, false)?;
        Ok(JournalHeld { job: chunk.job, attempt: chunk.attempt, held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_evidence::journal::{genesis, record_line};
    use proofrig_proto::ids::FencingToken;

    fn chunk(offset: u64, data: &[u8]) -> JournalChunk {
        JournalChunk { job: JobId(3), attempt: Attempt(1), fencing: FencingToken(9), offset, data: data.to_vec() }
    }

    fn records(entries: &[&str]) -> Vec<u8> {
        let (mut bytes, mut prev) = (Vec::new(), genesis());
        for (n, entry) in entries.iter().enumerate() {
            let (line, hash) = record_line(n as u64, &prev, entry.as_bytes());
            bytes.extend_from_slice(&line);
            prev = hash;
        }
        bytes
    }

    fn live(dir: &Path) -> Live {
        Live::open(dir, Arc::new(SigningKey::from_bytes(&[5; 32]))).unwrap()
    }

    const SEEN: Seen<'static> = Seen { lab_host: "lab-a", at: "2026-12-05T10:00:00Z" };

    #[test]
    fn resent_and_overlapping_chunks_are_held_once_and_a_gap_names_where_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let live = live(dir.path());
        let journal = records(&[r#"{"a":1}"#, r#"{"b":2}"#]);
        let first = journal.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(live.chunk(&chunk(0, &journal[..first]), &SEEN).unwrap().held, first as u64);
        assert_eq!(live.chunk(&chunk(0, &journal[..first]), &SEEN).unwrap().held, first as u64);
        assert_eq!(live.chunk(&chunk(5, &journal[5..first + 10]), &SEEN).unwrap().held, first as u64 + 10);
        assert_eq!(live.chunk(&chunk(500, b"late"), &SEEN).unwrap().held, first as u64 + 10);
        assert_eq!(live.chunk(&chunk(first as u64 + 10, &journal[first + 10..]), &SEEN).unwrap().held, journal.len() as u64);
        assert_eq!(std::fs::read(live.journal(JobId(3), Attempt(1))).unwrap(), journal);
    }

    #[test]
    fn a_chunk_rewriting_held_bytes_or_breaking_the_chain_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let live = live(dir.path());
        let journal = records(&[r#"{"verdict":"FAIL"}"#]);
        live.chunk(&chunk(0, &journal), &SEEN).unwrap();
        let forged = records(&[r#"{"verdict":"PASS"}"#]);
        let err = live.chunk(&chunk(0, &forged), &SEEN).unwrap_err();
        assert_eq!(err.code, RefusalCode::Conflict);
        // New bytes whose chain does not follow: refused, nothing kept.
        let err = live.chunk(&chunk(journal.len() as u64, &forged), &SEEN).unwrap_err();
        assert_eq!(err.code, RefusalCode::Conflict, "{}", err.message);
        assert!(err.message.contains("chain breaks"), "{}", err.message);
        assert_eq!(std::fs::read(live.journal(JobId(3), Attempt(1))).unwrap(), journal);
    }

    #[test]
    fn what_was_held_is_witnessed_signed_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let journal = records(&[r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        let cut = journal.len() - 4;
        {
            let live = live(dir.path());
            live.chunk(&chunk(0, &journal[..cut]), &SEEN).unwrap();
            let seen = live.witnessed(JobId(3), Attempt(1));
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].records, 2, "the partial third record is not witnessed");
            // Within the interval, new records wait; the job's end witnesses at once.
            live.chunk(&chunk(cut as u64, &journal[cut..]), &SEEN).unwrap();
            assert_eq!(live.witnessed(JobId(3), Attempt(1)).len(), 1);
            live.witness_now(JobId(3), Attempt(1), &SEEN).unwrap();
            let held: Vec<u64> = live.witnessed(JobId(3), Attempt(1)).iter().map(|w| w.records).collect();
            assert_eq!(held, [2, 3], "a statement signed after the first read is seen too");
        }
        let live = live(dir.path());
        let seen = live.witnessed(JobId(3), Attempt(1));
        assert_eq!(seen.iter().map(|w| w.records).collect::<Vec<_>>(), [2, 3]);
        // After a restart the chain is checked from what is held: a forged tail is refused.
        let forged = records(&[r#"{"x":0}"#]);
        assert_eq!(live.chunk(&chunk(journal.len() as u64, &forged), &SEEN).unwrap_err().code, RefusalCode::Conflict);
        live.witness_now(JobId(3), Attempt(1), &SEEN).unwrap();
        assert_eq!(live.witnessed(JobId(3), Attempt(1)).len(), 2, "nothing new, nothing signed");
        // Another server key's statements do not count.
        let other = Live::open(dir.path(), Arc::new(SigningKey::from_bytes(&[6; 32]))).unwrap();
        assert!(other.witnessed(JobId(3), Attempt(1)).is_empty());
    }
}
