//! `proofrig user add NAME --role ROLE [--password-stdin]` and `proofrig user token
//! NAME [--days N]` (admin): a person on the lab server, and their API tokens.
//!
//! A token is printed once, here, when it is minted: the server keeps only its
//! SHA-256, and no other command prints one. A password, for the dashboard's login,
//! is read from standard input (never a flag: the process list shows flags).

use std::io::Read;

use proofrig_proto::api::{NewToken, NewUser, Role, TokenCreated};
use reqwest::Method;

use super::client::{time, Client, Connection};
use super::{Failure, EXIT_OK};

pub async fn add(name: &str, role: &str, password_stdin: bool, connection: &Connection) -> Result<u8, Failure> {
    let role = Role::parse(role).map_err(|e| Failure::usage(miette::Report::msg(format!("--role: {e}"))))?;
    let password = match password_stdin {
        true => Some(read_password()?),
        false => None,
    };
    let client = Client::new(connection)?;
    let user = NewUser { name: name.to_string(), role, password };
    let made: TokenCreated = client.json(Method::POST, &["api", "users"], Some(&user), &format!("adding user {name}")).await?;
    println!("user {} added as {}", made.user, made.role);
    show_token(&made);
    Ok(EXIT_OK)
}

pub async fn token(name: &str, days: Option<u32>, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let made: TokenCreated =
        client.json(Method::POST, &["api", "users", name, "tokens"], Some(&NewToken { days }), &format!("a token for {name}")).await?;
    println!("a new API token for {} ({})", made.user, made.role);
    show_token(&made);
    Ok(EXIT_OK)
}

fn show_token(made: &TokenCreated) {
    println!("API token (shown this once; the server keeps only its hash), valid until {}:", time(made.expires_at));
    println!("{}", made.token);
    println!("give it to {} privately; they set PROOFRIG_TOKEN to it", made.user);
}

fn read_password() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::usage(miette::Report::msg(format!("--password-stdin: cannot read standard input: {e}"))))?;
    let password = text.trim_end_matches(['\r', '\n']).to_string();
    match password.is_empty() {
        true => Err(Failure::usage(miette::Report::msg("--password-stdin: standard input held no password"))),
        false => Ok(password),
    }
}
