//! The lab server's receipt beside a bundle, as `proofrig verify` shows and checks it.
//!
//! `proofrig fetch` saves a run's receipt as `<run>.receipt.json` beside the bundle's
//! directory: the server's signed statement of who uploaded it, when, what its own
//! verification found, and what the server witnessed of the journal while the job
//! ran. Verify finds it there (or takes `--receipt`), checks the server's signature
//! (pinned with `--server-key`, the server's `server.pub`; otherwise shown as
//! unpinned), and checks every witness statement against the bundle's journal: a
//! journal rewritten after the server saw it fails here even if the lab key signed the
//! rewrite.

use std::path::{Path, PathBuf};

use proofrig_evidence::signing::{self, Envelope, SignatureCheck};
use proofrig_proto::labhost::BundleCheck;
use proofrig_server::inbox::{Receipt, RECEIPT_PAYLOAD_TYPE};
use proofrig_server::witness::{check_against, WitnessCheck};

/// Where `proofrig fetch` put the receipt of the bundle at `bundle`.
pub fn beside(bundle: &Path) -> Option<PathBuf> {
    beside_named(bundle, "receipt.json")
}

/// `<bundle>.<suffix>` beside the bundle's directory, if it exists.
fn beside_named(bundle: &Path, suffix: &str) -> Option<PathBuf> {
    let name = bundle.file_name()?.to_string_lossy().into_owned();
    let path = bundle.with_file_name(format!("{name}.{suffix}"));
    path.exists().then_some(path)
}

/// What checking a receipt found: whether it holds, and the lines to print.
pub struct ReceiptCheck {
    pub holds: bool,
    pub lines: Vec<String>,
}

/// Check the receipt at `path` for the bundle at `bundle`.
pub fn check(bundle: &Path, path: &Path, server_key: Option<&Path>) -> Result<ReceiptCheck, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the receipt {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    // `proofrig fetch` saves the API's run view, whose `receipt` is the envelope; the
    // server's own file is the bare envelope.
    let envelope: Envelope = serde_json::from_value(value.get("receipt").cloned().unwrap_or(value))
        .map_err(|e| format!("{} holds no signed receipt: {e}", path.display()))?;
    if envelope.payload_type != RECEIPT_PAYLOAD_TYPE {
        return Err(format!("{} is a {}, not a receipt", path.display(), envelope.payload_type));
    }
    let pinned = server_key.map(signing::load_verifying_key).transpose().map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    let mut holds = true;
    match (envelope.check(pinned.as_ref()), server_key) {
        (SignatureCheck::Pinned { keyid }, Some(key)) => lines.push(format!("✓ signed by the server: {keyid} (pinned: {})", key.display())),
        (SignatureCheck::Pinned { keyid } | SignatureCheck::Unpinned { keyid }, _) => {
            lines.push(format!("- signed by {keyid} (UNPINNED: pass the server's server.pub with --server-key to trust it)"))
        }
        (SignatureCheck::Invalid { reason }, _) => {
            lines.push(format!("✗ the receipt's signature does not hold: {reason}"));
            return Ok(ReceiptCheck { holds: false, lines });
        }
    }
    let payload = envelope.payload_bytes().map_err(|e| e.to_string())?;
    let receipt: Receipt = serde_json::from_slice(&payload).map_err(|e| format!("the receipt's statement does not read: {e}"))?;
    let run = bundle.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if receipt.run_id != run {
        lines.push(format!("✗ the receipt is for run {}, this bundle is {run}", receipt.run_id));
        return Ok(ReceiptCheck { holds: false, lines });
    }
    lines.push(format!(
        "received {} from lab host {} ({}), {} attempt {}",
        receipt.received_at, receipt.lab_host, receipt.lab_host_key, receipt.job, receipt.attempt.0
    ));
    match &receipt.check {
        BundleCheck::Verified { verdict } => lines.push(format!("the server verified it on arrival: {verdict}")),
        BundleCheck::Flagged { reason } => {
            holds = false;
            lines.push(format!("✗ the server flagged it on arrival: {reason}"));
        }
    }
    if receipt.witnessed.is_empty() {
        lines.push("- no witness statement: the journal did not stream to the server while the job ran".into());
    }
    let journal = bundle.join(proofrig_evidence::bundle::JOURNAL);
    for (w, c) in receipt.witnessed.iter().zip(check_against(&journal, &receipt.witnessed)) {
        match c {
            WitnessCheck::Holds => {
                lines.push(format!("✓ witnessed by the server at {}: records 0..{}, head {}", w.at, w.records, &w.head[..16]))
            }
            WitnessCheck::Broken(why) => {
                holds = false;
                lines.push(format!("✗ witnessed by the server at {}: {why}", w.at));
            }
        }
    }
    Ok(ReceiptCheck { holds, lines })
}

/// The managers' reviews `proofrig fetch` saved beside the bundle at `bundle`, checked:
/// the lines to print, and whether every review still counts.
pub fn reviews_beside(bundle: &Path, server_key: Option<&Path>) -> Result<Option<ReceiptCheck>, String> {
    use proofrig_server::review::{check, read_all, ReviewCheck};
    let Some(path) = beside_named(bundle, "reviews.jsonl") else {
        return Ok(None);
    };
    let pinned = server_key.map(signing::load_verifying_key).transpose().map_err(|e| e.to_string())?;
    let mut lines = vec![format!("Reviews {}", path.display())];
    let mut holds = true;
    for envelope in read_all(&path) {
        match check(bundle, &envelope, pinned.as_ref()) {
            ReviewCheck::Counts { statement, pinned } => {
                let p = &statement.predicate;
                let trust = if pinned { "signed by the pinned server key" } else { "UNPINNED: pass --server-key to trust it" };
                let what = match p.resource_uri.strip_prefix("proofrig:matrix/") {
                    Some(matrix) => format!(" the compliance matrix of {matrix} ({} runs, this one among them)", statement.subject.len()),
                    None => String::new(),
                };
                lines.push(format!(
                    "  ✓ {}{what} by {} at {} ({trust}){}",
                    p.decision.name(),
                    p.reviewer,
                    p.time_verified,
                    match p.comment.is_empty() {
                        true => String::new(),
                        false => format!(": {}", p.comment),
                    }
                ));
            }
            ReviewCheck::Void(why) => {
                holds = false;
                lines.push(format!("  ✗ a review that does not count: {why}"));
            }
        }
    }
    Ok(Some(ReceiptCheck { holds, lines }))
}
