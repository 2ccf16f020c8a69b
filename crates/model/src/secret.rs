//! Secrets are referenced, never written down.
//!
//! A rig file says where a password lives (`{ env: RU1_PASSWORD }` or
//! `{ file: secrets/ru1.pass }`), never the password itself. The value is read only
//! at the moment it is sent, and transcripts record the reference instead of the
//! bytes. `Debug` and `Display` of a [`Secret`] never show the value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a secret value can be found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the proofrig process.
    Env(String),
    /// A file whose content (without the trailing newline) is the secret.
    File(PathBuf),
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
                let mut text = std::fs::read_to_string(path)
                    .map_err(|source| SecretError::File { path: path.clone(), source })?;
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
