//! `proofrig verify BUNDLE [--key PUBKEY]`: the check a manager or regulator runs.
//!
//! Exit codes carry the outcome for scripts: 0 verified, 1 tampered, 2 incomplete
//! (never sealed, or sealed after the run stopped; how far the run signed its journal
//! is said), 3 usage. A valid signature by a key nobody pinned still exits 0,
//! but the output says so loudly, since anyone can make a key.

use std::path::Path;

use super::{report, Failure, EXIT_FAILED, EXIT_OK};
use crate::evidence::signing;
use crate::evidence::verify::{self, CheckState, JournalRecord, ReplayInput, ReplayMismatch, Status};
use crate::run::replay::{not_an_entry, Disagreement, Replayer};

/// Exit code: the bundle was never sealed, or sealed after its run stopped.
pub const EXIT_INCOMPLETE: u8 = 2;

/// The verdict replay `proofrig verify` runs: recompute every verdict from the plans,
/// the rig and the journal, and check the signed statement says the same, record by
/// record as `verify` reads the journal. A disagreement of the recompute is reported
/// before one with the signed statement, wherever each shows.
pub fn replay(input: &ReplayInput, records: &mut dyn Iterator<Item = JournalRecord>) -> Result<(), ReplayMismatch> {
    let mismatch = |detail: String| ReplayMismatch { record: None, case: None, detail };
    let rig_text = String::from_utf8_lossy(&input.rig);
    let rig = proofrig_agents::rig::Rig::parse("inputs/rig.yaml", &rig_text, Path::new("."))
        .map_err(|e| mismatch(format!("the bundle's rig does not load: {e}")))?;
    let mut plans = Vec::new();
    for (name, bytes) in &input.plans {
        let plan = crate::plan::Plan::parse(name, &String::from_utf8_lossy(bytes))
            .map_err(|e| mismatch(format!("the bundle's plan {name} does not load: {e}")))?;
        plans.push(plan);
    }
    let disagreement = |d: Disagreement| ReplayMismatch { record: d.record, case: d.case, detail: d.detail };
    let mut recompute = Replayer::new(&plans, &rig);
    let mut signed = verify::RecordedVerdicts::new(input);
    for record in records {
        if let Ok(check) = &mut signed {
            if let Err(mismatch) = check.record(&record) {
                signed = Err(mismatch);
            }
        }
        let entry = record.entry.map_err(|other| disagreement(not_an_entry(record.n, other.reason)))?;
        recompute.record(record.n, entry).map_err(disagreement)?;
    }
    signed?.finish()
}

/// Verify a bundle with the full replay (as `proofrig verify` does), without printing.
pub fn verify_bundle(bundle: &Path, pinned: Option<&ed25519_dalek::VerifyingKey>) -> verify::VerifyReport {
    verify::verify(bundle, pinned, &replay)
}

pub fn verify(bundle: &Path, key: Option<&Path>) -> Result<u8, Failure> {
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
    let result = verify::verify(bundle, pinned.as_ref(), &replay);

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
            println!(
                "  !! UNPINNED: the signatures are valid, but nothing says whose key this is: anyone can make a key."
            );
            println!(
                "  !! Compare the key id with the one the lab published, or verify with --key <the lab's .pub file>."
            );
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
    Ok(code)
}
