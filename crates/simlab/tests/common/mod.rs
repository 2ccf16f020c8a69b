//! The far side of a simulated console, as the serial agent or a person at a
//! terminal would have it: the PTY slave opened by path, read and written with
//! plain non-blocking reads and writes on the test's runtime.

#![allow(dead_code)] // Each test file uses a different part.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::io::unix::AsyncFd;

pub struct PtyClient {
    fd: AsyncFd<File>,
    /// Everything read so far, and where the last `expect` stopped.
    transcript: Vec<u8>,
    consumed: usize,
}

impl PtyClient {
    /// Opens the slave like a serial port: read-write, never as controlling tty.
    pub fn open(path: &Path) -> PtyClient {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlag::O_NOCTTY | OFlag::O_NONBLOCK).bits())
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open console {}: {e}", path.display()));
        // SAFETY: the File owns its descriptor for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register(file) }.unwrap_or_else(|e| panic!("cannot register console: {e}"));
        PtyClient { fd, transcript: Vec::new(), consumed: 0 }
    }

    /// Reads what is available now, without waiting.
    fn read_available(&mut self) {
        self.fd.get_mut().read_available_into(&mut self.transcript);
    }

    async fn wait_readable(&mut self) {
        let mut guard = self.fd.readable_mut().await.expect("console readiness");
        guard.get_inner_mut().read_available_into(&mut self.transcript);
        // Reading stopped at EAGAIN: the descriptor is drained.
        guard.clear_ready();
    }

    /// Reads until `needle` appears after what earlier expectations consumed;
    /// returns the text from there up to and including it. Panics with the
    /// transcript when `within` passes first.
    pub async fn expect(&mut self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let unread = &self.transcript[self.consumed..];
            if let Some(at) = find(unread, needle.as_bytes()) {
                let end = self.consumed + at + needle.len();
                let text = String::from_utf8_lossy(&self.transcript[self.consumed..end]).into_owned();
                self.consumed = end;
                return text;
            }
            if tokio::time::timeout_at(deadline, self.wait_readable()).await.is_err() {
                panic!(
                    "console did not show {needle:?} within {within:?}; unread output:\n{}",
                    String::from_utf8_lossy(&self.transcript[self.consumed..])
                );
            }
        }
    }

    /// Reads for `duration` and returns what arrived since the last expectation
    /// (and consumes it).
    pub async fn read_for(&mut self, duration: Duration) -> String {
        let _ = tokio::time::timeout(duration, async {
            loop {
                self.wait_readable().await;
            }
        })
        .await;
        self.read_available();
        let text = String::from_utf8_lossy(&self.transcript[self.consumed..]).into_owned();
        self.consumed = self.transcript.len();
        text
    }

    /// Everything already waiting, consumed, without waiting for more.
    pub fn drain(&mut self) -> String {
        self.read_available();
        let text = String::from_utf8_lossy(&self.transcript[self.consumed..]).into_owned();
        self.consumed = self.transcript.len();
        text
    }

    pub async fn send(&mut self, text: &str) {
        let mut data = text.as_bytes();
        while !data.is_empty() {
            let mut guard = self.fd.writable_mut().await.expect("console readiness");
            match guard.try_io(|fd| fd.get_mut().write(data)) {
                Ok(written) => data = &data[written.expect("console write")..],
                Err(_would_block) => continue,
            }
        }
    }

    /// Everything read since the console was opened.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }
}

trait ReadAvailable {
    /// Appends everything readable now, until the read would block.
    fn read_available_into(&mut self, transcript: &mut Vec<u8>);
}

impl ReadAvailable for File {
    fn read_available_into(&mut self, transcript: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf) {
                Ok(0) => panic!("console PTY closed"),
                Ok(n) => transcript.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("console read failed: {e}"),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
