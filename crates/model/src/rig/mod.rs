//! Rig descriptions: loading, validation, and lookup.
//!
//! A rig file is the inventory of one bench. Loading it checks everything that can be
//! checked without touching hardware (types, unknown fields, dangling references,
//! patterns that do not compile, SSH endpoints without a pinned host key) and reports
//! each problem at its file:line:column with the field path. Relative paths in the
//! file (key files, known_hosts, secret files) are resolved against the rig file's
//! directory, so a rig works from any current directory.

pub mod model;

use std::path::{Path, PathBuf};

pub use model::*;

use crate::yaml::{nearest, YamlError, YamlSource};

/// A loaded, validated rig.
#[derive(Debug, Clone)]
pub struct Rig {
    /// Where the rig came from (for messages).
    pub path: PathBuf,
    /// The exact bytes of the file, for evidence.
    pub bytes: Vec<u8>,
    pub spec: RigFile,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RigError {
    #[error("cannot read rig file {path}: {source}")]
    #[diagnostic(help("check the path; rig files live in rigs/ by convention"))]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<YamlError>),
    #[error("rig {rig} has no device named `{name}`")]
    #[diagnostic(help("{hint}"))]
    UnknownDevice { rig: String, name: String, hint: String },
}

impl From<Box<YamlError>> for RigError {
    fn from(err: Box<YamlError>) -> Self {
        RigError::Invalid(err)
    }
}

impl Rig {
    /// Read, parse and validate a rig file.
    pub fn load(path: &Path) -> Result<Rig, RigError> {
        let bytes = std::fs::read(path).map_err(|source| RigError::Read { path: path.to_path_buf(), source })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut rig = Self::parse(&path.display().to_string(), &text, &base)?;
        rig.path = path.to_path_buf();
        rig.bytes = bytes;
        Ok(rig)
    }

    /// Parse and validate rig text; relative paths resolve against `base_dir`.
    pub fn parse(name: &str, text: &str, base_dir: &Path) -> Result<Rig, RigError> {
        let source = YamlSource::new(name, text);
        let mut spec: RigFile = source.parse()?;
        validate(&source, &spec)?;
        resolve_paths(&mut spec, base_dir);
        Ok(Rig { path: PathBuf::from(name), bytes: text.as_bytes().to_vec(), spec })
    }

    pub fn name(&self) -> &str {
        &self.spec.rig
    }

    /// A device by name, or an error listing the devices that exist.
    pub fn device(&self, name: &str) -> Result<&Device, RigError> {
        self.spec.devices.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.spec.devices.keys().map(String::as_str).collect();
            let hint = match nearest(name, &known) {
                Some(best) => format!("did you mean `{best}`? devices in this rig: {}", known.join(", ")),
                None => format!("devices in this rig: {}", known.join(", ")),
            };
            RigError::UnknownDevice { rig: self.spec.rig.clone(), name: name.to_string(), hint }
        })
    }

    pub fn devices(&self) -> impl Iterator<Item = (&str, &Device)> {
        self.spec.devices.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn pdu(&self, name: &str) -> Option<&Pdu> {
        self.spec.pdus.get(name)
    }
}

fn validate(src: &YamlSource, spec: &RigFile) -> Result<(), Box<YamlError>> {
    if spec.devices.is_empty() {
        return Err(src.error_at("devices", "a rig needs at least one device", None));
    }
    for (name, pdu) in &spec.pdus {
        let at = format!("pdus.{name}");
        match pdu {
            Pdu::Modbus(m) if m.host.is_empty() => return Err(src.error_at(&format!("{at}.modbus.host"), "empty host", None)),
            Pdu::Pdudaemon(p) if !p.url.starts_with("http://") => {
                return Err(src.error_at(
                    &format!("{at}.pdudaemon.url"),
                    format!("`{}` is not an http:// URL", p.url),
                    Some("pdudaemon listens on plain HTTP, e.g. http://127.0.0.1:16421".into()),
                ))
            }
            _ => {}
        }
    }
    for (name, device) in &spec.devices {
        let at = format!("devices.{name}");
        if let Some(console) = &device.console {
            validate_console(src, &format!("{at}.console"), console)?;
        }
        if let Some(ssh) = &device.ssh {
            validate_ssh(src, &format!("{at}.ssh"), ssh)?;
        }
        if let Some(power) = &device.power {
            let Some(pdu) = spec.pdus.get(&power.pdu) else {
                let known: Vec<&str> = spec.pdus.keys().map(String::as_str).collect();
                let hint = match (nearest(&power.pdu, &known), known.is_empty()) {
                    (_, true) => "declare the PDU under `pdus:` at the top of the rig file".to_string(),
                    (Some(best), _) => format!("did you mean `{best}`? PDUs in this rig: {}", known.join(", ")),
                    (None, _) => format!("PDUs in this rig: {}", known.join(", ")),
                };
                return Err(src.error_at(&format!("{at}.power.pdu"), format!("no PDU named `{}`", power.pdu), Some(hint)));
            };
            if let Pdu::Modbus(_) = pdu {
                if !matches!(power.outlet, OutletId::Number(n) if n <= u16::MAX as u32) {
                    return Err(src.error_at(
                        &format!("{at}.power.outlet"),
                        format!("outlet `{}` is not a Modbus coil number (0..65535)", power.outlet),
                        None,
                    ));
                }
            }
        }
    }
    Ok(())
}

fn validate_console(src: &YamlSource, at: &str, console: &Console) -> Result<(), Box<YamlError>> {
    match (&console.serial, &console.tcp) {
        (Some(_), Some(_)) => {
            return Err(src.error_at(&format!("{at}.tcp"), "a console has one transport: `serial` or `tcp`, not both", None))
        }
        (None, None) => {
            return Err(src.error_at(
                at,
                "a console needs a transport",
                Some("add `serial: { port: /dev/ttyUSB0, baud: 115200 }` or `tcp: { host: ..., port: ... }`".into()),
            ))
        }
        _ => {}
    }
    if let Some(serial) = &console.serial {
        if !(5..=8).contains(&serial.data_bits) {
            return Err(src.error_at(&format!("{at}.serial.data_bits"), "data bits must be 5, 6, 7 or 8", None));
        }
        if !(1..=2).contains(&serial.stop_bits) {
            return Err(src.error_at(&format!("{at}.serial.stop_bits"), "stop bits must be 1 or 2", None));
        }
        if serial.baud == 0 {
            return Err(src.error_at(&format!("{at}.serial.baud"), "baud rate must be positive", None));
        }
    }
    let mut patterns: Vec<(String, &str)> = Vec::new();
    if let Some(p) = &console.prompt {
        patterns.push((format!("{at}.prompt"), p));
    }
    for (i, p) in console.death_strings.iter().enumerate() {
        patterns.push((format!("{at}.death_strings[{i}]"), p));
    }
    if let Some(login) = &console.login {
        for (field, p) in [("login_prompt", &login.login_prompt), ("password_prompt", &login.password_prompt), ("failure", &login.failure)]
        {
            if let Some(p) = p {
                patterns.push((format!("{at}.login.{field}"), p));
            }
        }
    }
    for (field, pattern) in patterns {
        if let Err(err) = regex::bytes::Regex::new(pattern) {
            let detail = err.to_string().lines().last().unwrap_or("").trim().to_string();
            return Err(src.error_at(&field, format!("invalid regular expression: {detail}"), None));
        }
    }
    if let Some(slow) = &console.slow_send {
        if slow.chunk == 0 {
            return Err(src.error_at(&format!("{at}.slow_send.chunk"), "chunk size must be at least 1 byte", None));
        }
    }
    Ok(())
}

fn validate_ssh(src: &YamlSource, at: &str, ssh: &SshEndpoint) -> Result<(), Box<YamlError>> {
    match (&ssh.host_key, &ssh.known_hosts) {
        (None, None) => {
            return Err(src.error_at(
                at,
                "the SSH host key is not pinned",
                Some(
                    "add `host_key: \"SHA256:...\"` (from `ssh-keygen -lf` on the device's host key) \
                     or `known_hosts: path/to/known_hosts`; proofrig never accepts an unknown key"
                        .into(),
                ),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(src.error_at(&format!("{at}.known_hosts"), "pin the host key one way: `host_key` or `known_hosts`", None))
        }
        (Some(fp), None) => {
            let body = fp.strip_prefix("SHA256:").unwrap_or("");
            let valid = body.len() == 43 && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
            if !valid {
                return Err(src.error_at(
                    &format!("{at}.host_key"),
                    format!("`{fp}` is not a SHA256 fingerprint"),
                    Some("expected `SHA256:` followed by 43 base64 characters, as `ssh-keygen -lf KEY.pub` prints".into()),
                ));
            }
        }
        (None, Some(_)) => {}
    }
    if ssh.key_file.is_none() && ssh.password.is_none() {
        return Err(src.error_at(
            at,
            "no SSH authentication given",
            Some("add `key_file: keys/device` or `password: { env: VARIABLE }`".into()),
        ));
    }
    Ok(())
}

fn resolve_paths(spec: &mut RigFile, base: &Path) {
    let abs = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    for device in spec.devices.values_mut() {
        for secret in device.secrets.values_mut() {
            *secret = secret.relative_to(base);
        }
        if let Some(ssh) = &mut device.ssh {
            ssh.key_file.as_mut().map(abs);
            ssh.known_hosts.as_mut().map(abs);
            ssh.password = ssh.password.as_ref().map(|s| s.relative_to(base));
            ssh.key_passphrase = ssh.key_passphrase.as_ref().map(|s| s.relative_to(base));
        }
        if let Some(login) = device.console.as_mut().and_then(|c| c.login.as_mut()) {
            login.password = login.password.as_ref().map(|s| s.relative_to(base));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
rig: bench-3
pdus:
  pdu1: { modbus: { host: 127.0.0.1, port: 5020, unit: 1 } }
devices:
  ru1:
    role: radio-unit
    tags: [lte]
    identity: { vendor: Acme, model: RU-9, serial: "0001", firmware: "1.2.3" }
    declared:
      open_tcp_ports: [22, 830]
      lockout: { attempts: 3, seconds: 60 }
    secrets:
      root_password: { file: secrets/ru1-root }
    console:
      serial: { port: /dev/ttyUSB0, baud: 115200 }
      death_strings: ["Kernel panic", "Oops"]
      login: { user: root, password: { env: RU1_PASSWORD } }
    ssh:
      host: 127.0.0.1
      port: 2222
      user: admin
      key_file: keys/ru1
      host_key: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
    power: { pdu: pdu1, outlet: 3 }
"#;

    fn parse(text: &str) -> Result<Rig, RigError> {
        Rig::parse("bench.yaml", text, Path::new("/lab/rigs"))
    }

    #[test]
    fn a_secret_written_inline_is_refused_without_repeating_it() {
        let shapes = [
            "{ user: root, password: hunter2 }",
            "{ user: root, password: \"hunter2\" }",
            "{ user: root, password: { value: hunter2 } }",
            "{ user: root, password: { env: RU1_PASSWORD, file: hunter2 } }",
            "{ user: root, password: [hunter2] }",
        ];
        for shape in shapes {
            let text = GOOD.replace("{ user: root, password: { env: RU1_PASSWORD } }", shape);
            assert_ne!(text, GOOD);
            let err = parse(&text).unwrap_err();
            let RigError::Invalid(located) = &err else { panic!("{shape}: {err}") };
            assert_eq!((located.line, located.field.as_str()), (18, "devices.ru1.console.login.password"), "{shape}: {err}");
            // Neither the message nor the rendered report (with its source snippet)
            // may carry what was written: it may be the password.
            let rendered = format!("{:?}", miette::Report::new(err));
            assert!(!rendered.contains("hunter2"), "{shape}:\n{rendered}");
            assert!(rendered.contains("env:") || rendered.contains("exactly one"), "{shape}:\n{rendered}");
        }
    }

    fn invalid(text: &str) -> Box<YamlError> {
        match parse(text) {
            Err(RigError::Invalid(e)) => e,
            other => panic!("expected a located error, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_rig_loads_and_resolves_relative_paths() {
        let rig = parse(GOOD).unwrap();
        let ru1 = rig.device("ru1").unwrap();
        assert_eq!(ru1.role, "radio-unit");
        assert_eq!(ru1.ssh.as_ref().unwrap().key_file.as_deref(), Some(Path::new("/lab/rigs/keys/ru1")));
        assert_eq!(ru1.power.as_ref().unwrap().outlet, OutletId::Number(3));
        assert_eq!(ru1.console.as_ref().unwrap().serial.as_ref().unwrap().parity, Parity::None);
        assert_eq!(ru1.declared["open_tcp_ports"], serde_json::json!([22, 830]));
        assert_eq!(ru1.declared["lockout"]["attempts"], 3);
        assert_eq!(ru1.secrets["root_password"], crate::secret::SecretRef::File("/lab/rigs/secrets/ru1-root".into()));
    }

    #[test]
    fn dangling_pdu_reference_is_located_with_a_hint() {
        let err = invalid(&GOOD.replace("pdu: pdu1", "pdu: pdu2"));
        assert_eq!(err.field, "devices.ru1.power.pdu");
        assert_eq!(err.line, 25);
        assert!(err.message.contains("no PDU named `pdu2`"));
        assert!(err.hint.as_deref().unwrap().contains("pdu1"));
    }

    #[test]
    fn unknown_field_wrong_type_and_missing_pin_are_located() {
        let err = invalid(&GOOD.replace("baud: 115200", "baud: fast"));
        assert_eq!((err.field.as_str(), err.line), ("devices.ru1.console.serial.baud", 16));
        let err = invalid(&GOOD.replace("tags: [lte]", "tagz: [lte]"));
        assert_eq!(err.field, "devices.ru1.tagz");
        assert_eq!(err.hint.as_deref(), Some("did you mean `tags`?"));
        let err = invalid(&GOOD.replace("      host_key: \"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\"\n", ""));
        assert_eq!(err.field, "devices.ru1.ssh");
        assert!(err.message.contains("not pinned"));
    }

    #[test]
    fn bad_patterns_and_non_numeric_coils_are_refused() {
        let err = invalid(&GOOD.replace("\"Oops\"", "\"Oops(\""));
        assert_eq!(err.field, "devices.ru1.console.death_strings[1]");
        let err = invalid(&GOOD.replace("outlet: 3", "outlet: left"));
        assert_eq!(err.field, "devices.ru1.power.outlet");
    }

    #[test]
    fn unknown_device_suggests_a_name() {
        let rig = parse(GOOD).unwrap();
        let err = rig.device("ru2").unwrap_err();
        assert!(err.to_string().contains("`ru2`"));
        let RigError::UnknownDevice { hint, .. } = err else { panic!() };
        assert!(hint.contains("ru1"));
    }
}
