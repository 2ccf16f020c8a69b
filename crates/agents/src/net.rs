//! Where a network probe goes: the TCP and UDP scans and the SNMP probe take an address
//! or a host name from a rig or a plan, and resolve it the same way.

use std::net::IpAddr;

/// `address` as an IP address: parsed when it is one, else looked up; the reason a
/// person can act on when neither works.
pub async fn resolve_ip(address: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok(ip);
    }
    match tokio::net::lookup_host((address, 0)).await {
        Ok(mut found) => found.next().map(|a| a.ip()).ok_or_else(|| format!("{address} resolves to no address")),
        Err(err) => Err(format!("cannot resolve {address}: {err}")),
    }
}
