//! The serial agent over real PTYs with a scripted device on the far side: opening
//! with the rig's line settings, continuous capture, loss detection, and a whole
//! login + command session through the expect engine.

mod console_support;

use std::time::{Duration, Instant};

use console_support::*;
use proofrig_agents::channel::ChannelError;
use proofrig_agents::expect::{Expect, ExpectError};
use proofrig_agents::serial::{open_console, SerialError};
use proofrig_model::events::{Direction, EventKind, Recorder};
use proofrig_model::rig::Parity;
use proofrig_testpeers::pty::{ConsoleScript, ScriptedConsole};

const STEP: Duration = Duration::from_secs(5);

#[tokio::test]
async fn login_then_commands_give_output_and_exit_status_without_echo() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let (sink, recorder) = WatchedSink::new();
    let console = serial_console(device.path());
    let stream = open_console(DEVICE, &console, recorder).await.unwrap();
    let mut shell = Expect::for_console(stream, &console).unwrap();

    shell.login(&login(), Some(&password()), STEP).await.unwrap();

    let out = shell.run("echo hello world", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("hello world", 0));
    let out = shell.run("false", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("", 1));
    let out = shell.run("(exit 3)", STEP).await.unwrap();
    assert_eq!(out.exit_status, 3);
    let out = shell.run("echo one; echo 'two; three'", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("one\ntwo; three", 0));
    let out = shell.run("frobnicate --now", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("-sh: frobnicate: not found", 127));
    let out = shell.run("true", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("", 0));

    assert_eq!(sink.opened_detail(), format!("serial {} 115200 8N1", device.path().display()));
    // The password went out redacted: its label is in the transcript, its value nowhere.
    let redacted: Vec<_> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Redacted { secret, len, direction: Direction::Out, .. } => Some((secret, len)),
            _ => None,
        })
        .collect();
    assert_eq!(redacted, vec![("env:RU1_PASSWORD".to_string(), PASSWORD.len())]);
    assert!(find(&sink.transcript(Direction::Out), PASSWORD.as_bytes()).is_none());
    assert!(find(&sink.transcript(Direction::In), PASSWORD.as_bytes()).is_none());
    // ...while the device did receive it.
    assert!(find(&device.received(), format!("{PASSWORD}\n").as_bytes()).is_some());
    // Out transcript is exactly what we typed, in order.
    let typed = String::from_utf8(sink.transcript(Direction::Out)).unwrap();
    assert!(typed.starts_with("root\n"), "{typed:?}");
    assert!(typed.contains("echo hello world; echo PRF_"), "{typed:?}");
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_refused() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let console = serial_console(device.path());
    let stream = open_console(DEVICE, &console, Recorder::discard()).await.unwrap();
    let mut shell = Expect::for_console(stream, &console).unwrap();
    let wrong = proofrig_model::secret::Secret::new("env:RU1_PASSWORD", "not-it");
    let err = shell.login(&login(), Some(&wrong), STEP).await.unwrap_err();
    let ExpectError::LoginRefused { user, response, channel } = &err else { panic!("{err}") };
    assert_eq!((user.as_str(), channel.device.as_str()), ("root", DEVICE));
    assert!(response.contains("Login incorrect"), "{response:?}");
    assert!(err.to_string().contains("ru1/console"), "{err}");
}

#[tokio::test]
async fn output_nobody_reads_is_recorded_and_kept_for_the_reader() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let (sink, recorder) = WatchedSink::new();
    let mut stream = open_console(DEVICE, &serial_console(device.path()), recorder).await.unwrap();
    device.inject(b"[   7.000000] unsolicited: link down on eth0\r\n");
    sink.wait_for("the unsolicited kernel message", STEP, |_| find(&sink.transcript(Direction::In), b"link down on eth0\r\n").is_some())
        .await;
    let transcript = sink.transcript(Direction::In);
    assert!(transcript.starts_with(b"U-Boot 2023.04"), "boot noise recorded from the first byte");
    // Every In byte is stamped, in order, after the channel was opened.
    let events = sink.events();
    assert!(matches!(events[0].kind, EventKind::ChannelOpened { .. }));
    assert!(events.windows(2).all(|w| w[0].at.mono_ns <= w[1].at.mono_ns));
    // Nobody had read anything: the stream still holds all of it for a late reader.
    // (The pump records a chunk before handing it over, so the last one may follow.)
    let mut unread = Vec::new();
    while unread.len() < transcript.len() {
        unread.extend(tokio::time::timeout(STEP, stream.read()).await.unwrap().unwrap());
    }
    assert_eq!(unread, transcript);
    assert_eq!(stream.dropped(), 0);
}

#[tokio::test]
async fn line_settings_from_the_rig_reach_the_tty() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let (sink, recorder) = WatchedSink::new();
    let console = serial_console_with(device.path(), 57_600, 8, Parity::None, 2, None);
    let stream = open_console(DEVICE, &console, recorder).await.unwrap();
    let settings = device.line_settings();
    assert_eq!((settings.baud, settings.stop_bits), (57_600, 2));
    assert_eq!(sink.opened_detail(), format!("serial {} 57600 8N2", device.path().display()));
    drop(stream);
    sink.wait_for("ChannelClosed", STEP, |events| events.iter().any(|e| matches!(e.kind, EventKind::ChannelClosed { .. }))).await;

    // Linux PTYs force CS8 and no parity (pty_set_termios), so 7E2 cannot be read
    // back here; what matters is that asking for it does not fail the open.
    let (sink, recorder) = WatchedSink::new();
    let console = serial_console_with(device.path(), 9600, 7, Parity::Even, 2, None);
    let _stream = open_console(DEVICE, &console, recorder).await.unwrap();
    assert_eq!(device.line_settings().baud, 9600);
    assert_eq!(sink.opened_detail(), format!("serial {} 9600 7E2", device.path().display()));
}

#[tokio::test]
async fn a_device_that_closes_the_line_mid_wait_is_console_lost_quickly() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let (sink, recorder) = WatchedSink::new();
    let console = serial_console(device.path());
    let stream = open_console(DEVICE, &console, recorder).await.unwrap();
    let mut shell = Expect::for_console(stream, &console).unwrap();
    shell.login(&login(), Some(&password()), STEP).await.unwrap();

    shell.send_line("sleep 300; hangup").await.unwrap();
    let started = Instant::now();
    let err = shell.expect_prompt(Duration::from_secs(60)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let ExpectError::Lost(ChannelError::ConsoleLost { channel, reason }) = &err else { panic!("{err}") };
    assert_eq!(channel.device, DEVICE);
    assert!(reason.contains(&device.path().display().to_string()), "{reason}");
    assert!(err.to_string().contains("ru1/console"), "{err}");
    assert!(sink.events().iter().any(|e| matches!(e.kind, EventKind::ChannelLost { .. })));
    // (Whether the device's last words make it is up to the kernel: a PTY hang-up
    // flushes input nobody has read yet, as a real line drop loses bytes in flight.)
    // Writing to a lost console fails the same way, at once.
    let err = shell.send_line("echo anyone").await.unwrap_err();
    assert!(matches!(err, ExpectError::Lost(ChannelError::ConsoleLost { .. })), "{err}");
}

#[tokio::test]
async fn dropping_the_stream_records_channel_closed() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let (sink, recorder) = WatchedSink::new();
    let stream = open_console(DEVICE, &serial_console(device.path()), recorder).await.unwrap();
    drop(stream);
    sink.wait_for("ChannelClosed", STEP, |events| events.iter().any(|e| matches!(e.kind, EventKind::ChannelClosed { .. }))).await;
    // The port was released: it can be opened again.
    let _again = open_console(DEVICE, &serial_console(device.path()), Recorder::discard()).await.unwrap();
}

#[tokio::test]
async fn open_errors_name_the_device_and_port_and_say_what_to_do() {
    let missing = std::path::Path::new("/dev/ttyPROOFRIG-does-not-exist");
    let err = open_console(DEVICE, &serial_console(missing), Recorder::discard()).await.unwrap_err();
    assert!(matches!(err, SerialError::NotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("ru1") && text.contains("/dev/ttyPROOFRIG-does-not-exist"), "{text}");

    let device = ScriptedConsole::start(ConsoleScript::default());
    let _first = open_console(DEVICE, &serial_console(device.path()), Recorder::discard()).await.unwrap();
    let err = open_console("ru2", &serial_console(device.path()), Recorder::discard()).await.unwrap_err();
    assert!(matches!(err, SerialError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("in use by another program"), "{err}");
    assert!(err.to_string().contains("ru2"), "{err}");
}
