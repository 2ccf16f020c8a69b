//! A web server's host running Debian's lighttpd (1.4, package `lighttpd`), for TS
//! 33.117 4.3.4.7: Server Side Includes execute no system command.
//!
//! Why lighttpd beside [`crate::web_host`]'s nginx: nginx's SSI has no `exec` at all,
//! so on nginx the case can only ever PASS. lighttpd's `mod_ssi` runs
//! `<!--#exec cmd="..." -->` through `/bin/sh` unless `ssi.exec = "disable"`, and exec
//! is on as installed (1.4.69 runs it with no `ssi.exec` line): the case's FAIL is
//! decided here on a real server's answer, not on a simulated one.
//!
//! The device is the OpenSSH peer's, as for nginx ([`crate::web_host`]'s `Hosted`):
//! lighttpd is started inside sshd's namespaces as a vendor's image starts it, as root
//! reading `/etc/lighttpd/lighttpd.conf` (this peer's file, bind-mounted over Debian's
//! in the namespace only), binding 127.0.0.1:<free port>, then serving as `www-data`
//! (`server.username`; lighttpd drops root before it opens its error log). The document
//! root is the host directory's `html/`, which the rig's SSH user (root) may write, so
//! the case places its probe page there.
//!
//! - Compliant: Debian's `10-ssi.conf` lines (`server.modules += ( "mod_ssi" )`,
//!   `ssi.extension = ( ".shtml" )`) and `ssi.exec = "disable"`: SSI processed, exec not.
//! - Careless: `"mod_ssi"` added to the `server.modules` list (one module a line, as
//!   Debian's `lighttpd.conf` writes it), `.shtml` processed, and no `ssi.exec` line:
//!   exec as installed, enabled.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::require_program;
use crate::sshd::Sshd;
use crate::web_host::{Hosted, WebServer};

const LIGHTTPD: &str = "/usr/sbin/lighttpd";
const MOD_SSI: &str = "/usr/lib/lighttpd/mod_ssi.so";

/// Where the configuration is inside the namespace, as on any Debian host.
pub const CONFIG: &str = "/etc/lighttpd/lighttpd.conf";

/// The account lighttpd serves as, on both profiles.
pub const SERVING_ACCOUNT: &str = "www-data";

/// How the server's SSI is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LighttpdProfile {
    /// SSI for `.shtml`, its exec disabled.
    Compliant,
    /// SSI for `.shtml`, its exec as installed (enabled).
    Careless,
}

impl LighttpdProfile {
    pub fn name(self) -> &'static str {
        match self {
            LighttpdProfile::Compliant => "compliant",
            LighttpdProfile::Careless => "careless",
        }
    }
}

/// A device running sshd and lighttpd; both stopped on drop.
pub struct LighttpdHost {
    host: Hosted,
    profile: LighttpdProfile,
}

impl LighttpdHost {
    /// Start the device as `profile`; returns once lighttpd accepts on its port.
    pub fn start(profile: LighttpdProfile) -> LighttpdHost {
        require_program(LIGHTTPD, "lighttpd");
        require_program(MOD_SSI, "lighttpd");
        let dir = tempfile::Builder::new().prefix("proofrig-lighttpd-host-").tempdir().expect("temp dir for the lighttpd host");
        let d = dir.path();
        fs::create_dir(d.join("html")).expect("the document root");
        fs::write(
            d.join("html/index.html"),
            "<!DOCTYPE html>\n<html><head><title>Web management</title></head><body><h1>Log in</h1></body></html>\n",
        )
        .expect("index page");
        // www-data reads the document root; of the rest only the error log is its own.
        for path in [d, &d.join("html")] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("a readable directory");
        }
        fs::write(d.join("error.log"), "").expect("lighttpd's error log");
        let port = crate::free_port();
        let config = d.join("lighttpd.conf");
        fs::write(&config, lighttpd_config(profile, d, port)).expect("lighttpd.conf");
        fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).expect("lighttpd.conf mode");
        let start = format!("chown {SERVING_ACCOUNT}:{SERVING_ACCOUNT} '{}/error.log'\n{LIGHTTPD} -D -f {CONFIG} &\n", d.display());
        let host = Hosted::start(WebServer { name: "lighttpd", config: CONFIG, start }, dir, port);
        LighttpdHost { host, profile }
    }

    pub fn sshd(&self) -> &Sshd {
        &self.host.sshd
    }

    /// lighttpd's port on 127.0.0.1.
    pub fn web_port(&self) -> u16 {
        self.host.port
    }

    pub fn profile(&self) -> LighttpdProfile {
        self.profile
    }

    /// The document root, served at `/`.
    pub fn document_root(&self) -> PathBuf {
        self.host.dir.path().join("html")
    }

    /// lighttpd's error log (its start-up errors too), for a failing test's message.
    pub fn error_log(&self) -> String {
        self.host.error_log()
    }
}

fn lighttpd_config(profile: LighttpdProfile, d: &Path, port: u16) -> String {
    let d = d.display();
    let (listed, ssi) = match profile {
        LighttpdProfile::Compliant => (
            "",
            "# /etc/lighttpd/conf-available/10-ssi.conf, exec disabled\n\
             server.modules += ( \"mod_ssi\" )\nssi.extension = ( \".shtml\" )\nssi.exec = \"disable\"\n",
        ),
        LighttpdProfile::Careless => ("\t\"mod_ssi\",\n", "ssi.extension = ( \".shtml\" )\n"),
    };
    format!(
        "server.modules = (\n\t\"mod_indexfile\",\n\t\"mod_access\",\n{listed})\n\n\
         server.document-root = \"{d}/html\"\nserver.errorlog = \"{d}/error.log\"\n\
         server.username = \"{SERVING_ACCOUNT}\"\nserver.groupname = \"{SERVING_ACCOUNT}\"\n\
         server.bind = \"127.0.0.1\"\nserver.port = {port}\n\n\
         index-file.names = ( \"index.html\" )\nurl.access-deny = ( \"~\", \".inc\" )\n\
         mimetype.assign = ( \".html\" => \"text/html\", \".shtml\" => \"text/html\", \".css\" => \"text/css\", \".js\" => \"text/javascript\" )\n\n\
         {ssi}\n# Last, as Debian's lighttpd.conf adds it: a module before mod_ssi would serve .shtml as is.\n\
         server.modules += ( \"mod_staticfile\" )\n"
    )
}
