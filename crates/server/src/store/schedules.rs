//! Recurring runs: schedules that submit their job whenever their cron expression
//! fires, exactly once across server replicas.
//!
//! A schedule keeps its job as a template (the [`SubmitJob`] it was given, as JSON)
//! and the next time it is due. [`fire_due`] is the server's pass over them: in one
//! write transaction, every schedule due at `now` submits one job through the very
//! path a person's submission takes (checked and audited the same; its submitter is
//! the schedule's creator, its audit record names the schedule), and moves on to
//! the first time after `now` ([`crate::recurring::catch_up`]: a server that was
//! down across several due times runs one catch-up, not a burst). On PostgreSQL the
//! pass locks the due rows `FOR UPDATE SKIP LOCKED`, so two replicas firing at once
//! fire each schedule once: the second skips what the first holds, and once the
//! first commits the rows are no longer due. A removed schedule is kept, disabled,
//! for the record of the jobs it made.

use proofrig_proto::api::{NewSchedule, ScheduleView, SubmitJob};
use proofrig_proto::ids::{JobId, UnixMillis};
use serde_json::json;

use super::db::{args, Row, Tx};
use super::{audit, from_json, from_ms, id, jobs, ms, to_json, Ctx, StoreError};
use crate::recurring::{catch_up, Recurrence};

fn schedule_arg(schedule: u64) -> i64 {
    i64::try_from(schedule).unwrap_or(i64::MAX)
}

fn subject(schedule: u64) -> String {
    format!("schedule {schedule}")
}

fn not_found(schedule: u64) -> StoreError {
    StoreError::NotFound(format!("schedule {schedule} does not exist (GET /api/schedules lists them)"))
}

fn recurrence(cron: &str, time_zone: &str) -> Result<Recurrence, StoreError> {
    Recurrence::parse(cron, time_zone).map_err(|e| StoreError::Invalid(e.to_string()))
}

pub(super) async fn add(tx: &mut Tx, new: &NewSchedule, ctx: &Ctx) -> Result<ScheduleView, StoreError> {
    jobs::check_submission(&new.job)?;
    if new.job.not_before.is_some() {
        return Err(StoreError::Invalid(
            "job.not_before: a schedule's runs start when it fires, so its job takes no start time; leave not_before out".into(),
        ));
    }
    let recurrence = recurrence(&new.cron, &new.time_zone)?;
    let next_at = recurrence
        .next_after(ctx.now)
        .ok_or_else(|| StoreError::Invalid(format!("cron `{}` in {} never fires after now; check its fields", new.cron, new.time_zone)))?;
    let row = tx
        .one(
            "INSERT INTO schedules (template, cron, time_zone, next_at, created_by, created_at, enabled) VALUES ($1, $2, $3, $4, $5, $6, 1) RETURNING id",
            args![to_json(&new.job)?, recurrence.expression(), recurrence.zone(), ms(next_at), &ctx.who, ms(ctx.now)],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("inserting a schedule returned no id".into()))?;
    let view = ScheduleView {
        id: id(row.int(0)?),
        cron: recurrence.expression().to_string(),
        time_zone: recurrence.zone().to_string(),
        next_at: Some(next_at),
        plans: new.job.plans.iter().map(|p| p.name.clone()).collect(),
        target: new.job.target.clone(),
        created_by: ctx.who.clone(),
        created_at: ctx.now,
    };
    let details =
        json!({ "cron": view.cron, "time_zone": view.time_zone, "next_at": next_at.0, "plans": view.plans, "target": view.target });
    audit::record(tx, ctx, "schedule.add", &subject(view.id), details).await?;
    Ok(view)
}

const COLUMNS: &str = "id, template, cron, time_zone, next_at, created_by, created_at";

fn view(row: &Row) -> Result<(ScheduleView, SubmitJob), StoreError> {
    let template: SubmitJob = from_json(&row.text(1)?, "schedule template")?;
    let view = ScheduleView {
        id: id(row.int(0)?),
        cron: row.text(2)?,
        time_zone: row.text(3)?,
        next_at: row.opt_int(4)?.map(from_ms),
        plans: template.plans.iter().map(|p| p.name.clone()).collect(),
        target: template.target.clone(),
        created_by: row.text(5)?,
        created_at: from_ms(row.int(6)?),
    };
    Ok((view, template))
}

/// The schedules in force, oldest first.
pub(super) async fn list(tx: &mut Tx) -> Result<Vec<ScheduleView>, StoreError> {
    let rows = tx.all(&format!("SELECT {COLUMNS} FROM schedules WHERE enabled = 1 ORDER BY id"), args![]).await?;
    rows.iter().map(|r| view(r).map(|(v, _)| v)).collect()
}

/// One schedule in force.
pub(super) async fn get(tx: &mut Tx, schedule: u64) -> Result<ScheduleView, StoreError> {
    let row = tx.one(&format!("SELECT {COLUMNS} FROM schedules WHERE id = $1 AND enabled = 1"), args![schedule_arg(schedule)]).await?;
    view(&row.ok_or_else(|| not_found(schedule))?).map(|(v, _)| v)
}

pub(super) async fn remove(tx: &mut Tx, schedule: u64, ctx: &Ctx) -> Result<(), StoreError> {
    let lock = tx.for_update();
    let row = tx
        .one(&format!("SELECT enabled, removed_by, cron, time_zone FROM schedules WHERE id = $1{lock}"), args![schedule_arg(schedule)])
        .await?
        .ok_or_else(|| not_found(schedule))?;
    if row.int(0)? == 0 {
        let by = row.opt_text(1)?.unwrap_or_default();
        return Err(StoreError::Conflict(format!("schedule {schedule} was already removed (by {by}); nothing to remove")));
    }
    disable(tx, schedule, ctx).await?;
    audit::record(tx, ctx, "schedule.remove", &subject(schedule), json!({ "cron": row.text(2)?, "time_zone": row.text(3)? })).await
}

async fn disable(tx: &mut Tx, schedule: u64, ctx: &Ctx) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE schedules SET enabled = 0, removed_by = $1, removed_at = $2 WHERE id = $3",
        args![&ctx.who, ms(ctx.now), schedule_arg(schedule)],
    )
    .await?;
    Ok(())
}

/// A due schedule, as the pass read (and on PostgreSQL locked) it.
struct Due {
    id: u64,
    template: String,
    cron: String,
    time_zone: String,
    due: UnixMillis,
    created_by: String,
}

pub(super) async fn fire_due(tx: &mut Tx, ctx: &Ctx) -> Result<Vec<JobId>, StoreError> {
    let sql = format!(
        "SELECT id, template, cron, time_zone, next_at, created_by FROM schedules WHERE enabled = 1 AND next_at IS NOT NULL AND next_at <= $1 ORDER BY next_at, id{}",
        tx.skip_locked("schedules")
    );
    let mut due = Vec::new();
    for row in tx.all(&sql, args![ms(ctx.now)]).await? {
        due.push(Due {
            id: id(row.int(0)?),
            template: row.text(1)?,
            cron: row.text(2)?,
            time_zone: row.text(3)?,
            due: from_ms(row.int(4)?),
            created_by: row.text(5)?,
        });
    }
    let mut fired = Vec::new();
    for d in &due {
        if let Some(job) = fire(tx, d, ctx).await? {
            fired.push(job);
        }
    }
    Ok(fired)
}

/// Fire one due schedule: one job, the next due time after `now`. A schedule that no
/// longer reads (its cron, zone or template refused by this version of proofrig) is
/// disabled with the reason in the audit log instead, so it cannot stop the others.
async fn fire(tx: &mut Tx, d: &Due, ctx: &Ctx) -> Result<Option<JobId>, StoreError> {
    let read = recurrence(&d.cron, &d.time_zone).and_then(|r| Ok((r, from_json::<SubmitJob>(&d.template, "schedule template")?)));
    let (recurrence, template) = match read {
        Ok(read) => read,
        Err(e) => return broken(tx, d, &e, ctx).await.map(|()| None),
    };
    let c = catch_up(&recurrence, d.due, ctx.now);
    let submitter = Ctx::new(d.created_by.clone(), subject(d.id), ctx.now);
    let job = match jobs::submit_from(tx, &template, &submitter, Some(d.id)).await {
        Ok(submitted) => submitted.job,
        Err(e @ StoreError::Invalid(_)) => return broken(tx, d, &e, ctx).await.map(|()| None),
        Err(e) => return Err(e),
    };
    tx.exec("UPDATE schedules SET next_at = $1 WHERE id = $2", args![c.next_at.map(ms), schedule_arg(d.id)]).await?;
    let details = json!({ "job": job.0, "due_at": d.due.0, "missed": c.missed, "next_at": c.next_at.map(|t| t.0) });
    audit::record(tx, ctx, "schedule.fire", &subject(d.id), details).await?;
    Ok(Some(job))
}

async fn broken(tx: &mut Tx, d: &Due, error: &StoreError, ctx: &Ctx) -> Result<(), StoreError> {
    disable(tx, d.id, ctx).await?;
    let reason = format!("disabled: it no longer reads ({error}); add it again, corrected");
    audit::record(tx, ctx, "schedule.disable", &subject(d.id), json!({ "due_at": d.due.0, "reason": reason })).await
}
