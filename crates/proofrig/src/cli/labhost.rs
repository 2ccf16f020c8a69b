//! `proofrig labhost run`: the agent on the machine wired to the rigs.
//!
//! It dials out to the server (no inbound port), enrolls on its first start with the
//! one-time token an admin minted (`proofrig labhost token NAME`), serves the rig
//! files of `--rigs`, and runs what the server assigns until stopped (Ctrl-C or
//! SIGTERM: a running job is aborted, sealed and uploaded on the next start). With
//! `--simlab` it serves the simulated lab, started in this process: the zero set-up
//! way to try the service.
//!
//! The enrollment token is read from `PROOFRIG_ENROLL_TOKEN` or `--enroll-file`,
//! never from the command line, where `ps` and shell histories keep it.

use std::path::PathBuf;

use proofrig_labhost::agent::{self, AgentConfig, ServerAddress};

use std::io::Write;

use super::serve::say;
use super::{Failure, EXIT_OK};

/// `proofrig labhost run`'s flags.
pub struct LabHostArgs {
    pub server: String,
    pub fingerprint: Option<String>,
    pub rigs: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub enroll_file: Option<PathBuf>,
    pub name: Option<String>,
    pub simlab: bool,
}

fn usage(message: String) -> Failure {
    Failure::usage(miette::Report::msg(message))
}

pub async fn run(args: LabHostArgs) -> Result<u8, Failure> {
    let enroll_token = match (&args.enroll_file, std::env::var("PROOFRIG_ENROLL_TOKEN")) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| usage(format!("cannot read the enrollment token {}: {e}", file.display())))?
                .trim()
                .to_string(),
        ),
        (None, Ok(token)) if !token.trim().is_empty() => Some(token.trim().to_string()),
        _ => None,
    };
    let name = args.name.clone().unwrap_or_else(|| proofrig_run::job::RunHost::this_process().host);
    #[cfg(feature = "simlab")]
    let _lab = match args.simlab {
        true => Some(simlab(&args.rigs.clone().unwrap_or_else(|| args.state_dir.join("simlab"))).await?),
        false => None,
    };
    #[cfg(not(feature = "simlab"))]
    if args.simlab {
        return Err(usage("this proofrig was built without the simulated lab (feature `simlab`)".into()));
    }
    let rigs_dir = match (&args.rigs, args.simlab) {
        (Some(dir), _) => dir.clone(),
        (None, true) => args.state_dir.join("simlab"),
        (None, false) => return Err(usage("name the directory of rig files this lab host serves: --rigs DIR (or --simlab)".into())),
    };
    let config = AgentConfig {
        server: ServerAddress { url: args.server.clone(), fingerprint: args.fingerprint.clone() },
        rigs_dir,
        state_dir: args.state_dir.clone(),
        enroll_token,
        name,
        clock: Default::default(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(agent::run(config, stopped));
    say!("lab host: serving {} as {}; stop with Ctrl-C", args.server, args.state_dir.display());
    tokio::select! {
        result = agent => {
            return match result {
                Ok(Ok(())) => Ok(EXIT_OK),
                Ok(Err(e)) => Err(Failure::failed(miette::Report::msg(e.to_string()))),
                Err(e) => Err(Failure::failed(miette::Report::msg(format!("the lab host agent stopped: {e}")))),
            };
        }
        _ = super::serve::wait_for_stop() => {}
    }
    say!("stopping: a running job is aborted, sealed, and uploaded");
    let _ = stop.send(true);
    // Give a job's restore steps and sealing a moment; its upload resumes on the next start.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    Ok(EXIT_OK)
}

/// Start the simulated lab and write its rig file into `dir`, where the agent serves
/// rigs from.
#[cfg(feature = "simlab")]
pub(super) async fn simlab(dir: &std::path::Path) -> Result<proofrig_simlab::SimLab, Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::failed(miette::Report::msg(e.to_string()));
    let lab = proofrig_simlab::SimLab::start(proofrig_simlab::SimLabConfig::default()).await.map_err(|e| failed(&e))?;
    std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
    lab.write_secrets(&dir.join("secrets")).map_err(|e| failed(&e))?;
    let rig = dir.join("simlab.yaml");
    std::fs::write(&rig, lab.rig_yaml(std::path::Path::new("secrets")))
        .map_err(|e| failed(&format!("cannot write {}: {e}", rig.display())))?;
    say!("simulated lab running; its rig file: {}", rig.display());
    Ok(lab)
}
