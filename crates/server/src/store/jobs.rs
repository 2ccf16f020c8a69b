//! The queue: submitting, claiming, cancelling, and the rest of a job's life.
//!
//! A claim is the one place jobs meet rigs, so it is one transaction: read the
//! queued attempts and the rigs that could take them (on PostgreSQL locked, passing
//! over what another replica's claim holds), let the pure scheduler decide, and take
//! each pick under a fresh fencing token: the attempt becomes `assigned`, a job
//! lease holds the rig, the rig runs, and the audit log says so. A cancel locks the
//! attempt it ends, so a cancel racing a claim either finds the job queued (and the
//! claim never sees it) or finds it assigned (and ends its lease and frees its rig):
//! no rig is left running for a job nobody will run (LAVA d54b70c07). A job already
//! running keeps its rig until its lab host has stopped it, so the rig is not handed
//! to a job its lab host would refuse as busy.
//!
//! A job's attempts are kept apart: a retry is a new attempt linked to the one it
//! retries, queued in the job's original place, and both keep their own state, rig,
//! token and run (Swarming retried a dead bot's task in place, hiding the fault).

use std::collections::{BTreeMap, BTreeSet};

use proofrig_proto::api::{DeviceView, JobState, JobView, RigSelector, SubmitJob, Submitted};
use proofrig_proto::files::{check_plan_name, PlanFile};
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId, Priority, UnixMillis};
use proofrig_proto::labhost::{Assignment, AssignmentRefusal, AssignmentRefused, BundleCheck, Lease};
use proofrig_proto::timing::JOB_LEASE;
use serde_json::json;

use super::db::{args, Row, Tx};
use super::leases::{self, token, token_arg};
use super::{
    attempt_no, audit, from_json, from_ms, id, job_state, job_state_name, ms, rigs, to_json, Claimed, Ctx, JobRecord, LeaseRefused,
    StoreError,
};
use crate::scheduler::{self, Pick, QueuedJob};

fn job_arg(job: JobId) -> i64 {
    i64::try_from(job.0).unwrap_or(i64::MAX)
}

/// What a submission must be before it is queued (its plans' contents are the API's
/// to check, as `proofrig plan check` does).
pub(super) fn check_submission(req: &SubmitJob) -> Result<(), StoreError> {
    if req.plans.is_empty() {
        return Err(StoreError::Invalid("a job needs at least one plan: submit the plan files to run".into()));
    }
    let mut names = BTreeSet::new();
    for plan in &req.plans {
        check_plan_name(&plan.name).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if !names.insert(plan.name.as_str()) {
            return Err(StoreError::Invalid(format!(
                "plan file name `{}` is submitted twice; the bundle stores each plan under its name, so names must differ",
                plan.name
            )));
        }
    }
    if req.device.as_deref().is_some_and(|d| d.trim().is_empty()) {
        return Err(StoreError::Invalid("`device` is empty: name a device of the rig, or leave it out to run on all".into()));
    }
    Ok(())
}

pub(super) async fn submit(tx: &mut Tx, req: &SubmitJob, ctx: &Ctx) -> Result<Submitted, StoreError> {
    submit_from(tx, req, ctx, None).await
}

/// [`submit`], by a person or, when `schedule` is given, by that schedule (its audit
/// record names it).
pub(super) async fn submit_from(tx: &mut Tx, req: &SubmitJob, ctx: &Ctx, schedule: Option<u64>) -> Result<Submitted, StoreError> {
    check_submission(req)?;
    let row = tx
        .one(
            "INSERT INTO jobs (priority, submitted_by, submitted_at, not_before, target, params, device) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            args![i64::from(req.priority.get()), &ctx.who, ms(ctx.now), req.not_before.map(ms), to_json(&req.target)?, to_json(&req.params)?, req.device.as_deref()],
        )
        .await?;
    let number = row.ok_or_else(|| StoreError::Corrupt("inserting a job returned no id".into()))?.int(0)?;
    for (position, plan) in req.plans.iter().enumerate() {
        tx.exec(
            "INSERT INTO job_plans (job, position, name, bytes) VALUES ($1, $2, $3, $4)",
            args![number, position as i64, &plan.name, plan.bytes.as_slice()],
        )
        .await?;
    }
    tx.exec("INSERT INTO attempts (job, attempt, retry_of, state, reason, created_at, updated_at) VALUES ($1, 1, NULL, 'queued', 'submitted', $2, $2)", args![number, ms(ctx.now)]).await?;
    let job = JobId(id(number));
    let warnings = admission_warnings(tx, job, req, ctx).await?;
    let plans: Vec<&str> = req.plans.iter().map(|p| p.name.as_str()).collect();
    let mut details =
        json!({ "priority": req.priority.get(), "target": req.target, "plans": plans, "device": req.device, "warnings": warnings });
    if let Some(schedule) = schedule {
        details["schedule"] = json!(schedule);
    }
    audit::record(tx, ctx, "job.submit", &job.to_string(), details).await?;
    Ok(Submitted { job, warnings })
}

/// Why the job may wait long or forever: no rig matches, only retired ones do, or
/// none that matches has its lab host online (labgrid #1477, KernelCI #1403).
async fn admission_warnings(tx: &mut Tx, job: JobId, req: &SubmitJob, ctx: &Ctx) -> Result<Vec<String>, StoreError> {
    let slots: Vec<_> = rigs::slots(tx, ctx.now, false).await?.into_iter().map(|(slot, _)| slot).collect();
    let queued = QueuedJob {
        job,
        priority: req.priority,
        order: job.0,
        target: req.target.clone(),
        owner: ctx.who.clone(),
        not_before: req.not_before,
    };
    let mut warnings: Vec<String> =
        scheduler::schedule(std::slice::from_ref(&queued), &slots, ctx.now).unschedulable.into_iter().map(|u| u.reason).collect();
    if warnings.is_empty() && !slots.iter().any(|r| req.target.matches(&r.name, &r.roles, &r.tags) && r.labhost_online) {
        warnings.push(format!("{job}: no rig matching {} has its lab host online now; the job waits until one is", req.target));
    }
    Ok(warnings)
}

/// A queued attempt, as the claim read it.
struct Queued {
    job: QueuedJob,
    attempt: i64,
    retry_of: Option<i64>,
}

async fn queued(tx: &mut Tx) -> Result<Vec<Queued>, StoreError> {
    let sql = format!(
        "SELECT a.job, a.attempt, a.retry_of, j.priority, j.target, j.submitted_by, j.not_before FROM attempts a JOIN jobs j ON j.id = a.job WHERE a.state = 'queued' ORDER BY a.job{}",
        tx.skip_locked("a")
    );
    let mut out = Vec::new();
    for row in tx.all(&sql, args![]).await? {
        let number = row.int(0)?;
        let job = QueuedJob {
            job: JobId(id(number)),
            priority: priority(row.int(3)?)?,
            order: id(number),
            target: from_json::<RigSelector>(&row.text(4)?, "job target")?,
            owner: row.text(5)?,
            not_before: row.opt_int(6)?.map(from_ms),
        };
        out.push(Queued { job, attempt: row.int(1)?, retry_of: row.opt_int(2)? });
    }
    Ok(out)
}

fn priority(v: i64) -> Result<Priority, StoreError> {
    u8::try_from(v)
        .ok()
        .and_then(|p| Priority::new(p).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("stored priority {v} is outside 0-100")))
}

pub(super) async fn claim(tx: &mut Tx, ctx: &Ctx) -> Result<Vec<Claimed>, StoreError> {
    let queued = queued(tx).await?;
    if queued.is_empty() {
        return Ok(Vec::new());
    }
    let (slots, labhosts): (Vec<_>, Vec<_>) = rigs::slots(tx, ctx.now, true).await?.into_iter().unzip();
    let jobs: Vec<QueuedJob> = queued.iter().map(|q| q.job.clone()).collect();
    let picks = scheduler::schedule(&jobs, &slots, ctx.now).picks;
    if picks.is_empty() {
        return Ok(Vec::new());
    }
    let labhost_of: BTreeMap<&str, &LabHostId> = slots.iter().map(|s| s.name.as_str()).zip(labhosts.iter()).collect();
    let tokens = leases::mint(tx, picks.len()).await?;
    let mut claimed = Vec::with_capacity(picks.len());
    for (pick, fencing) in picks.iter().zip(tokens) {
        let q = queued
            .iter()
            .find(|q| q.job.job == pick.job)
            .ok_or_else(|| StoreError::Corrupt(format!("the scheduler picked {}, which was not queued", pick.job)))?;
        let labhost = labhost_of
            .get(pick.rig.as_str())
            .ok_or_else(|| StoreError::Corrupt(format!("the scheduler picked rig {}, which was not read", pick.rig)))?;
        claimed.push(take(tx, q, pick, labhost, fencing, ctx).await?);
    }
    Ok(claimed)
}

/// Take one pick: the attempt is assigned, a job lease holds the rig, the rig runs.
async fn take(tx: &mut Tx, q: &Queued, pick: &Pick, labhost: &LabHostId, fencing: FencingToken, ctx: &Ctx) -> Result<Claimed, StoreError> {
    let (job, rig) = (pick.job, pick.rig.as_str());
    let expires_at = ctx.now.plus(JOB_LEASE);
    let changed = tx
        .exec(
            "UPDATE attempts SET state = 'assigned', reason = $1, rig = $2, fencing = $3, updated_at = $4 WHERE job = $5 AND attempt = $6 AND state = 'queued'",
            args![format!("assigned to rig {rig} under {fencing}"), rig, token_arg(fencing), ms(ctx.now), job_arg(job), q.attempt],
        )
        .await?;
    if changed != 1 {
        return Err(StoreError::Corrupt(format!("{job} attempt {} left the queue while a claim held it", q.attempt)));
    }
    tx.exec(
        "INSERT INTO leases (fencing, kind, rig, holder, job, attempt, granted_at, renewed_at, expires_at) VALUES ($1, 'job', $2, $3, $4, $5, $6, $6, $7)",
        args![token_arg(fencing), rig, &labhost.0, job_arg(job), q.attempt, ms(ctx.now), ms(expires_at)],
    )
    .await?;
    leases::issued_for(tx, rig, fencing).await?;
    rigs::settle(tx, rig, &format!("running {job} attempt {} under {fencing}", q.attempt), ctx).await?;
    audit::record(
        tx,
        ctx,
        "job.assign",
        &job.to_string(),
        json!({ "attempt": q.attempt, "rig": rig, "labhost": labhost.0, "fencing": fencing.0, "lease_expires_at": expires_at.0 }),
    )
    .await?;
    Ok(Claimed {
        job,
        attempt: attempt_no(q.attempt),
        retry_of: q.retry_of.map(attempt_no),
        rig: rig.to_string(),
        labhost: labhost.clone(),
        fencing,
        lease: leases::job_lease(expires_at),
    })
}

/// One attempt's row, as the operations after a claim read it (locked on PostgreSQL).
struct AttemptRow {
    attempt: i64,
    state: JobState,
    rig: Option<String>,
    fencing: Option<FencingToken>,
    run_id: Option<String>,
}

impl AttemptRow {
    fn read(row: &Row) -> Result<AttemptRow, StoreError> {
        Ok(AttemptRow {
            attempt: row.int(0)?,
            state: job_state(&row.text(1)?)?,
            rig: row.opt_text(2)?,
            fencing: row.opt_int(3)?.map(token),
            run_id: row.opt_text(4)?,
        })
    }
}

/// The latest attempt of `job`, or the given one.
async fn attempt_row(tx: &mut Tx, job: JobId, attempt: Option<Attempt>) -> Result<AttemptRow, StoreError> {
    let lock = tx.for_update();
    let row = match attempt {
        Some(a) => {
            tx.one(
                &format!("SELECT attempt, state, rig, fencing, run_id FROM attempts WHERE job = $1 AND attempt = $2{lock}"),
                args![job_arg(job), i64::from(a.0)],
            )
            .await?
        }
        None => {
            tx.one(
                &format!("SELECT attempt, state, rig, fencing, run_id FROM attempts WHERE job = $1 ORDER BY attempt DESC LIMIT 1{lock}"),
                args![job_arg(job)],
            )
            .await?
        }
    };
    match (row, attempt) {
        (Some(row), _) => AttemptRow::read(&row),
        (None, Some(a)) => Err(StoreError::NotFound(format!("{job} has no attempt {}", a.0))),
        (None, None) => Err(StoreError::NotFound(format!("{job} does not exist (`proofrig queue` lists the jobs)"))),
    }
}

async fn set_attempt_state(tx: &mut Tx, job: JobId, attempt: i64, state: JobState, reason: &str, ctx: &Ctx) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE attempts SET state = $1, reason = $2, updated_at = $3 WHERE job = $4 AND attempt = $5",
        args![job_state_name(state), reason, ms(ctx.now), job_arg(job), attempt],
    )
    .await?;
    Ok(())
}

/// End an attempt's job lease and settle its rig.
async fn end_job_lease(tx: &mut Tx, a: &AttemptRow, why: &str, ctx: &Ctx) -> Result<(), StoreError> {
    if let (Some(fencing), Some(rig)) = (a.fencing, a.rig.as_deref()) {
        tx.exec("DELETE FROM leases WHERE fencing = $1 AND kind = 'job'", args![token_arg(fencing)]).await?;
        rigs::settle(tx, rig, why, ctx).await?;
    }
    Ok(())
}

pub(super) async fn cancel(tx: &mut Tx, job: JobId, reason: &str, ctx: &Ctx) -> Result<JobState, StoreError> {
    let a = attempt_row(tx, job, None).await?;
    if !matches!(a.state, JobState::Queued | JobState::Assigned | JobState::Running) {
        return Err(StoreError::Conflict(format!(
            "{job} attempt {} is already {}; there is nothing to cancel",
            a.attempt,
            job_state_name(a.state)
        )));
    }
    let why = match reason.trim() {
        "" => format!("cancelled by {}", ctx.who),
        reason => format!("cancelled by {}: {reason}", ctx.who),
    };
    set_attempt_state(tx, job, a.attempt, JobState::Cancelled, &why, ctx).await?;
    // An assigned job has not run: its rig is free at once. A running one runs on its
    // lab host until the lab host hears of the cancel (its next heartbeat is answered
    // `lapsed`) and stops it, restore steps and all: its rig stays held by the lease,
    // which no longer renews, until the lab host says the run ended (its end, its
    // bundle, or a heartbeat that no longer names the lease), or the lease is reaped.
    // Freed at once, it would be assigned a job its lab host must refuse as busy.
    if a.state == JobState::Assigned {
        end_job_lease(tx, &a, &format!("{job} attempt {} {why}", a.attempt), ctx).await?;
    }
    let details =
        json!({ "attempt": a.attempt, "from": job_state_name(a.state), "rig": a.rig, "fencing": a.fencing.map(|f| f.0), "reason": reason });
    audit::record(tx, ctx, "job.cancel", &job.to_string(), details).await?;
    Ok(a.state)
}

/// The attempt `job`/`attempt` must run under `fencing`; otherwise why not.
async fn check_fencing(tx: &mut Tx, job: JobId, a: &AttemptRow, fencing: FencingToken) -> Result<(), StoreError> {
    match a.fencing {
        Some(f) if f == fencing => Ok(()),
        _ => match leases::why_not_live(tx, fencing).await? {
            LeaseRefused::Unknown { presented } => {
                Err(StoreError::Invalid(format!("{job} attempt {} was never assigned under {presented}", a.attempt)))
            }
            refused => Err(refused.into()),
        },
    }
}

pub(super) async fn started(
    tx: &mut Tx,
    (job, attempt, fencing): (JobId, Attempt, FencingToken),
    run_id: &str,
    ctx: &Ctx,
) -> Result<(), StoreError> {
    let a = attempt_row(tx, job, Some(attempt)).await?;
    check_fencing(tx, job, &a, fencing).await?;
    match a.state {
        JobState::Assigned => {
            let lease = tx.one("SELECT expires_at FROM leases WHERE fencing = $1", args![token_arg(fencing)]).await?;
            match lease {
                None => return Err(leases::why_not_live(tx, fencing).await?.into()),
                Some(row) if from_ms(row.int(0)?) <= ctx.now => {
                    let rig = a.rig.clone().unwrap_or_default();
                    return Err(LeaseRefused::Lapsed { rig, presented: fencing, expired_at: from_ms(row.int(0)?) }.into());
                }
                Some(_) => {}
            }
            tx.exec(
                "UPDATE attempts SET state = 'running', reason = $1, run_id = $2, updated_at = $3 WHERE job = $4 AND attempt = $5",
                args![format!("running as run {run_id}"), run_id, ms(ctx.now), job_arg(job), a.attempt],
            )
            .await?;
            audit::record(
                tx,
                ctx,
                "job.start",
                &job.to_string(),
                json!({ "attempt": a.attempt, "rig": a.rig, "fencing": fencing.0, "run_id": run_id }),
            )
            .await
        }
        // A resent acceptance (also one that arrives after the run's end): no change.
        JobState::Running | JobState::Uploading | JobState::Verifying | JobState::Done if a.run_id.as_deref() == Some(run_id) => Ok(()),
        JobState::Running => Err(StoreError::Conflict(format!(
            "{job} attempt {} already runs as run {}, not {run_id}",
            a.attempt,
            a.run_id.unwrap_or_default()
        ))),
        JobState::Cancelled | JobState::Lost => Err(leases::why_not_live(tx, fencing).await?.into()),
        other => Err(StoreError::Conflict(format!("{job} attempt {} is {}; it cannot start", a.attempt, job_state_name(other)))),
    }
}

pub(super) async fn ended(tx: &mut Tx, (job, attempt, fencing): (JobId, Attempt, FencingToken), ctx: &Ctx) -> Result<JobState, StoreError> {
    let a = attempt_row(tx, job, Some(attempt)).await?;
    if a.fencing != Some(fencing) {
        return Err(StoreError::Invalid(format!(
            "{job} attempt {} was assigned under {}, not {fencing}",
            a.attempt,
            a.fencing.map(|f| f.to_string()).unwrap_or_else(|| "no token".into())
        )));
    }
    if !matches!(a.state, JobState::Assigned | JobState::Running) {
        // A resend, or the end of a job already cancelled or lost: its upload is
        // accepted whenever it comes. A cancelled run that held its rig frees it now.
        if a.state == JobState::Cancelled {
            end_job_lease(tx, &a, &format!("{job} attempt {}: the cancelled run ended on its lab host", a.attempt), ctx).await?;
        }
        return Ok(a.state);
    }
    let why = "ended on its lab host; its bundle is on the way";
    set_attempt_state(tx, job, a.attempt, JobState::Uploading, why, ctx).await?;
    end_job_lease(tx, &a, &format!("{job} attempt {} {why}", a.attempt), ctx).await?;
    audit::record(
        tx,
        ctx,
        "job.end",
        &job.to_string(),
        json!({ "attempt": a.attempt, "rig": a.rig, "fencing": fencing.0, "run_id": a.run_id }),
    )
    .await?;
    Ok(JobState::Uploading)
}

pub(super) async fn retry(tx: &mut Tx, job: JobId, ctx: &Ctx) -> Result<Attempt, StoreError> {
    let a = attempt_row(tx, job, None).await?;
    if !a.state.is_over() {
        return Err(StoreError::Conflict(format!(
            "{job} attempt {} is {}; only an attempt that ended is retried",
            a.attempt,
            job_state_name(a.state)
        )));
    }
    let next = a.attempt + 1;
    tx.exec(
        "INSERT INTO attempts (job, attempt, retry_of, state, reason, created_at, updated_at) VALUES ($1, $2, $3, 'queued', $4, $5, $5)",
        args![
            job_arg(job),
            next,
            a.attempt,
            format!("retry of attempt {} ({}), by {}", a.attempt, job_state_name(a.state), ctx.who),
            ms(ctx.now)
        ],
    )
    .await?;
    audit::record(
        tx,
        ctx,
        "job.retry",
        &job.to_string(),
        json!({ "attempt": next, "retry_of": a.attempt, "retried_state": job_state_name(a.state) }),
    )
    .await?;
    Ok(attempt_no(next))
}

pub(super) async fn list(tx: &mut Tx, only: Option<JobId>) -> Result<Vec<JobRecord>, StoreError> {
    let (filter, filter_args) = match only {
        Some(job) => (" WHERE a.job = $1", args![job_arg(job)]),
        None => ("", args![]),
    };
    let mut plans: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let plan_sql = format!("SELECT a.job, a.name FROM job_plans a{filter} ORDER BY a.job, a.position");
    for row in tx.all(&plan_sql, filter_args.clone()).await? {
        plans.entry(row.int(0)?).or_default().push(row.text(1)?);
    }
    let sql = format!(
        "SELECT a.job, a.attempt, a.retry_of, a.state, a.reason, a.rig, a.fencing, a.run_id, j.priority, j.target, j.submitted_by, j.submitted_at, a.verdict, a.devices, a.run_ms \
         FROM attempts a JOIN jobs j ON j.id = a.job{filter} ORDER BY a.job, a.attempt"
    );
    let mut records = Vec::new();
    for row in tx.all(&sql, filter_args).await? {
        let number = row.int(0)?;
        let view = JobView {
            job: JobId(id(number)),
            attempt: attempt_no(row.int(1)?),
            retry_of: row.opt_int(2)?.map(attempt_no),
            state: job_state(&row.text(3)?)?,
            priority: priority(row.int(8)?)?,
            target: from_json(&row.text(9)?, "job target")?,
            plans: plans.get(&number).cloned().unwrap_or_default(),
            submitted_by: row.text(10)?,
            submitted_at: from_ms(row.int(11)?),
            rig: row.opt_text(5)?,
            run_id: row.opt_text(7)?,
            verdict: row.opt_text(12)?.map(|v| from_json(&v, "verdict")).transpose()?,
            devices: row.opt_text(13)?.map(|v| from_json(&v, "devices")).transpose()?.unwrap_or_default(),
            run_ms: row.opt_int(14)?.map(|v| v.max(0) as u64),
        };
        records.push(JobRecord { view, reason: row.text(4)?, fencing: row.opt_int(6)?.map(token) });
    }
    if let (Some(job), true) = (only, records.is_empty()) {
        return Err(StoreError::NotFound(format!("{job} does not exist (`proofrig queue` lists the jobs)")));
    }
    Ok(records)
}

pub(super) async fn plans(tx: &mut Tx, job: JobId) -> Result<Vec<PlanFile>, StoreError> {
    let rows = tx.all("SELECT name, bytes FROM job_plans WHERE job = $1 ORDER BY position", args![job_arg(job)]).await?;
    if rows.is_empty() {
        return Err(StoreError::NotFound(format!("{job} does not exist (`proofrig queue` lists the jobs)")));
    }
    rows.iter().map(|r| Ok(PlanFile { name: r.text(0)?, bytes: r.bytes(1)? })).collect()
}

pub(super) async fn assignment(tx: &mut Tx, job: JobId, attempt: Attempt, now: UnixMillis) -> Result<Assignment, StoreError> {
    let row = tx
        .one(
            "SELECT a.retry_of, a.state, a.rig, a.fencing, r.sha256, l.expires_at, j.params, j.device FROM attempts a JOIN jobs j ON j.id = a.job \
             LEFT JOIN rigs r ON r.name = a.rig LEFT JOIN leases l ON l.fencing = a.fencing WHERE a.job = $1 AND a.attempt = $2",
            args![job_arg(job), i64::from(attempt.0)],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("{job} has no attempt {}", attempt.0)))?;
    let state = job_state(&row.text(1)?)?;
    let (Some(rig), Some(fencing), Some(sha256), Some(expires_at)) = (row.opt_text(2)?, row.opt_int(3)?, row.opt_text(4)?, row.opt_int(5)?)
    else {
        return Err(StoreError::Conflict(format!(
            "{job} attempt {} is {}: it holds no rig, so there is no assignment to send",
            attempt.0,
            job_state_name(state)
        )));
    };
    Ok(Assignment {
        job,
        attempt,
        retry_of: row.opt_int(0)?.map(attempt_no),
        fencing: token(fencing),
        lease: Lease { expires_at: from_ms(expires_at), valid_for_ms: from_ms(expires_at).0.saturating_sub(now.0) },
        rig,
        rig_sha256: sha256,
        plans: plans(tx, job).await?,
        params: from_json(&row.text(6)?, "job params")?,
        device: row.opt_text(7)?,
    })
}

/// How many attempts a job gets when lab hosts refuse it for their rig's sake (the rig
/// changed or was busy): each refusal ends the attempt and queues a new one linked to
/// it, up to this many, so a rig whose lab host disagrees with the server cannot make
/// a job circle forever.
pub(super) const MAX_REFUSED_ATTEMPTS: i64 = 3;

pub(super) async fn refused(
    tx: &mut Tx,
    (job, attempt, fencing): (JobId, Attempt, FencingToken),
    refusal: &AssignmentRefused,
    labhost: &LabHostId,
    ctx: &Ctx,
) -> Result<JobState, StoreError> {
    let a = attempt_row(tx, job, Some(attempt)).await?;
    if a.fencing != Some(fencing) || a.state != JobState::Assigned {
        // A resend, or a refusal of what was cancelled meanwhile: nothing changes.
        return Ok(a.state);
    }
    let (state, why) = match refusal.why {
        AssignmentRefusal::Plan => (JobState::Done, format!("not run: {labhost} refused its plans: {}", refusal.reason)),
        AssignmentRefusal::Rig | AssignmentRefusal::StaleFence => {
            (JobState::Lost, format!("INFRA: {labhost} refused the assignment: {}", refusal.reason))
        }
    };
    set_attempt_state(tx, job, a.attempt, state, &why, ctx).await?;
    end_job_lease(tx, &a, &format!("{job} attempt {} {why}", a.attempt), ctx).await?;
    let details = json!({ "attempt": a.attempt, "rig": a.rig, "fencing": fencing.0, "why": refusal.why, "reason": refusal.reason });
    audit::record(tx, ctx, "job.refused", &job.to_string(), details).await?;
    if let (JobState::Lost, Some(rig)) = (state, a.rig.as_deref()) {
        super::health::after_failure(tx, rig, ctx).await?;
    }
    if state == JobState::Lost && a.attempt < MAX_REFUSED_ATTEMPTS {
        retry(tx, job, ctx).await?;
    }
    Ok(state)
}

/// What an uploaded bundle showed, recorded on its attempt.
pub(super) async fn uploaded(
    tx: &mut Tx,
    job: JobId,
    attempt: Attempt,
    run_id: &str,
    check: &BundleCheck,
    ctx: &Ctx,
) -> Result<JobState, StoreError> {
    let a = attempt_row(tx, job, Some(attempt)).await?;
    let recorded = tx
        .one("SELECT verdict, flagged FROM attempts WHERE job = $1 AND attempt = $2", args![job_arg(job), a.attempt])
        .await?
        .map(|r| Ok::<_, StoreError>(r.opt_text(0)?.is_some() || r.opt_text(1)?.is_some()))
        .transpose()?
        .unwrap_or(false);
    if recorded && a.run_id.as_deref() == Some(run_id) {
        // Told again (a resend, or an upload settled after a restart): already on record.
        return Ok(a.state);
    }
    if a.run_id.as_deref().is_some_and(|r| r != run_id) {
        return Err(StoreError::Conflict(format!("{job} attempt {} ran as run {}, not {run_id}", a.attempt, a.run_id.unwrap_or_default())));
    }
    let (verdict, flagged) = match check {
        BundleCheck::Verified { verdict } => (Some(to_json(verdict)?), None),
        BundleCheck::Flagged { reason } => (None, Some(reason.clone())),
    };
    // A lost or cancelled attempt keeps its state: its (partial) bundle is evidence of
    // what happened, attached to it. One whose end never reached the server ends now.
    let state = match a.state {
        JobState::Assigned | JobState::Running | JobState::Uploading | JobState::Verifying => {
            end_job_lease(tx, &a, &format!("{job} attempt {}: its bundle arrived", a.attempt), ctx).await?;
            JobState::Done
        }
        JobState::Cancelled => {
            end_job_lease(tx, &a, &format!("{job} attempt {}: the cancelled run's bundle arrived", a.attempt), ctx).await?;
            JobState::Cancelled
        }
        other => other,
    };
    let reason = match (&flagged, state) {
        (Some(why), _) => format!("its bundle does not verify and is not a result: {why}"),
        (None, JobState::Done) => "its bundle arrived and verified".to_string(),
        (None, _) => format!("{}; its bundle arrived later and verified", job_state_name(state)),
    };
    tx.exec(
        "UPDATE attempts SET state = $1, reason = $2, run_id = $3, verdict = $4, flagged = $5, updated_at = $6 WHERE job = $7 AND attempt = $8",
        args![job_state_name(state), &reason, run_id, verdict.as_deref(), flagged.as_deref(), ms(ctx.now), job_arg(job), a.attempt],
    )
    .await?;
    let details = json!({ "attempt": a.attempt, "run_id": run_id, "check": check });
    audit::record(tx, ctx, "job.uploaded", &job.to_string(), details).await?;
    let failed = match check {
        BundleCheck::Verified { verdict } => super::health::is_failure(Some(*verdict)),
        BundleCheck::Flagged { .. } => true,
    };
    if let (true, Some(rig)) = (failed, a.rig.as_deref()) {
        super::health::after_failure(tx, rig, ctx).await?;
    }
    Ok(state)
}

/// The attempts assigned to rigs of `labhost` that it has not yet accepted: the
/// assignments to send it.
pub(super) async fn unanswered(tx: &mut Tx, labhost: &LabHostId) -> Result<Vec<(JobId, Attempt)>, StoreError> {
    let rows = tx
        .all(
            "SELECT a.job, a.attempt FROM attempts a JOIN rigs r ON r.name = a.rig WHERE a.state = 'assigned' AND r.labhost = $1 ORDER BY a.job, a.attempt",
            args![&labhost.0],
        )
        .await?;
    rows.iter().map(|r| Ok((JobId(id(r.int(0)?)), attempt_no(r.int(1)?)))).collect()
}

/// The lab host whose rig an attempt was assigned to, and the fencing token it was
/// assigned under (`None` if it was never assigned).
pub(super) async fn assigned_to(tx: &mut Tx, job: JobId, attempt: Attempt) -> Result<Option<(LabHostId, FencingToken)>, StoreError> {
    let row = tx
        .one(
            "SELECT r.labhost, a.fencing FROM attempts a JOIN rigs r ON r.name = a.rig WHERE a.job = $1 AND a.attempt = $2 AND a.fencing IS NOT NULL",
            args![job_arg(job), i64::from(attempt.0)],
        )
        .await?;
    row.map(|r| Ok((LabHostId(r.text(0)?), token(r.int(1)?)))).transpose()
}

/// What a verified run's results say, kept with its attempt (see migration 0008).
pub(super) async fn run_facts(tx: &mut Tx, job: JobId, attempt: Attempt, devices: &[DeviceView], run_ms: u64) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE attempts SET devices = $1, run_ms = $2 WHERE job = $3 AND attempt = $4",
        args![to_json(&devices)?, i64::try_from(run_ms).unwrap_or(i64::MAX), job_arg(job), i64::from(attempt.0)],
    )
    .await?;
    Ok(())
}
