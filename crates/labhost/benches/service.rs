//! The lab service under load (issue 14's two benchmarks), on SQLite and PostgreSQL.
//!
//! - **queue**: how long a rig that became idle waits for its next job when 10,000
//!   jobs are queued. One lab host with a handful of rigs, every rig running; then,
//!   over and over, one rig's job ends (`Store::job_ended`, as the lab host's JobEnded
//!   does) and the server's own pass runs (`service::pass`, which the server runs on
//!   every job end: reap, fire due schedules, claim, wake), and we time it until its
//!   claim of that rig has committed. One job is submitted after each sample
//!   (untimed), so the queue stays at its depth. Measured at several depths (100,
//!   1,000, 10,000) to show how the pass grows with the queue, with the pass split
//!   into its parts and the pure scheduler timed alone on the same number of jobs
//!   (with the bench's 8 rigs, and with 500).
//! - **fleet**: 50 lab hosts with 10 rigs each (500 rigs) against one server. The
//!   server is `proofrig serve` (release binary, plain HTTP on 127.0.0.1), a process
//!   of its own, so its memory is its own: its peak resident memory (VmHWM) is the
//!   figure (goal < 1 GiB). The lab hosts are `proofrig_labhost::agent::run` in this
//!   process (state directories of their own, enrolled with tokens minted through the
//!   API, the real 10 s heartbeat), running a short plan that needs no device. A
//!   feeder keeps the queue above the number of rigs (submitting through the API as a
//!   tester), so every freed rig finds a job, or submits at a fixed `--rate`. The
//!   server's peaks (VmHWM, open descriptors) are sampled every second through /proc
//!   handles kept open. Claims per second: jobs assigned, and
//!   jobs done (bundle uploaded and verified), per second over a steady window after a
//!   warm-up. The queue and job states are read from the database directly by this
//!   process (one `GROUP BY` per second), not through the server.
//!
//! Run: `cargo build --release -p proofrig --bin proofrig` first (the server binary),
//! then `cargo bench -p proofrig-labhost --bench service [-- OPTIONS]`:
//! `--quick` (fewer samples, depths 100 and 1,000, a 30 s window), `--only queue|fleet`,
//! `--db sqlite|postgres|both` (default both), `--depths 100,1000,10000`, `--samples N`
//! (per depth, default 200), `--window SECS` (default 120), `--hosts N` and
//! `--rigs-per-host N` (default 50 and 10), `--rate JOBS_PER_S` (default: keep the
//! queue full), `--warmup SECS` (at most; default 90), `PROOFRIG_BIN=path` for the
//! server binary, `RUST_LOG=warn` to see the lab hosts' warnings. The server's log is
//! kept as `$TMPDIR/proofrig-bench-fleet-<store>.log`.
//! Without `--bench` (which `cargo bench` passes) it does nothing, so a
//! `cargo test --all-targets` only compiles it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proofrig_labhost::agent::{self, AgentConfig, ServerAddress};
use proofrig_proto::advert::RigSummary;
use proofrig_proto::api::{EnrollmentCreated, NewEnrollment, NewUser, RigSelector, RigState, RigView, Role, SubmitJob, TokenCreated};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{JobId, LabHostId, Priority, UnixMillis};
use proofrig_server::clock::Clock;
use proofrig_server::labwire::Hub;
use proofrig_server::scheduler::{self, QueuedJob, RigSlot};
use proofrig_server::service;
use proofrig_server::store::{Claimed, Ctx, NewLabHost, Store, StoreConfig};
use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use proofrig_testpeers::postgres::Postgres;

// ---- options ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    only: Option<String>,
    backends: Vec<Backend>,
    depths: Vec<usize>,
    samples: usize,
    window: Duration,
    hosts: usize,
    rigs_per_host: usize,
    /// Jobs submitted per second at most (fleet); `None`: keep the queue full.
    rate: Option<f64>,
    /// Fleet warm-up: at most this long, until every rig ran about one job.
    warmup: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            only: None,
            backends: vec![Backend::Sqlite, Backend::Postgres],
            depths: if quick { vec![100, 1_000] } else { vec![100, 1_000, 10_000] },
            samples: if quick { 50 } else { 200 },
            window: Duration::from_secs(if quick { 30 } else { 120 }),
            hosts: 50,
            rigs_per_host: 10,
            rate: None,
            warmup: Duration::from_secs(90),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().cloned().unwrap_or_else(|| panic!("{name} needs a value"));
            match arg.as_str() {
                "--only" => o.only = Some(value("--only")),
                "--db" => {
                    o.backends = match value("--db").as_str() {
                        "sqlite" => vec![Backend::Sqlite],
                        "postgres" => vec![Backend::Postgres],
                        "both" => vec![Backend::Sqlite, Backend::Postgres],
                        other => panic!("--db {other}: say sqlite, postgres or both"),
                    }
                }
                "--depths" => o.depths = value("--depths").split(',').map(|d| d.trim().parse().expect("--depths: numbers")).collect(),
                "--samples" => o.samples = value("--samples").parse().expect("--samples: a number"),
                "--window" => o.window = Duration::from_secs(value("--window").parse().expect("--window: seconds")),
                "--hosts" => o.hosts = value("--hosts").parse().expect("--hosts: a number"),
                "--warmup" => o.warmup = Duration::from_secs(value("--warmup").parse().expect("--warmup: seconds")),
                "--rate" => o.rate = Some(value("--rate").parse().expect("--rate: jobs per second")),
                "--rigs-per-host" => o.rigs_per_host = value("--rigs-per-host").parse().expect("--rigs-per-host: a number"),
                _ => {}
            }
        }
        o
    }

    fn runs(&self, bench: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == bench)
    }
}

// ---- figures -----------------------------------------------------------------------

/// Nearest-rank percentile of durations, in milliseconds.
fn pct(samples: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn elapsed<T>(start: Instant, value: T) -> (Duration, T) {
    (start.elapsed(), value)
}

// ---- bench 1: idle rig to next claim with a deep queue -------------------------------

mod queue {
    use super::*;

    /// Rigs on the one lab host; every job's selector matches half of them.
    pub const RIGS: usize = 8;
    const LABHOST: &str = "lab-q";
    const TAGS: [&str; 4] = ["lte", "5g", "site-a", "site-b"];
    const PRIORITIES: [u8; 5] = [10, 30, 50, 70, 90];

    fn rig_name(i: usize) -> String {
        format!("bench-{i:02}")
    }

    fn rig_tags(i: usize) -> BTreeSet<String> {
        [if i.is_multiple_of(2) { "lte" } else { "5g" }, if i < RIGS / 2 { "site-a" } else { "site-b" }]
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    /// The n-th job: a few plan bytes, one tag of four (four rigs of eight match), a
    /// spread of priorities.
    fn job(n: u64) -> SubmitJob {
        let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        SubmitJob {
            plans: vec![PlanFile { name: "p.yaml".into(), bytes: b"plan: p\n".to_vec() }],
            target: RigSelector::Match { roles: ["radio-unit".to_string()].into(), tags: [TAGS[(mix % 4) as usize].to_string()].into() },
            priority: Priority::new(PRIORITIES[(mix / 4 % 5) as usize]).expect("0-100"),
            params: BTreeMap::new(),
            device: None,
            not_before: None,
        }
    }

    /// Per depth: what was measured.
    pub struct DepthResult {
        pub depth: usize,
        /// Job end committed to the claim of that rig committed (the server's pass).
        pub pass: Vec<Duration>,
        /// The job end itself (the rig becomes idle when it commits).
        pub ended: Vec<Duration>,
        /// The pass's parts, timed separately on further samples.
        pub reap: Vec<Duration>,
        pub fire: Vec<Duration>,
        pub claim: Vec<Duration>,
        /// `scheduler::schedule` alone on `depth` jobs and the rigs.
        pub schedule: Vec<Duration>,
        /// The same with 500 rigs (the fleet's), for scale.
        pub schedule_500: Vec<Duration>,
    }

    struct Bench {
        store: Store,
        hub: Hub,
        clock: Clock,
        host: LabHostId,
        /// The job each rig runs.
        running: BTreeMap<String, Claimed>,
        submitted: u64,
        last_beat: Instant,
    }

    impl Bench {
        fn as_host(&self) -> Ctx {
            Ctx::new(format!("labhost:{LABHOST}"), "127.0.0.1:1", self.clock.now())
        }

        async fn setup(store: Store) -> Bench {
            let clock = Clock::default();
            let host = LabHostId(LABHOST.into());
            let admin = Ctx::new("admin", "127.0.0.1:1", clock.now());
            let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n".to_string();
            store.enroll_labhost(&NewLabHost { id: host.clone(), name: LABHOST.into(), public_key_pem: pem }, &admin).await.unwrap();
            let rigs: Vec<RigSummary> = (0..RIGS)
                .map(|i| RigSummary {
                    rig: rig_name(i),
                    sha256: format!("{i:0>64}"),
                    devices: ["ru1".to_string()].into(),
                    roles: ["radio-unit".to_string()].into(),
                    tags: rig_tags(i),
                })
                .collect();
            let mut bench =
                Bench { store, hub: Hub::default(), clock, host, running: BTreeMap::new(), submitted: 0, last_beat: Instant::now() };
            bench.store.advertise(&bench.host, &rigs, &bench.as_host()).await.unwrap();
            bench.heartbeat().await;
            bench
        }

        async fn heartbeat(&mut self) {
            let leases: Vec<_> = self.running.values().map(|c| c.fencing).collect();
            self.store.heartbeat(&self.host, &leases, &self.as_host()).await.unwrap();
            self.last_beat = Instant::now();
        }

        async fn submit(&mut self, n: usize) {
            let started = Instant::now();
            for k in 0..n {
                self.submitted += 1;
                let tess = Ctx::new("tess", "127.0.0.1:1", self.clock.now());
                self.store.submit(&job(self.submitted), &tess).await.unwrap();
                if n >= 2_000 && (k + 1) % 2_000 == 0 {
                    eprintln!("    submitted {} of {n} ({:.1} s)", k + 1, started.elapsed().as_secs_f64());
                }
                if self.last_beat.elapsed() > Duration::from_secs(2) {
                    self.heartbeat().await;
                }
            }
        }

        /// Fill every rig: the first pass claims one job per rig.
        async fn start_all(&mut self) {
            let done = service::pass(&self.store, &self.hub, &self.clock).await.unwrap();
            for c in done.claimed {
                self.running.insert(c.rig.clone(), c);
            }
            assert_eq!(self.running.len(), RIGS, "every rig takes a job at the start");
        }

        /// End the job of `rig`; the rig is idle once that commits.
        async fn end(&mut self, rig: &str) -> Duration {
            if self.last_beat.elapsed() > Duration::from_secs(2) {
                self.heartbeat().await;
            }
            let c = self.running.remove(rig).expect("every rig runs a job");
            let ctx = self.as_host();
            let started = Instant::now();
            self.store.job_ended(c.job, c.attempt, c.fencing, &ctx).await.unwrap();
            started.elapsed()
        }

        fn took(&mut self, rig: &str, claimed: Vec<Claimed>) {
            let [c] = claimed.as_slice() else { panic!("one idle rig ({rig}), so one claim; got {claimed:?}") };
            assert_eq!(c.rig, rig, "the idle rig is the one claimed");
            self.running.insert(c.rig.clone(), c.clone());
        }

        /// One sample: end, then the server's pass; one job submitted after (untimed).
        async fn sample(&mut self, rig: &str) -> (Duration, Duration) {
            let ended = self.end(rig).await;
            let (pass, done) = elapsed(Instant::now(), service::pass(&self.store, &self.hub, &self.clock).await.unwrap());
            self.took(rig, done.claimed);
            self.submit(1).await;
            (ended, pass)
        }

        /// One sample of the pass's parts, each timed alone.
        async fn parts(&mut self, rig: &str) -> [Duration; 3] {
            self.end(rig).await;
            let server = || Ctx::server(self.clock.now());
            let (reap, _) = elapsed(Instant::now(), self.store.reap(&server()).await.unwrap());
            let (fire, _) = elapsed(Instant::now(), self.store.fire_due(&server()).await.unwrap());
            let (claim, claimed) = elapsed(Instant::now(), self.store.claim(&server()).await.unwrap());
            self.took(rig, claimed);
            self.submit(1).await;
            [reap, fire, claim]
        }
    }

    /// The pure scheduler on `depth` queued jobs like the bench's and `rigs` rigs
    /// tagged like the bench's (half of them match each job), one rig idle.
    fn schedule_alone(depth: usize, rigs: usize, rounds: usize) -> Vec<Duration> {
        let jobs: Vec<QueuedJob> = (1..=depth as u64)
            .map(|n| {
                let j = job(n);
                QueuedJob { job: JobId(n), priority: j.priority, order: n, target: j.target, owner: "tess".into(), not_before: None }
            })
            .collect();
        let rigs: Vec<RigSlot> = (0..rigs)
            .map(|i| RigSlot {
                name: format!("bench-{i:03}"),
                roles: ["radio-unit".to_string()].into(),
                tags: rig_tags(i * RIGS / rigs),
                state: if i == 0 { RigState::Idle } else { RigState::Running },
                labhost_online: true,
                reservation: None,
            })
            .collect();
        let now = UnixMillis(1_700_000_000_000);
        (0..rounds)
            .map(|_| {
                let started = Instant::now();
                let d = scheduler::schedule(&jobs, &rigs, now);
                assert_eq!(d.picks.len(), 1);
                started.elapsed()
            })
            .collect()
    }

    pub async fn run(backend: Backend, opts: &Options) -> Vec<DepthResult> {
        let dir = tempfile::Builder::new().prefix("proofrig-bench-queue-").tempdir().unwrap();
        let store = match backend {
            Backend::Sqlite => Store::open_sqlite(&dir.path().join("store.db"), StoreConfig::default()).await.unwrap(),
            Backend::Postgres => {
                let url = tokio::task::spawn_blocking(|| Postgres::shared().create_database("bench_queue")).await.unwrap();
                Store::open_postgres(&url, StoreConfig::default()).await.unwrap()
            }
        };
        let mut b = Bench::setup(store).await;
        b.submit(RIGS).await;
        b.start_all().await;
        let rigs: Vec<String> = (0..RIGS).map(rig_name).collect();
        let mut results = Vec::new();
        let mut queued = 0usize;
        for &depth in &opts.depths {
            eprintln!("  {}: queueing up to {depth} jobs", backend.name());
            b.submit(depth.saturating_sub(queued)).await;
            queued = depth;
            for k in 0..5 {
                b.sample(&rigs[k % RIGS]).await;
            }
            let (mut pass, mut ended) = (Vec::new(), Vec::new());
            let started = Instant::now();
            for k in 0..opts.samples {
                let (e, p) = b.sample(&rigs[k % RIGS]).await;
                ended.push(e);
                pass.push(p);
                if (k + 1) % 50 == 0 {
                    eprintln!(
                        "    depth {depth}: {} samples, pass p50 {:.2} ms ({:.1} s)",
                        k + 1,
                        pct(&pass, 50.0),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            let (mut reap, mut fire, mut claim) = (Vec::new(), Vec::new(), Vec::new());
            for k in 0..(opts.samples / 4).max(10) {
                let [r, f, c] = b.parts(&rigs[k % RIGS]).await;
                reap.push(r);
                fire.push(f);
                claim.push(c);
            }
            let schedule = tokio::task::block_in_place(|| schedule_alone(depth, RIGS, 20));
            let schedule_500 = tokio::task::block_in_place(|| schedule_alone(depth, 500, 3));
            let r = DepthResult { depth, pass, ended, reap, fire, claim, schedule, schedule_500 };
            eprintln!(
                "  {} depth {depth}: idle->claimed p50 {:.2} ms p99 {:.2} ms (job end p50 {:.2} ms); reap {:.2}, fire {:.2}, claim {:.2} ms; scheduler alone {:.2} ms ({:.1} ms with 500 rigs)",
                backend.name(),
                pct(&r.pass, 50.0),
                pct(&r.pass, 99.0),
                pct(&r.ended, 50.0),
                pct(&r.reap, 50.0),
                pct(&r.fire, 50.0),
                pct(&r.claim, 50.0),
                pct(&r.schedule, 50.0),
                pct(&r.schedule_500, 50.0)
            );
            results.push(r);
        }
        b.store.close().await;
        results
    }
}

// ---- bench 2: 500 rigs against one server process ------------------------------------

mod fleet {
    use super::*;

    /// Queued jobs the feeder keeps, at least: more than the rigs, so a freed rig
    /// always finds one.
    const FEED_ABOVE: i64 = 100;

    pub struct FleetResult {
        pub rigs: usize,
        pub window: Duration,
        pub assigned_per_s: f64,
        pub done_per_s: f64,
        pub vm_hwm_kib: u64,
        pub vm_rss_end_kib: u64,
        pub server_cpu_s: f64,
        pub bench_cpu_s: f64,
        pub lost: i64,
        pub flagged: i64,
        pub done_total: i64,
        pub queued_min: i64,
        pub peak_fds: usize,
        pub server_died: bool,
        pub rate: Option<f64>,
    }

    /// The server binary: `PROOFRIG_BIN`, or `proofrig` in this bench's target directory.
    fn server_binary() -> PathBuf {
        if let Ok(path) = std::env::var("PROOFRIG_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("this bench's path");
        // target/release/deps/service-<hash> -> target/release/proofrig
        let bin = exe.parent().and_then(Path::parent).expect("target/release").join("proofrig");
        assert!(
            bin.exists(),
            "{} is missing: build the server first with `cargo build --release -p proofrig --bin proofrig` (same CARGO_TARGET_DIR), or set PROOFRIG_BIN",
            bin.display()
        );
        bin
    }

    struct ServerProc {
        child: Child,
        url: String,
        admin_token: String,
        state: tempfile::TempDir,
    }

    impl ServerProc {
        fn start(db: Option<&str>) -> ServerProc {
            let state = tempfile::Builder::new().prefix("proofrig-bench-server-").tempdir().unwrap();
            let port = proofrig_testpeers::free_port();
            let log = std::fs::File::create(state.path().join("server.log")).unwrap();
            let mut cmd = Command::new(server_binary());
            cmd.arg("serve")
                .args(["--listen", &format!("127.0.0.1:{port}"), "--plain-http", "--state-dir"])
                .arg(state.path().join("state"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log);
            if let Some(db) = db {
                cmd.args(["--db", db]);
            }
            let mut child = cmd.spawn().expect("proofrig serve starts");
            let stdout = child.stdout.take().unwrap();
            let mut url = None;
            let mut lines = std::io::BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let line = line.unwrap();
                if let Some(rest) = line.strip_prefix("proofrig server listening at ") {
                    url = Some(rest.trim().to_string());
                }
                if line.starts_with("first start") {
                    break;
                }
            }
            // Keep reading what it prints (a closed pipe would fail its next print).
            let printed = state.path().join("server.stdout");
            std::thread::spawn(move || {
                let mut out = std::fs::File::create(printed).unwrap();
                for line in lines.map_while(Result::ok) {
                    let _ = writeln!(out, "{line}");
                }
            });
            let url = url.unwrap_or_else(|| {
                panic!("proofrig serve printed no URL; its log:\n{}", std::fs::read_to_string(state.path().join("server.log")).unwrap())
            });
            let admin_token = std::fs::read_to_string(state.path().join("state").join("bootstrap-admin.token")).unwrap().trim().to_string();
            ServerProc { child, url, admin_token, state }
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }

        fn stop(mut self, keep_log: &Path) {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("  the server had exited: {status}");
            }
            let _ = std::fs::copy(self.state.path().join("server.log"), keep_log);
            let _ = std::fs::copy(self.state.path().join("server.stdout"), keep_log.with_extension("stdout"));
            // SIGTERM: the server stops as under Ctrl-C.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if self.child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            drop(self.state);
        }
    }

    /// A /proc file, read through a handle opened on first use and kept: when the lab
    /// hosts have taken every descriptor of this process, it still reads. `None` once
    /// the process is gone.
    fn proc_read(path: &str) -> Option<String> {
        use std::os::unix::fs::FileExt;
        static OPEN: std::sync::Mutex<BTreeMap<String, std::fs::File>> = std::sync::Mutex::new(BTreeMap::new());
        let mut open = OPEN.lock().unwrap();
        if !open.contains_key(path) {
            open.insert(path.to_string(), std::fs::File::open(path).ok()?);
        }
        let mut buf = vec![0u8; 16 * 1024];
        let n = open[path].read_at(&mut buf, 0).ok()?;
        buf.truncate(n);
        String::from_utf8(buf).ok()
    }

    /// A field of /proc/PID/status, in KiB.
    fn status_kib(pid: u32, field: &str) -> u64 {
        let text = proc_read(&format!("/proc/{pid}/status")).unwrap_or_default();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(field).map(|rest| rest.trim_start_matches(':').split_whitespace().next().unwrap_or("0").parse().unwrap_or(0))
            })
            .unwrap_or(0)
    }

    /// User + system CPU seconds of a process so far.
    fn cpu_seconds(pid: &str) -> f64 {
        let text = proc_read(&format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0) + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz
    }

    /// The API as a client sees it.
    #[derive(Clone)]
    struct Api {
        http: reqwest::Client,
        url: String,
    }

    impl Api {
        async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(&self, path: &str, token: &str, body: &B) -> T {
            let response = self
                .http
                .post(format!("{}{path}", self.url))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).unwrap())
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {path}: {e}"));
            let status = response.status();
            let bytes = response.bytes().await.unwrap();
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("POST {path}: HTTP {status}, {e}: {}", String::from_utf8_lossy(&bytes)))
        }

        async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
            let response = self.http.get(format!("{}{path}", self.url)).bearer_auth(token).send().await.unwrap();
            let status = response.status();
            let bytes = response.bytes().await.unwrap();
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("GET {path}: HTTP {status}, {e}: {}", String::from_utf8_lossy(&bytes)))
        }
    }

    /// The job states, counted in the database by this process.
    enum Counter {
        Sqlite(sqlx::SqlitePool),
        Postgres(sqlx::PgPool),
    }

    #[derive(Debug, Default, Clone)]
    struct Counts {
        by_state: BTreeMap<String, i64>,
        flagged: i64,
    }

    impl Counts {
        fn get(&self, state: &str) -> i64 {
            self.by_state.get(state).copied().unwrap_or(0)
        }

        /// Attempts that were ever assigned (every state after `queued`).
        fn assigned(&self) -> i64 {
            self.by_state.iter().filter(|(s, _)| s.as_str() != "queued").map(|(_, n)| n).sum()
        }
    }

    impl Counter {
        async fn open(db: &str) -> Counter {
            if db.starts_with("postgres") {
                Counter::Postgres(sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(db).await.unwrap())
            } else {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
                Counter::Sqlite(sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap())
            }
        }

        async fn counts(&self) -> Counts {
            let q = "SELECT state, COUNT(*), SUM(CASE WHEN flagged IS NULL THEN 0 ELSE 1 END) FROM attempts GROUP BY state";
            let rows: Vec<(String, i64, Option<i64>)> = match self {
                Counter::Sqlite(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
                Counter::Postgres(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
            };
            let mut c = Counts::default();
            for (state, n, flagged) in rows {
                c.by_state.insert(state, n);
                c.flagged += flagged.unwrap_or(0);
            }
            c
        }
    }

    /// The server process's peaks, sampled every second (it may die before the end).
    #[derive(Debug, Default, Clone, Copy)]
    struct Peaks {
        hwm_kib: u64,
        fds: usize,
        died: bool,
    }

    fn watch_server(
        pid: u32,
        peaks: Arc<std::sync::Mutex<Peaks>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                // Fails also when this process has no descriptor left: the peak stays.
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).ok();
                let alive = proc_read(&format!("/proc/{pid}/status")).is_some_and(|s| s.contains("VmRSS"));
                {
                    let mut p = peaks.lock().unwrap();
                    p.hwm_kib = p.hwm_kib.max(status_kib(pid, "VmHWM"));
                    p.fds = p.fds.max(fds.unwrap_or(0));
                    p.died |= !alive;
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }

    fn fleet_job() -> SubmitJob {
        SubmitJob {
            plans: vec![PlanFile { name: "fleet.yaml".into(), bytes: no_device_plan("fleet", "TC_FLEET").into_bytes() }],
            target: RigSelector::Match { roles: ["radio-unit".to_string()].into(), tags: BTreeSet::new() },
            priority: Priority::NORMAL,
            params: BTreeMap::new(),
            device: None,
            not_before: None,
        }
    }

    /// Keep the queue at least `FEED_ABOVE` above the number of rigs, submitting at
    /// most `rate` jobs per second when one is given.
    async fn feed(
        api: Api,
        token: String,
        counter: Arc<Counter>,
        (rigs, rate): (i64, Option<f64>),
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let job = fleet_job();
        let mut allowance = 0.0f64;
        loop {
            let queued = counter.counts().await.get("queued");
            let mut want = (rigs + FEED_ABOVE - queued).clamp(0, 200);
            if let Some(rate) = rate {
                allowance = (allowance + rate / 4.0).min(rate.max(1.0));
                want = want.min(allowance.floor() as i64);
                allowance -= want as f64;
            }
            let mut set = tokio::task::JoinSet::new();
            for k in 0..want {
                let (api, token, job) = (api.clone(), token.clone(), job.clone());
                set.spawn(async move {
                    let _: serde_json::Value = api.post("/api/jobs", &token, &job).await;
                });
                if (k + 1) % 8 == 0 {
                    while set.join_next().await.is_some() {}
                }
            }
            while set.join_next().await.is_some() {}
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    pub async fn run(backend: Backend, opts: &Options) -> FleetResult {
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(tokio::task::spawn_blocking(|| Postgres::shared().create_database("bench_fleet")).await.unwrap()),
        };
        let server = tokio::task::block_in_place(|| ServerProc::start(db.as_deref()));
        let pid = server.pid();
        let me = std::process::id().to_string();
        let _ = (status_kib(pid, "VmHWM"), cpu_seconds(&pid.to_string()), cpu_seconds(&me));
        eprintln!("  {}: proofrig serve (pid {pid}) at {}", backend.name(), server.url);
        let api = Api { http: reqwest::Client::builder().build().unwrap(), url: server.url.clone() };
        let tester: TokenCreated =
            api.post("/api/users", &server.admin_token, &NewUser { name: "bench".into(), role: Role::Tester, password: None }).await;

        let peaks = Arc::new(std::sync::Mutex::new(Peaks::default()));
        let (stop_watch, watch_stopped) = tokio::sync::watch::channel(false);
        let watcher = watch_server(pid, peaks.clone(), watch_stopped);
        let labs = tempfile::Builder::new().prefix("proofrig-bench-labhosts-").tempdir().unwrap();
        let (stop_agents, agents_stopped) = tokio::sync::watch::channel(false);
        let mut agents = Vec::new();
        for h in 0..opts.hosts {
            let name = format!("lab-{h:02}");
            let enrollment: EnrollmentCreated =
                api.post("/api/labhosts/enrollments", &server.admin_token, &NewEnrollment { labhost: name.clone(), minutes: None }).await;
            let (rigs_dir, state_dir) = (labs.path().join(&name).join("rigs"), labs.path().join(&name).join("state"));
            std::fs::create_dir_all(&rigs_dir).unwrap();
            for r in 0..opts.rigs_per_host {
                let rig = format!("{name}-rig-{r:02}");
                std::fs::write(rigs_dir.join(format!("{rig}.yaml")), desk_rig(&rig)).unwrap();
            }
            let config = AgentConfig {
                server: ServerAddress { url: server.url.clone(), fingerprint: None },
                rigs_dir,
                state_dir,
                enroll_token: Some(enrollment.token),
                name,
                clock: Default::default(),
            };
            agents.push(tokio::spawn(agent::run(config, agents_stopped.clone())));
        }
        let rigs = (opts.hosts * opts.rigs_per_host) as i64;
        let started = Instant::now();
        loop {
            let views: Vec<RigView> = api.get("/api/rigs", &server.admin_token).await;
            let online = views.iter().filter(|r| r.labhost_online).count();
            if online as i64 >= rigs {
                eprintln!(
                    "  {}: {online} rigs online on {} lab hosts ({:.1} s)",
                    backend.name(),
                    opts.hosts,
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "only {online} of {rigs} rigs came online in 120 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        let db_path = db.clone().unwrap_or_else(|| server.state.path().join("state").join("proofrig.db").display().to_string());
        let counter = Arc::new(Counter::open(&db_path).await);
        let (stop_feed, feed_stopped) = tokio::sync::watch::channel(false);
        let feeder = tokio::spawn(feed(api.clone(), tester.token.clone(), counter.clone(), (rigs, opts.rate), feed_stopped));

        // Warm up: every rig has run about one job, or `--warmup` passed.
        let warm = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let c = counter.counts().await;
            eprintln!(
                "    warm-up {:>3.0} s: done {}, running {}, queued {}, server RSS {} MiB, {} fds",
                warm.elapsed().as_secs_f64(),
                c.get("done"),
                c.get("running") + c.get("assigned") + c.get("uploading"),
                c.get("queued"),
                status_kib(pid, "VmRSS") / 1024,
                peaks.lock().unwrap().fds
            );
            if c.get("done") >= rigs || warm.elapsed() >= opts.warmup || peaks.lock().unwrap().died {
                break;
            }
        }

        // The steady window.
        let (c0, t0, s0, b0) = (counter.counts().await, Instant::now(), cpu_seconds(&pid.to_string()), cpu_seconds(&me));
        let mut queued_min = i64::MAX;
        let mut last = (c0.clone(), Instant::now());
        while t0.elapsed() < opts.window && !peaks.lock().unwrap().died {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let c = counter.counts().await;
            queued_min = queued_min.min(c.get("queued"));
            let rate = (c.get("done") - last.0.get("done")) as f64 / last.1.elapsed().as_secs_f64();
            eprintln!(
                "    window {:>3.0}/{} s: done {} ({rate:.1}/s), assigned or running {}, uploading {}, queued {}, server RSS {} MiB (peak {} MiB), server CPU {:.0}%, peak fds {}",
                t0.elapsed().as_secs_f64(),
                opts.window.as_secs(),
                c.get("done"),
                c.get("running") + c.get("assigned"),
                c.get("uploading"),
                c.get("queued"),
                status_kib(pid, "VmRSS") / 1024,
                status_kib(pid, "VmHWM") / 1024,
                100.0 * (cpu_seconds(&pid.to_string()) - s0) / t0.elapsed().as_secs_f64(),
                peaks.lock().unwrap().fds
            );
            last = (c, Instant::now());
        }
        let (c1, window) = (counter.counts().await, t0.elapsed());
        let (server_cpu_s, bench_cpu_s) = (cpu_seconds(&pid.to_string()) - s0, cpu_seconds(&me) - b0);
        let vm_rss_end_kib = status_kib(pid, "VmRSS");
        let _ = stop_watch.send(true);
        let _ = watcher.await;
        let peaks = *peaks.lock().unwrap();
        if peaks.died {
            let log = std::fs::read_to_string(server.state.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("  the server process died; the end of its log:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }

        let _ = stop_feed.send(true);
        let _ = feeder.await;
        let _ = stop_agents.send(true);
        for a in agents {
            let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
        }
        let keep_log = std::env::temp_dir().join(format!("proofrig-bench-fleet-{}.log", backend.name()));
        tokio::task::block_in_place(|| server.stop(&keep_log));
        eprintln!("  the server's log: {}", keep_log.display());
        let secs = window.as_secs_f64();
        FleetResult {
            rigs: rigs as usize,
            window,
            assigned_per_s: (c1.assigned() - c0.assigned()) as f64 / secs,
            done_per_s: (c1.get("done") - c0.get("done")) as f64 / secs,
            vm_hwm_kib: peaks.hwm_kib,
            vm_rss_end_kib,
            server_cpu_s,
            bench_cpu_s,
            lost: c1.get("lost"),
            flagged: c1.flagged,
            done_total: c1.get("done"),
            queued_min,
            peak_fds: peaks.fds,
            server_died: peaks.died,
            rate: opts.rate,
        }
    }
}

/// 500 rigs' runs, journals, bundles and connections in one process need more than
/// the usual 1024 descriptors: take the hard limit.
fn raise_open_files() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

// ---- main ----------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("service: a benchmark; run it with `cargo bench -p proofrig-labhost --bench service`");
        return;
    }
    let opts = Options::parse(&args);
    raise_open_files();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let machine = format!(
        "{} CPUs, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())))
            .unwrap_or_default()
    );
    eprintln!("lab service bench ({machine}); options {opts:?}");
    let mut queue_results = Vec::new();
    let mut fleet_results = Vec::new();
    runtime.block_on(async {
        for &backend in &opts.backends {
            if opts.runs("queue") {
                eprintln!("queue: {} rigs on one lab host, {}", queue::RIGS, backend.name());
                queue_results.push((backend, queue::run(backend, &opts).await));
            }
        }
        for &backend in &opts.backends {
            if opts.runs("fleet") {
                eprintln!("fleet: {} lab hosts x {} rigs, {}", opts.hosts, opts.rigs_per_host, backend.name());
                fleet_results.push((backend, fleet::run(backend, &opts).await));
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));

    println!("\nlab service bench: {machine}");
    if !queue_results.is_empty() {
        println!("\nidle rig -> next job claimed (job end committed, then the server's pass), {} rigs, constant queue depth", queue::RIGS);
        println!(
            "| store | queued | samples | p50 ms | p99 ms | max ms | job end p50 ms | reap p50 | fire p50 | claim p50 | claim p99 | scheduler alone p50 | scheduler alone, 500 rigs |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (backend, results) in &queue_results {
            for r in results {
                println!(
                    "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
                    backend.name(),
                    r.depth,
                    r.pass.len(),
                    pct(&r.pass, 50.0),
                    pct(&r.pass, 99.0),
                    pct(&r.pass, 100.0),
                    pct(&r.ended, 50.0),
                    pct(&r.reap, 50.0),
                    pct(&r.fire, 50.0),
                    pct(&r.claim, 50.0),
                    pct(&r.claim, 99.0),
                    pct(&r.schedule, 50.0),
                    pct(&r.schedule_500, 50.0)
                );
            }
        }
    }
    if !fleet_results.is_empty() {
        println!("\nfleet: one `proofrig serve` process, lab hosts in the bench process, short no-device plans");
        println!("| store | rigs | feed | window s | assigned/s | done/s | server peak RSS (VmHWM) MiB | RSS at end MiB | server CPU % | bench CPU % | server peak fds | lost | flagged | done total | min queued |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (backend, r) in &fleet_results {
            let secs = r.window.as_secs_f64();
            println!(
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {:.0} | {:.0} | {}{} | {} | {} | {} | {} |",
                backend.name(),
                r.rigs,
                r.rate.map(|r| format!("{r}/s")).unwrap_or_else(|| "full".into()),
                secs,
                r.assigned_per_s,
                r.done_per_s,
                r.vm_hwm_kib / 1024,
                r.vm_rss_end_kib / 1024,
                100.0 * r.server_cpu_s / secs,
                100.0 * r.bench_cpu_s / secs,
                r.peak_fds,
                if r.server_died { " (server died)" } else { "" },
                r.lost,
                r.flagged,
                r.done_total,
                r.queued_min
            );
        }
        for (backend, r) in &fleet_results {
            let ok = r.vm_hwm_kib < 1024 * 1024;
            println!(
                "fleet {}: server peak resident {} MiB ({} the 1 GiB goal), {:.1} claims/s, {:.1} done/s",
                backend.name(),
                r.vm_hwm_kib / 1024,
                if ok { "under" } else { "OVER" },
                r.assigned_per_s,
                r.done_per_s
            );
        }
    }
}
