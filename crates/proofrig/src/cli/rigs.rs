//! `proofrig rigs [--json]`: the lab server's rigs: where each is, its state and why,
//! what it offers (roles, tags) and who holds it.

use proofrig_proto::api::{RigState, RigView};

use super::client::{time, Client, Connection};
use super::{Failure, EXIT_OK};

pub async fn rigs(json: bool, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let rigs: Vec<RigView> = client.get(&["api", "rigs"], "listing the rigs").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rigs).expect("rigs are plain data"));
        return Ok(EXIT_OK);
    }
    if rigs.is_empty() {
        println!("no rigs on {}: a lab host advertises its rigs when it connects", client.server());
        return Ok(EXIT_OK);
    }
    let dash = || "-".to_string();
    let list = |items: &std::collections::BTreeSet<String>| match items.is_empty() {
        true => "-".to_string(),
        false => items.iter().map(String::as_str).collect::<Vec<_>>().join(","),
    };
    let rows: Vec<Vec<String>> = rigs
        .iter()
        .map(|r| {
            let online = if r.labhost_online { "online" } else { "OFFLINE" };
            vec![
                r.summary.rig.clone(),
                format!("{} ({online})", r.labhost),
                state(r.state).to_string(),
                time(r.since),
                format!("roles {}; tags {}", list(&r.summary.roles), list(&r.summary.tags)),
                r.reservation.as_ref().map(|h| format!("{} until {}", h.holder, time(h.until))).unwrap_or_else(dash),
                if r.reason.is_empty() { dash() } else { r.reason.clone() },
            ]
        })
        .collect();
    let header = ["RIG", "LAB HOST", "STATE", "SINCE", "OFFERS", "RESERVED BY", "REASON"];
    print!("{}", crate::table::render(&header, &rows));
    Ok(EXIT_OK)
}

/// A rig state as the API names it.
pub fn state(state: RigState) -> &'static str {
    state.name()
}
