//! Command-line grammar and dispatch. Each subcommand lives in its own module.

mod cancel;
mod care;
mod catalogue;
mod client;
mod console;
#[cfg(feature = "simlab")]
mod demo;
#[cfg(feature = "simlab")]
mod demo_serve;
mod enrollment;
mod fetch;
mod keygen;
mod labhost;
mod plan;
mod power;
mod probe;
mod queue;
mod receipt;
mod reservation;
mod revoke;
mod rig;
mod rigs;
mod run;
mod seal;
mod serve;
#[cfg(feature = "simlab")]
mod sim;
mod ssh;
mod submit;
mod user;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod exit;

pub use exit::{FAILED as EXIT_FAILED, OK as EXIT_OK, USAGE as EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(name = "proofrig", version, about = "Hardware-in-the-loop security testing for telecom equipment")]
pub struct Cli {
    /// More log output on stderr (-v, -vv); PROOFRIG_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Where technician session transcripts are written.
    #[arg(long, global = true, default_value = "results/sessions", value_name = "DIR")]
    pub transcripts: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// `proofrig labhost ...`
#[derive(Debug, Subcommand)]
pub enum LabhostCommand {
    /// Run the agent: enroll on the first start, serve the rigs, run what the server
    /// assigns, upload the sealed bundles. Dials out; opens no port.
    ///
    /// The first start needs the one-time enrollment token (`proofrig labhost token
    /// NAME` on the server's side) in $PROOFRIG_ENROLL_TOKEN or --enroll-file.
    Run {
        /// The server, e.g. https://lab-server:8443.
        #[arg(long, env = "PROOFRIG_SERVER")]
        server: String,
        /// The SHA-256 fingerprint `proofrig serve` printed (pinned; required for https).
        #[arg(long, env = "PROOFRIG_FINGERPRINT")]
        fingerprint: Option<String>,
        /// The rig files this lab host serves (every *.yaml in it).
        #[arg(long, value_name = "DIR")]
        rigs: Option<PathBuf>,
        /// Its key, enrollment, fencing tokens, bundles and pending uploads.
        #[arg(long, default_value = "proofrig-labhost", value_name = "DIR")]
        state_dir: PathBuf,
        /// A file holding the one-time enrollment token (first start only).
        #[arg(long, value_name = "FILE")]
        enroll_file: Option<PathBuf>,
        /// The name to enroll under (the host name by default).
        #[arg(long)]
        name: Option<String>,
        /// Serve the simulated lab, started in this process (written to STATE_DIR/simlab/).
        #[arg(long)]
        simlab: bool,
    },
    /// Revoke a lab host (admin): its key is refused, its rigs go offline.
    Revoke {
        name: String,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Mint a lab host's one-time enrollment token; prints it, once.
    Token {
        /// The lab host's name.
        name: String,
        /// Valid this many minutes [default: 60; at most 10080, a week].
        #[arg(long)]
        minutes: Option<u32>,
        #[command(flatten)]
        connection: client::Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate and inspect rig files.
    Rig {
        #[command(subcommand)]
        command: RigCommand,
    },
    /// Run test plans on a rig and seal a signed evidence bundle.
    ///
    /// Exit status: 0 all PASS/SKIP, 1 any FAIL, 2 any ERROR/INFRA/ABORTED/INCONCLUSIVE,
    /// 3 bad usage or an invalid plan or rig.
    Run {
        /// Plan files.
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        /// The rig file.
        #[arg(long)]
        rig: PathBuf,
        /// Only this device of the rig.
        #[arg(long)]
        device: Option<String>,
        /// Where the bundle directory is created.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Override a plan parameter (NAME=VALUE; the value is read as YAML).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// The lab's signing key (default: $PROOFRIG_KEY, then ~/.config/proofrig/lab.key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// No per-step progress on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Test the rig's devices one after another instead of side by side (the
        /// default, where each device's cases run in order and a shared PDU or log
        /// server is taken in turns): for a bench whose devices share wiring the rig
        /// does not describe.
        #[arg(long)]
        one_device_at_a_time: bool,
    },
    /// Run the bundled plans against the simulated lab, seal and verify the bundles.
    #[cfg(feature = "simlab")]
    Demo {
        /// Where the bundles are written.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// No per-step progress on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Instead: start the lab service on loopback with the simulated lab enrolled,
        /// queue the library, print the dashboard's URL and logins, and keep serving.
        #[arg(long)]
        serve: bool,
        /// With --serve: where to listen (loopback only).
        #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
        listen: std::net::SocketAddr,
        /// With --serve: the server's and lab host's state.
        #[arg(long, default_value = "results/demo-service", requires = "serve")]
        state_dir: PathBuf,
    },
    /// Start the simulated lab standalone and write its rig file.
    #[cfg(feature = "simlab")]
    Sim {
        /// Where to write the rig file (secrets go to a `secrets/` folder beside it).
        #[arg(long, value_name = "FILE")]
        rig_out: PathBuf,
        /// Weak devices run telnet, FTP and HTTP on 23, 21 and 80, as a real device
        /// would (what no-unnecessary-services.yaml scans for), instead of on free high
        /// ports; the lab takes random 127.A.B.x addresses. Needs root.
        #[arg(long)]
        well_known_ports: bool,
    },
    /// List the test library: each case by clause, what it applies to and what it needs.
    ///
    /// Per case: the SCAS clause and test name, its title, the plan file, which devices
    /// it runs on (its `devices:` selector), and what it needs from the rig: channels
    /// (console, ssh, power), `${device.declared.KEY}` values, secrets and plan
    /// parameters. With --rig: per device, whether each case can run there, and what
    /// is missing where it cannot.
    ///
    /// Exit status: 0; 1 with --rig when a case cannot run on a device it applies to;
    /// 3 when a plan file (the others are still listed) or the rig is invalid.
    Catalogue {
        /// Plan files or directories of them [default: the library built into this
        /// proofrig from testplans/, the plans `demo` runs].
        paths: Vec<PathBuf>,
        /// Output: a table for people, or JSON for tools.
        #[arg(long, value_enum, default_value = "text")]
        format: catalogue::Format,
        /// Say per device of this rig whether each case can run there.
        #[arg(long)]
        rig: Option<PathBuf>,
    },
    /// Validate test plans.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Switch or query a device's power outlet.
    Power {
        /// The rig file.
        rig: PathBuf,
        /// The device whose outlet to switch.
        device: String,
        action: PowerAction,
        /// For `cycle`: how long to stay off, in milliseconds (default: the rig's cycle_off_ms).
        #[arg(long, value_name = "MS")]
        off_for_ms: Option<u64>,
    },
    /// Open a device's console interactively (Ctrl-] quits). The session is recorded.
    Console { rig: PathBuf, device: String },
    /// Run one command on a device over SSH, print its output, exit with its status.
    Ssh {
        rig: PathBuf,
        device: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
    /// Make the lab's signing key pair: NAME.key (private, 0600) and NAME.pub.
    Keygen {
        /// Directory for the key files (created if missing).
        #[arg(long, default_value = ".", value_name = "DIR")]
        out: PathBuf,
        /// Base name of the key files.
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Run the lab service's server (HTTPS) until Ctrl-C or SIGTERM.
    ///
    /// Prints its URL and the certificate's SHA-256 fingerprint (lab hosts and the CLI
    /// pin it). The first start in a state directory makes the self-signed
    /// certificate, the store and a user `admin` whose one-time API token is written
    /// to STATE_DIR/bootstrap-admin.token (mode 0600).
    Serve {
        /// Address and port to listen on (0.0.0.0:8443 to serve the lab's network).
        #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        /// The certificate, its key and (by default) the SQLite store live here.
        #[arg(long, default_value = "proofrig-server", value_name = "DIR")]
        state_dir: PathBuf,
        /// `postgres://user:password@host/db` for PostgreSQL, or a SQLite file;
        /// STATE_DIR/proofrig.db when absent.
        #[arg(long, value_name = "URL|FILE")]
        db: Option<String>,
        /// Serve HTTP without TLS: refused unless --listen is a loopback address.
        #[arg(long)]
        plain_http: bool,
    },
    /// Lab hosts: run the agent that serves this machine's rigs to a proofrig server,
    /// or (admin) mint a lab host's enrollment token.
    Labhost {
        #[command(subcommand)]
        command: LabhostCommand,
    },
    /// Seal a run that stopped without finishing (killed, crashed) as INCOMPLETE.
    ///
    /// Appends a journal record saying the run stopped and what did not run (the open
    /// case's restore steps), then writes the reports, manifest and signed statements.
    /// Refuses a bundle already sealed, a finished run, a journal whose chain or
    /// checkpoints do not hold, and changed inputs.
    ///
    /// Exit status: 2 sealed as incomplete, 1 refused, 3 bad usage (no bundle, no key).
    Seal {
        /// The run's bundle directory (results/<run-id>).
        run_dir: PathBuf,
        /// The lab's signing key, the one the run used (default: $PROOFRIG_KEY, then ~/.config/proofrig/lab.key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Check an evidence bundle offline: exit 0 verified, 1 tampered, 2 incomplete
    /// (never sealed, or sealed after it stopped).
    Verify {
        /// The bundle directory (results/<run-id>).
        bundle: PathBuf,
        /// The lab's public key (PEM). Without it the signer is shown but not trusted.
        #[arg(long, value_name = "PUBKEY.pem")]
        key: Option<PathBuf>,
        /// The lab server's receipt (default: <bundle>.receipt.json beside the bundle,
        /// as `proofrig fetch` saves it): its signature and the server's witness
        /// statements are checked against the bundle.
        #[arg(long, value_name = "FILE")]
        receipt: Option<PathBuf>,
        /// The lab server's public key (its state directory's server.pub) to pin the receipt's signer.
        #[arg(long, value_name = "PUBKEY.pem")]
        server_key: Option<PathBuf>,
    },
    /// Queue plans on the lab server, for one rig or any rig with these roles and tags.
    ///
    /// The server checks each plan as `plan check` does: a malformed one is refused at
    /// its file:line:column and nothing is queued (exit 3). Prints the job id and any
    /// warning (no rig matches now). Exit status: 0 queued, 1 refused or unreachable,
    /// 3 bad usage or an invalid plan.
    Submit {
        /// Plan files.
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        /// This rig and no other.
        #[arg(long, required_unless_present = "roles", conflicts_with_all = ["roles", "tags"])]
        rig: Option<String>,
        /// Any rig with a device of this role (repeat for several).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// ... and, across its devices, this tag (repeat for several).
        #[arg(long = "tag", value_name = "TAG", requires = "roles")]
        tags: Vec<String>,
        /// Only this device of the rig.
        #[arg(long)]
        device: Option<String>,
        /// 0 (lowest) to 100 (highest) [default: 50].
        #[arg(long)]
        priority: Option<u8>,
        /// Not before this time (RFC 3339: 2026-12-05T18:00:00Z, or with +HH:MM).
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// Override a plan parameter (NAME=VALUE; the value is read as YAML).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Recurring: submit this job on this cron schedule ("30 2 * * *": 02:30 daily)
        /// instead of once; with --tz.
        #[arg(long, value_name = "CRON", requires = "tz", conflicts_with = "at")]
        cron: Option<String>,
        /// The IANA time zone the --cron times are in (Europe/Berlin); daylight-saving
        /// changes fire each listed time once.
        #[arg(long, value_name = "ZONE", requires = "cron")]
        tz: Option<String>,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Run a job whose last attempt ended (done, lost, cancelled) again, as a new attempt
    /// linked to it (a tester their own, a technician any).
    Retry {
        job: u64,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Revoke the API token in use (PROOFRIG_TOKEN), e.g. one that may have leaked.
    Logout {
        #[command(flatten)]
        connection: client::Connection,
    },
    /// List the recurring runs on the lab server.
    Schedules {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Remove a recurring run (a tester their own, a technician any).
    Unschedule {
        id: u64,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Take a rig out of service (maintenance, retired, bad) or put it back (idle), saying why (technician).
    RigState {
        rig: String,
        /// maintenance, retired, bad, or idle to put it back in service.
        state: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Show, set (--plan, --every-minutes) or remove (--off) a rig's health check (technician).
    ///
    /// The check runs when due while the rig is idle, and before the next job after a
    /// job on it was lost or ended ERROR/INFRA/ABORTED. A check that is not PASS gets
    /// one repair (a power cycle of the rig's devices) and a second check; a second
    /// failure marks the rig bad until a technician puts it back (`rig-state RIG idle`).
    Health {
        rig: String,
        /// The health-check plan (e.g. log in on each console and run a command over SSH).
        #[arg(long, requires = "every_minutes", conflicts_with = "off")]
        plan: Option<PathBuf>,
        #[arg(long, value_name = "N")]
        every_minutes: Option<u32>,
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// List the lab server's jobs: state, priority, target, rig, run id, verdict, who submitted.
    Queue {
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Cancel a job on the lab server (a tester their own, a technician any).
    Cancel {
        job: u64,
        /// Why (kept with the job and in the audit log).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// List the lab server's rigs: lab host, state and why, roles and tags, who holds each.
    Rigs {
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Reserve a rig for manual work (technician); no job starts on it but yours.
    Reserve {
        rig: String,
        /// For this long [default: the server's, 60].
        #[arg(long)]
        minutes: Option<u32>,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Extend your reservation of a rig, up to the server's limit.
    Extend {
        rig: String,
        /// By this long from now.
        #[arg(long, required = true)]
        minutes: u32,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Release your reservation of a rig.
    Release {
        rig: String,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Download a stored run's bundle into DIR/RUN/ and verify it here.
    ///
    /// Every file is checked against the server's listing (length, SHA-256) as it is
    /// written; nothing half-written is left. The receipt goes to DIR/RUN.receipt.json.
    /// Exit status as `verify`: 0 verified, 1 tampered, refused or flagged, 2 incomplete;
    /// 3 bad usage.
    Fetch {
        /// The run id (`proofrig queue` shows it).
        run: String,
        /// Where the bundle directory is created.
        #[arg(long, default_value = "results", value_name = "DIR")]
        out: PathBuf,
        /// The lab host's public key (PEM), to pin its signer as `verify --key` does.
        #[arg(long, value_name = "PUBKEY.pem")]
        key: Option<PathBuf>,
        /// Admins: fetch a flagged bundle (one that did not verify on the server) to inspect it.
        #[arg(long)]
        flagged: bool,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// People on the lab server (admin).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Disable a person (admin): none of their tokens works any more; they stay on record.
    Disable {
        name: String,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Add a person with a role; prints their first API token, once.
    Add {
        name: String,
        /// technician, tester, manager or admin.
        #[arg(long)]
        role: String,
        /// Read a password (for the dashboard's login) from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Mint another API token for a person; prints it, once.
    Token {
        name: String,
        /// Valid this many days [default: 90; at most 365].
        #[arg(long)]
        days: Option<u32>,
        #[command(flatten)]
        connection: client::Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum RigCommand {
    /// Check a rig file: exit 0 if valid, 3 with a located error otherwise.
    Check {
        #[arg(required = true)]
        rigs: Vec<PathBuf>,
    },
    /// Reach every channel of every device and print a table; exit 1 if any is down.
    Probe {
        rig: PathBuf,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Per-channel time limit in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Check plan files: exit 0 if valid, 3 with every error located otherwise.
    Check {
        #[arg(required = true)]
        plans: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PowerAction {
    On,
    Off,
    Cycle,
    Status,
}

/// An error on its way out: the report to print and the exit code to give.
pub struct Failure {
    pub report: miette::Report,
    pub code: u8,
}

impl Failure {
    pub fn usage(report: impl Into<miette::Report>) -> Self {
        Self { report: report.into(), code: EXIT_USAGE }
    }
    pub fn failed(report: impl Into<miette::Report>) -> Self {
        Self { report: report.into(), code: EXIT_FAILED }
    }
}

/// Wrap a library error for printing at the edge.
pub fn report<E: std::error::Error + Send + Sync + 'static>(err: E) -> miette::Report {
    miette::Report::msg(err.to_string())
}

impl From<proofrig_model::rig::RigError> for Failure {
    fn from(err: proofrig_model::rig::RigError) -> Self {
        Failure::usage(err)
    }
}

pub async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Rig { command: RigCommand::Check { rigs } } => rig::check(&rigs),
        Command::Rig { command: RigCommand::Probe { rig, device, timeout_ms } } => {
            probe::probe(&rig, device.as_deref(), timeout_ms, &cli.transcripts).await
        }
        Command::Plan { command: PlanCommand::Check { plans } } => plan::check(&plans),
        Command::Catalogue { paths, format, rig } => catalogue::catalogue(&paths, format, rig.as_deref()),
        Command::Run { plans, rig, device, out, params, key, quiet, one_device_at_a_time } => {
            let key = run::load_key(key.as_deref())?;
            let params = run::parse_params(&params)?;
            let (plans, rig) = run::load_inputs(&plans, &rig)?;
            let setup = run::RunSetup { plans, rig, only_device: device, params, out_dir: out, key, job: None, one_device_at_a_time };
            let sealed = run::run_and_seal(setup, "run", &mut crate::progress::Terminal { quiet }).await?;
            print!("{}", run::verdict_table(&sealed.result));
            println!("bundle: {}", sealed.dir.display());
            println!("verify: proofrig verify {} --key <the lab's public key>", sealed.dir.display());
            Ok(exit::of_run(&sealed.result.rollup))
        }
        #[cfg(feature = "simlab")]
        Command::Demo { serve: true, listen, state_dir, .. } => {
            demo_serve::demo_serve(demo_serve::DemoServeArgs { listen, state_dir }).await
        }
        Command::Demo { out, quiet, .. } => demo::demo(&out, quiet).await,
        #[cfg(feature = "simlab")]
        Command::Sim { rig_out, well_known_ports } => sim::sim(&rig_out, well_known_ports).await,
        Command::Power { rig, device, action, off_for_ms } => power::power(&rig, &device, action, off_for_ms, &cli.transcripts).await,
        Command::Console { rig, device } => console::console(&rig, &device, &cli.transcripts).await,
        Command::Ssh { rig, device, command, timeout_s } => ssh::ssh(&rig, &device, &command, timeout_s, &cli.transcripts).await,
        Command::Keygen { out, name } => keygen::keygen(&out, &name),
        Command::Serve { listen, state_dir, db, plain_http } => serve::serve(serve::ServeArgs { listen, state_dir, db, plain_http }).await,
        Command::Labhost { command: LabhostCommand::Run { server, fingerprint, rigs, state_dir, enroll_file, name, simlab } } => {
            labhost::run(labhost::LabHostArgs { server, fingerprint, rigs, state_dir, enroll_file, name, simlab }).await
        }
        Command::Seal { run_dir, key } => seal::seal(&run_dir, key.as_deref()),
        Command::Verify { bundle, key, receipt, server_key } => {
            verify::verify(&bundle, key.as_deref(), receipt.as_deref(), server_key.as_deref())
        }
        Command::Submit { plans, rig, roles, tags, device, priority, at, params, cron, tz, connection } => {
            let cron = cron.zip(tz);
            submit::submit(submit::SubmitArgs { plans, rig, roles, tags, device, priority, at, params, cron, connection }).await
        }
        Command::Retry { job, connection } => cancel::retry(job, &connection).await,
        Command::Logout { connection } => revoke::logout(&connection).await,
        Command::User { command: UserCommand::Disable { name, connection } } => revoke::disable_user(&name, &connection).await,
        Command::Labhost { command: LabhostCommand::Revoke { name, connection } } => revoke::revoke_labhost(&name, &connection).await,
        Command::Schedules { json, connection } => care::schedules(json, &connection).await,
        Command::Unschedule { id, connection } => care::unschedule(id, &connection).await,
        Command::RigState { rig, state, reason, connection } => care::rig_state(&rig, &state, &reason, &connection).await,
        Command::Health { rig, plan, every_minutes, off, connection } => {
            let action = match (plan.as_deref(), every_minutes, off) {
                (_, _, true) => care::HealthAction::Off,
                (Some(plan), Some(every_minutes), _) => care::HealthAction::Set { plan, every_minutes },
                _ => care::HealthAction::Show,
            };
            care::health(&rig, action, &connection).await
        }
        Command::Queue { json, connection } => queue::queue(json, &connection).await,
        Command::Cancel { job, reason, connection } => cancel::cancel(job, reason, &connection).await,
        Command::Rigs { json, connection } => rigs::rigs(json, &connection).await,
        Command::Reserve { rig, minutes, connection } => reservation::hold(reservation::Hold::Reserve, &rig, minutes, &connection).await,
        Command::Extend { rig, minutes, connection } => {
            reservation::hold(reservation::Hold::Extend, &rig, Some(minutes), &connection).await
        }
        Command::Release { rig, connection } => reservation::hold(reservation::Hold::Release, &rig, None, &connection).await,
        Command::Fetch { run, out, key, flagged, connection } => {
            fetch::fetch(fetch::FetchArgs { run, out, key, flagged, connection }).await
        }
        Command::User { command: UserCommand::Add { name, role, password_stdin, connection } } => {
            user::add(&name, &role, password_stdin, &connection).await
        }
        Command::User { command: UserCommand::Token { name, days, connection } } => user::token(&name, days, &connection).await,
        Command::Labhost { command: LabhostCommand::Token { name, minutes, connection } } => {
            enrollment::token(&name, minutes, &connection).await
        }
    }
}
