//! Consoles exported by a real ser2net 4 (Debian `ser2net`) over raw TCP and over
//! telnet with RFC 2217, each in front of a PTY with a scripted device.

mod console_support;

use std::time::{Duration, Instant};

use console_support::*;
use proofrig_agents::channel::ChannelError;
use proofrig_agents::expect::{Expect, ExpectError};
use proofrig_agents::serial::{open_console, SerialError};
use proofrig_model::events::{Direction, Recorder};
use proofrig_model::rig::{Parity, TcpProtocol};
use proofrig_testpeers::pty::{ConsoleScript, ScriptedConsole};
use proofrig_testpeers::ser2net::{Ser2net, Ser2netProtocol};

const STEP: Duration = Duration::from_secs(5);

#[tokio::test]
async fn raw_tcp_carries_a_login_and_commands() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let ser2net = Ser2net::start(device.path(), Ser2netProtocol::Raw);
    let (sink, recorder) = WatchedSink::new();
    let console = tcp_console(ser2net.port(), TcpProtocol::Raw, None, 8, Parity::None, 1);
    let stream = open_console(DEVICE, &console, recorder).await.unwrap();
    let mut shell = Expect::for_console(stream, &console).unwrap();
    shell.login(&login(), Some(&password()), STEP).await.unwrap();
    let out = shell.run("echo over raw tcp", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("over raw tcp", 0));
    let out = shell.run("false", STEP).await.unwrap();
    assert_eq!(out.exit_status, 1);
    assert_eq!(sink.opened_detail(), format!("tcp 127.0.0.1:{} raw", ser2net.port()));
}

#[tokio::test]
async fn rfc2217_sets_the_line_and_keeps_telnet_out_of_the_transcript() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let ser2net = Ser2net::start(device.path(), Ser2netProtocol::Rfc2217);
    let (sink, recorder) = WatchedSink::new();
    // ser2net's own config says 115200 8N1; the rig asks for 9600 with 2 stop bits.
    let console = tcp_console(ser2net.port(), TcpProtocol::Rfc2217, Some(9600), 8, Parity::None, 2);
    let stream = open_console(DEVICE, &console, recorder).await.unwrap();

    // open_console returns once ser2net has answered COM-PORT-OPTION...
    let notes = sink.notes();
    assert!(
        notes.iter().any(|n| n == "rfc2217: server confirmed baud 9600, 8 data bits, parity none, 2 stop bits"),
        "{notes:#?}\nser2net log:\n{}",
        ser2net.log()
    );
    // ...and ser2net really applied it to the tty.
    let line = device.line_settings();
    assert_eq!((line.baud, line.stop_bits), (9600, 2));
    assert_eq!(sink.opened_detail(), format!("tcp 127.0.0.1:{} rfc2217 9600 8N2", ser2net.port()));

    let mut shell = Expect::for_console(stream, &console).unwrap();
    shell.login(&login(), Some(&password()), STEP).await.unwrap();
    let out = shell.run("echo over telnet", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("over telnet", 0));

    // No negotiation bytes in either direction of the transcript.
    assert!(!sink.transcript(Direction::In).contains(&0xff));
    assert!(!sink.transcript(Direction::Out).contains(&0xff));

    // A 0xFF the device sends arrives as one data byte (ser2net doubled it, we undid that).
    let out = shell.run("printff", STEP).await.unwrap();
    assert_eq!(out.exit_status, 0);
    assert_eq!(count(&sink.transcript(Direction::In), b"A\xffB\r\n"), 1);
    assert_eq!(count(&sink.transcript(Direction::In), b"\xff"), 1);
    // A 0xFF we send reaches the device as one byte (we doubled it, ser2net undid that).
    shell.send(b"echo Z\xffZ\n").await.unwrap();
    shell.expect_prompt(STEP).await.unwrap();
    assert_eq!(count(&device.received(), b"Z\xffZ"), 1);
    assert_eq!(count(&sink.transcript(Direction::Out), b"Z\xffZ"), 1);
}

#[tokio::test]
async fn killing_ser2net_mid_wait_is_console_lost() {
    let device = ScriptedConsole::start(ConsoleScript::default());
    let mut ser2net = Ser2net::start(device.path(), Ser2netProtocol::Rfc2217);
    let (sink, recorder) = WatchedSink::new();
    let console = tcp_console(ser2net.port(), TcpProtocol::Rfc2217, Some(115_200), 8, Parity::None, 1);
    let stream = open_console(DEVICE, &console, recorder).await.unwrap();
    let mut shell = Expect::for_console(stream, &console).unwrap();
    shell.login(&login(), Some(&password()), STEP).await.unwrap();

    shell.send_line("sleep 20000").await.unwrap();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        (shell.expect_prompt(Duration::from_secs(60)).await, started.elapsed())
    });
    // Kill only once the device has the command, so the wait is really in progress.
    sink.wait_for("the device echoing the command", STEP, |_| find(&sink.transcript(Direction::In), b"sleep 20000\r\n").is_some()).await;
    ser2net.kill();
    let (result, waited) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(3), "took {waited:?}");
    let err = result.unwrap_err();
    let ExpectError::Lost(ChannelError::ConsoleLost { channel, reason }) = &err else { panic!("{err}") };
    assert_eq!(channel.device, DEVICE);
    assert!(reason.contains(&format!("127.0.0.1:{}", ser2net.port())), "{reason}");
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error_naming_device_and_address() {
    let port = proofrig_testpeers::free_port();
    let console = tcp_console(port, TcpProtocol::Raw, None, 8, Parity::None, 1);
    let err = open_console(DEVICE, &console, Recorder::discard()).await.unwrap_err();
    assert!(matches!(err, SerialError::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("ru1") && text.contains(&format!("127.0.0.1:{port}")) && text.contains("ser2net"), "{text}");
}

#[tokio::test]
async fn a_server_that_never_accepts_is_a_connect_timeout_naming_device_and_address() {
    use std::os::fd::AsRawFd;
    // A listener that never accepts, with its accept queue shrunk to one entry and
    // filled: Linux then drops further SYNs, so a connect hangs like one to a dead host.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let port = listener.local_addr().unwrap().port();
    let mut fillers = Vec::new();
    while fillers.len() < 8 {
        match std::net::TcpStream::connect_timeout(&listener.local_addr().unwrap(), Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
    }
    let mut console = tcp_console(port, TcpProtocol::Raw, None, 8, Parity::None, 1);
    console.tcp.as_mut().unwrap().connect_timeout_ms = 300;
    let started = Instant::now();
    let err = open_console(DEVICE, &console, Recorder::discard()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(err, SerialError::ConnectTimeout { waited_ms: 300, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("ru1") && text.contains(&format!("127.0.0.1:{port}")) && text.contains("300 ms"), "{text}");
}
