//! `proofrig cancel JOB [--reason TEXT]`: take a job off the lab server's queue (a
//! tester their own jobs, a technician any). The reason is kept with the job and in
//! the audit log. `proofrig retry JOB`: run a job whose last attempt ended (done,
//! lost, cancelled) again, as a new attempt linked to it; both are kept.

use proofrig_proto::api::Cancel;
use reqwest::Method;

use super::client::{Client, Connection};
use super::{Failure, EXIT_OK};

pub async fn cancel(job: u64, reason: Option<String>, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let job_text = job.to_string();
    let answer: serde_json::Value = client
        .json(Method::POST, &["api", "jobs", &job_text, "cancel"], Some(&Cancel { reason }), &format!("cancelling job {job}"))
        .await?;
    match answer["was"].as_str() {
        Some(was) => println!("job {job} cancelled (it was {was})"),
        None => println!("job {job} cancelled"),
    }
    Ok(EXIT_OK)
}

pub async fn retry(job: u64, connection: &Connection) -> Result<u8, Failure> {
    let client = Client::new(connection)?;
    let job_text = job.to_string();
    let answer: serde_json::Value = client
        .json(Method::POST, &["api", "jobs", &job_text, "retry"], Some(&serde_json::json!({})), &format!("retrying job {job}"))
        .await?;
    println!("job {job} queued again as attempt {} (the earlier attempts are kept)", answer["attempt"]);
    Ok(EXIT_OK)
}
