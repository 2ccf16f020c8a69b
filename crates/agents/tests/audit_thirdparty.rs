//! proofrig's SSH algorithm audit (TS 33.117 4.2.3.2.4) against a third-party auditor,
//! on real servers nobody here wrote: OpenSSH's sshd and dropbear, the SSH server of
//! most embedded devices. An evaluator who runs ssh-audit beside proofrig must read the
//! same offer from both.
//!
//! The third party is ssh-audit 2.5.0 (Debian's `ssh-audit`), run as `ssh-audit -j`.
//! It was chosen over nmap's `ssh2-enum-algos` because it is the auditor security
//! evaluators use for exactly this check, it prints machine-readable JSON (nmap's script
//! prints a text table), and it reads the KEXINIT with its own Python parser, so nothing
//! is shared with proofrig's.
//!
//! What each side reports, and so what is compared:
//! - ssh-audit's `kex` is the server's `kex_algorithms` name-list as sent, markers
//!   included: its algorithm database holds `ext-info-c`, `ext-info-s` and
//!   `kexguess2@matt.ucc.asn.au` as key exchanges, and it predates strict key exchange
//!   (2023), so it lists `kex-strict-s-v00@openssh.com` as an unknown key exchange.
//!   proofrig reports the same names split in two: key exchanges in `kex`, markers in
//!   `markers`. The test requires ssh-audit's list to be, entry by entry, the list
//!   proofrig read; its markers (by proofrig's classification) to be proofrig's
//!   `markers`, in order; and everything else to be proofrig's `kex`, in order. On top,
//!   the markers the issue is about must land in `markers`: `kexguess2@matt.ucc.asn.au`
//!   on dropbear and `kex-strict-s-v00@openssh.com` on both.
//! - ssh-audit's `key` is the host key algorithm list as sent; proofrig's `host_key` too.
//! - ssh-audit's `enc`, `mac` and `compression` are the server-to-client lists;
//!   proofrig's `ciphers`, `macs` and `compression` merge both directions. Both servers
//!   offer the same in each direction (asserted), so each must equal ssh-audit's list.
//! - The banner must be the same line.
//!
//! Any other difference fails. Each audit also re-derives proofrig's output from the
//! recorded bytes, as `proofrig verify` does.

use std::process::Command;
use std::time::Duration;

use proofrig_agents::ssh::audit_algorithms;
use proofrig_model::events::{ChannelId, Direction, MemorySink, Recorder};
use proofrig_model::wire::ssh::{kex_marker, parse_server_offer, AuditedOffer, ServerAlgorithms};
use proofrig_testpeers::dropbear::Dropbear;
use proofrig_testpeers::require_program;
use proofrig_testpeers::sshd::Sshd;
use serde::Deserialize;

const SSH_AUDIT: &str = "/usr/bin/ssh-audit";
const TIMEOUT: &str = "/usr/bin/timeout";

/// The lists ssh-audit prints, as it names them.
#[derive(Debug)]
struct ThirdParty {
    banner: String,
    kex: Vec<String>,
    host_key: Vec<String>,
    enc: Vec<String>,
    mac: Vec<String>,
    compression: Vec<String>,
}

/// Run `ssh-audit -j` against `host:port` and read its JSON.
fn ssh_audit(host: &str, port: u16) -> ThirdParty {
    require_program(SSH_AUDIT, "ssh-audit");
    require_program(TIMEOUT, "coreutils");
    assert!(host.starts_with("127."), "third-party audits run against loopback only, not {host}");
    let out =
        Command::new(TIMEOUT).args(["120", SSH_AUDIT, "-j", "-t", "10", "-p", &port.to_string(), host]).output().expect("run ssh-audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Its exit status is its verdict (0 good, 2 warnings, 3 failures); 1 is a connection
    // error, anything else (124: our timeout) means it did not audit.
    assert!(
        matches!(out.status.code(), Some(0 | 2 | 3)),
        "ssh-audit did not audit {host}:{port} ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("ssh-audit printed no JSON ({e}):\n{stdout}"));
    let names = |key: &str| -> Vec<String> {
        let list = json[key].as_array().unwrap_or_else(|| panic!("ssh-audit's JSON has no `{key}` list:\n{stdout}"));
        list.iter().map(|entry| entry.as_str().or_else(|| entry["algorithm"].as_str()).expect("an algorithm name").to_string()).collect()
    };
    ThirdParty {
        banner: json["banner"]["raw"].as_str().expect("ssh-audit's banner").to_string(),
        kex: names("kex"),
        host_key: names("key"),
        enc: names("enc"),
        mac: names("mac"),
        compression: names("compression"),
    }
}

/// proofrig's audit as a step runs it, checked against the bytes it recorded.
async fn proofrig_audit(host: &str, port: u16) -> (ServerAlgorithms, AuditedOffer) {
    let sink = MemorySink::new();
    let recorder = Recorder::new(sink.clone());
    let offer = audit_algorithms("dut", host, port, Duration::from_secs(10), &recorder).await.expect("proofrig's audit");
    let audited = offer.audited();
    let recorded = sink.transcript(&ChannelId::new("dut", "ssh:audit"), Direction::In);
    let replayed = parse_server_offer(&recorded).expect("the recorded bytes parse");
    assert_eq!(replayed.audited(), audited, "replay would derive another output from the recorded bytes");
    (offer, audited)
}

/// The two audits agree, markers accounted for as the module documentation says.
fn assert_agree(server: &str, ours: &ServerAlgorithms, audited: &AuditedOffer, theirs: &ThirdParty) {
    assert_eq!(theirs.banner, ours.banner, "{server}: banner");
    assert_eq!(theirs.kex, ours.kex, "{server}: ssh-audit's kex list is not the name-list proofrig read");
    let (their_markers, their_methods): (Vec<String>, Vec<String>) =
        theirs.kex.iter().cloned().partition(|name| kex_marker(name).is_some());
    assert_eq!(their_methods, audited.kex, "{server}: key exchanges (ssh-audit's kex without the markers)");
    assert_eq!(their_markers, audited.markers, "{server}: markers (the markers among ssh-audit's kex)");
    assert!(audited.kex.iter().all(|name| kex_marker(name).is_none()), "{server}: a marker among proofrig's kex");
    assert_eq!(theirs.host_key, audited.host_key, "{server}: host key algorithms");

    for (what, c2s, s2c) in [
        ("ciphers", &ours.ciphers_client_to_server, &ours.ciphers_server_to_client),
        ("MACs", &ours.macs_client_to_server, &ours.macs_server_to_client),
        ("compression", &ours.compression_client_to_server, &ours.compression_server_to_client),
    ] {
        assert_eq!(c2s, s2c, "{server}: the server offers other {what} in each direction; compare per direction");
    }
    assert_eq!(theirs.enc, audited.ciphers, "{server}: ciphers");
    assert_eq!(theirs.mac, audited.macs, "{server}: MACs");
    assert_eq!(theirs.compression, audited.compression, "{server}: compression");
}

/// The bundled 4.2.3.2.4 plan's allowed key exchanges (`testplans/ssh-algorithms.yaml`).
fn plan_allowed_kex() -> Vec<String> {
    #[derive(Deserialize)]
    struct Plan {
        parameters: Parameters,
    }
    #[derive(Deserialize)]
    struct Parameters {
        allowed_kex: Vec<String>,
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans/ssh-algorithms.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let plan: Plan = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    plan.parameters.allowed_kex
}

/// What the plan's "key exchange methods are allowed" assertion finds outside the
/// profile: it compares `${offered.kex}`, the audit's `kex`.
fn kex_outside_the_plan(audited: &AuditedOffer) -> Vec<String> {
    let allowed = plan_allowed_kex();
    audited.kex.iter().filter(|name| !allowed.contains(name)).cloned().collect()
}

#[tokio::test]
async fn proofrig_and_ssh_audit_agree_on_openssh() {
    let sshd = Sshd::builder().host_key_types(&["ed25519", "ecdsa", "rsa"]).start();
    let (ours, audited) = proofrig_audit(sshd.host(), sshd.port()).await;
    let theirs = ssh_audit(sshd.host(), sshd.port());
    assert_agree("OpenSSH", &ours, &audited, &theirs);

    assert!(ours.banner.starts_with("SSH-2.0-OpenSSH_"), "{}", ours.banner);
    // Debian 12's OpenSSH carries the Terrapin fix and says so with a marker.
    assert!(audited.markers.contains(&"kex-strict-s-v00@openssh.com".to_string()), "{audited:?}");
    assert!(audited.host_key.contains(&"ssh-ed25519".to_string()) && audited.host_key.contains(&"rsa-sha2-512".to_string()));
    // OpenSSH's defaults are all within the bundled profile's key exchanges.
    assert_eq!(kex_outside_the_plan(&audited), Vec::<String>::new(), "{audited:?}");
}

#[tokio::test]
async fn proofrig_and_ssh_audit_agree_on_dropbear() {
    let dropbear = Dropbear::start();
    let (ours, audited) = proofrig_audit(dropbear.host(), dropbear.port()).await;
    let theirs = ssh_audit(dropbear.host(), dropbear.port());
    assert_agree("dropbear", &ours, &audited, &theirs);

    assert!(ours.banner.starts_with("SSH-2.0-dropbear_"), "{}", ours.banner);
    // The marker of issue 12: reported, and not as a key exchange.
    for marker in ["kexguess2@matt.ucc.asn.au", "kex-strict-s-v00@openssh.com"] {
        assert!(theirs.kex.contains(&marker.to_string()), "dropbear no longer sends {marker}: {:?}", theirs.kex);
        assert!(audited.markers.contains(&marker.to_string()), "{marker} is not among the markers: {audited:?}");
    }
    // The bundled plan flags dropbear's key exchanges for the SHA-1 one only (a true
    // finding, from dropbear 2022.83's defaults), never for a marker.
    assert_eq!(kex_outside_the_plan(&audited), ["diffie-hellman-group14-sha1"], "{}", Dropbear::version());
}
