//! PDUs behind a pdudaemon server, through its HTTP listener.
//!
//! pdudaemon (as packaged in Debian, `pdudaemon/httplistener.py` + `listener.py`)
//! serves `GET /power/control/{on,off,reboot}?hostname=<pdu>&port=<outlet>[&delay=<s>]`
//! and answers 200 `OK - accepted request` once the driver has run, or 500
//! `Invalid request` when the request names no configured PDU or is incomplete.
//! `reboot` is off, `delay` whole seconds (default 5), on, done by pdudaemon itself.
//! It has no status call, so the state after an action is reported as
//! [`PowerState::Unknown`], never guessed.
//!
//! pdudaemon replies only after the driver finished (and it retries a failing
//! driver for a long time), so a reboot's time budget is `timeout_ms` plus its delay.

use std::time::Duration;

use tokio::time::Instant;

use super::{elapsed_ms, error_chain, OutletRef, PowerBackend, PowerError, Switched};
use proofrig_model::events::PowerState;
use proofrig_model::rig::PdudaemonPdu;

/// The pdudaemon backend of one PDU.
pub struct PdudaemonBackend {
    pdu: String,
    config: PdudaemonPdu,
    client: reqwest::Client,
}

impl PdudaemonBackend {
    pub fn new(pdu: &str, config: PdudaemonPdu) -> Result<PdudaemonBackend, PowerError> {
        let client = reqwest::Client::builder()
            // A lab proxy from the environment must not sit between us and a PDU.
            .no_proxy()
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|err| PowerError::Setup { pdu: pdu.into(), reason: error_chain(&err) })?;
        Ok(PdudaemonBackend { pdu: pdu.to_string(), config, client })
    }

    fn base(&self) -> &str {
        self.config.url.trim_end_matches('/')
    }

    /// Ask pdudaemon to carry out `request` (`on`, `off`, `reboot`) on the outlet.
    async fn control(&self, outlet: &OutletRef<'_>, request: &'static str, delay_s: Option<u64>) -> Result<Switched, PowerError> {
        let port = outlet.outlet.to_string();
        let mut query: Vec<(&str, String)> = vec![("hostname", self.config.hostname.clone()), ("port", port.clone())];
        if let Some(delay) = delay_s {
            query.push(("delay", delay.to_string()));
        }
        let budget = Duration::from_millis(self.config.timeout_ms) + Duration::from_secs(delay_s.unwrap_or(0));
        let started = Instant::now();
        let url = format!("{}/power/control/{request}", self.base());
        let response = self.client.get(&url).query(&query).timeout(budget).send().await;
        let (status, body) = match response {
            Ok(response) => {
                let status = response.status();
                match response.text().await {
                    Ok(body) => (status, body),
                    Err(err) => return Err(self.unreachable(&err, started, budget)),
                }
            }
            Err(err) => return Err(self.unreachable(&err, started, budget)),
        };
        let body = body.trim();
        if !status.is_success() {
            let hint = if status.as_u16() == 500 {
                format!(
                    "; pdudaemon answers this when hostname `{}` is not in its configuration or port `{port}` is not \
                     valid for that PDU (see pdudaemon's log)",
                    self.config.hostname
                )
            } else {
                String::new()
            };
            return Err(PowerError::Refused {
                device: outlet.device.into(),
                pdu: self.pdu.clone(),
                outlet: outlet.outlet.clone(),
                action: request,
                reason: format!("HTTP {status} `{body}`{hint}"),
            });
        }
        Ok(Switched {
            readback: PowerState::Unknown,
            detail: format!(
                "pdudaemon at {} accepted {request} for PDU {} port {port}{}: HTTP {status} `{body}`; pdudaemon cannot \
                 report outlet state",
                self.base(),
                self.config.hostname,
                delay_s.map(|d| format!(" with delay={d} s")).unwrap_or_default(),
            ),
        })
    }

    fn unreachable(&self, err: &reqwest::Error, started: Instant, budget: Duration) -> PowerError {
        let reason = if err.is_timeout() {
            format!(
                "no HTTP response within {} ms (pdudaemon answers only after its driver finished, so a dead PDU \
                 behind a live pdudaemon looks the same; see pdudaemon's log)",
                budget.as_millis()
            )
        } else if err.is_connect() {
            format!("cannot connect: {}", error_chain(err))
        } else {
            error_chain(err)
        };
        PowerError::Unreachable { pdu: self.pdu.clone(), addr: self.base().to_string(), after_ms: elapsed_ms(started), reason }
    }
}

/// pdudaemon counts the reboot delay in whole seconds; never stay off shorter than asked.
pub fn reboot_delay_seconds(off_for: Duration) -> u64 {
    let whole = off_for.as_secs();
    if off_for.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    }
}

impl PowerBackend for PdudaemonBackend {
    async fn on(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        self.control(outlet, "on", None).await
    }

    async fn off(&self, outlet: &OutletRef<'_>) -> Result<Switched, PowerError> {
        self.control(outlet, "off", None).await
    }

    async fn cycle(&self, outlet: &OutletRef<'_>, off_for: Duration) -> Result<Switched, PowerError> {
        self.control(outlet, "reboot", Some(reboot_delay_seconds(off_for))).await
    }

    fn native_cycle(&self) -> bool {
        true
    }

    async fn status(&self, _outlet: &OutletRef<'_>) -> Result<PowerState, PowerError> {
        Ok(PowerState::Unknown)
    }

    async fn probe(&self, _outlet: Option<&OutletRef<'_>>) -> Result<String, PowerError> {
        // pdudaemon has no read-only call. A control request without hostname and
        // port is refused before any driver runs, and the refusal is pdudaemon's own.
        let started = Instant::now();
        let budget = Duration::from_millis(self.config.timeout_ms);
        let url = format!("{}/power/control/on", self.base());
        let response = self.client.get(&url).timeout(budget).send().await.map_err(|err| self.unreachable(&err, started, budget))?;
        let status = response.status();
        let server =
            response.headers().get(reqwest::header::SERVER).and_then(|v| v.to_str().ok()).unwrap_or("no Server header").to_string();
        let body = response.text().await.map_err(|err| self.unreachable(&err, started, budget))?;
        let body = body.trim();
        if status.as_u16() == 500 && body == "Invalid request" {
            Ok(format!(
                "pdudaemon at {} answered (HTTP {status} `{body}` to a request naming no PDU, which switches nothing; \
                 server: {server}); whether it knows PDU `{}` can only be seen by switching",
                self.base(),
                self.config.hostname
            ))
        } else {
            Err(PowerError::UnexpectedReply {
                pdu: self.pdu.clone(),
                addr: self.base().to_string(),
                reason: format!(
                    "GET /power/control/on without parameters gave HTTP {status} `{body}` (server: {server}); \
                     pdudaemon's HTTP listener answers HTTP 500 `Invalid request`. Is `url` pointing at pdudaemon \
                     with `listener: http`?"
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_delay_rounds_up_to_whole_seconds() {
        assert_eq!(reboot_delay_seconds(Duration::ZERO), 0);
        assert_eq!(reboot_delay_seconds(Duration::from_millis(1)), 1);
        assert_eq!(reboot_delay_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(reboot_delay_seconds(Duration::from_millis(2001)), 3);
    }
}
