//! How a plan meets a rig, shared by the executor and replay so both decide alike:
//! which case runs on which device, the `${...}` scope a case starts from and what
//! each step adds to it, and a step's action body resolved against that scope. (How
//! a case's steps add up to its verdict is [`crate::tally`].)

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::{body, template, Action, Case, Plan, Step};
use proofrig_model::rig::{Device, Rig};

/// A case instance: one case of one plan on one device.
pub struct Selected<'a> {
    pub plan: &'a Plan,
    pub case: &'a Case,
    pub device: String,
}

/// Which case runs on which device, in plan order. Shared with replay.
pub fn select<'a>(plans: &'a [Plan], rig: &Rig, only: Option<&str>) -> Vec<Selected<'a>> {
    let mut out = Vec::new();
    for plan in plans {
        for case in &plan.spec.cases {
            for (name, device) in rig.devices() {
                if only.is_some_and(|o| o != name) {
                    continue;
                }
                if case.devices.matches(name, &device.role, &device.tags) {
                    out.push(Selected { plan, case, device: name.to_string() });
                }
            }
        }
    }
    out
}

/// The `${...}` scope every step of a case starts from. Shared with replay.
pub fn base_scope(plan: &Plan, params: &BTreeMap<String, Value>, name: &str, device: &Device) -> Value {
    let mut param: Map<String, Value> = plan.spec.parameters.clone().into_iter().collect();
    for (k, v) in params {
        if param.contains_key(k) {
            param.insert(k.clone(), v.clone());
        }
    }
    let ssh = device.ssh.as_ref().map(|s| json!({"host": s.host, "port": s.port, "user": s.user, "key": s.key_file.is_some()}));
    let channels: Vec<&str> = [("console", device.console.is_some()), ("ssh", device.ssh.is_some()), ("power", device.power.is_some())]
        .into_iter()
        .filter_map(|(name, has)| has.then_some(name))
        .collect();
    let mut scope = Map::new();
    scope.insert("param".into(), Value::Object(param));
    scope.insert(
        "device".into(),
        json!({
            "name": name,
            "role": device.role,
            "tags": device.tags,
            "identity": device.identity,
            "declared": device.declared,
            "ssh": ssh,
            "channels": channels,
        }),
    );
    Value::Object(scope)
}

/// After a step: what it adds to the scope. Shared with replay.
pub fn absorb(scope: &mut Value, step: &Step, spec: &Value, output: &Value) {
    let Some(scope) = scope.as_object_mut() else { return };
    if output.get("error").is_some() {
        return;
    }
    if let Action::Set(_) = step.action {
        if let Value::Object(values) = spec {
            for (k, v) in values {
                scope.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(name) = &step.capture {
        scope.insert(name.clone(), output.clone());
    }
}

/// Resolve `${...}` in a step's action body against `scope`.
pub fn resolve(step: &Step, scope: &Value) -> Result<Value, template::Unresolved> {
    // A script reads the scope itself; `${` in its text is Rhai's own interpolation.
    if let Some(source) = step.script() {
        return Ok(Value::String(source.to_string()));
    }
    let mut body = body::action_body(step);
    template::resolve_in_place(&mut body, scope)?;
    Ok(body)
}

/// A step limited to devices with a channel this device lacks: its SKIP output.
/// Decided from the scope alone, so replay reaches the same decision.
pub fn missing_channel(step: &Step, scope: &Value) -> Option<Value> {
    let needed = step.if_device_has?.as_str();
    let has = scope["device"]["channels"].as_array().is_some_and(|c| c.iter().any(|v| v == needed));
    (!has).then(|| json!({"skipped": format!("device {} has no {needed}", scope["device"]["name"].as_str().unwrap_or("?"))}))
}
