//! Writing and sealing a run's evidence bundle: one directory a third party can check offline.
//!
//! The executor creates the bundle before the run (the inputs are copied first, so
//! what was run is fixed before anything happens), appends to its journal during the
//! run, and seals it at the end: the reports it is handed (the bundle does not know
//! how they look) are written, every file is digested into
//! the manifest and into two signed in-toto statements. A run that crashes leaves
//! no attestation, so a verifier can tell "never finished" from "changed afterwards";
//! its journal's checkpoints (`checkpoint.rs`) say how far it was signed, and
//! `proofrig seal` (`stopped.rs`) seals it as incomplete.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::attestation::{
    JournalHead, RigRef, ScasRunPredicate, Statement, Subject, PAYLOAD_TYPE, SCAS_RUN_PREDICATE, STATEMENT_TYPE, TEST_RESULT_PREDICATE,
};
use crate::checkpoint::LabHeadSigner;
use crate::journal::{HeadSigner, JournalError, JournalWriter};
use crate::record::{DeviceIdentity, FileRef, RunResult};
use crate::signing;
use proofrig_verdict::Verdict;

/// The hash-chained journal.
pub const JOURNAL: &str = "journal.jsonl";
/// The exact bytes of the rig file.
pub const RIG: &str = "inputs/rig.yaml";
/// The exact bytes of each plan file, under its own file name.
pub const PLANS_DIR: &str = "inputs/plans";
pub const RESULTS: &str = "results.json";
pub const JUNIT: &str = "junit.xml";
pub const REPORT: &str = "report.html";
pub const MANIFEST: &str = "manifest.json";
/// The signed statements, one DSSE envelope per line. Its presence means "sealed".
pub const ATTESTATION: &str = "attestation.intoto.jsonl";
/// Where the attestation is written before it is renamed into place, so a crash
/// while sealing never leaves a half-written attestation that reads as tampering.
const ATTESTATION_PARTIAL: &str = "attestation.intoto.jsonl.partial";
/// `format` of manifest.json.
pub const MANIFEST_FORMAT: &str = "proofrig-bundle/v1";

/// Buffer for hashing: large enough that a 1 GB transcript hashes at disk speed.
pub(crate) const HASH_BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{dir} already exists; every run gets a fresh bundle directory (choose another run id or move the old bundle)")]
    Exists { dir: String },
    #[error("run id `{run_id}` cannot name a bundle directory: {reason}")]
    BadRunId { run_id: String, reason: &'static str },
    #[error("plan file {path} has no usable file name to store it under in the bundle")]
    PlanName { path: String },
    #[error("two plan files are both named `{name}`; rename one so the bundle can hold both")]
    DuplicatePlanName { name: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the journal {path} lost a record ({reason}); a bundle with a gap cannot be sealed, the run must be repeated")]
    JournalFailed { path: String, reason: String },
    #[error("the journal {path} does not end with the run's RunFinished record ({detail}); append it before sealing")]
    NotFinished { path: String, detail: String },
    #[error("the results are for run `{found}` but this bundle is for run `{expected}`")]
    RunIdMismatch { expected: String, found: String },
    #[error("{path} is {what}; a bundle holds regular files only")]
    NotAFile { path: String, what: &'static str },
    #[error("cannot encode {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    #[error("cannot render the report {name}: {reason}")]
    Report { name: String, reason: String },
}

/// A report for people or CI (HTML, JUnit), rendered from the run's result and
/// sealed with the bundle's other files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFile {
    /// The file name inside the bundle (e.g. [`REPORT`], [`JUNIT`]).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What a report may say about the seal it is part of.
pub struct SealInfo<'a> {
    /// The bundle directory, for the verify command a report shows.
    pub bundle_dir: &'a Path,
    /// The signer's key id.
    pub key_id: &'a str,
}

/// Renders a bundle's reports at the moment it is sealed. Sealing writes what this
/// returns and digests it; how a report looks is not the evidence crate's business.
pub trait Reports {
    fn render(&self, result: &RunResult, seal: &SealInfo<'_>) -> Result<Vec<ReportFile>, BundleError>;
}

/// The inputs as copied into the bundle, for the journal's RunStarted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRefs {
    pub rig: FileRef,
    pub plans: Vec<FileRef>,
}

/// A bundle being written: inputs copied, journal open.
pub struct BundleWriter {
    dir: PathBuf,
    run_id: String,
    inputs: InputRefs,
    journal: Arc<JournalWriter>,
}

/// A sealed bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBundle {
    pub dir: PathBuf,
    /// `ed25519:SHA256:...` of the key that signed it.
    pub key_id: String,
}

/// manifest.json: what a person (or a script) reads first to know what the bundle is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub run_id: String,
    pub proofrig_version: String,
    pub operator: String,
    pub host: String,
    pub started: String,
    pub ended: String,
    pub aborted: bool,
    pub verdict: Verdict,
    pub rig: RigRef,
    pub plans: Vec<FileRef>,
    pub devices: Vec<DeviceIdentity>,
    pub journal: JournalHead,
    /// Every file of the bundle except the manifest itself and the attestation.
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

impl BundleWriter {
    /// Create `<out_dir>/<run_id>/`, copy the inputs into it and open the journal.
    ///
    /// `rig` and `plans` are each the original path (only its file name is kept) and
    /// the exact bytes that were loaded, so the bundle holds what was run even if the
    /// file changes on disk afterwards.
    pub fn create(out_dir: &Path, run_id: &str, rig: (&Path, &[u8]), plans: &[(&Path, &[u8])]) -> Result<BundleWriter, BundleError> {
        Self::create_with(out_dir, run_id, rig, plans, None)
    }

    /// [`BundleWriter::create`], with a journal that signs its head with `key` as the
    /// run goes (checkpoints, `checkpoint.rs`): what `proofrig run` makes, so a run
    /// that never seals still carries signed evidence. `key` is the one that seals.
    pub fn create_signed(
        out_dir: &Path,
        run_id: &str,
        rig: (&Path, &[u8]),
        plans: &[(&Path, &[u8])],
        key: &SigningKey,
    ) -> Result<BundleWriter, BundleError> {
        Self::create_with(out_dir, run_id, rig, plans, Some(Box::new(LabHeadSigner::new(key.clone()))))
    }

    fn create_with(
        out_dir: &Path,
        run_id: &str,
        rig: (&Path, &[u8]),
        plans: &[(&Path, &[u8])],
        signer: Option<Box<dyn HeadSigner>>,
    ) -> Result<BundleWriter, BundleError> {
        check_run_id(run_id)?;
        let mut plan_names = Vec::with_capacity(plans.len());
        for (path, _) in plans {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.starts_with('.'))
                .ok_or_else(|| BundleError::PlanName { path: path.display().to_string() })?;
            if plan_names.contains(&name) {
                return Err(BundleError::DuplicatePlanName { name: name.to_string() });
            }
            plan_names.push(name);
        }

        std::fs::create_dir_all(out_dir).map_err(write_err(out_dir))?;
        let dir = out_dir.join(run_id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Err(BundleError::Exists { dir: dir.display().to_string() }),
            Err(err) => return Err(write_err(&dir)(err)),
        }
        let plans_dir = dir.join(PLANS_DIR);
        std::fs::create_dir_all(&plans_dir).map_err(write_err(&plans_dir))?;

        write_new(&dir.join(RIG), rig.1)?;
        let rig_ref = FileRef { path: RIG.to_string(), sha256: hex::encode(Sha256::digest(rig.1)) };
        let mut plan_refs = Vec::with_capacity(plans.len());
        for ((_, bytes), name) in plans.iter().zip(plan_names) {
            let path = format!("{PLANS_DIR}/{name}");
            write_new(&dir.join(&path), bytes)?;
            plan_refs.push(FileRef { path, sha256: hex::encode(Sha256::digest(bytes)) });
        }
        let journal_path = dir.join(JOURNAL);
        let journal = Arc::new(match signer {
            Some(signer) => JournalWriter::create_signed(&journal_path, signer)?,
            None => JournalWriter::create(&journal_path)?,
        });
        Ok(BundleWriter { dir, run_id: run_id.to_string(), inputs: InputRefs { rig: rig_ref, plans: plan_refs }, journal })
    }

    /// The journal; clone the `Arc` for every task that records.
    pub fn journal(&self) -> &Arc<JournalWriter> {
        &self.journal
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The copied inputs with their digests, as the RunStarted record names them.
    pub fn input_refs(&self) -> &InputRefs {
        &self.inputs
    }

    /// Close the journal and seal the bundle: reports, manifest, signed statements.
    ///
    /// The journal must end with the run's RunFinished record. After this, appends
    /// to the journal fail (the signed digest would no longer match).
    pub fn seal(self, result: &RunResult, key: &SigningKey, reports: &dyn Reports) -> Result<SealedBundle, BundleError> {
        if result.run_id != self.run_id {
            return Err(BundleError::RunIdMismatch { expected: self.run_id.clone(), found: result.run_id.clone() });
        }
        let journal_path = self.dir.join(JOURNAL);
        let journal_name = journal_path.display().to_string();
        let (head, records) = self.journal.close();
        if let Some(reason) = self.journal.failure() {
            return Err(BundleError::JournalFailed { path: journal_name, reason });
        }
        self.journal.sync()?;
        check_run_finished(&journal_path, records, result.verdict)?;
        let journal = JournalHead { records, head_sha256: hex::encode(head) };
        seal_files(SealFiles { dir: &self.dir, inputs: &self.inputs, result, key, journal, incomplete: false }, reports)
    }
}

/// A bundle whose journal is complete and on disk, ending at `journal`, about to be
/// sealed. `incomplete`: the run stopped without finishing and `proofrig seal` seals
/// it afterwards.
pub(crate) struct SealFiles<'a> {
    pub dir: &'a Path,
    pub inputs: &'a InputRefs,
    pub result: &'a RunResult,
    pub key: &'a SigningKey,
    pub journal: JournalHead,
    pub incomplete: bool,
}

/// Write the results, the reports, the manifest and the signed statements.
pub(crate) fn seal_files(seal: SealFiles<'_>, reports: &dyn Reports) -> Result<SealedBundle, BundleError> {
    let SealFiles { dir, inputs, result, key, journal, incomplete } = seal;
    let key_id = signing::key_id(&key.verifying_key());
    let results_json = encode_pretty("results.json", result)?;
    write_new(&dir.join(RESULTS), &results_json)?;
    for report in reports.render(result, &SealInfo { bundle_dir: dir, key_id: &key_id })? {
        let reserved = [JOURNAL, RESULTS, MANIFEST, ATTESTATION, ATTESTATION_PARTIAL];
        let plain = !report.name.is_empty() && !report.name.contains(['/', '\\']) && !report.name.starts_with('.');
        if !plain || reserved.contains(&report.name.as_str()) {
            return Err(BundleError::Report {
                name: report.name,
                reason: "a report is a plain file name that is not the bundle's own".into(),
            });
        }
        write_new(&dir.join(&report.name), &report.bytes)?;
    }

    let mut files = Vec::new();
    for entry in list_files(dir).map_err(|source| BundleError::Read { path: dir.display().to_string(), source })? {
        if entry.path == MANIFEST || entry.path == ATTESTATION || entry.path == ATTESTATION_PARTIAL {
            continue;
        }
        if let Some(what) = entry.not_a_file {
            return Err(BundleError::NotAFile { path: dir.join(&entry.path).display().to_string(), what });
        }
        let full = dir.join(&entry.path);
        let (sha256, size) = sha256_file(&full).map_err(read_err(&full))?;
        files.push(ManifestFile { path: entry.path, sha256, size });
    }

    let rig = RigRef { name: result.rig_name.clone(), path: inputs.rig.path.clone(), sha256: inputs.rig.sha256.clone() };
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        run_id: result.run_id.clone(),
        proofrig_version: result.proofrig_version.clone(),
        operator: result.operator.clone(),
        host: result.host.clone(),
        started: result.started.clone(),
        ended: result.ended.clone(),
        aborted: result.aborted,
        verdict: result.verdict,
        rig: rig.clone(),
        plans: inputs.plans.clone(),
        devices: result.devices.clone(),
        journal: journal.clone(),
        files,
    };
    let manifest_json = encode_pretty("manifest.json", &manifest)?;
    write_new(&dir.join(MANIFEST), &manifest_json)?;

    let mut subject: Vec<Subject> = manifest.files.iter().map(|f| Subject::sha256(&f.path, &f.sha256)).collect();
    subject.push(Subject::sha256(MANIFEST, &hex::encode(Sha256::digest(&manifest_json))));
    subject.sort();

    let mut scas = ScasRunPredicate::from_run(result, rig, inputs.plans.clone(), journal);
    scas.incomplete = incomplete;
    let test_result = Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        subject: subject.clone(),
        predicate_type: TEST_RESULT_PREDICATE.to_string(),
        predicate: scas.test_result(),
    };
    let scas =
        Statement { statement_type: STATEMENT_TYPE.to_string(), subject, predicate_type: SCAS_RUN_PREDICATE.to_string(), predicate: scas };
    let mut attestation = Vec::new();
    for payload in [encode("test-result statement", &test_result)?, encode("proofrig statement", &scas)?] {
        let envelope = signing::sign(key, PAYLOAD_TYPE, &payload);
        attestation.extend(encode("DSSE envelope", &envelope)?);
        attestation.push(b'\n');
    }
    let partial = dir.join(ATTESTATION_PARTIAL);
    write_new(&partial, &attestation)?;
    let sealed = dir.join(ATTESTATION);
    std::fs::rename(&partial, &sealed).map_err(write_err(&sealed))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(write_err(dir))?;
    Ok(SealedBundle { dir: dir.to_path_buf(), key_id })
}

fn check_run_id(run_id: &str) -> Result<(), BundleError> {
    let reason = if run_id.is_empty() {
        Some("it is empty")
    } else if run_id.starts_with('.') {
        Some("it starts with a dot")
    } else if run_id.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if run_id.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if run_id.len() > 200 {
        Some("it is longer than 200 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BundleError::BadRunId { run_id: run_id.to_string(), reason }),
        None => Ok(()),
    }
}

/// A sealed journal must end with RunFinished, and it must agree with the results:
/// otherwise verify would (rightly) call the bundle tampered.
fn check_run_finished(path: &Path, records: u64, verdict: Verdict) -> Result<(), BundleError> {
    let name = path.display().to_string();
    let not_finished = |detail: String| BundleError::NotFinished { path: name.clone(), detail };
    if records == 0 {
        return Err(not_finished("the journal is empty".into()));
    }
    let Some(line) = last_run_line(path).map_err(read_err(path))? else {
        return Err(not_finished("its last record is larger than a RunFinished record can be".into()));
    };
    let value: serde_json::Value = serde_json::from_slice(&line).map_err(|e| not_finished(format!("its last line is not JSON: {e}")))?;
    let entry = &value["entry"];
    if entry["type"] != "run_finished" {
        return Err(not_finished(format!("the last record is `{}`", entry["type"].as_str().unwrap_or("?"))));
    }
    if entry["verdict"] != verdict.as_str() {
        return Err(not_finished(format!("RunFinished says {} but the results say {verdict}", entry["verdict"].as_str().unwrap_or("?"))));
    }
    Ok(())
}

/// The last line of a journal that is no checkpoint (checkpoints follow RunFinished
/// and may follow any record), if it ends within the last 64 KiB.
fn last_run_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let tail = tail(path)?;
    let mut lines: Vec<&[u8]> = tail.1.split(|b| *b == b'\n').collect();
    if !tail.0 {
        // The first line of the window may be cut: never judge it.
        lines.remove(0);
    }
    Ok(lines.into_iter().rev().find(|line| !is_checkpoint_line(line)).map(<[u8]>::to_vec))
}

/// Whether a journal line holds a checkpoint entry.
fn is_checkpoint_line(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Line {
        entry: Kind,
    }
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_slice::<Line>(line).is_ok_and(|l| l.entry.kind == "checkpoint")
}

/// The last 64 KiB of a file without its final newline, and whether that is the whole file.
fn tail(path: &Path) -> io::Result<(bool, Vec<u8>)> {
    const WINDOW: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        tail.pop();
    }
    Ok((start == 0, tail))
}

/// The last line of a file (without its newline), if it is shorter than 64 KiB.
#[cfg(test)]
fn last_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let (whole, tail) = tail(path)?;
    match tail.iter().rposition(|b| *b == b'\n') {
        Some(at) => Ok(Some(tail[at + 1..].to_vec())),
        None if whole => Ok(Some(tail)),
        None => Ok(None),
    }
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, BundleError> {
    serde_json::to_vec(value).map_err(|source| BundleError::Encode { what, source })
}

fn encode_pretty<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, BundleError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| BundleError::Encode { what, source })?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(write_err(path))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(write_err(path))
}

fn write_err(path: &Path) -> impl Fn(io::Error) -> BundleError + '_ {
    move |source| BundleError::Write { path: path.display().to_string(), source }
}

fn read_err(path: &Path) -> impl Fn(io::Error) -> BundleError + '_ {
    move |source| BundleError::Read { path: path.display().to_string(), source }
}

/// Hex SHA-256 and size of a file, read in large blocks.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut reader = HashingReader::new(File::open(path)?);
    io::copy(&mut io::BufReader::with_capacity(HASH_BUFFER, &mut reader), &mut io::sink())?;
    Ok(reader.finish())
}

/// Hashes every byte read through it, so a file can be parsed and digested in one pass.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Hex digest and byte count of everything read so far.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A path found in a bundle directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEntry {
    /// Relative to the bundle, `/`-separated (lossy if the name is not UTF-8).
    pub path: String,
    /// `Some(what)` when it is not a regular file (a symbolic link, a device...).
    pub not_a_file: Option<&'static str>,
}

/// Every non-directory entry under `dir`, sorted, without following symbolic links.
pub fn list_files(dir: &Path) -> io::Result<Vec<BundleEntry>> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = pending.pop() {
        for entry in std::fs::read_dir(&abs)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push((entry.path(), rel));
            } else if kind.is_file() {
                out.push(BundleEntry { path: rel, not_a_file: None });
            } else if kind.is_symlink() {
                out.push(BundleEntry { path: rel, not_a_file: Some("a symbolic link") });
            } else {
                out.push(BundleEntry { path: rel, not_a_file: Some("not a regular file") });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_that_would_escape_or_hide_the_directory_are_refused() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a\nb"] {
            assert!(matches!(check_run_id(bad), Err(BundleError::BadRunId { .. })), "{bad:?}");
        }
        check_run_id("2026-11-21T06:13:27Z-ab12").unwrap();
    }

    #[test]
    fn the_last_line_is_found_whatever_the_file_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"only\n").unwrap();
        assert_eq!(last_line(&path).unwrap().unwrap(), b"only");
        let mut big = vec![b'x'; 200_000];
        big.extend_from_slice(b"\nlast line\n");
        std::fs::write(&path, &big).unwrap();
        assert_eq!(last_line(&path).unwrap().unwrap(), b"last line");
        std::fs::write(&path, vec![b'y'; 100_000]).unwrap();
        assert_eq!(last_line(&path).unwrap(), None);
    }

    #[test]
    fn the_run_s_last_line_is_found_past_trailing_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let checkpoint = r#"{"n":2,"prev":"ab","entry":{"type":"checkpoint","records":2}}"#;
        let finished = r#"{"n":1,"prev":"aa","entry":{"type":"run_finished"}}"#;
        std::fs::write(&path, format!("{finished}\n{checkpoint}\n{checkpoint}\n")).unwrap();
        assert_eq!(last_run_line(&path).unwrap().unwrap(), finished.as_bytes());
        // Beyond the window, a line that may be cut is never taken for the run's last.
        std::fs::write(&path, format!("{}\n{checkpoint}\n", "x".repeat(70_000))).unwrap();
        assert_eq!(last_run_line(&path).unwrap(), None);
    }

    #[test]
    fn hashing_matches_a_one_shot_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), (hex::encode(Sha256::digest(&bytes)), bytes.len() as u64));
    }
}
