//! proofrig agents: everything that touches a device.
//!
//! Layers, bottom up: [`events`] (the one stream all evidence flows into),
//! [`channel`] (raw byte streams with continuous capture), transports that produce
//! them, the expect engine above any byte stream, and the power backends.
//! [`rig`] describes what exists on a bench; agents take the piece they need.
//! [`redact`] keeps secret values out of whatever the recorder records; [`snmp`]
//! probes a device's SNMP agent over UDP; [`udp`] scans its UDP ports, [`tcp`] its
//! TCP ports.

pub mod ansi;
pub mod channel;
pub mod events;
pub mod expect;
pub mod net;
pub mod power;
pub mod redact;
pub mod rig;
pub mod secret;
pub mod serial;
pub mod snmp;
pub mod tcp;
pub mod udp;
pub mod ssh;
pub mod yaml;
