//! Rig health: a check that runs on its own, one repair, then the rig is bad.
//!
//! LAVA runs a health check per device and takes failing devices out of service; a
//! device that fails once for a passing reason (a hung console) is lost to the queue
//! until someone looks. Here each rig may have a health-check plan
//! ([`proofrig_proto::api::SetHealth`]). [`step`], run by the server's pass before it
//! claims, moves each rig's check along:
//!
//! - **ok**: when the interval has passed, or a job on the rig was lost or ended in
//!   ERROR, INFRA or ABORTED ([`after_failure`]), and the rig is idle, the check is
//!   queued as a job for that rig at the highest priority (so it runs before what
//!   waits), submitted by `health:<rig>`;
//! - **check**: PASS goes back to ok; anything else queues the repair, a power cycle
//!   of the rig's devices (a generated plan, [`repair_plan`]);
//! - **repair**: when it ends, however, the check runs again;
//! - **recheck**: PASS goes back to ok; anything else makes the rig **bad**, with the
//!   reason, in its state history. When a technician puts it back in service, it is
//!   checked again before anything else runs on it.
//!
//! A check only passes on PASS: a check that could not run (ERROR, INCONCLUSIVE) is a
//! failing check. Each move is audited.

use std::time::Duration;

use proofrig_proto::api::{HealthStage, HealthView, JobState, RigSelector, RigState, SubmitJob};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{JobId, Priority};
use proofrig_verdict::Verdict;
use serde_json::json;

use super::db::{args, Row, Tx};
use super::{audit, from_json, from_ms, id, ms, rig_state, rigs, Ctx, StoreError};

/// The name a repair job's plan has.
pub const REPAIR_PLAN: &str = "repair-power-cycle.yaml";

/// The repair: every device of the rig with a power outlet is switched off and on.
pub fn repair_plan() -> PlanFile {
    let text = "\
plan: repair-power-cycle
title: Repair a rig that failed its health check by cycling its devices' power
cases:
  - id: REPAIR_POWER_CYCLE
    title: Power cycle the device
    purpose: A device that hung is often back after a power cycle.
    expected: The device's outlet switched off and on.
    evidence: The power agent's read-back.
    steps:
      - power: { action: cycle }
";
    PlanFile { name: REPAIR_PLAN.into(), bytes: text.as_bytes().to_vec() }
}

fn stage_name(stage: HealthStage) -> &'static str {
    match stage {
        HealthStage::Ok => "ok",
        HealthStage::Check => "check",
        HealthStage::Repair => "repair",
        HealthStage::Recheck => "recheck",
        HealthStage::Bad => "bad",
    }
}

fn stage(name: &str) -> Result<HealthStage, StoreError> {
    [HealthStage::Ok, HealthStage::Check, HealthStage::Repair, HealthStage::Recheck, HealthStage::Bad]
        .into_iter()
        .find(|s| stage_name(*s) == name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown health stage `{name}`")))
}

const COLUMNS: &str = "rig, plan_name, every_ms, next_at, stage, job, last_result, set_by, plan";

fn view(row: &Row) -> Result<HealthView, StoreError> {
    Ok(HealthView {
        rig: row.text(0)?,
        plan: row.text(1)?,
        every_minutes: (row.int(2)? / 60_000) as u64,
        next_at: from_ms(row.int(3)?),
        stage: stage(&row.text(4)?)?,
        job: row.opt_int(5)?.map(|j| JobId(id(j))),
        last_result: row.text(6)?,
        set_by: row.text(7)?,
    })
}

pub(super) async fn set(tx: &mut Tx, rig: &str, plan: &PlanFile, every: Duration, ctx: &Ctx) -> Result<HealthView, StoreError> {
    if tx.one("SELECT name FROM rigs WHERE name = $1", args![rig]).await?.is_none() {
        return Err(StoreError::NotFound(format!("rig {rig} is not known (`proofrig rigs` lists the rigs)")));
    }
    if every < Duration::from_secs(5 * 60) {
        return Err(StoreError::Invalid("`every_minutes`: a health check runs at most every 5 minutes".into()));
    }
    let every_ms = every.as_millis() as i64;
    // The first check runs at once: a new check is how a technician learns it works.
    tx.exec("DELETE FROM rig_health WHERE rig = $1", args![rig]).await?;
    tx.exec(
        "INSERT INTO rig_health (rig, plan_name, plan, every_ms, next_at, stage, job, last_result, set_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'ok', NULL, 'not run yet', $6, $5)",
        args![rig, &plan.name, plan.bytes.as_slice(), every_ms, ms(ctx.now), &ctx.who],
    )
    .await?;
    audit::record(tx, ctx, "health.set", &format!("rig {rig}"), json!({ "plan": plan.name, "every_ms": every_ms })).await?;
    get(tx, rig).await?.ok_or_else(|| StoreError::Corrupt("a health check just stored is missing".into()))
}

pub(super) async fn clear(tx: &mut Tx, rig: &str, ctx: &Ctx) -> Result<(), StoreError> {
    if tx.exec("DELETE FROM rig_health WHERE rig = $1", args![rig]).await? == 0 {
        return Err(StoreError::NotFound(format!("rig {rig} has no health check")));
    }
    audit::record(tx, ctx, "health.clear", &format!("rig {rig}"), json!({})).await
}

pub(super) async fn get(tx: &mut Tx, rig: &str) -> Result<Option<HealthView>, StoreError> {
    tx.one(&format!("SELECT {COLUMNS} FROM rig_health WHERE rig = $1"), args![rig]).await?.map(|r| view(&r)).transpose()
}

/// A job on `rig` went wrong: check the rig before the next one.
pub(super) async fn after_failure(tx: &mut Tx, rig: &str, ctx: &Ctx) -> Result<(), StoreError> {
    tx.exec("UPDATE rig_health SET next_at = $1 WHERE rig = $2 AND stage = 'ok' AND next_at > $1", args![ms(ctx.now), rig]).await?;
    Ok(())
}

/// Whether a job's verdict says its rig may be unwell.
pub(super) fn is_failure(verdict: Option<Verdict>) -> bool {
    matches!(verdict, Some(Verdict::Error | Verdict::Infra | Verdict::Aborted))
}

/// What [`step`] did to one rig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthMove {
    pub rig: String,
    pub to: HealthStage,
    pub job: Option<JobId>,
    pub why: String,
}

/// Move every rig's health check along (see the module doc).
pub(super) async fn step(tx: &mut Tx, ctx: &Ctx) -> Result<Vec<HealthMove>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM rig_health ORDER BY rig{}", tx.skip_locked("rig_health"));
    let rows = tx.all(&sql, args![]).await?;
    let mut moves = Vec::new();
    for row in &rows {
        let health = view(row)?;
        let plan = PlanFile { name: health.plan.clone(), bytes: row.bytes(8)? };
        let rig_row = tx.one("SELECT state FROM rigs WHERE name = $1", args![&health.rig]).await?;
        let rig_now = match rig_row {
            Some(r) => rig_state(&r.text(0)?)?,
            None => continue,
        };
        let next = match (health.stage, health.job) {
            (HealthStage::Ok, _) if health.next_at <= ctx.now && rig_now == RigState::Idle => {
                let job = submit(tx, &health.rig, plan, ctx).await?;
                Some(HealthMove { rig: health.rig.clone(), to: HealthStage::Check, job: Some(job), why: "the check is due".into() })
            }
            (HealthStage::Bad, _) if rig_now == RigState::Idle => {
                let job = submit(tx, &health.rig, plan, ctx).await?;
                Some(HealthMove {
                    rig: health.rig.clone(),
                    to: HealthStage::Check,
                    job: Some(job),
                    why: "back in service: checked first".into(),
                })
            }
            (HealthStage::Check | HealthStage::Repair | HealthStage::Recheck, Some(job)) => match outcome(tx, job).await? {
                None => None,
                Some(outcome) => Some(settle(tx, &health, job, &outcome, plan, ctx).await?),
            },
            _ => None,
        };
        if let Some(m) = next {
            let every = row.int(2)?;
            let next_at = match m.to {
                HealthStage::Ok => ms(ctx.now).saturating_add(every),
                _ => ms(health.next_at),
            };
            tx.exec(
                "UPDATE rig_health SET stage = $1, job = $2, last_result = $3, next_at = $4, updated_at = $5 WHERE rig = $6",
                args![stage_name(m.to), m.job.map(|j| j.0 as i64), &m.why, next_at, ms(ctx.now), &health.rig],
            )
            .await?;
            let details = json!({ "to": stage_name(m.to), "job": m.job.map(|j| j.0), "why": m.why });
            audit::record(tx, ctx, "health.step", &format!("rig {}", health.rig), details).await?;
            moves.push(m);
        }
    }
    Ok(moves)
}

/// How a check or repair job ended; `None` while it runs.
async fn outcome(tx: &mut Tx, job: JobId) -> Result<Option<(JobState, Option<Verdict>)>, StoreError> {
    let row = tx
        .one("SELECT state, verdict FROM attempts WHERE job = $1 ORDER BY attempt DESC LIMIT 1", args![job.0 as i64])
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("health job {job} has no attempt")))?;
    let state = super::job_state(&row.text(0)?)?;
    let verdict = row.opt_text(1)?.map(|v| from_json::<Verdict>(&v, "verdict")).transpose()?;
    Ok(state.is_over().then_some((state, verdict)))
}

async fn settle(
    tx: &mut Tx,
    health: &HealthView,
    job: JobId,
    (state, verdict): &(JobState, Option<Verdict>),
    plan: PlanFile,
    ctx: &Ctx,
) -> Result<HealthMove, StoreError> {
    let rig = health.rig.clone();
    let said = match verdict {
        Some(v) => format!("{job} ended {v}"),
        None => format!("{job} ended {} without a verified bundle", super::job_state_name(*state)),
    };
    let passed = matches!(verdict, Some(Verdict::Pass));
    Ok(match health.stage {
        HealthStage::Check | HealthStage::Recheck if passed => {
            HealthMove { rig, to: HealthStage::Ok, job: None, why: format!("passed: {said}") }
        }
        HealthStage::Check if *state == JobState::Cancelled => HealthMove {
            rig,
            to: HealthStage::Ok,
            job: None,
            why: format!("the check was cancelled ({said}); it runs at the next interval"),
        },
        HealthStage::Check => {
            let repair = submit(tx, &rig, repair_plan(), ctx).await?;
            HealthMove {
                rig,
                to: HealthStage::Repair,
                job: Some(repair),
                why: format!("the check failed ({said}): repairing with a power cycle"),
            }
        }
        HealthStage::Repair => {
            let check = submit(tx, &rig, plan, ctx).await?;
            HealthMove { rig, to: HealthStage::Recheck, job: Some(check), why: format!("repaired ({said}): checking again") }
        }
        _ => {
            let why = format!("failed its health check twice, the power cycle did not help (last: {said}); a technician must look at it");
            rigs::set_state(tx, &rig, RigState::Bad, &why, ctx).await?;
            HealthMove { rig, to: HealthStage::Bad, job: None, why }
        }
    })
}

/// Queue a health job (check or repair) for `rig`, first in line.
async fn submit(tx: &mut Tx, rig: &str, plan: PlanFile, ctx: &Ctx) -> Result<JobId, StoreError> {
    let job = SubmitJob {
        plans: vec![plan],
        target: RigSelector::Rig(rig.to_string()),
        priority: Priority::HIGHEST,
        params: Default::default(),
        device: None,
        not_before: None,
    };
    let by = Ctx { who: format!("health:{rig}"), ..ctx.clone() };
    Ok(super::jobs::submit(tx, &job, &by).await?.job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repair_plan_is_a_valid_plan_that_power_cycles() {
        let plan = repair_plan();
        let parsed = proofrig_plan::Plan::from_bytes(&plan.name, &plan.bytes).expect("the generated repair plan loads");
        let text = String::from_utf8(plan.bytes).unwrap();
        assert!(text.contains("power: { action: cycle }"));
        assert_eq!(parsed.path.file_name().and_then(|n| n.to_str()), Some(REPAIR_PLAN));
    }

    #[test]
    fn only_error_infra_and_aborted_runs_send_a_rig_to_its_check() {
        assert!(is_failure(Some(Verdict::Error)) && is_failure(Some(Verdict::Infra)) && is_failure(Some(Verdict::Aborted)));
        assert!(!is_failure(Some(Verdict::Fail)), "a FAIL is the device's finding, not the rig's fault");
        assert!(!is_failure(Some(Verdict::Pass)) && !is_failure(None));
    }
}
