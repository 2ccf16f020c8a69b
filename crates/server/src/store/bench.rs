//! Bench operations: a technician's power action or console session on a rig they
//! hold a live reservation of, carried out by the rig's lab host.
//!
//! The server never touches a device, so an operation is a request stored here for
//! the rig's lab host, which its poll delivers (from any replica) and the lab host
//! answers. The request is taken only from the reservation's holder while it is
//! live, and carries the reservation's fencing token: the lab host checks that token
//! against the newest it has accepted for the rig, so a request made under a
//! reservation that has since passed to someone else is refused there too. Every
//! request, answer and close is audited in the transaction that makes it.
//!
//! A request nobody answered within [`OP_ANSWER_LIMIT`] is closed as expired (the lab
//! host is offline or too old to take bench operations) and no longer delivered.

use std::time::Duration;

use proofrig_proto::ids::{FencingToken, LabHostId, UnixMillis};
use proofrig_proto::labhost::{BenchAction, BenchOp, BenchOpAnswer, BenchOutcome};
use serde_json::json;

use super::db::{args, Row, Tx};
use super::leases::{reservation_of, token, token_arg};
use super::{audit, from_json, from_ms, id, ms, Ctx, StoreError};

/// How long a request waits for its lab host's answer before it expires.
pub const OP_ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// A bench operation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOpRecord {
    pub op: u64,
    pub rig: String,
    pub labhost: LabHostId,
    pub device: String,
    pub action: BenchAction,
    pub fencing: FencingToken,
    pub by: String,
    pub requested_at: UnixMillis,
    /// `None` while the lab host has not answered (nor the request expired).
    pub answer: Option<(UnixMillis, BenchAnswer)>,
    /// A console session's end, and why.
    pub closed: Option<(UnixMillis, String)>,
}

/// How a request ended, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchAnswer {
    Answered(BenchOutcome),
    /// Nobody answered within [`OP_ANSWER_LIMIT`].
    Expired,
}

impl BenchOpRecord {
    /// What the lab host is sent.
    pub fn message(&self) -> BenchOp {
        BenchOp {
            op: self.op,
            rig: self.rig.clone(),
            device: self.device.clone(),
            fencing: self.fencing,
            by: self.by.clone(),
            action: self.action,
        }
    }
}

fn action_name(action: BenchAction) -> &'static str {
    match action {
        BenchAction::PowerOn => "power_on",
        BenchAction::PowerOff => "power_off",
        BenchAction::PowerCycle => "power_cycle",
        BenchAction::Console => "console",
    }
}

fn parse_action(name: &str) -> Result<BenchAction, StoreError> {
    Ok(match name {
        "power_on" => BenchAction::PowerOn,
        "power_off" => BenchAction::PowerOff,
        "power_cycle" => BenchAction::PowerCycle,
        "console" => BenchAction::Console,
        other => return Err(StoreError::Corrupt(format!("unknown bench action `{other}`"))),
    })
}

const COLUMNS: &str =
    "id, rig, labhost, device, action, fencing, requested_by, requested_at, answered_at, outcome, detail, closed_at, close_reason";

fn record(r: &Row) -> Result<BenchOpRecord, StoreError> {
    let answer = match (r.opt_int(8)?, r.opt_text(9)?) {
        (Some(at), Some(outcome)) => {
            let detail = r.opt_text(10)?.unwrap_or_default();
            let answer = match outcome.as_str() {
                "done" => BenchAnswer::Answered(BenchOutcome::Done { detail }),
                "refused" => BenchAnswer::Answered(BenchOutcome::Refused { reason: detail }),
                "failed" => BenchAnswer::Answered(BenchOutcome::Failed { reason: detail }),
                "expired" => BenchAnswer::Expired,
                other => return Err(StoreError::Corrupt(format!("unknown bench outcome `{other}`"))),
            };
            Some((from_ms(at), answer))
        }
        _ => None,
    };
    Ok(BenchOpRecord {
        op: id(r.int(0)?),
        rig: r.text(1)?,
        labhost: LabHostId(r.text(2)?),
        device: r.text(3)?,
        action: parse_action(&r.text(4)?)?,
        fencing: token(r.int(5)?),
        by: r.text(6)?,
        requested_at: from_ms(r.int(7)?),
        answer,
        closed: match r.opt_int(11)? {
            Some(at) => Some((from_ms(at), r.opt_text(12)?.unwrap_or_default())),
            None => None,
        },
    })
}

/// Ask for `action` on `device` of `rig`, as `ctx.who`, who must hold the rig's live
/// reservation. The rig must have `device` (as its lab host advertised it). A request
/// refused for want of the reservation is `Ok(Err(why))`: its audit record commits.
pub(super) async fn request(
    tx: &mut Tx,
    rig: &str,
    device: &str,
    action: BenchAction,
    ctx: &Ctx,
) -> Result<Result<BenchOpRecord, String>, StoreError> {
    super::rigs::lock_rig(tx, rig).await?;
    let holds = match reservation_of(tx, rig).await? {
        None => Err(format!("rig {rig} is not reserved; reserve it first (power and console need your live reservation)")),
        Some(r) if r.holder != ctx.who => {
            Err(format!("rig {rig} is reserved by {}, not you; power and console belong to its holder", r.holder))
        }
        Some(r) if r.until <= ctx.now => Err(format!("your reservation of rig {rig} has ended; reserve it again")),
        Some(r) => Ok(r),
    };
    let reservation = match holds {
        Ok(r) => r,
        Err(reason) => {
            audit::record(
                tx,
                ctx,
                "bench.refused",
                &format!("rig {rig}"),
                json!({ "device": device, "action": action_name(action), "reason": reason }),
            )
            .await?;
            return Ok(Err(reason));
        }
    };
    let row = tx
        .one("SELECT labhost, devices FROM rigs WHERE name = $1", args![rig])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rig {rig} is not known: no lab host advertises it (`proofrig rigs` lists them)")))?;
    let labhost = row.text(0)?;
    let devices: std::collections::BTreeSet<String> = from_json(&row.text(1)?, "devices of a rig")?;
    if !devices.contains(device) {
        return Err(StoreError::NotFound(format!(
            "rig {rig} has no device `{device}` (its devices: {})",
            devices.iter().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let row = tx
        .one(
            "INSERT INTO bench_ops (rig, labhost, device, action, fencing, requested_by, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            args![rig, &labhost, device, action_name(action), token_arg(reservation.fencing), &ctx.who, ms(ctx.now)],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("an insert returned no id".into()))?;
    let op = id(row.int(0)?);
    audit::record(
        tx,
        ctx,
        "bench.request",
        &format!("rig {rig}"),
        json!({ "op": op, "device": device, "action": action_name(action), "fencing": reservation.fencing.0, "labhost": labhost }),
    )
    .await?;
    get(tx, op).await?.ok_or_else(|| StoreError::Corrupt(format!("bench operation {op} vanished in its own transaction"))).map(Ok)
}

pub(super) async fn get(tx: &mut Tx, op: u64) -> Result<Option<BenchOpRecord>, StoreError> {
    let op = i64::try_from(op).map_err(|_| StoreError::NotFound(format!("bench operation {op} does not exist")))?;
    tx.one(&format!("SELECT {COLUMNS} FROM bench_ops WHERE id = $1"), args![op]).await?.map(|r| record(&r)).transpose()
}

/// The requests `labhost` has not answered yet and that have not expired.
pub(super) async fn unanswered(tx: &mut Tx, labhost: &LabHostId, now: UnixMillis) -> Result<Vec<BenchOpRecord>, StoreError> {
    let since = ms(now).saturating_sub(OP_ANSWER_LIMIT.as_millis() as i64);
    let rows = tx
        .all(
            &format!("SELECT {COLUMNS} FROM bench_ops WHERE labhost = $1 AND answered_at IS NULL AND requested_at > $2 ORDER BY id"),
            args![&labhost.0, since],
        )
        .await?;
    rows.iter().map(record).collect()
}

/// The lab host's answer. Taken only from the lab host the request went to, under
/// its token; a resent answer, or one after the request expired, changes nothing.
pub(super) async fn answer(tx: &mut Tx, labhost: &LabHostId, answer: &BenchOpAnswer, ctx: &Ctx) -> Result<BenchOpRecord, StoreError> {
    let Some(op) = get(tx, answer.op).await? else {
        return Err(StoreError::NotFound(format!("bench operation {} does not exist", answer.op)));
    };
    if &op.labhost != labhost || op.fencing != answer.fencing {
        return Err(StoreError::Invalid(format!("bench operation {} was not sent to {labhost} under {}", answer.op, answer.fencing)));
    }
    if op.answer.is_some() {
        return Ok(op);
    }
    let (outcome, detail) = match &answer.outcome {
        BenchOutcome::Done { detail } => ("done", detail),
        BenchOutcome::Refused { reason } => ("refused", reason),
        BenchOutcome::Failed { reason } => ("failed", reason),
    };
    tx.exec(
        "UPDATE bench_ops SET answered_at = $1, outcome = $2, detail = $3 WHERE id = $4 AND answered_at IS NULL",
        args![ms(ctx.now), outcome, detail, answer.op as i64],
    )
    .await?;
    audit::record(
        tx,
        ctx,
        &format!("bench.{outcome}"),
        &format!("rig {}", op.rig),
        json!({ "op": op.op, "device": op.device, "action": action_name(op.action), "by": op.by, "detail": detail }),
    )
    .await?;
    get(tx, answer.op).await?.ok_or_else(|| StoreError::Corrupt(format!("bench operation {} vanished", answer.op)))
}

/// Close a request nobody answered in time; `false` when it had been answered.
pub(super) async fn expire(tx: &mut Tx, op: u64, ctx: &Ctx) -> Result<bool, StoreError> {
    let changed = tx
        .exec(
            "UPDATE bench_ops SET answered_at = $1, outcome = 'expired', detail = $2 WHERE id = $3 AND answered_at IS NULL",
            args![ms(ctx.now), format!("no answer from the lab host within {} s", OP_ANSWER_LIMIT.as_secs()), op as i64],
        )
        .await?;
    if changed > 0 {
        audit::record(tx, ctx, "bench.expired", &format!("bench operation {op}"), json!({ "op": op })).await?;
    }
    Ok(changed > 0)
}

/// Record a console session's end (once).
pub(super) async fn close(tx: &mut Tx, op: u64, reason: &str, ctx: &Ctx) -> Result<(), StoreError> {
    let changed = tx
        .exec(
            "UPDATE bench_ops SET closed_at = $1, close_reason = $2 WHERE id = $3 AND closed_at IS NULL",
            args![ms(ctx.now), reason, op as i64],
        )
        .await?;
    if changed > 0 {
        audit::record(tx, ctx, "console.close", &format!("bench operation {op}"), json!({ "op": op, "reason": reason })).await?;
    }
    Ok(())
}

/// The newest requests on `rig`, newest first.
pub(super) async fn recent(tx: &mut Tx, rig: &str, limit: u32) -> Result<Vec<BenchOpRecord>, StoreError> {
    let rows =
        tx.all(&format!("SELECT {COLUMNS} FROM bench_ops WHERE rig = $1 ORDER BY id DESC LIMIT $2"), args![rig, i64::from(limit)]).await?;
    rows.iter().map(record).collect()
}

/// Whether `holder` still holds `rig`'s reservation under `fencing` at `now`: what a
/// console session is kept open by.
pub(super) async fn holds(
    tx: &mut Tx,
    rig: &str,
    holder: &str,
    fencing: FencingToken,
    now: UnixMillis,
) -> Result<Option<String>, StoreError> {
    Ok(match reservation_of(tx, rig).await? {
        None => Some(format!("the reservation of rig {rig} ended")),
        Some(r) if r.fencing != fencing || r.holder != holder => Some(format!("rig {rig} passed to {} under a new reservation", r.holder)),
        Some(r) if r.until <= now => Some(format!("the reservation of rig {rig} expired")),
        Some(_) => None,
    })
}
