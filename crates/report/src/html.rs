//! The standalone HTML report of a run, for the manager who signs off on it.
//!
//! One file, inline CSS, no scripts and nothing fetched, so it opens the same way
//! from an archive in ten years. Every piece of text comes from plans, devices or
//! their output (an excerpt may hold `<script>` a device printed), so markup is
//! built through [`Html`], whose only way to add text escapes it: markup itself
//! can only be a `&'static str`, never an interpolated string.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proofrig_evidence::record::{CaseResult, Phase, RunResult};
use proofrig_plan::clause_order;
use proofrig_verdict::Verdict;

/// What the report says about the seal it is part of.
pub struct Seal<'a> {
    /// The bundle directory, for the verify command.
    pub bundle_dir: &'a Path,
    /// The signer's key id.
    pub key_id: &'a str,
}

/// HTML being built. Text is always escaped; markup is always a literal.
struct Html(String);

impl Html {
    fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.0, text);
        self
    }

    fn num(&mut self, n: impl Into<u128>) -> &mut Self {
        self.0.push_str(&n.into().to_string());
        self
    }

    /// `<tag class="v v-fail">FAIL</tag>`, the coloured verdict badge.
    fn verdict(&mut self, verdict: Verdict) -> &mut Self {
        self.raw("<span class=\"v ").raw(verdict_class(verdict)).raw("\">").raw(verdict.as_str()).raw("</span>")
    }

    fn row(&mut self, label: &'static str, value: &str) -> &mut Self {
        self.raw("<tr><th>").raw(label).raw("</th><td>").text(value).raw("</td></tr>\n")
    }
}

/// Escape text for element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters from raw console output would make the file invalid HTML.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

fn verdict_class(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Fail => "v-fail",
        Verdict::Error => "v-error",
        Verdict::Infra => "v-infra",
        Verdict::Aborted => "v-aborted",
        Verdict::Inconclusive => "v-inconclusive",
        Verdict::Pass => "v-pass",
        Verdict::Skip => "v-skip",
        Verdict::NotRun => "v-notrun",
    }
}

const STYLE: &str = r#"<style>
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0 auto;max-width:72rem;padding:1.5rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{border-bottom:2px solid #d8dce4;padding-bottom:.2rem;margin-top:2.2rem}
h3{margin:.2rem 0 .6rem}table{border-collapse:collapse;margin:.6rem 0;width:100%}
th,td{border:1px solid #d8dce4;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f4f8;font-weight:600}table.kv th{width:13rem}
pre{background:#f6f7f9;border:1px solid #d8dce4;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:13px}
.v{display:inline-block;border-radius:3px;padding:0 .45rem;font-weight:700;font-size:.85rem;color:#fff;white-space:nowrap}
.v-fail{background:#c62828}.v-error{background:#d84315}.v-infra{background:#6a1b9a}.v-aborted{background:#5d4037}
.v-inconclusive{background:#b7791f}.v-pass{background:#2e7d32}.v-skip{background:#78808c}.v-notrun{background:#a0a6b0}
header{border-left:.6rem solid #78808c;padding:.6rem 1rem;background:#f6f7f9}
header.v-fail-run{border-color:#c62828}header.v-error-run,header.v-infra-run,header.v-aborted-run,header.v-inconclusive-run{border-color:#d84315}
header.v-pass-run{border-color:#2e7d32}
article{border:1px solid #d8dce4;border-radius:4px;padding:.8rem 1rem;margin:1rem 0;page-break-inside:avoid}
.muted{color:#5b6472}code{font-size:13px}
table.matrix{table-layout:fixed}table.matrix th{position:sticky;top:0;z-index:1}
table.matrix col.clause{width:6.5rem}table.matrix col.test{width:15rem}
table.matrix td,table.matrix th{overflow-wrap:anywhere}
.ev{display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden;font-size:.8rem;color:#3d4552;margin-top:.2rem}
.sub{display:block;font-size:.8rem;font-weight:400;color:#5b6472}
@media print{body{max-width:none}a{color:inherit;text-decoration:none}}
</style>
"#;

/// Render the report of `result`, sealed as `seal` says.
pub fn render(result: &RunResult, seal: &Seal<'_>) -> String {
    let mut h = Html(String::with_capacity(64 * 1024));
    h.raw("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>proofrig run ")
        .text(&result.run_id)
        .raw(": ")
        .raw(result.verdict.as_str())
        .raw("</title>\n")
        .raw(STYLE)
        .raw("</head>\n<body>\n");
    header(&mut h, result);
    summary(&mut h, result);
    matrix(&mut h, result);
    cases(&mut h, result);
    devices(&mut h, result);
    how_to_verify(&mut h, result, seal);
    h.raw("</body>\n</html>\n");
    h.0
}

fn header(h: &mut Html, result: &RunResult) {
    h.raw("<header class=\"").raw(verdict_class(result.verdict)).raw("-run\">\n<h1>SCAS test run ").text(&result.run_id);
    h.raw("</h1>\n<p>Overall verdict: ").verdict(result.verdict);
    if result.aborted {
        h.raw(" <strong>(the run was aborted)</strong>");
    }
    h.raw(" &middot; ").text(&result.rollup.summary()).raw(" across ").num(result.cases.len() as u64).raw(" case run(s)</p>\n");
    h.raw("<table class=\"kv\">\n")
        .row("Rig", &result.rig_name)
        .row("Operator", &result.operator)
        .row("Host", &result.host)
        .row("Started", &result.started)
        .row("Ended", &result.ended)
        .row("proofrig version", &result.proofrig_version)
        .raw("</table>\n</header>\n");
}

fn summary(h: &mut Html, result: &RunResult) {
    h.raw("<h2 id=\"summary\">Verdict summary</h2>\n<table>\n<tr><th>Verdict</th><th>Cases</th><th>Meaning</th></tr>\n");
    for verdict in Verdict::ALL {
        let count = result.rollup.count(verdict);
        if count == 0 {
            continue;
        }
        h.raw("<tr><td>").verdict(verdict).raw("</td><td>").num(count as u64).raw("</td><td>").raw(meaning(verdict));
        h.raw("</td></tr>\n");
    }
    h.raw("</table>\n<table>\n<tr><th>Verdict</th><th>Case</th><th>Device</th><th>Test name</th><th>Clause</th></tr>\n");
    for i in by_clause(result) {
        let case = &result.cases[i];
        h.raw("<tr><td>").verdict(case.verdict).raw("</td><td><a href=\"#case-").num(i as u64).raw("\">");
        h.text(&case.key.plan).raw(" / ").text(&case.key.case).raw("</a></td><td>").text(&case.key.device);
        h.raw("</td><td>").text(&case.scas_shown().test_name).raw("</td><td>").text(&case.scas_shown().spec).raw(" ");
        h.text(&case.scas_shown().clause).raw("</td></tr>\n");
    }
    h.raw("</table>\n");
}

fn meaning(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Fail => "The device was shown non-compliant.",
        Verdict::Error => "The test itself failed; the device's compliance is unknown.",
        Verdict::Infra => "The test bench failed (rig, agent or power); the test could not run.",
        Verdict::Aborted => "Stopped by a person or a signal.",
        Verdict::Inconclusive => "The evidence decides neither way.",
        Verdict::Pass => "The device was shown compliant, with positive evidence.",
        Verdict::Skip => "Deliberately not run, for the reason given.",
        Verdict::NotRun => "Not reached.",
    }
}

/// The order cases are shown in: by specification, clause number, test name, device.
fn by_clause(result: &RunResult) -> Vec<usize> {
    let mut order: Vec<usize> = (0..result.cases.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&result.cases[a], &result.cases[b]);
        a.scas_shown()
            .spec
            .cmp(&b.scas_shown().spec)
            .then_with(|| clause_order(&a.scas_shown().clause, &b.scas_shown().clause))
            .then_with(|| a.scas_shown().test_name.cmp(&b.scas_shown().test_name))
            .then_with(|| a.key.device.cmp(&b.key.device))
    });
    order
}

/// Longest evidence shown in a matrix cell; the case's section has all of it.
const MATRIX_EVIDENCE_CHARS: usize = 160;

/// One row per SCAS test case, clause by clause, one column per device: the verdict
/// and the evidence behind it, linked to the case's section.
fn matrix(h: &mut Html, result: &RunResult) {
    let devices: BTreeSet<&str> = result.cases.iter().map(|c| c.key.device.as_str()).collect();
    let roles: BTreeMap<&str, &str> = result.devices.iter().map(|d| (d.device.as_str(), d.role.as_str())).collect();
    // (spec, clause, test name) -> device -> the cases that test it there, worst first.
    type Row<'r> = ((String, String, String), BTreeMap<&'r str, Vec<usize>>);
    let mut rows: Vec<Row<'_>> = Vec::new();
    for i in by_clause(result) {
        let case = &result.cases[i];
        let scas = case.scas_shown();
        let key = (scas.spec.clone(), scas.clause.clone(), scas.test_name.clone());
        if rows.last().is_none_or(|(k, _)| *k != key) {
            rows.push((key, BTreeMap::new()));
        }
        let cell = rows.last_mut().expect("pushed above").1.entry(case.key.device.as_str()).or_default();
        cell.push(i);
        cell.sort_by_key(|&i| result.cases[i].verdict);
    }

    h.raw("<h2 id=\"matrix\">Compliance matrix</h2>\n<p class=\"muted\">One row per SCAS test case, by clause; ");
    h.raw("per device the verdict and the evidence behind it (the worst, where several cases test it there). ");
    h.raw("Each verdict links to its case.</p>\n<table class=\"matrix\">\n<colgroup><col class=\"clause\"><col class=\"test\">");
    for _ in &devices {
        h.raw("<col>");
    }
    h.raw("</colgroup>\n<tr><th>Clause</th><th>Test case</th>");
    for device in &devices {
        h.raw("<th>").text(device);
        if let Some(role) = roles.get(device) {
            h.raw("<span class=\"sub\">").text(role).raw("</span>");
        }
        h.raw("</th>");
    }
    h.raw("</tr>\n");
    for ((spec, clause, test_name), cells) in &rows {
        h.raw("<tr><td>").text(spec).raw(" ").text(clause).raw("</td><td>").text(test_name);
        if let Some(first) = cells.values().next().and_then(|c| c.first()) {
            h.raw("<span class=\"sub\">").text(&result.cases[*first].title).raw("</span>");
        }
        h.raw("</td>");
        for device in &devices {
            let Some(cases) = cells.get(device) else {
                h.raw("<td class=\"muted\">not tested</td>");
                continue;
            };
            let worst = &result.cases[cases[0]];
            h.raw("<td><a href=\"#case-").num(cases[0] as u64).raw("\">").verdict(worst.verdict).raw("</a>");
            let evidence = matrix_evidence(worst);
            if !evidence.is_empty() {
                h.raw("<span class=\"ev\">").text(&evidence).raw("</span>");
            }
            if cases.len() > 1 {
                h.raw("<span class=\"sub\">and ").num(cases.len() as u64 - 1).raw(" more case(s): ");
                for (n, &i) in cases[1..].iter().enumerate() {
                    if n > 0 {
                        h.raw(", ");
                    }
                    h.raw("<a href=\"#case-").num(i as u64).raw("\">").raw(result.cases[i].verdict.as_str()).raw("</a>");
                }
                h.raw("</span>");
            }
            h.raw("</td>");
        }
        h.raw("</tr>\n");
    }
    h.raw("</table>\n");
}

/// The evidence a matrix cell shows: the first line of the case's excerpt (what the
/// deciding step found), or why it was not run, cut to [`MATRIX_EVIDENCE_CHARS`].
fn matrix_evidence(case: &CaseResult) -> String {
    let text = case.skip_reason.as_deref().unwrap_or_else(|| case.evidence_excerpt.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    let text = text.trim();
    if text.chars().count() <= MATRIX_EVIDENCE_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MATRIX_EVIDENCE_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn cases(h: &mut Html, result: &RunResult) {
    h.raw("<h2 id=\"cases\">Cases</h2>\n");
    for i in by_clause(result) {
        case_article(h, i, &result.cases[i]);
    }
}

fn case_article(h: &mut Html, i: usize, case: &CaseResult) {
    h.raw("<article id=\"case-").num(i as u64).raw("\">\n<h3>").verdict(case.verdict).raw(" ").text(&case.title);
    h.raw("</h3>\n<table class=\"kv\">\n")
        .row("Test name", &case.scas_shown().test_name)
        .row("Plan / case", &format!("{} / {}", case.key.plan, case.key.case))
        .row("Device", &case.key.device);
    let spec = match &case.scas_shown().version {
        Some(version) => format!("{} V{} clause {}", case.scas_shown().spec, version, case.scas_shown().clause),
        None => format!("{} clause {}", case.scas_shown().spec, case.scas_shown().clause),
    };
    h.row("Specification", &spec);
    let requirement = match &case.scas_shown().requirement_clause {
        Some(clause) => format!("{} (clause {clause})", case.scas_shown().requirement),
        None => case.scas_shown().requirement.clone(),
    };
    h.row("Requirement", &requirement);
    if !case.scas_shown().threats.is_empty() {
        h.row("Threats", &case.scas_shown().threats.join(", "));
    }
    h.row("Purpose", &case.purpose).row("Expected result", &case.expected);
    if let Some(reason) = &case.skip_reason {
        h.row("Why not run", reason);
    }
    h.row("Duration", &format!("{:.1} s", case.duration_ms as f64 / 1000.0)).raw("</table>\n");

    h.raw("<h4>Evidence behind the verdict</h4>\n");
    if case.evidence_excerpt.is_empty() {
        h.raw("<p class=\"muted\">No evidence excerpt (see the steps and the journal).</p>\n");
    } else {
        h.raw("<pre>").text(&case.evidence_excerpt).raw("</pre>\n");
    }
    if !case.steps.is_empty() {
        h.raw("<h4>Steps</h4>\n<table>\n<tr><th>#</th><th>Step</th><th>Action</th><th>Verdict</th><th>What was found</th><th>Journal record</th></tr>\n");
        for step in &case.steps {
            h.raw("<tr><td>");
            if step.phase == Phase::Restore {
                h.raw("restore ");
            }
            h.num(step.index as u64 + 1).raw("</td><td>").text(&step.label).raw("</td><td><code>").text(&step.action);
            h.raw("</code></td><td>").verdict(step.verdict).raw("</td><td>").text(&step.message).raw("</td><td>");
            h.num(step.record).raw("</td></tr>\n");
        }
        h.raw("</table>\n");
    }
    h.raw("</article>\n");
}

fn devices(h: &mut Html, result: &RunResult) {
    h.raw("<h2 id=\"devices\">Devices under test</h2>\n<table>\n<tr><th>Device</th><th>Role</th><th>Declared identity (rig file)</th><th>Reported by the device</th></tr>\n");
    for device in &result.devices {
        let declared = &device.declared;
        let parts: Vec<String> =
            [("vendor", &declared.vendor), ("model", &declared.model), ("serial", &declared.serial), ("firmware", &declared.firmware)]
                .iter()
                .filter_map(|(label, value)| value.as_ref().map(|v| format!("{label}: {v}")))
                .collect();
        h.raw("<tr><td>").text(&device.device).raw("</td><td>").text(&device.role).raw("</td><td>");
        if parts.is_empty() {
            h.raw("<span class=\"muted\">none declared</span>");
        } else {
            h.text(&parts.join(", "));
        }
        h.raw("</td><td>");
        match &device.reported {
            Some(reported) => h.raw("<pre>").text(reported).raw("</pre>"),
            None => h.raw("<span class=\"muted\">not read during the run</span>"),
        };
        h.raw("</td></tr>\n");
    }
    h.raw("</table>\n");
}

fn how_to_verify(h: &mut Html, result: &RunResult, seal: &Seal<'_>) {
    h.raw("<h2 id=\"verify\">How to verify this report</h2>\n<p>This report is one file of a signed evidence bundle (run ");
    h.text(&result.run_id).raw("). The bundle holds the plans and rig file exactly as run, the hash-chained journal of ");
    h.raw("everything exchanged with the devices, and two signed in-toto statements over every file. Anyone can check ");
    h.raw("it offline, without trusting the lab, with the lab's public key:</p>\n<pre>proofrig verify ");
    h.text(&shell_quote(&seal.bundle_dir.display().to_string())).raw(" --key lab.pub</pre>\n");
    h.raw("<p>(use the directory wherever the bundle was copied to, and the lab's public key file for <code>lab.pub</code>). ");
    h.raw("The bundle was signed by the key</p>\n<pre>").text(seal.key_id).raw("</pre>\n");
    h.raw("<p>Compare this key id with the one the lab published. <code>proofrig verify</code> checks every file's ");
    h.raw("digest, the journal chain and the signatures, and recomputes every verdict from the journal; it prints ");
    h.raw("<code>VERIFIED</code> and exits 0 only if everything holds. A changed file is reported as ");
    h.raw("<code>TAMPERED</code> (exit 1), a run that never finished as <code>INCOMPLETE</code> (exit 2). ");
    h.raw("This HTML file alone proves nothing: it is the bundle that is signed.</p>\n");
}

/// Quote a path for a POSIX shell when it needs it, so the command can be pasted.
fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:+=@,".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_quotes_and_control_bytes() {
        assert_eq!(escape("<script>alert('x')</script> & \"y\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;");
        assert_eq!(escape("a\u{1b}[31mb\n"), "a\\x1b[31mb\n");
    }

    #[test]
    fn clauses_sort_numerically() {
        let mut clauses = vec!["4.2.10", "4.2.9", "4.10.1", "4.2.3.4.1", "4.2.3"];
        clauses.sort_by(|a, b| clause_order(a, b));
        assert_eq!(clauses, ["4.2.3", "4.2.3.4.1", "4.2.9", "4.2.10", "4.10.1"]);
    }

    /// A run of `tests` SCAS test cases on ru1, ru2, core1, core2, in execution
    /// order (plan by plan, device by device), hardened passing and weak failing.
    fn library_run(tests: usize) -> RunResult {
        use proofrig_evidence::record::{CaseKey, DeviceIdentity, StepResult};
        use proofrig_plan::ScasRef;
        let devices = [("ru1", "radio-unit"), ("ru2", "radio-unit"), ("core1", "core"), ("core2", "core")];
        let mut cases = Vec::new();
        // Clauses out of order, with 4.2.10 after 4.2.9 only numerically.
        let clauses = [
            "4.4.2",
            "4.2.10",
            "4.2.9",
            "4.3.2.6",
            "4.2.3.2.4",
            "4.2.3.4.10",
            "4.2.3.4.2",
            "4.2.11",
            "4.3.3.1",
            "4.2.4.1.1",
            "4.2.3.5.1",
            "4.2.2",
        ];
        for (t, clause) in clauses.iter().cycle().take(tests).enumerate() {
            for (device, _) in devices {
                let weak = device.ends_with('2');
                let verdict = if weak { Verdict::Fail } else { Verdict::Pass };
                let excerpt = if weak {
                    format!("TC_{t} on {device}: found <weak> thing {}\nsecond line", "x".repeat(300))
                } else {
                    format!("TC_{t} on {device}: nothing weak offered")
                };
                cases.push(CaseResult {
                    key: CaseKey { plan: format!("plan-{t}"), case: format!("TC_{t}"), device: device.into() },
                    title: format!("Case {t}: a title of some length"),
                    scas: Some(ScasRef {
                        spec: "TS 33.117".into(),
                        version: None,
                        clause: clause.to_string(),
                        test_name: format!("TC_A_RATHER_LONG_SCAS_TEST_NAME_WITHOUT_SPACES_{t}"),
                        requirement: "r".into(),
                        requirement_clause: None,
                        threats: vec![],
                    }),
                    purpose: "p".into(),
                    expected: "e".into(),
                    verdict,
                    skip_reason: None,
                    steps: vec![StepResult {
                        phase: Phase::Steps,
                        index: 0,
                        label: "check".into(),
                        action: "assert".into(),
                        verdict,
                        message: excerpt.lines().next().unwrap().into(),
                        record: 7,
                        duration_ms: 3,
                    }],
                    evidence_excerpt: excerpt,
                    duration_ms: 3,
                });
            }
        }
        let rollup = proofrig_verdict::Rollup::of(cases.iter().map(|c| c.verdict));
        RunResult {
            run_id: "run".into(),
            proofrig_version: "0".into(),
            operator: "o".into(),
            host: "h".into(),
            rig_name: "simlab".into(),
            started: "s".into(),
            ended: "e".into(),
            aborted: false,
            verdict: rollup.verdict,
            rollup,
            cases,
            devices: devices
                .iter()
                .map(|(d, role)| DeviceIdentity {
                    device: d.to_string(),
                    role: role.to_string(),
                    declared: Default::default(),
                    reported: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_matrix_goes_clause_by_clause_with_each_device_s_verdict_and_evidence() {
        let result = library_run(12);
        let html = render(&result, &Seal { bundle_dir: Path::new("results/run"), key_id: "k" });
        let matrix = &html[html.find("id=\"matrix\"").unwrap()..html.find("id=\"cases\"").unwrap()];
        assert!(matrix.contains("<table class=\"matrix\">"), "a fixed-layout table that wraps long names");
        let header = &matrix[matrix.find("<tr>").unwrap()..];
        let header = &header[..header.find("</tr>").unwrap()];
        let device_columns: Vec<&str> =
            ["core1", "core2", "ru1", "ru2"].into_iter().filter(|d| header.contains(&format!("<th>{d}<"))).collect();
        assert_eq!(device_columns.len(), 4, "a column per device: {header}");
        assert!(header.contains("radio-unit"), "with its role: {header}");

        let rows: Vec<&str> = matrix.split("<tr><td>").skip(1).collect();
        assert_eq!(rows.len(), 12, "one row per SCAS test case");
        let clauses: Vec<&str> = rows.iter().map(|r| r.strip_prefix("TS 33.117 ").unwrap().split('<').next().unwrap()).collect();
        let mut sorted = clauses.clone();
        sorted.sort_by(|a, b| clause_order(a, b));
        assert_eq!(clauses, sorted, "clause by clause");
        assert_eq!(clauses.iter().position(|c| *c == "4.2.9").unwrap() + 1, clauses.iter().position(|c| *c == "4.2.10").unwrap());

        for row in &rows {
            let cells: Vec<&str> = row.split("<td>").skip(1).collect();
            assert_eq!(cells.len(), 5, "test name and four devices: {row}");
            for cell in &cells[1..] {
                let verdict = if cell.contains("v-fail") { "FAIL" } else { "PASS" };
                assert!(cell.contains(&format!(">{verdict}</span></a>")), "the verdict, linked: {cell}");
                let anchor: usize = cell["<a href=\"#case-".len()..].split('"').next().unwrap().parse().unwrap();
                let case = &result.cases[anchor];
                assert_eq!(case.verdict.as_str(), verdict, "links to the case it shows");
                let tag = "<span class=\"ev\">";
                let evidence = cell[cell.find(tag).expect("evidence in every cell") + tag.len()..].split("</span>").next().unwrap();
                assert!(evidence.starts_with(&format!("{} on {}", case.key.case, case.key.device)), "the evidence behind it: {evidence}");
                assert!(!evidence.contains("second line") && evidence.chars().count() <= MATRIX_EVIDENCE_CHARS + 20, "short: {evidence}");
                if verdict == "FAIL" {
                    assert!(evidence.contains("&lt;weak&gt;") && evidence.ends_with('…'), "escaped and cut: {evidence}");
                }
            }
        }
        // The case list and sections follow the same order.
        let listed: Vec<usize> = html[html.find("id=\"summary\"").unwrap()..html.find("id=\"matrix\"").unwrap()]
            .split("<a href=\"#case-")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(listed, by_clause(&result));
        assert_eq!(listed.len(), 48);
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_quote("results/run-1"), "results/run-1");
        assert_eq!(shell_quote("my results/it's"), "'my results/it'\\''s'");
    }
}
