//! The service's deadlines, in one place, each with where its figure comes from.
//!
//! Both sides must agree on these: a lab host that heartbeats less often than the
//! server expects flaps offline (LAVA 9bcdc08b7), and a lease that outlives its
//! holder's silence keeps a rig locked forever (labgrid #1739, #1809). The figures
//! are those of `shared/reference/lab-service-anchors.md`, section 3: the anchors'
//! measured values and the targets inferred from them.

use std::time::Duration;

/// How often a lab host sends a [`crate::labhost::Heartbeat`]. Swarming's bots beat
/// every 10 s (Swarming Detailed-Design.md); LAVA's workers ping every 20 s
/// (lava_common/worker.py), which left its offline detection at a minute.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// A lab host silent this long is offline: three missed heartbeats. The server
/// assigns nothing to its rigs until it beats again. LAVA marks a worker offline after
/// 60 s of its 20 s pings (lava-scheduler.py `PING_TIMEOUT`), three missed pings too.
pub const LABHOST_OFFLINE_AFTER: Duration = Duration::from_secs(30);

/// A job's lease: it lapses this long after its last renewal. Renewed by every
/// heartbeat, so six heartbeats must go missing. labgrid's reservation keepalive
/// times out after 60 s (labgrid/remote/common.py).
pub const JOB_LEASE: Duration = Duration::from_secs(60);

/// A running job whose lease lapsed and whose lab host stays silent this long ends
/// INFRA-lost, and its rig is freed. Swarming declares a bot dead after 5 minutes
/// (Swarming Detailed-Design.md).
pub const JOB_LOST_AFTER: Duration = Duration::from_secs(5 * 60);

/// A technician's manual reservation, when the request names no length. Not in the
/// anchors as a figure: the inference of section 3 ("reservation leases default to
/// 1 h"), from the request users make most (section 8: leases that release
/// themselves, "if people forget and go on holiday").
pub const RESERVATION_DEFAULT: Duration = Duration::from_secs(60 * 60);

/// The most data one journal or upload chunk carries (before base64). LAVA's log
/// uploads failed with 413 when one console line was large (lava_common/log.py); a
/// bounded chunk keeps every request small whatever a device prints, and a 1 GB
/// transcript is a thousand resumable requests, not one that must not fail.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_keep_their_order() {
        // Offline after three missed beats; a lease survives a host marked offline
        // long enough to come back; lost comes after the lease has lapsed.
        assert_eq!(LABHOST_OFFLINE_AFTER, HEARTBEAT_INTERVAL * 3);
        assert!(JOB_LEASE > LABHOST_OFFLINE_AFTER);
        assert!(JOB_LOST_AFTER > JOB_LEASE);
        assert!(RESERVATION_DEFAULT > JOB_LOST_AFTER);
    }
}
