//! A step's action body as JSON, serialized on its own.
//!
//! Resolving a step needs only its action's body (`ssh_exec: {command: ...}`), once
//! per step run: the [`Action`](crate::Action) is serialized alone, as the body it
//! holds, exactly as `serde_json::to_value` of the whole step has it under the
//! action's key (same `Serialize` impls, same value), without building the rest.

use serde_json::Value;

use super::Step;

/// The body of `step`'s action, as `serde_json::to_value(step)[step.kind().as_str()]`
/// gives it.
pub fn action_body(step: &Step) -> Value {
    serde_json::to_value(&step.action).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_what_serializing_the_whole_step_gives_for_every_action() {
        let plan = crate::Plan::parse(
            "p.yaml",
            "plan: p\ntitle: P\nparameters:\n  x: 1\ncases:\n  - id: C\n    title: C\n    scas: { spec: TS 33.117, clause: \"4.2\", test_name: C, requirement: r }\n    purpose: p\n    expected: e\n    evidence: j\n    steps:\n      - ssh_exec: { command: \"echo ${param.x}\", expect_status: 0 }\n        name: run it\n        timeout_ms: 5000\n      - console_expect: { patterns: ['\\$ $'] }\n      - console_send: { text: hi }\n      - wait: { ms: 5 }\n      - set: { a: 1, b: [x, y] }\n      - power: { action: cycle, off_ms: 100 }\n      - ssh_audit: {}\n      - script: \"check(true, `x`);\"\n    restore:\n      - console_run: { command: \"true\" }\n",
        )
        .expect("the plan parses");
        let case = &plan.spec.cases[0];
        for step in case.steps.iter().chain(&case.restore) {
            let whole = serde_json::to_value(step).unwrap();
            assert_eq!(action_body(step), whole[step.kind().as_str()], "{}", step.kind());
            assert_eq!(whole.as_object().map(|o| o.len()), Some(8), "the common keys and the action: {whole}");
        }
        assert_eq!(action_body(&case.steps[0]), serde_json::json!({"command": "echo ${param.x}", "expect_status": 0, "stdin": null}));
    }
}
