//! The simulated device's SSH server (russh), the device's network management
//! interface.
//!
//! It offers the algorithms of the device's profile, authenticates through the
//! device OS (so lockout, root policy and the auth log apply), and runs exec
//! requests and interactive PTY shells through the device's command interpreter.
//! Power gating closes the listening socket and cuts live sessions.
//!
//! Commands run in their own tasks, never inside russh's session loop: a `sleep 5`
//! must not stall the session (or anything else on the runtime).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Preferred, SshId};
use tokio::sync::mpsc;

use crate::device_os::{DeviceOs, LoginOrigin};
use crate::gate::{ConnectionHandler, PowerGate};
use crate::line_editor::{to_terminal, Edit, LineEditor};
use crate::profile::Profile;
use crate::SimError;

/// The device's ed25519 host key.
#[derive(Clone)]
pub struct HostKey {
    key: PrivateKey,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey").field("fingerprint", &self.fingerprint_sha256()).finish_non_exhaustive()
    }
}

impl HostKey {
    /// The same seed always gives the same key, so a rig file can pin it.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        HostKey { key: PrivateKey::from(Ed25519Keypair::from_seed(&seed)) }
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, SimError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SimError::HostKey(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// `ssh-ed25519 AAAA...`, as in a `.pub` file (without comment).
    pub fn public_openssh(&self) -> String {
        let mut public = self.key.public_key().clone();
        public.set_comment("");
        public.to_openssh().unwrap_or_default().trim_end().to_string()
    }

    /// `SHA256:...`, exactly as `ssh-keygen -lf` prints it.
    pub fn fingerprint_sha256(&self) -> String {
        self.key.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// A `known_hosts` line pinning this key for a server at `addr`.
    pub fn known_hosts_line(&self, addr: SocketAddr) -> String {
        let host = match addr.port() {
            22 => addr.ip().to_string(),
            port => format!("[{}]:{port}", addr.ip()),
        };
        format!("{host} {}", self.public_openssh())
    }
}

/// Tunables of the SSH server that are not security posture.
#[derive(Debug, Clone)]
pub struct SshServerOptions {
    /// Delay before answering a failed authentication (russh makes it constant).
    pub auth_failure_delay: Duration,
    /// Authentication attempts allowed per connection (OpenSSH's MaxAuthTries).
    pub max_auth_attempts: usize,
    /// Identification string sent to clients.
    pub server_id: String,
    /// A hardened device ends an interactive shell (with a PTY) left without input
    /// this long, as its console does (TS 33.117 4.2.3.5.2); the weak one never does.
    pub idle_timeout: Option<Duration>,
}

impl Default for SshServerOptions {
    fn default() -> Self {
        SshServerOptions {
            auth_failure_delay: Duration::from_millis(500),
            max_auth_attempts: 6,
            server_id: "SSH-2.0-ProofrigSim_1.0".to_string(),
            idle_timeout: None,
        }
    }
}

/// A running SSH server of one simulated device. Dropping it cuts live sessions at
/// once and closes the listener as soon as the runtime drops the accept task;
/// `stop().await` returns only once the port refuses connections.
pub struct SimSshServer {
    host_key: HostKey,
    gate: PowerGate,
}

impl SimSshServer {
    /// Starts serving `os` on `addr` (port 0 picks a free port) with default options.
    /// The algorithms and account policy come from the device's profile.
    pub async fn start(addr: SocketAddr, os: DeviceOs, host_key: HostKey) -> Result<Self, SimError> {
        Self::start_with(addr, os, host_key, SshServerOptions::default()).await
    }

    pub async fn start_with(addr: SocketAddr, os: DeviceOs, host_key: HostKey, options: SshServerOptions) -> Result<Self, SimError> {
        let config = Arc::new(russh_config(os.profile(), &host_key, &options)?);
        os.install_host_public_key(&host_key.public_openssh());
        let handler_os = os.clone();
        let idle_timeout = options.idle_timeout.filter(|_| os.profile() == Profile::Hardened);
        let handler: ConnectionHandler = Arc::new(move |stream, peer| {
            let config = Arc::clone(&config);
            let os = handler_os.clone();
            Box::pin(async move {
                // SSH trades many small packets; without this, Nagle and delayed ACKs
                // stall each command ~40 ms (russh sets it only in its own accept loop).
                let _ = stream.set_nodelay(true);
                let connection = SshConnection { os, peer, user: None, channels: HashMap::new(), idle_timeout };
                match russh::server::run_stream(config, stream, connection).await {
                    Ok(session) => {
                        if let Err(error) = session.await {
                            tracing::debug!(%peer, %error, "simulated SSH session ended");
                        }
                    }
                    Err(error) => tracing::debug!(%peer, %error, "simulated SSH handshake failed"),
                }
            })
        });
        let gate = PowerGate::start(addr, "sshd", os, handler).await?;
        Ok(SimSshServer { host_key, gate })
    }

    /// The address actually listened on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.gate.local_addr()
    }

    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    pub fn is_powered(&self) -> bool {
        self.gate.is_powered()
    }

    /// Off: the port refuses connections and live sessions are cut. On: listens
    /// again on the same address and port.
    pub async fn set_powered(&self, powered: bool) -> Result<(), SimError> {
        self.gate.set_powered(powered).await
    }

    /// Shuts the server down for good.
    pub async fn stop(&self) {
        self.gate.stop().await
    }
}

fn russh_config(profile: Profile, host_key: &HostKey, options: &SshServerOptions) -> Result<russh::server::Config, SimError> {
    let algorithms = profile.ssh_algorithms();
    let unsupported = |kind: &'static str, name: &str| SimError::UnsupportedAlgorithm { kind, name: name.to_string() };
    let kex = algorithms
        .kex
        .iter()
        .map(|name| match *name {
            // The extension markers are not key exchanges russh could run, so its
            // name lookup does not know them.
            "ext-info-s" => Ok(russh::kex::EXTENSION_SUPPORT_AS_SERVER),
            "kex-strict-s-v00@openssh.com" => Ok(russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER),
            other => russh::kex::Name::try_from(other).map_err(|()| unsupported("kex", other)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cipher = algorithms
        .ciphers
        .iter()
        .map(|name| russh::cipher::Name::try_from(*name).map_err(|()| unsupported("cipher", name)))
        .collect::<Result<Vec<_>, _>>()?;
    let mac = algorithms
        .macs
        .iter()
        .map(|name| russh::mac::Name::try_from(*name).map_err(|()| unsupported("MAC", name)))
        .collect::<Result<Vec<_>, _>>()?;
    let key = algorithms
        .host_key
        .iter()
        .map(|name| Algorithm::new(name).map_err(|_| unsupported("host key", name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(russh::server::Config {
        server_id: SshId::Standard(Cow::Owned(options.server_id.clone())),
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        auth_rejection_time: options.auth_failure_delay,
        // OpenSSH clients open with a "none" probe; answering it slowly only
        // slows every login down.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key.key.clone()],
        max_auth_attempts: options.max_auth_attempts,
        inactivity_timeout: Some(Duration::from_secs(3600)),
        nodelay: true,
        preferred: Preferred {
            kex: Cow::Owned(kex),
            key: Cow::Owned(key),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Owned(cipher),
            mac: Cow::Owned(mac),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
        },
        ..Default::default()
    })
}

/// Per-connection state: who logged in and what each session channel is doing.
struct SshConnection {
    os: DeviceOs,
    peer: SocketAddr,
    user: Option<String>,
    channels: HashMap<ChannelId, ChannelState>,
    idle_timeout: Option<Duration>,
}

#[derive(Default)]
struct ChannelState {
    pty: bool,
    activity: Activity,
}

#[derive(Default)]
enum Activity {
    /// Opened, nothing requested yet.
    #[default]
    Idle,
    /// An interactive shell task consumes the channel's input.
    Shell(mpsc::UnboundedSender<ShellInput>),
    /// An exec whose command reads stdin: collecting it until EOF.
    ExecAwaitingStdin { command: String, stdin: Vec<u8> },
    /// An exec command is running; further input is discarded.
    Exec,
}

enum ShellInput {
    Data(Vec<u8>),
    Eof,
}

impl SshConnection {
    fn origin(&self) -> LoginOrigin {
        LoginOrigin::Ssh { peer: self.peer }
    }

    fn logged_in_user(&self) -> Result<String, russh::Error> {
        self.user.clone().ok_or(russh::Error::NotAuthenticated)
    }
}

impl russh::server::Handler for SshConnection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        match self.os.login_with_password(user, password, self.origin()) {
            Ok(()) => {
                self.user = Some(user.to_string());
                Ok(Auth::Accept)
            }
            Err(_) => Ok(Auth::reject()),
        }
    }

    async fn auth_publickey_offered(&mut self, user: &str, public_key: &PublicKey) -> Result<Auth, Self::Error> {
        let key = public_key.to_openssh().unwrap_or_default();
        if self.os.is_authorized_key(user, &key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(&mut self, user: &str, public_key: &PublicKey) -> Result<Auth, Self::Error> {
        let key = public_key.to_openssh().unwrap_or_default();
        match self.os.login_with_public_key(user, &key, self.origin()) {
            Ok(()) => {
                self.user = Some(user.to_string());
                Ok(Auth::Accept)
            }
            Err(_) => Ok(Auth::reject()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Input is consumed through the `data`/`channel_eof` callbacks; the Channel
        // object itself is dropped so nothing waits on it.
        self.channels.insert(channel.id(), ChannelState::default());
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(state) => {
                state.pty = true;
                session.channel_success(channel)
            }
            None => session.channel_failure(channel),
        }
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let user = self.logged_in_user()?;
        let Some(state) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        if !matches!(state.activity, Activity::Idle) {
            return session.channel_failure(channel);
        }
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        state.activity = Activity::Shell(input_tx);
        session.channel_success(channel)?;
        let pid = self.os.open_session(&user, crate::device_os::SSHD_PID);
        let idle = self.idle_timeout.filter(|_| state.pty);
        let shell = Shell { os: self.os.clone(), user, handle: session.handle(), channel, pty: state.pty, pid, idle };
        let os = self.os.clone();
        tokio::spawn(async move {
            shell.run(input_rx).await;
            os.end_session(pid);
        });
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let user = self.logged_in_user()?;
        let Some(state) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        if !matches!(state.activity, Activity::Idle) {
            return session.channel_failure(channel);
        }
        let command = String::from_utf8_lossy(data).into_owned();
        session.channel_success(channel)?;
        if self.os.reads_stdin(&command) {
            state.activity = Activity::ExecAwaitingStdin { command, stdin: Vec::new() };
        } else {
            state.activity = Activity::Exec;
            let exec = Exec { os: self.os.clone(), user, handle: session.handle(), channel, pty: state.pty };
            tokio::spawn(exec.run(command, String::new()));
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel).map(|s| &mut s.activity) {
            Some(Activity::Shell(input)) => {
                let _ = input.send(ShellInput::Data(data.to_vec()));
            }
            Some(Activity::ExecAwaitingStdin { stdin, .. }) => stdin.extend_from_slice(data),
            _ => {}
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let user = self.user.clone();
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        match std::mem::take(&mut state.activity) {
            Activity::Shell(input) => {
                let _ = input.send(ShellInput::Eof);
                state.activity = Activity::Shell(input);
            }
            Activity::ExecAwaitingStdin { command, stdin } => {
                state.activity = Activity::Exec;
                let exec = Exec {
                    os: self.os.clone(),
                    user: user.ok_or(russh::Error::NotAuthenticated)?,
                    handle: session.handle(),
                    channel,
                    pty: state.pty,
                };
                tokio::spawn(exec.run(command, String::from_utf8_lossy(&stdin).into_owned()));
            }
            other => state.activity = other,
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

/// One exec request: run, send output, exit status, EOF, close.
struct Exec {
    os: DeviceOs,
    user: String,
    handle: Handle,
    channel: ChannelId,
    pty: bool,
}

impl Exec {
    async fn run(self, command: String, stdin: String) {
        // Each exec is a session of its own: its shell lives while the command runs.
        let pid = self.os.open_session(&self.user, crate::device_os::SSHD_PID);
        let output = self.os.run_in_session(&self.user, pid, &command, &stdin).await;
        self.os.end_session(pid);
        let (stdout, stderr) = if self.pty {
            // A terminal has one output stream.
            (to_terminal(&(output.stdout + &output.stderr)), String::new())
        } else {
            (output.stdout, output.stderr)
        };
        if !stdout.is_empty() && self.handle.data(self.channel, stdout).await.is_err() {
            return;
        }
        if !stderr.is_empty() && self.handle.extended_data(self.channel, 1, stderr).await.is_err() {
            return;
        }
        let _ = self.handle.exit_status_request(self.channel, u32::from(output.status)).await;
        let _ = self.handle.eof(self.channel).await;
        let _ = self.handle.close(self.channel).await;
    }
}

/// An interactive shell: with a PTY it echoes, edits lines and prompts like a
/// terminal login; without one it just runs each input line (`ssh host < script`).
/// Input lines are commands, never data: a command reading stdin here gets none
/// (use `echo pw | passwd --stdin USER`, or an exec request with stdin).
struct Shell {
    os: DeviceOs,
    user: String,
    handle: Handle,
    channel: ChannelId,
    pty: bool,
    /// The session's shell process (`$$`, listed by `ps` while the shell runs).
    pid: u32,
    /// Logged out after this long without input (interactive shells of hardened devices).
    idle: Option<Duration>,
}

impl Shell {
    async fn send(&self, text: &str) -> bool {
        if text.is_empty() {
            return true;
        }
        self.handle.data(self.channel, text.to_string()).await.is_ok()
    }

    async fn finish(&self, status: u8) {
        let _ = self.handle.exit_status_request(self.channel, u32::from(status)).await;
        let _ = self.handle.eof(self.channel).await;
        let _ = self.handle.close(self.channel).await;
    }

    /// Runs `line`; returns the exit status when the shell must end.
    async fn execute(&self, line: &str, last_status: &mut u8) -> Option<u8> {
        if line.trim().is_empty() {
            return None;
        }
        let output = self.os.run_in_session(&self.user, self.pid, line, "").await;
        *last_status = output.status;
        let text = if self.pty { to_terminal(&(output.stdout + &output.stderr)) } else { output.stdout };
        if !self.send(&text).await {
            return Some(output.status);
        }
        if !self.pty && !output.stderr.is_empty() && self.handle.extended_data(self.channel, 1, output.stderr).await.is_err() {
            return Some(output.status);
        }
        output.exit_requested.then_some(output.status)
    }

    async fn run(self, mut input: mpsc::UnboundedReceiver<ShellInput>) {
        let mut last_status = 0u8;
        // Without a PTY, input is a script: lines split at LF, no echo, no editing.
        let mut line: Vec<u8> = Vec::new();
        let mut editor = LineEditor::new();
        if self.pty && !self.send(&self.os.prompt(&self.user)).await {
            return;
        }
        loop {
            let message = match self.idle {
                Some(idle) => match tokio::time::timeout(idle, input.recv()).await {
                    Ok(message) => message,
                    Err(_) => {
                        let _ = self.send("\r\ntimed out waiting for input: auto-logout\r\n").await;
                        return self.finish(0).await;
                    }
                },
                None => input.recv().await,
            };
            let Some(message) = message else { break };
            let bytes = match message {
                ShellInput::Data(bytes) => bytes,
                ShellInput::Eof => break,
            };
            for byte in bytes {
                if !self.pty {
                    if byte == b'\n' {
                        let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                        line.clear();
                        if let Some(status) = self.execute(&text, &mut last_status).await {
                            return self.finish(status).await;
                        }
                    } else {
                        line.push(byte);
                    }
                    continue;
                }
                let mut echo = String::new();
                match editor.feed(byte, true, &mut echo) {
                    Edit::Pending => {}
                    Edit::Line(text) => {
                        if !self.send(&echo).await {
                            return;
                        }
                        if let Some(status) = self.execute(&text, &mut last_status).await {
                            return self.finish(status).await;
                        }
                        echo = self.os.prompt(&self.user);
                    }
                    Edit::Interrupt => {
                        last_status = 130;
                        echo.push_str(&self.os.prompt(&self.user));
                    }
                    Edit::EndOfInput => {
                        let _ = self.send("logout\r\n").await;
                        return self.finish(last_status).await;
                    }
                }
                if !self.send(&echo).await {
                    return;
                }
            }
        }
        // End of input (or the connection went away).
        if !self.pty && !line.is_empty() {
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(status) = self.execute(&text, &mut last_status).await {
                return self.finish(status).await;
            }
        }
        self.finish(last_status).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_algorithm_is_implemented_by_russh() {
        let key = HostKey::from_seed([7; 32]);
        for profile in [Profile::Hardened, Profile::Weak] {
            let config = russh_config(profile, &key, &SshServerOptions::default()).unwrap_or_else(|e| panic!("{profile}: {e}"));
            let algorithms = profile.ssh_algorithms();
            assert_eq!(config.preferred.cipher.len(), algorithms.ciphers.len());
            assert_eq!(config.preferred.kex.len(), algorithms.kex.len());
            assert_eq!(config.preferred.mac.len(), algorithms.macs.len());
        }
    }

    #[test]
    fn host_key_from_seed_is_deterministic() {
        let a = HostKey::from_seed([1; 32]);
        let b = HostKey::from_seed([1; 32]);
        let c = HostKey::from_seed([2; 32]);
        assert_eq!(a.public_openssh(), b.public_openssh());
        assert_ne!(a.public_openssh(), c.public_openssh());
        assert!(a.public_openssh().starts_with("ssh-ed25519 AAAA"));
        assert!(a.fingerprint_sha256().starts_with("SHA256:"));
        let addr: SocketAddr = "127.0.0.11:2222".parse().unwrap();
        assert_eq!(a.known_hosts_line(addr), format!("[127.0.0.11]:2222 {}", a.public_openssh()));
    }
}
