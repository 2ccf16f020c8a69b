//! Running the lab service as a lab would, for the tests: `proofrig serve`, the CLI
//! as each person, `proofrig labhost run`, each a real process on loopback, killed when
//! the test ends, whatever happens.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn proofrig() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proofrig"))
}

/// Kills the child when dropped, so a failed assertion leaves no process behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Service {
    pub url: String,
    pub fingerprint: String,
    pub state: PathBuf,
    _server: Running,
}

impl Service {
    pub fn start(state: &Path) -> Service {
        Service::start_with(state, &[])
    }

    /// With more `proofrig serve` flags (`--plain-http`).
    pub fn start_with(state: &Path, flags: &[&str]) -> Service {
        let mut child = proofrig()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .arg("--state-dir")
            .arg(state)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut fingerprint, mut admin) = (None, None, false);
        let plain = flags.contains(&"--plain-http");
        while url.is_none() || (fingerprint.is_none() && !plain) || !admin {
            let line = lines.next().expect("the server printed its URL and fingerprint").unwrap();
            if let Some(rest) = line.strip_prefix("proofrig server listening at ") {
                url = Some(rest.trim().to_string());
            }
            if let Some((_, fp)) = line.split_once("pin): ") {
                fingerprint = Some(fp.trim().to_string());
            }
            admin |= line.starts_with("first start");
        }
        // Keep reading, as a terminal would.
        std::thread::spawn(move || lines.for_each(drop));
        Service { url: url.unwrap(), fingerprint: fingerprint.unwrap_or_default(), state: state.to_path_buf(), _server: Running(child) }
    }

    /// The one-time token `proofrig serve` wrote for the bootstrap admin.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.state.join("bootstrap-admin.token")).unwrap().trim().to_string()
    }

    /// `proofrig ARGS` as the holder of `token`, against this server.
    fn command(&self, token: &str, args: &[&str]) -> Command {
        let mut command = proofrig();
        command.args(args).env("PROOFRIG_SERVER", &self.url).env("PROOFRIG_FINGERPRINT", &self.fingerprint).env("PROOFRIG_TOKEN", token);
        command
    }

    /// `proofrig ARGS` as the holder of `token`.
    pub fn run(&self, token: &str, args: &[&str]) -> Output {
        self.command(token, args).output().unwrap()
    }

    pub fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.run(token, args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "proofrig {args:?} failed: {text}");
        text
    }

    /// The token a `user add` or `labhost token` printed, on the line after its announcement.
    pub fn minted(&self, token: &str, args: &[&str]) -> String {
        self.minted_with(token, args, None)
    }

    /// [`Service::minted`], with `stdin` fed to the command (a password).
    pub fn minted_with(&self, token: &str, args: &[&str], stdin: Option<&str>) -> String {
        let text = match stdin {
            None => self.ok(token, args),
            Some(input) => {
                use std::io::Write;
                let mut child =
                    self.command(token, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
                child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                let out = child.wait_with_output().unwrap();
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "proofrig {args:?} failed: {text}");
                text
            }
        };
        let lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| l.contains("shown this once")).unwrap_or_else(|| panic!("no token shown: {text}"));
        lines[at + 1].trim().to_string()
    }
}

/// What a test's lab host serves.
#[derive(Debug, Clone, Copy)]
pub enum Serves<'a> {
    /// The rig files of a directory.
    Rigs(&'a Path),
    /// The simulated lab, started in the lab host's process.
    Simlab,
    /// The simulated lab, and the other rig files of a directory (it writes its own there).
    SimlabAnd(&'a Path),
}

/// `proofrig labhost run` serving `rigs`, enrolled with a fresh token minted by `admin`.
pub fn labhost(service: &Service, admin: &str, dir: &Path, rigs: &Path) -> (Running, PathBuf) {
    labhost_serving(service, admin, dir, Serves::Rigs(rigs))
}

/// `proofrig labhost run` serving what `serves` says, enrolled with a fresh token
/// minted by `admin`, its state under `dir/labhost`; and that state directory.
pub fn labhost_serving(service: &Service, admin: &str, dir: &Path, serves: Serves<'_>) -> (Running, PathBuf) {
    let enroll = service.minted(admin, &["labhost", "token", "lab-a"]);
    let token_file = dir.join("enroll.token");
    std::fs::write(&token_file, &enroll).unwrap();
    let state = dir.join("labhost");
    let mut command = proofrig();
    command.args(["labhost", "run", "--server", &service.url]);
    if !service.fingerprint.is_empty() {
        command.args(["--fingerprint", &service.fingerprint]);
    }
    match serves {
        Serves::Rigs(rigs) => command.arg("--rigs").arg(rigs),
        Serves::Simlab => command.arg("--simlab"),
        Serves::SimlabAnd(rigs) => command.arg("--simlab").arg("--rigs").arg(rigs),
    };
    let child = command.arg("--state-dir").arg(&state).arg("--enroll-file").arg(&token_file).stdout(Stdio::null()).spawn().unwrap();
    (Running(child), state)
}

pub fn until(what: &str, limit: Duration, mut check: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
