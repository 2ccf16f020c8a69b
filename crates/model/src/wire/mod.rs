//! What crossed the wire, read again: the pure parsers and rules an agent applies to
//! the bytes it exchanges with a device, and `verify` applies to the same bytes as
//! recorded. Keeping one copy of each rule here is what makes a replayed result the
//! agent's own result, not a second opinion. No sockets here: the agents that send and
//! receive are `proofrig_agents::{ssh, snmp, udp, tcp, http, tls}`.

pub mod http;
pub mod snmp;
pub mod ssh;
pub mod ssh_shell;
pub mod syslog;
pub mod tcp;
pub mod tls;

/// The TCP port a step's resolved spec gives under `port`: a number, or a template's
/// text that reads as one (`${device.declared.web_port}` resolves to text).
pub fn spec_tcp_port(spec: &serde_json::Value) -> Result<u16, String> {
    let port = match &spec["port"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).ok_or_else(|| format!("`port` {} is not a TCP port", spec["port"]))
}

/// Whether a plan's `port:` can be a TCP port: a template (checked once resolved), or a
/// number from 1 to 65535.
pub fn port_or_template(port: &serde_json::Value) -> bool {
    port.is_string() || port.as_u64().is_some_and(|p| (1..=65535).contains(&p))
}
pub mod udp;
