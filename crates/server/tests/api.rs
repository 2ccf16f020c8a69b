//! The server's API over real HTTPS on loopback: what a person with each role may do,
//! what every refusal says, and that every change is audited with where it came from.
//!
//! Each test starts a real `Server` on 127.0.0.1 (port 0) in a temporary state
//! directory and talks to it with reqwest over rustls, trusting only the fingerprint
//! the server reported (the pin lab hosts and the CLI use; no CA, no "accept invalid
//! certificates"). Each runs on SQLite and on PostgreSQL (`both!`, as tests/store.rs).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use proofrig_proto::advert::RigSummary;
use proofrig_proto::api::Role;
use proofrig_proto::ids::{LabHostId, UnixMillis};
use proofrig_server::api::ROUTES;
use proofrig_server::http::{ServeError, Server, ServerConfig};
use proofrig_server::store::{Ctx, NewLabHost};
use proofrig_testpeers::postgres::Postgres;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

// ---- fixtures ------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

/// A running server, a client pinned to it, and a token for a user of each role.
struct Lab {
    server: Server,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    tokens: BTreeMap<Role, String>,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn pinned_client(fingerprint: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(proofrig_server::tls::pinned_client_config(fingerprint))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn database(db: Db) -> Option<String> {
    match db {
        Db::Sqlite => None,
        Db::Postgres => Some(tokio::task::spawn_blocking(|| Postgres::shared().create_database("api")).await.unwrap()),
    }
}

impl Lab {
    async fn start(db: Db) -> Lab {
        Lab::start_with(db, |_| {}).await
    }

    async fn start_with(db: Db, adjust: impl FnOnce(&mut ServerConfig)) -> Lab {
        let dir = tempfile::Builder::new().prefix("proofrig-api-").tempdir().unwrap();
        let mut config = ServerConfig::new(loopback(), dir.path());
        config.db = database(db).await;
        adjust(&mut config);
        let server = Server::start(config).await.unwrap();
        let client = pinned_client(server.fingerprint().expect("HTTPS by default"));
        let admin = server.bootstrap_token().expect("a fresh store bootstraps an admin").to_string();
        let mut lab = Lab { server, dir, client, tokens: BTreeMap::from([(Role::Admin, admin)]) };
        for (name, role) in [("tina", Role::Technician), ("tess", Role::Tester), ("mona", Role::Manager)] {
            let (status, made) = lab.call(Method::POST, "/api/users", Some(Role::Admin), Some(json!({ "name": name, "role": role }))).await;
            assert_eq!(status, StatusCode::CREATED, "{made}");
            lab.tokens.insert(role, made["token"].as_str().unwrap().to_string());
        }
        lab
    }

    /// A new token for the user of `role` (for requests that revoke their own token).
    async fn fresh_token(&self, role: Role) -> String {
        let user = match role {
            Role::Admin => "admin",
            Role::Technician => "tina",
            Role::Tester => "tess",
            Role::Manager => "mona",
        };
        let (status, made) = self.call(Method::POST, &format!("/api/users/{user}/tokens"), Some(Role::Admin), Some(json!({}))).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        made["token"].as_str().unwrap().to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// Send `body` (JSON) as the user of `role` (no token when `None`); the status and
    /// the JSON answer (`null` when empty).
    async fn call(&self, method: Method, path: &str, role: Option<Role>, body: Option<Value>) -> (StatusCode, Value) {
        let token = role.map(|r| self.tokens[&r].clone());
        self.send(method, path, token.as_deref(), body.map(|b| b.to_string().into_bytes())).await
    }

    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path)).header("X-Forwarded-For", "203.0.113.9");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            // A body over the server's limit is answered 413 before it is read, and the
            // server then closes that connection: a client must not reuse it (reusing
            // it raced the close, and the next request failed half sent).
            if body.len() > 64 * 1024 {
                request = request.header("connection", "close");
            }
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}")) };
        (status, value)
    }

    /// A lab host with rig `bench-1` online (enrolled straight in the store: the lab
    /// hosts' sessions are not this API's).
    async fn with_rig(&self) {
        let now = self.server.clock().now();
        let (store, id) = (self.server.store(), LabHostId("lab-a".into()));
        let ctx = Ctx::new("admin", "127.0.0.1:1", now);
        let host = NewLabHost {
            id: id.clone(),
            name: "lab-a".into(),
            public_key_pem: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".into(),
        };
        store.enroll_labhost(&host, &ctx).await.unwrap();
        let rig = RigSummary {
            rig: "bench-1".into(),
            sha256: "0".repeat(64),
            devices: ["ru1".to_string()].into(),
            roles: ["radio-unit".to_string()].into(),
            tags: ["lte".to_string()].into(),
        };
        store.advertise(&id, &[rig], &Ctx::new("lab-a", "127.0.0.1:1", now)).await.unwrap();
        store.heartbeat(&id, &[], &Ctx::new("lab-a", "127.0.0.1:1", now)).await.unwrap();
    }
}

/// Each named async fn, as a test on SQLite and a test on PostgreSQL.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Postgres).await
                }
            )*
        }
    };
}

both!(
    a_disabled_user_or_a_revoked_token_or_lab_host_is_refused_at_once,
    every_route_checks_the_token_and_the_role_on_the_server,
    a_malformed_plan_is_refused_at_its_line_and_column,
    bad_json_and_oversized_bodies_are_refused_and_store_nothing,
    an_expired_or_unknown_token_is_refused,
    every_state_change_is_audited_with_the_peer_address,
    the_fingerprint_reported_is_the_certificate_served,
    malformed_requests_never_get_a_5xx_and_a_refusal_changes_nothing,
    a_tester_cancels_only_their_own_jobs,
    a_schedule_is_checked_as_a_job_is_and_a_bad_cron_or_zone_named,
    a_tester_removes_only_their_own_schedules_and_a_due_one_submits_its_job,
);

const PLAN_NAME: &str = "open-ports.yaml";
const PLAN: &[u8] = include_bytes!("../../../testplans/open-ports.yaml");

/// Who may do what, as issue 14 assigns the rights (technician: rigs, reservations,
/// scheduling; tester: plans, submitting runs; manager: reviewing, reads meanwhile;
/// admin: users, lab hosts, the audit), written here apart from the server's table so
/// a right widened there by mistake fails this test.
const POLICY: &[(&str, &str, &[&str])] = &[
    ("GET", "/openapi.json", &["technician", "tester", "manager", "admin"]),
    ("POST", "/api/jobs", &["technician", "tester"]),
    ("GET", "/api/jobs", &["technician", "tester", "manager", "admin"]),
    ("POST", "/api/jobs/{job}/cancel", &["technician", "tester"]),
    ("GET", "/api/rigs", &["technician", "tester", "manager", "admin"]),
    ("POST", "/api/rigs/{rig}/reservation", &["technician"]),
    ("PUT", "/api/rigs/{rig}/reservation", &["technician"]),
    ("DELETE", "/api/rigs/{rig}/reservation", &["technician"]),
    ("GET", "/api/users", &["admin"]),
    ("POST", "/api/users", &["admin"]),
    ("POST", "/api/users/{user}/tokens", &["admin"]),
    ("POST", "/api/labhosts/enrollments", &["admin"]),
    ("GET", "/api/audit", &["admin"]),
    ("POST", "/api/schedules", &["technician", "tester"]),
    ("GET", "/api/schedules", &["technician", "tester", "manager", "admin"]),
    ("DELETE", "/api/schedules/{schedule}", &["technician", "tester"]),
    // Everyone reads stored runs; a flagged one only an admin, on asking (tests/service_cli.rs).
    ("GET", "/api/runs/{run}", &["technician", "tester", "manager", "admin"]),
    ("GET", "/api/runs/{run}/files/{*path}", &["technician", "tester", "manager", "admin"]),
    ("POST", "/api/rigs/{rig}/state", &["technician"]),
    ("PUT", "/api/rigs/{rig}/health", &["technician"]),
    ("GET", "/api/rigs/{rig}/health", &["technician", "tester", "manager", "admin"]),
    ("DELETE", "/api/rigs/{rig}/health", &["technician"]),
    ("DELETE", "/api/users/{user}", &["admin"]),
    ("DELETE", "/api/tokens/current", &["technician", "tester", "manager", "admin"]),
    ("DELETE", "/api/labhosts/{labhost}", &["admin"]),
    ("POST", "/api/jobs/{job}/retry", &["technician", "tester"]),
    ("GET", "/api/runs/{run}/reviews", &["technician", "tester", "manager", "admin"]),
];

/// A route's path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{job}", "1")
        .replace("{rig}", "bench-9")
        .replace("{user}", "nobody")
        .replace("{schedule}", "1")
        .replace("{labhost}", "lab-9")
        .replace("{run}", "run-9")
        .replace("{*path}", "journal.jsonl")
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

fn submission(name: &str, bytes: &[u8]) -> Value {
    use base64::Engine;
    json!({ "plans": [{ "name": name, "bytes": base64::engine::general_purpose::STANDARD.encode(bytes) }], "target": { "rig": "bench-1" } })
}

// ---- tests -----------------------------------------------------------------------

/// The route that revokes the token it is called with.
const REVOKE_OWN: &str = "/api/tokens/current";

async fn every_route_checks_the_token_and_the_role_on_the_server(db: Db) {
    // The server's table grants what the policy grants, route for route.
    for route in ROUTES {
        let granted: Vec<&str> = route.roles.iter().map(|r| r.name()).collect();
        let policy = POLICY.iter().find(|(m, p, _)| *m == route.method && *p == route.path);
        let (_, _, roles) =
            policy.unwrap_or_else(|| panic!("{} {} is served but not in this test's POLICY: add it", route.method, route.path));
        assert_eq!(&granted, roles, "{} {}", route.method, route.path);
    }
    assert_eq!(POLICY.len(), ROUTES.len(), "a route of POLICY is not served");
    let lab = Lab::start(db).await;
    let mut before = lab.server.store().audit().await.unwrap().len();
    // The document lists exactly the table; the router is built from the table alone.
    let (status, doc) = lab.call(Method::GET, "/openapi.json", Some(Role::Manager), None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let mut listed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (verb, _) in item.as_object().unwrap() {
            assert!(
                ROUTES.iter().any(|r| r.path == path && r.method.eq_ignore_ascii_case(verb)),
                "{verb} {path} is served but not in ROUTES"
            );
            listed += 1;
        }
    }
    assert_eq!(listed, ROUTES.len(), "every route of ROUTES is in the OpenAPI document");
    for route in ROUTES {
        let path = concrete(route.path);
        let (status, body) = lab.send(method(route.method), &path, None, Some(b"{}".to_vec())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {path} without a token: {body}", route.method);
        assert_eq!(body["code"], "unauthorized");
        assert!(body["message"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
        for role in Role::ALL {
            let (status, body) = if route.path == REVOKE_OWN && route.roles.contains(&role) {
                // Revoking the token it presents: a fresh one, whose minting and
                // revocation are the only changes this walk makes.
                let token = lab.fresh_token(role).await;
                let answer = lab.send(method(route.method), &path, Some(&token), Some(b"{}".to_vec())).await;
                let (again, body) = lab.send(Method::GET, "/api/jobs", Some(&token), None).await;
                assert_eq!(again, StatusCode::UNAUTHORIZED, "a revoked token still works: {body}");
                assert!(body["message"].as_str().unwrap().contains("revoked"), "{body}");
                before += 2;
                answer
            } else {
                lab.call(method(route.method), &path, Some(role), Some(json!({}))).await
            };
            if route.roles.contains(&role) {
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
                    "{role} on {} {path}: {status} {body}",
                    route.method
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} on {} {path}: {body}", route.method);
                assert_eq!(body["code"], "forbidden");
                let message = body["message"].as_str().unwrap();
                assert!(message.contains(&format!("is a {role} and may not {}", route.summary)), "{message}");
            }
        }
    }
    // No route outside the table: an unknown path is a JSON 404, an unknown method 405.
    let (status, body) = lab.call(Method::GET, "/api/secrets", Some(Role::Admin), None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, _) = lab.call(Method::PATCH, "/api/jobs", Some(Role::Admin), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // None of the refused or malformed requests changed anything.
    assert_eq!(lab.server.store().audit().await.unwrap().len(), before);
    assert!(lab.server.store().jobs().await.unwrap().is_empty());
    lab.server.stop().await;
}

async fn a_malformed_plan_is_refused_at_its_line_and_column(db: Db) {
    let lab = Lab::start(db).await;
    // A valid plan is queued as sent.
    let (status, body) = lab.call(Method::POST, "/api/jobs", Some(Role::Tester), Some(submission(PLAN_NAME, PLAN))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(lab.server.store().plans(proofrig_proto::ids::JobId(body["job"].as_u64().unwrap())).await.unwrap()[0].bytes, PLAN);
    // The same plan with a misspelt key on its last line: refused where plan check places it.
    let mut broken = PLAN.to_vec();
    broken.extend_from_slice(b"cases_extra: 1\n");
    let line = broken.iter().filter(|b| **b == b'\n').count();
    let expected = match proofrig_plan::Plan::from_bytes(PLAN_NAME, &broken) {
        Err(proofrig_plan::PlanError::Invalid(e)) => e,
        other => panic!("the broken plan must not parse: {:?}", other.map(|p| p.spec.plan)),
    };
    assert_eq!(expected.line, line, "the error is on the line added");
    let (status, body) = lab.call(Method::POST, "/api/jobs", Some(Role::Tester), Some(submission(PLAN_NAME, &broken))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("{PLAN_NAME}:{line}:{}: ", expected.column)), "{message}");
    assert!(message.contains(&expected.message), "{message}");
    assert_eq!(lab.server.store().jobs().await.unwrap().len(), 1, "the broken plan queued nothing");
    lab.server.stop().await;
}

async fn bad_json_and_oversized_bodies_are_refused_and_store_nothing(db: Db) {
    let lab = Lab::start_with(db, |c| c.limits.max_body = 64 * 1024).await;
    let before = lab.server.store().audit().await.unwrap().len();
    let tester = lab.tokens[&Role::Tester].clone();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("truncated JSON", br#"{"plans": [{"name": "a.yaml""#.to_vec(), StatusCode::BAD_REQUEST, "line 1 column"),
        ("not JSON", b"plans: []".to_vec(), StatusCode::BAD_REQUEST, "expected"),
        ("a typo", serde_json::to_vec(&json!({"plans": [], "target": "x", "priorty": 90})).unwrap(), StatusCode::BAD_REQUEST, "priorty"),
        (
            "no plan",
            serde_json::to_vec(&json!({"plans": [], "target": {"rig": "bench-1"}})).unwrap(),
            StatusCode::BAD_REQUEST,
            "at least one plan",
        ),
        (
            "a path as a plan name",
            serde_json::to_vec(&submission("../etc/open-ports.yaml", PLAN)).unwrap(),
            StatusCode::BAD_REQUEST,
            "without directories",
        ),
        ("oversized", serde_json::to_vec(&submission(PLAN_NAME, &vec![b'#'; 128 * 1024])).unwrap(), StatusCode::PAYLOAD_TOO_LARGE, "limit"),
    ];
    for (what, body, want, says) in cases {
        let (status, answer) = lab.send(Method::POST, "/api/jobs", Some(&tester), Some(body)).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(says), "{what}: {answer}");
    }
    let admin = lab.tokens[&Role::Admin].clone();
    let (status, answer) = lab.send(Method::POST, "/api/users", Some(&admin), Some(br#"{"name":"eve","role":"root"}"#.to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown role: {answer}");
    assert!(answer["message"].as_str().unwrap().contains("root"), "{answer}");
    assert!(lab.server.store().jobs().await.unwrap().is_empty());
    assert_eq!(lab.server.store().users().await.unwrap().len(), 4);
    assert_eq!(lab.server.store().audit().await.unwrap().len(), before, "nothing refused was recorded as done");
    lab.server.stop().await;
}

async fn an_expired_or_unknown_token_is_refused(db: Db) {
    let lab = Lab::start(db).await;
    let (status, _) = lab.call(Method::GET, "/api/jobs", Some(Role::Tester), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = lab.send(Method::GET, "/api/jobs", Some("prt_0000"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].as_str().unwrap().contains("unknown API token"), "{body}");
    // A token for one day, then the clock passes its end (the others last 90 days).
    let (status, made) = lab.call(Method::POST, "/api/users/tess/tokens", Some(Role::Admin), Some(json!({ "days": 1 }))).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let short = made["token"].as_str().unwrap().to_string();
    assert_eq!(lab.send(Method::GET, "/api/jobs", Some(&short), None).await.0, StatusCode::OK);
    lab.server.clock().advance(Duration::from_secs(24 * 3600 + 1));
    let (status, body) = lab.send(Method::GET, "/api/jobs", Some(&short), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("API token of tess expired") && message.contains("ask an admin"), "{message}");
    assert_eq!(lab.call(Method::GET, "/api/jobs", Some(Role::Tester), None).await.0, StatusCode::OK, "the 90-day token still works");
    lab.server.stop().await;
}

async fn every_state_change_is_audited_with_the_peer_address(db: Db) {
    let lab = Lab::start(db).await;
    lab.with_rig().await;
    let before = lab.server.store().audit().await.unwrap().len();
    let steps: Vec<(Method, &str, Role, Value, StatusCode)> = vec![
        (Method::POST, "/api/jobs", Role::Tester, submission(PLAN_NAME, PLAN), StatusCode::CREATED),
        (Method::POST, "/api/jobs/1/cancel", Role::Tester, json!({ "reason": "wrong rig" }), StatusCode::OK),
        (Method::POST, "/api/rigs/bench-1/reservation", Role::Technician, json!({ "minutes": 30 }), StatusCode::OK),
        (Method::PUT, "/api/rigs/bench-1/reservation", Role::Technician, json!({ "minutes": 90 }), StatusCode::OK),
        (Method::DELETE, "/api/rigs/bench-1/reservation", Role::Technician, json!({}), StatusCode::NO_CONTENT),
        (
            Method::POST,
            "/api/users",
            Role::Admin,
            json!({ "name": "otto", "role": "tester", "password": "correct horse battery" }),
            StatusCode::CREATED,
        ),
        (Method::POST, "/api/users/otto/tokens", Role::Admin, json!({}), StatusCode::CREATED),
        (Method::POST, "/api/labhosts/enrollments", Role::Admin, json!({ "labhost": "lab-b" }), StatusCode::CREATED),
    ];
    for (verb, path, role, body, want) in steps {
        let (status, answer) = lab.call(verb.clone(), path, Some(role), Some(body)).await;
        assert_eq!(status, want, "{verb} {path}: {answer}");
    }
    let audit = lab.server.store().audit().await.unwrap();
    let new: Vec<_> = audit[before..].iter().filter(|r| r.who != "server").collect();
    let actions: Vec<(&str, &str)> = new.iter().map(|r| (r.who.as_str(), r.action.as_str())).collect();
    for (who, action) in [
        ("tess", "job.submit"),
        ("tess", "job.cancel"),
        ("tina", "reservation.start"),
        ("tina", "reservation.extend"),
        ("tina", "reservation.release"),
        ("admin", "user.add"),
        ("admin", "token.create"),
        ("admin", "enrollment.create"),
    ] {
        assert!(actions.contains(&(who, action)), "no audit record of {who} {action} in {actions:?}");
    }
    for record in &new {
        let origin: SocketAddr = record.origin.parse().unwrap_or_else(|_| panic!("origin {} is not a peer address", record.origin));
        assert!(origin.ip().is_loopback(), "{record:?}: from the socket, not X-Forwarded-For");
        assert!(record.at >= UnixMillis(1), "{record:?}");
    }
    let (status, listed) = lab.call(Method::GET, "/api/audit", Some(Role::Admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), audit.len());
    // No secret in the log: not the password, not a token.
    let text = listed.to_string();
    assert!(!text.contains("correct horse") && !text.contains("prt_") && !text.contains("pre_"), "{text}");
    lab.server.stop().await;
}

async fn the_fingerprint_reported_is_the_certificate_served(db: Db) {
    let lab = Lab::start(db).await;
    let fingerprint = lab.server.fingerprint().unwrap().to_string();
    let key = lab.dir.path().join("tls/key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "the key is its owner's only");
    // The pinned client got in (Lab::start made users through it); one pinned to any
    // other certificate is refused at the handshake.
    let wrong = pinned_client(&"ab".repeat(32));
    let err = wrong.get(lab.url("/api/jobs")).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // The certificate on the wire hashes to the fingerprint reported.
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(proofrig_server::tls::pinned_client_config(&fingerprint)));
    let tcp = tokio::net::TcpStream::connect(lab.server.local_addr()).await.unwrap();
    let stream = tls.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(proofrig_server::tls::fingerprint(&served), fingerprint);
    // A restart in the same state directory serves the same certificate, and makes no second admin.
    let (dir, db_url) = (lab.dir, None::<String>);
    lab.server.stop().await;
    let mut config = ServerConfig::new(loopback(), dir.path());
    config.db = match db {
        Db::Sqlite => db_url,
        Db::Postgres => return, // the PostgreSQL database of this test is not kept across the restart
    };
    let again = Server::start(config).await.unwrap();
    assert_eq!(again.fingerprint(), Some(fingerprint.as_str()));
    assert_eq!(again.bootstrap_token(), None, "the bootstrap token is shown once, on the first start");
    again.stop().await;
}

async fn a_tester_cancels_only_their_own_jobs(db: Db) {
    let lab = Lab::start(db).await;
    let (status, tom) = lab.call(Method::POST, "/api/users", Some(Role::Admin), Some(json!({ "name": "tom", "role": "tester" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{tom}");
    let tom = tom["token"].as_str().unwrap().to_string();
    let (status, job) = lab.call(Method::POST, "/api/jobs", Some(Role::Tester), Some(submission(PLAN_NAME, PLAN))).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let cancel = format!("/api/jobs/{}/cancel", job["job"]);
    let before = lab.server.store().audit().await.unwrap().len();
    let (status, body) = lab.send(Method::POST, &cancel, Some(&tom), Some(b"{}".to_vec())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["message"].as_str().unwrap().contains("is tess's"), "{body}");
    assert_eq!(lab.server.store().audit().await.unwrap().len(), before, "the refusal changed nothing");
    let (status, body) = lab.call(Method::POST, &cancel, Some(Role::Technician), Some(json!({ "reason": "rig needed" }))).await;
    assert_eq!(status, StatusCode::OK, "a technician cancels anyone's: {body}");
    assert_eq!(body["was"], "queued");
    lab.server.stop().await;
}

fn schedule_body(job: Value, cron: &str, zone: &str) -> Value {
    json!({ "job": job, "cron": cron, "time_zone": zone })
}

async fn a_schedule_is_checked_as_a_job_is_and_a_bad_cron_or_zone_named(db: Db) {
    let lab = Lab::start(db).await;
    let now = lab.server.clock().now();
    let (status, made) = lab
        .call(
            Method::POST,
            "/api/schedules",
            Some(Role::Tester),
            Some(schedule_body(submission(PLAN_NAME, PLAN), "30 2 * * *", "Europe/Berlin")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(
        (made["id"].as_u64(), made["cron"].as_str(), made["time_zone"].as_str()),
        (Some(1), Some("30 2 * * *"), Some("Europe/Berlin"))
    );
    assert_eq!(
        (made["created_by"].as_str(), made["plans"].clone(), made["target"].clone()),
        (Some("tess"), json!([PLAN_NAME]), json!({ "rig": "bench-1" }))
    );
    let next = made["next_at"].as_u64().unwrap();
    assert!(next > now.0 && next <= now.0 + 25 * 3600 * 1000, "next run within a day: {made}");
    let before = lab.server.store().audit().await.unwrap().len();

    // A malformed plan: the very refusal `POST /api/jobs` gives.
    let mut broken = PLAN.to_vec();
    broken.extend_from_slice(b"cases_extra: 1\n");
    let (status, as_job) = lab.call(Method::POST, "/api/jobs", Some(Role::Tester), Some(submission(PLAN_NAME, &broken))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{as_job}");
    let (status, as_schedule) = lab
        .call(Method::POST, "/api/schedules", Some(Role::Tester), Some(schedule_body(submission(PLAN_NAME, &broken), "30 2 * * *", "UTC")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{as_schedule}");
    assert_eq!(as_schedule, as_job);
    assert!(as_schedule["message"].as_str().unwrap().starts_with(&format!("{PLAN_NAME}:")), "{as_schedule}");

    // A bad cron or zone: 400, naming the field and what is wrong with it.
    for (cron, zone, starts, says) in [
        ("61 2 * * *", "UTC", "cron `61 2 * * *`", "the minute field `61`"),
        ("30 2 * *", "UTC", "cron `30 2 * *`", "five fields"),
        ("*/1 * * * *", "UTC", "cron `*/1 * * * *`", "a lab queue is not a ticker"),
        ("30 2 * * *", "Europe/Berlinn", "time_zone `Europe/Berlinn`", "not an IANA time zone"),
        ("30 2 * * *", "europe/berlin", "time_zone `europe/berlin`", "did you mean Europe/Berlin?"),
    ] {
        let (status, body) = lab
            .call(Method::POST, "/api/schedules", Some(Role::Technician), Some(schedule_body(submission(PLAN_NAME, PLAN), cron, zone)))
            .await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid")), "{cron} {zone}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(starts) && message.contains(says), "{cron} {zone}: {message}");
    }
    // A misspelt field of the request itself.
    let typo = json!({ "job": submission(PLAN_NAME, PLAN), "cron": "30 2 * * *", "timezone": "UTC" });
    let (status, body) = lab.call(Method::POST, "/api/schedules", Some(Role::Tester), Some(typo)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("timezone"), "{body}");

    // None of it was stored; everyone reads the one schedule.
    assert_eq!(lab.server.store().audit().await.unwrap().len(), before);
    let (status, listed) = lab.call(Method::GET, "/api/schedules", Some(Role::Manager), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([made]));
    lab.server.stop().await;
}

async fn a_tester_removes_only_their_own_schedules_and_a_due_one_submits_its_job(db: Db) {
    let lab = Lab::start(db).await;
    lab.with_rig().await;
    let (status, tom) = lab.call(Method::POST, "/api/users", Some(Role::Admin), Some(json!({ "name": "tom", "role": "tester" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{tom}");
    let tom = tom["token"].as_str().unwrap().to_string();
    let body = schedule_body(submission(PLAN_NAME, PLAN), "*/15 * * * *", "America/New_York");
    for _ in 0..3 {
        let (status, made) = lab.call(Method::POST, "/api/schedules", Some(Role::Tester), Some(body.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
    }
    let audit_before = lab.server.store().audit().await.unwrap().len();
    let (status, refused) = lab.send(Method::DELETE, "/api/schedules/1", Some(&tom), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("schedule 1 is tess's"), "{refused}");
    assert_eq!(lab.server.store().audit().await.unwrap().len(), audit_before, "the refusal changed nothing");
    assert_eq!(lab.call(Method::DELETE, "/api/schedules/1", Some(Role::Tester), None).await.0, StatusCode::NO_CONTENT, "her own");
    assert_eq!(lab.call(Method::DELETE, "/api/schedules/2", Some(Role::Technician), None).await.0, StatusCode::NO_CONTENT, "anyone's");
    let (status, body) = lab.call(Method::DELETE, "/api/schedules/2", Some(Role::Technician), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(lab.call(Method::DELETE, "/api/schedules/9", Some(Role::Tester), None).await.0, StatusCode::NOT_FOUND);
    let (_, listed) = lab.call(Method::GET, "/api/schedules", Some(Role::Tester), None).await;
    assert_eq!(listed.as_array().unwrap().iter().map(|v| v["id"].as_u64().unwrap()).collect::<Vec<_>>(), [3]);

    // Due: the server's pass submits schedule 3's job, as tess's, once.
    lab.server.clock().advance(Duration::from_secs(16 * 60));
    let now = lab.server.clock().now();
    let fired = lab.server.store().fire_due(&Ctx::server(now)).await.unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(lab.server.store().fire_due(&Ctx::server(now)).await.unwrap().is_empty());
    let (_, jobs) = lab.call(Method::GET, "/api/jobs", Some(Role::Manager), None).await;
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0]["submitted_by"].as_str(), jobs[0]["plans"].clone()), (Some("tess"), json!([PLAN_NAME])));
    let audit = lab.server.store().audit().await.unwrap();
    let people: Vec<_> = audit.iter().filter(|r| r.action.starts_with("schedule.") && r.action != "schedule.fire").collect();
    assert_eq!(people.len(), 5, "three added, two removed: {people:?}");
    for record in people {
        let origin: SocketAddr = record.origin.parse().unwrap_or_else(|_| panic!("origin {} is not a peer address", record.origin));
        assert!(origin.ip().is_loopback(), "{record:?}");
    }
    let submitted = audit.iter().find(|r| r.action == "job.submit").unwrap();
    assert_eq!((submitted.who.as_str(), submitted.origin.as_str(), &submitted.details["schedule"]), ("tess", "schedule 3", &json!(3)));
    lab.server.stop().await;
}

/// A small deterministic generator (xorshift64*): the fuzz test below is the same on
/// every run, and a failure names the seed and step that found it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A request each role may make on the route, that the server accepts as it is.
fn valid_body(route: &str) -> Value {
    match route {
        "/api/jobs" => submission(PLAN_NAME, PLAN),
        "/api/jobs/{job}/cancel" => json!({ "reason": "fuzz" }),
        "/api/rigs/{rig}/reservation" => json!({ "minutes": 30 }),
        "/api/users" => json!({ "name": "fuzz", "role": "tester", "password": "twelve chars long" }),
        "/api/users/{user}/tokens" => json!({ "days": 3 }),
        "/api/labhosts/enrollments" => json!({ "labhost": "lab-z", "minutes": 5 }),
        "/api/rigs/{rig}/state" => json!({ "state": "maintenance", "reason": "fuzz" }),
        "/api/rigs/{rig}/health" => json!({ "plan": submission(PLAN_NAME, PLAN)["plans"][0].clone(), "every_minutes": 60 }),
        "/api/schedules" => schedule_body(submission(PLAN_NAME, PLAN), "30 2 * * *", "Europe/Berlin"),
        _ => json!({}),
    }
}

/// One malformed variant of `body`: truncated, a byte changed, inserted or dropped,
/// a value of the wrong type or size, deep nesting, or bytes that are not UTF-8.
fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let at = rng.below(out.len());
    match rng.below(8) {
        0 => out.truncate(at),
        1 => out[at] = rng.next() as u8,
        2 => out.insert(at, b"{}[]\",:0-e\0\xff"[rng.below(12)]),
        3 => {
            out.remove(at);
        }
        4 => {
            let text = String::from_utf8_lossy(body).to_string();
            let wrong = ["null", "-1", "1e400", "18446744073709551616", "\"\"", "[]", "{}", "true", "\"\\u0000\""][rng.below(9)];
            out = match text.find(':') {
                Some(colon) => format!(
                    "{}:{wrong}{}",
                    &text[..colon],
                    &text[colon + 1..].split_once([',', '}']).map(|(_, r)| format!(",{r}")).unwrap_or_default()
                )
                .into_bytes(),
                None => wrong.as_bytes().to_vec(),
            };
        }
        5 => out = format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        6 => out = vec![0xff, 0xfe, 0x00, b'{'],
        _ => out.extend_from_slice(b"}}}"),
    }
    out
}

async fn malformed_requests_never_get_a_5xx_and_a_refusal_changes_nothing(db: Db) {
    let lab = Lab::start(db).await;
    lab.with_rig().await;
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut statuses = BTreeMap::new();
    for route in ROUTES {
        let body = valid_body(route.path).to_string().into_bytes();
        let path = concrete(route.path).replace("bench-9", "bench-1");
        // Requests on tess, but not her disabling, which the final check below needs undone.
        let path = match (route.method, route.path) {
            ("DELETE", "/api/users/{user}") => path,
            _ => path.replace("nobody", "tess"),
        };
        for step in 0..24 {
            let role = route.roles[rng.below(route.roles.len())];
            let mutated = mutate(&mut rng, &body);
            let before = lab.server.store().audit().await.unwrap().len();
            let token = match route.path {
                REVOKE_OWN => lab.fresh_token(role).await,
                _ => lab.tokens[&role].clone(),
            };
            let before = match route.path {
                REVOKE_OWN => lab.server.store().audit().await.unwrap().len(),
                _ => before,
            };
            let (status, answer) = lab.send(method(route.method), &path, Some(&token), Some(mutated.clone())).await;
            let shown = String::from_utf8_lossy(&mutated[..mutated.len().min(200)]).to_string();
            *statuses.entry(status.as_u16()).or_insert(0) += 1;
            assert!(!status.is_server_error(), "{} {path} step {step} as {role}: {status} {answer} for {shown}", route.method);
            if !status.is_success() {
                assert!(answer["code"].is_string() && answer["message"].is_string(), "{status}: {answer}");
                let after = lab.server.store().audit().await.unwrap().len();
                assert_eq!(after, before, "{} {path} step {step}: refused ({status}) yet recorded a change: {shown}", route.method);
            }
        }
    }
    let refused: usize = statuses.iter().filter(|(s, _)| **s >= 400).map(|(_, n)| n).sum();
    assert!(refused >= ROUTES.len() * 10, "the mutations must mostly be refused: {statuses:?}");
    eprintln!("statuses: {statuses:?}");
    // Still serving, and the store still reads back whole.
    assert_eq!(lab.call(Method::GET, "/api/jobs", Some(Role::Tester), None).await.0, StatusCode::OK);
    lab.server.store().jobs().await.unwrap();
    lab.server.stop().await;
}

#[tokio::test]
async fn plain_http_is_served_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new("0.0.0.0:0".parse().unwrap(), dir.path());
    config.plain_http = true;
    let err = Server::start(config.clone()).await.err().expect("plain HTTP on 0.0.0.0 must be refused");
    assert!(matches!(err, ServeError::PlainHttpNotLoopback { .. }), "{err}");
    assert!(err.to_string().contains("not a loopback address"), "{err}");
    assert!(!dir.path().join("proofrig.db").exists(), "nothing was created");
    config.listen = loopback();
    let server = Server::start(config).await.unwrap();
    assert_eq!(server.fingerprint(), None);
    assert!(server.url().starts_with("http://127.0.0.1:"));
    let token = server.bootstrap_token().unwrap().to_string();
    // (reqwest needs a TLS configuration even for http://; this one is never used.)
    let response = pinned_client(&"00".repeat(32)).get(format!("{}/api/users", server.url())).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

async fn a_disabled_user_or_a_revoked_token_or_lab_host_is_refused_at_once(db: Db) {
    let lab = Lab::start(db).await;
    lab.with_rig().await;
    // Disabled: every token of tess stops working, and she stays on record.
    let second = lab.fresh_token(Role::Tester).await;
    let (status, body) = lab.call(Method::DELETE, "/api/users/tess", Some(Role::Admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for token in [lab.tokens[&Role::Tester].clone(), second] {
        let (status, body) = lab.send(Method::GET, "/api/jobs", Some(&token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body["message"].as_str().unwrap().contains("disabled"), "{body}");
    }
    let (_, users) = lab.call(Method::GET, "/api/users", Some(Role::Admin), None).await;
    assert!(users.as_array().unwrap().iter().any(|u| u["name"] == "tess"), "{users}");
    let (status, body) = lab.call(Method::DELETE, "/api/users/admin", Some(Role::Admin), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an admin cannot lock themselves out: {body}");
    // Revoked: the token of this request, and no other.
    let (status, _) = lab.call(Method::DELETE, "/api/tokens/current", Some(Role::Manager), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(lab.call(Method::GET, "/api/jobs", Some(Role::Manager), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(lab.call(Method::GET, "/api/jobs", Some(Role::Technician), None).await.0, StatusCode::OK);
    // A lab host revoked: its key is refused from now on, its rigs go offline.
    let (status, body) = lab.call(Method::DELETE, "/api/labhosts/lab-a", Some(Role::Admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(lab.server.store().labhost_key(&LabHostId("lab-a".into())).await.unwrap(), None);
    let (_, rigs) = lab.call(Method::GET, "/api/rigs", Some(Role::Technician), None).await;
    assert!(rigs.as_array().unwrap().iter().all(|r| r["state"] == "offline"), "{rigs}");
    let audit = lab.server.store().audit().await.unwrap();
    for action in ["user.disable", "token.revoke", "labhost.revoke"] {
        assert!(audit.iter().any(|a| a.action == action && ["admin", "mona"].contains(&a.who.as_str())), "{action} not audited");
    }
    lab.server.stop().await;
}
