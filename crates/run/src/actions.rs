//! Performing a step's action on the devices, through the agents.
//!
//! Each action returns what it observed as JSON (the step's output), or a failure
//! with its class (INFRA when the bench failed, ERROR when the test could not
//! decide, FAIL when the device itself showed non-compliance, e.g. it died). The
//! verdict is not decided here but in `judge`, from this output alone.
//!
//! Agents are opened lazily and kept for the run: a console stays open across power
//! cycles (so boot logs are captured), an SSH session is dropped when it fails so the
//! next step reconnects.
//!
//! A run whose devices go side by side has one `Agents` per lane of devices
//! ([`Agents::another_lane`]): its consoles, sessions, compiled patterns and step
//! timer are its own, so no lane waits on another's. What the lanes share is what the
//! bench has one of: the PDUs (one [`PowerController`], which serialises each PDU's
//! commands and keeps one connection to it) and the lab host's own listeners and
//! probes ([`HostTurns`]): a `syslog_receive` binds the rig's log server address,
//! which two devices may declare alike, and a port scan of an address two devices
//! share would see both devices' connections and ICMP answers mixed.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use proofrig_agents::expect::{Expect, ExpectError};
use proofrig_agents::power::{PowerController, PowerError};
use proofrig_agents::serial::open_console;
use proofrig_agents::ssh::{self, ConnectOptions, SshError, SshSession};
use proofrig_agents::{http, snmp, syslog, tcp, tls, udp};
use proofrig_model::events::{ChannelId, EventKind, Recorder};
use proofrig_model::rig::{ConsoleLogin, Device, Rig};
use proofrig_model::secret::Secret;

use proofrig_evidence::outputs::{audit_output, udp_scan_output, FETCH_TEXT_LIMIT};
use proofrig_plan::{Action, ActionKind, ConsoleLoginStep, Credential, LoginExpectation, PowerStep, Step, StillLoggedIn};
use proofrig_verdict::judge::FailureClass;

/// A failed action: its class and a message a tester can act on.
pub type Failure = (FailureClass, String);

/// Default time limits per action, when the step gives none.
pub fn default_timeout(action: ActionKind) -> Duration {
    Duration::from_millis(match action {
        ActionKind::Power => 60_000,
        ActionKind::TcpScan => 120_000,
        ActionKind::SnmpProbe => 30_000,
        ActionKind::HttpRequest => 10_000,
        ActionKind::SyslogReceive => 60_000,
        ActionKind::TlsAudit => 60_000,
        ActionKind::UdpScan => 300_000,
        // Idle for as long as the device documents, which may be minutes.
        ActionKind::SshIdle => 900_000,
        ActionKind::ConsoleLogin | ActionKind::ConsoleRun | ActionKind::ConsoleExpect => 30_000,
        // A script's calls have their own limits; this bounds the whole script.
        ActionKind::Script => 300_000,
        ActionKind::Wait
        | ActionKind::ConsoleSend
        | ActionKind::SshExec
        | ActionKind::SshFetch
        | ActionKind::SshLogin
        | ActionKind::SshSu
        | ActionKind::SshAudit
        | ActionKind::SshNegotiate
        | ActionKind::Set
        | ActionKind::Assert => 30_000,
    })
}

/// The agents of one run, opened on first use.
pub struct Agents {
    rig: Rig,
    recorder: Recorder,
    power: PowerController,
    // Ordered maps: a run talks to a handful of devices, and comparing a few names is
    // cheaper than hashing one with SipHash at every step.
    consoles: BTreeMap<String, Expect>,
    sessions: BTreeMap<String, SshSession>,
    /// Devices whose outlet read back off at their last switch in this run.
    known_off: BTreeSet<String>,
    /// `console_expect` pattern lists already compiled, by their text: building a
    /// regex (the regex crate builds a DFA) costs more than a console round trip. The
    /// same `Regex` values are searched at every step, never clones: a clone starts
    /// with an empty cache, and its lazy DFA is rebuilt while it searches.
    patterns: BTreeMap<Vec<String>, Vec<regex::bytes::Regex>>,
    /// What the lanes of a run take turns at on the lab host.
    host: Arc<HostTurns>,
    /// The time limit of the step being performed, one timer for the lane's run.
    /// A new timer per step would be a new entry in tokio's timer wheel each time,
    /// and an entry earlier than any the runtime waits for makes tokio wake a parked
    /// worker to look at it: on a quick device that wake-up costs more than the
    /// executor's own work. Moving this one timer later, as each step does, wakes
    /// nobody.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Distinct pattern lists kept compiled; plans have few, templated ones could have many.
const PATTERN_CACHE_LIMIT: usize = 256;

/// Before a power switch, how long the console must have been silent (since its last
/// bytes, not since the switch was asked for) before its unread output is forgotten,
/// and the most time spent waiting for that. A console quiet that long already, or a
/// device read back off at its last switch, costs no wait.
const SETTLE_QUIET: Duration = Duration::from_millis(200);
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// The lab host's resources that one step at a time may use, by name (`syslog
/// tls:127.0.0.1:6514`, `scan 10.0.0.5`): a lane takes its turn for the length of the
/// step's action, and the others wait for it.
#[derive(Default)]
pub struct HostTurns {
    turns: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl HostTurns {
    /// Wait for the turn at `what`, held until the guard drops.
    pub async fn take(&self, what: String) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self.turns.lock().unwrap_or_else(|p| p.into_inner()).entry(what).or_default().clone();
        turn.lock_owned().await
    }
}

impl Agents {
    pub fn new(rig: Rig, recorder: Recorder) -> Result<Self, PowerError> {
        let power = PowerController::new(&rig, recorder.clone())?;
        Ok(Self::of_lane(rig, recorder, power, Arc::default()))
    }

    fn of_lane(rig: Rig, recorder: Recorder, power: PowerController, host: Arc<HostTurns>) -> Self {
        Self {
            rig,
            recorder,
            power,
            consoles: BTreeMap::new(),
            sessions: BTreeMap::new(),
            known_off: BTreeSet::new(),
            patterns: BTreeMap::new(),
            host,
            deadline: None,
        }
    }

    /// The agents of another lane of the same run: channels, patterns and timer of its
    /// own, the PDUs and the lab host's turns shared with this one.
    pub fn another_lane(&self) -> Agents {
        Self::of_lane(self.rig.clone(), self.recorder.clone(), self.power.clone(), self.host.clone())
    }

    pub fn rig(&self) -> &Rig {
        &self.rig
    }

    /// Close every channel and wait until each close is recorded, so the journal's
    /// last records are the run's own.
    pub async fn close(&mut self) {
        for (_, console) in std::mem::take(&mut self.consoles) {
            let _ = tokio::time::timeout(Duration::from_secs(5), console.into_stream().close()).await;
        }
        for (_, session) in std::mem::take(&mut self.sessions) {
            session.close().await;
        }
    }

    /// Ask a device who it is with its rig's identity command: over SSH if it has
    /// SSH, else on its console. Returns the answer or why there is none.
    pub async fn read_identity(&mut self, device: &str, command: &str) -> Result<String, String> {
        // Redacted as the transcript it came from is, so replay derives the same answer.
        let recorder = self.recorder.clone();
        let redact = |text: &str| recorder.redactor().redact_text(text).into_owned();
        match self.ask_identity(device, command).await {
            Ok(answer) => Ok(redact(answer.trim())),
            Err(why) => Err(redact(&why)),
        }
    }

    async fn ask_identity(&mut self, device: &str, command: &str) -> Result<String, String> {
        let has_ssh = self.device(device).map_err(|(_, m)| m)?.ssh.is_some();
        let limit = Duration::from_secs(15);
        let answer = if has_ssh {
            let session = self.session(device).await.map_err(|(_, m)| m)?;
            let out = session.exec(command, limit).await.map_err(|e| e.to_string())?;
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            let console = self.console(device).await.map_err(|(_, m)| m)?;
            console.run(command, limit).await.map_err(|e| e.to_string())?.output
        };
        Ok(answer)
    }

    fn device(&self, name: &str) -> Result<Device, Failure> {
        self.rig.device(name).cloned().map_err(|e| (FailureClass::Error, e.to_string()))
    }

    /// Perform `step` (already resolved into `spec`) on `device`.
    pub async fn perform(&mut self, device: &str, step: &Step, spec: &Value, timeout: Duration) -> Result<Value, Failure> {
        let action = step.kind();
        let until = tokio::time::Instant::now() + timeout;
        let mut deadline = match self.deadline.take() {
            Some(mut deadline) => {
                deadline.as_mut().reset(until);
                deadline
            }
            None => Box::pin(tokio::time::sleep_until(until)),
        };
        let finished = tokio::select! {
            biased;
            result = self.dispatch(device, step, spec, timeout) => Some(result),
            _ = deadline.as_mut() => None,
        };
        self.deadline = Some(deadline);
        match finished {
            Some(result) => result,
            None => {
                self.recorder.emit(EventKind::Note {
                    channel: ChannelId::new(device, proofrig_evidence::notes::EXECUTOR_CHANNEL),
                    text: format!("{}{action} did not finish within {} ms", proofrig_evidence::notes::NOTE_DEADLINE, timeout.as_millis()),
                });
                // A hung channel may be in any state: start afresh next time.
                self.consoles.remove(device);
                self.sessions.remove(device);
                Err((FailureClass::Infra, format!("{action} on {device} did not finish within {} ms", timeout.as_millis())))
            }
        }
    }

    async fn dispatch(&mut self, device: &str, step: &Step, spec: &Value, timeout: Duration) -> Result<Value, Failure> {
        let text = |key: &str| spec.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        match &step.action {
            Action::Power(power) => self.power(device, power).await,
            Action::Wait(_) => {
                let ms = spec["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!({"waited_ms": ms}))
            }
            Action::Set(_) => Ok(spec.clone()),
            Action::ConsoleSend(_) => {
                let expect = self.console(device).await?;
                let text = text("text");
                let sent = if spec["newline"].as_bool().unwrap_or(true) {
                    expect.send_line(&text).await
                } else {
                    expect.send(text.as_bytes()).await
                };
                sent.map_err(classify_expect)?;
                Ok(json!({"sent": text}))
            }
            Action::ConsoleExpect(_) => {
                let patterns: Vec<String> =
                    spec["patterns"].as_array().into_iter().flatten().map(|p| p.as_str().unwrap_or_default().to_string()).collect();
                let compiled = self.patterns(&patterns)?;
                let recorder = self.recorder.clone();
                let redactor = recorder.redactor();
                let expect = match self.console(device).await {
                    Ok(expect) => expect,
                    Err(failure) => {
                        self.patterns.insert(patterns, compiled);
                        return Err(failure);
                    }
                };
                // Leave a little of the step's time for recording the outcome.
                let output = match expect.expect(&compiled, timeout.saturating_sub(Duration::from_millis(100))).await {
                    Ok(found) => Ok(json!({
                        "matched": true,
                        "index": found.index,
                        "pattern": patterns.get(found.index),
                        "matched_text": found.matched_text(),
                        // Redacted before it is cut, as replay cuts the (redacted) transcript.
                        "before": tail(&redactor.redact_text(&found.before_text()), proofrig_evidence::console_replay::BEFORE_CHARS),
                    })),
                    Err(ExpectError::Timeout { tail: seen, .. }) => Ok(json!({"matched": false, "tail": seen})),
                    Err(other) => Err(classify_expect(other)),
                };
                self.patterns.insert(patterns, compiled);
                output
            }
            Action::ConsoleLogin(login) => self.console_login(device, login, spec, timeout).await,
            Action::ConsoleRun(_) => {
                let expect = self.console(device).await?;
                let out =
                    expect.run(&text("command"), timeout.saturating_sub(Duration::from_millis(100))).await.map_err(classify_expect)?;
                Ok(json!({"output": out.output, "exit_status": out.exit_status}))
            }
            Action::SshExec(exec) => {
                // A line on standard input (a new password for `passwd --stdin`), by reference.
                let input = match &exec.stdin {
                    Some(c) => format!("{}\n", self.credential(device, c, spec.get("stdin"))?.expose()).into_bytes(),
                    None => Vec::new(),
                };
                let session = self.session(device).await?;
                let (command, limit) = (text("command"), timeout.saturating_sub(Duration::from_millis(100)));
                // Input goes to a command on a channel of its own; the rest may share the session's shell.
                let ran = if input.is_empty() {
                    session.run(&command, limit).await
                } else {
                    session.exec_with_input(&command, &input, limit).await
                };
                match ran {
                    Ok(out) => Ok(json!({
                        "stdout": String::from_utf8_lossy(&out.stdout),
                        "stderr": String::from_utf8_lossy(&out.stderr),
                        "exit_status": out.exit_status,
                        "exit_signal": out.exit_signal,
                    })),
                    Err(err) => {
                        self.sessions.remove(device);
                        Err(classify_ssh(err))
                    }
                }
            }
            Action::SshFetch(_) => {
                let session = self.session(device).await?;
                match session.fetch(&text("path")).await {
                    Ok(bytes) => {
                        use sha2::Digest;
                        // A small file's bytes are recorded, so its text is derived from them in replay.
                        if bytes.len() <= FETCH_TEXT_LIMIT {
                            self.recorder.bytes(&ChannelId::new(device, "ssh:fetch"), proofrig_model::events::Direction::In, &bytes);
                        }
                        let text = std::str::from_utf8(&bytes).ok().filter(|_| bytes.len() <= FETCH_TEXT_LIMIT);
                        Ok(json!({
                            "path": spec["path"],
                            "len": bytes.len(),
                            "sha256": hex::encode(sha2::Sha256::digest(&bytes)),
                            "text": text,
                        }))
                    }
                    Err(err) => Err(classify_ssh(err)),
                }
            }
            Action::SshLogin(login) => {
                let user = text("user");
                let endpoint = self.device(device)?.ssh.ok_or_else(|| no_channel(device, "ssh"))?;
                let credential = match (login.password.clone(), login.key) {
                    (_, Some(proofrig_plan::KeySource::Rig)) => rig_key(device, &endpoint)?,
                    (Some(c), None) => ssh::Credential::Password(self.credential(device, &c, spec.get("password"))?),
                    (None, None) => ssh::Credential::Password(self.device_password(device)?),
                };
                let outcome = ssh::try_login(device, &endpoint, &user, credential, &ConnectOptions::default(), &self.recorder)
                    .await
                    .map_err(classify_ssh)?;
                // Where the attempt came from, as the device's log names it, so a plan can
                // find the record of this very attempt (`from <address> port <port>`).
                Ok(json!({
                    "accepted": outcome.accepted,
                    "user": user,
                    "methods_offered": outcome.methods_offered,
                    "negotiation_refused": outcome.negotiation_refused,
                    "source_address": outcome.source.map(|s| s.ip().to_string()),
                    "source_port": outcome.source.map(|s| s.port()),
                }))
            }
            Action::SshSu(su) => {
                let password = self.credential(device, &su.password, spec.get("password"))?;
                let session = self.session(device).await?;
                let shell = session.shell().await.map_err(classify_ssh)?;
                let mut expect = Expect::new(shell);
                let outcome = expect.switch_user(&text("user"), &password, timeout.saturating_sub(Duration::from_millis(100))).await;
                // The shell ends within the step, so its last bytes are in the step's range.
                expect.into_stream().close().await;
                let outcome = outcome.map_err(classify_expect)?;
                Ok(serde_json::to_value(outcome).expect("a switch outcome serializes"))
            }
            Action::SshNegotiate(_) => {
                let endpoint = self.device(device)?.ssh.ok_or_else(|| no_channel(device, "ssh"))?;
                let list = |key: &str| -> Option<Vec<String>> {
                    let items: Vec<String> =
                        spec[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
                    (!items.is_empty()).then_some(items)
                };
                let offer = proofrig_model::wire::ssh::ClientOffer {
                    kex: list("kex"),
                    host_key: list("host_key"),
                    ciphers: list("ciphers"),
                    macs: list("macs"),
                };
                let outcome = ssh::probe_negotiation(device, &endpoint.host, endpoint.port, offer, timeout, &self.recorder)
                    .await
                    .map_err(classify_ssh)?;
                Ok(json!({"negotiated": outcome.negotiated, "detail": outcome.detail}))
            }
            Action::SshIdle(_) => self.ssh_idle(device, spec).await,
            Action::SshAudit(_) => {
                let endpoint = self.device(device)?.ssh.ok_or_else(|| no_channel(device, "ssh"))?;
                let offered =
                    ssh::audit_algorithms(device, &endpoint.host, endpoint.port, timeout, &self.recorder).await.map_err(classify_ssh)?;
                Ok(audit_output(&offered))
            }
            Action::TcpScan(_) => {
                let address = self.network_target(device, spec, "scan")?;
                let _turn = self.host.take(format!("scan {address}")).await;
                let ports = proofrig_plan::parse_ports(&text("ports")).map_err(|e| (FailureClass::Error, e))?;
                let concurrency = spec["concurrency"].as_u64().unwrap_or(256).clamp(1, 4096) as usize;
                let per_port = Duration::from_millis(spec["connect_timeout_ms"].as_u64().unwrap_or(500));
                // Every attempt is recorded (see `proofrig_agents::tcp`): replay derives `open` from them.
                let open = tcp::tcp_scan(device, &address, &ports, concurrency, per_port, &self.recorder)
                    .await
                    .map_err(|e| (FailureClass::Infra, e))?;
                Ok(json!({"address": address, "scanned": ports.len(), "open": open}))
            }
            Action::UdpScan(_) => {
                let address = self.network_target(device, spec, "scan")?;
                let _turn = self.host.take(format!("scan {address}")).await;
                let ports = proofrig_plan::parse_ports(&text("ports")).map_err(|e| (FailureClass::Error, e))?;
                let wait = Duration::from_millis(spec["wait_ms"].as_u64().unwrap_or(1000));
                let rate = spec["rate"].as_u64().map_or(udp::DEFAULT_RATE, |r| r.clamp(1, 100_000) as u32);
                let outcome = udp::udp_scan(device, &address, &ports, wait, rate, &self.recorder)
                    .await
                    .map_err(|e| (FailureClass::Infra, e.to_string()))?;
                Ok(udp_scan_output(&outcome, ports.len()))
            }
            Action::SnmpProbe(_) => {
                let address = self.network_target(device, spec, "probe")?;
                let port = spec["port"]
                    .as_u64()
                    .map_or(Ok(161), u16::try_from)
                    .map_err(|_| (FailureClass::Error, "`port` is not a UDP port".to_string()))?;
                let communities = proofrig_plan::parse_communities(&text("communities")).map_err(|e| (FailureClass::Error, e))?;
                let versions: Vec<snmp::SnmpVersion> = match spec.get("versions") {
                    Some(v) if !v.is_null() => {
                        serde_json::from_value(v.clone()).map_err(|e| (FailureClass::Error, format!("`versions`: {e}")))?
                    }
                    _ => vec![snmp::SnmpVersion::V1, snmp::SnmpVersion::V2c],
                };
                let wait = Duration::from_millis(spec["wait_ms"].as_u64().unwrap_or(2000));
                let outcome = snmp::probe_communities(
                    &snmp::CommunityProbe { device, address: &address, port, versions: &versions, communities: &communities, wait },
                    &self.recorder,
                )
                .await
                .map_err(|e| (FailureClass::Infra, e.to_string()))?;
                Ok(snmp_output(&outcome))
            }
            Action::HttpRequest(_) => self.http_request(device, spec, timeout).await,
            Action::SyslogReceive(_) => self.syslog_receive(device, spec).await,
            Action::TlsAudit(_) => self.tls_audit(device, spec, timeout).await,
            Action::Assert(assert) => match assert.output(spec) {
                Value::Null => Err((FailureClass::Error, "no comparison".to_string())),
                compared => Ok(compared),
            },
            // A script is run by `script::perform`, its calls each through here.
            Action::Script(_) => Err((FailureClass::Error, format!("unknown action `{}`", ActionKind::Script))),
        }
    }

    /// Where a network step (`tcp_scan`, `udp_scan`, `snmp_probe`) goes: its `address:`, or the
    /// device's SSH host, its management address.
    fn network_target(&self, device: &str, spec: &Value, verb: &str) -> Result<String, Failure> {
        match spec.get("address").and_then(Value::as_str) {
            Some(address) => Ok(address.to_string()),
            None => self
                .device(device)?
                .ssh
                .map(|s| s.host)
                .ok_or_else(|| (FailureClass::Error, format!("device {device} has no SSH host to {verb}; give `address:` in the step"))),
        }
    }

    /// An `http_request` step: one request, its output derived from the response's bytes.
    async fn http_request(&self, device: &str, spec: &Value, timeout: Duration) -> Result<Value, Failure> {
        use proofrig_model::wire::http as wire;
        let address = self.network_target(device, spec, "send HTTP to")?;
        let port = wire::spec_port(spec).map_err(|e| (FailureClass::Error, e))?;
        let method = wire::spec_method(spec);
        let path = spec["path"].as_str().unwrap_or_default();
        let headers = wire::spec_headers(spec);
        wire::check_request(method, path, &headers).map_err(|e| (FailureClass::Error, e))?;
        let probe = http::HttpProbe {
            device,
            address: &address,
            port,
            method,
            path,
            headers: &headers,
            timeout: timeout.saturating_sub(Duration::from_millis(100)),
        };
        match http::send(&probe, &self.recorder).await {
            Ok(exchange) => Ok(wire::output(&address, port, method, path, &exchange.response)),
            Err(err @ http::HttpError::NotHttp { .. }) => Err((FailureClass::Error, err.to_string())),
            Err(err) => Err((FailureClass::Infra, err.to_string())),
        }
    }

    /// An `ssh_idle` step: an interactive shell, its prompt awaited, then nothing typed
    /// until the device ends it or `idle_ms` has passed (then the step closes it).
    async fn ssh_idle(&mut self, device: &str, spec: &Value) -> Result<Value, Failure> {
        let idle_ms = spec["idle_ms"]
            .as_u64()
            .or_else(|| spec["idle_ms"].as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| (FailureClass::Error, format!("device {device}: ssh_idle.idle_ms is not a number of milliseconds")))?;
        let prompt_wait = Duration::from_millis(spec["prompt_ms"].as_u64().unwrap_or(5000));
        let session = self.session(device).await?;
        let mut shell = session.shell().await.map_err(classify_ssh)?;
        let prompt_seen = matches!(tokio::time::timeout(prompt_wait, shell.read()).await, Ok(Ok(bytes)) if !bytes.is_empty());
        let mut ended = false;
        if prompt_seen {
            let until = tokio::time::Instant::now() + Duration::from_millis(idle_ms);
            loop {
                match tokio::time::timeout_at(until, shell.read()).await {
                    // Idle for the whole time, and still open.
                    Err(_) => break,
                    // The device may print something (a warning before it logs out).
                    Ok(Ok(_)) => continue,
                    Ok(Err(_)) => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        // Closed within the step, so its last bytes and its end are in the step's range.
        shell.close().await;
        Ok(json!({"idle_ms": spec["idle_ms"], "prompt_seen": prompt_seen, "ended": ended}))
    }

    /// A `syslog_receive` step: listen where the device sends its log records, make a
    /// login it must refuse, and wait for its record of that login. The receiver stops
    /// before the step ends, so every record it kept is in the step's range.
    async fn syslog_receive(&self, device: &str, spec: &Value) -> Result<Value, Failure> {
        use proofrig_model::wire::syslog as wire;
        let listen = wire::Listen::parse(spec["listen"].as_str().unwrap_or_default())
            .map_err(|e| (FailureClass::Error, format!("device {device}: syslog_receive.listen: {e}")))?;
        let user = spec["refused_login"].as_str().unwrap_or_default().to_string();
        let endpoint = self.device(device)?.ssh.ok_or_else(|| no_channel(device, "ssh"))?;
        let wait = Duration::from_millis(spec["wait_ms"].as_u64().unwrap_or(5000));
        let identity = match (listen.transport, spec["tls_identity"].as_str()) {
            (wire::Transport::Tls, Some(name)) => Some(self.credential(device, &Credential::Secret(name.to_string()), None)?),
            _ => None,
        };
        // Two devices may declare one log server: one receiver listens there at a time.
        // (By address and port: TCP and TLS on one port collide, UDP beside them is kept apart too.)
        let _turn = self.host.take(format!("syslog {}", listen.address)).await;
        let receiver = syslog::Receiver::start(device, listen, identity.as_ref(), &self.recorder)
            .await
            .map_err(|e| (FailureClass::Error, e.to_string()))?;
        let wrong = ssh::Credential::Password(Secret::new("a wrong password", wire::WRONG_PASSWORD));
        let login = ssh::try_login(device, &endpoint, &user, wrong, &ConnectOptions::default(), &self.recorder).await;
        let login = match login {
            Ok(login) => login,
            Err(err) => {
                receiver.stop().await;
                return Err(classify_ssh(err));
            }
        };
        if !login.accepted {
            if let Some(source) = login.source {
                receiver.wait_for(|records| records.iter().any(|r| wire::names_attempt(&r.text, &user, source)), wait).await;
            }
        }
        let records = receiver.stop().await;
        Ok(wire::output(&listen, &user, login.source, login.accepted, &records))
    }

    /// A `tls_audit` step: the hand-made hellos, the output derived from the answers'
    /// bytes, the certificate's dates judged at the time the audit began.
    async fn tls_audit(&self, device: &str, spec: &Value, timeout: Duration) -> Result<Value, Failure> {
        use proofrig_model::wire::tls as wire;
        let address = self.network_target(device, spec, "audit TLS on")?;
        let port = wire::spec_port(spec).map_err(|e| (FailureClass::Error, e))?;
        let server_name = wire::spec_server_name(spec);
        let checked_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        // Each connection gets a slice of the step's time; a refused hello takes milliseconds.
        let per_connection = (timeout / 8).clamp(Duration::from_millis(500), Duration::from_secs(5));
        let probe = tls::TlsProbe { device, address: &address, port, server_name, per_connection };
        let audit =
            tokio::time::timeout(timeout.saturating_sub(Duration::from_millis(100)), tls::audit(&probe, &self.recorder)).await.map_err(
                |_| (FailureClass::Infra, format!("device {device}: the TLS audit of {address}:{port} did not finish within {timeout:?}")),
            )?;
        match audit {
            Ok((audit, _)) => Ok(audit.output(&wire::OutputContext { address: &address, port, server_name, checked_at })),
            Err(err @ tls::TlsError::NotTls { .. }) => Err((FailureClass::Error, err.to_string())),
            Err(err) => Err((FailureClass::Infra, err.to_string())),
        }
    }

    /// A `console_expect` pattern list, compiled once per run. Taken out of the cache
    /// while it is searched (the caller puts it back), so nothing clones it.
    fn patterns(&mut self, patterns: &[String]) -> Result<Vec<regex::bytes::Regex>, Failure> {
        if let Some(compiled) = self.patterns.remove(patterns) {
            return Ok(compiled);
        }
        let compiled = patterns
            .iter()
            .map(|pattern| {
                regex::bytes::Regex::new(pattern).map_err(|e| (FailureClass::Error, format!("invalid pattern `{pattern}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.patterns.len() >= PATTERN_CACHE_LIMIT {
            self.patterns.clear();
        }
        Ok(compiled)
    }

    async fn power(&mut self, device: &str, spec: &PowerStep) -> Result<Value, Failure> {
        let off = spec.action == proofrig_plan::PowerAction::Off;
        // Switching off starts no boot to record: a console nobody opened stays closed.
        if !off || self.consoles.contains_key(device) {
            self.settle_console(device).await;
        }
        let result = match spec.action {
            proofrig_plan::PowerAction::On => self.power.on(device).await,
            proofrig_plan::PowerAction::Off => self.power.off(device).await,
            proofrig_plan::PowerAction::Cycle => self.power.cycle(device, spec.off_ms.map(Duration::from_millis)).await,
        };
        // Off as read back: until the next switch the device prints nothing.
        if matches!(result, Ok(proofrig_model::events::PowerState::Off)) {
            self.known_off.insert(device.to_string());
        } else {
            self.known_off.remove(device);
        }
        // The device restarts: its SSH session is gone; the console stays open and keeps recording.
        self.sessions.remove(device);
        match result {
            Ok(state) => Ok(json!({"state": state.to_string()})),
            Err(err) => Err((FailureClass::Infra, err.to_string())),
        }
    }

    /// Before a power switch: open the device's console if it has one (so the boot
    /// that follows is recorded), let it go quiet and forget its unread output. That
    /// output belongs to the previous boot, and its boot banner and login prompt look
    /// exactly like the next ones: a console wait after a power step must only see
    /// what the device printed after it. A console that cannot be opened is noted and
    /// left to the console step that needs it.
    async fn settle_console(&mut self, device: &str) {
        if !self.device(device).is_ok_and(|d| d.console.is_some()) {
            return;
        }
        // A device switched off (read back) since it last spoke has nothing left to say.
        let quiet = if self.known_off.contains(device) { Duration::ZERO } else { SETTLE_QUIET };
        let settled = match self.console(device).await {
            Ok(console) => console.settle(quiet, SETTLE_LIMIT).await.map(|_| ()).map_err(|e| e.to_string()),
            Err((_, message)) => Err(message),
        };
        if settled.is_ok() {
            // Where the console's unread output was forgotten: replay's console waits
            // after the switch start here.
            self.recorder.emit(EventKind::Note {
                channel: ChannelId::new(device, proofrig_evidence::notes::EXECUTOR_CHANNEL),
                text: proofrig_evidence::notes::NOTE_CONSOLE_CLEARED.into(),
            });
        }
        if let Err(message) = settled {
            self.consoles.remove(device);
            self.recorder.emit(EventKind::Note {
                channel: ChannelId::new(device, "console"),
                text: format!("console not ready before the power switch: {message}"),
            });
        }
    }

    async fn console_login(
        &mut self,
        device: &str,
        step_login: &ConsoleLoginStep,
        spec: &Value,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let dev = self.device(device)?;
        let rig_login = dev.console.as_ref().and_then(|c| c.login.clone());
        let mut login = rig_login.clone().unwrap_or_else(|| ConsoleLogin::as_user("root"));
        if let Some(user) = spec.get("user").and_then(Value::as_str) {
            login.user = user.to_string();
        }
        let password = match &step_login.password {
            Some(c) => Some(self.credential(device, c, spec.get("password"))?),
            None => match &login.password {
                Some(r) => Some(r.resolve().map_err(|e| (FailureClass::Infra, e.to_string()))?),
                None => None,
            },
        };
        let expect = self.console(device).await?;
        match expect.login(&login, password.as_ref(), timeout.saturating_sub(Duration::from_millis(100))).await {
            Ok(outcome) => Ok(json!({"accepted": true, "user": outcome.user, "logged_out": outcome.logged_out})),
            Err(ExpectError::LoginRefused { response, .. }) => Ok(json!({"accepted": false, "user": login.user, "response": response})),
            // The step asks whether the console can be logged out: one that answers every
            // `exit` with a shell prompt cannot, and that is what it found (a FAIL), not a
            // bench left logged in (an ERROR, as for every other step).
            Err(ExpectError::StillLoggedIn { prompt, tries, logged_out, .. })
                if step_login.still_logged_in == Some(StillLoggedIn::Fail) =>
            {
                Ok(
                    json!({"accepted": false, "user": login.user, "still_logged_in": true, "prompt": prompt, "exits": tries, "logged_out": logged_out}),
                )
            }
            Err(other) => {
                if matches!(step_login.expect, Some(LoginExpectation::Refused)) {
                    if let ExpectError::Timeout { tail, .. } = &other {
                        return Err((
                            FailureClass::Error,
                            format!("the console neither accepted nor refused the login; last output: {tail}"),
                        ));
                    }
                }
                Err(classify_expect(other))
            }
        }
    }

    /// A password for a login attempt, from the plan's credential.
    fn credential(&self, device: &str, credential: &Credential, resolved: Option<&Value>) -> Result<Secret, Failure> {
        match credential {
            Credential::Secret(name) => {
                // The name may be templated (`{secret: ${param.password_secret}}`).
                let name = resolved.and_then(|v| v.get("secret")).and_then(Value::as_str).unwrap_or(name);
                let dev = self.device(device)?;
                let reference = dev.secrets.get(name).ok_or_else(|| {
                    (FailureClass::Error, format!("device {device} has no secret `{name}`; add it under `secrets:` in the rig"))
                })?;
                reference.resolve().map_err(|e| (FailureClass::Infra, e.to_string()))
            }
            Credential::Value(_) => {
                let value = resolved.and_then(|v| v.get("value")).and_then(Value::as_str).unwrap_or_default();
                Ok(Secret::new("documented value", value))
            }
            other => other
                .as_secret_ref()
                .expect("env and file credentials are references")
                .resolve()
                .map_err(|e| (FailureClass::Infra, e.to_string())),
        }
    }

    fn device_password(&self, device: &str) -> Result<Secret, Failure> {
        let dev = self.device(device)?;
        let ssh = dev.ssh.ok_or_else(|| no_channel(device, "ssh"))?;
        let reference = ssh.password.ok_or_else(|| {
            (FailureClass::Error, format!("device {device}: this check logs in with a password, but the rig gives none for SSH"))
        })?;
        reference.resolve().map_err(|e| (FailureClass::Infra, e.to_string()))
    }

    /// Text the console of `device` received that no wait has consumed yet (None:
    /// its console is not open).
    pub fn console_unconsumed(&mut self, device: &str) -> Option<usize> {
        self.consoles.get_mut(device).map(Expect::unconsumed)
    }

    async fn console(&mut self, device: &str) -> Result<&mut Expect, Failure> {
        if !self.consoles.contains_key(device) {
            let dev = self.device(device)?;
            let console = dev.console.ok_or_else(|| no_channel(device, "console"))?;
            let stream = open_console(device, &console, self.recorder.clone()).await.map_err(|e| (FailureClass::Infra, e.to_string()))?;
            let expect = Expect::for_console(stream, &console).map_err(|e| (FailureClass::Error, e.to_string()))?;
            self.consoles.insert(device.to_string(), expect);
        }
        Ok(self.consoles.get_mut(device).expect("inserted above"))
    }

    async fn session(&mut self, device: &str) -> Result<&SshSession, Failure> {
        if !self.sessions.contains_key(device) {
            let dev = self.device(device)?;
            let endpoint = dev.ssh.ok_or_else(|| no_channel(device, "ssh"))?;
            let session = SshSession::connect(device, &endpoint, self.recorder.clone()).await.map_err(classify_ssh)?;
            self.sessions.insert(device.to_string(), session);
        }
        Ok(self.sessions.get(device).expect("inserted above"))
    }
}

fn no_channel(device: &str, channel: &str) -> Failure {
    (FailureClass::Error, format!("device {device} has no {channel} in the rig, but this step needs one"))
}

/// The rig's SSH key of `device`, for a login that shows whether it opens an account.
fn rig_key(device: &str, endpoint: &proofrig_model::rig::SshEndpoint) -> Result<ssh::Credential, Failure> {
    let path = endpoint.key_file.clone().ok_or_else(|| {
        (FailureClass::Error, format!("device {device}: this login uses the rig's SSH key, but the rig gives no `ssh.key_file`"))
    })?;
    let passphrase = endpoint.key_passphrase.as_ref().map(|r| r.resolve()).transpose().map_err(|e| (FailureClass::Infra, e.to_string()))?;
    Ok(ssh::Credential::Key { path, passphrase })
}

fn classify_expect(err: ExpectError) -> Failure {
    let class = match &err {
        ExpectError::Lost(_) => FailureClass::Infra,
        ExpectError::DeathString { .. } => FailureClass::Fail,
        ExpectError::PasswordRequired { .. } => FailureClass::Infra,
        _ => FailureClass::Error,
    };
    (class, err.to_string())
}

fn classify_ssh(err: SshError) -> Failure {
    (FailureClass::Infra, err.to_string())
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> String {
    match max.checked_sub(1).and_then(|skip| text.char_indices().rev().nth(skip)) {
        Some((start, _)) => text[start..].to_string(),
        None if max == 0 => String::new(),
        None => text.to_string(),
    }
}

/// An `snmp_probe` step's output: every request, and the answered ones as
/// `version/community` (what a plan asserts on).
pub fn snmp_output(outcome: &snmp::ProbeOutcome) -> Value {
    let answered = proofrig_model::wire::snmp::answered_labels(&outcome.probes);
    json!({
        "address": outcome.peer.ip().to_string(),
        "port": outcome.peer.port(),
        "probes": outcome.probes,
        "answered": answered,
        "port_unreachable": outcome.port_unreachable,
    })
}

/// A TCP connect scan: the ports of `address` that accept a connection, recorded nowhere.
pub async fn scan(address: &str, ports: &[u16], concurrency: usize, per_port: Duration) -> Result<Vec<u16>, String> {
    tcp::tcp_scan("-", address, ports, concurrency, per_port, &Recorder::discard()).await
}
