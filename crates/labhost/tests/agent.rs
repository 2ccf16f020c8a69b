//! A lab host agent against a real server over pinned HTTPS on loopback: it enrolls
//! with a one-time token, advertises its rig, takes a job submitted against a role
//! selector, runs it, streams its journal, and uploads the sealed bundle, which the
//! server verifies against the lab host's key. The job ends done with its verdict;
//! the journal the server held live is the bundle's journal, byte for byte.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proofrig_labhost::agent::{self, AgentConfig, AgentError, ServerAddress};
use proofrig_proto::api::{JobState, RigSelector, SubmitJob};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::LabHostId;
use proofrig_proto::ids::{Attempt, Priority, UnixMillis};
use proofrig_proto::labhost::{Hello, LabHostMessage, RefusalCode, ServerMessage};
use proofrig_proto::version::Version;
use proofrig_server::api::secret_sha256;
use proofrig_server::http::{Server, ServerConfig};

use common::{ctx, wait_for};
use proofrig_testpeers::plans::{desk_rig, no_device_plan};
use proofrig_verdict::Verdict;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_host_enrolls_takes_a_job_and_its_bundle_arrives_verified() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let (state, labstate, rigs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), state.path())).await.unwrap();
    std::fs::write(rigs.path().join("bench-3.yaml"), desk_rig("bench-3")).unwrap();
    let token = "enr_test-token-lab-a";
    let expires = UnixMillis(server.clock().now().0 + 600_000);
    server.store().add_enrollment("lab-a", &secret_sha256(token), expires, &ctx(&server, "admin")).await.unwrap();

    let config = |token: Option<&str>, fingerprint: Option<String>| AgentConfig {
        server: ServerAddress { url: server.url(), fingerprint },
        rigs_dir: rigs.path().to_path_buf(),
        state_dir: labstate.path().to_path_buf(),
        enroll_token: token.map(str::to_string),
        name: "lab-a".into(),
        clock: Default::default(),
    };
    // A wrong pin: nothing is sent, the error names the connection.
    let wrong = agent::connect(&config(Some(token), Some("00".repeat(32)))).await.err().expect("a wrong pin is refused");
    assert!(wrong.to_string().contains("cannot reach the server"), "{wrong}");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let fingerprint = server.fingerprint().map(str::to_string);
    let running = tokio::spawn(agent::run(config(Some(token), fingerprint.clone()), stopped));

    wait_for("the rig to be advertised", Duration::from_secs(20), async || {
        let rigs = server.store().rigs(server.clock().now()).await.unwrap();
        rigs.iter().any(|r| r.summary.rig == "bench-3" && r.labhost_online).then_some(())
    })
    .await;

    let job = SubmitJob {
        plans: vec![PlanFile { name: "agent-path.yaml".into(), bytes: no_device_plan("agent-path", "TC_AGENT").into_bytes() }],
        target: RigSelector::Match { roles: BTreeSet::from(["radio-unit".to_string()]), tags: BTreeSet::new() },
        priority: Priority::NORMAL,
        params: BTreeMap::new(),
        device: None,
        not_before: None,
    };
    let submitted = server.store().submit(&job, &ctx(&server, "tess")).await.unwrap();
    let done = wait_for("the job to end with its bundle", Duration::from_secs(60), async || {
        let attempts = server.store().job(submitted.job).await.unwrap();
        let last = attempts.last().unwrap().clone();
        matches!(last.view.state, JobState::Done | JobState::Lost).then_some(last)
    })
    .await;
    assert_eq!(done.view.state, JobState::Done, "{}", done.reason);
    assert_eq!(done.view.attempt, Attempt(1));
    assert_eq!(done.view.rig.as_deref(), Some("bench-3"));
    // No device evidence, so never PASS: the verdict as sealed on the lab host.
    assert_eq!(done.view.verdict, Some(Verdict::Inconclusive), "{}", done.reason);
    let run_id = done.view.run_id.clone().unwrap();

    // Stored byte for byte, verified with the lab host's pinned key, with a receipt.
    let bundle = server.inbox().bundle(&run_id);
    let lab_key = proofrig_evidence::signing::load_verifying_key(&labstate.path().join("lab.pub")).unwrap();
    let report = proofrig_evidence::verify_bundle(&bundle, Some(&lab_key));
    assert_eq!(report.status, proofrig_evidence::verify::Status::Verified);
    let receipt = server.inbox().read_receipt(&run_id, server.key()).unwrap();
    assert_eq!(receipt.lab_host, "lab-a");
    // The server witnessed the journal as it streamed, and what it signed holds in the bundle.
    assert!(!receipt.witnessed.is_empty(), "no witness statement in the receipt");
    let last = receipt.witnessed.last().unwrap();
    let records = std::fs::read_to_string(bundle.join("journal.jsonl")).unwrap().lines().count() as u64;
    assert_eq!(last.records, records, "the job's end is witnessed: every record");
    let checks = proofrig_server::witness::check_against(&bundle.join("journal.jsonl"), &receipt.witnessed);
    assert!(checks.iter().all(|c| *c == proofrig_server::witness::WitnessCheck::Holds), "{checks:?}");
    // The journal the server held as it streamed is the bundle's.
    let live = std::fs::read(state.path().join("live").join(format!("{}.1.jsonl", submitted.job.0))).unwrap();
    assert_eq!(live, std::fs::read(bundle.join("journal.jsonl")).unwrap());
    // The rig is free again, and the lease gone.
    assert!(server.store().leases().await.unwrap().is_empty());

    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    // Enrolled once: a second start needs no token, and the token is spent.
    let link = agent::connect(&config(None, fingerprint.clone())).await.expect("enrolled: no token needed");

    // The version rule on the wire: the same major works; a major apart, or a lab host
    // newer than the server, is refused naming both versions and who must upgrade.
    let hello = |major, minor| {
        LabHostMessage::Hello(Hello { version: Version { major, minor }, labhost: LabHostId("lab-a".into()), software: "test".into() })
    };
    assert!(matches!(link.send(&hello(1, 0)).await.unwrap()[0], ServerMessage::Welcome(_)));
    for (major, minor, upgrade) in [(2, 0, "upgrade the server"), (0, 9, "upgrade the lab host"), (1, 2, "upgrade the server")] {
        match link.send(&hello(major, minor)).await {
            Err(AgentError::Refused(r)) => {
                assert_eq!(r.code, RefusalCode::Version, "{}", r.message);
                assert!(r.message.contains(upgrade) && r.message.contains(&format!("{major}.{minor}")), "{}", r.message);
            }
            other => panic!("protocol {major}.{minor} was not refused: {other:?}"),
        }
    }

    // A request signed by another key under this lab host's name: refused, whatever it says.
    let impostor = tempfile::tempdir().unwrap();
    std::fs::copy(labstate.path().join("enrollment.json"), impostor.path().join("enrollment.json")).unwrap();
    let mut forged = config(None, fingerprint);
    forged.state_dir = impostor.path().to_path_buf();
    let link = agent::connect(&forged).await.unwrap();
    match link.send(&hello(1, 0)).await {
        Err(AgentError::Refused(r)) => assert_eq!(r.code, RefusalCode::Authentication, "{}", r.message),
        other => panic!("a request signed by another key was answered: {other:?}"),
    }
    server.stop().await;
}

/// An enrollment token works once: replayed with another key it is refused, and the
/// lab host it enrolled keeps working. And a lab host that hangs mid-request (half a
/// request sent, then silence, as on a black-holed link) holds only its own
/// connection: another lab host enrolls, advertises and gets its job at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_enrollment_token_is_refused_and_a_stuck_lab_host_slows_no_other() {
    use tokio::io::AsyncWriteExt;
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), state.path())).await.unwrap();
    let fingerprint = server.fingerprint().map(str::to_string);
    let expires = UnixMillis(server.clock().now().0 + 600_000);
    for (name, token) in [("lab-a", "enr_a"), ("lab-b", "enr_b")] {
        server.store().add_enrollment(name, &secret_sha256(token), expires, &ctx(&server, "admin")).await.unwrap();
    }
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let rigs = tempfile::tempdir().unwrap();
    std::fs::write(rigs.path().join("bench-7.yaml"), desk_rig("bench-7")).unwrap();
    let config = |dir: &tempfile::TempDir, token: &str| AgentConfig {
        server: ServerAddress { url: server.url(), fingerprint: fingerprint.clone() },
        rigs_dir: rigs.path().to_path_buf(),
        state_dir: dir.path().to_path_buf(),
        enroll_token: Some(token.to_string()),
        name: "lab".into(),
        clock: Default::default(),
    };
    agent::connect(&config(&dirs[0], "enr_a")).await.expect("the first use enrolls");
    match agent::connect(&config(&dirs[1], "enr_a")).await {
        Err(AgentError::Refused(r)) => {
            assert_eq!(r.code, RefusalCode::Enrollment, "{}", r.message);
            assert!(r.message.contains("used already"), "{}", r.message);
        }
        other => panic!("a replayed token was accepted: {:?}", other.err()),
    }
    let link = agent::connect(&config(&dirs[0], "enr_a")).await.unwrap();
    let hello = LabHostMessage::Hello(Hello {
        version: proofrig_proto::version::PROTOCOL_VERSION,
        labhost: LabHostId("lab-a".into()),
        software: "test".into(),
    });
    assert!(matches!(link.send(&hello).await.unwrap()[0], ServerMessage::Welcome(_)), "the enrolled lab host is unaffected");

    // A stuck lab host: a TLS-less half request on a raw connection, then silence.
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let mut tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
        tcp.write_all(b"\x16\x03\x01\x00\xc8\x01\x00").await.unwrap(); // the start of a ClientHello, and no more
        stuck.push(tcp);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let running = tokio::spawn(agent::run(config(&dirs[2], "enr_b"), stopped));
    let job = SubmitJob {
        plans: vec![PlanFile { name: "isolation.yaml".into(), bytes: no_device_plan("isolation", "TC_ISO").into_bytes() }],
        target: RigSelector::Rig("bench-7".into()),
        priority: Priority::NORMAL,
        params: BTreeMap::new(),
        device: None,
        not_before: None,
    };
    wait_for("lab-b online", Duration::from_secs(20), async || {
        let rigs = server.store().rigs(server.clock().now()).await.unwrap();
        rigs.iter().any(|r| r.summary.rig == "bench-7" && r.labhost_online).then_some(())
    })
    .await;
    let submitted = server.store().submit(&job, &ctx(&server, "tess")).await.unwrap();
    wait_for("lab-b's job done", Duration::from_secs(30), async || {
        let last = server.store().job(submitted.job).await.unwrap().pop().unwrap();
        (last.view.state == JobState::Done).then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(15), "the stuck connections slowed lab-b: {:?}", started.elapsed());
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    drop(stuck);
    server.stop().await;
}
