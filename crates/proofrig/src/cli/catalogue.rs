//! `proofrig catalogue [PATHS...] [--rig RIG] [--format json]`: the test library at a
//! glance, for the technician scheduling a run and the tester looking for a gap.
//!
//! One row per case, by clause number: the SCAS test name and title, the devices it
//! applies to, and what it needs from the rig. With `--rig`, a second table says per
//! device whether each case can run there and names what is missing. A plan file
//! that does not load is reported with its located error and the others are still
//! listed; the exit status is then 3, as for any invalid input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use proofrig_model::rig::Rig;
use serde::Serialize;

use super::{Failure, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::table;
use proofrig_plan::catalogue::{self, CaseInfo, Readiness};
use proofrig_plan::{library, Plan, PlanError};

/// Output format of `catalogue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people, fitted to the terminal.
    Text,
    /// One JSON document on stdout, for tools.
    Json,
}

/// A plan file that loaded, and how many cases it holds.
#[derive(Debug, Serialize)]
struct FileEntry {
    path: String,
    plan: String,
    cases: usize,
}

/// A plan file that did not load.
#[derive(Debug, Serialize)]
struct FileError {
    path: String,
    /// `file:line:column: field: message`, or why the file could not be read.
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

impl FileError {
    fn of(path: &str, err: &PlanError) -> Self {
        let located = match err {
            PlanError::Invalid(e) => Some(e),
            PlanError::Read { .. } => None,
        };
        FileError {
            path: path.to_string(),
            message: err.to_string(),
            line: located.map(|e| e.line),
            column: located.map(|e| e.column),
            field: located.map(|e| e.field.clone()),
            hint: located.and_then(|e| e.hint.clone()),
        }
    }
}

#[derive(Serialize)]
struct JsonCase<'a> {
    #[serde(flatten)]
    case: &'a CaseInfo,
    /// Per device of the rig (`--rig`).
    #[serde(skip_serializing_if = "Option::is_none")]
    can_run: Option<BTreeMap<String, Readiness>>,
}

#[derive(Serialize)]
struct JsonCatalogue<'a> {
    /// `bundled` (the library built into this binary) or `paths`.
    source: &'static str,
    files: Vec<FileEntry>,
    errors: Vec<FileError>,
    cases: Vec<JsonCase<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rig: Option<String>,
}

pub fn catalogue(paths: &[PathBuf], format: Format, rig_path: Option<&Path>) -> Result<u8, Failure> {
    let rig = rig_path.map(Rig::load).transpose()?;

    let mut loaded: Vec<(String, Result<Plan, PlanError>)> = Vec::new();
    if paths.is_empty() {
        loaded = library::load_bundled();
    } else {
        for path in paths {
            match library::expand(path) {
                Ok(files) if files.is_empty() => eprintln!("proofrig catalogue: no *.yaml plan files in {}", path.display()),
                Ok(files) => loaded.extend(files.into_iter().map(|f| (f.display().to_string(), Plan::load(&f)))),
                Err(source) => loaded.push((path.display().to_string(), Err(PlanError::Read { path: path.clone(), source }))),
            }
        }
    }
    if loaded.is_empty() {
        return Err(Failure::usage(miette::miette!("no plan files to list")));
    }

    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut cases = Vec::new();
    for (path, result) in loaded {
        match result {
            Ok(plan) => {
                files.push(FileEntry { path: path.clone(), plan: plan.spec.plan.clone(), cases: plan.spec.cases.len() });
                cases.extend(catalogue::cases_of(&plan, &path));
            }
            Err(err) => {
                errors.push(FileError::of(&path, &err));
                eprintln!("{:?}", miette::Report::new(err));
            }
        }
    }
    catalogue::sort(&mut cases);

    let devices: Vec<String> = rig.as_ref().map(|r| r.devices().map(|(n, _)| n.to_string()).collect()).unwrap_or_default();
    let readiness: Vec<BTreeMap<String, Readiness>> = match &rig {
        Some(rig) => cases.iter().map(|c| devices.iter().map(|d| (d.clone(), catalogue::readiness(c, rig, d))).collect()).collect(),
        None => Vec::new(),
    };
    let blocked = readiness.iter().flat_map(|m| m.values()).any(|r| matches!(r, Readiness::Missing { .. }));
    let code = if !errors.is_empty() {
        EXIT_USAGE
    } else if blocked {
        EXIT_FAILED
    } else {
        EXIT_OK
    };

    let mut out = String::new();
    match format {
        Format::Json => {
            let doc = JsonCatalogue {
                source: if paths.is_empty() { "bundled" } else { "paths" },
                cases: cases.iter().enumerate().map(|(i, case)| JsonCase { case, can_run: readiness.get(i).cloned() }).collect(),
                files,
                errors,
                rig: rig.as_ref().map(|r| r.name().to_string()),
            };
            out.push_str(&serde_json::to_string_pretty(&doc).expect("the catalogue serializes"));
            out.push('\n');
        }
        Format::Text => {
            let width = crate::terminal::stdout_width();
            let source = if paths.is_empty() { " (the library built into this proofrig from testplans/)" } else { "" };
            let spec = match cases.first() {
                Some(first) if one_spec(&cases) => format!("{} ", first.spec),
                _ => String::new(),
            };
            out.push_str(&format!("{} {spec}case(s) in {} plan file(s){source}\n\n", cases.len(), files.len()));
            out.push_str(&case_table(&cases, width));
            if let Some(rig) = &rig {
                out.push('\n');
                out.push_str(&readiness_tables(rig, &devices, &cases, &readiness, width));
            }
            if !errors.is_empty() {
                let names: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
                out.push_str(&format!(
                    "\n{} plan file(s) could not be loaded and are not listed (errors on stderr): {}\n",
                    errors.len(),
                    names.join(", ")
                ));
            }
        }
    }
    // A reader that stops early (`| head`) is not an error.
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(code)
}

/// Clause as listed: without the specification when the whole list is of one.
fn clause_label(case: &CaseInfo, one_spec: bool) -> String {
    if one_spec {
        case.clause.clone()
    } else {
        format!("{} {}", case.spec, case.clause)
    }
}

fn one_spec(cases: &[CaseInfo]) -> bool {
    cases.windows(2).all(|w| w[0].spec == w[1].spec)
}

fn case_table(cases: &[CaseInfo], width: Option<usize>) -> String {
    let one_spec = one_spec(cases);
    // The title and file lines share the test name's column; titles are cut to it.
    let column = cases.iter().map(|c| c.test_name.chars().count().max(c.file.chars().count())).max().unwrap_or(0).clamp(30, 60);
    let rows: Vec<Vec<String>> = cases
        .iter()
        .map(|case| {
            vec![
                clause_label(case, one_spec),
                format!("{}\n{}\n{}", case.test_name, table::truncate(&case.title, column), case.file),
                applies_to(case),
                needs(case),
            ]
        })
        .collect();
    table::render_fitted(&["clause", "test / title / file", "applies to", "needs from the rig"], &rows, width)
}

fn applies_to(case: &CaseInfo) -> String {
    let s = &case.applies_to;
    if s.is_all() {
        return "all".into();
    }
    let mut lines = Vec::new();
    for (label, list) in [("names", &s.names), ("roles", &s.roles), ("tags", &s.tags)] {
        if !list.is_empty() {
            lines.push(format!("{label}: {}", list.join(", ")));
        }
    }
    lines.join("\n")
}

fn needs(case: &CaseInfo) -> String {
    let n = &case.needs;
    let mut lines = Vec::new();
    if let Some(reason) = &case.skip {
        lines.push(format!("SKIPPED: {}", reason.trim()));
    }
    let channels: Vec<String> = n
        .channels
        .iter()
        .map(|c| {
            let mut text = c.channel.as_str().to_string();
            if c.channel == proofrig_plan::DeviceChannel::Ssh && n.ssh_password {
                text.push_str(" (with a password)");
            }
            if c.optional {
                text.push_str(" (if present)");
            }
            text
        })
        .collect();
    lines.push(format!("channels: {}", if channels.is_empty() { "none".into() } else { channels.join(", ") }));
    let mut list = |label: &str, items: Vec<String>| {
        if !items.is_empty() {
            lines.push(format!("{label}: {}", items.join(", ")));
        }
    };
    list("commands", n.commands.clone());
    list("declared", n.declared.clone());
    let mut secrets = n.secrets.clone();
    secrets.extend(n.credentials.iter().cloned());
    list("secrets", secrets);
    list("params", n.parameters.keys().cloned().collect());
    list("other devices", n.other_devices.clone());
    lines.join("\n")
}

fn readiness_tables(
    rig: &Rig,
    devices: &[String],
    cases: &[CaseInfo],
    readiness: &[BTreeMap<String, Readiness>],
    width: Option<usize>,
) -> String {
    let one_spec = one_spec(cases);
    let mut header: Vec<&str> = vec!["clause", "test"];
    header.extend(devices.iter().map(String::as_str));
    let mut gaps = Vec::new();
    let rows: Vec<Vec<String>> = cases
        .iter()
        .zip(readiness)
        .map(|(case, per_device)| {
            let mut row = vec![clause_label(case, one_spec), case.test_name.clone()];
            for device in devices {
                row.push(match &per_device[device] {
                    Readiness::NotApplicable => "-".into(),
                    Readiness::Skipped { .. } => "skip".into(),
                    Readiness::Ready { steps_skipped: 0 } => "yes".into(),
                    Readiness::Ready { .. } => "yes*".into(),
                    Readiness::Missing { missing } => {
                        gaps.push(vec![device.clone(), format!("{} {}", clause_label(case, one_spec), case.test_name), missing.join("; ")]);
                        "NO".into()
                    }
                });
            }
            row
        })
        .collect();
    let mut out = format!("Can each case run on rig `{}`?\n\n", rig.name());
    out.push_str(&table::render(&header, &rows));
    out.push_str("\nyes: it can   yes*: it can, some steps will be SKIP (limited to a channel the device lacks)\n");
    out.push_str("NO: something is missing (below)   -: not for this device   skip: the plan skips the case\n");
    if !gaps.is_empty() {
        out.push_str(&format!("\nWhat is missing ({} case run(s) cannot run):\n\n", gaps.len()));
        out.push_str(&table::render_fitted(&["device", "case", "missing"], &gaps, width));
    }
    out
}
