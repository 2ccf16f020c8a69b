//! The PostgreSQL peer serves what the store's tests rely on: a cluster of its own on
//! loopback that answers SQL with the right password only, a fresh database per
//! test, and nothing left running or on disk once it is dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use proofrig_testpeers::postgres::{Postgres, USER};

/// `psql` (Debian's client, beside the server binaries) runs `sql` on `database`.
fn psql(pg: &Postgres, database: &str, password: &str, sql: &str) -> std::process::Output {
    let bin =
        std::fs::read_dir("/usr/lib/postgresql").unwrap().flatten().map(|e| e.path().join("bin/psql")).find(|p| p.exists()).expect("psql");
    Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &pg.port().to_string(), "-U", USER, "-d", database, "-XAtc", sql])
        .env("PGPASSWORD", password)
        .output()
        .unwrap()
}

/// The directories of this process's clusters under the temp dir.
fn cluster_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("proofrig-postgres-"))
        .collect()
}

#[test]
fn a_cluster_answers_with_its_password_only_and_is_gone_after_drop() {
    let before = cluster_dirs();
    let pg = Postgres::start();
    let url = pg.create_database("peer_test");
    let database = url.rsplit('/').next().unwrap().to_string();
    assert!(database.starts_with("peer_test_"), "{url}");

    let out = psql(&pg, &database, pg.password(), "CREATE TABLE t (x int); INSERT INTO t VALUES (41); SELECT x + 1 FROM t");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), pg.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().last(), Some("42"));
    let wrong = psql(&pg, &database, "not-the-password", "SELECT 1");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    // Each call gives a database of its own.
    assert_ne!(pg.create_database("peer_test"), url);

    let port = pg.port();
    let dirs: Vec<PathBuf> = cluster_dirs().into_iter().filter(|d| !before.contains(d)).collect();
    assert!(!dirs.is_empty(), "the cluster lives in a proofrig-postgres-* temp dir");
    drop(pg);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens on {port} after drop");
    for dir in dirs {
        assert!(!dir.exists(), "{} deleted on drop", dir.display());
    }
}
