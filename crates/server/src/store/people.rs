//! People and lab-host enrollment in the store: users with their role, the SHA-256 of
//! their API tokens, and the one-time enrollment tokens of lab hosts.
//!
//! Nothing here sees a secret: the API layer hashes a password (argon2) or a token
//! (SHA-256) before it reaches the store, and shows the token once. Every change
//! writes its audit record in its own transaction, naming the user or lab host but
//! never a token or hash.

use proofrig_proto::api::{Role, UserView};
use proofrig_proto::ids::UnixMillis;
use serde_json::json;

use super::db::{args, Tx};
use super::{audit, from_ms, ms, Ctx, StoreError};

/// What a presented API token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token of this user, who has this role.
    Valid { user: String, role: Role },
    /// A token the server issued, past its end.
    Expired { user: String, expired_at: UnixMillis },
    /// Not a token this server issued.
    Unknown,
}

/// A user to add, with the argon2 hash of their password (if any) and the SHA-256 of
/// their first API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUserRecord {
    pub name: String,
    pub role: Role,
    pub password_hash: Option<String>,
    pub token_sha256: String,
    pub token_expires_at: UnixMillis,
}

fn role(name: &str) -> Result<Role, StoreError> {
    Role::parse(name).map_err(StoreError::Corrupt)
}

pub(super) async fn count_users(tx: &mut Tx) -> Result<i64, StoreError> {
    let row = tx.one("SELECT COUNT(*) FROM users", args![]).await?;
    row.map(|r| r.int(0)).transpose().map(|n| n.unwrap_or(0))
}

pub(super) async fn add_user(tx: &mut Tx, user: &NewUserRecord, ctx: &Ctx) -> Result<(), StoreError> {
    if tx.one("SELECT name FROM users WHERE name = $1", args![&user.name]).await?.is_some() {
        return Err(StoreError::Conflict(format!("user {} exists already; pick another name, or mint them a token instead", user.name)));
    }
    tx.exec(
        "INSERT INTO users (name, role, password_hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5)",
        args![&user.name, user.role.name(), user.password_hash.as_deref(), ms(ctx.now), &ctx.who],
    )
    .await?;
    let details = json!({ "role": user.role.name(), "password": user.password_hash.is_some() });
    audit::record(tx, ctx, "user.add", &format!("user {}", user.name), details).await?;
    add_token(tx, &user.name, &user.token_sha256, user.token_expires_at, ctx).await
}

pub(super) async fn add_token(tx: &mut Tx, user: &str, sha256: &str, expires_at: UnixMillis, ctx: &Ctx) -> Result<(), StoreError> {
    if tx.one("SELECT name FROM users WHERE name = $1", args![user]).await?.is_none() {
        return Err(StoreError::NotFound(format!("no user {user}; add them first (POST /api/users)")));
    }
    tx.exec(
        "INSERT INTO api_tokens (sha256, user_name, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        args![sha256, user, ms(ctx.now), ms(expires_at)],
    )
    .await?;
    audit::record(tx, ctx, "token.create", &format!("user {user}"), json!({ "expires_at": expires_at.0 })).await
}

pub(super) async fn check_token(tx: &mut Tx, sha256: &str, now: UnixMillis) -> Result<TokenCheck, StoreError> {
    let sql = "SELECT u.name, u.role, t.expires_at FROM api_tokens t JOIN users u ON u.name = t.user_name WHERE t.sha256 = $1";
    let Some(row) = tx.one(sql, args![sha256]).await? else { return Ok(TokenCheck::Unknown) };
    let (user, expires_at) = (row.text(0)?, from_ms(row.int(2)?));
    match now < expires_at {
        true => Ok(TokenCheck::Valid { user, role: role(&row.text(1)?)? }),
        false => Ok(TokenCheck::Expired { user, expired_at: expires_at }),
    }
}

pub(super) async fn list_users(tx: &mut Tx) -> Result<Vec<UserView>, StoreError> {
    let rows = tx.all("SELECT name, role, created_at, created_by FROM users ORDER BY name", args![]).await?;
    rows.iter()
        .map(|r| Ok(UserView { name: r.text(0)?, role: role(&r.text(1)?)?, created_at: from_ms(r.int(2)?), created_by: r.text(3)? }))
        .collect()
}

pub(super) async fn add_enrollment(tx: &mut Tx, labhost: &str, sha256: &str, expires_at: UnixMillis, ctx: &Ctx) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO enrollment_tokens (sha256, labhost, created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)",
        args![sha256, labhost, ms(ctx.now), &ctx.who, ms(expires_at)],
    )
    .await?;
    audit::record(tx, ctx, "enrollment.create", &format!("lab host {labhost}"), json!({ "expires_at": expires_at.0 })).await
}
