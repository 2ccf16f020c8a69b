//! `proofrig serve`: run the lab service's server until interrupted.
//!
//! It prints what a person needs to reach it and to trust it: the URL, and the
//! SHA-256 fingerprint of the certificate (lab hosts and the CLI pin it). On the
//! first start in a state directory the server makes a user `admin`; that admin's
//! one-time API token is never printed (a terminal, a CI log or a `journalctl` keep
//! what is printed) but written to `<state-dir>/bootstrap-admin.token`, readable by
//! its owner only: use it to add the real users, then delete the file.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use proofrig_server::http::{ServeError, Server, ServerConfig, BOOTSTRAP_ADMIN};

use super::{report, Failure, EXIT_OK};

/// A line on stdout for whoever watches; a long-running service does not die when
/// nobody reads it any more (a closed pipe, a detached terminal).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(super) use say;

/// `proofrig serve`'s flags.
pub struct ServeArgs {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub db: Option<String>,
    pub plain_http: bool,
}

/// The file the first admin's token is written to.
pub const BOOTSTRAP_FILE: &str = "bootstrap-admin.token";

pub async fn serve(args: ServeArgs) -> Result<u8, Failure> {
    let mut config = ServerConfig::new(args.listen, &args.state_dir);
    config.db = args.db;
    config.plain_http = args.plain_http;
    let server = Server::start(config).await.map_err(|e| match e {
        ServeError::PlainHttpNotLoopback { .. } => Failure::usage(report(e)),
        other => Failure::failed(report(other)),
    })?;
    say!("proofrig server listening at {}", server.url());
    match server.fingerprint() {
        Some(fingerprint) => say!("certificate fingerprint (SHA-256, for lab hosts and the CLI to pin): {fingerprint}"),
        None => say!("plain HTTP on loopback: put a TLS proxy in front before anyone else connects"),
    }
    if let Some(token) = server.bootstrap_token() {
        let path = args.state_dir.join(BOOTSTRAP_FILE);
        write_secret(&path, token).map_err(|e| Failure::failed(miette::miette!("cannot write {}: {e}", path.display())))?;
        say!(
            "first start: the API token of user `{BOOTSTRAP_ADMIN}` (valid 24 h) is in {} (mode 0600); add the real users with it, then delete the file",
            path.display()
        );
    }
    std::io::stdout().flush().ok();
    wait_for_stop().await;
    say!("stopping");
    server.stop().await;
    Ok(EXIT_OK)
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

/// Ctrl-C or SIGTERM (systemd's stop).
pub(super) async fn wait_for_stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
