//! What proofrig's power path costs on top of plain Modbus.
//!
//! One coil write plus read-back through `PowerController` (device lookup, per-PDU
//! lock, kept connection, evidence event into a memory sink) against the named
//! baseline: a plain tokio-modbus client doing `write_single_coil` + `read_coils` on
//! a kept-open connection. Both talk to the same testpeers Modbus server (its own
//! thread) in one run, in interleaved rounds so drift hits both alike. Two reference
//! lines put the ratio in context: the baseline client on a TCP_NODELAY socket (which
//! proofrig sets and plain `connect_slave` does not), and a fresh TCP connection per
//! action (what keeping one connection per PDU avoids).
//!
//! Run: `cargo bench -p proofrig-agents --bench modbus_coil`.

use std::time::{Duration, Instant};

use proofrig_agents::power::PowerController;
use proofrig_model::events::{MemorySink, PowerState, Recorder};
use proofrig_model::rig::Rig;
use proofrig_testpeers::modbus::ModbusServer;
use tokio_modbus::client::tcp;
use tokio_modbus::prelude::{Reader, Slave, Writer};

const ITERATIONS: usize = 1000;
const ROUNDS: usize = 10;
const WARMUP: usize = 100;

fn main() {
    let board = ModbusServer::start(16);
    let addr = board.addr();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let rig = Rig::parse(
        "bench.yaml",
        &format!(
            "rig: bench\npdus:\n  relays: {{ modbus: {{ host: 127.0.0.1, port: {} }} }}\n\
             devices:\n  ru1: {{ role: radio-unit, power: {{ pdu: relays, outlet: 3 }} }}\n",
            addr.port()
        ),
        std::path::Path::new("/"),
    )
    .expect("bench rig");
    let sink = MemorySink::new();
    let power = PowerController::new(&rig, Recorder::new(sink.clone())).expect("controller");

    let (proofrig, baseline, nodelay, reconnecting) = runtime.block_on(async {
        let mut client = tcp::connect_slave(addr, Slave(1)).await.expect("baseline connect");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("nodelay connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut nodelay_client = tcp::attach_slave(stream, Slave(1));
        let mut proofrig = Vec::with_capacity(ITERATIONS);
        let mut baseline = Vec::with_capacity(ITERATIONS);
        let mut nodelay = Vec::with_capacity(ITERATIONS);
        let mut reconnecting = Vec::with_capacity(ITERATIONS);
        let mut on = false;

        let proofrig_once = |on: bool| {
            let power = power.clone();
            async move {
                let started = Instant::now();
                let state = if on { power.on("ru1").await } else { power.off("ru1").await }.expect("proofrig switch");
                let took = started.elapsed();
                assert_eq!(state, if on { PowerState::On } else { PowerState::Off });
                took
            }
        };
        for i in 0..WARMUP {
            proofrig_once(i % 2 == 0).await;
            baseline_once(&mut client, 4, i % 2 == 0).await;
            baseline_once(&mut nodelay_client, 6, i % 2 == 0).await;
        }
        for _ in 0..ROUNDS {
            for _ in 0..ITERATIONS / ROUNDS {
                on = !on;
                proofrig.push(proofrig_once(on).await);
            }
            for _ in 0..ITERATIONS / ROUNDS {
                on = !on;
                baseline.push(baseline_once(&mut client, 4, on).await);
            }
            for _ in 0..ITERATIONS / ROUNDS {
                on = !on;
                nodelay.push(baseline_once(&mut nodelay_client, 6, on).await);
            }
            for _ in 0..ITERATIONS / ROUNDS {
                on = !on;
                let started = Instant::now();
                let mut fresh = tcp::connect_slave(addr, Slave(1)).await.expect("connect");
                fresh.write_single_coil(5, on).await.expect("wire").expect("modbus");
                let read = fresh.read_coils(5, 1).await.expect("wire").expect("modbus");
                reconnecting.push(started.elapsed());
                assert_eq!(read[0], on);
            }
        }
        (proofrig, baseline, nodelay, reconnecting)
    });

    assert_eq!(sink.events().len(), WARMUP + ITERATIONS, "every proofrig action must be recorded");
    let proofrig = Stats::of(proofrig);
    let baseline = Stats::of(baseline);
    let nodelay = Stats::of(nodelay);
    let reconnecting = Stats::of(reconnecting);
    println!("modbus write+readback, N={ITERATIONS} each, testpeers server on {addr}");
    println!("  proofrig PowerController : {proofrig}");
    println!("  baseline tokio-modbus    : {baseline}  (write_single_coil + read_coils, kept-open connection)");
    println!("  reference, TCP_NODELAY   : {nodelay}  (same plain client on a socket with TCP_NODELAY, as proofrig uses)");
    println!("  reference, connect/action: {reconnecting}  (plain client, new TCP connection per action)");
    println!(
        "modbus write+readback: proofrig p50 {:.0} µs, baseline p50 {:.0} µs, ratio {:.2}x (mean ratio {:.2}x, p99 ratio {:.2}x)",
        micros(proofrig.p50),
        micros(baseline.p50),
        proofrig.p50.as_secs_f64() / baseline.p50.as_secs_f64(),
        proofrig.mean.as_secs_f64() / baseline.mean.as_secs_f64(),
        proofrig.p99.as_secs_f64() / baseline.p99.as_secs_f64(),
    );
    println!(
        "proofrig used {} TCP connection(s) to the board in total (baseline: 1, references: 1 and {})",
        board.connections_accepted() - 2 - ITERATIONS as u64,
        ITERATIONS
    );
}

async fn baseline_once(client: &mut tokio_modbus::client::Context, coil: u16, on: bool) -> Duration {
    let started = Instant::now();
    client.write_single_coil(coil, on).await.expect("wire").expect("modbus");
    let read = client.read_coils(coil, 1).await.expect("wire").expect("modbus");
    let took = started.elapsed();
    assert_eq!(read[0], on);
    took
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)];
        Stats { mean, p50: at(0.50), p99: at(0.99) }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mean {:6.1} µs  p50 {:6.1} µs  p99 {:6.1} µs", micros(self.mean), micros(self.p50), micros(self.p99))
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
