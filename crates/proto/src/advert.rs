//! A lab host's rigs, as it tells the server about them, and the server's check.
//!
//! The rig file is the one description of a bench: the lab host runs jobs with it,
//! the bundle stores its exact bytes, and the server schedules by the roles and tags
//! in it. So the lab host sends the file itself, byte for byte, with its SHA-256,
//! rather than a summary that could drift from what runs. The server accepts an
//! advert only when [`check`] passes: the bytes are the ones the digest names, and
//! they load as a rig with the same loader `proofrig run` uses, so a rig the lab host
//! could not run is never scheduled, and a rig file holding a secret's *value* (a
//! literal `password: hunter2`) never reaches the server: the loader accepts secrets
//! only as references (`{ env: NAME }`, `{ file: path }`).
//!
//! The server never resolves a reference or reads a path of an advertised rig: paths
//! are the lab host's. It keeps the bytes (assignments name them by digest) and the
//! [`RigSummary`] it schedules by.

use std::collections::BTreeSet;
use std::path::Path;

use proofrig_model::rig::{Rig, RigError};
use serde::{Deserialize, Serialize};

use crate::bytes::sha256_hex;

/// One rig a lab host serves: sent in [`crate::labhost::RigAdverts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RigAdvert {
    /// The rig's name, as its file's `rig:` field says.
    pub rig: String,
    /// Where the lab host read the file (e.g. `/etc/proofrig/rigs/bench-3.yaml`), only
    /// for messages: the technician must know which file to fix.
    pub path: String,
    /// SHA-256 of `bytes`, lowercase hex.
    pub sha256: String,
    /// The rig file's exact bytes.
    #[serde(with = "crate::bytes::base64")]
    pub bytes: Vec<u8>,
}

impl RigAdvert {
    /// An advert for a rig file's bytes, as the lab host makes it.
    pub fn new(rig: impl Into<String>, path: impl Into<String>, bytes: Vec<u8>) -> RigAdvert {
        RigAdvert { rig: rig.into(), path: path.into(), sha256: sha256_hex(&bytes), bytes }
    }
}

/// What the server schedules by: the rig's devices, with their roles and tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RigSummary {
    pub rig: String,
    /// SHA-256 of the rig file this summary was read from.
    pub sha256: String,
    pub devices: BTreeSet<String>,
    /// Every device's role (`radio-unit`, `core`, ...).
    pub roles: BTreeSet<String>,
    /// Every device's tags.
    pub tags: BTreeSet<String>,
}

/// Why the server refused an advert; sent back to the lab host in a refusal, and
/// shown on the rig's status page.
#[derive(Debug, thiserror::Error)]
pub enum AdvertError {
    #[error("rig {rig} ({path}): its bytes have SHA-256 {actual}, the advert says {claimed}; the file changed while it was read, or the advert is corrupt: the lab host sends it again")]
    Digest { rig: String, path: String, claimed: String, actual: String },
    #[error("rig {rig} ({path}): byte {at} is not UTF-8; a rig file is UTF-8 YAML")]
    NotUtf8 { rig: String, path: String, at: usize },
    #[error("rig {rig}: {error}")]
    Rig { rig: String, error: Box<RigFileError> },
    #[error("rig file {path} names its rig `{in_file}`, the advert calls it `{advertised}`; a rig is known by the name in its file")]
    Name { path: String, advertised: String, in_file: String },
}

/// A rig file's error as the server passes it on: where, which field, what is
/// wrong, what to do; the same words `proofrig rig check` prints on the lab host.
/// It carries no text of the file, and the loader's message for a secret written
/// where a reference belongs never repeats it (`proofrig_model::secret`): this error
/// is logged by the server and shown on the rig's page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct RigFileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl RigFileError {
    fn from_loader(err: RigError) -> RigFileError {
        let RigError::Invalid(located) = err else {
            // `Rig::parse` reports everything located; the other kinds need a file or a lookup.
            return RigFileError {
                file: String::new(),
                line: 0,
                column: 0,
                field: "<document>".into(),
                message: err.to_string(),
                hint: None,
            };
        };
        RigFileError {
            file: located.file.clone(),
            line: located.line,
            column: located.column,
            field: located.field.clone(),
            message: located.message.clone(),
            hint: located.hint.clone(),
        }
    }
}

/// The server's check of an advert; see the module documentation. Returns the rig
/// as loaded (to check submitted plans against it) and its summary.
pub fn check(advert: &RigAdvert) -> Result<(Rig, RigSummary), AdvertError> {
    let RigAdvert { rig: name, path, sha256, bytes } = advert;
    let actual = sha256_hex(bytes);
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(AdvertError::Digest { rig: name.clone(), path: path.clone(), claimed: sha256.clone(), actual });
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| AdvertError::NotUtf8 { rig: name.clone(), path: path.clone(), at: e.valid_up_to() })?;
    // Relative paths stay relative: they are the lab host's, never resolved here.
    let rig = Rig::parse(path, text, Path::new(""))
        .map_err(|e| AdvertError::Rig { rig: name.clone(), error: Box::new(RigFileError::from_loader(e)) })?;
    if rig.name() != name {
        return Err(AdvertError::Name { path: path.clone(), advertised: name.clone(), in_file: rig.name().to_string() });
    }
    let summary = RigSummary {
        rig: name.clone(),
        sha256: actual,
        devices: rig.devices().map(|(name, _)| name.to_string()).collect(),
        roles: rig.devices().map(|(_, d)| d.role.clone()).collect(),
        tags: rig.devices().flat_map(|(_, d)| d.tags.iter().cloned()).collect(),
    };
    Ok((rig, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const BENCH: &str = r#"rig: bench-3
pdus:
  pdu1: { modbus: { host: 127.0.0.1, port: 5020 } }
devices:
  ru1:
    role: radio-unit
    tags: [lte, arm]
    console:
      tcp: { host: 127.0.0.1, port: 7001 }
      login: { user: root, password: { env: RU1_PASSWORD } }
    ssh:
      host: 127.0.0.1
      user: admin
      password: { file: secrets/ru1.pass }
      host_key: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
    power: { pdu: pdu1, outlet: 1 }
  core1:
    role: core
    tags: [lte]
    secrets:
      admin_password: { env: CORE1_ADMIN }
"#;

    fn advert(text: &str) -> RigAdvert {
        RigAdvert::new("bench-3", "/etc/proofrig/rigs/bench-3.yaml", text.as_bytes().to_vec())
    }

    fn refusal(advert: &RigAdvert) -> String {
        match check(advert) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("advert accepted: {}", String::from_utf8_lossy(&advert.bytes)),
        }
    }

    #[test]
    fn a_rig_with_references_only_is_accepted_and_summarised() {
        let (rig, summary) = check(&advert(BENCH)).unwrap();
        assert_eq!(rig.name(), "bench-3");
        assert_eq!(summary.rig, "bench-3");
        assert_eq!(summary.sha256, sha256_hex(BENCH.as_bytes()));
        assert_eq!(summary.devices, BTreeSet::from(["core1".into(), "ru1".into()]));
        assert_eq!(summary.roles, BTreeSet::from(["core".into(), "radio-unit".into()]));
        assert_eq!(summary.tags, BTreeSet::from(["arm".into(), "lte".into()]));
        // The server resolves nothing: a relative secret file stays as the lab host wrote it.
        let ssh = rig.device("ru1").unwrap().ssh.as_ref().unwrap();
        assert_eq!(ssh.password.as_ref().unwrap().label(), "file:secrets/ru1.pass");
    }

    #[test]
    fn bytes_that_are_not_what_the_digest_names_are_refused() {
        let mut ad = advert(BENCH);
        ad.bytes = BENCH.replace("outlet: 1", "outlet: 2").into_bytes();
        let text = refusal(&ad);
        assert!(text.contains("rig bench-3 (/etc/proofrig/rigs/bench-3.yaml)"), "{text}");
        assert!(text.contains(&format!("the advert says {}", sha256_hex(BENCH.as_bytes()))), "{text}");
        let mut ad = advert(BENCH);
        ad.sha256 = "00".repeat(32);
        assert!(matches!(check(&ad), Err(AdvertError::Digest { .. })));
    }

    #[test]
    fn a_secret_value_in_place_of_a_reference_is_refused_where_it_stands() {
        let cases = [
            ("      password: { file: secrets/ru1.pass }", "      password: hunter2", "devices.ru1.ssh.password", 14),
            (
                "{ user: root, password: { env: RU1_PASSWORD } }",
                "{ user: root, password: hunter2 }",
                "devices.ru1.console.login.password",
                10,
            ),
            (
                "{ user: root, password: { env: RU1_PASSWORD } }",
                "{ user: root, password: { value: hunter2 } }",
                "devices.ru1.console.login.password",
                10,
            ),
            ("admin_password: { env: CORE1_ADMIN }", "admin_password: hunter2", "devices.core1.secrets.admin_password", 21),
        ];
        for (reference, literal, field, line) in cases {
            let text = BENCH.replace(reference, literal);
            assert_ne!(text, BENCH, "{reference} not in the test rig");
            let ad = advert(&text);
            let Err(AdvertError::Rig { error, .. }) = check(&ad) else { panic!("{literal}: not refused by the rig loader") };
            assert!(error.field.starts_with(field), "{literal}: {error}");
            assert_eq!((error.file.as_str(), error.line), ("/etc/proofrig/rigs/bench-3.yaml", line), "{literal}: {error}");
            assert!(
                error.message.starts_with(proofrig_model::secret::SECRET_ERROR) && !error.to_string().contains("hunter2"),
                "{literal}: {error}"
            );
        }
    }

    #[test]
    fn a_refused_secret_value_is_not_repeated_in_the_refusal() {
        // The refusal is logged by the server and shown on the rig's page, so the value
        // the technician mistakenly wrote must travel no further than the advert.
        for literal in ["password: hunter2", "password: { value: hunter2 }", "password: { env: A, file: hunter2 }"] {
            let text = BENCH.replace("password: { file: secrets/ru1.pass }", literal);
            let refusal = refusal(&advert(&text));
            assert!(!refusal.contains("hunter2"), "{refusal}");
            assert!(refusal.contains("bench-3.yaml:14:") && refusal.contains("devices.ru1.ssh.password"), "{refusal}");
        }
    }

    #[test]
    fn a_refusal_travels_as_json_without_the_file_text() {
        let Err(AdvertError::Rig { error, .. }) = check(&advert(&BENCH.replace("outlet: 1", "outlet: left"))) else { panic!() };
        let json = serde_json::to_string(&error).unwrap();
        assert!(!json.contains("modbus"), "{json}");
        assert_eq!(serde_json::from_str::<RigFileError>(&json).unwrap(), *error);
        assert_eq!(error.field, "devices.ru1.power.outlet");
    }

    #[test]
    fn an_invalid_rig_a_wrong_name_and_non_utf8_bytes_are_refused() {
        let text = refusal(&advert(&BENCH.replace("pdu: pdu1", "pdu: pdu9")));
        assert!(text.contains("bench-3.yaml:16:") && text.contains("no PDU named `pdu9`"), "{text}");
        let ad = RigAdvert::new("bench-4", "rigs/bench-3.yaml", BENCH.as_bytes().to_vec());
        assert!(matches!(check(&ad), Err(AdvertError::Name { ref in_file, .. }) if in_file == "bench-3"));
        let mut bytes = BENCH.as_bytes().to_vec();
        bytes.insert(10, 0xff);
        let text = refusal(&RigAdvert::new("bench-3", "b.yaml", bytes));
        assert!(text.contains("byte 10 is not UTF-8"), "{text}");
    }
}
