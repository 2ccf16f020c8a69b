//! `proofrig labhost token NAME [--minutes N]` (admin): a one-time token with which a
//! new lab host enrolls. The lab host sends it once with its own public key; from
//! then on it authenticates with that key, and the token is spent. The token is
//! printed once, here: the server keeps only its SHA-256.

use proofrig_proto::api::{EnrollmentCreated, NewEnrollment};
use reqwest::Method;

use super::client::{time, Client, Connection};
use super::{Failure, EXIT_OK};

pub async fn token(labhost: &str, minutes: Option<u32>, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let request = NewEnrollment { labhost: labhost.to_string(), minutes };
    let made: EnrollmentCreated = client
        .json(Method::POST, &["api", "labhosts", "enrollments"], Some(&request), &format!("an enrollment token for lab host {labhost}"))
        .await?;
    println!("enrollment token for lab host {} (shown this once; it works once), valid until {}:", made.labhost, time(made.expires_at));
    println!("{}", made.token);
    println!(
        "on the lab host, put it in a file readable by its user only (or in $PROOFRIG_ENROLL_TOKEN) and start once:\n    \
         proofrig labhost run --server {} --fingerprint <the server's fingerprint> --rigs <rig files> --enroll-file <that file>\n\
         the lab host then authenticates with its own key and the token is spent. Ask for a new one if it expires first.",
        client.server()
    );
    Ok(EXIT_OK)
}
