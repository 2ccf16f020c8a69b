//! proofrig agents: everything that touches a device.
//!
//! Layers, bottom up: the event stream of `proofrig_model::events` (the one stream
//! all evidence flows into), [`channel`] (raw byte streams with continuous capture),
//! transports that produce them, the expect engine above any byte stream, and the
//! power backends. The rig model (`proofrig_model::rig`) describes what exists on a
//! bench; agents take the piece they need. [`snmp`] probes a device's SNMP agent over
//! UDP; [`udp`] scans its UDP ports, [`tcp`] its TCP ports; [`http`] sends one HTTP request; [`tls`] audits a TLS server.

pub mod channel;
pub mod expect;
pub mod http;
pub mod net;
pub mod power;
pub mod serial;
pub mod snmp;
pub mod ssh;
pub mod syslog;
pub mod tcp;
pub mod tls;
pub mod udp;
