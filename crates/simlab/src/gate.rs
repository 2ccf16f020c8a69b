//! A TCP listener that power can switch off and on, for every network service of a
//! simulated device.
//!
//! Cutting a device's power must look like it from the network: new connections
//! are refused (the listening socket is closed, not just ignored) and established
//! ones die. Powering back on listens again on the same address and port, so rig
//! files and pinned host keys stay valid.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::device_os::DeviceOs;
use crate::SimError;

/// Serves one accepted connection until it ends.
pub(crate) type ConnectionHandler = Arc<dyn Fn(TcpStream, SocketAddr) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub(crate) struct PowerGate {
    addr: SocketAddr,
    program: String,
    os: DeviceOs,
    handler: ConnectionHandler,
    state: Arc<Mutex<GateState>>,
    /// Serializes power transitions, so two concurrent "on" calls cannot race to
    /// bind the port twice.
    switch: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct GateState {
    accept_task: Option<JoinHandle<()>>,
    /// A second descriptor of every live connection, only for cutting it with
    /// `shutdown(2)`: that ends the connection at once whatever its task is doing,
    /// and the descriptor cannot be reused for another socket while we hold it.
    connections: HashMap<u64, std::net::TcpStream>,
    next_connection: u64,
    stopped: bool,
}

impl PowerGate {
    /// Binds `addr` (port 0 picks a free port), registers the listener with the
    /// device and starts accepting.
    pub async fn start(addr: SocketAddr, program: &str, os: DeviceOs, handler: ConnectionHandler) -> Result<Self, SimError> {
        let listener = bind(addr)?;
        let bound = listener.local_addr().map_err(|source| SimError::Bind { addr, source })?;
        let gate = PowerGate {
            addr: bound,
            program: program.to_string(),
            os,
            handler,
            state: Arc::default(),
            switch: tokio::sync::Mutex::new(()),
        };
        gate.spawn_accept_loop(listener);
        Ok(gate)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_powered(&self) -> bool {
        self.lock().accept_task.is_some()
    }

    pub async fn set_powered(&self, powered: bool) -> Result<(), SimError> {
        let _switch = self.switch.lock().await;
        if powered {
            if self.lock().stopped {
                return Err(SimError::Stopped);
            }
            if self.is_powered() {
                return Ok(());
            }
            let listener = bind(self.addr)?;
            self.spawn_accept_loop(listener);
            Ok(())
        } else {
            self.power_off().await;
            Ok(())
        }
    }

    pub async fn stop(&self) {
        let _switch = self.switch.lock().await;
        self.lock().stopped = true;
        self.power_off().await;
    }

    async fn power_off(&self) {
        let accept_task = self.lock().accept_task.take();
        if let Some(task) = accept_task {
            task.abort();
            // A cancelled task's future (and with it the listening socket) is
            // dropped before its JoinHandle resolves: once this returns, connection
            // attempts are refused.
            let _ = task.await;
        }
        self.os.remove_listener(self.addr);
        self.cut_connections();
    }

    fn cut_connections(&self) {
        let connections: Vec<std::net::TcpStream> = self.lock().connections.drain().map(|(_, socket)| socket).collect();
        for socket in connections {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn_accept_loop(&self, listener: tokio::net::TcpListener) {
        let state = Arc::clone(&self.state);
        let handler = Arc::clone(&self.handler);
        let program = self.program.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Some((stream, id)) = register(&state, stream) else {
                            continue;
                        };
                        let handler = Arc::clone(&handler);
                        let state = Arc::clone(&state);
                        tokio::spawn(async move {
                            handler(stream, peer).await;
                            lock(&state).connections.remove(&id);
                        });
                    }
                    Err(error) => {
                        // Typically EMFILE; back off instead of spinning.
                        tracing::warn!(%program, %error, "simulated device cannot accept");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        self.lock().accept_task = Some(task);
        self.os.add_listener(self.addr, &self.program);
    }
}

impl Drop for PowerGate {
    fn drop(&mut self) {
        if let Some(task) = self.lock().accept_task.take() {
            task.abort();
        }
        self.os.remove_listener(self.addr);
        self.cut_connections();
    }
}

fn lock(state: &Mutex<GateState>) -> MutexGuard<'_, GateState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps a cutting descriptor for `stream`; `None` if the socket is already unusable.
fn register(state: &Mutex<GateState>, stream: TcpStream) -> Option<(TcpStream, u64)> {
    let std_stream = stream.into_std().ok()?;
    let cutter = std_stream.try_clone().ok()?;
    let stream = TcpStream::from_std(std_stream).ok()?;
    let mut state = lock(state);
    let id = state.next_connection;
    state.next_connection += 1;
    state.connections.insert(id, cutter);
    Some((stream, id))
}

fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, SimError> {
    let error = |source| SimError::Bind { addr, source };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(error)?;
    // Power-cycling rebinds the same port while old connections may linger in
    // TIME_WAIT.
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(128).map_err(error)
}
