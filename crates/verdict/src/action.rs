//! The kinds of action a step can take, as one type.
//!
//! A step's action used to be a name matched as a string wherever something depended
//! on it, and a catch-all arm in one of those matches once hid an action that replay
//! did not check. [`ActionKind`] is the one list of actions: each place that decides
//! something per action matches it with no catch-all, so a new action does not
//! compile until every one of them says what it does. The names are the plan's YAML
//! keys and what journals record; they never change.

use std::fmt;
use std::str::FromStr;

/// Defines [`ActionKind`], its [`ActionKind::ALL`] and its names from one table, so
/// the three cannot drift apart.
macro_rules! action_kinds {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)*) => {
        /// What a step does: one variant per action key a plan step may carry.
        ///
        /// Adding a variant fails to compile until each match that decides per
        /// action has its arm (none has a catch-all):
        /// - its verdict: [`judge`](crate::judge::judge);
        /// - its time limit and how it is performed, in `proofrig_run`:
        ///   `actions::default_timeout`, `Agents::dispatch` (`actions.rs`) and
        ///   `step::end_of_range` (whether it reads the console);
        /// - its replay, in `proofrig_evidence`: `rederive::check` (its recorded
        ///   output re-derived from the raw events);
        /// - what a case needs for it, in `proofrig_plan::catalogue`: `channel_of_kind`
        ///   and `uses_rig_ssh_password`;
        /// - the plan language, in `proofrig_plan`: `Action` (its data) with
        ///   `Action::kind`, `Action::read` (its body, from its YAML key) and
        ///   `Action::credential`, plan validation (`validate_action`), and whether a
        ///   script may call it (`script::agent_call`).
        ///
        /// Beside it, tests require every kind to round-trip through its name and to be
        /// used by a bundled plan or listed as not yet used; `tests/forgeries.rs`
        /// requires a forgery of every kind's recorded answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ActionKind {
            $($(#[$doc])* $kind,)*
        }

        impl ActionKind {
            /// Every kind, in the order people usually meet them (the order error
            /// messages list them in).
            pub const ALL: &'static [ActionKind] = &[$(ActionKind::$kind,)*];

            /// The step's YAML key, and the name journals record.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ActionKind::$kind => $name,)*
                }
            }
        }
    };
}

action_kinds! {
    /// Switch the device's outlet on, off, or off and on again.
    Power = "power",
    /// Wait a given time.
    Wait = "wait",
    /// Type text on the console.
    ConsoleSend = "console_send",
    /// Wait for one of some patterns on the console.
    ConsoleExpect = "console_expect",
    /// Log in on the console.
    ConsoleLogin = "console_login",
    /// Run a command at the console's shell prompt.
    ConsoleRun = "console_run",
    /// Run a command over SSH.
    SshExec = "ssh_exec",
    /// Fetch a file over SFTP.
    SshFetch = "ssh_fetch",
    /// Try an SSH login.
    SshLogin = "ssh_login",
    /// `su` to another user in an SSH shell, with a password.
    SshSu = "ssh_su",
    /// Read the SSH server's algorithm offer.
    SshAudit = "ssh_audit",
    /// Connect offering only some algorithms.
    SshNegotiate = "ssh_negotiate",
    /// Open an interactive SSH shell and leave it idle.
    SshIdle = "ssh_idle",
    /// A TCP connect scan.
    TcpScan = "tcp_scan",
    /// A UDP port scan.
    UdpScan = "udp_scan",
    /// SNMP community requests.
    SnmpProbe = "snmp_probe",
    /// One HTTP request to the device's web server.
    HttpRequest = "http_request",
    /// Receive the device's log records for a login it refused.
    SyslogReceive = "syslog_receive",
    /// Hand-made ClientHellos to the device's TLS server: versions, suites, certificate.
    TlsAudit = "tls_audit",
    /// Set values for later steps.
    Set = "set",
    /// Compare captured values.
    Assert = "assert",
    /// A Rhai script, whose calls are other actions.
    Script = "script",
}

impl ActionKind {
    /// The kind named `name` (a YAML key, a recorded name), if there is one.
    pub fn from_name(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }
}

/// A name that is no action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an action")]
pub struct UnknownAction(pub String);

impl FromStr for ActionKind {
    type Err = UnknownAction;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ActionKind::from_name(name).ok_or_else(|| UnknownAction(name.to_string()))
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds no bundled plan (`testplans/`) uses yet, neither as a step nor as a
    /// script's call. Every other kind must be used by one, so the library shows
    /// how each is written.
    const NOT_IN_THE_LIBRARY: &[ActionKind] = &[
        // The simulated devices have no SFTP server; a test fetches from OpenSSH's.
        ActionKind::SshFetch,
    ];

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::from_name(kind.as_str()), Some(*kind));
            assert_eq!(kind.as_str().parse::<ActionKind>(), Ok(*kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let mut names: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ActionKind::ALL.len(), "two kinds share a name");
        assert_eq!("ssh_adit".parse::<ActionKind>(), Err(UnknownAction("ssh_adit".into())));
        assert_eq!(ActionKind::from_name("SSH_EXEC"), None);
    }

    /// The action keys of a plan's steps, and the actions its scripts call
    /// (`agent("KIND", ...)` or a call of `KIND(...)`).
    fn kinds_used(plan: &serde_json::Value) -> Vec<String> {
        let call = regex::Regex::new(r#"\bagent\s*\(\s*"([a-z_]+)"|\b([a-z_]+)\s*\("#).expect("a valid pattern");
        let mut used = Vec::new();
        let cases = plan["cases"].as_array().into_iter().flatten();
        let steps = cases.flat_map(|case| ["steps", "restore"].map(|list| case[list].as_array().cloned().unwrap_or_default())).flatten();
        for step in steps {
            for (key, value) in step.as_object().into_iter().flatten() {
                used.push(key.clone());
                if key == ActionKind::Script.as_str() {
                    let source = value.as_str().unwrap_or_default();
                    used.extend(call.captures_iter(source).filter_map(|c| c.get(1).or_else(|| c.get(2))).map(|m| m.as_str().to_string()));
                }
            }
        }
        used
    }

    #[test]
    fn every_kind_is_in_a_bundled_plan_or_listed_as_not_yet() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans");
        let mut used = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("a readable plan");
                let plan: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                used.extend(kinds_used(&plan));
            }
        }
        assert!(used.contains("ssh_audit") && used.contains("ssh_login"), "the plans' steps and scripts are read: {used:?}");
        for kind in ActionKind::ALL {
            let in_library = used.contains(kind.as_str());
            let listed = NOT_IN_THE_LIBRARY.contains(kind);
            assert!(in_library || listed, "no plan of testplans/ uses `{kind}`: use it in one, or list it in NOT_IN_THE_LIBRARY with why");
            assert!(!(in_library && listed), "a plan of testplans/ uses `{kind}` now: take it off NOT_IN_THE_LIBRARY");
        }
    }
}
