//! `proofrig sim --rig-out FILE`: the demo's simulated lab, standalone, for people.
//!
//! Writes a rig file (and the secret files it references) so a technician can try
//! `proofrig rig probe`, `power`, `console`, `ssh` and `run` against it, and serves
//! until Ctrl-C.

use std::path::Path;

use proofrig_simlab::{SimLab, SimLabConfig};

use super::{Failure, EXIT_OK};
use crate::table;

pub async fn sim(rig_out: &Path, well_known_ports: bool) -> Result<u8, Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::failed(miette::Report::msg(e.to_string()));
    // Hardened consoles log out a shell left idle for a minute, as a real unit's TMOUT would.
    let mut config = SimLabConfig::default().with_console_idle_timeout(std::time::Duration::from_secs(60));
    if well_known_ports {
        config = config.with_well_known_service_ports().on_random_addresses().map_err(|e| failed(&e))?;
    }
    let mut lab = SimLab::start(config).await.map_err(|e| failed(&e))?;
    let dir = rig_out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
    lab.write_secrets(&dir.join("secrets")).map_err(|e| failed(&e))?;
    // A rig resolves relative paths against its own directory: `secrets/...` is the
    // folder beside it, wherever the rig was asked for and wherever it is run from.
    // Written whole then renamed, so whoever waits for the file never reads half of it.
    let partial = dir.join(format!(".{}.partial", rig_out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    std::fs::write(&partial, lab.rig_yaml(Path::new("secrets")))
        .and_then(|()| std::fs::rename(&partial, rig_out))
        .map_err(|e| failed(&format!("cannot write {}: {e}", rig_out.display())))?;

    let rows: Vec<Vec<String>> = lab
        .devices()
        .iter()
        .map(|d| {
            vec![
                d.name().to_string(),
                d.spec().role.clone(),
                d.spec().profile.name().to_string(),
                d.ssh_addr().to_string(),
                d.console_path().map_or("-".into(), |p| p.display().to_string()),
                d.spec().outlet.to_string(),
            ]
        })
        .collect();
    println!("simulated lab running; rig file: {}", rig_out.display());
    println!("PDU: Modbus TCP {} (unit 1)\n", lab.pdu_addr());
    print!("{}", table::render(&["device", "role", "profile", "ssh", "console", "outlet"], &rows));
    let rig = rig_out.display();
    println!("\ntry:\n    proofrig rig probe {rig}\n    proofrig console {rig} ru2\n    proofrig power {rig} ru2 cycle");
    println!("    proofrig run testplans/*.yaml --rig {rig}");
    if !well_known_ports {
        println!(
            "\nthe weak devices' telnet, FTP and HTTP listen on high ports, where\n\
             no-unnecessary-services.yaml does not look (open-ports.yaml finds them);\n\
             `proofrig sim --well-known-ports` (as root) puts them on 23, 21 and 80"
        );
    }
    println!("\nserving until Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    lab.stop().await;
    Ok(EXIT_OK)
}
