//! Remote logging of the simulated devices (TS 33.117 4.2.3.6.2): a hardened device
//! sends each record of its authentication log to the lab's central log server over
//! TLS (syslog over TLS, RFC 5425: octet-counted records), trusting that server's
//! certificate and no other; a weak device logs nothing remotely (it does not even log
//! failed logins locally).
//!
//! The lab makes the log server's identity (a self-signed certificate for 127.0.0.1
//! and its key) when it starts and hands it to the rig as a secret, so the lab host
//! can play the log server (`syslog_receive`) with the identity the devices trust.
//! Nothing listens there between such steps: a record sent then is lost, as it would
//! be on a bench whose log server is down; the device tries again with the next one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::SimError;

/// The lab's central log server: where the devices send, and the identity it shows.
#[derive(Clone)]
pub struct LogServer {
    pub address: SocketAddr,
    certificate_der: Vec<u8>,
    /// The certificate alone, as PEM: what a device is told to trust.
    pub certificate_pem: String,
    /// The private key and certificate, as one PEM text: the rig's secret.
    pub identity_pem: String,
}

impl std::fmt::Debug for LogServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogServer").field("address", &self.address).finish_non_exhaustive()
    }
}

impl LogServer {
    /// A log server identity for `address` (an IP address certificate).
    pub fn new(address: SocketAddr) -> Result<LogServer, SimError> {
        let failed = |e: rcgen::Error| SimError::Certificate(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let params = rcgen::CertificateParams::new(vec![address.ip().to_string()]).map_err(failed)?;
        let certificate = params.self_signed(&key).map_err(failed)?;
        Ok(LogServer {
            address,
            certificate_der: certificate.der().to_vec(),
            certificate_pem: certificate.pem(),
            // As a secret file reads back: without the last newline.
            identity_pem: format!("{}{}", key.serialize_pem(), certificate.pem()).trim_end().to_string(),
        })
    }

    /// Start a device's forwarder: each line sent on the returned sender goes to the
    /// server as one syslog record (facility auth, severity info).
    pub fn forwarder(&self, hostname: &str) -> UnboundedSender<String> {
        let (tx, rx) = unbounded_channel();
        tokio::spawn(forward(self.clone(), hostname.to_string(), rx));
        tx
    }
}

async fn forward(server: LogServer, hostname: String, mut lines: UnboundedReceiver<String>) {
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(server.certificate_der.clone().into()).is_err() {
        tracing::warn!(%hostname, "the log server's certificate is unusable; remote logging is off");
        return;
    }
    let Ok(builder) = rustls::ClientConfig::builder_with_provider(crate::tls::ring_provider()).with_safe_default_protocol_versions() else {
        return;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(builder.with_root_certificates(roots).with_no_client_auth()));
    let name = rustls::pki_types::ServerName::IpAddress(server.address.ip().into());
    while let Some(line) = lines.recv().await {
        // <38>: facility auth (4), severity info (6).
        let record = format!("<38>{line}");
        let framed = format!("{} {record}", record.len());
        let sent = async {
            let tcp = tokio::net::TcpStream::connect(server.address).await?;
            let mut tls = connector.connect(name.clone(), tcp).await?;
            tls.write_all(framed.as_bytes()).await?;
            tls.shutdown().await
        };
        if let Err(error) =
            tokio::time::timeout(std::time::Duration::from_secs(2), sent).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        {
            tracing::debug!(%hostname, %error, "a log record did not reach the log server");
        }
    }
}
