//! The simulated lab's PDU: a Modbus TCP relay board built on tokio-modbus's own
//! server, whose coils power the simulated devices.
//!
//! It is product code because `proofrig demo` runs it, and the test suite uses the
//! very same board (through `proofrig-testpeers`) as the peer of the power agent, so
//! it also keeps the faults a test needs to provoke: the coils live in shared state
//! anyone can read directly, every request is logged with its connection and
//! timing (so a test can prove that write + read-back pairs were never
//! interleaved), chosen coils can ignore writes (a relay that does not follow),
//! replies can be delayed (to widen race windows), and a hook sees every coil
//! change (that is how coils power simulated devices).
//!
//! The server runs on its own thread and runtime, independent of the caller's, so a
//! caller that blocks its own runtime (a synchronous test, a benchmark) still gets
//! answers. Coil changes reach the hook in the order they happened; a Modbus write
//! is acknowledged only once the hook has finished, like a relay that answers after
//! it switched, so a client that got its reply can rely on the load having followed.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::server::Service;

use crate::SimError;

/// What runs when a coil changes, with (coil, new value); the change counts as done
/// when the returned future completes.
pub type CoilHook = Arc<dyn Fn(u16, bool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How to start a [`SimPdu`].
#[derive(Debug, Clone)]
pub struct PduOptions {
    /// Number of coils, addressed 0..coils.
    pub coils: u16,
    /// Unit id the board answers to; requests for other units get a
    /// "gateway target device failed to respond" exception, like a real gateway.
    pub unit: u8,
    /// Port to listen on; `None` picks a free one. Reusing a port lets a test
    /// "restart the PDU" underneath a client that keeps its connection open.
    pub port: Option<u16>,
}

impl Default for PduOptions {
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

/// One request as the board saw it.
#[derive(Debug, Clone, Copy)]
pub struct LoggedRequest {
    /// Which accepted connection carried it (1-based, in accept order).
    pub connection: u64,
    pub unit: u8,
    pub op: CoilOp,
    pub received: Instant,
}

/// A coil change on its way to the hook.
struct CoilChange {
    coil: u16,
    value: bool,
    hook: CoilHook,
    /// Told once the hook has finished, for callers that wait for the load.
    done: Option<oneshot::Sender<()>>,
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
    changes: mpsc::UnboundedSender<CoilChange>,
}

impl CoilBank {
    fn lock(&self) -> MutexGuard<'_, BankState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `coil` (already range-checked) and queues the hook if it changed; the
    /// returned receiver resolves once the hook has run. Queued under the lock so
    /// the hook sees changes in the order the coils took them.
    fn switch(&self, state: &mut BankState, coil: u16, value: bool) -> Option<oneshot::Receiver<()>> {
        let slot = &mut state.coils[coil as usize];
        if *slot == value {
            return None;
        }
        *slot = value;
        let hook = state.hook.clone()?;
        let (done, finished) = oneshot::channel();
        let change = CoilChange { coil, value, hook, done: Some(done) };
        // Fails only while the board shuts down; nobody is left to power then.
        self.changes.send(change).ok()?;
        Some(finished)
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
        let (result, switched) = self.apply(req.slave, op);
        if let Some(switched) = switched {
            let _ = switched.await;
        }
        self.lock().in_flight -= 1;
        result
    }

    fn apply(&self, unit: u8, op: CoilOp) -> (Result<Response, ExceptionCode>, Option<oneshot::Receiver<()>>) {
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
                let switched = if state.stuck.contains(&coil) { None } else { self.switch(&mut state, coil, value) };
                (Ok(Response::WriteSingleCoil(coil, value)), switched)
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

/// A running Modbus TCP relay board with inspectable coils, all off at start.
/// Stops on drop (briefly joining its thread) or with [`SimPdu::stop`].
pub struct SimPdu {
    addr: SocketAddr,
    bank: Arc<CoilBank>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SimPdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPdu").field("addr", &self.addr).field("unit", &self.bank.unit).finish_non_exhaustive()
    }
}

impl SimPdu {
    /// `coils` coils, unit 1, on a free port of 127.0.0.1.
    pub fn start(coils: u16) -> Result<SimPdu, SimError> {
        Self::start_with(PduOptions { coils, ..PduOptions::default() })
    }

    /// On 127.0.0.1.
    pub fn start_with(options: PduOptions) -> Result<SimPdu, SimError> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), options)
    }

    /// On `ip` (a local address), port `options.port` or a free one.
    pub fn start_on(ip: IpAddr, options: PduOptions) -> Result<SimPdu, SimError> {
        let wanted = SocketAddr::new(ip, options.port.unwrap_or(0));
        let bind_error = |source| SimError::Bind { addr: wanted, source };
        // Bound here, synchronously, so the port is taken before start returns.
        let listener = std::net::TcpListener::bind(wanted).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(SimError::Runtime)?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener).map_err(bind_error)?
        };
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
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
            changes: changes_tx,
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
        let served = Arc::clone(&bank);
        let thread = std::thread::Builder::new()
            .name(format!("sim-pdu-{}", addr.port()))
            .spawn(move || {
                serve(runtime, listener, served, changes_rx, stop_rx);
                let _ = stopped_tx.send(());
            })
            .map_err(SimError::Thread)?;
        Ok(SimPdu { addr, bank, stop: Some(stop_tx), stopped: Some(stopped_rx), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn unit(&self) -> u8 {
        self.bank.unit
    }

    /// Number of coils.
    pub fn coil_count(&self) -> u16 {
        self.bank.lock().coils.len() as u16
    }

    /// A coil's state; `None` beyond the last coil.
    pub fn coil(&self, coil: u16) -> Option<bool> {
        self.bank.lock().coils.get(coil as usize).copied()
    }

    pub fn coils(&self) -> Vec<bool> {
        self.bank.lock().coils.clone()
    }

    /// Sets a coil as if someone flipped the relay by hand. A change reaches the
    /// hook soon after, in order with every other change, without waiting for it.
    pub fn set_coil(&self, coil: u16, value: bool) -> Result<(), SimError> {
        let mut state = self.bank.lock();
        self.check_coil(&state, coil)?;
        // Dropping the receiver only means nobody waits; the hook still runs.
        drop(self.bank.switch(&mut state, coil, value));
        Ok(())
    }

    /// Like [`SimPdu::set_coil`], but returns only once the hook has handled the
    /// change (at once when the coil already had that value or there is no hook).
    pub async fn switch_coil(&self, coil: u16, value: bool) -> Result<(), SimError> {
        let switched = {
            let mut state = self.bank.lock();
            self.check_coil(&state, coil)?;
            self.bank.switch(&mut state, coil, value)
        };
        if let Some(switched) = switched {
            switched.await.map_err(|_| SimError::Stopped)?;
        }
        Ok(())
    }

    fn check_coil(&self, state: &BankState, coil: u16) -> Result<(), SimError> {
        if (coil as usize) < state.coils.len() {
            Ok(())
        } else {
            Err(SimError::NoSuchCoil { coil, coils: state.coils.len() as u16 })
        }
    }

    /// Makes `coil` acknowledge writes without changing (a welded or dead relay).
    pub fn ignore_writes(&self, coil: u16, ignore: bool) {
        let mut state = self.bank.lock();
        if ignore {
            state.stuck.insert(coil);
        } else {
            state.stuck.remove(&coil);
        }
    }

    /// Holds every reply for `delay` (after logging the request).
    pub fn set_reply_delay(&self, delay: Duration) {
        self.bank.lock().reply_delay = delay;
    }

    /// Calls `hook(coil, value)` on every later coil change, on the board's thread.
    /// It must not block: it holds up the Modbus reply and every later change.
    pub fn on_change(&self, hook: impl Fn(u16, bool) + Send + Sync + 'static) {
        self.on_change_async(move |coil, value| {
            hook(coil, value);
            std::future::ready(())
        });
    }

    /// Runs `hook(coil, value)` to completion on every later coil change, one
    /// change at a time and in order, on the board's runtime. A Modbus write that
    /// changed a coil is acknowledged once its hook has finished.
    pub fn on_change_async<F, Fut>(&self, hook: F)
    where
        F: Fn(u16, bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: CoilHook = Arc::new(move |coil, value| Box::pin(hook(coil, value)));
        self.bank.lock().hook = Some(hook);
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

    /// Stops serving and closes every connection, without blocking the caller's
    /// runtime; the port is free once this returns.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
        if let Some(thread) = self.thread.take() {
            // Already past its last statement: joining only reaps it.
            let _ = thread.join();
        }
    }
}

impl Drop for SimPdu {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    bank: Arc<CoilBank>,
    mut changes: mpsc::UnboundedReceiver<CoilChange>,
    stop: oneshot::Receiver<()>,
) {
    runtime.block_on(async move {
        // One task applies every change, so the hook sees them in order.
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                (change.hook)(change.coil, change.value).await;
                if let Some(done) = change.done {
                    let _ = done.send(());
                }
            }
        });
        let server = Server::new(listener);
        let on_connected = |stream: TcpStream, peer: SocketAddr| {
            let connection = bank.connections.fetch_add(1, Ordering::SeqCst) + 1;
            let bank = Arc::clone(&bank);
            async move {
                // A relay board answers each request with one small frame; Nagle would
                // only add latency that no real board has.
                stream.set_nodelay(true)?;
                accept_tcp_connection(stream, peer, |_| Ok::<_, io::Error>(Some(CoilService { bank: Arc::clone(&bank), connection })))
            }
        };
        let stopped = async move {
            let _ = stop.await;
        };
        // A client vanishing mid-request is normal (timeouts); nothing to report.
        let _ = server.serve_until(&on_connected, |_err| {}, stopped).await;
    });
    // Dropping the runtime drops every connection task, closing their sockets.
    drop(runtime);
}
