//! The shape of an action's output where the executor builds it from what an agent
//! observed and replay rebuilds it from the recorded bytes: one function for both, so
//! the two cannot drift apart.

use serde_json::{json, Value};

use proofrig_model::wire::{ssh, udp};

/// The largest fetched file whose bytes are recorded and whose text is in the output.
pub const FETCH_TEXT_LIMIT: usize = 64 * 1024;

/// An `ssh_audit` step's output: what the server offers, both directions merged, the
/// key exchange list's markers (`ext-info-s`, `kex-strict-s-v00@openssh.com`, ...) apart
/// from the algorithms (`ServerAlgorithms::audited`). Replay derives the same from the
/// recorded KEXINIT bytes, so both use this.
pub fn audit_output(offered: &ssh::ServerAlgorithms) -> Value {
    serde_json::to_value(offered.audited()).expect("an audited offer is plain strings")
}

/// A `udp_scan` step's output; `not_closed` (open and open|filtered) is what a plan
/// compares with the documented ports.
pub fn udp_scan_output(outcome: &udp::UdpScanOutcome, scanned: usize) -> Value {
    json!({
        "address": outcome.address.to_string(),
        "scanned": scanned,
        "open": outcome.open,
        "open_filtered": outcome.open_filtered,
        "closed": outcome.closed,
        "not_closed": outcome.not_closed(),
    })
}
