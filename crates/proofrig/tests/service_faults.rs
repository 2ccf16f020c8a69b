//! The lab service under the faults issue 14 names, on loopback: a server killed
//! with SIGKILL at each step of a job's life and started again on the same state and
//! port, a lab host killed mid-run, a link that black-holes (no RST), and two server
//! replicas on one PostgreSQL with a lab host on each and cancels racing claims.
//!
//! The server is the real `proofrig serve` process wherever it is killed, so the kill
//! is real (SIGKILL: no destructor, no flush); where a test shifts the server's clock
//! (a lease that lapses after minutes, a lab host silent for 30 s) the server runs in
//! this process ([`Server::start`] with a [`Clock`]) and the lab host signs with a
//! clock shifted alike ([`AgentClock`]): the skew check is not weakened, both clocks
//! move. Every wait is bounded and fails naming what it last saw.
//!
//! Helpers first: a server process (start, kill -9, start again; URL and fingerprint
//! read from its stdout), an in-process lab host, the API as a person calls it, and
//! two proxies put between a lab host and its server: [`BlackHole`] (TCP: swallow
//! everything, keep every socket open) and [`Gate`] (plain HTTP: hold one kind of
//! request, or lose one kind of answer, as a server dying at that moment would).

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proofrig_labhost::agent::{self, AgentClock, AgentConfig, AgentError, ServerAddress};
use proofrig_proto::api::{AuditView, JobState, JobView, RigSelector, RigState, RigView, RunView, SubmitJob, Submitted};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{Attempt, JobId, Priority, UnixMillis};
use proofrig_proto::labhost::BundleCheck;
use proofrig_proto::timing::{HEARTBEAT_INTERVAL, JOB_LOST_AFTER, LABHOST_OFFLINE_AFTER};
use proofrig_server::api::secret_sha256;
use proofrig_server::http::{Clock, Server, ServerConfig};
use proofrig_server::store::{Ctx, LeaseKind, Store, StoreConfig};
use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use proofrig_verdict::Verdict;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

// ---- waiting -------------------------------------------------------------------------

/// Poll `check` every 100 ms until it gives a value; past `limit`, fail with what it
/// said last.
async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => panic!("timed out after {limit:?} waiting for {what}; last seen: {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Run futures side by side, their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---- plans and rigs ------------------------------------------------------------------

/// The no-device plan with a `wait` step first, to hold its job running `ms`.
fn waiting_plan(plan: &str, case: &str, ms: u64) -> String {
    no_device_plan(plan, case).replace("    steps:\n", &format!("    steps:\n      - wait: {{ ms: {ms} }}\n"))
}

fn job(name: &str, plan: String, target: RigSelector, not_before: Option<UnixMillis>) -> SubmitJob {
    SubmitJob {
        plans: vec![PlanFile { name: format!("{name}.yaml"), bytes: plan.into_bytes() }],
        target,
        priority: Priority::NORMAL,
        params: BTreeMap::new(),
        device: None,
        not_before,
    }
}

fn radio_unit() -> RigSelector {
    RigSelector::Match { roles: BTreeSet::from(["radio-unit".to_string()]), tags: BTreeSet::new() }
}

fn rigs_dir(parent: &Path, rigs: &[&str]) -> PathBuf {
    let dir = parent.join("rigs");
    std::fs::create_dir_all(&dir).unwrap();
    for rig in rigs {
        std::fs::write(dir.join(format!("{rig}.yaml")), desk_rig(rig)).unwrap();
    }
    dir
}

// ---- a server process ----------------------------------------------------------------

/// How a `proofrig serve` process is started (again, after a kill, alike).
#[derive(Clone)]
struct ServeSpec {
    state: PathBuf,
    port: u16,
    db: Option<String>,
    plain: bool,
}

/// A running `proofrig serve`, its stderr (the log) in `<state>.log`.
struct ServerProcess {
    spec: ServeSpec,
    child: Option<Child>,
    url: String,
    fingerprint: Option<String>,
}

impl ServerProcess {
    fn start(spec: ServeSpec) -> ServerProcess {
        let mut process = ServerProcess { spec, child: None, url: String::new(), fingerprint: None };
        process.launch();
        process
    }

    fn log_path(&self) -> PathBuf {
        self.spec.state.with_extension("log")
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_proofrig"));
        command.args(["serve", "--listen", &format!("127.0.0.1:{}", self.spec.port)]).arg("--state-dir").arg(&self.spec.state);
        if let Some(db) = &self.spec.db {
            command.args(["--db", db]);
        }
        if self.spec.plain {
            command.arg("--plain-http");
        }
        let mut child =
            command.env("PROOFRIG_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log)).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, read) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut url, mut fingerprint) = (None, None);
        while url.is_none() || (fingerprint.is_none() && !self.spec.plain) {
            let left = deadline.saturating_duration_since(Instant::now());
            match read.recv_timeout(left) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("proofrig server listening at ") {
                        url = Some(u.trim().to_string());
                    }
                    if let Some((_, fp)) = line.split_once("for lab hosts and the CLI to pin): ") {
                        fingerprint = Some(fp.trim().to_string());
                    }
                }
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    panic!(
                        "`proofrig serve` on port {} did not report its URL (exit: {status:?}); its log:\n{}",
                        self.spec.port,
                        self.log()
                    );
                }
            }
        }
        if let (Some(before), Some(now)) = (&self.fingerprint, &fingerprint) {
            assert_eq!(before, now, "the restarted server presents another certificate");
        }
        self.url = url.unwrap();
        self.fingerprint = fingerprint;
        self.child = Some(child);
    }

    /// SIGKILL: nothing of the server runs after it.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// kill -9, then start again on the same state directory, database and port.
    fn crash_and_restart(&mut self) {
        self.kill9();
        self.launch();
    }

    fn api(&self) -> Api {
        Api::new(&self.url, self.fingerprint.as_deref())
    }

    fn address(&self) -> ServerAddress {
        ServerAddress { url: self.url.clone(), fingerprint: self.fingerprint.clone() }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---- the API, as a person calls it ---------------------------------------------------

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    fn new(url: &str, fingerprint: Option<&str>) -> Api {
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(20));
        let builder = match fingerprint {
            Some(fp) => builder.use_preconfigured_tls(proofrig_server::tls::pinned_client_config(fp)),
            None => builder,
        };
        Api { http: builder.build().unwrap(), url: url.to_string() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.url)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.url));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok<T: serde::de::DeserializeOwned>(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> T {
        let (status, value) = self.call(method.clone(), path, token, body).await;
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status}: {value}");
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{method} {path}: {e}: {value}"))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> T {
        self.ok(reqwest::Method::GET, path, token, None).await
    }

    async fn add_user(&self, admin: &str, name: &str, role: &str) -> String {
        let made: Value = self.ok(reqwest::Method::POST, "/api/users", admin, Some(json!({ "name": name, "role": role }))).await;
        made["token"].as_str().unwrap().to_string()
    }

    async fn enrollment(&self, admin: &str, labhost: &str) -> String {
        let made: Value = self.ok(reqwest::Method::POST, "/api/labhosts/enrollments", admin, Some(json!({ "labhost": labhost }))).await;
        made["token"].as_str().unwrap().to_string()
    }

    async fn submit(&self, token: &str, job: &SubmitJob) -> JobId {
        let submitted: Submitted = self.ok(reqwest::Method::POST, "/api/jobs", token, Some(serde_json::to_value(job).unwrap())).await;
        submitted.job
    }

    async fn jobs(&self, token: &str) -> Vec<JobView> {
        self.get("/api/jobs", token).await
    }

    /// The latest attempt of `job`.
    async fn job(&self, token: &str, job: JobId) -> JobView {
        let jobs = self.jobs(token).await;
        jobs.into_iter().rfind(|j| j.job == job).unwrap_or_else(|| panic!("{job} is not in the queue"))
    }

    async fn rigs(&self, token: &str) -> Vec<RigView> {
        self.get("/api/rigs", token).await
    }

    async fn audit(&self, admin: &str) -> Vec<AuditView> {
        self.get("/api/audit", admin).await
    }
}

/// The first admin's token, which `proofrig serve` writes just after printing its URL.
fn admin_token(state: &Path) -> String {
    let path = state.join("bootstrap-admin.token");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(&path) {
            Ok(token) if token.ends_with('\n') => return token.trim().to_string(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}

/// The audit records of `action` about `job` (its attempt, when given).
fn audited(audit: &[AuditView], action: &str, job: JobId, attempt: Option<u32>) -> usize {
    audit
        .iter()
        .filter(|r| r.action == action && r.subject == job.to_string())
        .filter(|r| attempt.is_none_or(|a| r.details["attempt"].as_u64() == Some(u64::from(a))))
        .count()
}

// ---- an in-process lab host ----------------------------------------------------------

struct LabHost {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

struct LabHostSpec<'a> {
    server: ServerAddress,
    rigs: &'a Path,
    state: &'a Path,
    token: Option<String>,
    name: &'a str,
    clock: AgentClock,
}

impl LabHost {
    fn start(spec: LabHostSpec<'_>) -> LabHost {
        let config = AgentConfig {
            server: spec.server,
            rigs_dir: spec.rigs.to_path_buf(),
            state_dir: spec.state.to_path_buf(),
            enroll_token: spec.token,
            name: spec.name.to_string(),
            clock: spec.clock,
        };
        let (stop, stopped) = watch::channel(false);
        LabHost { stop, task: tokio::spawn(agent::run(config, stopped)) }
    }

    /// Stop asking for work (a job already running goes on and uploads).
    async fn stop(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("the lab host did not stop cleanly: {other:?}"),
        }
    }
}

// ---- a black hole: TCP, swallow everything -------------------------------------------

/// A TCP proxy that forwards until told to swallow: from then on every connection it
/// holds, idle or not, and every new one it accepts, stays open and carries nothing
/// either way (no RST, no FIN), as a link whose packets vanish. A connection that was
/// open then stays dead when forwarding resumes (the NAT in between forgot it); new
/// ones work.
struct BlackHole {
    addr: SocketAddr,
    swallowing: Arc<AtomicBool>,
    /// Each connection's `dead` flag: swallowing kills every open one.
    connections: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>>,
}

impl BlackHole {
    async fn start(upstream: SocketAddr) -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let swallowing = Arc::new(AtomicBool::new(false));
        let connections: Arc<std::sync::Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let (flag, all) = (swallowing.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                let dead = Arc::new(AtomicBool::new(false));
                all.lock().unwrap().push(dead.clone());
                tokio::spawn(async move {
                    if flag.load(Ordering::SeqCst) {
                        return hold_forever(client).await;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(server_read, client_write, flag.clone(), dead.clone()));
                    pump(client_read, server_write, flag, dead).await;
                });
            }
        });
        BlackHole { addr, swallowing, connections }
    }

    fn swallow(&self, on: bool) {
        self.swallowing.store(on, Ordering::SeqCst);
        if on {
            for dead in self.connections.lock().unwrap().iter() {
                dead.store(true, Ordering::SeqCst);
            }
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// Copy one direction until the link swallows; then keep both ends open, forever.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    swallow: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if swallow.load(Ordering::SeqCst) || dead.load(Ordering::SeqCst) {
            dead.store(true, Ordering::SeqCst);
            let _keep = (from, to);
            return std::future::pending().await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

async fn hold_forever(socket: TcpStream) {
    let _keep = socket;
    std::future::pending::<()>().await
}

// ---- a gate: plain HTTP, hold a request or lose an answer ----------------------------

/// A proxy for plain HTTP/1.1 on loopback that reads each request and answer whole, so
/// it can hold the lab host's upload chunks (the job stays `uploading` on the server)
/// or forward a request and lose its answer (the server acted and died before the lab
/// host heard). A connection whose server side failed is closed, so the lab host
/// reconnects, as it would to a restarted server.
#[derive(Clone)]
struct Gate {
    addr: SocketAddr,
    hold_uploads: Arc<AtomicBool>,
    lose_uploaded: Arc<AtomicBool>,
    /// Set when an `uploaded` answer was lost.
    lost: Arc<AtomicBool>,
    /// Forward each upload chunk the first time it is sent, then hang up at once, as a
    /// lab host whose request timed out while the server was busy with it.
    hang_up_uploads: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<BTreeSet<Vec<u8>>>>,
}

impl Gate {
    async fn start(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gate = Gate {
            addr: listener.local_addr().unwrap(),
            hold_uploads: Arc::new(AtomicBool::new(false)),
            lose_uploaded: Arc::new(AtomicBool::new(false)),
            lost: Arc::new(AtomicBool::new(false)),
            hang_up_uploads: Arc::new(AtomicBool::new(false)),
            seen: Arc::default(),
        };
        let serving = gate.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serving.clone().connection(client, upstream));
            }
        });
        gate
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn connection(self, mut client: TcpStream, upstream: SocketAddr) {
        let mut server: Option<TcpStream> = None;
        let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
        loop {
            let Some(request) = read_message(&mut client, &mut from_client).await else { return };
            let body = String::from_utf8_lossy(&request);
            if body.contains(r#""type":"upload_chunk""#) {
                while self.hold_uploads.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            if server.is_none() {
                server = TcpStream::connect(upstream).await.ok();
            }
            let Some(up) = server.as_mut() else { return };
            if up.write_all(&request).await.is_err() {
                return;
            }
            if self.hang_up_uploads.load(Ordering::SeqCst)
                && body.contains(r#""type":"upload_chunk""#)
                && self.seen.lock().unwrap().insert(body.as_bytes().to_vec().split_off(body.find("\r\n\r\n").unwrap_or(0)))
            {
                return;
            }
            let Some(answer) = read_message(up, &mut from_server).await else { return };
            if self.lose_uploaded.load(Ordering::SeqCst) && String::from_utf8_lossy(&answer).contains(r#""type":"uploaded""#) {
                self.lost.store(true, Ordering::SeqCst);
                while self.lose_uploaded.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return;
            }
            if client.write_all(&answer).await.is_err() {
                return;
            }
        }
    }
}

/// One HTTP/1.1 message (head and a Content-Length body) from `stream`, bytes already
/// read kept in `buffered`.
async fn read_message(stream: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffered[..end]).to_ascii_lowercase();
            assert!(!head.contains("transfer-encoding: chunked"), "the gate reads Content-Length bodies only:\n{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("a Content-Length"))
                .unwrap_or(0);
            let total = end + 4 + length;
            if buffered.len() >= total {
                return Some(buffered.drain(..total).collect());
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffered.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---- 1. the server killed at each step of a job's life -------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_at_each_step_of_a_job_runs_it_once_keeps_every_lease_and_verifies_its_bundle() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let dir = tempfile::Builder::new().prefix("proofrig-faults-kill-").tempdir().unwrap();
    let state = dir.path().join("server");
    let mut server = ServerProcess::start(ServeSpec { state: state.clone(), port: free_port(), db: None, plain: true });
    let api = server.api();
    let admin = admin_token(&state);
    let tina = api.add_user(&admin, "tina", "technician").await;
    let tess = api.add_user(&admin, "tess", "tester").await;
    let enroll = api.enrollment(&admin, "lab-a").await;

    // The lab host talks to the server through the gate; it serves bench-1 (jobs) and
    // bench-2 (which tina reserves before the first kill).
    let gate = Gate::start(server.url.strip_prefix("http://").unwrap().parse().unwrap()).await;
    let rigs = rigs_dir(dir.path(), &["bench-1", "bench-2"]);
    let lab_state = dir.path().join("labhost");
    let through_gate = ServerAddress { url: gate.url(), fingerprint: None };
    let spec = |token: Option<String>| LabHostSpec {
        server: through_gate.clone(),
        rigs: &rigs,
        state: &lab_state,
        token,
        name: "lab-a",
        clock: AgentClock::default(),
    };
    let labhost = LabHost::start(spec(Some(enroll)));
    wait_for("both rigs online", Duration::from_secs(20), async || {
        let rigs = api.rigs(&tess).await;
        let online = rigs.iter().filter(|r| r.labhost_online && r.state == RigState::Idle).count();
        (online == 2).then_some(()).ok_or(format!("{rigs:?}"))
    })
    .await;
    let held: Value = api.ok(reqwest::Method::POST, "/api/rigs/bench-2/reservation", &tina, Some(json!({ "minutes": 60 }))).await;
    let reservation_holds = async |api: &Api, when: &str| {
        let rigs = api.rigs(&tess).await;
        let bench2 = rigs.iter().find(|r| r.summary.rig == "bench-2").unwrap();
        let r = bench2.reservation.as_ref().unwrap_or_else(|| panic!("{when}: tina's reservation of bench-2 is lost: {bench2:?}"));
        assert_eq!(
            (r.holder.as_str(), r.until.0, r.fencing.0),
            ("tina", held["until"].as_u64().unwrap(), held["fencing"].as_u64().unwrap()),
            "{when}"
        );
        assert_eq!(bench2.state, RigState::Reserved, "{when}: {bench2:?}");
    };

    // Queued: not before a few seconds from now, so the scheduler leaves it.
    let now = UnixMillis(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64);
    let plan = waiting_plan("fault-life", "TC_FAULT_LIFE", 6000);
    let j = api.submit(&tess, &job("fault-life", plan, RigSelector::Rig("bench-1".into()), Some(now.plus(Duration::from_secs(6))))).await;
    // The lab host stops asking (it stays online for the server for 30 s), so what the
    // scheduler assigns waits, unanswered, for the next step.
    labhost.stop().await;
    server.crash_and_restart();
    let api = server.api();
    assert_eq!(api.job(&tess, j).await.state, JobState::Queued, "killed while queued");
    reservation_holds(&api, "after the kill while queued").await;

    // Assigned: the server dies before anyone accepted.
    wait_for("the job assigned", Duration::from_secs(20), async || {
        let view = api.job(&tess, j).await;
        (view.state == JobState::Assigned).then_some(()).ok_or(format!("{view:?}"))
    })
    .await;
    server.crash_and_restart();
    let api = server.api();
    assert_eq!(api.job(&tess, j).await.state, JobState::Assigned, "killed while assigned");
    reservation_holds(&api, "after the kill while assigned").await;

    // Running: the lab host comes back, takes the assignment and runs; the server dies
    // mid-run; the run goes on.
    let labhost = LabHost::start(spec(None));
    wait_for("the job running", Duration::from_secs(20), async || {
        let view = api.job(&tess, j).await;
        (view.state == JobState::Running).then_some(()).ok_or(format!("{view:?}"))
    })
    .await;
    gate.hold_uploads.store(true, Ordering::SeqCst);
    server.crash_and_restart();
    let api = server.api();
    assert_eq!(api.job(&tess, j).await.state, JobState::Running, "killed while running");
    reservation_holds(&api, "after the kill while running").await;

    // Uploading: the run ended and said so; its chunks are held at the gate. Dies.
    wait_for("the job uploading", Duration::from_secs(40), async || {
        let view = api.job(&tess, j).await;
        (view.state == JobState::Uploading).then_some(()).ok_or(format!("{view:?}"))
    })
    .await;
    server.crash_and_restart();
    let api = server.api();
    assert_eq!(api.job(&tess, j).await.state, JobState::Uploading, "killed while uploading");
    reservation_holds(&api, "after the kill while uploading").await;

    // Verifying: the last chunk reaches the server, which verifies and stores the
    // bundle, and dies before its answer reaches the lab host.
    gate.lose_uploaded.store(true, Ordering::SeqCst);
    gate.hold_uploads.store(false, Ordering::SeqCst);
    wait_for("the answer to the last chunk", Duration::from_secs(40), async || {
        gate.lost.load(Ordering::SeqCst).then_some(()).ok_or("not yet".to_string())
    })
    .await;
    server.crash_and_restart();
    gate.lose_uploaded.store(false, Ordering::SeqCst);
    let api = server.api();
    let done = wait_for("the job done", Duration::from_secs(30), async || {
        let view = api.job(&tess, j).await;
        (view.state == JobState::Done).then_some(view.clone()).ok_or(format!("{view:?}"))
    })
    .await;
    reservation_holds(&api, "after the kill while verifying").await;

    // Ran once, under one lease, one bundle, verified.
    assert_eq!((done.attempt, done.verdict), (Attempt(1), Some(Verdict::Inconclusive)), "{done:?}");
    let run = done.run_id.clone().unwrap();
    // The lab host settles what it last sent (its re-offer finds the bundle stored).
    wait_for("the lab host's outbox empty", Duration::from_secs(20), async || {
        let left = std::fs::read_dir(lab_state.join("outbox")).unwrap().count();
        (left == 0).then_some(()).ok_or(format!("{left} pending"))
    })
    .await;
    let audit = api.audit(&admin).await;
    for (action, times) in [("job.submit", 1), ("job.assign", 1), ("job.start", 1), ("job.end", 1), ("job.uploaded", 1)] {
        assert_eq!(audited(&audit, action, j, None), times, "{action} in the audit log:\n{audit:#?}");
    }
    let stored: Vec<_> = std::fs::read_dir(state.join("inbox/bundles")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(stored, vec![std::ffi::OsString::from(&run)], "one bundle stored");
    let ran: Vec<_> = std::fs::read_dir(lab_state.join("bundles")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(ran, vec![std::ffi::OsString::from(&run)], "one run on the lab host");
    let view: RunView = api.get(&format!("/api/runs/{run}"), &tess).await;
    assert_eq!(view.check, BundleCheck::Verified { verdict: Verdict::Inconclusive }, "{view:?}");
    let lab_key = proofrig_evidence::signing::load_verifying_key(&lab_state.join("lab.pub")).unwrap();
    let report = proofrig_evidence::verify_bundle(&state.join("inbox/bundles").join(&run), Some(&lab_key));
    assert_eq!(report.status, proofrig_evidence::verify::Status::Verified, "{}", report.summary);
    // The journal the server held live across its kills is the bundle's, byte for byte.
    let live = std::fs::read(state.join("live").join(format!("{}.1.jsonl", j.0))).unwrap();
    assert!(live == std::fs::read(state.join("inbox/bundles").join(&run).join("journal.jsonl")).unwrap(), "live journal differs");

    // bench-1 is free; what remains leased is tina's reservation, as the store holds it
    // after one more kill.
    let bench1 = api.rigs(&tess).await.into_iter().find(|r| r.summary.rig == "bench-1").unwrap();
    assert_eq!(bench1.state, RigState::Idle, "{bench1:?}");
    labhost.stop().await;
    server.kill9();
    let store = Store::open_sqlite(&state.join("proofrig.db"), StoreConfig::default()).await.unwrap();
    let leases = store.leases().await.unwrap();
    assert!(
        leases.len() == 1 && leases[0].kind == LeaseKind::Reservation && leases[0].holder == "tina" && leases[0].rig == "bench-2",
        "{leases:?}"
    );
    store.close().await;
}

// ---- 1b. a lab host hanging up while the server verifies -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_host_hanging_up_on_its_upload_chunks_still_gets_its_job_recorded_done() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let dir = tempfile::Builder::new().prefix("proofrig-faults-hangup-").tempdir().unwrap();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("server"));
    config.plain_http = true;
    let server = Server::start(config).await.unwrap();
    let clock: Clock = server.clock().clone();
    let ctx = |who: &str| Ctx::new(who, "127.0.0.1:1", clock.now());
    let token = "pre_faults-lab-c";
    server.store().add_enrollment("lab-c", &secret_sha256(token), clock.now().plus(Duration::from_secs(600)), &ctx("admin")).await.unwrap();
    let gate = Gate::start(server.local_addr()).await;
    gate.hang_up_uploads.store(true, Ordering::SeqCst);
    let rigs = rigs_dir(dir.path(), &["bench-5"]);
    let lab_state = dir.path().join("labhost");
    let address = ServerAddress { url: gate.url(), fingerprint: None };
    let spec = LabHostSpec {
        server: address,
        rigs: &rigs,
        state: &lab_state,
        token: Some(token.into()),
        name: "lab-c",
        clock: AgentClock::default(),
    };
    let labhost = LabHost::start(spec);
    let store = server.store();
    let j = store.submit(&job("hangup", no_device_plan("hangup", "TC_HANGUP"), radio_unit(), None), &ctx("tess")).await.unwrap().job;
    let done = wait_for("the job done", Duration::from_secs(60), async || {
        let record = store.job(j).await.unwrap().last().unwrap().clone();
        (record.view.state == JobState::Done).then_some(record.clone()).ok_or(format!("{record:?}"))
    })
    .await;
    assert_eq!(done.view.verdict, Some(Verdict::Inconclusive), "{done:?}");
    let run = done.view.run_id.unwrap();
    let receipt = server.inbox().read_receipt(&run, server.key()).unwrap();
    assert_eq!(receipt.check, BundleCheck::Verified { verdict: Verdict::Inconclusive });
    let audit = store.audit().await.unwrap();
    assert_eq!(audit.iter().filter(|r| r.action == "job.uploaded" && r.subject == j.to_string()).count(), 1, "{audit:#?}");
    labhost.stop().await;
    server.stop().await;
}

// ---- 2. a lab host killed mid-run ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_host_killed_mid_run_loses_its_job_frees_the_rig_and_uploads_the_partial_bundle_when_back() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let dir = tempfile::Builder::new().prefix("proofrig-faults-labhost-").tempdir().unwrap();
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("server"))).await.unwrap();
    let clock: Clock = server.clock().clone();
    let ctx = |who: &str| Ctx::new(who, "127.0.0.1:1", clock.now());
    let token = "pre_faults-lab-a";
    server.store().add_enrollment("lab-a", &secret_sha256(token), clock.now().plus(Duration::from_secs(600)), &ctx("admin")).await.unwrap();
    let rigs = rigs_dir(dir.path(), &["bench-3"]);
    let lab_state = dir.path().join("labhost");

    // The lab host as a process, to kill it for real.
    let fingerprint = server.fingerprint().unwrap().to_string();
    let mut process = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["labhost", "run", "--server", &server.url(), "--fingerprint", &fingerprint, "--name", "lab-a"])
        .arg("--rigs")
        .arg(&rigs)
        .arg("--state-dir")
        .arg(&lab_state)
        .env("PROOFRIG_ENROLL_TOKEN", token)
        .env("PROOFRIG_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = server.store();
    wait_for("bench-3 online", Duration::from_secs(30), async || {
        let rigs = store.rigs(clock.now()).await.unwrap();
        rigs.iter().any(|r| r.summary.rig == "bench-3" && r.labhost_online).then_some(()).ok_or(format!("{rigs:?}"))
    })
    .await;
    let long = job("long-run", waiting_plan("long-run", "TC_LONG", 120_000), RigSelector::Rig("bench-3".into()), None);
    let j = store.submit(&long, &ctx("tess")).await.unwrap().job;
    let live = dir.path().join("server/live").join(format!("{}.1.jsonl", j.0));
    let run = wait_for("the job running, its journal streaming", Duration::from_secs(30), async || {
        let view = store.job(j).await.unwrap().last().unwrap().view.clone();
        let streamed = std::fs::metadata(&live).map(|m| m.len()).unwrap_or(0);
        match (&view.run_id, view.state, streamed) {
            (Some(run), JobState::Running, 1..) => Ok(run.clone()),
            _ => Err(format!("{view:?}, {streamed} journal bytes held")),
        }
    })
    .await;
    process.kill().unwrap();
    process.wait().unwrap();

    // Its lease lapses, and JOB_LOST_AFTER later the job is lost and the rig free.
    clock.advance(JOB_LOST_AFTER + Duration::from_secs(5));
    let lost = wait_for("the job lost", Duration::from_secs(10), async || {
        let record = store.job(j).await.unwrap().last().unwrap().clone();
        (record.view.state == JobState::Lost).then_some(record.clone()).ok_or(format!("{record:?}"))
    })
    .await;
    assert!(lost.reason.starts_with("INFRA: lost"), "{}", lost.reason);
    assert!(store.leases().await.unwrap().is_empty(), "no lease left");
    let bench3 = store.rigs(clock.now()).await.unwrap().into_iter().find(|r| r.summary.rig == "bench-3").unwrap();
    assert_eq!(bench3.state, RigState::Idle, "the rig is not left leased: {bench3:?}");

    // The lab host comes back (its clock where the server's is): the bundle its run left
    // unsealed is sealed INCOMPLETE and uploaded, attached to the lost attempt.
    let agent_clock = AgentClock::default();
    agent_clock.advance(JOB_LOST_AFTER + Duration::from_secs(5));
    let address = ServerAddress { url: server.url(), fingerprint: Some(fingerprint.clone()) };
    let spec = LabHostSpec { server: address, rigs: &rigs, state: &lab_state, token: None, name: "lab-a", clock: agent_clock };
    let labhost = LabHost::start(spec);
    let receipt =
        wait_for("the partial bundle's receipt", Duration::from_secs(30), async || server.inbox().read_receipt(&run, server.key())).await;
    match &receipt.check {
        BundleCheck::Flagged { reason } => assert!(reason.starts_with("Incomplete"), "{reason}"),
        other => panic!("an incomplete bundle is never a result: {other:?}"),
    }
    assert_eq!((receipt.job, receipt.attempt, receipt.lab_host.as_str()), (j, Attempt(1), "lab-a"));
    let after = store.job(j).await.unwrap().last().unwrap().clone();
    assert_eq!((after.view.state, after.view.run_id.as_deref()), (JobState::Lost, Some(run.as_str())), "{after:?}");
    let bundle = server.inbox().bundle(&run);
    let lab_key = proofrig_evidence::signing::load_verifying_key(&lab_state.join("lab.pub")).unwrap();
    let report = proofrig_evidence::verify_bundle(&bundle, Some(&lab_key));
    assert_eq!(report.status, proofrig_evidence::verify::Status::Incomplete, "{}", report.summary);
    let journal = std::fs::read(bundle.join("journal.jsonl")).unwrap();
    let held = std::fs::read(&live).unwrap();
    assert!(journal.starts_with(&held), "the bundle's journal begins with the {} bytes the server held live", held.len());

    // And the rig takes the next job on both sides.
    let quick = job("after", no_device_plan("after", "TC_AFTER"), RigSelector::Rig("bench-3".into()), None);
    let next = store.submit(&quick, &ctx("tess")).await.unwrap().job;
    wait_for("the next job done", Duration::from_secs(30), async || {
        let view = store.job(next).await.unwrap().last().unwrap().view.clone();
        (view.state == JobState::Done).then_some(()).ok_or(format!("{view:?}"))
    })
    .await;
    labhost.stop().await;
    server.stop().await;
}

// ---- 3. a black-holed link -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_lab_host_goes_offline_gets_nothing_and_recovers_by_itself_within_an_interval() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let dir = tempfile::Builder::new().prefix("proofrig-faults-blackhole-").tempdir().unwrap();
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("server"))).await.unwrap();
    let clock: Clock = server.clock().clone();
    let ctx = |who: &str| Ctx::new(who, "127.0.0.1:1", clock.now());
    let token = "pre_faults-lab-b";
    server.store().add_enrollment("lab-b", &secret_sha256(token), clock.now().plus(Duration::from_secs(600)), &ctx("admin")).await.unwrap();
    let rigs = rigs_dir(dir.path(), &["bench-4"]);
    let lab_state = dir.path().join("labhost");
    let hole = BlackHole::start(server.local_addr()).await;
    let address = ServerAddress { url: hole.url(), fingerprint: server.fingerprint().map(str::to_string) };
    let spec = LabHostSpec {
        server: address,
        rigs: &rigs,
        state: &lab_state,
        token: Some(token.into()),
        name: "lab-b",
        clock: AgentClock::default(),
    };
    let labhost = LabHost::start(spec);
    let store = server.store();
    let online = async || {
        let rigs = store.rigs(clock.now()).await.unwrap();
        let rig = rigs.into_iter().find(|r| r.summary.rig == "bench-4");
        rig.filter(|r| r.labhost_online).map(|_| ()).ok_or("bench-4's lab host offline".to_string())
    };
    wait_for("bench-4 online", Duration::from_secs(20), online).await;
    let done = async |j: JobId| {
        let view = store.job(j).await.unwrap().last().unwrap().view.clone();
        (view.state == JobState::Done).then_some(()).ok_or(format!("{view:?}"))
    };
    let first = store.submit(&job("before", no_device_plan("before", "TC_BEFORE"), radio_unit(), None), &ctx("tess")).await.unwrap().job;
    wait_for("a job done over the healthy link", Duration::from_secs(30), async || done(first).await).await;
    // A job running when the link goes: it ends during the outage, and its journal, end
    // and bundle wait for the link.
    let across = job("across", waiting_plan("across", "TC_ACROSS", 3000), radio_unit(), None);
    let across = store.submit(&across, &ctx("tess")).await.unwrap().job;
    wait_for("a job running", Duration::from_secs(20), async || {
        let view = store.job(across).await.unwrap().last().unwrap().view.clone();
        (view.state == JobState::Running).then_some(()).ok_or(format!("{view:?}"))
    })
    .await;

    // The link black-holes. Past LABHOST_OFFLINE_AFTER the server marks the lab host
    // offline, and a job submitted for its rig stays queued.
    hole.swallow(true);
    let swallowed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    clock.advance(LABHOST_OFFLINE_AFTER + Duration::from_secs(1));
    wait_for("the lab host offline", Duration::from_secs(10), async || match online().await {
        Ok(()) => Err("still online".to_string()),
        Err(_) => Ok(()),
    })
    .await;
    let j = store.submit(&job("during", no_device_plan("during", "TC_DURING"), radio_unit(), None), &ctx("tess")).await.unwrap().job;
    // Longer than an interval: a heartbeat meets the black hole (and the poll hangs).
    tokio::time::sleep((HEARTBEAT_INTERVAL + Duration::from_secs(1)).saturating_sub(swallowed.elapsed())).await;
    let view = store.job(j).await.unwrap().last().unwrap().view.clone();
    assert_eq!(view.state, JobState::Queued, "nothing is assigned to an offline lab host's rig: {view:?}");
    let audit = store.audit().await.unwrap();
    assert!(audit.iter().any(|r| r.action == "labhost.offline" && r.subject == "lab host lab-b"), "{audit:#?}");
    assert_eq!(audit.iter().filter(|r| r.action == "job.assign" && r.subject == j.to_string()).count(), 0);

    // The link comes back: the lab host beats again within an interval (and the
    // heartbeat's own deadline), is online, and takes the job.
    hole.swallow(false);
    let back = Instant::now();
    wait_for("the lab host online again", HEARTBEAT_INTERVAL * 2, online).await;
    let took = back.elapsed();
    eprintln!("the lab host was back online {took:?} after the link");
    assert!(took <= HEARTBEAT_INTERVAL + HEARTBEAT_INTERVAL / 2 + Duration::from_secs(2), "back online after {took:?}");
    // Every request that hung in the black hole is sent again once a heartbeat gets
    // through: the job that ran across the outage ends and uploads, the queued one runs.
    // A heartbeat's period, then the resends and the upload: not the deadlines of the
    // requests that hung.
    wait_for("the job that ran across the outage done", HEARTBEAT_INTERVAL + Duration::from_secs(5), async || done(across).await).await;
    wait_for("the queued job done", Duration::from_secs(30), async || done(j).await).await;
    eprintln!("both jobs done {:?} after the link", back.elapsed());
    labhost.stop().await;
    server.stop().await;
}

// ---- 4. two replicas on one PostgreSQL -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_run_every_job_exactly_once_and_a_cancel_racing_a_claim_leaves_no_rig_stuck() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    let dir = tempfile::Builder::new().prefix("proofrig-faults-replicas-").tempdir().unwrap();
    let db = tokio::task::spawn_blocking(|| proofrig_testpeers::postgres::Postgres::shared().create_database("faults")).await.unwrap();
    let spec = |name: &str| ServeSpec { state: dir.path().join(name), port: free_port(), db: Some(db.clone()), plain: false };
    let one = ServerProcess::start(spec("replica-1"));
    let two = ServerProcess::start(spec("replica-2"));
    let (api1, api2) = (one.api(), two.api());
    let admin = admin_token(&dir.path().join("replica-1"));
    assert!(!dir.path().join("replica-2/bootstrap-admin.token").exists(), "one admin for one database");
    let tess = api2.add_user(&admin, "tess", "tester").await;

    // lab-a serves a1, a2 and talks to replica 1; lab-b serves b1, b2 and talks to 2.
    let mut labhosts = Vec::new();
    for (name, server, api, rig_names) in [("lab-a", &one, &api1, ["a1", "a2"]), ("lab-b", &two, &api2, ["b1", "b2"])] {
        let home = dir.path().join(name);
        let rigs = rigs_dir(&home, &rig_names);
        let token = api.enrollment(&admin, name).await;
        let state = home.join("state");
        let spec =
            LabHostSpec { server: server.address(), rigs: &rigs, state: &state, token: Some(token), name, clock: AgentClock::default() };
        labhosts.push(LabHost::start(spec));
    }
    wait_for("four rigs online", Duration::from_secs(30), async || {
        let rigs = api1.rigs(&tess).await;
        let n = rigs.iter().filter(|r| r.labhost_online).count();
        (n == 4).then_some(()).ok_or(format!("{rigs:?}"))
    })
    .await;

    // 16 jobs, half submitted to each replica, any radio unit.
    let mut jobs = Vec::new();
    for i in 0..16 {
        let api = if i % 2 == 0 { &api1 } else { &api2 };
        let name = format!("many-{i}");
        jobs.push(api.submit(&tess, &job(&name, no_device_plan(&name, "TC_MANY"), radio_unit(), None)).await);
    }
    let all_done = async |api: &Api, jobs: &[JobId]| {
        let views = api.jobs(&tess).await;
        let latest: BTreeMap<JobId, &JobView> = views.iter().map(|v| (v.job, v)).collect();
        let open: Vec<String> = jobs
            .iter()
            .filter(|j| latest.get(j).is_none_or(|v| v.state != JobState::Done))
            .map(|j| format!("{:?}", latest.get(j)))
            .collect();
        open.is_empty().then_some(()).ok_or(open.join("\n"))
    };
    wait_for("16 jobs done", Duration::from_secs(90), async || all_done(&api1, &jobs).await).await;

    // A cancel racing a claim: submitted to one replica, cancelled on the other after
    // 0 to 1.4 s, so cancels land on queued, assigned and running attempts.
    let races = (0..8u64).map(|i| {
        let (api1, api2, tess) = (api1.clone(), api2.clone(), tess.clone());
        async move {
            let name = format!("raced-{i}");
            let j = api1.submit(&tess, &job(&name, waiting_plan(&name, "TC_RACED", 1000), radio_unit(), None)).await;
            tokio::time::sleep(Duration::from_millis(i * 200)).await;
            let path = format!("/api/jobs/{}/cancel", j.0);
            let (status, answer) = api2.call(reqwest::Method::POST, &path, &tess, Some(json!({ "reason": "race" }))).await;
            assert!(status == 200 || status == 409, "cancel {j}: HTTP {status}: {answer}");
            j
        }
    });
    let raced: Vec<JobId> = futures_join_all(races).await;
    // Then one job per rig, by name: every rig takes work, on both sides.
    let mut last = Vec::new();
    for rig in ["a1", "a2", "b1", "b2"] {
        let name = format!("after-{rig}");
        last.push(api2.submit(&tess, &job(&name, no_device_plan(&name, "TC_AFTER"), RigSelector::Rig(rig.into()), None)).await);
    }
    wait_for("a job on every rig after the race", Duration::from_secs(60), async || all_done(&api2, &last).await).await;

    // Exactly once: one claim and one start per attempt, one bundle per run, each in
    // the inbox of the replica its lab host talks to, and verified.
    let audit = api1.audit(&admin).await;
    let views = api2.jobs(&tess).await;
    let mut runs = BTreeSet::new();
    for j in jobs.iter().chain(&last) {
        let attempts: Vec<&JobView> = views.iter().filter(|v| v.job == *j).collect();
        let done = attempts.last().unwrap();
        assert_eq!(done.verdict, Some(Verdict::Inconclusive), "{done:?}");
        for a in &attempts {
            assert!(audited(&audit, "job.assign", *j, Some(a.attempt.0)) <= 1, "{j} attempt {} claimed twice", a.attempt.0);
            assert!(audited(&audit, "job.start", *j, Some(a.attempt.0)) <= 1, "{j} attempt {} started twice", a.attempt.0);
        }
        assert_eq!(audited(&audit, "job.start", *j, Some(done.attempt.0)), 1, "{done:?}");
        let run = done.run_id.clone().unwrap();
        assert!(runs.insert(run.clone()), "run {run} twice");
        let holders: Vec<_> =
            ["replica-1", "replica-2"].iter().filter(|r| dir.path().join(r).join("inbox/bundles").join(&run).is_dir()).collect();
        assert_eq!(holders.len(), 1, "run {run} stored by {holders:?}");
        let labhost = if done.rig.as_deref().unwrap().starts_with('a') { "lab-a" } else { "lab-b" };
        let replica = if labhost == "lab-a" { "replica-1" } else { "replica-2" };
        assert_eq!(holders, vec![&replica], "{run} ran on {:?}", done.rig);
    }
    for j in jobs.iter() {
        assert_eq!(audited(&audit, "job.assign", *j, None), 1, "{j} has one attempt, claimed once:\n{audit:#?}");
    }
    let landed: Vec<&str> = audit.iter().filter(|r| r.action == "job.cancel").filter_map(|r| r.details["from"].as_str()).collect();
    eprintln!("cancels landed on attempts that were: {landed:?}");
    for j in &raced {
        let attempts: Vec<&JobView> = views.iter().filter(|v| v.job == *j).collect();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert!(matches!(attempts[0].state, JobState::Cancelled | JobState::Done), "{:?}", attempts[0]);
        assert!(audited(&audit, "job.start", *j, None) <= 1);
    }

    // No rig stuck: every rig idle, no lease left, on either replica's view.
    wait_for("every rig idle and no lease", Duration::from_secs(30), async || {
        let rigs = api2.rigs(&tess).await;
        let busy: Vec<_> = rigs.iter().filter(|r| r.state != RigState::Idle || r.reservation.is_some()).collect();
        busy.is_empty().then_some(()).ok_or(format!("{busy:?}"))
    })
    .await;
    let store = Store::open_postgres(&db, StoreConfig::default()).await.unwrap();
    assert!(store.leases().await.unwrap().is_empty(), "{:?}", store.leases().await.unwrap());
    store.close().await;
    for labhost in labhosts {
        labhost.stop().await;
    }
    drop((one, two));
}
