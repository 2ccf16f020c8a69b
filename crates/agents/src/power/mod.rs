//! Power agent: switch the outlets that feed devices, and leave evidence of it.
//!
//! A security test that power-cycles a radio unit is only as credible as the record
//! of that cycle, so every power action goes through one [`PowerController`] that
//! (1) serialises commands per PDU, because relay boards and PDU firmwares misbehave
//! when two clients talk at once and a write must stay paired with its read-back,
//! (2) bounds every exchange by the PDU's `timeout_ms`, so a dead PDU is reported by
//! name instead of hanging a test run, and (3) records an [`EventKind::Power`] for
//! every action, successful or not, with what the outlet reported afterwards.
//!
//! The wire protocols live behind the [`PowerBackend`] trait: Modbus TCP coils
//! ([`modbus`]), a pdudaemon server ([`pdudaemon`]) and local commands ([`command`]).

pub mod command;
pub mod modbus;
pub mod pdudaemon;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use proofrig_model::events::{EventKind, PowerState, Recorder};
use proofrig_model::rig::{OutletId, Pdu, PowerOutlet, Rig, RigError};

/// Everything that can go wrong with a power action, naming what was involved.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PowerError {
    #[error("rig {rig} has no device named `{device}`")]
    #[diagnostic(help("{hint}"))]
    UnknownDevice { rig: String, device: String, hint: String },

    #[error("device `{device}` has no `power:` section in rig {rig}, so proofrig cannot switch its power")]
    #[diagnostic(help("add `power: {{ pdu: <pdu name>, outlet: <outlet> }}` to device `{device}` in the rig file"))]
    NoPower { rig: String, device: String },

    #[error("rig {rig} has no PDU named `{pdu}` (PDUs in this rig: {known})")]
    UnknownPdu { rig: String, pdu: String, known: String },

    #[error(
        "PDU `{pdu}` at {addr} is unreachable (gave up after {after_ms} ms): {reason}. Check that the PDU is \
         powered and cabled, that this host can reach {addr} (ping, firewall, VLAN), and that the \
         address in the rig file is right"
    )]
    Unreachable { pdu: String, addr: String, after_ms: u64, reason: String },

    #[error(
        "PDU `{pdu}` outlet {outlet} (device `{device}`): asked for {requested} but the outlet reads \
         back {read}. The relay did not follow; check the outlet number, `invert`, and the relay itself"
    )]
    ReadbackMismatch { device: String, pdu: String, outlet: OutletId, requested: PowerState, read: PowerState },

    #[error("PDU `{pdu}` refused `{action}` on outlet {outlet} (device `{device}`): {reason}")]
    Refused { device: String, pdu: String, outlet: OutletId, action: &'static str, reason: String },

    #[error("PDU `{pdu}` at {addr} answered, but not as expected: {reason}")]
    UnexpectedReply { pdu: String, addr: String, reason: String },

    #[error(
        "`{command}` ({action} of outlet {outlet}, device `{device}`, PDU `{pdu}`) did not finish \
         within {after_ms} ms; it was killed with its process group"
    )]
    CommandTimedOut { device: String, pdu: String, outlet: OutletId, action: &'static str, command: String, after_ms: u64 },

    #[error("cannot run `{command}` for PDU `{pdu}`: {source}")]
    CommandSpawn { pdu: String, command: String, source: std::io::Error },

    #[error("outlet `{outlet}` of device `{device}` cannot be used with PDU `{pdu}`: {reason}")]
    BadOutlet { device: String, pdu: String, outlet: OutletId, reason: String },

    #[error("PDU `{pdu}`: nothing to probe: {reason}")]
    NothingToProbe { pdu: String, reason: String },

    #[error("cannot set up PDU `{pdu}`: {reason}")]
    Setup { pdu: String, reason: String },
}

impl PowerError {
    /// What the outlet reported while this error happened (only a mismatch knows).
    pub fn readback(&self) -> PowerState {
        match self {
            PowerError::ReadbackMismatch { read, .. } => *read,
            _ => PowerState::Unknown,
        }
    }
}

/// The outlet an action is for, with the names errors must mention.
#[derive(Debug, Clone, Copy)]
pub struct OutletRef<'a> {
    pub device: &'a str,
    pub pdu: &'a str,
    pub outlet: &'a OutletId,
}

/// What a switching action achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// What the outlet reported after the action ([`PowerState::Unknown`] when the
    /// backend has no way to ask).
    pub readback: PowerState,
    /// One line for the evidence: what was sent and what came back.
    pub detail: String,
}

/// One way of talking to a PDU. Implementations do the wire work only: locking,
/// device lookup and evidence belong to [`PowerController`].
pub trait PowerBackend: Send + Sync {
    /// Switch the outlet on and confirm it as far as the PDU allows.
    fn on(&self, outlet: &OutletRef<'_>) -> impl Future<Output = Result<Switched, PowerError>> + Send;

    /// Switch the outlet off and confirm it as far as the PDU allows.
    fn off(&self, outlet: &OutletRef<'_>) -> impl Future<Output = Result<Switched, PowerError>> + Send;

    /// Off, stay off for `off_for`, on.
    fn cycle(&self, outlet: &OutletRef<'_>, off_for: Duration) -> impl Future<Output = Result<Switched, PowerError>> + Send {
        async move {
            self.off(outlet).await?;
            tokio::time::sleep(off_for).await;
            self.on(outlet).await
        }
    }

    /// Whether [`cycle`](Self::cycle) is one request the PDU carries out itself
    /// (pdudaemon's `reboot`). If not, the controller composes the cycle from `off`
    /// and `on` so that each half is its own evidence record.
    fn native_cycle(&self) -> bool {
        false
    }

    /// The outlet's current state; [`PowerState::Unknown`] if the PDU cannot tell.
    fn status(&self, outlet: &OutletRef<'_>) -> impl Future<Output = Result<PowerState, PowerError>> + Send;

    /// Prove the PDU answers without switching anything; returns what answered. Where
    /// the protocol can read one outlet, it reads `outlet` (a device's), else the
    /// first outlet the rig uses.
    fn probe(&self, outlet: Option<&OutletRef<'_>>) -> impl Future<Output = Result<String, PowerError>> + Send;
}

/// The backend of one PDU, whichever protocol it speaks.
enum Backend {
    Modbus(modbus::ModbusBackend),
    Pdudaemon(pdudaemon::PdudaemonBackend),
    Command(command::CommandBackend),
}

impl PowerBackend for Backend {
    async fn on(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        match self {
            Backend::Modbus(b) => b.on(outlet).await,
            Backend::Pdudaemon(b) => b.on(outlet).await,
            Backend::Command(b) => b.on(outlet).await,
        }
    }

    async fn off(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        match self {
            Backend::Modbus(b) => b.off(outlet).await,
            Backend::Pdudaemon(b) => b.off(outlet).await,
            Backend::Command(b) => b.off(outlet).await,
        }
    }

    async fn cycle(&self, outlet: &OutletRef<'_>, off_for: Duration) -> Result<Switched, PowerError> {
        match self {
            Backend::Modbus(b) => b.cycle(outlet, off_for).await,
            Backend::Pdudaemon(b) => b.cycle(outlet, off_for).await,
            Backend::Command(b) => b.cycle(outlet, off_for).await,
        }
    }

    fn native_cycle(&self) -> bool {
        match self {
            Backend::Modbus(b) => b.native_cycle(),
            Backend::Pdudaemon(b) => b.native_cycle(),
            Backend::Command(b) => b.native_cycle(),
        }
    }

    async fn status(&self, outlet: &OutletRef<'_>) -> Result<PowerState, PowerError> {
        match self {
            Backend::Modbus(b) => b.status(outlet).await,
            Backend::Pdudaemon(b) => b.status(outlet).await,
            Backend::Command(b) => b.status(outlet).await,
        }
    }

    async fn probe(&self, outlet: Option<&OutletRef<'_>>) -> Result<String, PowerError> {
        match self {
            Backend::Modbus(b) => b.probe(outlet).await,
            Backend::Pdudaemon(b) => b.probe(outlet).await,
            Backend::Command(b) => b.probe(outlet).await,
        }
    }
}

struct PduSlot {
    backend: Backend,
    /// Held for one whole action (write and read-back, or one HTTP request, or one
    /// command and its status check), never across a cycle's off period.
    lock: tokio::sync::Mutex<()>,
}

struct Inner {
    rig: Rig,
    recorder: Recorder,
    pdus: BTreeMap<String, PduSlot>,
}

/// Switches devices' power as the rig describes it, recording every action.
///
/// Cheap to clone; clones share the per-PDU locks and Modbus connections. Build one
/// per session and hand out clones: two controllers built separately do not
/// serialise against each other.
#[derive(Clone)]
pub struct PowerController {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PowerController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerController")
            .field("rig", &self.inner.rig.name())
            .field("pdus", &self.inner.pdus.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

enum Action {
    On,
    Off,
}

impl PowerController {
    /// Set up a backend for every PDU in the rig. Nothing is contacted yet.
    pub fn new(rig: &Rig, recorder: Recorder) -> Result<PowerController, PowerError> {
        let mut pdus = BTreeMap::new();
        for (name, pdu) in &rig.spec.pdus {
            // Probes need an outlet that exists; the first device on the PDU has one.
            let first_outlet = rig.devices().filter_map(|(_, d)| d.power.as_ref()).find(|p| &p.pdu == name).map(|p| p.outlet.clone());
            let backend = match pdu {
                Pdu::Modbus(config) => Backend::Modbus(modbus::ModbusBackend::new(name, config.clone(), first_outlet)),
                Pdu::Pdudaemon(config) => Backend::Pdudaemon(pdudaemon::PdudaemonBackend::new(name, config.clone())?),
                Pdu::Command(config) => Backend::Command(command::CommandBackend::new(name, config.clone(), first_outlet)),
            };
            pdus.insert(name.clone(), PduSlot { backend, lock: tokio::sync::Mutex::new(()) });
        }
        Ok(PowerController { inner: Arc::new(Inner { rig: rig.clone(), recorder, pdus }) })
    }

    /// Switch the device's outlet on; returns the state read back.
    pub async fn on(&self, device: &str) -> Result<PowerState, PowerError> {
        self.switch(device, Action::On, "on").await
    }

    /// Switch the device's outlet off; returns the state read back.
    pub async fn off(&self, device: &str) -> Result<PowerState, PowerError> {
        self.switch(device, Action::Off, "off").await
    }

    /// Off, wait `off_for` (default: the outlet's `cycle_off_ms`), on. Returns the
    /// state read back after switching on. Stops after a failed `off`, so a device
    /// is never reported as cycled when it was not.
    pub async fn cycle(&self, device: &str, off_for: Option<Duration>) -> Result<PowerState, PowerError> {
        let (power, slot) = match self.resolve(device) {
            Ok(found) => found,
            Err(err) => return Err(self.record_unresolved(device, "cycle", PowerState::On, err)),
        };
        let off_for = off_for.unwrap_or(Duration::from_millis(power.cycle_off_ms));
        let outlet = OutletRef { device, pdu: &power.pdu, outlet: &power.outlet };
        if slot.backend.native_cycle() {
            let result = {
                let _turn = slot.lock.lock().await;
                slot.backend.cycle(&outlet, off_for).await
            };
            return self.record(&outlet, "cycle", PowerState::On, result);
        }
        let result = {
            let _turn = slot.lock.lock().await;
            slot.backend.off(&outlet).await
        };
        self.record(&outlet, "cycle-off", PowerState::Off, result)?;
        tokio::time::sleep(off_for).await;
        let result = {
            let _turn = slot.lock.lock().await;
            slot.backend.on(&outlet).await
        };
        self.record(&outlet, "cycle-on", PowerState::On, result)
    }

    /// What the device's outlet reports now ([`PowerState::Unknown`] if the PDU
    /// cannot tell). Recorded like any action, with `requested: unknown`.
    pub async fn status(&self, device: &str) -> Result<PowerState, PowerError> {
        let (power, slot) = match self.resolve(device) {
            Ok(found) => found,
            Err(err) => return Err(self.record_unresolved(device, "status", PowerState::Unknown, err)),
        };
        let outlet = OutletRef { device, pdu: &power.pdu, outlet: &power.outlet };
        let result = {
            let _turn = slot.lock.lock().await;
            slot.backend.status(&outlet).await
        };
        let (readback, ok, detail) = match &result {
            Ok(state) => (*state, true, format!("outlet reports {state}")),
            Err(err) => (err.readback(), false, err.to_string()),
        };
        self.inner.recorder.emit(EventKind::Power {
            device: device.to_string(),
            pdu: power.pdu.clone(),
            outlet: power.outlet.to_string(),
            action: "status".into(),
            requested: PowerState::Unknown,
            readback,
            ok,
            detail,
        });
        result
    }

    /// Check that a PDU answers, without switching anything; returns what answered,
    /// about `outlet` where the protocol reads outlets one by one (see
    /// [`PowerBackend::probe`]). A command PDU without a status command has nothing to
    /// ask ([`PowerError::NothingToProbe`]); callers may show that as "skipped".
    pub async fn probe(&self, pdu: &str, outlet: Option<&OutletRef<'_>>) -> Result<String, PowerError> {
        let slot = self.inner.pdus.get(pdu).ok_or_else(|| PowerError::UnknownPdu {
            rig: self.inner.rig.name().to_string(),
            pdu: pdu.to_string(),
            known: self.inner.pdus.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let _turn = slot.lock.lock().await;
        slot.backend.probe(outlet).await
    }

    /// Names of the PDUs this controller drives.
    pub fn pdus(&self) -> impl Iterator<Item = &str> {
        self.inner.pdus.keys().map(String::as_str)
    }

    async fn switch(&self, device: &str, action: Action, name: &str) -> Result<PowerState, PowerError> {
        let requested = match action {
            Action::On => PowerState::On,
            Action::Off => PowerState::Off,
        };
        let (power, slot) = match self.resolve(device) {
            Ok(found) => found,
            Err(err) => return Err(self.record_unresolved(device, name, requested, err)),
        };
        let outlet = OutletRef { device, pdu: &power.pdu, outlet: &power.outlet };
        let result = {
            let _turn = slot.lock.lock().await;
            match action {
                Action::On => slot.backend.on(&outlet).await,
                Action::Off => slot.backend.off(&outlet).await,
            }
        };
        self.record(&outlet, name, requested, result)
    }

    fn resolve(&self, device: &str) -> Result<(&PowerOutlet, &PduSlot), PowerError> {
        let rig = &self.inner.rig;
        let found = rig.device(device).map_err(|err| match err {
            RigError::UnknownDevice { rig, name, hint } => PowerError::UnknownDevice { rig, device: name, hint },
            other => PowerError::UnknownDevice { rig: rig.name().into(), device: device.into(), hint: other.to_string() },
        })?;
        let power = found.power.as_ref().ok_or_else(|| PowerError::NoPower { rig: rig.name().into(), device: device.into() })?;
        // Rig validation guarantees the PDU exists; a miss here would be a bug in it.
        let slot = self.inner.pdus.get(&power.pdu).ok_or_else(|| PowerError::UnknownPdu {
            rig: rig.name().into(),
            pdu: power.pdu.clone(),
            known: self.inner.pdus.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        Ok((power, slot))
    }

    fn record(
        &self,
        outlet: &OutletRef<'_>,
        action: &str,
        requested: PowerState,
        result: Result<Switched, PowerError>,
    ) -> Result<PowerState, PowerError> {
        let (readback, ok, detail) = match &result {
            Ok(done) => (done.readback, true, done.detail.clone()),
            Err(err) => (err.readback(), false, err.to_string()),
        };
        self.inner.recorder.emit(EventKind::Power {
            device: outlet.device.to_string(),
            pdu: outlet.pdu.to_string(),
            outlet: outlet.outlet.to_string(),
            action: action.to_string(),
            requested,
            readback,
            ok,
            detail,
        });
        result.map(|done| done.readback)
    }

    /// A request that never reached a PDU is still evidence that it was made.
    fn record_unresolved(&self, device: &str, action: &str, requested: PowerState, err: PowerError) -> PowerError {
        self.inner.recorder.emit(EventKind::Power {
            device: device.to_string(),
            pdu: String::new(),
            outlet: String::new(),
            action: action.to_string(),
            requested,
            readback: PowerState::Unknown,
            ok: false,
            detail: err.to_string(),
        });
        err
    }
}

/// `after_ms` for errors: how long the action had been running.
fn elapsed_ms(started: tokio::time::Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// An error and all its causes on one line (reqwest and io errors hide the useful part).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
