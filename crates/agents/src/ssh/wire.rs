//! libssh2 in non-blocking mode, waited on with poll(2).
//!
//! libssh2's blocking mode can only wait on one thing at a time and has one timeout for
//! every call. Our threads need more: read stdout and stderr of a command together,
//! read a shell while serving writes, enforce one deadline over many calls. So every
//! session runs non-blocking: a call that would block returns EAGAIN, we `poll(2)` the
//! socket for the direction libssh2 says it is waiting on, and call again. No spinning:
//! the thread sleeps in poll until the socket is ready or the deadline passes.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use ssh2::{BlockDirections, ErrorCode, Session};

pub(crate) const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
pub(crate) const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
pub(crate) const LIBSSH2_ERROR_FILE: i32 = -16;
pub(crate) const LIBSSH2_ERROR_AUTHENTICATION_FAILED: i32 = -18;
pub(crate) const LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;
pub(crate) const LIBSSH2_ERROR_SOCKET_TIMEOUT: i32 = -30;
pub(crate) const LIBSSH2_ERROR_EAGAIN: i32 = -37;
pub(crate) const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;
pub(crate) const LIBSSH2_ERROR_BAD_SOCKET: i32 = -45;
pub(crate) const LIBSSH2_ERROR_KEYFILE_AUTH_FAILED: i32 = -48;
pub(crate) const LIBSSH2_ERROR_BANNER_RECV: i32 = -2;
pub(crate) const LIBSSH2_ERROR_BANNER_SEND: i32 = -3;

/// How long to wait when libssh2 reports EAGAIN without saying which direction it
/// waits for (rare); short enough not to add latency, long enough not to spin.
const UNSPECIFIED_WAIT: Duration = Duration::from_millis(20);

/// Why a non-blocking operation did not complete.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The deadline passed while libssh2 was still waiting for the peer.
    TimedOut,
    Ssh(ssh2::Error),
    Io(io::Error),
    /// The channel ended (end of file) before what was awaited came; the connection
    /// itself may be fine.
    ChannelEnded,
}

impl WireError {
    /// The transport itself is gone (peer closed, reset, socket error), as opposed to a
    /// refusal or protocol error on an otherwise working connection.
    pub fn is_connection_loss(&self) -> bool {
        match self {
            WireError::TimedOut | WireError::ChannelEnded => false,
            WireError::Io(_) => true,
            WireError::Ssh(e) => is_connection_loss_code(e.code()),
        }
    }

    pub fn code(&self) -> Option<i32> {
        match self {
            WireError::Ssh(e) => match e.code() {
                ErrorCode::Session(code) => Some(code),
                ErrorCode::SFTP(_) => None,
            },
            _ => None,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TimedOut => f.write_str("timed out"),
            WireError::Ssh(e) => write!(f, "{}", e.message()),
            WireError::Io(e) => write!(f, "{e}"),
            WireError::ChannelEnded => f.write_str("the channel ended first"),
        }
    }
}

pub(crate) fn is_connection_loss_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Session(
            LIBSSH2_ERROR_SOCKET_SEND
                | LIBSSH2_ERROR_SOCKET_DISCONNECT
                | LIBSSH2_ERROR_SOCKET_TIMEOUT
                | LIBSSH2_ERROR_SOCKET_RECV
                | LIBSSH2_ERROR_BAD_SOCKET
                | LIBSSH2_ERROR_BANNER_RECV
                | LIBSSH2_ERROR_BANNER_SEND
        )
    )
}

pub(crate) fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

/// A non-blocking libssh2 session and the socket it runs on.
pub(crate) struct Wire {
    pub session: Session,
    /// A duplicate of the session's socket descriptor, for poll(2) only.
    poll_socket: TcpStream,
}

impl Wire {
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let poll_socket = stream.try_clone()?;
        let mut session = Session::new().map_err(io::Error::from)?;
        session.set_tcp_stream(stream);
        session.set_blocking(false);
        Ok(Self { session, poll_socket })
    }

    /// Our end of the connection: the source address and port the device sees.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.poll_socket.local_addr().ok()
    }

    pub fn socket(&self) -> BorrowedFd<'_> {
        self.poll_socket.as_fd()
    }

    /// The poll(2) events libssh2 is waiting for after an EAGAIN.
    pub fn wanted_events(&self) -> PollFlags {
        match self.session.block_directions() {
            BlockDirections::Inbound | BlockDirections::None => PollFlags::POLLIN,
            BlockDirections::Outbound => PollFlags::POLLOUT,
            BlockDirections::Both => PollFlags::POLLIN | PollFlags::POLLOUT,
        }
    }

    /// Sleep until the socket is ready in the direction libssh2 waits for, or the deadline.
    pub fn wait(&self, deadline: Option<Instant>) -> Result<(), WireError> {
        let mut limit = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if limit == Some(Duration::ZERO) {
            return Err(WireError::TimedOut);
        }
        if self.session.block_directions() == BlockDirections::None {
            limit = Some(limit.map_or(UNSPECIFIED_WAIT, |l| l.min(UNSPECIFIED_WAIT)));
        }
        let mut fds = [PollFd::new(self.socket(), self.wanted_events())];
        match poll(&mut fds, poll_timeout(limit)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(WireError::Io(e.into())),
        }
    }

    /// Call `op` until it stops returning EAGAIN, waiting on the socket in between.
    pub fn retry<T>(&self, deadline: Option<Instant>, mut op: impl FnMut(&Session) -> Result<T, ssh2::Error>) -> Result<T, WireError> {
        loop {
            match op(&self.session) {
                Ok(value) => return Ok(value),
                Err(e) if is_eagain(&e) => self.wait(deadline)?,
                Err(e) => return Err(WireError::Ssh(e)),
            }
        }
    }

    /// Classify an I/O error from a channel or SFTP read/write using libssh2's last error.
    pub fn io_failure(&self, e: io::Error) -> WireError {
        match ssh2::Error::last_session_error(&self.session) {
            Some(last) if !is_eagain(&last) => WireError::Ssh(last),
            _ => WireError::Io(e),
        }
    }

    /// Run `f` with the session briefly in blocking mode (bounded by the session
    /// timeout), for the few ssh2 destructors that would otherwise leak a channel or
    /// handle when they meet EAGAIN.
    pub fn blocking<T>(&self, f: impl FnOnce() -> T) -> T {
        self.session.set_blocking(true);
        let value = f();
        self.session.set_blocking(false);
        value
    }
}

/// Whether data for a channel has arrived inside libssh2 while the socket looks idle.
///
/// A libssh2 read takes in everything the socket holds, for every channel and stream,
/// and queues what it was not asked for. Reading a command's stderr can so take in the
/// stdout (and the EOF and close after it) that arrived a moment after stdout was read:
/// the socket is then empty, poll(2) sleeps through output that is already here, and
/// the command "finishes" only at its deadline (in `proofrig run`, 30 s for an `echo`;
/// channel writes drain the socket the same way). So a reader that read nothing asks
/// this before sleeping, and reads again when the queue has grown. Grown, not non-empty:
/// data on a stream nobody reads (an extended-data type other than stderr) stays
/// queued for good, and must not keep the reader from sleeping.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    /// What was queued after the last pass that read nothing.
    unread: u32,
}

impl Queued {
    /// A pass read something: whatever is queued now may yet be read.
    pub fn read_some(&mut self) {
        self.unread = 0;
    }

    /// A pass read nothing: true when data for `channel` reached libssh2's queue since
    /// the last such pass, so the caller must read again rather than wait on the socket.
    pub fn arrived(&mut self, channel: &ssh2::Channel) -> bool {
        let queued = channel.read_window().available;
        let arrived = queued > self.unread;
        self.unread = queued;
        arrived
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        // libssh2_session_free must close any channel still open, which in non-blocking
        // mode can stop at EAGAIN and leak the session; blocking is bounded by the
        // session timeout, and returns at once on a dead socket.
        self.session.set_blocking(true);
    }
}

/// Milliseconds for poll(2), rounded up so that a 0.4 ms remainder does not spin.
pub(crate) fn poll_timeout(limit: Option<Duration>) -> PollTimeout {
    match limit {
        None => PollTimeout::NONE,
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128);
            PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
        }
    }
}
