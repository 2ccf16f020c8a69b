//! The power agent against real peers: tokio-modbus's server as a relay board,
//! Debian's pdudaemon with a file-backed PDU, and shell scripts as command PDUs.
//!
//! Each test checks the outlet itself (coil state, driver journal, state file), the
//! value the controller returned, and the evidence it recorded, including for
//! failures. Everything runs on 127.0.0.1 and in temporary directories.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proofrig_agents::power::{OutletRef, PowerController, PowerError};
use proofrig_model::events::{EventKind, MemorySink, PowerState, Recorder};
use proofrig_model::rig::{OutletId, Rig};
use proofrig_testpeers::modbus::{CoilOp, ModbusOptions, ModbusServer};
use proofrig_testpeers::pdudaemon::Pdudaemon;

/// One recorded power event, flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
struct PowerRecord {
    device: String,
    pdu: String,
    outlet: String,
    action: String,
    requested: PowerState,
    readback: PowerState,
    ok: bool,
    detail: String,
    mono_ns: u64,
}

fn power_records(sink: &MemorySink) -> Vec<PowerRecord> {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Power { device, pdu, outlet, action, requested, readback, ok, detail } => {
                Some(PowerRecord { device, pdu, outlet, action, requested, readback, ok, detail, mono_ns: e.at.mono_ns })
            }
            _ => None,
        })
        .collect()
}

/// (action, requested, readback, ok) of every power event, for compact comparisons.
fn outline(sink: &MemorySink) -> Vec<(String, PowerState, PowerState, bool)> {
    power_records(sink).into_iter().map(|r| (r.action, r.requested, r.readback, r.ok)).collect()
}

fn rig(text: &str) -> Rig {
    Rig::parse("power-test.yaml", text, Path::new("/")).unwrap_or_else(|e| panic!("test rig does not parse: {e:?}\n{text}"))
}

fn controller(text: &str) -> (PowerController, Arc<MemorySink>) {
    let sink = MemorySink::new();
    let controller = PowerController::new(&rig(text), Recorder::new(sink.clone())).expect("controller");
    (controller, sink)
}

fn modbus_rig(port: u16, extra: &str) -> String {
    format!(
        r#"
rig: power-bench
pdus:
  relays: {{ modbus: {{ host: 127.0.0.1, port: {port}, unit: 1, timeout_ms: 1000 {extra} }} }}
devices:
  ru1: {{ role: radio-unit, power: {{ pdu: relays, outlet: 3, cycle_off_ms: 120 }} }}
  core: {{ role: core }}
"#
    )
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    proofrig_testpeers::free_port()
}

/// A listener whose kernel accepts connections but which never reads or answers.
fn silent_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

// ---------------------------------------------------------------- Modbus

#[tokio::test]
async fn modbus_on_off_status_switch_the_coil_and_read_it_back() {
    let board = ModbusServer::start(8);
    let (power, sink) = controller(&modbus_rig(board.port(), ""));

    assert_eq!(power.on("ru1").await.unwrap(), PowerState::On);
    assert!(board.coil(3), "coil 3 must be set after on");
    assert_eq!(board.coils().iter().filter(|c| **c).count(), 1, "only coil 3 may change");
    assert_eq!(power.status("ru1").await.unwrap(), PowerState::On);
    assert_eq!(power.off("ru1").await.unwrap(), PowerState::Off);
    assert!(!board.coil(3));
    // Someone flips the relay by hand: status reports the outlet, not our last command.
    board.set_coil(3, true);
    assert_eq!(power.status("ru1").await.unwrap(), PowerState::On);

    // Every write was followed by a read of the same coil, for unit 1, on one kept connection.
    let ops: Vec<CoilOp> = board.requests().iter().map(|r| r.op).collect();
    assert_eq!(
        ops,
        vec![
            CoilOp::Write { coil: 3, value: true },
            CoilOp::Read { coil: 3, count: 1 },
            CoilOp::Read { coil: 3, count: 1 },
            CoilOp::Write { coil: 3, value: false },
            CoilOp::Read { coil: 3, count: 1 },
            CoilOp::Read { coil: 3, count: 1 },
        ]
    );
    assert!(board.requests().iter().all(|r| r.unit == 1));
    assert_eq!(board.connections_accepted(), 1, "the connection to a PDU is kept between actions");

    use PowerState::*;
    assert_eq!(
        outline(&sink),
        vec![
            ("on".into(), On, On, true),
            ("status".into(), Unknown, On, true),
            ("off".into(), Off, Off, true),
            ("status".into(), Unknown, On, true),
        ]
    );
    let first = &power_records(&sink)[0];
    assert_eq!((first.device.as_str(), first.pdu.as_str(), first.outlet.as_str()), ("ru1", "relays", "3"));
    assert!(first.detail.contains("wrote coil 3 = true, read back true"), "{}", first.detail);
}

#[tokio::test]
async fn modbus_invert_writes_the_opposite_coil_value() {
    let board = ModbusServer::start(8);
    let (power, sink) = controller(&modbus_rig(board.port(), ", invert: true"));
    board.set_coil(3, true); // inverted: coil set means power off

    assert_eq!(power.status("ru1").await.unwrap(), PowerState::Off);
    assert_eq!(power.on("ru1").await.unwrap(), PowerState::On);
    assert!(!board.coil(3), "inverted on must clear the coil");
    assert_eq!(power.off("ru1").await.unwrap(), PowerState::Off);
    assert!(board.coil(3), "inverted off must set the coil");
    let writes: Vec<CoilOp> = board.requests().iter().map(|r| r.op).filter(|op| matches!(op, CoilOp::Write { .. })).collect();
    assert_eq!(writes, vec![CoilOp::Write { coil: 3, value: false }, CoilOp::Write { coil: 3, value: true }]);
    assert!(power_records(&sink).iter().all(|r| r.ok));
}

#[tokio::test]
async fn a_coil_that_does_not_follow_the_write_is_a_readback_mismatch() {
    let board = ModbusServer::start(8);
    board.ignore_writes(3, true);
    let (power, sink) = controller(&modbus_rig(board.port(), ""));

    let err = power.on("ru1").await.unwrap_err();
    match &err {
        PowerError::ReadbackMismatch { device, pdu, outlet, requested, read } => {
            assert_eq!((device.as_str(), pdu.as_str()), ("ru1", "relays"));
            assert_eq!(*outlet, OutletId::Number(3));
            assert_eq!((*requested, *read), (PowerState::On, PowerState::Off));
        }
        other => panic!("expected a read-back mismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("ru1") && message.contains("relays") && message.contains("outlet 3"), "{message}");
    assert!(!board.coil(3));

    let records = power_records(&sink);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].action.as_str(), records[0].requested, records[0].readback, records[0].ok),
        ("on", PowerState::On, PowerState::Off, false)
    );
    assert_eq!(records[0].detail, message);

    // Once the relay follows again, the same controller (same connection) succeeds.
    board.ignore_writes(3, false);
    assert_eq!(power.on("ru1").await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn modbus_exceptions_are_refusals_that_name_the_cause() {
    let board = ModbusServer::start_with(ModbusOptions { coils: 2, unit: 7, port: None });
    let (power, sink) = controller(&modbus_rig(board.port(), ""));
    // The rig says unit 1; the board is unit 7 and answers like a gateway would.
    let err = power.on("ru1").await.unwrap_err();
    assert!(
        matches!(&err, PowerError::Refused { device, pdu, action, .. } if device == "ru1" && pdu == "relays" && *action == "on"),
        "{err:?}"
    );
    assert!(err.to_string().contains("unit"), "{err}");
    assert_eq!(outline(&sink), vec![("on".into(), PowerState::On, PowerState::Unknown, false)]);

    // Coil 3 does not exist on a 2-coil board.
    let board = ModbusServer::start(2);
    let (power, _) = controller(&modbus_rig(board.port(), ""));
    let err = power.off("ru1").await.unwrap_err();
    assert!(err.to_string().contains("IllegalDataAddress") && err.to_string().contains("outlet"), "{err}");
}

async fn assert_unreachable_in_time(text: &str, timeout_ms: u64, expect_wait: bool, reason_part: &str) {
    let (power, sink) = controller(text);
    let started = Instant::now();
    let err = power.on("ru1").await.unwrap_err();
    let took = started.elapsed();
    match &err {
        PowerError::Unreachable { pdu, addr, after_ms, reason } => {
            assert_eq!(pdu, "p");
            assert!(addr.contains("127.0.0.1:"), "{addr}");
            assert!(*after_ms <= took.as_millis() as u64 + 1);
            assert!(reason.contains(reason_part), "reason `{reason}` should mention `{reason_part}`");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(err.to_string().contains("Check that the PDU is powered"), "{err}");
    assert!(took < Duration::from_millis(2 * timeout_ms), "took {took:?} with timeout_ms {timeout_ms}");
    if expect_wait {
        assert!(took >= Duration::from_millis(timeout_ms * 9 / 10), "gave up early: {took:?}");
    }
    let records = power_records(&sink);
    assert_eq!(records.len(), 1);
    assert!(!records[0].ok && records[0].detail.contains("is unreachable"));
}

fn single_pdu_rig(pdu: &str, outlet: &str) -> String {
    format!(
        r#"
rig: unreachable
pdus:
  p: {pdu}
devices:
  ru1: {{ role: radio-unit, power: {{ pdu: p, outlet: {outlet} }} }}
"#
    )
}

#[tokio::test]
async fn an_unreachable_modbus_pdu_fails_within_its_timeout() {
    let closed = single_pdu_rig(&format!("{{ modbus: {{ host: 127.0.0.1, port: {}, timeout_ms: 400 }} }}", closed_port()), "1");
    assert_unreachable_in_time(&closed, 400, false, "refused").await;

    let (_listener, port) = silent_listener();
    let silent = single_pdu_rig(&format!("{{ modbus: {{ host: 127.0.0.1, port: {port}, timeout_ms: 400 }} }}"), "1");
    assert_unreachable_in_time(&silent, 400, true, "no Modbus reply").await;
}

#[tokio::test]
async fn an_unreachable_pdudaemon_fails_within_its_timeout() {
    let closed =
        single_pdu_rig(&format!("{{ pdudaemon: {{ url: \"http://127.0.0.1:{}\", hostname: x, timeout_ms: 400 }} }}", closed_port()), "1");
    assert_unreachable_in_time(&closed, 400, false, "cannot connect").await;

    let (_listener, port) = silent_listener();
    let silent = single_pdu_rig(&format!("{{ pdudaemon: {{ url: \"http://127.0.0.1:{port}\", hostname: x, timeout_ms: 400 }} }}"), "1");
    assert_unreachable_in_time(&silent, 400, true, "no HTTP response").await;
}

#[tokio::test]
async fn a_restarted_pdu_is_reconnected_transparently() {
    let board = ModbusServer::start(8);
    let port = board.port();
    let (power, sink) = controller(&modbus_rig(port, ""));
    power.on("ru1").await.unwrap();
    drop(board); // closes the kept connection from the PDU side
    let board = ModbusServer::start_with(ModbusOptions { coils: 8, unit: 1, port: Some(port) });
    assert_eq!(power.on("ru1").await.unwrap(), PowerState::On);
    assert!(board.coil(3));
    assert_eq!(board.connections_accepted(), 1);
    assert!(power_records(&sink).iter().all(|r| r.ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_to_one_modbus_pdu_are_serialised() {
    let board = ModbusServer::start(8);
    // A slow board widens the window in which unserialised requests would overlap.
    board.set_reply_delay(Duration::from_millis(3));
    let text = format!(
        r#"
rig: busy
pdus:
  relays: {{ modbus: {{ host: 127.0.0.1, port: {} }} }}
devices:
  a: {{ role: x, power: {{ pdu: relays, outlet: 0 }} }}
  b: {{ role: x, power: {{ pdu: relays, outlet: 1 }} }}
  c: {{ role: x, power: {{ pdu: relays, outlet: 2 }} }}
  d: {{ role: x, power: {{ pdu: relays, outlet: 3 }} }}
"#,
        board.port()
    );
    let (power, sink) = controller(&text);
    let tasks: Vec<_> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|device| {
            let power = power.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    power.on(device).await.unwrap();
                    power.off(device).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(board.max_concurrent_requests(), 1, "requests to one PDU overlapped");
    // Each write is immediately followed by the read-back of the same coil.
    let ops: Vec<CoilOp> = board.requests().iter().map(|r| r.op).collect();
    assert_eq!(ops.len(), 4 * 5 * 2 * 2);
    for pair in ops.chunks(2) {
        match pair {
            [CoilOp::Write { coil, .. }, CoilOp::Read { coil: read, count: 1 }] if coil == read => {}
            other => panic!("write and read-back were interleaved with another request: {other:?}\n{ops:?}"),
        }
    }
    assert_eq!(power_records(&sink).len(), 40);
    assert!(power_records(&sink).iter().all(|r| r.ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_pdus_are_not_serialised_against_each_other() {
    let slow_a = ModbusServer::start(4);
    let slow_b = ModbusServer::start(4);
    for board in [&slow_a, &slow_b] {
        board.set_reply_delay(Duration::from_millis(150));
    }
    let text = format!(
        r#"
rig: two
pdus:
  pa: {{ modbus: {{ host: 127.0.0.1, port: {} }} }}
  pb: {{ modbus: {{ host: 127.0.0.1, port: {} }} }}
devices:
  a: {{ role: x, power: {{ pdu: pa, outlet: 0 }} }}
  b: {{ role: x, power: {{ pdu: pb, outlet: 0 }} }}
"#,
        slow_a.port(),
        slow_b.port()
    );
    let (power, _) = controller(&text);
    let started = Instant::now();
    let (a, b) = tokio::join!(power.on("a"), power.on("b"));
    let took = started.elapsed();
    a.unwrap();
    b.unwrap();
    // Each action is write + read = 300 ms on its board; serialised they would take 600 ms.
    assert!(took < Duration::from_millis(520), "two PDUs were switched one after the other: {took:?}");
}

#[tokio::test]
async fn cycle_turns_off_waits_then_on_and_records_both_halves() {
    let board = ModbusServer::start(8);
    let changes: Arc<Mutex<Vec<(u16, bool, Instant)>>> = Arc::default();
    let seen = Arc::clone(&changes);
    board.on_change(move |coil, value| seen.lock().unwrap().push((coil, value, Instant::now())));
    let (power, sink) = controller(&modbus_rig(board.port(), ""));
    power.on("ru1").await.unwrap();

    assert_eq!(power.cycle("ru1", Some(Duration::from_millis(250))).await.unwrap(), PowerState::On);
    // Without an explicit duration, the rig's cycle_off_ms (120) applies.
    assert_eq!(power.cycle("ru1", None).await.unwrap(), PowerState::On);
    assert!(board.coil(3));

    let changes = changes.lock().unwrap().clone();
    let values: Vec<(u16, bool)> = changes.iter().map(|(c, v, _)| (*c, *v)).collect();
    assert_eq!(values, vec![(3, true), (3, false), (3, true), (3, false), (3, true)]);
    let off_for = |i: usize| changes[i + 1].2 - changes[i].2;
    assert!(off_for(1) >= Duration::from_millis(250), "stayed off only {:?}", off_for(1));
    assert!(off_for(3) >= Duration::from_millis(120), "stayed off only {:?}", off_for(3));

    use PowerState::*;
    assert_eq!(
        outline(&sink),
        vec![
            ("on".into(), On, On, true),
            ("cycle-off".into(), Off, Off, true),
            ("cycle-on".into(), On, On, true),
            ("cycle-off".into(), Off, Off, true),
            ("cycle-on".into(), On, On, true),
        ]
    );
    let records = power_records(&sink);
    assert!(records[2].mono_ns - records[1].mono_ns >= 250_000_000);
}

#[tokio::test]
async fn a_cycle_whose_off_fails_does_not_switch_on() {
    let board = ModbusServer::start(8);
    board.set_coil(3, true);
    board.ignore_writes(3, true);
    let (power, sink) = controller(&modbus_rig(board.port(), ""));
    let err = power.cycle("ru1", Some(Duration::from_millis(10))).await.unwrap_err();
    assert!(matches!(err, PowerError::ReadbackMismatch { requested: PowerState::Off, read: PowerState::On, .. }));
    assert_eq!(outline(&sink), vec![("cycle-off".into(), PowerState::Off, PowerState::On, false)]);
    assert_eq!(board.requests().iter().filter(|r| matches!(r.op, CoilOp::Write { .. })).count(), 1);
}

#[tokio::test]
async fn modbus_probe_reads_a_coil_without_writing() {
    let board = ModbusServer::start(8);
    board.set_coil(3, true);
    let (power, sink) = controller(&modbus_rig(board.port(), ""));
    let answer = power.probe("relays", None).await.unwrap();
    assert!(answer.contains("coil 3 is true") && answer.contains(&board.port().to_string()), "{answer}");
    assert!(board.requests().iter().all(|r| matches!(r.op, CoilOp::Read { .. })));
    assert!(!board.requests().is_empty());
    assert!(power_records(&sink).is_empty(), "a probe switches nothing and is not a power action");

    // Probing for a device reads that device's own coil, and says which.
    let outlet = |id| OutletRef { device: "ru9", pdu: "relays", outlet: id };
    let answer = power.probe("relays", Some(&outlet(&OutletId::Number(5)))).await.unwrap();
    assert!(answer.contains("coil 5 is false") && answer.contains("power off"), "{answer}");
    let err = power.probe("relays", Some(&outlet(&OutletId::Name("a".into())))).await.unwrap_err();
    assert!(matches!(&err, PowerError::BadOutlet { device, .. } if device == "ru9"), "{err:?}");

    let err = power.probe("relay", None).await.unwrap_err();
    assert!(matches!(&err, PowerError::UnknownPdu { pdu, known, .. } if pdu == "relay" && known == "relays"));
    drop(board);
    assert!(matches!(power.probe("relays", None).await.unwrap_err(), PowerError::Unreachable { .. }));
}

#[tokio::test]
async fn devices_without_power_or_unknown_devices_are_clear_errors_and_recorded() {
    let board = ModbusServer::start(8);
    let (power, sink) = controller(&modbus_rig(board.port(), ""));
    let err = power.on("core").await.unwrap_err();
    assert!(matches!(&err, PowerError::NoPower { device, .. } if device == "core"), "{err:?}");
    assert!(err.to_string().contains("no `power:` section"));
    let err = power.cycle("ru2", None).await.unwrap_err();
    assert!(matches!(&err, PowerError::UnknownDevice { device, hint, .. } if device == "ru2" && hint.contains("ru1")));
    let records = power_records(&sink);
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].device.as_str(), records[0].action.as_str(), records[0].ok), ("core", "on", false));
    assert_eq!((records[1].device.as_str(), records[1].action.as_str(), records[1].ok), ("ru2", "cycle", false));
    assert!(board.requests().is_empty());
}

// ---------------------------------------------------------------- pdudaemon

fn pdudaemon_rig(daemon: &Pdudaemon, hostname: &str) -> String {
    format!(
        r#"
rig: pdud
pdus:
  lab: {{ pdudaemon: {{ url: "{}", hostname: {hostname}, timeout_ms: 3000 }} }}
devices:
  ru1: {{ role: radio-unit, power: {{ pdu: lab, outlet: 7 }} }}
"#,
        daemon.url()
    )
}

#[tokio::test]
async fn pdudaemon_on_off_reboot_reach_the_driver_and_status_is_unknown() {
    let daemon = Pdudaemon::start("lab-pdu");
    let (power, sink) = controller(&pdudaemon_rig(&daemon, "lab-pdu"));

    let probe = power.probe("lab", None).await.unwrap();
    assert!(probe.contains("pdudaemon") && probe.contains("aiohttp"), "{probe}");
    assert!(daemon.driver_calls().is_empty(), "a probe must not switch anything");

    assert_eq!(power.on("ru1").await.unwrap(), PowerState::Unknown);
    assert_eq!(power.off("ru1").await.unwrap(), PowerState::Unknown);
    assert_eq!(power.status("ru1").await.unwrap(), PowerState::Unknown);
    let calls: Vec<(String, String)> = daemon.driver_calls().into_iter().map(|c| (c.action, c.port)).collect();
    assert_eq!(calls, vec![("on".into(), "7".into()), ("off".into(), "7".into())], "{}", daemon.log());

    // 600 ms becomes pdudaemon's whole-second delay of 1 s (never shorter than asked).
    assert_eq!(power.cycle("ru1", Some(Duration::from_millis(600))).await.unwrap(), PowerState::Unknown);
    let calls = daemon.driver_calls();
    assert_eq!(calls.len(), 4, "{}", daemon.log());
    assert_eq!((calls[2].action.as_str(), calls[3].action.as_str()), ("off", "on"));
    assert!(calls[2..].iter().all(|c| c.port == "7"));
    let off_ns = calls[3].at_ns - calls[2].at_ns;
    assert!(off_ns >= 950_000_000, "pdudaemon kept the outlet off only {off_ns} ns");

    use PowerState::*;
    assert_eq!(
        outline(&sink),
        vec![
            ("on".into(), On, Unknown, true),
            ("off".into(), Off, Unknown, true),
            ("status".into(), Unknown, Unknown, true),
            ("cycle".into(), On, Unknown, true),
        ]
    );
    let records = power_records(&sink);
    assert!(records[3].detail.contains("delay=1 s"), "{}", records[3].detail);
    assert!(records[0].detail.contains("cannot report outlet state"));
}

#[tokio::test]
async fn pdudaemon_refuses_a_hostname_it_does_not_know() {
    let daemon = Pdudaemon::start("lab-pdu");
    let (power, sink) = controller(&pdudaemon_rig(&daemon, "other-pdu"));
    let err = power.on("ru1").await.unwrap_err();
    assert!(
        matches!(&err, PowerError::Refused { device, pdu, reason, .. }
            if device == "ru1" && pdu == "lab" && reason.contains("500") && reason.contains("other-pdu")),
        "{err:?}"
    );
    assert!(daemon.driver_calls().is_empty());
    assert_eq!(outline(&sink), vec![("on".into(), PowerState::On, PowerState::Unknown, false)]);
}

#[tokio::test]
async fn probing_a_web_server_that_is_not_pdudaemon_is_an_unexpected_reply() {
    // Some other web service on the configured port: answers 404 to every request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ =
                stream.write_all(b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot here\n");
        }
    });
    let text = single_pdu_rig(&format!("{{ pdudaemon: {{ url: \"http://127.0.0.1:{port}\", hostname: x, timeout_ms: 1000 }} }}"), "1");
    let (power, _) = controller(&text);
    let err = power.probe("p", None).await.unwrap_err();
    match &err {
        PowerError::UnexpectedReply { pdu, reason, .. } => {
            assert_eq!(pdu, "p");
            assert!(reason.contains("404") && reason.contains("nginx"), "{reason}");
        }
        other => panic!("expected UnexpectedReply, got {other:?}"),
    }
}

// ---------------------------------------------------------------- commands

fn command_rig(dir: &Path, on: &str, off: &str, status: Option<&str>, timeout_ms: u64) -> String {
    let status = status.map(|s| format!(", status: {}", yaml_str(s))).unwrap_or_default();
    format!(
        r#"
rig: cmd
pdus:
  usb: {{ command: {{ on: {on}, off: {off}{status}, timeout_ms: {timeout_ms} }} }}
devices:
  ru1: {{ role: radio-unit, power: {{ pdu: usb, outlet: relay-2 }} }}
  ru2: {{ role: radio-unit, power: {{ pdu: usb, outlet: relay-5 }} }}
"#,
        on = yaml_str(&on.replace("$DIR", &dir.display().to_string())),
        off = yaml_str(&off.replace("$DIR", &dir.display().to_string())),
        status = status.replace("$DIR", &dir.display().to_string()),
    )
}

fn yaml_str(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[tokio::test]
async fn command_pdu_switches_through_scripts_and_reads_status_back() {
    let dir = tempfile::tempdir().unwrap();
    let text = command_rig(
        dir.path(),
        "echo on > $DIR/state-{outlet}",
        "echo off > $DIR/state-{outlet}; echo \"$PROOFRIG_DEVICE $PROOFRIG_ACTION\" >> $DIR/env",
        Some("cat $DIR/state-{outlet}"),
        2000,
    );
    let (power, sink) = controller(&text);
    let state = |outlet: &str| std::fs::read_to_string(dir.path().join(format!("state-{outlet}"))).unwrap();

    assert_eq!(power.on("ru1").await.unwrap(), PowerState::On);
    assert_eq!(state("relay-2"), "on\n");
    assert_eq!(power.status("ru1").await.unwrap(), PowerState::On);
    assert_eq!(power.off("ru1").await.unwrap(), PowerState::Off);
    assert_eq!(state("relay-2"), "off\n");
    assert_eq!(std::fs::read_to_string(dir.path().join("env")).unwrap(), "ru1 off\n");
    assert_eq!(power.status("ru1").await.unwrap(), PowerState::Off);
    assert!(!dir.path().join("state-relay-5").exists());

    use PowerState::*;
    assert_eq!(
        outline(&sink),
        vec![
            ("on".into(), On, On, true),
            ("status".into(), Unknown, On, true),
            ("off".into(), Off, Off, true),
            ("status".into(), Unknown, Off, true),
        ]
    );
    assert_eq!(power_records(&sink)[0].outlet, "relay-2");
    assert!(power.probe("usb", None).await.unwrap().contains("relay-2: off"));
}

#[tokio::test]
async fn command_pdu_without_status_reports_unknown_and_cannot_be_probed() {
    let dir = tempfile::tempdir().unwrap();
    let text = command_rig(dir.path(), "echo on > $DIR/s", "echo off > $DIR/s", None, 2000);
    let (power, sink) = controller(&text);
    assert_eq!(power.on("ru1").await.unwrap(), PowerState::Unknown);
    assert_eq!(std::fs::read_to_string(dir.path().join("s")).unwrap(), "on\n");
    assert_eq!(power.status("ru1").await.unwrap(), PowerState::Unknown);
    assert!(matches!(power.probe("usb", None).await.unwrap_err(), PowerError::NothingToProbe { .. }));
    assert_eq!(
        outline(&sink),
        vec![("on".into(), PowerState::On, PowerState::Unknown, true), ("status".into(), PowerState::Unknown, PowerState::Unknown, true)]
    );
}

#[tokio::test]
async fn command_failures_mismatches_and_hangs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A switch that "works" but the status says otherwise.
    let text = command_rig(dir.path(), "true", "echo 'relay jammed' >&2; exit 3", Some("echo off"), 2000);
    let (power, sink) = controller(&text);
    let err = power.on("ru1").await.unwrap_err();
    assert!(matches!(err, PowerError::ReadbackMismatch { requested: PowerState::On, read: PowerState::Off, .. }), "{err:?}");
    let err = power.off("ru1").await.unwrap_err();
    assert!(
        matches!(&err, PowerError::Refused { action, reason, .. } if *action == "off" && reason.contains("exited 3") && reason.contains("relay jammed")),
        "{err:?}"
    );
    assert_eq!(
        outline(&sink),
        vec![("on".into(), PowerState::On, PowerState::Off, false), ("off".into(), PowerState::Off, PowerState::Unknown, false)]
    );

    // A hanging command is killed at the timeout, together with what it started.
    let text = command_rig(dir.path(), "(sleep 0.5; echo late > $DIR/late) & sleep 30", "true", None, 300);
    let (power, sink) = controller(&text);
    let started = Instant::now();
    let err = power.on("ru1").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, PowerError::CommandTimedOut { device, pdu, action, after_ms, .. }
            if device == "ru1" && pdu == "usb" && *action == "on" && *after_ms >= 290),
        "{err:?}"
    );
    assert!(took < Duration::from_millis(600), "took {took:?}");
    assert_eq!(outline(&sink), vec![("on".into(), PowerState::On, PowerState::Unknown, false)]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!dir.path().join("late").exists(), "the command's background job survived the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_to_one_command_pdu_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    // mkdir is atomic: if it fails, another command for this PDU is running right now.
    let busy = "mkdir $DIR/busy 2>/dev/null || echo overlap >> $DIR/overlaps; sleep 0.03; rmdir $DIR/busy 2>/dev/null";
    let text = command_rig(dir.path(), &format!("{busy}; echo on >> $DIR/log"), &format!("{busy}; echo off >> $DIR/log"), None, 3000);
    let (power, sink) = controller(&text);
    let tasks: Vec<_> = ["ru1", "ru2"]
        .into_iter()
        .map(|device| {
            let power = power.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    power.on(device).await.unwrap();
                    power.off(device).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(!dir.path().join("overlaps").exists(), "two commands for one PDU ran at the same time");
    assert_eq!(std::fs::read_to_string(dir.path().join("log")).unwrap().lines().count(), 12);
    assert_eq!(power_records(&sink).len(), 12);
}
