//! The lab host's side of an assignment: the checks it passes before anything runs,
//! in the order the contract gives (`proofrig_proto::labhost::Assignment`), then the
//! run's bundle created with the job's ticket, ready to run.
//!
//! Every refusal says which of the contract's reasons it is (the server requeues a
//! job refused for its rig or a stale token, and ends one whose plan cannot load
//! anywhere) and, for people, what is at fault. A resent assignment the lab host
//! already accepted is answered again and starts nothing: also once its run ended
//! (the server sends an assignment on every answer until it hears the acceptance, so
//! copies of it may still be in flight when a short run is over), and also after a
//! restart (the token it ran under is on disk: a run that started under it is never
//! started again).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;

use proofrig_evidence::record::JobTicket;
use proofrig_plan::Plan;
use proofrig_proto::files::check_plan_name;
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId};
use proofrig_proto::labhost::{Assignment, AssignmentAccepted, AssignmentRefusal, AssignmentRefused};
use proofrig_run::job::{Job, RunSetup};

use crate::fences::Fences;
use crate::rigs::ServedRigs;

/// What this lab host is and where it keeps things.
pub struct LabHostSetup {
    /// As the server enrolled it.
    pub id: LabHostId,
    pub rigs: ServedRigs,
    pub fences: Fences,
    /// Where run bundles are written.
    pub out_dir: PathBuf,
    /// The lab key the bundles are signed with.
    pub key: SigningKey,
}

/// An assignment the lab host took.
pub enum Accepted {
    /// A new run: its bundle exists; run it (`Job::run`), then call
    /// [`Assignments::finished`] with the rig.
    Start { answer: AssignmentAccepted, job: Box<Job> },
    /// The same assignment again (a resend): the same answer, nothing new started.
    Again(AssignmentAccepted),
}

/// Which job holds each rig while it runs.
struct Running {
    job: JobId,
    attempt: Attempt,
    fencing: FencingToken,
    run_id: String,
}

/// The assignments of one lab host.
pub struct Assignments {
    setup: LabHostSetup,
    running: BTreeMap<String, Running>,
    /// The last run that ended on each rig, to answer a late copy of its assignment.
    ended: BTreeMap<String, Running>,
}

impl Assignments {
    pub fn new(setup: LabHostSetup) -> Assignments {
        Assignments { setup, running: BTreeMap::new(), ended: BTreeMap::new() }
    }

    /// Check `assignment` and, when it passes, create its run (see the module doc).
    pub fn accept(&mut self, assignment: &Assignment) -> Result<Accepted, AssignmentRefused> {
        let a = assignment;
        let refuse = |why, reason: String| AssignmentRefused { job: a.job, attempt: a.attempt, fencing: a.fencing, why, reason };
        let accepted = |run_id: &str| AssignmentAccepted { job: a.job, attempt: a.attempt, fencing: a.fencing, run_id: run_id.to_string() };
        for taken in [self.running.get(&a.rig), self.ended.get(&a.rig)].into_iter().flatten() {
            if (taken.job, taken.attempt, taken.fencing) == (a.job, a.attempt, a.fencing) {
                return Ok(Accepted::Again(accepted(&taken.run_id)));
            }
        }
        let Some(served) = self.setup.rigs.get(&a.rig) else {
            let serves: Vec<&str> = self.setup.rigs.names().collect();
            return Err(refuse(
                AssignmentRefusal::Rig,
                format!("rig `{}` is not served by lab host {} (it serves: {})", a.rig, self.setup.id.0, serves.join(", ")),
            ));
        };
        if !served.sha256.eq_ignore_ascii_case(&a.rig_sha256) {
            return Err(refuse(
                AssignmentRefusal::Rig,
                format!(
                    "rig file {} changed since it was advertised: the job was planned for sha256 {}, the file is now {}; the lab host advertises it again",
                    served.rig.path.display(),
                    a.rig_sha256,
                    served.sha256
                ),
            ));
        }
        if let Err(stale) = self.setup.fences.check(&a.rig, a.fencing) {
            return Err(refuse(AssignmentRefusal::StaleFence, stale.to_string()));
        }
        if self.setup.fences.newest(&a.rig) == Some(a.fencing) {
            // Recorded before an earlier process of this lab host started its run: that
            // run's bundle is sealed and uploaded on start; it never runs twice.
            return Err(refuse(
                AssignmentRefusal::StaleFence,
                format!(
                    "rig `{}`: a run of {} attempt {} under {} already started on this lab host before it restarted; its bundle is uploaded, a new lease runs it again",
                    a.rig, a.job, a.attempt.0, a.fencing
                ),
            ));
        }
        if let Some(running) = self.running.get(&a.rig) {
            return Err(refuse(
                AssignmentRefusal::Rig,
                format!("rig `{}` is busy: {} attempt {} (run {}) is running on it", a.rig, running.job, running.attempt.0, running.run_id),
            ));
        }
        let mut plans = Vec::with_capacity(a.plans.len());
        for file in &a.plans {
            check_plan_name(&file.name).map_err(|e| refuse(AssignmentRefusal::Plan, e.to_string()))?;
            let text = std::str::from_utf8(&file.bytes)
                .map_err(|e| refuse(AssignmentRefusal::Plan, format!("plan {} is not UTF-8 text: {e}", file.name)))?;
            plans.push(Plan::parse(&file.name, text).map_err(|e| refuse(AssignmentRefusal::Plan, e.to_string()))?);
        }
        if plans.is_empty() {
            return Err(refuse(AssignmentRefusal::Plan, "the job names no plan".into()));
        }
        // On disk before anything runs: after a restart an older lease is still refused.
        self.setup
            .fences
            .record(&a.rig, a.fencing)
            .map_err(|e| refuse(AssignmentRefusal::Rig, format!("cannot keep the fencing token: {e}")))?;
        let setup = RunSetup {
            plans,
            rig: served.rig.clone(),
            only_device: a.device.clone(),
            params: a.params.clone(),
            out_dir: self.setup.out_dir.clone(),
            key: self.setup.key.clone(),
            job: Some(JobTicket { job: a.job.0, attempt: a.attempt.0, fencing_token: a.fencing.0, lab_host: self.setup.id.0.clone() }),
            one_device_at_a_time: false,
        };
        let job = Job::create(setup, &format!("job{}", a.job.0))
            .map_err(|e| refuse(AssignmentRefusal::Rig, format!("cannot create the run's bundle: {e}")))?;
        let run_id = job.run_id().to_string();
        self.running.insert(a.rig.clone(), Running { job: a.job, attempt: a.attempt, fencing: a.fencing, run_id: run_id.clone() });
        Ok(Accepted::Start { answer: accepted(&run_id), job: Box::new(job) })
    }

    /// Check a technician's bench operation (see [`crate::bench`]): the rig is served
    /// here, no job of this lab host runs on it, and its fencing token is not older
    /// than one accepted for the rig, which it then is (on disk, before anything is
    /// touched). The rig's file, to act on.
    pub fn admit_bench(&mut self, op: &proofrig_proto::labhost::BenchOp) -> Result<proofrig_model::rig::Rig, String> {
        let Some(served) = self.setup.rigs.get(&op.rig) else {
            return Err(format!("rig `{}` is not served by lab host {}", op.rig, self.setup.id.0));
        };
        if let Some(running) = self.running.get(&op.rig) {
            return Err(format!(
                "rig `{}` is running {} attempt {} (run {}); wait for it to end",
                op.rig, running.job, running.attempt.0, running.run_id
            ));
        }
        self.setup.fences.check(&op.rig, op.fencing).map_err(|stale| stale.to_string())?;
        self.setup.fences.record(&op.rig, op.fencing).map_err(|e| format!("cannot keep the fencing token: {e}"))?;
        Ok(served.rig.clone())
    }

    /// The run on `rig` ended (sealed or not): the rig takes the next assignment.
    pub fn finished(&mut self, rig: &str) {
        if let Some(run) = self.running.remove(rig) {
            self.ended.insert(rig.to_string(), run);
        }
    }
}
