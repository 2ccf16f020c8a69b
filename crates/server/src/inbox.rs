//! Bundles arrive verified: the server's side of a bundle upload.
//!
//! A lab host offers a sealed bundle's files (path, length, digest) and sends them in
//! chunks; a link that drops, a lab host that restarts or a server that restarts
//! resumes where the server's copy ends, and a resent chunk is stored once
//! (`proofrig_proto::resume`). A chunk that repeats held bytes with other bytes, or a
//! file whose bytes do not hash to its offered digest, is refused and changes nothing
//! kept. When every file is complete the server verifies the bundle exactly as a
//! regulator would (`proofrig_evidence::verify_bundle`, against the lab host's pinned
//! key), stores it unmodified, and writes a receipt beside it, signed with its own key:
//! who ran it where, when it was received, what verifying found. A bundle that does
//! not verify is kept too, flagged, and its receipt says why; it is never shown as a
//! result.
//!
//! Layout under the inbox's root: `staging/<run>/` (the offer and the files as they
//! arrive), `staging/upload-<job>.<attempt>.<fencing>` (which run that upload is: a
//! chunk names its job, not its run), `bundles/<run>/` (complete bundles, byte for
//! byte as sealed), and `receipts/<run>.json` (a DSSE envelope of the receipt).

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use proofrig_evidence::bundle::{Manifest, MANIFEST};
use proofrig_evidence::signing::{self, Envelope};
use proofrig_evidence::verify::Status;
use proofrig_proto::bytes::sha256_hex;
use proofrig_proto::files::{check_bundle_path, BundleFile};
use proofrig_proto::ids::{Attempt, FencingToken, JobId};
use proofrig_proto::labhost::{BundleCheck, FileHeld, Refusal, RefusalCode, UploadChunk, UploadHeld, UploadOffer, Uploaded};
use proofrig_proto::resume::{place, Placement};

use crate::witness::{check_against, WitnessCheck, Witnessed};

/// The DSSE payload type of a receipt.
pub const RECEIPT_PAYLOAD_TYPE: &str = "application/vnd.proofrig.receipt+json";
/// The offer, as received, inside a staging directory.
const OFFER: &str = ".offer.json";

/// What one upload may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_files: usize,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

impl Default for Limits {
    /// A bundle is a few files; a month-long console flood of a big rig stays under these.
    fn default() -> Self {
        Limits { max_files: 10_000, max_file_bytes: 16 << 30, max_total_bytes: 64 << 30 }
    }
}

/// Who the bundle came from, and when it arrived: what the receipt says besides the
/// verification.
pub struct Sender<'a> {
    /// The lab host, as the server enrolled it.
    pub lab_host: &'a str,
    /// The key it enrolled with: the bundle must be signed by it.
    pub key: &'a VerifyingKey,
    /// RFC 3339, UTC.
    pub received_at: &'a str,
    /// The journal the server held while the job ran, if it streamed
    /// ([`crate::live`]): the bundle's journal must begin with exactly these bytes.
    pub live: Option<&'a Path>,
    /// What the server signed of that journal as it came ([`crate::witness`]): each
    /// must hold in the bundle's journal, and the receipt lists them.
    pub witnessed: &'a [Witnessed],
}

/// The signed statement stored beside a received bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub run_id: String,
    pub job: JobId,
    pub attempt: Attempt,
    pub lab_host: String,
    /// Key id of the lab host's pinned key.
    pub lab_host_key: String,
    pub received_at: String,
    /// SHA-256 of the bundle's manifest.json as received (it digests every other file).
    pub manifest_sha256: Option<String>,
    pub check: BundleCheck,
    /// The server's statements of what it saw of the journal while the job ran.
    #[serde(default)]
    pub witnessed: Vec<Witnessed>,
}

/// A bundle upload's progress: how much of each file is held, or the bundle stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Held(FileHeld),
    Stored(Uploaded),
}

/// The server's bundle inbox (see the module doc).
pub struct Inbox {
    root: PathBuf,
    limits: Limits,
}

fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Refusal + '_ {
    move |e| refuse(RefusalCode::Busy, format!("the server cannot use {}: {e}; resend later", path.display()))
}

/// A run id names directories here: letters, digits, `.`, `_`, `-`, not starting with a dot.
fn check_run_id(run_id: &str) -> Result<(), Refusal> {
    let plain = proofrig_proto::files::is_run_id(run_id);
    if plain {
        Ok(())
    } else {
        Err(refuse(RefusalCode::Invalid, format!("run id `{run_id}` cannot name a bundle: use letters, digits, '.', '_' and '-'")))
    }
}

impl Inbox {
    pub fn open(root: &Path, limits: Limits) -> std::io::Result<Inbox> {
        for dir in ["staging", "bundles", "receipts", "reviews"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        Ok(Inbox { root: root.to_path_buf(), limits })
    }

    fn staging(&self, run_id: &str) -> PathBuf {
        self.root.join("staging").join(run_id)
    }

    /// The file naming the run an upload (job, attempt, fencing token) is staged as.
    fn upload_index(&self, job: JobId, attempt: Attempt, fencing: FencingToken) -> PathBuf {
        self.root.join("staging").join(format!("upload-{}.{}.{}", job.0, attempt.0, fencing.0))
    }

    /// Where a stored bundle is.
    pub fn bundle(&self, run_id: &str) -> PathBuf {
        self.root.join("bundles").join(run_id)
    }

    /// The devices a stored bundle's run ran on and how long it ran, from its results.
    pub fn run_facts(&self, run_id: &str) -> Option<(Vec<proofrig_proto::api::DeviceView>, u64)> {
        let bytes = std::fs::read(self.bundle(run_id).join(proofrig_evidence::bundle::RESULTS)).ok()?;
        let result: proofrig_evidence::record::RunResult = serde_json::from_slice(&bytes).ok()?;
        let devices = result
            .devices
            .iter()
            .map(|d| proofrig_proto::api::DeviceView {
                device: d.device.clone(),
                vendor: d.declared.vendor.clone(),
                model: d.declared.model.clone(),
                firmware: d.declared.firmware.clone(),
                reported: d.reported.clone(),
            })
            .collect();
        let millis = |t: &str| {
            humantime::parse_rfc3339_weak(t).ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_millis() as u64)
        };
        let run_ms = match (millis(&result.started), millis(&result.ended)) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        Some((devices, run_ms))
    }

    /// Where a stored bundle's reviews are (one signed statement a line).
    pub fn reviews(&self, run_id: &str) -> PathBuf {
        self.root.join("reviews").join(format!("{run_id}.jsonl"))
    }

    /// Keep a signed review of a stored bundle (appended; reviews are never changed).
    pub fn add_review(&self, run_id: &str, envelope: &Envelope) -> std::io::Result<()> {
        let path = self.reviews(run_id);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let mut line = serde_json::to_vec(envelope).expect("plain data");
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_all()
    }

    /// Where the sign-offs of one product firmware's compliance matrix are kept
    /// (`resource` is the review's `proofrig:matrix/...` name).
    pub fn matrix_reviews(&self, resource: &str) -> PathBuf {
        self.root.join("reviews").join("matrix").join(format!("{}.jsonl", proofrig_proto::bytes::sha256_hex(resource.as_bytes())))
    }

    /// Keep a sign-off of a compliance matrix: beside every bundle it covers (so each
    /// travels with its evidence) and with the matrix.
    pub fn add_matrix_review(&self, resource: &str, runs: &[&str], envelope: &Envelope) -> std::io::Result<()> {
        for run in runs {
            self.add_review(run, envelope)?;
        }
        let path = self.matrix_reviews(resource);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let mut line = serde_json::to_vec(envelope).expect("plain data");
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_all()
    }

    /// Where a stored bundle's receipt is.
    pub fn receipt(&self, run_id: &str) -> PathBuf {
        self.root.join("receipts").join(format!("{run_id}.json"))
    }

    /// Take an offer: check it, keep it, and say how much of each file is held.
    pub fn offer(&self, offer: &UploadOffer) -> Result<UploadHeld, Refusal> {
        check_run_id(&offer.run_id)?;
        let mut seen = BTreeSet::new();
        let mut total = 0u64;
        for file in &offer.files {
            checked_path(&file.path)?;
            if file.path == OFFER || !seen.insert(file.path.as_str()) {
                return Err(refuse(RefusalCode::Invalid, format!("{} is offered twice or is a reserved name", file.path)));
            }
            if file.len > self.limits.max_file_bytes {
                return Err(refuse(
                    RefusalCode::TooLarge,
                    format!("{} is {} bytes, over the limit of {}", file.path, file.len, self.limits.max_file_bytes),
                ));
            }
            total = total.saturating_add(file.len);
        }
        if offer.files.len() > self.limits.max_files || total > self.limits.max_total_bytes {
            return Err(refuse(
                RefusalCode::TooLarge,
                format!("{} files, {total} bytes: over this server's limits for one bundle", offer.files.len()),
            ));
        }
        let held = |files: &[BundleFile], len_of: &dyn Fn(&BundleFile) -> u64| UploadHeld {
            job: offer.job,
            attempt: offer.attempt,
            files: files.iter().map(|f| FileHeld { path: f.path.clone(), held: len_of(f) }).collect(),
        };
        if self.bundle(&offer.run_id).exists() {
            let stored = self.stored_offer(&offer.run_id)?;
            return if stored.files == offer.files {
                Ok(held(&offer.files, &|f| f.len))
            } else {
                Err(refuse(RefusalCode::Conflict, format!("run {} is already stored with other files", offer.run_id)))
            };
        }
        let staging = self.staging(&offer.run_id);
        let offer_path = staging.join(OFFER);
        match std::fs::read(&offer_path) {
            Ok(bytes) => {
                let kept: UploadOffer = serde_json::from_slice(&bytes)
                    .map_err(|e| refuse(RefusalCode::Busy, format!("the kept offer of {} does not read: {e}", offer.run_id)))?;
                if kept.files != offer.files || (kept.job, kept.attempt) != (offer.job, offer.attempt) {
                    return Err(refuse(
                        RefusalCode::Conflict,
                        format!("run {} was offered before with other files or for another job", offer.run_id),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&staging).map_err(io(&staging))?;
                write_synced(&offer_path, &serde_json::to_vec(offer).expect("an offer is plain data")).map_err(io(&offer_path))?;
                let index = self.upload_index(offer.job, offer.attempt, offer.fencing);
                write_synced(&index, offer.run_id.as_bytes()).map_err(io(&index))?;
            }
            Err(e) => return Err(io(&offer_path)(e)),
        }
        Ok(held(&offer.files, &|f| file_len(&staging.join(&f.path))))
    }

    fn stored_offer(&self, run_id: &str) -> Result<UploadOffer, Refusal> {
        let path = self.root.join("receipts").join(format!("{run_id}.offer.json"));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| refuse(RefusalCode::Busy, format!("{} does not read: {e}", path.display())))
    }

    /// Take one chunk of an offered file (see the module doc). When it completes the
    /// last file, the bundle is verified and stored, and the receipt written.
    pub fn chunk(&self, chunk: &UploadChunk, from: &Sender<'_>, server_key: &SigningKey) -> Result<Progress, Refusal> {
        checked_path(&chunk.path)?;
        let (run_id, offer) = self.offer_of(chunk)?;
        let Some(file) = offer.files.iter().find(|f| f.path == chunk.path) else {
            return Err(refuse(RefusalCode::Invalid, format!("{} was not offered for run {run_id}", chunk.path)));
        };
        if (chunk.len, chunk.sha256.as_str()) != (file.len, file.sha256.as_str()) {
            return Err(refuse(RefusalCode::Invalid, format!("the chunk describes {} unlike its offer (length and digest)", chunk.path)));
        }
        if chunk.offset.saturating_add(chunk.data.len() as u64) > file.len {
            return Err(refuse(RefusalCode::Invalid, format!("the chunk runs past the end of {} ({} bytes)", chunk.path, file.len)));
        }
        let path = self.staging(&run_id).join(&chunk.path);
        let held = file_len(&path);
        match place(held, chunk.offset, chunk.data.len()) {
            // An empty file is complete once announced by an empty chunk at offset 0.
            Placement::Duplicate if file.len == 0 && !path.exists() => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                std::fs::File::create(&path).map_err(io(&path))?;
            }
            Placement::Duplicate | Placement::Gap { .. } => {}
            Placement::Append { overlap } => {
                if overlap > 0 && read_range(&path, chunk.offset, overlap).map_err(io(&path))? != chunk.data[..overlap] {
                    return Err(refuse(
                        RefusalCode::Conflict,
                        format!("bytes {}.. of {} differ from those already held", chunk.offset, chunk.path),
                    ));
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                let mut out = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
                out.write_all(&chunk.data[overlap..]).and_then(|_| out.sync_data()).map_err(io(&path))?;
            }
        }
        let held = file_len(&path);
        let file_complete = held == file.len && path.exists();
        if file_complete && !sha256_file(&path).is_ok_and(|digest| digest.eq_ignore_ascii_case(&file.sha256)) {
            let _ = std::fs::remove_file(&path);
            return Err(refuse(
                RefusalCode::Conflict,
                format!("{} does not hash to its offered digest; it was discarded: send it again", chunk.path),
            ));
        }
        let complete = offer.files.iter().all(|f| {
            let p = self.staging(&run_id).join(&f.path);
            file_len(&p) == f.len && p.exists()
        });
        if !complete {
            return Ok(Progress::Held(FileHeld { path: chunk.path.clone(), held }));
        }
        self.store(&offer, from, server_key).map(Progress::Stored)
    }

    /// The kept offer this chunk belongs to (by job, attempt and fencing token).
    fn offer_of(&self, chunk: &UploadChunk) -> Result<(String, UploadOffer), Refusal> {
        let not_offered = || {
            refuse(
                RefusalCode::Invalid,
                format!("no upload was offered for {} attempt {}: offer the bundle first", chunk.job, chunk.attempt.0),
            )
        };
        let run_id = std::fs::read_to_string(self.upload_index(chunk.job, chunk.attempt, chunk.fencing)).map_err(|_| not_offered())?;
        let offer_path = self.staging(&run_id).join(OFFER);
        let bytes = std::fs::read(&offer_path).map_err(|_| not_offered())?;
        let offer: UploadOffer = serde_json::from_slice(&bytes)
            .map_err(|e| refuse(RefusalCode::Busy, format!("the kept offer of {run_id} does not read: {e}")))?;
        Ok((run_id, offer))
    }

    /// Verify the complete bundle where it was staged, sign the receipt, and only then
    /// move the bundle in place: a server that dies on the way leaves either a staged
    /// upload that [`Inbox::settle`] finishes, or a stored bundle with its receipt;
    /// never a bundle without one.
    fn store(&self, offer: &UploadOffer, from: &Sender<'_>, server_key: &SigningKey) -> Result<Uploaded, Refusal> {
        let staging = self.staging(&offer.run_id);
        let bundle = self.bundle(&offer.run_id);
        let kept_offer = self.root.join("receipts").join(format!("{}.offer.json", offer.run_id));
        write_synced(&kept_offer, &serde_json::to_vec(offer).expect("an offer is plain data")).map_err(io(&kept_offer))?;
        // The offer leaves the staged bundle, which verify must see exactly as sealed.
        match std::fs::remove_file(staging.join(OFFER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&staging)(e)),
            _ => {}
        }
        let report = proofrig_evidence::verify_bundle(&staging, Some(from.key));
        let manifest_bytes = std::fs::read(staging.join(MANIFEST)).ok();
        let check = match (report.status, report.pinned) {
            (Status::Verified, true) => match manifest_bytes.as_deref().map(serde_json::from_slice::<Manifest>) {
                Some(Ok(manifest)) => BundleCheck::Verified { verdict: manifest.verdict },
                _ => BundleCheck::Flagged { reason: "verified, but its manifest does not read".into() },
            },
            (Status::Verified, false) => BundleCheck::Flagged {
                reason: format!("signed by {}, not by lab host {}'s key", report.signer.clone().unwrap_or_default(), from.lab_host),
            },
            (status, _) => BundleCheck::Flagged { reason: format!("{status:?}: {}", report.summary) },
        };
        let check = match (check, witness_breach(&staging, from)) {
            (BundleCheck::Verified { .. }, Some(reason)) => BundleCheck::Flagged { reason },
            (check, _) => check,
        };
        let receipt = Receipt {
            run_id: offer.run_id.clone(),
            job: offer.job,
            attempt: offer.attempt,
            lab_host: from.lab_host.to_string(),
            lab_host_key: signing::key_id(from.key),
            received_at: from.received_at.to_string(),
            manifest_sha256: manifest_bytes.as_deref().map(sha256_hex),
            check: check.clone(),
            witnessed: from.witnessed.to_vec(),
        };
        let envelope = signing::sign(server_key, RECEIPT_PAYLOAD_TYPE, &serde_json::to_vec(&receipt).expect("a receipt is plain data"));
        let receipt_path = self.receipt(&offer.run_id);
        write_synced(&receipt_path, &serde_json::to_vec_pretty(&envelope).expect("an envelope is plain data"))
            .map_err(io(&receipt_path))?;
        std::fs::rename(&staging, &bundle).map_err(io(&bundle))?;
        let index = self.upload_index(offer.job, offer.attempt, offer.fencing);
        match std::fs::remove_file(&index) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&index)(e)),
            _ => {}
        }
        Ok(Uploaded { job: offer.job, attempt: offer.attempt, run_id: offer.run_id.clone(), check })
    }

    /// An offer whose every file the server holds: the bundle stored already (a resend
    /// after the server had it all: its receipt's outcome), or staged complete by a
    /// server that died before it stored it (stored now). `None`: files are missing.
    pub fn settle(&self, offer: &UploadOffer, from: &Sender<'_>, server_key: &SigningKey) -> Result<Option<Uploaded>, Refusal> {
        check_run_id(&offer.run_id)?;
        if self.bundle(&offer.run_id).exists() {
            let receipt = self
                .read_receipt(&offer.run_id, &server_key.verifying_key())
                .map_err(|e| refuse(RefusalCode::Busy, format!("run {} is stored but its receipt does not read: {e}", offer.run_id)))?;
            if (receipt.job, receipt.attempt) != (offer.job, offer.attempt) {
                return Err(refuse(RefusalCode::Conflict, format!("run {} is stored for another job", offer.run_id)));
            }
            return Ok(Some(Uploaded { job: offer.job, attempt: offer.attempt, run_id: offer.run_id.clone(), check: receipt.check }));
        }
        let staging = self.staging(&offer.run_id);
        let complete = offer.files.iter().all(|f| {
            let p = staging.join(&f.path);
            file_len(&p) == f.len && p.exists()
        });
        match complete {
            true => self.store(offer, from, server_key).map(Some),
            false => Ok(None),
        }
    }

    /// The receipt of a stored bundle, checked against the server's own key.
    pub fn read_receipt(&self, run_id: &str, server_key: &VerifyingKey) -> Result<Receipt, String> {
        let path = self.receipt(run_id);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if envelope.payload_type != RECEIPT_PAYLOAD_TYPE {
            return Err(format!("{} is not a receipt", path.display()));
        }
        if !matches!(envelope.check(Some(server_key)), signing::SignatureCheck::Pinned { .. }) {
            return Err(format!("{}: not signed by this server's key", path.display()));
        }
        let payload = envelope.payload_bytes().map_err(|e| e.to_string())?;
        serde_json::from_slice(&payload).map_err(|e| e.to_string())
    }
}

/// Why a bundle's journal is not the one the server witnessed while its job ran, if
/// it is not: it must begin with the bytes the server held, and every signed witness
/// statement must hold in it.
fn witness_breach(bundle: &Path, from: &Sender<'_>) -> Option<String> {
    let journal = bundle.join(proofrig_evidence::bundle::JOURNAL);
    if let Some(live) = from.live.filter(|p| p.exists()) {
        match starts_with(&journal, live) {
            Ok(true) => {}
            Ok(false) => {
                return Some(format!(
                "its journal does not begin with the {} bytes the server held while the job ran: it was rewritten after the server saw it",
                file_len(live)
            ))
            }
            Err(e) => return Some(format!("its journal cannot be compared with what the server held: {e}")),
        }
    }
    check_against(&journal, from.witnessed).into_iter().find_map(|c| match c {
        WitnessCheck::Holds => None,
        WitnessCheck::Broken(why) => Some(why),
    })
}

/// Whether the file at `path` begins with the bytes of the file at `prefix`.
fn starts_with(path: &Path, prefix: &Path) -> std::io::Result<bool> {
    let (mut whole, mut start) =
        (std::io::BufReader::new(std::fs::File::open(path)?), std::io::BufReader::new(std::fs::File::open(prefix)?));
    let (mut a, mut b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = start.read(&mut b)?;
        if n == 0 {
            return Ok(true);
        }
        if whole.read_exact(&mut a[..n]).is_err() || a[..n] != b[..n] {
            return Ok(false);
        }
    }
}

/// A bundle file's path as offered or chunked: it must stay inside the bundle.
fn checked_path(path: &str) -> Result<(), Refusal> {
    check_bundle_path(path).map_err(|e| refuse(RefusalCode::Invalid, e.to_string()))
}

pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub(crate) fn read_range(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut out = vec![0; len];
    file.read_exact(&mut out)?;
    Ok(out)
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    proofrig_evidence::bundle::sha256_file(path).map(|(digest, _)| digest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
