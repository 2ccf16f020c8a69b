//! `proofrig plan check`: validate plan files without touching a device.

use std::path::PathBuf;

use proofrig_plan::Plan;

use super::{Failure, EXIT_OK, EXIT_USAGE};

pub fn check(paths: &[PathBuf]) -> Result<u8, Failure> {
    let mut code = EXIT_OK;
    for path in paths {
        match Plan::load(path) {
            Ok(plan) => {
                let steps: usize = plan.spec.cases.iter().map(|c| c.steps.len() + c.restore.len()).sum();
                println!("{}: ok (plan `{}`, {} case(s), {steps} step(s))", path.display(), plan.spec.plan, plan.spec.cases.len());
            }
            Err(err) => {
                eprintln!("{:?}", miette::Report::new(err));
                code = EXIT_USAGE;
            }
        }
    }
    Ok(code)
}
