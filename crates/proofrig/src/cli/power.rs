//! `proofrig power RIG DEVICE on|off|cycle|status`: a technician switches an outlet.

use std::path::Path;
use std::time::Duration;

use proofrig_agents::power::PowerController;
use proofrig_model::rig::Rig;

use super::{report, Failure, PowerAction, EXIT_OK};
use crate::session::SessionLog;

pub async fn power(rig_path: &Path, device: &str, action: PowerAction, off_for_ms: Option<u64>, transcripts: &Path) -> Result<u8, Failure> {
    let rig = Rig::load(rig_path)?;
    rig.device(device)?;
    let log = SessionLog::create(transcripts, &rig, device, "power").map_err(|e| Failure::usage(report(e)))?;
    let controller = PowerController::new(&rig, log.recorder.clone()).map_err(|e| Failure::usage(miette::Report::new(e)))?;
    let result = match action {
        PowerAction::On => controller.on(device).await,
        PowerAction::Off => controller.off(device).await,
        PowerAction::Cycle => controller.cycle(device, off_for_ms.map(Duration::from_millis)).await,
        PowerAction::Status => controller.status(device).await,
    };
    match result {
        Ok(state) => {
            println!("{device}: power {state}");
            Ok(EXIT_OK)
        }
        Err(err) => Err(Failure::failed(miette::Report::new(err))),
    }
}
