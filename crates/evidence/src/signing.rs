//! The lab's Ed25519 key and DSSE envelopes.
//!
//! Statements are signed as DSSE envelopes (the signing wrapper in-toto uses): the
//! signature covers the pre-authentication encoding `DSSEv1 <len> <type> <len> <body>`,
//! so neither the payload type nor the body can be swapped. Keys are stored as PKCS#8
//! / SPKI PEM, which OpenSSL and other tools read too. A key id is the SHA-256 of the
//! public key, shown as `ed25519:SHA256:<base64>`, the form people compare.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not an Ed25519 {what} key in PEM form: {reason}")]
    Format { path: String, what: &'static str, reason: String },
    #[error("cannot write key {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path} already exists; proofrig will not overwrite a key (move it away first)")]
    Exists { path: String },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// A fingerprint people can compare: `ed25519:SHA256:<base64 of sha256(public key)>`.
pub fn key_id(key: &VerifyingKey) -> String {
    format!("ed25519:SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(key.as_bytes())))
}

/// Make a fresh key pair; the private key file is created with mode 0600.
pub fn generate(private_path: &Path, public_path: &Path) -> Result<VerifyingKey, KeyError> {
    for path in [private_path, public_path] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.display().to_string() });
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let private_pem = key.to_pkcs8_pem(Default::default()).map_err(|e| KeyError::Format {
        path: private_path.display().to_string(),
        what: "private",
        reason: e.to_string(),
    })?;
    let public_pem = key.verifying_key().to_public_key_pem(Default::default()).map_err(|e| KeyError::Format {
        path: public_path.display().to_string(),
        what: "public",
        reason: e.to_string(),
    })?;
    write_new(private_path, private_pem.as_bytes(), 0o600)?;
    write_new(public_path, public_pem.as_bytes(), 0o644)?;
    Ok(key.verifying_key())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| KeyError::Write { path: path.display().to_string(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Format {
        path: path.display().to_string(),
        what: "private",
        reason: e.to_string(),
    })
}

pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::Format {
        path: path.display().to_string(),
        what: "public",
        reason: e.to_string(),
    })
}

/// A DSSE envelope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// Base64 of the Ed25519 signature over the PAE.
    pub sig: String,
    /// The signer's public key (base64, raw 32 bytes), so an unpinned check can still
    /// show who signed. Trust comes from pinning, not from this field.
    #[serde(default, rename = "publicKey", skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Envelope {
    let signature = key.sign(&pae(payload_type, payload));
    Envelope {
        payload_type: payload_type.to_string(),
        payload: STANDARD.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.verifying_key()),
            sig: STANDARD.encode(signature.to_bytes()),
            public_key: Some(STANDARD.encode(key.verifying_key().as_bytes())),
        }],
    }
}

/// What checking an envelope found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Signed by the pinned key.
    Pinned { keyid: String },
    /// Validly signed by the key embedded in the envelope; nobody pinned it.
    Unpinned { keyid: String },
    /// Not signed by the pinned key (or not validly signed at all).
    Invalid { reason: String },
}

impl Envelope {
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(&self.payload)
    }

    /// Check the signatures, against `pinned` when given.
    pub fn check(&self, pinned: Option<&VerifyingKey>) -> SignatureCheck {
        let Ok(payload) = self.payload_bytes() else {
            return SignatureCheck::Invalid { reason: "payload is not base64".into() };
        };
        let message = pae(&self.payload_type, &payload);
        let mut last_reason = "the envelope has no signature".to_string();
        for entry in &self.signatures {
            let Some(sig) = STANDARD.decode(&entry.sig).ok().and_then(|b| Signature::from_slice(&b).ok()) else {
                last_reason = "a signature is not a valid Ed25519 signature encoding".into();
                continue;
            };
            match pinned {
                Some(key) => {
                    if key.verify(&message, &sig).is_ok() {
                        return SignatureCheck::Pinned { keyid: key_id(key) };
                    }
                    last_reason = format!("not signed by the pinned key {}", key_id(key));
                }
                None => {
                    let embedded = entry
                        .public_key
                        .as_deref()
                        .and_then(|k| STANDARD.decode(k).ok())
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
                    match embedded {
                        Some(key) if key.verify(&message, &sig).is_ok() => return SignatureCheck::Unpinned { keyid: key_id(&key) },
                        Some(_) => last_reason = "the signature does not match the embedded public key".into(),
                        None => last_reason = "no usable public key in the envelope; pass --key".into(),
                    }
                }
            }
        }
        SignatureCheck::Invalid { reason: last_reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // The example from the DSSE protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn keys_round_trip_and_the_private_key_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("lab.key"), dir.path().join("lab.pub"));
        let verifying = generate(&private, &public).unwrap();
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_signing_key(&private).unwrap().verifying_key(), verifying);
        assert_eq!(load_verifying_key(&public).unwrap(), verifying);
        assert!(matches!(generate(&private, &public), Err(KeyError::Exists { .. })));
    }

    #[test]
    fn signatures_check_against_pinned_and_embedded_keys() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let envelope = sign(&key, "application/vnd.in-toto+json", b"{\"a\":1}");
        assert!(matches!(envelope.check(Some(&key.verifying_key())), SignatureCheck::Pinned { .. }));
        assert!(matches!(envelope.check(None), SignatureCheck::Unpinned { .. }));
        assert!(matches!(envelope.check(Some(&other.verifying_key())), SignatureCheck::Invalid { .. }));

        let mut tampered = envelope.clone();
        tampered.payload = STANDARD.encode(b"{\"a\":2}");
        assert!(matches!(tampered.check(None), SignatureCheck::Invalid { .. }));
        let mut retyped = envelope;
        retyped.payload_type = "text/plain".into();
        assert!(matches!(retyped.check(Some(&key.verifying_key())), SignatureCheck::Invalid { .. }));
    }
}
