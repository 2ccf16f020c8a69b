//! proofrig server: the lab service that schedules runs onto rigs and keeps what
//! they prove.
//!
//! A lab has many rigs on several lab hosts, a queue of evaluations, technicians who
//! need a rig by hand for an hour, and results that must reach their reviewers
//! verified. The server owns the queue, the rigs' states, the leases and
//! reservations, and the uploaded bundles; the lab hosts (`proofrig labhost`, built on
//! `proofrig-run`) own the devices. It speaks to them only through the contract in
//! `proofrig-proto`, and links no device I/O: what it stores it never measured itself.
//!
//! What is here so far: the decision at its centre, [`scheduler`] (which queued job
//! goes to which rig, a pure function of a snapshot and `now`); the [`store`]
//! (SQLite, PostgreSQL) that reads that snapshot and claims the decisions with
//! fencing tokens, holds the leases, reservations, rig states and people, and writes
//! the audit log; the [`inbox`] where uploaded bundles arrive, resumably, and are
//! verified as a regulator would before anything shows them; the server process,
//! [`http`] (HTTPS by default, with the self-signed identity of [`tls`] that clients
//! pin), and the REST [`api`] on it, whose one table of routes says which role may
//! call each; [`recurring`], the rules of recurring runs (a cron expression in a time
//! zone: when it fires next, across daylight-saving changes and after downtime), which
//! the store's schedules follow; the lab hosts' one signed route, [`labwire`], and the
//! journals of running jobs it holds, [`live`], signing what it saw as [`witness`]; the live consoles
//! relayed between a technician's browser and a lab host, [`consoles`]; and the loop that fires
//! schedules, schedules jobs and reaps, [`service`].

pub mod api;
pub mod clock;
pub mod consoles;
pub mod http;
pub mod inbox;
pub mod labwire;
pub mod live;
pub mod matrix;
pub mod recurring;
pub mod review;
pub mod scheduler;
pub mod service;
pub mod store;
pub mod tls;
pub mod transcript;
pub mod web;
pub mod witness;
