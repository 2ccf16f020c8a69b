//! The server's API for people and their tools (`proofrig submit`, `queue`, `rigs`,
//! `reserve`, ...): what they send and what they get back, as JSON.
//!
//! Kept beside the lab host's messages because they share their vocabulary (jobs,
//! attempts, rigs and their states, selectors, fencing tokens), and the scheduler
//! works on these very types. Unlike the lab host's messages, requests here refuse
//! unknown fields: a person's typo (`priorty: 90`) must be an error, not a job
//! queued at the default priority.

use std::collections::{BTreeMap, BTreeSet};

use proofrig_verdict::Verdict;
use serde::{Deserialize, Serialize};

use crate::advert::RigSummary;
use crate::files::{BundleFile, PlanFile};
use crate::ids::{Attempt, FencingToken, JobId, LabHostId, Priority, UnixMillis};
use crate::labhost::BundleCheck;

/// Which rigs may run a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RigSelector {
    /// This rig and no other.
    Rig(String),
    /// Any rig with a device of each role and, across its devices, each tag
    /// (`{ roles: [radio-unit], tags: [lte] }`); empty sets ask nothing.
    Match {
        #[serde(default)]
        roles: BTreeSet<String>,
        #[serde(default)]
        tags: BTreeSet<String>,
    },
}

impl RigSelector {
    /// Whether a rig with this name, roles and tags satisfies the selector.
    pub fn matches(&self, rig: &str, roles: &BTreeSet<String>, tags: &BTreeSet<String>) -> bool {
        match self {
            RigSelector::Rig(name) => name == rig,
            RigSelector::Match { roles: want_roles, tags: want_tags } => want_roles.is_subset(roles) && want_tags.is_subset(tags),
        }
    }

    /// [`RigSelector::matches`] for an advertised rig.
    pub fn matches_rig(&self, rig: &RigSummary) -> bool {
        self.matches(&rig.rig, &rig.roles, &rig.tags)
    }
}

impl std::fmt::Display for RigSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |set: &BTreeSet<String>| set.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
        match self {
            RigSelector::Rig(name) => write!(f, "rig {name}"),
            RigSelector::Match { roles, tags } if roles.is_empty() && tags.is_empty() => f.write_str("any rig"),
            RigSelector::Match { roles, tags } if tags.is_empty() => write!(f, "a rig with roles [{}]", list(roles)),
            RigSelector::Match { roles, tags } if roles.is_empty() => write!(f, "a rig with tags [{}]", list(tags)),
            RigSelector::Match { roles, tags } => write!(f, "a rig with roles [{}] and tags [{}]", list(roles), list(tags)),
        }
    }
}

/// `POST /api/jobs`: run these plans on a rig the selector allows.
///
/// The server checks each plan as `proofrig plan check` does (a malformed plan is
/// refused with the same file:line:column error) and queues the job; it answers
/// [`Submitted`]. Submitting the same plans twice makes two jobs: evidence is never
/// de-duplicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    pub plans: Vec<PlanFile>,
    pub target: RigSelector,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub device: Option<String>,
    /// Not before this time (the server's clock); now when absent.
    #[serde(default)]
    pub not_before: Option<UnixMillis>,
}

/// The answer to [`SubmitJob`]. `warnings` says when no rig could run the job now
/// or ever (no rig matches, or only retired ones): it is queued all the same, but
/// the person who submitted it learns at once instead of waiting on a silent queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub job: JobId,
    pub warnings: Vec<String>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    /// Given to a lab host, not yet accepted.
    Assigned,
    Running,
    /// Ended on the lab host; its bundle is on the way.
    Uploading,
    /// Its bundle arrived and is being verified.
    Verifying,
    /// Verified (or flagged): see the job's verdict and check.
    Done,
    /// Its lab host went silent past the lost deadline; INFRA.
    Lost,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Assigned,
        JobState::Running,
        JobState::Uploading,
        JobState::Verifying,
        JobState::Done,
        JobState::Lost,
        JobState::Cancelled,
    ];

    /// The name the API, the store and the command line use (as serde writes it).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Assigned => "assigned",
            JobState::Running => "running",
            JobState::Uploading => "uploading",
            JobState::Verifying => "verifying",
            JobState::Done => "done",
            JobState::Lost => "lost",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The attempt has ended (done, lost or cancelled): nothing more happens to it.
    pub fn is_over(self) -> bool {
        matches!(self, JobState::Done | JobState::Lost | JobState::Cancelled)
    }
}

/// A device a run ran on, as its rig file declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub device: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// As declared in the rig.
    pub firmware: Option<String>,
    /// What the device itself reported, where a step read it (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
}

/// A job as `proofrig queue` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub job: JobId,
    pub attempt: Attempt,
    pub retry_of: Option<Attempt>,
    pub state: JobState,
    pub priority: Priority,
    pub target: RigSelector,
    pub plans: Vec<String>,
    pub submitted_by: String,
    pub submitted_at: UnixMillis,
    /// The rig it was assigned to, once it was.
    pub rig: Option<String>,
    pub run_id: Option<String>,
    /// The verified verdict, once the bundle verified.
    pub verdict: Option<Verdict>,
    /// The devices its verified run ran on (empty until its bundle verified).
    #[serde(default)]
    pub devices: Vec<DeviceView>,
    /// How long its verified run ran, in milliseconds.
    #[serde(default)]
    pub run_ms: Option<u64>,
}

/// A rig's state on the server. Only `Idle` rigs take queued jobs (and `Reserved`
/// ones take their holder's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RigState {
    Idle,
    /// Held by a person's reservation.
    Reserved,
    Running,
    /// Taken out of service by a technician.
    Maintenance,
    /// Its health check failed, and the repair (a power cycle) did not help.
    Bad,
    /// Its lab host is silent, or no longer advertises it.
    Offline,
    /// Gone for good; kept for the record of what ran on it.
    Retired,
}

impl RigState {
    pub const ALL: [RigState; 7] =
        [RigState::Idle, RigState::Reserved, RigState::Running, RigState::Maintenance, RigState::Bad, RigState::Offline, RigState::Retired];

    /// The name the API, the store and the command line use (as serde writes it).
    pub fn name(self) -> &'static str {
        match self {
            RigState::Idle => "idle",
            RigState::Reserved => "reserved",
            RigState::Running => "running",
            RigState::Maintenance => "maintenance",
            RigState::Bad => "bad",
            RigState::Offline => "offline",
            RigState::Retired => "retired",
        }
    }

    pub fn parse(name: &str) -> Option<RigState> {
        RigState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A rig as `proofrig rigs` lists it. Every change of `state` is recorded with its
/// reason, time and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RigView {
    pub summary: RigSummary,
    pub labhost: LabHostId,
    pub labhost_online: bool,
    pub state: RigState,
    pub reason: String,
    pub since: UnixMillis,
    pub reservation: Option<ReservationView>,
}

/// `POST /api/rigs/{rig}/state`: a technician takes a rig out of service
/// (`maintenance`, `retired`, `bad`) or puts it back (`idle`), saying why. `reserved`
/// and `running` follow leases only; `offline` follows the lab host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRigState {
    pub state: RigState,
    pub reason: String,
}

/// `PUT /api/rigs/{rig}/health`: the plan that checks the rig is fit (e.g. log in on
/// each console, run a command over SSH), and how often it runs. It runs that often
/// while the rig is idle, and before the next job after a job on the rig was lost or
/// ended in ERROR or INFRA. A check that is not PASS triggers one repair (a power
/// cycle of the rig's devices) and a second check; a second failure marks the rig bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHealth {
    pub plan: PlanFile,
    pub every_minutes: u32,
}

/// Where a rig's health check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStage {
    /// Passed (or not run yet); next at `next_at`.
    Ok,
    /// The check runs.
    Check,
    /// The check failed; the repair (power cycle) runs.
    Repair,
    /// The check after the repair runs.
    Recheck,
    /// The check failed again after the repair: the rig is bad until a technician puts
    /// it back in service, which checks it again first.
    Bad,
}

/// A rig's health check as `GET /api/rigs/{rig}/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    pub rig: String,
    /// The health-check plan's file name.
    pub plan: String,
    pub every_minutes: u64,
    pub next_at: UnixMillis,
    pub stage: HealthStage,
    /// The check or repair job running now.
    pub job: Option<JobId>,
    /// What the last check or repair found.
    pub last_result: String,
    pub set_by: String,
}

/// `POST /api/rigs/{rig}/reservation`: hold the rig for manual work, for
/// `minutes` ([`crate::timing::RESERVATION_DEFAULT`] when absent), or extend one's
/// own reservation, up to the server's limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    #[serde(default)]
    pub minutes: Option<u32>,
}

/// A reservation: who holds the rig until when, under which fencing token (power and
/// console actions carry it; the lab host refuses them once a newer one exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    pub rig: String,
    pub holder: String,
    pub until: UnixMillis,
    pub fencing: FencingToken,
}

/// Every refused API request: an HTTP status and this body. Nothing stored changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, for scripts: `invalid`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `too_large`, `busy`.
    pub code: String,
    /// For people: the file, field or object at fault, and what to do.
    pub message: String,
}

/// What a person may do on the server. Each API route names the roles it admits,
/// and the server checks them itself on every request (`proofrig_server::api::ROUTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Rigs, power, console, reservations, scheduling.
    Technician,
    /// Plans and submitting runs.
    Tester,
    /// Reviewing and sign-off (the dashboard's issue); reads the queue and rigs meanwhile.
    Manager,
    /// Users and lab hosts, and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Technician, Role::Tester, Role::Manager, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Technician => "technician",
            Role::Tester => "tester",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// The role called `name`; an unknown one is an error naming the four.
    pub fn parse(name: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| format!("unknown role `{name}`: use technician, tester, manager or admin"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `POST /api/users` (admin): a new person. The answer is a [`TokenCreated`], their
/// first API token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    /// For the dashboard's login (next issue); hashed with argon2, never stored as given.
    #[serde(default)]
    pub password: Option<String>,
}

/// A user as `GET /api/users` lists them (no password, no token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub created_at: UnixMillis,
    pub created_by: String,
}

/// `POST /api/users/{user}/tokens` (admin): another API token for a user, valid for
/// `days` (90 when absent, at most 365).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[serde(default)]
    pub days: Option<u32>,
}

/// An API token, shown once: the server keeps only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub user: String,
    pub role: Role,
    pub token: String,
    pub expires_at: UnixMillis,
}

/// `POST /api/labhosts/enrollments` (admin): a one-time token with which the lab
/// host `labhost` enrolls, valid for `minutes` (60 when absent, at most a week).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollment {
    pub labhost: String,
    #[serde(default)]
    pub minutes: Option<u32>,
}

/// An enrollment token, shown once: the server keeps only its SHA-256, and it works once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentCreated {
    pub labhost: String,
    pub token: String,
    pub expires_at: UnixMillis,
}

/// `POST /api/jobs/{job}/cancel`: why (kept in the job and the audit log).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/schedules` (technician, tester): submit `job` again and again, whenever
/// `cron` (five fields: minute hour day-of-month month day-of-week) fires on the wall
/// clock of `time_zone` (an IANA name: `Europe/Berlin`, `UTC`). At most every five
/// minutes. Each run is a job of its own, submitted as its creator, checked as
/// `POST /api/jobs` checks one. The answer is its [`ScheduleView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    pub job: SubmitJob,
    pub cron: String,
    pub time_zone: String,
}

/// A recurring run as `GET /api/schedules` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub id: u64,
    pub cron: String,
    pub time_zone: String,
    /// When it submits its next job (the server's clock); `None`: never again.
    pub next_at: Option<UnixMillis>,
    pub plans: Vec<String>,
    pub target: RigSelector,
    pub created_by: String,
    pub created_at: UnixMillis,
}

/// One record of the audit log as `GET /api/audit` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    pub id: u64,
    pub at: UnixMillis,
    pub who: String,
    /// The peer address the request came from (never a forwarded-for header).
    pub origin: String,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
}

/// `GET /api/runs/{run}`: a stored bundle as the server received it, for `proofrig
/// fetch`. The receipt's statements (who ran it where, when it arrived, what verifying
/// found), the receipt itself as the server signed it, and the bundle's files, each
/// with its length and SHA-256 (`GET /api/runs/{run}/files/{path}` serves each), so
/// the client checks every byte it is sent.
///
/// A flagged bundle (its check is [`BundleCheck::Flagged`]) is never shown as a
/// result: the server refuses it (409 `flagged`, naming the reason) except to an
/// admin who asks for it with `?flagged=true`, to inspect it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub run_id: String,
    pub job: JobId,
    pub attempt: Attempt,
    pub lab_host: String,
    /// Key id of the key the lab host enrolled with: the bundle's signer must be it.
    pub lab_host_key: String,
    /// RFC 3339, UTC.
    pub received_at: String,
    pub check: BundleCheck,
    /// A verified bundle's files as its manifest lists them, with `manifest.json` and
    /// the attestation; a flagged one's as stored (its manifest is not trusted to
    /// describe it).
    pub files: Vec<BundleFile>,
    /// The receipt as stored: a DSSE envelope signed by the server's key
    /// (`<state-dir>/server.pub`).
    pub receipt: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_the_serde_names_and_parse_back() {
        for s in JobState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert_eq!(JobState::parse(s.name()), Some(s));
        }
        for s in RigState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert_eq!(RigState::parse(s.name()), Some(s));
        }
        assert_eq!(RigState::parse("broken"), None);
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: T) {
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), value, "{json}");
    }

    #[test]
    fn a_selector_matches_by_name_or_by_roles_and_tags() {
        let (roles, tags) = (set(&["radio-unit", "core"]), set(&["lte", "arm"]));
        assert!(RigSelector::Rig("bench-3".into()).matches("bench-3", &roles, &tags));
        assert!(!RigSelector::Rig("bench-3".into()).matches("bench-4", &roles, &tags));
        let m = |r: &[&str], t: &[&str]| RigSelector::Match { roles: set(r), tags: set(t) };
        assert!(m(&["radio-unit"], &["lte"]).matches("x", &roles, &tags));
        assert!(m(&[], &[]).matches("x", &roles, &tags));
        assert!(!m(&["radio-unit"], &["5g"]).matches("x", &roles, &tags));
        assert!(!m(&["gnb"], &[]).matches("x", &roles, &tags));
        assert_eq!(m(&["core", "gnb"], &["lte"]).to_string(), "a rig with roles [core, gnb] and tags [lte]");
        assert_eq!(m(&[], &[]).to_string(), "any rig");
        assert_eq!(RigSelector::Rig("bench-3".into()).to_string(), "rig bench-3");
    }

    #[test]
    fn a_submission_with_a_typo_is_refused_and_defaults_fill_the_rest() {
        let json = r#"{"plans":[{"name":"a.yaml","bytes":"aWQ6IHgK"}],"target":{"match":{"tags":["lte"]}}}"#;
        let job: SubmitJob = serde_json::from_str(json).unwrap();
        assert_eq!(job.priority, Priority::NORMAL);
        assert_eq!(job.target, RigSelector::Match { roles: BTreeSet::new(), tags: set(&["lte"]) });
        assert_eq!(job.plans[0].bytes, b"id: x\n");
        let typo = json.replace("\"target\"", "\"priorty\":90,\"target\"");
        let err = serde_json::from_str::<SubmitJob>(&typo).unwrap_err().to_string();
        assert!(err.contains("priorty"), "{err}");
        let high = json.replace("\"target\"", "\"priority\":101,\"target\"");
        assert!(serde_json::from_str::<SubmitJob>(&high).unwrap_err().to_string().contains("priority 101"));
    }

    #[test]
    fn a_schedule_with_a_typo_is_refused() {
        let json =
            r#"{"job":{"plans":[{"name":"a.yaml","bytes":"aWQ6IHgK"}],"target":{"rig":"bench-3"}},"cron":"30 2 * * *","time_zone":"UTC"}"#;
        let schedule: NewSchedule = serde_json::from_str(json).unwrap();
        assert_eq!((schedule.cron.as_str(), schedule.time_zone.as_str()), ("30 2 * * *", "UTC"));
        round_trip(schedule);
        let typo = json.replace("time_zone", "timezone");
        let err = serde_json::from_str::<NewSchedule>(&typo).unwrap_err().to_string();
        assert!(err.contains("timezone"), "{err}");
    }

    #[test]
    fn every_api_type_round_trips_through_json() {
        round_trip(SubmitJob {
            plans: vec![PlanFile { name: "a.yaml".into(), bytes: b"\0x".to_vec() }],
            target: RigSelector::Rig("bench-3".into()),
            priority: Priority::HIGHEST,
            params: BTreeMap::from([("k".to_string(), serde_json::json!([1, 2]))]),
            device: Some("ru1".into()),
            not_before: Some(UnixMillis(5)),
        });
        round_trip(Submitted { job: JobId(1), warnings: vec!["no rig matches".into()] });
        round_trip(JobView {
            job: JobId(1),
            attempt: Attempt(1),
            retry_of: None,
            state: JobState::Verifying,
            priority: Priority::LOWEST,
            target: RigSelector::Match { roles: set(&["core"]), tags: BTreeSet::new() },
            plans: vec!["a.yaml".into()],
            submitted_by: "alice".into(),
            submitted_at: UnixMillis(1),
            rig: Some("bench-3".into()),
            run_id: Some("r1".into()),
            verdict: Some(Verdict::Inconclusive),
            devices: vec![DeviceView {
                device: "ru1".into(),
                vendor: Some("Acme".into()),
                model: None,
                firmware: Some("1.0".into()),
                reported: Some("RU-9 fw 1.0.3".into()),
            }],
            run_ms: Some(42_000),
        });
        let reservation = ReservationView { rig: "bench-3".into(), holder: "bob".into(), until: UnixMillis(9), fencing: FencingToken(3) };
        round_trip(RigView {
            summary: RigSummary {
                rig: "bench-3".into(),
                sha256: "00".into(),
                devices: set(&["ru1"]),
                roles: set(&["core"]),
                tags: set(&[]),
            },
            labhost: LabHostId("lab-a".into()),
            labhost_online: false,
            state: RigState::Reserved,
            reason: "reserved by bob".into(),
            since: UnixMillis(2),
            reservation: Some(reservation.clone()),
        });
        round_trip(reservation);
        round_trip(Reserve { minutes: Some(90) });
        round_trip(NewUser { name: "tess".into(), role: Role::Tester, password: None });
        round_trip(TokenCreated { user: "tess".into(), role: Role::Tester, token: "t".into(), expires_at: UnixMillis(3) });
        for role in Role::ALL {
            round_trip(role);
            assert_eq!(Role::parse(role.name()), Ok(role));
        }
        assert!(Role::parse("root").unwrap_err().contains("unknown role `root`"));
        round_trip(ApiError { code: "forbidden".into(), message: "tester may not reserve".into() });
        round_trip(ScheduleView {
            id: 4,
            cron: "30 2 * * *".into(),
            time_zone: "Europe/Berlin".into(),
            next_at: Some(UnixMillis(7)),
            plans: vec!["a.yaml".into()],
            target: RigSelector::Rig("bench-3".into()),
            created_by: "tess".into(),
            created_at: UnixMillis(1),
        });

        round_trip(RunView {
            run_id: "r1".into(),
            job: JobId(4),
            attempt: Attempt(2),
            lab_host: "lab-a".into(),
            lab_host_key: "ed25519:ab".into(),
            received_at: "2026-12-05T09:00:00Z".into(),
            check: BundleCheck::Flagged { reason: "Tampered: journal.jsonl".into() },
            files: vec![BundleFile { path: "inputs/rig.yaml".into(), len: 3, sha256: "00".repeat(32) }],
            receipt: serde_json::json!({ "payloadType": "application/vnd.proofrig.receipt+json" }),
        });
        for state in [
            JobState::Queued,
            JobState::Assigned,
            JobState::Running,
            JobState::Uploading,
            JobState::Done,
            JobState::Lost,
            JobState::Cancelled,
        ] {
            round_trip(state);
        }
        for state in [RigState::Idle, RigState::Running, RigState::Maintenance, RigState::Bad, RigState::Offline, RigState::Retired] {
            round_trip(state);
        }
    }
}
