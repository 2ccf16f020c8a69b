//! The SSH agent: commands, interactive shells, file fetches, login attempts and
//! algorithm audits on devices that speak SSH, all recorded as evidence.
//!
//! libssh2 (through the `ssh2` crate) is blocking C code, so each SSH session lives on
//! its own thread and runs libssh2 in non-blocking mode waited on with poll(2) (see
//! `wire`). The rest of proofrig sees async functions: requests go to the session
//! thread over a channel, answers come back over tokio oneshots, and the runtime is
//! never blocked.
//!
//! Host keys are always pinned (`hostkey`); there is no way to accept an unknown key.
//! Passwords and passphrases are read from their [`SecretRef`](proofrig_model::secret::SecretRef)
//! only when sent and never appear in events, logs or errors.
//!
//! Channels recorded for a device `ru1`: `ru1/ssh` (session opened/closed/lost, auth),
//! `ru1/ssh:exec` (commands and exits) with `ru1/ssh:exec:stdout` and
//! `ru1/ssh:exec:stderr` (output bytes), `ru1/ssh:shell` (interactive bytes both ways),
//! `ru1/ssh:fetch` (fetched files), `ru1/ssh:login` (login attempts) and `ru1/ssh:audit`
//! (algorithm audits).

// SshError is large (it names device, keys and files so messages can say what to do);
// it only travels on cold paths next to network I/O, and boxing it would make matching
// on it clumsier for every caller.
#![allow(clippy::result_large_err)]

mod audit;
mod connect;
mod error;
pub mod hostkey;
mod login;
mod negotiate;
mod session;
mod shell;
mod wire;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use audit::audit_algorithms;
pub use error::SshError;
pub use hostkey::{fingerprint_sha256, known_hosts_name};
pub use login::try_login;
pub use negotiate::{probe_negotiation, NegotiationOutcome, AGREEMENT_WINDOW};
pub use session::SshSession;
// What an audit returns; the wire format itself lives in proofrig_model::wire::ssh.
pub use proofrig_model::wire::ssh::ServerAlgorithms;

use proofrig_model::secret::Secret;

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit status the server reported; None when the command died of a signal.
    pub exit_status: Option<i32>,
    /// Signal name without `SIG` (e.g. `TERM`) when the command was killed by one.
    pub exit_signal: Option<String>,
}

impl ExecOutput {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Constraints on what the client offers during algorithm negotiation; `None` keeps
/// the default (libssh2's lists; for host keys, the types the pin calls for).
///
/// Used by security tests to check that a device refuses a client offering only
/// forbidden algorithms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    pub kex_algorithms: Option<Vec<String>>,
    pub host_key_algorithms: Option<Vec<String>>,
    /// Applied to both directions.
    pub ciphers: Option<Vec<String>>,
    /// Applied to both directions.
    pub macs: Option<Vec<String>>,
}

/// What was agreed with the server for a session.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NegotiatedAlgorithms {
    pub server_banner: String,
    pub kex: String,
    pub host_key: String,
    pub cipher_client_to_server: String,
    pub cipher_server_to_client: String,
    pub mac_client_to_server: String,
    pub mac_server_to_client: String,
}

/// Terminal of an interactive shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOptions {
    /// TERM announced to the device; `vt100` keeps escape sequences few and standard.
    pub term: String,
    /// Wide enough that typical commands do not wrap, which would break prompt matching.
    pub cols: u32,
    pub rows: u32,
}

impl Default for ShellOptions {
    fn default() -> Self {
        Self { term: "vt100".into(), cols: 200, rows: 50 }
    }
}

/// A credential for [`try_login`].
#[derive(Debug, Clone)]
pub enum Credential {
    Password(Secret),
    Key { path: PathBuf, passphrase: Option<Secret> },
}

impl Credential {
    /// The SSH authentication method this credential uses.
    pub fn method(&self) -> &'static str {
        match self {
            Credential::Password(_) => "password",
            Credential::Key { .. } => "publickey",
        }
    }
}

/// How a login attempt ended. Refusal is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginOutcome {
    pub accepted: bool,
    /// Authentication methods the server offered for the user (empty when negotiation
    /// failed before authentication could start).
    pub methods_offered: Vec<String>,
    /// Set when the server and the (constrained) client found no common algorithms, so
    /// the attempt never reached authentication; says which list had no overlap.
    pub negotiation_refused: Option<String>,
    /// The address and port the attempt came from, as the device's log names it
    /// (None when negotiation failed before authentication).
    pub source: Option<std::net::SocketAddr>,
}
