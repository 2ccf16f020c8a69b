//! The server's REST API: the routes, who may call each, and what each does.
//!
//! Why one table: labgrid had no authentication for years and LAVA added per-object
//! checks to its XML-RPC after the fact; a check written inside each handler is the
//! one that gets forgotten. Here [`ROUTES`] lists every route with the roles it
//! admits, the router is built from that table and nothing else, and each route is
//! wrapped in the same gate ([`authorize`]): a bearer token, looked up by its SHA-256
//! in the store, unknown or expired is 401, a role the route does not list is 403,
//! before any handler runs. The tests walk the table; the OpenAPI document
//! (`GET /openapi.json`) is built from it too, so the three cannot drift apart.
//!
//! Every refusal is an [`ApiError`] JSON body with a stable `code` and a message that
//! says what to do, and changes nothing stored. Every state change goes through the
//! store, whose operations write their audit record (who: the token's user; from
//! where: the TCP peer, never a forwarded-for header) in the same transaction.
//! Request bodies are bounded ([`Limits::max_body`]) and parsed strictly (unknown
//! fields are errors); a plan is checked as `proofrig plan check` checks it, and
//! refused with the same file:line:column message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use axum::{Extension, Json, Router};
use proofrig_evidence::bundle::{list_files, sha256_file, Manifest, ATTESTATION, MANIFEST};
use proofrig_plan::{Plan, PlanError};
use proofrig_proto::api::NewSchedule;
use proofrig_proto::api::{
    ApiError, AuditView, Cancel, EnrollmentCreated, NewEnrollment, NewToken, NewUser, Reserve, Role, RunView, SetHealth, SetRigState,
    SubmitJob, TokenCreated,
};
use proofrig_proto::files::{check_bundle_path, check_plan_name, BundleFile};
use proofrig_proto::ids::JobId;
use proofrig_proto::labhost::BundleCheck;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tower_http::timeout::TimeoutLayer;

use crate::clock::Clock;
use crate::inbox::Inbox;
use crate::recurring::Recurrence;
use crate::store::{Ctx, NewUserRecord, Store, StoreError, TokenCheck};

/// How long the first admin's token works: a day, to make the real admins.
pub const BOOTSTRAP_TOKEN_VALID: Duration = Duration::from_secs(24 * 3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Bounds on requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body (a job's plans are kilobytes; 8 MiB by default).
    pub max_body: usize,
    /// The longest a request may take before it is answered 408.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body: 8 << 20, request_timeout: Duration::from_secs(60) }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub limits: Limits,
    /// Where uploaded bundles and their receipts are kept.
    pub inbox: Arc<Inbox>,
    /// The server's own key: it signs receipts and witness records.
    pub key: Arc<ed25519_dalek::SigningKey>,
}

/// One API route: its method and path (axum's `{param}` syntax, as in OpenAPI), the
/// roles it admits, and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub roles: &'static [Role],
    pub summary: &'static str,
    id: RouteId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteId {
    OpenApi,
    Submit,
    Queue,
    Cancel,
    Rigs,
    Reserve,
    Extend,
    Release,
    Users,
    AddUser,
    AddToken,
    Enroll,
    Audit,
    AddSchedule,
    Schedules,
    RemoveSchedule,
    Run,
    RunFile,
    RigState,
    SetHealth,
    Health,
    ClearHealth,
    DisableUser,
    RevokeOwnToken,
    RevokeLabHost,
    Retry,
    Reviews,
}

use Role::{Admin, Manager, Technician, Tester};

const EVERYONE: &[Role] = &[Technician, Tester, Manager, Admin];

/// Every route of the API and who may call it. The router serves exactly these.
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/openapi.json", roles: EVERYONE, summary: "read the OpenAPI document", id: RouteId::OpenApi },
    Route { method: "POST", path: "/api/jobs", roles: &[Technician, Tester], summary: "submit a job", id: RouteId::Submit },
    Route { method: "GET", path: "/api/jobs", roles: EVERYONE, summary: "list the queue", id: RouteId::Queue },
    // A tester cancels only the jobs they submitted (checked in `cancel`); a technician any.
    Route { method: "POST", path: "/api/jobs/{job}/cancel", roles: &[Technician, Tester], summary: "cancel a job", id: RouteId::Cancel },
    Route { method: "GET", path: "/api/rigs", roles: EVERYONE, summary: "list the rigs", id: RouteId::Rigs },
    Route { method: "POST", path: "/api/rigs/{rig}/reservation", roles: &[Technician], summary: "reserve a rig", id: RouteId::Reserve },
    Route {
        method: "PUT",
        path: "/api/rigs/{rig}/reservation",
        roles: &[Technician],
        summary: "extend a reservation",
        id: RouteId::Extend,
    },
    Route {
        method: "DELETE",
        path: "/api/rigs/{rig}/reservation",
        roles: &[Technician],
        summary: "release a reservation",
        id: RouteId::Release,
    },
    Route { method: "GET", path: "/api/users", roles: &[Admin], summary: "list users", id: RouteId::Users },
    Route { method: "POST", path: "/api/users", roles: &[Admin], summary: "add a user", id: RouteId::AddUser },
    Route {
        method: "POST",
        path: "/api/users/{user}/tokens",
        roles: &[Admin],
        summary: "mint an API token for a user",
        id: RouteId::AddToken,
    },
    Route {
        method: "POST",
        path: "/api/labhosts/enrollments",
        roles: &[Admin],
        summary: "mint a lab host's one-time enrollment token",
        id: RouteId::Enroll,
    },
    Route { method: "GET", path: "/api/audit", roles: &[Admin], summary: "read the audit log", id: RouteId::Audit },
    Route {
        method: "POST",
        path: "/api/schedules",
        roles: &[Technician, Tester],
        summary: "add a recurring run",
        id: RouteId::AddSchedule,
    },
    Route { method: "GET", path: "/api/schedules", roles: EVERYONE, summary: "list the recurring runs", id: RouteId::Schedules },
    // A tester removes only the schedules they added (checked in `remove_schedule`); a technician any.
    Route {
        method: "DELETE",
        path: "/api/schedules/{schedule}",
        roles: &[Technician, Tester],
        summary: "remove a recurring run",
        id: RouteId::RemoveSchedule,
    },
    // A flagged bundle only to an admin who asks for it with `?flagged=true` (checked in `stored_run`).
    Route { method: "GET", path: "/api/runs/{run}", roles: EVERYONE, summary: "read a stored run's receipt and files", id: RouteId::Run },
    Route {
        method: "GET",
        path: "/api/runs/{run}/files/{*path}",
        roles: EVERYONE,
        summary: "download a file of a stored run's bundle",
        id: RouteId::RunFile,
    },
    Route {
        method: "POST",
        path: "/api/rigs/{rig}/state",
        roles: &[Technician],
        summary: "take a rig out of service or put it back",
        id: RouteId::RigState,
    },
    Route {
        method: "PUT",
        path: "/api/rigs/{rig}/health",
        roles: &[Technician],
        summary: "set a rig's health check",
        id: RouteId::SetHealth,
    },
    Route { method: "GET", path: "/api/rigs/{rig}/health", roles: EVERYONE, summary: "read a rig's health check", id: RouteId::Health },
    Route {
        method: "DELETE",
        path: "/api/rigs/{rig}/health",
        roles: &[Technician],
        summary: "remove a rig's health check",
        id: RouteId::ClearHealth,
    },
    Route {
        method: "DELETE",
        path: "/api/users/{user}",
        roles: &[Admin],
        summary: "disable a user (all their tokens)",
        id: RouteId::DisableUser,
    },
    Route {
        method: "DELETE",
        path: "/api/tokens/current",
        roles: EVERYONE,
        summary: "revoke the token of this request",
        id: RouteId::RevokeOwnToken,
    },
    Route {
        method: "DELETE",
        path: "/api/labhosts/{labhost}",
        roles: &[Admin],
        summary: "revoke a lab host (its key)",
        id: RouteId::RevokeLabHost,
    },
    // A tester retries only the jobs they submitted (checked in `retry`); a technician any.
    Route {
        method: "POST",
        path: "/api/jobs/{job}/retry",
        roles: &[Technician, Tester],
        summary: "retry a job as a new attempt",
        id: RouteId::Retry,
    },
    Route { method: "GET", path: "/api/runs/{run}/reviews", roles: EVERYONE, summary: "read a run's signed reviews", id: RouteId::Reviews },
];

/// The API's router: [`ROUTES`], each behind [`authorize`], a JSON 404 for anything else.
pub fn router(state: ApiState) -> Router {
    let limits = state.limits.clone();
    let mut router = Router::new();
    for route in ROUTES {
        let gated = handler(route.id).route_layer(middleware::from_fn_with_state((state.clone(), route), authorize));
        router = router.route(route.path, gated);
    }
    router
        .fallback(|| async { ApiFail::new(StatusCode::NOT_FOUND, "not_found", "no such API route; GET /openapi.json lists them") })
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
}

fn handler(id: RouteId) -> MethodRouter<ApiState> {
    match id {
        RouteId::OpenApi => routing::get(openapi),
        RouteId::Submit => routing::post(submit),
        RouteId::Queue => routing::get(queue),
        RouteId::Cancel => routing::post(cancel),
        RouteId::Rigs => routing::get(rigs),
        RouteId::Reserve => routing::post(reserve),
        RouteId::Extend => routing::put(extend),
        RouteId::Release => routing::delete(release),
        RouteId::Users => routing::get(users),
        RouteId::AddUser => routing::post(add_user),
        RouteId::AddToken => routing::post(add_token),
        RouteId::Enroll => routing::post(enroll),
        RouteId::Audit => routing::get(audit),
        RouteId::AddSchedule => routing::post(add_schedule),
        RouteId::Schedules => routing::get(schedules),
        RouteId::RemoveSchedule => routing::delete(remove_schedule),
        RouteId::Run => routing::get(run),
        RouteId::RunFile => routing::get(run_file),
        RouteId::RigState => routing::post(rig_state),
        RouteId::SetHealth => routing::put(set_health),
        RouteId::Health => routing::get(health),
        RouteId::ClearHealth => routing::delete(clear_health),
        RouteId::DisableUser => routing::delete(disable_user),
        RouteId::RevokeOwnToken => routing::delete(revoke_own_token),
        RouteId::RevokeLabHost => routing::delete(revoke_labhost),
        RouteId::Retry => routing::post(retry),
        RouteId::Reviews => routing::get(reviews),
    }
}

// ---- errors ----------------------------------------------------------------------

/// A refused request: its status and [`ApiError`] body.
#[derive(Debug)]
pub struct ApiFail {
    status: StatusCode,
    body: ApiError,
}

impl ApiFail {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiFail {
        ApiFail { status, body: ApiError { code: code.into(), message: message.into() } }
    }

    fn invalid(message: impl Into<String>) -> ApiFail {
        ApiFail::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl IntoResponse for ApiFail {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiFail {
    fn from(e: StoreError) -> ApiFail {
        let message = e.to_string();
        match e {
            StoreError::NotFound(_) => ApiFail::new(StatusCode::NOT_FOUND, "not_found", message),
            StoreError::Conflict(_) | StoreError::Lease(_) => ApiFail::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Invalid(_) => ApiFail::invalid(message),
            StoreError::Open { .. } | StoreError::Database { .. } | StoreError::Migrate { .. } => {
                ApiFail::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            }
            StoreError::Corrupt(_) => ApiFail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

type ApiResult<T> = Result<T, ApiFail>;

/// A JSON request body, bounded and strict, refused as an [`ApiError`]: 413 when too
/// large, 400 with serde's line and column when malformed. An empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiFail;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiFail::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is over the server's limit; send less (one job's plans at a time)",
            ),
            status => ApiFail::new(status, "invalid", format!("the request body could not be read: {}", rejection.body_text())),
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|e| ApiFail::invalid(format!("the request body is not the JSON this route takes: {e}")))
    }
}

// ---- authentication and roles ----------------------------------------------------

/// Who is calling, from where: put on each request by [`authorize`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    pub origin: SocketAddr,
    /// The SHA-256 of the token presented (to revoke it).
    token_sha256: String,
}

impl Caller {
    fn ctx(&self, clock: &Clock) -> Ctx {
        Ctx::new(self.user.clone(), self.origin.to_string(), clock.now())
    }
}

/// A random secret (`<prefix>_` and 64 hex digits: 256 bits).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    format!("{prefix}_{}", hex::encode(bytes))
}

/// What the store keeps of a token: its SHA-256, hex.
pub fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

async fn authorize(
    State((state, route)): State<(ApiState, &'static Route)>,
    ConnectInfo(origin): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    match caller(&state, route, origin, token.as_deref()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(fail) => fail.into_response(),
    }
}

async fn caller(state: &ApiState, route: &Route, origin: SocketAddr, header: Option<&str>) -> ApiResult<Caller> {
    let unauthorized = |message: String| ApiFail::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(unauthorized(
            "no API token: send `Authorization: Bearer <token>` (PROOFRIG_TOKEN for the CLI); an admin mints tokens".into(),
        ));
    };
    let token_sha256 = secret_sha256(token);
    match state.store.check_token(&token_sha256, state.clock.now()).await? {
        TokenCheck::Unknown => Err(unauthorized("unknown API token: check PROOFRIG_TOKEN, or ask an admin for a new one".into())),
        TokenCheck::Expired { user, expired_at } => Err(unauthorized(format!(
            "the API token of {user} expired (at {} ms since the epoch); ask an admin for a new one (POST /api/users/{user}/tokens)",
            expired_at.0
        ))),
        TokenCheck::Revoked { user } => Err(unauthorized(format!(
            "this API token of {user} was revoked, or {user} was disabled, by an admin; ask an admin if that is a mistake"
        ))),
        TokenCheck::Valid { user, role } if route.roles.contains(&role) => Ok(Caller { user, role, origin, token_sha256 }),
        TokenCheck::Valid { user, role } => {
            let admitted: Vec<&str> = route.roles.iter().map(|r| r.name()).collect();
            Err(ApiFail::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{user} is a {role} and may not {} ({} {}); that takes the role {}",
                    route.summary,
                    route.method,
                    route.path,
                    admitted.join(" or ")
                ),
            ))
        }
    }
}

// ---- handlers ----------------------------------------------------------------------

/// Each plan as `proofrig plan check` checks it, refused with its file:line:column.
fn check_plans(job: &SubmitJob) -> ApiResult<()> {
    if job.plans.is_empty() {
        return Err(ApiFail::invalid("a job needs at least one plan in `plans`"));
    }
    for plan in &job.plans {
        check_plan_name(&plan.name).map_err(|e| ApiFail::invalid(e.to_string()))?;
        match Plan::from_bytes(&plan.name, &plan.bytes) {
            Ok(_) => {}
            Err(PlanError::Invalid(e)) => {
                let hint = e.hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default();
                return Err(ApiFail::invalid(format!("{e}{hint}")));
            }
            Err(e) => return Err(ApiFail::invalid(e.to_string())),
        }
    }
    Ok(())
}

async fn submit(State(s): State<ApiState>, Extension(c): Extension<Caller>, JsonBody(job): JsonBody<SubmitJob>) -> ApiResult<Response> {
    check_plans(&job)?;
    let submitted = s.store.submit(&job, &c.ctx(&s.clock)).await?;
    Ok((StatusCode::CREATED, Json(submitted)).into_response())
}

async fn queue(State(s): State<ApiState>) -> ApiResult<Response> {
    let jobs: Vec<_> = s.store.jobs().await?.into_iter().map(|j| j.view).collect();
    Ok(Json(jobs).into_response())
}

/// The signed reviews kept beside a stored run (DSSE envelopes of in-toto statements),
/// as they were signed: whoever reads them checks them against the bundle.
async fn reviews(State(s): State<ApiState>, Path(run): Path<String>) -> ApiResult<Response> {
    check_run_name(&run)?;
    if !s.inbox.bundle(&run).is_dir() {
        return Err(ApiFail::new(StatusCode::NOT_FOUND, "not_found", format!("no stored run {run}")));
    }
    Ok(Json(crate::review::read_all(&s.inbox.reviews(&run))).into_response())
}

/// A tester acts only on the jobs they submitted.
async fn own_job(s: &ApiState, c: &Caller, job: u64, doing: &str) -> ApiResult<()> {
    if c.role == Role::Tester {
        let submitted_by = s.store.job(JobId(job)).await?.first().map(|j| j.view.submitted_by.clone());
        if let Some(by) = submitted_by.filter(|by| *by != c.user) {
            let message = format!(
                "{} is a tester and may {doing} only the jobs they submitted; job {job} is {by}'s: ask them, or a technician",
                c.user
            );
            return Err(ApiFail::new(StatusCode::FORBIDDEN, "forbidden", message));
        }
    }
    Ok(())
}

/// A job whose latest attempt ended (done, lost, cancelled) runs again as a new
/// attempt linked to it; both are kept.
async fn retry(State(s): State<ApiState>, Extension(c): Extension<Caller>, Path(job): Path<u64>) -> ApiResult<Response> {
    own_job(&s, &c, job, "retry").await?;
    let attempt = s.store.retry(JobId(job), &c.ctx(&s.clock)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "job": job, "attempt": attempt.0 }))).into_response())
}

async fn cancel(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(job): Path<u64>,
    JsonBody(body): JsonBody<Cancel>,
) -> ApiResult<Response> {
    own_job(&s, &c, job, "cancel").await?;
    let reason = body.reason.unwrap_or_else(|| "cancelled".into());
    let was = s.store.cancel(JobId(job), &reason, &c.ctx(&s.clock)).await?;
    Ok(Json(serde_json::json!({ "job": job, "was": was })).into_response())
}

async fn rigs(State(s): State<ApiState>) -> ApiResult<Response> {
    Ok(Json(s.store.rigs(s.clock.now()).await?).into_response())
}

fn minutes(m: Option<u32>) -> Option<Duration> {
    m.map(|m| Duration::from_secs(u64::from(m) * 60))
}

async fn reserve(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(rig): Path<String>,
    JsonBody(body): JsonBody<Reserve>,
) -> ApiResult<Response> {
    Ok(Json(s.store.reserve(&rig, minutes(body.minutes), &c.ctx(&s.clock)).await?).into_response())
}

async fn extend(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(rig): Path<String>,
    JsonBody(body): JsonBody<Reserve>,
) -> ApiResult<Response> {
    let length = minutes(body.minutes).unwrap_or(proofrig_proto::timing::RESERVATION_DEFAULT);
    Ok(Json(s.store.extend(&rig, length, &c.ctx(&s.clock)).await?).into_response())
}

async fn release(State(s): State<ApiState>, Extension(c): Extension<Caller>, Path(rig): Path<String>) -> ApiResult<Response> {
    s.store.release(&rig, &c.ctx(&s.clock)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A technician takes a rig out of service or puts it back, saying why.
async fn rig_state(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(rig): Path<String>,
    JsonBody(body): JsonBody<SetRigState>,
) -> ApiResult<Response> {
    if body.reason.trim().is_empty() {
        return Err(ApiFail::invalid("`reason`: say why the rig changes state; the rig's history keeps it"));
    }
    let state = s.store.set_rig_state(&rig, body.state, &body.reason, &c.ctx(&s.clock)).await?;
    Ok(Json(serde_json::json!({ "rig": rig, "state": state })).into_response())
}

/// A rig's health check: its plan is checked as `plan check` checks one.
async fn set_health(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(rig): Path<String>,
    JsonBody(body): JsonBody<SetHealth>,
) -> ApiResult<Response> {
    let as_job = SubmitJob {
        plans: vec![body.plan.clone()],
        target: proofrig_proto::api::RigSelector::Rig(rig.clone()),
        priority: Default::default(),
        params: Default::default(),
        device: None,
        not_before: None,
    };
    check_plans(&as_job)?;
    let every = Duration::from_secs(u64::from(body.every_minutes) * 60);
    Ok(Json(s.store.set_health(&rig, &body.plan, every, &c.ctx(&s.clock)).await?).into_response())
}

async fn health(State(s): State<ApiState>, Path(rig): Path<String>) -> ApiResult<Response> {
    match s.store.health(&rig).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiFail::new(StatusCode::NOT_FOUND, "not_found", format!("rig {rig} has no health check (set one with PUT)"))),
    }
}

async fn clear_health(State(s): State<ApiState>, Extension(c): Extension<Caller>, Path(rig): Path<String>) -> ApiResult<Response> {
    s.store.clear_health(&rig, &c.ctx(&s.clock)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn disable_user(State(s): State<ApiState>, Extension(c): Extension<Caller>, Path(user): Path<String>) -> ApiResult<Response> {
    s.store.disable_user(&user, &c.ctx(&s.clock)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revoke the token this request carries: a person who suspects it leaked cuts it off.
async fn revoke_own_token(State(s): State<ApiState>, Extension(c): Extension<Caller>) -> ApiResult<Response> {
    s.store.revoke_token(&c.token_sha256, &c.ctx(&s.clock)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke_labhost(State(s): State<ApiState>, Extension(c): Extension<Caller>, Path(labhost): Path<String>) -> ApiResult<Response> {
    s.store.revoke_labhost(&proofrig_proto::ids::LabHostId(labhost), &c.ctx(&s.clock)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn users(State(s): State<ApiState>) -> ApiResult<Response> {
    Ok(Json(s.store.users().await?).into_response())
}

/// A user or lab host name: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
fn check_name(what: &str, name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    match ok {
        true => Ok(()),
        false => {
            Err(ApiFail::invalid(format!("{what} name `{name}`: use 1 to 64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit")))
        }
    }
}

fn token_days(days: Option<u32>) -> ApiResult<Duration> {
    match days.unwrap_or(90) {
        d @ 1..=365 => Ok(DAY * d),
        d => Err(ApiFail::invalid(format!("days {d}: a token is valid for 1 to 365 days"))),
    }
}

async fn add_user(State(s): State<ApiState>, Extension(c): Extension<Caller>, JsonBody(body): JsonBody<NewUser>) -> ApiResult<Response> {
    check_name("user", &body.name)?;
    let password_hash = match body.password {
        None => None,
        Some(p) if p.chars().count() < 12 => return Err(ApiFail::invalid("password: use at least 12 characters")),
        Some(p) => Some(hash_password(p).await?),
    };
    let ctx = c.ctx(&s.clock);
    let token = new_secret("prt");
    let expires_at = ctx.now.plus(token_days(None)?);
    let record = NewUserRecord {
        name: body.name.clone(),
        role: body.role,
        password_hash,
        token_sha256: secret_sha256(&token),
        token_expires_at: expires_at,
    };
    s.store.add_user(&record, &ctx).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { user: body.name, role: body.role, token, expires_at })).into_response())
}

/// The argon2 PHC string of a password (what the store keeps of it).
pub fn password_hash(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

async fn hash_password(password: String) -> ApiResult<String> {
    use argon2::password_hash::PasswordHasher;
    let hashed = tokio::task::spawn_blocking(move || argon2::Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(|e| ApiFail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("hashing the password did not finish: {e}")))?;
    hashed.map_err(|e| ApiFail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("hashing the password failed: {e}")))
}

async fn add_token(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<NewToken>,
) -> ApiResult<Response> {
    let role = s.store.users().await?.into_iter().find(|u| u.name == user).map(|u| u.role);
    let role =
        role.ok_or_else(|| ApiFail::new(StatusCode::NOT_FOUND, "not_found", format!("no user {user}; add them first (POST /api/users)")))?;
    let ctx = c.ctx(&s.clock);
    let token = new_secret("prt");
    let expires_at = ctx.now.plus(token_days(body.days)?);
    s.store.add_token(&user, &secret_sha256(&token), expires_at, &ctx).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { user, role, token, expires_at })).into_response())
}

async fn enroll(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    JsonBody(body): JsonBody<NewEnrollment>,
) -> ApiResult<Response> {
    check_name("lab host", &body.labhost)?;
    let minutes = match body.minutes.unwrap_or(60) {
        m @ 1..=10_080 => m,
        m => return Err(ApiFail::invalid(format!("minutes {m}: an enrollment token is valid for 1 minute to a week (10080)"))),
    };
    let ctx = c.ctx(&s.clock);
    let token = new_secret("pre");
    let expires_at = ctx.now.plus(Duration::from_secs(u64::from(minutes) * 60));
    s.store.add_enrollment(&body.labhost, &secret_sha256(&token), expires_at, &ctx).await?;
    Ok((StatusCode::CREATED, Json(EnrollmentCreated { labhost: body.labhost, token, expires_at })).into_response())
}

async fn audit(State(s): State<ApiState>) -> ApiResult<Response> {
    let records: Vec<AuditView> = s
        .store
        .audit()
        .await?
        .into_iter()
        .map(|r| AuditView { id: r.id, at: r.at, who: r.who, origin: r.origin, action: r.action, subject: r.subject, details: r.details })
        .collect();
    Ok(Json(records).into_response())
}

/// A recurring run: its job checked as `POST /api/jobs` checks one, its cron
/// expression and time zone refused naming the field (`cron ...`, `time_zone ...`).
async fn add_schedule(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    JsonBody(body): JsonBody<NewSchedule>,
) -> ApiResult<Response> {
    check_plans(&body.job)?;
    Recurrence::parse(&body.cron, &body.time_zone).map_err(|e| ApiFail::invalid(e.to_string()))?;
    let view = s.store.add_schedule(&body, &c.ctx(&s.clock)).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn schedules(State(s): State<ApiState>) -> ApiResult<Response> {
    Ok(Json(s.store.schedules().await?).into_response())
}

async fn remove_schedule(State(s): State<ApiState>, Extension(c): Extension<Caller>, Path(id): Path<u64>) -> ApiResult<Response> {
    if c.role == Role::Tester {
        let by = s.store.schedule(id).await?.created_by;
        if by != c.user {
            let message = format!(
                "{} is a tester and may remove only the schedules they added; schedule {id} is {by}'s: ask them, or a technician",
                c.user
            );
            return Err(ApiFail::new(StatusCode::FORBIDDEN, "forbidden", message));
        }
    }
    s.store.remove_schedule(id, &c.ctx(&s.clock)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- stored runs -------------------------------------------------------------------

async fn run(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(run): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let flagged = wants_flagged(query.as_deref())?;
    let (view, _) = blocking(move || stored_run(&s, &c, &run, flagged, Digests::Compute)).await?;
    Ok(Json(view).into_response())
}

/// One file of a stored bundle, streamed as stored, if the run's listing names it.
async fn run_file(
    State(s): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path((run, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let flagged = wants_flagged(query.as_deref())?;
    check_bundle_path(&path).map_err(|e| ApiFail::invalid(e.to_string()))?;
    let run_id = run.clone();
    // The listing only says which files may be served and their length: the client
    // checks the digests it was given by `GET /api/runs/{run}`.
    let (view, dir) = blocking(move || stored_run(&s, &c, &run_id, flagged, Digests::Skip)).await?;
    let Some(listed) = view.files.iter().find(|f| f.path == path) else {
        return Err(ApiFail::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("run {run} has no file {path}; GET /api/runs/{run} lists its files"),
        ));
    };
    let file_path = dir.join(&path);
    let unreadable = |e: std::io::Error| {
        ApiFail::new(StatusCode::SERVICE_UNAVAILABLE, "busy", format!("the server cannot read {path} of run {run}: {e}; try again later"))
    };
    let file = tokio::fs::File::open(&file_path).await.map_err(unreadable)?;
    let len = file.metadata().await.map_err(unreadable)?.len();
    if len != listed.len {
        return Err(ApiFail::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{path} of run {run} is {len} bytes on the server, not the {} its listing says: the stored bundle changed", listed.len),
        ));
    }
    let body = axum::body::Body::new(FileBody { file, left: len });
    Ok(([(header::CONTENT_TYPE, "application/octet-stream"), (header::CONTENT_LENGTH, &len.to_string())], body).into_response())
}

/// `?flagged=true`: an admin asks for a flagged bundle, to inspect it.
fn wants_flagged(query: Option<&str>) -> ApiResult<bool> {
    match query.unwrap_or("") {
        "" | "flagged=false" => Ok(false),
        "flagged=true" => Ok(true),
        other => {
            Err(ApiFail::invalid(format!("unknown query `{other}`: the only one is `flagged=true` (an admin inspecting a flagged bundle)")))
        }
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiFail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("reading the stored run did not finish: {e}")))?
}

/// A run id names a directory of the inbox: letters, digits, `.`, `_`, `-`, not starting with a dot.
fn check_run_name(run: &str) -> ApiResult<()> {
    let plain = proofrig_proto::files::is_run_id(run);
    match plain {
        true => Ok(()),
        false => Err(ApiFail::invalid(format!("run id `{run}`: use the run id `proofrig queue` shows (letters, digits, `.`, `_`, `-`)"))),
    }
}

/// A stored run as the caller may see it, and its bundle's directory: its receipt
/// checked against the server's key, a flagged one refused (see [`RunView`]).
fn stored_run(s: &ApiState, c: &Caller, run: &str, flagged: bool, digests: Digests) -> ApiResult<(RunView, std::path::PathBuf)> {
    check_run_name(run)?;
    let dir = s.inbox.bundle(run);
    if !dir.is_dir() {
        return Err(ApiFail::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no stored bundle for run {run}: it is not uploaded yet, or the id is wrong (`proofrig queue` shows each job's run id)"
            ),
        ));
    }
    let unreceipted = |e: String| {
        ApiFail::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("run {run}'s bundle has no valid receipt ({e}); it is not shown until it has one"),
        )
    };
    let receipt = s.inbox.read_receipt(run, &s.key.verifying_key()).map_err(unreceipted)?;
    let signed = std::fs::read(s.inbox.receipt(run)).map_err(|e| e.to_string()).map_err(unreceipted)?;
    let signed: serde_json::Value = serde_json::from_slice(&signed).map_err(|e| e.to_string()).map_err(unreceipted)?;
    let files = match &receipt.check {
        BundleCheck::Flagged { reason } if !(flagged && c.role == Role::Admin) => {
            let who = match flagged {
                true => format!("only an admin may fetch it to inspect it, and {} is a {}", c.user, c.role),
                false => "an admin may fetch it to inspect it (`?flagged=true`, `proofrig fetch --flagged`)".to_string(),
            };
            return Err(ApiFail::new(
                StatusCode::CONFLICT,
                "flagged",
                format!("run {run} is flagged: {reason}; a flagged bundle is never shown as a result: {who}"),
            ));
        }
        BundleCheck::Flagged { .. } => files_as_stored(&dir, digests),
        BundleCheck::Verified { .. } => files_of_manifest(&dir),
    }
    .map_err(|e| ApiFail::new(StatusCode::CONFLICT, "conflict", format!("run {run}'s stored bundle does not list: {e}")))?;
    let view = RunView {
        run_id: receipt.run_id,
        job: receipt.job,
        attempt: receipt.attempt,
        lab_host: receipt.lab_host,
        lab_host_key: receipt.lab_host_key,
        received_at: receipt.received_at,
        check: receipt.check,
        files,
        receipt: signed,
    };
    Ok((view, dir))
}

/// A verified bundle's files as its manifest lists them, with the manifest and the
/// attestation (which the manifest cannot list).
fn files_of_manifest(dir: &std::path::Path) -> Result<Vec<BundleFile>, String> {
    let bytes = std::fs::read(dir.join(MANIFEST)).map_err(|e| format!("{MANIFEST}: {e}"))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| format!("{MANIFEST}: {e}"))?;
    let mut files: Vec<BundleFile> =
        manifest.files.into_iter().map(|f| BundleFile { path: f.path, len: f.size, sha256: f.sha256 }).collect();
    files.push(BundleFile { path: MANIFEST.into(), len: bytes.len() as u64, sha256: proofrig_proto::bytes::sha256_hex(&bytes) });
    if dir.join(ATTESTATION).is_file() {
        let (sha256, len) = sha256_file(&dir.join(ATTESTATION)).map_err(|e| format!("{ATTESTATION}: {e}"))?;
        files.push(BundleFile { path: ATTESTATION.into(), len, sha256 });
    }
    Ok(files)
}

/// Whether a flagged bundle's listing hashes every stored file (for the listing a
/// client checks against) or only measures them (to serve one file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digests {
    Compute,
    Skip,
}

/// A flagged bundle's files as they are stored: its manifest may not describe them.
fn files_as_stored(dir: &std::path::Path, digests: Digests) -> Result<Vec<BundleFile>, String> {
    let entries = list_files(dir).map_err(|e| e.to_string())?;
    let regular = entries.into_iter().filter(|e| e.not_a_file.is_none());
    regular
        .map(|e| {
            let path = dir.join(&e.path);
            let (sha256, len) = match digests {
                Digests::Compute => sha256_file(&path).map_err(|err| format!("{}: {err}", e.path))?,
                Digests::Skip => (String::new(), std::fs::metadata(&path).map_err(|err| format!("{}: {err}", e.path))?.len()),
            };
            Ok(BundleFile { path: e.path, len, sha256 })
        })
        .collect()
}

/// A stored file's bytes, streamed in 64 KiB frames (a bundle's journal may be gigabytes).
struct FileBody {
    file: tokio::fs::File,
    left: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let mut buf = vec![0u8; self.left.min(64 * 1024) as usize];
        let mut read = tokio::io::ReadBuf::new(&mut buf);
        match tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut self.file), cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file ended before its listed length",
                    ))));
                }
                self.left -= n as u64;
                buf.truncate(n);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(buf)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

async fn openapi() -> Response {
    Json(openapi_document()).into_response()
}

/// The OpenAPI 3.1 document of [`ROUTES`]: each operation with its summary, the roles
/// it admits, and bearer authentication.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApiBuilder, Paths, ResponseBuilder};

    let mut paths = Paths::new();
    for route in ROUTES {
        let method = match Method::from_bytes(route.method.as_bytes()).expect("ROUTES has valid methods") {
            Method::GET => HttpMethod::Get,
            Method::PUT => HttpMethod::Put,
            Method::DELETE => HttpMethod::Delete,
            _ => HttpMethod::Post,
        };
        let roles: Vec<&str> = route.roles.iter().map(|r| r.name()).collect();
        let operation = OperationBuilder::new()
            .summary(Some(route.summary))
            .description(Some(format!("Roles: {}.", roles.join(", "))))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("2XX", ResponseBuilder::new().description("done"))
            .response("401", ResponseBuilder::new().description("no, unknown or expired token (ApiError)"))
            .response("403", ResponseBuilder::new().description("the caller's role may not do this (ApiError)"))
            .build();
        paths.add_path_operation(route.path, vec![method], operation);
    }
    let bearer = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    OpenApiBuilder::new()
        .info(InfoBuilder::new().title("proofrig lab service").version(env!("CARGO_PKG_VERSION")))
        .paths(paths)
        .components(Some(ComponentsBuilder::new().security_scheme("bearer", bearer).build()))
        .build()
}
