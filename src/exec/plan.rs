//! `difflow plan`: each instance cached, new, stale (and why), resumable, continuing a
//! shorter cached run, or being built by a Slurm job.

use std::fmt::Write as _;

use super::{continuation, slurm, stale, Session};
use crate::cache::continuation::grouped;
use crate::cache::LockFile;
use crate::graph::is_hidden;

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Cached,
    /// Never run under this name (or its entry was removed); an optional note.
    New(Option<String>),
    /// Ran before with another key: what changed.
    Stale(Vec<String>),
    /// A training run that continues a shorter run of the same training from step `from`
    /// (`source`: which entry or planned instance).
    Continue {
        from: u64,
        to: u64,
        source: String,
    },
    /// A training run whose staging folder holds the checkpoint of an interrupted run at
    /// step `from`: it resumes there.
    Resume {
        from: u64,
        to: u64,
    },
    /// A Slurm job builds it now: the job id.
    Running(String),
}

/// Each instance's state, in topological order. Asks Slurm only when a job record exists;
/// when it cannot, the plan says so and shows the stages as if no job ran.
pub fn plan(s: &Session) -> Vec<(usize, State)> {
    let lock = LockFile::read_for(&s.lock_path, &s.file);
    let running = slurm::running_jobs(s).unwrap_or_else(|e| {
        eprintln!("warning: cannot tell which Slurm jobs still run: {e}");
        Default::default()
    });
    let mut runs = continuation::Planner::default();
    let rows = s.graph.order().iter().map(|&i| match running.get(&i) {
        Some(id) => (i, State::Running(id.clone())),
        None => (i, state_of(s, &lock, i)),
    });
    rows.map(|(i, state)| match state {
        State::Cached | State::Running(_) => (i, state),
        other => (i, runs.state(s, i, other)),
    })
    .collect()
}

fn state_of(s: &Session, lock: &LockFile, i: usize) -> State {
    let inst = s.instance(i);
    let key = s.key(i);
    if s.cache.is_complete(key) {
        return State::Cached;
    }
    let Some(prev) = lock.stages.get(&inst.name) else { return State::New(None) };
    if prev.key == key {
        return State::New(Some("its cache entry was removed".into()));
    }
    match s.cache.manifest(&prev.key).and_then(|m| serde_json::from_str(&m.key_material).ok()) {
        Some(old) => State::Stale(stale::explain(&old, &s.keys.material[&inst.name], inst, &s.input_names(i))),
        None => State::Stale(vec!["its key changed (the previous entry is no longer in the cache to compare)".into()]),
    }
}

/// The plan as text: one line per instance.
pub fn format_plan(s: &Session, rows: &[(usize, State)]) -> String {
    let width = rows.iter().map(|(i, _)| s.instance(*i).name.chars().count()).max().unwrap_or(0);
    let word_width = if rows.iter().any(|(_, st)| matches!(st, State::Continue { .. })) {
        8
    } else if rows.iter().any(|(_, st)| matches!(st, State::Running(_))) {
        7
    } else {
        6
    };
    let mut out = String::new();
    for (i, state) in rows {
        let inst = s.instance(*i);
        let kind = if is_hidden(inst) { "stats (shared)".to_string() } else { inst.kind.clone() };
        let (word, why) = match state {
            State::Cached => ("cached", String::new()),
            State::New(None) => ("new", String::new()),
            State::New(Some(note)) => ("new", note.clone()),
            State::Stale(reasons) => ("stale", reasons.join("; ")),
            State::Continue { from, to, source } => {
                ("continue", format!("{} → {} steps ({source})", grouped(*from), grouped(*to)))
            }
            State::Resume { from, to } => (
                "resume",
                format!("at step {} of {} (the checkpoint of an interrupted run)", grouped(*from), grouped(*to)),
            ),
            State::Running(id) => ("running", format!("(job {id})")),
        };
        let _ = writeln!(out, "{word:<word_width$}  {:<width$}  {kind:<10}  {why}", inst.name);
    }
    let count = |f: fn(&State) -> bool| rows.iter().filter(|(_, st)| f(st)).count();
    let _ = write!(
        out,
        "\n{} stage{}: {} cached, {} new, {} stale",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        count(|s| matches!(s, State::Cached)),
        count(|s| matches!(s, State::New(_))),
        count(|s| matches!(s, State::Stale(_)))
    );
    let running = count(|s| matches!(s, State::Running(_)));
    if running > 0 {
        let _ = write!(out, ", {running} running");
    }
    out.push('\n');
    for (n, word) in [
        (count(|s| matches!(s, State::Continue { .. })), "continued"),
        (count(|s| matches!(s, State::Resume { .. })), "resumed"),
    ] {
        if n > 0 {
            out.truncate(out.trim_end_matches('\n').len());
            let _ = writeln!(out, ", {n} {word}");
        }
    }
    if let Some(work) = continuation::work_summary(s, rows) {
        let _ = writeln!(out, "{work}");
    }
    out.trim_end_matches('\n').lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
}
