//! The TS 33.117 library's plans on the simulated lab: PASS on the hardened devices,
//! FAIL on the weak ones with the finding named, INFRA (never PASS) when the device
//! cannot be reached, and every verdict recomputed from the journal by `replay`.
//!
//! The lab runs with the weak devices' telnet, FTP, HTTP and SNMP on their well-known ports
//! (as a real device has them), on a random 127.A.B.x block so that labs running at
//! once never share an address. Ports below 1024: the tests run as root.

mod simrun;

use proofrig_evidence::record::Phase;
use proofrig_simlab::{SimLab, SimLabConfig};
use proofrig_verdict::Verdict;
use simrun::{plan, rig_of, verdict, Ran};

/// How long the hardened consoles keep an idle login shell (the rig declares it).
const IDLE_TIMEOUT_S: u64 = 2;

async fn lab() -> SimLab {
    let config =
        SimLabConfig::fast().with_well_known_service_ports().with_console_idle_timeout(std::time::Duration::from_secs(IDLE_TIMEOUT_S));
    SimLab::start(config).await.expect("start the sim lab (telnet/FTP/HTTP on 23/21/80 need root)")
}

async fn run(lab: &SimLab, name: &str) -> Ran {
    simrun::run(lab, vec![plan(name)], &[]).await
}

async fn run_on(rig: proofrig_model::rig::Rig, dir: tempfile::TempDir, plans: Vec<proofrig_plan::Plan>, only: Option<&str>) -> Ran {
    simrun::run_on(rig, dir, plans, &[], only).await
}

/// Label and verdict of each step the case ran on `device`, restore steps included.
fn steps(ran: &Ran, device: &str) -> Vec<(Phase, String, Verdict)> {
    let case = ran.result.cases.iter().find(|c| c.key.device == device).unwrap();
    case.steps.iter().map(|s| (s.phase, s.label.clone(), s.verdict)).collect()
}

/// The recorded output of the step labelled `label` of the case on `device`.
fn output(ran: &Ran, device: &str, label: &str) -> serde_json::Value {
    let case = ran.result.cases.iter().find(|c| c.key.device == device).unwrap();
    let step = case.steps.iter().find(|s| s.label == label).unwrap_or_else(|| panic!("{device}: no step `{label}`"));
    ran.records.iter().find(|r| r.n == step.record).expect("the step's record").entry["output"].clone()
}

/// Checks that `replay` recomputes the recorded verdicts. With PROOFRIG_SHOW_EVIDENCE
/// set, also prints each case's evidence excerpt (what a report shows).
fn assert_replays(ran: &Ran) {
    if std::env::var_os("PROOFRIG_SHOW_EVIDENCE").is_some() {
        for case in &ran.result.cases {
            eprintln!("=== {} on {}: {}\n{}\n", case.key.case, case.key.device, case.verdict, case.evidence_excerpt);
        }
    }
    simrun::assert_replays(ran);
}

fn assert_hardened_pass_weak_fail(ran: &Ran) {
    for hardened in ["ru1", "core1"] {
        let (v, why) = verdict(ran, hardened);
        assert_eq!(v, Verdict::Pass, "{hardened}: {why}");
    }
    for weak in ["ru2", "core2"] {
        let (v, why) = verdict(ran, weak);
        assert_eq!(v, Verdict::Fail, "{weak}: {why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unnecessary_services_finds_telnet_ftp_http_and_snmp_before_and_after_a_restart() {
    let mut lab = lab().await;
    let ran = run(&lab, "no-unnecessary-services.yaml").await;
    assert_hardened_pass_weak_fail(&ran);

    let (_, why) = verdict(&ran, "ru2");
    let ru2 = lab.device("ru2").unwrap().spec().management_ip;
    // From outside: the scan names the open ports, before and after the restart.
    assert!(why.contains("insecure services accept connections on the management address"), "{why}");
    assert!(why.contains("found [21,23,80], expected []"), "the ports found are named: {why}");
    assert!(why.contains("after a restart, insecure services accept connections"), "{why}");
    // From inside: the device's own socket list names the listener.
    assert!(why.contains(&format!("found `{ru2}:21` matching")), "the socket found is named: {why}");
    assert!(why.contains("23 telnet"), "the message says which service each port is: {why}");
    // SNMP: the weak devices' agent answers both versions with both default
    // communities, before and after the restart; nothing answers on a hardened one.
    let answered = serde_json::json!(["v1/public", "v1/private", "v2c/public", "v2c/private"]);
    for label in
        ["ask the SNMP agent for sysDescr.0 over SNMPv1 and v2c with the default communities", "ask the SNMP agent again after the restart"]
    {
        for weak in ["ru2", "core2"] {
            assert_eq!(output(&ran, weak, label)["answered"], answered, "{weak}: {label}");
        }
        for hardened in ["ru1", "core1"] {
            let probe = output(&ran, hardened, label);
            assert_eq!(
                (probe["answered"].clone(), probe["port_unreachable"].clone()),
                (serde_json::json!([]), serde_json::json!(true)),
                "{hardened}: {label}"
            );
            assert_eq!(probe["probes"].as_array().map(Vec::len), Some(4), "{hardened}: every request was sent: {probe}");
        }
    }
    assert!(why.contains("the device's SNMP agent answers SNMPv1/v2c"), "{why}");
    assert!(why.contains("after a restart, the device's SNMP agent answers SNMPv1/v2c"), "{why}");
    // The weak device's socket list shows the agent's UDP socket, with its program.
    let sockets = output(&ran, "ru2", "list the device's listening sockets")["stdout"].as_str().unwrap_or_default().to_string();
    assert!(sockets.contains(&format!("udp   UNCONN 0      0      {ru2}:161")), "{sockets}");

    // The restart really happened on every device, and the checks after it ran.
    for device in ["ru1", "ru2", "core1", "core2"] {
        let labels = steps(&ran, device);
        for expected in [
            "power-cycle the device",
            "wait until the device answers over SSH again",
            "scan the insecure TCP ports again after the restart",
        ] {
            assert!(
                labels.iter().any(|(phase, label, v)| *phase == Phase::Steps && label == expected && *v == Verdict::Pass),
                "{device}: {expected}: {labels:?}"
            );
        }
    }
    let power_cycles = ran
        .records
        .iter()
        .filter(|r| r.entry["type"] == "event" && r.entry["event"]["kind"] == "power" && r.entry["event"]["action"] == "cycle-off")
        .count();
    assert!(power_cycles >= 4, "every device was power-cycled through the PDU: {power_cycles}");
    assert_replays(&ran);

    // Which SNMP requests were answered follows from the recorded datagrams: a journal
    // that claims a weak device's agent answered nothing, or that drops the agent's
    // answers, chain recomputed, does not replay.
    let is_probe = |entry: &serde_json::Value| entry["type"] == "step_finished" && entry["output"]["probes"].is_array();
    let silenced = simrun::rewrite(&ran, |entry| {
        if is_probe(entry) && entry["output"]["answered"] != serde_json::json!([]) {
            entry["output"]["answered"] = serde_json::json!([]);
            for probe in entry["output"]["probes"].as_array_mut().unwrap() {
                probe["answered"] = false.into();
            }
        }
    });
    let err = proofrig_evidence::replay::replay(&ran.plans, &ran.rig, &silenced).expect_err("hidden SNMP answers are caught");
    assert!(err.to_string().contains("which SNMP requests were answered differs from the datagrams received"), "{err}");
    let dropped = simrun::rewrite(&ran, |entry| {
        if entry["type"] == "event" && entry["event"]["kind"] == "datagram" && entry["event"]["direction"] == "in" {
            entry["event"]["data"] = "".into();
        }
    });
    let err = proofrig_evidence::replay::replay(&ran.plans, &ran.rig, &dropped).expect_err("answers removed from the datagrams are caught");
    assert!(err.to_string().contains("which SNMP requests were answered differs"), "{err}");
    let reachable = simrun::rewrite(&ran, |entry| {
        if is_probe(entry) && entry["output"]["port_unreachable"] == true {
            entry["output"]["port_unreachable"] = false.into();
        }
    });
    let err = proofrig_evidence::replay::replay(&ran.plans, &ran.rig, &reachable).expect_err("a forged `port_unreachable` is caught");
    assert!(err.to_string().contains("the recorded `port_unreachable` differs"), "{err}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_event_logging_needs_a_new_record_of_each_login() {
    let mut lab = lab().await;
    let ran = run(&lab, "security-event-logging.yaml").await;
    assert_hardened_pass_weak_fail(&ran);

    // Hardened: the record of the accepted login itself is the evidence shown, found by
    // the address and source port the attempt came from.
    let (_, why) = verdict(&ran, "ru1");
    let login = output(&ran, "ru1", "log in with the right password (accepted)");
    let (address, port) = (login["source_address"].as_str().unwrap(), login["source_port"].as_u64().unwrap());
    assert!(address.starts_with("127."), "{login}");
    assert!(why.contains(&format!("Accepted password for oper from {address} port {port} ssh2")), "{why}");
    // Weak: it logs accepted logins but not refused ones, and the finding says so.
    let (_, why) = verdict(&ran, "core2");
    assert!(
        why.contains("the refused login of `prf-log-probe` added no record with a timestamp, the user name and the source address to /var/log/auth.log: 0 is not greater than 0"),
        "{why}"
    );
    assert!(!why.contains("the accepted login of `oper` added no record"), "accepted logins are logged: {why}");
    let log = lab.device("ru1").unwrap().device().os().auth_log();
    assert!(log.iter().any(|r| r.user == "prf-log-probe"), "the probe really tried on ru1");
    assert_replays(&ran);

    // The source a later step picks the record by is the one the authentication
    // event recorded: a journal whose login output names another port, with the
    // chain recomputed, does not replay.
    let forged = simrun::rewrite(&ran, |entry| {
        if entry["type"] == "step_finished" && entry["output"]["source_port"] == port {
            entry["output"]["source_port"] = (port ^ 1).into();
        }
    });
    let err = proofrig_evidence::replay::replay(&ran.plans, &ran.rig, &forged).expect_err("a forged source port is caught");
    assert!(err.to_string().contains("source of the login attempt differs"), "{err}");

    // Records from the first run do not make a second run pass on their own: each
    // run counts what its own attempts added, and the hardened device adds again.
    let again = run(&lab, "security-event-logging.yaml").await;
    assert_hardened_pass_weak_fail(&again);
    assert_replays(&again);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_loader_asks_for_a_password_on_hardened_and_opens_on_weak() {
    let mut lab = lab().await;
    let ran = run(&lab, "boot-loader-protection.yaml").await;
    assert_hardened_pass_weak_fail(&ran);

    let (_, why) = verdict(&ran, "ru2");
    assert!(why.contains("stopping autoboot opened the boot loader's command prompt (`=>`) without asking for any password"), "{why}");
    // What each console wait of the decision matched, in order.
    let label = "the boot loader opens only with a password";
    let waits = |device: &str| -> Vec<String> {
        output(&ran, device, label)["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["action"] == "console_expect")
            .map(|c| c["output"]["matched_text"].as_str().unwrap_or_default().trim().to_string())
            .collect()
    };
    // Hardened: the countdown, then a password request, and the wrong one booted on to the login prompt.
    let core1 = waits("core1");
    assert_eq!(core1.len(), 3, "{core1:?}");
    assert!(core1[0].contains("autoboot"), "{core1:?}");
    assert_eq!(&core1[1..], ["Password:", "login:"], "{core1:?}");
    let passed = output(&ran, "core1", label)["passed"].clone();
    for held in [
        "stopping autoboot led to a password request, not to the boot loader's prompt",
        "a wrong password did not open the boot loader (it led to `login:`)",
    ] {
        assert!(passed.as_array().unwrap().contains(&held.into()), "a green row says what was verified: {passed}");
    }
    // Weak: the key opened the prompt, and the case stopped at the finding: nothing
    // was typed into the open prompt (the key press is the only thing sent).
    let ru2 = waits("ru2");
    assert_eq!(ru2.get(1).map(String::as_str), Some("=>"), "{ru2:?}");
    let sent = output(&ran, "ru2", label)["calls"].as_array().unwrap().iter().filter(|c| c["action"] == "console_send").count();
    assert_eq!(sent, 1, "only the key that stops autoboot was sent to the weak device");
    // Both were booted normally again afterwards.
    for device in ["ru1", "ru2", "core1", "core2"] {
        let restore: Vec<_> = steps(&ran, device).into_iter().filter(|(p, _, _)| *p == Phase::Restore).collect();
        assert_eq!(restore.len(), 2, "{device}: {restore:?}");
        assert!(restore.iter().all(|(_, _, v)| *v == Verdict::Pass), "{device}: {restore:?}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_cannot_be_reached_is_infra_never_pass() {
    let mut lab = lab().await;
    // Switched off at the PDU: nothing answers on its address, which must not read as
    // "no insecure service listens" nor as "nothing to log".
    for name in ["no-unnecessary-services.yaml", "security-event-logging.yaml"] {
        lab.set_power("ru1", false).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rig = rig_of(&lab, dir.path(), |text| text);
        let ran = run_on(rig, dir, vec![plan(name)], Some("ru1")).await;
        let (v, why) = verdict(&ran, "ru1");
        assert_eq!(v, Verdict::Infra, "{name}: {why}");
        assert!(why.contains("Connection refused") || why.contains("connect"), "{name}: the reason is given: {why}");
        assert_replays(&ran);
    }
    // The services case's restore leaves the device powered, as the case found it.
    lab.set_power("ru1", false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rig = rig_of(&lab, dir.path(), |text| text);
    run_on(rig, dir, vec![plan("no-unnecessary-services.yaml")], Some("ru1")).await;
    assert!(lab.device("ru1").unwrap().device().is_powered());

    // A console that cannot be opened: the boot loader cannot be observed.
    let dir = tempfile::tempdir().unwrap();
    let console = lab.device("core1").unwrap().console_path().unwrap().display().to_string();
    let rig = rig_of(&lab, dir.path(), |text| text.replace(&console, "/dev/pts/proofrig-no-such-console"));
    let ran = run_on(rig, dir, vec![plan("boot-loader-protection.yaml")], Some("core1")).await;
    let (v, why) = verdict(&ran, "core1");
    assert_eq!(v, Verdict::Infra, "{why}");
    assert!(why.contains("proofrig-no-such-console"), "{why}");
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_ports_finds_the_weak_devices_snmp_agent_in_the_udp_scan() {
    let mut lab = lab().await;
    // TCP: the well-known range and the devices' SSH and (documented, high) web ports,
    // to keep the run short; UDP: the plan's own range.
    let tcp_ports = format!("1-1024,{}", simrun::high_ports(&lab));
    let ran = simrun::run(&lab, vec![plan("open-ports.yaml")], &[("ports", serde_json::json!(tcp_ports))]).await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "scan the UDP ports of the management address";
    for hardened in ["ru1", "core1"] {
        let scan = output(&ran, hardened, label);
        assert_eq!(
            (scan["not_closed"].clone(), scan["closed"].clone()),
            (serde_json::json!([]), scan["scanned"].clone()),
            "{hardened}: every UDP port is closed: {scan}"
        );
    }
    for weak in ["ru2", "core2"] {
        let scan = output(&ran, weak, label);
        assert_eq!(scan["open"], serde_json::json!([161]), "{weak}: the SNMP agent answers the scan's probe: {scan}");
        assert!(scan["scanned"].as_u64().unwrap() > 1000, "{scan}");
    }
    let (_, why) = verdict(&ran, "ru2");
    assert!(why.contains("UDP ports that answer or stay silent (not closed) differ from the vendor's documentation"), "{why}");
    assert!(why.contains("unexpected: 161"), "the undocumented UDP port is named: {why}");
    assert_replays(&ran);

    // The open ports follow from the answers recorded: a journal that hides the agent's
    // answer, chain recomputed, does not replay.
    let hidden = simrun::rewrite(&ran, |entry| {
        if entry["type"] == "step_finished" && entry["output"]["open"] == serde_json::json!([161]) {
            entry["output"]["open"] = serde_json::json!([]);
            entry["output"]["not_closed"] = serde_json::json!([]);
        }
    });
    let err = proofrig_evidence::replay::replay(&ran.plans, &ran.rig, &hidden).expect_err("a hidden open UDP port is caught");
    assert!(err.to_string().contains("the recorded open UDP ports differ from the answers on the wire"), "{err}");
    lab.stop().await;
}

/// The account, log and confidential data cases (4.2.3.2.2, 4.2.3.2.3, 4.2.3.4.1.2,
/// 4.2.3.4.2.1, 4.2.3.6.3, 4.2.4.2.2): PASS on the hardened devices, FAIL on the weak ones
/// with every finding named, and neither a password hash nor root's password in the
/// journal: the password store is read as name and scheme only, and root's password
/// goes to `grep -F -f -` on standard input, by reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_cases_name_every_finding_and_record_no_password_hash() {
    let mut lab = lab().await;
    let cases: [(&str, &[&str]); 6] = [
        (
            "confidential-data.yaml",
            &[
                "/etc/proofrig/device.conf holds root's password in clear text and is mode 666: every user may read it",
                "/etc/shadow holds password hashes and is mode 644: every user may read it",
            ],
        ),
        (
            "password-storage.yaml",
            &["support's password is stored with MD5 crypt ($1$)", "guest has an empty password field in /etc/shadow"],
        ),
        ("unambiguous-accounts.yaml", &["user id 0 is shared by the accounts root, support"]),
        ("account-protection.yaml", &["guest can log in (shell /bin/sh) and has an empty password field in /etc/shadow"]),
        ("security-log-protection.yaml", &["/var/log/auth.log is mode 644, owner root, group adm: other users have r-- on it"]),
        (
            "system-account-identification.yaml",
            &[
                "user id 0 is not root's alone: support has it too",
                "the services syslogd, ftpd share the account daemon",
                "syslogd (process 310) runs under daemon, not under its documented account syslog",
            ],
        ),
    ];
    let hash = regex::Regex::new(r"\$(1|5|6|y|2[aby])\$[./A-Za-z0-9]{4,}").unwrap();
    for (name, findings) in cases {
        let ran = run(&lab, name).await;
        assert_hardened_pass_weak_fail(&ran);
        let (_, why) = verdict(&ran, "core2");
        for finding in findings {
            assert!(why.contains(finding), "{name}: the finding is named: {why}");
        }
        assert_replays(&ran);
        let journal = std::fs::read_to_string(&ran.journal_path).unwrap();
        assert!(!hash.is_match(&journal), "{name}: a password hash is in the journal: {:?}", hash.find(&journal));
        let root_password = lab.device("core2").unwrap().secret("root_password").unwrap().to_string();
        assert!(!journal.contains(&root_password), "{name}: root's password is in the journal");
    }
    // Where the rig's SSH user may not read /etc/shadow (hardened), the store was read
    // on the console as root; where it may (weak), over SSH.
    let ran = run(&lab, "password-storage.yaml").await;
    let label = "every stored password uses a strong salted hash";
    let on_console = |device: &str| {
        output(&ran, device, label)["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["action"] == "console_run" && c["output"]["exit_status"] == 0)
    };
    assert!(on_console("ru1") && !on_console("ru2"), "{}", output(&ran, "ru1", label));
    let (_, why) = verdict(&ran, "ru1");
    assert!(why.contains("root: SHA-512 crypt ($6$), a salted one-way hash"), "{why}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weak_console_login_shows_a_refused_password_and_the_hardened_one_does_not() {
    let mut lab = lab().await;
    let ran = run(&lab, "password-display.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let typed = "Prf-typed-9Kq4-not-a-password";
    for device in ["ru1", "core1"] {
        let (_, why) = verdict(&ran, device);
        // The device refused the typed line as a password: the check ran on a real prompt.
        assert!(why.contains("showed nothing of the password typed at its prompt and answered `Login incorrect`"), "{device}: {why}");
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("showed the password typed at its prompt in clear"), "{device}: {why}");
        assert!(why.contains(&format!("password '{typed}'")), "the finding shows what the console printed: {why}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hardened_console_ends_an_idle_session_and_the_weak_one_keeps_it_open() {
    let mut lab = lab().await;
    let ran = run(&lab, "session-inactivity-timeout.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "an idle console session is ended by the device";
    for device in ["ru1", "core1"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("was ended by the device"), "{device}: {why}");
        // The declared timeout was waited out before looking, with nothing typed.
        let calls = output(&ran, device, label)["calls"].as_array().unwrap().clone();
        let waited: Vec<_> = calls.iter().filter(|c| c["action"] == "wait").map(|c| c["output"]["waited_ms"].as_u64().unwrap()).collect();
        assert_eq!(waited, [IDLE_TIMEOUT_S * 1000 + 1500], "{device}: {calls:?}");
        let ended = calls.iter().find(|c| c["action"] == "console_expect").unwrap();
        assert!(ended["output"]["before"].as_str().unwrap().contains("auto-logout"), "{device}: {ended}");
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("was still open after"), "{device}: {why}");
    }
    // Over SSH too: the hardened devices end an idle interactive shell, the weak ones
    // keep it open until the step closes it; both showed a prompt first.
    let label = "an idle SSH session is ended by the device";
    for (device, ends) in [("ru1", true), ("core1", true), ("ru2", false), ("core2", false)] {
        let calls = output(&ran, device, label)["calls"].as_array().unwrap().clone();
        let idle = calls.iter().find(|c| c["action"] == "ssh_idle").unwrap_or_else(|| panic!("{device}: {calls:?}"));
        assert_eq!(idle["output"]["prompt_seen"], true, "{device}: {idle}");
        assert_eq!(idle["output"]["ended"], ends, "{device}: {idle}");
        assert_eq!(idle["output"]["idle_ms"], IDLE_TIMEOUT_S * 1000 + 1500, "{device}: {idle}");
    }
    let (_, why) = verdict(&ran, "ru2");
    assert!(why.contains("the SSH session of oper was still open after"), "{why}");
    assert_replays(&ran);
    // A journal saying the weak device ended the idle shell does not replay.
    let forged = simrun::rewrite(&ran, |entry| {
        let calls = entry.get_mut("output").and_then(|o| o.get_mut("calls")).and_then(|c| c.as_array_mut());
        for call in calls.into_iter().flatten() {
            if call["action"] == "ssh_idle" && call["output"]["ended"] == false {
                call["output"]["ended"] = true.into();
            }
        }
    });
    let err = proofrig_evidence::replay::replay(&ran.plans, &ran.rig, &forged).expect_err("a forged end of the idle shell is caught");
    assert!(err.to_string().contains("the recorded prompt or end of the idle shell"), "{err}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_console_shell_on_hardened_and_leaves_it_running_on_weak() {
    let mut lab = lab().await;
    let ran = run(&lab, "session-logout.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "logging out ends the session and its shell";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        assert!(passed.contains("after exit the console showed its login prompt again"), "{device}: {passed}");
        assert!(passed.contains("is gone from the process list after its logout"), "{device}: {passed}");
        assert!(passed.contains("is gone once the session ended with exit"), "{device}: {passed}");
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("is still running after exit brought the login prompt back"), "{device}: {why}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_asks_for_a_password_on_hardened_and_lets_the_operator_through_on_weak() {
    let mut lab = lab().await;
    let ran = run(&lab, "privilege-escalation.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "root is reached only by authenticating";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        assert!(passed.contains("sudo -n refused to run a command as root for oper without a password"), "{device}: {passed}");
        assert!(passed.contains("a password is required"), "{device}: {passed}");
        // The set-user-ID list was read (passwd and sudo are on it) and holds no shell.
        assert!(passed.contains("none of the 2 set-user-ID root files is a shell"), "{device}: {passed}");
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("sudo ran a command as root for oper without asking for any password"), "{device}: {why}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_asks_for_the_current_password_on_hardened_and_not_on_weak() {
    let mut lab = lab().await;
    let ran = run(&lab, "password-changes.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    for device in ["ru1", "core1"] {
        let (_, why) = verdict(&ran, device);
        assert!(
            why.contains("passwd asked oper for the current password (`Current password:`) and refused a wrong one"),
            "{device}: {why}"
        );
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(
            why.contains("passwd asked oper for a new password (`New password:`) without asking for the current one"),
            "{device}: {why}"
        );
    }
    // The password was never changed: the operator still logs in with the rig's secret.
    let again = simrun::run(&lab, vec![plan("password-changes.yaml")], &[]).await;
    assert_hardened_pass_weak_fail(&again);
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_is_refused_the_privileged_operations_except_the_weak_shadow() {
    let mut lab = lab().await;
    let ran = run(&lab, "authorization-policy.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "the operator is refused the privileged operations";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        assert!(passed.contains("oper may not read the password hashes: `head -n 0 /etc/shadow` was refused"), "{device}: {passed}");
        assert!(passed.contains("oper may not signal init: `kill -0 1` was refused"), "{device}: {passed}");
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("was allowed to read the password hashes: `head -n 0 /etc/shadow` succeeded"), "{device}: {why}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

/// The kernel cases (TS 33.117 4.3.3.1.x) read `/proc/sys` and `/proc/mounts`: every
/// setting the weak devices have the wrong way round is named with the value read, and a
/// declared mount point with nothing mounted decides nothing (INCONCLUSIVE, never PASS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_cases_name_every_setting_and_cannot_pass_on_what_they_did_not_read() {
    let mut lab = lab().await;
    let cases: &[(&str, &[&str])] = &[
        ("ip-spoofing-mitigation.yaml", &["net.ipv4.conf.all.rp_filter = 0: reverse-path filtering is off"]),
        (
            "kernel-network-functions.yaml",
            &[
                "net.ipv4.icmp_echo_ignore_broadcasts = 0: the device answers broadcast pings",
                "net.ipv4.conf.default.accept_source_route = 1",
                "net.ipv4.ip_forward = 1: IP forwarding is on, and the rig declares the device no router",
            ],
        ),
        (
            "removable-media-auto-launch.yaml",
            &["an automounter runs, mounting removable media as they are inserted: udisksd (process 350, user root)"],
        ),
        ("syn-flood-prevention.yaml", &["net.ipv4.tcp_syncookies = 0: no SYN cookies"]),
        ("buffer-overflow-protection.yaml", &["kernel.randomize_va_space = 0: address space layout randomisation is off"]),
        (
            "external-mount-restrictions.yaml",
            &["/media/usb0 (vfat from /dev/sda1) is mounted without nosuid, nodev, noexec: its options are rw,relatime"],
        ),
    ];
    for &(name, findings) in cases {
        let ran = run(&lab, name).await;
        assert_hardened_pass_weak_fail(&ran);
        let (_, why) = verdict(&ran, "core2");
        for finding in findings {
            assert!(why.contains(finding), "{name}: the finding is named: {why}");
        }
        assert_replays(&ran);
    }
    let (_, why) = verdict(&run(&lab, "kernel-network-functions.yaml").await, "ru1");
    assert!(why.contains("net.ipv4.icmp_echo_ignore_broadcasts = 1: ICMP echo requests to a broadcast address are ignored"), "{why}");

    // A declared mount point with nothing mounted, and a router whose forwarding is on.
    let dir = tempfile::tempdir().unwrap();
    let rig = rig_of(&lab, dir.path(), |text| {
        text.replace("removable_mounts: [/media/usb0]", "removable_mounts: [/media/sd0]").replace("router: false", "router: true")
    });
    let ran = run_on(rig, dir, vec![plan("external-mount-restrictions.yaml"), plan("kernel-network-functions.yaml")], None).await;
    for case in ran.result.cases.iter().filter(|c| c.key.case == "TC_EXTERNAL_FILE_SYSTEM_MOUNT_RESTRICTIONS") {
        assert_eq!(case.verdict, Verdict::Inconclusive, "{}: {}", case.key.device, case.evidence_excerpt);
        assert!(case.evidence_excerpt.contains("nothing is mounted at /media/sd0"), "{}", case.evidence_excerpt);
    }
    let core2 = ran.result.cases.iter().find(|c| c.key.case == "TC_BROADCAST_ICMP_HANDLING" && c.key.device == "core2").unwrap();
    assert_eq!(core2.verdict, Verdict::Fail, "{}", core2.evidence_excerpt);
    assert!(
        !core2.evidence_excerpt.contains("net.ipv4.ip_forward = 1: IP forwarding is on"),
        "a router forwards: {}",
        core2.evidence_excerpt
    );
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_server_cases_pass_on_the_hardened_web_ui_and_name_each_finding_on_the_weak_one() {
    let mut lab = lab().await;
    // What each case finds on the weak device's web server, in its evidence.
    let findings: [(&str, &[&str]); 14] = [
        ("web-http-methods.yaml", &["the web server accepts TRACE"]),
        ("web-default-content.yaml", &["/phpinfo.php is served (status 200)"]),
        ("web-directory-listing.yaml", &["/static/ is a generated directory index"]),
        ("web-header-information.yaml", &["GoAhead-Webs/2.5.0"]),
        ("web-error-pages.yaml", &["the page-not-found error names the web server or its version"]),
        (
            "web-restricted-file-access.yaml",
            &[
                "/etc/passwd is served through a path with ../",
                "others may write what the web server serves under /var/www: [\"/var/www/cgi-bin\"]",
            ],
        ),
        // The cases that look inside the web server's host, over SSH.
        ("web-server-privileges.yaml", &["the httpd worker (process 341) runs under root, uid 0: with system privileges"]),
        ("web-add-ons.yaml", &["webdav.conf is loaded but not among the add-ons the product needs"]),
        ("web-no-compiler.yaml", &["/var/www/cgi-bin holds a compiler, interpreter or shell: [\"perl\", \"sh\"]"]),
        ("web-config-permissions.yaml", &["/etc/httpd/httpd.conf is mode 666, owner root, group root: other users have rights on it"]),
        ("web-file-type-mappings.yaml", &["extension(s) are mapped beyond the documented"]),
        ("web-ssi-exec.yaml", &["no configuration line disables the execution of commands"]),
        ("web-logging.yaml", &["the line has no timestamp"]),
        (
            "web-no-scripts-for-uploads.yaml",
            &["the upload directory /var/www/cgi-bin/upload lies inside the script directory /var/www/cgi-bin"],
        ),
    ];
    for (name, expected) in findings {
        let ran = run(&lab, name).await;
        assert_hardened_pass_weak_fail(&ran);
        for weak in ["ru2", "core2"] {
            let (_, why) = verdict(&ran, weak);
            for finding in expected {
                assert!(why.contains(finding), "{name} on {weak} names `{finding}`: {why}");
            }
        }
        assert_replays(&ran);
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_transfer_finds_the_hardened_devices_record_over_tls_and_none_from_the_weak() {
    let mut lab = lab().await;
    let ran = run(&lab, "log-transfer.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "the device's record of a refused login reaches the log server";
    // Hardened: the record of this very attempt (its source port) arrived over TLS,
    // and the TLS session is on record beside the decrypted bytes. Every device
    // declares the one log server, and the devices go side by side: each hardened one
    // still gets its own record (the lab host listens there for one step at a time).
    assert_eq!(ran.records[0].entry["side_by_side"], true);
    for device in ["ru1", "core1"] {
        let received = output(&ran, device, label);
        let login = &received["login"];
        assert_eq!((login["accepted"].as_bool(), received["transport"].as_str()), (Some(false), Some("tls")), "{device}: {received}");
        let wanted =
            format!("Failed password for oper from {} port {} ssh2", login["source_address"].as_str().unwrap(), login["source_port"]);
        assert!(received["matching"][0]["text"].as_str().unwrap().contains(&wanted), "{device}: {received}");
    }
    let tls_notes = ran.records.iter().filter(|r| {
        let event = &r.entry["event"];
        r.entry["type"] == "event"
            && event["kind"] == "note"
            && event["channel"]["channel"] == "syslog:tls"
            && event["text"].as_str().is_some_and(|t| t.contains("TLS connection from"))
    });
    assert!(tls_notes.count() >= 1, "the TLS session of the record is noted");
    // Weak: nothing arrives, and the finding names the attempt it waited for.
    let (_, why) = verdict(&ran, "ru2");
    assert!(why.contains("no record of the refused SSH login of `oper`") && why.contains("within 5000 ms"), "{why}");
    assert_replays(&ran);
    lab.stop().await;
}

/// TS 33.117 4.2.3.4.2.3: the weak devices' root still authorizes the vendor's factory
/// key (read on the console as root, where the operator may not) and their SNMP agent
/// answers the default communities; the hardened ones show neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_keys_and_default_communities_are_found_on_weak_and_absent_on_hardened() {
    let mut lab = lab().await;
    let ran = run(&lab, "predefined-authentication-attributes.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, "no vendor key opens a login")["passed"].to_string();
        assert!(
            passed.contains("/root/.ssh/authorized_keys (read on the console as root) does not hold the vendor's factory support key"),
            "{device}: {passed}"
        );
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(
            why.contains("/root/.ssh/authorized_keys (read on the console as root) still authorizes the vendor's factory support key"),
            "{device}: {why}"
        );
        assert!(why.contains("the device's SNMP agent answers the default communities"), "{device}: {why}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

/// TS 33.117 4.2.3.4.3.3: the right password, shown real first, is refused after the
/// declared number of wrong ones on the hardened devices (and works again after the
/// declared delay); the weak devices let it in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_protection_refuses_the_right_password_after_the_wrong_ones_on_hardened_only() {
    let mut lab = lab().await;
    let ran = run(&lab, "brute-force-protection.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "the right password is refused after the declared number of wrong ones";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        assert!(
            passed.contains("after 3 wrong passwords the right password for oper, accepted before them, was refused"),
            "{device}: {passed}"
        );
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(
            why.contains("after 3 wrong passwords the right password for oper was accepted at once: nothing hinders guessing"),
            "{device}: {why}"
        );
    }
    assert_replays(&ran);
    lab.stop().await;
}

/// TS 33.117 4.2.3.4.6.2: the operator role's account logs in as itself and is refused
/// the password hashes and root through `sudo` on the hardened devices; on the weak ones
/// its role reads the hashes and acts as root without a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_role_is_refused_what_it_does_not_grant_on_hardened_only() {
    let mut lab = lab().await;
    let ran = run(&lab, "role-based-access-control.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "every role account logs in and is refused what its role does not grant";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        assert!(passed.contains("oper (role operator) logged in over SSH"), "{device}: {passed}");
        assert!(passed.contains("oper (role operator) may not read the password hashes"), "{device}: {passed}");
        assert!(
            passed.contains("oper (role operator) may not run commands as root without a password: `sudo -n id -u` was refused"),
            "{device}: {passed}"
        );
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("oper (role operator) was allowed to read the password hashes over SSH"), "{device}: {why}");
        assert!(why.contains("oper (role operator) was allowed to run commands as root without a password over SSH"), "{device}: {why}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

/// TS 33.117 4.3.2.3, 4.3.2.4 and 4.3.2.5: the vendor's software list, the management
/// functions of the device's configuration and its firmware release, each against what
/// the rig declares: the weak devices carry debugging tools and extra daemons, leave
/// telnet and FTP management on and run a firmware release out of support.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_functions_and_components_are_held_to_the_declared_lists() {
    let mut lab = lab().await;
    for (plan, finding) in [
        ("no-unused-software.yaml", "installed but not in the vendor's list of needed software"),
        ("no-unused-functions.yaml", "telnet management is not shown deactivated"),
        ("no-unsupported-components.yaml", "firmware 3.0.7 (read with `cat /etc/proofrig-release`) is not under support"),
    ] {
        let ran = run(&lab, plan).await;
        assert_hardened_pass_weak_fail(&ran);
        for device in ["ru2", "core2"] {
            let (_, why) = verdict(&ran, device);
            assert!(why.contains(finding), "{plan} on {device}: {why}");
        }
        for device in ["ru1", "core1"] {
            let (_, why) = verdict(&ran, device);
            assert!(!why.is_empty(), "{plan} on {device}: the evidence names what held");
        }
        assert_replays(&ran);
    }
    let ran = run(&lab, "no-unused-software.yaml").await;
    let (_, why) = verdict(&ran, "ru2");
    for tool in ["gdbserver", "tcpdump", "telnetd"] {
        assert!(why.contains(tool), "{why}");
    }
    lab.stop().await;
}

/// TS 33.117 4.2.3.4.1.1: SSH and the console refuse a wrong password everywhere; the
/// weak devices' web management API answers without credentials, the hardened ones'
/// asks for them (401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_services_demand_authentication_except_the_weak_web_api() {
    let mut lab = lab().await;
    let ran = run(&lab, "system-function-authentication.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "every management service demands authentication";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        assert!(passed.contains("SSH asked oper to authenticate"), "{device}: {passed}");
        assert!(passed.contains("the console asked oper for a password and refused a wrong one"), "{device}: {passed}");
        assert!(passed.contains("GET /api/config on port") && passed.contains("was answered 401"), "{device}: {passed}");
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(why.contains("GET /api/config on port 80 without credentials was answered 200"), "{device}: {why}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

/// TS 33.117 4.3.2.2: the weak devices' telnet and FTP also listen on their user-plane
/// address, which their socket list shows and a scan from the lab host reaches; the
/// hardened devices' services are bound to the management address and nothing answers on
/// the user-plane address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_reachable_on_the_user_plane_address_of_weak_devices_only() {
    let mut lab = lab().await;
    let ran = run(&lab, "restricted-service-reachability.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    for device in ["ru2", "core2"] {
        let management = lab.device(device).unwrap().spec().management_ip;
        let user_plane = proofrig_simlab::lab::user_plane_ip(management).unwrap();
        let (_, why) = verdict(&ran, device);
        assert!(
            why.contains(&format!("port 23 listens on {user_plane}, an address the rig declares as another interface's")),
            "{device}: {why}"
        );
        assert!(why.contains(&format!("accept connections on the restricted address {user_plane}")), "{device}: {why}");
        let scan = output(&ran, device, "no service accepts connections on the restricted addresses");
        assert!(scan["findings"].to_string().contains("[21, 23]"), "{device}: {scan}");
    }
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, "no service accepts connections on the restricted addresses")["passed"].to_string();
        assert!(passed.contains("accepts a connection on the restricted address"), "{device}: {passed}");
    }
    assert_replays(&ran);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cases_pass_on_the_hardened_https_server_and_name_legacy_versions_suites_and_certificate_on_the_weak_one() {
    let mut lab = lab().await;
    for name in ["transport-layer-protection.yaml", "https.yaml"] {
        let ran = run(&lab, name).await;
        assert_hardened_pass_weak_fail(&ran);
        for hardened in ["ru1", "core1"] {
            let audit = output(&ran, hardened, "audit the TLS server with hand-made hellos");
            assert_eq!(audit["accepted_versions"], serde_json::json!(["TLSv1.3", "TLSv1.2"]), "{name} on {hardened}: {audit}");
            assert_eq!(audit["certificate"]["name_matches"], true, "{name} on {hardened}: {audit}");
        }
        for weak in ["ru2", "core2"] {
            let (_, why) = verdict(&ran, weak);
            assert!(why.contains("TLSv1.0"), "{name} on {weak}: the legacy version is named: {why}");
            let audit = output(&ran, weak, "audit the TLS server with hand-made hellos");
            assert_eq!(audit["accepted_versions"], serde_json::json!(["TLSv1.2", "TLSv1.1", "TLSv1.0"]), "{audit}");
            assert!(audit["accepted_suites"].to_string().contains("TLS_RSA_WITH_3DES_EDE_CBC_SHA"), "{audit}");
            assert_eq!(audit["certificate"]["expired"], true, "{audit}");
        }
        assert_replays(&ran);
    }
    lab.stop().await;
}

/// 4.3.3.1.5's second half: the ELF headers of each declared network program, read in
/// pieces with `od` over SSH. The weak devices' own web server is built for a fixed
/// address with an executable stack and no RELRO, each named; their sshd passes. A
/// declared program that is not an ELF file, or cannot be read, decides nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_programs_are_read_from_their_elf_headers_and_each_weakness_named() {
    let mut lab = lab().await;
    let ran = run(&lab, "buffer-overflow-protection.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "the network programs are built against overflows";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        for program in ["/usr/sbin/sshd", "/usr/sbin/httpd"] {
            for fact in
                ["is position independent (PIE)", "has a non-executable stack", "has full RELRO", "calls the stack protector's check"]
            {
                assert!(passed.contains(&format!("{program} {fact}")), "{device}: {program} {fact}: {passed}");
            }
        }
        let calls = output(&ran, device, label)["calls"].as_array().unwrap().len();
        assert_eq!(calls, 2, "{device}: a simulated program is smaller than the first read, so one read each");
    }
    for device in ["ru2", "core2"] {
        let findings = output(&ran, device, label)["findings"].to_string();
        for finding in [
            "/usr/sbin/httpd is built for a fixed address (not PIE): ASLR cannot move its code",
            "/usr/sbin/httpd has an executable stack",
            "/usr/sbin/httpd has no RELRO where full is required",
        ] {
            assert!(findings.contains(finding), "{device}: {finding}: {findings}");
        }
        assert!(!findings.contains("/usr/sbin/sshd"), "{device}: its sshd is built hardened: {findings}");
    }
    assert_replays(&ran);

    // A text file declared as a program, and one the SSH user may not read.
    let dir = tempfile::tempdir().unwrap();
    let rig = rig_of(&lab, dir.path(), |text| {
        text.replace("network_programs: [/usr/sbin/sshd, /usr/sbin/httpd]", "network_programs: [/etc/hostname, /etc/shadow]")
    });
    let ran = run_on(rig, dir, vec![plan("buffer-overflow-protection.yaml")], Some("ru1")).await;
    let (v, why) = verdict(&ran, "ru1");
    assert_eq!(v, Verdict::Inconclusive, "{why}");
    assert!(why.contains("/etc/hostname: not an ELF program: it starts with"), "{why}");
    assert!(why.contains("/etc/shadow could not be read on the device (`od -An -v -tx1` exited 1: od: /etc/shadow:"), "{why}");
    assert_replays(&ran);
    lab.stop().await;
}

/// 4.2.3.3.5: the hardened devices' installer refuses the package with one byte changed
/// and installs the genuine one; the weak devices' installs both. A "genuine" package
/// the device refuses too, or a "tampered" one that is the genuine file, shows nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_with_one_byte_changed_is_refused_only_where_the_installer_checks_it() {
    let mut lab = lab().await;
    let ran = run(&lab, "software-package-integrity.yaml").await;
    assert_hardened_pass_weak_fail(&ran);
    let label = "the genuine package installs and the tampered one is refused";
    let changed = "byte 545 (octal 11 changed to 51)";
    for device in ["ru1", "core1"] {
        let passed = output(&ran, device, label)["passed"].to_string();
        assert!(passed.contains("the genuine package installed: `fw-install '/var/lib/updates/firmware-4.2.1.pkg'` exited 0"), "{passed}");
        assert!(passed.contains(&format!("the package with {changed} was refused: `fw-install '/var/lib/updates/firmware-4.2.1-tampered.pkg'` exited 3 (fw-install: /var/lib/updates/firmware-4.2.1-tampered.pkg: signature verification failed")), "{device}: {passed}");
    }
    for device in ["ru2", "core2"] {
        let (_, why) = verdict(&ran, device);
        assert!(
            why.contains(&format!(
                "the package with {changed} was installed: `fw-install '/var/lib/updates/firmware-4.2.1-tampered.pkg'` exited 0"
            )),
            "{device}: {why}"
        );
    }
    assert_replays(&ran);

    for (swap, expected) in [
        (
            "genuine: /var/lib/updates/firmware-4.2.1-tampered.pkg, tampered: /var/lib/updates/firmware-4.2.1.pkg",
            "the genuine package was refused too",
        ),
        ("genuine: /var/lib/updates/firmware-4.2.1.pkg, tampered: /var/lib/updates/firmware-4.2.1.pkg", "0 differing bytes"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig_of(&lab, dir.path(), |text| {
            text.replace("genuine: /var/lib/updates/firmware-4.2.1.pkg, tampered: /var/lib/updates/firmware-4.2.1-tampered.pkg", swap)
        });
        let ran = run_on(rig, dir, vec![plan("software-package-integrity.yaml")], Some("ru1")).await;
        let (v, why) = verdict(&ran, "ru1");
        assert_eq!(v, Verdict::Inconclusive, "{swap}: {why}");
        assert!(why.contains(expected), "{swap}: {why}");
        assert_replays(&ran);
    }
    lab.stop().await;
}
