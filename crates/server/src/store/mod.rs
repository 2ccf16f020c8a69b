//! The server's store: the queue, the rigs and their lab hosts, the leases with
//! their fencing tokens, the reservations and the audit log, in SQLite or PostgreSQL
//! behind one async API.
//!
//! What the anchors lost, this keeps: a job claimed twice by two pollers (KernelCI's
//! pull lab), a rig left "Reserved" after a cancel raced a claim (LAVA d54b70c07),
//! locks that never expired and reservations lost on a coordinator restart (labgrid
//! #1739, #947), "database is locked" under heartbeats (mostro #954). So:
//!
//! - **Every operation is one transaction**, and every state change in it writes its
//!   audit record ([`AuditRecord`]: who, what, when, from where) in that same
//!   transaction: there is no change without its record, nor a record of a change
//!   that did not happen. The audit log and each rig's state history are
//!   append-only (the database refuses an update or delete).
//! - **A claim is exactly-once.** It reads the queued jobs and the rigs that can take
//!   them, runs the pure [`crate::scheduler::schedule`] on that snapshot, and takes
//!   each pick in the same transaction with a fresh fencing token. On SQLite the one
//!   writer connection and `BEGIN IMMEDIATE` exclude every other writer; on
//!   PostgreSQL (several server replicas) the claim locks what it read with
//!   `FOR UPDATE SKIP LOCKED`, so two replicas schedule disjoint jobs and rigs, and a
//!   transaction PostgreSQL aborts (serialization failure, deadlock) runs again.
//! - **Fencing tokens come from one sequence** in the database: they only grow, also
//!   across restarts, and the newest issued for each rig is kept, so a renewal (or,
//!   on the lab host, a power action) under an older one is refused as stale.
//! - **A rig's state follows its leases.** A rig runs while a job lease holds it, is
//!   reserved while a reservation does, and is idle otherwise (unless a person or a
//!   health check took it out of service: maintenance, bad, offline, retired). Every
//!   operation that adds or ends a lease settles the rig in the same transaction, so
//!   no rig is left running or reserved without a live job or reservation.
//! - **Leases end on their own.** [`Store::reap`] ends a job whose lab host stopped
//!   renewing its lease (INFRA-lost once [`proofrig_proto::timing::JOB_LOST_AFTER`]
//!   passed since the last renewal; its rig stays held until then, as the lab host
//!   may still be running the restore steps of the run it aborted), releases expired
//!   reservations, and marks lab hosts silent for
//!   [`proofrig_proto::timing::LABHOST_OFFLINE_AFTER`] offline.
//! - **No clock inside.** Each call takes `now` ([`Ctx`]), so tests state time, and
//!   the store never disagrees with the server about it.
//! - **No secret is stored.** Rigs are kept as the summaries their lab hosts
//!   advertised (rig files hold secret references only, and the server keeps their
//!   digest, not their bytes); plans are stored byte for byte, as submitted.
//!
//! The operations are written once (`jobs.rs`, `rigs.rs`, `leases.rs`, `schedules.rs`, `audit.rs`)
//! against a transaction of either backend (`db.rs`); `sqlite.rs` and `postgres.rs`
//! open the databases and migrate their schemas (`migrations/`).

mod audit;
pub mod bench;
mod db;
pub mod health;
mod jobs;
mod leases;
mod people;
mod postgres;
mod rigs;
mod schedules;
mod sqlite;
pub mod web;

use std::path::Path;
use std::time::Duration;

use proofrig_proto::advert::RigSummary;
use proofrig_proto::api::{
    HealthView, JobState, JobView, NewSchedule, ReservationView, RigState, RigView, ScheduleView, SubmitJob, Submitted, UserView,
};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId, UnixMillis};
use proofrig_proto::labhost::{Assignment, AssignmentRefused, HeartbeatAnswer, Lease, Uploaded};

pub use db::Backend;
use db::Pools;
pub use people::{EnrollRefused, NewUserRecord, TokenCheck};

/// Who acts, from where, and when (the server's clock): every operation takes one,
/// and its audit records say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// A user name, a lab host id, or `server` for the server's own passes.
    pub who: String,
    /// Where the request came from (the peer's address), or `server`.
    pub origin: String,
    pub now: UnixMillis,
}

impl Ctx {
    pub fn new(who: impl Into<String>, origin: impl Into<String>, now: UnixMillis) -> Ctx {
        Ctx { who: who.into(), origin: origin.into(), now }
    }

    /// The server itself (its scheduler and reaper passes).
    pub fn server(now: UnixMillis) -> Ctx {
        Ctx::new("server", "server", now)
    }
}

/// How a store behaves; [`StoreConfig::default`] suits one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The longest a reservation may run from now: at reservation, and at each
    /// extension. Eight hours, a working day: a technician who forgets a rig loses
    /// it by the next morning (labgrid's locks never expired, #1739).
    pub reservation_max: Duration,
    /// SQLite: how long a write waits for another process's writer before failing.
    /// In one server process writes queue for the one writer connection and never wait
    /// here; this covers a second process (a backup, an admin's sqlite3 shell).
    pub busy_timeout: Duration,
    /// PostgreSQL: connections in this replica's pool.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { reservation_max: Duration::from_secs(8 * 3600), busy_timeout: Duration::from_secs(30), max_connections: 8 }
    }
}

/// A store on SQLite or PostgreSQL; cheap to share (`&Store` across tasks).
pub struct Store {
    pools: Pools,
    config: StoreConfig,
}

/// Everything a store refuses or fails with. Refusals ([`StoreError::NotFound`],
/// [`StoreError::Conflict`], [`StoreError::Invalid`], [`StoreError::Lease`]) changed
/// nothing stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store ({backend}): cannot open {target}: {source}; check the path or URL, that the database server runs, and the credentials"
    )]
    Open { backend: &'static str, target: String, source: sqlx::Error },
    #[error("store ({backend}): migrating the schema of {target} failed: {source}; the database was left at its last complete migration: fix the cause (a newer proofrig wrote it? restore the backup) and start again")]
    Migrate { backend: &'static str, target: String, source: sqlx::migrate::MigrateError },
    #[error("store ({backend}): {doing} failed in the database: {source}; nothing was changed: check the database (reachable, disk not full) and retry")]
    Database { backend: &'static str, doing: &'static str, source: sqlx::Error },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Lease(#[from] LeaseRefused),
    #[error("store: {0}; the stored data breaks the store's own rules: this is a bug in proofrig, report it with the audit log")]
    Corrupt(String),
}

impl StoreError {
    fn doing(self, what: &'static str) -> StoreError {
        match self {
            StoreError::Database { backend, doing: "", source } => StoreError::Database { backend, doing: what, source },
            other => other,
        }
    }
}

/// Why an action under a fencing token is refused: the lease it names no longer
/// holds the rig for the one presenting it. The holder stops acting on the rig.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRefused {
    #[error("rig {rig}: {presented} is stale, {newest} was issued since; the lease passed to another holder, so stop acting on the rig")]
    Stale { rig: String, presented: FencingToken, newest: FencingToken },
    #[error("rig {rig}: the lease of {presented} ended ({how}); stop acting on the rig under it")]
    Ended { rig: String, presented: FencingToken, how: String },
    #[error("rig {rig}: the lease of {presented} lapsed at {} ms, nothing renewed it in time; stop acting on the rig (a job is aborted and its bundle uploaded)", expired_at.0)]
    Lapsed { rig: String, presented: FencingToken, expired_at: UnixMillis },
    #[error("rig {rig}: the lease of {presented} is held by {holder}, not {presenter}")]
    NotHolder { rig: String, presented: FencingToken, holder: String, presenter: String },
    #[error("{presented} was never issued by this server; check which server the lab host talks to")]
    Unknown { presented: FencingToken },
}

/// A job placed on a rig by [`Store::claim`]: its lab host is to be sent the
/// [`Assignment`] ([`Store::assignment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub job: JobId,
    pub attempt: Attempt,
    pub retry_of: Option<Attempt>,
    pub rig: String,
    pub labhost: LabHostId,
    pub fencing: FencingToken,
    pub lease: Lease,
}

/// A job's attempt as stored: the API's view, and what only the store knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub view: JobView,
    /// Why it is in its state (`submitted`, `cancelled by tess: ...`, `INFRA: ...`).
    pub reason: String,
    pub fencing: Option<FencingToken>,
}

/// What one [`Store::reap`] pass ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Jobs whose lab host stopped renewing their lease: now lost, their rigs freed.
    pub lost: Vec<(JobId, Attempt, String)>,
    /// Reservations past their end: released.
    pub expired: Vec<ReservationView>,
    /// Lab hosts silent for too long: now offline.
    pub offline: Vec<LabHostId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    Job,
    Reservation,
}

/// A live lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub fencing: FencingToken,
    pub kind: LeaseKind,
    pub rig: String,
    /// The lab host running the job, or the person holding the reservation.
    pub holder: String,
    pub job: Option<(JobId, Attempt)>,
    pub granted_at: UnixMillis,
    pub renewed_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: u64,
    pub at: UnixMillis,
    pub who: String,
    pub origin: String,
    /// `job.submit`, `job.assign`, `rig.state`, `reservation.start`, ...
    pub action: String,
    /// What it acted on: `job 3`, `rig bench-3`, `lab host lab-a`.
    pub subject: String,
    pub details: serde_json::Value,
}

/// One entry of a rig's state history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RigStateChange {
    pub state: RigState,
    pub reason: String,
    pub at: UnixMillis,
    pub by: String,
}

/// A lab host as enrolled (its id, name and pinned public key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLabHost {
    pub id: LabHostId,
    pub name: String,
    pub public_key_pem: String,
}

/// How often a transaction PostgreSQL aborted (serialization failure, deadlock) is
/// run again before the error reaches the caller.
const MAX_RETRIES: u32 = 8;

/// Runs `$body` (an expression using `$tx: &mut Tx`) in a write transaction, commits
/// it, and runs it again when PostgreSQL aborted it for a concurrent one.
macro_rules! in_write_tx {
    ($store:expr, $doing:expr, |$tx:ident| $body:expr) => {{
        let mut tries = 0u32;
        loop {
            let mut txn = $store.pools.begin_write().await.map_err(|e| e.doing($doing))?;
            let result = {
                let $tx = &mut txn;
                $body.await
            };
            let result = match result {
                Ok(value) => txn.commit().await.map(|()| value),
                Err(e) => {
                    txn.rollback().await;
                    Err(e)
                }
            };
            match result {
                Err(e) if db::retryable(&e) && tries < MAX_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(u64::from(tries) * 3)).await;
                }
                other => break other.map_err(|e| e.doing($doing)),
            }
        }
    }};
}

/// Runs `$body` in a read-only transaction (one consistent snapshot).
macro_rules! in_read_tx {
    ($store:expr, $doing:expr, |$tx:ident| $body:expr) => {{
        let mut txn = $store.pools.begin_read().await.map_err(|e| e.doing($doing))?;
        let result = {
            let $tx = &mut txn;
            $body.await
        };
        txn.rollback().await;
        result.map_err(|e| e.doing($doing))
    }};
}

impl Store {
    /// Open (creating and migrating it when needed) the SQLite store at `path`.
    pub async fn open_sqlite(path: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let pools = sqlite::open(path, &config).await?;
        Ok(Store { pools, config })
    }

    /// Open (migrating it when needed) the PostgreSQL store at `url`
    /// (`postgres://user:password@host:port/database`). Replicas may open the same
    /// database at once: migrations take a lock.
    pub async fn open_postgres(url: &str, config: StoreConfig) -> Result<Store, StoreError> {
        let pools = postgres::open(url, &config).await?;
        Ok(Store { pools, config })
    }

    /// `postgres://...` or `postgresql://...` opens PostgreSQL; anything else is the
    /// path of a SQLite file (`sqlite:` prefix allowed).
    pub async fn open(db: &str, config: StoreConfig) -> Result<Store, StoreError> {
        match db {
            _ if db.starts_with("postgres://") || db.starts_with("postgresql://") => Store::open_postgres(db, config).await,
            _ => Store::open_sqlite(Path::new(db.strip_prefix("sqlite:").unwrap_or(db)), config).await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.pools.backend()
    }

    /// Close every connection (waits for those in use).
    pub async fn close(self) {
        self.pools.close().await;
    }

    // ---- lab hosts and rigs ----------------------------------------------------

    /// Record a lab host as enrolled. (Consuming the one-time token is the API's.)
    pub async fn enroll_labhost(&self, host: &NewLabHost, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "enrolling a lab host", |tx| rigs::enroll(tx, host, ctx))
    }

    /// The complete set of rigs a lab host serves now (checked adverts). New rigs
    /// start idle; rigs it no longer lists go offline; listed rigs it had withdrawn
    /// come back.
    pub async fn advertise(&self, labhost: &LabHostId, rigs: &[RigSummary], ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "storing a lab host's rigs", |tx| rigs::advertise(tx, labhost, rigs, ctx))
    }

    /// A lab host's heartbeat: it is online, and renews the leases it names.
    pub async fn heartbeat(&self, labhost: &LabHostId, leases: &[FencingToken], ctx: &Ctx) -> Result<HeartbeatAnswer, StoreError> {
        in_write_tx!(self, "recording a heartbeat", |tx| leases::heartbeat(tx, labhost, leases, ctx))
    }

    /// A person (or a health check) puts a rig in `state`, saying why. `Idle` puts it
    /// back in service (running or reserved if a lease holds it); `Reserved` and
    /// `Running` come only from [`Store::reserve`] and [`Store::claim`]. Returns the
    /// state the rig is in afterwards.
    pub async fn set_rig_state(&self, rig: &str, state: RigState, reason: &str, ctx: &Ctx) -> Result<RigState, StoreError> {
        in_write_tx!(self, "changing a rig's state", |tx| rigs::set_state_by_request(tx, rig, state, reason, ctx))
    }

    // ---- the queue -------------------------------------------------------------

    /// Queue a job (its first attempt). The answer warns when no rig could run it
    /// now or ever; it is queued all the same.
    pub async fn submit(&self, job: &SubmitJob, ctx: &Ctx) -> Result<Submitted, StoreError> {
        in_write_tx!(self, "submitting a job", |tx| jobs::submit(tx, job, ctx))
    }

    /// Cancel a job's latest attempt: a queued one never runs; an assigned one loses its
    /// lease and its rig is freed; a running one's lease is never renewed again (its lab
    /// host hears it lapsed and aborts the run) and holds the rig until the lab host
    /// stops the run (its end, its bundle, a heartbeat no longer naming it) or the
    /// reaper frees it. Returns the state it was in.
    pub async fn cancel(&self, job: JobId, reason: &str, ctx: &Ctx) -> Result<JobState, StoreError> {
        in_write_tx!(self, "cancelling a job", |tx| jobs::cancel(tx, job, reason, ctx))
    }

    /// One scheduling pass: place queued jobs on free rigs, each under a new job lease
    /// and fencing token.
    pub async fn claim(&self, ctx: &Ctx) -> Result<Vec<Claimed>, StoreError> {
        in_write_tx!(self, "claiming jobs", |tx| jobs::claim(tx, ctx))
    }

    /// The lab host started an assigned job as run `run_id`.
    pub async fn job_started(
        &self,
        job: JobId,
        attempt: Attempt,
        fencing: FencingToken,
        run_id: &str,
        ctx: &Ctx,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, "recording a job's start", |tx| jobs::started(tx, (job, attempt, fencing), run_id, ctx))
    }

    /// The lab host ended a job (its bundle is to be uploaded): the lease ends and the
    /// rig is freed. Resent, it changes nothing. Returns the attempt's state.
    pub async fn job_ended(&self, job: JobId, attempt: Attempt, fencing: FencingToken, ctx: &Ctx) -> Result<JobState, StoreError> {
        in_write_tx!(self, "recording a job's end", |tx| jobs::ended(tx, (job, attempt, fencing), ctx))
    }

    /// Queue a new attempt of a job whose latest attempt ended (done, lost or
    /// cancelled), linked to it; both are kept.
    pub async fn retry(&self, job: JobId, ctx: &Ctx) -> Result<Attempt, StoreError> {
        in_write_tx!(self, "retrying a job", |tx| jobs::retry(tx, job, ctx))
    }

    // ---- recurring runs ----------------------------------------------------------

    /// Add a schedule for `ctx.who`: its job is checked as [`Store::submit`] checks
    /// one, its cron expression and time zone as [`crate::recurring::Recurrence`]
    /// does; it is first due at the next time the expression fires after now.
    pub async fn add_schedule(&self, schedule: &NewSchedule, ctx: &Ctx) -> Result<ScheduleView, StoreError> {
        in_write_tx!(self, "adding a schedule", |tx| schedules::add(tx, schedule, ctx))
    }

    /// The schedules in force, oldest first.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>, StoreError> {
        in_read_tx!(self, "listing schedules", |tx| schedules::list(tx))
    }

    /// One schedule in force.
    pub async fn schedule(&self, id: u64) -> Result<ScheduleView, StoreError> {
        in_read_tx!(self, "reading a schedule", |tx| schedules::get(tx, id))
    }

    /// Remove a schedule: it submits nothing more; the jobs it made stay. (Who may
    /// remove whose is the API's to check.)
    pub async fn remove_schedule(&self, id: u64, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "removing a schedule", |tx| schedules::remove(tx, id, ctx))
    }

    /// The server's pass over the schedules: each one due at `ctx.now` submits one
    /// job (however many due times passed while the server was down) and is next due
    /// at the first time after now. Exactly once across replicas. Returns the jobs
    /// submitted, in the order their schedules were due.
    pub async fn fire_due(&self, ctx: &Ctx) -> Result<Vec<JobId>, StoreError> {
        in_write_tx!(self, "firing due schedules", |tx| schedules::fire_due(tx, ctx))
    }

    // ---- leases and reservations -----------------------------------------------

    /// Renew the lease named by `fencing` for `holder` (a job's lab host, or a
    /// reservation's holder or its rig's lab host). A job lease runs
    /// [`proofrig_proto::timing::JOB_LEASE`] from now; a reservation keeps its end
    /// (only [`Store::extend`] moves it). Refused, changing nothing, when the token is
    /// stale, its lease ended or lapsed, or `holder` does not hold it.
    pub async fn renew(&self, holder: &str, fencing: FencingToken, ctx: &Ctx) -> Result<Lease, StoreError> {
        in_write_tx!(self, "renewing a lease", |tx| leases::renew(tx, holder, fencing, ctx))
    }

    /// End what ran out: lost jobs, expired reservations, silent lab hosts.
    pub async fn reap(&self, ctx: &Ctx) -> Result<Reaped, StoreError> {
        in_write_tx!(self, "reaping lapsed leases", |tx| leases::reap(tx, ctx))
    }

    /// Reserve an idle rig for `ctx.who`, for `length` (the default reservation when
    /// `None`; at most [`StoreConfig::reservation_max`]). On a rig the caller already
    /// holds, extends it instead.
    pub async fn reserve(&self, rig: &str, length: Option<Duration>, ctx: &Ctx) -> Result<ReservationView, StoreError> {
        in_write_tx!(self, "reserving a rig", |tx| leases::reserve(tx, rig, length, self.config.reservation_max, ctx))
    }

    /// Move the end of the caller's reservation to `length` from now (at most
    /// [`StoreConfig::reservation_max`]).
    pub async fn extend(&self, rig: &str, length: Duration, ctx: &Ctx) -> Result<ReservationView, StoreError> {
        in_write_tx!(self, "extending a reservation", |tx| leases::extend(tx, rig, length, self.config.reservation_max, ctx))
    }

    /// End the caller's reservation of a rig.
    pub async fn release(&self, rig: &str, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "releasing a reservation", |tx| leases::release(tx, rig, ctx))
    }

    // ---- people and enrollment ---------------------------------------------------

    /// Add a user with their first API token (its SHA-256).
    pub async fn add_user(&self, user: &NewUserRecord, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "adding a user", |tx| people::add_user(tx, user, ctx))
    }

    /// The first start's bootstrap: add `user` (an admin) only if the store has no user
    /// yet, in one transaction. `Ok(false)`: there were users already, nothing changed.
    pub async fn bootstrap_admin(&self, user: &NewUserRecord, ctx: &Ctx) -> Result<bool, StoreError> {
        in_write_tx!(self, "adding the first admin", |tx| async {
            match people::count_users(tx).await? {
                0 => people::add_user(tx, user, ctx).await.map(|()| true),
                _ => Ok(false),
            }
        })
    }

    /// Another API token (its SHA-256) for an existing user.
    pub async fn add_token(&self, user: &str, sha256: &str, expires_at: UnixMillis, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "adding an API token", |tx| people::add_token(tx, user, sha256, expires_at, ctx))
    }

    /// Whose token has this SHA-256, and whether it still works at `now`.
    pub async fn check_token(&self, sha256: &str, now: UnixMillis) -> Result<TokenCheck, StoreError> {
        in_read_tx!(self, "checking an API token", |tx| people::check_token(tx, sha256, now))
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserView>, StoreError> {
        in_read_tx!(self, "listing users", |tx| people::list_users(tx))
    }

    /// A one-time enrollment token (its SHA-256) for the lab host `labhost`.
    pub async fn add_enrollment(&self, labhost: &str, sha256: &str, expires_at: UnixMillis, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "minting an enrollment token", |tx| people::add_enrollment(tx, labhost, sha256, expires_at, ctx))
    }

    /// Enroll a lab host with a one-time token (its SHA-256) and the key it will sign
    /// with: see [`EnrollRefused`] for the refusals, which change nothing.
    pub async fn take_enrollment(
        &self,
        sha256: &str,
        public_key_pem: &str,
        ctx: &Ctx,
    ) -> Result<Result<LabHostId, EnrollRefused>, StoreError> {
        in_write_tx!(self, "enrolling a lab host", |tx| people::take_enrollment(tx, sha256, public_key_pem, ctx))
    }

    /// Disable a user (admin): all their tokens stop working; they stay on record.
    pub async fn disable_user(&self, user: &str, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "disabling a user", |tx| people::disable_user(tx, user, ctx))
    }

    /// Revoke one API token (its SHA-256).
    pub async fn revoke_token(&self, sha256: &str, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "revoking a token", |tx| people::revoke_token(tx, sha256, ctx))
    }

    /// Revoke a lab host: its key is refused from now on, its rigs go offline.
    pub async fn revoke_labhost(&self, labhost: &LabHostId, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "revoking a lab host", |tx| people::revoke_labhost(tx, labhost, ctx))
    }

    // ---- dashboard sessions ----------------------------------------------------------

    /// What a login by `user` checks (`None`: no such user).
    pub async fn login(&self, user: &str) -> Result<Option<web::Login>, StoreError> {
        in_read_tx!(self, "reading a login", |tx| web::login(tx, user))
    }

    /// Start a dashboard session (the SHA-256 of its cookie) for `user`.
    pub async fn start_session(&self, sha256: &str, user: &str, csrf: &str, expires_at: UnixMillis, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "starting a session", |tx| web::start(tx, sha256, user, csrf, expires_at, ctx))
    }

    /// The live session whose cookie has this SHA-256, if any.
    pub async fn session(&self, sha256: &str, now: UnixMillis) -> Result<Option<web::Session>, StoreError> {
        in_read_tx!(self, "checking a session", |tx| web::check(tx, sha256, now))
    }

    /// Record an event that changes nothing else in the store (a review signed and kept
    /// beside a bundle), with who, when and from where.
    pub async fn note(&self, action: &str, subject: &str, details: serde_json::Value, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "recording an event", |tx| audit::record(tx, ctx, action, subject, details.clone()))
    }

    /// Record a refused login.
    pub async fn audit_refused_login(&self, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "recording a refused login", |tx| web::refused(tx, ctx))
    }

    /// End a session (logout).
    pub async fn end_session(&self, sha256: &str, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "ending a session", |tx| web::end(tx, sha256, ctx))
    }

    // ---- a lab host's session ------------------------------------------------------

    /// A lab host refused an assignment: a plan it cannot run ends the job; a rig it
    /// cannot run it on ends the attempt as lost and queues a new one (up to three).
    pub async fn assignment_refused(&self, refusal: &AssignmentRefused, labhost: &LabHostId, ctx: &Ctx) -> Result<JobState, StoreError> {
        let ids = (refusal.job, refusal.attempt, refusal.fencing);
        in_write_tx!(self, "recording a refused assignment", |tx| jobs::refused(tx, ids, refusal, labhost, ctx))
    }

    /// An attempt's bundle arrived and was verified (or flagged): record it, and end
    /// the attempt if its end had not reached the server.
    pub async fn uploaded(&self, uploaded: &Uploaded, ctx: &Ctx) -> Result<JobState, StoreError> {
        let Uploaded { job, attempt, run_id, check } = uploaded;
        in_write_tx!(self, "recording an uploaded bundle", |tx| jobs::uploaded(tx, *job, *attempt, run_id, check, ctx))
    }

    /// Keep what a verified run's results say with its attempt: its devices and how
    /// long it ran (shown in the lists; no audit record: it changes no state).
    pub async fn run_facts(
        &self,
        job: JobId,
        attempt: Attempt,
        devices: &[proofrig_proto::api::DeviceView],
        run_ms: u64,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, "keeping a run's facts", |tx| jobs::run_facts(tx, job, attempt, devices, run_ms))
    }

    /// The assignments `labhost` has not answered yet.
    pub async fn unanswered(&self, labhost: &LabHostId) -> Result<Vec<(JobId, Attempt)>, StoreError> {
        in_read_tx!(self, "reading a lab host's assignments", |tx| jobs::unanswered(tx, labhost))
    }

    /// The lab host an attempt was assigned to, and under which fencing token.
    pub async fn assigned_to(&self, job: JobId, attempt: Attempt) -> Result<Option<(LabHostId, FencingToken)>, StoreError> {
        in_read_tx!(self, "reading an attempt's lab host", |tx| jobs::assigned_to(tx, job, attempt))
    }

    /// The key a lab host enrolled with (SPKI PEM), if it is enrolled.
    pub async fn labhost_key(&self, labhost: &LabHostId) -> Result<Option<String>, StoreError> {
        in_read_tx!(self, "reading a lab host's key", |tx| rigs::labhost_key(tx, labhost))
    }

    // ---- bench operations ------------------------------------------------------------

    /// Ask `rig`'s lab host for `action` on `device`, as `ctx.who`, who must hold the
    /// rig's live reservation (refused and audited otherwise).
    pub async fn bench_request(
        &self,
        rig: &str,
        device: &str,
        action: proofrig_proto::labhost::BenchAction,
        ctx: &Ctx,
    ) -> Result<bench::BenchOpRecord, StoreError> {
        in_write_tx!(self, "requesting a bench operation", |tx| bench::request(tx, rig, device, action, ctx))?.map_err(StoreError::Conflict)
    }

    /// One bench operation.
    pub async fn bench_op(&self, op: u64) -> Result<Option<bench::BenchOpRecord>, StoreError> {
        in_read_tx!(self, "reading a bench operation", |tx| bench::get(tx, op))
    }

    /// The bench operations `labhost` is to be sent.
    pub async fn bench_unanswered(&self, labhost: &LabHostId, now: UnixMillis) -> Result<Vec<bench::BenchOpRecord>, StoreError> {
        in_read_tx!(self, "reading a lab host's bench operations", |tx| bench::unanswered(tx, labhost, now))
    }

    /// A lab host's answer to a bench operation.
    pub async fn bench_answer(
        &self,
        labhost: &LabHostId,
        answer: &proofrig_proto::labhost::BenchOpAnswer,
        ctx: &Ctx,
    ) -> Result<bench::BenchOpRecord, StoreError> {
        in_write_tx!(self, "recording a bench operation's answer", |tx| bench::answer(tx, labhost, answer, ctx))
    }

    /// Close an unanswered bench operation as expired; `false` if it was answered.
    pub async fn bench_expire(&self, op: u64, ctx: &Ctx) -> Result<bool, StoreError> {
        in_write_tx!(self, "expiring a bench operation", |tx| bench::expire(tx, op, ctx))
    }

    /// Record the end of a console session.
    pub async fn bench_close(&self, op: u64, reason: &str, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "closing a console session", |tx| bench::close(tx, op, reason, ctx))
    }

    /// The newest bench operations on `rig`, newest first.
    pub async fn bench_recent(&self, rig: &str, limit: u32) -> Result<Vec<bench::BenchOpRecord>, StoreError> {
        in_read_tx!(self, "reading a rig's bench operations", |tx| bench::recent(tx, rig, limit))
    }

    /// Why `holder` no longer holds `rig` under `fencing` at `now`, or `None` if they do.
    pub async fn bench_lease_lost(
        &self,
        rig: &str,
        holder: &str,
        fencing: FencingToken,
        now: UnixMillis,
    ) -> Result<Option<String>, StoreError> {
        in_read_tx!(self, "checking a reservation", |tx| bench::holds(tx, rig, holder, fencing, now))
    }

    // ---- rig health ---------------------------------------------------------------

    /// Give `rig` a health-check plan run every `every` (and at once); replaces one it had.
    pub async fn set_health(&self, rig: &str, plan: &PlanFile, every: Duration, ctx: &Ctx) -> Result<HealthView, StoreError> {
        in_write_tx!(self, "setting a rig's health check", |tx| health::set(tx, rig, plan, every, ctx))
    }

    /// Stop checking `rig`'s health.
    pub async fn clear_health(&self, rig: &str, ctx: &Ctx) -> Result<(), StoreError> {
        in_write_tx!(self, "removing a rig's health check", |tx| health::clear(tx, rig, ctx))
    }

    /// `rig`'s health check, if it has one.
    pub async fn health(&self, rig: &str) -> Result<Option<HealthView>, StoreError> {
        in_read_tx!(self, "reading a rig's health check", |tx| health::get(tx, rig))
    }

    /// Move every rig's health check along: queue due checks, repairs after failed
    /// ones, checks after repairs; mark a rig bad that failed after its repair.
    pub async fn health_step(&self, ctx: &Ctx) -> Result<Vec<health::HealthMove>, StoreError> {
        in_write_tx!(self, "moving rigs' health checks", |tx| health::step(tx, ctx))
    }

    // ---- reading -----------------------------------------------------------------

    /// Every attempt of every job, in queue order.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        in_read_tx!(self, "listing jobs", |tx| jobs::list(tx, None))
    }

    /// Every attempt of one job.
    pub async fn job(&self, job: JobId) -> Result<Vec<JobRecord>, StoreError> {
        in_read_tx!(self, "reading a job", |tx| jobs::list(tx, Some(job)))
    }

    /// What the lab host of a claimed job is sent at `now`: plans (exact bytes),
    /// parameters, the rig's digest, the lease (valid for what is left of it).
    pub async fn assignment(&self, job: JobId, attempt: Attempt, now: UnixMillis) -> Result<Assignment, StoreError> {
        in_read_tx!(self, "reading an assignment", |tx| jobs::assignment(tx, job, attempt, now))
    }

    /// The plans of a job, as submitted.
    pub async fn plans(&self, job: JobId) -> Result<Vec<PlanFile>, StoreError> {
        in_read_tx!(self, "reading a job's plans", |tx| jobs::plans(tx, job))
    }

    /// Every rig, as `proofrig rigs` shows them (`now` decides which lab hosts are online).
    pub async fn rigs(&self, now: UnixMillis) -> Result<Vec<RigView>, StoreError> {
        in_read_tx!(self, "listing rigs", |tx| rigs::list(tx, now))
    }

    /// A rig's state history, oldest first.
    pub async fn rig_history(&self, rig: &str) -> Result<Vec<RigStateChange>, StoreError> {
        in_read_tx!(self, "reading a rig's history", |tx| rigs::history(tx, rig))
    }

    /// Every live lease, by fencing token.
    pub async fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        in_read_tx!(self, "listing leases", |tx| leases::list(tx))
    }

    /// The audit log, oldest first.
    pub async fn audit(&self) -> Result<Vec<AuditRecord>, StoreError> {
        in_read_tx!(self, "reading the audit log", |tx| audit::list(tx))
    }

    /// The newest fencing token issued so far (0: none yet).
    pub async fn last_fencing(&self) -> Result<FencingToken, StoreError> {
        in_read_tx!(self, "reading the fencing sequence", |tx| leases::last_issued(tx))
    }
}

// ---- values as stored ------------------------------------------------------------

/// A time as stored (milliseconds; times past the year 292 million saturate).
fn ms(t: UnixMillis) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn from_ms(v: i64) -> UnixMillis {
    UnixMillis(u64::try_from(v).unwrap_or(0))
}

fn rig_state_name(state: RigState) -> &'static str {
    state.name()
}

fn rig_state(name: &str) -> Result<RigState, StoreError> {
    RigState::parse(name).ok_or_else(|| StoreError::Corrupt(format!("unknown rig state `{name}`")))
}

fn job_state_name(state: JobState) -> &'static str {
    state.name()
}

fn job_state(name: &str) -> Result<JobState, StoreError> {
    JobState::parse(name).ok_or_else(|| StoreError::Corrupt(format!("unknown job state `{name}`")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("a value cannot be written as JSON: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored {what} `{text}` does not read back: {e}")))
}

fn id(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn attempt_no(v: i64) -> Attempt {
    Attempt(u32::try_from(v).unwrap_or(0))
}
