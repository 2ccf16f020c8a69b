//! `proofrig rig probe RIG`: is every channel of every device reachable right now?
//!
//! Each channel is tried for real (the console opens, the SSH host key matches and
//! authentication succeeds, the PDU answers) within a time limit, all devices at
//! once, and the result is one table a technician can act on.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use proofrig_agents::power::{OutletRef, PowerController, PowerError};
use proofrig_agents::serial::open_console;
use proofrig_agents::ssh::SshSession;
use proofrig_model::events::Recorder;
use proofrig_model::rig::{Device, Rig};

use super::{report, Failure, EXIT_FAILED, EXIT_OK};
use crate::session::SessionLog;
use crate::table;

/// What a probe found out about one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    Down,
    /// Nothing to check without switching something (e.g. a command PDU without a status command).
    Unknown,
}

/// One probed channel.
struct Row {
    device: String,
    channel: &'static str,
    state: State,
    detail: String,
}

pub async fn probe(rig_path: &Path, only: Option<&str>, timeout_ms: u64, transcripts: &Path) -> Result<u8, Failure> {
    let rig = Rig::load(rig_path)?;
    if let Some(name) = only {
        rig.device(name)?;
    }
    let log = SessionLog::create(transcripts, &rig, only.unwrap_or("all"), "probe").map_err(|e| Failure::usage(report(e)))?;
    let limit = Duration::from_millis(timeout_ms);
    let power = PowerController::new(&rig, log.recorder.clone()).map_err(|e| Failure::usage(miette::Report::new(e)))?;

    let mut tasks = Vec::new();
    for (name, device) in rig.devices().filter(|(name, _)| only.is_none_or(|o| o == *name)) {
        tasks.push(probe_device(name.to_string(), device.clone(), power.clone(), log.recorder.clone(), limit));
    }
    let rows: Vec<Row> = futures_join_all(tasks).await.into_iter().flatten().collect();

    let printable: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let state = match r.state {
                State::Up => "up",
                State::Down => "DOWN",
                State::Unknown => "unknown",
            };
            vec![r.device.clone(), r.channel.to_string(), state.to_string(), r.detail.clone()]
        })
        .collect();
    print!("{}", table::render(&["device", "channel", "state", "detail"], &printable));
    let down = rows.iter().filter(|r| r.state == State::Down).count();
    if down > 0 {
        println!("{down} channel(s) down in rig `{}`; transcript: {}", rig.name(), log.path.display());
        Ok(EXIT_FAILED)
    } else {
        let unknown = rows.iter().filter(|r| r.state == State::Unknown).count();
        println!("{} channel(s) up, {unknown} unknown, none down in rig `{}`", rows.len() - unknown, rig.name());
        Ok(EXIT_OK)
    }
}

async fn probe_device(name: String, device: Device, power: PowerController, recorder: Recorder, limit: Duration) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(console) = &device.console {
        let outcome = within(limit, async {
            let stream = open_console(&name, console, recorder.clone()).await.map_err(|e| e.to_string())?;
            drop(stream);
            Ok("opened".to_string())
        })
        .await;
        rows.push(row(&name, "console", outcome));
    }
    if let Some(endpoint) = &device.ssh {
        let outcome = within(limit, async {
            let session = SshSession::connect(&name, endpoint, recorder.clone()).await.map_err(|e| e.to_string())?;
            let detail = format!("host key {} pinned, logged in as {}", session.host_key_fingerprint(), endpoint.user);
            session.close().await;
            Ok(detail)
        })
        .await;
        rows.push(row(&name, "ssh", outcome));
    }
    if let Some(outlet) = &device.power {
        let outcome = async {
            // First: does the PDU answer at all (without switching anything)?
            let own = OutletRef { device: &name, pdu: &outlet.pdu, outlet: &outlet.outlet };
            let answered = match power.probe(&outlet.pdu, Some(&own)).await {
                Ok(what) => what,
                Err(PowerError::NothingToProbe { reason, .. }) => return Err(Unknown(reason)),
                Err(err) => return Err(Down(err.to_string())),
            };
            let state = power.status(&name).await.map_err(|e| Down(e.to_string()))?;
            Ok(format!("{answered}; {} outlet {}: {state}", outlet.pdu, outlet.outlet))
        };
        rows.push(match tokio::time::timeout(limit, outcome).await {
            Ok(Ok(detail)) => Row { device: name.clone(), channel: "power", state: State::Up, detail },
            Ok(Err(Unknown(detail))) => Row { device: name.clone(), channel: "power", state: State::Unknown, detail },
            Ok(Err(Down(detail))) => Row { device: name.clone(), channel: "power", state: State::Down, detail },
            Err(_) => Row { device: name.clone(), channel: "power", state: State::Down, detail: no_answer(limit) },
        });
    }
    if rows.is_empty() {
        rows.push(Row { device: name, channel: "-", state: State::Unknown, detail: "no channels declared".into() });
    }
    rows
}

/// Why a power probe did not come back up.
enum PowerProbe {
    Down(String),
    Unknown(String),
}
use PowerProbe::{Down, Unknown};

fn row(device: &str, channel: &'static str, outcome: Result<String, String>) -> Row {
    match outcome {
        Ok(detail) => Row { device: device.to_string(), channel, state: State::Up, detail },
        Err(detail) => Row { device: device.to_string(), channel, state: State::Down, detail },
    }
}

fn no_answer(limit: Duration) -> String {
    format!("no answer within {} ms", limit.as_millis())
}

async fn within(limit: Duration, work: impl Future<Output = Result<String, String>>) -> Result<String, String> {
    match tokio::time::timeout(limit, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(no_answer(limit)),
    }
}

/// Run all probes concurrently and keep their order.
async fn futures_join_all<F: Future + Send + 'static>(tasks: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(v) => out.push(v),
            Err(err) => panic!("probe task failed: {err}"),
        }
    }
    out
}
