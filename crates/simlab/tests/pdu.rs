//! The simulated PDU's coil hook as the sim lab relies on it, through a real
//! tokio-modbus client: a write is acknowledged only after the hook has finished,
//! and changes reach the hook in the order the coils took them. (The board's
//! Modbus behaviour itself is tested by the power agent's tests, `crates/agents/tests/power.rs`.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proofrig_simlab::{PduOptions, SimError, SimPdu};
use tokio_modbus::client::tcp;
use tokio_modbus::prelude::{Reader, Slave, Writer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_acknowledged_after_the_hook_has_switched_the_load() {
    let pdu = SimPdu::start_with(PduOptions { coils: 4, unit: 1, port: None }).unwrap();
    let load: Arc<Mutex<Vec<(u16, bool)>>> = Arc::default();
    let switched = Arc::clone(&load);
    pdu.on_change_async(move |coil, value| {
        let switched = Arc::clone(&switched);
        async move {
            // A slow load: the reply must wait for it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            switched.lock().unwrap().push((coil, value));
        }
    });

    let mut client = tcp::connect_slave(pdu.addr(), Slave(1)).await.unwrap();
    let started = Instant::now();
    client.write_single_coil(2, true).await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(*load.lock().unwrap(), vec![(2, true)]);
    assert_eq!(client.read_coils(0, 4).await.unwrap().unwrap(), vec![false, false, true, false]);

    // Writing the value a coil already has changes nothing and does not wait.
    let started = Instant::now();
    client.write_single_coil(2, true).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(load.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_switches_reach_the_hook_in_order() {
    let pdu = SimPdu::start(3).unwrap();
    let seen: Arc<Mutex<Vec<(u16, bool)>>> = Arc::default();
    let record = Arc::clone(&seen);
    pdu.on_change_async(move |coil, value| {
        let record = Arc::clone(&record);
        async move {
            // Later changes finish their hook faster: only a queue keeps the order.
            let pause = if value { 50 } else { 1 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            record.lock().unwrap().push((coil, value));
        }
    });
    pdu.set_coil(0, true).unwrap();
    pdu.set_coil(0, false).unwrap();
    pdu.set_coil(1, true).unwrap();
    pdu.switch_coil(1, false).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(0, true), (0, false), (1, true), (1, false)]);
    assert!(matches!(pdu.set_coil(3, true), Err(SimError::NoSuchCoil { coil: 3, coils: 3 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_frees_the_port() {
    let mut pdu = SimPdu::start(1).unwrap();
    let addr = pdu.addr();
    pdu.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still listening after stop");
    let again = SimPdu::start_with(PduOptions { coils: 1, unit: 1, port: Some(addr.port()) });
    assert!(again.is_ok(), "port not reusable: {again:?}");
}
