//! Consoles exported over TCP: ser2net's `tcp` accepter (raw bytes) and its
//! `telnet(rfc2217)` accepter (telnet with COM-port control), or any terminal server
//! speaking either.
//!
//! For RFC 2217 the line settings are requested as soon as the server agrees to
//! COM-PORT-OPTION, and `open_tcp` waits (up to the connect timeout) for the server
//! to confirm them, so a test starts on a line that is set up the way the rig says,
//! and the transcript has a note saying what the server confirmed.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::pump::{start_pump, LossReason, PumpSetup, Transparent};
use super::telnet::{ComPortSettings, Telnet};
use super::{check_frame, console_channel, frame_summary, SerialError};
use crate::channel::ByteStream;
use proofrig_model::events::{EventKind, Recorder};
use proofrig_model::rig::{TcpConsole, TcpProtocol};

/// Connect to a console server as the console of `device`.
pub async fn open_tcp(device: &str, tcp: &TcpConsole, recorder: Recorder) -> Result<ByteStream, SerialError> {
    let address = if tcp.host.contains(':') && !tcp.host.starts_with('[') {
        format!("[{}]:{}", tcp.host, tcp.port)
    } else {
        format!("{}:{}", tcp.host, tcp.port)
    };
    let rfc2217 = tcp.protocol == TcpProtocol::Rfc2217;
    if rfc2217 {
        check_frame(device, &address, tcp.data_bits, tcp.stop_bits)?;
    }
    let timeout = Duration::from_millis(tcp.connect_timeout_ms);
    let socket = match tokio::time::timeout(timeout, TcpStream::connect((tcp.host.as_str(), tcp.port))).await {
        Err(_) => return Err(SerialError::ConnectTimeout { device: device.to_string(), address, waited_ms: tcp.connect_timeout_ms }),
        Ok(Err(cause)) => return Err(SerialError::Connect { device: device.to_string(), address, cause }),
        Ok(Ok(socket)) => socket,
    };
    // Keystrokes must not wait for Nagle.
    socket.set_nodelay(true).map_err(|cause| SerialError::Connect { device: device.to_string(), address: address.clone(), cause })?;

    let channel = console_channel(device);
    let loss = TcpLoss { address: address.clone() };
    // The socket moves to the console's own thread and registers with its reactor there.
    let socket = socket.into_std().map_err(|cause| SerialError::Connect { device: device.to_string(), address: address.clone(), cause })?;
    let attach = move || TcpStream::from_std(socket);
    let attach_error = |cause| SerialError::Connect { device: device.to_string(), address: address.clone(), cause };
    if !rfc2217 {
        let setup = PumpSetup { channel, opened_detail: format!("tcp {address} raw"), recorder, codec: Transparent, loss, settled: None };
        return start_pump(attach, setup).await.map_err(attach_error);
    }

    let settings = tcp.baud.map(|baud| ComPortSettings { baud, data_bits: tcp.data_bits, parity: tcp.parity, stop_bits: tcp.stop_bits });
    let line = match &settings {
        Some(s) => format!(" {} {}", s.baud, frame_summary(s.data_bits, s.parity, s.stop_bits)),
        None => String::new(),
    };
    let (settled_tx, settled_rx) = oneshot::channel();
    let setup = PumpSetup {
        channel: channel.clone(),
        opened_detail: format!("tcp {address} rfc2217{line}"),
        recorder: recorder.clone(),
        codec: Telnet::new(true, settings),
        loss,
        settled: Some(settled_tx),
    };
    let stream = start_pump(attach, setup).await.map_err(attach_error)?;
    // The codec records what the server confirmed; only silence needs a note here. A
    // connection lost meanwhile is reported by the stream itself on first use.
    if tokio::time::timeout(timeout, settled_rx).await.is_err() {
        recorder.emit(EventKind::Note {
            channel,
            text: format!(
                "rfc2217: {address} did not answer COM-PORT-OPTION within {} ms; the line settings may not be applied",
                tcp.connect_timeout_ms
            ),
        });
    }
    Ok(stream)
}

struct TcpLoss {
    address: String,
}

impl LossReason for TcpLoss {
    fn eof(&self) -> String {
        format!("connection to {} closed by the console server (ser2net stopped, or the port was handed to another client)", self.address)
    }

    fn error(&self, op: &str, err: &io::Error) -> String {
        match err.kind() {
            io::ErrorKind::ConnectionReset => format!("connection to {} reset by the console server", self.address),
            io::ErrorKind::BrokenPipe => format!("connection to {} broken while {op} it", self.address),
            _ => format!("{op} {} failed: {err}", self.address),
        }
    }
}
