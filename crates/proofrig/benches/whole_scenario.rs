//! The whole scenario of issue 17, as a new user would run it, with labgrid 26.0.1 and
//! with proofrig on the same slow device: power off, power on, log in on the console,
//! one console command, connect over SSH, 100 SSH commands each with its output and
//! exit status checked, power off.
//!
//! Issue 17's goal: proofrig's run, with its bundle sealed and verified, at most 0.7x
//! labgrid's wall time. The device is the BusyBox + dropbear radio unit of
//! `proofrig-testpeers` (hardened profile), powered by its Modbus TCP relay board; every
//! process of the device (init, getty, login, the shells, dropbear and every session it
//! forks) runs in a cgroup v1 `cpu` group limited to `PROOFRIG_BENCH_CPU_PCT` percent of
//! one CPU (default 10), as a small CPU is: the boot script joins the group before it
//! becomes the device's init, so each power-on boots slowly too.
//!
//! - labgrid: labgrid 26.0.1 from PyPI (with pyModbusTCP, what its `ModbusCoilDriver`
//!   imports), in a venv made under the target directory on first use. An environment
//!   file (RawSerialPort on the console PTY, ModbusTCPCoil on the device's outlet,
//!   NetworkService for dropbear; SerialDriver, ModbusCoilDriver,
//!   DigitalOutputPowerDriver, ShellDriver, SSHDriver) and a Python script doing the
//!   scenario with labgrid's API (`power.off()`, console activated, `power.on()`,
//!   `ShellDriver` activated (it logs in), `shell.run_check`, `SSHDriver` activated (its
//!   ControlMaster), 100 `ssh.run_check` with each output compared, `power.off()`).
//!   Timed: the wall time of the `python` process.
//! - proofrig: `proofrig run` of a plan doing the same (power off, power on,
//!   `console_login`, `console_run` with its output checked, a script of 100 checked
//!   `ssh_exec`, power off) on the rig `write_rig` writes with `ssh.persistent_shell: true`,
//!   then `proofrig verify` of the bundle, which must say VERIFIED. Timed: the wall time of
//!   both processes. Also shown: the run alone, and a run with a channel per command
//!   (the rig's default) as a reference.
//!
//! Both run inside the device's network namespace (`BusyboxDevice::command`). Every run
//! starts from the same state: the device powered and booted (in the slow cgroup). Rounds
//! alternate which side goes first; the headline is the median ratio with its range.
//! Needs root (namespaces, cgroups) and PyPI on first use. Run:
//! `cargo bench -p proofrig --bench whole_scenario` (`PROOFRIG_BENCH_ROUNDS`, default 3).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod on_device;

use on_device::{env_number, median, range, run_on_device, verify_on_device, SlowCpu};
use proofrig_testpeers::busybox::{BusyboxDevice, Profile, PDU_HOST};

const COMMANDS: usize = 100;
const LABGRID: &str = "26.0.1";
/// What labgrid's ModbusCoilDriver imports; labgrid does not depend on it itself.
const LABGRID_EXTRAS: &[&str] = &["pyModbusTCP"];
/// The command run on the console, and what it must print.
const CONSOLE_COMMAND: &str = "cat /etc/hostname";

/// A file only its owner reads.
fn write_private(path: &Path, text: &str) {
    std::fs::write(path, "").expect("private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("private file mode");
    std::fs::write(path, text).expect("private file");
}

/// labgrid's Python: a venv under the target directory, made once.
fn labgrid_python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        // target/release/deps/whole_scenario-HASH
        std::env::current_exe().expect("the bench's path").ancestors().nth(3).expect("the target directory").to_path_buf()
    });
    let venv = target.join("labgrid-venv");
    let python = venv.join("bin/python");
    let check = format!("import importlib.metadata as m, pyModbusTCP; assert m.version('labgrid') == '{LABGRID}'");
    if python.exists() && Command::new(&python).args(["-c", &check]).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
        return python;
    }
    println!("installing labgrid {LABGRID} and {} from PyPI into {} (once)...", LABGRID_EXTRAS.join(", "), venv.display());
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).output().expect("run python3 -m venv (Debian: python3-venv)");
    assert!(made.status.success(), "python3 -m venv {} failed:\n{}", venv.display(), String::from_utf8_lossy(&made.stderr));
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", &format!("labgrid=={LABGRID}")])
        .args(LABGRID_EXTRAS)
        .output()
        .expect("run pip");
    assert!(
        pip.status.success(),
        "pip could not install labgrid {LABGRID}:\n{}{}",
        String::from_utf8_lossy(&pip.stdout),
        String::from_utf8_lossy(&pip.stderr)
    );
    let checked = Command::new(&python).args(["-c", &check]).output().expect("check the labgrid install");
    assert!(checked.status.success(), "labgrid {LABGRID} is not importable after pip:\n{}", String::from_utf8_lossy(&checked.stderr));
    println!("installed labgrid {LABGRID}");
    python
}

/// labgrid's environment file (mode 0600: it holds the passwords, as labgrid's own
/// configuration does) and the scenario script.
fn labgrid_files(device: &BusyboxDevice, dir: &Path) -> (PathBuf, PathBuf) {
    let env = dir.join("labgrid-env.yaml");
    let yaml = format!(
        "targets:\n  main:\n    resources:\n      RawSerialPort:\n        port: '{console}'\n        speed: 115200\n      \
         ModbusTCPCoil:\n        host: '{PDU_HOST}:{pdu}'\n        coil: {outlet}\n      \
         NetworkService:\n        address: '{host}'\n        port: {port}\n        username: '{user}'\n        password: '{oper}'\n    \
         drivers:\n      SerialDriver: {{}}\n      ModbusCoilDriver: {{}}\n      DigitalOutputPowerDriver: {{}}\n      \
         ShellDriver:\n        prompt: '[a-z_][a-z0-9_-]*@{name}:[^ ]*[#$] '\n        login_prompt: 'login: '\n        \
         username: root\n        password: '{root}'\n      SSHDriver: {{}}\n",
        console = device.console_path().display(),
        pdu = device.pdu_port(),
        outlet = device.outlet(),
        host = device.host(),
        port = device.ssh_port(),
        user = device.operator(),
        oper = device.operator_password(),
        name = device.hostname(),
        root = device.root_password(),
    );
    write_private(&env, &yaml);
    let script = dir.join("labgrid_scenario.py");
    let python = format!(
        r#"import sys, time
started = time.monotonic()
marks = []
def mark(name):
    marks.append((name, time.monotonic()))
from labgrid import Environment

env = Environment(sys.argv[1])
target = env.get_target("main")
try:
    power = target.get_driver("DigitalOutputPowerDriver")
    mark("start-up")
    power.off()
    mark("power off")
    target.get_driver("SerialDriver")  # the console open before the device boots
    power.on()
    mark("power on")
    shell = target.get_driver("ShellDriver")  # waits for the login prompt and logs in
    mark("console login")
    out = shell.run_check("{CONSOLE_COMMAND}")
    if out != ["{hostname}"]:
        sys.exit(f"console: {CONSOLE_COMMAND} printed {{out!r}}")
    mark("console command")
    ssh = target.get_driver("SSHDriver")  # its ControlMaster connection
    mark("ssh connect")
    for i in range({COMMANDS}):
        out = ssh.run_check(f"echo {{i}}")
        if out != [str(i)]:
            sys.exit(f"ssh: echo {{i}} printed {{out!r}}")
    mark("ssh commands")
    power.off()
    mark("power off")
finally:
    env.cleanup()
mark("clean-up")
last = started
shown = []
for name, at in marks:
    shown.append(f"{{name}} {{at - last:.3f}}")
    last = at
print("phases: " + ", ".join(shown))
"#,
        hostname = device.hostname(),
    );
    std::fs::write(&script, python).expect("labgrid script");
    (env, script)
}

/// The kernel's console log level: labgrid's ShellDriver runs `dmesg -n 1` after its
/// login, and the device's root is the test machine's kernel's root.
struct PrintkLevel(String);

impl PrintkLevel {
    fn save() -> PrintkLevel {
        PrintkLevel(std::fs::read_to_string("/proc/sys/kernel/printk").expect("/proc/sys/kernel/printk"))
    }

    fn restore(&self) {
        let _ = std::fs::write("/proc/sys/kernel/printk", self.0.split_whitespace().next().unwrap_or("4"));
    }
}

/// labgrid's run of the scenario: the wall time of the Python process, and the
/// script's own times of its phases.
fn labgrid_run(device: &BusyboxDevice, python: &Path, env: &Path, script: &Path, printk: &PrintkLevel) -> (Duration, String) {
    let start = Instant::now();
    let out = device.command(python).arg(script).arg(env).stdin(Stdio::null()).output().expect("run labgrid's scenario");
    let took = start.elapsed();
    printk.restore();
    assert!(
        out.status.success(),
        "labgrid's scenario failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let phases = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("phases: ")).unwrap_or_default().to_string();
    (took, phases)
}

fn plan(dir: &Path, hostname: &str) -> PathBuf {
    let yaml = format!(
        "plan: bench-whole-scenario\ntitle: The whole scenario\ncases:\n  - id: BENCH_WHOLE\n    title: power, console, SSH, power\n    \
         scas: {{ spec: TS 33.117, clause: 4.2.3.3.2, test_name: BENCH_WHOLE, requirement: r }}\n    \
         purpose: p\n    expected: e\n    evidence: e\n    steps:\n      \
         - name: power off\n        power: {{ action: \"off\" }}\n      \
         - name: power on\n        power: {{ action: \"on\" }}\n      \
         - name: log in on the console\n        console_login: {{}}\n        timeout_ms: 60000\n      \
         - name: one console command\n        console_run: {{ command: \"{CONSOLE_COMMAND}\", expect_status: 0 }}\n        capture: host\n      \
         - name: the console answered\n        assert: {{ value: \"${{host.output}}\", equals: {hostname}, passed: the host name, message: not the host name }}\n      \
         - name: {COMMANDS} SSH commands\n        timeout_ms: 600000\n        script: |\n          for i in 0..{COMMANDS} {{\n              \
         let r = ssh_exec(`echo ${{i}}`);\n              \
         check(r.exit_status == 0 && r.stdout == `${{i}}` + \"\\n\", `echo ${{i}} answered`, `echo ${{i}} answered ${{r.stdout}}`);\n          }}\n      \
         - name: power off again\n        power: {{ action: \"off\" }}\n"
    );
    let path = dir.join("whole-scenario.yaml");
    std::fs::write(&path, yaml).expect("bench plan");
    path
}

/// proofrig's run and its verify, each timed as a process.
struct ProofrigTimes {
    run: Duration,
    verify: Duration,
    /// Each step's duration from results.json, and what the run spent outside them
    /// (start-up, the rig's identity command over SSH, sealing).
    phases: String,
}

fn proofrig_run(device: &BusyboxDevice, rig: &Path, plan: &Path, dir: &Path) -> ProofrigTimes {
    let done = run_on_device(device, rig, plan, dir);
    let verify = verify_on_device(device, &done, dir);
    let (run, results) = (done.took, &done.results);
    assert_eq!(results["verdict"], "PASS", "every step worked: {}\n{results:#}", done.text);
    let steps = results["cases"][0]["steps"].as_array().expect("steps");
    let in_steps: u64 = steps.iter().map(|s| s["duration_ms"].as_u64().unwrap_or_default()).sum();
    let mut phases: Vec<String> = steps
        .iter()
        .map(|s| format!("{} {:.3}", s["label"].as_str().unwrap_or("?"), s["duration_ms"].as_f64().unwrap_or_default() / 1e3))
        .collect();
    phases.push(format!("outside the steps {:.3}", run.as_secs_f64() - in_steps as f64 / 1e3));
    ProofrigTimes { run, verify, phases: phases.join(", ") }
}

/// Every run starts from the same state: the device powered and booted, in the slow group.
fn boot(device: &mut BusyboxDevice, slow: &SlowCpu) {
    device.power_on();
    assert!(slow.processes() >= 3, "the device's processes (init, getty, dropbear) are in the slow cgroup: {}", slow.processes());
    // Whatever the boot still prints goes out before the next run opens the console.
    std::thread::sleep(Duration::from_millis(300));
}

fn main() {
    let rounds = env_number("PROOFRIG_BENCH_ROUNDS", 3).max(1);
    let percent = env_number("PROOFRIG_BENCH_CPU_PCT", 10).clamp(1, 100);
    let python = labgrid_python();
    let mut device = BusyboxDevice::start(Profile::Hardened);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("private bench directory");
    let own = device.write_rig(dir);
    let shell = device.write_rig_through_one_shell(dir);
    let plan = plan(dir, device.hostname());
    let labgrid_dir = dir.join("labgrid");
    std::fs::DirBuilder::new().mode(0o700).create(&labgrid_dir).expect("labgrid's directory");
    let (env, script) = labgrid_files(&device, &labgrid_dir);
    let printk = PrintkLevel::save();
    let slow = SlowCpu::from_boot(&device, percent);
    device.power_off();

    println!(
        "the whole scenario (power off, power on, console login, `{CONSOLE_COMMAND}`, SSH, {COMMANDS} checked `echo N`, power off) \
         on the BusyBox + dropbear device at {percent}% of one CPU: labgrid {LABGRID} against proofrig (release build)"
    );
    let (mut labgrids, mut sealed, mut runs, mut channels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let mut labgrid = (Duration::ZERO, String::new());
        let mut ours = ProofrigTimes { run: Duration::ZERO, verify: Duration::ZERO, phases: String::new() };
        let sides: [bool; 2] = if round % 2 == 1 { [true, false] } else { [false, true] };
        for labgrid_side in sides {
            boot(&mut device, &slow);
            if labgrid_side {
                labgrid = labgrid_run(&device, &python, &env, &script, &printk);
            } else {
                ours = proofrig_run(&device, &shell, &plan, dir);
            }
        }
        boot(&mut device, &slow);
        let per_channel = proofrig_run(&device, &own, &plan, dir);
        let (labgrid, labgrid_phases) = labgrid;
        let total = (ours.run + ours.verify).as_secs_f64();
        let ratio = total / labgrid.as_secs_f64();
        println!(
            "  round {round}: labgrid {:.3} s; proofrig run+verify {total:.3} s ({ratio:.2}x; run {:.3} s, verify {:.3} s); \
             a channel per command run+verify {:.3} s ({:.2}x)",
            labgrid.as_secs_f64(),
            ours.run.as_secs_f64(),
            ours.verify.as_secs_f64(),
            (per_channel.run + per_channel.verify).as_secs_f64(),
            (per_channel.run + per_channel.verify).as_secs_f64() / labgrid.as_secs_f64(),
        );
        println!("    labgrid's phases (s): {labgrid_phases}");
        println!("    proofrig's steps (s): {}", ours.phases);
        labgrids.push(labgrid.as_secs_f64());
        sealed.push(total);
        runs.push(ours.run.as_secs_f64() / labgrid.as_secs_f64());
        channels.push((per_channel.run + per_channel.verify).as_secs_f64() / labgrid.as_secs_f64());
        ratios.push(ratio);
    }
    let (lo, hi) = range(&ratios);
    println!(
        "whole scenario: proofrig run+verify (persistent_shell) {:.3} s, labgrid {LABGRID} {:.3} s: ratio {:.2}x \
         (range {lo:.2}x..{hi:.2}x over {rounds} rounds; goal <= 0.7x); proofrig run alone {:.2}x; a channel per command {:.2}x",
        median(&sealed),
        median(&labgrids),
        median(&ratios),
        median(&runs),
        median(&channels)
    );
    drop(slow);
}
