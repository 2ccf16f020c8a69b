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
//! Each also serves HTTPS on a second port (TS 33.117 4.2.2.2.2 and 4.2.5.1), with a
//! certificate `openssl req` makes at start, for [`SERVER_NAME`]:
//!
//! - Compliant: `ssl_protocols TLSv1.2 TLSv1.3`, ECDHE with AES-GCM or ChaCha20 only,
//!   an EC P-256 key, SHA-256 signature, valid for 30 days, the name in its SAN.
//! - Careless: `ssl_protocols TLSv1 TLSv1.1 TLSv1.2` with `ALL:@SECLEVEL=0` (CBC, static
//!   RSA key exchange, Camellia: what Debian's OpenSSL 3 still has without its legacy
//!   provider; no RC4, and no 3DES), a 1024-bit RSA key, a SHA-1 signature, and
//!   `localhost` as its only name.
//!
//! Readiness is a TCP connect to both ports succeeding while the process still runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require_program;

const NGINX: &str = "/usr/sbin/nginx";
const OPENSSL: &str = "/usr/bin/openssl";

/// The name the compliant server's certificate carries (the rig's `tls_server_name`).
pub const SERVER_NAME: &str = "web1.lab.example";

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
    https_port: u16,
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
        certificate(profile, dir.path());
        let port = crate::free_port();
        let https_port = loop {
            let p = crate::free_port();
            if p != port {
                break p;
            }
        };
        fs::write(dir.path().join("nginx.conf"), config(profile, dir.path(), port, https_port)).expect("nginx.conf");
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
        let mut nginx = Nginx { child: Some(child), port, https_port, dir };
        nginx.wait_ready();
        nginx
    }

    pub fn address(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of its HTTPS server.
    pub fn https_port(&self) -> u16 {
        self.https_port
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
            if std::net::TcpStream::connect((self.address(), self.port)).is_ok()
                && std::net::TcpStream::connect((self.address(), self.https_port)).is_ok()
            {
                return;
            }
            if started.elapsed() > STARTUP_LIMIT {
                panic!(
                    "nginx did not accept on ports {} and {} within {STARTUP_LIMIT:?}:\n{}",
                    self.port,
                    self.https_port,
                    self.error_log()
                );
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

/// `tls.key` and `tls.crt` in `dir`, by `openssl req`, as the module doc says.
fn certificate(profile: NginxProfile, dir: &Path) {
    require_program(OPENSSL, "openssl");
    let (key, crt) = (dir.join("tls.key"), dir.join("tls.crt"));
    let mut args: Vec<String> = vec!["req".into(), "-x509".into(), "-nodes".into()];
    let own: Vec<String> = match profile {
        NginxProfile::Compliant => vec![
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            "ec_paramgen_curve:prime256v1".into(),
            "-sha256".into(),
            "-days".into(),
            "30".into(),
            "-subj".into(),
            format!("/CN={SERVER_NAME}"),
            "-addext".into(),
            format!("subjectAltName=DNS:{SERVER_NAME}"),
        ],
        NginxProfile::Careless => {
            vec!["-newkey".into(), "rsa:1024".into(), "-sha1".into(), "-days".into(), "3650".into(), "-subj".into(), "/CN=localhost".into()]
        }
    };
    args.extend(own);
    args.extend(["-keyout".into(), key.display().to_string(), "-out".into(), crt.display().to_string()]);
    let out = Command::new(OPENSSL).args(&args).stdin(Stdio::null()).output().expect("run openssl req");
    assert!(out.status.success(), "openssl req {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn config(profile: NginxProfile, dir: &Path, port: u16, https_port: u16) -> String {
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
    let tls = match profile {
        NginxProfile::Compliant => "        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;\n",
        NginxProfile::Careless => "        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;\n        ssl_ciphers ALL:@SECLEVEL=0;\n",
    };
    let https = format!(
        "    server {{\n        listen 127.0.0.1:{https_port} ssl;\n        ssl_certificate {d}/tls.crt;\n        ssl_certificate_key {d}/tls.key;\n\
         {tls}        ssl_prefer_server_ciphers on;\n        root {d}/html;\n        index index.html;\n    }}\n"
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
    format!("{common}http {{\n{temp}{server}{https}}}\n")
}
