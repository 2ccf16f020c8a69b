//! What can go wrong starting or driving the simulated lab, in one type every module
//! returns, so it sits below them all (the crate root re-exports it).

use std::net::SocketAddr;

/// Everything that can go wrong while setting up or power-cycling a simulated device.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listener could not bind its address (in use, not a local address, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A profile name that is neither `hardened` nor `weak`.
    #[error("unknown device profile {0:?} (expected \"hardened\" or \"weak\")")]
    UnknownProfile(String),
    /// A profile lists an SSH algorithm russh does not implement.
    #[error("russh does not implement the {kind} algorithm {name:?}")]
    UnsupportedAlgorithm { kind: &'static str, name: String },
    /// The host key could not be created or encoded.
    #[error("host key: {0}")]
    HostKey(String),
    /// The TLS server's certificate or configuration could not be made.
    #[error("TLS server: {0}")]
    Tls(String),
    /// Called after `stop()`.
    #[error("the simulated server was stopped")]
    Stopped,
    /// A coil number beyond the PDU's last coil.
    #[error("the simulated PDU has no coil {coil} (it has {coils}, numbered from 0)")]
    NoSuchCoil { coil: u16, coils: u16 },
    /// A private tokio runtime (the PDU's) could not be built.
    #[error("cannot build a runtime for the simulated PDU: {0}")]
    Runtime(#[source] std::io::Error),
    /// A thread (the PDU's) could not be started.
    #[error("cannot start a thread for the simulated PDU: {0}")]
    Thread(#[source] std::io::Error),
    /// A lab configuration that cannot work (duplicate names or outlets, ...).
    #[error("invalid simulated lab: {0}")]
    InvalidLab(String),
    /// A device name the lab does not have.
    #[error("the simulated lab has no device named {0:?}")]
    UnknownDevice(String),
    /// The lab's log server certificate could not be made.
    #[error("cannot make the log server's certificate: {0}")]
    Certificate(String),
    /// The system's random number generator failed.
    #[error("no randomness for passwords: {0}")]
    Random(String),
    /// A rig or secret file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The console's PTY could not be opened or set up.
    #[error("cannot set up the simulated console's PTY ({action}): {source}")]
    Pty {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}
