//! Local serial ports and PTYs, opened with serialport/tokio-serial (no libudev).
//!
//! serialport 4.10's `TTYPort::open` already suits PTYs: it sets DTR only
//! best-effort (errors ignored), applies termios through `TCSETS2`, which PTYs accept
//! like any tty, and takes TIOCEXCL plus an exclusive `flock` so two programs cannot
//! fight over one console. So we use it as is rather than hand-rolling termios; the
//! open runs on the console's own thread because some USB serial drivers take a
//! while in open(2). tokio-serial then wraps the fd (made non-blocking) in tokio's
//! `AsyncFd`.
//! We never call `flush` on it: for a tty that is `tcdrain`, which would block.

use std::io;

use serialport::{DataBits, StopBits};

use super::pump::{start_pump, LossReason, PumpSetup, Transparent};
use super::{check_frame, console_channel, flow_summary, frame_summary, SerialError};
use crate::channel::ByteStream;
use proofrig_model::events::Recorder;
use proofrig_model::rig::{FlowControl, Parity, SerialConsole};

/// Open a local tty or PTY as the console of `device`.
pub async fn open_serial(device: &str, serial: &SerialConsole, recorder: Recorder) -> Result<ByteStream, SerialError> {
    let port = serial.port.clone();
    let port_text = port.to_string_lossy().into_owned();
    check_frame(device, &port_text, serial.data_bits, serial.stop_bits)?;
    let settings = format!(
        "{} {}{}",
        serial.baud,
        frame_summary(serial.data_bits, serial.parity, serial.stop_bits),
        flow_summary(serial.flow_control)
    );

    let builder = serialport::new(port_text.clone(), serial.baud)
        .data_bits(match serial.data_bits {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        })
        .parity(match serial.parity {
            Parity::None => serialport::Parity::None,
            Parity::Odd => serialport::Parity::Odd,
            Parity::Even => serialport::Parity::Even,
        })
        .stop_bits(if serial.stop_bits == 2 { StopBits::Two } else { StopBits::One })
        .flow_control(match serial.flow_control {
            FlowControl::None => serialport::FlowControl::None,
            FlowControl::Software => serialport::FlowControl::Software,
            FlowControl::Hardware => serialport::FlowControl::Hardware,
        })
        .exclusive(true);

    let open_error = |err: serialport::Error| {
        let device = device.to_string();
        let port = port.clone();
        match err.kind() {
            serialport::ErrorKind::Io(io::ErrorKind::NotFound) => SerialError::NotFound { device, port },
            serialport::ErrorKind::Io(io::ErrorKind::PermissionDenied) => SerialError::PermissionDenied { device, port },
            // EBUSY from TIOCEXCL, or our flock refused: someone else holds the port.
            serialport::ErrorKind::NoDevice => SerialError::Busy { device, port },
            _ => SerialError::Open { device, port, settings: settings.clone(), reason: err.to_string() },
        }
    };
    let channel = console_channel(device);
    let setup = PumpSetup {
        channel,
        opened_detail: format!("serial {port_text} {settings}"),
        recorder,
        codec: Transparent,
        loss: TtyLoss { port: port_text },
        settled: None,
    };
    // Opened on the console's own thread: open(2) may block, and the fd must register
    // with that thread's reactor.
    start_pump(move || tokio_serial::SerialStream::try_from(serialport::TTYPort::open(&builder)?), setup).await.map_err(open_error)
}

struct TtyLoss {
    port: String,
}

impl LossReason for TtyLoss {
    fn eof(&self) -> String {
        format!("end of file on {}: the line was hung up (PTY master closed or serial adapter unplugged)", self.port)
    }

    fn error(&self, op: &str, err: &io::Error) -> String {
        match err.raw_os_error() {
            Some(libc::EIO) => {
                format!("I/O error (EIO) {op} {}: the other end went away (PTY master closed or serial adapter unplugged)", self.port)
            }
            Some(libc::ENXIO) | Some(libc::ENODEV) => {
                format!("{} disappeared while {op} it (adapter unplugged?): {err}", self.port)
            }
            _ => format!("{op} {} failed: {err}", self.port),
        }
    }
}
