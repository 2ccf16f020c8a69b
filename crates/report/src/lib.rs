//! Reports people and CI read, rendered from a run's results: JUnit XML and HTML.
//!
//! They are handed to the bundle when it is sealed ([`Standard`]), so the evidence
//! crate (and a verifier linking it) carries no presentation code, and a server can
//! render its own views from the same results.

pub mod html;
pub mod junit;

use proofrig_evidence::bundle::{BundleError, ReportFile, Reports, SealInfo, JUNIT, REPORT};
use proofrig_evidence::record::RunResult;

/// The reports every bundle proofrig seals carries: `report.html` and `junit.xml`.
pub struct Standard;

impl Reports for Standard {
    fn render(&self, result: &RunResult, seal: &SealInfo<'_>) -> Result<Vec<ReportFile>, BundleError> {
        let junit = junit::junit_xml(result).map_err(|e| BundleError::Report { name: JUNIT.into(), reason: e.to_string() })?;
        let html = html::render(result, &html::Seal { bundle_dir: seal.bundle_dir, key_id: seal.key_id });
        Ok(vec![ReportFile { name: JUNIT.into(), bytes: junit.into_bytes() }, ReportFile { name: REPORT.into(), bytes: html.into_bytes() }])
    }
}
