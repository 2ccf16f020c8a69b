//! The README's lab-service walkthrough, with real processes over pinned HTTPS on
//! loopback: `proofrig serve`; the admin adds a tester and a technician and mints a
//! lab host's enrollment token; `proofrig labhost run` enrolls with it and serves a
//! rig; the technician reserves the rig, the tester submits a plan for any radio unit,
//! it waits while the rig is reserved and runs once it is released; `fetch` brings the
//! verified bundle home, and `verify` checks it against the lab key and the server's
//! receipt, with the server's witness statements of its journal.

mod service;

use std::time::Duration;

use service::{labhost, proofrig, until, Service};

use proofrig_testpeers::plans::{desk_rig, no_device_plan};

#[test]
fn a_technician_serves_a_rig_a_tester_submits_and_the_verified_bundle_comes_home() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(&dir.path().join("server"));
    let admin = service.admin_token();

    let tess =
        service.minted_with(&admin, &["user", "add", "tess", "--role", "tester", "--password-stdin"], Some("tess's long password\n"));
    let tom = service.minted(&admin, &["user", "add", "tom", "--role", "technician"]);
    service.minted_with(&admin, &["user", "add", "mona", "--role", "manager", "--password-stdin"], Some("mona's long password\n"));

    // The lab host: its rig files, its enrollment token in a file, and off it goes.
    let rigs = dir.path().join("rigs");
    std::fs::create_dir_all(&rigs).unwrap();
    std::fs::write(rigs.join("bench-3.yaml"), desk_rig("bench-3")).unwrap();
    let (_labhost, labhost_state) = labhost(&service, &admin, dir.path(), &rigs);
    until("the rig online in `proofrig rigs`", Duration::from_secs(60), || {
        let text = service.ok(&tom, &["rigs"]);
        (text.contains("bench-3") && text.contains("idle")).then_some(text)
    });

    // Reserved by the technician: a job for any radio unit waits.
    service.ok(&tom, &["reserve", "bench-3", "--minutes", "30"]);
    let plan = dir.path().join("walkthrough.yaml");
    std::fs::write(&plan, no_device_plan("walkthrough", "TC_WALK")).unwrap();
    let submitted = service.ok(&tess, &["submit", plan.to_str().unwrap(), "--role", "radio-unit"]);
    assert!(submitted.contains("job 1"), "{submitted}");
    std::thread::sleep(Duration::from_secs(2));
    let queue = service.ok(&tess, &["queue", "--json"]);
    let jobs: serde_json::Value = serde_json::from_str(&queue).unwrap();
    assert_eq!(jobs[0]["state"], "queued", "a reserved rig takes no job: {queue}");

    // Released: the job runs, and its bundle arrives verified.
    service.ok(&tom, &["release", "bench-3"]);
    let run_id = until("the job done", Duration::from_secs(90), || {
        let jobs: serde_json::Value = serde_json::from_str(&service.ok(&tess, &["queue", "--json"])).unwrap();
        (jobs[0]["state"] == "done").then(|| jobs[0]["run_id"].as_str().unwrap().to_string())
    });
    let jobs: serde_json::Value = serde_json::from_str(&service.ok(&tess, &["queue", "--json"])).unwrap();
    assert_eq!(jobs[0]["verdict"], "INCONCLUSIVE", "no device evidence is never PASS: {jobs}");

    // Retried: a new attempt linked to the first, which is kept; it runs too.
    let retried = service.ok(&tess, &["retry", "1"]);
    assert!(retried.contains("attempt 2"), "{retried}");
    until("the retry done", Duration::from_secs(90), || {
        let jobs: serde_json::Value = serde_json::from_str(&service.ok(&tess, &["queue", "--json"])).unwrap();
        let attempts = jobs.as_array().unwrap();
        (attempts.len() == 2 && attempts[1]["state"] == "done" && attempts[1]["retry_of"] == 1).then(|| jobs.to_string())
    });

    // The dashboard: tess logs in with her password and reads the run's page.
    let browser = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(proofrig_server::tls::pinned_client_config(&service.fingerprint))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = browser
        .post(format!("{}/login", service.url))
        .form(&[("user", "tess"), ("password", "tess's long password"), ("next", "/runs")])
        .send()
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = browser.get(format!("{}/runs/{run_id}", service.url)).header("cookie", &cookie).send().unwrap().text().unwrap();
    for shown in ["TS 33.117 4.2.3.4.5", "TC_WALK", "v-INCONCLUSIVE", "bench-3", "lab-a", "witnessed"] {
        assert!(page.contains(shown), "the run page does not show {shown}: {page}");
    }
    let report = browser.get(format!("{}/runs/{run_id}/files/report.html", service.url)).header("cookie", &cookie).send().unwrap();
    assert_eq!(report.status(), reqwest::StatusCode::OK);
    assert!(report.headers()["content-security-policy"].to_str().unwrap().starts_with("sandbox"), "a bundle's report is sandboxed");

    // The compliance matrix: every TS 33.117 case of the library, and what is missing
    // (this rig's run is no library case, so all of them), as a page and as CSV.
    let matrix = browser.get(format!("{}/matrix", service.url)).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(matrix.contains("TC_FAILED_LOGIN_ATTEMPTS") && matrix.contains("TC_BOOT_INT_MEM_1"), "the library cases are listed: {matrix}");
    assert!(matrix.contains("never run"), "{matrix}");
    let csv = browser.get(format!("{}/matrix.csv", service.url)).header("cookie", &cookie).send().unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().unwrap();
    assert!(csv.starts_with("clause,test_name,title,bench-3/ru1,missing\r\n"), "{csv}");
    let library_cases = csv.lines().count() - 1;
    assert!(library_cases >= 10, "one row per library case: {csv}");
    assert_eq!(csv.matches("never run").count(), library_cases, "{csv}");

    // Mona, a manager, signs the run off; the server signs her decision about exactly
    // this bundle, and keeps it beside it.
    let mona = browser
        .post(format!("{}/login", service.url))
        .form(&[("user", "mona"), ("password", "mona's long password"), ("next", "/runs")])
        .send()
        .unwrap();
    let mona = mona.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = browser.get(format!("{}/runs/{run_id}", service.url)).header("cookie", &mona).send().unwrap().text().unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = page[at..].split('"').next().unwrap().to_string();
    let signed = browser
        .post(format!("{}/runs/{run_id}/review", service.url))
        .header("cookie", &mona)
        .form(&[("csrf", csrf.as_str()), ("decision", "accepted"), ("comment", "no device evidence expected on a desk rig")])
        .send()
        .unwrap();
    assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER);
    let page = browser.get(format!("{}/runs/{run_id}", service.url)).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(page.contains("<strong>accepted</strong> by mona"), "{page}");

    // A firmware's matrix with no library case run has nothing to sign off (the
    // browser test signs one off): refused, nothing kept.
    let matrix = browser.get(format!("{}/matrix", service.url)).header("cookie", &mona).send().unwrap().text().unwrap();
    assert!(matrix.contains("Not signed off yet") && matrix.contains("Sign off this firmware"), "{matrix}");
    let field = |name: &str| {
        let at = matrix.find(&format!("name=\"{name}\" value=\"")).unwrap() + format!("name=\"{name}\" value=\"").len();
        matrix[at..].split('"').next().unwrap().replace("&#124;", "|").replace("&#x7c;", "|")
    };
    let refused = browser
        .post(format!("{}/matrix/review", service.url))
        .header("cookie", &mona)
        .form(&[("csrf", field("csrf").as_str()), ("of", field("of").as_str()), ("decision", "rejected"), ("comment", "")])
        .send()
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT);
    assert!(refused.text().unwrap().contains("shows no verdict of a library case yet"));

    let home = dir.path().join("home");
    service.ok(&tess, &["fetch", &run_id, "--out", home.to_str().unwrap()]);
    let bundle = home.join(&run_id);
    // Verified against the lab host's key and the server's, both pinned.
    let verify_pinned = |bundle: &std::path::Path| {
        proofrig()
            .args(["verify"])
            .arg(bundle)
            .arg("--key")
            .arg(labhost_state.join("lab.pub"))
            .arg("--server-key")
            .arg(service.state.join("server.pub"))
            .output()
            .unwrap()
    };
    let verify = verify_pinned(&bundle);
    let text = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(verify.status.success(), "{text}");
    assert!(text.contains("VERIFIED"), "{text}");
    assert!(text.contains("signed by the server") && text.contains("(pinned"), "{text}");
    assert!(text.contains("✓ witnessed by the server at"), "{text}");
    assert!(text.contains("✓ accepted by mona") && text.contains("signed by the pinned server key"), "{text}");

    // The same from the dashboard, as one tar file: unpacked, it verifies the same way.
    let tar = browser.get(format!("{}/runs/{run_id}/bundle.tar", service.url)).header("cookie", &cookie).send().unwrap();
    assert_eq!(tar.status(), reqwest::StatusCode::OK);
    assert_eq!(tar.headers()["content-type"], "application/x-tar");
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    std::fs::write(unpacked.join("bundle.tar"), tar.bytes().unwrap()).unwrap();
    let untar = std::process::Command::new("tar").arg("-xf").arg("bundle.tar").current_dir(&unpacked).output().unwrap();
    assert!(untar.status.success(), "{}", String::from_utf8_lossy(&untar.stderr));
    let verify = verify_pinned(&unpacked.join(&run_id));
    let unpacked_text = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(verify.status.success(), "{unpacked_text}");
    assert!(unpacked_text.contains("VERIFIED") && unpacked_text.contains("✓ accepted by mona"), "{unpacked_text}");

    // A review edited after signing no longer counts: verify says so and fails.
    let reviews = home.join(format!("{run_id}.reviews.jsonl"));
    let kept = std::fs::read_to_string(&reviews).unwrap();
    let lines: Vec<&str> = kept.lines().collect();
    assert_eq!(lines.len(), 1, "the run's review: {kept}");
    let mut envelope: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let payload = String::from_utf8(base64_decode(envelope["payload"].as_str().unwrap())).unwrap().replace("accepted", "rejected");
    envelope["payload"] = serde_json::Value::String(base64_encode(payload.as_bytes()));
    std::fs::write(&reviews, format!("{envelope}\n")).unwrap();
    let edited = proofrig().args(["verify"]).arg(&bundle).arg("--server-key").arg(service.state.join("server.pub")).output().unwrap();
    let text = String::from_utf8_lossy(&edited.stdout).into_owned();
    assert_eq!(edited.status.code(), Some(1), "{text}");
    assert!(text.contains("✗ a review that does not count"), "{text}");

    // A receipt that is not the server's (another server key pinned): not trusted.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    proofrig().args(["keygen", "--out"]).arg(&other).args(["--name", "other"]).output().unwrap();
    let pubkey = std::fs::read_dir(&other).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "pub")).unwrap();
    let wrong = proofrig().args(["verify"]).arg(&bundle).arg("--server-key").arg(&pubkey).output().unwrap();
    let text = String::from_utf8_lossy(&wrong.stdout).into_owned();
    assert_eq!(wrong.status.code(), Some(1), "{text}");
    assert!(text.contains("signature does not hold"), "{text}");
}

#[test]
fn a_rig_that_fails_its_health_check_gets_one_power_cycle_then_is_bad_and_recurring_runs_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(&dir.path().join("server"));
    let admin = service.admin_token();
    let tom = service.minted(&admin, &["user", "add", "tom", "--role", "technician"]);
    let tess = service.minted(&admin, &["user", "add", "tess", "--role", "tester"]);
    let rigs = dir.path().join("rigs");
    std::fs::create_dir_all(&rigs).unwrap();
    std::fs::write(rigs.join("bench-3.yaml"), desk_rig("bench-3")).unwrap();
    let (_labhost, _) = labhost(&service, &admin, dir.path(), &rigs);
    until("the rig online", Duration::from_secs(60), || {
        let text = service.ok(&tom, &["rigs"]);
        text.contains("idle").then_some(text)
    });

    // Maintenance and back, each with its reason.
    service.ok(&tom, &["rig-state", "bench-3", "maintenance", "--reason", "re-cabling the console"]);
    let rigs_now = service.ok(&tom, &["rigs"]);
    assert!(rigs_now.contains("maintenance") && rigs_now.contains("re-cabling"), "{rigs_now}");
    let refused = service.run(&tess, &["rig-state", "bench-3", "idle", "--reason", "mine now"]);
    assert_eq!(refused.status.code(), Some(1), "a tester may not change a rig's state");
    service.ok(&tom, &["rig-state", "bench-3", "idle", "--reason", "cable fixed"]);

    // A check that cannot pass on this rig (no device evidence: INCONCLUSIVE), a power
    // cycle that cannot help (the rig has no PDU), a second check: the rig is bad.
    let check = dir.path().join("health.yaml");
    std::fs::write(&check, no_device_plan("health", "TC_HEALTH")).unwrap();
    let set = service.ok(&tom, &["health", "bench-3", "--plan", check.to_str().unwrap(), "--every-minutes", "60"]);
    assert!(set.contains("health check health.yaml every 60 min"), "{set}");
    let bad = until("the rig bad", Duration::from_secs(120), || {
        let text = service.ok(&tom, &["rigs"]);
        text.contains("bad").then_some(text)
    });
    assert!(bad.contains("power cycle did not help"), "{bad}");
    let health = service.ok(&tom, &["health", "bench-3"]);
    assert!(health.contains("Bad"), "{health}");
    let jobs: serde_json::Value = serde_json::from_str(&service.ok(&tom, &["queue", "--json"])).unwrap();
    let by_health: Vec<&serde_json::Value> = jobs.as_array().unwrap().iter().filter(|j| j["submitted_by"] == "health:bench-3").collect();
    assert_eq!(by_health.len(), 3, "check, repair, check: {jobs}");
    assert_eq!(by_health[1]["plans"][0], "repair-power-cycle.yaml");

    // Recurring runs: made with submit --cron, listed, removed.
    let plan = dir.path().join("nightly.yaml");
    std::fs::write(&plan, no_device_plan("nightly", "TC_NIGHTLY")).unwrap();
    let made = service.ok(&tess, &["submit", plan.to_str().unwrap(), "--rig", "bench-3", "--cron", "30 2 * * *", "--tz", "Europe/Berlin"]);
    assert!(made.contains("schedule 1 made"), "{made}");
    let listed = service.ok(&tess, &["schedules"]);
    assert!(listed.contains("30 2 * * * (Europe/Berlin)") && listed.contains("nightly.yaml"), "{listed}");
    service.ok(&tess, &["unschedule", "1"]);
    let listed = service.ok(&tess, &["schedules", "--json"]);
    assert!(!listed.contains("nightly.yaml"), "{listed}");

    // Cut off: a disabled person's token, a revoked lab host's rigs, a token logged out.
    service.ok(&admin, &["user", "disable", "tess"]);
    let refused = service.run(&tess, &["queue"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("disabled"), "{}", String::from_utf8_lossy(&refused.stderr));
    service.ok(&admin, &["labhost", "revoke", "lab-a"]);
    let rigs_now = service.ok(&tom, &["rigs"]);
    assert!(rigs_now.contains("offline") && rigs_now.contains("revoked"), "{rigs_now}");
    service.ok(&tom, &["logout"]);
    assert_eq!(service.run(&tom, &["rigs"]).status.code(), Some(1), "a logged-out token is refused");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
