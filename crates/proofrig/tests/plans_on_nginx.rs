//! The web server cases of the library (TS 33.117 4.3.4.x) on a real web server,
//! Debian's nginx, configured compliant and careless (`proofrig_testpeers::nginx`):
//! `proofrig run` of every bundled web plan, aimed at the server's loopback port, then
//! `proofrig verify` of the sealed bundle, which replays each verdict from the recorded
//! HTTP bytes. The verdicts are held to testplans/README.md's nginx table.
//!
//! The device is the web server alone (no SSH, no console): each plan's `http_request`
//! steps get the server's address added, and the rig declares `web_port` and
//! `web_directories` as a vendor's documentation would. The TLS cases (4.2.2.2.2,
//! 4.2.5.1) audit its HTTPS port (`tls_port`, `https_port`, `tls_server_name`), and the
//! auditor's accepted and refused versions are held to `openssl s_client`'s.

mod verdicts;

use std::path::{Path, PathBuf};
use std::process::Output;

use proofrig_evidence::signing;
use proofrig_testpeers::nginx::{Nginx, NginxProfile};

/// The library's web server plans.
const WEB_PLANS: &[&str] = &[
    "web-http-methods.yaml",
    "web-default-content.yaml",
    "web-directory-listing.yaml",
    "web-header-information.yaml",
    "web-error-pages.yaml",
    "transport-layer-protection.yaml",
    "https.yaml",
];

fn proofrig(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(std::process::Stdio::null()).output().expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A bundled plan, its HTTP requests aimed at `server`.
fn aimed(name: &str, server: &Nginx) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans").join(name)).unwrap();
    let aimed = text
        .replace("http_request: { port:", &format!("http_request: {{ address: {}, port:", server.address()))
        .replace("agent(\"http_request\", #{ port:", &format!("agent(\"http_request\", #{{ address: \"{}\", port:", server.address()))
        .replace("tls_audit: { port:", &format!("tls_audit: {{ address: {}, port:", server.address()));
    assert_ne!(aimed, text, "{name}: no http_request or tls_audit step found to aim");
    aimed
}

/// Run every web plan on `server`, verify the bundle; (exit code, output, bundle).
fn run_and_verify(server: &Nginx, tmp: &Path, profile: NginxProfile) -> (i32, String, PathBuf) {
    let dir = tmp.join(profile.name());
    std::fs::create_dir_all(&dir).unwrap();
    let mut plans = Vec::new();
    for name in WEB_PLANS {
        let path = dir.join(name);
        std::fs::write(&path, aimed(name, server)).unwrap();
        plans.push(path.display().to_string());
    }
    let rig = dir.join("rig.yaml");
    std::fs::write(
        &rig,
        format!(
            "rig: web-bench\ndevices:\n  web1:\n    role: web-ui\n    declared:\n      web_port: {}\n      web_directories: [/static/]\n\
             \x20     tls_port: {https}\n      https_port: {https}\n      tls_server_name: {}\n",
            server.port(),
            proofrig_testpeers::nginx::SERVER_NAME,
            https = server.https_port(),
        ),
    )
    .unwrap();
    let (key, public) = (dir.join("lab.key"), dir.join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(plans);
    args.extend(["--rig".into(), s(&rig), "--key".into(), s(&key), "--out".into(), s(&dir.join("results")), "--quiet".into()]);
    let out = proofrig(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let text = format!("{}\nnginx error log:\n{}", all(&out), server.error_log());
    let bundle = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bundle: ").map(PathBuf::from))
        .unwrap_or_else(|| panic!("no bundle: {text}"));
    let verified = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "the bundle verifies, every verdict replayed from the HTTP bytes: {}", all(&verified));
    (out.status.code().unwrap_or(-1), text, bundle)
}

fn assert_table(column: &str, bundle: &Path, text: &str) {
    verdicts::table_named("nginx-verdict-table").assert_column(column, &verdicts::observed(bundle, None), text);
}

#[test]
fn a_compliant_nginx_passes_every_web_case() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nginx::start(NginxProfile::Compliant);
    let (code, text, bundle) = run_and_verify(&server, tmp.path(), NginxProfile::Compliant);
    assert_table("nginx compliant", &bundle, &text);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_careless_nginx_fails_with_each_finding_named() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nginx::start(NginxProfile::Careless);
    let (code, text, bundle) = run_and_verify(&server, tmp.path(), NginxProfile::Careless);
    assert_table("nginx careless", &bundle, &text);
    assert_eq!(code, 1, "{text}");
    let observed = verdicts::observed(&bundle, None);
    let why = |test: &str| observed.iter().find(|(t, _, _)| t == test).map(|(_, _, why)| why.clone()).unwrap_or_default();
    assert!(
        why("TC_NO_WEB_SERVER_HEADER_INFORMATION").contains("nginx/1."),
        "the version is named: {}",
        why("TC_NO_WEB_SERVER_HEADER_INFORMATION")
    );
    assert!(why("TC_NO_UNUSED_HTTP_METHODS").contains("PUT"), "{}", why("TC_NO_UNUSED_HTTP_METHODS"));
    let tls = why("TC_PROTECT_TRANSPORT_LAYER");
    assert!(tls.contains("TLSv1.0") && tls.contains("TLSv1.1"), "the legacy versions are named: {tls}");
    let https = why("HTTPS");
    assert!(https.contains("TLSv1.0"), "{https}");
}

/// The verdict of the one case of `plan` run on a rig `rig_yaml`, and the run's output.
fn run_one(plan: &str, rig_yaml: &str, dir: &Path) -> (String, String) {
    run_one_with(plan, rig_yaml, dir, &[])
}

/// [`run_one`] with plan parameters overridden (`NAME=VALUE`).
fn run_one_with(plan: &str, rig_yaml: &str, dir: &Path, params: &[&str]) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let (rig, key, public) = (dir.join("rig.yaml"), dir.join("lab.key"), dir.join("lab.pub"));
    std::fs::write(&rig, rig_yaml).unwrap();
    let plan_path = dir.join("plan.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let mut args = vec!["run".to_string(), s(&plan_path), "--rig".into(), s(&rig), "--key".into(), s(&key)];
    args.extend(["--out".to_string(), s(&dir.join("results")), "--quiet".into()]);
    for param in params {
        args.extend(["--param".to_string(), param.to_string()]);
    }
    let out = proofrig(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let text = all(&out);
    let bundle = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bundle: ").map(PathBuf::from))
        .unwrap_or_else(|| panic!("no bundle: {text}"));
    let verified = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
    let observed = verdicts::observed(&bundle, None);
    assert_eq!(observed.len(), 1, "{text}");
    (observed[0].1.clone(), format!("{}\n{text}", observed[0].2))
}

#[test]
fn a_web_server_that_is_gone_is_infra_and_an_undeclared_port_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nginx::start(NginxProfile::Careless);
    let plan = aimed("web-http-methods.yaml", &server);
    let port = server.port();
    drop(server);
    let rig = format!("rig: web-bench\ndevices:\n  web1:\n    role: web-ui\n    declared:\n      web_port: {port}\n");
    let (verdict, text) = run_one(&plan, &rig, &tmp.path().join("gone"));
    assert_eq!(verdict, "INFRA", "nothing listens: the bench's fault, never a finding or a pass: {text}");
    let (verdict, text) = run_one(&plan, "rig: web-bench\ndevices:\n  web1:\n    role: web-ui\n", &tmp.path().join("undeclared"));
    assert_eq!(verdict, "ERROR", "{text}");
    assert!(text.contains("web_port"), "the missing key is named: {text}");
}

/// Whether `openssl s_client` completes a handshake with `server`'s HTTPS port offering
/// only `flag`'s version (`-tls1`, ... `-tls1_3`), every suite OpenSSL has (`@SECLEVEL=0`).
fn s_client_accepts(server: &Nginx, flag: &str) -> bool {
    s_client_accepts_suites(server, flag, "ALL")
}

/// [`s_client_accepts`] offering only `ciphers` (OpenSSL's names) for TLS <= 1.2.
fn s_client_accepts_suites(server: &Nginx, flag: &str, ciphers: &str) -> bool {
    proofrig_testpeers::require_program("/usr/bin/openssl", "openssl");
    let connect = format!("{}:{}", server.address(), server.https_port());
    let out = std::process::Command::new("/usr/bin/openssl")
        .args(["s_client", "-connect", &connect, flag, "-cipher", &format!("{ciphers}:@SECLEVEL=0")])
        .args(["-servername", proofrig_testpeers::nginx::SERVER_NAME])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    // A completed handshake names its suite; a refused one says `Cipher is (NONE)`.
    let accepted = out.status.success() && text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    let refused = !out.status.success() || text.contains("Cipher is (NONE)");
    assert!(
        accepted != refused,
        "s_client {flag}: neither plainly accepted nor refused:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    accepted
}

#[tokio::test]
async fn the_tls_auditor_agrees_with_openssl_s_client_on_every_version() {
    use proofrig_agents::tls::{audit, TlsProbe};
    use proofrig_model::events::Recorder;
    for profile in [NginxProfile::Compliant, NginxProfile::Careless] {
        let server = Nginx::start(profile);
        let probe = TlsProbe {
            device: "web1",
            address: server.address(),
            port: server.https_port(),
            server_name: Some(proofrig_testpeers::nginx::SERVER_NAME),
            per_connection: std::time::Duration::from_secs(5),
        };
        let (found, _) =
            audit(&probe, &Recorder::discard()).await.unwrap_or_else(|e| panic!("{}: {e}\n{}", profile.name(), server.error_log()));
        let ctx = proofrig_model::wire::tls::OutputContext {
            address: server.address(),
            port: server.https_port(),
            server_name: probe.server_name,
            checked_at: 0,
        };
        let out = found.output(&ctx);
        let mut accepted_somewhere = false;
        for (version, flag) in [("TLSv1.0", "-tls1"), ("TLSv1.1", "-tls1_1"), ("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")] {
            let ours = out["versions"][version]["accepted"].as_bool().unwrap();
            let theirs = s_client_accepts(&server, flag);
            accepted_somewhere |= ours;
            assert_eq!(ours, theirs, "{}: {version}: the auditor says accepted={ours}, s_client {theirs}: {out:#}", profile.name());
        }
        assert!(accepted_somewhere, "{}: some version is accepted: {out:#}", profile.name());
        // And suites of TLS 1.2, by their IANA and OpenSSL names: accepted and refused alike.
        for (iana, openssl) in [
            ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
            ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
            ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
            ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
            ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
            ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", "CAMELLIA128-SHA"),
        ] {
            let ours = out["versions"]["TLSv1.2"]["suites"].as_array().unwrap().iter().any(|s| s == iana);
            let theirs = s_client_accepts_suites(&server, "-tls1_2", openssl);
            assert_eq!(ours, theirs, "{}: TLS 1.2 {iana}: the auditor says accepted={ours}, s_client {theirs}: {out:#}", profile.name());
        }
    }
}

/// `openssl s_server` speaking TLS 1.3 only, killed on drop.
struct TlsOnly13(std::process::Child);

impl Drop for TlsOnly13 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_tls_1_3_only_server_hides_its_certificate_and_the_check_is_inconclusive_never_pass() {
    proofrig_testpeers::require_program("/usr/bin/openssl", "openssl");
    let tmp = tempfile::tempdir().unwrap();
    let (key, crt) = (tmp.path().join("tls.key"), tmp.path().join("tls.crt"));
    let name = proofrig_testpeers::nginx::SERVER_NAME;
    let made = std::process::Command::new("/usr/bin/openssl")
        .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-days", "30", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let port = proofrig_testpeers::free_port();
    let child = std::process::Command::new("/usr/bin/openssl")
        .args(["s_server", "-quiet", "-tls1_3", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&crt)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = TlsOnly13(child);
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "openssl s_server did not listen on {port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans/transport-layer-protection.yaml")).unwrap();
    let plan = text.replace("tls_audit: { port:", "tls_audit: { address: 127.0.0.1, port:");
    let rig =
        format!("rig: tls-bench\ndevices:\n  nf1:\n    role: nf\n    declared:\n      tls_port: {port}\n      tls_server_name: {name}\n");
    // A profile that mandates TLS 1.3 (a parameter a lab may set): versions and suites pass.
    let (verdict, text) = run_one_with(&plan, &rig, &tmp.path().join("run"), &["required_version=TLSv1.3"]);
    assert_eq!(verdict, "INCONCLUSIVE", "the certificate was not seen, so the case cannot pass: {text}");
    assert!(text.contains("whose certificate is encrypted"), "the reason is named: {text}");
}

#[test]
fn a_tls_server_that_is_gone_is_infra_and_an_undeclared_tls_port_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Nginx::start(NginxProfile::Compliant);
    let plan = aimed("https.yaml", &server);
    let port = server.https_port();
    drop(server);
    let name = proofrig_testpeers::nginx::SERVER_NAME;
    let rig = format!(
        "rig: web-bench\ndevices:\n  web1:\n    role: web-ui\n    declared:\n      https_port: {port}\n      tls_server_name: {name}\n"
    );
    let (verdict, text) = run_one(&plan, &rig, &tmp.path().join("gone"));
    assert_eq!(verdict, "INFRA", "nothing listens: the bench's fault, never a finding or a pass: {text}");
    let rig = format!("rig: web-bench\ndevices:\n  web1:\n    role: web-ui\n    declared:\n      tls_server_name: {name}\n");
    let (verdict, text) = run_one(&plan, &rig, &tmp.path().join("undeclared"));
    assert_eq!(verdict, "ERROR", "{text}");
    assert!(text.contains("https_port"), "the missing key is named: {text}");
}
