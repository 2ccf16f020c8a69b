//! Opening a verified, authenticated libssh2 session (blocking; runs on a session thread).
//!
//! Order matters: TCP, SSH handshake with the algorithm preferences that let the pinned
//! key be presented, host key check, and only then any credential. Shared by the
//! command session, each shell's own session and login attempts.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ssh2::MethodType;

use super::audit::{connect_tcp, read_server_kexinit};
use super::error::SshError;
use super::hostkey::{algorithms_for_key_type, key_type_of_algorithm, HostKeyPolicy, OfferedKey, Refusal, DEFAULT_HOST_KEY_ALGORITHMS};
use super::wire::{
    Wire, WireError, LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_FILE, LIBSSH2_ERROR_KEYFILE_AUTH_FAILED,
    LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED,
};
use super::{ConnectOptions, NegotiatedAlgorithms};
use proofrig_model::events::{ChannelId, EventKind, Recorder};
use proofrig_model::rig::SshEndpoint;
use proofrig_model::secret::{Secret, SecretRef};
use proofrig_model::wire::ssh::ServerAlgorithms;

/// Everything needed to open (and re-open, for shells) sessions to one endpoint.
#[derive(Debug)]
pub(crate) struct Target {
    pub device: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key_file: Option<PathBuf>,
    pub key_passphrase: Option<SecretRef>,
    pub password: Option<SecretRef>,
    pub timeout: Duration,
    pub keepalive_s: u32,
    /// The rig's `ssh.persistent_shell`: a plan's commands go through one shell.
    pub persistent_shell: bool,
    pub options: ConnectOptions,
    policy: HostKeyPolicy,
    /// Host-key algorithms that produced an accepted key; later sessions start with them.
    learned_host_key_algorithms: Mutex<Option<Vec<String>>>,
}

impl Target {
    pub fn new(device: &str, endpoint: &SshEndpoint, options: ConnectOptions) -> Result<Self, SshError> {
        let policy =
            HostKeyPolicy::new(device, &endpoint.host, endpoint.port, endpoint.host_key.as_deref(), endpoint.known_hosts.as_deref())?;
        Ok(Self {
            device: device.to_string(),
            host: endpoint.host.clone(),
            port: endpoint.port,
            user: endpoint.user.clone(),
            key_file: endpoint.key_file.clone(),
            key_passphrase: endpoint.key_passphrase.clone(),
            password: endpoint.password.clone(),
            timeout: Duration::from_millis(endpoint.timeout_ms.max(1)),
            keepalive_s: endpoint.keepalive_s,
            persistent_shell: endpoint.persistent_shell,
            options,
            policy,
            learned_host_key_algorithms: Mutex::new(None),
        })
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Map a failed libssh2 operation on an established session to an error.
    pub fn failure(&self, operation: &str, e: WireError) -> SshError {
        match e {
            WireError::TimedOut => SshError::Timeout { device: self.device.clone(), operation: operation.into(), after: self.timeout },
            e if e.is_connection_loss() => {
                SshError::ChannelLost { device: self.device.clone(), operation: operation.into(), reason: e.to_string() }
            }
            e => SshError::Protocol { device: self.device.clone(), operation: operation.into(), reason: e.to_string() },
        }
    }

    fn secret(&self, reference: &SecretRef) -> Result<Secret, SshError> {
        reference.resolve().map_err(|source| SshError::Secret { device: self.device.clone(), source })
    }
}

/// A handshaken session whose host key the pin accepted; not yet authenticated.
pub(crate) struct Verified {
    pub wire: Wire,
    pub host_key: OfferedKey,
    pub negotiated: NegotiatedAlgorithms,
}

enum HandshakeFailure {
    /// libssh2 could not complete key exchange; maybe no common algorithm.
    Negotiation(String),
    Other(SshError),
}

/// TCP + SSH handshake offering `host_key_algorithms`; returns the presented key.
fn handshake(target: &Target, host_key_algorithms: &[String]) -> Result<(Wire, OfferedKey), HandshakeFailure> {
    let deadline = target.deadline();
    let stream = connect_tcp(&target.device, &target.host, target.port, deadline, target.timeout).map_err(HandshakeFailure::Other)?;
    let connect_error = |reason: String| SshError::Connect { device: target.device.clone(), addr: target.addr(), reason };
    let wire = Wire::new(stream).map_err(|e| HandshakeFailure::Other(connect_error(e.to_string())))?;
    // Bounds the few calls ssh2 makes in blocking mode (destructors).
    wire.session.set_timeout(target.timeout.as_millis().min(u32::MAX as u128) as u32);
    apply_preferences(&wire, target, host_key_algorithms).map_err(HandshakeFailure::Other)?;

    let operation = format!("SSH handshake with {}", target.addr());
    match wire.retry(Some(deadline), |session| session.clone().handshake()) {
        Ok(()) => {}
        Err(WireError::TimedOut) => return Err(HandshakeFailure::Other(target.failure(&operation, WireError::TimedOut))),
        Err(e) if e.is_connection_loss() => {
            return Err(HandshakeFailure::Other(connect_error(format!(
            "the server closed the connection during the SSH handshake ({e}); it may refuse this client's algorithms or limit connections"
        ))))
        }
        Err(e) => return Err(HandshakeFailure::Negotiation(e.to_string())),
    }
    let Some((blob, _)) = wire.session.host_key() else {
        return Err(HandshakeFailure::Other(SshError::Protocol {
            device: target.device.clone(),
            operation,
            reason: "libssh2 reports no host key after the handshake".into(),
        }));
    };
    let key = OfferedKey::from_blob(blob);
    Ok((wire, key))
}

/// One kind of algorithm the client can be constrained on.
struct Preference<'a> {
    kind: &'static str,
    methods: &'static [MethodType],
    wanted: Option<&'a [String]>,
}

fn apply_preferences(wire: &Wire, target: &Target, host_key_algorithms: &[String]) -> Result<(), SshError> {
    let options = &target.options;
    let preferences = [
        Preference { kind: "key exchange", methods: &[MethodType::Kex], wanted: options.kex_algorithms.as_deref() },
        Preference { kind: "host key", methods: &[MethodType::HostKey], wanted: Some(host_key_algorithms) },
        Preference { kind: "cipher", methods: &[MethodType::CryptCs, MethodType::CryptSc], wanted: options.ciphers.as_deref() },
        Preference { kind: "MAC", methods: &[MethodType::MacCs, MethodType::MacSc], wanted: options.macs.as_deref() },
    ];
    for Preference { kind, methods, wanted } in preferences {
        let Some(wanted) = wanted else { continue };
        for &method in methods {
            let supported = wire.session.supported_algs(method).unwrap_or_default();
            let usable: Vec<&str> = wanted.iter().map(String::as_str).filter(|name| supported.contains(name)).collect();
            if usable.is_empty() {
                return Err(SshError::UnsupportedAlgorithms {
                    device: target.device.clone(),
                    kind: kind.into(),
                    requested: wanted.join(","),
                    supported: supported.join(","),
                });
            }
            wire.session.method_pref(method, &usable.join(",")).map_err(|e| SshError::Protocol {
                device: target.device.clone(),
                operation: format!("setting {kind} preferences"),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
}

fn negotiated(wire: &Wire) -> NegotiatedAlgorithms {
    let method = |m| wire.session.methods(m).unwrap_or_default().to_string();
    NegotiatedAlgorithms {
        server_banner: wire.session.banner().unwrap_or_default().to_string(),
        kex: method(MethodType::Kex),
        host_key: method(MethodType::HostKey),
        cipher_client_to_server: method(MethodType::CryptCs),
        cipher_server_to_client: method(MethodType::CryptSc),
        mac_client_to_server: method(MethodType::MacCs),
        mac_server_to_client: method(MethodType::MacSc),
    }
}

fn supported_host_key_algorithms() -> Vec<&'static str> {
    ssh2::Session::new().and_then(|s| s.supported_algs(MethodType::HostKey)).unwrap_or_default()
}

/// Handshake and host key verification.
///
/// With a fingerprint pin the key type is unknown in advance: if the first key the
/// server presents is not the pinned one, the server's other host key types (read from
/// its KEXINIT) are tried one by one before the key is declared a mismatch.
pub(crate) fn open_verified(target: &Target) -> Result<Verified, SshError> {
    let learned = target.learned_host_key_algorithms.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match open_verified_from(target, learned.clone()) {
        // What worked before may be gone (device re-keyed): decide afresh, so the
        // refusal describes the server as it is now.
        Err(SshError::NegotiationRefused { .. } | SshError::HostKeyMismatch { .. }) if learned.is_some() => {
            *target.learned_host_key_algorithms.lock().unwrap_or_else(|p| p.into_inner()) = None;
            open_verified_from(target, None)
        }
        result => result,
    }
}

fn open_verified_from(target: &Target, learned: Option<Vec<String>>) -> Result<Verified, SshError> {
    let supported = supported_host_key_algorithms();
    let forced = target.options.host_key_algorithms.clone();
    let first: Vec<String> = forced.clone().or(learned).unwrap_or_else(|| {
        target.policy.preferred_algorithms().into_iter().filter(|a| supported.contains(a)).map(str::to_string).collect()
    });

    let (wire, key) = match handshake(target, &first) {
        Ok(done) => done,
        Err(HandshakeFailure::Other(e)) => return Err(e),
        Err(HandshakeFailure::Negotiation(message)) => {
            let server = read_server_kexinit(&target.device, &target.host, target.port, target.timeout).ok();
            let server = server.map(|s| s.algorithms);
            if let Some(reason) = server.as_ref().and_then(|s| diagnose_negotiation(target, &first, s)) {
                // The server holds none of the pinned key types: fetch what it does hold,
                // so the refusal names the key it actually presents.
                let pinned_types_only = forced.is_none() && target.policy.key_type_known();
                if pinned_types_only && reason.starts_with("no common host key") {
                    let defaults: Vec<String> =
                        DEFAULT_HOST_KEY_ALGORITHMS.iter().filter(|a| supported.contains(a)).map(|a| a.to_string()).collect();
                    let (wire, key) = match handshake(target, &defaults) {
                        Ok(done) => done,
                        Err(HandshakeFailure::Other(e)) => return Err(e),
                        Err(HandshakeFailure::Negotiation(_)) => {
                            return Err(SshError::NegotiationRefused { device: target.device.clone(), reason })
                        }
                    };
                    return finish(target, wire, key, &defaults, Vec::new());
                }
                return Err(SshError::NegotiationRefused { device: target.device.clone(), reason });
            }
            return Err(SshError::Protocol {
                device: target.device.clone(),
                operation: format!("SSH handshake with {}", target.addr()),
                reason: message,
            });
        }
    };

    match target.policy.check(&key) {
        Ok(()) => finish(target, wire, key, &first, Vec::new()),
        Err(Refusal::Mismatch { .. }) if forced.is_none() && !target.policy.key_type_known() => {
            drop(wire);
            retry_other_key_types(target, key, &supported)
        }
        Err(_) => finish(target, wire, key, &first, Vec::new()),
    }
}

/// The fingerprint-pin search over the server's other host key types.
fn retry_other_key_types(target: &Target, first_key: OfferedKey, supported: &[&str]) -> Result<Verified, SshError> {
    let mut also_offered = Vec::new();
    let server_host_keys = read_server_kexinit(&target.device, &target.host, target.port, target.timeout)
        .map(|exchange| exchange.algorithms.host_key)
        .unwrap_or_default();
    let mut tried_types = vec![first_key.algorithm.clone()];
    for algorithm in &server_host_keys {
        let key_type = key_type_of_algorithm(algorithm).to_string();
        if tried_types.contains(&key_type) {
            continue;
        }
        tried_types.push(key_type.clone());
        let prefs: Vec<String> = algorithms_for_key_type(&key_type)
            .iter()
            .filter(|a| supported.contains(a) && server_host_keys.iter().any(|s| s == *a))
            .map(|a| a.to_string())
            .collect();
        if prefs.is_empty() {
            continue;
        }
        match handshake(target, &prefs) {
            Ok((wire, key)) if target.policy.check(&key).is_ok() => return finish(target, wire, key, &prefs, Vec::new()),
            Ok((_, key)) => also_offered.push(key.describe()),
            Err(HandshakeFailure::Other(e)) => return Err(e),
            Err(HandshakeFailure::Negotiation(_)) => {}
        }
    }
    // Re-check to produce the refusal for the first key, with what else was seen.
    let Err(refusal) = target.policy.check(&first_key) else { unreachable!("the first key was refused") };
    Err(refusal_error(target, &first_key, refusal, also_offered))
}

/// Accept the session if the pin accepts its key, remembering what worked.
fn finish(
    target: &Target,
    wire: Wire,
    key: OfferedKey,
    host_key_algorithms: &[String],
    also_offered: Vec<String>,
) -> Result<Verified, SshError> {
    if let Err(refusal) = target.policy.check(&key) {
        return Err(refusal_error(target, &key, refusal, also_offered));
    }
    if target.options.host_key_algorithms.is_none() {
        *target.learned_host_key_algorithms.lock().unwrap_or_else(|p| p.into_inner()) = Some(host_key_algorithms.to_vec());
    }
    let negotiated = negotiated(&wire);
    Ok(Verified { wire, host_key: key, negotiated })
}

fn refusal_error(target: &Target, key: &OfferedKey, refusal: Refusal, also_offered: Vec<String>) -> SshError {
    match refusal {
        Refusal::Mismatch { expected } => SshError::HostKeyMismatch {
            device: target.device.clone(),
            addr: target.addr(),
            expected,
            offered: key.fingerprint.clone(),
            key_type: key.algorithm.clone(),
            also_offered,
        },
        Refusal::Unknown { known_hosts, host_entry } => SshError::HostKeyUnknown {
            device: target.device.clone(),
            addr: target.addr(),
            offered: key.fingerprint.clone(),
            key_type: key.algorithm.clone(),
            known_hosts,
            host_entry,
        },
    }
}

/// Which algorithm list had no overlap between this client and the server, if any.
fn diagnose_negotiation(target: &Target, host_key_algorithms: &[String], server: &ServerAlgorithms) -> Option<String> {
    let session = ssh2::Session::new().ok()?;
    let client = |method: MethodType, wanted: &Option<Vec<String>>| -> Vec<String> {
        let supported = session.supported_algs(method).unwrap_or_default();
        match wanted {
            Some(list) => list.iter().filter(|a| supported.contains(&a.as_str())).cloned().collect(),
            None => supported.iter().map(|a| a.to_string()).collect(),
        }
    };
    let options = &target.options;
    let client_ciphers = client(MethodType::CryptCs, &options.ciphers);
    let server_kex: Vec<String> = server.kex_methods().into_iter().map(str::to_string).collect();
    let mut checks = vec![
        ("key exchange", client(MethodType::Kex, &options.kex_algorithms), server_kex),
        ("host key", host_key_algorithms.to_vec(), server.host_key.clone()),
        ("cipher (client to server)", client_ciphers.clone(), server.ciphers_client_to_server.clone()),
        ("cipher (server to client)", client_ciphers.clone(), server.ciphers_server_to_client.clone()),
    ];
    // With an AEAD cipher agreed, MACs are not negotiated at all.
    let common_ciphers: Vec<&String> = client_ciphers.iter().filter(|c| server.ciphers_client_to_server.contains(c)).collect();
    let aead_only = !common_ciphers.is_empty() && common_ciphers.iter().all(|c| c.contains("gcm") || c.contains("poly1305"));
    if !aead_only {
        let client_macs = client(MethodType::MacCs, &options.macs);
        checks.push(("MAC (client to server)", client_macs.clone(), server.macs_client_to_server.clone()));
        checks.push(("MAC (server to client)", client_macs, server.macs_server_to_client.clone()));
    }
    let problems: Vec<String> = checks
        .into_iter()
        .filter(|(_, ours, theirs)| !ours.iter().any(|a| theirs.contains(a)))
        .map(|(what, ours, theirs)| {
            format!("no common {what} algorithm: client offers {}, server offers {}", ours.join(","), theirs.join(","))
        })
        .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The event text for a session that was opened and verified.
pub(crate) fn opened_detail(target: &Target, verified: &Verified) -> String {
    let n = &verified.negotiated;
    format!(
        "{} {}; host key {} accepted by the pin; kex {}; cipher {}/{}; mac {}/{}",
        target.addr(),
        n.server_banner,
        verified.host_key.describe(),
        n.kex,
        n.cipher_client_to_server,
        n.cipher_server_to_client,
        n.mac_client_to_server,
        n.mac_server_to_client
    )
}

/// Authentication methods the server offers `user`, and whether `none` already succeeded.
pub(crate) fn auth_methods(wire: &Wire, target: &Target, user: &str) -> Result<(Vec<String>, bool), SshError> {
    let list = wire
        .retry(Some(target.deadline()), |session| session.auth_methods(user).map(str::to_string))
        .map_err(|e| target.failure("asking for authentication methods", e))?;
    let methods = list.split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
    Ok((methods, wire.session.authenticated()))
}

/// One authentication attempt; `Ok(false)` when the server refused it.
pub(crate) fn attempt_password(wire: &Wire, target: &Target, user: &str, password: &Secret) -> Result<bool, SshError> {
    let result = wire.retry(Some(target.deadline()), |session| session.userauth_password(user, password.expose()));
    refused_or_error(target, "password authentication", result, None)
}

pub(crate) fn attempt_key(
    wire: &Wire,
    target: &Target,
    user: &str,
    key_file: &Path,
    passphrase: Option<&Secret>,
) -> Result<bool, SshError> {
    let result =
        wire.retry(Some(target.deadline()), |session| session.userauth_pubkey_file(user, None, key_file, passphrase.map(Secret::expose)));
    refused_or_error(target, "public key authentication", result, Some(key_file))
}

fn refused_or_error(target: &Target, operation: &str, result: Result<(), WireError>, key_file: Option<&Path>) -> Result<bool, SshError> {
    match result {
        Ok(()) => Ok(true),
        Err(e) => match e.code() {
            Some(LIBSSH2_ERROR_AUTHENTICATION_FAILED | LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) => Ok(false),
            // libssh2 reports an unreadable key, a wrong passphrase and an unsupported
            // format alike; its message tells them apart.
            Some(LIBSSH2_ERROR_FILE | LIBSSH2_ERROR_KEYFILE_AUTH_FAILED) if key_file.is_some() => Err(SshError::KeyFile {
                device: target.device.clone(),
                path: key_file.map(Path::to_path_buf).unwrap_or_default(),
                reason: e.to_string(),
            }),
            _ => Err(target.failure(operation, e)),
        },
    }
}

/// Log in with the endpoint's credentials: key file first, then password, each only if
/// the server offers the method. Records an `SshAuth` event per attempt.
pub(crate) fn login(wire: &Wire, target: &Target, recorder: &Recorder, channel: &ChannelId) -> Result<(), SshError> {
    let user = target.user.as_str();
    let record = |method: &str, accepted: bool| {
        recorder.emit(EventKind::SshAuth {
            channel: channel.clone(),
            user: user.to_string(),
            method: method.to_string(),
            accepted,
            source: wire.local_addr().map(|a| a.to_string()),
        });
    };
    let (methods, already) = auth_methods(wire, target, user)?;
    if already {
        record("none", true);
        return Ok(());
    }
    if target.key_file.is_none() && target.password.is_none() {
        return Err(SshError::NoCredential { device: target.device.clone(), user: user.into() });
    }
    let mut tried = Vec::new();
    let refused =
        |tried: Vec<String>| SshError::AuthRefused { device: target.device.clone(), user: user.into(), tried, methods: methods.clone() };
    if let Some(key_file) = &target.key_file {
        if methods.iter().any(|m| m == "publickey") {
            let passphrase = target.key_passphrase.as_ref().map(|r| target.secret(r)).transpose()?;
            match attempt_key(wire, target, user, key_file, passphrase.as_ref()) {
                Ok(accepted) => {
                    record("publickey", accepted);
                    if accepted {
                        return Ok(());
                    }
                    tried.push(format!("publickey with {}", key_file.display()));
                }
                // A server may hang up after a refusal (MaxAuthTries); that is a refusal.
                Err(SshError::ChannelLost { .. }) if !tried.is_empty() => return Err(refused(tried)),
                Err(e) => return Err(e),
            }
        } else {
            tried.push("publickey (not offered by the server)".into());
        }
    }
    if let Some(reference) = &target.password {
        if methods.iter().any(|m| m == "password") {
            let password = target.secret(reference)?;
            match attempt_password(wire, target, user, &password) {
                Ok(accepted) => {
                    record("password", accepted);
                    if accepted {
                        return Ok(());
                    }
                    tried.push(format!("password from {}", reference.label()));
                }
                Err(SshError::ChannelLost { .. }) if !tried.is_empty() => return Err(refused(tried)),
                Err(e) => return Err(e),
            }
        } else {
            tried.push("password (not offered by the server)".into());
        }
    }
    Err(refused(tried))
}

/// Open, verify and log in; records `ChannelOpened` and `SshAuth` on `channel`, or a note
/// saying why the connection was refused.
pub(crate) fn open_session(target: &Target, recorder: &Recorder, channel: &ChannelId) -> Result<Verified, SshError> {
    let result = open_verified(target).and_then(|verified| {
        recorder.emit(EventKind::ChannelOpened { channel: channel.clone(), detail: opened_detail(target, &verified) });
        login(&verified.wire, target, recorder, channel)?;
        if target.keepalive_s > 0 {
            verified.wire.session.set_keepalive(true, target.keepalive_s);
        }
        Ok(verified)
    });
    if let Err(e) = &result {
        recorder.emit(EventKind::Note { channel: channel.clone(), text: format!("SSH session not established: {e}") });
    }
    result
}
