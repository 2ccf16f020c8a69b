//! Trusting a lab server by the fingerprint of its certificate, as SSH trusts a host
//! by its key: what lab hosts and the command line use to reach a server whose
//! certificate no public CA signed (the server's first start makes it self-signed and
//! prints the fingerprint; `proofrig_server::tls`).
//!
//! Here, not in the server crate, because both sides need it and the lab host must not
//! link the server. A certificate verifier is a pure function of the bytes presented.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// SHA-256 of a certificate's DER, lowercase hex: what clients pin.
pub fn fingerprint(cert: &[u8]) -> String {
    hex::encode(Sha256::digest(cert))
}

/// The ring provider every TLS configuration here uses. rustls 0.23.48 deprecates it
/// for lacking post-quantum key exchange, which only its aws-lc-rs provider has; that
/// one needs a C and cmake build this workspace avoids (see `russh` in Cargo.toml).
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly the server certificate whose SHA-256 is the pinned fingerprint,
/// whatever name or CA it has; signatures are still checked (the server must hold
/// the key). This is how lab hosts and the CLI trust a self-signed server.
#[derive(Debug)]
pub struct PinnedServer {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedServer {
    /// `fingerprint`: 64 hex digits, colons and case ignored.
    pub fn new(fingerprint: &str) -> PinnedServer {
        PinnedServer { fingerprint: fingerprint.replace(':', "").to_ascii_lowercase(), provider: provider() }
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match fingerprint(end_entity) == self.fingerprint {
            true => Ok(ServerCertVerified::assertion()),
            false => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client configuration that trusts only the server pinned by `fingerprint`.
pub fn pinned_client_config(fingerprint: &str) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer::new(fingerprint)))
        .with_no_client_auth()
}
