//! Sealing and verifying evidence bundles as a regulator relies on them: an honest
//! bundle verifies; any changed byte, a re-signing by another key, or a journal
//! edited behind consistent digests is caught and located; a crashed run reads as
//! incomplete, not as forged; the reports say what the run found.

mod support;

use std::path::Path;

use proofrig_evidence::attestation::{ScasRunPredicate, Statement, TestResultPredicate};
use proofrig_evidence::bundle::{self, BundleError, ATTESTATION, JOURNAL, MANIFEST, RESULTS};
use proofrig_evidence::journal::JournalError;
use proofrig_evidence::signing::Envelope;
use proofrig_evidence::verify::{
    recorded_verdicts_agree, verify, CheckState, JournalRecord, ReplayInput, ReplayMismatch, Status, VerifyReport,
};
use proofrig_verdict::{Rollup, Verdict};
use support::*;

fn replay(input: &ReplayInput, records: &mut dyn Iterator<Item = JournalRecord>) -> Result<(), ReplayMismatch> {
    recorded_verdicts_agree(input, records)
}

fn check(bundle: &Path, key: Option<&ed25519_dalek::VerifyingKey>) -> VerifyReport {
    verify(bundle, key, &replay)
}

fn explain(report: &VerifyReport) -> String {
    let mut out = format!("{:?}: {}\n", report.status, report.summary);
    for c in &report.checks {
        out.push_str(&format!("  {:?} {}: {} [file {:?} record {:?} case {:?}]\n", c.state, c.what, c.detail, c.file, c.record, c.case));
    }
    out
}

fn statements(bundle: &Path) -> (Statement<TestResultPredicate>, Statement<ScasRunPredicate>) {
    let text = std::fs::read_to_string(bundle.join(ATTESTATION)).unwrap();
    let payloads: Vec<Vec<u8>> = text.lines().map(|l| serde_json::from_str::<Envelope>(l).unwrap().payload_bytes().unwrap()).collect();
    assert_eq!(payloads.len(), 2);
    (serde_json::from_slice(&payloads[0]).unwrap(), serde_json::from_slice(&payloads[1]).unwrap())
}

#[test]
fn a_sealed_bundle_verifies_pinned_and_says_when_it_is_unpinned() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let bundle = sealed_bundle(&tmp.path().join("results"), &standard_cases(), &lab.signing);
    assert_eq!(bundle, tmp.path().join("results").join(RUN_ID));

    let pinned = check(&bundle, Some(&lab.verifying));
    assert_eq!(pinned.status, Status::Verified, "{}", explain(&pinned));
    assert!(pinned.pinned);
    assert_eq!(pinned.signer.as_deref(), Some(proofrig_evidence::signing::key_id(&lab.verifying).as_str()));
    assert!(pinned.checks.iter().all(|c| c.state == CheckState::Passed), "{}", explain(&pinned));
    assert_eq!(pinned.records_verified, Some(support::records(&bundle).len() as u64));
    // Every file was looked at, by name.
    for file in [
        "journal.jsonl",
        "inputs/rig.yaml",
        "inputs/plans/ssh.yaml",
        "inputs/plans/accounts.yaml",
        "results.json",
        "junit.xml",
        "report.html",
        "manifest.json",
    ] {
        assert!(pinned.checks.iter().any(|c| c.file.as_deref() == Some(file) && c.passed()), "{file} not checked");
    }

    let unpinned = check(&bundle, None);
    assert_eq!(unpinned.status, Status::Verified, "{}", explain(&unpinned));
    assert!(!unpinned.pinned);
    assert_eq!(unpinned.signer, pinned.signer);
    assert!(unpinned.checks.iter().any(|c| c.detail.contains("UNPINNED")));
}

#[test]
fn the_statements_say_what_the_run_found() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let bundle = sealed_bundle(tmp.path(), &standard_cases(), &lab.signing);
    let (test_result, scas) = statements(&bundle);

    assert_eq!(test_result.statement_type, "https://in-toto.io/Statement/v1");
    assert_eq!(test_result.predicate_type, "https://in-toto.io/attestation/test-result/v0.1");
    assert_eq!(scas.predicate_type, "urn:proofrig:predicate:scas-run:v1");
    let names: Vec<&str> = scas.subject.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "inputs/plans/accounts.yaml",
            "inputs/plans/ssh.yaml",
            "inputs/rig.yaml",
            "journal.jsonl",
            "junit.xml",
            "manifest.json",
            "report.html",
            "results.json"
        ]
    );
    assert_eq!(test_result.subject, scas.subject);
    for subject in &scas.subject {
        assert_eq!(subject.sha256_hex().unwrap(), bundle::sha256_file(&bundle.join(&subject.name)).unwrap().0);
    }

    let p = &test_result.predicate;
    assert_eq!(p.result, "FAILED");
    assert_eq!(p.passed_tests, ["ssh-hardening/root-login@ru1", "accounts/lockout@ru1"]);
    assert_eq!(p.warned_tests, ["ssh-hardening/banner@core1"]);
    assert_eq!(p.failed_tests, ["ssh-hardening/weak-ciphers@ru1", "ssh-hardening/weak-ciphers@core1"]);
    let config: Vec<&str> = p.configuration.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(config, ["inputs/plans/ssh.yaml", "inputs/plans/accounts.yaml", "inputs/rig.yaml"]);

    let s = &scas.predicate;
    assert_eq!(s.run_id, RUN_ID);
    assert_eq!(s.rig.name, "bench");
    assert_eq!(s.verdict, Verdict::Fail);
    assert_eq!(s.counts[&Verdict::Pass], 2);
    assert_eq!(s.journal.records, support::records(&bundle).len() as u64);
    assert_eq!(s.journal.head_sha256, hex::encode(support::records(&bundle).last().unwrap().hash));
    let fail = s.cases.iter().find(|c| c.case == "weak-ciphers" && c.device == "ru1").unwrap();
    assert_eq!((fail.verdict, fail.clause.as_str(), fail.test_name.as_str()), (Verdict::Fail, "4.2.3.2.2", "TC_CRYPTO_WEAK_CIPHERS"));

    let manifest: bundle::Manifest = serde_json::from_slice(&std::fs::read(bundle.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest.journal, s.journal);
    assert_eq!(manifest.devices.len(), 2);
    assert_eq!(manifest.files.len(), 7, "every file but the manifest and the attestation");
}

/// ~20 positions spread over a file, first and last byte included. In the
/// attestation, also every byte outside the signed payloads (the key id, the
/// signature, the embedded public key, the JSON around them): the signature does
/// not cover those, so each needs its own check.
fn positions(file: &str, bytes: &[u8]) -> Vec<usize> {
    let len = bytes.len();
    let mut at: Vec<usize> = (0..20).map(|i| i * (len - 1) / 19).collect();
    if file == ATTESTATION {
        let text = std::str::from_utf8(bytes).unwrap();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let payload = line.find("\"payload\":\"").unwrap() + "\"payload\":\"".len();
            let payload_end = payload + line[payload..].find('"').unwrap();
            at.extend((0..line.len()).filter(|i| *i < payload || *i >= payload_end).map(|i| offset + i));
            offset += line.len();
        }
    }
    at.sort();
    at.dedup();
    at
}

#[test]
fn flipping_any_byte_of_any_file_is_detected_and_located() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let bundle = sealed_bundle(tmp.path(), &standard_cases(), &lab.signing);
    let files = bundle::list_files(&bundle).unwrap();
    assert_eq!(files.len(), 9);
    let masks = [0x01u8, 0x20, 0x80, 0x04];
    let mut flips = 0;
    for file in files {
        let path = bundle.join(&file.path);
        let original = std::fs::read(&path).unwrap();
        for (i, at) in positions(&file.path, &original).into_iter().enumerate() {
            let mut flipped = original.clone();
            flipped[at] ^= masks[i % masks.len()];
            std::fs::write(&path, &flipped).unwrap();
            // Pinned and unpinned take different paths through the signature check.
            for key in [Some(&lab.verifying), None] {
                let report = check(&bundle, key);
                assert_ne!(report.status, Status::Verified, "{} byte {at} (pinned: {})", file.path, key.is_some());
                assert_eq!(report.status, Status::Tampered, "{} byte {at}\n{}", file.path, explain(&report));
                assert!(
                    report.failures().any(|c| c.file.as_deref() == Some(file.path.as_str()) && c.detail.contains(&file.path)),
                    "flip of {} byte {at} not located:\n{}",
                    file.path,
                    explain(&report)
                );
            }
            flips += 1;
        }
        std::fs::write(&path, &original).unwrap();
    }
    assert!(flips >= 9 * 19 + 400, "{flips}");
    assert_eq!(check(&bundle, Some(&lab.verifying)).status, Status::Verified, "every byte restored");
}

#[test]
fn files_added_removed_or_swapped_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let bundle = sealed_bundle(tmp.path(), &standard_cases(), &lab.signing);

    std::fs::write(bundle.join("inputs/plans/extra.yaml"), b"plan: extra\n").unwrap();
    let report = check(&bundle, Some(&lab.verifying));
    assert_eq!(report.status, Status::Tampered);
    assert!(report.summary.contains("inputs/plans/extra.yaml"), "{}", explain(&report));
    std::fs::remove_file(bundle.join("inputs/plans/extra.yaml")).unwrap();

    let junit = std::fs::read(bundle.join("junit.xml")).unwrap();
    std::fs::remove_file(bundle.join("junit.xml")).unwrap();
    let report = check(&bundle, Some(&lab.verifying));
    assert_eq!(report.status, Status::Tampered);
    assert!(report.failures().any(|c| c.detail.contains("junit.xml is missing")), "{}", explain(&report));
    std::fs::write(bundle.join("junit.xml"), junit).unwrap();

    // The two statements swapped: still validly signed, but the order is part of the format.
    let text = std::fs::read_to_string(bundle.join(ATTESTATION)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(bundle.join(ATTESTATION), format!("{}\n{}\n", lines[1], lines[0])).unwrap();
    assert_eq!(check(&bundle, Some(&lab.verifying)).status, Status::Verified, "either order is one statement of each type");
    std::fs::write(bundle.join(ATTESTATION), format!("{}\n{}\n", lines[0], lines[0])).unwrap();
    let report = check(&bundle, Some(&lab.verifying));
    assert_eq!(report.status, Status::Tampered);
    assert!(report.summary.contains("repeated predicate type"), "{}", explain(&report));
}

/// Turn the FAIL of weak-ciphers on ru1 into a PASS in the journal.
fn hide_the_fail(entry: &mut serde_json::Value) {
    let verdict_record = entry["type"] == "case_finished" || entry["type"] == "step_finished";
    if is_case(entry, "weak-ciphers", "ru1") && verdict_record && entry["verdict"] == "FAIL" {
        entry["verdict"] = "PASS".into();
    }
}

#[test]
fn a_journal_edited_and_resigned_with_another_key_fails_against_the_pinned_key() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let forger = keys(tmp.path(), "forger");
    let honest = sealed_bundle(&tmp.path().join("honest"), &standard_cases(), &lab.signing);
    let forged = reseal(
        &honest,
        &tmp.path().join("forged"),
        &forger.signing,
        |entry| {
            hide_the_fail(entry);
            if entry["type"] == "run_finished" {
                entry["verdict"] = "INFRA".into();
            }
        },
        |result| {
            let case = result.cases.iter_mut().find(|c| c.key.case == "weak-ciphers" && c.key.device == "ru1").unwrap();
            case.verdict = Verdict::Pass;
            result.rollup = Rollup::of(result.cases.iter().map(|c| c.verdict));
            result.verdict = result.rollup.verdict;
        },
    );
    assert_eq!(statements(&forged).1.predicate.verdict, Verdict::Infra, "the forgery is self-consistent");

    let report = check(&forged, Some(&lab.verifying));
    assert_eq!(report.status, Status::Tampered, "{}", explain(&report));
    let forger_id = proofrig_evidence::signing::key_id(&forger.verifying);
    let signature_failures: Vec<_> = report.failures().filter(|c| c.what.starts_with("signature")).collect();
    assert_eq!(signature_failures.len(), 2, "{}", explain(&report));
    for failure in signature_failures {
        assert!(failure.detail.contains("not signed by the pinned key"), "{}", failure.detail);
        assert!(failure.detail.contains(&forger_id), "names who did sign: {}", failure.detail);
    }
    assert!(report.summary.starts_with("signature"), "{}", report.summary);
    assert_eq!(report.signer, None);

    // Without --key the forgery is internally consistent: this is why the output
    // shouts UNPINNED and shows the key id.
    let unpinned = check(&forged, None);
    assert_eq!(unpinned.status, Status::Verified, "{}", explain(&unpinned));
    assert!(!unpinned.pinned);
    assert_eq!(unpinned.signer.as_deref(), Some(forger_id.as_str()));
}

#[test]
fn a_journal_edited_behind_consistent_digests_and_signatures_is_caught_by_the_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let honest = sealed_bundle(&tmp.path().join("honest"), &standard_cases(), &lab.signing);
    // The lab's own key re-signs a journal where the FAIL reads PASS; the statement still says FAIL.
    let edited = reseal(&honest, &tmp.path().join("edited"), &lab.signing, hide_the_fail, |_| {});

    let report = check(&edited, Some(&lab.verifying));
    assert_eq!(report.status, Status::Tampered, "{}", explain(&report));
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1, "only the replay can tell:\n{}", explain(&report));
    let replay = failures[0];
    assert_eq!(replay.what, "verdicts replay from the journal");
    let case_finished = support::records(&edited)
        .into_iter()
        .find(|r| r.entry["type"] == "case_finished" && is_case(&r.entry, "weak-ciphers", "ru1"))
        .unwrap();
    assert_eq!(replay.record, Some(case_finished.n));
    assert_eq!(replay.case.as_deref(), Some("ssh-hardening/weak-ciphers@ru1"));
    assert!(replay.detail.contains("PASS") && replay.detail.contains("FAIL"), "{}", replay.detail);
    assert!(report.checks.iter().filter(|c| c.what.starts_with("signature")).all(|c| c.passed()));
    assert!(report.pinned);
}

/// A fresh honest bundle, changed by `tamper` and re-signed by the lab's own key;
/// returns the failed checks.
fn resigned_failures(tamper: impl Fn(&Path), edit: impl Fn(&mut [serde_json::Value; 2])) -> Vec<proofrig_evidence::verify::Check> {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let bundle = sealed_bundle(tmp.path(), &standard_cases(), &lab.signing);
    tamper(&bundle);
    resign(&bundle, &lab.signing, edit);
    let report = check(&bundle, Some(&lab.verifying));
    assert_eq!(report.status, Status::Tampered, "{}", explain(&report));
    assert!(report.checks.iter().filter(|c| c.what.starts_with("signature")).all(|c| c.passed()), "{}", explain(&report));
    report.failures().cloned().collect()
}

#[test]
fn signed_but_inconsistent_content_is_caught_by_the_cross_checks() {
    let whats = |failures: Vec<proofrig_evidence::verify::Check>| failures.into_iter().map(|c| c.what).collect::<Vec<_>>();

    // Re-signing alone, with nothing changed, is no tampering.
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let bundle = sealed_bundle(tmp.path(), &standard_cases(), &lab.signing);
    resign(&bundle, &lab.signing, |_| {});
    assert_eq!(check(&bundle, Some(&lab.verifying)).status, Status::Verified);

    let manifest = whats(resigned_failures(|b| edit_json(&b.join(MANIFEST), |m| m["verdict"] = "PASS".into()), |_| {}));
    assert_eq!(manifest, ["manifest agrees with the statements"]);

    let results = resigned_failures(|b| edit_json(&b.join(RESULTS), |r| r["cases"][1]["verdict"] = "PASS".into()), |_| {});
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].what, "manifest agrees with the statements", "its digest of results.json is stale");
    assert_eq!(results[1].what, "results.json agrees with the statements");
    assert!(results[1].detail.contains("ssh-hardening/weak-ciphers@ru1 (PASS vs FAIL)"), "{}", results[1].detail);

    let lists = whats(resigned_failures(
        |_| {},
        |[test_result, _]| {
            let failed = test_result["predicate"]["failedTests"].as_array_mut().unwrap().remove(0);
            test_result["predicate"]["passedTests"].as_array_mut().unwrap().push(failed);
        },
    ));
    assert_eq!(lists, ["the two statements agree"]);

    let head = resigned_failures(|_| {}, |[_, scas]| scas["predicate"]["journal"]["records"] = 3.into());
    assert_eq!(
        head.iter().map(|c| c.what.as_str()).collect::<Vec<_>>(),
        ["manifest agrees with the statements", "journal chain intact and complete"]
    );
    assert!(head[1].detail.contains("but 3 records"), "{}", head[1].detail);

    let outside = resigned_failures(
        |_| {},
        |statements| {
            for s in statements.iter_mut() {
                s["subject"].as_array_mut().unwrap().push(serde_json::json!({"name": "../../etc/passwd", "digest": {"sha256": "00"}}));
            }
        },
    );
    assert!(outside.iter().any(|c| c.detail.contains("`../../etc/passwd` points outside the bundle")), "{outside:?}");

    let unsigned_journal = resigned_failures(
        |_| {},
        |statements| {
            for s in statements.iter_mut() {
                s["subject"].as_array_mut().unwrap().retain(|x| x["name"] != JOURNAL);
            }
        },
    );
    assert!(unsigned_journal.iter().any(|c| c.detail.contains("do not include journal.jsonl")), "{unsigned_journal:?}");
    assert!(unsigned_journal.iter().any(|c| c.detail.contains("not covered by the signatures: journal.jsonl")), "{unsigned_journal:?}");
}

#[test]
fn a_run_that_never_sealed_is_incomplete_with_the_verified_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = create_writer(tmp.path());
    let cases = standard_cases();
    let entries = journal_entries(&cases, writer.input_refs(), Verdict::Fail);
    // The process dies halfway through the run.
    let written = entries.len() / 2;
    for entry in &entries[..written] {
        writer.journal().append(entry).unwrap();
    }
    let bundle = writer.dir().to_path_buf();
    drop(writer);

    let report = check(&bundle, None);
    assert_eq!(report.status, Status::Incomplete, "{}", explain(&report));
    assert_eq!(report.records_verified, Some(written as u64));
    assert!(report.summary.contains(&format!("{written} journal record(s) verify")), "{}", report.summary);
    assert!(report.summary.contains(&format!("ends after record {}", written - 1)), "{}", report.summary);
    assert_eq!(report.failures().count(), 0);

    assert!(report.checks.iter().any(|c| c.what == "inputs are the ones the journal names" && c.passed()));

    // The last line cut mid-write, as a crash during a write leaves it.
    let journal = bundle.join(JOURNAL);
    let text = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, &text[..text.len() - 7]).unwrap();
    let report = check(&bundle, Some(&keys(tmp.path(), "lab").verifying));
    assert_eq!(report.status, Status::Incomplete, "{}", explain(&report));
    assert_eq!(report.records_verified, Some(written as u64 - 1));
    assert!(report.summary.contains(&format!("middle of record {}", written - 1)), "{}", report.summary);

    // Unsealed inputs are still bound to the journal by RunStarted.
    let plan = bundle.join("inputs/plans/ssh.yaml");
    std::fs::write(&plan, b"plan: something-else\n").unwrap();
    let report = check(&bundle, None);
    assert_eq!(report.status, Status::Tampered, "{}", explain(&report));
    assert!(report.summary.contains("inputs/plans/ssh.yaml differs from the file RunStarted"), "{}", report.summary);
    std::fs::write(&plan, PLAN_SSH).unwrap();

    // A record edited in the middle of an unsealed journal is not a crash.
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replacen("\"step 0\"", "\"step 9\"", 1);
    assert_ne!(edited[2], lines[2]);
    std::fs::write(&journal, edited.join("\n") + "\n").unwrap();
    let report = check(&bundle, None);
    assert_eq!(report.status, Status::Tampered, "{}", explain(&report));
    let failure = report.failures().next().unwrap();
    assert_eq!(failure.record, Some(3), "the break shows at the record after the edited one");
    assert!(failure.detail.contains("journal.jsonl") && failure.detail.contains("record 3"), "{}", failure.detail);
}

#[test]
fn a_sealed_journal_changed_on_disk_is_tampered_not_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let bundle = sealed_bundle(tmp.path(), &standard_cases(), &lab.signing);
    let journal = bundle.join(JOURNAL);
    let text = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, &text[..text.len() - 7]).unwrap();
    let report = check(&bundle, Some(&lab.verifying));
    assert_eq!(report.status, Status::Tampered, "{}", explain(&report));
    assert!(report.failures().any(|c| c.what.starts_with("journal chain") && c.detail.contains("middle of record")));
}

#[test]
fn sealing_refuses_what_would_not_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let cases = standard_cases();

    // A journal without RunFinished.
    let writer = create_writer(&tmp.path().join("a"));
    let entries = journal_entries(&cases, writer.input_refs(), Verdict::Fail);
    for entry in &entries[..entries.len() - 1] {
        writer.journal().append(entry).unwrap();
    }
    let journal = writer.journal().clone();
    let err = writer.seal(&run_result(&cases), &lab.signing, &proofrig_report::Standard).unwrap_err();
    assert!(matches!(err, BundleError::NotFinished { .. }), "{err}");
    assert!(err.to_string().contains("case_finished"), "{err}");
    // Whatever happened, nothing more goes into a journal that sealing closed.
    assert!(matches!(journal.append(&serde_json::json!({"late": true})), Err(JournalError::Closed { .. })));

    // Results that disagree with RunFinished.
    let writer = create_writer(&tmp.path().join("b"));
    for entry in journal_entries(&cases, writer.input_refs(), Verdict::Pass) {
        writer.journal().append(&entry).unwrap();
    }
    let err = writer.seal(&run_result(&cases), &lab.signing, &proofrig_report::Standard).unwrap_err();
    assert!(err.to_string().contains("RunFinished says PASS but the results say FAIL"), "{err}");

    // A second bundle for the same run id, and plan files that would overwrite each other.
    create_writer(&tmp.path().join("c"));
    let again = proofrig_evidence::bundle::BundleWriter::create(&tmp.path().join("c"), RUN_ID, (Path::new("rig.yaml"), RIG_YAML), &[]);
    assert!(matches!(again, Err(BundleError::Exists { .. })));
    let twins = proofrig_evidence::bundle::BundleWriter::create(
        &tmp.path().join("d"),
        RUN_ID,
        (Path::new("rig.yaml"), RIG_YAML),
        &[(Path::new("a/ssh.yaml"), PLAN_SSH), (Path::new("b/ssh.yaml"), PLAN_SSH)],
    );
    assert!(matches!(twins, Err(BundleError::DuplicatePlanName { .. })));
}

#[test]
fn inputs_are_copied_byte_for_byte_and_named_for_run_started() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = create_writer(tmp.path());
    let refs = writer.input_refs().clone();
    assert_eq!(refs.rig.path, "inputs/rig.yaml");
    assert_eq!(refs.plans.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), ["inputs/plans/ssh.yaml", "inputs/plans/accounts.yaml"]);
    assert_eq!(std::fs::read(writer.dir().join("inputs/plans/ssh.yaml")).unwrap(), PLAN_SSH);
    assert_eq!(refs.rig.sha256, bundle::sha256_file(&writer.dir().join("inputs/rig.yaml")).unwrap().0);
}

#[test]
fn junit_counts_failures_errors_and_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let mut cases = standard_cases();
    cases.push(CaseSpec { case: "rekey", verdict: Verdict::Inconclusive, steps: vec![Verdict::Pass], ..cases[0].clone() });
    cases.push(CaseSpec { case: "never", verdict: Verdict::NotRun, steps: vec![], excerpt: "", ..cases[0].clone() });
    let bundle = sealed_bundle(tmp.path(), &cases, &lab.signing);
    let xml = std::fs::read_to_string(bundle.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");

    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    assert_eq!(suites.iter().map(|s| s.attribute("name").unwrap()).collect::<Vec<_>>(), ["ssh-hardening", "accounts"]);
    let testcases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(testcases.len(), 7);
    let with = |tag: &str| testcases.iter().filter(|t| t.children().any(|c| c.has_tag_name(tag))).count();
    assert_eq!((with("failure"), with("error"), with("skipped")), (1, 2, 2));
    assert_eq!(root.attribute("tests"), Some("7"));
    assert_eq!(root.attribute("failures"), Some("1"));
    assert_eq!(root.attribute("errors"), Some("2"));

    let fail = testcases.iter().find(|t| t.attribute("name") == Some("weak-ciphers [ru1]")).unwrap();
    assert_eq!(fail.attribute("classname"), Some("TS 33.117 4.2.3.2.2"));
    assert_eq!(fail.attribute("time"), Some("1.500"));
    let failure = fail.children().find(|c| c.has_tag_name("failure")).unwrap();
    assert_eq!(failure.attribute("type"), Some("FAIL"));
    let out = fail.children().find(|c| c.has_tag_name("system-out")).unwrap();
    assert_eq!(out.text(), Some(EXCERPT_FAIL), "the excerpt survives XML escaping unchanged");

    let infra = testcases.iter().find(|t| t.attribute("name") == Some("weak-ciphers [core1]")).unwrap();
    assert_eq!(infra.children().find(|c| c.has_tag_name("error")).unwrap().attribute("type"), Some("INFRA"));
    let skipped = testcases.iter().find(|t| t.attribute("name") == Some("banner [core1]")).unwrap();
    let message = skipped.children().find(|c| c.has_tag_name("skipped")).unwrap().attribute("message").unwrap();
    assert!(message.contains("waiver W-12"), "{message}");
}

#[test]
fn the_html_report_is_standalone_escaped_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let cases = standard_cases();
    let bundle = sealed_bundle(tmp.path(), &cases, &lab.signing);
    let html = std::fs::read_to_string(bundle.join("report.html")).unwrap();

    assert!(!html.contains("<script"), "device output must not become markup");
    assert!(html.contains("&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;"));
    assert!(html.contains("RU-4400 fw 4.2.1 &lt;b&gt;"), "reported identity escaped too");
    assert!(html.contains("alice &lt;tester&gt;"), "operator escaped");
    for external in ["src=", "<link", "http://", "https://", "@import"] {
        assert!(!html.contains(external), "external resource: {external}");
    }
    for case in &cases {
        assert!(html.contains(case.test_name), "{}", case.test_name);
        assert!(html.contains(&format!("{} / {}", case.plan, case.case)), "{}", case.case);
    }
    assert!(html.contains("waiver W-12"));
    let command = format!("proofrig verify {} --key lab.pub", bundle.display());
    assert!(html.contains(&command), "verify command missing");
    assert!(html.contains(&proofrig_evidence::signing::key_id(&lab.verifying)));
    assert!(html.contains("class=\"v-fail-run\""), "the header is coloured by the run verdict");

    // The compliance matrix lists clauses numerically: 4.2.3.2.2 < 4.2.3.4.2.1 < 4.2.3.4.3.1 < 4.2.3.4.10.
    let matrix = &html[html.find("id=\"matrix\"").unwrap()..html.find("id=\"cases\"").unwrap()];
    let at = |clause: &str| matrix.find(&format!("TS 33.117 {clause}<")).unwrap_or_else(|| panic!("{clause} not in matrix"));
    assert!(at("4.2.3.2.2") < at("4.2.3.4.2.1"));
    assert!(at("4.2.3.4.2.1") < at("4.2.3.4.3.1"));
    assert!(at("4.2.3.4.3.1") < at("4.2.3.4.10"));
    let weak_row = &matrix[at("4.2.3.2.2")..];
    let weak_row = &weak_row[..weak_row.find("</tr>").unwrap()];
    assert!(weak_row.contains(">INFRA<") && weak_row.contains(">FAIL<"), "one verdict per device: {weak_row}");
}

#[test]
fn results_json_round_trips_as_the_run_result() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = keys(tmp.path(), "lab");
    let cases = standard_cases();
    let bundle = sealed_bundle(tmp.path(), &cases, &lab.signing);
    let back: proofrig_evidence::record::RunResult = serde_json::from_slice(&std::fs::read(bundle.join(RESULTS)).unwrap()).unwrap();
    assert_eq!(back, run_result(&cases));
}
