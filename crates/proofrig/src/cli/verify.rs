//! `proofrig verify BUNDLE [--key PUBKEY]`: the check a manager or regulator runs.
//!
//! Exit codes carry the outcome for scripts: 0 verified, 1 tampered, 2 incomplete
//! (never sealed, or sealed after the run stopped; how far the run signed its journal
//! is said), 3 usage. A valid signature by a key nobody pinned still exits 0,
//! but the output says so loudly, since anyone can make a key.

use std::path::Path;

use super::{report, Failure, EXIT_FAILED, EXIT_OK};
use proofrig_evidence::signing;
use proofrig_evidence::verify::{CheckState, Status, VerifyReport};

/// Exit code: the bundle was never sealed, or sealed after its run stopped.
pub const EXIT_INCOMPLETE: u8 = super::exit::UNDECIDED;

pub fn verify(bundle: &Path, key: Option<&Path>, receipt: Option<&Path>, server_key: Option<&Path>) -> Result<u8, Failure> {
    if !bundle.is_dir() {
        return Err(Failure::usage(miette::miette!(
            help = "pass the bundle directory, e.g. results/<run-id>",
            "{} is not a directory",
            bundle.display()
        )));
    }
    let pinned = match key {
        Some(path) => Some(signing::load_verifying_key(path).map_err(|e| Failure::usage(report(e)))?),
        None => None,
    };
    let result = proofrig_evidence::verify_bundle(bundle, pinned.as_ref());
    let mut code = show(bundle, &result, key);
    if let Some(reviews) = super::receipt::reviews_beside(bundle, server_key).map_err(|e| Failure::usage(miette::miette!("{e}")))? {
        for line in &reviews.lines {
            println!("{line}");
        }
        if !reviews.holds {
            println!("A review beside this bundle does not count for it (see above)");
            code = code.max(EXIT_FAILED);
        }
    }
    let Some(path) = receipt.map(Path::to_path_buf).or_else(|| super::receipt::beside(bundle)) else {
        return Ok(code);
    };
    let checked = super::receipt::check(bundle, &path, server_key).map_err(|e| Failure::usage(miette::miette!("{e}")))?;
    println!("Receipt {}", path.display());
    for line in &checked.lines {
        println!("  {line}");
    }
    Ok(match checked.holds {
        true => code,
        false => {
            println!("TAMPERED: the bundle does not match the lab server's receipt");
            EXIT_FAILED
        }
    })
}

/// Print a verify report as `proofrig verify` does (also `proofrig fetch`, after a
/// download); its exit code.
pub fn show(bundle: &Path, result: &VerifyReport, key: Option<&Path>) -> u8 {
    println!("Verifying {}", bundle.display());
    for check in &result.checks {
        let mark = match check.state {
            CheckState::Passed => "✓",
            CheckState::Failed => "✗",
            CheckState::NotRun => "-",
        };
        println!("  {mark} {}: {}", check.what, check.detail);
    }
    let signer = result.signer.as_deref();
    match (signer, result.pinned, key) {
        (Some(id), true, Some(path)) => println!("Signer: {id} (pinned: the key in {})", path.display()),
        (Some(id), _, _) => {
            println!("Signer: {id} (UNPINNED)");
            println!("  !! UNPINNED: the signatures are valid, but nothing says whose key this is: anyone can make a key.");
            println!("  !! Compare the key id with the one the lab published, or verify with --key <the lab's .pub file>.");
        }
        (None, _, _) => println!("Signer: none verified"),
    }
    let code = match result.status {
        Status::Verified if result.pinned => {
            println!("VERIFIED");
            EXIT_OK
        }
        Status::Verified => {
            println!("VERIFIED (UNPINNED signer {})", signer.unwrap_or("unknown"));
            EXIT_OK
        }
        Status::Incomplete => {
            println!("INCOMPLETE: {}", result.summary);
            EXIT_INCOMPLETE
        }
        Status::Tampered => {
            println!("TAMPERED: {}", result.summary);
            EXIT_FAILED
        }
    };
    code
}
