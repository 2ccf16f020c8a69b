//! One complete simulated device: its OS plus every network service its profile
//! runs, on its management address, switched together by power.
//!
//! This is what the sim lab instantiates per device; the Modbus PDU's coils will
//! call [`SimDevice::set_powered`], and the PTY console will attach to
//! [`SimDevice::os`].

use std::net::{IpAddr, SocketAddr};

use crate::device_os::{DeviceConfig, DeviceOs};
use crate::profile::ExtraService;
use crate::services::BannerService;
use crate::ssh_server::{HostKey, SimSshServer, SshServerOptions};
use crate::SimError;

/// Where a device's services listen and with which host key.
#[derive(Debug, Clone)]
pub struct SimDeviceSpec {
    /// Management address, a loopback address such as 127.0.0.11.
    pub management_ip: IpAddr,
    /// Ports (0 = any free port). Unprivileged by default so no root is needed.
    pub ssh_port: u16,
    pub telnet_port: u16,
    pub ftp_port: u16,
    pub host_key: HostKey,
    pub ssh_options: SshServerOptions,
}

impl SimDeviceSpec {
    pub fn new(management_ip: IpAddr, host_key: HostKey) -> Self {
        SimDeviceSpec {
            management_ip,
            ssh_port: 2222,
            telnet_port: 2323,
            ftp_port: 2121,
            host_key,
            ssh_options: SshServerOptions::default(),
        }
    }
}

/// A running simulated device. Dropping it shuts its services down.
pub struct SimDevice {
    os: DeviceOs,
    ssh: SimSshServer,
    extra_services: Vec<BannerService>,
}

impl SimDevice {
    /// Builds the device OS from `config` and starts SSH plus the profile's extra
    /// services, powered on.
    pub async fn start(config: DeviceConfig, spec: SimDeviceSpec) -> Result<Self, SimError> {
        let profile = config.profile;
        let os = DeviceOs::new(config);
        let ssh = SimSshServer::start_with(
            SocketAddr::new(spec.management_ip, spec.ssh_port),
            os.clone(),
            spec.host_key,
            spec.ssh_options,
        )
        .await?;
        let mut extra_services = Vec::new();
        for service in profile.extra_services() {
            let port = match service {
                ExtraService::Telnet => spec.telnet_port,
                ExtraService::Ftp => spec.ftp_port,
            };
            let addr = SocketAddr::new(spec.management_ip, port);
            extra_services.push(BannerService::start(addr, os.clone(), *service).await?);
        }
        Ok(SimDevice {
            os,
            ssh,
            extra_services,
        })
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

    pub fn is_powered(&self) -> bool {
        self.ssh.is_powered()
    }

    /// Cuts or restores power to every network service of the device.
    pub async fn set_powered(&self, powered: bool) -> Result<(), SimError> {
        self.ssh.set_powered(powered).await?;
        for service in &self.extra_services {
            service.set_powered(powered).await?;
        }
        Ok(())
    }

    pub async fn stop(&self) {
        self.ssh.stop().await;
        for service in &self.extra_services {
            service.stop().await;
        }
    }
}
