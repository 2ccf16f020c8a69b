//! The SNMP check of 4.3.2.1 against a real agent, net-snmp's snmpd: one answering
//! SNMPv2c with a factory-default community FAILs, one that is SNMPv3-only and one
//! whose community is not a default PASS, and each sealed bundle verifies with its
//! verdicts replayed from the recorded datagrams.
//!
//! The plan carries the bundled case's SNMP steps (`no-unnecessary-services.yaml`),
//! aimed at the agent's loopback port; the device has no SSH, so nothing else runs.

use std::path::Path;
use std::process::Output;

use proofrig_evidence::signing;
use proofrig_testpeers::snmpd::{Snmpd, SnmpdConfig};

fn proofrig(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(std::process::Stdio::null()).output().expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The SNMP steps of the bundled 4.3.2.1 case, taken from the library's file so the
/// test follows the plan as shipped, with the agent's address and port added.
fn plan_for(agent: &Snmpd) -> String {
    let library =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans/no-unnecessary-services.yaml")).unwrap();
    let communities = library
        .lines()
        .find_map(|l| l.trim().strip_prefix("snmp_communities:"))
        .expect("the plan's community parameter")
        .trim()
        .to_string();
    let step = "      - name: ask the SNMP agent for sysDescr.0 over SNMPv1 and v2c with the default communities\n";
    let start = library.find(step).expect("the plan's SNMP probe step");
    let end = start + library[start..].find("      - name: list the device's listening sockets").expect("the step after the SNMP check");
    let steps = library[start..end].replace(
        "          communities:",
        &format!("          address: {}\n          port: {}\n          communities:", agent.address(), agent.port()),
    );
    format!(
        "plan: snmp-on-net-snmp\n\
         title: SNMPv1/v2c on a real agent\n\
         parameters:\n  snmp_communities: {communities}\n\
         cases:\n\
         \x20 - id: TC_NO_UNNECESSARY_SERVICE\n\
         \x20   title: No SNMPv1/v2c agent answers a default community\n\
         \x20   scas: {{ spec: TS 33.117, clause: 4.3.2.1, test_name: TC_NO_UNNECESSARY_SERVICE, requirement: SNMPv1 and v2 are disabled. }}\n\
         \x20   purpose: Find an agent that still answers community-based SNMP.\n\
         \x20   expected: No request is answered.\n\
         \x20   evidence: The datagrams.\n\
         \x20   steps:\n{steps}"
    )
}

/// `proofrig run` of the SNMP steps against `agent`, then `proofrig verify` of the
/// bundle with the lab's key. Returns the run's exit code, its output, and the SNMP
/// probe's recorded output.
fn run_and_verify(agent: &Snmpd, tmp: &Path, name: &str) -> (i32, String, serde_json::Value) {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("snmp.yaml");
    std::fs::write(&plan, plan_for(agent)).unwrap();
    let rig = dir.join("rig.yaml");
    std::fs::write(&rig, "rig: snmp-bench\ndevices:\n  switch1:\n    role: core\n").unwrap();
    let (key, public) = (dir.join("lab.key"), dir.join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let out = proofrig(&["run", &s(&plan), "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&dir.join("results")), "--quiet"]);
    let text = all(&out);
    let bundle = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bundle: ").map(String::from))
        .unwrap_or_else(|| panic!("no bundle: {text}"));
    let verified = proofrig(&["verify", &bundle, "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
    let journal = std::fs::read_to_string(Path::new(&bundle).join("journal.jsonl")).unwrap();
    let probe = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["entry"]["type"] == "step_finished" && r["entry"]["output"]["probes"].is_array())
        .unwrap_or_else(|| panic!("no SNMP probe in the journal: {text}"));
    (out.status.code().unwrap_or(-1), text, probe["entry"]["output"].clone())
}

#[test]
fn an_agent_answering_a_default_v2c_community_fails_and_a_v3_only_one_passes() {
    let tmp = tempfile::tempdir().unwrap();

    let careless = Snmpd::start(SnmpdConfig::v2c(&["public"]));
    let (code, text, probe) = run_and_verify(&careless, tmp.path(), "careless");
    assert_eq!(code, 1, "FAIL: {text}\n{}", careless.log());
    // net-snmp answers v1 and v2c with `public`, and nothing with `private`.
    assert_eq!(probe["answered"], serde_json::json!(["v1/public", "v2c/public"]), "{probe}");
    assert_eq!(probe["probes"].as_array().map(Vec::len), Some(4), "{probe}");
    assert!(text.contains("the device's SNMP agent answers SNMPv1/v2c"), "the finding is named: {text}");
    assert!(text.contains("v1/public"), "the answered version and community are named: {text}");

    // A v3-only agent: alive (it answers v3 discovery, see testpeers), silent to v1/v2c.
    let v3 = Snmpd::start(SnmpdConfig::v3_only());
    let (code, text, probe) = run_and_verify(&v3, tmp.path(), "v3-only");
    assert_eq!(code, 0, "PASS: {text}\n{}", v3.log());
    assert_eq!(
        (probe["answered"].clone(), probe["port_unreachable"].clone()),
        (serde_json::json!([]), serde_json::json!(false)),
        "{probe}"
    );

    // A community that is not a factory default is not found by this check: that is
    // what the vendor's documented communities in `snmp_communities` are for.
    let private = Snmpd::start(SnmpdConfig::v2c(&["k7-Qe2-noc"]));
    let (code, text, probe) = run_and_verify(&private, tmp.path(), "own-community");
    assert_eq!(code, 0, "PASS: {text}");
    assert_eq!(probe["answered"], serde_json::json!([]), "{probe}");
}
