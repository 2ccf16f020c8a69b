//! The server process: a listener, TLS, and the API on each connection.
//!
//! Why by hand and not `axum::serve`: the server must say who is at the other end of
//! each request from the socket itself (the audit's "from where"; a forwarded-for
//! header is the client's word, and LAVA's auto-registration was grabbed through a
//! proxy that way, 632a29a73), and it serves TLS by default, which `axum::serve`
//! does not. So each accepted connection gets its TLS handshake (bounded in time, so
//! a silent client holds nothing), then HTTP/1.1 with a header-read deadline, and
//! every request carries the peer address as axum's `ConnectInfo`.
//!
//! Plain HTTP exists for a reverse proxy or a test on the same machine: it is refused
//! unless the listen address is a loopback one, so a token never crosses a network
//! in clear.
//!
//! First start in a state directory: the TLS identity is made ([`crate::tls`]), the
//! store is created (`<state-dir>/proofrig.db` unless `db` says otherwise), and,
//! when the store has no user yet, a user `admin` with a one-time API token is made:
//! [`Server::bootstrap_token`] is shown once (by `proofrig serve`) and never again;
//! its SHA-256 is all the store keeps.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use proofrig_proto::api::Role;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::api::{self, ApiState, Limits};
pub use crate::clock::Clock;
use crate::consoles::Consoles;
use crate::inbox::Inbox;
use crate::labwire::{self, Hub, WireState};
use crate::live::Live;
use crate::service;
use crate::store::{Ctx, NewUserRecord, Store, StoreConfig, StoreError};
use crate::tls::{Identity, TlsError};
use crate::web::{self, WebState};

/// The name of the first admin a fresh store gets.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// How long a TLS handshake may take, and the request headers after it.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
const HEADER_LIMIT: Duration = Duration::from_secs(30);

/// How to run a server (`proofrig serve`'s flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen; port 0 picks a free one ([`Server::local_addr`] says which).
    pub listen: SocketAddr,
    /// The TLS identity and, by default, the SQLite store live here.
    pub state_dir: PathBuf,
    /// `postgres://...`, or a SQLite file; `<state-dir>/proofrig.db` when `None`.
    pub db: Option<String>,
    /// Serve HTTP without TLS: only on a loopback address.
    pub plain_http: bool,
    pub store: StoreConfig,
    pub limits: Limits,
    pub clock: Clock,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, state_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            listen,
            state_dir: state_dir.into(),
            db: None,
            plain_http: false,
            store: StoreConfig::default(),
            limits: Limits::default(),
            clock: Clock::default(),
        }
    }
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing plain HTTP on {listen}: it is not a loopback address, and API tokens would cross the network in clear; serve HTTPS (drop --plain-http), or listen on 127.0.0.1 / [::1] behind a TLS proxy")]
    PlainHttpNotLoopback { listen: SocketAddr },
    #[error("cannot create the state directory {path}: {source}; pick a --state-dir the server's user may write")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {listen}: {source}; is another server running there? pick another --listen")]
    Bind { listen: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot use the server's signing key {path}: {message}; it signs receipts and witness records, so restore it from backup or move the state directory aside to start afresh")]
    Key { path: PathBuf, message: String },
    #[error("cannot open the bundle inbox {path}: {source}; pick a --state-dir the server's user may write")]
    Inbox { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A running server. Dropping it does not stop it: call [`Server::stop`].
pub struct Server {
    local_addr: SocketAddr,
    fingerprint: Option<String>,
    bootstrap_token: Option<String>,
    store: Arc<Store>,
    inbox: Arc<Inbox>,
    key: ed25519_dalek::VerifyingKey,
    clock: Clock,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Open the store, make or load the TLS identity, bootstrap the first admin on a
    /// fresh store, and serve.
    pub async fn start(config: ServerConfig) -> Result<Server, ServeError> {
        if config.plain_http && !config.listen.ip().is_loopback() {
            return Err(ServeError::PlainHttpNotLoopback { listen: config.listen });
        }
        let dir = &config.state_dir;
        // Owner only: it holds the TLS key and (SQLite) the store with the token hashes.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| ServeError::StateDir { path: dir.clone(), source })?;
        let identity = match config.plain_http {
            true => None,
            false => Some(Identity::load_or_create(&dir.join("tls"), &certificate_names(config.listen))?),
        };
        let db = config.db.clone().unwrap_or_else(|| dir.join("proofrig.db").display().to_string());
        let store = Arc::new(Store::open(&db, config.store.clone()).await?);
        let bootstrap_token = bootstrap(&store, &config.clock).await?;
        let listener = TcpListener::bind(config.listen).await.map_err(|source| ServeError::Bind { listen: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind { listen: config.listen, source })?;
        let tls = identity.as_ref().map(|id| id.server_config().map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)))).transpose()?;
        let key = Arc::new(server_key(dir)?);
        let inbox_dir = dir.join("inbox");
        let inbox = Arc::new(Inbox::open(&inbox_dir, Default::default()).map_err(|source| ServeError::Inbox { path: inbox_dir, source })?);
        let api = ApiState {
            store: store.clone(),
            clock: config.clock.clone(),
            limits: config.limits.clone(),
            inbox: inbox.clone(),
            key: key.clone(),
        };
        let live_dir = dir.join("live");
        let live = Arc::new(Live::open(&live_dir, key.clone()).map_err(|source| ServeError::Inbox { path: live_dir, source })?);
        let hub = Arc::new(Hub::default());
        let consoles = Arc::new(Consoles::default());
        let web = web::router(WebState::new(api.clone(), identity.is_some(), hub.clone(), consoles.clone()));
        let app = labwire::router(WireState { api: api.clone(), hub: hub.clone(), live, consoles }).merge(web).merge(api::router(api));
        let (stop, stopped) = watch::channel(false);
        let service = tokio::spawn(service::run(store.clone(), hub, config.clock.clone(), stopped.clone()));
        let accept = tokio::spawn(accept_loop(listener, tls, app, stopped));
        let task = tokio::spawn(async move {
            let _ = tokio::join!(service, accept);
        });
        let fingerprint = identity.map(|id| id.fingerprint);
        let key = key.verifying_key();
        Ok(Server { local_addr, fingerprint, bootstrap_token, store, inbox, key, clock: config.clock, stop, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://127.0.0.1:8443` (or `http://` when plain).
    pub fn url(&self) -> String {
        let scheme = if self.fingerprint.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The SHA-256 of the served certificate (lowercase hex), which clients pin;
    /// `None` for plain HTTP.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// The first admin's API token, on the start that made it; `None` on every later one.
    pub fn bootstrap_token(&self) -> Option<&str> {
        self.bootstrap_token.as_deref()
    }

    /// The store this server serves (tests read it to see what a request changed).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bundle inbox (bundles as uploaded, and their receipts).
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The server's public key: receipts and witness records verify against it.
    pub fn key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.key
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Stop accepting, and wait until the listener is closed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The file holding the server's own Ed25519 key, in the state directory.
pub const SERVER_KEY: &str = "server.key";

/// The server's signing key (receipts, witness records): made on the first start
/// (`server.key`, owner only, and `server.pub` beside it), loaded on every later one.
fn server_key(dir: &std::path::Path) -> Result<ed25519_dalek::SigningKey, ServeError> {
    let (private, public) = (dir.join(SERVER_KEY), dir.join("server.pub"));
    let fail = |message: String| ServeError::Key { path: private.clone(), message };
    if !private.exists() {
        proofrig_evidence::signing::generate(&private, &public).map_err(|e| fail(e.to_string()))?;
    }
    proofrig_evidence::signing::load_signing_key(&private).map_err(|e| fail(e.to_string()))
}

/// The names the self-signed certificate is made for: loopback, and the listen address.
fn certificate_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        names.push(listen.ip().to_string());
    }
    names
}

async fn bootstrap(store: &Store, clock: &Clock) -> Result<Option<String>, StoreError> {
    let now = clock.now();
    let token = api::new_secret("prt");
    let user = NewUserRecord {
        name: BOOTSTRAP_ADMIN.into(),
        role: Role::Admin,
        password_hash: None,
        token_sha256: api::secret_sha256(&token),
        token_expires_at: now.plus(api::BOOTSTRAP_TOKEN_VALID),
    };
    let made = store.bootstrap_admin(&user, &Ctx::new("server", "server", now)).await?;
    Ok(made.then_some(token))
}

async fn accept_loop(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, app: axum::Router, mut stopped: watch::Receiver<bool>) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Out of file descriptors or a connection reset before accept: keep serving.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(tcp), peer, app).await,
                Some(tls) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_LIMIT, tls.accept(tcp)).await {
                        serve_connection(TokioIo::new(stream), peer, app).await;
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(io: I, peer: SocketAddr, app: axum::Router)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap_or_else(|never| match never {})) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_LIMIT)
        .serve_connection(io, service)
        // A live console's WebSocket is an upgraded connection.
        .with_upgrades()
        .await;
}
