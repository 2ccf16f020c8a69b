//! Secrets are referenced, never written down.
//!
//! A rig file says where a password lives (`{ env: RU1_PASSWORD }` or
//! `{ file: secrets/ru1.pass }`), never the password itself. The value is read only
//! at the moment it is sent, and transcripts record the reference instead of the
//! bytes. `Debug` and `Display` of a [`Secret`] never show the value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a secret value can be found. Written `{ env: NAME }` or `{ file: PATH }`;
/// anything else is refused with an error that never repeats what was written (a
/// password typed inline must not reach a terminal, a log or a server through the
/// error that refuses it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    /// An environment variable of the proofrig process.
    Env(String),
    /// A file whose content (without the trailing newline) is the secret.
    File(PathBuf),
}

/// What a refused secret field says, whatever was written there.
pub const INLINE_SECRET: &str =
    "a secret is written as `{ env: NAME }` or `{ file: PATH }`, never as its value: move the value to an environment variable or a file readable only by the lab";

/// Every error of a secret reference starts so: a located error with it shows where,
/// never what (`yaml.rs` masks the rest of the line in its snippet).
pub const SECRET_ERROR: &str = "a secret ";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Reference;
        impl<'de> serde::de::Visitor<'de> for Reference {
            type Value = SecretRef;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`{ env: NAME }` or `{ file: PATH }`")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                use serde::de::Error;
                let Some(kind) = map.next_key::<String>()? else { return Err(A::Error::custom(INLINE_SECRET)) };
                // The key is a word of the file format, not a secret: it may be named.
                let reference = match kind.as_str() {
                    "env" => SecretRef::Env(
                        map.next_value::<String>()
                            .map_err(|_| A::Error::custom("a secret reference's `env:` takes the name of an environment variable"))?,
                    ),
                    "file" => SecretRef::File(
                        map.next_value::<PathBuf>().map_err(|_| A::Error::custom("a secret reference's `file:` takes a path"))?,
                    ),
                    other => return Err(A::Error::custom(format!("a secret reference takes `env:` or `file:`, not `{other}:`"))),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("a secret reference has exactly one of `env:` or `file:`"));
                }
                Ok(reference)
            }

            // Every other shape may be the secret itself: refuse without repeating it.
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
                Err(serde::de::Error::custom(INLINE_SECRET))
            }
        }
        deserializer.deserialize_any(Reference)
    }
}

impl SecretRef {
    /// The label transcripts show in place of the value, e.g. `env:RU1_PASSWORD`.
    pub fn label(&self) -> String {
        match self {
            SecretRef::Env(name) => format!("env:{name}"),
            SecretRef::File(path) => format!("file:{}", path.display()),
        }
    }

    /// Resolve a relative file reference against the directory of the rig file.
    pub fn relative_to(&self, base: &Path) -> SecretRef {
        match self {
            SecretRef::File(path) if path.is_relative() => SecretRef::File(base.join(path)),
            other => other.clone(),
        }
    }

    /// Read the value now.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))?,
            SecretRef::File(path) => {
                let mut text = std::fs::read_to_string(path).map_err(|source| SecretError::File { path: path.clone(), source })?;
                while text.ends_with('\n') || text.ends_with('\r') {
                    text.pop();
                }
                text
            }
        };
        Ok(Secret { label: self.label(), value })
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A resolved secret. Shows only its label when printed.
#[derive(Clone)]
pub struct Secret {
    label: String,
    value: String,
}

impl Secret {
    /// For tests and for values typed by a person at a prompt.
    pub fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self { label: label.into(), value: value.into() }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The value itself; call only where it is sent to a device.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.label)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret {}>", self.label)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret environment variable {0} is not set; export it before running proofrig")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printing_a_secret_never_shows_its_value() {
        let secret = Secret::new("env:X", "hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn file_secret_drops_trailing_newline_and_missing_env_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let secret = SecretRef::File("pw".into()).relative_to(dir.path()).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        let err = SecretRef::Env("PROOFRIG_TEST_SURELY_UNSET".into()).resolve().unwrap_err();
        assert!(err.to_string().contains("PROOFRIG_TEST_SURELY_UNSET"));
    }
}
