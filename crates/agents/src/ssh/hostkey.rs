//! Host key pinning: a device is only talked to when it proves it holds the key the rig
//! names, either as a `SHA256:` fingerprint or through an OpenSSH known_hosts file.
//!
//! There is deliberately no "accept any key" mode. A refused key is reported with its
//! fingerprint in exactly the form `ssh-keygen -lf` prints, so a technician can compare
//! it with what the device console shows.
//!
//! The policy also decides which host-key algorithms to ask for: libssh2 picks the first
//! algorithm both sides support, which may be a key type the pin does not cover (the
//! server has ecdsa and ed25519 keys, the known_hosts file holds the ed25519 one). So the
//! preference is taken from the pinned key types whenever they are known.

use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::SshError;

/// Host-key algorithms in OpenSSH's order (certificates excluded: a certificate blob
/// would never match a pinned plain key).
pub(crate) const DEFAULT_HOST_KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
    "ssh-dss",
];

/// `SHA256:<base64 without padding>` of a public key blob, as `ssh-keygen -lf` prints it.
pub fn fingerprint_sha256(key_blob: &[u8]) -> String {
    let digest = Sha256::digest(key_blob);
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

/// The algorithm name a public key blob starts with, e.g. `ssh-ed25519`.
pub fn key_algorithm(key_blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(key_blob.get(..4)?.try_into().ok()?) as usize;
    let name = key_blob.get(4..4usize.checked_add(len)?)?;
    std::str::from_utf8(name).ok().map(str::to_string)
}

/// The host-key algorithms that can prove possession of a key of type `key_type`.
pub(crate) fn algorithms_for_key_type(key_type: &str) -> &'static [&'static str] {
    match key_type {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-dss" => &["ssh-dss"],
        _ => &[],
    }
}

/// The key type a host-key algorithm signs with (`rsa-sha2-256` → `ssh-rsa`).
pub(crate) fn key_type_of_algorithm(algorithm: &str) -> &str {
    match algorithm {
        "rsa-sha2-512" | "rsa-sha2-256" => "ssh-rsa",
        other => other,
    }
}

/// `host` for port 22, `[host]:port` otherwise: the name OpenSSH looks up in known_hosts.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// A key presented by a server during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OfferedKey {
    pub blob: Vec<u8>,
    pub algorithm: String,
    pub fingerprint: String,
}

impl OfferedKey {
    pub fn from_blob(blob: &[u8]) -> Self {
        Self {
            blob: blob.to_vec(),
            algorithm: key_algorithm(blob).unwrap_or_else(|| "unknown".into()),
            fingerprint: fingerprint_sha256(blob),
        }
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.fingerprint, self.algorithm)
    }
}

/// Why a presented key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The rig pins other keys for this host (described as `SHA256:... (type)`).
    Mismatch { expected: String },
    /// The known_hosts file has nothing for this host.
    Unknown { known_hosts: PathBuf, host_entry: String },
}

/// What the rig trusts for one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct HostKeyPolicy {
    fingerprint: Option<String>,
    known_hosts: Option<KnownHostsPins>,
}

#[derive(Debug, Clone)]
struct KnownHostsPins {
    path: PathBuf,
    host_entry: String,
    pinned: Vec<OfferedKey>,
    revoked: Vec<Vec<u8>>,
}

impl HostKeyPolicy {
    /// Build the policy from the endpoint's `host_key` and/or `known_hosts`. When both are
    /// given, a key must satisfy both.
    pub fn new(device: &str, host: &str, port: u16, fingerprint: Option<&str>, known_hosts: Option<&Path>) -> Result<Self, SshError> {
        let fingerprint = fingerprint
            .map(|value| normalize_fingerprint(value).ok_or_else(|| SshError::BadHostKeyPin { device: device.into(), value: value.into() }))
            .transpose()?;
        let known_hosts = known_hosts
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(|e| SshError::KnownHosts {
                    device: device.into(),
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                let host_entry = known_hosts_name(host, port);
                let entries = parse_known_hosts(&text);
                let mut pinned = Vec::new();
                let mut revoked = Vec::new();
                for entry in entries.iter().filter(|e| e.applies_to(&host_entry)) {
                    match entry.marker {
                        Marker::None => pinned.push(OfferedKey::from_blob(&entry.key)),
                        Marker::Revoked => revoked.push(entry.key.clone()),
                        // Host certificates are not supported by this agent; such a line
                        // pins nothing, so a host relying on it is reported unknown.
                        Marker::CertAuthority => {}
                    }
                }
                Ok::<_, SshError>(KnownHostsPins { path: path.to_path_buf(), host_entry, pinned, revoked })
            })
            .transpose()?;
        if fingerprint.is_none() && known_hosts.is_none() {
            return Err(SshError::NoHostKeyPin { device: device.into() });
        }
        Ok(Self { fingerprint, known_hosts })
    }

    /// Host-key algorithms to offer, most preferred first: those able to prove a pinned
    /// key type when known_hosts pins some, OpenSSH's default order otherwise.
    pub fn preferred_algorithms(&self) -> Vec<&'static str> {
        let pinned_types: Vec<&str> = match &self.known_hosts {
            Some(pins) => pins.pinned.iter().map(|k| k.algorithm.as_str()).collect(),
            None => Vec::new(),
        };
        let mut out: Vec<&'static str> = Vec::new();
        for key_type in pinned_types {
            for alg in algorithms_for_key_type(key_type) {
                if !out.contains(alg) {
                    out.push(alg);
                }
            }
        }
        if out.is_empty() {
            out.extend_from_slice(DEFAULT_HOST_KEY_ALGORITHMS);
        }
        out
    }

    /// Whether the policy pins only a fingerprint (its key type is unknown in advance).
    pub fn key_type_known(&self) -> bool {
        self.known_hosts.as_ref().is_some_and(|p| !p.pinned.is_empty())
    }

    /// Accept or refuse a presented key.
    pub fn check(&self, offered: &OfferedKey) -> Result<(), Refusal> {
        if let Some(pins) = &self.known_hosts {
            if pins.revoked.contains(&offered.blob) {
                return Err(Refusal::Mismatch { expected: format!("a key other than the REVOKED {}", offered.describe()) });
            }
            if pins.pinned.is_empty() {
                return Err(Refusal::Unknown { known_hosts: pins.path.clone(), host_entry: pins.host_entry.clone() });
            }
            if !pins.pinned.iter().any(|k| k.blob == offered.blob) {
                return Err(Refusal::Mismatch { expected: self.describe_expected() });
            }
        }
        if let Some(fp) = &self.fingerprint {
            if *fp != offered.fingerprint {
                return Err(Refusal::Mismatch { expected: self.describe_expected() });
            }
        }
        Ok(())
    }

    fn describe_expected(&self) -> String {
        let mut parts = Vec::new();
        if let Some(fp) = &self.fingerprint {
            parts.push(fp.clone());
        }
        if let Some(pins) = &self.known_hosts {
            let keys: Vec<String> = pins.pinned.iter().map(OfferedKey::describe).collect();
            parts.push(format!("{} for `{}` in {}", keys.join(" or "), pins.host_entry, pins.path.display()));
        }
        parts.join(" and ")
    }
}

/// Canonical `SHA256:<43 chars>` form of a pinned fingerprint, or None if it is not one.
/// Accepts trailing `=` padding, which some tools print.
pub(crate) fn normalize_fingerprint(value: &str) -> Option<String> {
    let encoded = value.trim().strip_prefix("SHA256:")?.trim_end_matches('=');
    let digest = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded).ok()?;
    (digest.len() == 32).then(|| format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostField {
    /// Comma-separated patterns with `*`, `?` and `!` negation.
    Plain(Vec<String>),
    /// `|1|salt|hash` (HashKnownHosts yes).
    Hashed(String),
}

#[derive(Debug, Clone)]
struct KnownHostsEntry {
    marker: Marker,
    hosts: HostField,
    /// `keytype base64` as written in the file.
    key_text: String,
    key: Vec<u8>,
}

impl KnownHostsEntry {
    fn applies_to(&self, host_entry: &str) -> bool {
        match &self.hosts {
            HostField::Plain(patterns) => match_host_patterns(host_entry, patterns),
            HostField::Hashed(field) => hashed_host_matches(field, &self.key_text, host_entry),
        }
    }
}

/// Parse known_hosts text; lines that cannot be parsed are skipped, as OpenSSH does.
fn parse_known_hosts(text: &str) -> Vec<KnownHostsEntry> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            other if other.starts_with('@') => {
                tracing::warn!("known_hosts line {}: unknown marker {other}; line ignored", index + 1);
                continue;
            }
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = fields.next().unwrap_or_default();
        }
        let (Some(declared_type), Some(encoded)) = (fields.next(), fields.next()) else {
            tracing::warn!("known_hosts line {}: expected `hosts keytype base64-key`; line ignored", index + 1);
            continue;
        };
        let Ok(key) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            tracing::warn!("known_hosts line {}: key is not base64; line ignored", index + 1);
            continue;
        };
        if key_algorithm(&key).as_deref() != Some(declared_type) {
            tracing::warn!("known_hosts line {}: key type {declared_type} does not match the key; line ignored", index + 1);
            continue;
        }
        let hosts = if first.starts_with("|1|") {
            HostField::Hashed(first.to_string())
        } else {
            HostField::Plain(first.split(',').map(|p| p.to_ascii_lowercase()).collect())
        };
        entries.push(KnownHostsEntry { marker, hosts, key_text: format!("{declared_type} {encoded}"), key });
    }
    entries
}

/// OpenSSH `match_hostname`: a negated pattern that matches excludes the host outright;
/// otherwise any positive match includes it.
fn match_host_patterns(name: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(name.as_bytes(), negated.as_bytes()) {
                return false;
            }
        } else if wildcard_match(name.as_bytes(), pattern.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `*` matches any run (also empty), `?` exactly one byte.
fn wildcard_match(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((star, at)) = backtrack {
            p = star + 1;
            t = at + 1;
            backtrack = Some((star, at + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether a hashed host field (`|1|salt|HMAC-SHA1(salt, name)`) is for `host_entry`.
///
/// libssh2 already implements this HMAC for its own known_hosts support, so we let it
/// do the hashing: load the line into a one-line store and ask about the name with a
/// dummy key; "mismatch" (or "match") means the name hashed equal, "not found" that it
/// did not. Only the host matching is delegated; keys are compared by us. Lines with
/// key types libssh2 cannot parse never match (their hosts are reported unknown).
fn hashed_host_matches(field: &str, key_text: &str, host_entry: &str) -> bool {
    let store = ssh2::Session::new().and_then(|session| {
        let mut known = session.known_hosts()?;
        known.read_str(&format!("{field} {key_text}"), ssh2::KnownHostFileKind::OpenSSH)?;
        Ok(known.check(host_entry, &[0, 0, 0]))
    });
    matches!(store, Ok(ssh2::CheckResult::Match | ssh2::CheckResult::Mismatch))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key made by `ssh-keygen -t ed25519` and the fingerprint `ssh-keygen -lf` printed for it.
    const ED25519_B64: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIDV2WGvMJIZrtEHFQ+GE9S04+ZNfZVNAXsVqATbBe/1V";
    const ED25519_FINGERPRINT: &str = "SHA256:CJl+pMJlLF6Wwb66giS9EaDRX9H6vfNcMsOQQfEzXow";

    fn blob() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(ED25519_B64).unwrap()
    }

    #[test]
    fn fingerprint_matches_ssh_keygen_and_key_type_is_read_from_the_blob() {
        assert_eq!(fingerprint_sha256(&blob()), ED25519_FINGERPRINT);
        assert_eq!(key_algorithm(&blob()).as_deref(), Some("ssh-ed25519"));
        assert_eq!(key_algorithm(&[0, 0, 0, 99, b'x']), None);
    }

    #[test]
    fn pinned_fingerprint_is_normalized_and_garbage_refused() {
        let fp = fingerprint_sha256(&blob());
        assert_eq!(normalize_fingerprint(&format!("{fp}=")), Some(fp.clone()));
        assert_eq!(normalize_fingerprint(&format!("  {fp}\n")), Some(fp));
        assert_eq!(normalize_fingerprint("MD5:aa:bb"), None);
        assert_eq!(normalize_fingerprint("SHA256:tooshort"), None);
    }

    #[test]
    fn host_patterns_follow_openssh_rules() {
        let p = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert!(match_host_patterns("ru1.lab", &p("ru1.lab")));
        assert!(match_host_patterns("ru1.lab", &p("*.lab")));
        assert!(match_host_patterns("[10.0.0.5]:2222", &p("[10.0.0.?]:2222")));
        assert!(!match_host_patterns("ru1.lab", &p("*.lab,!ru1.lab")));
        assert!(!match_host_patterns("[ru1.lab]:2222", &p("ru1.lab")), "a port-22 pin must not cover another port");
        assert!(!match_host_patterns("ru10.lab", &p("ru1.lab")));
    }

    #[test]
    fn hashed_host_names_match_only_their_host() {
        // `ssh-keygen -H` of a `[127.0.0.1]:2222` line holding the key above.
        let line = format!("|1|NlPlN1gLNaWo0YeUVjZ+ltlUQrM=|raxBym2HScA9i0pI29QM3lC09sw= ssh-ed25519 {ED25519_B64}\n");
        let entries = parse_known_hosts(&line);
        assert_eq!(entries.len(), 1);
        assert!(entries[0].applies_to("[127.0.0.1]:2222"));
        assert!(!entries[0].applies_to("[127.0.0.1]:2223"));
        assert!(!entries[0].applies_to("127.0.0.1"));
    }

    #[test]
    fn known_hosts_markers_and_broken_lines_are_handled() {
        let text = format!(
            "# comment\n\n[ru1]:2222 ssh-ed25519 {ED25519_B64}\n@revoked ru2 ssh-ed25519 {ED25519_B64}\n\
             ru3 ssh-rsa {ED25519_B64}\nru4 ssh-ed25519 not!base64\n@cert-authority * ssh-ed25519 {ED25519_B64}\n"
        );
        let entries = parse_known_hosts(&text);
        // The ssh-rsa line lies about its key type and the non-base64 line is broken.
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].marker, Marker::None);
        assert_eq!(entries[1].marker, Marker::Revoked);
        assert_eq!(entries[2].marker, Marker::CertAuthority);
    }

    #[test]
    fn policy_accepts_the_pin_and_refuses_others_with_a_description() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, format!("[ru1]:2222 ssh-ed25519 {ED25519_B64}\n")).unwrap();
        let policy = HostKeyPolicy::new("ru1", "RU1", 2222, None, Some(&path)).unwrap();
        assert_eq!(policy.preferred_algorithms(), vec!["ssh-ed25519"]);
        assert!(policy.check(&OfferedKey::from_blob(&blob())).is_ok());

        let mut other = blob();
        *other.last_mut().unwrap() ^= 1;
        match policy.check(&OfferedKey::from_blob(&other)) {
            Err(Refusal::Mismatch { expected }) => assert!(expected.contains(&fingerprint_sha256(&blob()))),
            other => panic!("expected a mismatch, got {other:?}"),
        }

        let elsewhere = HostKeyPolicy::new("ru2", "ru2", 22, None, Some(&path)).unwrap();
        assert_eq!(elsewhere.preferred_algorithms(), DEFAULT_HOST_KEY_ALGORITHMS.to_vec());
        assert!(matches!(elsewhere.check(&OfferedKey::from_blob(&blob())), Err(Refusal::Unknown { .. })));
    }

    #[test]
    fn a_policy_needs_a_pin() {
        assert!(matches!(HostKeyPolicy::new("ru1", "h", 22, None, None), Err(SshError::NoHostKeyPin { .. })));
        assert!(matches!(HostKeyPolicy::new("ru1", "h", 22, Some("ssh-ed25519 AAAA"), None), Err(SshError::BadHostKeyPin { .. })));
    }
}
