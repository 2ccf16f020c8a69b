//! `proofrig rig check`: validate rig files without touching hardware.

use std::path::PathBuf;

use proofrig_model::rig::Rig;

use super::{Failure, EXIT_OK, EXIT_USAGE};

pub fn check(paths: &[PathBuf]) -> Result<u8, Failure> {
    let mut code = EXIT_OK;
    for path in paths {
        match Rig::load(path) {
            Ok(rig) => {
                let devices = rig.spec.devices.len();
                let pdus = rig.spec.pdus.len();
                println!("{}: ok (rig `{}`, {devices} device(s), {pdus} PDU(s))", path.display(), rig.name());
            }
            Err(err) => {
                eprintln!("{:?}", miette::Report::new(err));
                code = EXIT_USAGE;
            }
        }
    }
    Ok(code)
}
