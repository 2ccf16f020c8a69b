//! What crossed the wire, read again: the pure parsers and rules an agent applies to
//! the bytes it exchanges with a device, and `verify` applies to the same bytes as
//! recorded. Keeping one copy of each rule here is what makes a replayed result the
//! agent's own result, not a second opinion. No sockets here: the agents that send and
//! receive are `proofrig_agents::{ssh, snmp, udp, tcp, http, tls}`.

pub mod http;
pub mod snmp;
pub mod ssh;
pub mod syslog;
pub mod tcp;
pub mod tls;
pub mod udp;
