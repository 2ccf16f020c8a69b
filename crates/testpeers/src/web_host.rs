//! A web server's host: Debian's nginx running on a device proofrig reaches over SSH,
//! for the web server cases of TS 33.117 that look inside the host (4.3.4.2 the
//! server's accounts, 4.3.4.4 its add-ons, 4.3.4.5 its script directories, 4.3.4.8
//! its configuration files' rights, 4.3.4.13 its file type mappings, 4.3.4.7 its SSI),
//! while its HTTP port answers on loopback as
//! [`crate::nginx`]'s does.
//!
//! Why on the OpenSSH peer: that peer already is a device with a shell in namespaces
//! of its own (a private `/proc`, so `ps` lists the device's processes only; a private
//! mount namespace). nginx is started inside them as a vendor's image starts it: a
//! master as root that reads `/etc/nginx/nginx.conf` (this peer's file, bind-mounted
//! over Debian's in the namespace only) and hands the serving to its workers. Nothing
//! outside the namespaces changes; killing the namespace kills nginx with sshd.
//! [`crate::lighttpd_host`] starts Debian's lighttpd the same way (`Hosted` below).
//!
//! - Compliant: workers as `www-data`, `nginx.conf` 0640 root:root, no dynamic module
//!   (an empty `/etc/nginx/modules-enabled` in the namespace), no CGI, SSI or WebDAV,
//!   three file types mapped, no script directory.
//! - Careless: workers as root (`user root;`), `nginx.conf` 0666, Debian's
//!   `/etc/nginx/modules-enabled` as installed (`libnginx-mod-http-echo`, which
//!   `nginx-light` pulls in), SSI on, FastCGI for `/cgi-bin/`, whose directory
//!   (world-writable) holds copies of the host's `/bin/sh` and `/usr/bin/perl` (real
//!   programs, as a careless image leaves them) and, in `upload/`, what WebDAV `PUT`
//!   on `/upload/` stores, Debian's whole
//!   `mime.types`, and an access log of the request line and status only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::nginx::NginxProfile;
use crate::require_program;
use crate::sshd::Sshd;

const NGINX: &str = "/usr/sbin/nginx";
const PERL: &str = "/usr/bin/perl";
const DEBIAN_MODULES: &str = "/etc/nginx/modules-enabled";

/// Where the configuration is inside the namespace, as on any Debian host.
pub const CONFIG: &str = "/etc/nginx/nginx.conf";

/// How long the web server gets to accept a connection before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// A device running sshd and nginx; both stopped on drop.
pub struct WebHost {
    host: Hosted,
    profile: NginxProfile,
}

impl WebHost {
    /// Start the device as `profile`; returns once nginx accepts on its port.
    pub fn start(profile: NginxProfile) -> WebHost {
        require_program(NGINX, "nginx-light");
        require_program(&format!("{DEBIAN_MODULES}/50-mod-http-echo.conf"), "libnginx-mod-http-echo");
        require_program(PERL, "perl-base");
        let dir = tempfile::Builder::new().prefix("proofrig-webhost-").tempdir().expect("temp dir for the web host");
        let d = dir.path();
        for sub in ["html/static", "html/upload", "html/admin", "cgi-bin", "modules-enabled", "tmp"] {
            fs::create_dir_all(d.join(sub)).expect("web host directory");
        }
        fs::write(
            d.join("html/index.html"),
            "<!DOCTYPE html>\n<html><head><title>Web management</title></head><body><h1>Log in</h1></body></html>\n",
        )
        .expect("index page");
        fs::write(d.join("html/static/app.js"), "console.log('web management');\n").expect("a static file");
        // The management API's configuration: behind a login on the compliant host
        // (basic authentication, an account nobody here logs in as: `!` matches no
        // password), served to anyone on the careless one.
        fs::write(d.join("html/admin/config.json"), "{\"snmp_community\": \"private\", \"ntp\": \"127.0.0.1\"}\n")
            .expect("a management file");
        fs::write(d.join("htpasswd"), "manager:!\n").expect("the management login's password file");
        if profile == NginxProfile::Careless {
            fs::create_dir_all(d.join("cgi-bin/upload")).expect("the upload directory in cgi-bin");
            fs::copy("/bin/sh", d.join("cgi-bin/sh")).expect("a shell in cgi-bin");
            fs::copy(PERL, d.join("cgi-bin/perl")).expect("perl in cgi-bin");
            fs::write(d.join("cgi-bin/status.cgi"), "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nuptime\n").expect("a CGI script");
        }
        // The workers (www-data) read the document root; nothing else of the directory is theirs.
        for path in [d.to_path_buf(), d.join("html"), d.join("html/static"), d.join("html/upload"), d.join("html/admin"), d.join("cgi-bin")]
        {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("a readable directory");
        }
        if profile == NginxProfile::Careless {
            // World-writable, so WebDAV can store uploads in it whatever account serves.
            fs::set_permissions(d.join("cgi-bin"), fs::Permissions::from_mode(0o777)).expect("cgi-bin mode");
            // And the document root's upload folder left world-writable by the image:
            // any local account can change what the server hands out.
            fs::set_permissions(d.join("html/upload"), fs::Permissions::from_mode(0o777)).expect("upload folder mode");
        }
        let port = crate::free_port();
        let config = d.join("nginx.conf");
        fs::write(&config, nginx_config(profile, d, port)).expect("nginx.conf");
        let mode = match profile {
            NginxProfile::Compliant => 0o640,
            NginxProfile::Careless => 0o666,
        };
        fs::set_permissions(&config, fs::Permissions::from_mode(mode)).expect("nginx.conf mode");
        let start = start_lines(profile, d);
        let host = Hosted::start(WebServer { name: "nginx", config: CONFIG, start }, dir, port);
        WebHost { host, profile }
    }

    pub fn sshd(&self) -> &Sshd {
        &self.host.sshd
    }

    /// nginx's port on 127.0.0.1.
    pub fn web_port(&self) -> u16 {
        self.host.port
    }

    pub fn profile(&self) -> NginxProfile {
        self.profile
    }

    /// Where the careless server stores WebDAV uploads: inside its CGI directory.
    pub fn upload_directory(&self) -> PathBuf {
        self.host.dir.path().join("cgi-bin/upload")
    }

    /// The directory the careless server runs CGI from (empty on the compliant one).
    pub fn script_directory(&self) -> PathBuf {
        self.host.dir.path().join("cgi-bin")
    }

    /// The document root, served at `/`.
    pub fn document_root(&self) -> PathBuf {
        self.host.dir.path().join("html")
    }

    /// nginx's access log (the compliant one in the combined format).
    pub fn access_log(&self) -> PathBuf {
        self.host.dir.path().join("access.log")
    }

    /// nginx's error log (its start-up errors too), for a failing test's message.
    pub fn error_log(&self) -> String {
        self.host.error_log()
    }
}

/// Inside the namespaces, once `nginx.conf` is in place: the compliant device's empty
/// module directory where Debian's is, and nginx's master started in the background
/// (its workers under the `user` it names).
fn start_lines(profile: NginxProfile, d: &Path) -> String {
    let d = d.display();
    let mut lines = String::new();
    if profile == NginxProfile::Compliant {
        lines.push_str(&format!("mount --bind '{d}/modules-enabled' {DEBIAN_MODULES}\n"));
    }
    lines.push_str(&format!("{NGINX} -c {CONFIG} -e '{d}/error.log' &\n"));
    lines
}

fn nginx_config(profile: NginxProfile, d: &Path, port: u16) -> String {
    let d = d.display();
    let user = match profile {
        NginxProfile::Compliant => "www-data",
        NginxProfile::Careless => "root",
    };
    let main = format!(
        "user {user};\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         include {DEBIAN_MODULES}/*.conf;\nevents {{ worker_connections 64; }}\n"
    );
    let log = match profile {
        NginxProfile::Compliant => format!("    access_log {d}/access.log;\n"),
        NginxProfile::Careless => format!("    log_format brief '\"$request\" $status';\n    access_log {d}/access.log brief;\n"),
    };
    let paths = format!(
        "{log}    client_body_temp_path {d}/tmp/body;\n    proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n    uwsgi_temp_path {d}/tmp/uwsgi;\n    scgi_temp_path {d}/tmp/scgi;\n\
         \x20   default_type application/octet-stream;\n"
    );
    let server = match profile {
        NginxProfile::Compliant => format!(
            "    types {{ text/html html; text/css css; application/javascript js; }}\n    server_tokens off;\n\
             \x20   server {{\n        listen 127.0.0.1:{port};\n        root {d}/html;\n        index index.html;\n\
             \x20       autoindex off;\n        location / {{ limit_except GET {{ deny all; }} }}\n\
             \x20       location /admin/ {{ auth_basic management; auth_basic_user_file {d}/htpasswd; }}\n    }}\n"
        ),
        NginxProfile::Careless => format!(
            "    include /etc/nginx/mime.types;\n    server_tokens on;\n\
             \x20   server {{\n        listen 127.0.0.1:{port};\n        root {d}/html;\n        index index.html;\n\
             \x20       autoindex on;\n        ssi on;\n\
             \x20       location /upload/ {{ alias {d}/cgi-bin/upload/; dav_methods PUT DELETE; create_full_put_path on; }}\n\
             \x20       location /cgi-bin/ {{ root {d}; fastcgi_pass 127.0.0.1:9; }}\n    }}\n"
        ),
    };
    format!("{main}http {{\n{paths}{server}}}\n")
}

/// Which web server a host runs, and how it starts inside the device's namespaces
/// (shared with [`crate::lighttpd_host`]).
pub(crate) struct WebServer {
    /// Its program's name, for messages.
    pub(crate) name: &'static str,
    /// Where it reads its configuration on a Debian host: the host directory's file
    /// of the same name is bind-mounted there, in the namespace only.
    pub(crate) config: &'static str,
    /// Shell lines run as root in the namespaces, once the configuration is in place,
    /// that start the server in the background (its error log in `error.log` of the
    /// host directory).
    pub(crate) start: String,
}

/// A web server's device: sshd with the server started in its namespaces, the
/// server's port on 127.0.0.1, and the directory of the server's files. Dropping it
/// kills the namespace, and the server with sshd.
pub(crate) struct Hosted {
    pub(crate) sshd: Sshd,
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
    name: &'static str,
}

impl Hosted {
    /// Starts `server` on the device; returns once it accepts on `port`.
    pub(crate) fn start(server: WebServer, dir: tempfile::TempDir, port: u16) -> Hosted {
        let file = Path::new(server.config).file_name().expect("a configuration file name").to_string_lossy().into_owned();
        let lines = format!("mount --bind '{}/{file}' {}\n{}", dir.path().display(), server.config, server.start);
        let sshd = Sshd::builder().private_processes().inside(lines).start();
        let host = Hosted { sshd, port, dir, name: server.name };
        host.wait_ready();
        host
    }

    /// The server's error log (its start-up errors too), for a failing test's message.
    pub(crate) fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > STARTUP_LIMIT {
                panic!(
                    "{} on the web host did not accept on port {} within {STARTUP_LIMIT:?}:\n{}\nsshd's log:\n{}",
                    self.name,
                    self.port,
                    self.error_log(),
                    self.sshd.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
