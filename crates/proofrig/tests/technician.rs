//! The technician commands as a person at the bench uses them: the real `proofrig`
//! binary against real peers (OpenSSH's sshd, a Modbus TCP relay board, a PTY
//! console), checking what it prints, how it exits, and what it records.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use proofrig_testpeers::modbus::ModbusServer;
use proofrig_testpeers::pty::{ConsoleScript, ScriptedConsole};
use proofrig_testpeers::sshd::Sshd;

fn proofrig(transcripts: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .arg("--transcripts")
        .arg(transcripts)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run proofrig")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_rig(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("rig.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Every transcript line of the sessions recorded in `dir`, parsed.
fn transcript_events(dir: &Path) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir).expect("transcripts directory exists") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        events.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
    }
    events
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_path_buf()
}

#[test]
fn rig_check_accepts_the_documented_example_and_locates_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let example = repo_root().join("rigs/example-bench.yaml");
    let out = proofrig(dir.path(), &["rig", "check", example.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (rig `example-bench`, 3 device(s), 3 PDU(s))"));

    let broken = std::fs::read_to_string(&example).unwrap().replace("pdu: relays", "pdu: relay");
    let rig = write_rig(dir.path(), &broken);
    let out = proofrig(dir.path(), &["rig", "check", rig.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    let line = broken.lines().position(|l| l.contains("pdu: relay,")).unwrap() + 1;
    assert!(err.contains(&format!("rig.yaml:{line}:")), "{err}");
    assert!(err.contains("devices.ru1.power.pdu: no PDU named `relay`"), "{err}");
    assert!(err.contains("did you mean `relays`?"), "{err}");
}

fn modbus_rig(port: u16) -> String {
    format!(
        "rig: power-bench\npdus:\n  board: {{ modbus: {{ host: 127.0.0.1, port: {port}, unit: 1, timeout_ms: 1500 }} }}\n\
         devices:\n  ru1:\n    role: radio-unit\n    power: {{ pdu: board, outlet: 3, cycle_off_ms: 50 }}\n"
    )
}

#[test]
fn power_switches_the_outlet_reports_read_back_and_records_it() {
    let board = ModbusServer::start(8);
    let dir = tempfile::tempdir().unwrap();
    let transcripts = dir.path().join("sessions");
    let rig = write_rig(dir.path(), &modbus_rig(board.port()));
    let rig = rig.to_str().unwrap();

    let out = proofrig(&transcripts, &["power", rig, "ru1", "on"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ru1: power on");
    assert!(board.coil(3));

    let out = proofrig(&transcripts, &["power", rig, "ru1", "off"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!board.coil(3));
    let out = proofrig(&transcripts, &["power", rig, "ru1", "status"]);
    assert_eq!(text(&out.stdout).trim(), "ru1: power off");

    let power_events: Vec<_> = transcript_events(&transcripts).into_iter().filter(|e| e["kind"] == "power").collect();
    assert_eq!(power_events.len(), 3);
    let on = power_events.iter().find(|e| e["action"] == "on").unwrap();
    assert_eq!((on["readback"].as_str(), on["ok"].as_bool(), on["outlet"].as_str()), (Some("on"), Some(true), Some("3")));
}

#[test]
fn power_names_the_pdu_when_it_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = proofrig_testpeers::free_port();
    let rig = write_rig(dir.path(), &modbus_rig(closed_port));
    let out = proofrig(dir.path(), &["power", rig.to_str().unwrap(), "ru1", "on"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("PDU `board`") && err.contains(&format!("127.0.0.1:{closed_port}")), "{err}");

    let out = proofrig(dir.path(), &["power", rig.to_str().unwrap(), "ru9", "on"]);
    assert_eq!(out.status.code(), Some(3), "an unknown device is a usage error");
    assert!(text(&out.stderr).contains("did you mean `ru1`?"));
}

fn ssh_rig(sshd: &Sshd, dir: &Path, fingerprint: &str) -> PathBuf {
    std::fs::write(dir.join("core1.pass"), format!("{}\n", sshd.password())).unwrap();
    write_rig(
        dir,
        &format!(
            "rig: ssh-bench\ndevices:\n  core1:\n    role: core\n    ssh:\n      host: {}\n      port: {}\n      user: {}\n      \
             password: {{ file: core1.pass }}\n      host_key: \"{fingerprint}\"\n      timeout_ms: 5000\n",
            sshd.host(),
            sshd.port(),
            sshd.user()
        ),
    )
}

#[test]
fn ssh_runs_one_command_and_exits_with_its_status() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let transcripts = dir.path().join("sessions");
    let rig = ssh_rig(&sshd, dir.path(), sshd.host_key_fingerprint());

    let out = proofrig(&transcripts, &["ssh", rig.to_str().unwrap(), "core1", "--", "echo", "out;", "echo err >&2;", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"));

    let events = transcript_events(&transcripts);
    assert!(events.iter().any(|e| e["kind"] == "ssh_exec" && e["command"] == "echo out; echo err >&2; exit 7"));
    assert!(events.iter().any(|e| e["kind"] == "ssh_exit" && e["exit_status"] == 7));
    let all = events.iter().map(|e| e.to_string()).collect::<String>();
    assert!(!all.contains(sshd.password()), "the password must never reach a transcript");
}

#[test]
fn ssh_refuses_a_host_key_that_does_not_match_the_pin_and_shows_the_offered_one() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "SHA256:CJl+pMJlLF6Wwb66giS9EaDRX9H6vfNcMsOQQfEzXow";
    let rig = ssh_rig(&sshd, dir.path(), wrong);
    let out = proofrig(dir.path(), &["ssh", rig.to_str().unwrap(), "core1", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(sshd.host_key_fingerprint()), "the error shows the offered key: {err}");
    assert!(err.contains("core1"), "{err}");
}

#[test]
fn probe_reports_every_channel_and_fails_when_one_is_down() {
    let sshd = Sshd::start();
    let board = ModbusServer::start(8);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("core1.pass"), sshd.password()).unwrap();
    let dead_port = proofrig_testpeers::free_port();
    let yaml = format!(
        "rig: probe-bench\npdus:\n  board: {{ modbus: {{ host: 127.0.0.1, port: {mb}, timeout_ms: 1000 }} }}\n\
         devices:\n  core1:\n    role: core\n    ssh: {{ host: 127.0.0.1, port: {p}, user: {u}, password: {{ file: core1.pass }}, host_key: \"{fp}\" }}\n    \
         power: {{ pdu: board, outlet: 1 }}\n  core2:\n    role: core\n    \
         ssh: {{ host: 127.0.0.1, port: {dead_port}, user: root, password: {{ file: core1.pass }}, host_key: \"{fp}\", timeout_ms: 1000 }}\n",
        mb = board.port(),
        p = sshd.port(),
        u = sshd.user(),
        fp = sshd.host_key_fingerprint()
    );
    let rig = write_rig(dir.path(), &yaml);

    let out = proofrig(dir.path(), &["rig", "probe", rig.to_str().unwrap(), "--device", "core1"]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    assert!(table.lines().any(|l| l.starts_with("core1") && l.contains("ssh") && l.contains("up")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("core1") && l.contains("power") && l.contains("up")), "{table}");

    let out = proofrig(dir.path(), &["rig", "probe", rig.to_str().unwrap()]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let row = table.lines().find(|l| l.starts_with("core2")).expect("a row for core2");
    assert!(row.contains("DOWN") && row.contains(&dead_port.to_string()), "{row}");
}

/// Collects a child's output on a thread so a test can wait for what it printed.
struct Screen {
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Screen {
    fn watch(mut from: impl std::io::Read + Send + 'static) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self { seen }
    }

    fn text(&self) -> String {
        text(&self.seen.lock().unwrap())
    }

    fn wait_for(&self, what: &str) {
        self.wait_for_times(what, 1);
    }

    fn wait_for_times(&self, what: &str, times: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.text().matches(what).count() < times {
            assert!(std::time::Instant::now() < deadline, "waited 10 s for {what:?}; the screen shows:\n{}", self.text());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// `proofrig console RIG ru1`, as a person at the bench runs it, logged in as root at
/// the device's prompts: the process, what it shows, and its keyboard.
fn console_logged_in_as_root(rig: &Path, transcripts: &Path, password: &str) -> (std::process::Child, Screen, std::process::ChildStdin) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .arg("--transcripts")
        .arg(transcripts)
        .args(["console", rig.to_str().unwrap(), "ru1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let screen = Screen::watch(child.stdout.take().unwrap());
    let mut keyboard = child.stdin.take().unwrap();
    screen.wait_for("login:");
    keyboard.write_all(b"root\n").unwrap();
    screen.wait_for("Password:");
    keyboard.write_all(format!("{password}\n").as_bytes()).unwrap();
    screen.wait_for("# ");
    (child, screen, keyboard)
}

#[test]
fn a_console_session_logs_in_runs_a_command_and_keeps_the_password_out_of_the_transcript() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let password = ConsoleScript::default().password;
    let dir = tempfile::tempdir().unwrap();
    let transcripts = dir.path().join("sessions");
    let rig = write_rig(
        dir.path(),
        &format!(
            "rig: console-bench\ndevices:\n  ru1:\n    role: radio-unit\n    console:\n      serial: {{ port: {} }}\n",
            device.path().display()
        ),
    );
    let (mut child, screen, mut keyboard) = console_logged_in_as_root(&rig, &transcripts, &password);
    keyboard.write_all(b"echo proofrig-console-check\n").unwrap();
    // Once echoed as typed, once as the command's output.
    screen.wait_for_times("proofrig-console-check", 2);
    drop(keyboard);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let events = transcript_events(&transcripts);
    let typed: Vec<u8> = events
        .iter()
        .filter(|e| e["kind"] == "bytes" && e["direction"] == "out")
        .flat_map(|e| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(e["data"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert!(text(&typed).contains("echo proofrig-console-check"), "typed commands are recorded");
    let all: String = events.iter().map(|e| e.to_string()).collect();
    assert!(!all.contains(&password), "the password typed at the prompt must not be recorded");
    assert!(events.iter().any(|e| e["kind"] == "redacted" && e["len"] == password.len()));
}

#[test]
fn a_console_session_records_a_rig_secret_the_device_prints_as_its_marker() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let password = ConsoleScript::default().password;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ru1.pass"), format!("{password}\n")).unwrap();
    let transcripts = dir.path().join("sessions");
    let rig = write_rig(
        dir.path(),
        &format!(
            "rig: console-bench\ndevices:\n  ru1:\n    role: radio-unit\n    secrets:\n      root_password: {{ file: ru1.pass }}\n    console:\n      serial: {{ port: {} }}\n",
            device.path().display()
        ),
    );
    let (mut child, screen, mut keyboard) = console_logged_in_as_root(&rig, &transcripts, &password);
    // The person at the bench types the password where the device echoes it, and the
    // device prints it again: the screen shows it, the transcript must not.
    keyboard.write_all(format!("echo {password}\n").as_bytes()).unwrap();
    screen.wait_for_times(&password, 2);
    drop(keyboard);
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let events = transcript_events(&transcripts);
    let all: String = events.iter().map(|e| e.to_string()).collect();
    assert!(!all.contains(&password), "a rig secret the device printed is in the session transcript");
    let shown: Vec<u8> = events
        .iter()
        .filter(|e| e["kind"] == "bytes" && e["direction"] == "in")
        .flat_map(|e| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(e["data"].as_str().unwrap()).unwrap()
        })
        .collect();
    let marker = format!("«redacted:file:{}»", dir.path().join("ru1.pass").display());
    assert_eq!(text(&shown).matches(&marker).count(), 2, "the echo and the output: {}", text(&shown));
}

/// A `proofrig sim` child, killed if a test fails before stopping it.
struct SimChild(std::process::Child);

impl Drop for SimChild {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The worked example of testplans/README.md, exactly as a tester copies it.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(repo_root().join("testplans/README.md")).unwrap();
    let start = readme.find("```yaml\n# my-first-case.yaml").expect("the worked example in testplans/README.md") + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_string()
}

#[test]
fn sim_serves_a_lab_that_probe_and_run_use_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let transcripts = dir.path().join("sessions");
    // As the README says it: a rig path relative to where the technician stands.
    let child = Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .current_dir(dir.path())
        .arg("--transcripts")
        .arg(&transcripts)
        .args(["sim", "--rig-out", "lab/simlab.yaml"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sim = SimChild(child);
    let screen = Screen::watch(sim.0.stdout.take().unwrap());
    let errors = Screen::watch(sim.0.stderr.take().unwrap());
    let rig = dir.path().join("lab/simlab.yaml");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !rig.exists() {
        if let Ok(Some(status)) = sim.0.try_wait() {
            panic!("sim exited {status} before writing its rig:\n{}{}", screen.text(), errors.text());
        }
        assert!(std::time::Instant::now() < deadline, "no rig file after 30 s:\n{}{}", screen.text(), errors.text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    screen.wait_for("serving until Ctrl-C");
    let shown = screen.text();
    for device in ["ru1", "ru2", "core1", "core2"] {
        assert!(shown.lines().any(|l| l.starts_with(device) && l.contains("127.0.0.") && l.contains("/dev/pts/")), "{shown}");
    }

    // The rig is whole and valid the moment it exists, and names no secret: the
    // passwords are in mode-0600 files beside it.
    let rig_text = std::fs::read_to_string(&rig).unwrap();
    let out = proofrig(&transcripts, &["rig", "check", rig.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("4 device(s), 1 PDU(s)"), "{}", text(&out.stdout));
    let secrets: Vec<_> = std::fs::read_dir(dir.path().join("lab/secrets")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(secrets.len() >= 8, "{secrets:?}");
    for secret in &secrets {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(secret).unwrap().permissions().mode() & 0o777, 0o600, "{}", secret.display());
        let value = std::fs::read_to_string(secret).unwrap();
        assert!(!rig_text.contains(value.trim()), "{} is in the rig file", secret.display());
    }

    // From another directory, with the rig's full path: every channel of every device is up.
    let out = proofrig(&transcripts, &["rig", "probe", rig.to_str().unwrap()]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", text(&out.stderr));
    for device in ["ru1", "ru2", "core1", "core2"] {
        for channel in ["console", "ssh", "power"] {
            assert!(
                table.lines().any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == [device, channel, "up"]),
                "{device} {channel} is not up:\n{table}"
            );
        }
    }
    // Each device's power row reads that device's own coil, not one coil for all.
    let coils: std::collections::BTreeSet<&str> = table
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("power"))
        .map(|l| l.split("coil ").nth(1).and_then(|c| c.split_whitespace().next()).unwrap_or_else(|| panic!("no coil named: {l}")))
        .collect();
    assert_eq!(coils.len(), 4, "one coil per device:\n{table}");

    // The README's worked example runs on it: the hardened devices pass, the weak fail,
    // and the bundle verifies.
    let plan = dir.path().join("my-first-case.yaml");
    std::fs::write(&plan, readme_example()).unwrap();
    let out = proofrig(&transcripts, &["plan", "check", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let keys = dir.path().join("keys");
    assert_eq!(proofrig(&transcripts, &["keygen", "--out", keys.to_str().unwrap()]).status.code(), Some(0));
    let results = dir.path().join("results");
    let out = proofrig(
        &transcripts,
        &[
            "run",
            plan.to_str().unwrap(),
            "--rig",
            rig.to_str().unwrap(),
            "--key",
            keys.join("lab.key").to_str().unwrap(),
            "--out",
            results.to_str().unwrap(),
            "-q",
        ],
    );
    let verdicts = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a FAIL exits 1:\n{verdicts}{}", text(&out.stderr));
    for (device, verdict) in [("ru1", "PASS"), ("core1", "PASS"), ("ru2", "FAIL"), ("core2", "FAIL")] {
        assert!(verdicts.lines().any(|l| l.starts_with(&format!("{device} ")) && l.contains(verdict)), "{device} {verdict}:\n{verdicts}");
    }
    assert!(verdicts.contains("world-writable: found `6`"), "the FAIL names the evidence:\n{verdicts}");
    let bundle = verdicts.lines().find_map(|l| l.strip_prefix("bundle: ")).expect("a bundle path");
    let out = proofrig(&transcripts, &["verify", bundle, "--key", keys.join("lab.pub").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Ctrl-C: the sim exits 0 and lets go of its devices.
    let ssh_port = rig_text
        .lines()
        .skip_while(|l| l.trim() != "ru1:")
        .find_map(|l| l.trim().strip_prefix("port: "))
        .and_then(|p| p.trim().parse::<u16>().ok())
        .expect("ru1's SSH port in the rig");
    assert!(std::net::TcpStream::connect(("127.0.0.11", ssh_port)).is_ok(), "ru1 answers on {ssh_port} while the sim runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sim.0.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = sim.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "sim still running 20 s after Ctrl-C:\n{}", errors.text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", errors.text());
    assert!(std::net::TcpStream::connect(("127.0.0.11", ssh_port)).is_err(), "ru1's SSH port is closed once the sim stopped");
}
