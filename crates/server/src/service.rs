//! The server's own work between requests: schedule queued jobs onto free rigs, and
//! end what ran out (lost jobs, expired reservations, silent lab hosts).
//!
//! One pass is [`pass`]: reap, then move the rigs' health checks along
//! (`store::health`), then submit the jobs of due recurring schedules, then
//! claim, then wake the lab hosts that got a job, so
//! their open polls answer at once. The loop runs a pass whenever something may have
//! freed a rig or brought one (a heartbeat, an advert, a job's end: [`Hub::schedule`])
//! and at least every [`PASS_EVERY`], for deadlines that pass with nobody calling.
//! Several replicas may run it on one PostgreSQL: the store's claim and reap are
//! exactly-once across them. A pass that fails (the database is away) is logged and
//! tried again on the next; nothing is lost, as each step is one transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::labwire::Hub;
use crate::store::health::HealthMove;
use crate::store::{Claimed, Ctx, Reaped, Store, StoreError};

/// The longest between two passes. LAVA's scheduler passes every 20 s; here a pass
/// follows each event that can free a rig, and this bounds the rest.
pub const PASS_EVERY: Duration = Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    pub reaped: Reaped,
    pub health: Vec<HealthMove>,
    pub claimed: Vec<Claimed>,
}

/// One pass: reap, fire due schedules, claim, wake.
pub async fn pass(store: &Store, hub: &Hub, clock: &Clock) -> Result<Pass, StoreError> {
    let reaped = store.reap(&Ctx::server(clock.now())).await?;
    let health = store.health_step(&Ctx::server(clock.now())).await?;
    store.fire_due(&Ctx::server(clock.now())).await?;
    let claimed = store.claim(&Ctx::server(clock.now())).await?;
    for claim in &claimed {
        hub.wake(&claim.labhost);
    }
    Ok(Pass { reaped, health, claimed })
}

/// Run passes until `stopped` turns true.
pub async fn run(store: Arc<Store>, hub: Arc<Hub>, clock: Clock, mut stopped: watch::Receiver<bool>) {
    loop {
        match pass(&store, &hub, &clock).await {
            Ok(done) => {
                for (job, attempt, why) in &done.reaped.lost {
                    tracing::warn!("{job} attempt {} lost: {why}", attempt.0);
                }
                for m in &done.health {
                    tracing::info!("rig {}: health {:?}: {}", m.rig, m.to, m.why);
                }
                for host in &done.reaped.offline {
                    tracing::warn!("{host} is offline: no heartbeat");
                }
            }
            Err(e) => tracing::error!("scheduling pass failed, trying again: {e}"),
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = hub.schedule.notified() => {}
            _ = tokio::time::sleep(PASS_EVERY) => {}
        }
    }
}
