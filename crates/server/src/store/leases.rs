//! Leases, fencing tokens and reservations: every hold on a rig ends, on its own if
//! its holder goes quiet, and the one that comes after it carries a larger token.
//!
//! labgrid's locks never expired (#1739, #1809) and were all lost when its
//! coordinator restarted (#947). Here a lease is a row with an expiry, named by the
//! fencing token it was granted under; tokens come from one sequence in the
//! database ([`mint`]), so they only grow, across restarts too. A renewal under a
//! token whose lease is gone is refused and says why ([`LeaseRefused`]): stale (a
//! newer token was issued for the rig), ended, lapsed, or not the caller's. The
//! reaper ([`reap`]) ends what ran out, each end settling the rig and writing its
//! audit record in the same transaction. A lab host's heartbeat ([`heartbeat`])
//! renews the job leases it holds.

use std::time::Duration;

use proofrig_proto::api::{JobState, ReservationView, RigState};
use proofrig_proto::ids::{FencingToken, JobId, LabHostId, UnixMillis};
use proofrig_proto::labhost::{HeartbeatAnswer, Lease, LeaseLapsed, LeaseRenewed};
use proofrig_proto::timing::{JOB_LEASE, JOB_LOST_AFTER, LABHOST_OFFLINE_AFTER, RESERVATION_DEFAULT};
use serde_json::json;

use super::db::{args, Tx};
use super::{attempt_no, audit, from_ms, id, job_state_name, ms, rigs, Ctx, LeaseKind, LeaseRecord, LeaseRefused, Reaped, StoreError};

pub(super) fn token(v: i64) -> FencingToken {
    FencingToken(id(v))
}

pub(super) fn token_arg(t: FencingToken) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

pub(super) async fn last_issued(tx: &mut Tx) -> Result<FencingToken, StoreError> {
    match tx.one("SELECT last_issued FROM fencing WHERE id = 1", args![]).await? {
        Some(row) => Ok(token(row.int(0)?)),
        None => Err(StoreError::Corrupt("the fencing sequence's row is missing".into())),
    }
}

/// The next `n` fencing tokens, in increasing order. On PostgreSQL the sequence's row
/// stays locked until commit, so tokens are also committed in increasing order.
pub(super) async fn mint(tx: &mut Tx, n: usize) -> Result<Vec<FencingToken>, StoreError> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let row = tx.one("UPDATE fencing SET last_issued = last_issued + $1 WHERE id = 1 RETURNING last_issued", args![n]).await?;
    let last = row.ok_or_else(|| StoreError::Corrupt("the fencing sequence's row is missing".into()))?.int(0)?;
    Ok((last - n + 1..=last).map(token).collect())
}

/// Record `token` as the newest issued for `rig`.
pub(super) async fn issued_for(tx: &mut Tx, rig: &str, token: FencingToken) -> Result<(), StoreError> {
    tx.exec("UPDATE rigs SET last_fencing = $1 WHERE name = $2", args![token_arg(token), rig]).await?;
    Ok(())
}

pub(super) async fn renew(tx: &mut Tx, holder: &str, fencing: FencingToken, ctx: &Ctx) -> Result<Lease, StoreError> {
    let sql = format!(
        "SELECT l.kind, l.rig, l.holder, l.expires_at, r.labhost, a.state FROM leases l JOIN rigs r ON r.name = l.rig \
         LEFT JOIN attempts a ON a.job = l.job AND a.attempt = l.attempt WHERE l.fencing = $1{}",
        tx.for_update_of("l")
    );
    let Some(row) = tx.one(&sql, args![token_arg(fencing)]).await? else {
        return Err(why_not_live(tx, fencing).await?.into());
    };
    if row.opt_text(5)?.as_deref() == Some("cancelled") {
        // Held only until its lab host stops the run (see `jobs::cancel`): never renewed.
        return Err(why_not_live(tx, fencing).await?.into());
    }
    let (kind, rig, lease_holder, expires_at, labhost) = (row.text(0)?, row.text(1)?, row.text(2)?, from_ms(row.int(3)?), row.text(4)?);
    let may = lease_holder == holder || (kind == "reservation" && labhost == holder);
    if !may {
        return Err(LeaseRefused::NotHolder { rig, presented: fencing, holder: lease_holder, presenter: holder.to_string() }.into());
    }
    if expires_at <= ctx.now {
        return Err(LeaseRefused::Lapsed { rig, presented: fencing, expired_at: expires_at }.into());
    }
    if kind != "job" {
        // A reservation ends when its holder said; only they extend it.
        return Ok(Lease { expires_at, valid_for_ms: expires_at.0 - ctx.now.0 });
    }
    let expires_at = ctx.now.plus(JOB_LEASE);
    tx.exec(
        "UPDATE leases SET renewed_at = $1, expires_at = $2 WHERE fencing = $3",
        args![ms(ctx.now), ms(expires_at), token_arg(fencing)],
    )
    .await?;
    Ok(Lease { expires_at, valid_for_ms: JOB_LEASE.as_millis() as u64 })
}

/// A lab host's heartbeat: it is online (the audit log records when it comes back),
/// and each lease it names is renewed or reported lapsed with the reason. The cheap
/// path: one row updated, one per lease (labgrid #499, #1100: heartbeats starved by
/// a busy coordinator).
pub(super) async fn heartbeat(tx: &mut Tx, labhost: &LabHostId, tokens: &[FencingToken], ctx: &Ctx) -> Result<HeartbeatAnswer, StoreError> {
    let was_online = rigs::labhost_online_flag(tx, labhost).await?;
    tx.exec("UPDATE labhosts SET last_heartbeat = $1, online = 1 WHERE id = $2", args![ms(ctx.now), &labhost.0]).await?;
    if !was_online {
        audit::record(tx, ctx, "labhost.online", &labhost.to_string(), json!({ "reason": "heartbeat" })).await?;
    }
    let mut answer = HeartbeatAnswer { renewed: Vec::new(), lapsed: Vec::new() };
    for &fencing in tokens {
        match renew(tx, &labhost.0, fencing, ctx).await {
            Ok(lease) => answer.renewed.push(LeaseRenewed { fencing, lease }),
            Err(StoreError::Lease(refused)) => answer.lapsed.push(LeaseLapsed { fencing, reason: refused.to_string() }),
            Err(e) => return Err(e),
        }
    }
    release_stopped_cancels(tx, labhost, tokens, ctx).await?;
    Ok(answer)
}

/// The leases of this lab host's cancelled runs that its heartbeat no longer names:
/// the run stopped, so its rig is free.
async fn release_stopped_cancels(tx: &mut Tx, labhost: &LabHostId, named: &[FencingToken], ctx: &Ctx) -> Result<(), StoreError> {
    let sql = "SELECT l.fencing, l.rig, l.job, l.attempt FROM leases l JOIN attempts a ON a.job = l.job AND a.attempt = l.attempt \
               WHERE l.kind = 'job' AND l.holder = $1 AND a.state = 'cancelled' ORDER BY l.fencing";
    for row in tx.all(sql, args![&labhost.0]).await? {
        let fencing = token(row.int(0)?);
        if named.contains(&fencing) {
            continue;
        }
        let (rig, job, attempt) = (row.text(1)?, row.int(2)?, row.int(3)?);
        tx.exec("DELETE FROM leases WHERE fencing = $1", args![token_arg(fencing)]).await?;
        rigs::settle(tx, &rig, &format!("job {job} attempt {attempt} was cancelled and its lab host no longer runs it"), ctx).await?;
    }
    Ok(())
}

/// Why `fencing` names no live lease.
pub(super) async fn why_not_live(tx: &mut Tx, fencing: FencingToken) -> Result<LeaseRefused, StoreError> {
    let t = token_arg(fencing);
    let (rig, how) = if let Some(row) = tx.one("SELECT rig, job, attempt, state FROM attempts WHERE fencing = $1", args![t]).await? {
        (row.text(0)?, format!("job {} attempt {} is {}", row.int(1)?, row.int(2)?, row.text(3)?))
    } else if let Some(row) = tx.one("SELECT rig, end_reason FROM reservations WHERE fencing = $1", args![t]).await? {
        (row.text(0)?, format!("reservation {}", row.opt_text(1)?.unwrap_or_else(|| "ended".into())))
    } else {
        return Ok(LeaseRefused::Unknown { presented: fencing });
    };
    let newest = match tx.one("SELECT last_fencing FROM rigs WHERE name = $1", args![&rig]).await? {
        Some(row) => token(row.int(0)?),
        None => return Err(StoreError::Corrupt(format!("{fencing} was issued for rig {rig}, which is not stored"))),
    };
    Ok(match newest > fencing {
        true => LeaseRefused::Stale { rig, presented: fencing, newest },
        false => LeaseRefused::Ended { rig, presented: fencing, how },
    })
}

pub(super) async fn reap(tx: &mut Tx, ctx: &Ctx) -> Result<Reaped, StoreError> {
    let mut reaped = Reaped::default();
    reap_jobs(tx, ctx, &mut reaped).await?;
    let sql = format!(
        "SELECT fencing, rig, holder, expires_at FROM leases WHERE kind = 'reservation' AND expires_at <= $1 ORDER BY fencing{}",
        tx.skip_locked("leases")
    );
    for row in tx.all(&sql, args![ms(ctx.now)]).await? {
        let view = ReservationView { fencing: token(row.int(0)?), rig: row.text(1)?, holder: row.text(2)?, until: from_ms(row.int(3)?) };
        end_reservation(tx, &view, "expired", "reservation.expire", ctx).await?;
        reaped.expired.push(view);
    }
    let silent_since = ms(ctx.now).saturating_sub(LABHOST_OFFLINE_AFTER.as_millis() as i64);
    let sql = format!(
        "SELECT id FROM labhosts WHERE online = 1 AND (last_heartbeat IS NULL OR last_heartbeat <= $1) ORDER BY id{}",
        tx.skip_locked("labhosts")
    );
    for row in tx.all(&sql, args![silent_since]).await? {
        let host = LabHostId(row.text(0)?);
        tx.exec("UPDATE labhosts SET online = 0 WHERE id = $1", args![&host.0]).await?;
        audit::record(
            tx,
            ctx,
            "labhost.offline",
            &host.to_string(),
            json!({ "reason": format!("no heartbeat for {}s", LABHOST_OFFLINE_AFTER.as_secs()) }),
        )
        .await?;
        reaped.offline.push(host);
    }
    Ok(reaped)
}

/// Jobs whose lease nobody renewed for [`JOB_LOST_AFTER`]: lost (INFRA), the rig freed.
/// The rig is held from the lease's lapse until then: the lab host, which gave up the
/// lease on its own clock first, may still be running the aborted run's restore steps.
async fn reap_jobs(tx: &mut Tx, ctx: &Ctx, reaped: &mut Reaped) -> Result<(), StoreError> {
    let renewed_before = ms(ctx.now).saturating_sub(JOB_LOST_AFTER.as_millis() as i64);
    let sql = format!(
        "SELECT fencing, rig, job, attempt, holder, renewed_at FROM leases WHERE kind = 'job' AND renewed_at <= $1 ORDER BY fencing{}",
        tx.skip_locked("leases")
    );
    for row in tx.all(&sql, args![renewed_before]).await? {
        let (fencing, rig, job, attempt, holder, renewed_at) =
            (token(row.int(0)?), row.text(1)?, row.opt_int(2)?.unwrap_or(0), row.opt_int(3)?.unwrap_or(0), row.text(4)?, row.int(5)?);
        let reason = format!(
            "INFRA: lost; lab host {holder} last renewed the lease of {fencing} at {renewed_at} ms and stayed silent {}s",
            JOB_LOST_AFTER.as_secs()
        );
        let changed = tx
            .exec(
                "UPDATE attempts SET state = 'lost', reason = $1, updated_at = $2 WHERE job = $3 AND attempt = $4 AND state IN ('assigned', 'running')",
                args![reason.as_str(), ms(ctx.now), job, attempt],
            )
            .await?;
        tx.exec("DELETE FROM leases WHERE fencing = $1", args![token_arg(fencing)]).await?;
        rigs::settle(tx, &rig, &format!("job {job} attempt {attempt} lost: its lab host stopped renewing its lease"), ctx).await?;
        if changed == 0 {
            // A cancelled run's held lease whose lab host went silent: the rig is freed
            // (its state change is audited); the attempt stays cancelled.
            continue;
        }
        super::health::after_failure(tx, &rig, ctx).await?;
        audit::record(
            tx,
            ctx,
            "job.lost",
            &format!("job {job}"),
            json!({ "attempt": attempt, "rig": rig, "fencing": fencing.0, "reason": reason, "state": job_state_name(JobState::Lost) }),
        )
        .await?;
        reaped.lost.push((JobId(id(job)), attempt_no(attempt), rig));
    }
    Ok(())
}

/// End a reservation: its record, its lease, its rig's state, the audit log.
async fn end_reservation(tx: &mut Tx, r: &ReservationView, how: &str, action: &str, ctx: &Ctx) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE reservations SET ended_at = $1, ended_by = $2, end_reason = $3 WHERE fencing = $4 AND ended_at IS NULL",
        args![ms(ctx.now), &ctx.who, how, token_arg(r.fencing)],
    )
    .await?;
    tx.exec("DELETE FROM leases WHERE fencing = $1", args![token_arg(r.fencing)]).await?;
    rigs::settle(tx, &r.rig, &format!("reservation of {} {how}", r.holder), ctx).await?;
    audit::record(
        tx,
        ctx,
        action,
        &format!("rig {}", r.rig),
        json!({ "holder": r.holder, "fencing": r.fencing.0, "until": r.until.0, "how": how }),
    )
    .await
}

fn check_length(rig: &str, length: Duration, max: Duration) -> Result<(), StoreError> {
    if length.is_zero() {
        return Err(StoreError::Invalid(format!("rig {rig}: a reservation needs a length of at least a minute")));
    }
    if length > max {
        return Err(StoreError::Invalid(format!(
            "rig {rig}: {} minutes asked, a reservation runs at most {} minutes from now; ask for less, and extend it while you work",
            length.as_secs() / 60,
            max.as_secs() / 60
        )));
    }
    Ok(())
}

/// The reservation holding `rig`, if any (also one past its end not yet reaped).
pub(super) async fn reservation_of(tx: &mut Tx, rig: &str) -> Result<Option<ReservationView>, StoreError> {
    let row = tx.one("SELECT fencing, holder, expires_at FROM leases WHERE rig = $1 AND kind = 'reservation'", args![rig]).await?;
    row.map(|row| {
        Ok(ReservationView { rig: rig.to_string(), fencing: token(row.int(0)?), holder: row.text(1)?, until: from_ms(row.int(2)?) })
    })
    .transpose()
}

pub(super) async fn reserve(
    tx: &mut Tx,
    rig: &str,
    length: Option<Duration>,
    max: Duration,
    ctx: &Ctx,
) -> Result<ReservationView, StoreError> {
    let length = length.unwrap_or(RESERVATION_DEFAULT.min(max));
    check_length(rig, length, max)?;
    rigs::lock_rig(tx, rig).await?;
    match reservation_of(tx, rig).await? {
        Some(r) if r.until <= ctx.now => end_reservation(tx, &r, "expired", "reservation.expire", ctx).await?,
        Some(r) if r.holder == ctx.who => return set_end(tx, r, length, ctx).await,
        Some(r) => {
            return Err(StoreError::Conflict(format!(
                "rig {rig} is reserved by {} until {}; ask them to release it, or wait",
                r.holder,
                r.until.rfc3339()
            )))
        }
        None => {}
    }
    let (state, reason) = rigs::lock_rig(tx, rig).await?;
    if state != RigState::Idle {
        return Err(StoreError::Conflict(format!(
            "rig {rig} is {} ({reason}); only an idle rig can be reserved",
            super::rig_state_name(state)
        )));
    }
    let fencing = mint(tx, 1).await?[0];
    let until = ctx.now.plus(length);
    tx.exec(
        "INSERT INTO leases (fencing, kind, rig, holder, job, attempt, granted_at, renewed_at, expires_at) VALUES ($1, 'reservation', $2, $3, NULL, NULL, $4, $4, $5)",
        args![token_arg(fencing), rig, &ctx.who, ms(ctx.now), ms(until)],
    )
    .await?;
    tx.exec(
        "INSERT INTO reservations (fencing, rig, holder, started_at, until_at) VALUES ($1, $2, $3, $4, $5)",
        args![token_arg(fencing), rig, &ctx.who, ms(ctx.now), ms(until)],
    )
    .await?;
    issued_for(tx, rig, fencing).await?;
    rigs::settle(tx, rig, &format!("reserved by {} until {}", ctx.who, until.rfc3339()), ctx).await?;
    audit::record(
        tx,
        ctx,
        "reservation.start",
        &format!("rig {rig}"),
        json!({ "holder": ctx.who, "fencing": fencing.0, "until": until.0 }),
    )
    .await?;
    Ok(ReservationView { rig: rig.to_string(), holder: ctx.who.clone(), until, fencing })
}

pub(super) async fn extend(tx: &mut Tx, rig: &str, length: Duration, max: Duration, ctx: &Ctx) -> Result<ReservationView, StoreError> {
    check_length(rig, length, max)?;
    let r = own_reservation(tx, rig, ctx).await?;
    if r.until <= ctx.now {
        return Err(LeaseRefused::Lapsed { rig: rig.to_string(), presented: r.fencing, expired_at: r.until }.into());
    }
    set_end(tx, r, length, ctx).await
}

/// Move a live reservation's end to `length` from now.
async fn set_end(tx: &mut Tx, r: ReservationView, length: Duration, ctx: &Ctx) -> Result<ReservationView, StoreError> {
    let until = ctx.now.plus(length);
    tx.exec("UPDATE leases SET expires_at = $1, renewed_at = $2 WHERE fencing = $3", args![ms(until), ms(ctx.now), token_arg(r.fencing)])
        .await?;
    tx.exec("UPDATE reservations SET until_at = $1 WHERE fencing = $2", args![ms(until), token_arg(r.fencing)]).await?;
    audit::record(
        tx,
        ctx,
        "reservation.extend",
        &format!("rig {}", r.rig),
        json!({ "holder": r.holder, "fencing": r.fencing.0, "from": r.until.0, "to": until.0 }),
    )
    .await?;
    Ok(ReservationView { until, ..r })
}

/// The caller's reservation of `rig`, its row locked.
async fn own_reservation(tx: &mut Tx, rig: &str, ctx: &Ctx) -> Result<ReservationView, StoreError> {
    rigs::lock_rig(tx, rig).await?;
    match reservation_of(tx, rig).await? {
        None => Err(StoreError::NotFound(format!("rig {rig} is not reserved; reserve it first"))),
        Some(r) if r.holder != ctx.who => Err(StoreError::Conflict(format!(
            "rig {rig} is reserved by {}, not {}; only its holder extends or releases it",
            r.holder, ctx.who
        ))),
        Some(r) => Ok(r),
    }
}

pub(super) async fn release(tx: &mut Tx, rig: &str, ctx: &Ctx) -> Result<(), StoreError> {
    let r = own_reservation(tx, rig, ctx).await?;
    end_reservation(tx, &r, &format!("released by {}", ctx.who), "reservation.release", ctx).await
}

pub(super) async fn list(tx: &mut Tx) -> Result<Vec<LeaseRecord>, StoreError> {
    let rows = tx
        .all("SELECT fencing, kind, rig, holder, job, attempt, granted_at, renewed_at, expires_at FROM leases ORDER BY fencing", args![])
        .await?;
    rows.iter()
        .map(|r| {
            let job = match (r.opt_int(4)?, r.opt_int(5)?) {
                (Some(job), Some(attempt)) => Some((JobId(id(job)), attempt_no(attempt))),
                _ => None,
            };
            Ok(LeaseRecord {
                fencing: token(r.int(0)?),
                kind: if r.text(1)? == "job" { LeaseKind::Job } else { LeaseKind::Reservation },
                rig: r.text(2)?,
                holder: r.text(3)?,
                job,
                granted_at: from_ms(r.int(6)?),
                renewed_at: from_ms(r.int(7)?),
                expires_at: from_ms(r.int(8)?),
            })
        })
        .collect()
}

/// The lease a job runs under, as the lab host is told.
pub(super) fn job_lease(expires_at: UnixMillis) -> Lease {
    Lease { expires_at, valid_for_ms: JOB_LEASE.as_millis() as u64 }
}
