//! Modbus TCP coils as power outlets (relay boards and many PDUs).
//!
//! A coil write is acknowledged by echoing the request, which says nothing about
//! the relay, so every write is followed by reading the coil back and a difference
//! is an error. One TCP connection per PDU is kept open between actions (opening
//! one costs more than the exchange itself) and dropped on any failure; a kept
//! connection that the PDU closed while idle is replaced once, transparently,
//! which is safe because writing a coil is idempotent. Connect, write and
//! read-back together never take longer than the PDU's `timeout_ms`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};
use tokio_modbus::client::{tcp, Context};
use tokio_modbus::prelude::{ExceptionCode, Reader, Slave, Writer};

use super::{elapsed_ms, error_chain, OutletRef, PowerBackend, PowerError, Switched};
use proofrig_model::events::PowerState;
use proofrig_model::rig::{ModbusPdu, OutletId};

/// The Modbus backend of one PDU.
pub struct ModbusBackend {
    pdu: String,
    config: ModbusPdu,
    /// Coil read by `probe`: the first outlet used in the rig, else coil 0.
    probe_coil: u16,
    connection: Mutex<Option<Context>>,
}

/// What one exchange on the wire should do.
#[derive(Clone, Copy)]
enum Exchange {
    WriteThenRead { coil: u16, value: bool },
    Read { coil: u16 },
}

/// Why an exchange failed, before it is turned into a [`PowerError`].
enum Failure {
    /// TCP connect failed or the connection broke: nothing useful came back.
    Transport(String),
    /// No reply before the deadline.
    Silent(&'static str),
    /// The PDU answered with a Modbus exception.
    Exception(ExceptionCode),
    /// The PDU answered something that is not a matching Modbus reply.
    Garbled(String),
}

impl ModbusBackend {
    pub fn new(pdu: &str, config: ModbusPdu, first_outlet: Option<OutletId>) -> ModbusBackend {
        let probe_coil = match first_outlet {
            Some(OutletId::Number(n)) => u16::try_from(n).unwrap_or(0),
            _ => 0,
        };
        ModbusBackend { pdu: pdu.to_string(), config, probe_coil, connection: Mutex::new(None) }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// The power state a coil value means, honouring `invert`.
    fn state_of(&self, coil_value: bool) -> PowerState {
        if coil_value != self.config.invert {
            PowerState::On
        } else {
            PowerState::Off
        }
    }

    fn coil_of(&self, outlet: &OutletRef<'_>) -> Result<u16, PowerError> {
        match outlet.outlet {
            OutletId::Number(n) => u16::try_from(*n).map_err(|_| self.bad_outlet(outlet)),
            OutletId::Name(_) => Err(self.bad_outlet(outlet)),
        }
    }

    fn bad_outlet(&self, outlet: &OutletRef<'_>) -> PowerError {
        PowerError::BadOutlet {
            device: outlet.device.into(),
            pdu: self.pdu.clone(),
            outlet: outlet.outlet.clone(),
            reason: "a Modbus outlet is a coil number 0..65535".into(),
        }
    }

    async fn switch(&self, outlet: &OutletRef<'_>, requested: PowerState) -> Result<Switched, PowerError> {
        let coil = self.coil_of(outlet)?;
        let value = (requested == PowerState::On) != self.config.invert;
        let action = if requested == PowerState::On { "on" } else { "off" };
        let read = self
            .run(Exchange::WriteThenRead { coil, value })
            .await
            .map_err(|(failure, after_ms)| self.to_error(failure, after_ms, Some((outlet, action))))?;
        let readback = self.state_of(read);
        if readback != requested {
            return Err(PowerError::ReadbackMismatch {
                device: outlet.device.into(),
                pdu: self.pdu.clone(),
                outlet: outlet.outlet.clone(),
                requested,
                read: readback,
            });
        }
        Ok(Switched {
            readback,
            detail: format!(
                "Modbus unit {} at {}: wrote coil {coil} = {value}, read back {read}{}",
                self.config.unit,
                self.addr(),
                if self.config.invert { " (inverted: coil off means power on)" } else { "" }
            ),
        })
    }

    /// One exchange within the PDU's time budget, on the kept connection if any.
    /// Returns the coil value read, or the failure and how long it took.
    async fn run(&self, exchange: Exchange) -> Result<bool, (Failure, u64)> {
        let started = Instant::now();
        let deadline = started + self.timeout();
        let mut kept = self.connection.lock().await;
        let reused = kept.is_some();
        let mut attempt_result = self.attempt(&mut kept, exchange, deadline).await;
        if reused && matches!(attempt_result, Err(Failure::Transport(_))) {
            // The PDU probably closed our idle connection; one fresh try, same deadline.
            attempt_result = self.attempt(&mut kept, exchange, deadline).await;
        }
        attempt_result.map_err(|failure| (failure, elapsed_ms(started)))
    }

    async fn attempt(&self, kept: &mut Option<Context>, exchange: Exchange, deadline: Instant) -> Result<bool, Failure> {
        if kept.is_none() {
            *kept = Some(self.connect(deadline).await?);
        }
        let context = kept.as_mut().expect("connected above");
        let result = match timeout_at(deadline, transact(context, exchange)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Silent("connected, but no Modbus reply came back")),
        };
        // After an exception the connection is still in step; after anything else
        // a late reply could be taken for the next request's, so start afresh.
        if matches!(result, Err(Failure::Transport(_) | Failure::Silent(_) | Failure::Garbled(_))) {
            *kept = None;
        }
        result
    }

    async fn connect(&self, deadline: Instant) -> Result<Context, Failure> {
        let target = (self.config.host.as_str(), self.config.port);
        let addrs: Vec<SocketAddr> = match timeout_at(deadline, tokio::net::lookup_host(target)).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(err)) => return Err(Failure::Transport(format!("cannot resolve host `{}`: {err}", self.config.host))),
            Err(_) => return Err(Failure::Silent("resolving the host name did not finish")),
        };
        let Some(addr) = addrs.first().copied() else {
            return Err(Failure::Transport(format!("host `{}` has no address", self.config.host)));
        };
        let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(Failure::Transport(format!("TCP connect to {addr} failed: {}", error_chain(&err)))),
            Err(_) => return Err(Failure::Silent("TCP connect did not complete")),
        };
        // Requests are single small frames; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        Ok(tcp::attach_slave(stream, Slave(self.config.unit)))
    }

    fn to_error(&self, failure: Failure, after_ms: u64, during: Option<(&OutletRef<'_>, &'static str)>) -> PowerError {
        let unreachable = |reason: String| PowerError::Unreachable { pdu: self.pdu.clone(), addr: self.addr(), after_ms, reason };
        match failure {
            Failure::Transport(reason) => unreachable(reason),
            Failure::Silent(what) => unreachable(format!(
                "{what} (timeout_ms {}; if TCP connects but nothing answers, check that this is a Modbus TCP \
                 server and that unit id {} is right)",
                self.config.timeout_ms, self.config.unit
            )),
            Failure::Exception(code) => {
                let reason = format!("Modbus exception {code:?}{}", exception_hint(code));
                match during {
                    Some((outlet, action)) => PowerError::Refused {
                        device: outlet.device.into(),
                        pdu: self.pdu.clone(),
                        outlet: outlet.outlet.clone(),
                        action,
                        reason,
                    },
                    None => PowerError::UnexpectedReply { pdu: self.pdu.clone(), addr: self.addr(), reason },
                }
            }
            Failure::Garbled(reason) => PowerError::UnexpectedReply { pdu: self.pdu.clone(), addr: self.addr(), reason },
        }
    }
}

fn exception_hint(code: ExceptionCode) -> &'static str {
    match code {
        ExceptionCode::IllegalDataAddress => " (the coil number does not exist on this unit; check `outlet`)",
        ExceptionCode::IllegalFunction => " (this unit has no coils; is it the right device?)",
        ExceptionCode::GatewayTargetDevice | ExceptionCode::GatewayPathUnavailable => {
            " (a gateway answered for a unit behind it; check `unit` in the rig file)"
        }
        _ => "",
    }
}

async fn transact(context: &mut Context, exchange: Exchange) -> Result<bool, Failure> {
    let coil = match exchange {
        Exchange::WriteThenRead { coil, value } => {
            flatten(context.write_single_coil(coil, value).await)?;
            coil
        }
        Exchange::Read { coil } => coil,
    };
    let coils = flatten(context.read_coils(coil, 1).await)?;
    coils.first().copied().ok_or_else(|| Failure::Garbled(format!("reading coil {coil} returned no value")))
}

/// tokio-modbus nests "the PDU said no" inside "the wire worked".
fn flatten<T>(result: tokio_modbus::Result<T>) -> Result<T, Failure> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(code)) => Err(Failure::Exception(code)),
        Err(tokio_modbus::Error::Transport(err)) => Err(Failure::Transport(format!("connection lost: {}", error_chain(&err)))),
        Err(tokio_modbus::Error::Protocol(err)) => Err(Failure::Garbled(err.to_string())),
    }
}

impl PowerBackend for ModbusBackend {
    async fn on(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        self.switch(outlet, PowerState::On).await
    }

    async fn off(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        self.switch(outlet, PowerState::Off).await
    }

    async fn status(&self, outlet: &OutletRef<'_>) -> Result<PowerState, PowerError> {
        let coil = self.coil_of(outlet)?;
        let read = self
            .run(Exchange::Read { coil })
            .await
            .map_err(|(failure, after_ms)| self.to_error(failure, after_ms, Some((outlet, "status"))))?;
        Ok(self.state_of(read))
    }

    async fn probe(&self, outlet: Option<&OutletRef<'_>>) -> Result<String, PowerError> {
        let coil = match outlet {
            Some(outlet) => self.coil_of(outlet)?,
            None => self.probe_coil,
        };
        let read = self.run(Exchange::Read { coil }).await.map_err(|(failure, after_ms)| self.to_error(failure, after_ms, None))?;
        Ok(format!(
            "Modbus TCP unit {} at {} answered: coil {coil} is {read} (power {})",
            self.config.unit,
            self.addr(),
            self.state_of(read)
        ))
    }
}
