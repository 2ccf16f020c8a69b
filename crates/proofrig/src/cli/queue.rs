//! `proofrig queue [--json]`: the lab server's jobs, as a table for people or as the
//! API's JSON for tools.

use proofrig_proto::api::{JobState, JobView};

use super::client::{time, Client, Connection};
use super::{Failure, EXIT_OK};

pub async fn queue(json: bool, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let jobs: Vec<JobView> = client.get(&["api", "jobs"], "listing the queue").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs).expect("jobs are plain data"));
        return Ok(EXIT_OK);
    }
    if jobs.is_empty() {
        println!("no jobs on {}", client.server());
        return Ok(EXIT_OK);
    }
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let attempt = match j.retry_of {
                Some(first) => format!("{} (retry of {})", j.attempt.0, first.0),
                None => j.attempt.0.to_string(),
            };
            vec![
                j.job.0.to_string(),
                attempt,
                state(j.state).to_string(),
                j.priority.get().to_string(),
                j.target.to_string(),
                j.plans.join(", "),
                j.rig.clone().unwrap_or_else(dash),
                j.run_id.clone().unwrap_or_else(dash),
                j.verdict.map(|v| v.to_string()).unwrap_or_else(dash),
                format!("{} at {}", j.submitted_by, time(j.submitted_at)),
            ]
        })
        .collect();
    let header = ["JOB", "ATTEMPT", "STATE", "PRIORITY", "TARGET", "PLANS", "RIG", "RUN", "VERDICT", "SUBMITTED"];
    print!("{}", crate::table::render(&header, &rows));
    Ok(EXIT_OK)
}

/// A job state as the API names it.
pub fn state(state: JobState) -> &'static str {
    state.name()
}
