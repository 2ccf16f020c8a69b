//! Dashboard sessions: a person logs in with their password and gets a session
//! cookie; the store keeps its SHA-256, the form token that guards its changes, and
//! its end. A disabled user's sessions end with them; logging out ends one.

use proofrig_proto::api::Role;
use proofrig_proto::ids::UnixMillis;
use serde_json::json;

use super::db::{args, Tx};
use super::{audit, from_ms, ms, Ctx, StoreError};

/// What a login checks a password against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub role: Role,
    /// The argon2 PHC string; `None`: this user has no password (API tokens only).
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires_at: UnixMillis,
}

pub(super) async fn login(tx: &mut Tx, user: &str) -> Result<Option<Login>, StoreError> {
    let row = tx.one("SELECT role, password_hash, disabled_at FROM users WHERE name = $1", args![user]).await?;
    row.map(|r| {
        Ok(Login {
            role: Role::parse(&r.text(0)?).map_err(StoreError::Corrupt)?,
            password_hash: r.opt_text(1)?,
            disabled: r.opt_int(2)?.is_some(),
        })
    })
    .transpose()
}

pub(super) async fn start(tx: &mut Tx, sha256: &str, user: &str, csrf: &str, expires_at: UnixMillis, ctx: &Ctx) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO web_sessions (sha256, user_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        args![sha256, user, csrf, ms(ctx.now), ms(expires_at)],
    )
    .await?;
    audit::record(tx, ctx, "session.start", &format!("user {user}"), json!({ "expires_at": expires_at.0 })).await
}

pub(super) async fn check(tx: &mut Tx, sha256: &str, now: UnixMillis) -> Result<Option<Session>, StoreError> {
    let row = tx
        .one(
            "SELECT s.user_name, u.role, s.csrf, s.expires_at FROM web_sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.sha256 = $1 AND s.ended_at IS NULL AND u.disabled_at IS NULL AND s.expires_at > $2",
            args![sha256, ms(now)],
        )
        .await?;
    row.map(|r| {
        Ok(Session {
            user: r.text(0)?,
            role: Role::parse(&r.text(1)?).map_err(StoreError::Corrupt)?,
            csrf: r.text(2)?,
            expires_at: from_ms(r.int(3)?),
        })
    })
    .transpose()
}

pub(super) async fn end(tx: &mut Tx, sha256: &str, ctx: &Ctx) -> Result<(), StoreError> {
    if tx.exec("UPDATE web_sessions SET ended_at = $1 WHERE sha256 = $2 AND ended_at IS NULL", args![ms(ctx.now), sha256]).await? > 0 {
        audit::record(tx, ctx, "session.end", &format!("user {}", ctx.who), json!({})).await?;
    }
    Ok(())
}

/// A login refused (wrong password, no such user, disabled): on record, so a guessing
/// attack shows in the audit log.
pub(super) async fn refused(tx: &mut Tx, ctx: &Ctx) -> Result<(), StoreError> {
    audit::record(tx, ctx, "session.refused", &format!("user {}", ctx.who), json!({})).await
}
