//! Forgeries by a lab insider, who holds the lab's signing key: run the library on the
//! simulated lab, edit one recorded answer (a weak device's FAIL turned into a PASS
//! where one can be, another fact where not), make every summary record agree with the
//! edit (specs resolved again from the edited captures, verdicts and messages judged
//! again, scripts run again on the edited calls, cases and run rolled up again), rebuild
//! the chain, and sign with the lab's own key. Signatures, digests and chain then hold,
//! and only the raw events contradict the forged answer: `proofrig verify` must say
//! TAMPERED and name the record the forgery is in.
//!
//! Every action a step can take has its forgery here, and a test fails when a new
//! action has none. So do the ways around the outputs: an `assert` whose output is not
//! its spec, ranges shifted or overlapping, a gap in the events, a case dropped, a FAIL
//! rewritten as INFRA or as ABORTED, a device's reported identity, the run's parameters.
//!
//! The lab runs with the weak devices' telnet, FTP, HTTP and SNMP on their well-known
//! ports (as the library tests do; they need root), on a random 127.A.B.x block.

mod simrun;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::Duration;

use proofrig_evidence::bundle::BundleWriter;
use proofrig_evidence::journal::read_chain;
use proofrig_evidence::record::{CaseKey, Phase, RunResult};
use proofrig_evidence::verify::{CheckState, Status};
use proofrig_model::rig::Rig;
use proofrig_plan::scope::{absorb, base_scope, select};
use proofrig_plan::script::{self, Answer, CallRequest, Caller, Control};
use proofrig_plan::tally::CaseTally;
use proofrig_plan::{Action, ActionKind, Case, Plan, Step};
use proofrig_simlab::{SimLab, SimLabConfig};
use proofrig_verdict::judge::judge;
use proofrig_verdict::{Rollup, Verdict};
use serde_json::{json, Value};
use simrun::{plan, Ran};

/// A plan for the actions the library uses only inside scripts, or not at all.
const EXTRAS: &str = r#"
plan: forgery-extras
title: Console login, console commands, a file fetch, set and an absence check
cases:
  - id: TC_FORGERY_EXTRAS
    title: The actions the library's declarative steps do not use
    scas: { spec: TS 33.117, clause: "4.2", test_name: TC_FORGERY_EXTRAS, requirement: "none, a test of replay" }
    purpose: Give every action a recorded answer to forge.
    expected: The weak device's findings, recorded.
    evidence: The journal.
    devices: { names: [ru2] }
    steps:
      - name: log in on the console
        console_login: { still_logged_in: fail }
      - name: read the shadow file's mode
        console_run: { command: "stat -c %a /etc/shadow", expect_status: 0 }
        capture: mode
      - name: the shadow file is not world-readable
        assert: { value: "${mode.output}", one_of: ["600", "640", "400"], message: /etc/shadow is readable by everyone }
      - name: ask who is logged in, without waiting
        console_send: { text: "id" }
      - name: no root shell answers
        console_expect: { patterns: ['uid=0\('], on_timeout: pass }
        timeout_ms: 1500
      - name: remember the limit
        set: { limit: 3 }
      - name: a short pause
        wait: { ms: 50 }
      - name: log out of the console
        console_send: { text: exit }
      - name: fetch the password file
        ssh_fetch: { path: /etc/passwd }
        on_failure: continue
      - name: switch to root with its password
        ssh_su: { user: root, password: { secret: root_password } }
        on_failure: continue
      - name: leave a shell idle for a moment
        ssh_idle: { idle_ms: 300 }
"#;

/// The library's plans the forgeries need (the slow scripted ones left out), and the extras.
const LIBRARY: &[&str] = &[
    "boot-loader-protection.yaml",
    "no-unnecessary-services.yaml",
    "open-ports.yaml",
    "security-event-logging.yaml",
    "ssh-algorithms.yaml",
    "predefined-accounts.yaml",
    "web-http-methods.yaml",
    "log-transfer.yaml",
    "transport-layer-protection.yaml",
];

type Journal = Vec<Value>;

/// One forgery: what it forges, and the edit, which returns the index (in the edited
/// journal) of the record where `verify` must find it.
struct Forgery {
    name: &'static str,
    /// The action whose recorded answer it edits, if it edits one.
    action: Option<&'static str>,
    forge: fn(&mut Journal) -> usize,
}

/// The boot loader case's script step.
const BOOT_SCRIPT: &str = "the boot loader opens only with a password";
const NO_SERVICES: &str = "TC_NO_UNNECESSARY_SERVICE";
const BOOT: &str = "TC_BOOT_INT_MEM_1";
const EXTRA: &str = "TC_FORGERY_EXTRAS";
const LOGGING: &str = "TC_SECURITY_EVENT_LOGGING";
const ALGORITHMS: &str = "TC_PROTECT_DATA_INFO_TRANSFER_1";
const PORTS: &str = "TC_BVT_PORT_SCANNING";
const ACCOUNTS: &str = "TC_PREDEFINED_ACCOUNT_DELETION";
const METHODS: &str = "TC_NO_UNUSED_HTTP_METHODS";
const LOG_TRANSFER: &str = "TC_LOG_TRANS_TO_CENTR_STORAGE";
const TRANSPORT: &str = "TC_PROTECT_TRANSPORT_LAYER";
const TLS_AUDIT: &str = "audit the TLS server with hand-made hellos";

fn forgeries() -> Vec<Forgery> {
    vec![
        Forgery {
            name: "the outlet's read-back",
            action: Some("power"),
            forge: |j| edit(j, NO_SERVICES, "power-cycle the device", |o| o["state"] = "off".into()),
        },
        Forgery {
            name: "the time waited",
            action: Some("wait"),
            forge: |j| edit(j, LOGGING, "give the logger a moment to write", |o| o["waited_ms"] = 5.into()),
        },
        Forgery {
            name: "the key pressed at the boot loader (a script's call)",
            action: Some("console_send"),
            forge: |j| edit(j, BOOT, BOOT_SCRIPT, |o| call_of(o, "console_send", 0)["output"]["sent"] = "x".into()),
        },
        Forgery {
            name: "the weak boot loader's open prompt turned into a boot that goes on (a script's call)",
            action: Some("console_expect"),
            forge: |j| {
                edit(j, BOOT, BOOT_SCRIPT, |o| {
                    let stopped = &mut call_of(o, "console_expect", 1)["output"];
                    stopped["index"] = 2.into();
                    stopped["pattern"] = "Starting kernel".into();
                    stopped["matched_text"] = "Starting kernel".into();
                })
            },
        },
        Forgery {
            name: "a root shell's answer hidden from an absence check (on_timeout: pass)",
            action: Some("console_expect"),
            forge: |j| edit(j, EXTRA, "no root shell answers", |o| *o = json!({"matched": false, "tail": "exit"})),
        },
        Forgery {
            name: "the account a console login was made as",
            action: Some("console_login"),
            forge: |j| edit(j, EXTRA, "log in on the console", |o| o["user"] = "oper".into()),
        },
        Forgery {
            name: "a console login that went through made a console that cannot be logged out",
            action: Some("console_login"),
            forge: |j| {
                edit(j, EXTRA, "log in on the console", |o| {
                    let shell = json!({"account": "root", "prompt": "root@ru2:~#"});
                    *o = json!({"accepted": false, "user": o["user"], "still_logged_in": true, "prompt": "root@ru2:~#", "exits": 3,
                        "logged_out": [shell, shell, shell]});
                })
            },
        },
        Forgery {
            name: "a world-readable shadow file's mode",
            action: Some("console_run"),
            forge: |j| edit(j, EXTRA, "read the shadow file's mode", |o| o["output"] = "640".into()),
        },
        Forgery {
            name: "the insecure listeners cut from the device's socket list",
            action: Some("ssh_exec"),
            forge: |j| {
                edit(j, NO_SERVICES, "list the device's listening sockets", |o| {
                    let kept: Vec<&str> = o["stdout"]
                        .as_str()
                        .unwrap()
                        .lines()
                        .filter(|l| ![":21 ", ":23 ", ":80 ", ":161 "].iter().any(|p| l.contains(p)))
                        .collect();
                    o["stdout"] = format!("{}\n", kept.join("\n")).into();
                })
            },
        },
        Forgery {
            name: "a fetch that failed turned into a file",
            action: Some("ssh_fetch"),
            forge: |j| {
                edit(j, EXTRA, "fetch the password file", |o| {
                    use sha2::Digest;
                    let text = "root:x:0:0:root:/root:/bin/sh\n";
                    *o = json!({"path": "/etc/passwd", "len": text.len(), "sha256": hex::encode(sha2::Sha256::digest(text)), "text": text});
                })
            },
        },
        Forgery {
            name: "a device without su made to accept root's password",
            action: Some("ssh_su"),
            forge: |j| {
                edit(j, EXTRA, "switch to root with its password", |o| {
                    *o = json!({"user": "root", "accepted": true, "status": 0, "uid": 0, "asked_password": true, "response": ""})
                })
            },
        },
        Forgery {
            name: "an accepted SSH login said refused",
            action: Some("ssh_login"),
            forge: |j| edit(j, LOGGING, "log in with the right password (accepted)", |o| o["accepted"] = false.into()),
        },
        Forgery {
            name: "the weak server's algorithms replaced by the hardened one's",
            action: Some("ssh_audit"),
            forge: |j| {
                let hardened = j[finished(j, ALGORITHMS, "ru1", "read the server's algorithm proposal")]["output"].clone();
                edit(j, ALGORITHMS, "read the server's algorithm proposal", |o| {
                    for list in ["kex", "host_key", "ciphers", "macs"] {
                        o[list] = hardened[list].clone();
                    }
                })
            },
        },
        Forgery {
            name: "a forbidden cipher the weak server accepted said refused",
            action: Some("ssh_negotiate"),
            forge: |j| {
                edit(j, ALGORITHMS, "a client offering only a forbidden cipher is refused", |o| {
                    *o = json!({"negotiated": false, "detail": "the server closed the connection"})
                })
            },
        },
        Forgery {
            name: "the insecure TCP services found closed",
            action: Some("tcp_scan"),
            forge: |j| edit(j, NO_SERVICES, "scan the well-known ports of insecure TCP services", |o| o["open"] = json!([])),
        },
        Forgery {
            name: "the SNMP agent's UDP port found closed",
            action: Some("udp_scan"),
            forge: |j| {
                edit(j, PORTS, "scan the UDP ports of the management address", |o| {
                    o["open"] = json!([]);
                    o["not_closed"] = o["open_filtered"].clone();
                    o["closed"] = (o["closed"].as_u64().unwrap() + 1).into();
                })
            },
        },
        Forgery {
            name: "the default SNMP communities found unanswered",
            action: Some("snmp_probe"),
            forge: |j| {
                edit(j, NO_SERVICES, "ask the SNMP agent for sysDescr.0 over SNMPv1 and v2c with the default communities", |o| {
                    o["answered"] = json!([]);
                    for probe in o["probes"].as_array_mut().unwrap() {
                        probe["answered"] = false.into();
                    }
                })
            },
        },
        Forgery {
            name: "the weak web server's accepted TRACE turned into a refusal",
            action: Some("http_request"),
            forge: |j| {
                edit(j, METHODS, "send TRACE to the web server", |o| {
                    o["status"] = 405.into();
                    o["reason"] = "Method Not Allowed".into();
                })
            },
        },
        Forgery {
            name: "the weak device's missing log record said to have arrived",
            action: Some("syslog_receive"),
            forge: |j| {
                edit(j, LOG_TRANSFER, "the device's record of a refused login reaches the log server", |o| {
                    let login = &o["login"];
                    let text = format!(
                        "sshd[7]: Failed password for {} from {} port {} ssh2",
                        login["user"].as_str().unwrap(),
                        login["source_address"].as_str().unwrap(),
                        login["source_port"]
                    );
                    let record = json!({"peer": "127.0.0.1:514", "facility": 4, "severity": 6, "text": text});
                    o["received"] = 1.into();
                    o["records"] = json!([record]);
                    o["matching"] = json!([record]);
                })
            },
        },
        Forgery {
            name: "the weak TLS server's legacy versions and suites replaced by the hardened one's",
            action: Some("tls_audit"),
            forge: |j| {
                let hardened = j[finished(j, TRANSPORT, "ru1", TLS_AUDIT)]["output"].clone();
                edit(j, TRANSPORT, TLS_AUDIT, |o| {
                    for fact in ["versions", "accepted_versions", "refused_versions", "accepted_suites", "certificate"] {
                        o[fact] = hardened[fact].clone();
                    }
                })
            },
        },
        Forgery {
            name: "an idle shell the device left open said to be ended by it",
            action: Some("ssh_idle"),
            forge: |j| edit(j, EXTRA, "leave a shell idle for a moment", |o| o["ended"] = true.into()),
        },
        Forgery { name: "a value set", action: Some("set"), forge: |j| edit(j, EXTRA, "remember the limit", |o| o["limit"] = 4.into()) },
        Forgery {
            name: "an assertion's output that is not its spec (the open ports left out)",
            action: Some("assert"),
            forge: |j| edit(j, NO_SERVICES, "no insecure TCP service accepts connections", |o| o["value"] = json!([])),
        },
        Forgery {
            name: "a default account's accepted login said refused inside a script",
            action: Some("script"),
            forge: |j| {
                edit(j, ACCOUNTS, "every documented default account is refused over SSH", |o| {
                    for call in o["calls"].as_array_mut().unwrap().iter_mut().filter(|c| c["action"] == "ssh_login") {
                        call["output"]["accepted"] = false.into();
                    }
                })
            },
        },
        Forgery {
            name: "a step's range shifted past its first event",
            action: None,
            forge: |j| {
                let at = finished(j, NO_SERVICES, "ru2", "list the device's listening sockets");
                // Past the step's own first event: the events of other devices, side by
                // side, in its range are not its own, and leaving them out changes nothing.
                let first = j[at]["first_seq"].as_u64().unwrap();
                let own = j[..at]
                    .iter()
                    .filter(|e| e["type"] == "event" && device_of(e) == Some("ru2"))
                    .map(|e| e["event"]["seq"].as_u64().unwrap())
                    .find(|seq| *seq >= first)
                    .unwrap();
                j[at]["first_seq"] = (own + 1).into();
                at
            },
        },
        Forgery {
            name: "a step's range overlapping the one before",
            action: None,
            forge: |j| {
                let scan = finished(j, NO_SERVICES, "ru2", "scan the well-known ports of insecure TCP services");
                let at = finished(j, NO_SERVICES, "ru2", "no insecure TCP service accepts connections");
                j[at]["first_seq"] = j[scan]["first_seq"].clone();
                j[at]["last_seq"] = j[scan]["last_seq"].clone();
                at
            },
        },
        Forgery {
            name: "an event left out (a gap in the sequence numbers)",
            action: None,
            forge: |j| {
                // One of the scan's own events, with another of them after it. The devices
                // go side by side, so other devices' records interleave with the scan's:
                // the step is found by its own start, and its events by their device.
                let label = "scan the well-known ports of insecure TCP services";
                let scan = finished(j, NO_SERVICES, "ru2", label);
                let started = (0..scan)
                    .rev()
                    .find(|i| j[*i]["type"] == "step_started" && j[*i]["device"] == "ru2" && j[*i]["label"] == label)
                    .unwrap();
                let own: Vec<usize> = (started..scan).filter(|i| j[*i]["type"] == "event" && device_of(&j[*i]) == Some("ru2")).collect();
                assert!(own.len() >= 2, "the scan records at least two events");
                let dropped = own[0];
                j.remove(dropped);
                dropped
            },
        },
        Forgery {
            name: "a failing case dropped",
            action: None,
            forge: |j| {
                let start = j.iter().position(|e| e["type"] == "case_started" && e["case"] == NO_SERVICES && e["device"] == "ru2").unwrap();
                let end = j.iter().position(|e| e["type"] == "case_finished" && e["case"] == NO_SERVICES && e["device"] == "ru2").unwrap();
                // Its records and events gone (the other devices', in between, kept), the
                // rest numbered again so no gap shows.
                remove_device_records(j, start..=end, "ru2");
                renumber(j);
                // Found where the device's next case starts in its place.
                (start..j.len()).find(|i| j[*i]["type"] == "case_started" && j[*i]["device"] == "ru2").unwrap()
            },
        },
        Forgery {
            name: "the last cases dropped, the run said stopped by the operator",
            action: None,
            forge: |j| {
                let start = j.iter().position(|e| e["type"] == "case_started" && e["case"] == EXTRA).unwrap();
                let end = j.iter().rposition(|e| e["type"] == "case_finished").unwrap();
                remove_device_records(j, start..=end, "ru2");
                renumber(j);
                let at = j.len() - 1;
                j[at]["aborted"] = true.into();
                at
            },
        },
        Forgery {
            name: "a FAIL rewritten as INFRA",
            action: None,
            forge: |j| {
                edit(j, ALGORITHMS, "a client offering only a forbidden cipher is refused", |o| {
                    *o = json!({"error": {"class": "infra", "message": "ssh to ru2: connection lost"}})
                })
            },
        },
        Forgery {
            name: "a FAIL rewritten as ABORTED",
            action: None,
            forge: |j| {
                edit(j, ALGORITHMS, "a client offering only a forbidden cipher is refused", |o| {
                    *o = json!({"error": {"class": "aborted", "message": "stopped by the operator"}})
                })
            },
        },
        Forgery {
            name: "the identity a device reported",
            action: None,
            forge: |j| {
                let at = j.iter().position(|e| e["type"] == "device_reported" && e["device"] == "ru2").unwrap();
                j[at]["output"] = "ExampleCo RU-4400 firmware 9.9.9 (the certified one)".into();
                at
            },
        },
        Forgery {
            name: "the run's parameters (the TCP ports scanned)",
            action: None,
            forge: |j| {
                j[0]["parameters"]["ports"] = "22".into();
                // The first scan that uses them to finish (the devices go side by side).
                let devices: Vec<String> = j
                    .iter()
                    .filter(|e| e["type"] == "case_started" && e["case"] == PORTS)
                    .map(|e| e["device"].as_str().unwrap().to_string())
                    .collect();
                devices.iter().map(|device| finished(j, PORTS, device, "scan the management address")).min().unwrap()
            },
        },
        Forgery {
            name: "an event of one device moved into a step of another (the devices go side by side)",
            action: None,
            forge: |j| {
                // A step of the hardened device that ran a command over SSH: its command's
                // exit, moved into the next step the weak device starts after it, then
                // everything numbered again. The lanes' timing decides which steps overlap,
                // so the first such step with a weak device's step after it is taken.
                let ru = |i: usize, device: &str, kind: &str| j[i]["type"] == kind && j[i]["device"] == device;
                for started in (0..j.len()).filter(|i| ru(*i, "ru1", "step_started")) {
                    let Some(finished) = (started..j.len()).find(|i| ru(*i, "ru1", "step_finished")) else { continue };
                    let exit = (started..finished)
                        .find(|i| j[*i]["type"] == "event" && j[*i]["event"]["kind"] == "ssh_exit" && device_of(&j[*i]) == Some("ru1"));
                    let into = (finished..j.len()).find(|i| ru(*i, "ru2", "step_started"));
                    if let (Some(exit), Some(into)) = (exit, into) {
                        let event = j.remove(exit);
                        j.insert(into, event);
                        renumber(j);
                        // The hardened device's step is missing its command's end.
                        return finished - 1;
                    }
                }
                panic!("no step of ru1 ran an SSH command before a step of ru2 started")
            },
        },
        Forgery {
            name: "a case finished on another device than it started on",
            action: None,
            forge: |j| {
                let at = j.iter().position(|e| e["type"] == "case_finished" && e["case"] == ALGORITHMS && e["device"] == "ru1").unwrap();
                j[at]["device"] = "ru2".into();
                at
            },
        },
    ]
}

/// A test fails when an action a step can take has no forgery above.
#[test]
fn every_action_has_a_forgery() {
    let forged: Vec<&str> = forgeries().iter().filter_map(|f| f.action).collect();
    let missing: Vec<&str> = ActionKind::ALL.iter().map(|kind| kind.as_str()).filter(|name| !forged.contains(name)).collect();
    assert!(missing.is_empty(), "actions without a forgery in tests/forgeries.rs: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forged_answer_with_the_chain_rebuilt_and_resigned_is_tampered() {
    let config = SimLabConfig::fast().with_well_known_service_ports();
    let mut lab = SimLab::start(config).await.expect("start the sim lab (telnet/FTP/HTTP on 23/21/80 need root)");
    let tmp = tempfile::tempdir().unwrap();
    let rig_path = lab.write_rig(&tmp.path().join("lab")).unwrap();
    let rig = Rig::load(&rig_path).unwrap();
    let extras = tmp.path().join("forgery-extras.yaml");
    std::fs::write(&extras, EXTRAS).unwrap();
    let mut plans: Vec<Plan> = LIBRARY.iter().map(|name| plan(name)).collect();
    plans.push(Plan::load(&extras).unwrap());
    // TCP: the well-known range and the devices' SSH ports; UDP: enough for SNMP.
    let params = [("ports", json!(format!("1-200,{}", simrun::high_ports(&lab)))), ("udp_ports", json!("1-200"))];
    let ran = simrun::run_on(rig.clone(), tempfile::tempdir().unwrap(), plans.clone(), &params, None).await;
    lab.stop().await;
    let weak = |case: &str| ran.result.cases.iter().find(|c| c.key.case == case && c.key.device == "ru2").map(|c| c.verdict);
    for case in [NO_SERVICES, BOOT, EXTRA, ALGORITHMS, PORTS, ACCOUNTS, METHODS, LOG_TRANSFER, TRANSPORT] {
        assert_eq!(weak(case), Some(Verdict::Fail), "{case} on the weak device is the finding to hide");
    }

    let public = tmp.path().join("lab.pub");
    proofrig_evidence::signing::generate(&tmp.path().join("lab.key"), &public).unwrap();
    let key = proofrig_evidence::signing::load_signing_key(&tmp.path().join("lab.key")).unwrap();
    let honest: Journal = ran.records.iter().map(|r| r.entry.clone()).collect();
    // The forger's tools are sound: the journal passed through them unedited verifies.
    let untouched = seal(&tmp.path().join("untouched"), &ran, &rig_path, honest.clone(), None, &key);
    let report = proofrig_evidence::verify_bundle(&untouched, Some(&key.verifying_key()));
    assert_eq!(report.status, Status::Verified, "{}", report.summary);

    let mut verified = Vec::new();
    for (n, forgery) in forgeries().iter().enumerate() {
        let mut journal = honest.clone();
        let at = (forgery.forge)(&mut journal);
        let bundle = seal(&tmp.path().join(format!("forged-{n}")), &ran, &rig_path, journal, Some(at), &key);
        let record = read_chain(&bundle.join("journal.jsonl")).unwrap().unwrap().0[at].n;
        let report = proofrig_evidence::verify_bundle(&bundle, Some(&key.verifying_key()));
        let failed = report.checks.iter().find(|c| c.state == CheckState::Failed);
        let caught = report.status == Status::Tampered
            && failed.is_some_and(|c| c.what == "verdicts replay from the journal" && c.record == Some(record));
        if !caught {
            verified.push(format!("{}: expected TAMPERED at record {record}, got {:?}: {}", forgery.name, report.status, report.summary));
        }
        if n == 0 {
            // As a regulator sees it: `proofrig verify` exits 1 and names the record.
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_proofrig"))
                .args(["verify"])
                .arg(&bundle)
                .arg("--key")
                .arg(&public)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(1), "{stdout}");
            let last = stdout.lines().last().unwrap_or_default();
            assert!(
                last.starts_with("TAMPERED: verdicts replay from the journal") && last.contains(&format!("journal record {record}:")),
                "{stdout}"
            );
        }
    }
    assert!(verified.is_empty(), "forgeries that were not caught where they are:\n{}", verified.join("\n"));
}

/// The recorded output of `label`'s StepFinished of `case` on the weak device, edited.
fn edit(journal: &mut Journal, case: &str, label: &str, change: impl FnOnce(&mut Value)) -> usize {
    let at = finished(journal, case, "ru2", label);
    change(&mut journal[at]["output"]);
    at
}

/// The `n`th call to `action` in a script step's output.
fn call_of<'o>(output: &'o mut Value, action: &str, n: usize) -> &'o mut Value {
    output["calls"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .filter(|c| c["action"] == action)
        .nth(n)
        .unwrap_or_else(|| panic!("no call {n} to {action}"))
}

/// The index of the (last attempt's) StepFinished of the main or restore step `label`.
fn finished(journal: &Journal, case: &str, device: &str, label: &str) -> usize {
    let started = journal
        .iter()
        .rposition(|e| e["type"] == "step_started" && e["case"] == case && e["device"] == device && e["label"] == label)
        .unwrap_or_else(|| panic!("no step `{label}` of {case} on {device}"));
    // The devices go side by side: the next StepFinished of the same case and device.
    started + journal[started..].iter().position(|e| e["type"] == "step_finished" && e["case"] == case && e["device"] == device).unwrap()
}

/// The device a journal record is about: a case's or step's, an event's channel's or outlet's.
fn device_of(entry: &Value) -> Option<&str> {
    match entry["type"].as_str()? {
        "event" => entry["event"]["channel"]["device"].as_str().or(entry["event"]["device"].as_str()),
        _ => entry["device"].as_str(),
    }
}

/// Remove the records of `device` from `range` of the journal, leaving the other
/// devices' records (which interleave with them) in place.
fn remove_device_records(journal: &mut Journal, range: std::ops::RangeInclusive<usize>, device: &str) {
    let (start, end) = (*range.start(), *range.end());
    let mut index = 0;
    journal.retain(|entry| {
        let keep = !(start..=end).contains(&index) || device_of(entry) != Some(device);
        index += 1;
        keep
    });
}

/// Seal `journal` (made consistent first) as the run's bundle under `out`, signed with `key`.
fn seal(out: &Path, ran: &Ran, rig_path: &Path, mut journal: Journal, forged: Option<usize>, key: &ed25519_dalek::SigningKey) -> PathBuf {
    let rig_bytes = std::fs::read(rig_path).unwrap();
    let plans: Vec<(&Path, &[u8])> = ran.plans.iter().map(|p| (p.path.as_path(), p.bytes.as_slice())).collect();
    let writer = BundleWriter::create(out, &ran.result.run_id, (rig_path, &rig_bytes), &plans).unwrap();
    let inputs = writer.input_refs().clone();
    journal[0]["plans"] = serde_json::to_value(&inputs.plans).unwrap();
    journal[0]["rig"] = serde_json::to_value(&inputs.rig).unwrap();
    let result = make_consistent(&mut journal, ran, forged);
    for entry in &journal {
        writer.journal().append(entry).unwrap();
    }
    writer.seal(&result, key, &proofrig_report::Standard).unwrap().dir
}

/// The forger's work after the edit (of record `forged`): every spec resolved again from
/// the (edited) captures, every output that follows from its spec (assert, set) or its
/// calls (script) derived again, every step judged again, every case and the run rolled
/// up again, and the results to match.
fn make_consistent(journal: &mut Journal, ran: &Ran, forged: Option<usize>) -> RunResult {
    let mut params = BTreeMap::new();
    let mut only = None;
    // Per device: the devices go side by side, their records interleaved.
    let mut open: BTreeMap<String, (&Plan, &Case, Value)> = BTreeMap::new();
    let mut specs: BTreeMap<String, Value> = BTreeMap::new();
    let mut tallies: BTreeMap<String, CaseTally> = BTreeMap::new();
    let mut cases: Vec<(CaseKey, Verdict)> = Vec::new();
    let mut steps: BTreeMap<u64, (Verdict, String)> = BTreeMap::new();
    for (index, entry) in journal.iter_mut().enumerate() {
        let device = entry["device"].as_str().unwrap_or_default().to_string();
        match entry["type"].as_str().unwrap() {
            "run_started" => {
                params = serde_json::from_value(entry["parameters"].clone()).unwrap();
                only = entry["only_device"].as_str().map(String::from);
            }
            "case_started" => {
                let plan = ran.plans.iter().find(|p| p.spec.plan == entry["plan"]).unwrap();
                let this = plan.spec.cases.iter().find(|c| c.id == entry["case"]).unwrap();
                open.insert(device.clone(), (plan, this, base_scope(plan, &params, &device, ran.rig.device(&device).unwrap())));
                tallies.insert(device, CaseTally::new(this));
            }
            // (A case forged to finish on another device leaves that device's own case
            // closed to the forger's tools: its records are left as they are.)
            "step_started" => {
                let Some((_, this, scope)) = open.get(&device) else { continue };
                let step = step_of(this, entry);
                if !entry["spec"].is_null() {
                    entry["spec"] = proofrig_plan::scope::resolve(step, scope).unwrap_or(Value::Null);
                }
                specs.insert(device, entry["spec"].clone());
            }
            "step_finished" => {
                let Some((_, this, scope)) = open.get_mut(&device) else { continue };
                let spec = specs[&device].clone();
                let step = step_of(this, entry);
                // The outputs that follow from the spec or the calls alone, but the forged one.
                let derived = entry["output"].get("skipped").is_none() && entry["output"].get("error").is_none() && forged != Some(index);
                match &step.action {
                    Action::Script(_) if derived => entry["output"] = run_script_again(step, scope, &entry["output"]),
                    Action::Assert(assert) if derived => entry["output"] = assert.output(&spec),
                    Action::Set(_) if derived => entry["output"] = spec.clone(),
                    _ => {}
                }
                let judged = judge(step.kind(), &spec, &entry["output"]);
                entry["verdict"] = serde_json::to_value(judged.verdict).unwrap();
                entry["message"] = judged.message.clone().into();
                steps.insert(index as u64, (judged.verdict, judged.message.clone()));
                let attempt = entry["attempt"].as_u64().unwrap() as u32;
                if !CaseTally::retries(step, judged.verdict, attempt) {
                    let tally = tallies.get_mut(&device).unwrap();
                    match serde_json::from_value(entry["phase"].clone()).unwrap() {
                        Phase::Steps => tally.main_step(step, &judged),
                        Phase::Restore => tally.restore_step(&judged),
                    }
                    if !spec.is_null() {
                        absorb(scope, step, &spec, &entry["output"]);
                    }
                }
            }
            "case_finished" => {
                let Some((_, this, _)) = open.remove(&device) else { continue };
                let key = CaseKey {
                    plan: entry["plan"].as_str().unwrap().into(),
                    case: entry["case"].as_str().unwrap().into(),
                    device: entry["device"].as_str().unwrap().into(),
                };
                if this.skip.is_none() && entry["unready"].is_null() {
                    let outcome = tallies.remove(&device).unwrap().outcome();
                    entry["verdict"] = serde_json::to_value(outcome.verdict).unwrap();
                    entry["rollup"] = serde_json::to_value(outcome.rollup).unwrap();
                    entry["checks_passed"] = outcome.checks_passed.into();
                }
                cases.push((key, serde_json::from_value(entry["verdict"].clone()).unwrap()));
            }
            "run_finished" => {
                let missing = select(&ran.plans, &ran.rig, only.as_deref()).len().saturating_sub(cases.len());
                let rollup = Rollup::of(cases.iter().map(|(_, v)| *v).chain(std::iter::repeat_n(Verdict::NotRun, missing)));
                entry["verdict"] = serde_json::to_value(rollup.verdict).unwrap();
                entry["rollup"] = serde_json::to_value(&rollup).unwrap();
            }
            _ => {}
        }
    }
    let mut result = ran.result.clone();
    result.aborted = journal.last().is_some_and(|e| e["aborted"] == true);
    result.cases.retain(|c| cases.iter().any(|(k, _)| *k == c.key));
    for case in &mut result.cases {
        case.verdict = cases.iter().find(|(k, _)| *k == case.key).unwrap().1;
        for step in &mut case.steps {
            if let Some((verdict, message)) = steps.get(&step.record) {
                (step.verdict, step.message) = (*verdict, message.clone());
            }
        }
    }
    result.rollup = Rollup::of(result.cases.iter().map(|c| c.verdict));
    result.verdict = result.rollup.verdict;
    result
}

/// Number the journal's events again from 0, in order, and move every range (steps'
/// and script calls') with them, as a forger who removed events does.
fn renumber(journal: &mut Journal) {
    let old: Vec<u64> = journal.iter().filter(|e| e["type"] == "event").map(|e| e["event"]["seq"].as_u64().unwrap()).collect();
    let new_of = |seq: u64| old.partition_point(|o| *o < seq) as u64;
    let move_range = |range: &mut Value| {
        if let (Some(first), Some(last)) = (range["first_seq"].as_u64(), range["last_seq"].as_u64()) {
            let (first, end) = (new_of(first), new_of(last + 1));
            range["first_seq"] = first.into();
            range["last_seq"] = (end.max(first) as i64 - 1).into();
        }
    };
    let mut next = 0u64;
    for entry in journal.iter_mut() {
        if entry["type"] == "event" {
            entry["event"]["seq"] = next.into();
            next += 1;
        }
        move_range(entry);
        for call in entry.pointer_mut("/output/calls").and_then(Value::as_array_mut).into_iter().flatten() {
            move_range(call);
        }
    }
}

fn step_of<'a>(case: &'a Case, entry: &Value) -> &'a Step {
    let index = entry["index"].as_u64().unwrap() as usize;
    match serde_json::from_value(entry["phase"].clone()).unwrap() {
        Phase::Steps => &case.steps[index],
        Phase::Restore => &case.restore[index],
    }
}

/// A script's output as the script gives it from the recorded calls (edited or not).
fn run_script_again(step: &Step, scope: &Value, recorded: &Value) -> Value {
    struct Recorded(Vec<Value>);
    impl Caller for Recorded {
        fn call(&mut self, _: &CallRequest) -> Answer {
            if self.0.is_empty() {
                return Answer::Stop(
                    json!({"error": {"class": "error", "message": "the forgery asks for a call the record does not have"}}),
                );
            }
            let call = self.0.remove(0);
            Answer::Done {
                output: call["output"].clone(),
                first_seq: call["first_seq"].as_u64().unwrap(),
                last_seq: call["last_seq"].as_u64().unwrap(),
            }
        }
    }
    let calls = recorded["calls"].as_array().cloned().unwrap_or_default();
    let stop_after = recorded["cancelled_at_operation"].as_u64().map(|ops| (ops, json!({"error": recorded["error"]})));
    let control = Control { cancel: Arc::new(AtomicU8::new(script::RUNNING)), timeout: Duration::ZERO, stop_after };
    script::evaluate(step.script().unwrap(), step.script_origin.as_ref(), scope, Box::new(Recorded(calls)), control)
}

/// A file fetched from a real OpenSSH sshd (the simulated devices have no SFTP): its
/// recorded length, digest and text replay from the fetched bytes, and an edited text,
/// its chain rebuilt, does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_file_replays_from_its_bytes_and_an_edited_one_does_not() {
    let sshd = proofrig_testpeers::sshd::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ssh.pass"), sshd.password()).unwrap();
    let rig_text = format!(
        "rig: fetch-bench\ndevices:\n  oam1:\n    role: core\n    ssh: {{ host: 127.0.0.1, port: {}, user: {}, password: {{ file: ssh.pass }}, host_key: \"{}\" }}\n",
        sshd.port(),
        sshd.user(),
        sshd.host_key_fingerprint()
    );
    std::fs::write(dir.path().join("rig.yaml"), rig_text).unwrap();
    let rig = Rig::load(&dir.path().join("rig.yaml")).unwrap();
    let plan_text = r#"
plan: fetch
title: A file fetched over SFTP
cases:
  - id: TC_FETCH
    title: The password file is fetched and lists root
    scas: { spec: TS 33.117, clause: "4.2", test_name: TC_FETCH, requirement: "none, a test of replay" }
    purpose: Record a fetched file.
    expected: root is listed.
    evidence: The journal.
    steps:
      - name: fetch the password file
        ssh_fetch: { path: /etc/passwd }
        capture: passwd
      - name: the file lists root
        assert: { value: "${passwd.text}", matches: "(^|\n)root:" }
"#;
    let plans = vec![Plan::parse("fetch.yaml", plan_text).unwrap()];
    let ran = simrun::run_on(rig, dir, plans, &[], None).await;
    assert_eq!(ran.result.cases[0].verdict, Verdict::Pass, "{}", ran.result.cases[0].evidence_excerpt);
    simrun::assert_replays(&ran);
    let forged = simrun::rewrite(&ran, |entry| {
        if entry["type"] == "step_finished" && entry["output"]["text"].is_string() {
            entry["output"]["text"] = "root:x:0:0:root:/root:/bin/sh\n".into();
        }
    });
    let err = proofrig_evidence::replay::replay(&ran.plans, &ran.rig, &forged).expect_err("an edited file text is caught");
    assert!(err.to_string().contains("the recorded text of the file is not the file's bytes"), "{err}");
}
