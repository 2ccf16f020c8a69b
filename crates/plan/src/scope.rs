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

/// The lanes a run's cases go in when its devices run side by side: each lane is a set
/// of devices no case outside it touches, and its case instances, in selection order.
///
/// A case touches its own device and any other one a step of it names (`device:`),
/// so those devices share a lane: two lanes never drive one device at once, and the
/// events of a device (its channels, its outlet) belong to exactly one lane. The
/// executor runs one task per lane; replay attributes each event to its device's lane
/// and checks each lane's steps against that lane's events only. Both build the lanes
/// with this function, from the plans and the rig alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lanes {
    /// Per lane, the indices of its case instances in the selection, in order.
    pub cases: Vec<Vec<usize>>,
    /// The lane of each device a selected case touches.
    pub of_device: BTreeMap<String, usize>,
}

impl Lanes {
    /// The lanes of `selected` (as [`select`] returns it), in the order their first
    /// case comes in the selection.
    pub fn of(selected: &[Selected<'_>]) -> Lanes {
        // Union-find over the devices, by first appearance.
        let mut devices: Vec<String> = Vec::new();
        let mut parent: Vec<usize> = Vec::new();
        fn index(devices: &mut Vec<String>, parent: &mut Vec<usize>, name: &str) -> usize {
            match devices.iter().position(|d| d == name) {
                Some(i) => i,
                None => {
                    devices.push(name.to_string());
                    parent.push(parent.len());
                    parent.len() - 1
                }
            }
        }
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for sel in selected {
            let own = index(&mut devices, &mut parent, &sel.device);
            for other in sel.case.steps.iter().chain(&sel.case.restore).filter_map(|s| s.device.as_deref()) {
                let other = index(&mut devices, &mut parent, other);
                let (a, b) = (root(&mut parent, own), root(&mut parent, other));
                if a != b {
                    parent[b.max(a)] = a.min(b);
                }
            }
        }
        let mut lane_of_root: BTreeMap<usize, usize> = BTreeMap::new();
        let mut cases: Vec<Vec<usize>> = Vec::new();
        for (n, sel) in selected.iter().enumerate() {
            let own = index(&mut devices, &mut parent, &sel.device);
            let r = root(&mut parent, own);
            let lane = *lane_of_root.entry(r).or_insert_with(|| {
                cases.push(Vec::new());
                cases.len() - 1
            });
            cases[lane].push(n);
        }
        let mut of_device = BTreeMap::new();
        for (i, name) in devices.iter().enumerate() {
            let r = root(&mut parent, i);
            if let Some(lane) = lane_of_root.get(&r) {
                of_device.insert(name.clone(), *lane);
            }
        }
        Lanes { cases, of_device }
    }

    /// The lane of `device`, if a selected case touches it.
    pub fn lane(&self, device: &str) -> Option<usize> {
        self.of_device.get(device).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rig() -> Rig {
        let device = |name: &str| {
            format!("  {name}:\n    role: core\n    ssh: {{ host: 127.0.0.1, user: oper, password: {{ env: X }}, host_key: \"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\" }}\n")
        };
        let text = format!("rig: r\ndevices:\n{}{}{}{}", device("a"), device("b"), device("c"), device("d"));
        Rig::parse("r.yaml", &text, Path::new(".")).unwrap()
    }

    const PLAN: &str = r#"
plan: lanes
title: Lanes
cases:
  - id: TC_ALL
    title: On every device
    scas: { spec: TS 33.117, clause: "4.2", test_name: TC_ALL, requirement: none }
    purpose: p
    expected: e
    evidence: e
    steps:
      - ssh_exec: { command: "true" }
  - id: TC_C_AND_B
    title: On c, with a step on b
    scas: { spec: TS 33.117, clause: "4.2", test_name: TC_C_AND_B, requirement: none }
    purpose: p
    expected: e
    evidence: e
    devices: { names: [c] }
    steps:
      - ssh_exec: { command: "true" }
    restore:
      - device: b
        ssh_exec: { command: "true" }
"#;

    #[test]
    fn each_device_is_a_lane_unless_a_case_reaches_another() {
        let plan = Plan::parse("lanes.yaml", PLAN).unwrap();
        let rig = rig();
        let plans = [plan];
        let selected = select(&plans, &rig, None);
        let names: Vec<(&str, &str)> = selected.iter().map(|s| (s.case.id.as_str(), s.device.as_str())).collect();
        assert_eq!(names, [("TC_ALL", "a"), ("TC_ALL", "b"), ("TC_ALL", "c"), ("TC_ALL", "d"), ("TC_C_AND_B", "c")]);
        let lanes = Lanes::of(&selected);
        // b and c share a lane (a case on c acts on b), in the selection's order.
        assert_eq!(lanes.cases, vec![vec![0], vec![1, 2, 4], vec![3]]);
        assert_eq!((lanes.lane("a"), lanes.lane("b"), lanes.lane("c"), lanes.lane("d")), (Some(0), Some(1), Some(1), Some(2)));
        // Without the case that joins them, every device is its own lane.
        let lanes = Lanes::of(&selected[..4]);
        assert_eq!(lanes.cases, vec![vec![0], vec![1], vec![2], vec![3]]);
    }
}
