//! A Modbus TCP relay board on loopback for power tests and benchmarks.
//!
//! The board is the simulated lab's PDU ([`proofrig_simlab::SimPdu`]), so tests
//! exercise the same implementation `proofrig demo` runs; this wrapper only gives it
//! the test-peer shape: starting and coil access panic with a clear message instead
//! of returning errors a test would unwrap anyway. Everything else (stuck coils,
//! request log, reply delay, change hook, restart on the same port) is the board's
//! own API, reached through `Deref`.

use std::ops::{Deref, DerefMut};

pub use proofrig_simlab::pdu::{CoilHook, CoilOp, LoggedRequest, PduOptions as ModbusOptions, SimPdu};

/// A running board on 127.0.0.1 with inspectable coils, all off at start. Stops on drop.
#[derive(Debug)]
pub struct ModbusServer(SimPdu);

impl ModbusServer {
    /// `coils` coils, unit 1, on a free port.
    pub fn start(coils: u16) -> ModbusServer {
        Self::start_with(ModbusOptions { coils, ..ModbusOptions::default() })
    }

    pub fn start_with(options: ModbusOptions) -> ModbusServer {
        let port = options.port;
        match SimPdu::start_with(options) {
            Ok(board) => ModbusServer(board),
            Err(e) => panic!("Modbus test server cannot start on 127.0.0.1:{port:?}: {e}"),
        }
    }

    pub fn coil(&self, coil: u16) -> bool {
        self.0.coil(coil).unwrap_or_else(|| panic!("the test board has no coil {coil}"))
    }

    /// Sets a coil as if someone flipped the relay by hand (the hook follows).
    pub fn set_coil(&self, coil: u16, value: bool) {
        if let Err(e) = self.0.set_coil(coil, value) {
            panic!("{e}");
        }
    }
}

impl Deref for ModbusServer {
    type Target = SimPdu;

    fn deref(&self) -> &SimPdu {
        &self.0
    }
}

impl DerefMut for ModbusServer {
    fn deref_mut(&mut self) -> &mut SimPdu {
        &mut self.0
    }
}
