//! A real web server (Debian's nginx, 1.22, from `nginx-light`) on loopback, for the web
//! server cases of TS 33.117 (4.3.4.x): one configured as a hardening guide says, one as
//! a careless installation leaves it.
//!
//! Each server has a directory of its own (configuration, document root, logs, temp
//! paths), and runs in the foreground as one process (`daemon off`, `master_process
//! off`: a killed master would leave its workers serving) as `nobody`, so it is an
//! unprivileged process from its first instruction: no `user` directive, no root
//! master. The document root holds a vendor's index page and a `static/` directory of
//! files with no index page, the directory the rig documents.
//!
//! - Compliant: `server_tokens off`, `autoindex off`, only GET (and so HEAD) allowed
//!   (`limit_except GET { deny all; }`), no default content, and one custom error page
//!   of the vendor's for every error.
//! - Careless: `server_tokens on` (the version in `Server:` and on error pages),
//!   `autoindex on`, WebDAV's PUT and DELETE enabled, Debian's default welcome page
//!   (`index.nginx-debian.html`) as the index, nginx's own error pages.
//!
//! Readiness is a TCP connect to its port succeeding while the process still runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require_program;

const NGINX: &str = "/usr/sbin/nginx";

/// Debian's default page, which the careless server keeps.
const DEBIAN_DEFAULT_PAGE: &str = "/var/www/html/index.nginx-debian.html";

/// How long nginx gets to accept a connection before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// `nobody`/`nogroup` on Debian.
const NOBODY: u32 = 65534;

/// How the server is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NginxProfile {
    Compliant,
    Careless,
}

impl NginxProfile {
    pub fn name(self) -> &'static str {
        match self {
            NginxProfile::Compliant => "compliant",
            NginxProfile::Careless => "careless",
        }
    }
}

/// A running nginx. Killed on drop.
pub struct Nginx {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Start nginx as `profile` on a free port of 127.0.0.1; returns once it accepts.
    pub fn start(profile: NginxProfile) -> Nginx {
        require_program(NGINX, "nginx-light");
        let dir = tempfile::Builder::new().prefix("proofrig-nginx-").tempdir().expect("temp dir for nginx");
        let root = dir.path().join("html");
        fs::create_dir_all(root.join("static")).expect("nginx document root");
        fs::create_dir_all(dir.path().join("errors")).expect("nginx error pages");
        fs::create_dir_all(dir.path().join("tmp")).expect("nginx temp dir");
        fs::write(root.join("static/app.js"), "console.log('web management');\n").expect("a static file");
        fs::write(root.join("static/style.css"), "body { font-family: sans-serif; }\n").expect("a static file");
        match profile {
            NginxProfile::Compliant => {
                fs::write(
                    root.join("index.html"),
                    "<!DOCTYPE html>\n<html><head><title>Web management</title></head><body><h1>Log in</h1></body></html>\n",
                )
                .expect("the vendor's index page");
                fs::write(
                    dir.path().join("errors/error.html"),
                    "<!DOCTYPE html>\n<html><head><title>Error</title></head><body><h1>The request could not be served.</h1></body></html>\n",
                )
                .expect("the vendor's error page");
            }
            NginxProfile::Careless => {
                let page = fs::read(DEBIAN_DEFAULT_PAGE).unwrap_or_else(|e| {
                    panic!("test peer incomplete: {DEBIAN_DEFAULT_PAGE}: {e}. Reinstall Debian's `nginx-light` (its `nginx-common` ships the page).")
                });
                fs::write(root.join("index.nginx-debian.html"), page).expect("Debian's default page");
            }
        }
        let port = crate::free_port();
        fs::write(dir.path().join("nginx.conf"), config(profile, dir.path(), port)).expect("nginx.conf");
        give_to_nobody(dir.path());
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx { child: Some(child), port, dir };
        nginx.wait_ready();
        nginx
    }

    pub fn address(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's error log, for a failing test's message.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nginx exited during startup ({status}):\n{}", self.error_log());
            }
            if std::net::TcpStream::connect((self.address(), self.port)).is_ok() {
                return;
            }
            if started.elapsed() > STARTUP_LIMIT {
                panic!("nginx did not accept on port {} within {STARTUP_LIMIT:?}:\n{}", self.port, self.error_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Make `dir` and everything under it `nobody`'s, readable along the way.
fn give_to_nobody(dir: &Path) {
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        if path.is_dir() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("a readable directory");
            stack.extend(fs::read_dir(&path).expect("list").map(|e| e.expect("entry").path()));
        }
    }
}

fn config(profile: NginxProfile, dir: &Path, port: u16) -> String {
    let d = dir.display();
    let common = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n"
    );
    let temp = format!(
        "    access_log {d}/access.log;\n    client_body_temp_path {d}/tmp/body;\n    proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n    uwsgi_temp_path {d}/tmp/uwsgi;\n    scgi_temp_path {d}/tmp/scgi;\n\
         \x20   types {{ text/html html; text/css css; application/javascript js; }}\n    default_type application/octet-stream;\n"
    );
    let server = match profile {
        NginxProfile::Compliant => format!(
            "    server_tokens off;\n    server {{\n        listen 127.0.0.1:{port};\n        root {d}/html;\n        index index.html;\n\
             \x20       autoindex off;\n        error_page 400 403 404 405 500 502 503 504 /error.html;\n\
             \x20       location = /error.html {{ internal; root {d}/errors; }}\n\
             \x20       location / {{ limit_except GET {{ deny all; }} }}\n    }}\n"
        ),
        NginxProfile::Careless => format!(
            "    server_tokens on;\n    server {{\n        listen 127.0.0.1:{port};\n        root {d}/html;\n\
             \x20       index index.html index.nginx-debian.html;\n        autoindex on;\n\
             \x20       location / {{ dav_methods PUT DELETE; create_full_put_path on; }}\n    }}\n"
        ),
    };
    format!("{common}http {{\n{temp}{server}}}\n")
}
