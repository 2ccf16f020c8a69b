//! The lab host's side of a bundle upload: what it offers (every file of the sealed
//! bundle, with its length and digest) and the chunks it sends from wherever the
//! server says it holds each file (`UploadHeld`), so an upload interrupted by either
//! side resumes instead of starting over, and a resend is harmless
//! (`proofrig_proto::resume` on the server).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use proofrig_evidence::bundle::{list_files, sha256_file};
use proofrig_proto::files::BundleFile;
use proofrig_proto::ids::{Attempt, FencingToken, JobId};
use proofrig_proto::labhost::{UploadChunk, UploadHeld, UploadOffer};
use proofrig_proto::timing::MAX_CHUNK_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot read the bundle {path}: {source}; it stays on this lab host until it is uploaded")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is {what}: a sealed bundle holds regular files only, so it cannot be uploaded as it is")]
    NotAFile { path: String, what: &'static str },
    #[error("the server holds {held} bytes of {path}, which has {len}: it answered for another bundle")]
    Held { path: String, held: u64, len: u64 },
}

/// Which job a bundle is for, as its offer and chunks say.
#[derive(Debug, Clone, Copy)]
pub struct UploadFor {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
}

/// The offer of the sealed bundle in `dir` (its directory name is the run id).
pub fn offer(dir: &Path, run: UploadFor) -> Result<UploadOffer, UploadError> {
    let read = |source| UploadError::Read { path: dir.display().to_string(), source };
    let mut files = Vec::new();
    for entry in list_files(dir).map_err(read)? {
        if let Some(what) = entry.not_a_file {
            return Err(UploadError::NotAFile { path: dir.join(&entry.path).display().to_string(), what });
        }
        let path = dir.join(&entry.path);
        let (sha256, len) = sha256_file(&path).map_err(|source| UploadError::Read { path: path.display().to_string(), source })?;
        files.push(BundleFile { path: entry.path, len, sha256 });
    }
    let run_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(UploadOffer { job: run.job, attempt: run.attempt, fencing: run.fencing, run_id, files })
}

/// The chunks still to send, each at most [`MAX_CHUNK_BYTES`], from what `held` says
/// the server has of each file of `offer`. Read lazily: a bundle may be large.
pub fn chunks<'a>(
    dir: &'a Path,
    offer: &'a UploadOffer,
    held: &'a UploadHeld,
) -> impl Iterator<Item = Result<UploadChunk, UploadError>> + 'a {
    offer.files.iter().flat_map(move |file| {
        let from = held.files.iter().find(|h| h.path == file.path).map_or(0, |h| h.held);
        let starts: Vec<u64> = if from > file.len {
            vec![from]
        } else if file.len == 0 && from == 0 {
            vec![0]
        } else {
            (from..file.len).step_by(MAX_CHUNK_BYTES).collect()
        };
        let path: PathBuf = dir.join(&file.path);
        starts.into_iter().map(move |offset| {
            if offset > file.len {
                return Err(UploadError::Held { path: file.path.clone(), held: offset, len: file.len });
            }
            let len = (file.len - offset).min(MAX_CHUNK_BYTES as u64) as usize;
            let read = |source| UploadError::Read { path: path.display().to_string(), source };
            let mut data = vec![0; len];
            let mut handle = std::fs::File::open(&path).map_err(read)?;
            handle.seek(SeekFrom::Start(offset)).map_err(read)?;
            handle.read_exact(&mut data).map_err(read)?;
            Ok(UploadChunk {
                job: offer.job,
                attempt: offer.attempt,
                fencing: offer.fencing,
                path: file.path.clone(),
                offset,
                len: file.len,
                sha256: file.sha256.clone(),
                data,
            })
        })
    })
}
