//! Debian's Chromium, driven over WebDriver by its `chromedriver`: what the dashboard's
//! browser tests click through, as a person would.
//!
//! [`Chromedriver::start`] runs `chromedriver` on a free loopback port and waits until
//! it answers; [`Chromedriver::capabilities`] asks for a headless Chromium from Debian's
//! package with its own throw-away profile. The tests connect with any WebDriver client
//! (fantoccini).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_program};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A running chromedriver; stopped when dropped.
pub struct Chromedriver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Chromedriver {
    pub fn start() -> Chromedriver {
        require_program(CHROMEDRIVER, "chromium-driver");
        require_program(CHROMIUM, "chromium");
        for _ in 0..4 {
            let port = free_port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
            let mut driver = Chromedriver { child, port, profile: tempfile::tempdir().expect("a profile directory") };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return driver;
                }
                if let Ok(Some(_)) = driver.child.try_wait() {
                    break; // its port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("chromedriver did not listen on 127.0.0.1 in four tries")
    }

    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The capabilities of a headless Chromium with a fresh profile, as a JSON object.
    pub fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let options = serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", self.profile.path().display()),
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        caps
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
