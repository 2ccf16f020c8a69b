//! The expect engine against a scripted device on a real PTY: decorated prompts,
//! death strings, slow send and floods.

mod console_support;

use std::time::{Duration, Instant};

use console_support::*;
use proofrig_agents::expect::{Expect, ExpectError};
use proofrig_agents::serial::open_console;
use proofrig_model::events::{Direction, EventKind};
use proofrig_model::prompts::DEFAULT_WINDOW;
use proofrig_model::rig::{Parity, SlowSend};
use proofrig_testpeers::pty::{boot_log, ConsoleScript, ScriptedConsole};
use regex::bytes::Regex;

const STEP: Duration = Duration::from_secs(5);

async fn logged_in(script: ConsoleScript, slow_send: Option<SlowSend>) -> (ScriptedConsole, std::sync::Arc<WatchedSink>, Expect) {
    let device = ScriptedConsole::start(script);
    let (sink, recorder) = WatchedSink::new();
    let console = serial_console_with(device.path(), 115_200, 8, Parity::None, 1, slow_send);
    let stream = open_console(DEVICE, &console, recorder).await.unwrap();
    let mut shell = Expect::for_console(stream, &console).unwrap();
    shell.login(&login(), Some(&password()), STEP).await.unwrap();
    (device, sink, shell)
}

#[tokio::test]
async fn busybox_style_decorated_prompt_still_matches_and_the_transcript_keeps_it_raw() {
    let script = ConsoleScript { ansi_prompt: true, ..ConsoleScript::default() };
    let (_device, sink, mut shell) = logged_in(script, None).await;
    let out = shell.run("echo decorated", STEP).await.unwrap();
    assert_eq!((out.output.as_str(), out.exit_status), ("decorated", 0));
    let raw = sink.transcript(Direction::In);
    assert!(find(&raw, b"\x1b[6n").is_some() && find(&raw, b"\x1b[1;32mroot@ru1\x1b[0m").is_some());
}

#[tokio::test]
async fn a_death_string_aborts_the_wait_at_once() {
    let (_device, _sink, mut shell) = logged_in(ConsoleScript::default(), None).await;
    shell.send_line("panic").await.unwrap();
    let started = Instant::now();
    let err = shell.expect_prompt(Duration::from_secs(30)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let ExpectError::DeathString { channel, pattern, context } = &err else { panic!("{err}") };
    assert_eq!((channel.device.as_str(), pattern.as_str()), (DEVICE, "Kernel panic"));
    assert!(context.contains("Attempted to kill init"), "{context:?}");
    assert!(err.to_string().contains("ru1/console"), "{err}");
}

#[tokio::test]
async fn a_timeout_shows_what_the_device_said_last() {
    let (_device, _sink, mut shell) = logged_in(ConsoleScript::default(), None).await;
    shell.send_line("echo waiting-for-godot").await.unwrap();
    let never = Regex::new("godot arrived").unwrap();
    let err = shell.expect(&[never], Duration::from_millis(300)).await.unwrap_err();
    let ExpectError::Timeout { tail, waited, patterns, .. } = &err else { panic!("{err}") };
    assert_eq!(*waited, Duration::from_millis(300));
    assert_eq!(patterns, &["godot arrived".to_string()]);
    assert!(tail.ends_with("waiting-for-godot\r\nroot@ru1:~# "), "{tail:?}");
}

#[tokio::test]
async fn slow_send_types_in_chunks_with_pauses() {
    let slow = SlowSend { chunk: 4, delay_ms: 15 };
    let (device, sink, mut shell) = logged_in(ConsoleScript::default(), Some(slow)).await;
    let line = "echo slow-send-check";
    let seq_before = sink.events().last().unwrap().seq;
    let out = shell.run(line, STEP).await.unwrap();
    assert_eq!(out.output, "slow-send-check");

    let typed: Vec<(u64, Vec<u8>)> = sink
        .events()
        .into_iter()
        .filter(|e| e.seq > seq_before)
        .filter_map(|e| match e.kind {
            EventKind::Bytes { direction: Direction::Out, data, .. } => Some((e.at.mono_ns, data)),
            _ => None,
        })
        .collect();
    let whole: Vec<u8> = typed.iter().flat_map(|(_, d)| d.clone()).collect();
    assert!(whole.starts_with(line.as_bytes()), "{:?}", String::from_utf8_lossy(&whole));
    assert!(typed.len() >= whole.len() / 4, "{} writes for {} bytes", typed.len(), whole.len());
    assert!(typed.iter().all(|(_, d)| d.len() <= 4));
    for pair in typed.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 15_000_000, "chunks only {} ns apart", pair[1].0 - pair[0].0);
    }
    // The device saw the line arrive in pieces, not in one read.
    let reads = device.reads();
    let reads_of_line = reads.iter().filter(|(_, bytes)| find(line.as_bytes(), bytes).is_some()).count();
    assert!(reads_of_line >= 2, "the device read the line in {reads_of_line} piece(s)");
    // The password went in chunks too, each redacted under its label.
    let redacted: Vec<usize> = sink
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Redacted { secret, len, .. } if secret == "env:RU1_PASSWORD" => Some(len),
            _ => None,
        })
        .collect();
    assert_eq!(redacted, vec![4, 3]);
}

#[tokio::test]
async fn a_flood_keeps_the_window_bounded_and_the_transcript_complete() {
    let (_device, sink, mut shell) = logged_in(ConsoleScript::default(), None).await;
    const FLOOD: usize = 2_000_000;
    let out = shell.run(&format!("flood {FLOOD}"), Duration::from_secs(20)).await.unwrap();
    assert_eq!(out.exit_status, 0);
    assert!(out.output.len() <= DEFAULT_WINDOW, "output {} bytes", out.output.len());
    assert!(shell.buffered() <= DEFAULT_WINDOW);
    // The flood ends mid-line: the last line of the text view is the flood's last bytes.
    let expected = boot_log(FLOOD);
    let tail_line = expected.rsplit(|&b| b == b'\n').next().unwrap();
    assert!(out.output.ends_with(std::str::from_utf8(tail_line).unwrap()), "{:?}", &out.output[out.output.len() - 80..]);
    // Every byte of the flood is in the transcript, in order.
    let transcript = sink.transcript(Direction::In);
    let at = find(&transcript, &expected[..200]).expect("flood start in transcript");
    assert_eq!(&transcript[at..at + FLOOD], &expected[..]);
    // And the shell is still usable afterwards.
    let out = shell.run("echo after-the-flood", STEP).await.unwrap();
    assert_eq!(out.output, "after-the-flood");
}
