//! A syslog receiver on the lab host: the central log storage a device is configured
//! to send its records to, for the length of one step (TS 33.117 4.2.3.6.2).
//!
//! It binds where the rig says the device sends (`declared.log_server`), UDP or TCP,
//! and records everything that arrives, as it arrives: each UDP datagram whole, each
//! read of a TCP connection with the connection's peer (both as `Datagram` events, on
//! `syslog` and `syslog:tcp`), redacted like every other event. The records a step
//! reports are parsed from those recorded bytes by `proofrig_model::wire::syslog`, so
//! `verify` derives the same records from the journal.
//!
//! What makes the device send is the step's business (a refused login, see
//! `proofrig_run`); the receiver only waits until a record the caller looks for has
//! come, or its time is up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use proofrig_model::events::{ChannelId, Direction, EventKind, Recorder};
use proofrig_model::wire::syslog::{channel, joined, records, Listen, Record, Transport};

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error(
        "device {device}: cannot listen for its log records at {listen}: {source}; \
         the rig's declared.log_server must be an address of this lab host that the device sends to"
    )]
    Bind { device: String, listen: Listen, source: std::io::Error },
}

/// What has arrived so far: (peer, bytes) in arrival order, as recorded.
type Arrivals = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver listening for one step.
pub struct Receiver {
    listen: Listen,
    arrivals: Arrivals,
    arrived: Arc<Notify>,
    tasks: JoinSet<()>,
}

impl Receiver {
    /// Bind `listen` and start recording what arrives for `device`.
    pub async fn start(device: &str, listen: Listen, recorder: &Recorder) -> Result<Receiver, SyslogError> {
        let bind_error = |source| SyslogError::Bind { device: device.to_string(), listen, source };
        let arrivals: Arrivals = Arc::default();
        let arrived = Arc::new(Notify::new());
        let channel = ChannelId::new(device, channel(listen.transport));
        let mut tasks = JoinSet::new();
        let keep = Keep { channel, recorder: recorder.clone(), arrivals: arrivals.clone(), arrived: arrived.clone() };
        match listen.transport {
            Transport::Udp => {
                let socket = UdpSocket::bind(listen.address).await.map_err(bind_error)?;
                tasks.spawn(async move {
                    let mut buffer = vec![0u8; 65_536];
                    while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                        keep.arrival(peer.to_string(), &buffer[..len]);
                    }
                });
            }
            Transport::Tcp => {
                let listener = TcpListener::bind(listen.address).await.map_err(bind_error)?;
                tasks.spawn(async move {
                    let mut connections = JoinSet::new();
                    while let Ok((mut stream, peer)) = listener.accept().await {
                        let keep = keep.clone();
                        connections.spawn(async move {
                            let mut buffer = vec![0u8; 16_384];
                            while let Ok(len @ 1..) = stream.read(&mut buffer).await {
                                keep.arrival(peer.to_string(), &buffer[..len]);
                            }
                        });
                    }
                });
            }
        }
        Ok(Receiver { listen, arrivals, arrived, tasks })
    }

    pub fn listen(&self) -> Listen {
        self.listen
    }

    /// The records received so far, parsed from the recorded bytes.
    pub fn records(&self) -> Vec<Record> {
        records(self.listen.transport, &joined(self.listen.transport, &self.arrivals.lock().expect("arrivals lock")))
    }

    /// Wait until `found` holds for the records received, or `wait` has passed;
    /// returns the records either way.
    pub async fn wait_for(&self, found: impl Fn(&[Record]) -> bool, wait: Duration) -> Vec<Record> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let now = self.records();
            if found(&now) {
                return now;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.records();
            }
        }
    }

    /// Stop listening: nothing is recorded after this returns.
    pub async fn stop(mut self) -> Vec<Record> {
        self.tasks.shutdown().await;
        self.records()
    }
}

/// Records one arrival and wakes the waiter.
#[derive(Clone)]
struct Keep {
    channel: ChannelId,
    recorder: Recorder,
    arrivals: Arrivals,
    arrived: Arc<Notify>,
}

impl Keep {
    fn arrival(&self, peer: String, data: &[u8]) {
        // Kept as recorded (redacted), so the step's records are the journal's.
        let kept = self.recorder.redactor().redact(data).into_owned();
        self.recorder.emit(EventKind::Datagram { channel: self.channel.clone(), direction: Direction::In, peer: peer.clone(), data: data.to_vec() });
        self.arrivals.lock().expect("arrivals lock").push((peer, kept));
        self.arrived.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofrig_model::events::MemorySink;

    #[tokio::test]
    async fn records_udp_datagrams_and_tcp_streams_as_they_arrive() {
        for transport in [Transport::Udp, Transport::Tcp] {
            let port = match transport {
                Transport::Udp => std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
                Transport::Tcp => std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
            };
            let listen = Listen { transport, address: ([127, 0, 0, 1], port).into() };
            let sink = MemorySink::new();
            let receiver = Receiver::start("dev1", listen, &Recorder::new(sink.clone())).await.unwrap();
            match transport {
                Transport::Udp => {
                    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    socket.send_to(b"<38>one", listen.address).await.unwrap();
                    socket.send_to(b"<38>two", listen.address).await.unwrap();
                }
                Transport::Tcp => {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = tokio::net::TcpStream::connect(listen.address).await.unwrap();
                    stream.write_all(b"<38>one\n<38>tw").await.unwrap();
                    stream.write_all(b"o\n").await.unwrap();
                }
            }
            let got = receiver.wait_for(|r| r.iter().any(|r| r.text == "two"), Duration::from_secs(5)).await;
            assert_eq!(got.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["one", "two"], "{transport:?}");
            let stopped = receiver.stop().await;
            assert_eq!(stopped, got);
            let recorded: Vec<(String, Vec<u8>)> = sink
                .events()
                .into_iter()
                .filter_map(|e| match e.kind {
                    EventKind::Datagram { channel: c, peer, data, .. } if c.channel == channel(transport) => Some((peer, data)),
                    _ => None,
                })
                .collect();
            assert_eq!(records(transport, &joined(transport, &recorded)), got, "{transport:?}: the journal gives the same records");
        }
    }

    #[tokio::test]
    async fn an_address_not_of_this_host_is_an_error_naming_the_rig_value() {
        let listen = Listen::parse("udp:192.0.2.1:5514").unwrap();
        let err = Receiver::start("ru1", listen, &Recorder::new(MemorySink::new())).await.err().expect("cannot bind");
        assert!(err.to_string().contains("declared.log_server"), "{err}");
    }
}
