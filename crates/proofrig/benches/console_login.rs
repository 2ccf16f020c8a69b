//! A console login, from the login prompt to the shell prompt: proofrig's
//! `console_login` step against a bare PTY script on the same device.
//!
//! Issue 17's goal: at most 1.2x what the bare script needs. The device is the BusyBox
//! and dropbear radio unit of `proofrig-testpeers` (hardened profile): BusyBox `getty`
//! and `login` on a serial console reached through a PTY.
//!
//! Each login starts at a console that was just asked for its login prompt (Enter
//! sent) and ends when the shell prompt arrives; then `exit` logs out again.
//! - proofrig: `proofrig run` of a plan repeating `console_send: ""`, `console_login`,
//!   `console_send: exit` and a wait for the next login prompt. Timed from the journal
//!   (monotonic clock): from the Enter sent to the console bytes that complete the
//!   shell prompt after the password.
//! - baseline: the bench itself on the console's PTY, raw mode, blocking reads: send
//!   Enter, wait for `login: `, send the user, wait for `Password: `, send the
//!   password, wait for the shell prompt; the same logout.
//!
//! `PROOFRIG_BENCH_LOGINS` logins per round (default 10), `PROOFRIG_BENCH_ROUNDS`
//! rounds (default 5), alternating sides; the headline is the median of the rounds'
//! ratios of the median login, with their range. Needs root. Run:
//! `cargo bench -p proofrig --bench console_login`.

mod on_device;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use on_device::{env_number, median, range, run_on_device};
use proofrig_testpeers::busybox::{BusyboxDevice, Profile};
use regex::bytes::Regex;
use serde_json::Value;

fn shell_prompt() -> Regex {
    // Not anchored at the end: BusyBox ash asks the terminal for its cursor position (ESC [6n) after the prompt.
    Regex::new(r"[a-z_][a-z0-9_-]*@ru-bb:[^ ]*[#$] ").expect("prompt pattern")
}

fn plan(dir: &Path, logins: usize) -> PathBuf {
    let mut steps = String::new();
    for _ in 0..logins {
        steps.push_str(
            "      - console_send: { text: \"\" }\n      - console_login: {}\n      - console_send: { text: exit }\n\
             \x20     - console_expect: { patterns: ['login: ?$'] }\n",
        );
    }
    let yaml = format!(
        "plan: bench-console-login\ntitle: Console logins\ncases:\n  - id: BENCH_LOGIN\n    title: log in and out\n    \
         scas: {{ spec: TS 33.117, clause: 4.2.3.3.2, test_name: BENCH_LOGIN, requirement: r }}\n    \
         purpose: p\n    expected: e\n    evidence: e\n    steps:\n{steps}"
    );
    let path = dir.join("console-login.yaml");
    std::fs::write(&path, yaml).expect("bench plan");
    path
}

/// The logins of a proofrig run, each from its Enter to its shell prompt.
fn proofrig_logins(device: &BusyboxDevice, rig: &Path, plan: &Path, dir: &Path) -> Vec<Duration> {
    let run = run_on_device(device, rig, plan, dir);
    let failed: Vec<&Value> =
        run.results["cases"][0]["steps"].as_array().expect("steps").iter().filter(|s| s["verdict"] != "PASS").collect();
    assert!(failed.is_empty(), "every step worked: {failed:?}\n{}", run.text);

    let prompt = shell_prompt();
    let (mut logins, mut enter_at, mut after_password) = (Vec::new(), None, None::<Vec<u8>>);
    for record in run.journal() {
        let event = &record["entry"]["event"];
        if event["channel"]["channel"] != "console" {
            continue;
        }
        let at = event["at"]["mono_ns"].as_u64().unwrap_or_default();
        match (event["kind"].as_str(), event["direction"].as_str()) {
            (Some("bytes"), Some("out")) => {
                let data = base64::engine::general_purpose::STANDARD.decode(event["data"].as_str().unwrap_or_default()).expect("base64");
                if !data.is_empty() && data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    enter_at = Some(at);
                }
            }
            (Some("redacted"), Some("out")) => after_password = Some(Vec::new()),
            (Some("bytes"), Some("in")) => {
                if let Some(seen) = after_password.as_mut() {
                    seen.extend(
                        base64::engine::general_purpose::STANDARD.decode(event["data"].as_str().unwrap_or_default()).expect("base64"),
                    );
                    if prompt.is_match(seen) {
                        let start = enter_at.take().expect("an Enter before the login");
                        logins.push(Duration::from_nanos(at - start));
                        after_password = None;
                    }
                }
            }
            _ => {}
        }
    }
    logins
}

/// The bench's own end of the console: raw, blocking reads with a deadline.
struct BareConsole {
    file: std::fs::File,
    seen: Vec<u8>,
}

impl BareConsole {
    fn open(path: &Path) -> BareConsole {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open the console PTY");
        let mut termios = nix::sys::termios::tcgetattr(file.as_fd()).expect("tcgetattr");
        nix::sys::termios::cfmakeraw(&mut termios);
        nix::sys::termios::tcsetattr(file.as_fd(), nix::sys::termios::SetArg::TCSANOW, &termios).expect("raw mode");
        BareConsole { file, seen: Vec::new() }
    }

    fn send(&mut self, text: &str) {
        self.file.write_all(text.as_bytes()).expect("write to the console");
    }

    /// Read until `pattern` matches what arrived since the last match.
    fn wait(&mut self, pattern: &Regex) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !pattern.is_match(&self.seen) {
            assert!(Instant::now() < deadline, "no {pattern} on the console; got {:?}", String::from_utf8_lossy(&self.seen));
            let mut fds = [nix::poll::PollFd::new(self.file.as_fd(), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).expect("poll") == 0 {
                continue;
            }
            let n = self.file.read(&mut buf).expect("read the console");
            self.seen.extend_from_slice(&buf[..n]);
        }
        self.seen.clear();
    }
}

fn bare_logins(device: &BusyboxDevice, logins: usize) -> Vec<Duration> {
    let (login, password, prompt) =
        (Regex::new("login: ?$").expect("login"), Regex::new("[Pp]assword: ?$").expect("password"), shell_prompt());
    let mut console = BareConsole::open(device.console_path());
    let mut took = Vec::new();
    for _ in 0..logins {
        let started = Instant::now();
        console.send("\n");
        console.wait(&login);
        console.send("root\n");
        console.wait(&password);
        console.send(&format!("{}\n", device.root_password()));
        console.wait(&prompt);
        took.push(started.elapsed());
        console.send("exit\n");
        console.wait(&login);
    }
    took
}

fn main() {
    let rounds = env_number("PROOFRIG_BENCH_ROUNDS", 5).max(1);
    let logins = env_number("PROOFRIG_BENCH_LOGINS", 10).max(1);
    let device = BusyboxDevice::start(Profile::Hardened);
    let tmp = tempfile::tempdir().expect("temp dir");
    let rig = device.write_rig(tmp.path());
    let plan = plan(tmp.path(), logins);
    println!("console login on the BusyBox device, {logins} logins per round, {rounds} rounds");
    let (mut ratios, mut ours, mut bares) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let bare: Vec<f64> = bare_logins(&device, logins).iter().map(Duration::as_secs_f64).collect();
        let proofrig: Vec<f64> = proofrig_logins(&device, &rig, &plan, tmp.path()).iter().map(Duration::as_secs_f64).collect();
        assert_eq!(proofrig.len(), logins, "every login was found in the journal");
        let (b, p) = (median(&bare), median(&proofrig));
        println!("  round {round}: proofrig {:.1} ms, bare PTY script {:.1} ms, ratio {:.2}x (median login)", p * 1e3, b * 1e3, p / b);
        ratios.push(p / b);
        ours.push(p);
        bares.push(b);
    }
    let (lo, hi) = range(&ratios);
    println!(
        "console login: proofrig {:.1} ms, bare PTY script {:.1} ms: ratio {:.2}x (range {lo:.2}x..{hi:.2}x over {rounds} rounds; goal <= 1.2x)",
        median(&ours) * 1e3,
        median(&bares) * 1e3,
        median(&ratios)
    );
}
