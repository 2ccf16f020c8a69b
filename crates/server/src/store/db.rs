//! The one seam between the store's operations and its two databases.
//!
//! Every operation is written once, as SQL both SQLite and PostgreSQL accept
//! (`$1` parameters, `RETURNING`, `ON CONFLICT`, partial indexes), against [`Tx`]: a
//! write or read transaction on either backend, with three value types (integers,
//! text, bytes; a boolean is an integer, a time is milliseconds, a set is JSON text).
//! What differs is kept here, small and named: how a write transaction begins
//! (`BEGIN IMMEDIATE` on SQLite's one writer connection; `BEGIN` on a PostgreSQL
//! pool), the row-locking clauses PostgreSQL needs and SQLite has no use for (its
//! single writer already excludes every other), and which errors mean "run the
//! transaction again" (PostgreSQL's serialization failures and deadlocks).
//!
//! `sqlx::Any` would do the same at run time, but it decodes by guesswork and could
//! not begin SQLite's transactions the way this store must; this layer is a page long.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Postgres, Sqlite};

use super::StoreError;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The connections of an open store.
pub(crate) enum Pools {
    /// `writer` has exactly one connection: every write transaction queues for it
    /// (in order, without a time limit) and begins `IMMEDIATE`, so SQLite never has
    /// to refuse a writer with SQLITE_BUSY. `readers` are read-only; in WAL mode they
    /// read alongside the writer.
    Sqlite {
        writer: SqlitePool,
        readers: SqlitePool,
    },
    Postgres {
        pool: PgPool,
    },
}

impl Pools {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres { .. } => Backend::Postgres,
        }
    }

    /// A transaction that will write. On SQLite, `BEGIN IMMEDIATE` takes the write
    /// lock before the first read (waiting out another process's writer up to the busy
    /// timeout): a deferred transaction that reads and then writes would instead get
    /// SQLITE_BUSY at its first write, and SQLite does not apply the busy timeout to
    /// that upgrade.
    pub(crate) async fn begin_write(&self) -> Result<Tx, StoreError> {
        match self {
            Pools::Sqlite { writer, .. } => {
                Ok(Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await.map_err(|e| db_error(Backend::Sqlite, e))?))
            }
            Pools::Postgres { pool } => Ok(Tx::Postgres(pool.begin().await.map_err(|e| db_error(Backend::Postgres, e))?)),
        }
    }

    /// A transaction that only reads: one consistent snapshot.
    pub(crate) async fn begin_read(&self) -> Result<Tx, StoreError> {
        match self {
            Pools::Sqlite { readers, .. } => Ok(Tx::Sqlite(readers.begin().await.map_err(|e| db_error(Backend::Sqlite, e))?)),
            Pools::Postgres { pool } => Ok(Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(|e| db_error(Backend::Postgres, e))?,
            )),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Pools::Sqlite { writer, readers } => {
                readers.close().await;
                writer.close().await;
            }
            Pools::Postgres { pool } => pool.close().await,
        }
    }
}

/// A bound parameter.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Bytes(v.to_vec())
    }
}

/// `args![a, b]`: the parameters `$1`, `$2` of a statement.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { vec![$($crate::store::db::Arg::from($arg)),*] };
}
pub(crate) use args;

/// A transaction on either backend. Dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Int(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
                Arg::Bytes(v) => query.bind(v),
            };
        }
        query
    }};
}

impl Tx {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    /// ` FOR UPDATE` on PostgreSQL: lock the rows read, waiting for their holder.
    pub(crate) fn for_update(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => "",
            Tx::Postgres(_) => " FOR UPDATE",
        }
    }

    /// ` FOR UPDATE OF <table>` on PostgreSQL: lock the rows of `table` a join read.
    pub(crate) fn for_update_of(&self, table: &str) -> String {
        match self {
            Tx::Sqlite(_) => String::new(),
            Tx::Postgres(_) => format!(" FOR UPDATE OF {table}"),
        }
    }

    /// ` FOR UPDATE OF <table> SKIP LOCKED` on PostgreSQL: lock the rows of `table`
    /// read, passing over those another transaction holds (another replica's claim).
    pub(crate) fn skip_locked(&self, table: &str) -> String {
        match self {
            Tx::Sqlite(_) => String::new(),
            Tx::Postgres(_) => format!(" FOR UPDATE OF {table} SKIP LOCKED"),
        }
    }

    /// Run a statement; the number of rows it changed.
    pub(crate) async fn exec(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let backend = self.backend();
        let sql = AssertSqlSafe(sql.to_string());
        let done = match self {
            Tx::Sqlite(tx) => bind_all!(sqlx::query::<Sqlite>(sql), args).execute(&mut **tx).await.map(|r| r.rows_affected()),
            Tx::Postgres(tx) => bind_all!(sqlx::query::<Postgres>(sql), args).execute(&mut **tx).await.map(|r| r.rows_affected()),
        };
        done.map_err(|e| db_error(backend, e))
    }

    /// Every row a query returns.
    pub(crate) async fn all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, StoreError> {
        let backend = self.backend();
        let sql = AssertSqlSafe(sql.to_string());
        let rows = match self {
            Tx::Sqlite(tx) => bind_all!(sqlx::query::<Sqlite>(sql), args)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.into_iter().map(Row::Sqlite).collect()),
            Tx::Postgres(tx) => bind_all!(sqlx::query::<Postgres>(sql), args)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.into_iter().map(Row::Postgres).collect()),
        };
        rows.map_err(|e| db_error(backend, e))
    }

    /// The first row a query returns, if any.
    pub(crate) async fn one(&mut self, sql: &str, args: Vec<Arg>) -> Result<Option<Row>, StoreError> {
        let backend = self.backend();
        let sql = AssertSqlSafe(sql.to_string());
        let row = match self {
            Tx::Sqlite(tx) => bind_all!(sqlx::query::<Sqlite>(sql), args).fetch_optional(&mut **tx).await.map(|row| row.map(Row::Sqlite)),
            Tx::Postgres(tx) => {
                bind_all!(sqlx::query::<Postgres>(sql), args).fetch_optional(&mut **tx).await.map(|row| row.map(Row::Postgres))
            }
        };
        row.map_err(|e| db_error(backend, e))
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        let backend = self.backend();
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
        .map_err(|e| db_error(backend, e))
    }

    pub(crate) async fn rollback(self) {
        // A failed rollback leaves nothing to undo: the connection is discarded.
        let _ = match self {
            Tx::Sqlite(tx) => tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
        };
    }
}

/// A row of either backend, read by column position.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

macro_rules! get {
    ($row:expr, $i:expr, $ty:ty) => {{
        let got: Result<$ty, sqlx::Error> = match $row {
            Row::Sqlite(row) => sqlx::Row::try_get(row, $i),
            Row::Postgres(row) => sqlx::Row::try_get(row, $i),
        };
        got.map_err(|e| StoreError::Corrupt(format!("column {} of a row read back: {e}", $i)))
    }};
}

impl Row {
    pub(crate) fn int(&self, i: usize) -> Result<i64, StoreError> {
        get!(self, i, i64)
    }
    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        get!(self, i, Option<i64>)
    }
    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        get!(self, i, String)
    }
    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        get!(self, i, Option<String>)
    }
    pub(crate) fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        get!(self, i, Vec<u8>)
    }
}

pub(crate) fn db_error(backend: Backend, source: sqlx::Error) -> StoreError {
    StoreError::Database { backend: backend.name(), doing: "", source }
}

/// Whether running the whole transaction again may succeed: PostgreSQL aborted it
/// to keep concurrent transactions serializable (40001) or to break a deadlock (40P01).
pub(crate) fn retryable(error: &StoreError) -> bool {
    match error {
        StoreError::Database { source: sqlx::Error::Database(e), backend, .. } if *backend == Backend::Postgres.name() => {
            matches!(e.code().as_deref(), Some("40001") | Some("40P01"))
        }
        _ => false,
    }
}
