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
}
