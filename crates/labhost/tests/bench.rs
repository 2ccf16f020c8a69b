//! A technician's power actions reach the device through its lab host, under the
//! reservation's fencing token: against a real server over pinned HTTPS and the
//! simulated lab's Modbus PDU, on loopback. The server takes a request only from the
//! reservation's holder; the lab host refuses one under a token older than one it
//! has accepted for the rig (a request made under a reservation that has since
//! passed to someone else) and does not touch the device. Each action is recorded on
//! the lab host like `proofrig power`, and audited on the server.

mod common;

use std::time::Duration;

use proofrig_labhost::agent::{self, AgentConfig, ServerAddress};
use proofrig_proto::ids::{FencingToken, UnixMillis};
use proofrig_proto::labhost::{BenchAction, BenchOutcome};
use proofrig_server::api::secret_sha256;
use proofrig_server::http::{Server, ServerConfig};
use proofrig_server::store::bench::BenchAnswer;

use common::{ctx, wait_for};

/// The lab host's answer to bench operation `op`.
async fn answer_to(server: &Server, op: u64) -> BenchOutcome {
    wait_for(&format!("the answer to bench operation {op}"), Duration::from_secs(30), async || {
        match server.store().bench_op(op).await.unwrap().unwrap().answer {
            Some((_, BenchAnswer::Answered(outcome))) => Some(outcome),
            Some((_, BenchAnswer::Expired)) => panic!("bench operation {op} expired unanswered"),
            None => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_goes_through_the_lab_host_under_the_reservation_and_a_stale_token_is_refused_there() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let (state, labstate, rigs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), state.path())).await.unwrap();
    let lab = proofrig_simlab::SimLab::start(proofrig_simlab::SimLabConfig::default()).await.unwrap();
    lab.write_rig(rigs.path()).unwrap();
    let token = "enr_bench-token";
    let expires = UnixMillis(server.clock().now().0 + 600_000);
    server.store().add_enrollment("lab-a", &secret_sha256(token), expires, &ctx(&server, "admin")).await.unwrap();
    let config = AgentConfig {
        server: ServerAddress { url: server.url(), fingerprint: server.fingerprint().map(str::to_string) },
        rigs_dir: rigs.path().to_path_buf(),
        state_dir: labstate.path().to_path_buf(),
        enroll_token: Some(token.into()),
        name: "lab-a".into(),
        clock: Default::default(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(agent::run(config, stopped));
    wait_for("the simulated lab advertised", Duration::from_secs(30), async || {
        let rigs = server.store().rigs(server.clock().now()).await.unwrap();
        rigs.iter().any(|r| r.summary.rig == "simlab" && r.labhost_online).then_some(())
    })
    .await;
    let store = server.store();
    let ru1 = || lab.device("ru1").unwrap().device().is_powered();
    assert!(ru1(), "the simulated lab starts powered");

    // Without the rig's reservation: refused by the server, audited, nothing sent.
    let refused = store.bench_request("simlab", "ru1", BenchAction::PowerOff, &ctx(&server, "tom")).await.unwrap_err().to_string();
    assert!(refused.contains("not reserved"), "{refused}");
    let tom = store.reserve("simlab", None, &ctx(&server, "tom")).await.unwrap();
    let refused = store.bench_request("simlab", "ru1", BenchAction::PowerOff, &ctx(&server, "ann")).await.unwrap_err().to_string();
    assert!(refused.contains("reserved by tom"), "{refused}");
    let refused = store.bench_request("simlab", "ru9", BenchAction::PowerOff, &ctx(&server, "tom")).await.unwrap_err().to_string();
    assert!(refused.contains("no device `ru9`") && refused.contains("ru1"), "{refused}");

    // The holder switches ru1 off and on again, through the lab host and the PDU.
    let off = store.bench_request("simlab", "ru1", BenchAction::PowerOff, &ctx(&server, "tom")).await.unwrap();
    assert_eq!(off.fencing, tom.fencing, "the request carries the reservation's token");
    match answer_to(&server, off.op).await {
        BenchOutcome::Done { detail } => assert!(detail.contains("power off") && detail.contains("-ru1-power.jsonl"), "{detail}"),
        other => panic!("power off: {other:?}"),
    }
    assert!(!ru1(), "the coil is off and the device with it");
    let on = store.bench_request("simlab", "ru1", BenchAction::PowerOn, &ctx(&server, "tom")).await.unwrap();
    assert!(matches!(answer_to(&server, on.op).await, BenchOutcome::Done { .. }));
    wait_for("ru1 powered again", Duration::from_secs(10), async || ru1().then_some(())).await;

    // Recorded on the lab host like `proofrig power`: who asked, under which token, the Modbus exchange.
    let sessions: Vec<_> = std::fs::read_dir(labstate.path().join("sessions")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let transcript = std::fs::read_to_string(sessions.iter().find(|p| p.to_string_lossy().contains("ru1-power")).unwrap()).unwrap();
    assert!(transcript.contains("by tom from the dashboard") && transcript.contains(&tom.fencing.to_string()), "{transcript}");

    // The reservation passes to ann, whose cycle the lab host takes under her newer token.
    store.release("simlab", &ctx(&server, "tom")).await.unwrap();
    let ann = store.reserve("simlab", None, &ctx(&server, "ann")).await.unwrap();
    assert!(ann.fencing > tom.fencing);
    let cycle = store.bench_request("simlab", "ru1", BenchAction::PowerCycle, &ctx(&server, "ann")).await.unwrap();
    assert!(matches!(answer_to(&server, cycle.op).await, BenchOutcome::Done { .. }));

    // A request under tom's old token (as a server replica restored from an old backup
    // would send): the lab host refuses it and does not touch the device.
    let db = sqlx::sqlite::SqliteConnectOptions::new().filename(state.path().join("proofrig.db"));
    let pool = sqlx::SqlitePool::connect_with(db).await.unwrap();
    let (stale,): (i64,) = sqlx::query_as(
        "INSERT INTO bench_ops (rig, labhost, device, action, fencing, requested_by, requested_at) \
         VALUES ('simlab', (SELECT labhost FROM rigs WHERE name = 'simlab'), 'ru1', 'power_off', $1, 'tom', $2) RETURNING id",
    )
    .bind(tom.fencing.0 as i64)
    .bind(server.clock().now().0 as i64)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    match answer_to(&server, stale as u64).await {
        BenchOutcome::Refused { reason } => {
            assert!(reason.contains("stale") && reason.contains(&ann.fencing.to_string()), "{reason}")
        }
        other => panic!("a stale token was not refused: {other:?}"),
    }
    assert!(ru1(), "the refused request did not touch the device");
    let fences: std::collections::BTreeMap<String, FencingToken> =
        serde_json::from_slice(&std::fs::read(labstate.path().join("fences.json")).unwrap()).unwrap();
    assert_eq!(fences["simlab"], ann.fencing, "the newest token accepted for the rig, kept on disk");

    // Every request and answer is in the audit log, with who.
    let audit = store.audit().await.unwrap();
    let actions: Vec<(&str, &str)> =
        audit.iter().filter(|a| a.action.starts_with("bench.")).map(|a| (a.action.as_str(), a.who.as_str())).collect();
    assert!(actions.contains(&("bench.refused", "tom")) && actions.contains(&("bench.refused", "ann")), "{actions:?}");
    assert_eq!(actions.iter().filter(|(a, _)| *a == "bench.request").count(), 3, "{actions:?}");
    assert_eq!(actions.iter().filter(|(a, _)| *a == "bench.done").count(), 3, "{actions:?}");
    assert!(actions.iter().any(|(a, who)| *a == "bench.refused" && who.starts_with("labhost:")), "the lab host's refusal: {actions:?}");

    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    server.stop().await;
}
