//! The dashboard over real HTTPS on loopback: login with a password, the session
//! cookie, every page's role checked on the server, forms guarded by the session's
//! token, filters on the runs page, logins throttled and audited.

use std::collections::{BTreeMap, BTreeSet};

use proofrig_proto::advert::RigSummary;
use proofrig_proto::api::{DeviceView, RigSelector, Role, SubmitJob};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{LabHostId, Priority};
use proofrig_proto::labhost::{BundleCheck, Uploaded};
use proofrig_server::http::{Server, ServerConfig};
use proofrig_server::store::{Ctx, NewLabHost};
use proofrig_server::web::{Access, PAGES};
use proofrig_verdict::Verdict;
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

struct Lab {
    server: Server,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path())).await.unwrap();
        let tls = proofrig_server::tls::pinned_client_config(server.fingerprint().unwrap());
        let client = reqwest::Client::builder().use_preconfigured_tls(tls).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let lab = Lab { server, _dir: dir, client };
        let admin = lab.server.bootstrap_token().unwrap().to_string();
        for (name, role) in [("admin2", "admin"), ("tina", "technician"), ("tess", "tester"), ("mona", "manager")] {
            let body = serde_json::json!({ "name": name, "role": role, "password": PASSWORD });
            let response = lab.client.post(format!("{}/api/users", lab.server.url())).bearer_auth(&admin).json(&body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }
        lab
    }

    fn user_of(role: Role) -> &'static str {
        match role {
            Role::Admin => "admin2",
            Role::Technician => "tina",
            Role::Tester => "tess",
            Role::Manager => "mona",
        }
    }

    async fn login_as(&self, user: &str, password: &str) -> reqwest::Response {
        let form = [("user", user), ("password", password), ("next", "/runs")];
        self.client.post(format!("{}/login", self.server.url())).form(&form).send().await.unwrap()
    }

    /// A session cookie for the user of `role`.
    async fn session(&self, role: Role) -> String {
        let response = self.login_as(Lab::user_of(role), PASSWORD).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
        cookie.split(';').next().unwrap().to_string()
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> (StatusCode, String) {
        let mut request = self.client.get(format!("{}{path}", self.server.url()));
        if let Some(c) = cookie {
            request = request.header("cookie", c);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        let body = response.text().await.unwrap();
        (status, location.unwrap_or(body))
    }

    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let response = self.client.post(format!("{}{path}", self.server.url())).header("cookie", cookie).form(form).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// The session's form token, as the pages carry it.
    async fn csrf(&self, cookie: &str) -> String {
        let (_, page) = self.get("/rigs", Some(cookie)).await;
        let at = page.find("name=\"csrf\" value=\"").expect("a form with its token") + "name=\"csrf\" value=\"".len();
        page[at..].split('"').next().unwrap().to_string()
    }

    /// Rig bench-1 on lab host lab-a, and jobs on it that ended PASS, FAIL and ERROR.
    async fn with_runs(&self) {
        let store = self.server.store();
        let ctx = |who: &str| Ctx::new(who, "127.0.0.1:1", self.server.clock().now());
        let host = NewLabHost {
            id: LabHostId("lab-a".into()),
            name: "lab-a".into(),
            public_key_pem: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".into(),
        };
        store.enroll_labhost(&host, &ctx("admin")).await.unwrap();
        let rig = RigSummary {
            rig: "bench-1".into(),
            sha256: "0".repeat(64),
            devices: ["ru1".to_string()].into(),
            roles: ["radio-unit".to_string()].into(),
            tags: BTreeSet::new(),
        };
        store.advertise(&host.id, &[rig], &ctx("lab-a")).await.unwrap();
        store.heartbeat(&host.id, &[], &ctx("lab-a")).await.unwrap();
        for (plan, verdict) in
            [("ssh-algorithms.yaml", Verdict::Pass), ("default-accounts.yaml", Verdict::Fail), ("tls.yaml", Verdict::Error)]
        {
            let job = SubmitJob {
                plans: vec![PlanFile { name: plan.into(), bytes: b"plan: x\n".to_vec() }],
                target: RigSelector::Rig("bench-1".into()),
                priority: Priority::NORMAL,
                params: BTreeMap::new(),
                device: None,
                not_before: None,
            };
            store.submit(&job, &ctx("tess")).await.unwrap();
            let claimed = store.claim(&ctx("server")).await.unwrap().pop().unwrap();
            let run = format!("run-{}", claimed.job.0);
            store.job_started(claimed.job, claimed.attempt, claimed.fencing, &run, &ctx("lab-a")).await.unwrap();
            store.job_ended(claimed.job, claimed.attempt, claimed.fencing, &ctx("lab-a")).await.unwrap();
            let uploaded = Uploaded { job: claimed.job, attempt: claimed.attempt, run_id: run, check: BundleCheck::Verified { verdict } };
            store.uploaded(&uploaded, &ctx("lab-a")).await.unwrap();
            let firmware = if verdict == Verdict::Fail { "3.0.7" } else { "4.2.1" };
            let device = DeviceView {
                device: "ru1".into(),
                vendor: Some("Acme".into()),
                model: Some("RU-9".into()),
                firmware: Some(firmware.into()),
                reported: None,
            };
            store.run_facts(claimed.job, claimed.attempt, &[device], 60_000).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_a_session_sends_to_the_login_and_a_login_sets_a_strict_cookie() {
    let lab = Lab::start().await;
    let (status, location) = lab.get("/runs?verdict=FAIL", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/login?next=/runs%3Fverdict%3DFAIL");
    let (status, page) = lab.get("/login?next=/runs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<form method=\"post\" action=\"/login\">"), "{page}");

    let response = lab.login_as("tess", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/runs");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    // Never another origin after a login (an open redirect).
    let form = [("user", "tess"), ("password", PASSWORD), ("next", "//evil.example/")];
    let response = lab.client.post(format!("{}/login", lab.server.url())).form(&form).send().await.unwrap();
    assert_eq!(response.headers()["location"], "/runs");

    // The page, with its security headers; logging out ends the session on the server.
    let session = cookie.split(';').next().unwrap().to_string();
    let response = lab.client.get(format!("{}/runs", lab.server.url())).header("cookie", &session).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    let csrf = lab.csrf(&session).await;
    let (status, _) = lab.post("/logout", &session, &[("csrf", "not-the-token")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a logout form from elsewhere is refused");
    let (status, _) = lab.post("/logout", &session, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(lab.get("/runs", Some(&session)).await.0, StatusCode::SEE_OTHER, "the old cookie no longer works");
    let audit: Vec<String> = lab.server.store().audit().await.unwrap().into_iter().map(|a| a.action).collect();
    assert!(audit.contains(&"session.start".to_string()) && audit.contains(&"session.end".to_string()), "{audit:?}");
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_refused_audited_and_throttled() {
    let lab = Lab::start().await;
    for _ in 0..5 {
        let response = lab.login_as("tess", "not her password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().get("set-cookie").is_none());
        assert!(response.text().await.unwrap().contains("Wrong user name or password"));
    }
    // Throttled now, even with the right password: a guesser learns nothing more.
    let response = lab.login_as("tess", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other people are not locked out by it.
    assert_eq!(lab.login_as("tina", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    // A user with no password (API tokens only) cannot log in with an empty one.
    assert_eq!(lab.login_as("admin", "").await.status(), StatusCode::UNAUTHORIZED);
    let refused = lab.server.store().audit().await.unwrap().into_iter().filter(|a| a.action == "session.refused").count();
    assert_eq!(refused, 6);
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_checks_the_role_on_the_server_and_forms_need_the_session_token() {
    let lab = Lab::start().await;
    lab.with_runs().await;
    let mut sessions = BTreeMap::new();
    for role in Role::ALL {
        sessions.insert(role, lab.session(role).await);
    }
    for page in PAGES {
        let Access::Roles(roles) = page.access else { continue };
        let path =
            page.path.replace("{run}", "run-1").replace("{*path}", "results.json").replace("{rig}", "bench-1").replace("{device}", "ru1");
        for role in Role::ALL {
            let cookie = &sessions[&role];
            let (status, body) = match page.method {
                "GET" => lab.get(&path, Some(cookie)).await,
                _ => lab.post(&path, cookie, &[("csrf", "wrong")]).await,
            };
            if roles.contains(&role) {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{role} on {} {path}: {body}", page.method);
                assert!(!body.contains("Not for your role"), "{role} on {} {path}: {body}", page.method);
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} on {} {path}: {body}", page.method);
                assert!(body.contains(&format!("may not {}", page.summary)), "{body}");
            }
        }
    }
    // A technician's form with the session's token reserves; a stale token does not.
    let tina = &sessions[&Role::Technician];
    let (status, body) = lab.post("/rigs/bench-1/reserve", tina, &[("csrf", "stale"), ("minutes", "30")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(lab.server.store().leases().await.unwrap().is_empty(), "a refused form changes nothing");
    let csrf = lab.csrf(tina).await;
    let (status, body) = lab.post("/rigs/bench-1/reserve", tina, &[("csrf", csrf.as_str()), ("minutes", "30")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, rigs) = lab.get("/rigs", Some(tina)).await;
    assert!(rigs.contains("tina until"), "{rigs}");
    let (status, _) = lab.post("/rigs/bench-1/release", tina, &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The rig's page: its state history, newest first, each change with why and who.
    let (status, rig) = lab.get("/rigs/bench-1", Some(tina)).await;
    assert_eq!(status, StatusCode::OK);
    let reserved = rig.find("<td>reserved</td>").expect("the reservation in the history");
    let idle_again = rig.find("<td>idle</td>").expect("back to idle");
    assert!(idle_again < reserved, "newest first: {rig}");
    assert!(rig.contains("No health check"), "{rig}");
    // The audit page, for admins, shows who did it and from where.
    let (status, audit) = lab.get("/audit", Some(&sessions[&Role::Admin])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(audit.contains("reservation.start") && audit.contains("127.0.0.1"), "{audit}");
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_page_filters_by_verdict_plan_rig_state_and_day() {
    let lab = Lab::start().await;
    lab.with_runs().await;
    let mona = lab.session(Role::Manager).await;
    let rows = |page: &str| page.matches("<tr>").count() - 1;
    let (status, all) = lab.get("/runs", Some(&mona)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&all), 3, "{all}");
    let (_, fail) = lab.get("/runs?verdict=FAIL", Some(&mona)).await;
    assert_eq!(rows(&fail), 1);
    assert!(fail.contains("default-accounts.yaml") && fail.contains("v-FAIL"), "{fail}");
    assert!(fail.contains("<option value=\"FAIL\" selected>"), "the filter shows what it filters");
    let (_, plan) = lab.get("/runs?plan=ssh&verdict=", Some(&mona)).await;
    assert_eq!(rows(&plan), 1);
    let (_, other_rig) = lab.get("/runs?rig=bench-2", Some(&mona)).await;
    assert_eq!(rows(&other_rig), 0);
    let (_, done) = lab.get("/runs?state=done", Some(&mona)).await;
    assert_eq!(rows(&done), 3);
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10].to_string();
    let (_, from_today) = lab.get(&format!("/runs?from={today}&to={today}"), Some(&mona)).await;
    assert_eq!(rows(&from_today), 3);
    let (_, future) = lab.get("/runs?from=2999-01-01", Some(&mona)).await;
    assert_eq!(rows(&future), 0);
    let (_, old_firmware) = lab.get("/runs?firmware=3.0.7", Some(&mona)).await;
    assert_eq!(rows(&old_firmware), 1, "{old_firmware}");
    assert!(old_firmware.contains("ru1 (Acme RU-9 3.0.7)") && old_firmware.contains("v-FAIL"), "{old_firmware}");
    let (_, by_device) = lab.get("/runs?device=ru", Some(&mona)).await;
    assert_eq!(rows(&by_device), 3);

    // Queued jobs show their place, the most urgent first, and an estimated start.
    let store = lab.server.store();
    let ctx = Ctx::new("tess", "127.0.0.1:1", lab.server.clock().now());
    let queued = |priority: u8| {
        let job = SubmitJob {
            plans: vec![PlanFile { name: "later.yaml".into(), bytes: b"plan: x\n".to_vec() }],
            target: RigSelector::Rig("bench-2".into()),
            priority: Priority::new(priority).unwrap(),
            params: BTreeMap::new(),
            device: None,
            not_before: None,
        };
        let ctx = ctx.clone();
        async move { store.submit(&job, &ctx).await.unwrap().job.0 }
    };
    let low = queued(10).await;
    let high = queued(90).await;
    let (_, waiting) = lab.get("/runs?state=queued", Some(&mona)).await;
    let place = |job: u64| {
        let at = waiting.find(&format!("<td>{job}</td>")).unwrap();
        waiting[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(place(high).contains("#1, ~"), "{}", place(high));
    assert!(place(low).contains("#2, ~"), "{}", place(low));
    // By SCAS clause, read from the plans as submitted: the clause, or one above it.
    let plan = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testplans/failed-login-attempts.yaml")).unwrap();
    let job = SubmitJob {
        plans: vec![PlanFile { name: "failed-login-attempts.yaml".into(), bytes: plan }],
        target: RigSelector::Rig("bench-2".into()),
        priority: Priority::NORMAL,
        params: BTreeMap::new(),
        device: None,
        not_before: None,
    };
    let lockout = store.submit(&job, &ctx).await.unwrap().job.0;
    for (clause, shown) in
        [("4.2.3.4.5", true), ("4.2.3", true), ("4.2.3.4.5.1", false), ("4.2.3.4", true), ("4.3", false), ("4.2.3.4.50", false)]
    {
        let (_, page) = lab.get(&format!("/runs?clause={clause}"), Some(&mona)).await;
        assert_eq!(page.contains(&format!("<td>{lockout}</td>")), shown, "clause {clause}: {page}");
        assert_eq!(rows(&page), usize::from(shown), "clause {clause}: only the lockout case's job");
    }
    let (status, bad) = lab.get("/runs?from=yesterday", Some(&mona)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("not a day"), "{bad}");
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_the_vendored_ones() {
    let lab = Lab::start().await;
    let response = lab.client.get(format!("{}/static/htmx.min.js", lab.server.url())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.unwrap();
    let digest = proofrig_proto::bytes::sha256_hex(&bytes);
    assert_eq!(digest, "e209dda5c8235479f3166defc7750e1dbcd5a5c1808b7792fc2e6733768fb447", "static/README.md records this htmx");
    let (status, _) = lab.get("/static/../Cargo.toml", None).await;
    assert_ne!(status, StatusCode::OK);
    lab.server.stop().await;
}

/// A page of another site can make the browser open a WebSocket with the person's
/// cookie: the console's socket opens only for the dashboard's own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_socket_opens_only_from_the_dashboard_s_own_pages() {
    let lab = Lab::start().await;
    lab.with_runs().await;
    let tina = lab.session(Role::Technician).await;
    let url = lab.server.url();
    let upgrade = |origin: &str| {
        lab.client
            .get(format!("{url}/rigs/bench-1/console/ru1/socket"))
            .header("cookie", &tina)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("origin", origin.to_string())
            .send()
    };
    let foreign = upgrade("https://evil.example").await.unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(foreign.text().await.unwrap().contains("only from the dashboard"));
    let own = upgrade(&url).await.unwrap();
    assert_eq!(own.status(), StatusCode::SWITCHING_PROTOCOLS, "the dashboard's own page opens it");
    lab.server.stop().await;
}
