//! `proofrig fetch RUN [--out DIR]`: download a stored bundle from the lab server and
//! verify it here, as a regulator would.
//!
//! Why check again what the server verified: the bytes cross a network and land on
//! another disk, and the person fetching should not have to trust either. So the
//! server's listing gives every file's length and SHA-256 (from the bundle's
//! manifest), each file is checked against it while it is written, and the whole
//! bundle is then verified with `proofrig verify`'s own check, its signer compared with
//! the key the lab host enrolled with (the receipt's, signed by the server). Nothing
//! half-written is left looking complete: files go into a hidden `.RUN.partial-*`
//! directory, renamed to `DIR/RUN/` only when every file arrived whole; a mismatch
//! removes it. Every path the server names is checked to stay inside the bundle
//! before anything is written. The receipt is saved as `DIR/RUN.receipt.json`.
//!
//! A flagged bundle (it did not verify on the server) is refused unless an admin asks
//! for it with `--flagged`; then it is fetched to be inspected, and said loudly not
//! to be a result (exit 1 at least).

use std::io::Write;
use std::path::{Path, PathBuf};

use proofrig_proto::api::RunView;
use proofrig_proto::files::{check_bundle_path, BundleFile};
use proofrig_proto::labhost::BundleCheck;
use reqwest::Method;
use sha2::{Digest, Sha256};

use super::client::{Client, ClientError, Connection};
use super::{exit, report, Failure};

/// `proofrig fetch`'s flags.
pub struct FetchArgs {
    pub run: String,
    pub out: PathBuf,
    pub key: Option<PathBuf>,
    pub flagged: bool,
    pub connection: Connection,
}

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("the server's listing of run {run} is unusable: {detail}")]
    Listing { run: String, detail: String },
}

pub async fn fetch(args: FetchArgs) -> Result<u8, Failure> {
    let run = args.run.as_str();
    check_run_id(run)?;
    let pinned = match &args.key {
        Some(path) => Some(proofrig_evidence::signing::load_verifying_key(path).map_err(|e| Failure::usage(report(e)))?),
        None => None,
    };
    let (dest, receipt_path) = (args.out.join(run), args.out.join(format!("{run}.receipt.json")));
    for path in [&dest, &receipt_path] {
        if path.exists() {
            return Err(Failure::usage(miette::miette!(
                help = "move it aside, or fetch into another --out DIR",
                "{} already exists; fetch does not overwrite",
                path.display()
            )));
        }
    }
    let client = Client::new(&args.connection)?;
    let query = args.flagged.then_some("flagged=true");
    let view = listing(&client, run, query).await.map_err(failed)?;

    std::fs::create_dir_all(&args.out).map_err(|e| Failure::failed(miette::miette!("cannot create {}: {e}", args.out.display())))?;
    let partial = args.out.join(format!(".{run}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let downloaded = download_all(&client, &view, query, &partial).await;
    if let Err(e) = downloaded {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(Failure::failed(miette::miette!(
            "fetching run {run} stopped: {e}; nothing was kept (the partial download was removed)"
        )));
    }
    std::fs::rename(&partial, &dest)
        .map_err(|e| Failure::failed(miette::miette!("cannot move the download into {}: {e}", dest.display())))?;
    let receipt = serde_json::to_vec_pretty(&view).expect("a run view is plain data");
    write_new(&receipt_path, &receipt).map_err(|e| Failure::failed(miette::miette!("cannot write {}: {e}", receipt_path.display())))?;
    let bytes: u64 = view.files.iter().map(|f| f.len).sum();
    println!("fetched run {run} from {}: {} files, {bytes} bytes, each matching the server's listing", client.server(), view.files.len());
    println!("  bundle: {}", dest.display());
    println!("  receipt: {}", receipt_path.display());
    // The managers' signed reviews, beside it, for `verify` to check.
    let reviews: Vec<serde_json::Value> =
        client.get(&["api", "runs", run, "reviews"], &format!("reading the reviews of run {run}")).await?;
    if !reviews.is_empty() {
        let reviews_path = args.out.join(format!("{run}.reviews.jsonl"));
        let lines: String = reviews.iter().map(|r| format!("{r}\n")).collect();
        write_new(&reviews_path, lines.as_bytes())
            .map_err(|e| Failure::failed(miette::miette!("cannot write {}: {e}", reviews_path.display())))?;
        println!("  reviews: {} ({})", reviews_path.display(), reviews.len());
    }
    println!(
        "  the server received it at {} from lab host {} (key {}), job {} attempt {}",
        view.received_at, view.lab_host, view.lab_host_key, view.job.0, view.attempt.0
    );
    if let BundleCheck::Flagged { reason } = &view.check {
        println!("!! FLAGGED: this bundle did NOT verify on the server: {reason}");
        println!("!! It is fetched to be inspected; it is not a result. Do not report its verdicts.");
    }
    Ok(verify_here(&dest, &view, pinned.as_ref(), args.key.as_deref()))
}

fn failed(e: FetchError) -> Failure {
    match e {
        FetchError::Client(e) => e.into(),
        other => Failure::failed(report(other)),
    }
}

/// Verify the downloaded bundle as `proofrig verify` does, and compare its signer
/// with the key the lab host enrolled with. The exit code.
fn verify_here(dest: &Path, view: &RunView, pinned: Option<&ed25519_dalek::VerifyingKey>, key: Option<&Path>) -> u8 {
    let result = proofrig_evidence::verify_bundle(dest, pinned);
    let mut code = super::verify::show(dest, &result, key);
    match result.signer.as_deref() {
        Some(signer) if signer == view.lab_host_key => {
            println!("Signer {signer} is the key lab host {} enrolled with (as the server's signed receipt says)", view.lab_host)
        }
        Some(signer) => {
            println!(
                "!! The bundle is signed by {signer}, not by the key lab host {} enrolled with ({})",
                view.lab_host, view.lab_host_key
            );
            if code == exit::OK {
                code = exit::FAILED;
            }
        }
        None => {}
    }
    if code == exit::OK {
        if let BundleCheck::Verified { verdict } = &view.check {
            println!("verdict: {verdict}");
        }
    }
    if matches!(view.check, BundleCheck::Flagged { .. }) && code == exit::OK {
        code = exit::FAILED;
    }
    code
}

/// A run id names a directory under --out: letters, digits, `.`, `_`, `-`, not starting with a dot.
fn check_run_id(run: &str) -> Result<(), Failure> {
    let plain = proofrig_proto::files::is_run_id(run);
    match plain {
        true => Ok(()),
        false => Err(Failure::usage(miette::miette!(
            help = "`proofrig queue` shows each job's run id",
            "`{run}` is not a run id (letters, digits, `.`, `_`, `-`)"
        ))),
    }
}

/// The run's receipt and file listing, every path checked before anything is written.
async fn listing(client: &Client, run: &str, query: Option<&str>) -> Result<RunView, FetchError> {
    let what = format!("run {run}");
    let response = client.send(Method::GET, client.url(&["api", "runs", run], query), None::<&()>, &what).await?;
    let bytes = response.bytes().await.map_err(|e| client.transport(e))?;
    let view: RunView = serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer { what: what.clone(), detail: e.to_string() })?;
    let bad = |detail: String| FetchError::Listing { run: run.to_string(), detail };
    if view.run_id != run {
        return Err(bad(format!("it describes run {}", view.run_id)));
    }
    let mut seen = std::collections::BTreeSet::new();
    for file in &view.files {
        check_bundle_path(&file.path).map_err(|e| bad(e.to_string()))?;
        if !seen.insert(file.path.as_str()) {
            return Err(bad(format!("{} is listed twice", file.path)));
        }
        if file.sha256.len() != 64 || !file.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(format!("{}: `{}` is not a SHA-256", file.path, file.sha256)));
        }
    }
    if view.files.is_empty() {
        return Err(bad("it lists no files".into()));
    }
    Ok(view)
}

async fn download_all(client: &Client, view: &RunView, query: Option<&str>, into: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(into).map_err(|e| FetchError::File { path: into.display().to_string(), detail: e.to_string() })?;
    for file in &view.files {
        download(client, &view.run_id, file, query, into).await?;
    }
    Ok(())
}

/// One file, written as it arrives, its length and SHA-256 checked against the listing.
async fn download(client: &Client, run: &str, file: &BundleFile, query: Option<&str>, into: &Path) -> Result<(), FetchError> {
    let fail = |detail: String| FetchError::File { path: file.path.clone(), detail };
    let mut segments = vec!["api", "runs", run, "files"];
    segments.extend(file.path.split('/'));
    let what = format!("{} of run {run}", file.path);
    let mut response = client.send(Method::GET, client.url(&segments, query), None::<&()>, &what).await?;
    let target = into.join(&file.path);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|e| fail(format!("cannot create {}: {e}", target.display())))?;
    let (mut hasher, mut got) = (Sha256::new(), 0u64);
    while let Some(chunk) = response.chunk().await.map_err(|e| client.transport(e))? {
        got += chunk.len() as u64;
        if got > file.len {
            return Err(fail(format!("the server sent more than the {} bytes its listing says", file.len)));
        }
        hasher.update(&chunk);
        out.write_all(&chunk).map_err(|e| fail(format!("cannot write {}: {e}", target.display())))?;
    }
    out.sync_all().map_err(|e| fail(format!("cannot write {}: {e}", target.display())))?;
    if got != file.len {
        return Err(fail(format!("{got} bytes arrived, the listing says {}", file.len)));
    }
    let digest = hex::encode(hasher.finalize());
    if !digest.eq_ignore_ascii_case(&file.sha256) {
        return Err(fail(format!("the bytes that arrived hash to {digest}, the listing says {}", file.sha256)));
    }
    Ok(())
}

/// Write a file that must not exist yet, through a temporary name.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("json.partial");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
