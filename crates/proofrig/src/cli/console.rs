//! `proofrig console RIG DEVICE`: a person at a device console.
//!
//! The local terminal goes raw so every key reaches the device; Ctrl-] quits (as in
//! telnet). Everything that crosses the console is recorded like any other session.
//! With a pipe instead of a terminal on stdin, input is forwarded until it ends, and
//! the device's answer is shown until it has been quiet for a moment.
//!
//! What a person types after a password prompt is a secret: it reaches the device but
//! the transcript records only that a password was typed, and its length.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use proofrig_agents::serial::open_console;
use proofrig_model::rig::Rig;
use tokio::sync::mpsc;

use super::{report, Failure, EXIT_FAILED, EXIT_OK};
use crate::session::SessionLog;
use crate::terminal::RawMode;
use proofrig_labhost::session::{forward, PasswordPrompt};

/// Ctrl-]: leaves the console.
const ESCAPE: u8 = 0x1d;
/// After piped input ends, how long the device may stay quiet before we leave.
const QUIET_AFTER_EOF: Duration = Duration::from_millis(700);

pub async fn console(rig_path: &Path, device: &str, transcripts: &Path) -> Result<u8, Failure> {
    let rig = Rig::load(rig_path)?;
    let spec = rig.device(device)?;
    let Some(console) = &spec.console else {
        return Err(Failure::usage(miette::miette!(
            help = "add a `console:` section to the device in the rig file (see rigs/README.md)",
            "device `{device}` in {} has no console",
            rig_path.display()
        )));
    };
    let log = SessionLog::create(transcripts, &rig, device, "console").map_err(|e| Failure::usage(report(e)))?;
    let mut stream = open_console(device, console, log.recorder.clone()).await.map_err(|e| Failure::failed(report(e)))?;
    eprint!("proofrig: connected to {device} console; Ctrl-] quits; recording to {}\r\n", log.path.display());

    let raw = RawMode::enable_on_stdin().map_err(|e| Failure::usage(report(e)))?;
    let interactive = raw.is_some();
    let mut keys = spawn_stdin_reader();
    let mut stdout = std::io::stdout();
    let mut input_done = false;
    let mut prompt = PasswordPrompt::new(console.login.as_ref().and_then(|l| l.password_prompt.as_deref()));
    let code = loop {
        let quiet = tokio::time::sleep(QUIET_AFTER_EOF);
        tokio::select! {
            from_device = stream.read() => match from_device {
                Ok(bytes) => {
                    prompt.device_said(&bytes);
                    let _ = stdout.write_all(&bytes);
                    let _ = stdout.flush();
                }
                Err(err) => {
                    eprint!("\r\nproofrig: {err}\r\n");
                    break EXIT_FAILED;
                }
            },
            key = keys.recv(), if !input_done => match key {
                Some(bytes) => {
                    let (send, quit) = match bytes.iter().position(|b| *b == ESCAPE) {
                        Some(at) if interactive => (&bytes[..at], true),
                        _ => (&bytes[..], false),
                    };
                    if let Err(err) = forward(&stream, &mut prompt, send).await {
                        eprint!("\r\nproofrig: {err}\r\n");
                        break EXIT_FAILED;
                    }
                    if quit {
                        break EXIT_OK;
                    }
                }
                None => input_done = true,
            },
            _ = quiet, if input_done => break EXIT_OK,
        }
    };
    drop(raw);
    drop(stream);
    eprintln!("\nproofrig: console session recorded in {}", log.path.display());
    Ok(code)
}

/// Reads stdin on its own thread (a blocking read must not hold a runtime worker).
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}
