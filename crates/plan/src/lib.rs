//! Plans: loading, validation, and `proofrig plan check`.
//!
//! Everything that can be wrong with a plan without running it is found here and
//! reported at file:line:column with the field path and a hint: unknown step kinds,
//! steps with no or two actions, patterns that do not compile, references to values
//! no earlier step captured, duplicate case ids, a skip without a reason.

pub mod body;
pub mod catalogue;
pub mod elf;
pub mod library;
pub mod model;
pub mod scope;
pub mod script;
pub mod tally;
pub mod template;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use model::*;
use proofrig_model::yaml::{nearest, YamlError, YamlSource};

/// A loaded, validated plan with its exact bytes (for the evidence bundle).
#[derive(Debug, Clone)]
pub struct Plan {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub spec: PlanFile,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error("cannot read plan file {path}: {source}")]
    #[diagnostic(help("check the path; the bundled plans live in testplans/"))]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<YamlError>),
}

impl From<Box<YamlError>> for PlanError {
    fn from(err: Box<YamlError>) -> Self {
        PlanError::Invalid(err)
    }
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let bytes = std::fs::read(path).map_err(|source| PlanError::Read { path: path.to_path_buf(), source })?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// A plan already in memory (e.g. the bundled library), named `name` in errors,
    /// results and bundles; keeps the exact bytes.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Plan, PlanError> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let mut plan = Self::parse(name, &text)?;
        plan.bytes = bytes.to_vec();
        Ok(plan)
    }

    pub fn parse(name: &str, text: &str) -> Result<Plan, PlanError> {
        let source = YamlSource::new(name, text);
        let mut spec: PlanFile =
            source.parse().map_err(|err| misplaced_action(&source).filter(|placed| placed.message == err.message).unwrap_or(err))?;
        locate_scripts(&source, &mut spec);
        validate(&source, &spec)?;
        Ok(Plan { path: PathBuf::from(name), bytes: text.as_bytes().to_vec(), spec })
    }
}

/// A plan's file name without its folder, as a bundle stores it (`plans/NAME`): what
/// a script's runtime errors name, so the message a run records is the one replay
/// recomputes from the bundle's copy, whatever path the plan was given by.
fn file_name(path: &str) -> String {
    Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path).to_string()
}

/// A step with no action or with two, placed at the step (or at its second action)
/// with a hint. A [`Step`] holds exactly one action, so such a step fails to parse,
/// and serde can neither say which step that was nor give a hint: when a plan does
/// not parse, its steps' keys are read again to find the first such step (the one
/// the parse stopped at, if its error says so). None when every step whose keys are
/// all known has one action.
fn misplaced_action(src: &YamlSource) -> Option<Box<YamlError>> {
    /// Only the keys of each step; anything else of the plan is ignored.
    #[derive(serde::Deserialize)]
    struct PlanShape {
        #[serde(default)]
        cases: Vec<CaseShape>,
    }
    #[derive(serde::Deserialize)]
    struct CaseShape {
        #[serde(default)]
        steps: Vec<StepShape>,
        #[serde(default)]
        restore: Vec<StepShape>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum StepShape {
        Map(std::collections::BTreeMap<String, serde::de::IgnoredAny>),
        Other(serde_json::Value),
    }
    let plan: PlanShape = serde_saphyr::from_str(&src.text).ok()?;
    for (c, case) in plan.cases.iter().enumerate() {
        for (list, steps) in [("steps", &case.steps), ("restore", &case.restore)] {
            for (s, step) in steps.iter().enumerate() {
                let keys: Vec<&str> = match step {
                    StepShape::Map(map) => map.keys().map(String::as_str).collect(),
                    StepShape::Other(serde_json::Value::Null) => Vec::new(),
                    StepShape::Other(_) => continue,
                };
                // A key that is no step key is refused by the parse itself, at the key.
                if !keys.iter().all(|key| model::is_step_key(key)) {
                    continue;
                }
                let mut actions: Vec<ActionKind> = keys.iter().filter_map(|key| ActionKind::from_name(key)).collect();
                actions.sort();
                let Some((message, hint)) = model::action_count_error(&actions) else { continue };
                let at = format!("cases[{c}].{list}[{s}]");
                let field = match actions.get(1) {
                    Some(second) => format!("{at}.{second}"),
                    None => at,
                };
                return Some(src.error_at(&field, message, Some(hint)));
            }
        }
    }
    None
}

/// Remember where each script's text starts, so errors found while it runs name
/// the plan file's line as well as the script's.
fn locate_scripts(src: &YamlSource, plan: &mut PlanFile) {
    for (c, case) in plan.cases.iter_mut().enumerate() {
        for (list, steps) in [("steps", &mut case.steps), ("restore", &mut case.restore)] {
            for (s, step) in steps.iter_mut().enumerate() {
                if step.script().is_some() {
                    let field = format!("cases[{c}].{list}[{s}].script");
                    step.script_origin = src.scalar_origin(&field).map(|text| ScriptOrigin { file: file_name(&src.name), text });
                }
            }
        }
    }
}

/// Names every plan may refer to besides its own captures.
const SCOPE_ROOTS: &[&str] = &["param", "device"];

fn validate(src: &YamlSource, plan: &PlanFile) -> Result<(), Box<YamlError>> {
    if plan.cases.is_empty() {
        return Err(src.error_at("cases", "a plan needs at least one case", None));
    }
    let mut ids = BTreeSet::new();
    for (c, case) in plan.cases.iter().enumerate() {
        let at = format!("cases[{c}]");
        if !ids.insert(case.id.as_str()) {
            return Err(src.error_at(&format!("{at}.id"), format!("case id `{}` is used twice in this plan", case.id), None));
        }
        if let Some(scas) = &case.scas {
            validate_scas(src, &format!("{at}.scas"), scas)?;
        }
        if let Some(reason) = &case.skip {
            if reason.trim().is_empty() {
                return Err(src.error_at(&format!("{at}.skip"), "a skipped case needs a reason", None));
            }
        }
        if case.steps.is_empty() && case.skip.is_none() {
            return Err(src.error_at(&format!("{at}.steps"), "a case needs at least one step", None));
        }
        let mut known: Vec<String> = SCOPE_ROOTS.iter().map(|s| s.to_string()).collect();
        for (list, steps) in [("steps", &case.steps), ("restore", &case.restore)] {
            for (s, step) in steps.iter().enumerate() {
                let at = format!("{at}.{list}[{s}]");
                validate_step(src, &at, step, plan, &known)?;
                let set = match &step.action {
                    Action::Set(values) => Some(values),
                    _ => None,
                };
                let defined = step.capture.iter().cloned().chain(set.into_iter().flat_map(|m| m.keys().cloned()));
                known.extend(defined);
            }
        }
    }
    Ok(())
}

fn validate_scas(src: &YamlSource, at: &str, scas: &ScasRef) -> Result<(), Box<YamlError>> {
    let clause_ok =
        !scas.clause.is_empty() && scas.clause.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !clause_ok {
        return Err(src.error_at(
            &format!("{at}.clause"),
            format!("`{}` is not a clause number", scas.clause),
            Some("write it as in the specification, e.g. 4.3.2.6".into()),
        ));
    }
    if !scas.spec.starts_with("TS ") && !scas.spec.starts_with("TR ") {
        return Err(src.error_at(
            &format!("{at}.spec"),
            format!("`{}` is not a 3GPP document name", scas.spec),
            Some("e.g. `TS 33.117`".into()),
        ));
    }
    Ok(())
}

fn validate_step(src: &YamlSource, at: &str, step: &Step, plan: &PlanFile, known: &[String]) -> Result<(), Box<YamlError>> {
    if let Some(name) = &step.capture {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || SCOPE_ROOTS.contains(&name.as_str()) {
            return Err(src.error_at(
                &format!("{at}.capture"),
                format!("`{name}` cannot name a capture"),
                Some("use letters, digits and _, and not `param` or `device`".into()),
            ));
        }
    }
    if let Action::Script(source) = &step.action {
        // A script reads `device`, `param` and earlier captures as variables.
        return script_check(src, &format!("{at}.script"), source, step, known);
    }
    // Every ${...} must name a parameter, the device, or an earlier capture.
    let action = step.kind();
    let body = body::action_body(step);
    let refs = template::references_in_value(&body).map_err(|_| src.error_at(&format!("{at}.{action}"), "unclosed `${`", None))?;
    for r in refs {
        let root = r.root();
        if root == "param" {
            let name = r.path.strip_prefix("param.").unwrap_or("");
            let name = name.split(['.', '[']).next().unwrap_or("");
            if !plan.parameters.contains_key(name) {
                let params: Vec<&str> = plan.parameters.keys().map(String::as_str).collect();
                return Err(src.error_at(
                    &format!("{at}.{action}"),
                    format!("`${{{}}}`: the plan has no parameter `{name}`", r.path),
                    Some(match nearest(name, &params) {
                        Some(best) => format!("did you mean `param.{best}`?"),
                        None => "declare it under `parameters:` at the top of the plan".into(),
                    }),
                ));
            }
        } else if !known.iter().any(|k| k == root) {
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            return Err(src.error_at(
                &format!("{at}.{action}"),
                format!("`${{{}}}` refers to `{root}`, which no earlier step captures", r.path),
                Some(match nearest(root, &names) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("known here: {}", names.join(", ")),
                }),
            ));
        }
    }
    validate_action(src, at, &step.action)
}

/// What each action's body must hold beyond its types: patterns that compile, one
/// comparison per assert, port and community lists that parse (where not templated).
fn validate_action(src: &YamlSource, at: &str, action: &Action) -> Result<(), Box<YamlError>> {
    let literal = |p: &str| !p.contains("${");
    let check_regex = |field: String, pattern: &str| -> Result<(), Box<YamlError>> {
        if literal(pattern) {
            if let Err(err) = regex::bytes::Regex::new(pattern) {
                let detail = err.to_string().lines().last().unwrap_or("").trim().to_string();
                return Err(src.error_at(&field, format!("invalid regular expression: {detail}"), None));
            }
        }
        Ok(())
    };
    match action {
        Action::ConsoleExpect(expect) => {
            if expect.patterns.is_empty() {
                return Err(src.error_at(&format!("{at}.console_expect.patterns"), "give at least one pattern", None));
            }
            for (i, p) in expect.patterns.iter().enumerate() {
                check_regex(format!("{at}.console_expect.patterns[{i}]"), p)?;
            }
        }
        Action::Assert(assert) => {
            let ops = assert.operators();
            match ops.len() {
                1 => {}
                0 => {
                    return Err(src.error_at(
                        &format!("{at}.assert"),
                        "this assert has no comparison",
                        Some(format!("give exactly one of: {}", ASSERT_OPERATORS.join(", "))),
                    ))
                }
                _ => {
                    return Err(src.error_at(
                        &format!("{at}.assert.{}", ops[1].0),
                        format!("an assert has exactly one comparison; this one has {} and {}", ops[0].0, ops[1].0),
                        Some("split it into two asserts".into()),
                    ))
                }
            }
            for (op, operand) in &ops {
                if let ("matches" | "not_matches", serde_json::Value::String(p)) = (*op, operand) {
                    check_regex(format!("{at}.assert.{op}"), p)?;
                }
            }
        }
        Action::TcpScan(scan) => {
            if literal(&scan.ports) {
                if let Err(reason) = parse_ports(&scan.ports) {
                    return Err(src.error_at(
                        &format!("{at}.tcp_scan.ports"),
                        reason,
                        Some("e.g. \"1-1024\" or \"22,80,443,8000-8100\"".into()),
                    ));
                }
            }
        }
        Action::UdpScan(scan) => {
            if literal(&scan.ports) {
                if let Err(reason) = parse_ports(&scan.ports) {
                    return Err(src.error_at(&format!("{at}.udp_scan.ports"), reason, Some("e.g. \"1-1024\" or \"53,123,161\"".into())));
                }
            }
            if scan.rate == Some(0) {
                return Err(src.error_at(
                    &format!("{at}.udp_scan.rate"),
                    "a rate of 0 probes a second never scans",
                    Some("leave it out for 800 a second".into()),
                ));
            }
        }
        Action::SnmpProbe(probe) => {
            if literal(&probe.communities) {
                if let Err(reason) = parse_communities(&probe.communities) {
                    return Err(src.error_at(&format!("{at}.snmp_probe.communities"), reason, Some("e.g. \"public,private\"".into())));
                }
            }
            if probe.versions.as_ref().is_some_and(Vec::is_empty) {
                return Err(src.error_at(
                    &format!("{at}.snmp_probe.versions"),
                    "no versions given",
                    Some("leave it out for both, or e.g. [v2c]".into()),
                ));
            }
        }
        Action::HttpRequest(request) => {
            let method = request.method.as_deref().unwrap_or("GET");
            let headers: Vec<(String, String)> = request.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            if literal(method) && literal(&request.path) {
                if let Err(reason) = proofrig_model::wire::http::check_request(method, &request.path, &headers) {
                    return Err(src.error_at(&format!("{at}.http_request"), reason, Some("e.g. { method: TRACE, path: / }".into())));
                }
            }
            if let Some(port) = &request.port {
                if !proofrig_model::wire::port_or_template(port) {
                    return Err(src.error_at(
                        &format!("{at}.http_request.port"),
                        "not a TCP port",
                        Some("e.g. 8080 or ${device.declared.web_port}".into()),
                    ));
                }
            }
        }
        Action::SyslogReceive(receive) => {
            if literal(&receive.listen) {
                if let Err(reason) = proofrig_model::wire::syslog::Listen::parse(&receive.listen) {
                    return Err(src.error_at(
                        &format!("{at}.syslog_receive.listen"),
                        reason,
                        Some("e.g. ${device.declared.log_server}".into()),
                    ));
                }
            }
            if receive.refused_login.trim().is_empty() {
                return Err(src.error_at(
                    &format!("{at}.syslog_receive.refused_login"),
                    "no account given",
                    Some("e.g. ${device.ssh.user}".into()),
                ));
            }
        }
        Action::TlsAudit(audit) => {
            if !proofrig_model::wire::port_or_template(&audit.port) {
                return Err(src.error_at(
                    &format!("{at}.tls_audit.port"),
                    "not a TCP port",
                    Some("e.g. 443 or ${device.declared.tls_port}".into()),
                ));
            }
        }
        // Their types say all there is to check (a script is compiled by `validate_step`).
        Action::Power(_)
        | Action::Wait(_)
        | Action::ConsoleSend(_)
        | Action::ConsoleLogin(_)
        | Action::ConsoleRun(_)
        | Action::SshExec(_)
        | Action::SshFetch(_)
        | Action::SshLogin(_)
        | Action::SshSu(_)
        | Action::SshAudit(_)
        | Action::SshIdle(_)
        | Action::SshNegotiate(_)
        | Action::Set(_)
        | Action::Script(_) => {}
    }
    Ok(())
}

/// The communities of an `snmp_probe` step: comma-separated, each non-empty.
pub fn parse_communities(spec: &str) -> Result<Vec<String>, String> {
    let communities: Vec<String> = spec.split(',').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect();
    if communities.is_empty() {
        return Err("no communities given".into());
    }
    Ok(communities)
}

fn script_check(src: &YamlSource, field: &str, source: &str, step: &Step, known: &[String]) -> Result<(), Box<YamlError>> {
    let Err((line, column, message)) = crate::script::check(source, known) else { return Ok(()) };
    let (file_line, file_column) = step.script_origin.as_ref().map_or((line, column), |o| o.text.locate(line, column));
    let hint = message.strip_prefix("Undefined variable: ").map(|name| {
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        match nearest(name.trim(), &names) {
            Some(best) => format!("did you mean `{best}`? a script can read: {}", names.join(", ")),
            None => format!("a script can read: {}", names.join(", ")),
        }
    });
    Err(src.error_at_position(field, file_line, file_column, format!("script line {line}: {message}"), hint))
}

/// Parse a port list like `22,80,8000-8100`.
pub fn parse_ports(spec: &str) -> Result<Vec<u16>, String> {
    let mut ports = BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{s}` is not a TCP port (1-65535)"));
        let (from, to) = (parse(from)?, parse(to)?);
        if from > to {
            return Err(format!("range `{part}` runs backwards"));
        }
        ports.extend(from..=to);
    }
    if ports.is_empty() {
        return Err("no ports given".into());
    }
    Ok(ports.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
plan: ssh-hardening
title: SSH hardening
parameters:
  allowed_ciphers: [aes256-gcm@openssh.com, chacha20-poly1305@openssh.com]
cases:
  - id: TC_PROTECT_DATA_INFO_TRANSFER_1
    title: Algorithms offered on the OAM interface
    scas:
      spec: TS 33.117
      clause: 4.2.3.2.4
      test_name: TC_PROTECT_DATA_INFO_TRANSFER_1
      requirement: Management traffic uses only strong, current algorithms.
    purpose: Find weak algorithms the device still offers.
    expected: Every offered cipher is in the allowed profile.
    evidence: The server's algorithm proposal, and the discrepancies.
    devices: { roles: [radio-unit] }
    steps:
      - ssh_audit: {}
        capture: offered
      - assert:
          value: ${offered.ciphers}
          subset_of: ${param.allowed_ciphers}
          message: offered ciphers outside the allowed profile
"#;

    fn invalid(text: &str) -> Box<YamlError> {
        match Plan::parse("p.yaml", text) {
            Err(PlanError::Invalid(e)) => e,
            other => panic!("expected a located error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_plan_loads() {
        let plan = Plan::parse("p.yaml", GOOD).unwrap();
        assert_eq!(plan.spec.cases[0].steps[0].kind(), ActionKind::SshAudit);
        assert_eq!(plan.spec.cases[0].scas.as_ref().unwrap().clause, "4.2.3.2.4");
    }

    #[test]
    fn an_unknown_step_kind_suggests_the_nearest_name() {
        let err = invalid(&GOOD.replace("ssh_audit: {}", "ssh_adit: {}"));
        assert_eq!(err.field, "cases[0].steps[0].ssh_adit");
        assert_eq!(err.hint.as_deref(), Some("did you mean `ssh_audit`?"));
        assert_eq!((err.line, err.column), (19, 9));
    }

    #[test]
    fn references_must_name_earlier_captures_or_parameters() {
        let err = invalid(&GOOD.replace("${offered.ciphers}", "${ofered.ciphers}"));
        assert_eq!(err.field, "cases[0].steps[1].assert");
        assert_eq!(err.hint.as_deref(), Some("did you mean `offered`?"));
        let err = invalid(&GOOD.replace("${param.allowed_ciphers}", "${param.allowed}"));
        assert!(err.message.contains("no parameter `allowed`"));
    }

    #[test]
    fn structural_mistakes_are_located() {
        let err = invalid(&GOOD.replace("      - ssh_audit: {}\n", "      - ssh_audit: {}\n        wait: { ms: 5 }\n"));
        assert!(err.message.contains("exactly one action"));
        let err = invalid(&GOOD.replace("subset_of:", "subset:"));
        assert_eq!(err.hint.as_deref(), Some("did you mean `subset_of`?"));
        let err = invalid(&GOOD.replace("clause: 4.2.3.2.4", "clause: four"));
        assert_eq!(err.field, "cases[0].scas.clause");
    }

    #[test]
    fn a_step_with_no_action_or_two_is_placed_at_the_step_with_a_hint() {
        let err = invalid(&GOOD.replace("      - ssh_audit: {}\n", "      - name: nothing to do\n"));
        assert_eq!((err.field.as_str(), err.line, err.column), ("cases[0].steps[0]", 19, 9));
        assert_eq!(err.message, "this step has no action");
        let every = "power, wait, console_send, console_expect, console_login, console_run, ssh_exec, ssh_fetch, ssh_login, ssh_su, ssh_audit, ssh_negotiate, ssh_idle, tcp_scan, udp_scan, snmp_probe, http_request, syslog_receive, tls_audit, set, assert, script";
        assert_eq!(err.hint, Some(format!("give it exactly one of: {every}")));
        // Named in the order of the action list, the second one is where the error is.
        let err = invalid(
            &GOOD.replace("      - ssh_audit: {}\n", "      - ssh_audit: {}\n        wait: { ms: 5 }\n        power: { action: on }\n"),
        );
        assert_eq!((err.field.as_str(), err.line, err.column), ("cases[0].steps[0].wait", 20, 15));
        assert_eq!(err.message, "a step has exactly one action; this one has power and wait and ssh_audit");
        assert_eq!(err.hint.as_deref(), Some("split it into two steps"));
        // In a restore step too, after a good step.
        let restore = GOOD
            .replace("    steps:\n", "    restore:\n      - wait: { ms: 1 }\n      - set: { a: 1 }\n        script: \"1\"\n    steps:\n");
        let err = invalid(&restore);
        assert_eq!((err.field.as_str(), err.line), ("cases[0].restore[1].script", 21));
        assert_eq!(err.message, "a step has exactly one action; this one has set and script");
    }

    #[test]
    fn a_script_is_compiled_and_its_errors_located_in_the_plan_file() {
        let scripted = GOOD.replace(
            "      - assert:\n          value: ${offered.ciphers}\n          subset_of: ${param.allowed_ciphers}\n          message: offered ciphers outside the allowed profile\n",
            "      - script: |\n          for c in offered.ciphers {\n            check(param.allowed_ciphers.contains(c), c);\n          }\n",
        );
        assert!(Plan::parse("p.yaml", &scripted).is_ok(), "captures and parameters are readable");
        let err = invalid(&scripted.replace("for c in offered.ciphers", "for c in ofered.ciphers"));
        assert_eq!(err.field, "cases[0].steps[1].script");
        assert_eq!((err.line, err.column), (22, 20));
        assert!(err.message.starts_with("script line 1:") && err.message.contains("ofered"), "{}", err.message);
        assert!(err.hint.as_deref().unwrap_or("").contains("offered"), "{err:?}");
        let err = invalid(&scripted.replace("check(param", "check((param"));
        assert_eq!(err.line, 23, "{err}");
    }

    #[test]
    fn port_lists_parse() {
        assert_eq!(parse_ports("22, 80,8000-8002").unwrap(), vec![22, 80, 8000, 8001, 8002]);
        assert!(parse_ports("10-1").is_err());
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("70000").is_err());
    }
}
