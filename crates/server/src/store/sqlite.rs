//! Opening the SQLite store: the embedded default, one file, one server process.
//!
//! SQLite lets one writer in at a time, even in WAL mode, and a transaction that
//! begins deferred and later writes is refused with SQLITE_BUSY at once, without
//! waiting out the busy timeout (anchors §4.18). Under heartbeats from fifty lab
//! hosts that is "database is locked" in a caller's face. So the store opens:
//!
//! - one **writer** connection, for which every write transaction queues (in order,
//!   inside the process) and which begins `IMMEDIATE` ([`super::db::Pools`]): the
//!   write lock is taken first, so a transaction is never refused halfway;
//! - a **busy timeout**, for a writer outside this process (a backup, an sqlite3
//!   shell), which `BEGIN IMMEDIATE` does wait for;
//! - **WAL**, so the read-only **reader** connections read alongside the writer;
//! - `synchronous = FULL`: each commit reaches the disk before it is answered, so a
//!   fencing token once issued is never issued again, even after a power cut;
//! - foreign keys on, and the schema migrated before anything else.

use std::path::Path;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlSafeStr;

use super::db::{Backend, Pools};
use super::{StoreConfig, StoreError};

/// Readers: a few concurrent API reads; the writer does everything else.
const READERS: u32 = 4;

/// Time a write may queue for the one writer connection: in effect none (requests
/// give up long before); sqlx needs a figure.
const WRITER_QUEUE_LIMIT: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "initial".into(),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0001_initial.sql").into_sql_str(),
            false,
        ),
        Migration::new(2, "people".into(), MigrationType::Simple, include_str!("migrations/sqlite/0002_people.sql").into_sql_str(), false),
        Migration::new(
            3,
            "schedules".into(),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0003_schedules.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0004_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(5, "health".into(), MigrationType::Simple, include_str!("migrations/sqlite/0005_health.sql").into_sql_str(), false),
        Migration::new(
            6,
            "revocation".into(),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0006_revocation.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "web sessions".into(),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0007_sessions_web.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "run facts".into(),
            MigrationType::Simple,
            include_str!("migrations/sqlite/0008_run_facts.sql").into_sql_str(),
            false,
        ),
        Migration::new(9, "bench".into(), MigrationType::Simple, include_str!("migrations/sqlite/0009_bench.sql").into_sql_str(), false),
    ])
}

pub(crate) async fn open(path: &Path, config: &StoreConfig) -> Result<Pools, StoreError> {
    let target = path.display().to_string();
    let open_error = |source| StoreError::Open { backend: Backend::Sqlite.name(), target: target.clone(), source };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(config.busy_timeout)
        .foreign_keys(true);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(WRITER_QUEUE_LIMIT)
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.clone())
        .await
        .map_err(open_error)?;
    migrator().run(&writer).await.map_err(|source| StoreError::Migrate {
        backend: Backend::Sqlite.name(),
        target: target.clone(),
        source,
    })?;
    let readers = SqlitePoolOptions::new()
        .max_connections(READERS)
        .test_before_acquire(false)
        .connect_with(options.read_only(true).create_if_missing(false))
        .await
        .map_err(open_error)?;
    Ok(Pools::Sqlite { writer, readers })
}
