//! The append-only, hash-chained journal of a run.
//!
//! One JSON record per line: `{"n":N,"prev":"<hex>","entry":{...}}`. A record's hash
//! is the SHA-256 of its line (without the newline); each record names the previous
//! record's hash, and the first names [`GENESIS`]. Records are written and flushed as
//! the run goes, so a crash leaves a prefix that still verifies; changing, removing or
//! reordering any record breaks the chain at a record number a verifier can name.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
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
    /// Written to directly: one `write(2)` per record, no user-space buffer.
    out: File,
    prev: [u8; 32],
    next: u64,
    /// The record being written (reused, so appending does not allocate).
    line: Vec<u8>,
    failed: Option<String>,
    /// Set when the bundle is sealed: a late event must not change what was signed.
    closed: bool,
}

/// Appends records, keeping the chain.
pub struct JournalWriter {
    path: String,
    state: Mutex<WriterState>,
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
                out: file,
                prev: genesis(),
                next: 0,
                line: Vec::with_capacity(1024),
                failed: None,
                closed: false,
            }),
        })
    }

    /// Append one entry and flush it to the OS: when this returns, the record's
    /// `write(2)` has completed. Returns its record number.
    ///
    /// The line is `{"n":N,"prev":"<hex>","entry":ENTRY}`, byte for byte what
    /// serde_json makes of such a struct. The entry is serialized before taking the
    /// lock (agents' pumps and the executor append concurrently); numbering, hashing
    /// and writing happen under it, so the file order is the chain order.
    pub fn append<T: Serialize + ?Sized>(&self, entry: &T) -> Result<u64, JournalError> {
        let body = serde_json::to_vec(entry)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return Err(JournalError::Closed { path: self.path.clone() });
        }
        let n = state.next;
        let mut line = std::mem::take(&mut state.line);
        line.clear();
        line.extend_from_slice(b"{\"n\":");
        line.extend_from_slice(itoa(n, &mut [0; 20]));
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(&hex_of(&state.prev));
        line.extend_from_slice(b"\",\"entry\":");
        line.extend_from_slice(&body);
        line.push(b'}');
        let hash: [u8; 32] = Sha256::digest(&line).into();
        line.push(b'\n');
        let write = state.out.write_all(&line);
        state.line = line;
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

    /// Fsync, for the end of a run (every record was already written to the OS).
    pub fn sync(&self) -> Result<(), JournalError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.out.sync_all().map_err(|source| JournalError::Write { path: self.path.clone(), source })
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
        let entries: Vec<serde_json::Value> = (0..12u64)
            .map(|i| json!({"type": "note", "i": i, "text": "quote \" and «é» and \u{1}", "big": u64::MAX - i}))
            .collect();
        for entry in &entries {
            journal.append(entry).unwrap();
        }
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
