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
//! Layout: `<root>/<job>.<attempt>.jsonl`, one file per attempt.

use std::io::Write;
use std::path::{Path, PathBuf};

use proofrig_proto::ids::{Attempt, JobId};
use proofrig_proto::labhost::{JournalChunk, JournalHeld, Refusal, RefusalCode};
use proofrig_proto::resume::{place, Placement};

use crate::inbox::{file_len, read_range};

/// The live journals of running jobs.
pub struct Live {
    root: PathBuf,
}

fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

impl Live {
    pub fn open(root: &Path) -> std::io::Result<Live> {
        std::fs::create_dir_all(root)?;
        Ok(Live { root: root.to_path_buf() })
    }

    /// Where the journal of an attempt is held.
    pub fn journal(&self, job: JobId, attempt: Attempt) -> PathBuf {
        self.root.join(format!("{}.{}.jsonl", job.0, attempt.0))
    }

    /// Take one chunk; answer how much of the journal is held now.
    pub fn chunk(&self, chunk: &JournalChunk) -> Result<JournalHeld, Refusal> {
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
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
            file.write_all(&chunk.data[overlap..]).map_err(io)?;
            file.sync_data().map_err(io)?;
            held += (chunk.data.len() - overlap) as u64;
        }
        Ok(JournalHeld { job: chunk.job, attempt: chunk.attempt, held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_proto::ids::FencingToken;

    fn chunk(offset: u64, data: &[u8]) -> JournalChunk {
        JournalChunk { job: JobId(3), attempt: Attempt(1), fencing: FencingToken(9), offset, data: data.to_vec() }
    }

    #[test]
    fn resent_and_overlapping_chunks_are_held_once_and_a_gap_names_where_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::open(dir.path()).unwrap();
        assert_eq!(live.chunk(&chunk(0, b"{\"a\":1}\n")).unwrap().held, 8);
        assert_eq!(live.chunk(&chunk(0, b"{\"a\":1}\n")).unwrap().held, 8);
        assert_eq!(live.chunk(&chunk(5, b"1}\n{\"b\"")).unwrap().held, 12);
        assert_eq!(live.chunk(&chunk(20, b"late")).unwrap().held, 12);
        assert_eq!(std::fs::read(live.journal(JobId(3), Attempt(1))).unwrap(), b"{\"a\":1}\n{\"b\"");
    }

    #[test]
    fn a_chunk_rewriting_held_bytes_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::open(dir.path()).unwrap();
        live.chunk(&chunk(0, b"{\"verdict\":\"FAIL\"}\n")).unwrap();
        let err = live.chunk(&chunk(0, b"{\"verdict\":\"PASS\"}\n")).unwrap_err();
        assert_eq!(err.code, RefusalCode::Conflict);
        let err = live.chunk(&chunk(12, b"PASS\"}\nmore")).unwrap_err();
        assert_eq!(err.code, RefusalCode::Conflict, "{}", err.message);
        assert_eq!(std::fs::read(live.journal(JobId(3), Attempt(1))).unwrap(), b"{\"verdict\":\"FAIL\"}\n");
    }
}
