//! Cutting people and machines off: `proofrig user disable NAME` (admin: every token
//! of theirs stops working; they stay on record), `proofrig labhost revoke NAME`
//! (admin: its key is refused, its rigs go offline), and `proofrig logout` (revoke the
//! token in use, e.g. one that may have leaked).

use reqwest::Method;

use super::client::{Client, Connection};
use super::{Failure, EXIT_OK};

async fn delete(connection: &Connection, path: &[&str], what: &str) -> Result<(), Failure> {
    let client = Client::new(connection)?;
    client.send(Method::DELETE, client.url(path, None), None::<&()>, what).await?;
    Ok(())
}

pub async fn disable_user(name: &str, connection: &Connection) -> Result<u8, Failure> {
    delete(connection, &["api", "users", name], &format!("disabling user {name}")).await?;
    println!("user {name} disabled: none of their tokens works any more");
    Ok(EXIT_OK)
}

pub async fn revoke_labhost(name: &str, connection: &Connection) -> Result<u8, Failure> {
    delete(connection, &["api", "labhosts", name], &format!("revoking lab host {name}")).await?;
    println!("lab host {name} revoked: its key is refused and its rigs are offline; it needs a new enrollment token to come back");
    Ok(EXIT_OK)
}

pub async fn logout(connection: &Connection) -> Result<u8, Failure> {
    delete(connection, &["api", "tokens", "current"], "revoking this token").await?;
    println!("this API token is revoked; ask an admin for a new one (`proofrig user token`)");
    Ok(EXIT_OK)
}
