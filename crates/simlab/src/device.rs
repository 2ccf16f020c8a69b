//! One complete simulated device: its OS plus every network service its profile
//! runs, on its management address (a weak device's telnet and FTP on its user-plane
//! address too), and its serial console, switched together by power.
//!
//! This is what the sim lab instantiates per device; the sim PDU's coils call
//! [`SimDevice::set_powered`].

use std::net::{IpAddr, SocketAddr};

use crate::console::{ConsoleOptions, SimConsole};
use crate::device_os::{DeviceConfig, DeviceOs};
use crate::profile::ExtraService;
use crate::services::BannerService;
use crate::snmp_agent::SnmpAgent;
use crate::ssh_server::{HostKey, SimSshServer, SshServerOptions};
use crate::tls::TlsService;
use crate::SimError;

/// Where a device's services listen and with which host key.
#[derive(Debug, Clone)]
pub struct SimDeviceSpec {
    /// Management address, a loopback address such as 127.0.0.11.
    pub management_ip: IpAddr,
    /// The address of the device's user-plane (traffic) interface, where no management
    /// service belongs; a weak device's telnet and FTP listen there too.
    pub user_plane_ip: Option<IpAddr>,
    /// Ports (0 = any free port). Unprivileged by default so no root is needed.
    pub ssh_port: u16,
    pub telnet_port: u16,
    pub ftp_port: u16,
    pub http_port: u16,
    /// UDP port of the weak profile's SNMP agent; any free port by default, so that
    /// devices started side by side (parallel tests) never collide on it.
    pub snmp_port: u16,
    /// TCP port of the HTTPS server ([`crate::tls`]); any free port by default.
    pub tls_port: u16,
    pub host_key: HostKey,
    pub ssh_options: SshServerOptions,
    /// A serial console on a PTY, when set.
    pub console: Option<ConsoleOptions>,
    /// Whether the device starts powered (booting, listening).
    pub powered: bool,
}

impl SimDeviceSpec {
    pub fn new(management_ip: IpAddr, host_key: HostKey) -> Self {
        SimDeviceSpec {
            management_ip,
            user_plane_ip: None,
            ssh_port: 2222,
            telnet_port: 2323,
            ftp_port: 2121,
            http_port: 8080,
            snmp_port: 0,
            tls_port: 0,
            host_key,
            ssh_options: SshServerOptions::default(),
            console: None,
            powered: true,
        }
    }
}

/// A running simulated device. Dropping it shuts its services down.
pub struct SimDevice {
    os: DeviceOs,
    ssh: SimSshServer,
    extra_services: Vec<BannerService>,
    /// The same telnet and FTP services on the user-plane address (weak devices).
    user_plane_services: Vec<BannerService>,
    tls: TlsService,
    snmp: Option<SnmpAgent>,
    console: Option<SimConsole>,
}

impl SimDevice {
    /// Builds the device OS from `config` and starts SSH, the profile's extra
    /// services and the console, powered as `spec.powered` says.
    pub async fn start(config: DeviceConfig, spec: SimDeviceSpec) -> Result<Self, SimError> {
        let profile = config.profile;
        let os = DeviceOs::new(config);
        let ssh = SimSshServer::start_with(SocketAddr::new(spec.management_ip, spec.ssh_port), os.clone(), spec.host_key, spec.ssh_options)
            .await?;
        let mut extra_services = Vec::new();
        for service in profile.extra_services() {
            let port = match service {
                ExtraService::Telnet => spec.telnet_port,
                ExtraService::Ftp => spec.ftp_port,
                ExtraService::Http => spec.http_port,
            };
            let addr = SocketAddr::new(spec.management_ip, port);
            extra_services.push(BannerService::start(addr, os.clone(), *service).await?);
        }
        let mut user_plane_services = Vec::new();
        if let Some(ip) = spec.user_plane_ip.filter(|_| profile.services_on_every_interface()) {
            for service in extra_services.iter().filter(|s| matches!(s.service(), ExtraService::Telnet | ExtraService::Ftp)) {
                let addr = SocketAddr::new(ip, service.local_addr().port());
                user_plane_services.push(BannerService::start(addr, os.clone(), service.service()).await?);
            }
        }
        let tls = TlsService::start(SocketAddr::new(spec.management_ip, spec.tls_port), os.clone()).await?;
        let snmp = match profile.snmp_v2c_agent() {
            true => Some(SnmpAgent::start(SocketAddr::new(spec.management_ip, spec.snmp_port), os.clone()).await?),
            false => None,
        };
        let console = match spec.console {
            Some(options) => Some(SimConsole::start(os.clone(), options, spec.powered).await?),
            None => None,
        };
        let device = SimDevice { os, ssh, extra_services, user_plane_services, tls, snmp, console };
        if !spec.powered {
            // The listeners had to bind once to learn their ports.
            device.set_powered(false).await?;
        }
        Ok(device)
    }

    pub fn os(&self) -> &DeviceOs {
        &self.os
    }

    pub fn ssh(&self) -> &SimSshServer {
        &self.ssh
    }

    pub fn ssh_addr(&self) -> SocketAddr {
        self.ssh.local_addr()
    }

    /// The listeners besides SSH (empty on a hardened device).
    pub fn extra_services(&self) -> &[BannerService] {
        &self.extra_services
    }

    /// The address of the HTTPS server (both profiles; see [`crate::tls`]).
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls.local_addr()
    }

    /// The SNMP agent (weak profile only).
    pub fn snmp(&self) -> Option<&SnmpAgent> {
        self.snmp.as_ref()
    }

    /// The serial console, when the spec asked for one.
    pub fn console(&self) -> Option<&SimConsole> {
        self.console.as_ref()
    }

    pub fn is_powered(&self) -> bool {
        self.ssh.is_powered()
    }

    /// Cuts or restores power to the whole device: every network service and the
    /// console. Returns once all of them have followed.
    pub async fn set_powered(&self, powered: bool) -> Result<(), SimError> {
        if let Some(console) = &self.console {
            console.set_powered(powered).await?;
        }
        self.ssh.set_powered(powered).await?;
        for service in self.extra_services.iter().chain(&self.user_plane_services) {
            service.set_powered(powered).await?;
        }
        self.tls.set_powered(powered).await?;
        if let Some(snmp) = &self.snmp {
            snmp.set_powered(powered).await?;
        }
        Ok(())
    }

    pub async fn stop(&self) {
        if let Some(console) = &self.console {
            console.stop().await;
        }
        self.ssh.stop().await;
        for service in self.extra_services.iter().chain(&self.user_plane_services) {
            service.stop().await;
        }
        self.tls.stop().await;
        if let Some(snmp) = &self.snmp {
            snmp.stop().await;
        }
    }
}
