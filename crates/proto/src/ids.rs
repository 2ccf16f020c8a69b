//! The small values every message carries: ids, times, priorities, fencing tokens.
//!
//! Each is a distinct type so a job id cannot be passed where an attempt is meant,
//! and each is a plain number or string on the wire (`#[serde(transparent)]`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job, as the server numbers them (in the order they were submitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {}", self.0)
    }
}

/// Which attempt of a job: 1 for the first. A retry of a failed or INFRA run is a
/// new attempt linked to the first; both stay, each with its own evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attempt(pub u32);

/// A lab host, as the server named it at enrollment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabHostId(pub String);

impl fmt::Display for LabHostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lab host {}", self.0)
    }
}

/// Milliseconds since the Unix epoch, UTC: the server's clock. A lab host never
/// compares it with its own clock (see [`crate::labhost::Lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub fn plus(self, d: std::time::Duration) -> UnixMillis {
        UnixMillis(self.0.saturating_add(d.as_millis().min(u64::MAX as u128) as u64))
    }

    /// As people read it: RFC 3339, UTC, to the second (`2026-12-05T10:00:00Z`).
    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0)).to_string()
    }
}

/// A job's priority, 0 (lowest) to 100 (highest); 50 when a submission names none.
/// Higher runs first; equal priorities run in the order they were submitted.
/// LAVA uses the same range (0 / 50 / 100, models.py).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Priority(u8);

impl Priority {
    pub const LOWEST: Priority = Priority(0);
    pub const NORMAL: Priority = Priority(50);
    pub const HIGHEST: Priority = Priority(100);

    pub fn new(value: u8) -> Result<Priority, PriorityError> {
        match value <= 100 {
            true => Ok(Priority(value)),
            false => Err(PriorityError(value)),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

impl TryFrom<u8> for Priority {
    type Error = PriorityError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Priority::new(value)
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority {0} is out of range: use 0 (lowest) to 100 (highest), 50 is normal")]
pub struct PriorityError(pub u8);

/// A fencing token: the server hands out a larger one with every job assignment and
/// every reservation of a rig, and never reuses one. A lab host remembers the
/// largest it has accepted for each rig and refuses a run, a power action or a
/// console that carries a smaller one ([`admit`]): a holder whose lease lapsed, and
/// who has not noticed yet, can no longer touch a rig someone else now holds. The
/// token is written into the run's journal, so the evidence names the lease it ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fencing token {}", self.0)
    }
}

/// An action on a rig under a token older than one already accepted for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rig {rig}: {presented} is stale, {newest} was already accepted; the lease this action was made under has passed to another holder, so it is refused")]
pub struct StaleFence {
    pub rig: String,
    pub presented: FencingToken,
    pub newest: FencingToken,
}

/// The lab host's rule for an action on `rig` carrying `presented`, given the
/// largest token it has accepted for that rig so far (`None`: none yet). The same
/// token again is admitted (the same holder's next action); the caller then records
/// `presented` as the rig's newest.
pub fn admit(rig: &str, newest: Option<FencingToken>, presented: FencingToken) -> Result<(), StaleFence> {
    match newest {
        Some(newest) if presented < newest => Err(StaleFence { rig: rig.to_string(), presented, newest }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_outside_0_to_100_is_refused_on_the_wire() {
        assert_eq!(serde_json::from_str::<Priority>("100").unwrap(), Priority::HIGHEST);
        assert_eq!(serde_json::from_str::<Priority>("0").unwrap(), Priority::LOWEST);
        let err = serde_json::from_str::<Priority>("101").unwrap_err().to_string();
        assert!(err.contains("priority 101 is out of range"), "{err}");
        assert!(serde_json::from_str::<Priority>("-1").is_err());
        assert_eq!(serde_json::to_string(&Priority::default()).unwrap(), "50");
    }

    #[test]
    fn a_stale_fencing_token_is_refused_and_the_current_one_admitted() {
        let t = FencingToken;
        assert_eq!(admit("bench-3", None, t(1)), Ok(()));
        assert_eq!(admit("bench-3", Some(t(7)), t(7)), Ok(()));
        assert_eq!(admit("bench-3", Some(t(7)), t(8)), Ok(()));
        let err = admit("bench-3", Some(t(7)), t(6)).unwrap_err();
        assert_eq!(err, StaleFence { rig: "bench-3".into(), presented: t(6), newest: t(7) });
        let text = err.to_string();
        assert!(text.contains("rig bench-3") && text.contains("fencing token 6 is stale"), "{text}");
    }
}
