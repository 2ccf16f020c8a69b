//! `proofrig submit PLAN... (--rig NAME | --role ROLE [--tag TAG]...)`: queue plans
//! on the lab server.
//!
//! The plans go as their exact bytes under their file names (the bundle keeps them
//! so); the server checks each as `proofrig plan check` does, so a malformed plan is
//! refused with the same file:line:column message, shown as the server sent it, and
//! nothing is queued (exit 3). A job no rig could run now is queued all the same and
//! its warnings are printed at once, not discovered later on a silent queue.

use std::collections::BTreeSet;
use std::path::PathBuf;

use proofrig_proto::api::{NewSchedule, RigSelector, ScheduleView, SubmitJob, Submitted};
use proofrig_proto::files::PlanFile;
use proofrig_proto::ids::{Priority, UnixMillis};
use reqwest::Method;

use super::client::{Client, Connection};
use super::{Failure, EXIT_OK};

/// `proofrig submit`'s flags.
pub struct SubmitArgs {
    pub plans: Vec<PathBuf>,
    pub rig: Option<String>,
    pub roles: Vec<String>,
    pub tags: Vec<String>,
    pub device: Option<String>,
    pub priority: Option<u8>,
    pub at: Option<String>,
    pub params: Vec<String>,
    /// Recurring: a cron expression and its IANA time zone.
    pub cron: Option<(String, String)>,
    pub connection: Connection,
}

pub async fn submit(args: SubmitArgs) -> Result<u8, Failure> {
    let job = job(&args)?;
    let client = Client::new(&args.connection)?;
    if let Some((cron, time_zone)) = &args.cron {
        let what = format!("the recurring run ({} on {}, `{cron}` in {time_zone})", plan_names(&job), job.target);
        let body = NewSchedule { job, cron: cron.clone(), time_zone: time_zone.clone() };
        let made: ScheduleView = client.json(Method::POST, &["api", "schedules"], Some(&body), &what).await?;
        let next = made.next_at.map(super::client::time).unwrap_or_else(|| "never".into());
        println!("schedule {} made: `{}` in {}; its first job is submitted at {next}", made.id, made.cron, made.time_zone);
        return Ok(EXIT_OK);
    }
    let what = format!("the job ({} on {})", plan_names(&job), job.target);
    let submitted: Submitted = client.json(Method::POST, &["api", "jobs"], Some(&job), &what).await?;
    println!("job {} queued: {} on {}, priority {}", submitted.job.0, plan_names(&job), job.target, job.priority.get());
    for warning in &submitted.warnings {
        println!("warning: {warning}");
    }
    Ok(EXIT_OK)
}

fn plan_names(job: &SubmitJob) -> String {
    job.plans.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The submission the flags describe; a bad flag or an unreadable plan is a usage error.
fn job(args: &SubmitArgs) -> Result<SubmitJob, Failure> {
    let mut plans = Vec::new();
    for path in &args.plans {
        let bytes = std::fs::read(path).map_err(|e| {
            Failure::usage(miette::miette!(help = "pass plan files, e.g. testplans/*.yaml", "cannot read {}: {e}", path.display()))
        })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        plans.push(PlanFile { name, bytes });
    }
    let target = match &args.rig {
        Some(rig) => RigSelector::Rig(rig.clone()),
        None => RigSelector::Match { roles: set(&args.roles), tags: set(&args.tags) },
    };
    let priority = match args.priority {
        Some(p) => Priority::new(p).map_err(|e| Failure::usage(miette::Report::msg(format!("--priority: {e}"))))?,
        None => Priority::default(),
    };
    let not_before = args.at.as_deref().map(parse_time).transpose().map_err(|e| Failure::usage(miette::Report::msg(e)))?;
    let params = super::run::parse_params(&args.params)?;
    Ok(SubmitJob { plans, target, priority, params, device: args.device.clone(), not_before })
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

/// An RFC 3339 time (`2026-12-05T18:00:00Z`, `2026-12-05T19:00:00+01:00`) as
/// milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<UnixMillis, String> {
    let bad = |why: &str| format!("--at `{text}`: {why}; write an RFC 3339 time such as 2026-12-05T18:00:00Z or 2026-12-05T19:00:00+01:00");
    let text = text.trim();
    if !text.is_ascii() {
        return Err(bad("it is not plain ASCII"));
    }
    let (local, offset_s) = match text.len().checked_sub(6).map(|i| text.split_at(i)) {
        Some((local, offset))
            if (offset.starts_with('+') || offset.starts_with('-')) && offset.as_bytes()[3] == b':' && local.contains('T') =>
        {
            let hours: i64 = offset[1..3].parse().map_err(|_| bad("the offset is not +HH:MM"))?;
            let minutes: i64 = offset[4..6].parse().map_err(|_| bad("the offset is not +HH:MM"))?;
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            (format!("{local}Z"), sign * (hours * 3600 + minutes * 60))
        }
        _ if text.ends_with('Z') || text.ends_with('z') => (format!("{}Z", &text[..text.len() - 1]), 0),
        _ => return Err(bad("it names no time zone (Z or +HH:MM)")),
    };
    let utc = humantime::parse_rfc3339_weak(&local).map_err(|e| bad(&e.to_string()))?;
    let millis = utc.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad("it is before 1970"))?.as_millis() as i64 - offset_s * 1000;
    u64::try_from(millis).map(UnixMillis).map_err(|_| bad("it is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_take_a_zone_and_offsets_count() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(UnixMillis(1000)));
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00"), Ok(UnixMillis(1000)));
        assert_eq!(parse_time("1970-01-01T00:00:01-00:30"), Ok(UnixMillis(1000 + 1_800_000)));
        assert!(parse_time("2026-12-05T18:00:00").unwrap_err().contains("no time zone"));
        assert!(parse_time("tomorrow").is_err());
    }
}
