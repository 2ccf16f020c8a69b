//! Keeping rigs fit and runs recurring, over the lab server's API:
//! `proofrig rig-state RIG STATE --reason TEXT` (a technician takes a rig out of
//! service or puts it back), `proofrig health RIG [--plan FILE --every-minutes N |
//! --off]` (a rig's health check: it runs when due and after a failed job; one failure
//! gets a power cycle and a second check, a second failure marks the rig bad), and
//! `proofrig schedules` / `proofrig unschedule ID` (recurring runs, made with
//! `proofrig submit ... --cron`).

use std::path::Path;

use proofrig_proto::api::{HealthView, RigState, ScheduleView, SetHealth, SetRigState};
use proofrig_proto::files::PlanFile;
use reqwest::Method;

use super::client::{time, Client, Connection};
use super::{Failure, EXIT_OK};
use crate::table;

fn usage(message: String) -> Failure {
    Failure::usage(miette::Report::msg(message))
}

pub async fn rig_state(rig: &str, state: &str, reason: &str, connection: &Connection) -> Result<u8, Failure> {
    let state: RigState = serde_json::from_value(serde_json::json!(state))
        .map_err(|_| usage(format!("`{state}` is not a rig state: use maintenance, retired, bad or idle (back in service)")))?;
    let client = Client::new(connection)?;
    let body = SetRigState { state, reason: reason.to_string() };
    let answer: serde_json::Value =
        client.json(Method::POST, &["api", "rigs", rig, "state"], Some(&body), &format!("changing the state of {rig}")).await?;
    println!("{rig} is now {}", answer["state"].as_str().unwrap_or("?"));
    Ok(EXIT_OK)
}

/// What `proofrig health` does.
pub enum HealthAction<'a> {
    Show,
    Set { plan: &'a Path, every_minutes: u32 },
    Off,
}

pub async fn health(rig: &str, action: HealthAction<'_>, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let path = ["api", "rigs", rig, "health"];
    let view: HealthView = match action {
        HealthAction::Off => {
            client.send(Method::DELETE, client.url(&path, None), None::<&()>, &format!("removing the health check of {rig}")).await?;
            println!("{rig}: no health check any more");
            return Ok(EXIT_OK);
        }
        HealthAction::Show => client.get(&path, &format!("reading the health check of {rig}")).await?,
        HealthAction::Set { plan, every_minutes } => {
            let bytes = std::fs::read(plan).map_err(|e| usage(format!("cannot read {}: {e}", plan.display())))?;
            let name = plan.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let body = SetHealth { plan: PlanFile { name, bytes }, every_minutes };
            client.json(Method::PUT, &path, Some(&body), &format!("setting the health check of {rig}")).await?
        }
    };
    println!(
        "{rig}: health check {} every {} min; {:?}, next at {}; job {}; last: {} (set by {})",
        view.plan,
        view.every_minutes,
        view.stage,
        time(view.next_at),
        view.job.map(|j| j.0.to_string()).unwrap_or_else(|| "-".into()),
        view.last_result,
        view.set_by
    );
    Ok(EXIT_OK)
}

pub async fn schedules(json: bool, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let list: Vec<ScheduleView> = client.get(&["api", "schedules"], "listing the recurring runs").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list).expect("plain data"));
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                format!("{} ({})", s.cron, s.time_zone),
                s.next_at.map(time).unwrap_or_else(|| "never".into()),
                s.plans.join(", "),
                s.target.to_string(),
                s.created_by.clone(),
            ]
        })
        .collect();
    print!("{}", table::render(&["ID", "WHEN", "NEXT", "PLANS", "ON", "BY"], &rows));
    Ok(EXIT_OK)
}

pub async fn unschedule(id: u64, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let id_text = id.to_string();
    client.send(Method::DELETE, client.url(&["api", "schedules", &id_text], None), None::<&()>, &format!("removing schedule {id}")).await?;
    println!("schedule {id} removed: it submits no more jobs");
    Ok(EXIT_OK)
}
