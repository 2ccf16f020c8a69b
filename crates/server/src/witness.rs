//! The server as a witness: what it saw of a running job's journal, signed as it saw
//! it, so nobody can rewrite it afterwards.
//!
//! A lab host holds the lab key that signs its bundles; an insider there could run a
//! job, dislike the result, and rebuild the journal and its signatures before the
//! upload. The journal streams to the server while the job runs ([`crate::live`]),
//! so the server checks the chain of each record as it arrives ([`ChainTip`]) and, at
//! least every [`WITNESS_INTERVAL`], signs a [`Witnessed`] statement: after this many
//! records of this job's journal, the chain head was this. A bundle uploaded later
//! must carry exactly those records; the receipt lists the statements, and
//! `proofrig verify` checks each against the bundle's journal ([`check_against`]): a
//! journal rewritten after the server saw it no longer matches, whoever signed it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use proofrig_evidence::journal::{genesis, ChainReader, Hashing};
use proofrig_proto::ids::{Attempt, JobId};

/// The DSSE payload type of a witness statement.
pub const WITNESS_PAYLOAD_TYPE: &str = "application/vnd.proofrig.witness+json";

/// The longest a running job's new records wait for the server's signature.
pub const WITNESS_INTERVAL: Duration = Duration::from_secs(10);

/// "This server held the first `records` records of this job's journal (`bytes`
/// bytes), and the last of them hashes to `head`." Signed by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witnessed {
    pub job: JobId,
    pub attempt: Attempt,
    pub lab_host: String,
    pub records: u64,
    /// SHA-256 of record `records - 1`'s line, hex (the genesis label's for 0).
    pub head: String,
    pub bytes: u64,
    /// RFC 3339, UTC: when the server saw it.
    pub at: String,
}

/// How far a journal's chain has been checked: its complete records so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// Bytes of complete records (a partial last line is not counted).
    pub bytes: u64,
    pub records: u64,
    pub head: [u8; 32],
}

impl Default for ChainTip {
    fn default() -> Self {
        ChainTip { bytes: 0, records: 0, head: genesis() }
    }
}

#[derive(Deserialize)]
struct Link {
    n: u64,
    prev: String,
}

impl ChainTip {
    /// Check the complete lines of `more` (the journal's bytes from [`ChainTip::bytes`]
    /// on) and move past them; a partial last line waits for its end. On a break,
    /// nothing moves and the error says which record.
    pub fn advance(&mut self, more: &[u8]) -> Result<(), String> {
        let mut next = self.clone();
        let mut rest = more;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..end];
            let link: Link = serde_json::from_slice(line)
                .map_err(|e| format!("record {} (byte {}) is not a journal record: {e}", next.records, next.bytes))?;
            if link.n != next.records {
                return Err(format!("record {} (byte {}) is numbered {}", next.records, next.bytes, link.n));
            }
            if hex::decode(&link.prev).ok().as_deref() != Some(&next.head[..]) {
                return Err(format!("record {} does not follow the record before it: its `prev` is not that record's hash", next.records));
            }
            next.head = Sha256::digest(line).into();
            next.records += 1;
            next.bytes += end as u64 + 1;
            rest = &rest[end + 1..];
        }
        *self = next;
        Ok(())
    }
}

/// How one witness statement compares with a bundle's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessCheck {
    /// The journal's record `records - 1` hashes to the witnessed head.
    Holds,
    /// It does not, or the journal is shorter: it was rewritten after the server saw it.
    Broken(String),
}

/// Check each statement against the journal at `journal` (a bundle's `journal.jsonl`).
pub fn check_against(journal: &Path, witnessed: &[Witnessed]) -> Vec<WitnessCheck> {
    let heads = match std::fs::File::open(journal) {
        Ok(file) => {
            let mut heads = vec![hex::encode(genesis())];
            let reader =
                ChainReader::<_, serde::de::IgnoredAny>::new(Hashing(std::io::BufReader::new(file)), &journal.display().to_string());
            heads.extend(reader.map(|r| hex::encode(r.hash)));
            heads
        }
        Err(e) => return witnessed.iter().map(|_| WitnessCheck::Broken(format!("{}: {e}", journal.display()))).collect(),
    };
    witnessed
        .iter()
        .map(|w| match heads.get(w.records as usize) {
            Some(head) if *head == w.head => WitnessCheck::Holds,
            Some(head) => WitnessCheck::Broken(format!(
                "after record {} the journal's head is {head}, the server witnessed {} at {}: the journal was rewritten after the server saw it",
                w.records, w.head, w.at
            )),
            None => WitnessCheck::Broken(format!(
                "the server witnessed {} records at {}, the journal's chain holds {}: records it saw are missing",
                w.records,
                w.at,
                heads.len() - 1
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_evidence::journal::record_line;

    fn journal(entries: &[&str]) -> (Vec<u8>, Vec<[u8; 32]>) {
        let (mut bytes, mut heads, mut prev) = (Vec::new(), vec![genesis()], genesis());
        for (n, entry) in entries.iter().enumerate() {
            let (line, hash) = record_line(n as u64, &prev, entry.as_bytes());
            bytes.extend_from_slice(&line);
            heads.push(hash);
            prev = hash;
        }
        (bytes, heads)
    }

    #[test]
    fn the_tip_moves_over_complete_records_only_in_any_chunking() {
        let (bytes, heads) = journal(&[r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        for cut in 0..bytes.len() {
            let mut tip = ChainTip::default();
            tip.advance(&bytes[..cut]).unwrap();
            let complete = bytes[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(tip.records, complete);
            tip.advance(&bytes[tip.bytes as usize..]).unwrap();
            assert_eq!((tip.records, tip.head, tip.bytes), (3, heads[3], bytes.len() as u64));
        }
    }

    #[test]
    fn a_rewritten_record_breaks_the_tip_and_the_witness() {
        let (bytes, heads) = journal(&[r#"{"verdict":"FAIL"}"#, r#"{"b":2}"#]);
        let text = String::from_utf8(bytes.clone()).unwrap().replacen("FAIL", "PASS", 1);
        let mut tip = ChainTip::default();
        tip.advance(text.as_bytes()).unwrap_err();
        assert_eq!(tip, ChainTip::default(), "nothing moved");

        // A journal rebuilt with a valid chain after the server witnessed the first one.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (forged, _) = journal(&[r#"{"verdict":"PASS"}"#, r#"{"b":2}"#]);
        std::fs::write(&path, &forged).unwrap();
        let seen = |records: u64, head: &[u8; 32]| Witnessed {
            job: JobId(1),
            attempt: Attempt(1),
            lab_host: "lab-a".into(),
            records,
            head: hex::encode(head),
            bytes: 0,
            at: "2026-12-05T10:00:00Z".into(),
        };
        let checks = check_against(&path, &[seen(0, &heads[0]), seen(1, &heads[1]), seen(3, &heads[2])]);
        assert_eq!(checks[0], WitnessCheck::Holds);
        assert!(matches!(&checks[1], WitnessCheck::Broken(m) if m.contains("rewritten")), "{checks:?}");
        assert!(matches!(&checks[2], WitnessCheck::Broken(m) if m.contains("missing")), "{checks:?}");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(check_against(&path, &[seen(1, &heads[1]), seen(2, &heads[2])]), [WitnessCheck::Holds, WitnessCheck::Holds]);
    }
}
