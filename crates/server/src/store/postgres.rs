//! Opening the PostgreSQL store: for a lab that runs several server replicas on one
//! database.
//!
//! Each replica has its own pool; what keeps them from doing the same work twice is
//! in the transactions, not here: a claim locks the queued jobs and free rigs it
//! read (`FOR UPDATE SKIP LOCKED`, so another replica schedules the rest), every
//! other write locks the rows it changes, and a transaction PostgreSQL aborts as a
//! serialization failure or deadlock runs again ([`super::db::retryable`]). The
//! migrator takes an advisory lock, so replicas starting together migrate once.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::SqlSafeStr;

use super::db::{Backend, Pools};
use super::{StoreConfig, StoreError};

/// How long a request waits for a free connection of the pool.
const ACQUIRE_LIMIT: Duration = Duration::from_secs(30);

pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "initial".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0001_initial.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "people".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0002_people.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "schedules".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0003_schedules.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0004_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "health".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0005_health.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "revocation".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0006_revocation.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "web sessions".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0007_sessions_web.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "run facts".into(),
            MigrationType::Simple,
            include_str!("migrations/postgres/0008_run_facts.sql").into_sql_str(),
            false,
        ),
        Migration::new(9, "bench".into(), MigrationType::Simple, include_str!("migrations/postgres/0009_bench.sql").into_sql_str(), false),
    ])
}

pub(crate) async fn open(url: &str, config: &StoreConfig) -> Result<Pools, StoreError> {
    // Never echo the URL: it may carry a password.
    let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
        backend: Backend::Postgres.name(),
        target: "the PostgreSQL URL given".into(),
        source,
    })?;
    let target = format!("database {} on {}:{}", options.get_database().unwrap_or("(default)"), options.get_host(), options.get_port());
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections.max(1))
        .acquire_timeout(ACQUIRE_LIMIT)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open { backend: Backend::Postgres.name(), target: target.clone(), source })?;
    migrator().run(&pool).await.map_err(|source| StoreError::Migrate { backend: Backend::Postgres.name(), target, source })?;
    Ok(Pools::Postgres { pool })
}
