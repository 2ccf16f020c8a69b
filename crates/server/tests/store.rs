//! The store's behaviour, on a real SQLite file and a real PostgreSQL server.
//!
//! Each test is one async function over a [`Fixture`], run twice by [`both!`]: once
//! on SQLite (a file in a temporary directory), once on PostgreSQL (a database of
//! its own in the cluster `proofrig_testpeers::postgres` starts from Debian's
//! package). What the tests hold the store to are the failures of the anchors: two
//! pollers claiming one job, a cancel racing a claim leaving a rig reserved, locks
//! that never expire, tokens reused after a restart, "database is locked" under
//! heartbeats, state changes without their audit record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proofrig_proto::advert::RigSummary;
use proofrig_proto::api::{HealthStage, JobState, NewSchedule, RigSelector, RigState, SubmitJob};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId, Priority, UnixMillis};
use proofrig_proto::labhost::{BundleCheck, Uploaded};
use proofrig_proto::timing::{JOB_LEASE, JOB_LOST_AFTER, LABHOST_OFFLINE_AFTER};
use proofrig_server::store::{Backend, Ctx, LeaseKind, LeaseRefused, NewLabHost, Store, StoreConfig, StoreError};
use proofrig_testpeers::postgres::Postgres;
use proofrig_verdict::Verdict;
use sqlx::Connection;

// ---- fixtures ------------------------------------------------------------------

/// A store on a fresh database, and where that database is (to open it again, or
/// beside it, as a restarted server or a second replica would).
struct Fixture {
    store: Store,
    db: Db,
}

enum Db {
    Sqlite { dir: tempfile::TempDir },
    Postgres { url: String },
}

impl Db {
    fn sqlite_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("store.db")
    }

    async fn open(&self) -> Store {
        match self {
            Db::Sqlite { dir } => Store::open_sqlite(&Db::sqlite_path(dir), StoreConfig::default()).await.unwrap(),
            Db::Postgres { url } => Store::open_postgres(url, StoreConfig::default()).await.unwrap(),
        }
    }
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let db = Db::Sqlite { dir: tempfile::Builder::new().prefix("proofrig-store-").tempdir().unwrap() };
        Fixture { store: db.open().await, db }
    }

    async fn postgres() -> Fixture {
        let url = tokio::task::spawn_blocking(|| Postgres::shared().create_database("store")).await.unwrap();
        let db = Db::Postgres { url };
        Fixture { store: db.open().await, db }
    }

    /// A second store on the same database: another server replica (PostgreSQL), or
    /// another process with its own writer (SQLite).
    async fn another(&self) -> Store {
        self.db.open().await
    }

    /// Close the store and open it again: a server restart.
    async fn reopen(self) -> Fixture {
        let Fixture { store, db } = self;
        store.close().await;
        Fixture { store: db.open().await, db }
    }

    /// Run `sql` on a connection of its own, outside the store.
    async fn raw(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        match &self.db {
            Db::Sqlite { dir } => {
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", Db::sqlite_path(dir).display())).await?;
                sqlx::query(sql).execute(&mut conn).await.map(|r| r.rows_affected())
            }
            Db::Postgres { url } => {
                let mut conn = sqlx::PgConnection::connect(url).await?;
                sqlx::query(sql).execute(&mut conn).await.map(|r| r.rows_affected())
            }
        }
    }
}

/// Each named async fn, as a test on SQLite and a test on PostgreSQL.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Fixture::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Fixture::postgres().await).await
                }
            )*
        }
    };
}

both!(
    submit_claim_cancel_and_end,
    fencing_tokens_grow_across_a_restart,
    a_stale_token_is_refused_and_changes_nothing,
    a_lapsed_lease_is_reaped_and_its_rig_freed,
    reservations_hold_extend_and_release,
    claimers_racing_claim_every_job_exactly_once,
    cancel_racing_claim_leaves_no_rig_held,
    every_state_change_has_its_audit_record,
    schedules_fire_once_when_due_across_dst_and_downtime,
    a_refused_or_removed_schedule_changes_nothing_more,
    replicas_firing_at_once_fire_each_schedule_once,
    a_failing_health_check_gets_one_power_cycle_then_the_rig_is_bad,
    a_cancelled_running_job_holds_its_rig_until_its_lab_host_stops_it,
    bench_operations_need_the_live_reservation_and_are_answered_once,
);

const T0: UnixMillis = UnixMillis(1_700_000_000_000);

fn at(ms: u64) -> UnixMillis {
    UnixMillis(T0.0 + ms)
}

fn by(who: &str, now: UnixMillis) -> Ctx {
    Ctx::new(who, "127.0.0.1:50000", now)
}

const LAB: &str = "lab-a";

fn summary(rig: &str, tags: &[&str]) -> RigSummary {
    RigSummary {
        rig: rig.into(),
        sha256: format!("{:0>64}", rig.len()),
        devices: ["ru1".to_string()].into(),
        roles: ["radio-unit".to_string()].into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// Enroll lab host `host`, advertise `rigs` (name, tags) and heartbeat, at `now`.
async fn lab(store: &Store, host: &str, rigs: &[(&str, &[&str])], now: UnixMillis) {
    let id = LabHostId(host.into());
    let admin = by("admin", now);
    store
        .enroll_labhost(
            &NewLabHost {
                id: id.clone(),
                name: host.into(),
                public_key_pem: "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n".into(),
            },
            &admin,
        )
        .await
        .unwrap();
    let summaries: Vec<RigSummary> = rigs.iter().map(|(name, tags)| summary(name, tags)).collect();
    store.advertise(&id, &summaries, &by(host, now)).await.unwrap();
    store.heartbeat(&id, &[], &by(host, now)).await.unwrap();
}

fn on(rig: &str) -> RigSelector {
    RigSelector::Rig(rig.into())
}

fn tagged(tags: &[&str]) -> RigSelector {
    RigSelector::Match { roles: BTreeSet::new(), tags: tags.iter().map(|t| t.to_string()).collect() }
}

/// A job with one plan whose bytes are not even UTF-8: they must come back exact.
fn job(target: RigSelector) -> SubmitJob {
    SubmitJob {
        plans: vec![PlanFile { name: "4.2.3.1-ssh-weak-ciphers.yaml".into(), bytes: b"id: x\n\xff\x00\r\n".to_vec() }],
        target,
        priority: Priority::NORMAL,
        params: BTreeMap::from([("port".to_string(), serde_json::json!(22))]),
        device: None,
        not_before: None,
    }
}

async fn rig_state(store: &Store, rig: &str) -> RigState {
    store.rigs(T0).await.unwrap().into_iter().find(|r| r.summary.rig == rig).unwrap_or_else(|| panic!("rig {rig}")).state
}

async fn job_state(store: &Store, job: JobId) -> JobState {
    store.job(job).await.unwrap().last().unwrap().view.state
}

/// The invariant the anchors broke: a rig runs only under a live job lease, is
/// reserved only under a live reservation, and is idle with no lease; every job
/// lease belongs to an attempt that is assigned or running, and every such attempt
/// has its lease.
async fn assert_consistent(store: &Store) {
    let leases = store.leases().await.unwrap();
    let jobs = store.jobs().await.unwrap();
    for rig in store.rigs(T0).await.unwrap() {
        let name = &rig.summary.rig;
        let job_leases = leases.iter().filter(|l| &l.rig == name && l.kind == LeaseKind::Job).count();
        let reservations = leases.iter().filter(|l| &l.rig == name && l.kind == LeaseKind::Reservation).count();
        let ok = match rig.state {
            RigState::Running => job_leases == 1,
            RigState::Reserved => job_leases == 0 && reservations == 1,
            RigState::Idle => job_leases == 0 && reservations == 0,
            _ => true,
        };
        assert!(ok, "rig {name} is {:?} with {job_leases} job lease(s) and {reservations} reservation(s): {leases:?}", rig.state);
        assert_eq!(rig.reservation.is_some(), reservations == 1, "rig {name}");
    }
    for lease in leases.iter().filter(|l| l.kind == LeaseKind::Job) {
        let (job, attempt) = lease.job.unwrap();
        let record = jobs.iter().find(|j| j.view.job == job && j.view.attempt == attempt).unwrap();
        // A cancelled run holds its rig until its lab host stops it (`jobs::cancel`).
        assert!(matches!(record.view.state, JobState::Assigned | JobState::Running | JobState::Cancelled), "{lease:?} held for {record:?}");
        assert_eq!((record.view.rig.as_deref(), record.fencing), (Some(lease.rig.as_str()), Some(lease.fencing)));
    }
    for record in jobs.iter().filter(|j| matches!(j.view.state, JobState::Assigned | JobState::Running)) {
        assert!(leases.iter().any(|l| Some(l.fencing) == record.fencing), "{record:?} has no lease");
    }
}

/// Everything a refused operation must leave as it was.
async fn snapshot(store: &Store) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        store.jobs().await.unwrap(),
        store.rigs(T0).await.unwrap(),
        store.leases().await.unwrap(),
        store.audit().await.unwrap(),
        store.last_fencing().await.unwrap()
    )
}

// ---- the tests -------------------------------------------------------------------

async fn submit_claim_cancel_and_end(f: Fixture) {
    let s = &f.store;
    lab(s, LAB, &[("r1", &["lte"]), ("r2", &["5g"])], T0).await;
    let tess = by("tess", at(1));

    let a = s.submit(&job(tagged(&["lte"])), &tess).await.unwrap();
    let b = s.submit(&SubmitJob { priority: Priority::HIGHEST, ..job(on("r2")) }, &tess).await.unwrap();
    let nowhere = s.submit(&job(on("nowhere")), &tess).await.unwrap();
    assert!(a.warnings.is_empty() && b.warnings.is_empty(), "{a:?} {b:?}");
    assert_eq!(nowhere.warnings, [format!("{}: no rig matches rig nowhere", nowhere.job)]);
    assert!(a.job < b.job && b.job < nowhere.job, "ids follow the submission order");

    // A refused submission stores nothing.
    let before = snapshot(s).await;
    let bad = SubmitJob { plans: vec![PlanFile { name: "../etc/x.yaml".into(), bytes: vec![] }], ..job(on("r1")) };
    let err = s.submit(&bad, &tess).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)) && err.to_string().contains("../etc/x.yaml"), "{err}");
    let twice = SubmitJob { plans: [job(on("r1")).plans, job(on("r1")).plans].concat(), ..job(on("r1")) };
    assert!(matches!(s.submit(&twice, &tess).await, Err(StoreError::Invalid(_))));
    assert_eq!(snapshot(s).await, before);

    let claimed = s.claim(&Ctx::server(at(2))).await.unwrap();
    let mut picks: Vec<(JobId, &str)> = claimed.iter().map(|c| (c.job, c.rig.as_str())).collect();
    picks.sort();
    assert_eq!(picks, [(a.job, "r1"), (b.job, "r2")]);
    assert!(claimed[0].fencing < claimed[1].fencing, "{claimed:?}");
    assert!(claimed.iter().all(|c| c.labhost.0 == LAB && c.lease.expires_at == at(2).plus(JOB_LEASE)));
    assert_eq!(s.claim(&Ctx::server(at(3))).await.unwrap(), [], "nothing left to place");
    assert_eq!((rig_state(s, "r1").await, rig_state(s, "r2").await), (RigState::Running, RigState::Running));
    assert_eq!(job_state(s, nowhere.job).await, JobState::Queued);

    // The lab host is sent the exact plan bytes, under the claim's token.
    let ca = claimed.iter().find(|c| c.job == a.job).unwrap();
    let assignment = s.assignment(a.job, Attempt(1), at(12)).await.unwrap();
    assert_eq!(assignment.plans, job(on("r1")).plans);
    assert_eq!(
        (assignment.fencing, assignment.rig.as_str(), assignment.rig_sha256.as_str()),
        (ca.fencing, "r1", summary("r1", &[]).sha256.as_str())
    );
    assert_eq!(assignment.lease.valid_for_ms, JOB_LEASE.as_millis() as u64 - 10, "what is left of the lease, 10 ms after the claim");
    assert_eq!(assignment.params["port"], serde_json::json!(22));

    // Cancel a queued job, then an assigned one: its lease ends and its rig is free.
    assert_eq!(s.cancel(nowhere.job, "typo in the rig name", &tess).await.unwrap(), JobState::Queued);
    assert_eq!(s.cancel(a.job, "", &tess).await.unwrap(), JobState::Assigned);
    assert_eq!(rig_state(s, "r1").await, RigState::Idle);
    assert!(s.leases().await.unwrap().iter().all(|l| l.rig != "r1"));
    let again = s.cancel(a.job, "", &tess).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)) && again.to_string().contains("already cancelled"), "{again}");
    assert!(matches!(s.cancel(JobId(999), "", &tess).await, Err(StoreError::NotFound(_))));

    // The other runs and ends; resending its end changes nothing.
    let cb = claimed.iter().find(|c| c.job == b.job).unwrap();
    s.job_started(b.job, Attempt(1), cb.fencing, "run-b", &by(LAB, at(4))).await.unwrap();
    assert_eq!(job_state(s, b.job).await, JobState::Running);
    assert_eq!(s.job_ended(b.job, Attempt(1), cb.fencing, &by(LAB, at(5))).await.unwrap(), JobState::Uploading);
    let before = snapshot(s).await;
    assert_eq!(s.job_ended(b.job, Attempt(1), cb.fencing, &by(LAB, at(6))).await.unwrap(), JobState::Uploading);
    assert_eq!(snapshot(s).await, before);
    assert_eq!(rig_state(s, "r2").await, RigState::Idle);
    let view = &s.job(b.job).await.unwrap()[0].view;
    assert_eq!((view.rig.as_deref(), view.run_id.as_deref(), view.submitted_by.as_str()), (Some("r2"), Some("run-b"), "tess"));
    assert_eq!(view.plans, ["4.2.3.1-ssh-weak-ciphers.yaml"]);
    assert_consistent(s).await;
}

async fn fencing_tokens_grow_across_a_restart(f: Fixture) {
    lab(&f.store, LAB, &[("r1", &[]), ("r2", &[])], T0).await;
    let tess = by("tess", at(1));
    for _ in 0..3 {
        f.store.submit(&job(on("r1")), &tess).await.unwrap();
    }
    let first = f.store.claim(&Ctx::server(at(2))).await.unwrap();
    let rita = f.store.reserve("r2", None, &by("rita", at(3))).await.unwrap();
    let mut issued = vec![first[0].fencing, rita.fencing];
    assert!(issued[0] < issued[1]);
    assert_eq!(f.store.last_fencing().await.unwrap(), rita.fencing);

    // Restart: the sequence goes on from where it was, never back.
    let f = f.reopen().await;
    assert_eq!(f.store.last_fencing().await.unwrap(), rita.fencing);
    f.store.cancel(first[0].job, "", &tess).await.unwrap();
    f.store.release("r2", &by("rita", at(4))).await.unwrap();
    f.store.heartbeat(&LabHostId(LAB.into()), &[], &by(LAB, at(5))).await.unwrap();
    for round in 0..2 {
        let claimed = f.store.claim(&Ctx::server(at(6 + round))).await.unwrap();
        assert_eq!(claimed.len(), 1);
        issued.push(claimed[0].fencing);
        f.store.job_ended(claimed[0].job, Attempt(1), claimed[0].fencing, &by(LAB, at(7 + round))).await.unwrap();
        let f2 = f.another().await;
        issued.push(f2.reserve("r2", None, &by("rita", at(8 + round))).await.unwrap().fencing);
        f2.release("r2", &by("rita", at(9 + round))).await.unwrap();
        f2.close().await;
    }
    assert!(issued.windows(2).all(|w| w[0] < w[1]), "tokens strictly increase: {issued:?}");
    let f = f.reopen().await;
    assert_eq!(f.store.last_fencing().await.unwrap(), *issued.last().unwrap());
}

async fn a_stale_token_is_refused_and_changes_nothing(f: Fixture) {
    let s = &f.store;
    lab(s, LAB, &[("r1", &[]), ("r2", &[])], T0).await;
    let old = s.reserve("r1", Some(Duration::from_secs(600)), &by("rita", at(1))).await.unwrap();
    s.release("r1", &by("rita", at(2))).await.unwrap();
    let new = s.reserve("r1", Some(Duration::from_secs(600)), &by("tom", at(3))).await.unwrap();

    // A job's token, passed on: its job was cancelled and the rig runs another.
    s.submit(&job(on("r2")), &by("tess", at(4))).await.unwrap();
    let first = s.claim(&Ctx::server(at(5))).await.unwrap().remove(0);
    s.cancel(first.job, "", &by("tess", at(6))).await.unwrap();
    let ended = s.renew(LAB, first.fencing, &by(LAB, at(7))).await.unwrap_err();
    assert!(matches!(&ended, StoreError::Lease(LeaseRefused::Ended { .. })) && ended.to_string().contains("is cancelled"), "{ended}");
    s.submit(&job(on("r2")), &by("tess", at(8))).await.unwrap();
    let second = s.claim(&Ctx::server(at(9))).await.unwrap().remove(0);

    let before = snapshot(s).await;
    let err = s.renew("rita", old.fencing, &by("rita", at(10))).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Lease(LeaseRefused::Stale { ref rig, presented, newest }) if rig == "r1" && presented == old.fencing && newest == new.fencing),
        "{err}"
    );
    assert!(err.to_string().contains("is stale"), "{err}");
    let err = s.renew(LAB, first.fencing, &by(LAB, at(10))).await.unwrap_err();
    assert!(matches!(err, StoreError::Lease(LeaseRefused::Stale { newest, .. }) if newest == second.fencing), "{err}");
    // Not the holder's, or never issued: refused too.
    let err = s.renew("rita", new.fencing, &by("rita", at(10))).await.unwrap_err();
    assert!(matches!(err, StoreError::Lease(LeaseRefused::NotHolder { .. })), "{err}");
    assert!(matches!(s.renew(LAB, FencingToken(9_999), &by(LAB, at(10))).await, Err(StoreError::Lease(LeaseRefused::Unknown { .. }))));
    assert_eq!(snapshot(s).await, before, "a refused renewal changes nothing");

    // A heartbeat naming both renews the live one only and reports the stale one lapsed.
    let answer = s.heartbeat(&LabHostId(LAB.into()), &[first.fencing, second.fencing], &by(LAB, at(10))).await.unwrap();
    assert_eq!(answer.renewed.iter().map(|r| r.fencing).collect::<Vec<_>>(), [second.fencing]);
    assert_eq!(answer.lapsed.iter().map(|l| l.fencing).collect::<Vec<_>>(), [first.fencing]);
    assert!(answer.lapsed[0].reason.contains("is stale"), "{:?}", answer.lapsed);
    // The job and reservation under the new tokens are untouched.
    assert_eq!(s.renew(LAB, second.fencing, &by(LAB, at(11))).await.unwrap().expires_at, at(11).plus(JOB_LEASE));
    assert_eq!(
        s.renew("tom", new.fencing, &by("tom", at(11))).await.unwrap().expires_at,
        new.until,
        "a renewal does not move a reservation's end"
    );
    assert_consistent(s).await;
}

async fn a_lapsed_lease_is_reaped_and_its_rig_freed(f: Fixture) {
    let s = &f.store;
    lab(s, LAB, &[("r1", &[]), ("r2", &[])], T0).await;
    let host = LabHostId(LAB.into());
    let submitted = s.submit(&job(on("r1")), &by("tess", at(1))).await.unwrap();
    let c = s.claim(&Ctx::server(at(2))).await.unwrap().remove(0);
    s.job_started(c.job, Attempt(1), c.fencing, "run-1", &by(LAB, at(3))).await.unwrap();
    s.heartbeat(&host, &[c.fencing], &by(LAB, at(10_000))).await.unwrap();
    s.reserve("r2", Some(Duration::from_secs(60 * 60)), &by("rita", at(10_000))).await.unwrap();
    // Then the lab host goes silent (killed).

    // Past the offline deadline: offline; the lease still holds.
    let reaped = s.reap(&Ctx::server(at(10_000).plus(LABHOST_OFFLINE_AFTER))).await.unwrap();
    assert_eq!((reaped.offline, reaped.lost.len()), (vec![host.clone()], 0));
    // Past the lease: a renewal is refused, but the rig stays held (the lab host may
    // be running the aborted run's restore steps) until the job is declared lost.
    let lapsed_at = at(10_000).plus(JOB_LEASE);
    let err = s.renew(LAB, c.fencing, &by(LAB, lapsed_at)).await.unwrap_err();
    assert!(matches!(err, StoreError::Lease(LeaseRefused::Lapsed { .. })), "{err}");
    assert!(s.reap(&Ctx::server(lapsed_at)).await.unwrap().lost.is_empty());
    assert_eq!(rig_state(s, "r1").await, RigState::Running);

    let lost_at = at(10_000).plus(JOB_LOST_AFTER);
    let reaped = s.reap(&Ctx::server(lost_at)).await.unwrap();
    assert_eq!(reaped.lost, [(c.job, Attempt(1), "r1".to_string())]);
    assert_eq!(rig_state(s, "r1").await, RigState::Idle);
    assert!(s.leases().await.unwrap().iter().all(|l| l.rig != "r1"), "the rig is not left leased");
    let record = &s.job(c.job).await.unwrap()[0];
    assert_eq!(record.view.state, JobState::Lost);
    assert!(record.reason.starts_with("INFRA"), "{}", record.reason);
    assert!(s.reap(&Ctx::server(lost_at)).await.unwrap().lost.is_empty(), "reaped once");

    // The late end of the lost job changes nothing; a retry is a new, linked attempt.
    assert_eq!(s.job_ended(c.job, Attempt(1), c.fencing, &by(LAB, lost_at)).await.unwrap(), JobState::Lost);
    assert_eq!(s.retry(submitted.job, &by("tess", lost_at)).await.unwrap(), Attempt(2));
    let back = lost_at.plus(Duration::from_secs(1));
    s.heartbeat(&host, &[], &by(LAB, back)).await.unwrap();
    let again = s.claim(&Ctx::server(back)).await.unwrap();
    assert_eq!((again[0].job, again[0].attempt, again[0].retry_of), (c.job, Attempt(2), Some(Attempt(1))));
    assert!(again[0].fencing > c.fencing);
    let attempts: Vec<(Attempt, JobState)> = s.job(c.job).await.unwrap().iter().map(|r| (r.view.attempt, r.view.state)).collect();
    assert_eq!(attempts, [(Attempt(1), JobState::Lost), (Attempt(2), JobState::Assigned)], "both attempts are kept");
    s.job_ended(c.job, Attempt(2), again[0].fencing, &by(LAB, back)).await.unwrap();
    // The reservation expires and is released by the reaper.
    let reaped = s.reap(&Ctx::server(at(10_000).plus(Duration::from_secs(3600)))).await.unwrap();
    assert_eq!(reaped.expired.iter().map(|r| (r.rig.as_str(), r.holder.as_str())).collect::<Vec<_>>(), [("r2", "rita")]);
    assert_eq!(rig_state(s, "r2").await, RigState::Idle);

    assert_consistent(s).await;
}

async fn reservations_hold_extend_and_release(f: Fixture) {
    let s = &f.store;
    lab(s, LAB, &[("r1", &["lte"]), ("r2", &["lte"])], T0).await;
    let (rita, tom) = (by("rita", at(1)), by("tom", at(1)));
    let hour = Duration::from_secs(3600);
    let r = s.reserve("r1", Some(hour), &rita).await.unwrap();
    assert_eq!((r.holder.as_str(), r.until), ("rita", at(1).plus(hour)));
    assert_eq!(rig_state(s, "r1").await, RigState::Reserved);
    let before = snapshot(s).await;
    let taken = s.reserve("r1", None, &tom).await.unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)) && taken.to_string().contains("reserved by rita"), "{taken}");
    assert!(matches!(s.extend("r1", hour, &tom).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.release("r1", &tom).await, Err(StoreError::Conflict(_))));
    let too_long = s.extend("r1", Duration::from_secs(9 * 3600), &rita).await.unwrap_err();
    assert!(matches!(too_long, StoreError::Invalid(_)) && too_long.to_string().contains("at most 480 minutes"), "{too_long}");
    assert!(matches!(s.reserve("nope", None, &tom).await, Err(StoreError::NotFound(_))));
    assert_eq!(snapshot(s).await, before, "refusals change nothing");

    let later = by("rita", at(1000));
    assert_eq!(s.extend("r1", 2 * hour, &later).await.unwrap().until, at(1000).plus(2 * hour));
    assert_eq!(s.reserve("r1", Some(hour), &later).await.unwrap().fencing, r.fencing, "reserving one's own rig again extends it");

    // The holder's job runs in the reserved rig; someone else's goes elsewhere, then waits.
    let mine = s.submit(&job(on("r1")), &by("rita", at(2000))).await.unwrap();
    let theirs = s.submit(&job(tagged(&["lte"])), &by("tess", at(2000))).await.unwrap();
    let waits = s.submit(&job(on("r1")), &by("tess", at(2000))).await.unwrap();
    let claimed = s.claim(&Ctx::server(at(2001))).await.unwrap();
    let mut picks: Vec<(JobId, &str)> = claimed.iter().map(|c| (c.job, c.rig.as_str())).collect();
    picks.sort();
    assert_eq!(picks, [(mine.job, "r1"), (theirs.job, "r2")]);
    assert_eq!(rig_state(s, "r1").await, RigState::Running);
    let c = claimed.iter().find(|c| c.job == mine.job).unwrap();
    s.job_ended(mine.job, Attempt(1), c.fencing, &by(LAB, at(2002))).await.unwrap();
    assert_eq!(rig_state(s, "r1").await, RigState::Reserved, "back to its holder");
    assert_eq!(s.claim(&Ctx::server(at(2003))).await.unwrap(), []);
    assert!(matches!(s.reserve("r2", None, &tom).await, Err(StoreError::Conflict(_))), "a running rig is not reserved");
    assert_consistent(s).await;

    s.release("r1", &by("rita", at(2004))).await.unwrap();
    assert_eq!(s.claim(&Ctx::server(at(2005))).await.unwrap().iter().map(|c| c.job).collect::<Vec<_>>(), [waits.job]);
    assert!(matches!(s.release("r1", &by("rita", at(2006))).await, Err(StoreError::NotFound(_))));
    assert_consistent(s).await;
}

/// 32 claimers (on PostgreSQL over two pools: two replicas) take a queue of jobs
/// onto 8 rigs, each running its job to its end to free the rig for the next.
async fn claimers_racing_claim_every_job_exactly_once(f: Fixture) {
    const JOBS: usize = 96;
    const CLAIMERS: usize = 32;
    let rigs: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let named: Vec<(&str, &[&str])> = rigs.iter().map(|r| (r.as_str(), &[] as &[&str])).collect();
    lab(&f.store, LAB, &named, T0).await;
    let mut ids = BTreeSet::new();
    for i in 0..JOBS {
        ids.insert(
            f.store
                .submit(&SubmitJob { priority: Priority::new((i % 3) as u8 * 40).unwrap(), ..job(tagged(&[])) }, &by("tess", at(1)))
                .await
                .unwrap()
                .job,
        );
    }
    let stores = match f.store.backend() {
        Backend::Sqlite => vec![Arc::new(f.another().await)],
        Backend::Postgres => vec![Arc::new(f.another().await), Arc::new(f.another().await)],
    };
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..CLAIMERS {
        let (store, done) = (stores[i % stores.len()].clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while done.load(Ordering::SeqCst) < JOBS {
                let claimed = store.claim(&Ctx::server(at(2))).await.expect("claim");
                for c in &claimed {
                    store.job_started(c.job, c.attempt, c.fencing, &format!("run-{}", c.job.0), &by(LAB, at(3))).await.expect("start");
                    store.job_ended(c.job, c.attempt, c.fencing, &by(LAB, at(4))).await.expect("end");
                    done.fetch_add(1, Ordering::SeqCst);
                }
                if claimed.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                mine.extend(claimed);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(tokio::time::timeout(Duration::from_secs(60), task).await.expect("claimers finish").unwrap());
    }
    let claimed_jobs: Vec<JobId> = all.iter().map(|c| c.job).collect();
    assert_eq!(claimed_jobs.len(), JOBS, "every job claimed exactly once (no more)");
    assert_eq!(claimed_jobs.iter().copied().collect::<BTreeSet<_>>(), ids, "every job claimed (no less)");
    let tokens: BTreeSet<FencingToken> = all.iter().map(|c| c.fencing).collect();
    assert_eq!(tokens.len(), JOBS, "no token issued twice");
    assert!(f.store.jobs().await.unwrap().iter().all(|j| j.view.state == JobState::Uploading));
    assert_eq!(f.store.audit().await.unwrap().iter().filter(|a| a.action == "job.assign").count(), JOBS);
    assert_consistent(&f.store).await;
}

/// A cancel racing a claim, many times (on PostgreSQL from two replicas): whichever
/// wins, the job ends cancelled and no rig is left running or reserved for it.
async fn cancel_racing_claim_leaves_no_rig_held(f: Fixture) {
    lab(&f.store, LAB, &[("r1", &[])], T0).await;
    let (claimer, canceller) = (Arc::new(f.another().await), Arc::new(f.another().await));
    let mut outcomes = BTreeMap::new();
    for round in 0..30u64 {
        let now = at(10 + round);
        let j = f.store.submit(&job(on("r1")), &by("tess", now)).await.unwrap().job;
        let (c1, c2) = (claimer.clone(), canceller.clone());
        let claim = tokio::spawn(async move { c1.claim(&Ctx::server(now)).await });
        let cancel = tokio::spawn(async move { c2.cancel(j, "race", &by("tess", now)).await });
        let (claimed, cancelled) = (claim.await.unwrap().unwrap(), cancel.await.unwrap().unwrap());
        *outcomes.entry((claimed.len(), format!("{cancelled:?}"))).or_insert(0) += 1;
        assert_eq!(job_state(&f.store, j).await, JobState::Cancelled, "round {round}");
        assert_eq!(rig_state(&f.store, "r1").await, RigState::Idle, "round {round}: {claimed:?}, cancel found {cancelled:?}");
        assert!(f.store.leases().await.unwrap().is_empty(), "round {round}");
    }
    assert_consistent(&f.store).await;
    eprintln!("cancel/claim outcomes ((claimed, state the cancel found) -> rounds): {outcomes:?}");
}

async fn every_state_change_has_its_audit_record(f: Fixture) {
    let s = &f.store;
    lab(s, LAB, &[("r1", &[])], T0).await;
    let tess = by("tess", at(1));
    let j = s.submit(&job(on("r1")), &tess).await.unwrap().job;
    let c = s.claim(&Ctx::server(at(2))).await.unwrap().remove(0);
    s.job_started(j, Attempt(1), c.fencing, "run-1", &by(LAB, at(3))).await.unwrap();
    s.job_ended(j, Attempt(1), c.fencing, &by(LAB, at(4))).await.unwrap();
    // Refused requests record nothing.
    assert!(s.set_rig_state("r1", RigState::Maintenance, " ", &by("tina", at(5))).await.is_err());
    assert!(s.set_rig_state("r1", RigState::Running, "by hand", &by("tina", at(5))).await.is_err());
    assert_eq!(
        s.set_rig_state("r1", RigState::Maintenance, "replacing the serial cable", &by("tina", at(5))).await.unwrap(),
        RigState::Maintenance
    );
    s.submit(&job(on("r1")), &tess).await.unwrap();
    assert_eq!(s.claim(&Ctx::server(at(6))).await.unwrap(), [], "a rig in maintenance takes no job");
    assert_eq!(s.set_rig_state("r1", RigState::Idle, "cable replaced", &by("tina", at(7))).await.unwrap(), RigState::Idle);
    s.reserve("r1", None, &by("rita", at(8))).await.unwrap();
    s.release("r1", &by("rita", at(9))).await.unwrap();
    s.advertise(&LabHostId(LAB.into()), &[], &by(LAB, at(10))).await.unwrap();
    s.advertise(&LabHostId(LAB.into()), &[summary("r1", &[])], &by(LAB, at(11))).await.unwrap();
    s.reap(&Ctx::server(at(11).plus(LABHOST_OFFLINE_AFTER))).await.unwrap();

    let log: Vec<(String, String, String)> = s.audit().await.unwrap().into_iter().map(|a| (a.who, a.action, a.subject)).collect();
    let expected: Vec<(&str, &str, &str)> = vec![
        ("admin", "labhost.enroll", "lab host lab-a"),
        ("lab-a", "rig.advertise", "rig r1"),
        ("lab-a", "labhost.online", "lab host lab-a"),
        ("tess", "job.submit", "job 1"),
        ("server", "rig.state", "rig r1"),
        ("server", "job.assign", "job 1"),
        ("lab-a", "job.start", "job 1"),
        ("lab-a", "rig.state", "rig r1"),
        ("lab-a", "job.end", "job 1"),
        ("tina", "rig.state", "rig r1"),
        ("tess", "job.submit", "job 2"),
        ("tina", "rig.state", "rig r1"),
        ("rita", "rig.state", "rig r1"),
        ("rita", "reservation.start", "rig r1"),
        ("rita", "rig.state", "rig r1"),
        ("rita", "reservation.release", "rig r1"),
        ("lab-a", "rig.state", "rig r1"),
        ("lab-a", "rig.state", "rig r1"),
        ("server", "labhost.offline", "lab host lab-a"),
    ];
    let log_ref: Vec<(&str, &str, &str)> = log.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    assert_eq!(log_ref, expected);

    // Each entry of the rig's history has its audit record: same time, who, reason.
    let history = s.rig_history("r1").await.unwrap();
    let states: Vec<RigState> = history.iter().map(|h| h.state).collect();
    use RigState::*;
    assert_eq!(states, [Idle, Running, Idle, Maintenance, Idle, Reserved, Idle, Offline, Idle]);
    let audit = s.audit().await.unwrap();
    for h in &history[1..] {
        assert!(
            audit
                .iter()
                .any(|a| a.action == "rig.state" && a.at == h.at && a.who == h.by && a.details["reason"] == serde_json::json!(h.reason)),
            "{h:?} has no audit record"
        );
    }
    assert!(audit.iter().all(|a| a.origin == "127.0.0.1:50000" || a.origin == "server"));

    // The database itself refuses to rewrite either log.
    for sql in
        ["UPDATE audit SET who = 'mallory'", "DELETE FROM audit", "UPDATE rig_states SET changed_by = 'mallory'", "DELETE FROM rig_states"]
    {
        let err = f.raw(sql).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(s.audit().await.unwrap(), audit);
    assert_consistent(s).await;
}

// ---- recurring runs ----------------------------------------------------------------

/// 2026-03-28 00:00 UTC: the day before Europe/Berlin springs forward.
const MAR28: u64 = 1_774_656_000_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

/// `hh:mm` UTC on 2026-03-28 (`day` 0) or a later day.
fn utc(day: u64, hh: u64, mm: u64) -> UnixMillis {
    UnixMillis(MAR28 + day * 24 * HOUR + hh * HOUR + mm * MINUTE)
}

fn schedule(cron: &str, zone: &str) -> NewSchedule {
    NewSchedule { job: job(on("r1")), cron: cron.into(), time_zone: zone.into() }
}

async fn fire(store: &Store, now: UnixMillis) -> Vec<u64> {
    store.fire_due(&Ctx::server(now)).await.unwrap().into_iter().map(|j| j.0).collect()
}

async fn schedules_fire_once_when_due_across_dst_and_downtime(f: Fixture) {
    let s = &f.store;
    let hourly = s.add_schedule(&schedule("0 * * * *", "UTC"), &by("tess", utc(0, 0, 0))).await.unwrap();
    let daily = s.add_schedule(&schedule("30 2 * * *", "Europe/Berlin"), &by("tina", utc(0, 0, 0))).await.unwrap();
    assert_eq!((hourly.id, hourly.next_at, hourly.created_by.as_str()), (1, Some(utc(0, 1, 0)), "tess"));
    assert_eq!((daily.id, daily.next_at), (2, Some(utc(0, 1, 30))), "02:30 CET is 01:30 UTC");
    assert_eq!(s.schedules().await.unwrap(), [hourly.clone(), daily.clone()]);

    assert_eq!(fire(s, utc(0, 0, 59)).await, [] as [u64; 0], "nothing is due yet");
    assert_eq!(fire(s, utc(0, 1, 0)).await, [1], "the hourly one, on time");
    assert_eq!(fire(s, utc(0, 1, 0)).await, [] as [u64; 0], "a second pass at the same time fires nothing");
    assert_eq!(fire(s, utc(0, 1, 45)).await, [2], "the daily one (due 01:30); the hourly one waits for 02:00");
    // The server was down from 01:45 to 05:10: 02:00, 03:00, 04:00 and 05:00 passed.
    assert_eq!(fire(s, utc(0, 5, 10)).await, [3], "one catch-up run, not four");
    assert_eq!(s.schedule(1).await.unwrap().next_at, Some(utc(0, 6, 0)));
    s.remove_schedule(1, &by("tess", utc(0, 5, 20))).await.unwrap();
    // Berlin springs forward: 02:30 does not exist on 2026-03-29; it runs at 03:00 CEST.
    assert_eq!(fire(s, utc(1, 0, 59)).await, [] as [u64; 0]);
    assert_eq!(fire(s, utc(1, 1, 0)).await, [4], "03:00 CEST, the first instant after the gap");
    assert_eq!(fire(s, utc(1, 1, 30)).await, [] as [u64; 0], "03:30 CEST: it ran today already");
    assert_eq!(s.schedules().await.unwrap().iter().map(|v| (v.id, v.next_at)).collect::<Vec<_>>(), [(2, Some(utc(2, 0, 30)))]);

    // Each run is a job like a person's: its creator's, the template's plans byte for byte.
    let jobs = s.jobs().await.unwrap();
    let made: Vec<(u64, &str, JobState)> = jobs.iter().map(|j| (j.view.job.0, j.view.submitted_by.as_str(), j.view.state)).collect();
    use JobState::Queued;
    assert_eq!(made, [(1, "tess", Queued), (2, "tina", Queued), (3, "tess", Queued), (4, "tina", Queued)]);
    for j in 1..=4 {
        assert_eq!(s.plans(JobId(j)).await.unwrap(), job(on("r1")).plans);
    }
    // And audited: who added it, each submission as its creator from the schedule, each
    // firing by the server with what it missed, the removal.
    let audit = s.audit().await.unwrap();
    let log: Vec<(&str, &str, &str, &str)> =
        audit.iter().map(|a| (a.who.as_str(), a.origin.as_str(), a.action.as_str(), a.subject.as_str())).collect();
    let peer = "127.0.0.1:50000";
    assert_eq!(
        log,
        [
            ("tess", peer, "schedule.add", "schedule 1"),
            ("tina", peer, "schedule.add", "schedule 2"),
            ("tess", "schedule 1", "job.submit", "job 1"),
            ("server", "server", "schedule.fire", "schedule 1"),
            ("tina", "schedule 2", "job.submit", "job 2"),
            ("server", "server", "schedule.fire", "schedule 2"),
            ("tess", "schedule 1", "job.submit", "job 3"),
            ("server", "server", "schedule.fire", "schedule 1"),
            ("tess", peer, "schedule.remove", "schedule 1"),
            ("tina", "schedule 2", "job.submit", "job 4"),
            ("server", "server", "schedule.fire", "schedule 2"),
        ]
    );
    assert_eq!(audit[2].details["schedule"], serde_json::json!(1));
    let catch_up = &audit[7].details;
    assert_eq!(
        (&catch_up["job"], &catch_up["due_at"], &catch_up["missed"], &catch_up["next_at"]),
        (&serde_json::json!(3), &serde_json::json!(utc(0, 2, 0).0), &serde_json::json!(3), &serde_json::json!(utc(0, 6, 0).0))
    );
    // A restart keeps the schedules and when they are due.
    let f = f.reopen().await;
    assert_eq!(f.store.schedules().await.unwrap().iter().map(|v| v.next_at).collect::<Vec<_>>(), [Some(utc(2, 0, 30))]);
    assert_eq!(fire(&f.store, utc(2, 0, 30)).await, [5]);
}

async fn a_refused_or_removed_schedule_changes_nothing_more(f: Fixture) {
    let s = &f.store;
    let now = utc(0, 0, 0);
    let before = snapshot(s).await;
    for (bad, says) in [
        (schedule("*/2 * * * *", "UTC"), "a lab queue is not a ticker"),
        (schedule("30 2 * * *", "Mars/Olympus"), "time_zone `Mars/Olympus`"),
        (schedule("30 25 * * *", "UTC"), "the hour field `25`"),
        (NewSchedule { job: SubmitJob { plans: vec![], ..job(on("r1")) }, ..schedule("30 2 * * *", "UTC") }, "at least one plan"),
        (
            NewSchedule { job: SubmitJob { not_before: Some(utc(3, 0, 0)), ..job(on("r1")) }, ..schedule("30 2 * * *", "UTC") },
            "job.not_before",
        ),
    ] {
        match s.add_schedule(&bad, &by("tess", now)).await {
            Err(StoreError::Invalid(message)) => assert!(message.contains(says), "{message}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(snapshot(s).await, before, "a refused schedule leaves nothing stored");
    assert_eq!(s.schedules().await.unwrap(), []);

    let every_15 = s.add_schedule(&schedule("*/15 * * * *", "UTC"), &by("tess", now)).await.unwrap();
    assert_eq!(fire(s, utc(0, 0, 15)).await, [1]);
    s.remove_schedule(every_15.id, &by("tina", utc(0, 0, 20))).await.unwrap();
    assert!(
        matches!(s.remove_schedule(every_15.id, &by("tess", utc(0, 0, 21))).await, Err(StoreError::Conflict(m)) if m.contains("already removed (by tina)"))
    );
    assert!(matches!(s.remove_schedule(99, &by("tess", utc(0, 0, 21))).await, Err(StoreError::NotFound(m)) if m.contains("schedule 99")));
    assert!(matches!(s.schedule(every_15.id).await, Err(StoreError::NotFound(_))));
    for hour in 1..6 {
        assert_eq!(fire(s, utc(0, hour, 0)).await, [] as [u64; 0], "a removed schedule submits nothing");
    }
    assert_eq!(s.jobs().await.unwrap().len(), 1, "the job it made stays");
    let actions: Vec<String> = s.audit().await.unwrap().into_iter().map(|a| format!("{} {} {}", a.who, a.action, a.subject)).collect();
    assert_eq!(
        actions,
        ["tess schedule.add schedule 1", "tess job.submit job 1", "server schedule.fire schedule 1", "tina schedule.remove schedule 1"]
    );

    // A schedule that no longer reads (here its cron rewritten behind the store's back,
    // as a future proofrig might refuse today's) is disabled with its reason, and does
    // not stop another due in the same pass.
    s.add_schedule(&schedule("0 * * * *", "UTC"), &by("tess", utc(0, 6, 0))).await.unwrap();
    s.add_schedule(&schedule("0 * * * *", "UTC"), &by("tess", utc(0, 6, 0))).await.unwrap();
    assert_eq!(f.raw("UPDATE schedules SET cron = '* * * * *' WHERE id = 2").await.unwrap(), 1);
    assert_eq!(fire(s, utc(0, 7, 0)).await, [2], "schedule 3 fires (job 2); schedule 2 is disabled");
    assert_eq!(s.schedules().await.unwrap().iter().map(|v| v.id).collect::<Vec<_>>(), [3]);
    let disabled = s.audit().await.unwrap().into_iter().find(|a| a.action == "schedule.disable").expect("the disabling is audited");
    assert_eq!((disabled.who.as_str(), disabled.subject.as_str()), ("server", "schedule 2"));
    let reason = disabled.details["reason"].as_str().unwrap();
    assert!(reason.contains("a lab queue is not a ticker") && reason.contains("add it again"), "{reason}");
    assert_eq!(fire(s, utc(0, 8, 0)).await, [3]);
}

/// Two server replicas (two stores on one database), four passes each at once, at
/// each of three due times: every schedule fires exactly once per due time.
async fn replicas_firing_at_once_fire_each_schedule_once(f: Fixture) {
    const SCHEDULES: usize = 12;
    let replicas = Arc::new([f.another().await, f.another().await]);
    for i in 0..SCHEDULES {
        let zone = ["UTC", "Europe/Berlin", "America/New_York"][i % 3];
        f.store.add_schedule(&schedule("0 */6 * * *", zone), &by("tess", utc(0, 0, 0))).await.unwrap();
    }
    let mut fired_before = 0;
    for (round, now) in [utc(0, 6, 0), utc(0, 12, 0), utc(0, 18, 0)].into_iter().enumerate() {
        let mut tasks = Vec::new();
        for pass in 0..8 {
            let replicas = replicas.clone();
            tasks.push(tokio::spawn(async move { replicas[pass % 2].fire_due(&Ctx::server(now)).await.unwrap() }));
        }
        let mut fired = Vec::new();
        for task in tasks {
            fired.extend(task.await.unwrap());
        }
        let distinct: BTreeSet<JobId> = fired.iter().copied().collect();
        assert_eq!(distinct.len(), fired.len(), "round {round}: a job reported twice: {fired:?}");
        // Every schedule is due once in each round (in UTC, Berlin and New York the
        // 6-hour marks fall 1 and 4 hours apart, all within the 6 hours between rounds).
        assert_eq!(fired.len(), SCHEDULES, "round {round}: {fired:?}");
        let jobs = f.store.jobs().await.unwrap().len();
        assert_eq!(jobs - fired_before, SCHEDULES, "round {round}: every job submitted is one reported");
        fired_before = jobs;
    }
    let fires = f.store.audit().await.unwrap().into_iter().filter(|a| a.action == "schedule.fire").count();
    assert_eq!(fires, 3 * SCHEDULES);
}

// ---- SQLite only -------------------------------------------------------------------

/// 50 tasks over two stores on one SQLite file (two writers, as two processes would
/// be): 40 lab hosts heartbeating and renewing their leases, 10 claimers running
/// jobs to their end, readers listing the queue. No call may fail: no "database is
/// locked" (SQLITE_BUSY) reaches a caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_fifty_tasks_heartbeating_and_claiming_never_see_busy() {
    let f = Fixture::sqlite().await;
    let hosts: Vec<String> = (0..40).map(|i| format!("lab-{i:02}")).collect();
    for host in &hosts {
        let rig = format!("{host}-rig");
        lab(&f.store, host, &[(rig.as_str(), &[])], T0).await;
    }
    for _ in 0..120 {
        f.store.submit(&job(tagged(&[])), &by("tess", at(1))).await.unwrap();
    }
    let stores = [Arc::new(f.another().await), Arc::new(f.another().await)];
    let mut tasks = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let (store, id) = (stores[i % 2].clone(), LabHostId(host.clone()));
        tasks.push(tokio::spawn(async move {
            for beat in 0..15u64 {
                let held: Vec<FencingToken> = store.leases().await?.iter().filter(|l| l.holder == id.0).map(|l| l.fencing).collect();
                store.heartbeat(&id, &held, &by(&id.0, at(2 + beat))).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for i in 0..10 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..15u64 {
                for c in store.claim(&Ctx::server(at(2 + round))).await? {
                    store.job_started(c.job, c.attempt, c.fencing, "run", &by(&c.labhost.0, at(2 + round))).await?;
                    store.job_ended(c.job, c.attempt, c.fencing, &by(&c.labhost.0, at(2 + round))).await?;
                }
                store.jobs().await?;
            }
            Ok(())
        }));
    }
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            panic!("a caller saw: {e}");
        }
    }
    let ended = f.store.jobs().await.unwrap().iter().filter(|j| j.view.state == JobState::Uploading).count();
    assert!(ended > 0, "the claimers ran jobs");
    assert_consistent(&f.store).await;
}

// ---- opening ---------------------------------------------------------------------

/// `Store::open` picks the backend from the address; a refused PostgreSQL login says
/// which database and what to check, and never repeats the password it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_picks_the_backend_and_a_failed_login_does_not_echo_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&format!("sqlite:{}", dir.path().join("s.db").display()), StoreConfig::default()).await.unwrap();
    assert_eq!(sqlite.backend(), Backend::Sqlite);
    sqlite.close().await;
    let url = tokio::task::spawn_blocking(|| Postgres::shared().create_database("open")).await.unwrap();
    let pg = Store::open(&url, StoreConfig::default()).await.unwrap();
    assert_eq!(pg.backend(), Backend::Postgres);
    pg.close().await;

    let wrong = url.replacen(Postgres::shared().password(), "Wr0ngSecretValue", 1);
    let err = Store::open(&wrong, StoreConfig::default()).await.err().expect("a wrong password is refused").to_string();
    assert!(err.contains("password authentication failed") && err.contains("on 127.0.0.1:"), "{err}");
    assert!(!err.contains("Wr0ngSecretValue"), "{err}");
}

/// Run the job the claim placed on `rig` to its end, with the bundle's verdict.
async fn run_to_end(s: &Store, rig: &str, verdict: Verdict, now: UnixMillis) -> JobId {
    let claimed = s.claim(&by("server", now)).await.unwrap();
    let c = claimed.iter().find(|c| c.rig == rig).unwrap_or_else(|| panic!("nothing claimed for {rig}: {claimed:?}"));
    let run = format!("run-{}", c.job.0);
    s.job_started(c.job, c.attempt, c.fencing, &run, &by(LAB, now)).await.unwrap();
    s.job_ended(c.job, c.attempt, c.fencing, &by(LAB, now)).await.unwrap();
    let uploaded = Uploaded { job: c.job, attempt: c.attempt, run_id: run, check: BundleCheck::Verified { verdict } };
    s.uploaded(&uploaded, &by(LAB, now)).await.unwrap();
    c.job
}

async fn a_failing_health_check_gets_one_power_cycle_then_the_rig_is_bad(f: Fixture) {
    let s = &f.store;
    lab(s, LAB, &[("r1", &[])], at(0)).await;
    let check = PlanFile { name: "health.yaml".into(), bytes: b"plan: health\n".to_vec() };
    let tom = by("tom", at(0));
    let too_often = s.set_health("r1", &check, Duration::from_secs(60), &tom).await.unwrap_err().to_string();
    assert!(too_often.contains("every_minutes"), "{too_often}");
    s.set_health("r1", &check, Duration::from_secs(3600), &tom).await.unwrap();

    // Due at once: a check job for r1, first in line, submitted by health:r1.
    let queued = s.submit(&job(on("r1")), &by("tess", at(1))).await.unwrap().job;
    let moves = s.health_step(&by("server", at(2))).await.unwrap();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].to, HealthStage::Check);
    let check_job = run_to_end(s, "r1", Verdict::Pass, at(3)).await;
    assert_eq!(Some(check_job), moves[0].job, "the check runs before the job queued earlier");
    assert_eq!(s.job(check_job).await.unwrap()[0].view.submitted_by, "health:r1");
    assert_eq!(s.health_step(&by("server", at(4))).await.unwrap()[0].to, HealthStage::Ok);
    let health = s.health("r1").await.unwrap().unwrap();
    assert_eq!((health.stage, health.next_at), (HealthStage::Ok, at(4 + 3_600_000)));

    // The queued job ends in ERROR: the rig is checked before the next one.
    assert_eq!(run_to_end(s, "r1", Verdict::Error, at(5)).await, queued);
    let next = s.submit(&job(on("r1")), &by("tess", at(6))).await.unwrap().job;
    let moves = s.health_step(&by("server", at(7))).await.unwrap();
    assert_eq!(moves[0].to, HealthStage::Check, "{moves:?}");
    // It fails: the repair, a power cycle, runs next.
    run_to_end(s, "r1", Verdict::Fail, at(8)).await;
    let moves = s.health_step(&by("server", at(9))).await.unwrap();
    assert_eq!(moves[0].to, HealthStage::Repair);
    let repair = moves[0].job.unwrap();
    assert_eq!(s.plans(repair).await.unwrap()[0].name, "repair-power-cycle.yaml");
    run_to_end(s, "r1", Verdict::Error, at(10)).await;
    assert_eq!(s.health_step(&by("server", at(11))).await.unwrap()[0].to, HealthStage::Recheck);
    // The check after the repair fails too: the rig is bad, and says why.
    run_to_end(s, "r1", Verdict::Inconclusive, at(12)).await;
    assert_eq!(s.health_step(&by("server", at(13))).await.unwrap()[0].to, HealthStage::Bad);
    let rig = s.rigs(at(13)).await.unwrap().into_iter().find(|r| r.summary.rig == "r1").unwrap();
    assert_eq!(rig.state, RigState::Bad);
    assert!(rig.reason.contains("power cycle did not help"), "{}", rig.reason);
    assert!(s.claim(&by("server", at(14))).await.unwrap().is_empty(), "a bad rig takes no job");
    assert_eq!(s.job(next).await.unwrap()[0].view.state, JobState::Queued);

    // Back in service: checked first, then the waiting job runs.
    s.set_rig_state("r1", RigState::Idle, "replaced the cable", &tom).await.unwrap();
    assert_eq!(s.health_step(&by("server", at(15))).await.unwrap()[0].to, HealthStage::Check);
    run_to_end(s, "r1", Verdict::Pass, at(16)).await;
    assert_eq!(s.health_step(&by("server", at(17))).await.unwrap()[0].to, HealthStage::Ok);
    assert_eq!(run_to_end(s, "r1", Verdict::Pass, at(18)).await, next);
    let audit = s.audit().await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "health.step").count(), 8, "check, ok, check, repair, recheck, bad, check, ok");
}

/// A cancel of a running job: its lab host runs it until it hears of the cancel, so
/// its rig stays held (and is assigned nothing, which the lab host would refuse as
/// busy) until the lab host stops it. The lease is never renewed again (the heartbeat
/// answers it lapsed), and the rig is freed by the run's end, by a heartbeat that no
/// longer names the lease, or by the reaper when the lab host went silent.
async fn a_cancelled_running_job_holds_its_rig_until_its_lab_host_stops_it(f: Fixture) {
    let s = &f.store;
    lab(s, LAB, &[("r1", &[])], T0).await;
    let host = LabHostId(LAB.into());
    let run = async |t: u64| {
        let j = s.submit(&job(on("r1")), &by("tess", at(t))).await.unwrap().job;
        let claimed = s.claim(&Ctx::server(at(t + 1))).await.unwrap().remove(0);
        s.job_started(j, Attempt(1), claimed.fencing, &format!("run-{t}"), &by(LAB, at(t + 2))).await.unwrap();
        assert_eq!(s.cancel(j, "wrong rig", &by("tess", at(t + 3))).await.unwrap(), JobState::Running);
        assert_eq!(rig_state(s, "r1").await, RigState::Running, "held while its lab host runs it");
        assert_consistent(s).await;
        (j, claimed.fencing)
    };

    // Ended by its lab host.
    let (a, fa) = run(10).await;
    let waiting = s.submit(&job(on("r1")), &by("tess", at(20))).await.unwrap().job;
    assert!(s.claim(&Ctx::server(at(21))).await.unwrap().is_empty(), "nothing for a rig still running a cancelled job");
    let answer = s.heartbeat(&host, &[fa], &by(LAB, at(22))).await.unwrap();
    assert!(answer.renewed.is_empty() && answer.lapsed.len() == 1, "{answer:?}");
    assert!(answer.lapsed[0].reason.contains("is cancelled"), "{answer:?}");
    assert_eq!(s.job_ended(a, Attempt(1), fa, &by(LAB, at(23))).await.unwrap(), JobState::Cancelled);
    assert_eq!(rig_state(s, "r1").await, RigState::Idle);
    s.cancel(waiting, "", &by("tess", at(24))).await.unwrap();

    // A heartbeat that no longer names it: its lab host stopped it.
    let (_, fb) = run(30).await;
    s.heartbeat(&host, &[fb], &by(LAB, at(40))).await.unwrap();
    assert_eq!(rig_state(s, "r1").await, RigState::Running);
    s.heartbeat(&host, &[], &by(LAB, at(41))).await.unwrap();
    assert_eq!(rig_state(s, "r1").await, RigState::Idle);

    // Its lab host went silent: the reaper frees the rig; the job stays cancelled.
    let (c, _) = run(50).await;
    let reaped = s.reap(&Ctx::server(at(60).plus(JOB_LOST_AFTER))).await.unwrap();
    assert!(reaped.lost.is_empty(), "a cancelled job is not lost: {reaped:?}");
    assert_eq!((rig_state(s, "r1").await, job_state(s, c).await), (RigState::Idle, JobState::Cancelled));
    assert!(s.leases().await.unwrap().is_empty());
    assert_consistent(s).await;
}

/// A technician's power or console request: taken only from the holder of the rig's
/// live reservation, under its token, for a device the rig has; delivered to its lab
/// host until answered or expired, answered once (a resend or a late answer changes
/// nothing), closed once; every step audited, refusals included.
async fn bench_operations_need_the_live_reservation_and_are_answered_once(f: Fixture) {
    use proofrig_proto::labhost::{BenchAction, BenchOpAnswer, BenchOutcome};
    use proofrig_server::store::bench::{BenchAnswer, OP_ANSWER_LIMIT};
    let s = &f.store;
    let lab_a = LabHostId(LAB.into());
    lab(s, LAB, &[("r1", &[])], T0).await;
    let refused = s.bench_request("r1", "ru1", BenchAction::PowerOff, &by("tom", at(1))).await.unwrap_err();
    assert!(matches!(&refused, StoreError::Conflict(m) if m.contains("not reserved")), "{refused}");
    let hour = Duration::from_secs(3600);
    let r = s.reserve("r1", Some(hour), &by("tom", at(2))).await.unwrap();
    let refused = s.bench_request("r1", "ru1", BenchAction::PowerOff, &by("ann", at(3))).await.unwrap_err();
    assert!(refused.to_string().contains("reserved by tom"), "{refused}");
    let unknown = s.bench_request("r1", "ru7", BenchAction::PowerOff, &by("tom", at(3))).await.unwrap_err();
    assert!(matches!(&unknown, StoreError::NotFound(m) if m.contains("ru1")), "{unknown}");

    let op = s.bench_request("r1", "ru1", BenchAction::PowerCycle, &by("tom", at(4))).await.unwrap();
    assert_eq!((op.fencing, op.labhost.clone(), op.by.as_str(), op.answer.clone()), (r.fencing, lab_a.clone(), "tom", None));
    assert_eq!(s.bench_unanswered(&lab_a, at(5)).await.unwrap().iter().map(|o| o.op).collect::<Vec<_>>(), [op.op]);
    assert!(s.bench_unanswered(&LabHostId("lab-b".into()), at(5)).await.unwrap().is_empty(), "only its own lab host gets it");
    let done = BenchOpAnswer { op: op.op, fencing: r.fencing, outcome: BenchOutcome::Done { detail: "power on".into() } };
    // Another lab host, or another token, cannot answer it.
    assert!(s.bench_answer(&LabHostId("lab-b".into()), &done, &by("lab-b", at(6))).await.is_err());
    let forged = BenchOpAnswer { fencing: FencingToken(r.fencing.0 + 1), ..done.clone() };
    assert!(s.bench_answer(&lab_a, &forged, &by(LAB, at(6))).await.is_err());
    let answered = s.bench_answer(&lab_a, &done, &by(LAB, at(7))).await.unwrap();
    assert_eq!(answered.answer, Some((at(7), BenchAnswer::Answered(BenchOutcome::Done { detail: "power on".into() }))));
    let failed = BenchOpAnswer { outcome: BenchOutcome::Failed { reason: "late".into() }, ..done.clone() };
    assert_eq!(s.bench_answer(&lab_a, &failed, &by(LAB, at(8))).await.unwrap().answer, answered.answer, "answered once");
    assert!(s.bench_unanswered(&lab_a, at(9)).await.unwrap().is_empty());
    assert!(!s.bench_expire(op.op, &by("tom", at(10))).await.unwrap(), "an answered request does not expire");

    // Nobody answers a console request: past the limit it is no longer sent, and expires once.
    let console = s.bench_request("r1", "ru1", BenchAction::Console, &by("tom", at(20))).await.unwrap();
    let past = at(20).plus(OP_ANSWER_LIMIT + Duration::from_millis(1));
    assert!(s.bench_unanswered(&lab_a, past).await.unwrap().is_empty(), "a request past its limit is not delivered");
    assert!(s.bench_expire(console.op, &by("tom", past)).await.unwrap());
    assert!(!s.bench_expire(console.op, &by("tom", past)).await.unwrap());
    let late = BenchOpAnswer { op: console.op, fencing: r.fencing, outcome: BenchOutcome::Done { detail: "open".into() } };
    let kept = s.bench_answer(&lab_a, &late, &by(LAB, past)).await.unwrap();
    assert_eq!(kept.answer.map(|(_, a)| a), Some(BenchAnswer::Expired), "a late answer changes nothing");
    s.bench_close(console.op, "closed by tom", &by("tom", past)).await.unwrap();
    s.bench_close(console.op, "again", &by("tom", past)).await.unwrap();
    assert_eq!(s.bench_op(console.op).await.unwrap().unwrap().closed, Some((past, "closed by tom".to_string())));

    // The reservation is what keeps a console open.
    assert_eq!(s.bench_lease_lost("r1", "tom", r.fencing, at(30)).await.unwrap(), None);
    assert!(s.bench_lease_lost("r1", "tom", r.fencing, at(2).plus(hour)).await.unwrap().unwrap().contains("expired"));
    s.release("r1", &by("tom", at(31))).await.unwrap();
    assert!(s.bench_lease_lost("r1", "tom", r.fencing, at(32)).await.unwrap().unwrap().contains("ended"));
    let ann = s.reserve("r1", Some(hour), &by("ann", at(33))).await.unwrap();
    assert!(s.bench_lease_lost("r1", "tom", r.fencing, at(34)).await.unwrap().unwrap().contains("passed to ann"));
    assert_eq!(s.bench_lease_lost("r1", "ann", ann.fencing, at(34)).await.unwrap(), None);

    let recent = s.bench_recent("r1", 10).await.unwrap();
    assert_eq!(recent.iter().map(|o| o.op).collect::<Vec<_>>(), [console.op, op.op], "newest first");
    let audit = s.audit().await.unwrap();
    let bench: Vec<(&str, &str)> = audit
        .iter()
        .filter(|a| a.action.starts_with("bench.") || a.action == "console.close")
        .map(|a| (a.action.as_str(), a.who.as_str()))
        .collect();
    assert_eq!(
        bench,
        [
            ("bench.refused", "tom"),
            ("bench.refused", "ann"),
            ("bench.request", "tom"),
            ("bench.done", LAB),
            ("bench.request", "tom"),
            ("bench.expired", "tom"),
            ("console.close", "tom"),
        ]
    );
}
