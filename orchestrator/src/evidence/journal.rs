//! The append-only, hash-chained journal of a run.
//!
//! One JSON record per line: `{"n":N,"prev":"<hex>","entry":{...}}`. A record's hash
//! is the SHA-256 of its line (without the newline); each record names the previous
//! record's hash, and the first names [`GENESIS`]. Records are written and flushed as
//! the run goes, so a crash leaves a prefix that still verifies; changing, removing or
//! reordering any record breaks the chain at a record number a verifier can name.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

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
}

struct WriterState {
    out: BufWriter<File>,
    prev: [u8; 32],
    next: u64,
    failed: Option<String>,
    /// Set when the bundle is sealed: a late event must not change what was signed.
    closed: bool,
}

/// Appends records, keeping the chain.
pub struct JournalWriter {
    path: String,
    state: Mutex<WriterState>,
}

#[derive(Serialize)]
struct RecordOut<'a, T: Serialize> {
    n: u64,
    prev: &'a str,
    entry: &'a T,
}

impl JournalWriter {
    pub fn create(path: &Path) -> Result<Self, JournalError> {
        let name = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map_err(|source| JournalError::Write { path: name.clone(), source })?;
        Ok(Self {
            path: name,
            state: Mutex::new(WriterState {
                out: BufWriter::new(file),
                prev: genesis(),
                next: 0,
                failed: None,
                closed: false,
            }),
        })
    }

    /// Append one entry and flush it to the OS. Returns its record number.
    pub fn append<T: Serialize>(&self, entry: &T) -> Result<u64, JournalError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return Err(JournalError::Closed { path: self.path.clone() });
        }
        let prev = hex::encode(state.prev);
        let n = state.next;
        let line = serde_json::to_vec(&RecordOut { n, prev: &prev, entry })?;
        let hash: [u8; 32] = Sha256::digest(&line).into();
        let write = state.out.write_all(&line).and_then(|_| state.out.write_all(b"\n")).and_then(|_| state.out.flush());
        if let Err(source) = write {
            state.failed = Some(source.to_string());
            return Err(JournalError::Write { path: self.path.clone(), source });
        }
        state.prev = hash;
        state.next += 1;
        Ok(n)
    }

    /// Hash of the last record written (the chain head) and the record count.
    pub fn head(&self) -> ([u8; 32], u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.prev, state.next)
    }

    /// The first write error, if any happened (the run must then not claim completeness).
    pub fn failure(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).failed.clone()
    }

    /// Refuse every later append; returns the final head and record count.
    ///
    /// Sealing signs the journal's digest, so anything still holding the writer (a
    /// straggling agent task) must get an error instead of changing the file.
    pub fn close(&self) -> ([u8; 32], u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.closed = true;
        (state.prev, state.next)
    }

    /// Flush and fsync, for the end of a run.
    pub fn sync(&self) -> Result<(), JournalError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .out
            .flush()
            .and_then(|_| state.out.get_ref().sync_all())
            .map_err(|source| JournalError::Write { path: self.path.clone(), source })
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
    #[error(
        "record {n} (line {line}) does not follow the record before it: its `prev` does not match that record's hash"
    )]
    Link { n: u64, line: u64 },
    #[error("the journal ends in the middle of record {n} (line {line}): the run was cut short")]
    TruncatedRecord { n: u64, line: u64 },
}

/// A journal whose chain holds: its records and the hash of the last one.
pub type VerifiedChain = (Vec<Record>, [u8; 32]);

/// Read and check the chain. The outer error is I/O; the inner one says where the chain breaks.
pub fn read_chain(path: &Path) -> Result<Result<VerifiedChain, ChainBreak>, JournalError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| JournalError::Read { path: name.clone(), source })?;
    read_chain_from(&mut BufReader::with_capacity(1 << 20, file), &name)
}

/// [`read_chain`] over any reader, so a verifier can hash the file in the same pass.
/// `name` only labels I/O errors. Stops at the first break without reading further.
pub fn read_chain_from(
    reader: &mut impl BufRead,
    name: &str,
) -> Result<Result<VerifiedChain, ChainBreak>, JournalError> {
    let name = name.to_string();
    let mut records = Vec::new();
    let mut prev = genesis();
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        let read =
            reader.read_until(b'\n', &mut buf).map_err(|source| JournalError::Read { path: name.clone(), source })?;
        if read == 0 {
            break;
        }
        let line_no = n + 1;
        if buf.last() != Some(&b'\n') {
            return Ok(Err(ChainBreak::TruncatedRecord { n, line: line_no }));
        }
        buf.pop();
        let value: serde_json::Value = match serde_json::from_slice(&buf) {
            Ok(v) => v,
            Err(err) => return Ok(Err(ChainBreak::Malformed { n, line: line_no, reason: err.to_string() })),
        };
        let found = value.get("n").and_then(|v| v.as_u64());
        if found != Some(n) {
            return Ok(Err(match found {
                Some(found) => ChainBreak::Numbering { n, line: line_no, found },
                None => ChainBreak::Malformed { n, line: line_no, reason: "no record number".into() },
            }));
        }
        let linked = value.get("prev").and_then(|v| v.as_str()).and_then(|h| hex::decode(h).ok());
        if linked.as_deref() != Some(&prev[..]) {
            return Ok(Err(ChainBreak::Link { n, line: line_no }));
        }
        let hash: [u8; 32] = Sha256::digest(&buf).into();
        let entry = match value {
            serde_json::Value::Object(mut map) => map.remove("entry").unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        };
        records.push(Record { n, hash, entry });
        prev = hash;
        n += 1;
    }
    Ok(Ok((records, prev)))
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
    fn the_writer_refuses_to_overwrite_an_existing_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 1);
        assert!(JournalWriter::create(&path).is_err());
    }
}
