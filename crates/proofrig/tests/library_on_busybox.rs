//! Every bundled plan on the BusyBox + dropbear device, careless and hardened: a device
//! proofrig's authors did not build. Each case's verdict must be the one
//! testplans/README.md's verdict table gives for the profile, and every bundle must
//! verify. With `--nocapture` it also prints case x profile -> verdict, the messages of
//! the steps that did not pass, and what `proofrig verify` said.

mod verdicts;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use proofrig_evidence::signing;
use proofrig_testpeers::busybox::{BusyboxDevice, Profile};

/// A plan that has not finished after this long is killed and reported as such.
const PLAN_LIMIT: Duration = Duration::from_secs(300);

fn plans() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans");
    let mut plans: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    plans.sort();
    assert!(plans.len() >= 10, "the bundled library: {plans:?}");
    plans
}

fn all(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits for `child` at most `limit`; kills it after that.
fn wait_with_limit(mut child: Child, limit: Duration) -> (Output, bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return (child.wait_with_output().unwrap(), false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    (child.wait_with_output().unwrap(), true)
}

/// One row of the table.
struct Row {
    plan: String,
    clause: String,
    case: String,
    verdict: String,
    seconds: f64,
    verify: String,
    summary: String,
}

/// What a run's results.json says of each case: verdict and the messages of the steps
/// that did not pass.
fn rows_of(plan: &str, bundle: &Path, seconds: f64, verify: &str) -> Vec<Row> {
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    let cases = results["cases"].as_array().cloned().unwrap_or_default();
    cases
        .iter()
        .map(|case| {
            let steps = case["steps"].as_array().cloned().unwrap_or_default();
            let mut notes: Vec<String> = steps
                .iter()
                .filter(|s| s["verdict"] != "PASS")
                .map(|s| {
                    format!(
                        "[{}] {}: {}",
                        s["verdict"].as_str().unwrap_or("?"),
                        s["label"].as_str().unwrap_or(""),
                        s["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            if let Some(reason) = case["skip_reason"].as_str() {
                notes.insert(0, format!("skipped: {reason}"));
            }
            if notes.is_empty() {
                notes.push(case["evidence_excerpt"].as_str().unwrap_or("").lines().next().unwrap_or("").to_string());
            }
            Row {
                plan: plan.to_string(),
                clause: case["scas"]["clause"].as_str().unwrap_or("?").to_string(),
                case: case["case"].as_str().unwrap_or("?").to_string(),
                verdict: case["verdict"].as_str().unwrap_or("?").to_string(),
                seconds,
                verify: verify.to_string(),
                summary: notes.join(" | ").replace('\n', " "),
            }
        })
        .collect()
}

/// How the run reaches the device's shell for a plan's SSH commands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commands {
    /// A channel of their own each (the default).
    OwnChannels,
    /// One long-lived shell of the session (`ssh.persistent_shell: true`).
    OneShell,
}

fn run_library(profile: Profile, commands: Commands) {
    let device = BusyboxDevice::start(profile);
    let tmp = tempfile::tempdir().unwrap();
    let rig_path = match commands {
        Commands::OwnChannels => device.write_rig(tmp.path()),
        Commands::OneShell => device.write_rig_through_one_shell(tmp.path()),
    };
    let rig = rig_path.display().to_string();
    let (key, public) = (tmp.path().join("lab.key"), tmp.path().join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let (key, public) = (key.display().to_string(), public.display().to_string());
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut observed = Vec::new();
    let mut shell_commands = 0;
    let mut overflow_bundle = None;
    for plan in plans() {
        let name = plan.file_name().unwrap().to_string_lossy().into_owned();
        let out_dir = tmp.path().join("results").join(&name).display().to_string();
        let plan_path = plan.display().to_string();
        let started = Instant::now();
        let child = device
            .command(env!("CARGO_BIN_EXE_proofrig"))
            .args(["run", &plan_path, "--rig", &rig, "--key", &key, "--out", &out_dir, "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run proofrig");
        let (out, killed) = wait_with_limit(child, PLAN_LIMIT);
        let seconds = started.elapsed().as_secs_f64();
        let bundle = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("bundle: ").map(PathBuf::from));
        let Some(bundle) = bundle else {
            let why = if killed { format!("killed after {PLAN_LIMIT:?}") } else { "no bundle".into() };
            problems.push(format!("{name}: {why}: {}", all(&out)));
            rows.push(Row {
                plan: name,
                clause: "?".into(),
                case: "?".into(),
                verdict: why,
                seconds,
                verify: "-".into(),
                summary: String::new(),
            });
            continue;
        };
        let verified = std::process::Command::new(env!("CARGO_BIN_EXE_proofrig"))
            .args(["verify", &bundle.display().to_string(), "--key", &public])
            .stdin(Stdio::null())
            .output()
            .expect("run proofrig verify");
        let report = format!("{}{}", String::from_utf8_lossy(&verified.stdout), String::from_utf8_lossy(&verified.stderr));
        let verify = ["VERIFIED", "TAMPERED", "INCOMPLETE"]
            .into_iter()
            .find(|word| report.contains(word))
            .map(String::from)
            .unwrap_or_else(|| format!("exit {:?}", verified.status.code()));
        if verify != "VERIFIED" || verified.status.code() != Some(0) {
            problems.push(format!("{name}: the bundle does not verify: {}", all(&verified)));
        }
        observed.extend(verdicts::observed(&bundle, None));
        if verify != "VERIFIED" {
            eprintln!("--- {} {name}: verify says {verify}:\n{}", profile.name(), report.lines().take(15).collect::<Vec<_>>().join("\n"));
        }
        if commands == Commands::OneShell {
            shell_commands += commands_through_the_shell(&bundle);
        }
        if name == "buffer-overflow-protection.yaml" {
            overflow_bundle = Some(bundle.clone());
        }
        rows.extend(rows_of(&name, &bundle, seconds, &verify));
    }

    print_table(profile, &rows);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    let column = format!("BusyBox {}", profile.name());
    let summary: Vec<String> = rows.iter().map(|r| format!("{} {} {}: {}", r.clause, r.case, r.verdict, r.summary)).collect();
    verdicts::table().assert_column(&column, &observed, &summary.join("\n"));
    if commands == Commands::OneShell {
        // The library sends some 70 plain commands over SSH to this device.
        assert!(shell_commands >= 50, "the plans' SSH commands ran through the session's shell: only {shell_commands} did");
    }
    // The careless unit runs a firmware release out of the declared support.
    let (_, _, why) = observed.iter().find(|(test, _, _)| test == "TC_NO_UNSUPPORTED_COMPONENTS").expect("4.3.2.5 ran");
    assert_eq!(why.contains("firmware 0.9 (read with `cat /etc/os-release`) is not under support"), profile == Profile::Careless, "{why}");
    // 4.3.3.1.5 reads dropbear's and, on the careless unit, BusyBox's ELF headers: Debian
    // builds dropbear hardened; busybox-static is linked at a fixed address.
    let bundle = overflow_bundle.expect("4.3.3.1.5 ran");
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    let (verdict, why) = (&results["cases"][0]["verdict"], results["cases"][0]["evidence_excerpt"].as_str().unwrap_or_default());
    for weakness in
        ["is built for a fixed address", "has an executable stack", "has no RELRO", "has partial RELRO", "references no stack protector"]
    {
        assert!(!why.contains(&format!("/usr/sbin/dropbear {weakness}")), "dropbear is hardened: {why}");
    }
    match profile {
        Profile::Hardened => assert!(
            why.contains("/usr/sbin/dropbear is position independent (PIE)") && why.contains("/usr/sbin/dropbear has full RELRO"),
            "{verdict}: {why}"
        ),
        Profile::Careless => assert!(why.contains("/bin/busybox is built for a fixed address (not PIE)"), "{verdict}: {why}"),
    }
    // Log transfer fails on both, each for its own reason: the hardened device's record
    // arrives, in clear; the careless one sends none.
    let (_, _, why) = observed.iter().find(|(test, _, _)| test.contains("TC_LOG TRANS_TO_CENTR STORAGE")).expect("log transfer ran");
    let lost = why.contains("no record of the refused SSH login of `oper`");
    match profile {
        Profile::Hardened => {
            assert!(!lost && why.contains("the device sends its records in clear, over udp"), "log transfer on hardened: {why}")
        }
        Profile::Careless => assert!(lost, "log transfer on careless: {why}"),
    }
}

fn print_table(profile: Profile, rows: &[Row]) {
    let mut table = format!("\n=== the bundled library on the BusyBox device, {} profile\n", profile.name());
    table.push_str(&format!("{:<12} {:<47} {:<13} {:>6}  {:<9} message summary\n", "clause", "case", "verdict", "secs", "verify"));
    for row in rows {
        let mut summary = row.summary.clone();
        if summary.len() > 600 {
            let cut = (0..=600).rev().find(|i| summary.is_char_boundary(*i)).unwrap_or(0);
            summary.truncate(cut);
            summary.push('…');
        }
        table.push_str(&format!(
            "{:<12} {:<47} {:<13} {:>6.1}  {:<9} {} ({})\n",
            row.clause, row.case, row.verdict, row.seconds, row.verify, summary, row.plan
        ));
    }
    println!("{table}");
}

/// How many commands a bundle's journal shows sent to the session's shell.
fn commands_through_the_shell(bundle: &Path) -> usize {
    let journal = std::fs::read_to_string(bundle.join("journal.jsonl")).unwrap();
    journal
        .lines()
        .filter(|line| {
            line.contains(&format!("\"channel\":\"{}\"", proofrig_model::wire::ssh_shell::SHELL_IN))
                && line.contains("\"direction\":\"out\"")
        })
        .count()
}

#[test]
fn the_library_on_the_careless_busybox_device() {
    run_library(Profile::Careless, Commands::OwnChannels);
}

#[test]
fn the_library_on_the_hardened_busybox_device() {
    run_library(Profile::Hardened, Commands::OwnChannels);
}

/// The same verdicts, and bundles that verify, when every plain command of the
/// plans goes through one shell of the session (issue 17): the fast path for a device
/// that forks slowly changes nothing a plan decides.
#[test]
fn the_library_on_the_hardened_busybox_device_through_one_shell() {
    run_library(Profile::Hardened, Commands::OneShell);
}
