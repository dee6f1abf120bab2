//! The cached headline metrics of a pipeline's measuring stages, for `difflow report`
//! across pipelines: it reads the cache and runs nothing.

use std::path::{Path, PathBuf};

use super::Session;
use crate::cache::lockfile::headline_metrics;
use crate::report::compare::Row;

/// The kinds whose numbers are measurements of a model (compared by default).
const MEASURING_KINDS: [&str; 2] = ["metrics", "nll"];

/// One row per instance of `stages` (families or instances), or of every `metrics` and
/// `nll` stage when none is named, in the pipeline's order; `label` names the pipeline.
/// An error names the instances that are not cached.
pub fn cached_rows(s: &Session, label: &str, stages: &[String]) -> Result<Vec<Row>, String> {
    let chosen: Vec<usize> = if stages.is_empty() {
        let measuring = |&&i: &&usize| {
            MEASURING_KINDS.contains(&s.instance(i).kind.as_str()) && !crate::graph::is_hidden(s.instance(i))
        };
        s.graph.order().iter().filter(measuring).copied().collect()
    } else {
        let named = crate::graph::resolve_names(&s.pipeline, &s.graph, stages).map_err(|e| format!("{label}: {e}"))?;
        s.graph.order().iter().filter(|i| named.contains(i)).copied().collect()
    };
    if chosen.is_empty() {
        return Err(format!(
            "{label} has no metrics or nll stage to compare: name the stages to compare with `--stage NAME`"
        ));
    }
    let missing: Vec<String> = chosen
        .iter()
        .filter(|&&i| !s.cache.is_complete(s.key(i)))
        .map(|&i| format!("`{}`", s.instance(i).name))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{label}: {} not cached: run `difflow run {}` first (`difflow report` only reads the cache)",
            missing.join(", "),
            s.file.display()
        ));
    }
    Ok(chosen
        .into_iter()
        .map(|i| {
            let key = s.key(i);
            let reported = s.cache.manifest(key).map(|m| m.metrics).unwrap_or_default();
            Row {
                pipeline: label.to_string(),
                instance: s.instance(i).name.clone(),
                metrics: headline_metrics(&s.cache.entry_dir(key), &reported),
            }
        })
        .collect())
}

/// How the report names each pipeline: its file name, or its path where two share a name.
pub fn labels(files: &[PathBuf]) -> Vec<String> {
    let name = |f: &PathBuf| f.file_name().map(|n| n.to_string_lossy().into_owned());
    files
        .iter()
        .map(|f| match name(f) {
            Some(n) if files.iter().filter(|g| name(g).as_ref() == Some(&n)).count() == 1 => n,
            _ => f.display().to_string(),
        })
        .collect()
}

/// Writes the comparison into `out` (created if missing); returns its HTML page.
pub fn write_report(out: &Path, rows: &[Row]) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    crate::report::compare::write_comparison(out, rows)?;
    Ok(out.join("report.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_are_named_by_file_unless_two_share_a_name() {
        let files: Vec<PathBuf> = ["a/p.diff", "b/p.diff", "c/q.diff"].into_iter().map(PathBuf::from).collect();
        assert_eq!(labels(&files), ["a/p.diff", "b/p.diff", "q.diff"]);
    }
}
