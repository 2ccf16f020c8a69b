//! Exact bytes on a JSON wire: files travel as base64 so what arrives is what was
//! read, byte for byte, and their digests are SHA-256 in lowercase hex.

use sha2::{Digest, Sha256};

/// The SHA-256 of `bytes`, lowercase hex: how every digest in this protocol is written.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `#[serde(with = "crate::bytes::base64")]` for a `Vec<u8>` field.
pub(crate) mod base64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_is_lowercase_hex_sha256() {
        assert_eq!(super::sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
