//! proofrig lab host: the agent on the machine wired to the rigs.
//!
//! The server never touches a device; a lab host does, for the rigs whose files it
//! holds. It dials out to the server ([`agent`]: the signed session over
//! `proofrig-proto`, heartbeats, a poll always open, journals streamed, bundles
//! uploaded from an outbox that survives restarts), tells
//! it which rigs it serves ([`rigs`]), and runs the jobs the server assigns with the
//! same engine as `proofrig run` (`proofrig_run::job`), signing each bundle with its
//! own lab key.
//!
//! Beneath the agent, the lab host's side of an assignment without the network:
//! [`rigs`] (the rig files it serves, exactly as it advertises them) and [`accept`]
//! (the checks an assignment passes before anything runs, in the order the contract
//! gives, with the fencing tokens it has accepted kept on disk ([`fences`]) so that a
//! restart cannot make it accept a lease that has already passed to someone else),
//! and [`upload`] (the sealed bundle offered and sent in chunks from wherever the
//! server says it holds it).
//!
//! A technician's hands at the dashboard are here too: [`bench`] carries out the
//! power actions and live consoles the server relays, under the reservation's
//! fencing token, recorded like `proofrig power` and `proofrig console` ([`session`]).

pub mod accept;
pub mod agent;
pub mod bench;
pub mod fences;
pub mod link;
pub mod rigs;
pub mod session;
pub mod upload;
