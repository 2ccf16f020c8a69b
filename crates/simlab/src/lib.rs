//! The simulated lab, so `proofrig demo` runs with zero set-up.
//!
//! A simulated device is a [`DeviceOs`] (accounts, files with modes and owners, an
//! auth log, listening ports and a small POSIX-ish command interpreter) reached
//! through a real SSH server ([`SimSshServer`], built on russh), a serial console
//! on a real PTY ([`SimConsole`]: bootloader, boot log, login, shell) and, for the
//! weak profile, plain telnet/ftp-like banner listeners ([`BannerService`]) and an
//! SNMPv1/v2c agent answering the default communities ([`snmp_agent`]). A
//! [`Profile`] decides whether the device is hardened or weak, so the same TS 33.117
//! test plan gives PASS on one and FAIL on the other. [`SimDevice`] starts all of a
//! device's services on its management address and gates them with power.
//! [`SimLab`] runs four such devices and a Modbus TCP PDU ([`SimPdu`]) whose coils
//! power them, and writes the rig file that describes it all.
//!
//! Everything runs on the caller's tokio runtime and never blocks it.

pub mod console;
pub mod device;
pub mod device_os;
mod error;
mod gate;
pub mod lab;
mod line_editor;
pub mod log_forward;
pub mod pdu;
pub mod profile;
pub mod programs;
pub mod services;
mod shell;
pub mod snmp_agent;
pub mod ssh_server;
pub mod tls;
pub mod web;

pub use console::{BootTiming, ConsoleOptions, SimConsole};
pub use device::{SimDevice, SimDeviceSpec};
pub use device_os::{
    AuthOutcome, AuthRecord, CommandOutput, DeviceConfig, DeviceIdentity, DeviceOs, Listener, LoginDenied, LoginMethod, LoginOrigin,
};
pub use error::SimError;
pub use lab::{LabDevice, LabDeviceSpec, SimLab, SimLabConfig};
pub use pdu::{CoilHook, CoilOp, LoggedRequest, PduOptions, SimPdu};
pub use profile::{
    AccountPolicy, ExtraService, FileModes, LockoutPolicy, PasswordPolicy, Profile, SshAlgorithms, REMOVABLE_MOUNT, VENDOR_KEY,
};
pub use services::BannerService;
pub use ssh_server::{HostKey, SimSshServer, SshServerOptions};
