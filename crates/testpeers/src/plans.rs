//! A plan and a rig for the tests of what surrounds a run (the job use case, the lab
//! host's assignments, the server's inbox) where no device needs to answer: one case
//! that sets a value and checks it. It touches no device, so its honest verdict is
//! INCONCLUSIVE (never PASS without evidence from the device).

/// The plan `plan:` with one case `case` (also its SCAS test name) that sets and
/// checks a value.
pub fn no_device_plan(plan: &str, case: &str) -> String {
    format!(
        r#"
plan: {plan}
title: A run that needs no device
cases:
  - id: {case}
    title: Sets and checks a value
    scas: {{ spec: TS 33.117, clause: 4.2.3.4.5, test_name: {case}, requirement: The value is set. }}
    purpose: A case with no device I/O.
    expected: The value holds.
    evidence: The journal.
    steps:
      - set: {{ answer: 42 }}
      - assert: {{ value: "${{answer}}", equals: 42, message: "the answer is not 42", passed: "the answer is 42" }}
"#
    )
}

/// A rig `rig` of one radio unit with no channel at all.
pub fn desk_rig(rig: &str) -> String {
    format!("rig: {rig}\ndevices:\n  ru1:\n    role: radio-unit\n")
}
