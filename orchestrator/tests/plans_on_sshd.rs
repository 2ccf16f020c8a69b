//! The bundled SSH plans decide correctly both ways on a real OpenSSH sshd: one
//! configured as a compliant device would be, one as a careless one, and the sealed
//! bundles verify with every verdict replayed.

use std::path::{Path, PathBuf};
use std::process::Output;

use proofrig::evidence::signing;
use proofrig_testpeers::sshd::Sshd;

fn proofrig(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_proofrig")).args(args).stdin(std::process::Stdio::null()).output().expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn plan(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testplans").join(name).display().to_string()
}

fn rig_for(sshd: &Sshd, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("root.pass"), sshd.password()).unwrap();
    let yaml = format!(
        "rig: sshd-bench\ndevices:\n  oam1:\n    role: core\n    declared: {{ open_tcp_ports: [{port}] }}\n    \
         secrets: {{ root_password: {{ file: root.pass }} }}\n    \
         ssh: {{ host: 127.0.0.1, port: {port}, user: {user}, password: {{ file: root.pass }}, host_key: \"{fp}\" }}\n",
        port = sshd.port(),
        user = sshd.user(),
        fp = sshd.host_key_fingerprint()
    );
    let path = dir.join("rig.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn run_and_verify(sshd: &Sshd, tmp: &Path, name: &str) -> (i32, String) {
    let rig = rig_for(sshd, &tmp.join(name));
    let (key, public) = (tmp.join(format!("{name}.key")), tmp.join(format!("{name}.pub")));
    signing::generate(&key, &public).unwrap();
    let out_dir = tmp.join(name).join("results");
    let s = |p: &Path| p.display().to_string();
    let args = [
        "run",
        &plan("remote-root-login.yaml"),
        &plan("ssh-algorithms.yaml"),
        "--rig",
        &s(&rig),
        "--key",
        &s(&key),
        "--out",
        &s(&out_dir),
        "--quiet",
    ];
    let out = proofrig(&args);
    let text = all(&out);
    let bundle = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("bundle: ").map(String::from)).unwrap_or_else(|| panic!("no bundle: {text}"));
    let verified = proofrig(&["verify", &bundle, "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
    (out.status.code().unwrap_or(-1), text)
}

fn row<'a>(table: &'a str, clause: &str) -> &'a str {
    table.lines().find(|l| l.starts_with("oam1") && l.contains(clause)).unwrap_or_else(|| panic!("no row for {clause}:\n{table}"))
}

#[test]
fn a_compliant_sshd_passes_and_a_careless_one_fails_with_the_evidence_named() {
    let tmp = tempfile::tempdir().unwrap();
    let compliant = Sshd::builder()
        .config("PermitRootLogin no")
        .config("KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org")
        .config("Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes256-ctr")
        .config("MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com")
        .start();
    let (code, text) = run_and_verify(&compliant, tmp.path(), "compliant");
    assert_eq!(code, 0, "{text}");
    assert!(row(&text, "4.3.2.6").contains("PASS"), "{text}");
    assert!(row(&text, "4.2.3.2.4").contains("PASS"), "{text}");

    let careless = Sshd::builder().config("PermitRootLogin yes").config("Ciphers +aes128-cbc").start();
    let (code, text) = run_and_verify(&careless, tmp.path(), "careless");
    assert_eq!(code, 1, "{text}");
    let root = row(&text, "4.3.2.6");
    assert!(root.contains("FAIL") && root.contains("SSH login as `root` was accepted"), "{root}");
    let algorithms = row(&text, "4.2.3.2.4");
    assert!(algorithms.contains("FAIL"), "{algorithms}");
    assert!(text.contains("aes128-cbc"), "the failure names the offending cipher: {text}");
}

const ABORTABLE_PLAN: &str = r#"
plan: abort-check
title: A case that waits long enough to be interrupted
cases:
  - id: TC_ABORT_CHECK
    title: Interrupted mid-case, restored anyway
    scas: { spec: TS 33.117, clause: 4.3.2.6, test_name: TC_ABORT_CHECK, requirement: Restore steps always run. }
    purpose: Show that Ctrl-C leaves the device restored and the evidence sealed.
    expected: The run is ABORTED and the restore step ran.
    evidence: The journal.
    steps:
      - ssh_exec: { command: "echo before" }
      - wait: { ms: 60000 }
      - ssh_exec: { command: "echo never" }
    restore:
      - name: put the device back
        ssh_exec: { command: "echo restored" }
"#;

#[test]
fn ctrl_c_stops_the_step_runs_restore_and_seals_an_aborted_bundle() {
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let rig = rig_for(&sshd, &tmp.path().join("abort"));
    let plan_path = tmp.path().join("abort.yaml");
    std::fs::write(&plan_path, ABORTABLE_PLAN).unwrap();
    let (key, public) = (tmp.path().join("lab.key"), tmp.path().join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(["run", &s(&plan_path), "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&tmp.path().join("results"))])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first step prints its verdict when done; then the long wait is running.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "Ctrl-C must not wait for the 60 s step");
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let text = all(&out);
    assert!(text.contains("aborting"), "{text}");
    assert!(text.contains("restore 1: put the device back: PASS"), "the restore step ran: {text}");
    assert!(text.contains("TC_ABORT_CHECK") && text.contains("ABORTED"), "{text}");

    let bundle = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("bundle: ").map(String::from)).expect("a sealed bundle");
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(Path::new(&bundle).join("results.json")).unwrap()).unwrap();
    assert_eq!(results["aborted"], true);
    assert_eq!(results["verdict"], "ABORTED");
    let verified = proofrig(&["verify", &bundle, "--key", &s(&public)]);
    assert_eq!(verified.status.code(), Some(0), "an aborted run is sealed evidence too: {}", all(&verified));
}
