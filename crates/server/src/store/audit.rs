//! The audit log: who did what, when, from where, with the details.
//!
//! Every operation that changes state calls [`record`] inside its own transaction,
//! so the log and the state never disagree: a change that rolls back leaves no
//! record, and none is made without one. The table is append-only; the database
//! itself refuses to update or delete a row (a trigger), so a record, once
//! committed, stays as written.

use super::db::{args, Tx};
use super::{from_json, from_ms, id, ms, to_json, AuditRecord, Ctx, StoreError};

/// Append one record: `action` (`job.submit`, `rig.state`, ...) on `subject` (`job 3`,
/// `rig bench-3`), by `ctx.who` from `ctx.origin` at `ctx.now`.
pub(super) async fn record(tx: &mut Tx, ctx: &Ctx, action: &str, subject: &str, details: serde_json::Value) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO audit (happened_at, who, origin, action, subject, details) VALUES ($1, $2, $3, $4, $5, $6)",
        args![ms(ctx.now), &ctx.who, &ctx.origin, action, subject, to_json(&details)?],
    )
    .await?;
    Ok(())
}

pub(super) async fn list(tx: &mut Tx) -> Result<Vec<AuditRecord>, StoreError> {
    let rows = tx.all("SELECT id, happened_at, who, origin, action, subject, details FROM audit ORDER BY id", args![]).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                id: id(r.int(0)?),
                at: from_ms(r.int(1)?),
                who: r.text(2)?,
                origin: r.text(3)?,
                action: r.text(4)?,
                subject: r.text(5)?,
                details: from_json(&r.text(6)?, "audit details")?,
            })
        })
        .collect()
}
