//! What a plan file says: test cases laid out like the 3GPP SCAS test case
//! template, and the steps that carry them out over the agents.
//!
//! A step is a map with exactly one action key (`ssh_exec:`, `power:`, `assert:`...)
//! and a few common keys (`name`, `timeout_ms`, `retries`, `capture`). Keeping every
//! action as an optional field of one struct lets serde refuse unknown keys, so a
//! misspelt step kind is an error with the nearest valid name as a hint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use proofrig_model::secret::SecretRef;

/// A whole plan file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Plan identifier, e.g. `ssh-hardening`.
    pub plan: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Plan parameters with their defaults (`${param.NAME}`); `--param NAME=VALUE` overrides.
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub cases: Vec<Case>,
}

/// One test case, mapping 1:1 onto a SCAS test case.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique within the plan; by convention the SCAS test name.
    pub id: String,
    pub title: String,
    pub scas: ScasRef,
    /// Why the test exists, in the plan author's words.
    pub purpose: String,
    #[serde(default)]
    pub preconditions: Vec<String>,
    /// The execution steps as a person would read them.
    #[serde(default)]
    pub execution: Vec<String>,
    /// What a compliant device shows.
    pub expected: String,
    /// The expected format of evidence.
    pub evidence: String,
    /// Which devices of the rig the case runs on (all devices when empty).
    #[serde(default)]
    pub devices: DeviceSelector,
    /// The commands the case runs on the device (`ss or netstat`, `stat -c`), as a
    /// technician checks them against the device's userland; `catalogue` lists them.
    /// A command the device lacks makes its step ERROR, never a finding.
    #[serde(default)]
    pub device_commands: Vec<String>,
    /// A reason to skip the case; a skipped case still appears in the results.
    #[serde(default)]
    pub skip: Option<String>,
    pub steps: Vec<Step>,
    /// Steps that always run after `steps`, whatever happened (restore the device).
    #[serde(default)]
    pub restore: Vec<Step>,
}

/// Where a case comes from in the specifications.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScasRef {
    /// e.g. `TS 33.117`.
    pub spec: String,
    /// e.g. `18.1.0`.
    #[serde(default)]
    pub version: Option<String>,
    /// e.g. `4.3.2.6`.
    pub clause: String,
    /// e.g. `TC_REMOTE_LOGIN_RESTRICTIONS_PRIVILEGED_USERS`.
    pub test_name: String,
    /// The requirement tested, in the plan author's words.
    pub requirement: String,
    /// Clause of the requirement, when it differs from the test's.
    #[serde(default)]
    pub requirement_clause: Option<String>,
    /// Threat references, e.g. TR 33.926 clauses.
    #[serde(default)]
    pub threats: Vec<String>,
}

/// Selects devices of the rig by name, role or tag; all given criteria must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceSelector {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl DeviceSelector {
    /// Whether the device `name` with `role` and `tags` is selected: its name is one
    /// of `names` and its role one of `roles` (when given), and it has every tag.
    pub fn matches(&self, name: &str, role: &str, tags: &[String]) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n == name))
            && (self.roles.is_empty() || self.roles.iter().any(|r| r == role))
            && self.tags.iter().all(|t| tags.contains(t))
    }

    /// True when the case runs on every device of a rig.
    pub fn is_all(&self) -> bool {
        self.names.is_empty() && self.roles.is_empty() && self.tags.is_empty()
    }
}

/// Compare SCAS clause numbers part by part as numbers, so 4.2.10 follows 4.2.9
/// and 4.2.3 comes before 4.2.3.1.
pub fn clause_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// What to do when a step does not pass.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// FAIL continues (to collect every finding); anything worse stops the case.
    #[default]
    Default,
    /// Stop the case at any non-PASS verdict; later steps are NOT_RUN.
    Stop,
    /// Carry on whatever happens.
    Continue,
}

/// One step: common keys plus exactly one action.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub name: Option<String>,
    /// Per-step time limit (each action has a sensible default).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retries for infrastructure faults only (a retried assertion would hide a real failure).
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Store the step's output under this name for later steps (`${NAME.field}`).
    #[serde(default)]
    pub capture: Option<String>,
    /// Run against this device instead of the case's device.
    #[serde(default)]
    pub device: Option<String>,
    /// Run only on devices that have this channel (`console`, `ssh`, `power`);
    /// elsewhere the step is SKIP with the reason recorded.
    #[serde(default)]
    pub if_device_has: Option<DeviceChannel>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_send: Option<ConsoleSend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_expect: Option<ConsoleExpect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_login: Option<ConsoleLoginStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_run: Option<ConsoleRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_exec: Option<SshExec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_fetch: Option<SshFetch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_login: Option<SshLogin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_su: Option<SshSu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_audit: Option<SshAudit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_negotiate: Option<SshNegotiate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_scan: Option<TcpScan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_scan: Option<UdpScan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp_probe: Option<SnmpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assert: Option<Assert>,
    /// Rhai source for logic a declarative step cannot say (see `run::script`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,

    /// Where the script's text starts in the plan file, for located script errors.
    #[serde(skip)]
    pub script_origin: Option<ScriptOrigin>,
}

/// Where a `script` step's source stands in its plan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOrigin {
    pub file: String,
    pub text: proofrig_model::yaml::TextOrigin,
}

impl ScriptOrigin {
    /// `file:line:column` of a position inside the script.
    pub fn describe(&self, line: usize, column: usize) -> String {
        let (l, c) = self.text.locate(line, column);
        format!("{}:{l}:{c}", self.file)
    }
}

/// The action keys a step may carry, in the order people usually meet them.
pub const ACTIONS: &[&str] = &[
    "power",
    "wait",
    "console_send",
    "console_expect",
    "console_login",
    "console_run",
    "ssh_exec",
    "ssh_fetch",
    "ssh_login",
    "ssh_su",
    "ssh_audit",
    "ssh_negotiate",
    "tcp_scan",
    "udp_scan",
    "snmp_probe",
    "set",
    "assert",
    "script",
];

impl Step {
    /// The action keys present on this step (exactly one when valid).
    pub fn actions(&self) -> Vec<&'static str> {
        ACTIONS.iter().zip(self.present()).filter(|(_, p)| *p).map(|(a, _)| *a).collect()
    }

    /// The single action key, once validated. Asked several times per step run, so it
    /// finds the key without collecting them all.
    pub fn action(&self) -> &'static str {
        ACTIONS.iter().zip(self.present()).find(|(_, p)| *p).map_or("?", |(a, _)| *a)
    }

    /// Which of [`ACTIONS`] this step carries, in that order.
    fn present(&self) -> [bool; 18] {
        [
            self.power.is_some(),
            self.wait.is_some(),
            self.console_send.is_some(),
            self.console_expect.is_some(),
            self.console_login.is_some(),
            self.console_run.is_some(),
            self.ssh_exec.is_some(),
            self.ssh_fetch.is_some(),
            self.ssh_login.is_some(),
            self.ssh_su.is_some(),
            self.ssh_audit.is_some(),
            self.ssh_negotiate.is_some(),
            self.tcp_scan.is_some(),
            self.udp_scan.is_some(),
            self.snmp_probe.is_some(),
            self.set.is_some(),
            self.assert.is_some(),
            self.script.is_some(),
        ]
    }

    /// A short label for progress output and reports.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.action().to_string())
    }
}

/// A kind of channel a device may have.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChannel {
    Console,
    Ssh,
    Power,
}

impl DeviceChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChannel::Console => "console",
            DeviceChannel::Ssh => "ssh",
            DeviceChannel::Power => "power",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    On,
    Off,
    Cycle,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PowerStep {
    pub action: PowerAction,
    /// For `cycle`: how long to stay off (default: the rig's cycle_off_ms).
    #[serde(default)]
    pub off_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    pub ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSend {
    pub text: String,
    /// Append a newline (default true).
    #[serde(default = "yes")]
    pub newline: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleExpect {
    /// Regular expressions; the first to appear wins. Output: `{index, before, matched}`.
    pub patterns: Vec<String>,
    /// What a timeout means: an error of the test (default) or evidence (`fail`, `pass`).
    #[serde(default)]
    pub on_timeout: TimeoutMeaning,
}

/// How to read a timeout of an expect step.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TimeoutMeaning {
    #[default]
    Error,
    /// The pattern not appearing is itself the evidence the device is compliant.
    Pass,
    /// The pattern not appearing shows non-compliance.
    Fail,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleLoginStep {
    /// Defaults to the rig's console login user.
    #[serde(default)]
    pub user: Option<String>,
    /// Defaults to the rig's console login password.
    #[serde(default)]
    pub password: Option<Credential>,
    /// `accepted` (default) or `refused`: what a compliant device does; `any` only
    /// records the outcome.
    #[serde(default)]
    pub expect: Option<LoginExpectation>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleRun {
    pub command: String,
    /// Exit status a compliant device gives; other statuses FAIL. Omitted: any status passes.
    #[serde(default)]
    pub expect_status: Option<i32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshExec {
    pub command: String,
    #[serde(default)]
    pub expect_status: Option<i32>,
    /// One line for the command's standard input (e.g. a new password for
    /// `passwd --stdin`), so a secret never appears on a command line.
    #[serde(default)]
    pub stdin: Option<Credential>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshFetch {
    pub path: String,
}

/// A password for a login attempt: a secret reference, or a documented value the
/// plan compares against (vendor default credentials are public by definition).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Credential {
    /// A secret of the rig device (`secrets:` in the rig) by name.
    Secret(String),
    /// A secret reference given directly.
    Env(String),
    File(std::path::PathBuf),
    /// A value documented in public (e.g. a default account), possibly `${...}`.
    Value(String),
}

impl Credential {
    pub fn as_secret_ref(&self) -> Option<SecretRef> {
        match self {
            Credential::Env(name) => Some(SecretRef::Env(name.clone())),
            Credential::File(path) => Some(SecretRef::File(path.clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoginExpectation {
    Accepted,
    Refused,
    /// Either outcome: the step records it for a later step or script to judge.
    Any,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshLogin {
    pub user: String,
    #[serde(default)]
    pub password: Option<Credential>,
    /// `rig`: authenticate with the rig's SSH key (`ssh.key_file`) instead of a
    /// password, to show whether that key opens the account.
    #[serde(default)]
    pub key: Option<KeySource>,
    /// What a compliant device does with this login; the other outcome FAILs.
    /// Omitted: the outcome is only recorded (a script decides what it means).
    #[serde(default)]
    pub expect: Option<LoginExpectation>,
}

/// The device's own password check: over an SSH shell as the rig's user, `su` to
/// `user` with `password` typed at its prompt, running `id -u` there. Shows whether a
/// password is real on a device without a console; output `{accepted, user, status,
/// uid, asked_password, response}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshSu {
    pub user: String,
    pub password: Credential,
}

/// Where an SSH login's key comes from.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// The device's `ssh.key_file` in the rig.
    Rig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshAudit {}

/// Connect offering only the given algorithms; output `{accepted, detail}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshNegotiate {
    #[serde(default)]
    pub kex: Vec<String>,
    #[serde(default)]
    pub host_key: Vec<String>,
    #[serde(default)]
    pub ciphers: Vec<String>,
    #[serde(default)]
    pub macs: Vec<String>,
    /// What a compliant device does; omitted: the outcome is only captured.
    #[serde(default)]
    pub expect: Option<LoginExpectation>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpScan {
    /// Address to scan; default: the device's SSH host.
    #[serde(default)]
    pub address: Option<String>,
    /// Ports, e.g. `"1-1024"` or `"22,80,443,8000-8100"`.
    pub ports: String,
    /// Connections in flight at once (default 256).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Per-connection limit (default 500 ms).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
}

/// A UDP port scan: which ports do not answer with ICMP port unreachable.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UdpScan {
    /// Address to scan; default: the device's SSH host.
    #[serde(default)]
    pub address: Option<String>,
    /// Ports, e.g. `"1-1024"` or `"53,123,161"`.
    pub ports: String,
    /// How long each probe waits for an answer (default 1000 ms).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Probes per second at most (default 800, below Linux's ICMP error rate).
    #[serde(default)]
    pub rate: Option<u32>,
}

/// SNMPv1/v2c GetRequests to a device's SNMP agent, one per version and community;
/// the output says which were answered.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpProbe {
    /// Address to probe; default: the device's SSH host.
    #[serde(default)]
    pub address: Option<String>,
    /// UDP port (default 161).
    #[serde(default)]
    pub port: Option<u16>,
    /// Communities to try, comma-separated, e.g. `"public,private"`.
    pub communities: String,
    /// Versions to try (default both).
    #[serde(default)]
    pub versions: Option<Vec<proofrig_model::wire::snmp::SnmpVersion>>,
    /// How long to wait for answers once the requests are sent (default 2000 ms).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// A check over captured values. `value` is compared with exactly one operator.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Assert {
    pub value: serde_json::Value,
    /// Said when the check fails, before the specifics.
    #[serde(default)]
    pub message: Option<String>,
    /// Said when the check holds, before the specifics: what was verified, in words
    /// true of a pass (a green row must not read as the alarm `message` raises).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_matches: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_of: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disjoint_from: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_equals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less_than: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater_than: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<serde_json::Value>,
}

/// The comparison operators an `assert` step knows.
pub const ASSERT_OPERATORS: &[&str] = &[
    "equals",
    "not_equals",
    "matches",
    "not_matches",
    "one_of",
    "subset_of",
    "disjoint_from",
    "set_equals",
    "contains",
    "less_than",
    "at_most",
    "greater_than",
    "at_least",
];

impl Assert {
    /// What an `assert` step compares, from its resolved spec: the value, the step's
    /// operator and its operand. The step's output is exactly this, and replay checks
    /// that it is, so the verdict `judge` takes from the output is the spec's. `Null`
    /// for a step without a comparison.
    pub fn output(&self, spec: &serde_json::Value) -> serde_json::Value {
        match self.operators().into_iter().next() {
            Some((operator, _)) => serde_json::json!({"value": spec["value"], "operator": operator, "operand": spec[operator]}),
            None => serde_json::Value::Null,
        }
    }

    /// The operators present (exactly one when valid), with their operands.
    pub fn operators(&self) -> Vec<(&'static str, serde_json::Value)> {
        let string = |s: &Option<String>| s.clone().map(serde_json::Value::String);
        let candidates = [
            self.equals.clone(),
            self.not_equals.clone(),
            string(&self.matches),
            string(&self.not_matches),
            self.one_of.clone(),
            self.subset_of.clone(),
            self.disjoint_from.clone(),
            self.set_equals.clone(),
            self.contains.clone(),
            self.less_than.clone(),
            self.at_most.clone(),
            self.greater_than.clone(),
            self.at_least.clone(),
        ];
        ASSERT_OPERATORS.iter().zip(candidates).filter_map(|(name, v)| v.map(|v| (*name, v))).collect()
    }
}

fn yes() -> bool {
    true
}
