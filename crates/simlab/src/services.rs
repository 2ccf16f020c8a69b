//! Plain-text services a weak device leaves listening next to SSH.
//!
//! They exist so port-scan and unnecessary-services tests have something real to
//! find: telnet and FTP accept TCP connections and announce themselves with a banner
//! the way telnetd or an FTP daemon would, then answer every line with a refusal;
//! HTTP is the web management server of [`crate::web`], in clear text and without
//! redirecting to HTTPS (the hardened profile runs a compliant one on a documented
//! port, the weak one a careless one on 80). Nobody can log in through them; being
//! reachable is the telnet and FTP finding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::device_os::DeviceOs;
use crate::gate::{ConnectionHandler, PowerGate};
use crate::profile::ExtraService;
use crate::SimError;

/// Idle clients are dropped after this long, like a real daemon's login timeout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running telnet- or ftp-like banner listener, gated by power like SSH.
pub struct BannerService {
    service: ExtraService,
    gate: PowerGate,
}

impl BannerService {
    /// Starts `service` on `addr` (port 0 picks a free port) for device `os`.
    pub async fn start(addr: SocketAddr, os: DeviceOs, service: ExtraService) -> Result<Self, SimError> {
        let hostname = os.hostname();
        let identity = os.identity();
        let (banner, reply) = match service {
            ExtraService::Telnet => (
                format!("\r\n{} {} (firmware {})\r\n\r\n{hostname} login: ", identity.vendor, identity.model, identity.firmware),
                format!("\r\nLogin incorrect\r\n{hostname} login: "),
            ),
            ExtraService::Ftp => (
                format!("220 {hostname} FTP server ({} {} firmware {}) ready.\r\n", identity.vendor, identity.model, identity.firmware),
                "530 Please login with USER and PASS.\r\n".to_string(),
            ),
            // An HTTP server speaks only when asked; `crate::web` answers each request.
            ExtraService::Http => (String::new(), String::new()),
        };
        let program = service.program();
        let http = service == ExtraService::Http;
        let web = os.clone();
        let banner: Arc<str> = banner.into();
        let reply: Arc<str> = reply.into();
        let handler: ConnectionHandler = Arc::new(move |stream, peer| {
            let banner = Arc::clone(&banner);
            let reply = Arc::clone(&reply);
            let web = web.clone();
            Box::pin(async move {
                let conversation = async {
                    if http {
                        answer_requests(stream, peer, &web).await
                    } else {
                        converse(stream, &banner, &reply).await
                    }
                };
                let _ = tokio::time::timeout(IDLE_TIMEOUT, conversation).await;
            })
        });
        let gate = PowerGate::start(addr, program, os, handler).await?;
        Ok(BannerService { service, gate })
    }

    pub fn service(&self) -> ExtraService {
        self.service
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.gate.local_addr()
    }

    pub fn is_powered(&self) -> bool {
        self.gate.is_powered()
    }

    pub async fn set_powered(&self, powered: bool) -> Result<(), SimError> {
        self.gate.set_powered(powered).await
    }

    pub async fn stop(&self) {
        self.gate.stop().await
    }
}

async fn converse(stream: TcpStream, banner: &str, reply: &str) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    writer.write_all(banner.as_bytes()).await?;
    // Bytes, not text: telnet clients open with binary option negotiation.
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        writer.write_all(reply.as_bytes()).await?;
    }
}

/// Reads one request's head (through the empty line), logs it, and sends the web
/// server's answer.
async fn answer_requests(stream: TcpStream, peer: SocketAddr, os: &DeviceOs) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut head = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" || head.len() > 16 * 1024 {
            break;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let request = crate::web::Request::parse(&head);
    let answer = crate::web::answer(os, &request);
    let status = String::from_utf8_lossy(&answer[..answer.len().min(16)]).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let user = crate::web::basic_user(request.head);
    let request_line = request.head.lines().next().unwrap_or_default();
    os.log_web_request(&crate::device_os::WebLogEntry { peer: peer.ip(), user: user.as_deref(), request_line, status });
    writer.write_all(&answer).await?;
    writer.shutdown().await
}
