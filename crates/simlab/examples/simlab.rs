//! Runs the simulated lab by hand, to poke at it with the tools a technician would
//! use: `picocom /dev/pts/N`, `ssh`, a Modbus client, `proofrig rig probe`.
//!
//!     cargo run -p proofrig-simlab --example simlab -- /tmp/simlab
//!
//! writes `/tmp/simlab/simlab.yaml` (and its secrets) and serves until Ctrl-C.

use std::path::PathBuf;

use proofrig_simlab::{SimLab, SimLabConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("proofrig-simlab"));
    let started = std::time::Instant::now();
    let mut lab = SimLab::start(SimLabConfig::default()).await?;
    let rig = lab.write_rig(&dir)?;
    println!("started in {:?} (consoles now booting)", started.elapsed());
    println!("rig: {}", rig.display());
    println!("PDU: modbus {} (unit 1)", lab.pdu_addr());
    for device in lab.devices() {
        let spec = device.spec();
        println!(
            "{:6} {:10} {:8} ssh {}  console {}  outlet {}",
            device.name(),
            spec.role,
            spec.profile.name(),
            device.ssh_addr(),
            device.console_path().map_or("-".into(), |p| p.display().to_string()),
            spec.outlet
        );
    }
    println!("serving until Ctrl-C");
    tokio::signal::ctrl_c().await?;
    lab.stop().await;
    Ok(())
}
