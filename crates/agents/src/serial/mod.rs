//! Serial consoles: local ttys/PTYs and consoles exported over TCP (ser2net, terminal
//! servers), all presented as a continuously captured [`ByteStream`].
//!
//! [`open_console`] picks the transport the rig names, records `ChannelOpened`, and
//! starts a pump (see `pump.rs`) that owns the transport: every byte read or written
//! is recorded the moment it crosses the wire, whether or not anybody reads the
//! stream, and a console that goes away becomes `ChannelError::ConsoleLost`.
//! Failures to open say which device, which port or address, and what to do.

mod local;
mod pump;
mod tcp;
mod telnet;

use std::io;
use std::path::PathBuf;

use crate::channel::ByteStream;
use proofrig_model::events::{ChannelId, Recorder};
use proofrig_model::rig::{Console, FlowControl, Parity};

pub use local::open_serial;
pub use tcp::open_tcp;

/// Why a console could not be opened. Every message names the device, the port or
/// address, and says what to try.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("device {device}: its console has no transport; add `serial: {{ port: /dev/ttyUSB0 }}` or `tcp: {{ host: ..., port: ... }}` to the rig")]
    NoTransport { device: String },
    #[error("device {device}: its console has both `serial` and `tcp`; keep exactly one in the rig")]
    TwoTransports { device: String },
    #[error("device {device}: {setting} = {value} is not possible on {port}; {hint}")]
    InvalidSetting { device: String, port: String, setting: &'static str, value: String, hint: &'static str },
    #[error("device {device}: {port} does not exist; check that the cable or USB adapter is plugged in and that the rig names the right port (see /dev/serial/by-id)")]
    NotFound { device: String, port: PathBuf },
    #[error("device {device}: permission denied opening {port}; add your user to the dialout group (`sudo usermod -aG dialout $USER`, then log in again)")]
    PermissionDenied { device: String, port: PathBuf },
    #[error("device {device}: {port} is in use by another program (ser2net, minicom, screen, picocom or another proofrig); close it first (`fuser -v {port}` shows who)")]
    Busy { device: String, port: PathBuf },
    #[error("device {device}: cannot open {port} as {settings}: {reason}")]
    Open { device: String, port: PathBuf, settings: String, reason: String },
    #[error("device {device}: cannot connect to console server {address}: {cause}; check that ser2net (or the terminal server) is running and exports this port")]
    Connect {
        device: String,
        address: String,
        #[source]
        cause: io::Error,
    },
    #[error("device {device}: console server {address} did not accept a connection within {waited_ms} ms; check host, port and firewall")]
    ConnectTimeout { device: String, address: String, waited_ms: u64 },
}

/// Open the console of `device` over whichever transport the rig gives.
///
/// The channel is `ChannelId::new(device, "console")`. The returned stream is
/// already being captured: output that arrives before anyone reads is recorded.
pub async fn open_console(device: &str, console: &Console, recorder: Recorder) -> Result<ByteStream, SerialError> {
    match (&console.serial, &console.tcp) {
        (Some(serial), None) => open_serial(device, serial, recorder).await,
        (None, Some(tcp)) => open_tcp(device, tcp, recorder).await,
        (None, None) => Err(SerialError::NoTransport { device: device.to_string() }),
        (Some(_), Some(_)) => Err(SerialError::TwoTransports { device: device.to_string() }),
    }
}

/// The console channel of a device.
pub fn console_channel(device: &str) -> ChannelId {
    ChannelId::new(device, "console")
}

/// `8N1`-style summary of a line setting.
pub(crate) fn frame_summary(data_bits: u8, parity: Parity, stop_bits: u8) -> String {
    let parity = match parity {
        Parity::None => 'N',
        Parity::Odd => 'O',
        Parity::Even => 'E',
    };
    format!("{data_bits}{parity}{stop_bits}")
}

pub(crate) fn flow_summary(flow: FlowControl) -> &'static str {
    match flow {
        FlowControl::None => "",
        FlowControl::Software => " xon/xoff",
        FlowControl::Hardware => " rts/cts",
    }
}

/// Checks the frame settings both transports share.
pub(crate) fn check_frame(device: &str, port: &str, data_bits: u8, stop_bits: u8) -> Result<(), SerialError> {
    if !(5..=8).contains(&data_bits) {
        return Err(SerialError::InvalidSetting {
            device: device.to_string(),
            port: port.to_string(),
            setting: "data_bits",
            value: data_bits.to_string(),
            hint: "use 5, 6, 7 or 8",
        });
    }
    if !(1..=2).contains(&stop_bits) {
        return Err(SerialError::InvalidSetting {
            device: device.to_string(),
            port: port.to_string(),
            setting: "stop_bits",
            value: stop_bits.to_string(),
            hint: "use 1 or 2",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_console_without_transport_names_the_device() {
        let console = Console { serial: None, tcp: None, prompt: None, login: None, death_strings: vec![], slow_send: None };
        let err = open_console("ru7", &console, Recorder::discard()).await.unwrap_err();
        assert!(matches!(err, SerialError::NoTransport { .. }));
        assert!(err.to_string().contains("ru7"));
    }

    #[test]
    fn frame_summary_reads_like_a_terminal_program() {
        assert_eq!(frame_summary(8, Parity::None, 1), "8N1");
        assert_eq!(frame_summary(7, Parity::Even, 2), "7E2");
        assert!(check_frame("ru1", "/dev/ttyS0", 9, 1).unwrap_err().to_string().contains("data_bits = 9"));
    }
}
