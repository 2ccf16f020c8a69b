//! What a plan file says: test cases laid out like the 3GPP SCAS test case
//! template, and the steps that carry them out over the agents.
//!
//! A step is a map with exactly one action key (`ssh_exec:`, `power:`, `assert:`...)
//! and a few common keys (`name`, `timeout_ms`, `retries`, `capture`). In Rust the
//! action is one [`Action`] (its kind an [`ActionKind`]), so code that depends on
//! the action matches it and cannot forget one; reading the map refuses unknown keys
//! as serde refuses a struct's, so a misspelt step kind is an error with the nearest
//! valid name as a hint.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

pub use proofrig_verdict::ActionKind;

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
    /// The SCAS test case this is. Only a case that is not one (a rig's health check,
    /// a lab's own acceptance test) omits it; the bundled library never does.
    #[serde(default)]
    pub scas: Option<ScasRef>,
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

impl ScasRef {
    /// What a case that is no SCAS test case (a health check) shows where its SCAS
    /// reference would be: no document or clause, its id as the test name.
    pub fn none_for(case_id: &str) -> ScasRef {
        ScasRef {
            spec: String::new(),
            version: None,
            clause: String::new(),
            test_name: case_id.to_string(),
            requirement: "not a SCAS test case".into(),
            requirement_clause: None,
            threats: Vec::new(),
        }
    }
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
///
/// In YAML the action is a key beside the common ones (`ssh_exec: {...}`), read by
/// the `Deserialize` impl below: a key that is neither a common key nor an action is
/// refused with the nearest valid name as a hint, as for any struct.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: Option<String>,
    /// Per-step time limit (each action has a sensible default).
    pub timeout_ms: Option<u64>,
    /// Retries for infrastructure faults only (a retried assertion would hide a real failure).
    pub retries: u32,
    pub on_failure: OnFailure,
    /// Store the step's output under this name for later steps (`${NAME.field}`).
    pub capture: Option<String>,
    /// Run against this device instead of the case's device.
    pub device: Option<String>,
    /// Run only on devices that have this channel (`console`, `ssh`, `power`);
    /// elsewhere the step is SKIP with the reason recorded.
    pub if_device_has: Option<DeviceChannel>,
    /// What the step does.
    pub action: Action,
    /// Where the script's text starts in the plan file, for located script errors
    /// (a `script` step's; not part of the YAML).
    pub script_origin: Option<ScriptOrigin>,
}

/// What a step does: one variant per [`ActionKind`], with the action's body as the
/// plan writes it under its key. Serialized as that body alone.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Action {
    Power(PowerStep),
    Wait(WaitStep),
    ConsoleSend(ConsoleSend),
    ConsoleExpect(ConsoleExpect),
    ConsoleLogin(ConsoleLoginStep),
    ConsoleRun(ConsoleRun),
    SshExec(SshExec),
    SshFetch(SshFetch),
    SshLogin(SshLogin),
    SshSu(SshSu),
    SshAudit(SshAudit),
    SshNegotiate(SshNegotiate),
    SshIdle(SshIdle),
    TcpScan(TcpScan),
    UdpScan(UdpScan),
    SnmpProbe(SnmpProbe),
    HttpRequest(HttpRequest),
    SyslogReceive(SyslogReceive),
    TlsAudit(TlsAudit),
    /// Values for later steps, by name.
    Set(BTreeMap<String, serde_json::Value>),
    /// Boxed: its many optional operators make it the largest action by far.
    Assert(Box<Assert>),
    /// Rhai source for logic a declarative step cannot say (see `run::script`).
    Script(String),
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Power(_) => ActionKind::Power,
            Action::Wait(_) => ActionKind::Wait,
            Action::ConsoleSend(_) => ActionKind::ConsoleSend,
            Action::ConsoleExpect(_) => ActionKind::ConsoleExpect,
            Action::ConsoleLogin(_) => ActionKind::ConsoleLogin,
            Action::ConsoleRun(_) => ActionKind::ConsoleRun,
            Action::SshExec(_) => ActionKind::SshExec,
            Action::SshFetch(_) => ActionKind::SshFetch,
            Action::SshLogin(_) => ActionKind::SshLogin,
            Action::SshSu(_) => ActionKind::SshSu,
            Action::SshAudit(_) => ActionKind::SshAudit,
            Action::SshNegotiate(_) => ActionKind::SshNegotiate,
            Action::SshIdle(_) => ActionKind::SshIdle,
            Action::TcpScan(_) => ActionKind::TcpScan,
            Action::UdpScan(_) => ActionKind::UdpScan,
            Action::SnmpProbe(_) => ActionKind::SnmpProbe,
            Action::HttpRequest(_) => ActionKind::HttpRequest,
            Action::SyslogReceive(_) => ActionKind::SyslogReceive,
            Action::TlsAudit(_) => ActionKind::TlsAudit,
            Action::Set(_) => ActionKind::Set,
            Action::Assert(_) => ActionKind::Assert,
            Action::Script(_) => ActionKind::Script,
        }
    }

    /// The body of an action of `kind`: the value under its key in a step's map.
    fn read<'de, A: MapAccess<'de>>(kind: ActionKind, map: &mut A) -> Result<Action, A::Error> {
        Ok(match kind {
            ActionKind::Power => Action::Power(map.next_value()?),
            ActionKind::Wait => Action::Wait(map.next_value()?),
            ActionKind::ConsoleSend => Action::ConsoleSend(map.next_value()?),
            ActionKind::ConsoleExpect => Action::ConsoleExpect(map.next_value()?),
            ActionKind::ConsoleLogin => Action::ConsoleLogin(map.next_value()?),
            ActionKind::ConsoleRun => Action::ConsoleRun(map.next_value()?),
            ActionKind::SshExec => Action::SshExec(map.next_value()?),
            ActionKind::SshFetch => Action::SshFetch(map.next_value()?),
            ActionKind::SshLogin => Action::SshLogin(map.next_value()?),
            ActionKind::SshSu => Action::SshSu(map.next_value()?),
            ActionKind::SshAudit => Action::SshAudit(map.next_value()?),
            ActionKind::SshNegotiate => Action::SshNegotiate(map.next_value()?),
            ActionKind::SshIdle => Action::SshIdle(map.next_value()?),
            ActionKind::TcpScan => Action::TcpScan(map.next_value()?),
            ActionKind::UdpScan => Action::UdpScan(map.next_value()?),
            ActionKind::SnmpProbe => Action::SnmpProbe(map.next_value()?),
            ActionKind::HttpRequest => Action::HttpRequest(map.next_value()?),
            ActionKind::SyslogReceive => Action::SyslogReceive(map.next_value()?),
            ActionKind::TlsAudit => Action::TlsAudit(map.next_value()?),
            ActionKind::Set => Action::Set(map.next_value()?),
            ActionKind::Assert => Action::Assert(map.next_value()?),
            ActionKind::Script => Action::Script(map.next_value()?),
        })
    }

    /// The password or line of input the action types, if it has one: what the run
    /// keeps out of its evidence, and what a case needs from the rig.
    pub fn credential(&self) -> Option<&Credential> {
        match self {
            Action::SshLogin(login) => login.password.as_ref(),
            Action::SshSu(su) => Some(&su.password),
            Action::ConsoleLogin(login) => login.password.as_ref(),
            Action::SshExec(exec) => exec.stdin.as_ref(),
            Action::Power(_)
            | Action::Wait(_)
            | Action::ConsoleSend(_)
            | Action::ConsoleExpect(_)
            | Action::ConsoleRun(_)
            | Action::SshFetch(_)
            | Action::SshAudit(_)
            | Action::SshNegotiate(_)
            | Action::SshIdle(_)
            | Action::TcpScan(_)
            | Action::UdpScan(_)
            | Action::SnmpProbe(_)
            | Action::HttpRequest(_)
            | Action::SyslogReceive(_)
            | Action::TlsAudit(_)
            | Action::Set(_)
            | Action::Assert(_)
            | Action::Script(_) => None,
        }
    }
}

/// The keys a step has besides its action, in the order error messages list them.
const COMMON_KEYS: [&str; 7] = ["name", "timeout_ms", "retries", "on_failure", "capture", "device", "if_device_has"];

/// Every key a step may have: the common ones, then the actions'.
fn step_keys() -> &'static [&'static str] {
    static KEYS: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| COMMON_KEYS.iter().copied().chain(ActionKind::ALL.iter().map(|kind| kind.as_str())).collect());
    &KEYS
}

/// Whether `key` may stand in a step's map.
pub(crate) fn is_step_key(key: &str) -> bool {
    COMMON_KEYS.contains(&key) || ActionKind::from_name(key).is_some()
}

/// A key of a step's map, read as `#[derive(Deserialize)]` reads a field's name:
/// an unknown one is an `unknown field` error, at the key.
enum StepKey {
    Name,
    TimeoutMs,
    Retries,
    OnFailure,
    Capture,
    Device,
    IfDeviceHas,
    Action(ActionKind),
}

impl<'de> Deserialize<'de> for StepKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = StepKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("field identifier")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<StepKey, E> {
                Ok(match key {
                    "name" => StepKey::Name,
                    "timeout_ms" => StepKey::TimeoutMs,
                    "retries" => StepKey::Retries,
                    "on_failure" => StepKey::OnFailure,
                    "capture" => StepKey::Capture,
                    "device" => StepKey::Device,
                    "if_device_has" => StepKey::IfDeviceHas,
                    other => StepKey::Action(ActionKind::from_name(other).ok_or_else(|| E::unknown_field(other, step_keys()))?),
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// The value of the common key `key`, refused if the map had it already.
fn common<'de, T: Deserialize<'de>, A: MapAccess<'de>>(slot: &mut Option<T>, key: &'static str, map: &mut A) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// Why a step with `actions` (sorted) is not one step: none, or more than one.
pub(crate) fn action_count_error(actions: &[ActionKind]) -> Option<(String, String)> {
    match actions {
        [_] => None,
        [] => {
            let every: Vec<&str> = ActionKind::ALL.iter().map(|kind| kind.as_str()).collect();
            Some(("this step has no action".into(), format!("give it exactly one of: {}", every.join(", "))))
        }
        several => {
            let names: Vec<&str> = several.iter().map(|kind| kind.as_str()).collect();
            Some((format!("a step has exactly one action; this one has {}", names.join(" and ")), "split it into two steps".into()))
        }
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("struct Step")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                let (mut name, mut timeout_ms, mut retries, mut on_failure) = (None, None, None, None);
                let (mut capture, mut device, mut if_device_has) = (None, None, None);
                let mut actions: Vec<Action> = Vec::new();
                while let Some(key) = map.next_key::<StepKey>()? {
                    match key {
                        StepKey::Name => common(&mut name, "name", &mut map)?,
                        StepKey::TimeoutMs => common(&mut timeout_ms, "timeout_ms", &mut map)?,
                        StepKey::Retries => common(&mut retries, "retries", &mut map)?,
                        StepKey::OnFailure => common(&mut on_failure, "on_failure", &mut map)?,
                        StepKey::Capture => common(&mut capture, "capture", &mut map)?,
                        StepKey::Device => common(&mut device, "device", &mut map)?,
                        StepKey::IfDeviceHas => common(&mut if_device_has, "if_device_has", &mut map)?,
                        StepKey::Action(kind) => {
                            if actions.iter().any(|action| action.kind() == kind) {
                                return Err(de::Error::duplicate_field(kind.as_str()));
                            }
                            actions.push(Action::read(kind, &mut map)?);
                        }
                    }
                }
                // A plan's steps with no action or two are placed in the file by
                // `Plan::parse`; this says what is wrong where nothing can place it.
                actions.sort_by_key(Action::kind);
                let kinds: Vec<ActionKind> = actions.iter().map(Action::kind).collect();
                if let Some((message, _)) = action_count_error(&kinds) {
                    return Err(de::Error::custom(message));
                }
                Ok(Step {
                    name: name.flatten(),
                    timeout_ms: timeout_ms.flatten(),
                    retries: retries.unwrap_or_default(),
                    on_failure: on_failure.unwrap_or_default(),
                    capture: capture.flatten(),
                    device: device.flatten(),
                    if_device_has: if_device_has.flatten(),
                    action: actions.pop().expect("exactly one action"),
                    script_origin: None,
                })
            }
        }
        deserializer.deserialize_struct("Step", step_keys(), StepVisitor)
    }
}

impl Serialize for Step {
    /// As the plan writes it: the common keys, then the action's key and body.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut step = serializer.serialize_struct("Step", COMMON_KEYS.len() + 1)?;
        step.serialize_field("name", &self.name)?;
        step.serialize_field("timeout_ms", &self.timeout_ms)?;
        step.serialize_field("retries", &self.retries)?;
        step.serialize_field("on_failure", &self.on_failure)?;
        step.serialize_field("capture", &self.capture)?;
        step.serialize_field("device", &self.device)?;
        step.serialize_field("if_device_has", &self.if_device_has)?;
        step.serialize_field(self.action.kind().as_str(), &self.action)?;
        step.end()
    }
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

impl Step {
    /// The kind of the step's action.
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }

    /// A `script` step's source.
    pub fn script(&self) -> Option<&str> {
        match &self.action {
            Action::Script(source) => Some(source),
            _ => None,
        }
    }

    /// A short label for progress output and reports.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind().as_str().to_string())
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
    /// What a console that still shows a shell prompt after the login has logged out
    /// as many shells as it does (`exit`, `MAX_LOGOUTS` times) means: `error` (default:
    /// the bench's console was left logged in, nothing is decided) or `fail` (the case
    /// is whether the console can be logged out at all, TS 33.117 4.2.3.5.1: the step
    /// records `{accepted: false, still_logged_in: true, prompt, exits, logged_out}`
    /// and FAILs).
    #[serde(default)]
    pub still_logged_in: Option<StillLoggedIn>,
}

/// See [`ConsoleLoginStep::still_logged_in`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StillLoggedIn {
    #[default]
    Error,
    Fail,
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

/// An interactive SSH shell (with a PTY) as the rig's SSH user, left idle: nothing is
/// typed once its first output (the prompt) has come. Output `{idle_ms, prompt_seen,
/// ended}`: `ended` when the device closed the session within `idle_ms` (TS 33.117
/// 4.2.3.5.2); otherwise the step closes it. No prompt within `prompt_ms` (default
/// 5000) leaves `prompt_seen` false, and nothing is decided.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshIdle {
    /// How long the session stays idle: a number of milliseconds or a template.
    pub idle_ms: serde_json::Value,
    #[serde(default)]
    pub prompt_ms: Option<u64>,
}

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

/// One HTTP/1.1 request over plain TCP to the device's web server (HTTPS is not
/// this action's); the output is the response as its recorded bytes say: `{address,
/// port, method, path, version, status, reason, headers, head, body_len, body_excerpt,
/// complete}`, `headers` by lower-case name, `head` every header line. No answer is
/// INFRA, an answer that is no HTTP ERROR; the status itself is for an `assert`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// Address to send to; default: the device's SSH host.
    #[serde(default)]
    pub address: Option<String>,
    /// TCP port: a number or a template such as `${device.declared.web_port}` (default 80).
    #[serde(default)]
    pub port: Option<serde_json::Value>,
    /// `GET` by default; TRACE, PUT, DELETE... as a case asks.
    #[serde(default)]
    pub method: Option<String>,
    /// The request target as sent, e.g. `/` or `/%2e%2e/%2e%2e/etc/passwd`.
    pub path: String,
    /// Extra request headers, by name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The lab host as the device's central log storage for one step (TS 33.117
/// 4.2.3.6.2): it listens at `listen` (the rig's `declared.log_server`, `udp:` or
/// `tcp:ADDRESS:PORT`), makes an SSH login as `refused_login` with a wrong password,
/// and waits up to `wait_ms` for the device's record of that attempt. The output:
/// `{listen, transport, login: {user, accepted, source_address, source_port},
/// received, records, matching}`, `matching` the records that name the attempt's user,
/// address and port. Nothing to bind is ERROR; the login accepted is ERROR (a wrong
/// password let in proves nothing about logging).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogReceive {
    /// Where the lab host listens: the address the device is configured to send to.
    pub listen: String,
    /// The account of the login the device must refuse and log.
    pub refused_login: String,
    /// Over `tls:`, the name of the device's secret holding the log server's TLS
    /// identity the device trusts: one PEM text, private key and certificate chain.
    #[serde(default)]
    pub tls_identity: Option<String>,
    /// How long to wait for the record (default 5000 ms).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// An audit of the device's TLS server with hand-made ClientHellos (TLS 1.0 to 1.3):
/// the output is what the recorded answers say: `{address, port, server_name,
/// checked_at, versions: {TLSv1.x: {accepted, suites, refusal}}, accepted_versions,
/// refused_versions, accepted_suites, certificate, certificate_note, connections,
/// probes}`. `certificate` (key, signature algorithm, dates, names) is null when no
/// TLS 1.2-or-older answer carried one (a TLS 1.3-only server encrypts it); the note
/// says why. No answer is INFRA, an answer that is no TLS ERROR.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsAudit {
    /// Address to connect to; default: the device's SSH host.
    #[serde(default)]
    pub address: Option<String>,
    /// TCP port: a number or a template such as `${device.declared.tls_port}`.
    pub port: serde_json::Value,
    /// The name the certificate must carry (sent as SNI when a DNS name).
    #[serde(default)]
    pub server_name: Option<String>,
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
