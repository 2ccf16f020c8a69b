//! `proofrig ssh RIG DEVICE -- CMD`: run one command like `ssh` would, with a pinned
//! host key and a recorded transcript.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use proofrig_agents::ssh::SshSession;
use proofrig_model::rig::Rig;

use super::{report, Failure};
use crate::session::SessionLog;

pub async fn ssh(rig_path: &Path, device: &str, command: &[String], timeout_s: u64, transcripts: &Path) -> Result<u8, Failure> {
    let rig = Rig::load(rig_path)?;
    let spec = rig.device(device)?;
    let Some(endpoint) = &spec.ssh else {
        return Err(Failure::usage(miette::miette!(
            help = "add an `ssh:` section to the device in the rig file (see rigs/README.md)",
            "device `{device}` in {} has no SSH endpoint",
            rig_path.display()
        )));
    };
    let log = SessionLog::create(transcripts, &rig, device, "ssh").map_err(|e| Failure::usage(report(e)))?;
    let session = SshSession::connect(device, endpoint, log.recorder.clone()).await.map_err(|e| Failure::failed(report(e)))?;
    // Like OpenSSH's client: the arguments are joined and the remote shell parses them.
    let line = command.join(" ");
    let output = session.exec(&line, Duration::from_secs(timeout_s)).await.map_err(|e| Failure::failed(report(e)))?;
    session.close().await;
    let _ = std::io::stdout().write_all(&output.stdout);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(&output.stderr);
    Ok(match output.exit_status {
        Some(status) => u8::try_from(status).unwrap_or(super::exit::NO_STATUS),
        None => super::exit::NO_STATUS,
    })
}
