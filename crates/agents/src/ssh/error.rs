//! What can go wrong talking SSH to a device, said so that a technician knows what to do.
//!
//! Every message names the device, and none ever contains a secret: passwords and
//! passphrases only ever appear as their reference label.

use std::path::PathBuf;
use std::time::Duration;

use proofrig_model::secret::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{device}: cannot reach SSH at {addr}: {reason}. Check that the device is powered and up, and the host/port in the rig file")]
    Connect { device: String, addr: String, reason: String },

    #[error(
        "{device}: HOST KEY MISMATCH at {addr}: the server offered {key_type} key {offered}{also}, but the rig pins {expected}. \
         Either the device was re-keyed (reflashed, factory reset) or someone is intercepting the connection. \
         Verify the key on the device console (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`) before changing the pin",
        also = also_offered_text(also_offered)
    )]
    HostKeyMismatch {
        device: String,
        addr: String,
        /// What the rig pins, e.g. `SHA256:... (ssh-ed25519)`.
        expected: String,
        /// Fingerprint of the key the server presented first, `SHA256:<base64>`.
        offered: String,
        /// Its algorithm, e.g. `ssh-ed25519`.
        key_type: String,
        /// Other host keys the server holds, as `SHA256:... (type)`.
        also_offered: Vec<String>,
    },

    #[error(
        "{device}: unknown host key at {addr}: {known_hosts} has no key for `{host_entry}`; the server offered {key_type} key {offered}. \
         Compare this fingerprint with the one shown on the device console (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`); \
         only if they match, add the key to {known_hosts} or pin `host_key: {offered}` in the rig file",
        known_hosts = known_hosts.display()
    )]
    HostKeyUnknown {
        device: String,
        addr: String,
        offered: String,
        key_type: String,
        known_hosts: PathBuf,
        /// The name looked up, `host` or `[host]:port` as OpenSSH writes it.
        host_entry: String,
    },

    #[error("{device}: the ssh endpoint pins no host key; add `host_key: SHA256:...` (as `ssh-keygen -lf` prints it) or `known_hosts: FILE`. proofrig never connects to an unpinned host")]
    NoHostKeyPin { device: String },

    #[error("{device}: host_key `{value}` is not a SHA256 fingerprint; write it as `ssh-keygen -lf` prints it: `SHA256:` followed by 43 base64 characters")]
    BadHostKeyPin { device: String, value: String },

    #[error("{device}: cannot read known_hosts file {}: {reason}", path.display())]
    KnownHosts { device: String, path: PathBuf, reason: String },

    #[error("{device}: the ssh endpoint for {user} has no credential; give `key_file` or `password` (a secret reference)")]
    NoCredential { device: String, user: String },

    #[error("{device}: cannot use private key {}: {reason}. Check the path, its format (OpenSSH or PEM) and key_passphrase", path.display())]
    KeyFile { device: String, path: PathBuf, reason: String },

    #[error(
        "{device}: login as {user} refused (tried {}); the server offers: {}. Check the user name, key or password in the rig file",
        list_or_none(tried),
        list_or_none(methods)
    )]
    AuthRefused { device: String, user: String, tried: Vec<String>, methods: Vec<String> },

    #[error("{device}: algorithm negotiation refused: {reason}")]
    NegotiationRefused { device: String, reason: String },

    #[error("{device}: none of the requested {kind} algorithms ({requested}) is supported by libssh2; it supports: {supported}")]
    UnsupportedAlgorithms { device: String, kind: String, requested: String, supported: String },

    #[error("{device}: {operation} timed out after {after:?}. The device may be hung or overloaded; check its console")]
    Timeout { device: String, operation: String, after: Duration },

    #[error("{device}: {source}")]
    Secret {
        device: String,
        #[source]
        source: SecretError,
    },

    #[error("{device}: SSH protocol error during {operation}: {reason}")]
    Protocol { device: String, operation: String, reason: String },

    #[error("{device}: SSH connection lost during {operation}: {reason}. The device may have rebooted or dropped off the network; reconnect once it is back")]
    ChannelLost { device: String, operation: String, reason: String },

    #[error("{device}: cannot fetch {path}: {reason}")]
    Fetch { device: String, path: String, reason: String },

    #[error("{device}: the SSH session is closed")]
    Closed { device: String },
}

impl SshError {
    /// The device this error concerns.
    pub fn device(&self) -> &str {
        match self {
            SshError::Connect { device, .. }
            | SshError::HostKeyMismatch { device, .. }
            | SshError::HostKeyUnknown { device, .. }
            | SshError::NoHostKeyPin { device }
            | SshError::BadHostKeyPin { device, .. }
            | SshError::KnownHosts { device, .. }
            | SshError::NoCredential { device, .. }
            | SshError::KeyFile { device, .. }
            | SshError::AuthRefused { device, .. }
            | SshError::NegotiationRefused { device, .. }
            | SshError::UnsupportedAlgorithms { device, .. }
            | SshError::Timeout { device, .. }
            | SshError::Secret { device, .. }
            | SshError::Protocol { device, .. }
            | SshError::ChannelLost { device, .. }
            | SshError::Fetch { device, .. }
            | SshError::Closed { device } => device,
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

fn also_offered_text(also: &[String]) -> String {
    if also.is_empty() {
        String::new()
    } else {
        format!(" (it also holds {})", also.join(", "))
    }
}
