//! The web server cases that look inside the web server's host (TS 33.117 4.3.4.2,
//! .4, .5, .6, .7, .8, .13; and 4.2.5.2.1, its access log) on a real device: Debian's nginx run by a master as root inside the
//! OpenSSH peer's namespaces, configured compliant and careless
//! (`proofrig_testpeers::web_host`). `proofrig run` of each plan, reading the host over
//! SSH as root (key login, host key pinned) with the rig's `declared.web_server` as a
//! vendor's documentation gives it, then `proofrig verify` of the sealed bundle, which
//! replays every verdict. The verdicts are held to testplans/README.md's web host table.

mod verdicts;

use std::path::{Path, PathBuf};
use std::process::Output;

use proofrig_evidence::signing;
use proofrig_testpeers::nginx::NginxProfile;
use proofrig_testpeers::web_host::{WebHost, CONFIG};

/// The library's plans that read the web server's host.
const HOST_PLANS: &[&str] = &[
    "web-server-privileges.yaml",
    "web-add-ons.yaml",
    "web-no-compiler.yaml",
    "web-config-permissions.yaml",
    "web-file-type-mappings.yaml",
    "web-ssi-exec.yaml",
    "web-restricted-file-access.yaml",
    "web-logging.yaml",
    "web-no-scripts-for-uploads.yaml",
    "system-function-authentication.yaml",
];

fn proofrig(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(std::process::Stdio::null()).output().expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The rig of `host`: root over SSH by key, its host key pinned, and the web server
/// as its vendor documents it (the careless one documents its CGI directory).
fn rig(host: &WebHost, dir: &Path) -> PathBuf {
    let sshd = host.sshd();
    let (scripts, uploads) = match host.profile() {
        NginxProfile::Compliant => (String::new(), String::new()),
        NginxProfile::Careless => (host.script_directory().display().to_string(), host.upload_directory().display().to_string()),
    };
    let yaml = format!(
        "rig: web-host-bench\ndevices:\n  web1:\n    role: web-ui\n    declared:\n      web_port: {web}\n      web_directories: [/static/]\n      \
         management_services: [{{ service: ssh }}, {{ service: http, port: {web}, paths: [/admin/config.json] }}]\n      \
         web_server:\n        program: nginx\n        account: www-data\n        master_account: root\n        \
         config_files: [{CONFIG}]\n        modules_command: ls /etc/nginx/modules-enabled\n        add_ons: []\n        \
         script_directories: [{scripts}]\n        \
         file_types_command: \"nginx -T 2>/dev/null | grep -o -E '[a-z]+/[-+.a-z0-9]+( +[a-z0-9]+)+;'\"\n        file_types: [html, css, js]\n        document_root: {root}\n        access_log: {log}\n        upload_directories: [{uploads}]\n    \
         ssh: {{ host: 127.0.0.1, port: {port}, user: root, key_file: {key}, host_key: \"{fp}\" }}\n",
        web = host.web_port(),
        root = host.document_root().display(),
        log = host.access_log().display(),
        port = sshd.port(),
        key = sshd.client_key().display(),
        fp = sshd.host_key_fingerprint(),
    );
    let path = dir.join("rig.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs every host plan on `host`, verifies the bundle; (exit code, output, bundle).
fn run_and_verify(host: &WebHost, tmp: &Path) -> (i32, String, PathBuf) {
    let dir = tmp.join(host.profile().name());
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans");
    let plans: Vec<PathBuf> = HOST_PLANS.iter().map(|p| root.join(p)).collect();
    let rig = rig(host, &dir);
    verdicts::run_and_verify(&plans, &rig, &dir, || host.error_log())
}

/// What each case said, by test name: (verdict, its reasons).
fn observed(bundle: &Path) -> Vec<(String, String, String)> {
    verdicts::observed(bundle, None)
}

/// One HTTP PUT of `body` to `path` on 127.0.0.1:`port`; the answer's head.
fn http_put(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!("PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Every step message of the case `test` in the bundle's results, one per line.
fn findings(bundle: &Path, test: &str) -> String {
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    let case = results["cases"].as_array().into_iter().flatten().find(|c| c["scas"]["test_name"] == test);
    case.and_then(|c| c["steps"].as_array()).into_iter().flatten().filter_map(|s| s["message"].as_str()).collect::<Vec<_>>().join("\n")
}

fn assert_table(column: &str, bundle: &Path, text: &str) {
    verdicts::table_named("web-host-verdict-table").assert_column(column, &verdicts::observed(bundle, None), text);
}

#[test]
fn a_compliant_web_host_passes_every_host_case() {
    let tmp = tempfile::tempdir().unwrap();
    let host = WebHost::start(NginxProfile::Compliant);
    let (code, text, bundle) = run_and_verify(&host, tmp.path());
    assert_table("nginx host compliant", &bundle, &text);
    assert_eq!(code, 0, "{text}");
    // The management API asked for credentials (nginx's basic authentication).
    let asked = findings(&bundle, "TC_SYS_FUN_USAGE");
    assert!(asked.contains("GET /admin/config.json on port") && asked.contains("was answered 401"), "{asked}");
    let rights = findings(&bundle, "TC_RESTRICTED_FILE_ACCESS");
    assert!(rights.contains("nothing under the document root") && rights.contains("is writable by others"), "{rights}");
}

#[test]
fn a_careless_web_host_fails_with_each_finding_named() {
    let tmp = tempfile::tempdir().unwrap();
    let host = WebHost::start(NginxProfile::Careless);
    let (code, text, bundle) = run_and_verify(&host, tmp.path());
    assert_table("nginx host careless", &bundle, &text);
    assert_eq!(code, 1, "{text}");
    let why = |test: &str| findings(&bundle, test);
    for (test, finding) in [
        ("TC_NO_SYSTEM_PRIVILEGES_WEB_SERVER", "runs under root, uid 0: with system privileges"),
        ("TC_SYS_FUN_USAGE", "GET /admin/config.json on port"),
        ("TC_SYS_FUN_USAGE", "without credentials was answered 200"),
        ("TC_NO_UNUSED_ADD-ONS", "50-mod-http-echo.conf is loaded but not among the add-ons"),
        ("TC_NO_UNUSED_ADD-ONS", "switches ssi on, which the product does not need"),
        ("TC_NO_UNUSED_ADD-ONS", "switches webdav on"),
        ("TC_NO_UNUSED_ADD-ONS", "switches cgi on"),
        ("TC_NO_COMPILER_FOR_CGI", "holds a compiler, interpreter or shell: [\"perl\", \"sh\"]"),
        ("TC_ACCESS_RIGHTS_WEB_SERVER_FILES", "is mode 666, owner root, group root: other users have rights on it"),
        ("TC_NO_WEB_SERVER_FILE_TYPE MAPPINGS", "script or program types are mapped: "),
        ("TC_WEBSERVER_LOGGING", "the line does not name the attempted user proofrig-probe"),
        ("TC_NO_CGI_OR_SCRIPTING_FOR_UPLOADS", "lies inside the script directory"),
        ("TC_NO_CGI_OR_SCRIPTING_FOR_UPLOADS", "the serving account www-data may write it"),
        // nginx has no SSI exec: the probe page is processed, its command not run.
        ("TC_NO_EXECUTION_OF_SYSTEM_COMMANDS", "SSI is on and processed the probe page, but did not execute its command"),
        ("TC_RESTRICTED_FILE_ACCESS", "others may write what the web server serves under"),
        ("TC_RESTRICTED_FILE_ACCESS", "/html/upload\"]"),
    ] {
        assert!(why(test).contains(finding), "{test} names `{finding}`: {}\n{text}", why(test));
    }
    // What the rig documents is what the server does: a WebDAV PUT to /upload/ lands
    // in the CGI directory.
    let put = http_put(host.web_port(), "/upload/dropped.cgi", "#!/bin/sh\necho dropped\n");
    assert!(put.starts_with("HTTP/1.1 201"), "the careless server stores uploads: {put}");
    assert!(host.upload_directory().join("dropped.cgi").exists(), "the upload is in {}", host.upload_directory().display());
    let probe = host.document_root().join("proofrig-ssi-probe.shtml");
    assert!(!probe.exists(), "the SSI probe page is removed after the request: {}", probe.display());
}

#[test]
fn a_rig_that_lacks_a_value_of_the_web_server_s_documentation_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let host = WebHost::start(NginxProfile::Compliant);
    let dir = tmp.path().join("undocumented");
    std::fs::create_dir_all(&dir).unwrap();
    let rig = rig(&host, &dir);
    let text = std::fs::read_to_string(&rig).unwrap();
    let without: String = text.lines().filter(|l| !l.contains("modules_command:")).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, text, "the rig had a modules_command to leave out");
    std::fs::write(&rig, without).unwrap();
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans/web-add-ons.yaml");
    let (key, public) = (dir.join("lab.key"), dir.join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let out = proofrig(&["run", &s(&plan), "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&dir.join("results")), "--quiet"]);
    let bundle = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bundle: ").map(PathBuf::from))
        .unwrap_or_else(|| panic!("no bundle: {}", all(&out)));
    let verified = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
    let observed = observed(&bundle);
    assert_eq!(observed.len(), 1, "{}", all(&out));
    assert_eq!(observed[0].1, "ERROR", "a rig without the add-on listing command stops the case: {}", all(&out));
    assert!(observed[0].2.contains("declared.web_server.modules_command"), "the missing key is named: {}", all(&out));
    assert!(observed[0].2.contains("Nothing was sent to the device"), "{}", all(&out));
}
