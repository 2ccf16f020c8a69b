//! Technician sessions are evidence too: see [`proofrig_labhost::session`], shared with
//! the lab host, which records the dashboard's power and console sessions the same way.

pub use proofrig_labhost::session::SessionLog;
