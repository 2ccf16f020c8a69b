//! The dashboard: the pages people use every day, rendered on the server.
//!
//! Why server-rendered, from one table: a check written only in a page is the one a
//! script bypasses. [`PAGES`] lists every page with the roles it admits, the router is
//! built from it alone, and each page sits behind the same gate ([`gate`]): the
//! session cookie (its SHA-256 looked up in the store; no or an ended session goes to
//! the login page), then the role, before any handler runs. Every form that changes
//! something carries the session's form token (`csrf`), checked on the server; the
//! cookie is `HttpOnly`, `SameSite=Strict`, and `Secure` when served over TLS.
//!
//! Pages work without JavaScript; htmx is vendored (`static/htmx.min.js`, no npm
//! build) for the live parts that need it. Responses forbid framing and inline
//! scripts (a Content-Security-Policy), and bundle files are served sandboxed.
//!
//! Logins: argon2-hashed passwords (`proofrig user add --password-stdin`), at most
//! [`LOGIN_FAILURES`] failures per address and user in [`LOGIN_WINDOW`]; every login,
//! refused login and logout is audited.

mod bench;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{self, MethodRouter};
use axum::{Extension, Router};
use serde::Deserialize;

use proofrig_evidence::record::RunResult;
use proofrig_proto::api::{JobState, RigState, Role};
use proofrig_proto::files::{check_bundle_path, is_run_id};
use proofrig_proto::labhost::BundleCheck;
use proofrig_verdict::Verdict;

use crate::api::{new_secret, secret_sha256, ApiState};
use crate::matrix::{build, LibraryCase, Matrix, Product, RunInput};
use crate::review;
use crate::store::Ctx;

/// How long a dashboard session lasts: a working day.
pub const SESSION_LENGTH: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per address and user name within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES: usize = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The session cookie's name.
pub const COOKIE: &str = "proofrig_session";

const HTMX: &[u8] = include_bytes!("../../static/htmx.min.js");
const STYLE: &[u8] = include_bytes!("../../static/style.css");
const CONSOLE_JS: &[u8] = include_bytes!("../../static/console.js");

/// What the pages share.
#[derive(Clone)]
pub struct WebState {
    pub api: ApiState,
    /// Served over TLS: the cookie is `Secure`.
    pub tls: bool,
    failures: Arc<Mutex<Failures>>,
    /// Wakes a lab host's poll when a bench operation waits for it.
    pub hub: Arc<crate::labwire::Hub>,
    /// The live console sessions of this replica.
    pub consoles: Arc<crate::consoles::Consoles>,
    /// The SCAS clauses of each job's plans, read once (a job's plans never change).
    clauses: Arc<Mutex<HashMap<u64, Vec<String>>>>,
}

/// Recent failed logins per (address, user name).
type Failures = HashMap<(String, String), Vec<Instant>>;

impl WebState {
    pub fn new(api: ApiState, tls: bool, hub: Arc<crate::labwire::Hub>, consoles: Arc<crate::consoles::Consoles>) -> WebState {
        WebState { api, tls, failures: Arc::default(), hub, consoles, clauses: Arc::default() }
    }
}

/// Who may see a page: anyone (the login page, static files) or these roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Roles(&'static [Role]),
}

/// One page or form target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    id: PageId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageId {
    Home,
    LoginForm,
    Login,
    Logout,
    Runs,
    Run,
    RunFile,
    RunBundle,
    Rigs,
    Rig,
    Reserve,
    Release,
    Audit,
    Power,
    ConsolePage,
    ConsoleSocket,
    Review,
    Trends,
    Matrix,
    MatrixReview,
    MatrixCsv,
    MatrixHtml,
    Static,
}

use Role::{Admin, Manager, Technician, Tester};
const EVERYONE: &[Role] = &[Technician, Tester, Manager, Admin];

/// Every page of the dashboard and who may see it. The router serves exactly these.
pub const PAGES: &[Page] = &[
    Page { method: "GET", path: "/", access: Access::Roles(EVERYONE), summary: "start at the runs", id: PageId::Home },
    Page { method: "GET", path: "/login", access: Access::Public, summary: "the login form", id: PageId::LoginForm },
    Page { method: "POST", path: "/login", access: Access::Public, summary: "log in", id: PageId::Login },
    Page { method: "POST", path: "/logout", access: Access::Roles(EVERYONE), summary: "log out", id: PageId::Logout },
    Page { method: "GET", path: "/runs", access: Access::Roles(EVERYONE), summary: "see the runs", id: PageId::Runs },
    Page { method: "GET", path: "/runs/{run}", access: Access::Roles(EVERYONE), summary: "see a run", id: PageId::Run },
    Page {
        method: "GET",
        path: "/runs/{run}/files/{*path}",
        access: Access::Roles(EVERYONE),
        summary: "download a file of a run",
        id: PageId::RunFile,
    },
    Page {
        method: "GET",
        path: "/runs/{run}/bundle.tar",
        access: Access::Roles(EVERYONE),
        summary: "download the whole bundle of a run",
        id: PageId::RunBundle,
    },
    Page {
        method: "POST",
        path: "/runs/{run}/review",
        access: Access::Roles(&[Manager]),
        summary: "review and sign off a run",
        id: PageId::Review,
    },
    Page { method: "GET", path: "/rigs", access: Access::Roles(EVERYONE), summary: "see the rigs", id: PageId::Rigs },
    Page { method: "GET", path: "/rigs/{rig}", access: Access::Roles(EVERYONE), summary: "see a rig's history", id: PageId::Rig },
    Page {
        method: "POST",
        path: "/rigs/{rig}/reserve",
        access: Access::Roles(&[Technician]),
        summary: "reserve a rig",
        id: PageId::Reserve,
    },
    Page {
        method: "POST",
        path: "/rigs/{rig}/release",
        access: Access::Roles(&[Technician]),
        summary: "release a rig",
        id: PageId::Release,
    },
    Page {
        method: "POST",
        path: "/rigs/{rig}/power",
        access: Access::Roles(&[Technician]),
        summary: "switch the power of a device",
        id: PageId::Power,
    },
    Page {
        method: "GET",
        path: "/rigs/{rig}/console/{device}",
        access: Access::Roles(&[Technician]),
        summary: "open the console of a device",
        id: PageId::ConsolePage,
    },
    Page {
        method: "GET",
        path: "/rigs/{rig}/console/{device}/socket",
        access: Access::Roles(&[Technician]),
        summary: "work the console of a device live",
        id: PageId::ConsoleSocket,
    },
    Page { method: "GET", path: "/audit", access: Access::Roles(&[Admin]), summary: "read the audit log", id: PageId::Audit },
    Page { method: "GET", path: "/trends", access: Access::Roles(EVERYONE), summary: "see the trends", id: PageId::Trends },
    Page { method: "GET", path: "/matrix", access: Access::Roles(EVERYONE), summary: "see the compliance matrix", id: PageId::Matrix },
    Page {
        method: "POST",
        path: "/matrix/review",
        access: Access::Roles(&[Manager]),
        summary: "sign off the compliance matrix of a firmware",
        id: PageId::MatrixReview,
    },
    Page {
        method: "GET",
        path: "/matrix.csv",
        access: Access::Roles(EVERYONE),
        summary: "export the compliance matrix as CSV",
        id: PageId::MatrixCsv,
    },
    Page {
        method: "GET",
        path: "/matrix.html",
        access: Access::Roles(EVERYONE),
        summary: "export the compliance matrix as a page",
        id: PageId::MatrixHtml,
    },
    Page { method: "GET", path: "/static/{file}", access: Access::Public, summary: "a style sheet or script", id: PageId::Static },
];

/// The dashboard's router: [`PAGES`], each behind [`gate`].
pub fn router(state: WebState) -> Router {
    let mut router = Router::new();
    for page in PAGES {
        let gated = handler(page.id).route_layer(middleware::from_fn_with_state((state.clone(), page), gate));
        router = router.route(page.path, gated);
    }
    router.with_state(state)
}

fn handler(id: PageId) -> MethodRouter<WebState> {
    match id {
        PageId::Home => routing::get(|| async { Redirect::to("/runs") }),
        PageId::LoginForm => routing::get(login_form),
        PageId::Login => routing::post(login),
        PageId::Logout => routing::post(logout),
        PageId::Runs => routing::get(runs),
        PageId::Run => routing::get(run),
        PageId::RunFile => routing::get(run_file),
        PageId::RunBundle => routing::get(run_bundle),
        PageId::Rigs => routing::get(rigs),
        PageId::Rig => routing::get(rig_page),
        PageId::Reserve => routing::post(reserve),
        PageId::Release => routing::post(release),
        PageId::Audit => routing::get(audit),
        PageId::Power => routing::post(bench::power),
        PageId::ConsolePage => routing::get(bench::console_page),
        PageId::ConsoleSocket => routing::get(bench::console_socket),
        PageId::Review => routing::post(review),
        PageId::Trends => routing::get(trends),
        PageId::Matrix => routing::get(matrix_page),
        PageId::MatrixReview => routing::post(matrix_review),
        PageId::MatrixCsv => routing::get(matrix_csv),
        PageId::MatrixHtml => routing::get(matrix_html),
        PageId::Static => routing::get(static_file),
    }
}

// ---- the gate ------------------------------------------------------------------------

/// The person looking, as the pages show them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub is_admin: bool,
    session_sha256: String,
    origin: SocketAddr,
}

impl Viewer {
    pub(crate) fn ctx(&self, state: &WebState) -> Ctx {
        Ctx::new(self.user.clone(), self.origin.to_string(), state.api.clock.now())
    }

    /// The SHA-256 of this person's session cookie, as stored.
    pub(crate) fn session_sha256(&self) -> &str {
        &self.session_sha256
    }
}

/// A page refused or failed: its status and what to tell the person.
pub struct WebFail {
    status: StatusCode,
    heading: &'static str,
    message: String,
    viewer: Option<Box<Viewer>>,
}

impl WebFail {
    pub(crate) fn new(status: StatusCode, heading: &'static str, message: impl Into<String>) -> WebFail {
        WebFail { status, heading, message: message.into(), viewer: None }
    }

    /// The same, shown in the page of the person who asked.
    pub(crate) fn for_viewer(self, viewer: &Viewer) -> WebFail {
        WebFail { viewer: Some(Box::new(viewer.clone())), ..self }
    }

    pub(crate) fn message(&self) -> String {
        format!("{}: {}", self.heading, self.message)
    }
}

impl From<crate::store::StoreError> for WebFail {
    fn from(e: crate::store::StoreError) -> WebFail {
        use crate::store::StoreError as E;
        match e {
            E::NotFound(m) => WebFail::new(StatusCode::NOT_FOUND, "Not found", m),
            E::Conflict(m) => WebFail::new(StatusCode::CONFLICT, "Not possible now", m),
            E::Invalid(m) => WebFail::new(StatusCode::BAD_REQUEST, "Not accepted", m),
            E::Lease(l) => WebFail::new(StatusCode::CONFLICT, "Not possible now", l.to_string()),
            other => WebFail::new(StatusCode::SERVICE_UNAVAILABLE, "The store is unavailable", format!("{other}; try again")),
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    viewer: Option<Viewer>,
    heading: &'a str,
    message: &'a str,
}

impl IntoResponse for WebFail {
    fn into_response(self) -> Response {
        let page = MessagePage { viewer: self.viewer.map(|v| *v), heading: self.heading, message: &self.message };
        (self.status, html(page)).into_response()
    }
}

pub(crate) type WebResult<T> = Result<T, WebFail>;

/// A rendered page with the dashboard's security headers.
pub(crate) fn html(page: impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (StatusCode::OK, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            secure(headers);
            response
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the page did not render: {e}")).into_response(),
    }
}

fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then(|| value.to_string())
    })
}

async fn gate(
    State((state, page)): State<(WebState, &'static Page)>,
    ConnectInfo(origin): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Access::Roles(roles) = page.access else {
        return next.run(request).await;
    };
    let session = match session_cookie(request.headers()) {
        Some(cookie) => {
            let sha = secret_sha256(&cookie);
            match state.api.store.session(&sha, state.api.clock.now()).await {
                Ok(found) => found.map(|s| (s, sha)),
                Err(e) => return WebFail::from(e).into_response(),
            }
        }
        None => None,
    };
    let Some((session, sha)) = session else {
        if request.method() == Method::GET {
            let next_page = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            return Redirect::to(&format!("/login?next={}", form_urlencode(&next_page))).into_response();
        }
        return WebFail::new(StatusCode::UNAUTHORIZED, "Log in first", "your session ended; log in again").into_response();
    };
    let viewer =
        Viewer { is_admin: session.role == Admin, user: session.user, role: session.role, csrf: session.csrf, session_sha256: sha, origin };
    if !roles.contains(&viewer.role) {
        let admitted: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        let mut fail = WebFail::new(
            StatusCode::FORBIDDEN,
            "Not for your role",
            format!("{} is a {} and may not {}; that takes the role {}", viewer.user, viewer.role, page.summary, admitted.join(" or ")),
        );
        fail.viewer = Some(Box::new(viewer));
        return fail.into_response();
    }
    request.extensions_mut().insert(viewer);
    next.run(request).await
}

fn form_urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A form's token must be the session's.
pub(crate) fn check_csrf(viewer: &Viewer, presented: &str) -> WebResult<()> {
    match presented == viewer.csrf {
        true => Ok(()),
        false => Err(WebFail::new(
            StatusCode::FORBIDDEN,
            "Form expired",
            "this form is not from your current session; reload the page and try again",
        )
        .for_viewer(viewer)),
    }
}

// ---- login ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    viewer: Option<Viewer>,
    message: Option<String>,
    next: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site: never another origin (an open redirect).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_string(),
        _ => "/runs".to_string(),
    }
}

async fn login_form(Query(q): Query<NextQuery>) -> Response {
    html(LoginPage { viewer: None, message: None, next: local_path(q.next.as_deref()) })
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(State(state): State<WebState>, ConnectInfo(origin): ConnectInfo<SocketAddr>, Form(form): Form<LoginForm>) -> Response {
    let next = local_path(form.next.as_deref());
    let refuse = |status: StatusCode, message: &str| {
        let page = LoginPage { viewer: None, message: Some(message.to_string()), next: next.clone() };
        let mut response = html(page);
        *response.status_mut() = status;
        response
    };
    let key = (origin.ip().to_string(), form.user.clone());
    if state.recent_failures(&key) >= LOGIN_FAILURES {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "Too many failed logins from here for this user; wait 15 minutes, or ask an admin.");
    }
    let now = state.api.clock.now();
    let login = match state.api.store.login(&form.user).await {
        Ok(login) => login,
        Err(e) => return WebFail::from(e).into_response(),
    };
    let accepted = match login {
        Some(l) if !l.disabled && l.password_hash.is_some() => {
            let (hash, password) = (l.password_hash.clone().unwrap_or_default(), form.password.clone());
            let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password)).await.unwrap_or(false);
            ok.then_some(l)
        }
        _ => None,
    };
    let ctx = Ctx::new(form.user.clone(), origin.to_string(), now);
    let Some(_) = accepted else {
        state.failed(key);
        let _ = state.api.store.audit_refused_login(&ctx).await;
        return refuse(StatusCode::UNAUTHORIZED, "Wrong user name or password (or the user has no password, or is disabled).");
    };
    let (cookie, csrf) = (new_secret("pws"), new_secret("csrf"));
    let expires = now.plus(SESSION_LENGTH);
    if let Err(e) = state.api.store.start_session(&secret_sha256(&cookie), &form.user, &csrf, expires, &ctx).await {
        return WebFail::from(e).into_response();
    }
    let secure = if state.tls { "; Secure" } else { "" };
    let set = format!("{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_LENGTH.as_secs());
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&set).expect("a cookie is ASCII"));
    response
}

fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::phc::PasswordHash;
    use argon2::password_hash::PasswordVerifier;
    PasswordHash::new(hash).map(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
}

impl WebState {
    fn recent_failures(&self, key: &(String, String)) -> usize {
        let mut failures = self.failures.lock().expect("never poisoned");
        let list = failures.entry(key.clone()).or_default();
        list.retain(|t| t.elapsed() < LOGIN_WINDOW);
        list.len()
    }

    fn failed(&self, key: (String, String)) {
        self.failures.lock().expect("never poisoned").entry(key).or_default().push(Instant::now());
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(state): State<WebState>, Extension(viewer): Extension<Viewer>, Form(form): Form<CsrfForm>) -> WebResult<Response> {
    check_csrf(&viewer, &form.csrf)?;
    state.api.store.end_session(&viewer.session_sha256, &viewer.ctx(&state)).await?;
    let mut response = Redirect::to("/login").into_response();
    let gone = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&gone).expect("ASCII"));
    Ok(response)
}

// ---- runs ------------------------------------------------------------------------------

/// `/runs` filters; empty fields ask nothing.
#[derive(Debug, Default, Deserialize)]
struct RunsFilter {
    verdict: Option<String>,
    state: Option<String>,
    plan: Option<String>,
    rig: Option<String>,
    /// A device name (`ru1`) or part of one.
    device: Option<String>,
    /// A firmware version as declared, exactly.
    firmware: Option<String>,
    /// A SCAS clause (`4.2.3.4.5`), or a clause above several (`4.2.3`): runs of a
    /// plan with a case under it.
    clause: Option<String>,
    /// `YYYY-MM-DD`, UTC, inclusive.
    from: Option<String>,
    to: Option<String>,
}

impl RunsFilter {
    fn normalise(mut self) -> RunsFilter {
        for field in [
            &mut self.verdict,
            &mut self.state,
            &mut self.plan,
            &mut self.rig,
            &mut self.device,
            &mut self.firmware,
            &mut self.clause,
            &mut self.from,
            &mut self.to,
        ] {
            if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        self
    }
}

struct RunRow {
    job: u64,
    attempt: u32,
    state: &'static str,
    verdict: Option<String>,
    plans: String,
    rig: String,
    by: String,
    at: String,
    run_id: Option<String>,
    /// The devices it ran on, with their declared identity.
    devices: String,
    /// For a queued job: its place in the queue, and when it may start.
    queue: String,
    /// Still on its way (not done, lost or cancelled).
    live: bool,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    viewer: Option<Viewer>,
    filter: RunsFilter,
    verdicts: Vec<String>,
    states: Vec<String>,
    rows: Vec<RunRow>,
    total: usize,
    /// Some run shown is still on its way (queued to verifying): the list refreshes
    /// itself (htmx) with the same filters, until none is.
    live: bool,
    /// The page's own address with its filters, what the refresh asks for.
    refresh: String,
}

/// A day `YYYY-MM-DD` as the milliseconds of its start, UTC.
fn day_start(day: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339(&format!("{day}T00:00:00Z")).ok()?;
    Some(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

async fn runs(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Query(filter): Query<RunsFilter>,
    RawQuery(query): RawQuery,
) -> WebResult<Response> {
    let filter = filter.normalise();
    let bad_day = |d: &str| WebFail::new(StatusCode::BAD_REQUEST, "Not accepted", format!("`{d}` is not a day: use YYYY-MM-DD"));
    let from = filter.from.as_deref().map(|d| day_start(d).ok_or_else(|| bad_day(d))).transpose()?;
    let to = filter.to.as_deref().map(|d| day_start(d).map(|t| t + 86_400_000).ok_or_else(|| bad_day(d))).transpose()?;
    let verdict = filter.verdict.as_deref();
    let jobs = state.api.store.jobs().await?;
    let total = jobs.len();
    let queue = queue_places(&state, &jobs).await?;
    let under_clause = match filter.clause.as_deref() {
        Some(clause) => Some(jobs_under_clause(&state, &jobs, clause).await?),
        None => None,
    };
    let identity = |d: &proofrig_proto::api::DeviceView| {
        let part = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        match &d.reported {
            Some(reported) => {
                let mut reported = reported.split_whitespace().collect::<Vec<_>>().join(" ");
                if reported.chars().count() > 120 {
                    reported = reported.chars().take(119).chain(['…']).collect();
                }
                format!("{} ({} {} {}; reports: {reported})", d.device, part(&d.vendor), part(&d.model), part(&d.firmware))
            }
            None => format!("{} ({} {} {})", d.device, part(&d.vendor), part(&d.model), part(&d.firmware)),
        }
    };
    let mut rows: Vec<RunRow> = jobs
        .into_iter()
        .map(|j| j.view)
        .filter(|v| verdict.is_none_or(|want| v.verdict.is_some_and(|got| got.as_str() == want)))
        .filter(|v| filter.state.as_deref().is_none_or(|want| v.state.name() == want))
        .filter(|v| filter.plan.as_deref().is_none_or(|want| v.plans.iter().any(|p| p.contains(want))))
        .filter(|v| filter.rig.as_deref().is_none_or(|want| v.rig.as_deref() == Some(want)))
        .filter(|v| filter.device.as_deref().is_none_or(|want| v.devices.iter().any(|d| d.device.contains(want))))
        .filter(|v| filter.firmware.as_deref().is_none_or(|want| v.devices.iter().any(|d| d.firmware.as_deref() == Some(want))))
        .filter(|v| from.is_none_or(|f| v.submitted_at.0 >= f) && to.is_none_or(|t| v.submitted_at.0 < t))
        .filter(|v| under_clause.as_ref().is_none_or(|jobs| jobs.contains(&v.job.0)))
        .map(|v| RunRow {
            queue: queue.get(&(v.job.0, v.attempt.0)).cloned().unwrap_or_default(),
            devices: v.devices.iter().map(identity).collect::<Vec<_>>().join(", "),
            job: v.job.0,
            attempt: v.attempt.0,
            state: v.state.name(),
            live: !v.state.is_over(),
            verdict: v.verdict.map(|x| x.as_str().to_string()),
            plans: v.plans.join(", "),
            rig: v.rig.unwrap_or_else(|| "-".into()),
            by: v.submitted_by,
            at: v.submitted_at.rfc3339(),
            run_id: v.run_id,
        })
        .collect();
    rows.reverse();
    let verdicts = Verdict::ALL.iter().map(|v| v.as_str().to_string()).collect();
    let states = JobState::ALL.iter().map(|s| s.name().to_string()).collect();
    let live = rows.iter().any(|r| r.live);
    let refresh = match query.as_deref() {
        Some(q) if !q.is_empty() => format!("/runs?{q}"),
        _ => "/runs".to_string(),
    };
    Ok(html(RunsPage { viewer: Some(viewer), filter, verdicts, states, rows, total, live, refresh }))
}

/// The jobs with a plan case under `clause` (the clause itself or one below it), read
/// from the plans as submitted; each job's clauses are read once and kept.
async fn jobs_under_clause(state: &WebState, jobs: &[crate::store::JobRecord], clause: &str) -> WebResult<std::collections::HashSet<u64>> {
    let clause = clause.trim();
    let mut found = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    for job in jobs.iter().map(|j| j.view.job) {
        if !seen.insert(job.0) {
            continue;
        }
        let known = state.clauses.lock().expect("never poisoned").get(&job.0).cloned();
        let clauses = match known {
            Some(c) => c,
            None => {
                let plans = state.api.store.plans(job).await?;
                let clauses: Vec<String> = plans
                    .iter()
                    .filter_map(|p| proofrig_plan::Plan::parse(&p.name, std::str::from_utf8(&p.bytes).ok()?).ok())
                    .flat_map(|plan| plan.spec.cases.into_iter().filter_map(|c| c.scas.map(|s| s.clause)))
                    .collect();
                state.clauses.lock().expect("never poisoned").insert(job.0, clauses.clone());
                clauses
            }
        };
        if clauses.iter().any(|c| c == clause || c.strip_prefix(clause).is_some_and(|rest| rest.starts_with('.'))) {
            found.insert(job.0);
        }
    }
    Ok(found)
}

/// Each queued attempt's place in the queue (highest priority first, then the oldest)
/// and when it may start: the median run of the last verified ones, times the places
/// ahead of it shared over the rigs that take jobs.
async fn queue_places(state: &WebState, jobs: &[crate::store::JobRecord]) -> WebResult<BTreeMap<(u64, u32), String>> {
    let mut queued: Vec<&proofrig_proto::api::JobView> = jobs.iter().map(|j| &j.view).filter(|v| v.state == JobState::Queued).collect();
    queued.sort_by_key(|v| (std::cmp::Reverse(v.priority.get()), v.job.0, v.attempt.0));
    let mut recent: Vec<u64> = jobs.iter().rev().filter_map(|j| j.view.run_ms).take(20).collect();
    recent.sort_unstable();
    let median = recent.get(recent.len() / 2).copied();
    let rigs = state.api.store.rigs(state.api.clock.now()).await?;
    let slots = rigs.iter().filter(|r| r.labhost_online && matches!(r.state, RigState::Idle | RigState::Running)).count().max(1) as u64;
    let now = state.api.clock.now();
    Ok(queued
        .iter()
        .enumerate()
        .map(|(ahead, v)| {
            let place = format!("#{}", ahead + 1);
            let text = match median {
                Some(ms) => format!("{place}, ~{}", now.plus(Duration::from_millis(ms * (ahead as u64 / slots + 1))).rfc3339()),
                None => place,
            };
            ((v.job.0, v.attempt.0), text)
        })
        .collect())
}

struct DeviceRow {
    device: String,
    role: String,
    vendor: String,
    model: String,
    firmware: String,
    reported: String,
}

struct CaseRow {
    device: String,
    clause: String,
    test_name: String,
    requirement: String,
    verdict: String,
    evidence: String,
}

struct ReviewRow {
    by: String,
    at: String,
    decision: String,
    comment: String,
    /// Why it no longer counts, if it does not.
    void: Option<String>,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    viewer: Option<Viewer>,
    query: String,
    transcript: crate::transcript::Transcript,
    can_review: bool,
    csrf: String,
    reviews: Vec<ReviewRow>,
    run_id: String,
    job: u64,
    attempt: u32,
    rig: String,
    lab_host: String,
    received_at: String,
    flagged: Option<String>,
    verdict: String,
    witnessed: usize,
    devices: Vec<DeviceRow>,
    cases: Vec<CaseRow>,
    files: Vec<&'static str>,
}

/// The files of a verified bundle a person downloads from its page.
const RUN_FILES: &[&str] = &["report.html", "junit.xml", "results.json", "journal.jsonl", "manifest.json", "attestation.intoto.jsonl"];

fn no_run(run: &str) -> WebFail {
    WebFail::new(StatusCode::NOT_FOUND, "No such run", format!("there is no stored run `{run}`; the runs page lists them"))
}

#[derive(Deserialize)]
struct RunQuery {
    /// Search the run's console and SSH bytes for this.
    q: Option<String>,
}

async fn run(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path(run): Path<String>,
    Query(query): Query<RunQuery>,
) -> WebResult<Response> {
    if !is_run_id(&run) {
        return Err(no_run(&run));
    }
    let search = query.q.unwrap_or_default();
    let (inbox, key) = (state.api.inbox.clone(), state.api.key.verifying_key());
    let run_id = run.clone();
    let search_text = search.clone();
    let read = tokio::task::spawn_blocking(move || {
        let receipt = inbox.read_receipt(&run_id, &key)?;
        let (results, transcript) = match &receipt.check {
            BundleCheck::Verified { .. } => {
                let path = inbox.bundle(&run_id).join(proofrig_evidence::bundle::RESULTS);
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let results = serde_json::from_slice::<RunResult>(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                let journal = inbox.bundle(&run_id).join(proofrig_evidence::bundle::JOURNAL);
                let wanted = Some(search_text.as_str()).filter(|q| !q.is_empty());
                let transcript = crate::transcript::read(&journal, wanted).map_err(|e| format!("{}: {e}", journal.display()))?;
                (Some(results), transcript)
            }
            BundleCheck::Flagged { .. } => (None, Default::default()),
        };
        Ok::<_, String>((receipt, results, transcript))
    })
    .await
    .map_err(|e| WebFail::new(StatusCode::INTERNAL_SERVER_ERROR, "The run did not read", e.to_string()))?;
    let (receipt, results, transcript) = read.map_err(|_| no_run(&run))?;
    let rig = results.as_ref().map(|r| r.rig_name.clone()).unwrap_or_else(|| "-".into());
    let (flagged, verdict) = match &receipt.check {
        BundleCheck::Verified { verdict } => (None, verdict.as_str().to_string()),
        BundleCheck::Flagged { reason } => (Some(reason.clone()), String::new()),
    };
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let devices = results
        .iter()
        .flat_map(|r| &r.devices)
        .map(|d| DeviceRow {
            device: d.device.clone(),
            role: d.role.clone(),
            vendor: dash(&d.declared.vendor),
            model: dash(&d.declared.model),
            firmware: dash(&d.declared.firmware),
            reported: dash(&d.reported),
        })
        .collect();
    let cases = results
        .iter()
        .flat_map(|r| &r.cases)
        .map(|c| CaseRow {
            device: c.key.device.clone(),
            clause: c.scas.as_ref().map(|s| format!("{} {}", s.spec, s.clause)).unwrap_or_else(|| "-".into()),
            test_name: c.scas.as_ref().map(|s| s.test_name.clone()).unwrap_or_else(|| c.key.case.clone()),
            requirement: c.scas.as_ref().map(|s| s.requirement.clone()).unwrap_or_else(|| c.title.clone()),
            verdict: c.verdict.as_str().to_string(),
            evidence: c.evidence_excerpt.clone(),
        })
        .collect();
    let reviews = review_rows(&state, &run);
    let page = RunPage {
        query: search,
        transcript,
        can_review: viewer.role == Manager,
        csrf: viewer.csrf.clone(),
        reviews,
        viewer: Some(viewer),
        run_id: run,
        job: receipt.job.0,
        attempt: receipt.attempt.0,
        rig,
        lab_host: receipt.lab_host,
        received_at: receipt.received_at,
        flagged,
        verdict,
        witnessed: receipt.witnessed.len(),
        devices,
        cases,
        files: RUN_FILES.to_vec(),
    };
    Ok(html(page))
}

/// The reviews kept beside a run, each checked against the bundle as stored now.
fn review_rows(state: &WebState, run: &str) -> Vec<ReviewRow> {
    let (inbox, key) = (&state.api.inbox, state.api.key.verifying_key());
    review::read_all(&inbox.reviews(run))
        .iter()
        .map(|envelope| match review::check(&inbox.bundle(run), envelope, Some(&key)) {
            review::ReviewCheck::Counts { statement, .. } => ReviewRow {
                by: statement.predicate.reviewer,
                at: statement.predicate.time_verified,
                decision: statement.predicate.decision.name().to_string(),
                comment: statement.predicate.comment,
                void: None,
            },
            review::ReviewCheck::Void(why) => {
                ReviewRow { by: "-".into(), at: "-".into(), decision: "-".into(), comment: String::new(), void: Some(why) }
            }
        })
        .collect()
}

/// A sign-off form's decision, and its comment within bounds.
fn review_decision(viewer: &Viewer, decision: &str, comment: &str) -> WebResult<review::Decision> {
    let refuse = |message: String| WebFail::new(StatusCode::BAD_REQUEST, "Not accepted", message).for_viewer(viewer);
    let Some(decision) = review::Decision::parse(decision) else {
        return Err(refuse(format!("`{decision}` is not a decision: reviewed, accepted or rejected")));
    };
    match comment.chars().count() > 4000 {
        true => Err(refuse("the comment is longer than 4000 characters".into())),
        false => Ok(decision),
    }
}

#[derive(Deserialize)]
struct ReviewForm {
    csrf: String,
    decision: String,
    #[serde(default)]
    comment: String,
}

/// A manager's decision on a verified run, signed by the server as a statement about
/// exactly its bundle, kept beside it and audited.
async fn review(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path(run): Path<String>,
    Form(form): Form<ReviewForm>,
) -> WebResult<Response> {
    check_csrf(&viewer, &form.csrf)?;
    let fail = |status, heading, message: String| WebFail::new(status, heading, message).for_viewer(&viewer);
    let decision = review_decision(&viewer, &form.decision, &form.comment)?;
    if !is_run_id(&run) {
        return Err(no_run(&run));
    }
    let (inbox, key) = (state.api.inbox.clone(), state.api.key.clone());
    let receipt = inbox.read_receipt(&run, &key.verifying_key()).map_err(|_| no_run(&run))?;
    if let BundleCheck::Flagged { reason } = receipt.check {
        return Err(fail(
            StatusCode::CONFLICT,
            "Not a result",
            format!("run {run} did not verify on arrival, so it cannot be signed off: {reason}"),
        ));
    }
    let at = state.api.clock.now().rfc3339();
    let verdict = review::Verdict { reviewer: &viewer.user, decision, comment: form.comment.trim(), at: &at };
    let envelope = review::sign(&inbox.bundle(&run), &run, verdict, &key)
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, "The bundle did not read", e))?;
    inbox.add_review(&run, &envelope).map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, "The review was not kept", e.to_string()))?;
    let details = serde_json::json!({ "decision": decision.name(), "comment": form.comment.trim() });
    state.api.store.note("review.sign", &format!("run {run}"), details, &viewer.ctx(&state)).await?;
    Ok(Redirect::to(&format!("/runs/{run}")).into_response())
}

/// A file of a verified run, sandboxed (a report opens as a document with no script
/// and no access to the dashboard's origin).
async fn run_file(State(state): State<WebState>, Path((run, path)): Path<(String, String)>) -> WebResult<Response> {
    if !is_run_id(&run) || check_bundle_path(&path).is_err() || !RUN_FILES.contains(&path.as_str()) {
        return Err(no_run(&format!("{run}/{path}")));
    }
    let (inbox, key) = (state.api.inbox.clone(), state.api.key.verifying_key());
    let receipt = inbox.read_receipt(&run, &key).map_err(|_| no_run(&run))?;
    if let BundleCheck::Flagged { reason } = receipt.check {
        return Err(WebFail::new(StatusCode::CONFLICT, "Not a result", format!("run {run} did not verify on arrival: {reason}")));
    }
    let bytes = tokio::fs::read(inbox.bundle(&run).join(&path)).await.map_err(|_| no_run(&format!("{run}/{path}")))?;
    let kind = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'; style-src 'unsafe-inline'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// A verified run's whole bundle as one tar file, laid out as `proofrig fetch` leaves
/// it: the bundle's directory, and beside it the server's receipt and the managers'
/// reviews, so `proofrig verify` runs on it as unpacked.
async fn run_bundle(State(state): State<WebState>, Path(run): Path<String>) -> WebResult<Response> {
    if !is_run_id(&run) {
        return Err(no_run(&run));
    }
    let (inbox, key) = (state.api.inbox.clone(), state.api.key.verifying_key());
    let receipt = inbox.read_receipt(&run, &key).map_err(|_| no_run(&run))?;
    if let BundleCheck::Flagged { reason } = receipt.check {
        return Err(WebFail::new(StatusCode::CONFLICT, "Not a result", format!("run {run} did not verify on arrival: {reason}")));
    }
    let name = run.clone();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        tar.append_dir_all(&name, inbox.bundle(&name))?;
        for (path, beside) in [(inbox.receipt(&name), "receipt.json"), (inbox.reviews(&name), "reviews.jsonl")] {
            if path.is_file() {
                tar.append_path_with_name(&path, format!("{name}.{beside}"))?;
            }
        }
        tar.into_inner()
    })
    .await
    .map_err(|e| WebFail::new(StatusCode::INTERNAL_SERVER_ERROR, "The bundle did not pack", e.to_string()))?
    .map_err(|e| WebFail::new(StatusCode::SERVICE_UNAVAILABLE, "The bundle did not read", format!("run {run}: {e}")))?;
    let mut response = (StatusCode::OK, tar).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    let disposition = format!("attachment; filename=\"{run}.tar\"");
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).map_err(|_| no_run(&run))?);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

// ---- rigs ------------------------------------------------------------------------------

struct RigRow {
    name: String,
    labhost: String,
    state: &'static str,
    reason: String,
    since: String,
    offers: String,
    holder: String,
}

#[derive(Template)]
#[template(path = "rigs.html")]
struct RigsPage {
    viewer: Option<Viewer>,
    technician: bool,
    csrf: String,
    rigs: Vec<RigRow>,
}

async fn rigs(State(state): State<WebState>, Extension(viewer): Extension<Viewer>) -> WebResult<Response> {
    let list = state.api.store.rigs(state.api.clock.now()).await?;
    let join = |items: &std::collections::BTreeSet<String>| items.iter().cloned().collect::<Vec<_>>().join(", ");
    let rigs = list
        .into_iter()
        .map(|r| RigRow {
            labhost: format!("{} ({})", r.labhost.0, if r.labhost_online { "online" } else { "OFFLINE" }),
            state: match r.state {
                RigState::Offline if r.labhost_online => "offline",
                s => s.name(),
            },
            reason: r.reason,
            since: r.since.rfc3339(),
            offers: format!("roles {}; tags {}", join(&r.summary.roles), join(&r.summary.tags)),
            holder: r.reservation.map(|h| format!("{} until {}", h.holder, h.until.rfc3339())).unwrap_or_else(|| "-".into()),
            name: r.summary.rig,
        })
        .collect();
    let page = RigsPage { technician: viewer.role == Technician, csrf: viewer.csrf.clone(), viewer: Some(viewer), rigs };
    Ok(html(page))
}

struct HealthRow {
    plan: String,
    every_minutes: u64,
    stage: String,
    next_at: String,
    last_result: String,
    set_by: String,
}

struct HistoryRow {
    at: String,
    state: &'static str,
    reason: String,
    by: String,
}

struct BenchRow {
    at: String,
    by: String,
    device: String,
    action: &'static str,
    outcome: String,
    closed: String,
}

#[derive(Template)]
#[template(path = "rig.html")]
struct RigPage {
    viewer: Option<Viewer>,
    name: String,
    labhost: String,
    state: &'static str,
    since: String,
    reason: String,
    holder: String,
    health: Option<HealthRow>,
    history: Vec<HistoryRow>,
    devices: Vec<String>,
    /// The viewer is a technician holding this rig's live reservation: power and
    /// console are offered (the server checks again on each).
    at_bench: bool,
    csrf: String,
    bench: Vec<BenchRow>,
}

/// One rig: where it is, its health check, and every change of its state, newest first.
async fn rig_page(State(state): State<WebState>, Extension(viewer): Extension<Viewer>, Path(rig): Path<String>) -> WebResult<Response> {
    let store = &state.api.store;
    let view = store.rigs(state.api.clock.now()).await?.into_iter().find(|r| r.summary.rig == rig);
    let Some(view) = view else {
        return Err(WebFail::new(StatusCode::NOT_FOUND, "No such rig", format!("there is no rig `{rig}`; the rigs page lists them")));
    };
    let health = store.health(&rig).await?.map(|h| HealthRow {
        plan: h.plan,
        every_minutes: h.every_minutes,
        stage: format!("{:?}", h.stage).to_lowercase(),
        next_at: h.next_at.rfc3339(),
        last_result: h.last_result,
        set_by: h.set_by,
    });
    let history = store
        .rig_history(&rig)
        .await?
        .into_iter()
        .rev()
        .map(|c| HistoryRow { at: c.at.rfc3339(), state: c.state.name(), reason: c.reason, by: c.by })
        .collect();
    let bench = store.bench_recent(&rig, 20).await?.into_iter().map(bench_row).collect();
    let now = state.api.clock.now();
    let at_bench = viewer.role == Technician && view.reservation.as_ref().is_some_and(|r| r.holder == viewer.user && r.until > now);
    let page = RigPage {
        devices: view.summary.devices.iter().cloned().collect(),
        at_bench,
        csrf: viewer.csrf.clone(),
        bench,
        viewer: Some(viewer),
        labhost: format!("{} ({})", view.labhost.0, if view.labhost_online { "online" } else { "OFFLINE" }),
        state: view.state.name(),
        since: view.since.rfc3339(),
        reason: view.reason,
        holder: view.reservation.map(|h| format!("{} until {}", h.holder, h.until.rfc3339())).unwrap_or_else(|| "nobody".into()),
        health,
        history,
        name: view.summary.rig,
    };
    Ok(html(page))
}

fn bench_row(op: crate::store::bench::BenchOpRecord) -> BenchRow {
    use crate::store::bench::BenchAnswer;
    use proofrig_proto::labhost::BenchOutcome;
    let outcome = match op.answer {
        None => "waiting for the lab host".to_string(),
        Some((_, BenchAnswer::Expired)) => "no answer from the lab host".to_string(),
        Some((_, BenchAnswer::Answered(BenchOutcome::Done { detail }))) => format!("done: {detail}"),
        Some((_, BenchAnswer::Answered(BenchOutcome::Refused { reason }))) => format!("refused: {reason}"),
        Some((_, BenchAnswer::Answered(BenchOutcome::Failed { reason }))) => format!("failed: {reason}"),
    };
    BenchRow {
        at: op.requested_at.rfc3339(),
        by: op.by,
        device: op.device,
        action: op.action.name(),
        outcome,
        closed: op.closed.map(|(at, why)| format!("{}: {why}", at.rfc3339())).unwrap_or_default(),
    }
}

#[derive(Deserialize)]
struct ReserveForm {
    csrf: String,
    minutes: Option<u32>,
}

async fn reserve(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path(rig): Path<String>,
    Form(form): Form<ReserveForm>,
) -> WebResult<Response> {
    check_csrf(&viewer, &form.csrf)?;
    let length = form.minutes.map(|m| Duration::from_secs(u64::from(m) * 60));
    state.api.store.reserve(&rig, length, &viewer.ctx(&state)).await.map_err(|e| WebFail::from(e).for_viewer(&viewer))?;
    Ok(Redirect::to("/rigs").into_response())
}

async fn release(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path(rig): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult<Response> {
    check_csrf(&viewer, &form.csrf)?;
    state.api.store.release(&rig, &viewer.ctx(&state)).await.map_err(|e| WebFail::from(e).for_viewer(&viewer))?;
    Ok(Redirect::to("/rigs").into_response())
}

// ---- audit -----------------------------------------------------------------------------

struct AuditRow {
    id: u64,
    at: String,
    who: String,
    origin: String,
    action: String,
    subject: String,
    details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    viewer: Option<Viewer>,
    rows: Vec<AuditRow>,
    total: usize,
}

/// The newest records shown at once.
const AUDIT_SHOWN: usize = 1000;

async fn audit(State(state): State<WebState>, Extension(viewer): Extension<Viewer>) -> WebResult<Response> {
    let records = state.api.store.audit().await?;
    let total = records.len();
    let rows = records
        .into_iter()
        .rev()
        .take(AUDIT_SHOWN)
        .map(|a| AuditRow {
            id: a.id,
            at: a.at.rfc3339(),
            who: a.who,
            origin: a.origin,
            action: a.action,
            subject: a.subject,
            details: a.details.to_string(),
        })
        .collect();
    Ok(html(AuditPage { viewer: Some(viewer), rows, total }))
}

// ---- compliance matrix ---------------------------------------------------------------

#[derive(Deserialize)]
struct MatrixQuery {
    /// `vendor|model|firmware`.
    of: Option<String>,
}

fn choice_value(product: &Product, firmware: &str) -> String {
    format!("{}|{}|{}", product.vendor, product.model, firmware)
}

/// The library's TS 33.117 cases, in clause order: compiled into the binary, so read
/// once.
fn library_cases() -> &'static [LibraryCase] {
    static CASES: std::sync::OnceLock<Vec<LibraryCase>> = std::sync::OnceLock::new();
    CASES.get_or_init(|| {
        let mut cases: Vec<LibraryCase> = proofrig_plan::library::load_bundled()
            .into_iter()
            .filter_map(|(_, plan)| plan.ok())
            .flat_map(|plan| plan.spec.cases)
            .filter_map(|case| {
                let scas = case.scas?;
                (scas.spec.contains("33.117")).then_some(LibraryCase { clause: scas.clause, test_name: scas.test_name, title: case.title })
            })
            .collect();
        cases.sort_by(|a, b| proofrig_plan::clause_order(&a.clause, &b.clause).then(a.test_name.cmp(&b.test_name)));
        cases.dedup_by(|a, b| (&a.clause, &a.test_name) == (&b.clause, &b.test_name));
        cases
    })
}

/// Every verified run's results (a flagged bundle is never a result).
async fn verified_results(state: &WebState) -> WebResult<Vec<(String, RunResult)>> {
    let runs: Vec<String> =
        state.api.store.jobs().await?.into_iter().filter(|j| j.view.verdict.is_some()).filter_map(|j| j.view.run_id).collect();
    let inbox = state.api.inbox.clone();
    tokio::task::spawn_blocking(move || {
        runs.into_iter()
            .filter_map(|run| {
                let bytes = std::fs::read(inbox.bundle(&run).join(proofrig_evidence::bundle::RESULTS)).ok()?;
                Some((run, serde_json::from_slice::<RunResult>(&bytes).ok()?))
            })
            .collect()
    })
    .await
    .map_err(|e| WebFail::new(StatusCode::INTERNAL_SERVER_ERROR, "The runs did not read", e.to_string()))
}

/// The matrix the query asks for (the first product when it asks none), and the choices.
async fn matrix_of(state: &WebState, of: Option<&str>) -> WebResult<(Option<Matrix>, Vec<(String, String)>, Option<String>)> {
    let results = verified_results(state).await?;
    let inputs: Vec<RunInput<'_>> = results.iter().map(|(run, result)| RunInput { run_id: run, result }).collect();
    let products = crate::matrix::products(&inputs);
    let choices: Vec<(String, String)> = products.iter().map(|(p, fw)| (choice_value(p, fw), format!("{p}, firmware {fw}"))).collect();
    let wanted = match of {
        Some(of) => {
            let mut parts = of.splitn(3, '|');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(vendor), Some(model), Some(firmware)) => {
                    Some((Product { vendor: vendor.to_string(), model: model.to_string() }, firmware.to_string()))
                }
                _ => return Err(WebFail::new(StatusCode::BAD_REQUEST, "Not accepted", format!("`{of}` names no product and firmware"))),
            }
        }
        None => products.iter().next().cloned(),
    };
    let Some((product, firmware)) = wanted else { return Ok((None, choices, None)) };
    let matrix = build(library_cases(), &inputs, &product, &firmware);
    Ok((Some(matrix), choices, Some(choice_value(&product, &firmware))))
}

#[derive(Template)]
#[template(path = "matrix.html")]
struct MatrixPage {
    viewer: Option<Viewer>,
    choices: Vec<(String, String)>,
    selected: Option<String>,
    matrix: Option<Matrix>,
    missing: usize,
    manager: bool,
    csrf: String,
    reviews: Vec<MatrixReviewRow>,
}

/// A sign-off of the shown matrix.
struct MatrixReviewRow {
    reviewer: String,
    decision: &'static str,
    comment: String,
    at: String,
    runs: usize,
    /// Whether it covers exactly the runs the matrix shows now, each unchanged.
    current: bool,
}

/// The runs a matrix shows, once each.
fn matrix_runs(matrix: &Matrix) -> Vec<String> {
    let runs: std::collections::BTreeSet<String> = matrix.rows.iter().flat_map(|r| r.cells.values().map(|c| c.run_id.clone())).collect();
    runs.into_iter().collect()
}

fn matrix_resource(matrix: &Matrix) -> String {
    review::matrix_uri(&matrix.product.to_string(), &matrix.firmware)
}

async fn matrix_page(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<MatrixQuery>,
) -> WebResult<Response> {
    let (matrix, choices, selected) = matrix_of(&state, q.of.as_deref()).await?;
    let missing = matrix.as_ref().map_or(0, |m| m.rows.iter().filter(|r| r.missing.is_some()).count());
    let reviews = match &matrix {
        Some(m) => matrix_reviews(&state, m),
        None => Vec::new(),
    };
    let page = MatrixPage {
        manager: viewer.role == Manager,
        csrf: viewer.csrf.clone(),
        viewer: Some(viewer),
        choices,
        selected,
        matrix,
        missing,
        reviews,
    };
    Ok(html(page))
}

/// The sign-offs of `matrix`, each checked: signed by this server, and whether it
/// covers the runs the matrix shows now with their bundles unchanged.
fn matrix_reviews(state: &WebState, matrix: &Matrix) -> Vec<MatrixReviewRow> {
    let (inbox, key) = (&state.api.inbox, state.api.key.verifying_key());
    let runs = matrix_runs(matrix);
    review::read_all(&inbox.matrix_reviews(&matrix_resource(matrix)))
        .iter()
        .rev()
        .filter_map(|envelope| {
            let checks: Vec<review::ReviewCheck> = runs.iter().map(|run| review::check(&inbox.bundle(run), envelope, Some(&key))).collect();
            // Read from a run it covers; one that covers none of the shown runs is not shown.
            let statement = checks.iter().find_map(|c| match c {
                review::ReviewCheck::Counts { statement, .. } => Some(statement.as_ref().clone()),
                review::ReviewCheck::Void(_) => None,
            })?;
            let covered = statement.subject.len();
            let current = covered == runs.len() && checks.iter().all(|c| matches!(c, review::ReviewCheck::Counts { .. }));
            Some(MatrixReviewRow {
                reviewer: statement.predicate.reviewer,
                decision: statement.predicate.decision.name(),
                comment: statement.predicate.comment,
                at: statement.predicate.time_verified,
                runs: covered,
                current,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct MatrixReviewForm {
    csrf: String,
    of: String,
    decision: String,
    #[serde(default)]
    comment: String,
}

/// A manager signs off a product firmware's compliance matrix: one signed statement
/// about every run it shows, kept beside each of their bundles and with the matrix.
async fn matrix_review(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Form(form): Form<MatrixReviewForm>,
) -> WebResult<Response> {
    check_csrf(&viewer, &form.csrf)?;
    let fail = |status, heading, message: String| WebFail::new(status, heading, message).for_viewer(&viewer);
    let decision = review_decision(&viewer, &form.decision, &form.comment)?;
    let (matrix, _, _) = matrix_of(&state, Some(&form.of)).await?;
    let matrix = matrix.ok_or_else(|| no_matrix().for_viewer(&viewer))?;
    let runs = matrix_runs(&matrix);
    if runs.is_empty() {
        let what = format!("{}, firmware {}", matrix.product, matrix.firmware);
        return Err(fail(
            StatusCode::CONFLICT,
            "Nothing to sign off",
            format!("the matrix of {what} shows no verdict of a library case yet"),
        ));
    }
    let (inbox, key) = (state.api.inbox.clone(), state.api.key.clone());
    let bundles: Vec<std::path::PathBuf> = runs.iter().map(|run| inbox.bundle(run)).collect();
    let covered: Vec<(&str, &std::path::Path)> = runs.iter().map(String::as_str).zip(bundles.iter().map(|b| b.as_path())).collect();
    let at = state.api.clock.now().rfc3339();
    let verdict = review::Verdict { reviewer: &viewer.user, decision, comment: form.comment.trim(), at: &at };
    let envelope = review::sign_matrix(&covered, &matrix.product.to_string(), &matrix.firmware, verdict, &key)
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, "The bundles did not read", e))?;
    let resource = matrix_resource(&matrix);
    let run_ids: Vec<&str> = runs.iter().map(String::as_str).collect();
    inbox
        .add_matrix_review(&resource, &run_ids, &envelope)
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, "The review was not kept", e.to_string()))?;
    let details = serde_json::json!({ "decision": decision.name(), "comment": form.comment.trim(), "runs": run_ids });
    state.api.store.note("review.matrix", &resource, details, &viewer.ctx(&state)).await?;
    Ok(Redirect::to(&format!("/matrix?of={}", form_urlencode(&form.of))).into_response())
}

fn no_matrix() -> WebFail {
    WebFail::new(StatusCode::NOT_FOUND, "Nothing to export", "no verified run names that product and firmware yet")
}

async fn matrix_csv(State(state): State<WebState>, Query(q): Query<MatrixQuery>) -> WebResult<Response> {
    let (matrix, _, _) = matrix_of(&state, q.of.as_deref()).await?;
    let matrix = matrix.ok_or_else(no_matrix)?;
    let name = format!("compliance-{}-{}-{}.csv", matrix.product.vendor, matrix.product.model, matrix.firmware)
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-', "_");
    let mut response = (StatusCode::OK, crate::matrix::csv(&matrix)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).expect("ASCII"));
    Ok(response)
}

#[derive(Template)]
#[template(path = "matrix_export.html")]
struct MatrixExport {
    m: Matrix,
    missing: usize,
    exported: String,
    by: String,
}

async fn matrix_html(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<MatrixQuery>,
) -> WebResult<Response> {
    let (matrix, _, _) = matrix_of(&state, q.of.as_deref()).await?;
    let m = matrix.ok_or_else(no_matrix)?;
    let missing = m.rows.iter().filter(|r| r.missing.is_some()).count();
    let page = MatrixExport { m, missing, exported: state.api.clock.now().rfc3339(), by: viewer.user };
    let mut response = html(page);
    response.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"compliance-matrix.html\""));
    Ok(response)
}

// ---- trends ------------------------------------------------------------------------------

/// One bar: a row's verdict counts and their widths in a 300-pixel bar.
struct Bar {
    label: String,
    group: String,
    total: usize,
    pass: usize,
    fail: usize,
    other: usize,
    pass_w: usize,
    fail_w: usize,
    other_w: usize,
}

fn bars(counts: BTreeMap<(String, String), [usize; 3]>) -> Vec<Bar> {
    counts
        .into_iter()
        .map(|((label, group), [pass, fail, other])| {
            let total = pass + fail + other;
            let width = |n: usize| (n * 300).checked_div(total).unwrap_or(0);
            Bar { label, group, total, pass, fail, other, pass_w: width(pass), fail_w: width(fail), other_w: width(other) }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "trends.html")]
struct TrendsPage {
    viewer: Option<Viewer>,
    runs: usize,
    by_plan: Vec<Bar>,
    by_clause: Vec<Bar>,
}

/// Pass and fail per plan over time, and per clause across firmware versions, from
/// the cases of verified runs only.
async fn trends(State(state): State<WebState>, Extension(viewer): Extension<Viewer>) -> WebResult<Response> {
    let results = verified_results(&state).await?;
    let mut by_plan: BTreeMap<(String, String), [usize; 3]> = BTreeMap::new();
    let mut by_clause: BTreeMap<(String, String), [usize; 3]> = BTreeMap::new();
    for (_, result) in &results {
        let day = result.ended.get(..10).unwrap_or("?").to_string();
        let firmware: BTreeMap<&str, String> = result
            .devices
            .iter()
            .map(|d| (d.device.as_str(), d.declared.firmware.clone().unwrap_or_else(|| "(undeclared)".into())))
            .collect();
        for case in &result.cases {
            let slot = match case.verdict {
                Verdict::Pass => 0,
                Verdict::Fail => 1,
                Verdict::Skip | Verdict::NotRun => continue,
                _ => 2,
            };
            by_plan.entry((case.key.plan.clone(), day.clone())).or_default()[slot] += 1;
            if let Some(scas) = &case.scas {
                let fw = firmware.get(case.key.device.as_str()).cloned().unwrap_or_else(|| "(undeclared)".into());
                by_clause.entry((format!("{} {}", scas.clause, scas.test_name), fw)).or_default()[slot] += 1;
            }
        }
    }
    Ok(html(TrendsPage { viewer: Some(viewer), runs: results.len(), by_plan: bars(by_plan), by_clause: bars(by_clause) }))
}

// ---- static ----------------------------------------------------------------------------

async fn static_file(Path(file): Path<String>) -> Response {
    let (bytes, kind) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    secure(response.headers_mut());
    response
}
