//! What each case of a library is, and what it needs from a rig before it can run.
//!
//! Read from the plan alone, without touching a device: the channels its steps use
//! (from the step kinds), the `${device.declared.KEY}` values it compares against,
//! the secrets it logs in with, and the plan parameters it reads. Against a rig,
//! [`readiness`] says per device whether the case applies there and, if it does,
//! what is missing (a channel, a declared key, a secret). `proofrig catalogue`
//! prints this; a technician reads it before scheduling a run.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use proofrig_model::rig::{Device, Rig};

use super::template::{self, Reference};
use super::{
    clause_order, Action, ActionKind, Case, Credential, DeviceChannel, DeviceSelector, HttpRequest, Plan, ScasRef, SnmpProbe, Step,
    TcpScan, TlsAudit, UdpScan,
};

/// One case of a plan, as the catalogue lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CaseInfo {
    /// The plan file, as given (or `testplans/NAME.yaml` for the bundled library).
    pub file: String,
    pub plan: String,
    pub id: String,
    pub spec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub clause: String,
    pub test_name: String,
    pub title: String,
    pub requirement: String,
    /// Which devices it runs on (every device of a rig when all three lists are empty).
    pub applies_to: DeviceSelector,
    /// Why the case is skipped, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
    pub needs: Needs,
    /// Per step, for [`readiness`].
    #[serde(skip)]
    steps: Vec<StepNeeds>,
}

/// What a case needs from the rig, summed over its steps (restore steps included).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Needs {
    /// Channels of the case's device its steps use.
    pub channels: Vec<ChannelNeed>,
    /// Keys under the device's `declared:` the case reads (`lockout.attempts` for
    /// `${device.declared.lockout.attempts}`).
    pub declared: Vec<String>,
    /// Device secrets it logs in with (`password: { secret: NAME }`).
    pub secrets: Vec<String>,
    /// Secrets the plan references directly (`env:VAR`, `file:PATH`).
    pub credentials: Vec<String>,
    /// Whether a step logs in with the SSH password of the rig (`ssh_negotiate`, an
    /// `ssh_login` without its own password): key-only SSH is not enough.
    pub ssh_password: bool,
    /// Plan parameters it reads, with their defaults (`--param NAME=VALUE` overrides).
    pub parameters: BTreeMap<String, Value>,
    /// Other devices of the rig steps run on (`device:` on a step).
    pub other_devices: Vec<String>,
    /// Commands the case runs on the device (the case's `device_commands`).
    pub commands: Vec<String>,
}

/// A channel the case uses; `optional` when only steps limited by `if_device_has`
/// use it (on a device without it those steps are SKIP).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ChannelNeed {
    pub channel: DeviceChannel,
    pub optional: bool,
}

/// What one step needs.
#[derive(Debug, Clone, Default)]
struct StepNeeds {
    /// `device:` of the step: it runs there, not on the case's device.
    target: Option<String>,
    /// `if_device_has:` of the step: SKIP on a device without this channel.
    only_if: Option<DeviceChannel>,
    channels: Vec<DeviceChannel>,
    /// Channels a script uses only after testing the device has them
    /// (`"console" in device.channels`): it runs without them.
    optional_channels: Vec<DeviceChannel>,
    declared: Vec<String>,
    secrets: Vec<String>,
    credentials: Vec<String>,
    ssh_password: bool,
    parameters: Vec<String>,
}

/// Every case of a plan, with what it needs.
pub fn cases_of(plan: &Plan, file: &str) -> Vec<CaseInfo> {
    plan.spec.cases.iter().map(|case| case_info(plan, case, file)).collect()
}

fn case_info(plan: &Plan, case: &Case, file: &str) -> CaseInfo {
    let steps: Vec<StepNeeds> = case.steps.iter().chain(&case.restore).map(|step| step_needs(step, &plan.spec.parameters)).collect();
    let mut needs = Needs::default();
    for channel in [DeviceChannel::Console, DeviceChannel::Ssh, DeviceChannel::Power] {
        let using: Vec<&StepNeeds> = steps.iter().filter(|s| s.target.is_none() && s.channels.contains(&channel)).collect();
        if !using.is_empty() {
            let optional = using.iter().all(|s| s.only_if.is_some() || s.optional_channels.contains(&channel));
            needs.channels.push(ChannelNeed { channel, optional });
        }
    }
    let collect = |pick: fn(&StepNeeds) -> &Vec<String>| -> Vec<String> {
        steps.iter().flat_map(|s| pick(s).iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
    };
    needs.declared = collect(|s| &s.declared);
    needs.secrets = collect(|s| &s.secrets);
    needs.credentials = collect(|s| &s.credentials);
    needs.ssh_password = steps.iter().any(|s| s.ssh_password);
    needs.parameters = collect(|s| &s.parameters)
        .into_iter()
        .map(|name| {
            let default = plan.spec.parameters.get(&name).cloned().unwrap_or(Value::Null);
            (name, default)
        })
        .collect();
    needs.other_devices = steps.iter().filter_map(|s| s.target.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    needs.commands = case.device_commands.clone();
    // A case that is no SCAS test case (a health check) is listed by its id.
    let no_scas = ScasRef::none_for(&case.id);
    let scas = case.scas.as_ref().unwrap_or(&no_scas);
    CaseInfo {
        file: file.to_string(),
        plan: plan.spec.plan.clone(),
        id: case.id.clone(),
        spec: scas.spec.clone(),
        version: scas.version.clone(),
        clause: scas.clause.clone(),
        test_name: scas.test_name.clone(),
        title: case.title.clone(),
        requirement: scas.requirement.trim().to_string(),
        applies_to: case.devices.clone(),
        skip: case.skip.clone(),
        needs,
        steps,
    }
}

/// The channel an action of `kind` talks over, if any. A network step (a scan, a
/// probe) goes to the device's SSH host unless it gives `address:` (see
/// [`channel_of`]); a script's calls are listed with it, erring towards too much.
fn channel_of_kind(kind: ActionKind) -> Option<DeviceChannel> {
    match kind {
        ActionKind::Power => Some(DeviceChannel::Power),
        ActionKind::ConsoleSend | ActionKind::ConsoleExpect | ActionKind::ConsoleLogin | ActionKind::ConsoleRun => {
            Some(DeviceChannel::Console)
        }
        ActionKind::SshExec
        | ActionKind::SshFetch
        | ActionKind::SshLogin
        | ActionKind::SshSu
        | ActionKind::SshAudit
        | ActionKind::SshNegotiate
        | ActionKind::SshIdle
        // It makes an SSH login the device must refuse.
        | ActionKind::SyslogReceive => Some(DeviceChannel::Ssh),
        ActionKind::TcpScan | ActionKind::UdpScan | ActionKind::SnmpProbe | ActionKind::HttpRequest | ActionKind::TlsAudit => {
            Some(DeviceChannel::Ssh)
        }
        // A script's channels are those of its calls (`script_needs`).
        ActionKind::Wait | ActionKind::Set | ActionKind::Assert | ActionKind::Script => None,
    }
}

/// The channel a step talks over, if any.
fn channel_of(action: &Action) -> Option<DeviceChannel> {
    match action {
        // With `address:` a scan or probe goes there, not to the device's SSH host.
        Action::TcpScan(TcpScan { address: Some(_), .. })
        | Action::UdpScan(UdpScan { address: Some(_), .. })
        | Action::SnmpProbe(SnmpProbe { address: Some(_), .. })
        | Action::HttpRequest(HttpRequest { address: Some(_), .. })
        | Action::TlsAudit(TlsAudit { address: Some(_), .. }) => None,
        other => channel_of_kind(other.kind()),
    }
}

/// Whether an action logs in with the rig's SSH password (so key-only SSH is not
/// enough): a negotiation does, and a login without a password of its own.
fn uses_rig_ssh_password(action: &Action) -> bool {
    match action {
        Action::SshNegotiate(_) => true,
        Action::SshLogin(login) => login.password.is_none(),
        Action::Power(_)
        | Action::Wait(_)
        | Action::ConsoleSend(_)
        | Action::ConsoleExpect(_)
        | Action::ConsoleLogin(_)
        | Action::ConsoleRun(_)
        | Action::SshExec(_)
        | Action::SshFetch(_)
        | Action::SshSu(_)
        | Action::SshAudit(_)
        | Action::SshIdle(_)
        | Action::TcpScan(_)
        | Action::UdpScan(_)
        | Action::SnmpProbe(_)
        | Action::HttpRequest(_)
        | Action::SyslogReceive(_)
        | Action::TlsAudit(_)
        | Action::Set(_)
        | Action::Assert(_)
        | Action::Script(_) => false,
    }
}

fn step_needs(step: &Step, parameters: &BTreeMap<String, Value>) -> StepNeeds {
    let mut needs = StepNeeds { target: step.device.clone(), only_if: step.if_device_has, ..StepNeeds::default() };
    needs.channels.extend(channel_of(&step.action));
    // Every `${...}` in the action's body (the plan checker holds them to be closed).
    let body = super::body::action_body(step);
    for reference in template::references_in_value(&body).unwrap_or_default() {
        absorb_reference(&mut needs, &reference);
    }
    if let Some(credential) = step.action.credential() {
        match credential {
            // A templated name (`{secret: "${param.password_secret}"}`) is the parameter's default.
            Credential::Secret(name) => needs.secrets.push(
                name.strip_prefix("${param.")
                    .and_then(|rest| rest.strip_suffix('}'))
                    .and_then(|param| parameters.get(param)?.as_str())
                    .unwrap_or(name)
                    .to_string(),
            ),
            Credential::Env(var) => needs.credentials.push(format!("env:{var}")),
            Credential::File(path) => needs.credentials.push(format!("file:{}", path.display())),
            Credential::Value(_) => {}
        }
    }
    needs.ssh_password = uses_rig_ssh_password(&step.action);
    if let Some(source) = step.script() {
        let script = script_needs(source);
        needs.declared.extend(declared_keys_in_script(source));
        needs.channels.extend(script.channels);
        needs.optional_channels = script.optional_channels;
        needs.secrets.extend(script.secrets);
        needs.parameters.extend(script.parameters);
        needs.ssh_password |= script.ssh_password;
    }
    needs
}

/// What a script's calls need, by a scan of its text (like [`declared_keys_in_script`],
/// it errs towards listing too much).
struct ScriptNeeds {
    channels: Vec<DeviceChannel>,
    optional_channels: Vec<DeviceChannel>,
    secrets: Vec<String>,
    parameters: Vec<String>,
    ssh_password: bool,
}

fn script_needs(source: &str) -> ScriptNeeds {
    static CALL: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static SECRET: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static PARAM: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static GUARD: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let call = CALL.get_or_init(|| {
        regex::Regex::new(r#"\b(ssh_[a-z]+|console_[a-z]+|power)\s*\(|\bagent\s*\(\s*"([a-z_]+)"\s*(?:,\s*#\{([^}]*))?"#)
            .expect("a valid pattern")
    });
    let guard = GUARD.get_or_init(|| regex::Regex::new(r#""(console|ssh|power)"\s+in\s+device\s*\.\s*channels"#).expect("a valid pattern"));
    let secret = SECRET.get_or_init(|| regex::Regex::new(r#"\bsecret\s*:\s*"([^"]+)""#).expect("a valid pattern"));
    let param = PARAM.get_or_init(|| regex::Regex::new(r#"\bparam\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)"#).expect("a valid pattern"));
    let mut channels = BTreeSet::new();
    let mut ssh_password = false;
    for c in call.captures_iter(source) {
        let name = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
        // A network probe given its own `address` goes there, not to the SSH host.
        if (name == "http_request" || name == "tls_audit") && c.get(3).is_some_and(|m| m.as_str().contains("address")) {
            continue;
        }
        channels.extend(match ActionKind::from_name(name) {
            Some(kind) => channel_of_kind(kind),
            // Not an action (a function the script defines): by its name's prefix.
            None if name.starts_with("ssh_") => Some(DeviceChannel::Ssh),
            None if name.starts_with("console_") => Some(DeviceChannel::Console),
            None => None,
        });
        // `agent("ssh_login", #{user})` without a password or key logs in with the rig's password.
        let own_credential = c.get(3).is_some_and(|m| m.as_str().contains("password") || m.as_str().contains("key"));
        ssh_password |= c.get(2).is_some_and(|m| m.as_str() == "ssh_negotiate" || (m.as_str() == "ssh_login" && !own_credential));
    }
    let optional_channels = guard
        .captures_iter(source)
        .filter_map(|c| match &c[1] {
            "console" => Some(DeviceChannel::Console),
            "ssh" => Some(DeviceChannel::Ssh),
            "power" => Some(DeviceChannel::Power),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ScriptNeeds {
        optional_channels,
        channels: channels.into_iter().collect(),
        secrets: secret.captures_iter(source).map(|c| c[1].to_string()).collect(),
        parameters: param.captures_iter(source).map(|c| c[1].to_string()).collect(),
        ssh_password,
    }
}

fn absorb_reference(needs: &mut StepNeeds, reference: &Reference) {
    let path = reference.path.as_str();
    if let Some(key) = path.strip_prefix("device.declared.") {
        needs.declared.push(key.to_string());
    } else if let Some(name) = path.strip_prefix("param.") {
        needs.parameters.push(name.split(['.', '[']).next().unwrap_or(name).to_string());
    } else if path == "device.ssh" || path.starts_with("device.ssh.") {
        needs.channels.push(DeviceChannel::Ssh);
    }
}

/// The `device.declared` keys a script names, by a plain scan of its text (for the
/// `script` step kind, whose Rhai source is a string): `device.declared.KEY`,
/// `device.declared?.KEY` and `device["declared"]["KEY"]`, with spaces allowed around
/// the dots and brackets. Only the top-level key is taken (`lockout` for
/// `device.declared.lockout.attempts`), since what follows may be a method call. A
/// reference inside a comment or a string counts too: the scan errs towards listing
/// a key the script might not read, never towards missing one it does.
pub fn declared_keys_in_script(source: &str) -> Vec<String> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(
            r#"\bdevice\s*(?:\??\.\s*declared|\[\s*"declared"\s*\])\s*(?:\??\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*"([^"]+)"\s*\])"#,
        )
        .expect("a valid pattern")
    });
    let keys: BTreeSet<String> =
        pattern.captures_iter(source).filter_map(|c| c.get(1).or_else(|| c.get(2)).map(|m| m.as_str().to_string())).collect();
    keys.into_iter().collect()
}

/// Sort cases as the catalogue lists them: by specification, then clause number
/// (numerically, part by part), then test name, file and id.
pub fn sort(cases: &mut [CaseInfo]) {
    cases.sort_by(|a, b| {
        a.spec
            .cmp(&b.spec)
            .then_with(|| clause_order(&a.clause, &b.clause))
            .then_with(|| a.test_name.cmp(&b.test_name))
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Whether a case can run on one device of a rig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Readiness {
    /// The case's `devices:` does not select this device.
    NotApplicable,
    /// The case is skipped (`skip:`), wherever it would run.
    Skipped { reason: String },
    /// Everything it needs is there; steps limited to a channel the device lacks
    /// (`if_device_has`) will be SKIP, and are counted.
    Ready { steps_skipped: usize },
    /// Something it needs is missing, named.
    Missing { missing: Vec<String> },
}

/// Whether `case` can run on the device `name` of `rig`, and if not, why.
pub fn readiness(case: &CaseInfo, rig: &Rig, name: &str) -> Readiness {
    let Some(device) = rig.spec.devices.get(name) else {
        return Readiness::Missing { missing: vec![format!("no device `{name}` in the rig")] };
    };
    if !case.applies_to.matches(name, &device.role, &device.tags) {
        return Readiness::NotApplicable;
    }
    if let Some(reason) = &case.skip {
        return Readiness::Skipped { reason: reason.clone() };
    }
    let declared = serde_json::to_value(&device.declared).unwrap_or(Value::Null);
    let mut missing: Vec<String> = Vec::new();
    let mut note = |what: String| {
        if !missing.contains(&what) {
            missing.push(what);
        }
    };
    let mut steps_skipped = 0;
    for step in &case.steps {
        if step.only_if.is_some_and(|channel| !has(device, channel)) {
            steps_skipped += 1;
            continue;
        }
        // Declared values come from the case's device even when a step runs elsewhere.
        for key in &step.declared {
            if template::lookup(&declared, key).is_none_or(Value::is_null) {
                note(format!("declared.{key}"));
            }
        }
        let (target, prefix) = match &step.target {
            None => (device, String::new()),
            Some(other) => match rig.spec.devices.get(other) {
                Some(d) => (d, format!("{other}: ")),
                None => {
                    note(format!("device `{other}` (a step runs there)"));
                    continue;
                }
            },
        };
        for channel in &step.channels {
            if !has(target, *channel) && !step.optional_channels.contains(channel) {
                note(format!("{prefix}{}", channel_missing(*channel)));
            }
        }
        for secret in &step.secrets {
            if !target.secrets.contains_key(secret) {
                note(format!("{prefix}secret `{secret}`"));
            }
        }
        if step.ssh_password && target.ssh.as_ref().is_some_and(|s| s.password.is_none()) {
            note(format!("{prefix}SSH password (the rig gives none; a step logs in with it)"));
        }
    }
    if missing.is_empty() {
        Readiness::Ready { steps_skipped }
    } else {
        Readiness::Missing { missing }
    }
}

/// Why `case` of `plan` cannot run on `device`, as the run records it before touching
/// the device: what the rig lacks, and how to add each declared value (the examples
/// of rigs/README.md). None when it can run, does not apply, or is skipped (`skip:`).
///
/// Pure in the plan and the rig, so replay reaches the same message; it names the rig
/// by its `rig:` name, not its path, which differs between the run and the bundle.
pub fn unready(plan: &Plan, case: &Case, rig: &Rig, device: &str) -> Option<String> {
    let Readiness::Missing { missing } = readiness(&case_info(plan, case, ""), rig, device) else { return None };
    let mut examples: Vec<String> = Vec::new();
    for key in missing.iter().filter_map(|m| m.strip_prefix("declared.")) {
        let example = match declared_example(key) {
            Some(example) => format!("`{example}`"),
            None => format!("`{key}: ...` (see the plan's preconditions)"),
        };
        // The keys inside one value (`web_server.account`, `web_server.config_files`)
        // share that value's example: it is shown once.
        if !examples.contains(&example) {
            examples.push(example);
        }
    }
    let add = if examples.is_empty() {
        String::new()
    } else {
        format!("; add under the device's `declared:` in the rig file, e.g. {}", examples.join(", "))
    };
    Some(format!(
        "device {device} of rig `{}` lacks what this case needs: {}{add} (rigs/README.md describes each key; `proofrig catalogue --rig` lists what every case needs). Nothing was sent to the device",
        rig.name(),
        missing.join(", ")
    ))
}

/// How each `declared` key the bundled plans read is written, as rigs/README.md shows it.
pub const DECLARED_EXAMPLES: &[(&str, &str)] = &[
    ("open_tcp_ports", "open_tcp_ports: [22, 830]"),
    ("open_udp_ports", "open_udp_ports: [161]"),
    ("auth_log", "auth_log: /var/log/auth.log"),
    ("default_accounts", "default_accounts: [{ user: admin, password: admin }]"),
    ("management_services", "management_services: [{ service: ssh }, { service: console }]"),
    ("vendor_keys", "vendor_keys: [{ what: factory support key, key: \"ssh-ed25519 AAAA... factory@vendor\" }]"),
    ("authorized_keys_files", "authorized_keys_files: [/root/.ssh/authorized_keys]"),
    ("default_snmp_communities", "default_snmp_communities: [public, private]"),
    ("restricted_addresses", "restricted_addresses: [10.20.0.5]"),
    ("software_list_command", "software_list_command: \"dpkg-query -W -f '${Package}\\\\n'\""),
    ("allowed_software", "allowed_software: [openssh-server, busybox]"),
    ("disabled_functions", "disabled_functions: [{ what: SSH TCP forwarding, command: grep -i ^AllowTcpForwarding /etc/ssh/sshd_config, disabled: 'AllowTcpForwarding +no' }]"),
    ("components", "components: [{ name: OpenSSH, command: ssh -V, version: 'OpenSSH_([0-9.]+)', supported: '^9[.]' }]"),
    (
        "role_accounts",
        "role_accounts: [{ role: operator, user: oper, password: oper_password, denied: [{ what: signal init, command: kill -0 1 }] }]",
    ),
    ("lockout", "lockout: { attempts: 3, seconds: 60 }"),
    ("password_policy", "password_policy: { min_length: 12, classes: 3 }"),
    ("password_change_command", "password_change_command: passwd --stdin"),
    ("sensitive_files", "sensitive_files: [/etc/shadow]"),
    ("router", "router: false"),
    ("removable_mounts", "removable_mounts: [/media/usb0]"),
    ("network_programs", "network_programs: [/usr/sbin/sshd, /usr/sbin/nginx]"),
    (
        "software_packages",
        "software_packages: { install_command: \"fw-install {package}\", genuine: /var/lib/updates/fw-1.0.pkg, tampered: /var/lib/updates/fw-1.0-tampered.pkg }",
    ),
    (
        "web_server",
        "web_server: { program: nginx, account: www-data, master_account: root, config_files: [/etc/nginx/nginx.conf], \
         modules_command: ls /etc/nginx/modules-enabled, add_ons: [], script_directories: [], upload_directories: [], \
         document_root: /var/www/html, access_log: /var/log/nginx/access.log, file_types_command: cat /etc/nginx/mime.types, \
         file_types: [html, css, js] }",
    ),
];

fn declared_example(key: &str) -> Option<&'static str> {
    let top = key.split(['.', '[']).next().unwrap_or(key);
    DECLARED_EXAMPLES.iter().find(|(k, _)| *k == top).map(|(_, example)| *example)
}

fn has(device: &Device, channel: DeviceChannel) -> bool {
    match channel {
        DeviceChannel::Console => device.console.is_some(),
        DeviceChannel::Ssh => device.ssh.is_some(),
        DeviceChannel::Power => device.power.is_some(),
    }
}

fn channel_missing(channel: DeviceChannel) -> &'static str {
    match channel {
        DeviceChannel::Console => "console",
        DeviceChannel::Ssh => "ssh",
        DeviceChannel::Power => "power outlet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_declared_example_is_a_key_rigs_readme_documents() {
        let readme = include_str!("../../../rigs/README.md");
        for (key, example) in DECLARED_EXAMPLES {
            assert!(readme.contains(&format!("| `{key}` |")), "rigs/README.md documents `{key}`");
            assert!(example.starts_with(&format!("{key}: ")), "{example}");
            let yaml: Value = serde_saphyr::from_str(example).unwrap_or_else(|e| panic!("{example}: {e}"));
            assert!(yaml.get(key).is_some(), "{example}");
        }
    }

    const PLAN: &str = r#"
plan: accounts
title: Accounts
parameters:
  ports: "1-1024"
  unused: 3
cases:
  - id: TC_B
    title: Lockout after failed logins
    scas: { spec: TS 33.117, clause: 4.2.3.4.10, test_name: TC_B, requirement: Lock out guessers. }
    purpose: p
    expected: e
    evidence: e
    devices: { roles: [radio-unit] }
    steps:
      - power: { action: cycle }
        if_device_has: power
      - ssh_login: { user: root, password: { secret: root_password }, expect: refused }
      - console_login: { password: { env: CONSOLE_PW } }
        if_device_has: console
      - assert: { value: "${device.declared.lockout.attempts}", at_most: 5 }
  - id: TC_A
    title: Ports
    scas: { spec: TS 33.117, clause: 4.2.3.4.9, test_name: TC_A, requirement: Only documented ports. }
    purpose: p
    expected: e
    evidence: e
    steps:
      - tcp_scan: { ports: "${param.ports}" }
        capture: scan
      - ssh_negotiate: { ciphers: [aes128-cbc], expect: refused }
      - assert: { value: "${scan.open}", set_equals: "${device.declared.open_tcp_ports}" }
"#;

    const RIG: &str = r#"
rig: bench
pdus:
  board: { modbus: { host: 127.0.0.1, port: 5020 } }
devices:
  ru1:
    role: radio-unit
    declared: { lockout: { attempts: 3 }, open_tcp_ports: [22] }
    secrets: { root_password: { env: RU1_ROOT } }
    ssh: { host: 127.0.0.1, user: oper, password: { env: RU1_OPER }, host_key: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8" }
    power: { pdu: board, outlet: 1 }
  ru2:
    role: radio-unit
    declared: { lockout: { seconds: 60 } }
    ssh: { host: 127.0.0.1, user: oper, key_file: id, host_key: "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8" }
  core1:
    role: core
    declared: { open_tcp_ports: [22] }
"#;

    fn cases() -> Vec<CaseInfo> {
        let plan = Plan::parse("accounts.yaml", PLAN).unwrap();
        let mut cases = cases_of(&plan, "accounts.yaml");
        sort(&mut cases);
        cases
    }

    #[test]
    fn needs_come_from_step_kinds_references_and_credentials() {
        let cases = cases();
        let ports = &cases[0];
        assert_eq!(ports.needs.channels, vec![ChannelNeed { channel: DeviceChannel::Ssh, optional: false }]);
        assert_eq!(ports.needs.declared, ["open_tcp_ports"]);
        assert_eq!(ports.needs.parameters, BTreeMap::from([("ports".to_string(), Value::from("1-1024"))]));
        assert!(ports.needs.ssh_password, "ssh_negotiate logs in with the rig's SSH password");
        assert!(ports.applies_to.is_all());

        let lockout = &cases[1];
        assert_eq!(
            lockout.needs.channels,
            vec![
                ChannelNeed { channel: DeviceChannel::Console, optional: true },
                ChannelNeed { channel: DeviceChannel::Ssh, optional: false },
                ChannelNeed { channel: DeviceChannel::Power, optional: true },
            ]
        );
        assert_eq!(lockout.needs.declared, ["lockout.attempts"]);
        assert_eq!(lockout.needs.secrets, ["root_password"]);
        assert_eq!(lockout.needs.credentials, ["env:CONSOLE_PW"]);
        assert!(!lockout.needs.ssh_password, "the login brings its own password");
        assert!(lockout.needs.parameters.is_empty(), "unused parameters are not needs");
    }

    #[test]
    fn clauses_sort_numerically_per_component() {
        let cases = cases();
        let clauses: Vec<&str> = cases.iter().map(|c| c.clause.as_str()).collect();
        // As text 4.2.3.4.10 would come first.
        assert_eq!(clauses, ["4.2.3.4.9", "4.2.3.4.10"]);
    }

    #[test]
    fn readiness_names_what_a_device_lacks() {
        let rig = Rig::parse("rig.yaml", RIG, Path::new(".")).unwrap();
        let cases = cases();
        let (ports, lockout) = (&cases[0], &cases[1]);
        assert_eq!(lockout.id, "TC_B");

        // ru1 has it all; it has no console, so the console step will be SKIP.
        assert_eq!(readiness(lockout, &rig, "ru1"), Readiness::Ready { steps_skipped: 1 });
        // ru2: no secret, the declared key is not there (only `lockout.seconds`), no
        // power outlet, but the power step only runs where there is one.
        assert_eq!(
            readiness(lockout, &rig, "ru2"),
            Readiness::Missing { missing: vec!["secret `root_password`".into(), "declared.lockout.attempts".into()] }
        );
        assert_eq!(readiness(lockout, &rig, "core1"), Readiness::NotApplicable);

        assert_eq!(readiness(ports, &rig, "ru1"), Readiness::Ready { steps_skipped: 0 });
        let Readiness::Missing { missing } = readiness(ports, &rig, "ru2") else { panic!() };
        assert!(missing.iter().any(|m| m.starts_with("SSH password")), "{missing:?}");
        assert!(missing.contains(&"declared.open_tcp_ports".to_string()), "{missing:?}");
        assert_eq!(readiness(ports, &rig, "core1"), Readiness::Missing { missing: vec!["ssh".into()] });
    }

    #[test]
    fn a_script_s_declared_keys_are_found_by_scanning_its_text() {
        let script = r#"
            let ports = device.declared.open_tcp_ports;
            if device . declared ?. lockout.attempts > 3 { fail("too many") }
            let n = device["declared"]["max sessions"];
            let m = device.declared["banner"].len();
            // device.declared.commented_out counts too
            let not_it = other.declared.x + mydevice.declared.y;
        "#;
        assert_eq!(declared_keys_in_script(script), ["banner", "commented_out", "lockout", "max sessions", "open_tcp_ports"]);
        assert!(declared_keys_in_script("let x = 1;").is_empty());
    }
}

#[cfg(test)]
mod script_scan_tests {
    use super::*;

    #[test]
    fn a_templated_secret_name_is_the_parameter_s_default() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans/password-structure.yaml");
        let plan = Plan::load(&path).unwrap();
        let info = &cases_of(&plan, "password-structure.yaml")[0];
        assert_eq!(info.needs.secrets, ["oper_password"]);
        let rig = Rig::parse("r.yaml", "rig: r\ndevices:\n  d1:\n    role: core\n    ssh: { host: 127.0.0.1, user: oper, password: { env: X }, host_key: \"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\" }\n", std::path::Path::new(".")).unwrap();
        match readiness(info, &rig, "d1") {
            Readiness::Missing { missing } => assert!(missing.contains(&"secret `oper_password`".to_string()), "{missing:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_inside_one_missing_value_show_its_example_once() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans/web-ssi-exec.yaml");
        let plan = Plan::load(&path).unwrap();
        let rig = Rig::parse("r.yaml", "rig: r\ndevices:\n  d1:\n    role: core\n    ssh: { host: 127.0.0.1, user: oper, password: { env: X }, host_key: \"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\" }\n", std::path::Path::new(".")).unwrap();
        let why = unready(&plan, &plan.spec.cases[0], &rig, "d1").expect("no web server declared");
        assert!(why.contains("declared.web_server.config_files") && why.contains("declared.web_port"), "{why}");
        assert_eq!(why.matches("`web_server: {").count(), 1, "{why}");
        assert_eq!(why.matches("`web_port: ").count(), 1, "{why}");
    }

    #[test]
    fn a_script_s_channels_secrets_and_parameters_are_found_by_scanning_its_text() {
        let needs = script_needs(
            r#"let r = agent("ssh_login", #{ user: device.ssh.user });
               console_run("id"); ssh_exec("true"); wait(param.margin_s);
               agent("ssh_exec", #{ command: "passwd --stdin", stdin: #{ secret: "oper_password" } });"#,
        );
        assert_eq!(needs.channels, [DeviceChannel::Console, DeviceChannel::Ssh]);
        assert_eq!(needs.secrets, ["oper_password"]);
        assert_eq!(needs.parameters, ["margin_s"]);
        assert!(needs.ssh_password);
    }
}
