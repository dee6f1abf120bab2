//! What a report stage is given beside its job: the text its pipeline was loaded from, the
//! `--set`s of the run, and every stage it depends on with the values it ran with.

use crate::cache::lockfile::file_name;
use crate::report::{Recipe, Upstream};

use super::Session;

/// The recipe of report instance `i`: its upstream stages in the order they ran.
pub fn recipe(s: &Session, i: usize) -> Recipe {
    let closure = s.graph.upstream_closure([i]);
    let upstream = s
        .graph
        .order()
        .iter()
        .copied()
        .filter(|&d| d != i && closure.contains(&d))
        .map(|d| {
            let inst = s.instance(d);
            Upstream {
                name: inst.name.clone(),
                kind: inst.kind.clone(),
                variant: inst.variant.clone(),
                values: inst.params.iter().map(|(k, v)| (k.clone(), v.display())).collect(),
                params: serde_json::Value::Object(inst.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
                hidden: crate::graph::is_hidden(inst),
                dir: s.cache.entry_dir(s.key(d)),
            }
        })
        .collect();
    let source = &s.pipeline.source;
    Recipe {
        file_name: file_name(&s.file).unwrap_or_default(),
        source: source.files.first().map(|(_, text)| text.clone()).unwrap_or_default(),
        used_files: source.files.iter().skip(1).cloned().collect(),
        sets: source.sets.clone(),
        upstream,
    }
}

/// `forced` with every selected report that reads a forced stage, directly or not: a
/// report shows its upstream entries (wall time, device, numbers), so an entry computed
/// again is shown again.
pub fn with_reports_of_forced(
    s: &Session,
    selected: &[usize],
    mut forced: std::collections::BTreeSet<usize>,
) -> std::collections::BTreeSet<usize> {
    if forced.is_empty() {
        return forced;
    }
    for &r in selected.iter().filter(|&&r| s.instance(r).kind == "report") {
        if s.graph.upstream_closure([r]).iter().any(|d| *d != r && forced.contains(d)) {
            forced.insert(r);
        }
    }
    forced
}
