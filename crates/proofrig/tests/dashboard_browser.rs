//! The dashboard in a real browser: Debian's Chromium, driven over WebDriver by its
//! chromedriver, against `proofrig serve` with a lab host serving the simulated lab.
//! A tester logs in, finds a FAIL run by filter, opens its evidence, reads the
//! excerpt, opens the compliance matrix, is refused a sign-off; a manager signs it
//! off. A technician reserves a rig, cycles a device's power, logs in on another's
//! console live, and sees the console close when the reservation goes. Each page is
//! saved as a screenshot under the test's target directory.

mod service;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use proofrig_testpeers::chromium::Chromedriver;

use service::{labhost_serving, proofrig, until, Running, Serves, Service};

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

/// The page's source once it holds `needle` (a submitted form's answer has loaded), or
/// after 10 s whatever it is, for the caller's assertion to show.
async fn source_once_it_shows(browser: &Client, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let page = browser.source().await.unwrap();
        if page.contains(needle) || started.elapsed() > Duration::from_secs(10) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium session through `driver`.
async fn headless(driver: &Chromedriver) -> Client {
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await
        .expect("a headless Chromium session")
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
    let admin = service.admin_token();
    let tess =
        service.minted_with(&admin, &["user", "add", "tess", "--role", "tester", "--password-stdin"], Some("tess's long password\n"));
    service.minted_with(&admin, &["user", "add", "mona", "--role", "manager", "--password-stdin"], Some("mona's long password\n"));
    let _labhost = labhost_serving(&service, &admin, dir.path(), Serves::Simlab);
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
    let browser = headless(&driver).await;
    let url = service.url.clone();

    // The tester: login, the FAIL filter, the run, its evidence.
    log_in(&browser, &url, "tess", "tess's long password").await;
    shoot(&browser, "runs").await;
    let filter = browser.form(Locator::Css("form.filters")).await.unwrap();
    filter.set_by_name("verdict", "FAIL").await.unwrap();
    filter.submit().await.unwrap();
    // The page is /runs before and after: wait for the filtered one's address.
    let started = Instant::now();
    while !browser.current_url().await.unwrap().query().unwrap_or_default().contains("verdict=FAIL")
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.current_url().await.unwrap().path(), "/runs");
    assert!(browser.current_url().await.unwrap().query().unwrap_or_default().contains("verdict=FAIL"));
    let listed = browser.source().await.unwrap();
    assert!(
        listed.contains("ru2 (proofrig simulated SIM-RU-4400 3.0.7; reports: VENDOR=\"proofrig simulated\" MODEL=\"SIM-RU-4400\""),
        "the devices with their firmware as declared and as they report it are listed: {listed}"
    );
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
    let found = source_once_it_shows(&browser, "line(s) contain").await;
    assert!(found.contains("line(s) contain “SSH-2.0”") && found.contains("device → us"), "{found}");
    shoot(&browser, "run-search").await;
    browser.goto(&format!("{url}/runs/{run_id}")).await.unwrap();

    // Refused on the server even when the form is made by hand.
    let csrf = browser.find(Locator::Css("input[name=csrf]")).await.unwrap().attr("value").await.unwrap().unwrap();
    let forge = "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; \
                 for (const [k, v] of [['csrf', arguments[1]], ['decision', 'accepted']]) { const i = document.createElement('input'); \
                 i.name = k; i.value = v; f.appendChild(i); } document.body.appendChild(f); f.submit();";
    browser.execute(forge, vec![format!("/runs/{run_id}/review").into(), csrf.into()]).await.unwrap();
    let refused = source_once_it_shows(&browser, "Not for your role").await;
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
    let page = source_once_it_shows(&browser, "by mona").await;
    assert!(page.contains("<strong>rejected</strong> by mona") && page.contains("weak ciphers offered on ru2"), "the review is shown");
    shoot(&browser, "signed-off").await;

    // And the firmware as the compliance matrix shows it: one signed statement about
    // every run behind its verdicts, which travels with each bundle.
    browser.goto(&format!("{url}/matrix")).await.unwrap();
    let sign = browser.form(Locator::Css("form[action='/matrix/review']")).await.unwrap();
    sign.set_by_name("decision", "accepted").await.unwrap();
    sign.set_by_name("comment", "firmware reviewed for the NESAS report").await.unwrap();
    sign.submit().await.unwrap();
    let matrix = source_once_it_shows(&browser, "by mona").await;
    assert!(matrix.contains("<strong>accepted</strong> by mona") && matrix.contains("covering 1 run(s)"), "{matrix}");
    shoot(&browser, "matrix-signed-off").await;
    browser.close().await.unwrap();

    let home = dir.path().join("home");
    service.ok(&tess, &["fetch", &run_id, "--out", home.to_str().unwrap()]);
    let verify =
        proofrig().arg("verify").arg(home.join(&run_id)).arg("--server-key").arg(service.state.join("server.pub")).output().unwrap();
    let text = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(verify.status.success(), "{text}");
    assert!(text.contains("✓ rejected by mona"), "the run's review: {text}");
    assert!(text.contains("✓ accepted the compliance matrix of") && text.contains("this one among them"), "the firmware's: {text}");
}

/// The text of the element `css`, or "" when it is not there (yet).
async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Wait (up to `limit`) until the console's screen shows `needle`.
async fn screen_shows(browser: &Client, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let screen = text_of(browser, "#console-screen").await;
        if screen.contains(needle) {
            return screen;
        }
        let status = text_of(browser, "#console-status").await;
        assert!(started.elapsed() < limit, "the console did not show {needle:?} within {limit:?}; status: {status}; screen:\n{screen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn console_state(browser: &Client) -> String {
    match browser.find(Locator::Css("#console-status")).await {
        Ok(e) => e.attr("data-state").await.unwrap().unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Type a line on the console page (its line field; the script sends it with a carriage return).
async fn type_line(browser: &Client, line: &str) {
    browser.find(Locator::Css("#console-input")).await.unwrap().send_keys(line).await.unwrap();
    browser.find(Locator::Css("#console-line button")).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_cycles_power_works_a_live_console_and_it_closes_when_the_reservation_goes() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start_with(&dir.path().join("server"), &["--plain-http"]);
    let admin = service.admin_token();
    let tom =
        service.minted_with(&admin, &["user", "add", "tom", "--role", "technician", "--password-stdin"], Some("tom's long password\n"));
    let (_labhost, labstate) = labhost_serving(&service, &admin, dir.path(), Serves::Simlab);
    until("the simulated lab online", Duration::from_secs(60), || {
        let rigs = service.ok(&tom, &["rigs"]);
        rigs.contains("simlab").then_some(rigs)
    });
    let root_password = std::fs::read_to_string(labstate.join("simlab/secrets/ru2-root")).unwrap().trim().to_string();

    let driver = Chromedriver::start();
    let browser = headless(&driver).await;
    let url = service.url.clone();
    log_in(&browser, &url, "tom", "tom's long password").await;

    // Not holding the rig: neither power nor console is offered, and the server
    // refuses the console even when asked directly.
    browser.goto(&format!("{url}/rigs/simlab")).await.unwrap();
    let page = browser.source().await.unwrap();
    assert!(page.contains("ru2") && !page.contains("open console"), "{page}");
    browser.goto(&format!("{url}/rigs/simlab/console/ru2")).await.unwrap();
    let started = Instant::now();
    while console_state(&browser).await != "closed" {
        assert!(started.elapsed() < Duration::from_secs(10), "a console without the reservation did not close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = text_of(&browser, "#console-status").await;
    assert!(refused.contains("not reserved"), "{refused}");
    shoot(&browser, "console-refused").await;

    // Reserve the rig on the rigs page.
    browser.goto(&format!("{url}/rigs")).await.unwrap();
    browser.find(Locator::Css("form[action='/rigs/simlab/reserve'] button")).await.unwrap().click().await.unwrap();
    wait_for_path(&browser, "/rigs").await;
    browser.goto(&format!("{url}/rigs/simlab")).await.unwrap();
    let page = browser.source().await.unwrap();
    assert!(page.contains("You hold this rig") && page.contains("open console"), "{page}");

    // A tester's run for the rig waits while tom holds it; the runs page, open in a
    // tab of its own, follows it live (no reload) until it is done.
    let tess = service.minted(&admin, &["user", "add", "tess", "--role", "tester"]);
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testplans/unambiguous-accounts.yaml");
    service.ok(&tess, &["submit", plan, "--rig", "simlab"]);
    let bench_tab = browser.window().await.unwrap();
    let runs_tab = browser.new_window(true).await.unwrap().handle;
    browser.switch_to_window(runs_tab.clone()).await.unwrap();
    browser.goto(&format!("{url}/runs")).await.unwrap();
    assert_eq!(
        browser.find(Locator::Css("#runs-list")).await.unwrap().attr("data-live").await.unwrap().as_deref(),
        Some("true"),
        "a queued run makes the list follow it"
    );
    assert!(text_of(&browser, "#runs-list").await.contains("queued"));
    browser.switch_to_window(bench_tab).await.unwrap();

    // Cycle ru1's power: through the lab host and the PDU, listed with its outcome.
    let cycle = "form[action='/rigs/simlab/power']:has(input[value='ru1']) button[value='cycle']";
    browser.find(Locator::Css(cycle)).await.unwrap().click().await.unwrap();
    wait_for_path(&browser, "/rigs/simlab").await;
    let bench = until_page(&browser, "power cycle", Duration::from_secs(30)).await;
    assert!(bench.contains("done: ru1: power on"), "{bench}");
    shoot(&browser, "rig-at-bench").await;

    // ru2's console, live: log in as root and run a command.
    browser.find(Locator::Css("#console-ru2")).await.unwrap().click().await.unwrap();
    assert_eq!(wait_for_path(&browser, "/rigs/simlab/console/ru2").await, "/rigs/simlab/console/ru2");
    let started = Instant::now();
    while console_state(&browser).await != "open" {
        let status = text_of(&browser, "#console-status").await;
        assert!(started.elapsed() < Duration::from_secs(30), "the console did not open: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    type_line(&browser, "").await;
    screen_shows(&browser, "login:", Duration::from_secs(20)).await;
    type_line(&browser, "root").await;
    screen_shows(&browser, "Password:", Duration::from_secs(10)).await;
    type_line(&browser, &root_password).await;
    type_line(&browser, "id").await;
    let screen = screen_shows(&browser, "uid=0(root)", Duration::from_secs(20)).await;
    assert!(!screen.contains(&root_password), "the password is not echoed: {screen}");
    shoot(&browser, "console").await;

    // The reservation goes: the console closes within a second, saying why.
    let release = Instant::now();
    service.ok(&tom, &["release", "simlab"]);
    let released = release.elapsed();
    while console_state(&browser).await != "closed" {
        assert!(release.elapsed() < Duration::from_secs(10), "the console stayed open after the release");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed_after = release.elapsed().saturating_sub(released);
    let status = text_of(&browser, "#console-status").await;
    // Why: the reservation ended, or (when the waiting run's assignment reached the
    // lab host first) that run took the rig.
    assert!(status.contains("reservation of rig simlab ended") || status.contains("a job took the rig"), "{status}");
    assert!(closed_after < Duration::from_secs(1), "the console closed {closed_after:?} after the reservation ended");
    shoot(&browser, "console-closed").await;

    // The rig free, the tester's run goes, and the runs tab shows it done without a reload.
    browser.switch_to_window(runs_tab).await.unwrap();
    let started = Instant::now();
    loop {
        let list = text_of(&browser, "#runs-list").await;
        if list.contains("done") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "the runs page did not follow the run to its end: {list}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(browser.current_url().await.unwrap().path(), "/runs");
    assert!(browser.find(Locator::Css("#runs-list[data-live]")).await.is_err(), "nothing on its way: the list stops refreshing");
    shoot(&browser, "runs-followed").await;

    // Recorded on the lab host like `proofrig console`: the output, the password only as its length.
    let sessions = labstate.join("sessions");
    let transcript = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("ru2-console"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .expect("the console session's transcript");
    assert!(transcript.contains("console opened by tom") && transcript.contains("console closed"), "{transcript}");
    assert!(!transcript.contains(&root_password), "the typed password is not in the transcript");
    // And on the rig's page: who, what, the outcome and why it closed.
    browser.goto(&format!("{url}/rigs/simlab")).await.unwrap();
    let page = browser.source().await.unwrap();
    assert!(
        page.contains("console") && (page.contains("the reservation of rig simlab ended") || page.contains("a job took the rig")),
        "{page}"
    );
    browser.close().await.unwrap();
}

/// Reload the page until it contains `needle`; the page.
async fn until_page(browser: &Client, needle: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let page = browser.source().await.unwrap();
        if page.contains(needle) {
            return page;
        }
        assert!(started.elapsed() < limit, "the page never showed {needle:?}: {page}");
        tokio::time::sleep(Duration::from_millis(250)).await;
        browser.refresh().await.unwrap();
    }
}

/// More consoles open at once than the six connections a browser keeps to one server
/// for plain HTTP: each console is a WebSocket, which that limit does not count, so
/// every console opens, the last one still answers, and the pages still load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_consoles_open_at_once_leave_each_other_and_the_pages_working() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start_with(&dir.path().join("server"), &["--plain-http"]);
    let admin = service.admin_token();
    let tom =
        service.minted_with(&admin, &["user", "add", "tom", "--role", "technician", "--password-stdin"], Some("tom's long password\n"));
    // A second simulated lab beside the lab host's own, its rig renamed: eight devices on two rigs.
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let _second_lab = Running(
        proofrig().arg("sim").arg("--rig-out").arg(second.join("simlab.yaml")).stdout(std::process::Stdio::null()).spawn().unwrap(),
    );
    let rig = until("the second simulated lab's rig", Duration::from_secs(60), || std::fs::read_to_string(second.join("simlab.yaml")).ok());
    let rigs = dir.path().join("rigs");
    std::fs::create_dir_all(&rigs).unwrap();
    let renamed = rig.replace("rig: simlab\n", "rig: simlab-b\n").replace("secrets/", &format!("{}/", second.join("secrets").display()));
    assert!(renamed.contains("rig: simlab-b"), "{renamed}");
    std::fs::write(rigs.join("simlab-b.yaml"), renamed).unwrap();
    let _labhost = labhost_serving(&service, &admin, dir.path(), Serves::SimlabAnd(&rigs));
    until("both simulated labs online", Duration::from_secs(60), || {
        let rigs = service.ok(&tom, &["rigs"]);
        (rigs.contains("simlab-b") && rigs.matches("simlab").count() >= 2).then_some(rigs)
    });
    service.ok(&tom, &["reserve", "simlab"]);
    service.ok(&tom, &["reserve", "simlab-b"]);

    let driver = Chromedriver::start();
    let browser = headless(&driver).await;
    // A page that cannot load (no connection free) fails the test instead of hanging it.
    browser.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(None, Some(Duration::from_secs(15)), None)).await.unwrap();
    let url = service.url.clone();
    log_in(&browser, &url, "tom", "tom's long password").await;
    let main = browser.window().await.unwrap();

    let mut consoles = Vec::new();
    for rig in ["simlab", "simlab-b"] {
        for device in ["ru1", "ru2", "core1", "core2"] {
            let tab = browser.new_window(true).await.unwrap().handle;
            browser.switch_to_window(tab.clone()).await.unwrap();
            browser.goto(&format!("{url}/rigs/{rig}/console/{device}")).await.unwrap();
            consoles.push((format!("{device} on {rig}"), tab));
        }
    }
    for (name, tab) in &consoles {
        browser.switch_to_window(tab.clone()).await.unwrap();
        let started = Instant::now();
        while console_state(&browser).await != "open" {
            let status = text_of(&browser, "#console-status").await;
            assert!(started.elapsed() < Duration::from_secs(30), "the console of {name} did not open: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The last console answers what is typed, and the first too.
    for (name, tab) in [consoles.last().unwrap(), consoles.first().unwrap()] {
        browser.switch_to_window(tab.clone()).await.unwrap();
        type_line(&browser, "").await;
        let screen = screen_shows(&browser, "login:", Duration::from_secs(20)).await;
        assert!(!screen.is_empty(), "{name}");
    }
    shoot(&browser, "eighth-console").await;
    // With eight consoles open, the pages load.
    browser.switch_to_window(main).await.unwrap();
    browser.goto(&format!("{url}/rigs/simlab-b")).await.unwrap();
    let page = browser.source().await.unwrap();
    assert!(page.contains("You hold this rig") && page.contains("console"), "{page}");
    browser.goto(&format!("{url}/runs")).await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().path(), "/runs");
    browser.close().await.unwrap();
}
