//! The protocol's version, and who may talk to whom.
//!
//! A lab is upgraded one machine at a time: the server first, then each lab host
//! when its rigs are free. LAVA's workers and labgrid 25.0's exporters simply broke
//! when the two sides disagreed, and the technician learnt it from a hung job. Here
//! every session and every enrollment opens with the sender's [`Version`], and the
//! server applies [`check`] before anything else: a lab host one minor version behind
//! keeps working (the server still speaks its messages), anything else is refused
//! at once with an error naming both versions and the side to upgrade.
//!
//! Bumping: a new optional field or message the old side can ignore is a minor
//! version; a changed meaning, a removed field or a new required one is a major one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The version of this contract that this build speaks.
pub const PROTOCOL_VERSION: Version = Version { major: 1, minor: 1 };

/// A protocol version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// How a lab host's version stands to the server's, when the two can work together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// The same version.
    Same,
    /// The lab host is one minor version behind: it keeps working; the server says
    /// so in its log and in the lab host's status, so someone upgrades it.
    OneMinorBehind,
}

/// Which side must be upgraded for the two to talk again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upgrade {
    Server,
    LabHost,
}

impl fmt::Display for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Upgrade::Server => "the server",
            Upgrade::LabHost => "the lab host",
        })
    }
}

/// A lab host and a server that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lab host speaks protocol {labhost}, server speaks {server}: {why}; upgrade {upgrade} to protocol {target}")]
pub struct VersionError {
    pub server: Version,
    pub labhost: Version,
    pub upgrade: Upgrade,
    /// The version the side to upgrade must reach.
    pub target: Version,
    pub why: &'static str,
}

/// The server's rule for a lab host that opens a session or enrolls with `labhost`.
///
/// Same major, and the lab host at the server's minor or one below: it works. A lab
/// host newer than the server (it may send what the server does not understand):
/// upgrade the server. A different major, or a lab host two or more minors behind:
/// the older side upgrades.
pub fn check(server: Version, labhost: Version) -> Result<Compat, VersionError> {
    let refuse = |upgrade, why| {
        let target = match upgrade {
            Upgrade::Server => labhost,
            Upgrade::LabHost => server,
        };
        Err(VersionError { server, labhost, upgrade, target, why })
    };
    if labhost.major != server.major {
        return match labhost.major < server.major {
            true => refuse(Upgrade::LabHost, "the major versions differ"),
            false => refuse(Upgrade::Server, "the major versions differ"),
        };
    }
    match server.minor.checked_sub(labhost.minor) {
        Some(0) => Ok(Compat::Same),
        Some(1) => Ok(Compat::OneMinorBehind),
        Some(_) => refuse(Upgrade::LabHost, "the lab host is more than one minor version behind"),
        None => refuse(Upgrade::Server, "the lab host is newer than the server"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    #[test]
    fn the_version_rule_table() {
        use Upgrade::*;
        // (server, lab host, expected)
        let table: &[(Version, Version, Result<Compat, Upgrade>)] = &[
            (v(1, 0), v(1, 0), Ok(Compat::Same)),
            (v(1, 4), v(1, 4), Ok(Compat::Same)),
            (v(1, 4), v(1, 3), Ok(Compat::OneMinorBehind)),
            (v(1, 1), v(1, 0), Ok(Compat::OneMinorBehind)),
            (v(1, 4), v(1, 2), Err(LabHost)),
            (v(1, 4), v(1, 0), Err(LabHost)),
            (v(1, 4), v(1, 5), Err(Server)),
            (v(1, 0), v(1, 1), Err(Server)),
            (v(2, 0), v(1, 9), Err(LabHost)),
            (v(2, 0), v(1, 0), Err(LabHost)),
            (v(1, 9), v(2, 0), Err(Server)),
            (v(3, 0), v(1, 0), Err(LabHost)),
            (v(0, 0), v(0, 0), Ok(Compat::Same)),
        ];
        for &(server, labhost, expected) in table {
            let got = check(server, labhost).map_err(|e| e.upgrade);
            assert_eq!(got, expected, "server {server}, lab host {labhost}");
        }
    }

    #[test]
    fn a_refusal_names_both_versions_and_the_side_to_upgrade() {
        let err = check(v(2, 1), v(1, 7)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("lab host speaks protocol 1.7"), "{text}");
        assert!(text.contains("server speaks 2.1"), "{text}");
        assert!(text.contains("upgrade the lab host to protocol 2.1"), "{text}");

        let text = check(v(1, 0), v(1, 1)).unwrap_err().to_string();
        assert!(text.contains("newer than the server"), "{text}");
        assert!(text.contains("upgrade the server to protocol 1.1"), "{text}");
    }

    #[test]
    fn this_build_accepts_itself() {
        assert_eq!(check(PROTOCOL_VERSION, PROTOCOL_VERSION), Ok(Compat::Same));
    }
}
