//! The lab host agent: dials out to the server, serves its rigs, runs what it is
//! assigned, and gets every bundle to the server whatever the link does.
//!
//! Four things run side by side, so none waits on another:
//! - the **session**: Hello, the rig adverts, then a heartbeat every interval the
//!   server stated (the leases of running jobs renewed by it; a lease the server
//!   says lapsed aborts its job);
//! - the **poll**: one request always open, which the server answers when an
//!   assignment waits; each assignment is checked ([`crate::accept`]) and answered;
//! - one **runner** per job: the run with the same executor as `proofrig run`, its
//!   journal streamed as it grows (by byte offset, so a resend is harmless), then the
//!   end, then the resumable upload;
//! - the **outbox**: a job's upload is written down (`<state>/outbox/`) before its
//!   end is sent, so a run that ends while the server is away, or a lab host that
//!   restarts, still uploads when the server is back.
//!
//! A dropped link stops no run: every request is retried with backoff until it gets
//! an answer, and every message is safe to receive twice (`proofrig_proto::labhost`).
//! A link that black-holes (no RST, nothing comes back) must cost at most about one
//! heartbeat interval, so every request has a deadline that fits it ([`timeout_for`]):
//! a heartbeat well under the interval, a poll its wait plus a margin, an upload chunk
//! its own. Heartbeats keep a fixed period whatever a request cost, and the first one
//! that gets through after a failure sends every request still waiting again at once
//! (the poll, a journal chunk, a job's end, an upload chunk may hang on a connection
//! the outage killed, or sit in backoff); a request that timed out drops the pooled
//! connections, which look alive when no RST came.
//!
//! A lab host killed mid-run leaves a bundle that was never sealed. On start, every
//! such bundle under `<state>/bundles/` whose run record names a job is sealed as
//! INCOMPLETE (as `proofrig seal` does) and uploaded like any ended job, so the server
//! keeps that evidence attached to the attempt it declared lost.
//!
//! The server's certificate is pinned by fingerprint; requests are signed with the
//! lab host's key and its clock ([`AgentClock`]; `proofrig_proto::wire`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId};
use proofrig_proto::labhost::{
    Assignment, Enroll, Heartbeat, Hello, JobEnded, JobOutcome, JournalChunk, LabHostMessage, Poll, Refusal, RigAdverts, RigCondition,
    RigReport, ServerMessage,
};
use proofrig_proto::labhost::{BenchAction, BenchOp, BenchOpAnswer, BenchOutcome};
use proofrig_proto::timing::{HEARTBEAT_INTERVAL, MAX_CHUNK_BYTES};
use proofrig_proto::version::PROTOCOL_VERSION;

use proofrig_proto::wire::MAX_POLL_WAIT;
use proofrig_run::job::RunHost;

use crate::accept::{Accepted, Assignments, LabHostSetup};
use crate::bench::{Arrived, Bench};
use crate::fences::Fences;
use crate::link::http_client;
pub use crate::link::{timeout_for, AgentClock, AgentError, Link, ServerAddress};
use crate::rigs::ServedRigs;
use crate::upload::{chunks, offer, UploadFor};

/// What the agent is given.
pub struct AgentConfig {
    pub server: ServerAddress,
    /// Rig files served (every `*.yaml` in it).
    pub rigs_dir: PathBuf,
    /// The key, enrollment, fencing tokens, outbox and bundles live here.
    pub state_dir: PathBuf,
    /// The one-time token, on the first start.
    pub enroll_token: Option<String>,
    /// The name asked for at enrollment.
    pub name: String,
    /// The clock requests are signed with: the system's ([`AgentClock::default`]).
    pub clock: AgentClock,
}

/// This lab host's enrollment, kept in `<state>/enrollment.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Enrollment {
    labhost: LabHostId,
    server: String,
}

/// Load or make the lab host's key (`<state>/lab.key`, `lab.pub`).
fn lab_key(state: &Path) -> Result<SigningKey, AgentError> {
    let (private, public) = (state.join("lab.key"), state.join("lab.pub"));
    if !private.exists() {
        proofrig_evidence::signing::generate(&private, &public).map_err(|e| AgentError::Setup(e.to_string()))?;
    }
    proofrig_evidence::signing::load_signing_key(&private).map_err(|e| AgentError::Setup(e.to_string()))
}

/// Enroll when needed, and open the signed link.
pub async fn connect(config: &AgentConfig) -> Result<Link, AgentError> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| AgentError::Setup(format!("cannot create {}: {e}", config.state_dir.display())))?;
    let key = lab_key(&config.state_dir)?;
    let http = http_client(&config.server)?;
    let url = config.server.url.trim_end_matches('/').to_string();
    let path = config.state_dir.join("enrollment.json");
    let enrollment = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice::<Enrollment>(&bytes).map_err(|e| AgentError::Setup(format!("{} does not read: {e}", path.display())))?
        }
        Err(_) => {
            let token = config.enroll_token.clone().ok_or_else(|| {
                AgentError::Setup(format!(
                    "this lab host is not enrolled yet ({} is missing): ask an admin for a token (`proofrig labhost token NAME`) and start with --enroll TOKEN",
                    path.display()
                ))
            })?;
            let link = Link {
                http: Arc::new(Mutex::new(http.clone())),
                server: config.server.clone(),
                back: Arc::default(),
                url: url.clone(),
                key: key.clone(),
                labhost: LabHostId(String::new()),
                clock: config.clock.clone(),
            };
            use ed25519_dalek::pkcs8::EncodePublicKey;
            let public_key_pem = key.verifying_key().to_public_key_pem(Default::default()).expect("an Ed25519 key encodes");
            let message = LabHostMessage::Enroll(Enroll { version: PROTOCOL_VERSION, token, name: config.name.clone(), public_key_pem });
            let labhost = match link.send(&message).await?.into_iter().next() {
                Some(ServerMessage::Enrolled(e)) => e.labhost,
                other => return Err(AgentError::Setup(format!("the server answered the enrollment with {other:?}"))),
            };
            let enrollment = Enrollment { labhost, server: url.clone() };
            std::fs::write(&path, serde_json::to_vec_pretty(&enrollment).expect("plain data"))
                .map_err(|e| AgentError::Setup(format!("cannot write {}: {e}", path.display())))?;
            enrollment
        }
    };
    Ok(Link {
        http: Arc::new(Mutex::new(http)),
        server: config.server.clone(),
        back: Arc::default(),
        url,
        key,
        labhost: enrollment.labhost,
        clock: config.clock.clone(),
    })
}

/// A job this lab host runs: what the heartbeat renews, and how to stop it.
struct Held {
    rig: String,
    job: JobId,
    attempt: Attempt,
    fencing: FencingToken,
    abort: watch::Sender<bool>,
}

/// What is shared by the agent's tasks.
struct Shared {
    link: Link,
    assignments: Mutex<Assignments>,
    held: Mutex<Vec<Held>>,
    rigs: Vec<(String, String)>,
    outbox: PathBuf,
    incoming: mpsc::UnboundedSender<ServerMessage>,
    /// Assignments whose answer is on its way: the server sends an assignment again on
    /// every request until it has the answer, and those copies are not answered twice.
    answering: Mutex<std::collections::HashSet<(JobId, Attempt, FencingToken)>>,
    /// The technicians' bench operations and open consoles.
    bench: Arc<Bench>,
    /// Where bench sessions are recorded.
    sessions: PathBuf,
}

/// An upload to finish, written before the job's end is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    dir: PathBuf,
    job: JobId,
    attempt: Attempt,
    fencing: FencingToken,
    outcome: JobOutcome,
}

/// Run the agent until `stop` turns true (or the server refuses this lab host).
pub async fn run(config: AgentConfig, mut stop: watch::Receiver<bool>) -> Result<(), AgentError> {
    let link = connect(&config).await?;
    let rigs = ServedRigs::load(&config.rigs_dir).map_err(|e| AgentError::Setup(e.to_string()))?;
    let adverts = rigs.adverts();
    let rig_digests = rigs.names().map(|n| (n.to_string(), rigs.get(n).map(|r| r.sha256.clone()).unwrap_or_default())).collect();
    let fences = Fences::open(&config.state_dir).map_err(|e| AgentError::Setup(e.to_string()))?;
    let out_dir = config.state_dir.join("bundles");
    let outbox = config.state_dir.join("outbox");
    let sessions = crate::bench::sessions_dir(&config.state_dir);
    for dir in [&out_dir, &outbox, &sessions] {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    }
    let setup = LabHostSetup { id: link.labhost.clone(), rigs, fences, out_dir, key: link.key.clone() };
    let (incoming, mut assigned) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        link,
        assignments: Mutex::new(Assignments::new(setup)),
        held: Mutex::new(Vec::new()),
        rigs: rig_digests,
        outbox,
        incoming,
        answering: Mutex::default(),
        bench: Arc::default(),
        sessions,
    });

    let hello = LabHostMessage::Hello(Hello {
        version: PROTOCOL_VERSION,
        labhost: shared.link.labhost.clone(),
        software: format!("proofrig {}", env!("CARGO_PKG_VERSION")),
    });
    let welcome = shared.link.deliver(&hello, &shared.incoming).await.map_err(AgentError::Refused)?;
    let interval = welcome
        .iter()
        .find_map(|m| match m {
            ServerMessage::Welcome(w) => {
                if let Some(advice) = &w.upgrade_advice {
                    tracing::warn!("{advice}");
                }
                Some(Duration::from_millis(w.heartbeat_interval_ms))
            }
            _ => None,
        })
        .unwrap_or(HEARTBEAT_INTERVAL);
    let answer = shared
        .link
        .deliver(&LabHostMessage::RigAdverts(RigAdverts { rigs: adverts }), &shared.incoming)
        .await
        .map_err(AgentError::Refused)?;
    for m in &answer {
        if let ServerMessage::AdvertsAnswer(a) = m {
            for r in &a.refused {
                tracing::error!("the server refused rig {}: {}", r.rig, r.reason);
            }
        }
    }
    recover_unsealed(&shared, &config.state_dir.join("bundles"));
    resume_outbox(&shared);

    let beat = tokio::spawn(heartbeats(shared.clone(), interval));
    let poll = tokio::spawn(polls(shared.clone()));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(message) = assigned.recv() => match message {
                ServerMessage::Assignment(a) => take(&shared, *a).await,
                ServerMessage::BenchOp(op) => {
                    tokio::spawn(bench_op(shared.clone(), op));
                }
                _ => {}
            },
        }
    }
    beat.abort();
    poll.abort();
    shared.bench.close_all("the lab host stops");
    for held in shared.held.lock().expect("not poisoned").iter() {
        let _ = held.abort.send(true);
    }
    Ok(())
}

/// This lab host's rigs and the leases of the jobs it runs, now.
fn heartbeat(shared: &Shared) -> Heartbeat {
    let held = shared.held.lock().expect("not poisoned");
    let rigs = shared
        .rigs
        .iter()
        .map(|(rig, sha256)| {
            let condition = match held.iter().find(|h| &h.rig == rig) {
                Some(h) => RigCondition::Running { job: h.job, attempt: h.attempt, fencing: h.fencing },
                None => RigCondition::Idle,
            };
            RigReport { rig: rig.clone(), sha256: sha256.clone(), condition }
        })
        .collect();
    Heartbeat { rigs, leases: held.iter().map(|h| h.fencing).collect() }
}

/// A heartbeat every `interval`, on a fixed period whatever each request cost.
async fn heartbeats(shared: Arc<Shared>, interval: Duration) {
    let mut failing = false;
    loop {
        let started = tokio::time::Instant::now();
        let beat = LabHostMessage::Heartbeat(heartbeat(&shared));
        match shared.link.send_within(&beat, timeout_for(&beat, interval)).await {
            Ok(messages) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("the server answers heartbeats again");
                    shared.link.back.notify_waiters();
                }
                for m in messages {
                    match m {
                        ServerMessage::HeartbeatAnswer(answer) => {
                            for lapsed in answer.lapsed {
                                tracing::warn!("lease {} lapsed: {}; aborting its job", lapsed.fencing, lapsed.reason);
                                for held in shared.held.lock().expect("not poisoned").iter().filter(|h| h.fencing == lapsed.fencing) {
                                    let _ = held.abort.send(true);
                                }
                            }
                        }
                        ServerMessage::Assignment(_) => {
                            let _ = shared.incoming.send(m);
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                failing = true;
                tracing::warn!("heartbeat: {e}");
            }
        }
        tokio::time::sleep_until(started + interval).await;
    }
}

/// The least time between two polls: a poll answered at once (an assignment whose
/// answer is still on its way is sent again until the server has it) is not repeated
/// in a tight loop.
const POLL_SPACING: Duration = Duration::from_millis(200);

async fn polls(shared: Arc<Shared>) {
    let poll = LabHostMessage::Poll(Poll { wait_ms: MAX_POLL_WAIT.as_millis() as u64, bench: true });
    loop {
        let sent = tokio::time::Instant::now();
        if let Err(r) = shared.link.deliver(&poll, &shared.incoming).await {
            tracing::error!("the server refused a poll: {}", r.message);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        tokio::time::sleep_until(sent + POLL_SPACING).await;
    }
}

/// Check an assignment, answer it, and start its run.
async fn take(shared: &Arc<Shared>, assignment: Assignment) {
    let key = (assignment.job, assignment.attempt, assignment.fencing);
    if !shared.answering.lock().expect("not poisoned").insert(key) {
        return; // a copy of one being answered
    }
    let accepted = shared.assignments.lock().expect("not poisoned").accept(&assignment);
    let message = match accepted {
        Ok(Accepted::Again(answer)) => LabHostMessage::AssignmentAccepted(answer),
        Ok(Accepted::Start { answer, job }) => {
            let (abort, aborted) = watch::channel(false);
            shared.held.lock().expect("not poisoned").push(Held {
                rig: assignment.rig.clone(),
                job: assignment.job,
                attempt: assignment.attempt,
                fencing: assignment.fencing,
                abort,
            });
            shared.bench.take_rig(&assignment.rig, Some(assignment.fencing), "a job took the rig");
            let (told, heard) = tokio::sync::oneshot::channel();
            let runner = Runner {
                shared: shared.clone(),
                rig: assignment.rig.clone(),
                ids: UploadFor { job: assignment.job, attempt: assignment.attempt, fencing: assignment.fencing },
                accepted: heard,
            };
            tokio::spawn(runner.run(*job, aborted));
            let shared = shared.clone();
            let message = LabHostMessage::AssignmentAccepted(answer);
            let fencing = assignment.fencing;
            tokio::spawn(async move {
                if let Err(r) = shared.link.deliver(&message, &shared.incoming).await {
                    // Cancelled (or passed on) before the server heard: stop the run.
                    tracing::warn!("the server refused the acceptance of an assignment: {}; aborting its run", r.message);
                    for held in shared.held.lock().expect("not poisoned").iter().filter(|h| h.fencing == fencing) {
                        let _ = held.abort.send(true);
                    }
                }
                shared.answering.lock().expect("not poisoned").remove(&key);
                let _ = told.send(());
            });
            return;
        }
        Err(refused) => {
            tracing::warn!("refused {} attempt {}: {}", refused.job, refused.attempt.0, refused.reason);
            LabHostMessage::AssignmentRefused(refused)
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Err(r) = shared.link.deliver(&message, &shared.incoming).await {
            tracing::warn!("the server refused the answer to an assignment: {}", r.message);
        }
        shared.answering.lock().expect("not poisoned").remove(&key);
    });
}

/// Carry out a technician's bench operation (see [`crate::bench`]) and answer it.
async fn bench_op(shared: Arc<Shared>, op: BenchOp) {
    match shared.bench.arrived(op.op) {
        Arrived::Busy => return,
        Arrived::Answered(answer) => {
            let _ = shared.link.deliver(&LabHostMessage::BenchOpAnswer(answer), &shared.incoming).await;
            return;
        }
        Arrived::New => {}
    }
    let admitted = shared.assignments.lock().expect("not poisoned").admit_bench(&op);
    let rig = match admitted {
        Ok(rig) => rig,
        Err(reason) => {
            tracing::warn!("refused {} of {} on rig {} for {}: {reason}", op.action.name(), op.device, op.rig, op.by);
            return answer_bench(&shared, &op, BenchOutcome::Refused { reason }).await;
        }
    };
    shared.bench.take_rig(&op.rig, Some(op.fencing), "a newer reservation took the rig");
    match op.action {
        BenchAction::Console => {
            let (bench, link, sessions) = (shared.bench.clone(), shared.link.clone(), shared.sessions.clone());
            let told = op.clone();
            crate::bench::console(bench, link, op, rig, sessions, async |outcome| answer_bench(&shared, &told, outcome).await).await;
        }
        _ => {
            let outcome = crate::bench::power(&op, &rig, &shared.sessions).await;
            answer_bench(&shared, &op, outcome).await;
        }
    }
}

async fn answer_bench(shared: &Shared, op: &BenchOp, outcome: BenchOutcome) {
    let answer = BenchOpAnswer { op: op.op, fencing: op.fencing, outcome };
    shared.bench.answered(&answer);
    if let Err(r) = shared.link.deliver(&LabHostMessage::BenchOpAnswer(answer), &shared.incoming).await {
        tracing::warn!("the server refused the answer to bench operation {}: {}", op.op, r.message);
    }
}

struct Runner {
    shared: Arc<Shared>,
    rig: String,
    ids: UploadFor,
    /// Fires once the server has the acceptance: the job's end is sent after it, so
    /// a short run's end never overtakes its start (the server would refuse the start,
    /// and its audit log would lack it).
    accepted: tokio::sync::oneshot::Receiver<()>,
}

impl Runner {
    async fn run(self, job: proofrig_run::job::Job, aborted: watch::Receiver<bool>) {
        let dir = job.dir().to_path_buf();
        let run_id = job.run_id().to_string();
        let (done_tx, done_rx) = watch::channel(false);
        let stream = tokio::spawn(stream_journal(
            self.shared.link.clone(),
            self.shared.incoming.clone(),
            dir.join("journal.jsonl"),
            self.ids,
            done_rx,
        ));
        let host = RunHost { operator: format!("labhost:{}", self.shared.link.labhost.0), host: RunHost::this_process().host };
        let result = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime starts");
            runtime.block_on(job.run(host, &mut proofrig_run::progress::Silent, aborted, &proofrig_report::Standard))
        })
        .await;
        let _ = done_tx.send(true);
        let _ = stream.await;
        let outcome = match result {
            Ok(Ok(sealed)) => JobOutcome::Sealed { run_id, verdict: sealed.result.verdict, complete: !sealed.result.aborted },
            Ok(Err(e)) => JobOutcome::Unsealed { run_id, reason: e.to_string() },
            Err(e) => JobOutcome::Unsealed { run_id, reason: format!("the run panicked: {e}") },
        };
        self.shared.assignments.lock().expect("not poisoned").finished(&self.rig);
        self.shared.held.lock().expect("not poisoned").retain(|h| h.fencing != self.ids.fencing);
        let pending = Pending { dir, job: self.ids.job, attempt: self.ids.attempt, fencing: self.ids.fencing, outcome };
        let path = self.shared.outbox.join(format!("{}.{}.json", pending.job.0, pending.attempt.0));
        if let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&pending).expect("plain data")) {
            tracing::error!(
                "cannot write {}: {e}; the bundle is in {} and uploads on this run only",
                path.display(),
                pending.dir.display()
            );
        }
        let _ = self.accepted.await;
        finish(self.shared.clone(), pending, path).await;
    }
}

/// Send the journal's new bytes every second, and the rest when the run is done.
async fn stream_journal(
    link: Link,
    incoming: mpsc::UnboundedSender<ServerMessage>,
    path: PathBuf,
    ids: UploadFor,
    mut done: watch::Receiver<bool>,
) {
    let mut sent = 0u64;
    loop {
        let finished = *done.borrow();
        loop {
            let data = match read_from(&path, sent, MAX_CHUNK_BYTES) {
                Ok(d) if !d.is_empty() => d,
                _ => break,
            };
            let chunk =
                LabHostMessage::JournalChunk(JournalChunk { job: ids.job, attempt: ids.attempt, fencing: ids.fencing, offset: sent, data });
            match link.deliver(&chunk, &incoming).await {
                Ok(messages) => match messages.iter().find_map(|m| if let ServerMessage::JournalHeld(h) = m { Some(h.held) } else { None })
                {
                    Some(held) => sent = held,
                    None => break,
                },
                Err(r) => {
                    tracing::error!("the server refused journal bytes of {}: {}", ids.job, r.message);
                    return;
                }
            }
        }
        if finished {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), done.changed()).await;
    }
}

fn read_from(path: &Path, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(max as u64).read_to_end(&mut data)?;
    Ok(data)
}

/// Uploads left by an earlier start.
fn resume_outbox(shared: &Arc<Shared>) {
    let Ok(entries) = std::fs::read_dir(&shared.outbox) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Pending>(&b).ok()) {
            Some(pending) => {
                tracing::info!("resuming the upload of {} attempt {}", pending.job, pending.attempt.0);
                tokio::spawn(finish(shared.clone(), pending, path));
            }
            None => tracing::error!("{} does not read as a pending upload; move it aside", path.display()),
        }
    }
}

/// Send the job's end, then its bundle; forget it once the server holds it.
async fn finish(shared: Arc<Shared>, pending: Pending, path: PathBuf) {
    let (link, incoming) = (&shared.link, &shared.incoming);
    let end = LabHostMessage::JobEnded(JobEnded {
        job: pending.job,
        attempt: pending.attempt,
        fencing: pending.fencing,
        outcome: pending.outcome.clone(),
    });
    if let Err(r) = link.deliver(&end, incoming).await {
        tracing::warn!("the server refused the end of {}: {}", pending.job, r.message);
    }
    if matches!(pending.outcome, JobOutcome::NotStarted { .. }) {
        let _ = std::fs::remove_file(&path);
        return;
    }
    match upload(link, incoming, &pending).await {
        Ok(()) => {
            let _ = std::fs::remove_file(&path);
        }
        Err(e) => tracing::error!(
            "uploading {} failed: {e}; it is kept in {} and tried again at the next start",
            pending.job,
            pending.dir.display()
        ),
    }
}

async fn upload(link: &Link, incoming: &mpsc::UnboundedSender<ServerMessage>, pending: &Pending) -> Result<(), String> {
    // A chunk refused after a server restart or a lost answer (the server stored the
    // bundle and forgot the upload, or holds other bytes) is settled by offering again:
    // the offer says what the server holds now, all of it when the bundle is stored.
    let mut refused = None;
    for _ in 0..2 {
        match upload_once(link, incoming, pending).await? {
            None => return Ok(()),
            Some(r) => {
                tracing::warn!("the server refused a chunk of {}: {}; offering the bundle again", pending.job, r.message);
                refused = Some(r);
            }
        }
    }
    Err(refused.map(|r| r.message).unwrap_or_default())
}

/// Offer the bundle and send what the server lacks; a chunk's refusal is returned.
async fn upload_once(link: &Link, incoming: &mpsc::UnboundedSender<ServerMessage>, pending: &Pending) -> Result<Option<Refusal>, String> {
    let ids = UploadFor { job: pending.job, attempt: pending.attempt, fencing: pending.fencing };
    let offer = offer(&pending.dir, ids).map_err(|e| e.to_string())?;
    let answer = link.deliver(&LabHostMessage::UploadOffer(offer.clone()), incoming).await.map_err(|r| r.message)?;
    let held = answer
        .into_iter()
        .find_map(|m| if let ServerMessage::UploadHeld(h) = m { Some(h) } else { None })
        .ok_or("the server did not answer the offer with what it holds")?;
    if held.files.iter().zip(&offer.files).all(|(h, f)| h.held == f.len) && held.files.len() == offer.files.len() {
        // Already stored (a resend after the server had it all).
        return Ok(None);
    }
    for chunk in chunks(&pending.dir, &offer, &held) {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let answer = match link.deliver(&LabHostMessage::UploadChunk(chunk), incoming).await {
            Ok(answer) => answer,
            Err(r) => return Ok(Some(r)),
        };
        for m in answer {
            if let ServerMessage::Uploaded(u) = m {
                tracing::info!("{} attempt {} uploaded as run {}: {:?}", u.job, u.attempt.0, u.run_id, u.check);
            }
        }
    }
    Ok(None)
}

/// Seal every bundle a killed run left unsealed, and queue its upload.
///
/// Run on start, before anything runs: a bundle under `bundles` with no attestation
/// was being written by a run of an earlier process. One whose run record carries a
/// job ticket is that job's evidence: it is sealed as INCOMPLETE with the lab host's
/// key (`proofrig_evidence::stopped`, as `proofrig seal` does) and written to the
/// outbox, so [`resume_outbox`] sends its end and uploads it. One that cannot be sealed
/// (its journal does not hold) is left where it is, and said so.
fn recover_unsealed(shared: &Arc<Shared>, bundles: &Path) {
    let Ok(entries) = std::fs::read_dir(bundles) else { return };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() || dir.join(proofrig_evidence::bundle::ATTESTATION).exists() {
            continue;
        }
        let Some(ticket) = job_ticket(&dir) else { continue };
        let (job, attempt) = (JobId(ticket.job), Attempt(ticket.attempt));
        let path = shared.outbox.join(format!("{}.{}.json", job.0, attempt.0));
        if path.exists() {
            continue;
        }
        let now = proofrig_run::executor::now();
        match proofrig_evidence::stopped::seal_stopped(&dir, &shared.link.key, &now, &proofrig_report::Standard) {
            Ok(sealed) => {
                tracing::warn!(
                    "{job} attempt {}: its run stopped with this lab host; sealed {} as INCOMPLETE ({}), uploading it",
                    attempt.0,
                    dir.display(),
                    sealed.sealed.note
                );
                let run_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let outcome = JobOutcome::Sealed { run_id, verdict: sealed.result.verdict, complete: false };
                let pending = Pending { dir: dir.clone(), job, attempt, fencing: FencingToken(ticket.fencing_token), outcome };
                if let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&pending).expect("plain data")) {
                    tracing::error!("cannot write {}: {e}; the sealed bundle stays in {}", path.display(), dir.display());
                }
            }
            Err(e) => tracing::error!(
                "{job} attempt {}: the bundle {} its run left unsealed cannot be sealed: {e}; it stays there for a person to look at",
                attempt.0,
                dir.display()
            ),
        }
    }
}

/// The job ticket in a bundle's run record (its journal's first record), if any.
fn job_ticket(dir: &Path) -> Option<proofrig_evidence::record::JobTicket> {
    use std::io::BufRead;
    let file = std::fs::File::open(dir.join(proofrig_evidence::bundle::JOURNAL)).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    let record: serde_json::Value = serde_json::from_str(&first).ok()?;
    match serde_json::from_value::<proofrig_evidence::record::JournalEntry>(record.get("entry")?.clone()).ok()? {
        proofrig_evidence::record::JournalEntry::RunStarted { job, .. } => job,
        _ => None,
    }
}
