//! `difflow run FILE --out DIR` (or `out = "results"` in `difflow.toml`, which means
//! `results/<pipeline stem>/`): after a run, each finished stage's outputs under a readable
//! name, `DIR/<instance>/<file>`, hard-linked from the cache (copied where a link cannot
//! be made). A run replaces what the pipeline's previous run left there, so a stage that
//! failed or did not run has no folder and no stale plot stays behind. `DIR/.difflow-out.toml`
//! records which pipeline wrote which folders; nothing else in DIR is touched, and no link
//! in DIR is followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::logdir::safe_name;
use super::{RunError, RunSummary, Session};
use crate::cache::store::MANIFEST;

/// The record of what a run wrote into the folder.
pub const RECORD: &str = ".difflow-out.toml";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// The pipeline's file name.
    pipeline: String,
    /// The instance folders it wrote.
    folders: Vec<String>,
}

/// What a run wrote: the readable folder of each instance.
pub struct Published {
    pub dir: PathBuf,
    pub folders: BTreeMap<usize, PathBuf>,
}

/// Where a run's results go: `--out`, else the `out` setting's folder for this pipeline;
/// none for a detached Slurm run, which ends before its stages do.
pub fn target(s: &Session, out: Option<&Path>, detach: bool) -> Result<Option<PathBuf>, String> {
    match (out, detach) {
        (Some(_), true) => Err(format!(
            "`--out` needs the stages to finish: drop `--detach`, or run `difflow run {} --out DIR` once the jobs are done",
            s.file_label()
        )),
        (Some(dir), false) => Ok(Some(dir.to_path_buf())),
        (None, true) => Ok(None),
        (None, false) => {
            let stem = s.file.file_stem().map_or_else(|| "pipeline".into(), |n| n.to_string_lossy().into_owned());
            Ok(s.settings.out.as_ref().map(|root| root.join(safe_name(&stem))))
        }
    }
}

/// Refuses a folder that holds another pipeline's results or files difflow did not write
/// (checked before a run, so that no run is wasted on it).
pub fn check(dir: &Path, s: &Session) -> Result<(), String> {
    let label = s.file_label();
    match read_record(dir)? {
        Some(r) if r.pipeline == label => Ok(()),
        Some(r) => Err(format!(
            "{} holds the results of {} (`difflow run {} --out`): choose another folder for {label}",
            dir.display(),
            r.pipeline,
            r.pipeline
        )),
        None if is_empty_or_missing(dir) => Ok(()),
        None => Err(format!(
            "{} is not empty and holds no results of `difflow run --out`: choose another folder, or empty it",
            dir.display()
        )),
    }
}

/// After a run: publish what finished into `out` (if set), say what is there, then list
/// the files to open. A failed publication fails a run that went well.
pub(super) fn finish(
    s: &Session,
    selected: &[usize],
    out: Option<&Path>,
    summary: Result<RunSummary, RunError>,
    print_open: bool,
) -> Result<RunSummary, RunError> {
    let published = match out.map(|dir| publish(s, selected, dir)) {
        Some(Err(e)) if summary.is_err() => {
            eprintln!("error: {e}");
            return summary;
        }
        Some(Err(e)) => return Err(RunError::Failed(e)),
        Some(Ok(p)) => Some(p),
        None => None,
    };
    if let Some(p) = &published {
        say_what_is_there(s, selected, p);
    }
    if print_open && !matches!(summary, Err(RunError::Interrupted(_))) {
        super::print_files_to_open(s, selected, published.as_ref());
    }
    summary
}

fn say_what_is_there(s: &Session, selected: &[usize], p: &Published) {
    let shown: Vec<usize> = selected.iter().copied().filter(|&i| !crate::graph::is_hidden(s.instance(i))).collect();
    let missing: Vec<String> = shown
        .iter()
        .filter(|&&i| !s.cache.is_complete(s.key(i)))
        .map(|i| format!("`{}`", s.instance(*i).name))
        .collect();
    let n = p.folders.len();
    let stages = if n == 1 { "1 stage".to_string() } else { format!("{n} stages") };
    if missing.is_empty() {
        println!("results: {stages} in {}", p.dir.display());
    } else {
        println!("results: {stages} in {}; not there (failed or not run): {}", p.dir.display(), missing.join(", "));
    }
}

/// Writes the outputs of every selected instance whose current entry is complete into
/// `dir`, replacing the folders this pipeline's previous run wrote there.
pub fn publish(s: &Session, selected: &[usize], dir: &Path) -> Result<Published, String> {
    check(dir, s)?;
    let fail = |p: &Path, e: std::io::Error| format!("cannot write {}: {e}", p.display());
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    if let Some(old) = read_record(dir)? {
        for name in old.folders.iter().filter(|n| is_plain_name(n)) {
            remove(&dir.join(name)).map_err(|e| fail(&dir.join(name), e))?;
        }
    }
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for &i in selected {
        let inst = s.instance(i);
        let key = s.key(i);
        if crate::graph::is_hidden(inst) || !s.cache.is_complete(key) || !has_outputs(&s.cache.entry_dir(key)) {
            continue;
        }
        let base = safe_name(&inst.name);
        let name =
            (1..).map(|n| if n == 1 { base.clone() } else { format!("{base}~{n}") }).find(|n| taken.insert(n.clone()));
        names.insert(i, name.unwrap_or(base));
    }
    // Recorded before anything is written: a run killed halfway leaves folders it owns.
    let record = Record { pipeline: s.file_label(), folders: names.values().cloned().collect() };
    let text = toml::to_string(&record).map_err(|e| format!("cannot write {RECORD}: {e}"))?;
    crate::report::compare::write_fresh(&dir.join(RECORD), &text)?;
    let mut folders = BTreeMap::new();
    for (i, name) in names {
        let to = dir.join(&name);
        std::fs::create_dir(&to).map_err(|e| {
            format!("cannot write {}: {e} (difflow writes only the folders it recorded in {RECORD})", to.display())
        })?;
        link_tree(&s.cache.entry_dir(s.key(i)), &to, true).map_err(|e| fail(&to, e))?;
        folders.insert(i, to);
    }
    Ok(Published { dir: dir.to_path_buf(), folders })
}

fn read_record(dir: &Path) -> Result<Option<Record>, String> {
    let path = dir.join(RECORD);
    let text = difflow_core::files::read_text_if_present(&path, difflow_core::files::Purpose::Metadata)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match text {
        None => Ok(None),
        Some(t) => toml::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{} is not a record of `difflow run --out`: {}", path.display(), e.message())),
    }
}

fn is_empty_or_missing(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut rd| rd.next().is_none())
}

/// One plain name: a record may never make difflow remove anything outside the folder.
fn is_plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None))
}

/// Removes a folder, file or link (the link only, never what it points to).
fn remove(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn has_outputs(entry: &Path) -> bool {
    std::fs::read_dir(entry).is_ok_and(|rd| rd.filter_map(Result::ok).any(|e| e.file_name() != MANIFEST))
}

/// Hard-links (else copies) the regular files under `from` into the new folder `to`;
/// links in the entry are skipped, and the top-level manifest is difflow's own.
fn link_tree(from: &Path, to: &Path, top: bool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if top && entry.file_name() == MANIFEST {
            continue;
        }
        if kind.is_dir() {
            std::fs::create_dir(&dst)?;
            link_tree(&src, &dst, false)?;
        } else if kind.is_file() && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_only_folders_inside() {
        assert!(is_plain_name("gen[steps=5]"));
        for bad in ["..", "../x", "/etc", "a/b", ".", ""] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn removing_a_link_leaves_its_target() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep.txt"), "x").unwrap();
        let link = d.path().join("gen");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove(&link).unwrap();
        assert!(!link.exists() && outside.join("keep.txt").is_file());
    }
}
