//! Every message between the server and a lab host, in the order a job meets them.
//!
//! The lab host is the machine wired to the rigs. It dials out to the server over
//! HTTPS (no inbound port, as labgrid's exporters and Swarming's bots do), so every
//! exchange is a request the lab host makes, carrying a [`LabHostMessage`], and the
//! answer the server gives, carrying [`ServerMessage`]s; how they are framed on
//! the connection (long poll, WebSocket) is the server crate's business, not the
//! contract's. Both are JSON objects tagged by `"type"`.
//!
//! A session's life:
//!
//! 1. Once per lab host, [`Enroll`] with a one-time token and its public key;
//!    answered by [`Enrolled`] with its id. From then on it authenticates with its key.
//! 2. Each session opens with [`Hello`], stating the protocol version; the server
//!    applies [`crate::version::check`] and answers [`Welcome`] (with the deadlines
//!    both sides keep) or [`Refusal`].
//! 3. [`RigAdverts`]: the complete set of rigs it serves, files and all; the server
//!    checks each ([`crate::advert::check`]) and answers [`AdvertsAnswer`].
//! 4. Every [`Welcome::heartbeat_interval_ms`], a [`Heartbeat`]: its rigs' states and
//!    the leases it holds; answered by [`HeartbeatAnswer`] (renewed or lapsed).
//! 5. An [`Assignment`] gives it a job under a lease and a fencing token; it answers
//!    [`AssignmentAccepted`] or [`AssignmentRefused`].
//! 6. While the job runs, [`JournalChunk`]s stream the journal (console bytes, step
//!    records) by byte offset, answered by [`JournalHeld`]; the server witnesses
//!    each record. A [`Cancel`] stops the run.
//! 7. [`JobEnded`] says how it ended; [`UploadOffer`] and [`UploadChunk`]s bring the
//!    sealed bundle, resumably ([`UploadHeld`]); [`Uploaded`] says it was verified.
//! 8. Since 1.1, a technician at the dashboard works a rig they reserved: a
//!    [`BenchOp`] (power on, off, cycle, or a console opened) carries the
//!    reservation's fencing token, which the lab host checks like a job's before it
//!    touches the rig, and answers with [`BenchOpAnswer`]. An open console then
//!    streams: [`ConsoleOutput`] brings what the device printed, by offset
//!    ([`ConsoleHeld`]), and [`ConsoleWait`] fetches what the person typed
//!    ([`ConsoleInput`]); either answer may say the session is over (the person
//!    left, or their lease ended), and the lab host closes the console at once.
//!
//! Rules for every message:
//! - **Resending is always safe.** A link can drop after the receiver acted and
//!   before the sender saw the answer; each message says what its receiver does when
//!   it arrives twice, and none does anything twice.
//! - **Unknown fields are ignored**, so a minor version may add optional fields; the
//!   server sends a lab host one minor version behind no message type it lacks.
//! - **Nothing here carries a secret.** Rig files hold references only (the advert
//!   check refuses values), and a journal is redacted as it is recorded.
//! - **Times:** [`UnixMillis`] values are the server's clock; a lab host measures a
//!   lease on its own monotonic clock ([`Lease`]), never by comparing clocks.

use std::collections::BTreeMap;

use proofrig_verdict::Verdict;
use serde::{Deserialize, Serialize};

use crate::advert::{RigAdvert, RigSummary};
use crate::files::{BundleFile, PlanFile};
use crate::ids::{Attempt, FencingToken, JobId, LabHostId, UnixMillis};
use crate::version::Version;

/// What a lab host sends; one per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LabHostMessage {
    Enroll(Enroll),
    Hello(Hello),
    RigAdverts(RigAdverts),
    Heartbeat(Heartbeat),
    Poll(Poll),
    AssignmentAccepted(AssignmentAccepted),
    AssignmentRefused(AssignmentRefused),
    JournalChunk(JournalChunk),
    JobEnded(JobEnded),
    UploadOffer(UploadOffer),
    UploadChunk(UploadChunk),
    BenchOpAnswer(BenchOpAnswer),
    ConsoleOutput(ConsoleOutput),
    ConsoleWait(ConsoleWait),
}

/// What the server sends a lab host, in answer to its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Enrolled(Enrolled),
    Welcome(Welcome),
    AdvertsAnswer(AdvertsAnswer),
    HeartbeatAnswer(HeartbeatAnswer),
    Assignment(Box<Assignment>),
    Cancel(Cancel),
    JournalHeld(JournalHeld),
    UploadHeld(UploadHeld),
    Uploaded(Uploaded),
    Refusal(Refusal),
    BenchOp(BenchOp),
    ConsoleHeld(ConsoleHeld),
    ConsoleInput(ConsoleInput),
}

// ---- 1. Enrollment -------------------------------------------------------------

/// Lab host -> server, once: "I am a new lab host; here is the token an admin gave
/// me and the public key I will authenticate with from now on."
///
/// The server checks `version` as for [`Hello`], then consumes the token and stores
/// the key in one transaction: a token works once (a replayed or expired token gets
/// [`RefusalCode::Enrollment`] and changes nothing), and nobody reaching the server
/// without a token can register (LAVA 632a29a73: workers auto-registered behind a
/// proxy). Resent after the token was consumed by this very request (same key), it
/// is answered with the same [`Enrolled`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enroll {
    pub version: Version,
    /// The one-time token from `proofrig labhost token`.
    pub token: String,
    /// The name it would like (its host name); the server may make it unique.
    pub name: String,
    /// Its Ed25519 public key, SPKI PEM (as `proofrig keygen` writes `*.pub`). The
    /// server pins it: every later request is signed with it, and the bundles this
    /// lab host uploads must verify against it.
    pub public_key_pem: String,
}

/// Server -> lab host: enrollment done. The lab host stores `labhost` beside its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    pub labhost: LabHostId,
    pub server_version: Version,
}

// ---- 2. Session --------------------------------------------------------------

/// Lab host -> server: the first message of every session (after a start, a
/// reconnect, or a [`Refusal`] with [`RefusalCode::Session`]).
///
/// The server checks `version` before reading anything else; on a mismatch it
/// answers [`RefusalCode::Version`] with [`crate::version::VersionError`]'s text, and
/// the lab host stops asking for work (its running job, if any, still finishes and
/// uploads when a compatible server is back). Otherwise [`Welcome`]. A resent Hello
/// opens the session again, harmlessly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: Version,
    pub labhost: LabHostId,
    /// The proofrig build, e.g. `proofrig 0.1.0`: shown on the lab host's page.
    pub software: String,
}

/// Server -> lab host: the session is open, and these are the deadlines.
///
/// The server states them and the lab host uses them, so the two never disagree on
/// how often to beat (LAVA 9bcdc08b7: a keepalive shorter than the ping interval
/// made workers flap offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub server_version: Version,
    /// Set when the lab host is one minor version behind: it works, and should be
    /// upgraded; the lab host logs it.
    pub upgrade_advice: Option<String>,
    pub heartbeat_interval_ms: u64,
    /// Silence after which the server considers the lab host offline.
    pub offline_after_ms: u64,
}

// ---- 3. Rigs -----------------------------------------------------------------

/// Lab host -> server: every rig this lab host serves, now. Sent after [`Welcome`],
/// and again whenever a rig file changes (a heartbeat reports a rig's digest).
///
/// The list is complete, not a change: a rig it no longer lists is withdrawn (the
/// server shows it offline and assigns nothing to it). The server checks each advert
/// ([`crate::advert::check`]) and stores the accepted ones; resending the same list
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RigAdverts {
    pub rigs: Vec<RigAdvert>,
}

/// Server -> lab host: which rigs it schedules on, and which it refused and why.
/// The lab host logs each refusal for its technician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertsAnswer {
    pub accepted: Vec<RigSummary>,
    pub refused: Vec<AdvertRefused>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertRefused {
    pub rig: String,
    /// [`crate::advert::AdvertError`]'s text: the file, line, field and what to do.
    pub reason: String,
}

// ---- 4. Heartbeat ------------------------------------------------------------

/// Lab host -> server, every [`Welcome::heartbeat_interval_ms`]: "I am alive, my rigs
/// are in these states, and I still hold these leases."
///
/// The server records the time it arrived (the lab host is online until
/// [`Welcome::offline_after_ms`] pass without one), renews each lease it still grants
/// and answers [`HeartbeatAnswer`]. It is the cheap path: no rig files, no journal,
/// so a busy server does not starve it (labgrid #499, #1100). A resent heartbeat
/// renews again, which is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub rigs: Vec<RigReport>,
    /// The fencing tokens of the leases it holds: its running jobs' and the
    /// reservations whose console or power it serves.
    pub leases: Vec<FencingToken>,
}

/// Lab host -> server: "anything for me?" The server answers at once when it has
/// an [`Assignment`] or a [`Cancel`] waiting for this lab host, and otherwise holds
/// the request open up to `wait_ms` (at most [`crate::wire::MAX_POLL_WAIT`]) and
/// answers as soon as one comes, or with nothing. A lab host keeps one poll open at
/// all times, so a job reaches it as soon as it is claimed, with no polling delay
/// and no inbound port. Resent: harmless (what is waiting is sent again until
/// answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    pub wait_ms: u64,
    /// Since 1.1: this lab host takes [`BenchOp`]s (a 1.0 lab host, which leaves
    /// it out, is sent none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bench: bool,
}

/// A rig's state as the lab host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RigReport {
    pub rig: String,
    /// SHA-256 of its rig file now; a change makes the lab host advertise again and
    /// the server refuse to assign under the old digest.
    pub sha256: String,
    pub condition: RigCondition,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum RigCondition {
    /// Nothing running on it.
    Idle,
    /// Running this job.
    Running { job: JobId, attempt: Attempt, fencing: FencingToken },
    /// Present but unusable from here (its file no longer loads, a device node is
    /// gone): the server takes it out of scheduling with this reason.
    Unusable { reason: String },
}

/// Server -> lab host: what became of the leases a heartbeat named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    pub renewed: Vec<LeaseRenewed>,
    /// Leases the server no longer grants (expired, cancelled, or unknown to it). The
    /// lab host stops what runs under each at once: a job is aborted (its restore
    /// steps run, its bundle is sealed ABORTED and uploaded), a console is closed,
    /// and the token is refused from then on.
    pub lapsed: Vec<LeaseLapsed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewed {
    pub fencing: FencingToken,
    pub lease: Lease,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseLapsed {
    pub fencing: FencingToken,
    pub reason: String,
}

/// How long a lease holds: until the server's `expires_at`, which the lab host reads
/// as `valid_for_ms` counted on its own monotonic clock from the moment it *sent*
/// the request this message answers. That moment is before the server granted it,
/// so the lab host always gives up first, whatever the two clocks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub expires_at: UnixMillis,
    pub valid_for_ms: u64,
}

// ---- 5. Assignment -----------------------------------------------------------

/// Server -> lab host: run this job on this rig, under this lease.
///
/// The server sends it (again on every request, until the lab host answers it) once
/// the scheduler placed the job and the claim committed. The lab host checks, in
/// order: the rig is one of its own and its file's digest is still `rig_sha256`
/// (the job was planned against those bytes); the fencing token is not stale
/// ([`crate::ids::admit`]); the rig is idle; every plan name is a bare file name
/// ([`crate::files::check_plan_name`]) and every plan loads. Then it starts the run
/// with the fencing token recorded in the journal's run record and answers
/// [`AssignmentAccepted`]; else [`AssignmentRefused`] and nothing runs. Received again
/// for a job it already accepted (same job, attempt and token), it answers
/// [`AssignmentAccepted`] again and starts nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub job: JobId,
    pub attempt: Attempt,
    /// The job's attempt this one retries (a failed or INFRA run is retried only as
    /// a new attempt; both keep their evidence).
    pub retry_of: Option<Attempt>,
    pub fencing: FencingToken,
    pub lease: Lease,
    pub rig: String,
    pub rig_sha256: String,
    /// In the order they run, each under the file name the bundle stores it by.
    pub plans: Vec<PlanFile>,
    /// The run's parameters, as `proofrig run --param` gives them.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Run on this device of the rig only (`proofrig run --device`).
    pub device: Option<String>,
}

/// Lab host -> server: the job runs. The server marks it running (resent: no change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentAccepted {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
    /// The run's id: its bundle's directory name, which the upload and the verified
    /// result will carry.
    pub run_id: String,
}

/// Lab host -> server: the job did not start, and why. The server frees the rig's
/// lease and puts the job back in the queue, or ends it when the reason is the job's
/// own (a plan that does not load), so a bad job cannot circle forever. Resent: no change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRefused {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
    pub why: AssignmentRefusal,
    /// For people: the file, field or state at fault.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentRefusal {
    /// The rig is not served here, its file changed, or it is busy: requeue.
    Rig,
    /// The fencing token is older than one already accepted: requeue, and the server
    /// learns its view of the rig was stale.
    StaleFence,
    /// A plan's name or content is unusable: the job ends, it would fail anywhere.
    Plan,
}

// ---- 6. Running --------------------------------------------------------------

/// Lab host -> server: the next bytes of a running job's journal (`journal.jsonl`
/// of its bundle: hash-chained records of console bytes, SSH exchanges and step
/// results, already redacted), starting at byte `offset` of the file.
///
/// The lab host sends what the journal writer wrote since the last [`JournalHeld`]
/// (at most [`crate::timing::MAX_CHUNK_BYTES`] at once), as it is written, and keeps
/// it until the server holds it. The server places the chunk with
/// [`crate::resume::place`]: a resend is stored once; bytes it repeats must equal
/// those already held, or the job is flagged (the journal was rewritten after the
/// server saw it) and [`RefusalCode::Conflict`] answered; a gap is answered with what
/// it holds, from where the lab host resends. As whole records arrive it checks
/// their chain and records the head it has witnessed. Chunks may arrive after the
/// job's lease lapsed: evidence is never refused for being late.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalChunk {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
    pub offset: u64,
    #[serde(with = "crate::bytes::base64")]
    pub data: Vec<u8>,
}

/// Server -> lab host: how many bytes of the job's journal it holds. The lab host
/// forgets everything before `held` and sends on from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalHeld {
    pub job: JobId,
    pub attempt: Attempt,
    pub held: u64,
}

/// Server -> lab host: stop this job (a person cancelled it, or the server took its
/// rig back). The lab host aborts the run: the current step stops, restore steps run,
/// the bundle is sealed ABORTED, and [`JobEnded`] and the upload follow as for any
/// run. Received for a job that is not running there (it already ended, or never
/// started), the lab host answers with its [`JobEnded`] again or ignores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
    /// Who cancelled it (a user name, or `server`), recorded in the journal.
    pub by: String,
    pub reason: String,
}

// ---- 7. End and upload -------------------------------------------------------

/// Lab host -> server: the run is over; it ended like this. Sent once the bundle is
/// sealed (or could not be), before the upload. The server records the outcome,
/// frees the rig's lease and expects the upload; the outcome is not a result until
/// the uploaded bundle verifies. Resent: no change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnded {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
    pub outcome: JobOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JobOutcome {
    /// Sealed: the run's verdict by the lab host's count, which the server recomputes
    /// when it verifies the upload. `complete` is false for a run sealed as
    /// incomplete (stopped before its end, `proofrig seal`).
    Sealed { run_id: String, verdict: Verdict, complete: bool },
    /// The run stopped on a fault of proofrig or could not be sealed; its journal is
    /// kept on the lab host and uploaded as it is.
    Unsealed { run_id: String, reason: String },
    /// Nothing ran: the bundle could not even be created. The job ends INFRA.
    NotStarted { reason: String },
}

/// Lab host -> server: "I have this sealed bundle to upload; these are its files."
///
/// The list is every file of the bundle's directory. The server checks each path
/// ([`crate::files::check_bundle_path`]) and the sizes against its limits, and
/// answers [`UploadHeld`]: how much of each file it already holds (nothing, the
/// first time; something, after an interrupted upload or a server restart). Sent
/// again with the same files, it gets the same answer; with different files for the
/// same run, [`RefusalCode::Conflict`]. Like journal chunks, an upload is accepted
/// whenever it comes, even after the job's lease lapsed or the job was declared lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadOffer {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
    pub run_id: String,
    pub files: Vec<BundleFile>,
}

/// Lab host -> server: bytes `offset..offset + data.len()` of one offered file.
///
/// `len` and `sha256` describe the whole file and must be those of the offer. The
/// server places the chunk like a journal chunk ([`crate::resume::place`]); when the
/// file is complete it checks its digest (a mismatch: the file is discarded,
/// [`RefusalCode::Conflict`]). When every file is complete it verifies the bundle
/// against the lab host's pinned key and the journal heads it witnessed, stores it
/// unmodified with a signed receipt, and answers [`Uploaded`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChunk {
    pub job: JobId,
    pub attempt: Attempt,
    pub fencing: FencingToken,
    pub path: String,
    pub offset: u64,
    pub len: u64,
    pub sha256: String,
    #[serde(with = "crate::bytes::base64")]
    pub data: Vec<u8>,
}

/// Server -> lab host: how much of each offered file it holds. The lab host sends
/// each file on from its `held`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadHeld {
    pub job: JobId,
    pub attempt: Attempt,
    pub files: Vec<FileHeld>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHeld {
    pub path: String,
    pub held: u64,
}

/// Server -> lab host: the bundle is stored, and this is what verifying it found.
/// Either way the server keeps it; the lab host may now delete its copy. A bundle
/// that does not verify is flagged and never shown as a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub job: JobId,
    pub attempt: Attempt,
    pub run_id: String,
    pub check: BundleCheck,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum BundleCheck {
    /// `proofrig verify` passed; the verdict is the one replay recomputed.
    Verified { verdict: Verdict },
    /// It did not verify, or does not extend the journal heads the server witnessed.
    Flagged { reason: String },
}

// ---- Refusals ----------------------------------------------------------------

/// Server -> lab host: this request was refused and changed nothing stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    /// For people: what was wrong and what to do.
    pub message: String,
}

/// What the lab host does about a [`Refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The versions cannot work together: stop asking for work, log the message.
    Version,
    /// The enrollment token is unknown, used or expired: ask an admin for a new one.
    Enrollment,
    /// The request's signature or lab host id is not accepted: stop, log the message.
    Authentication,
    /// No open session (the server restarted): send [`Hello`] again.
    Session,
    /// Malformed or unacceptable content (a bad path, an unknown job): do not resend
    /// it unchanged.
    Invalid,
    /// Over a size limit: send smaller chunks.
    TooLarge,
    /// Bytes that contradict what the server already holds for this job.
    Conflict,
    /// The server is overloaded or its store is down: resend later, unchanged.
    Busy,
}

// ---- 8. Bench operations (since 1.1) -----------------------------------------

/// Which bench operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchAction {
    PowerOn,
    PowerOff,
    PowerCycle,
    /// Open the device's console for the person: the lab host answers once it is
    /// open, then streams it until the session is over.
    Console,
}

impl BenchAction {
    pub fn name(self) -> &'static str {
        match self {
            BenchAction::PowerOn => "power on",
            BenchAction::PowerOff => "power off",
            BenchAction::PowerCycle => "power cycle",
            BenchAction::Console => "console",
        }
    }
}

/// Server -> lab host: a person holding the rig's reservation under `fencing` asks
/// for `action` on `device`. The lab host refuses it ([`BenchOutcome::Refused`])
/// when `fencing` is older than a token it has accepted for the rig (the
/// reservation has passed to someone else, or a job has run since), when a job of
/// its own runs on the rig, or when the device has no such channel; otherwise it
/// records the token, acts, records what it did like `proofrig power` and
/// `proofrig console` do, and answers. Sent in answer to polls until answered;
/// a copy of one being carried out is ignored, and one already answered is
/// answered again from memory, never carried out twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchOp {
    pub op: u64,
    pub rig: String,
    pub device: String,
    pub fencing: FencingToken,
    /// Who asked (a user name): recorded in the session's transcript.
    pub by: String,
    pub action: BenchAction,
}

/// Lab host -> server: how a [`BenchOp`] went. Resent: no change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchOpAnswer {
    pub op: u64,
    pub fencing: FencingToken,
    pub outcome: BenchOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BenchOutcome {
    /// Done (for a console: open); `detail` is what the person is shown, e.g.
    /// `power on` or where the session is recorded.
    Done { detail: String },
    /// Not attempted: a stale fencing token, a running job, an unknown device.
    Refused { reason: String },
    /// Attempted and failed: the PDU did not answer, the console would not open.
    Failed { reason: String },
}

/// Lab host -> server: what the device printed on an open console, from byte
/// `offset` of the session's output. Answered by [`ConsoleHeld`]; resent bytes the
/// server holds already are ignored. `ended` says the console closed on the lab
/// host's side (the device's channel failed), with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleOutput {
    pub op: u64,
    pub fencing: FencingToken,
    pub offset: u64,
    #[serde(with = "crate::bytes::base64")]
    pub data: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// Server -> lab host: the session's output held so far; `close` when the session
/// is over (close the console now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleHeld {
    pub op: u64,
    pub held: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<String>,
}

/// Lab host -> server: "what has the person typed from byte `from` on?" Held open
/// up to `wait_ms` (at most [`crate::wire::MAX_POLL_WAIT`]) until they type or the
/// session ends; answered by [`ConsoleInput`]. Asking again from the same offset
/// gets the same bytes: typed keys are delivered, never doubled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleWait {
    pub op: u64,
    pub fencing: FencingToken,
    pub from: u64,
    pub wait_ms: u64,
}

/// Server -> lab host: typed bytes from `offset` on (possibly none), and `close`
/// when the session is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleInput {
    pub op: u64,
    pub offset: u64,
    #[serde(with = "crate::bytes::base64")]
    pub data: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advert::RigAdvert;
    use crate::version::PROTOCOL_VERSION;

    fn ids() -> (JobId, Attempt, FencingToken) {
        (JobId(42), Attempt(2), FencingToken(9001))
    }

    fn lease() -> Lease {
        Lease { expires_at: UnixMillis(1_767_225_600_000), valid_for_ms: 60_000 }
    }

    fn every_labhost_message() -> Vec<LabHostMessage> {
        let (job, attempt, fencing) = ids();
        vec![
            LabHostMessage::Enroll(Enroll {
                version: PROTOCOL_VERSION,
                token: "tok-1".into(),
                name: "lab-a".into(),
                public_key_pem: "-----BEGIN PUBLIC KEY-----\nMCow...\n-----END PUBLIC KEY-----\n".into(),
            }),
            LabHostMessage::Hello(Hello {
                version: PROTOCOL_VERSION,
                labhost: LabHostId("lab-a".into()),
                software: "proofrig 0.1.0".into(),
            }),
            LabHostMessage::RigAdverts(RigAdverts {
                rigs: vec![RigAdvert::new("bench-3", "rigs/bench-3.yaml", b"rig: bench-3\n\xff binary-safe".to_vec())],
            }),
            LabHostMessage::Heartbeat(Heartbeat {
                rigs: vec![
                    RigReport {
                        rig: "bench-3".into(),
                        sha256: "ab".repeat(32),
                        condition: RigCondition::Running { job, attempt, fencing },
                    },
                    RigReport { rig: "bench-4".into(), sha256: "cd".repeat(32), condition: RigCondition::Idle },
                    RigReport {
                        rig: "bench-5".into(),
                        sha256: "ef".repeat(32),
                        condition: RigCondition::Unusable { reason: "/dev/ttyUSB3 is gone".into() },
                    },
                ],
                leases: vec![fencing, FencingToken(7)],
            }),
            LabHostMessage::Poll(Poll { wait_ms: 25_000, bench: true }),
            LabHostMessage::BenchOpAnswer(BenchOpAnswer { op: 7, fencing, outcome: BenchOutcome::Done { detail: "power on".into() } }),
            LabHostMessage::BenchOpAnswer(BenchOpAnswer {
                op: 7,
                fencing,
                outcome: BenchOutcome::Refused { reason: "rig bench-3: fencing token 9001 is stale".into() },
            }),
            LabHostMessage::BenchOpAnswer(BenchOpAnswer { op: 7, fencing, outcome: BenchOutcome::Failed { reason: "no PDU".into() } }),
            LabHostMessage::ConsoleOutput(ConsoleOutput { op: 7, fencing, offset: 10, data: b"login: \x1b[0m".to_vec(), ended: None }),
            LabHostMessage::ConsoleOutput(ConsoleOutput { op: 7, fencing, offset: 17, data: vec![], ended: Some("EOF".into()) }),
            LabHostMessage::ConsoleWait(ConsoleWait { op: 7, fencing, from: 3, wait_ms: 25_000 }),
            LabHostMessage::AssignmentAccepted(AssignmentAccepted {
                job,
                attempt,
                fencing,
                run_id: "20260101T000000Z-bench-3-x-a1b2c3".into(),
            }),
            LabHostMessage::AssignmentRefused(AssignmentRefused {
                job,
                attempt,
                fencing,
                why: AssignmentRefusal::StaleFence,
                reason: "rig bench-3: fencing token 9001 is stale".into(),
            }),
            LabHostMessage::JournalChunk(JournalChunk { job, attempt, fencing, offset: 1 << 40, data: b"{\"n\":0}\n\0\x01".to_vec() }),
            LabHostMessage::JobEnded(JobEnded {
                job,
                attempt,
                fencing,
                outcome: JobOutcome::Sealed { run_id: "r1".into(), verdict: Verdict::Fail, complete: true },
            }),
            LabHostMessage::JobEnded(JobEnded {
                job,
                attempt,
                fencing,
                outcome: JobOutcome::Unsealed { run_id: "r1".into(), reason: "disk full".into() },
            }),
            LabHostMessage::JobEnded(JobEnded {
                job,
                attempt,
                fencing,
                outcome: JobOutcome::NotStarted { reason: "results/ is read-only".into() },
            }),
            LabHostMessage::UploadOffer(UploadOffer {
                job,
                attempt,
                fencing,
                run_id: "r1".into(),
                files: vec![BundleFile { path: "journal.jsonl".into(), len: 3_000_000_000, sha256: "01".repeat(32) }],
            }),
            LabHostMessage::UploadChunk(UploadChunk {
                job,
                attempt,
                fencing,
                path: "journal.jsonl".into(),
                offset: 1_048_576,
                len: 3_000_000_000,
                sha256: "01".repeat(32),
                data: vec![0, 255, 10, 13],
            }),
        ]
    }

    fn every_server_message() -> Vec<ServerMessage> {
        let (job, attempt, fencing) = ids();
        let summary = RigSummary {
            rig: "bench-3".into(),
            sha256: "ab".repeat(32),
            devices: ["ru1".to_string()].into(),
            roles: ["radio-unit".to_string()].into(),
            tags: ["lte".to_string()].into(),
        };
        vec![
            ServerMessage::Enrolled(Enrolled { labhost: LabHostId("lab-a".into()), server_version: PROTOCOL_VERSION }),
            ServerMessage::Welcome(Welcome {
                server_version: PROTOCOL_VERSION,
                upgrade_advice: Some("upgrade the lab host".into()),
                heartbeat_interval_ms: 10_000,
                offline_after_ms: 30_000,
            }),
            ServerMessage::AdvertsAnswer(AdvertsAnswer {
                accepted: vec![summary],
                refused: vec![AdvertRefused { rig: "bench-9".into(), reason: "rigs/bench-9.yaml:3:1: devices: ...".into() }],
            }),
            ServerMessage::HeartbeatAnswer(HeartbeatAnswer {
                renewed: vec![LeaseRenewed { fencing, lease: lease() }],
                lapsed: vec![LeaseLapsed { fencing: FencingToken(7), reason: "reservation ended".into() }],
            }),
            ServerMessage::Assignment(Box::new(Assignment {
                job,
                attempt,
                retry_of: Some(Attempt(1)),
                fencing,
                lease: lease(),
                rig: "bench-3".into(),
                rig_sha256: "ab".repeat(32),
                plans: vec![PlanFile { name: "4.2.3.1-ssh.yaml".into(), bytes: b"id: x\n".to_vec() }],
                params: BTreeMap::from([
                    ("vlan".to_string(), serde_json::json!(12)),
                    ("mode".to_string(), serde_json::json!({"a": [1, "b"]})),
                ]),
                device: Some("ru1".into()),
            })),
            ServerMessage::Cancel(Cancel { job, attempt, fencing, by: "alice".into(), reason: "wrong firmware".into() }),
            ServerMessage::JournalHeld(JournalHeld { job, attempt, held: 123_456 }),
            ServerMessage::UploadHeld(UploadHeld { job, attempt, files: vec![FileHeld { path: "journal.jsonl".into(), held: 0 }] }),
            ServerMessage::Uploaded(Uploaded {
                job,
                attempt,
                run_id: "r1".into(),
                check: BundleCheck::Verified { verdict: Verdict::Pass },
            }),
            ServerMessage::Uploaded(Uploaded {
                job,
                attempt,
                run_id: "r1".into(),
                check: BundleCheck::Flagged { reason: "TAMPERED at record 7".into() },
            }),
            ServerMessage::Refusal(Refusal { code: RefusalCode::Version, message: "lab host speaks protocol 1.7".into() }),
            ServerMessage::BenchOp(BenchOp {
                op: 7,
                rig: "bench-3".into(),
                device: "ru1".into(),
                fencing,
                by: "tom".into(),
                action: BenchAction::PowerCycle,
            }),
            ServerMessage::ConsoleHeld(ConsoleHeld { op: 7, held: 17, close: Some("the reservation ended".into()) }),
            ServerMessage::ConsoleInput(ConsoleInput { op: 7, offset: 3, data: b"ls\r".to_vec(), close: None }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_json() {
        for message in every_labhost_message() {
            let json = serde_json::to_string(&message).unwrap();
            assert_eq!(serde_json::from_str::<LabHostMessage>(&json).unwrap(), message, "{json}");
        }
        for message in every_server_message() {
            let json = serde_json::to_string(&message).unwrap();
            assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), message, "{json}");
        }
    }

    /// Each message type's place; no wildcard arm, so a new type does not compile
    /// until it is numbered here, and the test below then wants it in the lists.
    fn labhost_kind(m: &LabHostMessage) -> usize {
        use LabHostMessage::*;
        match m {
            Enroll(_) => 0,
            Hello(_) => 1,
            RigAdverts(_) => 2,
            Heartbeat(_) => 3,
            AssignmentAccepted(_) => 4,
            AssignmentRefused(_) => 5,
            JournalChunk(_) => 6,
            JobEnded(_) => 7,
            UploadOffer(_) => 8,
            UploadChunk(_) => 9,
            Poll(_) => 10,
            BenchOpAnswer(_) => 11,
            ConsoleOutput(_) => 12,
            ConsoleWait(_) => 13,
        }
    }

    fn server_kind(m: &ServerMessage) -> usize {
        use ServerMessage::*;
        match m {
            Enrolled(_) => 0,
            Welcome(_) => 1,
            AdvertsAnswer(_) => 2,
            HeartbeatAnswer(_) => 3,
            Assignment(_) => 4,
            Cancel(_) => 5,
            JournalHeld(_) => 6,
            UploadHeld(_) => 7,
            Uploaded(_) => 8,
            Refusal(_) => 9,
            BenchOp(_) => 10,
            ConsoleHeld(_) => 11,
            ConsoleInput(_) => 12,
        }
    }

    #[test]
    fn the_round_trip_lists_hold_every_message_type() {
        let labhost: std::collections::BTreeSet<usize> = every_labhost_message().iter().map(labhost_kind).collect();
        let server: std::collections::BTreeSet<usize> = every_server_message().iter().map(server_kind).collect();
        assert_eq!(labhost, (0..14).collect(), "a lab host message type is missing from every_labhost_message");
        assert_eq!(server, (0..13).collect(), "a server message type is missing from every_server_message");
    }

    #[test]
    fn messages_are_tagged_by_type_and_bytes_travel_as_base64() {
        let (job, attempt, fencing) = ids();
        let chunk = LabHostMessage::JournalChunk(JournalChunk { job, attempt, fencing, offset: 5, data: b"ab\n".to_vec() });
        let json = serde_json::to_value(&chunk).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "journal_chunk", "job": 42, "attempt": 2, "fencing": 9001, "offset": 5, "data": "YWIK"})
        );
        let bad = r#"{"type":"journal_chunk","job":42,"attempt":2,"fencing":9001,"offset":5,"data":"not base64!"}"#;
        let err = serde_json::from_str::<LabHostMessage>(bad).unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
    }

    #[test]
    fn a_field_added_by_a_newer_minor_version_is_ignored() {
        let json = r#"{"type":"welcome","server_version":{"major":1,"minor":1},"upgrade_advice":null,
            "heartbeat_interval_ms":10000,"offline_after_ms":30000,"witness_interval_ms":10000}"#;
        let ServerMessage::Welcome(welcome) = serde_json::from_str(json).unwrap() else { panic!() };
        assert_eq!(welcome.heartbeat_interval_ms, 10_000);
    }

    #[test]
    fn a_message_type_the_receiver_does_not_know_is_an_error_naming_it() {
        let err = serde_json::from_str::<LabHostMessage>(r#"{"type":"teleport","job":1}"#).unwrap_err().to_string();
        assert!(err.contains("teleport"), "{err}");
    }
}
