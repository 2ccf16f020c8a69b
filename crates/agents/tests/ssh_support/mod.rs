//! Shared helper of the SSH integration tests (ssh, ssh_shell, sshd_peer) and the
//! ssh_exec bench: the rig's SSH endpoint of a real OpenSSH peer.

use proofrig_model::rig::SshEndpoint;
use proofrig_testpeers::sshd::Sshd;

/// `sshd`'s endpoint as a rig gives it: the test user with the peer's client key, the
/// host key pinned by its fingerprint, commands on channels of their own. Tests change
/// what they exercise with struct update syntax.
pub fn endpoint(sshd: &Sshd) -> SshEndpoint {
    SshEndpoint {
        host: sshd.host().into(),
        port: sshd.port(),
        user: sshd.user().into(),
        key_file: Some(sshd.client_key()),
        key_passphrase: None,
        password: None,
        host_key: Some(sshd.host_key_fingerprint().into()),
        known_hosts: None,
        timeout_ms: 5_000,
        keepalive_s: 15,
        persistent_shell: false,
    }
}
