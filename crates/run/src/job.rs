//! The job use case: run plans on a rig and seal the evidence, as `proofrig run`,
//! `proofrig demo` and (next) a lab host do it.
//!
//! Nothing here prints or exits: the caller gets typed errors and the sealed result,
//! and injects what depends on where the job runs: the abort signal (Ctrl-C for the
//! command line, a cancel from the server for a lab host), who runs it on which host,
//! the reports to seal with the bundle, and where progress goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use tokio::sync::watch;

use proofrig_evidence::bundle::{BundleError, BundleWriter, Reports};
use proofrig_evidence::journal::JournalWriter;
use proofrig_evidence::record::{JobTicket, RunResult};
use proofrig_model::rig::Rig;
use proofrig_plan::Plan;

use crate::executor::{execute, run_recorder, RunError, RunRequest};
use crate::progress::Progress;

/// Everything a run needs, already loaded.
pub struct RunSetup {
    pub plans: Vec<Plan>,
    pub rig: Rig,
    pub only_device: Option<String>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub out_dir: PathBuf,
    pub key: SigningKey,
    /// The lab service's job this run is (a lab host sets it; None from the command line).
    pub job: Option<JobTicket>,
    /// Run the devices one after another instead of side by side (`--one-device-at-a-time`).
    pub one_device_at_a_time: bool,
}

/// Who runs the job, and where: recorded in the journal and the results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHost {
    pub operator: String,
    pub host: String,
}

impl RunHost {
    /// This process's user (`USER`, `LOGNAME`) and this machine's host name.
    pub fn this_process() -> Self {
        let operator = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into());
        RunHost { operator, host }
    }
}

/// A finished, sealed run.
pub struct Sealed {
    pub result: RunResult,
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Nothing was run: the bundle directory could not be made. A usage error
    /// (a bad output directory or run id), not a run that failed.
    #[error("cannot create the evidence bundle: {0}")]
    Create(BundleError),
    /// The run stopped on a fault of proofrig itself (journal, agents set-up).
    #[error(transparent)]
    Run(#[from] RunError),
    /// The run finished but its bundle could not be sealed; its journal stays on disk
    /// and `proofrig seal` can seal it as incomplete.
    #[error("cannot seal the evidence bundle: {0}")]
    Seal(BundleError),
}

/// A run id people can sort and tell apart: UTC time, rig, and a random suffix.
pub fn new_run_id(rig: &str, label: &str) -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace([':', '-'], "");
    let mut suffix = [0u8; 3];
    let _ = getrandom::fill(&mut suffix);
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>();
    format!("{stamp}-{}-{}-{}", clean(rig), clean(label), hex::encode(suffix))
}

/// The cases of `setup` that will be ERROR because the rig lacks what they need, as
/// `(case id, device, why)`: the evidence names the rig by its name, the technician
/// should also learn which file to edit before the run starts.
pub fn unready_cases(setup: &RunSetup) -> Vec<(String, String, String)> {
    proofrig_plan::scope::select(&setup.plans, &setup.rig, setup.only_device.as_deref())
        .into_iter()
        .filter_map(|sel| {
            let why = proofrig_plan::catalogue::unready(sel.plan, sel.case, &setup.rig, &sel.device)?;
            Some((sel.case.id.clone(), sel.device.clone(), why))
        })
        .collect()
}

/// A run whose bundle exists (its inputs copied, its journal open) and that has not
/// started: [`Job::journal`] lets the caller flush it if it must quit hard.
pub struct Job {
    setup: RunSetup,
    bundle: BundleWriter,
    run_id: String,
}

impl Job {
    /// Create the bundle for a new run of `setup` under `setup.out_dir`.
    pub fn create(setup: RunSetup, label: &str) -> Result<Job, JobError> {
        let run_id = new_run_id(setup.rig.name(), label);
        let plan_inputs: Vec<(&Path, &[u8])> = setup.plans.iter().map(|p| (p.path.as_path(), p.bytes.as_slice())).collect();
        // The journal signs its head with the lab's key from its first record on
        // (checkpoints), so the key was loaded before anything else.
        let bundle =
            BundleWriter::create_signed(&setup.out_dir, &run_id, (setup.rig.path.as_path(), &setup.rig.bytes), &plan_inputs, &setup.key)
                .map_err(JobError::Create)?;
        Ok(Job { setup, bundle, run_id })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn dir(&self) -> &Path {
        self.bundle.dir()
    }

    /// The run's journal, to flush what it still queues before a forced exit.
    pub fn journal(&self) -> Arc<JournalWriter> {
        self.bundle.journal().clone()
    }

    /// Run every selected case, then seal the bundle with `reports`. `abort` turning
    /// true stops the current step; restore steps still run and the run is ABORTED.
    pub async fn run(
        self,
        host: RunHost,
        progress: &mut dyn Progress,
        abort: watch::Receiver<bool>,
        reports: &dyn Reports,
    ) -> Result<Sealed, JobError> {
        let Job { setup, bundle, run_id } = self;
        let journal = bundle.journal().clone();
        let recorder = run_recorder(&journal, &setup.rig, &setup.plans);
        let request = RunRequest {
            run_id,
            plans: setup.plans,
            rig: setup.rig,
            only_device: setup.only_device,
            params: setup.params,
            operator: host.operator,
            host: host.host,
            inputs: bundle.input_refs().clone(),
            job: setup.job,
            one_device_at_a_time: setup.one_device_at_a_time,
        };
        let result = execute(request, journal, recorder, progress, abort).await?;
        let sealed = bundle.seal(&result, &setup.key, reports).map_err(JobError::Seal)?;
        Ok(Sealed { result, dir: sealed.dir })
    }
}
