//! The simulated device's serial console, on a real PTY.
//!
//! proofrig's serial agent (or a person with `picocom`) opens the PTY's slave side,
//! `/dev/pts/N`, exactly as it would open `/dev/ttyUSB0` wired to a radio unit's
//! UART; the device side, on the master, plays that unit's console through the
//! device OS: a bootloader banner and an autoboot countdown that a key press
//! interrupts, a kernel boot log, a `login:` prompt that authenticates through
//! [`DeviceOs::login_with_password`] (root may log in here on both profiles: TS
//! 33.117 allows the physical console), and a shell running [`DeviceOs::run`].
//!
//! What the profile changes is the bootloader and the login: a weak device's login
//! prints a refused password back in its `Login incorrect` message; and a weak device drops anyone who
//! interrupts autoboot into an unauthenticated `=> ` prompt (whose `printenv`,
//! `setenv bootargs ... init=/bin/sh` and `boot` give a root shell without any
//! login); a hardened one asks for the bootloader password and boots on when it
//! is wrong.
//!
//! Power is a UART's: off, the console is silent and input is lost, but the PTY
//! stays open so the serial agent keeps its file descriptor; on, the boot log
//! starts again. Output nobody reads stays in the PTY's buffer, like bytes held by
//! a terminal server; only when that buffer stays full (nobody has read it for a
//! while) is the unread output dropped, so a console nobody watches never stalls
//! the device.
//!
//! The master is non-blocking and driven through tokio's `AsyncFd`, so a console
//! never blocks the runtime.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::device_os::{DeviceIdentity, DeviceOs, LoginOrigin};
use crate::line_editor::{to_terminal, Edit, LineEditor};
use crate::SimError;

/// How long a full output buffer may wait for a reader before the console drops
/// the output nobody read.
const OUTPUT_STALL_LIMIT: Duration = Duration::from_secs(1);

const UBOOT_VERSION: &str = "U-Boot 2023.04 (Oct 02 2023 - 09:14:51 +0000)";
const KERNEL_VERSION: &str = "6.1.55-proofrig-sim";

/// How long booting takes. A real unit counts down whole seconds and prints its
/// boot log over many seconds; the defaults keep a power-on to `login:` at about
/// 1.5 s so demos and tests stay quick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootTiming {
    /// Steps of the bootloader's "Hit any key to stop autoboot" countdown (its
    /// `bootdelay`); a key during the countdown interrupts autoboot.
    pub autoboot_countdown: u32,
    /// Real time per countdown step.
    pub countdown_step: Duration,
    /// Pause after each boot log line.
    pub line_delay: Duration,
}

impl Default for BootTiming {
    fn default() -> Self {
        BootTiming { autoboot_countdown: 3, countdown_step: Duration::from_millis(300), line_delay: Duration::from_millis(20) }
    }
}

impl BootTiming {
    /// About 0.3 s from power-on to `login:`, for tests.
    pub fn fast() -> Self {
        BootTiming { autoboot_countdown: 2, countdown_step: Duration::from_millis(100), line_delay: Duration::from_millis(2) }
    }
}

/// How a [`SimConsole`] behaves.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// The console line's name, shown in the boot log and in auth log records
    /// (`login[398]: ... on ttyS0`).
    pub line: String,
    pub boot: BootTiming,
    /// What a protected bootloader asks for when autoboot is interrupted.
    pub bootloader_password: String,
    /// How long a protected bootloader waits for its password before booting on.
    pub bootloader_password_timeout: Duration,
    /// Pause before `Login incorrect`, like login(1)'s FAIL_DELAY.
    pub login_failure_delay: Duration,
    /// How long a login shell waits for a command before the device logs it out (a
    /// shell's `TMOUT`), on a profile that ends idle sessions; `None`: never.
    pub idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOptions")
            .field("line", &self.line)
            .field("boot", &self.boot)
            .field("bootloader_password_timeout", &self.bootloader_password_timeout)
            .field("login_failure_delay", &self.login_failure_delay)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl ConsoleOptions {
    /// `ttyS0` with the default boot timing.
    pub fn new(bootloader_password: &str) -> Self {
        ConsoleOptions {
            line: "ttyS0".to_string(),
            boot: BootTiming::default(),
            bootloader_password: bootloader_password.to_string(),
            bootloader_password_timeout: Duration::from_secs(10),
            login_failure_delay: Duration::from_secs(1),
            idle_timeout: None,
        }
    }
}

/// A power switch request and who to tell once the console has followed it.
struct PowerRequest {
    on: bool,
    done: oneshot::Sender<()>,
}

/// A running console on a PTY. Dropping it (or [`SimConsole::stop`]) closes the PTY.
pub struct SimConsole {
    slave_path: PathBuf,
    powered: Arc<AtomicBool>,
    requests: mpsc::UnboundedSender<PowerRequest>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SimConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConsole").field("slave_path", &self.slave_path).field("powered", &self.is_powered()).finish_non_exhaustive()
    }
}

impl SimConsole {
    /// Opens a PTY and plays `os`'s console on it; when `powered`, it starts booting
    /// at once. Must run inside a tokio runtime.
    pub async fn start(os: DeviceOs, options: ConsoleOptions, powered: bool) -> Result<SimConsole, SimError> {
        let (port, slave_path) = Port::open()?;
        let powered = Arc::new(AtomicBool::new(powered));
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(port, os, options, requests_rx, Arc::clone(&powered)));
        Ok(SimConsole { slave_path, powered, requests, task: Mutex::new(Some(task)) })
    }

    /// The PTY slave, e.g. `/dev/pts/7`: what a rig's `console.serial.port` names.
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    pub fn is_powered(&self) -> bool {
        self.powered.load(Ordering::SeqCst)
    }

    /// Off: returns once the console has gone silent (what was already written
    /// stays readable). On: the boot log starts; no effect when already on.
    pub async fn set_powered(&self, on: bool) -> Result<(), SimError> {
        let (done, followed) = oneshot::channel();
        self.requests.send(PowerRequest { on, done }).map_err(|_| SimError::Stopped)?;
        followed.await.map_err(|_| SimError::Stopped)
    }

    /// Closes the PTY for good; the far side then reads end of file or EIO.
    pub async fn stop(&self) {
        let task = self.lock_task().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.powered.store(false, Ordering::SeqCst);
    }

    fn lock_task(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SimConsole {
    fn drop(&mut self) {
        if let Some(task) = self.lock_task().take() {
            task.abort();
        }
    }
}

/// The PTY, seen from the device: the master for I/O, plus our own descriptor of
/// the slave, held open so the master never reads EIO while no serial agent has
/// the port open.
struct Port {
    master: AsyncFd<OwnedFd>,
    slave: OwnedFd,
}

impl Port {
    fn open() -> Result<(Port, PathBuf), SimError> {
        let pty_error = |action: &'static str| move |source: Errno| SimError::Pty { action, source: source.into() };
        let pty = nix::pty::openpty(None, None).map_err(pty_error("openpty"))?;
        // Raw: bytes pass unchanged in both directions. The device echoes and
        // translates line endings itself, as a UART-attached device does; the
        // kernel's line discipline on the slave must not echo the device's own
        // output back to it or hold input back until a newline.
        let mut termios = tcgetattr(&pty.slave).map_err(pty_error("tcgetattr"))?;
        cfmakeraw(&mut termios);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).map_err(pty_error("tcsetattr"))?;
        let slave_path = nix::unistd::ttyname(&pty.slave).map_err(pty_error("ttyname"))?;
        for fd in [&pty.master, &pty.slave] {
            // Children of the proofrig process (ssh, scripts) must not inherit the console.
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(pty_error("fcntl"))?;
            // Non-blocking: the master for AsyncFd, our slave descriptor so that
            // draining unread output never waits (the flag belongs to our open file
            // only; the serial agent opens its own).
            let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(pty_error("fcntl"))?;
            let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
            fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(pty_error("fcntl"))?;
        }
        // SAFETY: an OwnedFd is open for as long as it is owned and always returns
        // the same descriptor, and the AsyncFd owns it until it is dropped.
        let master = unsafe { AsyncFd::register(pty.master) }
            .map_err(|error| SimError::Pty { action: "register with the runtime", source: error.into_parts().1 })?;
        Ok((Port { master, slave: pty.slave }, slave_path))
    }

    /// Reads what the far side typed.
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), buf)?)) {
                Ok(Ok(0)) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the console PTY was closed")),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match tokio::time::timeout(OUTPUT_STALL_LIMIT, self.master.writable()).await {
                Ok(ready) => {
                    let mut guard = ready?;
                    match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), data)?)) {
                        Ok(written) => data = &data[written?..],
                        Err(_would_block) => continue,
                    }
                }
                Err(_stalled) => {
                    self.drop_unread_output();
                    match nix::unistd::write(self.master.get_ref(), data) {
                        Ok(written) => data = &data[written..],
                        Err(Errno::EAGAIN) => continue,
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads and discards everything waiting on the slave side. Reading (rather
    /// than tcflush) wakes the master's writers the way a real reader does.
    fn drop_unread_output(&self) {
        let mut sink = [0u8; 4096];
        while matches!(nix::unistd::read(&self.slave, &mut sink), Ok(n) if n > 0) {}
    }
}

/// The console's one task: follows power, feeds input to the powered session and
/// drops it on the floor while off.
async fn drive(
    port: Port,
    os: DeviceOs,
    options: ConsoleOptions,
    mut requests: mpsc::UnboundedReceiver<PowerRequest>,
    powered: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 1024];
    loop {
        if !powered.load(Ordering::SeqCst) {
            tokio::select! {
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    powered.store(request.on, Ordering::SeqCst);
                    let _ = request.done.send(());
                }
                read = port.read(&mut buf) => {
                    if let Err(error) = read {
                        tracing::warn!(%error, "simulated console cannot read its PTY");
                        return;
                    }
                }
            }
            continue;
        }
        let (input, input_rx) = mpsc::unbounded_channel();
        let switched_off = {
            let session = Session::new(&port, &os, &options, input_rx).run();
            tokio::pin!(session);
            let mut running = true;
            loop {
                tokio::select! {
                    result = &mut session, if running => {
                        let Err(error) = result;
                        tracing::warn!(%error, "simulated console cannot write its PTY");
                        running = false;
                    }
                    request = requests.recv() => match request {
                        None => return,
                        Some(PowerRequest { on: true, done }) => {
                            let _ = done.send(());
                        }
                        Some(PowerRequest { on: false, done }) => break done,
                    },
                    read = port.read(&mut buf) => match read {
                        Ok(n) => {
                            let _ = input.send(buf[..n].to_vec());
                        }
                        Err(error) => {
                            tracing::warn!(%error, "simulated console cannot read its PTY");
                            return;
                        }
                    },
                }
            }
            // Leaving this block drops the session mid-whatever: power is cut.
        };
        powered.store(false, Ordering::SeqCst);
        let _ = switched_off.send(());
    }
}

/// What the bootloader prompt decided.
enum BootAction {
    Boot,
    Reset,
}

/// One power-on of the device, from the bootloader banner onwards; runs until
/// power is cut (it is dropped) or the PTY fails.
struct Session<'a> {
    port: &'a Port,
    os: &'a DeviceOs,
    options: &'a ConsoleOptions,
    input: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: VecDeque<u8>,
    editor: LineEditor,
}

impl<'a> Session<'a> {
    fn new(port: &'a Port, os: &'a DeviceOs, options: &'a ConsoleOptions, input: mpsc::UnboundedReceiver<Vec<u8>>) -> Self {
        Session { port, os, options, input, pending: VecDeque::new(), editor: LineEditor::new() }
    }

    async fn run(mut self) -> io::Result<Infallible> {
        loop {
            let identity = self.os.identity();
            let mut env = bootloader_env(&identity, self.options);
            self.print_lines(&bootloader_banner(&identity)).await?;
            if self.autoboot_interrupted().await? {
                let open = !self.os.profile().bootloader_protected() || self.bootloader_password().await?;
                if open {
                    match self.bootloader_prompt(&mut env).await? {
                        BootAction::Boot => {}
                        BootAction::Reset => continue,
                    }
                }
            }
            let bootargs = env.get("bootargs").cloned().unwrap_or_default();
            let init = kernel_init(&bootargs);
            self.print_lines(&kernel_log(&identity, &bootargs, &init)).await?;
            match init.as_str() {
                "/sbin/init" => {
                    let services = self.os.profile().extra_services().iter().map(|s| s.name()).collect::<Vec<_>>();
                    self.print_lines(&init_log(&services)).await?;
                    return self.getty().await;
                }
                "/bin/sh" | "/bin/ash" | "/bin/bash" => {
                    self.say("/bin/sh: can't access tty; job control turned off\r\n").await?;
                    self.shell("root", Some("/ # "), None).await?;
                    self.say(&format!(
                        "{} Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000\r\n",
                        timestamp(9_912_304)
                    ))
                    .await?;
                }
                other => {
                    self.say(&format!(
                        "{} Kernel panic - not syncing: Requested init {other} failed (error -2).\r\n",
                        timestamp(1_231_554)
                    ))
                    .await?;
                }
            }
            // A panicked kernel hangs until someone cuts the power.
            return std::future::pending().await;
        }
    }

    async fn say(&self, text: &str) -> io::Result<()> {
        self.port.write_all(text.as_bytes()).await
    }

    async fn print_lines(&self, lines: &[String]) -> io::Result<()> {
        for line in lines {
            self.say(&format!("{line}\r\n")).await?;
            if !self.options.boot.line_delay.is_zero() {
                tokio::time::sleep(self.options.boot.line_delay).await;
            }
        }
        Ok(())
    }

    async fn next_byte(&mut self) -> u8 {
        loop {
            if let Some(byte) = self.pending.pop_front() {
                return byte;
            }
            match self.input.recv().await {
                Some(bytes) => self.pending.extend(bytes),
                // The input side only goes away with power; wait to be dropped.
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Forgets typeahead, as a program that flushes the tty's input does.
    fn discard_typeahead(&mut self) {
        self.pending.clear();
        while self.input.try_recv().is_ok() {}
        self.editor = LineEditor::new();
    }

    /// Reads one edited line, echoing it (or only its end when not `visible`).
    async fn read_line(&mut self, visible: bool) -> io::Result<Edit> {
        loop {
            let byte = self.next_byte().await;
            let mut echo = String::new();
            let edit = self.editor.feed(byte, visible, &mut echo);
            if !echo.is_empty() {
                self.say(&echo).await?;
            }
            if edit != Edit::Pending {
                return Ok(edit);
            }
        }
    }

    /// The bootloader's countdown; true when a key interrupted it (the key is
    /// consumed, as U-Boot's `abortboot` does).
    async fn autoboot_interrupted(&mut self) -> io::Result<bool> {
        let timing = &self.options.boot;
        let mut remaining = timing.autoboot_countdown;
        self.say(&format!("Hit any key to stop autoboot: {remaining:2} ")).await?;
        while remaining > 0 {
            let step = timing.countdown_step;
            if tokio::time::timeout(step, self.next_byte()).await.is_ok() {
                self.say("\x08\x08\x08 0 \r\n").await?;
                return Ok(true);
            }
            remaining -= 1;
            self.say(&format!("\x08\x08\x08{remaining:2} ")).await?;
        }
        self.say("\r\n").await?;
        Ok(false)
    }

    /// A protected bootloader's password check; true when it was right.
    async fn bootloader_password(&mut self) -> io::Result<bool> {
        // Like getpass(3) switching echo off with TCSAFLUSH: keys typed before the
        // prompt (the rest of whatever stopped autoboot) are not the password.
        self.discard_typeahead();
        self.say("Password: ").await?;
        let limit = self.options.bootloader_password_timeout;
        let answer = tokio::time::timeout(limit, self.read_line(false)).await;
        let right = match answer {
            Ok(edit) => matches!(edit?, Edit::Line(p) if p == self.options.bootloader_password),
            Err(_timed_out) => {
                self.say("\r\n").await?;
                false
            }
        };
        if !right {
            self.discard_typeahead();
            self.say("Bad password; continuing to boot\r\n").await?;
        }
        Ok(right)
    }

    /// The bootloader's command prompt.
    async fn bootloader_prompt(&mut self, env: &mut BTreeMap<String, String>) -> io::Result<BootAction> {
        let mut prompt = true;
        loop {
            if prompt {
                self.say("=> ").await?;
            }
            prompt = true;
            let line = match self.read_line(true).await? {
                Edit::Line(line) => line,
                Edit::Interrupt => continue,
                // U-Boot ignores ^D.
                Edit::EndOfInput | Edit::Pending => {
                    prompt = false;
                    continue;
                }
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some((command, args)) = words.split_first() else {
                continue;
            };
            let reply = match *command {
                "help" | "?" => BOOTLOADER_HELP.to_string(),
                "version" => format!("{UBOOT_VERSION}\n"),
                "printenv" => printenv(env, args),
                "setenv" => match args.split_first() {
                    None => "Usage:\nsetenv name value ...\n".to_string(),
                    Some((name, [])) => {
                        env.remove(*name);
                        String::new()
                    }
                    Some((name, value)) => {
                        env.insert(name.to_string(), value.join(" "));
                        String::new()
                    }
                },
                "boot" | "bootd" => return Ok(BootAction::Boot),
                "run" => match args.first() {
                    Some(name) if env.contains_key(*name) => return Ok(BootAction::Boot),
                    Some(name) => format!("## Error: \"{name}\" not defined\n"),
                    None => "Usage:\nrun var [...]\n".to_string(),
                },
                "reset" => {
                    self.say("resetting ...\r\n").await?;
                    return Ok(BootAction::Reset);
                }
                other => format!("Unknown command '{other}' - try 'help'\n"),
            };
            self.say(&to_terminal(&reply)).await?;
        }
    }

    /// The getty/login loop on the console line; never ends by itself.
    async fn getty(&mut self) -> io::Result<Infallible> {
        let hostname = self.os.hostname();
        let identity = self.os.identity();
        let issue = format!("{} {} (firmware {}) {hostname} {}", identity.vendor, identity.model, identity.firmware, self.options.line);
        loop {
            // agetty flushes the line's input when it takes it over.
            self.discard_typeahead();
            self.say(&format!("\r\n{issue}\r\n\r\n")).await?;
            loop {
                self.say(&format!("{hostname} login: ")).await?;
                let user = match self.read_line(true).await? {
                    Edit::Line(user) if !user.trim().is_empty() => user.trim().to_string(),
                    _ => continue,
                };
                self.say("Password: ").await?;
                let Edit::Line(password) = self.read_line(false).await? else {
                    continue;
                };
                let origin = LoginOrigin::Console { line: self.options.line.clone() };
                match self.os.login_with_password(&user, &password, origin) {
                    Ok(()) => {
                        let pid = self.os.open_session(&user, crate::device_os::LOGIN_PID);
                        self.shell(&user, None, Some(pid)).await?;
                        if self.os.profile().console_logout_ends_shell() {
                            self.os.end_session(pid);
                        }
                        break;
                    }
                    Err(_) => {
                        tokio::time::sleep(self.options.login_failure_delay).await;
                        if self.os.profile().console_hides_password() {
                            self.say("\r\nLogin incorrect\r\n").await?;
                        } else {
                            self.say(&format!("\r\nLogin incorrect (user '{user}', password '{password}')\r\n")).await?;
                        }
                    }
                }
            }
        }
    }

    /// A shell for `user` until exit/logout/^D; `fixed_prompt` replaces the usual
    /// `user@host:~# ` (for a shell started as init). A login shell left without a
    /// command for the console's `idle_timeout` is logged out, where the profile says so.
    async fn shell(&mut self, user: &str, fixed_prompt: Option<&str>, session: Option<u32>) -> io::Result<()> {
        let prompt = |os: &DeviceOs| match fixed_prompt {
            Some(prompt) => prompt.to_string(),
            None => os.prompt(user),
        };
        self.say(&prompt(self.os)).await?;
        // A login shell (not init's) on a device that ends idle sessions.
        let idle_limit = self.options.idle_timeout.filter(|_| fixed_prompt.is_none() && self.os.profile().ends_idle_sessions());
        loop {
            let edit = match idle_limit {
                Some(limit) => match tokio::time::timeout(limit, self.read_line(true)).await {
                    Ok(edit) => edit?,
                    Err(_idle) => {
                        // As bash and BusyBox ash say it when TMOUT expires.
                        self.editor = LineEditor::new();
                        self.say("\r\ntimed out waiting for input: auto-logout\r\n").await?;
                        return Ok(());
                    }
                },
                None => self.read_line(true).await?,
            };
            match edit {
                Edit::Line(line) => {
                    let command = line.trim();
                    if command == "logout" && fixed_prompt.is_none() {
                        return Ok(());
                    }
                    if command == "passwd" {
                        self.passwd(user).await?;
                    } else if !command.is_empty() {
                        let stdin = if self.os.reads_stdin(command) {
                            match self.read_stdin().await? {
                                Some(stdin) => stdin,
                                None => {
                                    self.say(&prompt(self.os)).await?;
                                    continue;
                                }
                            }
                        } else {
                            String::new()
                        };
                        let output = match session {
                            Some(pid) => self.os.run_in_session(user, pid, command, &stdin).await,
                            None => self.os.run(user, command, &stdin).await,
                        };
                        self.say(&to_terminal(&(output.stdout + &output.stderr))).await?;
                        if output.exit_requested {
                            return Ok(());
                        }
                    }
                }
                Edit::Interrupt => {}
                Edit::EndOfInput => {
                    self.say("logout\r\n").await?;
                    return Ok(());
                }
                Edit::Pending => continue,
            }
            self.say(&prompt(self.os)).await?;
        }
    }

    /// `passwd` typed at the console: changes `user`'s own password, asking (echo off)
    /// for the current one first where the profile says so (never for root), then the
    /// new one twice; ^C abandons it. Words as Linux-PAM's passwd uses them.
    async fn passwd(&mut self, user: &str) -> io::Result<()> {
        self.say(&format!("Changing password for {user}.\r\n")).await?;
        if user != "root" && self.os.profile().passwd_asks_current_password() {
            self.say("Current password: ").await?;
            let Edit::Line(current) = self.read_line(false).await? else {
                return self.say("passwd: password unchanged\r\n").await;
            };
            if !self.os.is_current_password(user, &current) {
                tokio::time::sleep(self.options.login_failure_delay).await;
                return self.say("passwd: Authentication token manipulation error\r\npasswd: password unchanged\r\n").await;
            }
        }
        self.say("New password: ").await?;
        let Edit::Line(new) = self.read_line(false).await? else {
            return self.say("passwd: password unchanged\r\n").await;
        };
        self.say("Retype new password: ").await?;
        let Edit::Line(again) = self.read_line(false).await? else {
            return self.say("passwd: password unchanged\r\n").await;
        };
        if new != again {
            return self
                .say("Sorry, passwords do not match.\r\npasswd: Authentication token manipulation error\r\npasswd: password unchanged\r\n")
                .await;
        }
        match self.os.set_password(user, &new) {
            Ok(()) => self.say("passwd: password updated successfully\r\n").await,
            Err(reason) => self.say(&format!("BAD PASSWORD: {reason}\r\npasswd: password unchanged\r\n")).await,
        }
    }

    /// Standard input typed at the terminal: lines until ^D; `None` after ^C.
    async fn read_stdin(&mut self) -> io::Result<Option<String>> {
        let mut stdin = String::new();
        loop {
            match self.read_line(true).await? {
                Edit::Line(line) => {
                    stdin.push_str(&line);
                    stdin.push('\n');
                }
                Edit::EndOfInput => return Ok(Some(stdin)),
                Edit::Interrupt => return Ok(None),
                Edit::Pending => {}
            }
        }
    }
}

const BOOTLOADER_HELP: &str = "\
?         - alias for 'help'
boot      - boot default, i.e., run 'bootcmd'
bootd     - boot default, i.e., run 'bootcmd'
help      - print command description/usage
printenv  - print environment variables
reset     - Perform RESET of the CPU
run       - run commands in an environment variable
setenv    - set environment variables
version   - print monitor, compiler and linker version
";

fn bootloader_banner(identity: &DeviceIdentity) -> Vec<String> {
    vec![
        String::new(),
        format!("{UBOOT_VERSION} {}", identity.vendor),
        String::new(),
        "CPU:   ARMv8 Cortex-A53 (simulated)".to_string(),
        format!("Model: {} {}", identity.vendor, identity.model),
        "DRAM:  2 GiB".to_string(),
        "Core:  42 devices, 14 uclasses, devicetree: separate".to_string(),
        "MMC:   mmc@1c0f000: 0".to_string(),
        "Loading Environment from MMC... OK".to_string(),
        "In:    serial@1c28000".to_string(),
        "Out:   serial@1c28000".to_string(),
        "Err:   serial@1c28000".to_string(),
        "Net:   eth0: ethernet@1c30000".to_string(),
    ]
}

fn bootloader_env(identity: &DeviceIdentity, options: &ConsoleOptions) -> BTreeMap<String, String> {
    let line = &options.line;
    [
        ("arch", "arm".to_string()),
        ("baudrate", "115200".to_string()),
        ("board", "proofrig-sim".to_string()),
        ("bootargs", format!("console={line},115200 root=/dev/mmcblk0p2 rootwait ro")),
        ("bootcmd", "run mmcboot".to_string()),
        ("bootdelay", options.boot.autoboot_countdown.to_string()),
        ("fdtaddr", "0x83000000".to_string()),
        ("loadaddr", "0x82000000".to_string()),
        (
            "mmcboot",
            "load mmc 0:1 ${loadaddr} Image; load mmc 0:1 ${fdtaddr} board.dtb; \
             booti ${loadaddr} - ${fdtaddr}"
                .to_string(),
        ),
        ("serial#", identity.serial.clone()),
        ("stderr", "serial@1c28000".to_string()),
        ("stdin", "serial@1c28000".to_string()),
        ("stdout", "serial@1c28000".to_string()),
        ("ver", UBOOT_VERSION.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn printenv(env: &BTreeMap<String, String>, names: &[&str]) -> String {
    if names.is_empty() {
        let mut out: String = env.iter().map(|(name, value)| format!("{name}={value}\n")).collect();
        out.push_str(&format!("\nEnvironment size: {}/65532 bytes\n", out.len()));
        return out;
    }
    names
        .iter()
        .map(|name| match env.get(*name) {
            Some(value) => format!("{name}={value}\n"),
            None => format!("## Error: \"{name}\" not defined\n"),
        })
        .collect()
}

/// The kernel's `init=` argument, `/sbin/init` by default.
fn kernel_init(bootargs: &str) -> String {
    bootargs.split_whitespace().filter_map(|arg| arg.strip_prefix("init=")).next_back().unwrap_or("/sbin/init").to_string()
}

/// `[    1.234567]`, a kernel log timestamp from microseconds since boot.
fn timestamp(micros: u64) -> String {
    format!("[{:5}.{:06}]", micros / 1_000_000, micros % 1_000_000)
}

fn kernel_log(identity: &DeviceIdentity, bootargs: &str, init: &str) -> Vec<String> {
    let kernel = [
        (0, "Booting Linux on physical CPU 0x0000000000 [0x410fd034]".to_string()),
        (0, format!("Linux version {KERNEL_VERSION} (builder@proofrig) (gcc (GCC) 12.2.0, GNU ld 2.40) #1 SMP PREEMPT")),
        (0, format!("Machine model: {} {}", identity.vendor, identity.model)),
        (0, format!("Kernel command line: {bootargs}")),
        (4_210, "Memory: 2010436K/2097152K available".to_string()),
        (112_345, "Serial: 8250/16550 driver, 4 ports, IRQ sharing disabled".to_string()),
        (120_044, "printk: console [ttyS0] enabled".to_string()),
        (873_110, "mmc0: new high speed SDHC card at address aaaa".to_string()),
        (1_204_551, "EXT4-fs (mmcblk0p2): mounted filesystem with ordered data mode. Quota mode: none.".to_string()),
        (1_210_931, "VFS: Mounted root (ext4 filesystem) readonly on device 179:2.".to_string()),
        (1_226_004, format!("Run {init} as init process")),
    ];
    let mut lines = vec![
        "switch to partitions #0, OK".to_string(),
        "mmc0 is current device".to_string(),
        "18874880 bytes read in 412 ms (43.7 MiB/s)".to_string(),
        "## Flattened Device Tree blob at 83000000".to_string(),
        "Starting kernel ...".to_string(),
        String::new(),
    ];
    lines.extend(kernel.into_iter().map(|(micros, text)| format!("{} {text}", timestamp(micros))));
    lines
}

fn init_log(extra_services: &[&str]) -> Vec<String> {
    let mut lines = vec!["INIT: version 3.06 booting".to_string(), "Starting syslogd: OK".to_string(), "Starting sshd: OK".to_string()];
    lines.extend(extra_services.iter().map(|service| format!("Starting {service}d: OK")));
    lines.push("INIT: Entering runlevel: 3".to_string());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_comes_from_the_last_init_argument() {
        assert_eq!(kernel_init("console=ttyS0 ro"), "/sbin/init");
        assert_eq!(kernel_init("init=/sbin/init ro init=/bin/sh"), "/bin/sh");
    }

    #[test]
    fn printenv_lists_everything_or_the_names_asked_for() {
        let env = bootloader_env(&DeviceIdentity::default(), &ConsoleOptions::new("x"));
        let all = printenv(&env, &[]);
        assert!(all.starts_with("arch=arm\n"), "{all}");
        assert!(all.contains("\nserial#=SIM0000001\n"), "{all}");
        assert!(all.contains("Environment size: "), "{all}");
        assert_eq!(printenv(&env, &["bootdelay", "nope"]), "bootdelay=3\n## Error: \"nope\" not defined\n");
    }

    #[test]
    fn kernel_timestamps_look_like_dmesg() {
        assert_eq!(timestamp(0), "[    0.000000]");
        assert_eq!(timestamp(1_226_004), "[    1.226004]");
    }
}
