//! The dashboard in a real browser: Debian's Chromium, driven over WebDriver by its
//! chromedriver, against `proofrig serve` with a lab host serving the simulated lab.
//! A tester logs in, finds a FAIL run by filter, opens its evidence, reads the
//! excerpt, opens the compliance matrix, is refused a sign-off; a manager signs it
//! off. Each page is saved as a screenshot under the test's target directory.

mod service;

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use proofrig_testpeers::chromium::Chromedriver;

use service::{proofrig, until, Running, Service};

/// Screenshots of each page, kept as test artefacts.
fn artefacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot of {name}");
    std::fs::write(artefacts().join(format!("{name}.png")), png).unwrap();
}

/// Wait (up to 10 s) until the browser is on a page whose path is `path`: a click
/// that submits a form returns before the next page has loaded.
async fn wait_for_path(browser: &Client, path: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let at = browser.current_url().await.unwrap().path().to_string();
        if at == path || started.elapsed() > Duration::from_secs(10) {
            return at;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_in(browser: &Client, url: &str, user: &str, password: &str) {
    browser.goto(&format!("{url}/runs")).await.unwrap();
    assert!(browser.current_url().await.unwrap().path().starts_with("/login"), "a page without a session goes to the login");
    browser.find(Locator::Css("input[name=user]")).await.unwrap().send_keys(user).await.unwrap();
    browser.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    browser.find(Locator::Css("form[action='/login'] button")).await.unwrap().click().await.unwrap();
    let at = wait_for_path(browser, "/runs").await;
    assert_eq!(at, "/runs", "logging in as {user} ended at {at}: {}", browser.source().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tester_finds_a_fail_by_filter_reads_its_evidence_and_a_manager_signs_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start_with(&dir.path().join("server"), &["--plain-http"]);
    let admin = std::fs::read_to_string(service.state.join("bootstrap-admin.token")).unwrap().trim().to_string();
    let tess =
        service.minted_with(&admin, &["user", "add", "tess", "--role", "tester", "--password-stdin"], Some("tess's long password\n"));
    service.minted_with(&admin, &["user", "add", "mona", "--role", "manager", "--password-stdin"], Some("mona's long password\n"));
    let enroll = service.minted(&admin, &["labhost", "token", "lab-a"]);
    let token_file = dir.path().join("enroll.token");
    std::fs::write(&token_file, enroll).unwrap();
    let _labhost = Running(
        proofrig()
            .args(["labhost", "run", "--server", &service.url, "--simlab", "--state-dir"])
            .arg(dir.path().join("labhost"))
            .arg("--enroll-file")
            .arg(&token_file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    until("the simulated lab online", Duration::from_secs(60), || {
        let rigs = service.ok(&tess, &["rigs"]);
        rigs.contains("simlab").then_some(rigs)
    });
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testplans/ssh-algorithms.yaml");
    service.ok(&tess, &["submit", plan, "--rig", "simlab"]);
    let run_id = until("the run done", Duration::from_secs(240), || {
        let jobs: serde_json::Value = serde_json::from_str(&service.ok(&tess, &["queue", "--json"])).unwrap();
        (jobs[0]["state"] == "done").then(|| jobs[0]["run_id"].as_str().unwrap().to_string())
    });

    let driver = Chromedriver::start();
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await
        .expect("a headless Chromium session");
    let url = service.url.clone();

    // The tester: login, the FAIL filter, the run, its evidence.
    log_in(&browser, &url, "tess", "tess's long password").await;
    shoot(&browser, "runs").await;
    let filter = browser.form(Locator::Css("form.filters")).await.unwrap();
    filter.set_by_name("verdict", "FAIL").await.unwrap();
    filter.submit().await.unwrap();
    wait_for_path(&browser, "/runs").await;
    assert!(browser.current_url().await.unwrap().query().unwrap_or_default().contains("verdict=FAIL"));
    let listed = browser.source().await.unwrap();
    assert!(listed.contains("ru2 (proofrig simulated SIM-RU-4400 3.0.7)"), "the devices and their firmware are listed: {listed}");
    shoot(&browser, "runs-fail").await;
    browser.find(Locator::LinkText(&run_id)).await.expect("the FAIL run is listed under the filter").click().await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().path(), format!("/runs/{run_id}"));
    let page = browser.source().await.unwrap();
    assert!(page.contains("TS 33.117") && page.contains("v-FAIL"), "the run's cases with their clause and verdicts");
    let excerpts: Vec<String> = {
        let mut texts = Vec::new();
        for cell in browser.find_all(Locator::Css("td pre")).await.unwrap() {
            texts.push(cell.text().await.unwrap());
        }
        texts
    };
    assert!(excerpts.iter().any(|t| !t.trim().is_empty()), "the evidence excerpts are shown: {excerpts:?}");
    shoot(&browser, "run").await;
    assert!(browser.find(Locator::Css("form[action$='/review']")).await.is_err(), "no sign-off form for a tester");

    // The transcript, searched: the SSH banners the devices sent, line by line.
    let search = browser.form(Locator::Css(&format!("form[action='/runs/{run_id}']"))).await.unwrap();
    search.set_by_name("q", "SSH-2.0").await.unwrap();
    search.submit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = browser.source().await.unwrap();
    assert!(found.contains("line(s) contain “SSH-2.0”") && found.contains("device → us"), "{found}");
    shoot(&browser, "run-search").await;
    browser.goto(&format!("{url}/runs/{run_id}")).await.unwrap();

    // Refused on the server even when the form is made by hand.
    let csrf = browser.find(Locator::Css("input[name=csrf]")).await.unwrap().attr("value").await.unwrap().unwrap();
    let forge = "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; \
                 for (const [k, v] of [['csrf', arguments[1]], ['decision', 'accepted']]) { const i = document.createElement('input'); \
                 i.name = k; i.value = v; f.appendChild(i); } document.body.appendChild(f); f.submit();";
    browser.execute(forge, vec![format!("/runs/{run_id}/review").into(), csrf.into()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = browser.source().await.unwrap();
    assert!(refused.contains("Not for your role") && refused.contains("review and sign off a run"), "{refused}");
    shoot(&browser, "sign-off-refused").await;

    // The compliance matrix of the simulated products.
    browser.goto(&format!("{url}/matrix")).await.unwrap();
    let matrix = browser.source().await.unwrap();
    assert!(matrix.contains("TC_FAILED_LOGIN_ATTEMPTS") && matrix.contains("never run"), "the library, with what is missing");
    shoot(&browser, "matrix").await;

    // Trends: per plan by day, per clause by firmware, as bars drawn on the server.
    browser.goto(&format!("{url}/trends")).await.unwrap();
    let trends = browser.source().await.unwrap();
    assert!(trends.contains("ssh-algorithms") && trends.contains("3.0.7") && trends.contains("4.2.1"), "{trends}");
    let bars = browser.find_all(Locator::Css("svg[role=img]")).await.unwrap();
    let mut labels = Vec::new();
    for bar in &bars {
        labels.push(bar.attr("aria-label").await.unwrap().unwrap_or_default());
    }
    assert!(labels.iter().any(|l| !l.contains(" 0 FAIL")), "a FAIL is drawn: {labels:?}");
    assert!(labels.iter().any(|l| !l.starts_with("0 PASS")), "a PASS is drawn: {labels:?}");
    shoot(&browser, "trends").await;

    // The manager signs it off.
    browser.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();
    assert_eq!(wait_for_path(&browser, "/login").await, "/login", "logged out");
    log_in(&browser, &url, "mona", "mona's long password").await;
    browser.goto(&format!("{url}/runs/{run_id}")).await.unwrap();
    let review = browser.form(Locator::Css("form[action$='/review']")).await.unwrap();
    review.set_by_name("decision", "rejected").await.unwrap();
    review.set_by_name("comment", "weak ciphers offered on ru2").await.unwrap();
    review.submit().await.unwrap();
    wait_for_path(&browser, &format!("/runs/{run_id}")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = browser.source().await.unwrap();
    assert!(page.contains("<strong>rejected</strong> by mona") && page.contains("weak ciphers offered on ru2"), "the review is shown");
    shoot(&browser, "signed-off").await;
    browser.close().await.unwrap();
}
