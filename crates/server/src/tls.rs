//! The server's TLS identity, and the pinned verifier its clients use.
//!
//! A lab server runs inside a lab's network, usually with no name a public CA would
//! certify, and lab hosts and the CLI must still know they talk to *this* server (an
//! enrollment token or an API token sent to an impostor is lost). So the first start
//! makes a self-signed certificate and its key in the state directory (the key file
//! readable by its owner only), and prints the certificate's SHA-256 fingerprint;
//! clients pin that fingerprint ([`pinned_client_config`]) instead of trusting a CA,
//! as SSH pins a host key. Later starts load the same pair, so the pin holds across
//! restarts. An operator may replace the two files with a CA-issued pair.
//!
//! rustls on the `ring` provider (no C toolchain beyond ring's own), TLS 1.2 and 1.3.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The file names under `<state-dir>/tls/`.
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// Why the TLS identity could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: cannot {doing} {path}: {source}; check that the state directory is writable by the server's user")]
    Io { doing: &'static str, path: PathBuf, source: std::io::Error },
    #[error("TLS: {path} is not a PEM {what}: {detail}; replace it with a valid one, or delete both cert.pem and key.pem to have a new self-signed pair made (clients must then pin the new fingerprint)")]
    Pem { path: PathBuf, what: &'static str, detail: String },
    #[error("TLS: {path} is readable by others (mode {mode:o}); run `chmod 600 {path}` (and consider the key exposed)", path = path.display())]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("TLS: making the self-signed certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS: the certificate and key do not make a server configuration: {0}; check that key.pem is the key of cert.pem")]
    Config(#[from] rustls::Error),
}

/// The server's certificate (DER) and key, and the fingerprint clients pin.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the certificate's DER, lowercase hex (64 characters).
    pub fingerprint: String,
    /// Whether this start made the pair (first start).
    pub created: bool,
}

pub use proofrig_proto::pin::{fingerprint, pinned_client_config, provider, PinnedServer};

impl Identity {
    /// Load `<dir>/cert.pem` and `<dir>/key.pem`, or make a self-signed pair valid for
    /// `names` (DNS names or IP addresses) when neither exists.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Identity, TlsError> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        let created = !cert_path.exists() && !key_path.exists();
        if created {
            create(dir, names, &cert_path, &key_path)?;
        }
        let mode =
            fs::metadata(&key_path).map_err(|source| TlsError::Io { doing: "read", path: key_path.clone(), source })?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyExposed { path: key_path, mode: mode & 0o777 });
        }
        let pem_error =
            |path: &Path, what, e: rustls::pki_types::pem::Error| TlsError::Pem { path: path.to_path_buf(), what, detail: e.to_string() };
        let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| pem_error(&cert_path, "certificate", e))?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_error(&key_path, "private key", e))?;
        Ok(Identity { fingerprint: fingerprint(&cert), cert, key, created })
    }

    /// The rustls server configuration serving this identity (HTTP/1.1).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn create(dir: &Path, names: &[String], cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Io { doing: "create", path: dir.to_path_buf(), source })?;
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    let mut key_file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(key_path).map_err(|source| TlsError::Io {
        doing: "create",
        path: key_path.to_path_buf(),
        source,
    })?;
    key_file
        .write_all(certified.signing_key.serialize_pem().as_bytes())
        .and_then(|()| key_file.sync_all())
        .map_err(|source| TlsError::Io { doing: "write", path: key_path.to_path_buf(), source })?;
    fs::write(cert_path, certified.cert.pem()).map_err(|source| TlsError::Io { doing: "write", path: cert_path.to_path_buf(), source })
}
