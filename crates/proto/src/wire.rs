//! How the lab host's messages travel: one HTTPS route, and a signature on each
//! request made with the key the lab host enrolled.
//!
//! Why one route: a lab host dials out (no inbound port), so every exchange is a
//! request it makes; the server answers each with every message it has for that lab
//! host (its answer, then any assignment or cancel waiting), so an assignment reaches
//! a lab host on whichever request comes next, and a [`crate::labhost::Poll`] that
//! the server holds open until something is waiting makes that next request come at
//! once. Framing lives here and nowhere else, so both sides are held to it.
//!
//! Why a signature per request and not a bearer token: the lab host's key is what
//! its bundles are signed with and what the server pinned at enrollment; a request
//! signed by it needs no second secret on the lab host, and a request body cannot be
//! swapped under a valid header. The signed bytes ([`signed_bytes`]) bind the lab
//! host's id, the time and the body's SHA-256; the server refuses a time more than
//! [`MAX_CLOCK_SKEW`] away from its own (a captured request cannot be replayed later),
//! and every message is safe to receive twice anyway (see [`crate::labhost`]).
//! [`crate::labhost::Enroll`] is the one message sent unsigned: it carries the
//! one-time token instead, and the key to pin.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::ids::{LabHostId, UnixMillis};

/// The route every lab host message is POSTed to (JSON [`crate::labhost::LabHostMessage`]
/// in, a JSON array of [`crate::labhost::ServerMessage`] out).
pub const LABHOST_PATH: &str = "/labhost/v1";

/// The header naming the lab host that signed the request.
pub const HEADER_LABHOST: &str = "x-proofrig-labhost";
/// The header with the lab host's clock at signing, Unix milliseconds.
pub const HEADER_TIME: &str = "x-proofrig-time";
/// The header with the base64 Ed25519 signature of [`signed_bytes`].
pub const HEADER_SIGNATURE: &str = "x-proofrig-signature";

/// How far a request's time may be from the server's clock. Wide enough for a lab
/// host whose NTP is a little off; a lab host further off is told by how much.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The longest a server holds a [`crate::labhost::Poll`] open. Below common proxy
/// idle timeouts (60 s), so a reverse proxy does not cut it.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(25);

/// What a lab host signs for one request.
pub fn signed_bytes(labhost: &LabHostId, time: UnixMillis, body: &[u8]) -> Vec<u8> {
    format!("proofrig-labhost-request/v1\n{}\n{}\n{}\n", labhost.0, time.0, hex::encode(Sha256::digest(body))).into_bytes()
}

/// The three headers of a signed request, as (name, value).
pub fn sign(key: &SigningKey, labhost: &LabHostId, time: UnixMillis, body: &[u8]) -> [(&'static str, String); 3] {
    let signature = key.sign(&signed_bytes(labhost, time, body));
    [(HEADER_LABHOST, labhost.0.clone()), (HEADER_TIME, time.0.to_string()), (HEADER_SIGNATURE, STANDARD.encode(signature.to_bytes()))]
}

/// Why a signed request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no {0} header; a lab host signs every request but its enrollment")]
    Missing(&'static str),
    #[error("the {header} header `{value}` is not {expected}")]
    Malformed { header: &'static str, value: String, expected: &'static str },
    #[error("the request was signed at {signed} ms, {skew_s} s away from the server's clock ({now} ms); set the lab host's clock (NTP) and resend")]
    Skew { signed: u64, now: u64, skew_s: u64 },
    #[error(
        "the signature does not verify with the key {labhost} enrolled with; a lab host that lost its key enrolls again under a new token"
    )]
    Bad { labhost: LabHostId },
}

/// The lab host id, time and signature a request's headers carry (`header` looks
/// one up by name).
pub struct Presented {
    pub labhost: LabHostId,
    pub time: UnixMillis,
    signature: Signature,
}

impl Presented {
    pub fn read(header: impl Fn(&'static str) -> Option<String>) -> Result<Presented, SignatureError> {
        let get = |name: &'static str| header(name).ok_or(SignatureError::Missing(name));
        let labhost = LabHostId(get(HEADER_LABHOST)?);
        let time = get(HEADER_TIME)?;
        let time = time.parse::<u64>().map(UnixMillis).map_err(|_| SignatureError::Malformed {
            header: HEADER_TIME,
            value: time.chars().take(40).collect(),
            expected: "Unix milliseconds",
        })?;
        let raw = get(HEADER_SIGNATURE)?;
        let raw = raw.as_str();
        let bad = || SignatureError::Malformed {
            header: HEADER_SIGNATURE,
            value: raw.chars().take(100).collect(),
            expected: "a base64 Ed25519 signature",
        };
        let bytes: [u8; 64] = STANDARD.decode(raw).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
        Ok(Presented { labhost, time, signature: Signature::from_bytes(&bytes) })
    }

    /// Check the signature over `body` with the lab host's pinned key, and the time
    /// against the server's `now`.
    pub fn check(&self, key: &VerifyingKey, body: &[u8], now: UnixMillis) -> Result<(), SignatureError> {
        let skew = self.time.0.abs_diff(now.0);
        if u128::from(skew) > MAX_CLOCK_SKEW.as_millis() {
            return Err(SignatureError::Skew { signed: self.time.0, now: now.0, skew_s: skew / 1000 });
        }
        key.verify(&signed_bytes(&self.labhost, self.time, body), &self.signature)
            .map_err(|_| SignatureError::Bad { labhost: self.labhost.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn headers<'a>(pairs: &'a [(&'static str, String)]) -> impl Fn(&'static str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_signed_request_checks_with_its_key_body_and_time() {
        let id = LabHostId("lab-a".into());
        let signed = sign(&key(), &id, UnixMillis(1_000_000), b"{\"type\":\"heartbeat\"}");
        let presented = Presented::read(headers(&signed)).unwrap();
        assert_eq!(presented.labhost, id);
        presented.check(&key().verifying_key(), b"{\"type\":\"heartbeat\"}", UnixMillis(1_000_500)).unwrap();
    }

    #[test]
    fn another_body_another_key_or_a_stale_time_is_refused() {
        let id = LabHostId("lab-a".into());
        let signed = sign(&key(), &id, UnixMillis(1_000_000), b"body");
        let presented = Presented::read(headers(&signed)).unwrap();
        let pinned = key().verifying_key();
        assert_eq!(presented.check(&pinned, b"bodY", UnixMillis(1_000_000)), Err(SignatureError::Bad { labhost: id.clone() }));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(presented.check(&other, b"body", UnixMillis(1_000_000)), Err(SignatureError::Bad { labhost: id.clone() }));
        let late = UnixMillis(1_000_000 + MAX_CLOCK_SKEW.as_millis() as u64 + 1);
        assert!(matches!(presented.check(&pinned, b"body", late), Err(SignatureError::Skew { skew_s: 300, .. })));
        // The id is signed too: the same signature under another lab host's name fails.
        let mut renamed = signed.clone();
        renamed[0].1 = "lab-b".into();
        let presented = Presented::read(headers(&renamed)).unwrap();
        assert!(matches!(presented.check(&pinned, b"body", UnixMillis(1_000_000)), Err(SignatureError::Bad { .. })));
    }

    #[test]
    fn missing_or_malformed_headers_are_named() {
        assert_eq!(Presented::read(|_| None).err(), Some(SignatureError::Missing(HEADER_LABHOST)));
        let mut signed = sign(&key(), &LabHostId("a".into()), UnixMillis(1), b"");
        signed[1].1 = "yesterday".into();
        assert!(matches!(Presented::read(headers(&signed)).err(), Some(SignatureError::Malformed { header: HEADER_TIME, .. })));
        let mut signed = sign(&key(), &LabHostId("a".into()), UnixMillis(1), b"");
        signed[2].1 = "AAAA".into();
        assert!(matches!(Presented::read(headers(&signed)).err(), Some(SignatureError::Malformed { header: HEADER_SIGNATURE, .. })));
    }
}
