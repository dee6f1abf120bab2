//! Cross-stage checks on a resolved pipeline: contradictions between stages that would
//! otherwise fail hours into a run (SPEC §2). Per-key checks (types, ranges, required
//! keys) happen during resolution, driven by the schema.

use crate::diagnostics::Diagnostic;
use crate::lang::pipeline::Pipeline;

use super::resolve::SpanTable;

pub(crate) fn check(pipeline: &Pipeline, spans: &SpanTable) -> Vec<Diagnostic> {
    let _ = (pipeline, spans);
    Vec::new()
}
