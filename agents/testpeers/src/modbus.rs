//! A Modbus TCP relay board on loopback, built on tokio-modbus's own server.
//!
//! Power tests need a PDU whose coils they can inspect and misbehave on purpose:
//! the coils live in shared state the test reads directly, every request is logged
//! with its connection and timing (so a test can prove that write + read-back pairs
//! were never interleaved), chosen coils can ignore writes (a relay that does not
//! follow), replies can be delayed (to widen race windows), and a hook sees every
//! coil change (so a simulated lab can let coils power simulated devices).
//! The server runs on its own thread and runtime, independent of the caller's, and
//! stops when dropped.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::server::Service;

/// Called with (coil, new value) whenever a coil changes.
pub type CoilHook = Arc<dyn Fn(u16, bool) + Send + Sync>;

/// How to start a [`ModbusServer`].
#[derive(Debug, Clone)]
pub struct ModbusOptions {
    /// Number of coils, addressed 0..coils.
    pub coils: u16,
    /// Unit id the board answers to; requests for other units get a
    /// "gateway target device failed to respond" exception, like a real gateway.
    pub unit: u8,
    /// Port on 127.0.0.1; `None` picks a free one. Reusing a port lets a test
    /// "restart the PDU" underneath a client that keeps its connection open.
    pub port: Option<u16>,
}

impl Default for ModbusOptions {
    fn default() -> Self {
        Self { coils: 16, unit: 1, port: None }
    }
}

/// What a logged request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoilOp {
    Read {
        coil: u16,
        count: u16,
    },
    Write {
        coil: u16,
        value: bool,
    },
    /// Any other function code (answered with "illegal function").
    Other {
        function: u8,
    },
}

/// One request as the server saw it.
#[derive(Debug, Clone, Copy)]
pub struct LoggedRequest {
    /// Which accepted connection carried it (1-based, in accept order).
    pub connection: u64,
    pub unit: u8,
    pub op: CoilOp,
    pub received: Instant,
}

struct BankState {
    coils: Vec<bool>,
    stuck: HashSet<u16>,
    log: Vec<LoggedRequest>,
    in_flight: usize,
    max_in_flight: usize,
    reply_delay: Duration,
    hook: Option<CoilHook>,
}

struct CoilBank {
    unit: u8,
    state: Mutex<BankState>,
    connections: AtomicU64,
}

impl CoilBank {
    fn lock(&self) -> MutexGuard<'_, BankState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn handle(&self, connection: u64, req: SlaveRequest<'static>) -> Result<Response, ExceptionCode> {
        let op = match &req.request {
            Request::ReadCoils(coil, count) => CoilOp::Read { coil: *coil, count: *count },
            Request::WriteSingleCoil(coil, value) => CoilOp::Write { coil: *coil, value: *value },
            other => CoilOp::Other { function: other.function_code().value() },
        };
        let delay = {
            let mut state = self.lock();
            state.log.push(LoggedRequest { connection, unit: req.slave, op, received: Instant::now() });
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
            state.reply_delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (result, changed) = self.apply(req.slave, op);
        let hook = {
            let mut state = self.lock();
            state.in_flight -= 1;
            state.hook.clone()
        };
        // Outside the lock: a hook may well read the coils back.
        if let (Some(hook), Some((coil, value))) = (hook, changed) {
            hook(coil, value);
        }
        result
    }

    fn apply(&self, unit: u8, op: CoilOp) -> (Result<Response, ExceptionCode>, Option<(u16, bool)>) {
        if unit != self.unit {
            return (Err(ExceptionCode::GatewayTargetDevice), None);
        }
        let mut state = self.lock();
        let len = state.coils.len();
        match op {
            CoilOp::Read { coil, count } => {
                let (start, end) = (coil as usize, coil as usize + count as usize);
                if count == 0 || end > len {
                    return (Err(ExceptionCode::IllegalDataAddress), None);
                }
                (Ok(Response::ReadCoils(state.coils[start..end].to_vec())), None)
            }
            CoilOp::Write { coil, value } => {
                if coil as usize >= len {
                    return (Err(ExceptionCode::IllegalDataAddress), None);
                }
                // A relay that does not follow still acknowledges the write, as the
                // protocol echoes the request; only reading back reveals the truth.
                let mut changed = None;
                if !state.stuck.contains(&coil) && state.coils[coil as usize] != value {
                    state.coils[coil as usize] = value;
                    changed = Some((coil, value));
                }
                (Ok(Response::WriteSingleCoil(coil, value)), changed)
            }
            CoilOp::Other { .. } => (Err(ExceptionCode::IllegalFunction), None),
        }
    }
}

struct CoilService {
    bank: Arc<CoilBank>,
    connection: u64,
}

impl Service for CoilService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let bank = Arc::clone(&self.bank);
        let connection = self.connection;
        Box::pin(async move { bank.handle(connection, req).await })
    }
}

/// A running Modbus TCP server with inspectable coils. Stops on drop.
pub struct ModbusServer {
    addr: SocketAddr,
    bank: Arc<CoilBank>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModbusServer {
    /// `coils` coils, unit 1, on a free port.
    pub fn start(coils: u16) -> ModbusServer {
        Self::start_with(ModbusOptions { coils, ..ModbusOptions::default() })
    }

    pub fn start_with(options: ModbusOptions) -> ModbusServer {
        // Bound here, synchronously, so the port is taken before start returns.
        let listener = std::net::TcpListener::bind(("127.0.0.1", options.port.unwrap_or(0)))
            .unwrap_or_else(|e| panic!("Modbus test server cannot bind 127.0.0.1:{:?}: {e}", options.port));
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("bound address");
        let bank = Arc::new(CoilBank {
            unit: options.unit,
            state: Mutex::new(BankState {
                coils: vec![false; options.coils as usize],
                stuck: HashSet::new(),
                log: Vec::new(),
                in_flight: 0,
                max_in_flight: 0,
                reply_delay: Duration::ZERO,
                hook: None,
            }),
            connections: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&bank);
        let thread = std::thread::Builder::new()
            .name(format!("modbus-peer-{}", addr.port()))
            .spawn(move || serve(listener, served, stop_rx))
            .expect("spawn Modbus server thread");
        ModbusServer { addr, bank, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn coil(&self, coil: u16) -> bool {
        self.bank.lock().coils[coil as usize]
    }

    pub fn coils(&self) -> Vec<bool> {
        self.bank.lock().coils.clone()
    }

    /// Set a coil as if someone flipped the relay by hand (fires the hook on change).
    pub fn set_coil(&self, coil: u16, value: bool) {
        let hook = {
            let mut state = self.bank.lock();
            let slot = &mut state.coils[coil as usize];
            let changed = *slot != value;
            *slot = value;
            changed.then(|| state.hook.clone()).flatten()
        };
        if let Some(hook) = hook {
            hook(coil, value);
        }
    }

    /// Make `coil` acknowledge writes without changing (a welded or dead relay).
    pub fn ignore_writes(&self, coil: u16, ignore: bool) {
        let mut state = self.bank.lock();
        if ignore {
            state.stuck.insert(coil);
        } else {
            state.stuck.remove(&coil);
        }
    }

    /// Hold every reply for `delay` (after logging the request).
    pub fn set_reply_delay(&self, delay: Duration) {
        self.bank.lock().reply_delay = delay;
    }

    /// Call `hook(coil, value)` on every coil change; runs on the server thread.
    pub fn on_change(&self, hook: impl Fn(u16, bool) + Send + Sync + 'static) {
        self.bank.lock().hook = Some(Arc::new(hook));
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.bank.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        let mut state = self.bank.lock();
        state.log.clear();
        state.max_in_flight = state.in_flight;
    }

    /// The largest number of requests that were being handled at the same time.
    pub fn max_concurrent_requests(&self) -> usize {
        self.bank.lock().max_in_flight
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.bank.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: std::net::TcpListener, bank: Arc<CoilBank>, stop: tokio::sync::oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("Modbus server runtime");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let server = Server::new(listener);
        let on_connected = |stream: TcpStream, peer: SocketAddr| {
            let connection = bank.connections.fetch_add(1, Ordering::SeqCst) + 1;
            let bank = Arc::clone(&bank);
            async move {
                // A relay board answers each request with one small frame; Nagle would
                // only add latency that no real board has.
                stream.set_nodelay(true)?;
                accept_tcp_connection(stream, peer, |_| {
                    Ok::<_, io::Error>(Some(CoilService { bank: Arc::clone(&bank), connection }))
                })
            }
        };
        let stopped = async move {
            let _ = stop.await;
        };
        // A client vanishing mid-request is normal in tests (timeouts); nothing to report.
        let _ = server.serve_until(&on_connected, |_err| {}, stopped).await;
    });
    // Dropping the runtime here drops every connection task, closing their sockets.
}
