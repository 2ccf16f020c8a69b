//! `proofrig run PLAN... --rig RIG`: run plans, seal the evidence, print the verdicts.
//!
//! Progress goes to stderr as the run goes; the verdict table and the bundle's path go
//! to stdout. Ctrl-C aborts cleanly: the running step stops, restore steps still run,
//! and the bundle is sealed with the run marked ABORTED.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use proofrig_model::rig::Rig;
use tokio::sync::watch;

use super::{Failure, EXIT_USAGE};
use crate::table;
use proofrig_evidence::record::RunResult;
use proofrig_evidence::signing;
use proofrig_plan::Plan;
use proofrig_run::job::{unready_cases, Job, JobError, RunHost};
pub use proofrig_run::job::{RunSetup, Sealed};
use proofrig_run::progress::Progress;

/// The signing key: `--key`, else `PROOFRIG_KEY`, else `~/.config/proofrig/lab.key`.
/// `run` loads it before anything else: the journal signs its head with it from the
/// first record on, so a run without it must not touch a device.
pub fn load_key(explicit: Option<&Path>) -> Result<SigningKey, Failure> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PROOFRIG_KEY").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/proofrig/lab.key")))
        .unwrap_or_else(|| PathBuf::from("lab.key"));
    if !path.exists() {
        return Err(Failure::usage(miette::miette!(
            help = "make one with `proofrig keygen --out ~/.config/proofrig` (or pass --key FILE / set PROOFRIG_KEY)",
            "no signing key at {}: evidence bundles are signed with the lab's Ed25519 key",
            path.display()
        )));
    }
    signing::load_signing_key(&path).map_err(|e| {
        Failure::usage(miette::miette!(
            help = "pass the lab's private key (from `proofrig keygen`) with --key FILE or PROOFRIG_KEY; nothing was done",
            "{e}: evidence is signed with the lab's Ed25519 key"
        ))
    })
}

/// `--param NAME=VALUE`; the value is read as YAML, so `3`, `true` and `[a, b]` keep their types.
pub fn parse_params(items: &[String]) -> Result<BTreeMap<String, serde_json::Value>, Failure> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            return Err(Failure::usage(miette::miette!("`--param {item}` is not NAME=VALUE")));
        };
        let value: serde_json::Value = serde_saphyr::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

/// Run, journal and seal (see `proofrig_run::job`); warn about cases the rig is not
/// ready for, and turn Ctrl-C into the job's abort signal. The caller prints the result.
pub async fn run_and_seal(setup: RunSetup, label: &str, progress: &mut dyn Progress) -> Result<Sealed, Failure> {
    for (case, device, why) in unready_cases(&setup) {
        eprintln!("proofrig: warning: {case} on {device} will be ERROR; edit the rig file {}: {why}", setup.rig.path.display());
    }
    let job = Job::create(setup, label).map_err(|e| Failure::usage(miette::Report::msg(e.to_string())))?;
    let (abort_tx, abort_rx) = watch::channel(false);
    let forced_journal = job.journal();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nproofrig: aborting; the current step stops, restore steps still run (Ctrl-C again to force quit)");
            let _ = abort_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("proofrig: forced to quit; the bundle is left unsealed (verify reports it incomplete)");
                // Exiting skips destructors: write what the journal still queues first.
                let _ = forced_journal.flush();
                std::process::exit(super::exit::FORCED_QUIT.into());
            }
        }
    });
    let outcome = job.run(RunHost::this_process(), progress, abort_rx, &proofrig_report::Standard).await;
    ctrl_c.abort();
    outcome.map_err(|e| match e {
        JobError::Create(_) => Failure::usage(miette::Report::msg(e.to_string())),
        JobError::Run(_) => Failure { report: miette::Report::msg(e.to_string()), code: super::exit::UNDECIDED },
        JobError::Seal(_) => Failure::failed(miette::Report::msg(e.to_string())),
    })
}

/// The verdict table a person reads at the end of a run.
pub fn verdict_table(result: &RunResult) -> String {
    let rows: Vec<Vec<String>> = result
        .cases
        .iter()
        .map(|c| {
            let why = c.evidence_excerpt.lines().next().unwrap_or("").to_string();
            vec![
                c.key.device.clone(),
                format!("{} {}", c.scas_shown().spec, c.scas_shown().clause),
                c.key.case.clone(),
                c.verdict.to_string(),
                why,
            ]
        })
        .collect();
    let mut out = table::render(&["device", "clause", "test", "verdict", "evidence"], &rows);
    out.push_str(&format!("\nrun verdict: {} ({})\n", result.verdict, result.rollup.summary()));
    out
}

/// Load plans and rig for `proofrig run`; any invalid file is a usage error (exit 3).
pub fn load_inputs(plan_paths: &[PathBuf], rig_path: &Path) -> Result<(Vec<Plan>, Rig), Failure> {
    let rig = Rig::load(rig_path)?;
    let mut plans = Vec::new();
    let mut invalid = false;
    for path in plan_paths {
        match Plan::load(path) {
            Ok(plan) => plans.push(plan),
            Err(err) => {
                eprintln!("{:?}", miette::Report::new(err));
                invalid = true;
            }
        }
    }
    if invalid {
        return Err(Failure { report: miette::miette!("invalid plan file(s); nothing was run"), code: EXIT_USAGE });
    }
    Ok((plans, rig))
}
