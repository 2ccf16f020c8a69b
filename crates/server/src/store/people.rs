//! People and lab-host enrollment in the store: users with their role, the SHA-256 of
//! their API tokens, and the one-time enrollment tokens of lab hosts.
//!
//! Nothing here sees a secret: the API layer hashes a password (argon2) or a token
//! (SHA-256) before it reaches the store, and shows the token once. Every change
//! writes its audit record in its own transaction, naming the user or lab host but
//! never a token or hash.

use proofrig_proto::api::{Role, UserView};
use proofrig_proto::ids::{LabHostId, UnixMillis};
use serde_json::json;

use super::db::{args, Tx};
use super::{audit, from_ms, ms, Ctx, NewLabHost, StoreError};

/// What a presented API token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token of this user, who has this role.
    Valid { user: String, role: Role },
    /// A token the server issued, past its end.
    Expired { user: String, expired_at: UnixMillis },
    /// A token revoked, or of a user disabled, by an admin.
    Revoked { user: String },
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
    let sql = "SELECT u.name, u.role, t.expires_at, t.revoked_at, u.disabled_at FROM api_tokens t JOIN users u ON u.name = t.user_name WHERE t.sha256 = $1";
    let Some(row) = tx.one(sql, args![sha256]).await? else { return Ok(TokenCheck::Unknown) };
    let (user, expires_at) = (row.text(0)?, from_ms(row.int(2)?));
    if row.opt_int(3)?.is_some() || row.opt_int(4)?.is_some() {
        return Ok(TokenCheck::Revoked { user });
    }
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

/// Why an enrollment token was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefused {
    #[error("this enrollment token is not one this server issued; ask an admin for one (`proofrig labhost token NAME`)")]
    Unknown,
    #[error("this enrollment token for lab host {labhost} expired; ask an admin for a new one (`proofrig labhost token {labhost}`)")]
    Expired { labhost: String },
    #[error(
        "this enrollment token for lab host {labhost} was used already, by another key; a token works once: ask an admin for a new one"
    )]
    Used { labhost: String },
}

/// Take a one-time enrollment token (its SHA-256) for a lab host with this public
/// key: the lab host is enrolled under the name the token was minted for. Presented
/// again with the same key (a resend), the same lab host is answered; with another
/// key, refused. `Ok(Err(_))`: refused, nothing changed.
pub(super) async fn take_enrollment(
    tx: &mut Tx,
    sha256: &str,
    public_key_pem: &str,
    ctx: &Ctx,
) -> Result<Result<LabHostId, EnrollRefused>, StoreError> {
    let sql = format!("SELECT labhost, expires_at, used_at, used_key FROM enrollment_tokens WHERE sha256 = $1{}", tx.for_update());
    let Some(row) = tx.one(&sql, args![sha256]).await? else {
        return Ok(Err(EnrollRefused::Unknown));
    };
    let (labhost, expires_at, used_at, used_key) = (row.text(0)?, from_ms(row.int(1)?), row.opt_int(2)?, row.opt_text(3)?);
    match (used_at, used_key) {
        (Some(_), Some(key)) if key == public_key_pem => return Ok(Ok(LabHostId(labhost))),
        (Some(_), _) => return Ok(Err(EnrollRefused::Used { labhost })),
        (None, _) if expires_at <= ctx.now => return Ok(Err(EnrollRefused::Expired { labhost })),
        (None, _) => {}
    }
    tx.exec("UPDATE enrollment_tokens SET used_at = $1, used_key = $2 WHERE sha256 = $3", args![ms(ctx.now), public_key_pem, sha256])
        .await?;
    let host = NewLabHost { id: LabHostId(labhost.clone()), name: labhost, public_key_pem: public_key_pem.to_string() };
    super::rigs::enroll(tx, &host, ctx).await?;
    Ok(Ok(host.id))
}

/// Disable a user: every token of theirs stops working at once; they stay in the
/// store, for the record of what they did.
pub(super) async fn disable_user(tx: &mut Tx, user: &str, ctx: &Ctx) -> Result<(), StoreError> {
    if user == ctx.who {
        return Err(StoreError::Invalid(format!("{user} cannot disable themselves; another admin must")));
    }
    let changed = tx.exec("UPDATE users SET disabled_at = $1 WHERE name = $2 AND disabled_at IS NULL", args![ms(ctx.now), user]).await?;
    if changed == 0 {
        return match tx.one("SELECT name FROM users WHERE name = $1", args![user]).await? {
            Some(_) => Err(StoreError::Conflict(format!("user {user} is disabled already"))),
            None => Err(StoreError::NotFound(format!("no user {user} (GET /api/users lists them)"))),
        };
    }
    audit::record(tx, ctx, "user.disable", &format!("user {user}"), json!({})).await
}

/// Revoke one token (its SHA-256): the caller's own, or any as an admin.
pub(super) async fn revoke_token(tx: &mut Tx, sha256: &str, ctx: &Ctx) -> Result<(), StoreError> {
    let Some(row) = tx.one("SELECT user_name FROM api_tokens WHERE sha256 = $1 AND revoked_at IS NULL", args![sha256]).await? else {
        return Err(StoreError::NotFound("no such live token".into()));
    };
    let user = row.text(0)?;
    tx.exec("UPDATE api_tokens SET revoked_at = $1 WHERE sha256 = $2", args![ms(ctx.now), sha256]).await?;
    audit::record(tx, ctx, "token.revoke", &format!("user {user}"), json!({})).await
}

/// Revoke a lab host: its key is no longer accepted, and its rigs go offline.
pub(super) async fn revoke_labhost(tx: &mut Tx, labhost: &LabHostId, ctx: &Ctx) -> Result<(), StoreError> {
    let changed = tx
        .exec("UPDATE labhosts SET revoked_at = $1, online = 0 WHERE id = $2 AND revoked_at IS NULL", args![ms(ctx.now), &labhost.0])
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("{labhost} is not an enrolled, unrevoked lab host")));
    }
    let rigs = tx.all("SELECT name, state FROM rigs WHERE labhost = $1", args![&labhost.0]).await?;
    for row in rigs {
        if !matches!(row.text(1)?.as_str(), "offline" | "retired") {
            super::rigs::set_state(
                tx,
                &row.text(0)?,
                proofrig_proto::api::RigState::Offline,
                &format!("{labhost} was revoked by {}", ctx.who),
                ctx,
            )
            .await?;
        }
    }
    audit::record(tx, ctx, "labhost.revoke", &labhost.to_string(), json!({})).await
}
