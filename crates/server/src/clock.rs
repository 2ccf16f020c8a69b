//! The server's clock, one for the whole process and passed to whatever reads time.
//!
//! The store takes `now` on every call and never reads a clock itself; the API reads
//! this one. Tests and simulations [`Clock::advance`] it to let tokens, leases and
//! reservations expire without waiting for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proofrig_proto::ids::UnixMillis;

/// The server's clock: the system's, shifted by what [`Clock::advance`] added (a
/// test's or a simulation's way to let tokens and leases expire without waiting).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    shift_ms: Arc<AtomicU64>,
}

impl Clock {
    pub fn now(&self) -> UnixMillis {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        UnixMillis(system.as_millis() as u64).plus(Duration::from_millis(self.shift_ms.load(Ordering::SeqCst)))
    }

    pub fn advance(&self, by: Duration) {
        self.shift_ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}
