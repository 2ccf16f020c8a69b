//! The lab hosts' side of the server: the one route they POST every message to.
//!
//! A request is one [`LabHostMessage`]; the answer is a JSON array of
//! [`ServerMessage`]s: the answer to that message first, then every assignment
//! waiting for that lab host (until it answers it), so a claimed job reaches its lab
//! host on the next request whatever it was. A [`Poll`] is held open until something
//! waits or its time is up ([`Hub`] wakes it when this replica claims a job; it also
//! looks again every second, for jobs another replica claimed).
//!
//! Who is calling is proved per request ([`proofrig_proto::wire`]): every message but
//! [`Enroll`] is signed with the key the lab host enrolled, and checked against the
//! pinned key before anything is read from it. A refusal is a [`Refusal`] in the
//! array, with an HTTP status saying the same (401 for who, 400 for what, 409 for a
//! conflict, 503 to resend later); it changes nothing stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use proofrig_proto::advert;
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId, UnixMillis};
use proofrig_proto::labhost::{
    AdvertRefused, AdvertsAnswer, ConsoleHeld, ConsoleInput, ConsoleWait, Enroll, Enrolled, Hello, LabHostMessage, Poll, Refusal,
    RefusalCode, RigAdverts, ServerMessage, UploadHeld, Welcome,
};
use proofrig_proto::timing::{HEARTBEAT_INTERVAL, LABHOST_OFFLINE_AFTER, MAX_CHUNK_BYTES};
use proofrig_proto::version::{self, Compat, PROTOCOL_VERSION};
use proofrig_proto::wire::{Presented, LABHOST_PATH, MAX_POLL_WAIT};
use tokio::sync::Notify;

use crate::api::{secret_sha256, ApiState};
use crate::consoles::Consoles;
use crate::inbox::{Inbox, Progress, Sender};
use crate::live::{Live, Seen};
use crate::store::{Ctx, StoreError};

/// Wakes the polls of lab hosts that have something waiting.
#[derive(Default)]
pub struct Hub {
    waiting: Mutex<HashMap<LabHostId, Arc<Notify>>>,
    /// Wakes the server's scheduling loop (a rig was freed, a lab host came).
    pub schedule: Notify,
}

impl Hub {
    fn notify_of(&self, labhost: &LabHostId) -> Arc<Notify> {
        self.waiting.lock().expect("the hub's lock is never poisoned").entry(labhost.clone()).or_default().clone()
    }

    /// Something waits for `labhost`: its open poll answers now.
    pub fn wake(&self, labhost: &LabHostId) {
        self.notify_of(labhost).notify_one();
    }
}

/// What the lab-host route needs besides the API's state.
#[derive(Clone)]
pub struct WireState {
    pub api: ApiState,
    pub hub: Arc<Hub>,
    pub live: Arc<Live>,
    pub consoles: Arc<Consoles>,
}

/// The router of [`LABHOST_PATH`]. Its body limit fits the largest chunk as base64.
pub fn router(state: WireState) -> Router {
    let limit = MAX_CHUNK_BYTES * 4 / 3 + 64 * 1024;
    Router::new().route(LABHOST_PATH, post(receive)).with_state(state).layer(DefaultBodyLimit::max(limit))
}

/// A refusal, as the status and the one-message array.
struct Refused(StatusCode, Refusal);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(vec![ServerMessage::Refusal(self.1)])).into_response()
    }
}

fn refused(code: RefusalCode, message: impl Into<String>) -> Refused {
    let status = match code {
        RefusalCode::Authentication | RefusalCode::Enrollment => StatusCode::UNAUTHORIZED,
        RefusalCode::Invalid | RefusalCode::Version => StatusCode::BAD_REQUEST,
        RefusalCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        RefusalCode::Conflict => StatusCode::CONFLICT,
        RefusalCode::Session => StatusCode::PRECONDITION_FAILED,
        RefusalCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
    };
    Refused(status, Refusal { code, message: message.into() })
}

fn from_store(e: StoreError) -> Refused {
    match e {
        StoreError::NotFound(m) | StoreError::Invalid(m) => refused(RefusalCode::Invalid, m),
        StoreError::Conflict(m) => refused(RefusalCode::Conflict, m),
        StoreError::Lease(l) => refused(RefusalCode::Conflict, l.to_string()),
        other => refused(RefusalCode::Busy, format!("{other}; resend later")),
    }
}

async fn receive(State(state): State<WireState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&state, peer, &headers, &body).await {
        Ok(messages) => Json(messages).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn answer(state: &WireState, peer: SocketAddr, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ServerMessage>, Refused> {
    let message: LabHostMessage =
        serde_json::from_slice(body).map_err(|e| refused(RefusalCode::Invalid, format!("the request is not a lab host message: {e}")))?;
    let now = state.api.clock.now();
    if let LabHostMessage::Enroll(enroll) = &message {
        return self::enroll(state, enroll, peer, now).await.map(|m| vec![m]);
    }
    let header = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let presented = Presented::read(header).map_err(|e| refused(RefusalCode::Authentication, e.to_string()))?;
    let labhost = presented.labhost.clone();
    let pem = state.api.store.labhost_key(&labhost).await.map_err(from_store)?.ok_or_else(|| {
        refused(
            RefusalCode::Authentication,
            format!("{labhost} is not enrolled here, or an admin revoked it: enroll it again with a token from `proofrig labhost token`"),
        )
    })?;
    let key = VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| refused(RefusalCode::Busy, format!("the stored key of {labhost} does not read ({e}); an admin must look at it")))?;
    presented.check(&key, body, now).map_err(|e| refused(RefusalCode::Authentication, e.to_string()))?;
    let session = Session { state, labhost: &labhost, key: &key, ctx: Ctx::new(format!("labhost:{}", labhost.0), peer.to_string(), now) };
    let mut messages = session.dispatch(message).await?;
    messages.extend(session.waiting().await?);
    Ok(messages)
}

async fn enroll(state: &WireState, enroll: &Enroll, peer: SocketAddr, now: UnixMillis) -> Result<ServerMessage, Refused> {
    version::check(PROTOCOL_VERSION, enroll.version).map_err(|e| refused(RefusalCode::Version, e.to_string()))?;
    VerifyingKey::from_public_key_pem(&enroll.public_key_pem).map_err(|e| {
        refused(RefusalCode::Invalid, format!("`public_key_pem` is not an Ed25519 public key in SPKI PEM ({e}); send the lab host's *.pub"))
    })?;
    let ctx = Ctx::new(format!("enrolling:{}", enroll.name), peer.to_string(), now);
    match state.api.store.take_enrollment(&secret_sha256(&enroll.token), &enroll.public_key_pem, &ctx).await.map_err(from_store)? {
        Ok(labhost) => Ok(ServerMessage::Enrolled(Enrolled { labhost, server_version: PROTOCOL_VERSION })),
        Err(why) => Err(refused(RefusalCode::Enrollment, why.to_string())),
    }
}

/// One authenticated request of one lab host.
struct Session<'a> {
    state: &'a WireState,
    labhost: &'a LabHostId,
    key: &'a VerifyingKey,
    ctx: Ctx,
}

impl Session<'_> {
    async fn dispatch(&self, message: LabHostMessage) -> Result<Vec<ServerMessage>, Refused> {
        let store = &self.state.api.store;
        if let Some((job, attempt, fencing)) = job_of(&message) {
            self.own(job, attempt, fencing).await?;
        }
        let one = |m| Ok(vec![m]);
        match message {
            LabHostMessage::Enroll(_) => unreachable!("answered before authentication"),
            LabHostMessage::Hello(hello) => self.hello(&hello).map(|m| vec![m]),
            LabHostMessage::RigAdverts(adverts) => self.adverts(&adverts).await.map(|m| vec![m]),
            LabHostMessage::Heartbeat(beat) => {
                let answer = store.heartbeat(self.labhost, &beat.leases, &self.ctx).await.map_err(from_store)?;
                self.state.hub.schedule.notify_one();
                one(ServerMessage::HeartbeatAnswer(answer))
            }
            LabHostMessage::Poll(poll) => {
                self.poll(&poll).await?;
                match poll.bench {
                    true => self.bench_waiting().await,
                    false => Ok(Vec::new()),
                }
            }
            LabHostMessage::BenchOpAnswer(answer) => {
                let op = store.bench_answer(self.labhost, &answer, &self.ctx).await.map_err(from_store)?;
                if let (Some(relay), false) =
                    (self.state.consoles.get(op.op), matches!(answer.outcome, proofrig_proto::labhost::BenchOutcome::Done { .. }))
                {
                    relay.close(&format!("the lab host did not open the console: {:?}", answer.outcome));
                }
                self.state.consoles.answered();
                Ok(Vec::new())
            }
            LabHostMessage::ConsoleOutput(output) => {
                self.own_op(output.op, output.fencing).await?;
                let Some(relay) = self.state.consoles.get(output.op) else {
                    let close =
                        Some(format!("console session {} is not open on this server (it ended, or another replica holds it)", output.op));
                    return one(ServerMessage::ConsoleHeld(ConsoleHeld {
                        op: output.op,
                        held: output.offset.saturating_add(output.data.len() as u64),
                        close,
                    }));
                };
                let held = relay.output(output.offset, &output.data);
                if let Some(ended) = &output.ended {
                    relay.close(&format!("the console closed on the lab host: {ended}"));
                }
                one(ServerMessage::ConsoleHeld(ConsoleHeld { op: output.op, held, close: relay.closed() }))
            }
            LabHostMessage::ConsoleWait(wait) => {
                self.own_op(wait.op, wait.fencing).await?;
                one(self.console_wait(&wait).await)
            }
            LabHostMessage::AssignmentAccepted(a) => {
                store.job_started(a.job, a.attempt, a.fencing, &a.run_id, &self.ctx).await.map_err(from_store)?;
                Ok(Vec::new())
            }
            LabHostMessage::AssignmentRefused(r) => {
                store.assignment_refused(&r, self.labhost, &self.ctx).await.map_err(from_store)?;
                self.state.hub.schedule.notify_one();
                Ok(Vec::new())
            }
            LabHostMessage::JournalChunk(chunk) => {
                let at = self.ctx.now.rfc3339();
                let seen = Seen { lab_host: &self.labhost.0, at: &at };
                let held = self.state.live.chunk(&chunk, &seen).map_err(|r| refused(r.code, r.message))?;
                one(ServerMessage::JournalHeld(held))
            }
            LabHostMessage::JobEnded(end) => {
                let at = self.ctx.now.rfc3339();
                self.state
                    .live
                    .witness_now(end.job, end.attempt, &Seen { lab_host: &self.labhost.0, at: &at })
                    .map_err(|r| refused(r.code, r.message))?;
                store.job_ended(end.job, end.attempt, end.fencing, &self.ctx).await.map_err(from_store)?;
                self.state.hub.schedule.notify_one();
                Ok(Vec::new())
            }
            LabHostMessage::UploadOffer(offer) => self.upload_offer(offer).await,
            LabHostMessage::UploadChunk(chunk) => self.upload_chunk(chunk).await.map(|m| vec![m]),
        }
    }

    /// A message about a job must come from the lab host the job was assigned to,
    /// under the token it was assigned under: no lab host writes another's evidence.
    async fn own(&self, job: JobId, attempt: Attempt, fencing: FencingToken) -> Result<(), Refused> {
        match self.state.api.store.assigned_to(job, attempt).await.map_err(from_store)? {
            Some((labhost, assigned)) if &labhost == self.labhost && assigned == fencing => Ok(()),
            Some((labhost, assigned)) if &labhost == self.labhost => {
                Err(refused(RefusalCode::Conflict, format!("{job} attempt {} was assigned under {assigned}, not {fencing}", attempt.0)))
            }
            _ => Err(refused(RefusalCode::Authentication, format!("{job} attempt {} was not assigned to {}", attempt.0, self.labhost))),
        }
    }

    /// A message about a bench operation must come from the lab host it was sent to,
    /// under its token.
    async fn own_op(&self, op: u64, fencing: FencingToken) -> Result<(), Refused> {
        match self.state.api.store.bench_op(op).await.map_err(from_store)? {
            Some(record) if &record.labhost == self.labhost && record.fencing == fencing => Ok(()),
            _ => {
                Err(refused(RefusalCode::Authentication, format!("bench operation {op} was not sent to {} under {fencing}", self.labhost)))
            }
        }
    }

    /// Typed bytes past `wait.from`, held until there are some, the session ends, or
    /// the wait is up.
    async fn console_wait(&self, wait: &ConsoleWait) -> ServerMessage {
        let Some(relay) = self.state.consoles.get(wait.op) else {
            let close = Some(format!("console session {} is not open on this server (it ended, or another replica holds it)", wait.op));
            return ServerMessage::ConsoleInput(ConsoleInput { op: wait.op, offset: wait.from, data: Vec::new(), close });
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait.wait_ms).min(MAX_POLL_WAIT);
        let mut changes = relay.changes();
        loop {
            let (offset, data) = relay.input_from(wait.from);
            let close = relay.closed();
            if !data.is_empty() || close.is_some() || tokio::time::Instant::now() >= deadline {
                return ServerMessage::ConsoleInput(ConsoleInput { op: wait.op, offset, data, close });
            }
            let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
        }
    }

    /// The bench operations waiting for this lab host.
    async fn bench_waiting(&self) -> Result<Vec<ServerMessage>, Refused> {
        let ops = self.state.api.store.bench_unanswered(self.labhost, self.ctx.now).await.map_err(from_store)?;
        Ok(ops.iter().map(|op| ServerMessage::BenchOp(op.message())).collect())
    }

    fn hello(&self, hello: &Hello) -> Result<ServerMessage, Refused> {
        if &hello.labhost != self.labhost {
            return Err(refused(
                RefusalCode::Invalid,
                format!("the Hello names {}, the request is signed by {}", hello.labhost, self.labhost),
            ));
        }
        let compat = version::check(PROTOCOL_VERSION, hello.version).map_err(|e| refused(RefusalCode::Version, e.to_string()))?;
        let upgrade_advice = match compat {
            Compat::OneMinorBehind => Some(format!(
                "this lab host speaks protocol {}, the server {}: it works; upgrade the lab host",
                hello.version, PROTOCOL_VERSION
            )),
            _ => None,
        };
        Ok(ServerMessage::Welcome(Welcome {
            server_version: PROTOCOL_VERSION,
            upgrade_advice,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u64,
            offline_after_ms: LABHOST_OFFLINE_AFTER.as_millis() as u64,
        }))
    }

    async fn adverts(&self, adverts: &RigAdverts) -> Result<ServerMessage, Refused> {
        let mut answer = AdvertsAnswer { accepted: Vec::new(), refused: Vec::new() };
        for rig in &adverts.rigs {
            match advert::check(rig) {
                Ok((_, summary)) => answer.accepted.push(summary),
                Err(e) => answer.refused.push(AdvertRefused { rig: rig.rig.clone(), reason: e.to_string() }),
            }
        }
        self.state.api.store.advertise(self.labhost, &answer.accepted, &self.ctx).await.map_err(from_store)?;
        self.state.hub.schedule.notify_one();
        Ok(ServerMessage::AdvertsAnswer(answer))
    }

    /// Hold the request until an assignment waits for this lab host or `wait_ms` passed.
    async fn poll(&self, poll: &Poll) -> Result<(), Refused> {
        let wait = Duration::from_millis(poll.wait_ms).min(MAX_POLL_WAIT);
        let notify = self.state.hub.notify_of(self.labhost);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !self.state.api.store.unanswered(self.labhost).await.map_err(from_store)?.is_empty() {
                return Ok(());
            }
            if poll.bench && !self.state.api.store.bench_unanswered(self.labhost, self.ctx.now).await.map_err(from_store)?.is_empty() {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            // Another replica may have claimed: look again every second.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_secs(1)), notify.notified()).await;
        }
    }

    /// Run `work` on the blocking pool as an upload of this lab host's: with its pinned
    /// key, when the request arrived, and what the server held and witnessed of the
    /// job's journal (what a stored bundle is checked against and its receipt lists).
    async fn as_sender<T: Send + 'static>(
        &self,
        (job, attempt): (JobId, Attempt),
        work: impl FnOnce(&Inbox, &Sender<'_>, &SigningKey) -> Result<T, Refusal> + Send + 'static,
    ) -> Result<T, Refused> {
        let (inbox, server_key, key, labhost) =
            (self.state.api.inbox.clone(), self.state.api.key.clone(), *self.key, self.labhost.0.clone());
        let received_at = self.ctx.now.rfc3339();
        let (live, witnessed) = (self.state.live.journal(job, attempt), self.state.live.witnessed(job, attempt));
        tokio::task::spawn_blocking(move || {
            let from = Sender { lab_host: &labhost, key: &key, received_at: &received_at, live: Some(&live), witnessed: &witnessed };
            work(&inbox, &from, &server_key)
        })
        .await
        .map_err(|e| busy(&e))?
        .map_err(|r| refused(r.code, r.message))
    }

    /// An offer; when the server holds every file already (a resend after the server
    /// had it all, or a server that died between the last chunk and storing it), the
    /// upload is settled now and the answer says how, so no upload stays pending.
    async fn upload_offer(&self, offer: proofrig_proto::labhost::UploadOffer) -> Result<Vec<ServerMessage>, Refused> {
        let (held, settled) = self
            .as_sender((offer.job, offer.attempt), move |inbox, from, server_key| {
                let held = inbox.offer(&offer)?;
                let all_held = held.files.iter().zip(&offer.files).all(|(h, f)| h.held == f.len) && held.files.len() == offer.files.len();
                match all_held {
                    true => inbox.settle(&offer, from, server_key).map(|settled| (held, settled)),
                    false => Ok((held, None)),
                }
            })
            .await?;
        let mut answer = vec![ServerMessage::UploadHeld(held)];
        if let Some(uploaded) = settled {
            self.recorded(&uploaded).await?;
            answer.push(ServerMessage::Uploaded(uploaded));
        }
        Ok(answer)
    }

    async fn upload_chunk(&self, chunk: proofrig_proto::labhost::UploadChunk) -> Result<ServerMessage, Refused> {
        let (job, attempt) = (chunk.job, chunk.attempt);
        match self.as_sender((job, attempt), move |inbox, from, server_key| inbox.chunk(&chunk, from, server_key)).await? {
            Progress::Held(held) => Ok(ServerMessage::UploadHeld(UploadHeld { job, attempt, files: vec![held] })),
            Progress::Stored(uploaded) => {
                self.recorded(&uploaded).await?;
                Ok(ServerMessage::Uploaded(uploaded))
            }
        }
    }

    /// A stored bundle recorded on its attempt, with its run's facts when it verified.
    async fn recorded(&self, uploaded: &proofrig_proto::labhost::Uploaded) -> Result<(), Refused> {
        let store = &self.state.api.store;
        store.uploaded(uploaded, &self.ctx).await.map_err(from_store)?;
        self.state.live.forget(uploaded.job, uploaded.attempt);
        if matches!(uploaded.check, proofrig_proto::labhost::BundleCheck::Verified { .. }) {
            if let Some((devices, run_ms)) = self.state.api.inbox.run_facts(&uploaded.run_id) {
                store.run_facts(uploaded.job, uploaded.attempt, &devices, run_ms).await.map_err(from_store)?;
            }
        }
        Ok(())
    }

    /// Every assignment this lab host has not answered yet.
    async fn waiting(&self) -> Result<Vec<ServerMessage>, Refused> {
        let store = &self.state.api.store;
        let mut messages = Vec::new();
        for (job, attempt) in store.unanswered(self.labhost).await.map_err(from_store)? {
            match store.assignment(job, attempt, self.ctx.now).await {
                Ok(assignment) => messages.push(ServerMessage::Assignment(Box::new(assignment))),
                // Cancelled between the two reads: nothing to send.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(from_store(e)),
            }
        }
        Ok(messages)
    }
}

/// The job a message is about, if it is about one.
fn job_of(message: &LabHostMessage) -> Option<(JobId, Attempt, FencingToken)> {
    use LabHostMessage as M;
    match message {
        M::Enroll(_) | M::Hello(_) | M::RigAdverts(_) | M::Heartbeat(_) | M::Poll(_) => None,
        M::BenchOpAnswer(_) | M::ConsoleOutput(_) | M::ConsoleWait(_) => None,
        M::AssignmentAccepted(m) => Some((m.job, m.attempt, m.fencing)),
        M::AssignmentRefused(m) => Some((m.job, m.attempt, m.fencing)),
        M::JournalChunk(m) => Some((m.job, m.attempt, m.fencing)),
        M::JobEnded(m) => Some((m.job, m.attempt, m.fencing)),
        M::UploadOffer(m) => Some((m.job, m.attempt, m.fencing)),
        M::UploadChunk(m) => Some((m.job, m.attempt, m.fencing)),
    }
}

fn busy(e: &dyn std::fmt::Display) -> Refused {
    refused(RefusalCode::Busy, format!("the server failed handling the request ({e}); resend later"))
}
