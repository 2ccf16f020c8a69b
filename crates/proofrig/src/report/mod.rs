//! Reports people and CI read, rendered from a run's results: JUnit XML and HTML.

pub mod html;
pub mod junit;
