//! Login attempts whose refusal is the expected, tested outcome.
//!
//! Security tests ask "does the device refuse this password / this key / a client that
//! only offers weak algorithms?". For them a refusal is a result to record, not an
//! error: [`try_login`] only fails for infrastructure problems (unreachable device, host
//! key not matching its pin, unreadable key file).

use std::time::Instant;

use super::connect::{attempt_key, attempt_password, auth_methods, open_verified, opened_detail, Target};
use super::error::SshError;
use super::{ConnectOptions, Credential, LoginOutcome};
use proofrig_model::events::{ChannelId, EventKind, Recorder};
use proofrig_model::rig::SshEndpoint;
use proofrig_model::wire::ssh::METHODS_OFFERED;

/// Try to log in to `endpoint` as `user` with `credential` (the endpoint's own user and
/// credentials are ignored; its host, port, pin and timeout are used). `options` can
/// constrain the algorithms the client offers; a server that finds nothing in common is
/// reported as `negotiation_refused`. Records the attempt on channel `ssh:login`.
pub async fn try_login(
    device: &str,
    endpoint: &SshEndpoint,
    user: &str,
    credential: Credential,
    options: &ConnectOptions,
    recorder: &Recorder,
) -> Result<LoginOutcome, SshError> {
    let (device_name, endpoint, user, options, recorder) =
        (device.to_string(), endpoint.clone(), user.to_string(), options.clone(), recorder.clone());
    super::session::run_on_thread(format!("ssh-login-{device}"), move || {
        login_blocking(&device_name, &endpoint, &user, &credential, options, &recorder)
    })
    .await
    .unwrap_or_else(|| Err(SshError::Closed { device: device.to_string() }))
}

fn login_blocking(
    device: &str,
    endpoint: &SshEndpoint,
    user: &str,
    credential: &Credential,
    options: ConnectOptions,
    recorder: &Recorder,
) -> Result<LoginOutcome, SshError> {
    let channel = ChannelId::new(device, "ssh:login");
    let target = Target::new(device, endpoint, options)?;
    let verified = match open_verified(&target) {
        Ok(verified) => verified,
        Err(SshError::NegotiationRefused { reason, .. }) => {
            recorder.emit(EventKind::Note {
                channel,
                text: format!("login attempt as {user} ({}): algorithm negotiation refused: {reason}", credential.method()),
            });
            return Ok(LoginOutcome { accepted: false, methods_offered: Vec::new(), negotiation_refused: Some(reason), source: None });
        }
        Err(e) => {
            recorder.emit(EventKind::Note { channel, text: format!("login attempt as {user} not made: {e}") });
            return Err(e);
        }
    };
    recorder.emit(EventKind::ChannelOpened { channel: channel.clone(), detail: opened_detail(&target, &verified) });
    let wire = &verified.wire;
    let source = wire.local_addr();
    let (methods_offered, none_accepted) = auth_methods(wire, &target, user)?;
    recorder.emit(EventKind::Note { channel: channel.clone(), text: format!("{METHODS_OFFERED}{}", methods_offered.join(",")) });
    let (method, accepted) = if none_accepted {
        ("none", true)
    } else if !methods_offered.iter().any(|m| m == credential.method()) {
        // Not even attempted: the server does not offer the method at all.
        (credential.method(), false)
    } else {
        let accepted = match credential {
            Credential::Password(password) => attempt_password(wire, &target, user, password),
            Credential::Key { path, passphrase } => attempt_key(wire, &target, user, path, passphrase.as_ref()),
        };
        // A server that hangs up instead of answering gave no verdict: that is an error.
        (credential.method(), accepted?)
    };
    recorder.emit(EventKind::SshAuth {
        channel: channel.clone(),
        user: user.to_string(),
        method: method.to_string(),
        accepted,
        source: source.map(|a| a.to_string()),
    });
    let deadline = Some(Instant::now() + std::time::Duration::from_millis(500));
    let _ = wire.retry(deadline, |s| s.disconnect(None, "proofrig login attempt done", None));
    recorder.emit(EventKind::ChannelClosed { channel });
    Ok(LoginOutcome { accepted, methods_offered, negotiation_refused: None, source })
}
