//! proofrig proto: the contract between the lab service's server and its lab hosts,
//! and the types of the server's API, in one place.
//!
//! The server and the lab hosts are built, deployed and upgraded apart, and each
//! anchor lab system we measured ourselves against broke at that seam: workers and
//! exporters that stopped working after a version bump, log batches stored twice
//! when resent, locks that never expired, jobs sent to machines that were gone.
//! Writing the seam down once, as plain types with the rules that go with them,
//! lets both sides (and their tests) be held to it, the way labgrid keeps its
//! coordinator's protocol in one `.proto` file:
//!
//! - [`labhost`]: every message between a lab host and the server, each saying who
//!   sends it, when, and what the receiver does (also when it arrives twice);
//! - [`version`]: the version every session starts with, and the rule for skew;
//! - [`advert`]: a lab host's rig files as it advertises them, and the check that
//!   keeps a rig that would not load, or a secret's value, off the server;
//! - [`ids`]: jobs, attempts, priorities, times, and fencing tokens with the rule a
//!   lab host applies to a stale one;
//! - [`resume`]: where a resent or resumed chunk of a stream lands, so a journal or
//!   an upload is stored exactly once;
//! - [`files`]: plans and bundle files, and the names they may have;
//! - [`api`]: what people and the command line send the server and get back;
//! - [`timing`]: the heartbeat, offline, lease, lost and reservation deadlines;
//! - [`wire`]: the one HTTPS route lab hosts use, and the signature on each request;
//! - [`pin`]: trusting the server by its certificate's fingerprint.
//!
//! JSON on the wire (serde); byte payloads as base64 and digests as SHA-256 hex
//! ([`bytes`]). Nothing here does I/O, links a device agent or reads a clock: the
//! server depends on this crate and must stay free of device I/O, and every rule
//! here is a pure function tested alone.

pub mod advert;
pub mod api;
pub mod bytes;
pub mod files;
pub mod ids;
pub mod labhost;
pub mod pin;
pub mod resume;
pub mod timing;
pub mod version;
pub mod wire;
