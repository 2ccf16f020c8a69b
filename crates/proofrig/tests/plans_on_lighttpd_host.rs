//! TS 33.117 4.3.4.7 (Server Side Includes execute no system command) decided both ways
//! on a real web server: Debian's lighttpd inside the OpenSSH peer's namespaces
//! (`proofrig_testpeers::lighttpd_host`), its SSI exec disabled (compliant) or as
//! installed (careless). nginx's SSI has no exec, so on the nginx host the case can
//! only PASS; lighttpd's runs the command unless told not to.
//!
//! `proofrig run` of web-ssi-exec.yaml, reading the configuration over SSH as root
//! (key login, host key pinned) and placing its probe page in the document root, then
//! `proofrig verify` of the sealed bundle, which replays the verdict. The verdicts are
//! held to testplans/README.md's lighttpd host table; the evidence a user reads (the
//! finding, the recorded HTTP answer) is checked too.

mod verdicts;

use std::path::{Path, PathBuf};
use std::process::Output;

use proofrig_testpeers::lighttpd_host::{LighttpdHost, LighttpdProfile, CONFIG, SERVING_ACCOUNT};

const PLAN: &str = "web-ssi-exec.yaml";
const TEST: &str = "TC_NO_EXECUTION_OF_SYSTEM_COMMANDS";
/// The plan's probe page, removed after its request.
const PROBE_PAGE: &str = "proofrig-ssi-probe.shtml";

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The rig of `host`: root over SSH by key, its host key pinned, and the web server as
/// its vendor documents it (its configuration file and document root).
fn rig(host: &LighttpdHost, dir: &Path) -> PathBuf {
    let sshd = host.sshd();
    let yaml = format!(
        "rig: lighttpd-host-bench\ndevices:\n  web1:\n    role: web-ui\n    declared:\n      web_port: {web}\n      \
         web_server:\n        program: lighttpd\n        account: {SERVING_ACCOUNT}\n        config_files: [{CONFIG}]\n        \
         document_root: {root}\n    \
         ssh: {{ host: 127.0.0.1, port: {port}, user: root, key_file: {key}, host_key: \"{fp}\" }}\n",
        web = host.web_port(),
        root = host.document_root().display(),
        port = sshd.port(),
        key = sshd.client_key().display(),
        fp = sshd.host_key_fingerprint(),
    );
    let path = dir.join("rig.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs the plan on `host`, verifies the bundle; (exit code, output, bundle).
fn run_and_verify(host: &LighttpdHost, tmp: &Path) -> (i32, String, PathBuf) {
    let dir = tmp.join(host.profile().name());
    std::fs::create_dir_all(&dir).unwrap();
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans").join(PLAN);
    let rig = rig(host, &dir);
    verdicts::run_and_verify(&[plan], &rig, &dir, || host.error_log())
}

/// Every step message of the case in the bundle's results, one per line.
fn findings(bundle: &Path) -> String {
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    let case = results["cases"].as_array().into_iter().flatten().find(|c| c["scas"]["test_name"] == TEST);
    case.and_then(|c| c["steps"].as_array()).into_iter().flatten().filter_map(|s| s["message"].as_str()).collect::<Vec<_>>().join("\n")
}

fn journal(bundle: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(bundle.join("journal.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The notes of the case's script step as the journal recorded them (what the
/// configuration showed: the lines that switch SSI on).
fn notes(bundle: &Path) -> Vec<String> {
    let finished = journal(bundle).into_iter().find(|r| r["entry"]["type"] == "step_finished" && r["entry"]["output"]["notes"].is_array());
    let finished = finished.unwrap_or_else(|| panic!("no script step in the journal of {}", bundle.display()));
    finished["entry"]["output"]["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()
}

/// The probe page's HTTP answer: the bytes the journal recorded from the web port.
fn recorded_answer(bundle: &Path) -> String {
    use base64::Engine;
    let mut bytes = Vec::new();
    for record in journal(bundle) {
        let event = &record["entry"]["event"];
        if event["kind"] == "bytes" && event["channel"]["channel"] == "http" && event["direction"] == "in" {
            bytes.extend(base64::engine::general_purpose::STANDARD.decode(event["data"].as_str().unwrap()).unwrap());
        }
    }
    assert!(!bytes.is_empty(), "no HTTP answer recorded in {}", bundle.display());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The account lighttpd serves as, as the device's own `ps` shows it over SSH (the
/// host key pinned).
fn serving_account(host: &LighttpdHost) -> String {
    let sshd = host.sshd();
    let out = std::process::Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts_path().display()))
        .arg("-i")
        .arg(sshd.client_key())
        .args(["-p", &sshd.port().to_string(), "root@127.0.0.1", "ps -o user= -C lighttpd"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh");
    assert!(out.status.success(), "ps over SSH on the lighttpd host: {}", all(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn assert_table(column: &str, bundle: &Path, text: &str) {
    verdicts::table_named("lighttpd-host-verdict-table").assert_column(column, &verdicts::observed(bundle, None), text);
}

#[test]
fn lighttpd_with_ssi_exec_disabled_processes_the_probe_page_without_running_its_command() {
    let tmp = tempfile::tempdir().unwrap();
    let host = LighttpdHost::start(LighttpdProfile::Compliant);
    assert_eq!(serving_account(&host), SERVING_ACCOUNT, "lighttpd serves unprivileged");
    let (code, text, bundle) = run_and_verify(&host, tmp.path());
    assert_table("lighttpd host compliant", &bundle, &text);
    assert_eq!(code, 0, "{text}");
    let notes = notes(&bundle).join("\n");
    assert!(notes.contains(r#"lighttpd.conf: server.modules += ( \"mod_ssi\" )"#), "the line that loads mod_ssi is named: {notes}");
    let why = findings(&bundle);
    assert!(why.contains("SSI is on and processed the probe page, but did not execute its command"), "{why}");
    // What lighttpd answered: the set/echo marker expanded, the exec directive gone
    // with no output in its place.
    let answer = recorded_answer(&bundle);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n<p>ssi-processed</p>\n<p></p>\n"), "{answer}");
    assert!(!host.document_root().join(PROBE_PAGE).exists(), "the probe page is removed after its request");
}

#[test]
fn lighttpd_with_ssi_exec_as_installed_fails_naming_the_command_s_output() {
    let tmp = tempfile::tempdir().unwrap();
    let host = LighttpdHost::start(LighttpdProfile::Careless);
    assert_eq!(serving_account(&host), SERVING_ACCOUNT, "lighttpd serves unprivileged");
    let (code, text, bundle) = run_and_verify(&host, tmp.path());
    assert_table("lighttpd host careless", &bundle, &text);
    assert_eq!(code, 1, "{text}");
    // mod_ssi is one entry of the module list, a line of its own.
    let notes = notes(&bundle).join("\n");
    assert!(notes.contains(r#"lighttpd.conf: \"mod_ssi\","#), "the module list's mod_ssi line is named: {notes}");
    let why = findings(&bundle);
    assert!(why.contains("SSI executed a system command: the answer holds the output of \"expr 1234 + 4321\" (5555)"), "{why}");
    // What lighttpd answered: the command's output where the exec directive was.
    let answer = recorded_answer(&bundle);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n<p>ssi-processed</p>\n<p>5555\n</p>\n"), "{answer}");
    assert!(!host.document_root().join(PROBE_PAGE).exists(), "the probe page is removed after its request");
}
