//! `proofrig catalogue` as a technician and a tool use it: the real binary lists the
//! library by clause, says what each case needs, and per device of a rig whether it
//! can run there; a broken plan file is located and the others are still listed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn proofrig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(Stdio::null()).output().expect("run proofrig")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", all(out)))
}

/// A one-case plan with the given clause, test name and steps.
fn plan(id: &str, clause: &str, devices: &str, steps: &str) -> String {
    format!(
        "plan: {id}\ntitle: {id}\nparameters: {{ path: /etc/passwd }}\ncases:\n  - id: {id}\n    title: Case {id}\n    \
         scas: {{ spec: TS 33.117, clause: \"{clause}\", test_name: {id}, requirement: Something holds. }}\n    \
         purpose: p\n    expected: e\n    evidence: e\n    devices: {devices}\n    steps:\n{steps}"
    )
}

#[test]
fn the_default_is_the_whole_bundled_library_sorted_by_clause() {
    let out = proofrig(&["catalogue", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let doc = json(&out);
    assert_eq!(doc["source"], "bundled");
    // Every plan file of testplans/, however many there are, and every case in them.
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join("testplans"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .map(|n| format!("testplans/{n}"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = doc["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(listed, on_disk);
    let cases = doc["cases"].as_array().unwrap();
    let in_files: u64 = doc["files"].as_array().unwrap().iter().map(|f| f["cases"].as_u64().unwrap()).sum();
    assert_eq!(cases.len() as u64, in_files);
    let clauses: Vec<Vec<u64>> =
        cases.iter().map(|c| c["clause"].as_str().unwrap().split('.').map(|p| p.parse().unwrap()).collect()).collect();
    assert!(clauses.windows(2).all(|w| w[0] <= w[1]), "sorted by clause number: {clauses:?}");

    let root =
        cases.iter().find(|c| c["test_name"] == "TC_REMOTE_LOGIN_RESTRICTIONS_PRIVILEGED_USERS").expect("the bundled root-login case");
    assert_eq!(root["file"], "testplans/remote-root-login.yaml");
    assert_eq!(root["needs"]["secrets"], serde_json::json!(["root_password"]));
    assert_eq!(
        root["needs"]["channels"],
        serde_json::json!([{"channel": "console", "optional": true}, {"channel": "ssh", "optional": false}])
    );
    let ports = cases.iter().find(|c| c["test_name"] == "TC_BVT_PORT_SCANNING").unwrap();
    assert_eq!(ports["needs"]["declared"], serde_json::json!(["open_tcp_ports", "open_udp_ports"]));
    assert_eq!(ports["needs"]["parameters"]["ports"], "1-65535");
    assert!(ports["needs"]["parameters"]["udp_ports"].as_str().is_some_and(|p| p.starts_with("1-1024,")), "{}", ports["needs"]);

    // The table lists the same cases, in the same order; a case the specification gives
    // no test name (TS 33.117 4.2.3.6.3), or only punctuation, is found by its file.
    let out = proofrig(&["catalogue"]);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let table = text(&out.stdout);
    let positions: Vec<usize> = cases
        .iter()
        .map(|c| {
            let name = c["test_name"].as_str().unwrap();
            // TS 33.117 4.2.3.4.3.3's name is a lone ":", no word to find.
            let needle = if !name.chars().any(char::is_alphanumeric) { c["file"].as_str().unwrap() } else { name };
            table.find(needle).unwrap_or_else(|| panic!("{needle} missing:\n{table}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{table}");
    assert!(table.contains("secrets: root_password"), "{table}");
}

#[test]
fn a_broken_plan_is_located_and_the_others_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let step = "      - ssh_exec: { command: \"stat -c %a ${param.path}\" }\n        capture: mode\n      \
                - assert: { value: \"${mode.stdout}\", matches: \"${device.declared.mode_pattern}\" }\n";
    std::fs::write(dir.path().join("a.yaml"), plan("TC_TEN", "4.2.10", "{ roles: [core] }", step)).unwrap();
    std::fs::write(dir.path().join("b.yaml"), plan("TC_NINE", "4.2.9", "{ tags: [o-ru] }", "      - power: { action: cycle }\n")).unwrap();
    let broken = plan("TC_BROKEN", "4.2.1", "{}", "      - ssh_exce: { command: id }\n");
    std::fs::write(dir.path().join("c.yaml"), &broken).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a plan").unwrap();

    let out = proofrig(&["catalogue", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "an invalid plan is invalid input: {}", all(&out));
    let err = text(&out.stderr);
    let line = broken.lines().position(|l| l.contains("ssh_exce")).unwrap() + 1;
    assert!(err.contains(&format!("c.yaml:{line}:9: cases[0].steps[0].ssh_exce")), "{err}");
    assert!(err.contains("did you mean `ssh_exec`?"), "{err}");
    let table = text(&out.stdout);
    let (nine, ten) = (table.find("TC_NINE").expect("listed"), table.find("TC_TEN").expect("listed"));
    assert!(nine < ten, "4.2.9 comes before 4.2.10:\n{table}");
    assert!(!table.contains("TC_BROKEN\n"), "{table}");
    assert!(table.contains("could not be loaded") && table.contains("c.yaml"), "{table}");
    let ten_row = &table[ten..];
    assert!(ten_row.contains("roles: core") && ten_row.contains("declared: mode_pattern") && ten_row.contains("params: path"), "{table}");
    assert!(table[nine..ten].contains("tags: o-ru") && table[nine..ten].contains("channels: power"), "{table}");

    let out = proofrig(&[
        "catalogue",
        "--format",
        "json",
        dir.path().join("c.yaml").to_str().unwrap(),
        dir.path().join("a.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let doc = json(&out);
    assert_eq!(doc["cases"].as_array().unwrap().len(), 1);
    assert_eq!((doc["errors"][0]["line"].as_u64(), doc["errors"][0]["column"].as_u64()), (Some(line as u64), Some(9)));
    assert_eq!(doc["errors"][0]["hint"], "did you mean `ssh_exec`?");
}

#[test]
fn with_a_rig_it_says_per_device_whether_each_case_can_run_and_what_is_missing() {
    let example = repo_root().join("rigs/example-bench.yaml");
    let out = proofrig(&["catalogue", "--rig", example.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "some case cannot run somewhere: {}", all(&out));
    let doc = json(&out);
    assert_eq!(doc["rig"], "example-bench");
    let case = |name: &str| doc["cases"].as_array().unwrap().iter().find(|c| c["test_name"] == name).unwrap().clone();
    let root = case("TC_REMOTE_LOGIN_RESTRICTIONS_PRIVILEGED_USERS");
    assert_eq!(root["can_run"]["ru1"]["status"], "ready", "ru1 declares root_password and has SSH and a console");
    assert_eq!(root["can_run"]["core1"], serde_json::json!({"status": "missing", "missing": ["secret `root_password`"]}));
    let switch = root["can_run"]["switch1"]["missing"].as_array().unwrap();
    assert!(switch.contains(&"ssh".into()), "{switch:?}");
    let algorithms = case("TC_PROTECT_DATA_INFO_TRANSFER_1");
    let ru1 = algorithms["can_run"]["ru1"]["missing"][0].as_str().unwrap();
    assert!(ru1.starts_with("SSH password"), "ru1 logs in with a key only; ssh_negotiate needs a password: {ru1}");
    assert_eq!(
        case("TC_BVT_PORT_SCANNING")["can_run"]["core1"]["missing"],
        serde_json::json!(["declared.open_tcp_ports", "declared.open_udp_ports"])
    );

    let out = proofrig(&["catalogue", "--rig", example.to_str().unwrap()]);
    let table = text(&out.stdout);
    assert!(table.contains("Can each case run on rig `example-bench`?"), "{table}");
    let row =
        table.lines().find(|l| l.contains("TC_REMOTE_LOGIN_RESTRICTIONS_PRIVILEGED_USERS") && l.contains("NO")).expect("a readiness row");
    let header = table.lines().find(|l| l.starts_with("clause") && l.contains("core1")).unwrap();
    let at = |column: &str| header.find(column).unwrap();
    assert_eq!(&row[at("core1")..at("core1") + 2], "NO", "{table}");
    assert_eq!(&row[at("ru1")..at("ru1") + 3], "yes", "{table}");
    assert!(table.lines().any(|l| l.starts_with("core1") && l.contains("secret `root_password`")), "{table}");

    // A rig that does not load is invalid input.
    let out = proofrig(&["catalogue", "--rig", "/nonexistent/rig.yaml"]);
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));
}

/// Every command a bundled case runs on the device is one its `device_commands`
/// names, so `catalogue` tells a technician what the device's userland must have.
#[test]
fn every_bundled_case_names_the_device_commands_it_runs() {
    let script_call = regex::Regex::new(r#"\b(?:ssh_exec|console_run)\s*\(\s*["`]([A-Za-z0-9_./-]+)"#).unwrap();
    // Shell builtins every device's shell has.
    let builtins = ["true", "echo", "exit", "cd", "test", "["];
    for entry in std::fs::read_dir(repo_root().join("testplans")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let plan = proofrig_plan::Plan::load(&path).unwrap();
        for case in &plan.spec.cases {
            let mut used: Vec<String> = Vec::new();
            for step in case.steps.iter().chain(&case.restore) {
                let command = match &step.action {
                    proofrig_plan::Action::SshExec(exec) => Some(exec.command.clone()),
                    proofrig_plan::Action::ConsoleRun(run) => Some(run.command.clone()),
                    _ => None,
                };
                if let Some(word) = command.as_deref().and_then(|c| c.split_whitespace().next()) {
                    if !word.starts_with("${") {
                        used.push(word.to_string());
                    }
                }
                if let Some(script) = step.script() {
                    used.extend(script_call.captures_iter(script).map(|c| c[1].to_string()));
                }
            }
            for word in used.iter().filter(|w| !builtins.contains(&w.as_str())) {
                assert!(
                    case.device_commands
                        .iter()
                        .any(|named| named.split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-').any(|w| w == word)),
                    "{}: case {} runs `{word}` on the device but its device_commands {:?} do not name it",
                    path.display(),
                    case.id,
                    case.device_commands
                );
            }
        }
    }
}
