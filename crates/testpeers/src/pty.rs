//! PTY pairs and a scripted console that plays a device on the master side.
//!
//! proofrig opens the slave (`/dev/pts/N`) exactly as it would open `/dev/ttyUSB0`;
//! the far side behaves like an embedded Linux board on its serial console: boot
//! noise, a getty (`login:` / `Password:` / `Login incorrect`), and a tiny shell with
//! an optionally busybox-style decorated prompt (`ESC[6n`, colours, an OSC title).
//! The shell knows just enough to exercise an expect engine: `echo` (with quotes and
//! `$?`), `true`, `false`, `(exit N)`, `exit` (log out), `sleep MS`, `flood BYTES`,
//! `printff` (prints a 0xFF byte), `panic` (prints a kernel panic and goes silent)
//! and `hangup` (closes the line). Commands may be joined with `;`.
//!
//! The console runs on its own thread with non-blocking I/O and `poll`, so it never
//! wedges a test, and it logs every read with a timestamp so tests can see how bytes
//! arrived (e.g. slow send really chunking).

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

/// Line settings of a tty as the kernel holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    pub baud: u32,
    pub data_bits: u8,
    /// `'N'`, `'O'` or `'E'`.
    pub parity: char,
    pub stop_bits: u8,
}

/// A PTY pair. The slave end is kept open here too, so the line stays up while
/// proofrig (or ser2net) opens and closes its own descriptor of it.
pub struct PtyPair {
    pub master: OwnedFd,
    slave: Arc<OwnedFd>,
    path: PathBuf,
}

impl PtyPair {
    /// Open a PTY pair with the slave in raw mode (no echo, no line editing), like a
    /// freshly configured serial line.
    pub fn open() -> PtyPair {
        let pty = nix::pty::openpty(None, None).expect("openpty failed: is /dev/ptmx available (devpts mounted)?");
        let mut termios = tcgetattr(&pty.slave).expect("tcgetattr on the new PTY slave");
        cfmakeraw(&mut termios);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).expect("raw mode on the new PTY slave");
        let path = nix::unistd::ttyname(&pty.slave).expect("ttyname of the new PTY slave");
        PtyPair { master: pty.master, slave: Arc::new(pty.slave), path }
    }

    /// The slave device path, e.g. `/dev/pts/3`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line settings currently applied to the slave (by proofrig or ser2net).
    pub fn line_settings(&self) -> LineSettings {
        line_settings(&self.slave)
    }

    /// The master as a blocking file, for tests that drive the line directly.
    pub fn into_master_file(self) -> (File, PathBuf, PtyKeepAlive) {
        (File::from(self.master), self.path, PtyKeepAlive { _slave: self.slave })
    }
}

/// Keeps the slave end open (see [`PtyPair`]).
pub struct PtyKeepAlive {
    _slave: Arc<OwnedFd>,
}

fn line_settings(fd: &OwnedFd) -> LineSettings {
    // termios2 reports the real speed whether it was set as B9600 or BOTHER + 9600.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS2, &mut t) };
    assert_eq!(rc, 0, "TCGETS2 on the PTY slave: {}", std::io::Error::last_os_error());
    let data_bits = match t.c_cflag & libc::CSIZE {
        libc::CS5 => 5,
        libc::CS6 => 6,
        libc::CS7 => 7,
        _ => 8,
    };
    let parity = match (t.c_cflag & libc::PARENB != 0, t.c_cflag & libc::PARODD != 0) {
        (false, _) => 'N',
        (true, true) => 'O',
        (true, false) => 'E',
    };
    let stop_bits = if t.c_cflag & libc::CSTOPB != 0 { 2 } else { 1 };
    LineSettings { baud: t.c_ospeed, data_bits, parity, stop_bits }
}

/// How the scripted device behaves.
#[derive(Debug, Clone)]
pub struct ConsoleScript {
    pub hostname: String,
    pub user: String,
    pub password: String,
    /// Printed before the first login prompt.
    pub boot_lines: Vec<String>,
    /// Decorate the shell prompt like busybox with colours: `ESC[6n`, OSC title, SGR.
    pub ansi_prompt: bool,
    /// Echo typed characters (not the password), as a tty in cooked mode does.
    pub echo: bool,
}

impl Default for ConsoleScript {
    fn default() -> Self {
        ConsoleScript {
            hostname: "ru1".into(),
            user: "root".into(),
            password: "hunter2".into(),
            boot_lines: vec![
                "U-Boot 2023.04 (Jan 01 2024 - 00:00:00 +0000)".into(),
                "[    0.000000] Booting Linux on physical CPU 0x0".into(),
                "[    1.234567] \x1b[32mOK\x1b[0m Started Serial Getty on ttyS0.".into(),
                "Welcome to RU firmware 4.2".into(),
            ],
            ansi_prompt: false,
            echo: true,
        }
    }
}

enum Control {
    Inject(Vec<u8>),
    HangUp,
    Stop,
}

type ReadLog = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// A device on the far side of a PTY. Stops (and closes the line) on drop.
pub struct ScriptedConsole {
    path: PathBuf,
    slave: Arc<OwnedFd>,
    control: mpsc::Sender<Control>,
    wake: OwnedFd,
    received: ReadLog,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedConsole {
    /// Open a PTY and start playing `script` on its master side. The boot noise and
    /// the first login prompt are written at once (they wait in the tty until read).
    pub fn start(script: ConsoleScript) -> ScriptedConsole {
        let pty = PtyPair::open();
        let flags = fcntl(&pty.master, FcntlArg::F_GETFL).expect("F_GETFL on the PTY master");
        fcntl(&pty.master, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK)).expect("non-blocking PTY master");
        let (wake_rx, wake_tx) = nix::unistd::pipe().expect("pipe for the console's control channel");
        let (control, commands) = mpsc::channel();
        let received: ReadLog = Arc::default();
        let device = Device::new(script, pty.master, received.clone());
        let thread = std::thread::Builder::new()
            .name("scripted-console".into())
            .spawn(move || device.run(wake_rx, commands))
            .expect("spawn the scripted console thread");
        ScriptedConsole { path: pty.path, slave: pty.slave, control, wake: wake_tx, received, thread: Some(thread) }
    }

    /// The device path proofrig (or ser2net) should open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Line settings currently applied to the tty.
    pub fn line_settings(&self) -> LineSettings {
        line_settings(&self.slave)
    }

    /// Make the device print `bytes` on its own (as a kernel message would).
    pub fn inject(&self, bytes: &[u8]) {
        self.send(Control::Inject(bytes.to_vec()));
    }

    /// Close the device side of the line now (the cable is pulled).
    pub fn hang_up(&self) {
        self.send(Control::HangUp);
    }

    /// Every read the device made, in order, with when it happened.
    pub fn reads(&self) -> Vec<(Instant, Vec<u8>)> {
        self.received.lock().unwrap().clone()
    }

    /// Everything the device received, concatenated.
    pub fn received(&self) -> Vec<u8> {
        self.reads().into_iter().flat_map(|(_, bytes)| bytes).collect()
    }

    fn send(&self, control: Control) {
        // The thread may already have ended (hung up); then there is nothing to do.
        if self.control.send(control).is_ok() {
            let _ = nix::unistd::write(&self.wake, b"x");
        }
    }
}

impl Drop for ScriptedConsole {
    fn drop(&mut self) {
        self.send(Control::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Login,
    Password,
    Shell,
    /// After a kernel panic: prints nothing more, ignores input.
    Halted,
}

enum Action {
    Write(Vec<u8>),
    Pause(Duration),
    HangUp,
}

struct Device {
    script: ConsoleScript,
    master: Option<OwnedFd>,
    received: ReadLog,
    state: State,
    line: Vec<u8>,
    last_was_cr: bool,
    user: String,
    status: i32,
    actions: VecDeque<Action>,
    /// Output being written, and how much of it is out.
    writing: Option<(Vec<u8>, usize)>,
    paused_until: Option<Instant>,
}

impl Device {
    fn new(script: ConsoleScript, master: OwnedFd, received: ReadLog) -> Device {
        let mut device = Device {
            script,
            master: Some(master),
            received,
            state: State::Login,
            line: Vec::new(),
            last_was_cr: false,
            user: String::new(),
            status: 0,
            actions: VecDeque::new(),
            writing: None,
            paused_until: None,
        };
        let mut boot = String::new();
        for line in &device.script.boot_lines {
            boot.push_str(line);
            boot.push_str("\r\n");
        }
        boot.push_str(&device.login_prompt());
        device.say(boot.as_bytes());
        device
    }

    fn login_prompt(&self) -> String {
        format!("\r\n{} login: ", self.script.hostname)
    }

    fn shell_prompt(&self) -> String {
        let sigil = if self.user == "root" { '#' } else { '$' };
        let (host, user) = (&self.script.hostname, &self.user);
        if self.script.ansi_prompt {
            format!("\x1b[6n\x1b]0;{user}@{host}: ~\x07\x1b[1;32m{user}@{host}\x1b[0m:\x1b[1;34m~\x1b[0m{sigil} ")
        } else {
            format!("{user}@{host}:~{sigil} ")
        }
    }

    fn say(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.actions.push_back(Action::Write(bytes.to_vec()));
        }
    }

    fn run(mut self, wake: OwnedFd, commands: mpsc::Receiver<Control>) {
        let mut buf = [0u8; 4096];
        loop {
            for control in commands.try_iter() {
                match control {
                    Control::Inject(bytes) => self.say(&bytes),
                    Control::HangUp => self.master = None,
                    Control::Stop => return,
                }
            }
            if self.master.is_none() {
                return;
            }
            self.advance_actions();
            let input = {
                let Some(master) = self.master.as_ref() else { return };
                let mut master_events = PollFlags::POLLIN;
                if self.writing.is_some() {
                    master_events |= PollFlags::POLLOUT;
                }
                let timeout = match self.paused_until {
                    Some(until) => until.saturating_duration_since(Instant::now()).as_millis().clamp(1, 1000) as u16,
                    None => 1000,
                };
                let mut fds = [PollFd::new(master.as_fd(), master_events), PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(timeout)) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(err) => panic!("scripted console: poll failed: {err}"),
                }
                let master_ready = fds[0].revents().unwrap_or(PollFlags::empty());
                let wake_ready = fds[1].revents().unwrap_or(PollFlags::empty());
                if wake_ready.contains(PollFlags::POLLIN) {
                    let _ = nix::unistd::read(&wake, &mut buf);
                }
                if master_ready.contains(PollFlags::POLLIN) {
                    match nix::unistd::read(master, &mut buf) {
                        Ok(n) if n > 0 => Some(buf[..n].to_vec()),
                        // EAGAIN/EINTR: try again; EIO cannot happen while we hold a slave fd.
                        _ => None,
                    }
                } else {
                    None
                }
            };
            if let Some(input) = input {
                self.received.lock().unwrap().push((Instant::now(), input.clone()));
                self.on_input(&input);
            }
            self.flush_output();
        }
    }

    /// Turn queued actions into the current write, honouring pauses.
    fn advance_actions(&mut self) {
        loop {
            if self.writing.is_some() {
                return;
            }
            if let Some(until) = self.paused_until {
                if Instant::now() < until {
                    return;
                }
                self.paused_until = None;
            }
            match self.actions.pop_front() {
                None => return,
                Some(Action::Write(bytes)) => self.writing = Some((bytes, 0)),
                Some(Action::Pause(how_long)) => self.paused_until = Some(Instant::now() + how_long),
                Some(Action::HangUp) => {
                    self.master = None;
                    return;
                }
            }
        }
    }

    fn flush_output(&mut self) {
        loop {
            let (Some(master), Some((bytes, done))) = (self.master.as_ref(), self.writing.as_mut()) else { return };
            match nix::unistd::write(master, &bytes[*done..]) {
                Ok(n) => {
                    *done += n;
                    if *done == bytes.len() {
                        self.writing = None;
                        self.advance_actions();
                    }
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => return,
                Err(err) => panic!("scripted console: write to PTY master failed: {err}"),
            }
        }
    }

    fn on_input(&mut self, input: &[u8]) {
        for &byte in input {
            if self.state == State::Halted {
                return;
            }
            let after_cr = std::mem::replace(&mut self.last_was_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    if self.state != State::Password && self.script.echo {
                        self.say(b"\r\n");
                    }
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    self.on_line(&line);
                }
                _ => {
                    if self.state != State::Password && self.script.echo {
                        self.say(&[byte]);
                    }
                    self.line.push(byte);
                }
            }
        }
    }

    fn on_line(&mut self, line: &str) {
        match self.state {
            State::Login if line.is_empty() => self.say(self.login_prompt().as_bytes()),
            State::Login => {
                self.user = line.to_string();
                self.state = State::Password;
                self.say(b"Password: ");
            }
            State::Password => {
                self.say(b"\r\n");
                if self.user == self.script.user && line == self.script.password {
                    self.state = State::Shell;
                    let greeting = format!("Last login: today on ttyS0\r\n{}", self.shell_prompt());
                    self.say(greeting.as_bytes());
                } else {
                    self.state = State::Login;
                    self.actions.push_back(Action::Pause(Duration::from_millis(20)));
                    let refusal = format!("Login incorrect\r\n{}", self.login_prompt());
                    self.say(refusal.as_bytes());
                }
            }
            State::Shell => {
                for command in split_commands(line) {
                    if !self.execute(&command) {
                        return;
                    }
                }
                let prompt = self.shell_prompt();
                self.say(prompt.as_bytes());
            }
            State::Halted => {}
        }
    }

    /// Run one command; false when the shell is gone (logout, panic, hang-up).
    fn execute(&mut self, command: &str) -> bool {
        let command = command.trim();
        if let Some(code) = command.strip_prefix("(exit ").and_then(|rest| rest.strip_suffix(')')) {
            self.status = code.trim().parse().unwrap_or(2);
            return true;
        }
        let words = split_words(command, self.status);
        let Some((name, args)) = words.split_first() else { return true };
        self.status = match name.as_str() {
            "echo" => {
                let text = format!("{}\r\n", args.join(" "));
                self.say(text.as_bytes());
                0
            }
            "true" => 0,
            "false" => 1,
            "sleep" => {
                let ms = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
                self.actions.push_back(Action::Pause(Duration::from_millis(ms)));
                0
            }
            "flood" => {
                let bytes: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
                self.say(&boot_log(bytes));
                0
            }
            "printff" => {
                self.say(b"A\xffB\r\n");
                0
            }
            "exit" => {
                self.state = State::Login;
                let bye = format!("logout\r\n{}", self.login_prompt());
                self.say(bye.as_bytes());
                return false;
            }
            "panic" => {
                self.state = State::Halted;
                self.say(
                    b"[   42.000001] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\r\n\
                      [   42.000002] ---[ end Kernel panic - not syncing: Attempted to kill init! ]---\r\n",
                );
                return false;
            }
            "hangup" => {
                self.say(b"closing the line\r\n");
                self.actions.push_back(Action::HangUp);
                return false;
            }
            other => {
                let text = format!("-sh: {other}: not found\r\n");
                self.say(text.as_bytes());
                127
            }
        };
        true
    }
}

/// Split a command line on `;` outside quotes.
fn split_commands(line: &str) -> Vec<String> {
    let mut commands = vec![String::new()];
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (None, ';') => commands.push(String::new()),
            (None, '\'' | '"') => {
                quote = Some(c);
                commands.last_mut().unwrap().push(c);
            }
            (Some(q), _) if c == q => {
                quote = None;
                commands.last_mut().unwrap().push(c);
            }
            _ => commands.last_mut().unwrap().push(c),
        }
    }
    commands
}

/// Split into words with shell quote removal and `$?` expansion (not in single quotes).
fn split_words(command: &str, status: i32) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ' ' | '\t') => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), _) if c == q => quote = None,
            (None | Some('"'), '$') if chars.peek() == Some(&'?') => {
                chars.next();
                word.get_or_insert_with(String::new).push_str(&status.to_string());
            }
            _ => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    words
}

/// `bytes` bytes of kernel-log-like lines, for floods and benchmarks.
pub fn boot_log(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 128);
    let mut n: u64 = 0;
    while out.len() < bytes {
        let secs = n / 1000;
        let micros = (n % 1000) * 997;
        let line = format!("[{secs:5}.{micros:06}] eth{}: link up, 10Gbps full duplex, flow control rx/tx, seq={n}\r\n", n % 4);
        out.extend_from_slice(line.as_bytes());
        n += 1;
    }
    out.truncate(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_handle_quotes_and_status() {
        assert_eq!(split_words("echo PRF_ab''_E:$?", 3), vec!["echo", "PRF_ab_E:3"]);
        assert_eq!(split_words("echo 'a $? b' \"c $?\"", 1), vec!["echo", "a $? b", "c 1"]);
        assert_eq!(split_commands("echo 'a;b'; false"), vec!["echo 'a;b'", " false"]);
    }

    #[test]
    fn boot_log_has_the_requested_size() {
        assert_eq!(boot_log(10_000).len(), 10_000);
    }
}
