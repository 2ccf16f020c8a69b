//! Every exit code of the command line, in one table. API boundary: scripts, CI jobs
//! and lab hosts read these, so a code never changes meaning.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | everything held: all PASS/SKIP, verified, valid, reached |
//! | 1 | it ran and something failed: a FAIL, a bundle TAMPERED, a channel down, refused |
//! | 2 | undecided: any ERROR/INFRA/ABORTED/INCONCLUSIVE/NOT_RUN, a bundle INCOMPLETE, a run proofrig itself could not finish |
//! | 3 | bad usage, or an invalid rig or plan file: nothing was done |
//! | 130 | forced to quit (Ctrl-C twice during a run): the bundle is left unsealed |
//! | 255 | `proofrig ssh`: the remote command gave no exit status |
//!
//! `proofrig ssh` otherwise exits with the remote command's own status.
//!
//! The commands over the lab server (`submit`, `queue`, `rigs`, `reserve`, `fetch`,
//! `user`, `labhost token`, ...) use the same codes: 0 done; 1 the server refused
//! (no right, a conflict, not found, a flagged bundle) or cannot be reached, or its
//! certificate is not the pinned one; 3 a missing server, token or fingerprint, or a
//! request the server found invalid, a malformed plan among them, at its
//! file:line:column ([`of_refusal`]). `fetch` then exits as `verify` does.

use proofrig_verdict::{Rollup, Verdict};

/// Everything held.
pub const OK: u8 = 0;
/// It ran and something failed, is down or was refused.
pub const FAILED: u8 = 1;
/// Nothing decided either way (see the table).
pub const UNDECIDED: u8 = 2;
/// Bad usage, or an invalid rig or plan file.
pub const USAGE: u8 = 3;
/// Forced to quit: Ctrl-C a second time while a run was stopping.
pub const FORCED_QUIT: u8 = 130;
/// `proofrig ssh`: the remote command ended without an exit status.
pub const NO_STATUS: u8 = 255;

/// The exit code of a run from its verdicts: [`OK`] all PASS/SKIP, [`FAILED`] any
/// FAIL, [`UNDECIDED`] anything else amiss (or nothing ran).
pub fn of_run(run: &Rollup) -> u8 {
    if run.count(Verdict::Fail) > 0 {
        FAILED
    } else if [Verdict::Error, Verdict::Infra, Verdict::Aborted, Verdict::Inconclusive, Verdict::NotRun].iter().any(|v| run.count(*v) > 0)
        || run.counts.is_empty()
    {
        UNDECIDED
    } else {
        OK
    }
}

/// The exit code of a request the lab server refused with this HTTP status: [`USAGE`]
/// when it found the request itself invalid (400, 413: a malformed plan, an unknown
/// role; nothing was done), [`FAILED`] for anything else refused.
pub fn of_refusal(http_status: u16) -> u8 {
    match http_status {
        400 | 413 => USAGE,
        _ => FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_verdict::Verdict::*;

    #[test]
    fn exit_codes_follow_the_run_contract() {
        assert_eq!(of_run(&Rollup::of([Pass, Skip])), OK);
        assert_eq!(of_run(&Rollup::of([Pass, Fail, Error])), FAILED);
        assert_eq!(of_run(&Rollup::of([Pass, Inconclusive])), UNDECIDED);
        assert_eq!(of_run(&Rollup::of([Pass, NotRun])), UNDECIDED);
        assert_eq!(of_run(&Rollup::of([])), UNDECIDED);
    }

    #[test]
    fn a_request_the_server_found_invalid_is_a_usage_error_anything_else_refused_a_failure() {
        assert_eq!(of_refusal(400), USAGE);
        assert_eq!(of_refusal(413), USAGE);
        for status in [401, 403, 404, 409, 503] {
            assert_eq!(of_refusal(status), FAILED, "{status}");
        }
    }
}
