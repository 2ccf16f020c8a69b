//! Lab hosts and their rigs: enrollment, adverts, and the rule that keeps
//! a rig's state true to its leases.
//!
//! A rig's state is what the scheduler trusts, so it is never set by hand to a value
//! the leases contradict: [`settle`] derives running / reserved / idle from the live
//! leases, and every operation that adds or ends a lease calls it in the same
//! transaction. People only take a rig out of service (maintenance, bad, offline,
//! retired) or put it back; each change lands in the rig's append-only history and
//! the audit log with its reason, time and who.

use std::collections::{BTreeMap, BTreeSet};

use proofrig_proto::advert::RigSummary;
use proofrig_proto::api::{ReservationView, RigState, RigView};
use proofrig_proto::ids::{FencingToken, LabHostId, UnixMillis};
use proofrig_proto::timing::LABHOST_OFFLINE_AFTER;
use serde_json::json;

use super::db::{args, Tx};
use super::{audit, from_json, from_ms, id, ms, rig_state, rig_state_name, to_json, Ctx, NewLabHost, RigStateChange, StoreError};
use crate::scheduler::{Reservation, RigSlot};

pub(super) async fn enroll(tx: &mut Tx, host: &NewLabHost, ctx: &Ctx) -> Result<(), StoreError> {
    if host.id.0.is_empty() || host.public_key_pem.trim().is_empty() {
        return Err(StoreError::Invalid(format!("lab host `{}`: an enrollment needs an id and a public key", host.id.0)));
    }
    if tx.one("SELECT id FROM labhosts WHERE id = $1", args![&host.id.0]).await?.is_some() {
        return Err(StoreError::Conflict(format!(
            "{} is already enrolled; a lab host enrolls once, then authenticates with its key",
            host.id
        )));
    }
    tx.exec(
        "INSERT INTO labhosts (id, name, public_key_pem, enrolled_at, last_heartbeat, online) VALUES ($1, $2, $3, $4, NULL, 0)",
        args![&host.id.0, &host.name, &host.public_key_pem, ms(ctx.now)],
    )
    .await?;
    audit::record(tx, ctx, "labhost.enroll", &host.id.to_string(), json!({ "name": host.name })).await
}

/// Lock a lab host's row (PostgreSQL) and read whether it was online.
pub(super) async fn labhost_online_flag(tx: &mut Tx, labhost: &LabHostId) -> Result<bool, StoreError> {
    let sql = format!("SELECT online FROM labhosts WHERE id = $1{}", tx.for_update());
    match tx.one(&sql, args![&labhost.0]).await? {
        Some(row) => Ok(row.int(0)? == 1),
        None => Err(StoreError::NotFound(format!("{labhost} is not enrolled: enroll it with a token from `proofrig labhost token`"))),
    }
}

pub(super) async fn advertise(tx: &mut Tx, labhost: &LabHostId, summaries: &[RigSummary], ctx: &Ctx) -> Result<(), StoreError> {
    labhost_online_flag(tx, labhost).await?;
    let mut listed = BTreeSet::new();
    for rig in summaries {
        if !listed.insert(rig.rig.as_str()) {
            return Err(StoreError::Invalid(format!(
                "{labhost} advertises rig {} twice; a rig is known by the name in its file: rename one",
                rig.rig
            )));
        }
        advertise_one(tx, labhost, rig, ctx).await?;
    }
    let sql = format!("SELECT name, state FROM rigs WHERE labhost = $1 ORDER BY name{}", tx.for_update());
    for row in tx.all(&sql, args![&labhost.0]).await? {
        let (name, state) = (row.text(0)?, rig_state(&row.text(1)?)?);
        if !listed.contains(name.as_str()) && !matches!(state, RigState::Offline | RigState::Retired) {
            set_state(tx, &name, RigState::Offline, &format!("withdrawn by {labhost}: it no longer advertises it"), ctx).await?;
        }
    }
    Ok(())
}

async fn advertise_one(tx: &mut Tx, labhost: &LabHostId, rig: &RigSummary, ctx: &Ctx) -> Result<(), StoreError> {
    let (devices, roles, tags) = (to_json(&rig.devices)?, to_json(&rig.roles)?, to_json(&rig.tags)?);
    let sql = format!("SELECT labhost, sha256, state, changed_by FROM rigs WHERE name = $1{}", tx.for_update());
    let Some(row) = tx.one(&sql, args![&rig.rig]).await? else {
        tx.exec(
            "INSERT INTO rigs (name, labhost, sha256, devices, roles, tags, state, reason, since, changed_by) VALUES ($1, $2, $3, $4, $5, $6, 'idle', $7, $8, $9)",
            args![&rig.rig, &labhost.0, &rig.sha256, devices, roles, tags, format!("advertised by {labhost}"), ms(ctx.now), &ctx.who],
        )
        .await?;
        record_history(tx, &rig.rig, RigState::Idle, &format!("advertised by {labhost}"), ctx).await?;
        return audit::record(
            tx,
            ctx,
            "rig.advertise",
            &format!("rig {}", rig.rig),
            json!({ "labhost": labhost.0, "sha256": rig.sha256, "roles": rig.roles, "tags": rig.tags }),
        )
        .await;
    };
    let owner = row.text(0)?;
    if owner != labhost.0 {
        return Err(StoreError::Conflict(format!(
            "rig {} is already served by lab host {owner}, not {labhost}; rig names are unique in a lab: rename one rig file",
            rig.rig
        )));
    }
    if row.text(1)? != rig.sha256 {
        tx.exec(
            "UPDATE rigs SET sha256 = $1, devices = $2, roles = $3, tags = $4 WHERE name = $5",
            args![&rig.sha256, devices, roles, tags, &rig.rig],
        )
        .await?;
        audit::record(
            tx,
            ctx,
            "rig.advertise",
            &format!("rig {}", rig.rig),
            json!({ "labhost": labhost.0, "sha256": rig.sha256, "roles": rig.roles, "tags": rig.tags }),
        )
        .await?;
    }
    // Withdrawn by this lab host and listed again: back in service.
    if rig_state(&row.text(2)?)? == RigState::Offline && row.text(3)? == ctx.who {
        let back = in_service_state(tx, &rig.rig).await?;
        set_state(tx, &rig.rig, back, &format!("advertised again by {labhost}"), ctx).await?;
    }
    Ok(())
}

/// Lock a rig's row (PostgreSQL) and read its state and why it is in it.
pub(super) async fn lock_rig(tx: &mut Tx, rig: &str) -> Result<(RigState, String), StoreError> {
    let sql = format!("SELECT state, reason FROM rigs WHERE name = $1{}", tx.for_update());
    match tx.one(&sql, args![rig]).await? {
        Some(row) => Ok((rig_state(&row.text(0)?)?, row.text(1)?)),
        None => Err(StoreError::NotFound(format!("rig {rig} is not known: no lab host advertises it (`proofrig rigs` lists them)"))),
    }
}

/// The state a rig in service is in, by its live leases.
async fn in_service_state(tx: &mut Tx, rig: &str) -> Result<RigState, StoreError> {
    let kinds: Vec<String> =
        tx.all("SELECT kind FROM leases WHERE rig = $1", args![rig]).await?.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?;
    Ok(match () {
        _ if kinds.iter().any(|k| k == "job") => RigState::Running,
        _ if kinds.iter().any(|k| k == "reservation") => RigState::Reserved,
        _ => RigState::Idle,
    })
}

/// After a lease was added or ended: put a rig in service in the state its leases
/// say (`why` is the history's reason). A rig out of service stays as it is.
pub(super) async fn settle(tx: &mut Tx, rig: &str, why: &str, ctx: &Ctx) -> Result<RigState, StoreError> {
    let (current, _) = lock_rig(tx, rig).await?;
    if !matches!(current, RigState::Idle | RigState::Reserved | RigState::Running) {
        return Ok(current);
    }
    let target = in_service_state(tx, rig).await?;
    if target != current {
        set_state(tx, rig, target, why, ctx).await?;
    }
    Ok(target)
}

pub(super) async fn set_state_by_request(
    tx: &mut Tx,
    rig: &str,
    requested: RigState,
    reason: &str,
    ctx: &Ctx,
) -> Result<RigState, StoreError> {
    if reason.trim().is_empty() {
        return Err(StoreError::Invalid(format!("rig {rig}: a state change needs a reason; say why (it is kept in the rig's history)")));
    }
    if matches!(requested, RigState::Reserved | RigState::Running) {
        return Err(StoreError::Invalid(format!(
            "rig {rig}: `{}` is not set by hand; reserve the rig, or let the scheduler run a job on it",
            rig_state_name(requested)
        )));
    }
    let (current, _) = lock_rig(tx, rig).await?;
    let target = match requested {
        RigState::Idle => in_service_state(tx, rig).await?,
        other => other,
    };
    if target != current {
        set_state(tx, rig, target, reason, ctx).await?;
    }
    Ok(target)
}

/// Put a rig in `state`: its row, its history, the audit log.
pub(super) async fn set_state(tx: &mut Tx, rig: &str, state: RigState, reason: &str, ctx: &Ctx) -> Result<(), StoreError> {
    let sql = format!("SELECT state FROM rigs WHERE name = $1{}", tx.for_update());
    let from = match tx.one(&sql, args![rig]).await? {
        Some(row) => row.text(0)?,
        None => return Err(StoreError::NotFound(format!("rig {rig} is not known"))),
    };
    tx.exec(
        "UPDATE rigs SET state = $1, reason = $2, since = $3, changed_by = $4 WHERE name = $5",
        args![rig_state_name(state), reason, ms(ctx.now), &ctx.who, rig],
    )
    .await?;
    record_history(tx, rig, state, reason, ctx).await?;
    audit::record(tx, ctx, "rig.state", &format!("rig {rig}"), json!({ "from": from, "to": rig_state_name(state), "reason": reason })).await
}

async fn record_history(tx: &mut Tx, rig: &str, state: RigState, reason: &str, ctx: &Ctx) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO rig_states (rig, state, reason, changed_at, changed_by) VALUES ($1, $2, $3, $4, $5)",
        args![rig, rig_state_name(state), reason, ms(ctx.now), &ctx.who],
    )
    .await?;
    Ok(())
}

fn online(last_heartbeat: Option<i64>, now: UnixMillis) -> bool {
    last_heartbeat.is_some_and(|t| from_ms(t).plus(LABHOST_OFFLINE_AFTER) > now)
}

/// The rigs as the scheduler sees them, with each rig's lab host. `free_only`: only
/// rigs that can take a job (idle, reserved), locked for this claim on PostgreSQL,
/// passing over those another replica's claim holds.
pub(super) async fn slots(tx: &mut Tx, now: UnixMillis, free_only: bool) -> Result<Vec<(RigSlot, LabHostId)>, StoreError> {
    let (filter, lock) = match free_only {
        true => (" WHERE r.state IN ('idle', 'reserved')", tx.skip_locked("r")),
        false => ("", String::new()),
    };
    let sql = format!(
        "SELECT r.name, r.roles, r.tags, r.state, h.last_heartbeat, v.holder, v.expires_at, r.labhost \
         FROM rigs r JOIN labhosts h ON h.id = r.labhost LEFT JOIN leases v ON v.rig = r.name AND v.kind = 'reservation'{filter} ORDER BY r.name{lock}"
    );
    let mut slots = Vec::new();
    for row in tx.all(&sql, args![]).await? {
        let reservation = match (row.opt_text(5)?, row.opt_int(6)?) {
            (Some(holder), Some(until)) => Some(Reservation { holder, until: from_ms(until) }),
            _ => None,
        };
        let slot = RigSlot {
            name: row.text(0)?,
            roles: from_json(&row.text(1)?, "rig roles")?,
            tags: from_json(&row.text(2)?, "rig tags")?,
            state: rig_state(&row.text(3)?)?,
            labhost_online: online(row.opt_int(4)?, now),
            reservation,
        };
        slots.push((slot, LabHostId(row.text(7)?)));
    }
    Ok(slots)
}

pub(super) async fn list(tx: &mut Tx, now: UnixMillis) -> Result<Vec<RigView>, StoreError> {
    let reservations: BTreeMap<String, ReservationView> = live_reservations(tx).await?.into_iter().map(|r| (r.rig.clone(), r)).collect();
    let sql = "SELECT r.name, r.sha256, r.devices, r.roles, r.tags, r.labhost, h.last_heartbeat, r.state, r.reason, r.since FROM rigs r JOIN labhosts h ON h.id = r.labhost ORDER BY r.name";
    let mut rigs = Vec::new();
    for row in tx.all(sql, args![]).await? {
        let name = row.text(0)?;
        rigs.push(RigView {
            summary: RigSummary {
                rig: name.clone(),
                sha256: row.text(1)?,
                devices: from_json(&row.text(2)?, "rig devices")?,
                roles: from_json(&row.text(3)?, "rig roles")?,
                tags: from_json(&row.text(4)?, "rig tags")?,
            },
            labhost: LabHostId(row.text(5)?),
            labhost_online: online(row.opt_int(6)?, now),
            state: rig_state(&row.text(7)?)?,
            reason: row.text(8)?,
            since: from_ms(row.int(9)?),
            reservation: reservations.get(&name).cloned(),
        });
    }
    Ok(rigs)
}

async fn live_reservations(tx: &mut Tx) -> Result<Vec<ReservationView>, StoreError> {
    let rows = tx.all("SELECT fencing, rig, holder, expires_at FROM leases WHERE kind = 'reservation' ORDER BY rig", args![]).await?;
    rows.iter()
        .map(|r| {
            Ok(ReservationView { fencing: FencingToken(id(r.int(0)?)), rig: r.text(1)?, holder: r.text(2)?, until: from_ms(r.int(3)?) })
        })
        .collect()
}

pub(super) async fn history(tx: &mut Tx, rig: &str) -> Result<Vec<RigStateChange>, StoreError> {
    let rows = tx.all("SELECT state, reason, changed_at, changed_by FROM rig_states WHERE rig = $1 ORDER BY id", args![rig]).await?;
    rows.iter()
        .map(|r| Ok(RigStateChange { state: rig_state(&r.text(0)?)?, reason: r.text(1)?, at: from_ms(r.int(2)?), by: r.text(3)? }))
        .collect()
}

/// The public key (SPKI PEM) a lab host enrolled with; `None` if it is not enrolled,
/// or was revoked.
pub(super) async fn labhost_key(tx: &mut Tx, labhost: &LabHostId) -> Result<Option<String>, StoreError> {
    tx.one("SELECT public_key_pem FROM labhosts WHERE id = $1 AND revoked_at IS NULL", args![&labhost.0])
        .await?
        .map(|row| row.text(0))
        .transpose()
}
