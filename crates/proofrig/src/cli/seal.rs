//! `proofrig seal RUN_DIR [--key KEY]`: seal a run that stopped without finishing.
//!
//! A killed or crashed run leaves an unsealed bundle whose journal is signed only as
//! far as its last checkpoint. This seals it with the lab's key, as INCOMPLETE: the
//! journal gets a record saying the run stopped and what did not run (its open case's
//! restore steps), then the reports, manifest and statements are written as a normal
//! seal writes them. `verify` reports such a bundle as INCOMPLETE (exit 2), never as
//! a finished run. Exit: 2 sealed (as incomplete), 1 refused (already sealed, a
//! journal that does not hold, changed inputs), 3 usage (no such bundle, no key).

use std::path::Path;

use super::run::load_key;
use super::verify::EXIT_INCOMPLETE;
use super::{report, Failure};
use proofrig_evidence::stopped::{seal_stopped, SealError};

pub fn seal(run_dir: &Path, key: Option<&Path>) -> Result<u8, Failure> {
    let key = load_key(key)?;
    let now = proofrig_run::executor::now();
    let sealed = seal_stopped(run_dir, &key, &now, &proofrig_report::Standard).map_err(|err: SealError| {
        let usage = err.is_usage();
        let report = report(err);
        if usage {
            Failure::usage(report)
        } else {
            Failure::failed(report)
        }
    })?;
    let s = &sealed.sealed;
    println!("sealed {} as INCOMPLETE (record {} of its journal says so)", sealed.dir.display(), sealed.record);
    println!("  {}", s.note);
    match s.signed_through {
        Some(n) if n + 1 == sealed.record => {
            println!("  the run itself had signed every record (its last checkpoint is record {n})")
        }
        Some(n) => println!(
            "  the run itself had signed records 0 to {n}; records {} to {} were unsigned until now",
            n + 1,
            sealed.record.saturating_sub(1)
        ),
        None => {
            println!("  the run itself had signed none of its records (no checkpoint): all were unsigned until now")
        }
    }
    println!("run verdict: {} ({})", sealed.result.verdict, sealed.result.rollup.summary());
    println!("signed by: {}", sealed.key_id);
    println!("verify: proofrig verify {} --key <the lab's public key>", sealed.dir.display());
    Ok(EXIT_INCOMPLETE)
}
