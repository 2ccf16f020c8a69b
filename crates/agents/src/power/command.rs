//! PDUs driven by local commands: vendor CLIs, `snmpset`, USB relay tools.
//!
//! Each action runs its command through `sh -c` with `{outlet}` replaced by the
//! outlet id, in its own process group so that a timeout kills the whole pipeline,
//! not just the shell. The command also sees `PROOFRIG_DEVICE`, `PROOFRIG_PDU`,
//! `PROOFRIG_OUTLET` and `PROOFRIG_ACTION`. If a status command exists it is run
//! after every on/off as the read-back (a difference is an error) and answers
//! `status`; without one the state is [`PowerState::Unknown`]. An action and its
//! read-back together are bounded by the PDU's `timeout_ms`.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::{timeout_at, Instant};

use super::{elapsed_ms, OutletRef, PowerBackend, PowerError, Switched};
use proofrig_model::events::PowerState;
use proofrig_model::rig::{CommandPdu, OutletId};

/// The command backend of one PDU.
pub struct CommandBackend {
    pdu: String,
    config: CommandPdu,
    /// Outlet whose status `probe` asks for: the first one used in the rig.
    probe_outlet: Option<OutletId>,
}

/// A command that ran to completion.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl CommandBackend {
    pub fn new(pdu: &str, config: CommandPdu, probe_outlet: Option<OutletId>) -> CommandBackend {
        CommandBackend { pdu: pdu.to_string(), config, probe_outlet }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.config.timeout_ms)
    }

    async fn switch(&self, outlet: &OutletRef<'_>, requested: PowerState) -> Result<Switched, PowerError> {
        let (action, template) = match requested {
            PowerState::On => ("on", &self.config.on),
            _ => ("off", &self.config.off),
        };
        let deadline = self.deadline();
        let command = self.expand(template, outlet)?;
        let done = self.run(&command, outlet, action, deadline).await?;
        if done.code != Some(0) {
            return Err(self.refused(outlet, action, &command, &done));
        }
        let Some(status_template) = &self.config.status else {
            return Ok(Switched {
                readback: PowerState::Unknown,
                detail: format!("`{command}` exited 0; no status command, so the outlet state is unknown"),
            });
        };
        let readback = self.ask_status(status_template, outlet, deadline).await?;
        if readback != requested {
            return Err(PowerError::ReadbackMismatch {
                device: outlet.device.into(),
                pdu: self.pdu.clone(),
                outlet: outlet.outlet.clone(),
                requested,
                read: readback,
            });
        }
        Ok(Switched { readback, detail: format!("`{command}` exited 0; status command reports {readback}") })
    }

    async fn ask_status(&self, template: &str, outlet: &OutletRef<'_>, deadline: Instant) -> Result<PowerState, PowerError> {
        let command = self.expand(template, outlet)?;
        let done = self.run(&command, outlet, "status", deadline).await?;
        parse_status(&done.stdout, done.code).ok_or_else(|| PowerError::Refused {
            device: outlet.device.into(),
            pdu: self.pdu.clone(),
            outlet: outlet.outlet.clone(),
            action: "status",
            reason: format!(
                "`{command}` printed `{}` and exited {}; a status command prints `on` or `off`, or exits 0 for on \
                 and 1 for off",
                clip(done.stdout.trim()),
                exit_text(done.code)
            ),
        })
    }

    /// Substitute the outlet into a command template. The outlet goes into a shell
    /// command line, so only characters that need no quoting are accepted.
    fn expand(&self, template: &str, outlet: &OutletRef<'_>) -> Result<String, PowerError> {
        let text = outlet.outlet.to_string();
        let safe =
            !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+'));
        if !safe {
            return Err(PowerError::BadOutlet {
                device: outlet.device.into(),
                pdu: self.pdu.clone(),
                outlet: outlet.outlet.clone(),
                reason: "command outlets may use letters, digits and . _ - : / @ + only (it is pasted into a shell \
                         command line)"
                    .into(),
            });
        }
        Ok(template.replace("{outlet}", &text))
    }

    async fn run(&self, command: &str, outlet: &OutletRef<'_>, action: &'static str, deadline: Instant) -> Result<Finished, PowerError> {
        let started = Instant::now();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("PROOFRIG_DEVICE", outlet.device)
            .env("PROOFRIG_PDU", outlet.pdu)
            .env("PROOFRIG_OUTLET", outlet.outlet.to_string())
            .env("PROOFRIG_ACTION", action)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can kill everything the shell started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| PowerError::CommandSpawn { pdu: self.pdu.clone(), command: command.into(), source })?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let outcome = timeout_at(deadline, async {
            // Read both pipes while waiting, so a chatty command cannot block on a full pipe.
            let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
            (out, err, status)
        })
        .await;
        match outcome {
            Ok((stdout, stderr, Ok(status))) => Ok(Finished { code: status.code(), stdout, stderr }),
            Ok((_, _, Err(source))) => Err(PowerError::CommandSpawn { pdu: self.pdu.clone(), command: command.into(), source }),
            Err(_) => {
                if let Some(pid) = pid {
                    // The group id is the shell's pid (process_group(0) above).
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                }
                let _ = child.wait().await;
                Err(PowerError::CommandTimedOut {
                    device: outlet.device.into(),
                    pdu: self.pdu.clone(),
                    outlet: outlet.outlet.clone(),
                    action,
                    command: command.into(),
                    after_ms: elapsed_ms(started),
                })
            }
        }
    }

    fn refused(&self, outlet: &OutletRef<'_>, action: &'static str, command: &str, done: &Finished) -> PowerError {
        PowerError::Refused {
            device: outlet.device.into(),
            pdu: self.pdu.clone(),
            outlet: outlet.outlet.clone(),
            action,
            reason: format!("`{command}` exited {}; stderr: `{}`", exit_text(done.code), clip(done.stderr.trim())),
        }
    }
}

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes).await;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A status command's answer: `on`/`off` on stdout wins, else exit 0 = on, 1 = off.
pub fn parse_status(stdout: &str, code: Option<i32>) -> Option<PowerState> {
    match stdout.trim().to_ascii_lowercase().as_str() {
        "on" => return Some(PowerState::On),
        "off" => return Some(PowerState::Off),
        _ => {}
    }
    match code {
        Some(0) if stdout.trim().is_empty() => Some(PowerState::On),
        Some(1) if stdout.trim().is_empty() => Some(PowerState::Off),
        _ => None,
    }
}

fn exit_text(code: Option<i32>) -> String {
    code.map(|c| c.to_string()).unwrap_or_else(|| "by a signal".into())
}

fn clip(text: &str) -> String {
    const MAX: usize = 400;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl PowerBackend for CommandBackend {
    async fn on(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        self.switch(outlet, PowerState::On).await
    }

    async fn off(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        self.switch(outlet, PowerState::Off).await
    }

    async fn status(&self, outlet: &OutletRef<'_>) -> Result<PowerState, PowerError> {
        match &self.config.status {
            Some(template) => self.ask_status(template, outlet, self.deadline()).await,
            None => Ok(PowerState::Unknown),
        }
    }

    async fn probe(&self, outlet: Option<&OutletRef<'_>>) -> Result<String, PowerError> {
        let Some(template) = &self.config.status else {
            return Err(PowerError::NothingToProbe {
                pdu: self.pdu.clone(),
                reason: "it runs local commands and has no `status` command; only switching would show whether \
                         they work"
                    .into(),
            });
        };
        let first;
        let outlet = match (outlet, &self.probe_outlet) {
            (Some(outlet), _) => outlet,
            (None, Some(outlet_id)) => {
                first = OutletRef { device: "(probe)", pdu: &self.pdu, outlet: outlet_id };
                &first
            }
            (None, None) => {
                return Err(PowerError::NothingToProbe {
                    pdu: self.pdu.clone(),
                    reason: "no device in the rig uses it, so there is no outlet to ask about".into(),
                })
            }
        };
        let state = self.ask_status(template, outlet, self.deadline()).await?;
        Ok(format!("status command `{}` answered for outlet {}: {state}", self.expand(template, outlet)?, outlet.outlet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_output_wins_over_exit_code() {
        assert_eq!(parse_status("on\n", Some(0)), Some(PowerState::On));
        assert_eq!(parse_status(" OFF ", Some(3)), Some(PowerState::Off));
        assert_eq!(parse_status("", Some(0)), Some(PowerState::On));
        assert_eq!(parse_status("", Some(1)), Some(PowerState::Off));
        assert_eq!(parse_status("", Some(2)), None);
        assert_eq!(parse_status("maybe", Some(0)), None);
        assert_eq!(parse_status("", None), None);
    }

    #[test]
    fn outlets_that_would_need_shell_quoting_are_refused() {
        let backend =
            CommandBackend::new("relays", CommandPdu { on: "on {outlet}".into(), off: "off".into(), status: None, timeout_ms: 100 }, None);
        let ok = OutletId::Name("usb-1.2:3".into());
        let outlet = OutletRef { device: "ru1", pdu: "relays", outlet: &ok };
        assert_eq!(backend.expand("relay {outlet} on", &outlet).unwrap(), "relay usb-1.2:3 on");
        let evil = OutletId::Name("1; rm -rf ~".into());
        let outlet = OutletRef { device: "ru1", pdu: "relays", outlet: &evil };
        let err = backend.expand("relay {outlet} on", &outlet).unwrap_err();
        assert!(matches!(err, PowerError::BadOutlet { .. }), "{err}");
        assert!(err.to_string().contains("ru1") && err.to_string().contains("relays"));
    }
}
