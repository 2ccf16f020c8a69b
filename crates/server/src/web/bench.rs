//! The technician's bench in the dashboard: power a device on, off or through a
//! cycle, and work its console live, on a rig they hold a live reservation of.
//!
//! Nothing here touches a device. Each action is a bench operation in the store
//! ([`crate::store::bench`]): the rig's lab host gets it on its poll, checks the
//! reservation's fencing token against the newest it accepted for the rig, acts,
//! records what it did, and answers. A console then streams through
//! [`crate::consoles`]: one WebSocket per open console (a browser allows far more of
//! those than the six plain HTTP connections it keeps per server, so several open
//! consoles and the pages around them do not starve each other).
//!
//! A console stays open only while its person does: their reservation must hold
//! under the same token and their dashboard session must be live, looked at every
//! [`LEASE_CHECK`]; when either ends, the session is closed on both sides within a
//! second, and the reason is shown and audited. A lab host that stops serving the
//! console (killed, cut off) closes it too, once it has been silent for
//! [`crate::consoles::LABHOST_SILENT_LIMIT`].

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use proofrig_proto::labhost::{BenchAction, BenchOutcome};
use serde::Deserialize;

use super::{check_csrf, html, Viewer, WebFail, WebResult, WebState};
use crate::store::bench::{BenchAnswer, BenchOpRecord, OP_ANSWER_LIMIT};
use crate::store::StoreError;

/// How often an open console looks at its person's reservation and session.
pub const LEASE_CHECK: Duration = Duration::from_millis(250);

#[derive(Deserialize)]
pub(crate) struct PowerForm {
    csrf: String,
    device: String,
    /// `on`, `off` or `cycle`.
    action: String,
}

/// Switch a device's power through its lab host; back to the rig's page, which lists
/// the outcome, or a page saying why it did not happen.
pub(crate) async fn power(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path(rig): Path<String>,
    Form(form): Form<PowerForm>,
) -> WebResult<Response> {
    check_csrf(&viewer, &form.csrf)?;
    let action = match form.action.as_str() {
        "on" => BenchAction::PowerOn,
        "off" => BenchAction::PowerOff,
        "cycle" => BenchAction::PowerCycle,
        other => {
            return Err(WebFail::new(StatusCode::BAD_REQUEST, "Not accepted", format!("`action` must be on, off or cycle, not `{other}`"))
                .for_viewer(&viewer))
        }
    };
    let op = request(&state, &viewer, &rig, &form.device, action).await?;
    match answer(&state, &viewer, op.op).await? {
        BenchOutcome::Done { .. } => Ok(Redirect::to(&format!("/rigs/{rig}")).into_response()),
        BenchOutcome::Refused { reason } | BenchOutcome::Failed { reason } => {
            Err(WebFail::new(StatusCode::CONFLICT, "Not done", format!("{} of {} on rig {rig}: {reason}", action.name(), form.device))
                .for_viewer(&viewer))
        }
    }
}

async fn request(state: &WebState, viewer: &Viewer, rig: &str, device: &str, action: BenchAction) -> WebResult<BenchOpRecord> {
    let op =
        state.api.store.bench_request(rig, device, action, &viewer.ctx(state)).await.map_err(|e| WebFail::from(e).for_viewer(viewer))?;
    state.hub.wake(&op.labhost);
    Ok(op)
}

/// The lab host's answer to `op`, waited for up to [`OP_ANSWER_LIMIT`]; past it the
/// operation is closed as expired (it will not be carried out later).
async fn answer(state: &WebState, viewer: &Viewer, op: u64) -> WebResult<BenchOutcome> {
    let store = &state.api.store;
    let deadline = tokio::time::Instant::now() + OP_ANSWER_LIMIT;
    let mut answers = state.consoles.answers();
    loop {
        let record = store.bench_op(op).await?.ok_or_else(|| StoreError::NotFound(format!("bench operation {op} vanished")))?;
        match record.answer {
            Some((_, BenchAnswer::Answered(outcome))) => return Ok(outcome),
            Some((_, BenchAnswer::Expired)) => return Err(expired(&record).for_viewer(viewer)),
            None if tokio::time::Instant::now() >= deadline => {
                if store.bench_expire(op, &viewer.ctx(state)).await? {
                    return Err(expired(&record).for_viewer(viewer));
                }
            }
            // An answer to another replica is seen at the next look.
            None => {
                let _ = tokio::time::timeout(Duration::from_millis(200), answers.changed()).await;
            }
        }
    }
}

fn expired(op: &BenchOpRecord) -> WebFail {
    WebFail::new(
        StatusCode::GATEWAY_TIMEOUT,
        "No answer from the lab host",
        format!(
            "lab host {} did not answer {} of {} on rig {} within {} s, so it was called off: check that the lab host runs and is online (the rigs page shows it)",
            op.labhost,
            op.action.name(),
            op.device,
            op.rig,
            OP_ANSWER_LIMIT.as_secs()
        ),
    )
}

#[derive(askama::Template)]
#[template(path = "console.html")]
struct ConsolePage {
    viewer: Option<Viewer>,
    rig: String,
    device: String,
}

/// The console page: the screen, a line to type into, and the script that connects.
pub(crate) async fn console_page(Extension(viewer): Extension<Viewer>, Path((rig, device)): Path<(String, String)>) -> Response {
    html(ConsolePage { viewer: Some(viewer), rig, device })
}

/// The console's WebSocket. Binary frames carry the console's bytes both ways; text
/// frames from the server are JSON `{"state": "opening" | "open" | "closed", "message"}`.
pub(crate) async fn console_socket(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path((rig, device)): Path<(String, String)>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A page of another site may open a WebSocket with this person's cookie: only
    // the dashboard's own pages may.
    if !same_origin(&headers) {
        return WebFail::new(StatusCode::FORBIDDEN, "Not from this dashboard", "a console opens only from the dashboard's own page")
            .for_viewer(&viewer)
            .into_response();
    }
    upgrade.on_upgrade(move |socket| console_session(state, viewer, rig, device, socket)).into_response()
}

fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => {
            origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")).is_some_and(|o| o.eq_ignore_ascii_case(host))
        }
        _ => false,
    }
}

fn status(state: &str, message: &str) -> Message {
    Message::Text(serde_json::json!({ "state": state, "message": message }).to_string().into())
}

async fn console_session(state: WebState, viewer: Viewer, rig: String, device: String, mut socket: WebSocket) {
    let _ = socket.send(status("opening", &format!("asking the lab host of rig {rig} to open {device}'s console"))).await;
    let op = match request(&state, &viewer, &rig, &device, BenchAction::Console).await {
        Ok(op) => op,
        Err(fail) => {
            let _ = socket.send(status("closed", &fail.message())).await;
            return;
        }
    };
    let relay = state.consoles.open(op.op, op.fencing);
    let reason = match answer(&state, &viewer, op.op).await {
        Ok(BenchOutcome::Done { detail }) => {
            let _ = socket.send(status("open", &format!("{device} on rig {rig}: {detail}"))).await;
            relay_until_closed(&state, &viewer, &op, &relay, &mut socket).await
        }
        Ok(BenchOutcome::Refused { reason } | BenchOutcome::Failed { reason }) => {
            format!("the lab host did not open the console: {reason}")
        }
        Err(fail) => fail.message(),
    };
    relay.close(&reason);
    let _ = socket.send(status("closed", &format!("console closed: {reason}"))).await;
    let _ = socket.send(Message::Close(None)).await;
    if let Err(e) = state.api.store.bench_close(op.op, &reason, &viewer.ctx(&state)).await {
        tracing::warn!("console session {}: its close was not recorded: {e}", op.op);
    }
    // The lab host sees the close on its next message; then the relay goes.
    let consoles = state.consoles.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        consoles.remove(op.op);
    });
}

/// Relay until the person leaves, their lease or session ends, or the lab host
/// closes the console; the reason.
async fn relay_until_closed(
    state: &WebState,
    viewer: &Viewer,
    op: &BenchOpRecord,
    relay: &crate::consoles::Relay,
    socket: &mut WebSocket,
) -> String {
    let mut changes = relay.changes();
    let mut check = tokio::time::interval(LEASE_CHECK);
    loop {
        let (output, dropped) = relay.take_output();
        if dropped > 0 {
            let _ = socket.send(status("open", &format!("{dropped} bytes of output were dropped: the page did not keep up"))).await;
        }
        if !output.is_empty() && socket.send(Message::Binary(output.into())).await.is_err() {
            return format!("{}'s browser went away", viewer.user);
        }
        if let Some(reason) = relay.closed() {
            return reason;
        }
        tokio::select! {
            received = socket.recv() => match received {
                Some(Ok(Message::Binary(keys))) => relay.type_keys(&keys),
                Some(Ok(Message::Text(keys))) => relay.type_keys(keys.as_bytes()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return format!("closed by {}", viewer.user),
                Some(Err(e)) => return format!("{}'s browser connection failed: {e}", viewer.user),
            },
            _ = changes.changed() => {}
            _ = check.tick() => {
                if relay.lab_host_silent_for() > crate::consoles::LABHOST_SILENT_LIMIT {
                    return format!("lab host {} stopped serving the console (nothing from it for {} s)", op.labhost, crate::consoles::LABHOST_SILENT_LIMIT.as_secs());
                }
                let now = state.api.clock.now();
                match state.api.store.bench_lease_lost(&op.rig, &viewer.user, op.fencing, now).await {
                    Ok(Some(lost)) => return lost,
                    Ok(None) => {}
                    Err(e) => tracing::warn!("console session {}: cannot check the reservation: {e}", op.op),
                }
                match state.api.store.session(viewer.session_sha256(), now).await {
                    Ok(None) => return format!("{}'s dashboard session ended", viewer.user),
                    Ok(Some(_)) => {}
                    Err(e) => tracing::warn!("console session {}: cannot check the dashboard session: {e}", op.op),
                }
            }
        }
    }
}
