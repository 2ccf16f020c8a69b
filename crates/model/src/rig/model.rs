//! What a rig file says: devices, their channels, and the PDUs that power them.
//!
//! These are plain data (labgrid's "resources"): they describe what exists and how to
//! reach it, and know nothing about talking to it. Agents take the relevant piece
//! (a [`SerialConsole`], an [`SshEndpoint`], a [`Pdu`]) and do the talking.
//! Every struct refuses unknown fields so a typo is an error, not a silent default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

/// A whole rig file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigFile {
    /// The rig's name, e.g. `bench-3`.
    pub rig: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub pdus: BTreeMap<String, Pdu>,
    pub devices: BTreeMap<String, Device>,
}

/// One device under test (or a helper device on the bench).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// What the device is, e.g. `radio-unit`, `core`. Plans select devices by role.
    pub role: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Identity as declared by the vendor; evidence compares it with what the device reports.
    #[serde(default)]
    pub identity: Identity,
    /// What the vendor declares and tests compare against: documented open ports,
    /// lockout threshold, default accounts, device-specific commands. Free-form values.
    #[serde(default)]
    pub declared: BTreeMap<String, serde_json::Value>,
    /// Named secrets of this device that plans may use (e.g. `root_password`), by reference.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    #[serde(default)]
    pub console: Option<Console>,
    #[serde(default)]
    pub ssh: Option<SshEndpoint>,
    #[serde(default)]
    pub power: Option<PowerOutlet>,
}

/// Declared identity of a device.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub firmware: Option<String>,
    /// A command the device answers with its own identity (e.g. `cat /etc/os-release`).
    /// A run executes it once per device, over SSH or else the console, and records
    /// the answer beside the declared values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// A console: exactly one transport plus how to talk to what is behind it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// A local tty or PTY.
    #[serde(default)]
    pub serial: Option<SerialConsole>,
    /// A console exported over TCP (ser2net, terminal servers).
    #[serde(default)]
    pub tcp: Option<TcpConsole>,
    /// Regex of the shell prompt after login (default: `[#$] ?$`-like prompts).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Console login; omitted when the console opens straight to a shell.
    #[serde(default)]
    pub login: Option<ConsoleLogin>,
    /// Patterns that mean the device died (e.g. `Kernel panic`); any wait aborts on them.
    #[serde(default)]
    pub death_strings: Vec<String>,
    /// Send slowly for consoles that drop characters.
    #[serde(default)]
    pub slow_send: Option<SlowSend>,
}

impl Console {
    /// A bare serial console at `port`, 8N1 without flow control, with no prompt, login
    /// or death strings: a byte stream to capture, as benches and probes open one.
    pub fn serial(port: impl Into<PathBuf>, baud: u32) -> Console {
        let serial = SerialConsole {
            port: port.into(),
            baud,
            data_bits: default_data_bits(),
            parity: Parity::None,
            stop_bits: default_stop_bits(),
            flow_control: FlowControl::None,
        };
        Console { serial: Some(serial), tcp: None, prompt: None, login: None, death_strings: Vec::new(), slow_send: None }
    }
}

/// Parity setting of a serial line.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

/// Flow control of a serial line.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    #[default]
    None,
    Software,
    Hardware,
}

/// A local serial port (or PTY).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SerialConsole {
    pub port: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default)]
    pub flow_control: FlowControl,
}

/// How a TCP console speaks.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TcpProtocol {
    /// Plain bytes (ser2net `tcp` accepter).
    #[default]
    Raw,
    /// Telnet with RFC 2217 COM-port control (ser2net `telnet(rfc2217)` accepter).
    Rfc2217,
}

/// A console exported over TCP.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TcpConsole {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub protocol: TcpProtocol,
    /// Line settings to negotiate over RFC 2217 (ignored for raw).
    #[serde(default)]
    pub baud: Option<u32>,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// How long to wait for the TCP connection (default 5000).
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

/// Console login credentials and prompts.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleLogin {
    pub user: String,
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Regex of the login prompt (default `login: ?$`).
    #[serde(default)]
    pub login_prompt: Option<String>,
    /// Regex of the password prompt (default `[Pp]assword: ?$`).
    #[serde(default)]
    pub password_prompt: Option<String>,
    /// Regex that means the password was refused (default `Login incorrect|Permission denied`).
    #[serde(default)]
    pub failure: Option<String>,
    /// How long the console must stay silent after a shell prompt before a login takes
    /// it for a shell left open and types `exit` (default 500 ms). Raise it for a
    /// console whose echo lags: an `exit` typed earlier whose echo comes later than this
    /// would be answered with another `exit` at the login prompt.
    #[serde(default)]
    pub shell_quiet_ms: Option<u64>,
}

impl ConsoleLogin {
    /// A login as `user` with no password and every prompt, pattern and wait at its
    /// default, as a console without a `login:` section in its rig gets one.
    pub fn as_user(user: impl Into<String>) -> ConsoleLogin {
        ConsoleLogin { user: user.into(), password: None, login_prompt: None, password_prompt: None, failure: None, shell_quiet_ms: None }
    }
}

/// Chunked, delayed sending for lossy consoles.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlowSend {
    pub chunk: usize,
    pub delay_ms: u64,
}

/// An SSH endpoint with a pinned host key.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SshEndpoint {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// Private key file for public-key auth.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Passphrase of the key file, if any.
    #[serde(default)]
    pub key_passphrase: Option<SecretRef>,
    /// Password for password auth, by reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Pinned host key fingerprint, `SHA256:<base64>` as `ssh-keygen -lf` prints it.
    #[serde(default)]
    pub host_key: Option<String>,
    /// Or: an OpenSSH known_hosts file holding the device's key.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Connect and per-operation timeout (default 10000).
    #[serde(default = "default_ssh_timeout_ms")]
    pub timeout_ms: u64,
    /// Keepalive interval in seconds (default 15; 0 disables).
    #[serde(default = "default_keepalive_s")]
    pub keepalive_s: u32,
    /// Run a plan's commands through one long-lived shell of the session instead of a
    /// channel each (default false): far fewer processes on a device that forks slowly.
    /// See `proofrig_model::wire::ssh_shell` for what differs.
    #[serde(default)]
    pub persistent_shell: bool,
}

/// Where a device's power comes from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PowerOutlet {
    /// Name of a PDU in `pdus`.
    pub pdu: String,
    /// Outlet on that PDU: coil number for Modbus, port for pdudaemon, `{outlet}` for commands.
    pub outlet: OutletId,
    /// Milliseconds to stay off during a power cycle (default 2000).
    #[serde(default = "default_cycle_off_ms")]
    pub cycle_off_ms: u64,
}

/// An outlet name or number, as the PDU knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OutletId {
    Number(u32),
    Name(String),
}

impl std::fmt::Display for OutletId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutletId::Number(n) => write!(f, "{n}"),
            OutletId::Name(s) => f.write_str(s),
        }
    }
}

/// A power distribution unit or relay board: exactly one backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Pdu {
    /// Modbus TCP coils (relay boards, many PDUs).
    Modbus(ModbusPdu),
    /// A pdudaemon server's HTTP API.
    Pdudaemon(PdudaemonPdu),
    /// Local commands, one per action.
    Command(CommandPdu),
}

/// Modbus TCP PDU: one coil per outlet.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModbusPdu {
    pub host: String,
    #[serde(default = "default_modbus_port")]
    pub port: u16,
    #[serde(default = "default_modbus_unit")]
    pub unit: u8,
    /// Coil value `false` means power on (normally-closed relays).
    #[serde(default)]
    pub invert: bool,
    /// Upper bound for connect + write + read-back (default 3000).
    #[serde(default = "default_pdu_timeout_ms")]
    pub timeout_ms: u64,
}

/// pdudaemon HTTP API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PdudaemonPdu {
    /// Base URL, e.g. `http://127.0.0.1:16421`.
    pub url: String,
    /// The PDU's hostname as configured in pdudaemon.
    pub hostname: String,
    #[serde(default = "default_pdu_timeout_ms")]
    pub timeout_ms: u64,
}

/// Local commands run through `sh -c`; `{outlet}` is replaced by the outlet id.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CommandPdu {
    pub on: String,
    pub off: String,
    /// Prints `on` or `off` (or exits 0 for on, 1 for off). Without it, status is unknown.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default = "default_pdu_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_baud() -> u32 {
    115_200
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_ssh_port() -> u16 {
    22
}
fn default_ssh_timeout_ms() -> u64 {
    10_000
}
fn default_keepalive_s() -> u32 {
    15
}
fn default_cycle_off_ms() -> u64 {
    2_000
}
fn default_modbus_port() -> u16 {
    502
}
fn default_modbus_unit() -> u8 {
    1
}
fn default_pdu_timeout_ms() -> u64 {
    3_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_serial_console_has_the_line_settings_a_rig_gets_by_default() {
        let from_rig: SerialConsole = serde_saphyr::from_str("port: /dev/ttyUSB3\nbaud: 9600\n").unwrap();
        let console = Console::serial("/dev/ttyUSB3", 9600);
        assert_eq!(console.serial, Some(from_rig));
        assert!(console.tcp.is_none() && console.login.is_none() && console.prompt.is_none() && console.death_strings.is_empty());
    }
}
