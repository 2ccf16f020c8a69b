//! The command line over the lab server, as people run it: the real `proofrig`
//! binary against a real server over HTTPS on 127.0.0.1, trusting only the
//! fingerprint the server reported (`PROOFRIG_FINGERPRINT`).
//!
//! Each test starts a `proofrig_server::http::Server` in process (state in a temporary
//! directory) and drives it only through the binary, with the tokens the binary
//! printed. What the API itself does is tests/api.rs's in crates/server; here it is
//! what a person sees and what the exit code says: the admin adds people, a tester
//! submits and watches the queue, a malformed plan is refused at its line and column,
//! a technician holds and releases a rig, and `fetch` brings a stored bundle home
//! checked byte by byte and verified, or refuses (a wrong pin, a flagged bundle, bytes
//! that are not the listed ones) leaving nothing that looks complete.

use std::path::{Path, PathBuf};
use std::process::Output;

use proofrig_proto::advert::RigSummary;
use proofrig_proto::api::{JobState, JobView, RigSelector, RigView, RunView};
use proofrig_proto::files::BundleFile;
use proofrig_proto::ids::{Attempt, FencingToken, JobId, LabHostId};
use proofrig_proto::labhost::{BundleCheck, UploadChunk, UploadOffer};
use proofrig_server::http::{Server, ServerConfig, SERVER_KEY};
use proofrig_server::inbox::{Progress, Sender};
use proofrig_server::store::{Ctx, NewLabHost};
use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use sha2::{Digest, Sha256};

/// A running server and the directory the test works in.
struct Lab {
    server: Server,
    dir: tempfile::TempDir,
    admin: String,
}

/// What one run of the binary gave.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn of(out: Output) -> Ran {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok(self, what: &str) -> Ran {
        assert_eq!(self.code, 0, "{what}: exit {}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        self
    }

    /// The token line the binary printed (the one just minted).
    fn token(&self, prefix: &str) -> String {
        let line = self.stdout.lines().find(|l| l.starts_with(prefix));
        line.unwrap_or_else(|| panic!("no {prefix} token printed:\n{}", self.stdout)).trim().to_string()
    }
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::Builder::new().prefix("proofrig-service-cli-").tempdir().unwrap();
        let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("server"));
        let server = Server::start(config).await.unwrap();
        let admin = server.bootstrap_token().expect("a fresh store bootstraps an admin").to_string();
        Lab { server, dir, admin }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `proofrig ARGS` as the holder of `token`, with the server and its pin from
    /// the environment, as a person would set them.
    async fn proofrig(&self, token: &str, args: &[&str]) -> Ran {
        self.proofrig_with(token, args, None).await
    }

    async fn proofrig_with(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_proofrig"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("PROOFRIG_SERVER", self.server.url())
            .env("PROOFRIG_FINGERPRINT", self.server.fingerprint().expect("HTTPS by default"))
            .env("PROOFRIG_TOKEN", token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        {
            use tokio::io::AsyncWriteExt;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).await.unwrap();
            }
        }
        Ran::of(child.wait_with_output().await.unwrap())
    }

    /// `user add NAME --role ROLE` as the admin; the token printed for them.
    async fn add_user(&self, name: &str, role: &str) -> String {
        let ran = self.proofrig(&self.admin, &["user", "add", name, "--role", role]).await.ok("user add");
        assert!(ran.stdout.contains(&format!("user {name} added as {role}")), "{}", ran.stdout);
        assert!(ran.stdout.contains("shown this once"), "{}", ran.stdout);
        ran.token("prt_")
    }

    /// A lab host `lab-a` with rig `bench-1` (a radio unit tagged lte) online,
    /// enrolled and advertised straight in the store: lab hosts do not use this CLI.
    async fn with_rig(&self) {
        let now = self.server.clock().now();
        let (store, id) = (self.server.store(), LabHostId("lab-a".into()));
        let host = NewLabHost {
            id: id.clone(),
            name: "lab-a".into(),
            public_key_pem: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n".into(),
        };
        store.enroll_labhost(&host, &Ctx::new("admin", "127.0.0.1:1", now)).await.unwrap();
        let rig = RigSummary {
            rig: "bench-1".into(),
            sha256: "0".repeat(64),
            devices: ["ru1".to_string()].into(),
            roles: ["radio-unit".to_string()].into(),
            tags: ["lte".to_string()].into(),
        };
        let ctx = Ctx::new("lab-a", "127.0.0.1:1", now);
        store.advertise(&id, &[rig], &ctx).await.unwrap();
        store.heartbeat(&id, &[], &ctx).await.unwrap();
    }

    /// Seal a run of a no-device plan with the lab host's key (`proofrig run`), as a
    /// lab host would; its bundle directory.
    async fn seal_run(&self, name: &str) -> PathBuf {
        let keys = self.path("keys");
        if !keys.join("lab.key").exists() {
            self.proofrig("", &["keygen", "--out", "keys"]).await.ok("keygen");
        }
        std::fs::write(self.path(&format!("{name}.yaml")), no_device_plan(name, "TC_FETCH")).unwrap();
        std::fs::write(self.path("desk.yaml"), desk_rig("bench-1")).unwrap();
        let out = self.path(&format!("sealed-{name}"));
        let plan = format!("{name}.yaml");
        let ran = self
            .proofrig("", &["run", &plan, "--rig", "desk.yaml", "--key", "keys/lab.key", "--out", &format!("sealed-{name}"), "-q"])
            .await;
        assert_eq!(ran.code, 2, "a no-device case is INCONCLUSIVE:\n{}\n{}", ran.stdout, ran.stderr);
        let bundle = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
        assert!(bundle.join("manifest.json").is_file(), "{}", bundle.display());
        bundle
    }

    /// Upload a sealed bundle into the server's inbox as lab host `lab-a` (its key:
    /// keys/lab.pub): offered, then every file in one chunk. The run id and the check.
    fn upload(&self, bundle: &Path, job: u64) -> (String, BundleCheck) {
        let run_id = bundle.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        for entry in proofrig_evidence::bundle::list_files(bundle).unwrap() {
            let bytes = std::fs::read(bundle.join(&entry.path)).unwrap();
            files.push(BundleFile { path: entry.path, len: bytes.len() as u64, sha256: hex::encode(Sha256::digest(&bytes)) });
        }
        let (job, attempt, fencing) = (JobId(job), Attempt(1), FencingToken(job));
        let offer = UploadOffer { job, attempt, fencing, run_id: run_id.clone(), files: files.clone() };
        let inbox = self.server.inbox();
        inbox.offer(&offer).unwrap();
        let lab_key = proofrig_evidence::signing::load_verifying_key(&self.path("keys/lab.pub")).unwrap();
        let server_key = proofrig_evidence::signing::load_signing_key(&self.path("server").join(SERVER_KEY)).unwrap();
        let from = Sender { lab_host: "lab-a", key: &lab_key, received_at: "2026-12-05T09:00:00Z", live: None, witnessed: &[] };
        let mut check = None;
        for file in &files {
            let data = std::fs::read(bundle.join(&file.path)).unwrap();
            let chunk =
                UploadChunk { job, attempt, fencing, path: file.path.clone(), offset: 0, len: file.len, sha256: file.sha256.clone(), data };
            if let Progress::Stored(stored) = inbox.chunk(&chunk, &from, &server_key).unwrap() {
                check = Some(stored.check);
            }
        }
        (run_id, check.expect("the last chunk stores the bundle"))
    }
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let entries = proofrig_evidence::bundle::list_files(dir).unwrap();
    entries.into_iter().map(|e| (e.path.clone(), std::fs::read(dir.join(&e.path)).unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_people_a_tester_submits_and_cancels_and_a_malformed_plan_is_refused_at_its_line_and_column() {
    let lab = Lab::start().await;
    lab.with_rig().await;
    let tina = lab.add_user("tina", "technician").await;
    let ran = lab
        .proofrig_with(&lab.admin, &["user", "add", "tess", "--role", "tester", "--password-stdin"], Some("correct horse battery\n"))
        .await;
    let tess = ran.ok("user add with a password").token("prt_");
    assert_ne!(tina, tess);
    assert_eq!(lab.server.store().users().await.unwrap().len(), 3);

    // A tester may not add people: the server's own message, exit 1, nobody added.
    let ran = lab.proofrig(&tess, &["user", "add", "eve", "--role", "admin"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("server refused adding user eve: tess is a tester and may not add a user (POST /api/users); that takes the role admin (forbidden, HTTP 403)"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stdout.contains("prt_") && !ran.stderr.contains(&tess), "no token is printed but the one minted");
    assert_eq!(lab.server.store().users().await.unwrap().len(), 3);
    // Nor mint an enrollment token; the admin may, and it is shown once.
    let ran = lab.proofrig(&tess, &["labhost", "token", "lab-b"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("(forbidden, HTTP 403)"), "{}", ran.stderr);
    let ran = lab.proofrig(&lab.admin, &["labhost", "token", "lab-b", "--minutes", "10"]).await.ok("labhost token");
    assert!(ran.token("pre_").len() > 60 && ran.stdout.contains("shown this once"), "{}", ran.stdout);
    // A second token for tess works as the first.
    let again = lab.proofrig(&lab.admin, &["user", "token", "tess", "--days", "1"]).await.ok("user token").token("prt_");

    // The tester submits the library's port-scan plan against a role selector, not
    // before 2099: the server's scheduler (a pass every second) leaves it queued.
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testplans/open-ports.yaml");
    let args = ["submit", plan, "--role", "radio-unit", "--tag", "lte", "--priority", "70", "--at", "2099-01-01T00:00:00Z"];
    let ran = lab.proofrig(&tess, &args).await.ok("submit");
    let job: u64 = ran
        .stdout
        .strip_prefix("job ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(ran.stdout.contains("open-ports.yaml on a rig with roles [radio-unit] and tags [lte], priority 70"), "{}", ran.stdout);
    assert!(!ran.stdout.contains("warning"), "bench-1 matches: {}", ran.stdout);
    // One no rig could run is queued with a warning, said at once.
    let ran =
        lab.proofrig(&again, &["submit", plan, "--rig", "bench-404", "--at", "2030-01-01T10:00:00+01:00"]).await.ok("submit to no rig");
    assert!(ran.stdout.contains("warning:") && ran.stdout.contains("bench-404"), "{}", ran.stdout);

    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let ran = lab.proofrig(&tess, &["queue"]).await.ok("queue");
    let row =
        ran.stdout.lines().find(|l| l.starts_with(&format!("{job} "))).unwrap_or_else(|| panic!("job {job} not listed:\n{}", ran.stdout));
    for cell in ["queued", "70", "a rig with roles [radio-unit] and tags [lte]", "open-ports.yaml", "tess at 20"] {
        assert!(row.contains(cell), "{cell} not in {row}");
    }
    let ran = lab.proofrig(&tina, &["queue", "--json"]).await.ok("queue --json");
    let jobs: Vec<JobView> = serde_json::from_str(&ran.stdout).unwrap();
    let view = jobs.iter().find(|j| j.job.0 == job).unwrap();
    assert_eq!(view.target, RigSelector::Match { roles: ["radio-unit".to_string()].into(), tags: ["lte".to_string()].into() });
    assert_eq!(
        (view.state, view.submitted_by.as_str(), view.plans.as_slice()),
        (JobState::Queued, "tess", &["open-ports.yaml".to_string()][..])
    );

    // A malformed plan: the server's file:line:column, as `plan check` places it; exit 3; nothing queued.
    let mut broken = std::fs::read(plan).unwrap();
    broken.extend_from_slice(b"cases_extra: 1\n");
    std::fs::write(lab.path("open-ports.yaml"), &broken).unwrap();
    let expected = match proofrig_plan::Plan::from_bytes("open-ports.yaml", &broken) {
        Err(proofrig_plan::PlanError::Invalid(e)) => e,
        other => panic!("the broken plan must not parse: {:?}", other.map(|p| p.spec.plan)),
    };
    let ran = lab.proofrig(&tess, &["submit", "open-ports.yaml", "--role", "radio-unit"]).await;
    assert_eq!(ran.code, 3, "the plan-error exit code:\n{}", ran.stderr);
    let located = format!("open-ports.yaml:{}:{}: ", expected.line, expected.column);
    assert!(
        ran.stderr.contains(&format!("server refused the job (open-ports.yaml on a rig with roles [radio-unit]): {located}")),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains(&expected.message) && ran.stderr.contains("(invalid, HTTP 400)"), "{}", ran.stderr);
    let checked = lab.proofrig("", &["plan", "check", "open-ports.yaml"]).await;
    assert_eq!(checked.code, 3);
    assert!(
        checked.stderr.contains(&format!("{}:{}", expected.line, expected.column)),
        "plan check places it there too: {}",
        checked.stderr
    );
    assert_eq!(lab.server.store().jobs().await.unwrap().len(), 2, "the malformed plan queued nothing");

    // Cancel: the tester's own job, with a reason; the queue shows it.
    let ran = lab.proofrig(&tess, &["cancel", &job.to_string(), "--reason", "wrong tag"]).await.ok("cancel");
    assert!(ran.stdout.contains(&format!("job {job} cancelled (it was queued)")), "{}", ran.stdout);
    let ran = lab.proofrig(&tess, &["queue", "--json"]).await.ok("queue after cancel");
    let jobs: Vec<JobView> = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(jobs.iter().find(|j| j.job.0 == job).unwrap().state, JobState::Cancelled);
    let ran = lab.proofrig(&tess, &["cancel", "999"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("server refused cancelling job 999") && ran.stderr.contains("HTTP 404"), "{}", ran.stderr);
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_reserves_extends_and_releases_a_rig_and_rigs_shows_the_holder() {
    let lab = Lab::start().await;
    lab.with_rig().await;
    let tina = lab.add_user("tina", "technician").await;
    let tess = lab.add_user("tess", "tester").await;

    let ran = lab.proofrig(&tess, &["rigs"]).await.ok("rigs");
    let row = ran.stdout.lines().find(|l| l.starts_with("bench-1 ")).unwrap_or_else(|| panic!("{}", ran.stdout));
    for cell in ["lab-a (online)", "idle", "roles radio-unit; tags lte"] {
        assert!(row.contains(cell), "{cell} not in {row}");
    }
    let ran = lab.proofrig(&tina, &["reserve", "bench-1", "--minutes", "30"]).await.ok("reserve");
    assert!(ran.stdout.starts_with("bench-1 reserved by tina until "), "{}", ran.stdout);
    let ran = lab.proofrig(&tess, &["rigs"]).await.ok("rigs reserved");
    let row = ran.stdout.lines().find(|l| l.starts_with("bench-1 ")).unwrap();
    assert!(row.contains("reserved") && row.contains("tina until 20"), "{row}");
    let ran = lab.proofrig(&tess, &["rigs", "--json"]).await.ok("rigs --json");
    let rigs: Vec<RigView> = serde_json::from_str(&ran.stdout).unwrap();
    let held = rigs[0].reservation.clone().expect("held");
    assert_eq!(held.holder, "tina");

    // A tester may not reserve; the server says which role may.
    let ran = lab.proofrig(&tess, &["reserve", "bench-1"]).await;
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("server refused reserving bench-1: tess is a tester and may not reserve a rig"), "{}", ran.stderr);
    assert!(ran.stderr.contains("that takes the role technician (forbidden, HTTP 403)"), "{}", ran.stderr);

    let ran = lab.proofrig(&tina, &["extend", "bench-1", "--minutes", "90"]).await.ok("extend");
    assert!(ran.stdout.starts_with("bench-1 reserved by tina until "), "{}", ran.stdout);
    let rigs: Vec<RigView> = serde_json::from_str(&lab.proofrig(&tina, &["rigs", "--json"]).await.ok("rigs").stdout).unwrap();
    assert!(rigs[0].reservation.as_ref().unwrap().until > held.until, "extended");

    let ran = lab.proofrig(&tina, &["release", "bench-1"]).await.ok("release");
    assert_eq!(ran.stdout.trim(), "bench-1 released");
    let rigs: Vec<RigView> = serde_json::from_str(&lab.proofrig(&tess, &["rigs", "--json"]).await.ok("rigs").stdout).unwrap();
    assert_eq!(rigs[0].reservation, None, "no holder after release");
    let ran = lab.proofrig(&tina, &["release", "bench-1"]).await;
    assert_eq!(ran.code, 1, "nothing to release: {}", ran.stderr);
    assert!(ran.stderr.contains("server refused releasing bench-1"), "{}", ran.stderr);
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_brings_a_stored_bundle_home_verified_and_refuses_a_wrong_pin_or_flagged_or_altered_bytes() {
    let lab = Lab::start().await;
    let tess = lab.add_user("tess", "tester").await;
    let sealed = lab.seal_run("cli-fetch").await;
    let (run, check) = lab.upload(&sealed, 1);
    assert!(matches!(check, BundleCheck::Verified { .. }), "{check:?}");

    // A wrong pin: refused at the handshake, nothing sent, nothing written.
    let wrong = "ab".repeat(32);
    let ran = lab.proofrig(&tess, &["fetch", &run, "--out", "wrong-pin", "--fingerprint", &wrong]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("presented a certificate whose SHA-256 is not the pinned fingerprint"), "{}", ran.stderr);
    assert!(ran.stderr.contains(&wrong) && !ran.stderr.contains(&tess), "{}", ran.stderr);
    assert!(!lab.path("wrong-pin").exists(), "nothing is written");
    // No pin at all for https: says what to set.
    let mut no_pin = tokio::process::Command::new(env!("CARGO_BIN_EXE_proofrig"));
    no_pin.args(["fetch", &run]).current_dir(lab.dir.path()).env("PROOFRIG_SERVER", lab.server.url()).env("PROOFRIG_TOKEN", &tess);
    let ran = Ran::of(no_pin.env_remove("PROOFRIG_FINGERPRINT").output().await.unwrap());
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("set PROOFRIG_FINGERPRINT"), "{}", ran.stderr);

    // The right pin: every file as sealed, the receipt beside it, verified here.
    let ran = lab.proofrig(&tess, &["fetch", &run, "--out", "fetched", "--key", "keys/lab.pub"]).await.ok("fetch");
    assert!(ran.stdout.contains("each matching the server's listing"), "{}", ran.stdout);
    assert!(ran.stdout.contains("\nVERIFIED\n") && ran.stdout.contains("verdict: INCONCLUSIVE"), "{}", ran.stdout);
    assert!(ran.stdout.contains("is the key lab host lab-a enrolled with"), "{}", ran.stdout);
    let home = lab.path("fetched").join(&run);
    assert_eq!(tree(&home), tree(&sealed), "the bundle arrives byte for byte as sealed");
    let receipt: RunView =
        serde_json::from_slice(&std::fs::read(lab.path("fetched").join(format!("{run}.receipt.json"))).unwrap()).unwrap();
    assert_eq!((receipt.job, receipt.lab_host.as_str(), receipt.run_id.as_str()), (JobId(1), "lab-a", run.as_str()));
    assert_eq!(receipt.receipt["payloadType"], "application/vnd.proofrig.receipt+json", "the signed receipt is kept");
    let names: Vec<String> =
        std::fs::read_dir(lab.path("fetched")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "the bundle and its receipt, no partial download left: {names:?}");
    let verified = lab.proofrig("", &["verify", &format!("fetched/{run}"), "--key", "keys/lab.pub"]).await;
    assert_eq!(verified.code, 0, "proofrig verify passes the fetched bundle:\n{}", verified.stdout);
    // The server serves only the listed files, each inside the bundle.
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(proofrig_server::tls::pinned_client_config(lab.server.fingerprint().unwrap()))
        .build()
        .unwrap();
    for (path, status, says) in [
        (format!("/api/runs/{run}/files/..%2F..%2Fserver.key"), 400, "`..` component"),
        (format!("/api/runs/{run}/files/..%2F..%2Freceipts%2F{run}.json"), 400, "`..` component"),
        (format!("/api/runs/{run}/files/inputs"), 404, "GET /api/runs/"),
        (format!("/api/runs/{run}/files/journal.jsonl.tmp"), 404, "has no file"),
        (format!("/api/runs/{run}?flagged=maybe"), 400, "flagged=true"),
        ("/api/runs/..%2Fserver".to_string(), 400, "run id"),
    ] {
        let response = client.get(format!("{}{path}", lab.server.url())).bearer_auth(&tess).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(says), "{path}: {body}");
    }
    let journal = client.get(format!("{}/api/runs/{run}/files/journal.jsonl", lab.server.url())).bearer_auth(&tess).send().await.unwrap();
    assert_eq!(journal.bytes().await.unwrap(), std::fs::read(sealed.join("journal.jsonl")).unwrap());
    // Fetching again does not overwrite.
    let ran = lab.proofrig(&tess, &["fetch", &run, "--out", "fetched"]).await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("already exists"), "{}", ran.stderr);

    // Bytes on the server that are not the listed ones (same length): the download
    // stops at that file and leaves nothing.
    let stored_report = lab.server.inbox().bundle(&run).join("report.html");
    let mut bytes = std::fs::read(&stored_report).unwrap();
    let original = bytes.clone();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&stored_report, &bytes).unwrap();
    let ran = lab.proofrig(&tess, &["fetch", &run, "--out", "altered"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("report.html: the bytes that arrived hash to"), "{}", ran.stderr);
    assert!(ran.stderr.contains("nothing was kept"), "{}", ran.stderr);
    assert_eq!(std::fs::read_dir(lab.path("altered")).unwrap().count(), 0, "no bundle, no partial download, no receipt");
    std::fs::write(&stored_report, original).unwrap();

    // A flagged bundle (altered after sealing): refused with the reason, to a tester
    // even when asked; fetched by an admin who asks, and said loudly not to verify.
    let sealed = lab.seal_run("cli-flagged").await;
    let report = sealed.join("report.html");
    let mut text = std::fs::read_to_string(&report).unwrap();
    text.push_str("<!-- all PASS, trust me -->\n");
    std::fs::write(&report, text).unwrap();
    let (flagged, check) = lab.upload(&sealed, 2);
    assert!(matches!(check, BundleCheck::Flagged { .. }), "{check:?}");
    let ran = lab.proofrig(&tess, &["fetch", &flagged, "--out", "flagged"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains(&format!("server refused run {flagged}: run {flagged} is flagged: Tampered")), "{}", ran.stderr);
    assert!(ran.stderr.contains("(flagged, HTTP 409)"), "{}", ran.stderr);
    let ran = lab.proofrig(&tess, &["fetch", &flagged, "--out", "flagged", "--flagged"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("only an admin may fetch it") && ran.stderr.contains("(flagged, HTTP 409)"), "{}", ran.stderr);
    assert!(!lab.path("flagged").exists(), "nothing is written");
    let ran = lab.proofrig(&lab.admin, &["fetch", &flagged, "--out", "flagged", "--flagged"]).await;
    assert_eq!(ran.code, 1, "an inspected flagged bundle is never a success:\n{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("!! FLAGGED: this bundle did NOT verify on the server"), "{}", ran.stdout);
    assert!(ran.stdout.contains("TAMPERED"), "and the local verify finds why: {}", ran.stdout);
    assert_eq!(tree(&lab.path("flagged").join(&flagged)), tree(&sealed), "served as stored, for inspection");
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_loopback_needs_no_pin_and_a_missing_token_or_a_stopped_server_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("server"));
    config.plain_http = true;
    let server = Server::start(config).await.unwrap();
    let (url, admin) = (server.url(), server.bootstrap_token().unwrap().to_string());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let run = |args: Vec<String>, token: Option<String>| async move {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_proofrig"));
        command.args(&args).env_remove("PROOFRIG_FINGERPRINT").env_remove("PROOFRIG_SERVER").env_remove("PROOFRIG_TOKEN");
        if let Some(token) = token {
            command.env("PROOFRIG_TOKEN", token);
        }
        Ran::of(command.output().await.unwrap())
    };
    let ran = run(vec!["rigs".into(), "--server".into(), url.clone()], Some(admin.clone())).await.ok("rigs over plain http");
    assert!(ran.stdout.contains("no rigs on http://127.0.0.1:"), "{}", ran.stdout);
    let ran = run(vec!["queue".into(), "--server".into(), url.clone()], None).await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("no API token: set PROOFRIG_TOKEN"), "{}", ran.stderr);
    let ran = run(vec!["queue".into(), "--server".into(), url.clone()], Some("prt_unknown".into())).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("server refused listing the queue: unknown API token") && ran.stderr.contains("HTTP 401"),
        "{}",
        ran.stderr
    );
    let ran = run(vec!["queue".into()], Some(admin.clone())).await;
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("no lab server given: pass --server https://HOST:PORT or set PROOFRIG_SERVER"), "{}", ran.stderr);
    server.stop().await;
    let ran = run(vec!["queue".into(), "--server".into(), url.clone()], Some(admin)).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains(&format!("cannot reach the lab server at {url}: connection refused")), "{}", ran.stderr);
    assert!(ran.stderr.contains("check that `proofrig serve` runs there"), "{}", ran.stderr);
}
