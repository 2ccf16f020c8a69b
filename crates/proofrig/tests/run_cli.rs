//! `proofrig run` and `proofrig verify` as a technician and a regulator use them:
//! the real binary runs the bundled plans on the simulated lab, seals a bundle, and
//! the bundle verifies; a forger who edits verdicts and re-signs everything with the
//! lab's own key is still caught, because verify recomputes every verdict.

use std::path::{Path, PathBuf};
use std::process::Output;

use proofrig_evidence::bundle::{BundleWriter, JOURNAL};
use proofrig_evidence::journal::read_chain;
use proofrig_evidence::record::RunResult;
use proofrig_evidence::signing;
use proofrig_simlab::{SimLab, SimLabConfig};
use proofrig_verdict::{Rollup, Verdict};

async fn proofrig(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_proofrig"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run proofrig")
}

fn all(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn plan(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testplans").join(name).display().to_string()
}

fn bundle_of(out: &Output) -> PathBuf {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("bundle: ")).unwrap_or_else(|| panic!("no bundle path printed:\n{}", all(out)));
    PathBuf::from(line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_the_lab_seals_a_bundle_that_verifies_and_resists_forgery() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rig = lab.write_rig(&tmp.path().join("lab")).unwrap();
    let (key, public) = (tmp.path().join("lab.key"), tmp.path().join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let out_dir = tmp.path().join("results");
    let s = |p: &Path| p.display().to_string();

    // The weak devices fail: exit 1, a verdict table, and a bundle.
    let (root_plan, algo_plan) = (plan("remote-root-login.yaml"), plan("ssh-algorithms.yaml"));
    let args = ["run", &root_plan, &algo_plan, "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&out_dir), "--quiet"];
    let out = proofrig(&args).await;
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.lines().any(|l| l.starts_with("ru2 ") && l.contains("4.3.2.6") && l.contains("FAIL")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("ru1 ") && l.contains("4.2.3.2.4") && l.contains("PASS")), "{table}");
    assert!(table.contains("run verdict: FAIL (4 FAIL, 4 PASS)"), "{table}");
    let bundle = bundle_of(&out);
    for file in
        ["journal.jsonl", "manifest.json", "attestation.intoto.jsonl", "junit.xml", "report.html", "results.json", "inputs/rig.yaml"]
    {
        assert!(bundle.join(file).is_file(), "{file} missing from the bundle");
    }
    let rig_copy = std::fs::read_to_string(bundle.join("inputs/rig.yaml")).unwrap();
    for device in lab.devices() {
        let secret = device.secret("root_password").unwrap();
        assert!(!rig_copy.contains(secret), "a secret value reached the bundle's rig");
        let journal = std::fs::read_to_string(bundle.join(JOURNAL)).unwrap();
        assert!(!journal.contains(secret), "a secret value reached the journal");
    }

    let verified = proofrig(&["verify", &s(&bundle), "--key", &s(&public)]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
    assert_eq!(String::from_utf8_lossy(&verified.stdout).lines().last(), Some("VERIFIED"));
    let unpinned = proofrig(&["verify", &s(&bundle)]).await;
    assert_eq!(unpinned.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&unpinned.stdout).contains("UNPINNED"), "{}", all(&unpinned));

    // Only the hardened radio unit: everything passes, exit 0, and the limited run verifies.
    let out = proofrig(&["run", &root_plan, "--rig", &s(&rig), "--device", "ru1", "--key", &s(&key), "--out", &s(&out_dir), "-q"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let only = proofrig(&["verify", &s(&bundle_of(&out)), "--key", &s(&public)]).await;
    assert_eq!(only.status.code(), Some(0), "{}", all(&only));

    // The forger: every FAIL becomes PASS in the journal, the results and both signed
    // statements, the chain and digests are recomputed, and the lab's own key signs.
    let forged = reseal_with_every_fail_hidden(&bundle, &tmp.path().join("forged"), &signing::load_signing_key(&key).unwrap());
    let caught = proofrig(&["verify", &s(&forged), "--key", &s(&public)]).await;
    assert_eq!(caught.status.code(), Some(1), "{}", all(&caught));
    let last = String::from_utf8_lossy(&caught.stdout).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("TAMPERED: verdicts replay"), "{}", all(&caught));
    assert!(last.contains("is recorded PASS") && last.contains("its evidence gives FAIL"), "{}", all(&caught));

    // Invalid input is a usage error that names the file, and nothing runs.
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, std::fs::read_to_string(plan("ssh-algorithms.yaml")).unwrap().replace("ssh_audit: {}", "ssh_audti: {}"))
        .unwrap();
    let out = proofrig(&["run", &s(&broken), "--rig", &s(&rig), "--key", &s(&key), "--out", &s(&out_dir)]).await;
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `ssh_audit`?"), "{}", all(&out));
    lab.stop().await;
}

fn reseal_with_every_fail_hidden(original: &Path, out: &Path, key: &ed25519_dalek::SigningKey) -> PathBuf {
    let rig = std::fs::read(original.join("inputs/rig.yaml")).unwrap();
    let plans: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(original.join("inputs/plans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (PathBuf::from(p.file_name().unwrap()), std::fs::read(&p).unwrap()))
        .collect();
    let mut result: RunResult = serde_json::from_slice(&std::fs::read(original.join("results.json")).unwrap()).unwrap();
    let plan_refs: Vec<(&Path, &[u8])> = plans.iter().map(|(p, b)| (p.as_path(), b.as_slice())).collect();
    // With the lab's key, the forger signs the journal's head as the run did.
    let writer = BundleWriter::create_signed(out, &result.run_id, (Path::new("rig.yaml"), &rig), &plan_refs, key).unwrap();
    let (records, _) = read_chain(&original.join(JOURNAL)).unwrap().unwrap();
    for record in records {
        let mut entry = record.entry;
        let kind = entry["type"].as_str().unwrap_or_default().to_string();
        if kind == "checkpoint" {
            continue;
        }
        if matches!(kind.as_str(), "step_finished" | "case_finished") && entry["verdict"] == "FAIL" {
            entry["verdict"] = "PASS".into();
        }
        if kind == "run_finished" {
            entry["verdict"] = "PASS".into();
        }
        writer.journal().append(&entry).unwrap();
    }
    for case in &mut result.cases {
        case.verdict = Verdict::Pass;
    }
    result.rollup = Rollup::of(result.cases.iter().map(|c| c.verdict));
    result.verdict = Verdict::Pass;
    writer.seal(&result, key, &proofrig_report::Standard).unwrap().dir
}

/// Scripts that end ERROR (a script error), INFRA (the device powered off through the
/// PDU mid-script) and ABORTED (Ctrl-C mid-script) record messages that name where in
/// the plan they stopped. Each bundle verifies whatever path the plan was given by
/// (relative, absolute, from another working directory), and verify may run from
/// anywhere; an edit is still caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_failures_verify_whatever_path_the_plan_was_given_by() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rig = lab.write_rig(&tmp.path().join("lab")).unwrap();
    let (key, public) = (tmp.path().join("lab.key"), tmp.path().join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let plans = tmp.path().join("work/plans");
    std::fs::create_dir_all(&plans).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let case = |id: &str, script: &str, restore: &str| {
        format!(
            "plan: {id}\ntitle: {id}\ncases:\n  - id: {id}\n    title: {id}\n    \
             scas: {{ spec: TS 33.117, clause: 4.2.3.4.5, test_name: {id}, requirement: r }}\n    \
             purpose: p\n    expected: e\n    evidence: e\n    steps:\n      - name: scripted\n        timeout_ms: 90000\n        script: |\n{}\n    restore:\n{restore}\n",
            script.lines().map(|l| format!("          {l}")).collect::<Vec<_>>().join("\n")
        )
    };
    std::fs::write(
        plans.join("error.yaml"),
        case(
            "TC_SCRIPT_ERROR",
            "let answer = ssh_exec(\"true\");\nlet zero = answer.exit_status;\nlet boom = 1 / zero;",
            "      - wait: { ms: 1 }",
        ),
    )
    .unwrap();
    std::fs::write(
        plans.join("infra.yaml"),
        case(
            "TC_SCRIPT_INFRA",
            "ssh_exec(\"true\");\npower(\"off\");\nssh_exec(\"true\");",
            "      - name: power back on\n        power: { action: on }",
        ),
    )
    .unwrap();
    std::fs::write(plans.join("abort.yaml"), case("TC_SCRIPT_ABORT", "ssh_exec(\"true\");\nwait(60000);", "      - wait: { ms: 1 }"))
        .unwrap();

    let run = |plan: String, cwd: PathBuf| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_proofrig"));
        command.args([
            "run",
            &plan,
            "--rig",
            &s(&rig),
            "--device",
            "ru1",
            "--key",
            &s(&key),
            "--out",
            &s(&tmp.path().join("results")),
            "--quiet",
        ]);
        command
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let work = tmp.path().join("work");
    let mut bundles = Vec::new();
    for (plan, cwd, verdict) in [
        ("plans/error.yaml".to_string(), work.clone(), "ERROR"),
        (s(&plans.join("error.yaml")), elsewhere.clone(), "ERROR"),
        ("../work/plans/infra.yaml".to_string(), elsewhere.clone(), "INFRA"),
        ("plans/infra.yaml".to_string(), work.clone(), "INFRA"),
    ] {
        let out = run(plan.clone(), cwd).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{plan}: {}", all(&out));
        let bundle = bundle_of(&out);
        let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
        let case = &results["cases"][0];
        assert_eq!(case["verdict"], verdict, "{plan}: {case}");
        let message = case["steps"][0]["message"].as_str().unwrap().to_string();
        let file = Path::new(&plan).file_name().unwrap().to_string_lossy().into_owned();
        assert!(message.contains(&format!("{file}:")), "the message names where the script stopped: {message}");
        assert!(
            !message.contains("plans/") && !message.contains(&s(tmp.path())),
            "and no path that depends on how the plan was given: {message}"
        );
        bundles.push(bundle);
    }
    // Ctrl-C while the script waits.
    let child = run("plans/abort.yaml".to_string(), work.clone()).spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id().unwrap() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let bundle = bundle_of(&out);
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["cases"][0]["verdict"], "ABORTED", "{results}");
    bundles.push(bundle);

    for bundle in &bundles {
        let verified = tokio::process::Command::new(env!("CARGO_BIN_EXE_proofrig"))
            .args(["verify", &s(bundle), "--key", &s(&public)])
            .current_dir(&elsewhere)
            .output()
            .await
            .unwrap();
        assert_eq!(verified.status.code(), Some(0), "{}: {}", bundle.display(), all(&verified));
        assert_eq!(String::from_utf8_lossy(&verified.stdout).lines().last(), Some("VERIFIED"));
    }
    // A real edit is still caught.
    let journal = bundles[0].join(JOURNAL);
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, text.replacen("\"ERROR\"", "\"PASS\"", 1)).unwrap();
    let verified = proofrig(&["verify", &s(&bundles[0]), "--key", &s(&public)]).await;
    assert_eq!(verified.status.code(), Some(1), "{}", all(&verified));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("TAMPERED"), "{}", all(&verified));
    lab.stop().await;
}

/// A rig that lacks a value a case needs: the technician is told which rig file to edit
/// and with what, the case is ERROR without touching the device, and the bundle verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rig_gap_names_the_rig_file_to_edit() {
    let mut lab = SimLab::start(SimLabConfig::fast()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rig = lab.write_rig(&tmp.path().join("lab")).unwrap();
    let text = std::fs::read_to_string(&rig).unwrap();
    std::fs::write(&rig, text.lines().filter(|l| !l.trim_start().starts_with("lockout:")).collect::<Vec<_>>().join("\n")).unwrap();
    let (key, public) = (tmp.path().join("lab.key"), tmp.path().join("lab.pub"));
    signing::generate(&key, &public).unwrap();
    let s = |p: &Path| p.display().to_string();
    let plan = plan("failed-login-attempts.yaml");
    let out = proofrig(&[
        "run",
        &plan,
        "--rig",
        &s(&rig),
        "--device",
        "ru1",
        "--key",
        &s(&key),
        "--out",
        &s(&tmp.path().join("results")),
        "--quiet",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("edit the rig file {}", s(&rig))) && stderr.contains("declared.lockout"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ERROR"), "{}", all(&out));
    let verified = proofrig(&["verify", &s(&bundle_of(&out)), "--key", &s(&public)]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", all(&verified));
    lab.stop().await;
}
