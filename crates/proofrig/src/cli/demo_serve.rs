//! `proofrig demo --serve`: the lab service and its dashboard with zero set-up.
//!
//! Starts a server on loopback (plain HTTP: a browser on this machine opens it without
//! a certificate warning, and nobody else can reach it), makes two people, a manager
//! and a technician, with fresh passwords, enrolls a lab host in this same process
//! that serves the simulated lab, queues the bundled library on it, prints the URL and
//! the logins, and serves until Ctrl-C. The state (store, bundles, the lab host's key)
//! is kept in `--state-dir`: a second start serves what the first left, and queues the
//! library again.

use std::net::SocketAddr;
use std::path::PathBuf;

use proofrig_labhost::agent::{self, AgentConfig, ServerAddress};
use proofrig_plan::library;
use proofrig_proto::api::{RigSelector, Role, SubmitJob};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::Priority;
use proofrig_server::api::{new_secret, password_hash, secret_sha256};
use proofrig_server::http::{Server, ServerConfig};
use proofrig_server::store::{Ctx, NewUserRecord, StoreError};

use super::serve::say;
use super::{Failure, EXIT_OK};
use std::io::Write as _;

pub struct DemoServeArgs {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
}

fn failed(e: &dyn std::fmt::Display) -> Failure {
    Failure::failed(miette::Report::msg(e.to_string()))
}

pub async fn demo_serve(args: DemoServeArgs) -> Result<u8, Failure> {
    if !args.listen.ip().is_loopback() {
        return Err(Failure::usage(miette::miette!(
            "--listen {}: the demo server serves plain HTTP on loopback only; for a lab, run `proofrig serve`",
            args.listen
        )));
    }
    let mut config = ServerConfig::new(args.listen, args.state_dir.join("server"));
    config.plain_http = true;
    let server = Server::start(config).await.map_err(|e| failed(&e))?;
    let url = server.url();
    let store = server.store();
    let now = server.clock().now();
    let ctx = Ctx::new("demo", "demo", now);

    // People: a manager and a technician with fresh passwords (a restart makes new ones
    // only for people it has not made yet).
    let mut logins = Vec::new();
    for (name, role) in [("manager", Role::Manager), ("technician", Role::Technician)] {
        let password = new_secret("pw")[3..19].to_string();
        let user = NewUserRecord {
            name: name.into(),
            role,
            password_hash: Some(password_hash(&password).map_err(|e| failed(&e))?),
            token_sha256: secret_sha256(&new_secret("prt")),
            token_expires_at: now.plus(std::time::Duration::from_secs(24 * 3600)),
        };
        match store.add_user(&user, &ctx).await {
            Ok(()) => logins.push(format!("{name} / {password}")),
            Err(StoreError::Conflict(_)) => logins.push(format!("{name} / (the password printed at its first start)")),
            Err(e) => return Err(failed(&e)),
        }
    }

    // The lab host, in this process, serving the simulated lab.
    let labhost_dir = args.state_dir.join("labhost");
    let rigs = labhost_dir.join("simlab");
    let _lab = super::labhost::simlab(&rigs).await?;
    let enroll = new_secret("enr");
    let expires = now.plus(std::time::Duration::from_secs(600));
    if !labhost_dir.join("enrollment.json").exists() {
        store.add_enrollment("demo-labhost", &secret_sha256(&enroll), expires, &ctx).await.map_err(|e| failed(&e))?;
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = AgentConfig {
        server: ServerAddress { url: url.clone(), fingerprint: None },
        rigs_dir: rigs,
        state_dir: labhost_dir,
        enroll_token: Some(enroll),
        name: "demo-labhost".into(),
        clock: Default::default(),
    };
    let agent = tokio::spawn(agent::run(config, stopped));

    // The bundled library, queued for the simulated lab.
    let plans: Vec<PlanFile> =
        library::bundled_files().iter().map(|(path, bytes)| PlanFile { name: bare_name(path), bytes: bytes.to_vec() }).collect();
    let job = SubmitJob {
        plans,
        target: RigSelector::Rig("simlab".into()),
        priority: Priority::NORMAL,
        params: Default::default(),
        device: None,
        not_before: None,
    };
    let submitted = store.submit(&job, &Ctx::new("manager", "demo", now)).await.map_err(|e| failed(&e))?;

    say!("proofrig demo server: open {url}/ in a browser on this machine");
    for login in &logins {
        say!("  log in as {login}");
    }
    say!("the bundled library is queued as job {} on the simulated lab; its run appears on the Runs page when it ends", submitted.job.0);
    say!("state in {}; stop with Ctrl-C", args.state_dir.display());
    std::io::stdout().flush().ok();
    super::serve::wait_for_stop().await;
    let _ = stop.send(true);
    let _ = agent.await;
    server.stop().await;
    Ok(EXIT_OK)
}

/// `testplans/x.yaml` -> `x.yaml`: a plan travels under its bare file name.
fn bare_name(path: &str) -> String {
    std::path::Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.to_string())
}
