//! proofrig model: what the device agents and the verifier both need, and nothing
//! that talks to a device.
//!
//! `proofrig verify` replays a sealed bundle offline: it re-derives every verdict
//! from the recorded events, so it must read them with exactly the types and rules
//! the agents wrote them with, yet it has no business linking libssh2, serial ports,
//! Modbus or HTTP clients. This crate is that shared ground, plain data and pure
//! functions only:
//!
//! - [`events`]: the one stream all evidence flows into (`Event`, `Recorder`,
//!   `EventSink`), redacting as it records;
//! - [`rig`]: what exists on a bench, loaded from YAML with located errors ([`yaml`]);
//! - [`secret`] and [`redact`]: secrets by reference, and keeping their values out
//!   of what is recorded;
//! - [`ansi`]: the text view of a terminal's output the expect engine matches on, and
//!   [`prompts`]: the prompts it waits for when a rig names none;
//! - [`wire`]: the pure parsers and rules that read what crossed the wire (SSH
//!   KEXINIT, SNMP BER, the UDP and TCP scans' evidence), shared by the agent that
//!   exchanged the bytes and the replay that reads them again.
//!
//! Deliberately absent: any device I/O. Transports, sessions, scans and power
//! backends live in `proofrig-agents`, which depends on this crate; nothing here
//! opens a socket, a serial port or a process (the only files touched are a secret's
//! `file:` reference and a JSON-lines transcript), so a verifier links none of ssh2,
//! serialport, tokio-modbus, reqwest or nix.

pub mod ansi;
pub mod events;
pub mod prompts;
pub mod redact;
pub mod rig;
pub mod secret;
pub mod wire;
pub mod yaml;
