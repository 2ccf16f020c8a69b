//! A plan's commands through one long-lived shell of the session (`ssh.persistent_shell`),
//! against a real OpenSSH server: each command's output, standard error and exit
//! status are what a channel of its own gives, nothing of one command reaches the
//! next, and the raw bytes are on record for replay.

mod ssh_support;

use std::time::{Duration, Instant};

use proofrig_agents::ssh::{SshError, SshSession};
use proofrig_model::events::{ChannelId, Direction, EventKind, MemorySink, Recorder};
use proofrig_model::rig::SshEndpoint;
use proofrig_model::wire::ssh_shell;
use proofrig_testpeers::sshd::Sshd;

fn endpoint(sshd: &Sshd, persistent_shell: bool) -> SshEndpoint {
    SshEndpoint { persistent_shell, ..ssh_support::endpoint(sshd) }
}

fn sent_to_shell(sink: &MemorySink) -> usize {
    sink.events()
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::Bytes { channel, direction: Direction::Out, .. } if channel.channel == ssh_shell::SHELL_IN),
        )
        .count()
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn commands_through_the_shell_answer_as_on_channels_of_their_own() {
    let sshd = Sshd::start();
    let (own_sink, shell_sink) = (MemorySink::new(), MemorySink::new());
    let own = SshSession::connect("ru1", &endpoint(&sshd, false), Recorder::new(own_sink.clone())).await.unwrap();
    let shell = SshSession::connect("ru1", &endpoint(&sshd, true), Recorder::new(shell_sink.clone())).await.unwrap();
    let commands = [
        "echo out; echo err >&2; exit 3",
        "printf 'no newline at the end'",
        "echo 'it'\\''s quoted' \"$HOME\" | tr a-z A-Z",
        "echo unbalanced 'quote",
        "ls /no/such/path",
        "cat",
        "seq 1 20000; seq 1 20000 >&2",
        "cd /; pwd",
        "pwd",
        "X=set; echo ${X:-unset}",
        "echo ${X:-unset}",
        "false",
    ];
    for command in commands {
        let (a, b) = (own.run(command, LIMIT).await.unwrap(), shell.run(command, LIMIT).await.unwrap());
        assert_eq!(b.stdout, a.stdout, "{command}: stdout");
        // A shell reading its input names the line of a syntax error: only the text differs.
        if command != "echo unbalanced 'quote" {
            assert_eq!(b.stderr, a.stderr, "{command}: stderr");
        } else {
            assert!(!b.stderr.is_empty(), "{command}: the syntax error is reported");
        }
        assert_eq!((b.exit_status, &b.exit_signal), (a.exit_status, &a.exit_signal), "{command}: exit");
    }
    // Every command went to one shell, started once: its readiness request and the commands.
    assert_eq!(sent_to_shell(&shell_sink), 1 + commands.len());
    assert_eq!(sent_to_shell(&own_sink), 0);
    // The raw bytes, markers and all, are on record; the output excludes the markers.
    let raw = shell_sink.transcript(&ChannelId::new("ru1", ssh_shell::SHELL_STDOUT), Direction::In);
    assert!(String::from_utf8_lossy(&raw).contains("_OUT:3\n"), "{}", String::from_utf8_lossy(&raw[..200.min(raw.len())]));
    own.close().await;
    shell.close().await;
}

#[tokio::test]
async fn a_command_asking_for_its_own_shell_gets_a_channel_of_its_own() {
    let sshd = Sshd::start();
    let sink = MemorySink::new();
    let session = SshSession::connect("ru1", &endpoint(&sshd, true), Recorder::new(sink.clone())).await.unwrap();
    let first = session.run("echo $$", LIMIT).await.unwrap();
    let second = session.run("echo $$", LIMIT).await.unwrap();
    assert_ne!(first.stdout, second.stdout, "each `$$` names a shell of its own");
    assert_eq!(sent_to_shell(&sink), 0, "no command shell was needed");
    assert!(sink.transcript(&ChannelId::new("ru1", "ssh:exec:stdout"), Direction::In).len() > 2);
    session.close().await;
}

#[tokio::test]
async fn a_command_that_outlives_its_timeout_leaves_the_next_one_a_fresh_shell() {
    let sshd = Sshd::start();
    let sink = MemorySink::new();
    let session = SshSession::connect("ru1", &endpoint(&sshd, true), Recorder::new(sink.clone())).await.unwrap();
    let started = Instant::now();
    let err = session.run("echo begun; sleep 30", Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let after = session.run("echo still here", LIMIT).await.unwrap();
    assert_eq!((after.stdout.as_slice(), after.exit_status), (&b"still here\n"[..], Some(0)));
    // Two shells were started (two readiness requests), one per command.
    assert_eq!(sent_to_shell(&sink), 4);
    let exits: Vec<_> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::SshExit { exit_status, timed_out, .. } => Some((exit_status, timed_out)),
            _ => None,
        })
        .collect();
    assert_eq!(exits, vec![(None, true), (Some(0), false)]);
    session.close().await;
}
