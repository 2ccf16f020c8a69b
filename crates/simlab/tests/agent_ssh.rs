//! proofrig's own SSH agent against the simulated lab: a command that finishes at
//! once must be reported at once, not when its deadline passes.
//!
//! The agent once slept through a command's output and end: reading its stderr took
//! in the stdout and EOF that had just arrived, and the agent then waited on the empty
//! socket until the command's deadline (30 s in a plan), after which the command
//! "succeeded". It hit about one command in a few thousand, depending on timing, so the
//! test runs many quick commands over parallel sessions (which makes that timing far
//! more likely than one session does) and fails at the first one that hangs. The
//! shell pump had the same sleep, and is held to the same with quick round trips.

use std::time::{Duration, Instant};

use proofrig_agents::ssh::SshSession;
use proofrig_model::events::Recorder;
use proofrig_model::rig::Rig;
use proofrig_simlab::{SimLab, SimLabConfig};

/// What a plan step gives a command by default.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// A hang guard, not a measurement: `echo` on the sim takes about a millisecond.
const PROMPT: Duration = Duration::from_secs(5);
const SESSIONS_PER_DEVICE: usize = 3;
const COMMANDS_PER_SESSION: usize = 2000;

/// Start a lab and run `work` on [`SESSIONS_PER_DEVICE`] SSH sessions of every device
/// at once; a panic in any of them fails the test.
async fn on_parallel_sessions<F, Fut>(work: F)
where
    F: Fn(String, SshSession) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let rig = Rig::load(&lab.write_rig(dir.path()).unwrap()).unwrap();
    let mut sessions = Vec::new();
    for (name, device) in rig.devices() {
        let endpoint = device.ssh.clone().expect("every sim device has SSH");
        for _ in 0..SESSIONS_PER_DEVICE {
            let session = SshSession::connect(name, &endpoint, Recorder::discard()).await.expect("SSH connect");
            sessions.push(tokio::spawn(work(name.to_string(), session)));
        }
    }
    for session in sessions {
        if let Err(e) = session.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    lab.stop().await;
}

async fn close(name: &str, session: SshSession) {
    tokio::time::timeout(PROMPT, session.close()).await.unwrap_or_else(|_| panic!("{name}: closing the session hung"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_commands_return_promptly_not_at_their_deadline() {
    on_parallel_sessions(|name, session| async move {
        for run in 0..COMMANDS_PER_SESSION {
            let started = Instant::now();
            let Ok(out) = tokio::time::timeout(PROMPT, session.exec("echo x", COMMAND_TIMEOUT)).await else {
                panic!(
                    "{name}: `echo x` (run {run}) had not returned after {PROMPT:?}; \
                     the agent waits for its {COMMAND_TIMEOUT:?} deadline"
                )
            };
            let out = out.expect("exec");
            assert_eq!((out.stdout.as_slice(), out.exit_status), (&b"x\n"[..], Some(0)), "{name}: run {run} after {:?}", started.elapsed());
        }
        close(&name, session).await;
    })
    .await;
}

/// The shell pump had the same sleep as the exec loop: writing a line, or reading the
/// shell's stderr, can take the output that just arrived into libssh2's queue, and a
/// pump that then sleeps on the socket leaves it there until something else comes
/// (a keepalive, the next line). Many quick round trips over parallel shells, each
/// of which must come back long before any keepalive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_shell_round_trips_return_promptly() {
    const ROUND_TRIPS: usize = 1000;
    on_parallel_sessions(|name, session| async move {
        let mut shell = session.shell().await.expect("open a shell");
        for run in 0..ROUND_TRIPS {
            // The answer on a line of its own, not the echo of the typed line.
            let answer = format!("\ntok{run}\r\n");
            shell.write(format!("echo tok{run}\n").as_bytes()).await.expect("type at the shell");
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains(&answer) {
                match tokio::time::timeout(PROMPT, shell.read()).await {
                    Ok(Ok(bytes)) => seen.extend(bytes),
                    Ok(Err(e)) => panic!("{name}: the shell ended at round trip {run}: {e}"),
                    Err(_) => {
                        panic!("{name}: round trip {run} had not come back after {PROMPT:?}; got {:?}", String::from_utf8_lossy(&seen))
                    }
                }
            }
        }
        drop(shell);
        close(&name, session).await;
    })
    .await;
}
