//! Raw terminal mode for `proofrig console`, restored on every way out.
//!
//! A person at a device console expects every key (Ctrl-C included) to reach the
//! device, so the local terminal goes raw; the guard puts it back even on error.

use std::os::fd::BorrowedFd;

use nix::sys::termios::{self, SetArg, Termios};

/// Holds the terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Switch stdin to raw mode if it is a terminal; `None` when it is not (a pipe).
    pub fn enable_on_stdin() -> nix::Result<Option<Self>> {
        let stdin = stdin_fd();
        if !nix::unistd::isatty(stdin).unwrap_or(false) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin, SetArg::TCSANOW, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, &self.saved);
    }
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// The width of the terminal stdout is, in columns; `None` when stdout is not a
/// terminal (a pipe or a file gets full lines, for grep and tools).
pub fn stdout_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize struct we pass; fd 1 is open.
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        return Some(size.ws_col as usize);
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).or(Some(80))
}
