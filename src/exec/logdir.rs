//! `difflow logdir FILE`: a folder for `tensorboard --logdir` with one link per training
//! instance, named by instance, to the live TensorBoard logs of its cache entry (or of its
//! staging folder while it runs or before it starts), and one per sampling instance that
//! logged its grid of images.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use difflow_core::job::LOG_DIR;

use super::{Failure, Session};

/// The stage kinds whose workers write live training logs.
const TRAINING_KINDS: [&str; 2] = ["train", "classifier"];
/// The stage kinds that may log a picture when they end (a sample stage of images does,
/// one of points does not): linked only once their logs exist.
const PICTURE_KINDS: [&str; 1] = ["sample"];

/// Creates or refreshes `<state dir>/logdir/<pipeline stem>/` and returns it. Every link
/// in it is rewritten, so links of instances that left the pipeline go.
pub fn link_logdir(s: &Session) -> Result<PathBuf, Failure> {
    let stem = s.file.file_stem().map_or_else(|| "pipeline".into(), |n| n.to_string_lossy().into_owned());
    let dir = s.settings.state_dir().join("logdir").join(safe_name(&stem));
    let fail = |e: std::io::Error| Failure::Failed(format!("cannot write {}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    for entry in std::fs::read_dir(&dir).map_err(fail)? {
        let path = entry.map_err(fail)?.path();
        // Only links are ours to replace; anything else a user put there stays.
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&path).map_err(fail)?;
        }
    }
    let mut taken = HashSet::new();
    for &i in s.graph.order() {
        let inst = s.instance(i);
        let logs = logs_of(s, s.key(i));
        let kind = inst.kind.as_str();
        let logged = TRAINING_KINDS.contains(&kind) || (PICTURE_KINDS.contains(&kind) && logs.is_dir());
        if !logged {
            continue;
        }
        let mut name = safe_name(&inst.name);
        let base = name.clone();
        for n in 2.. {
            if !dir.join(&name).exists() && taken.insert(name.clone()) {
                break;
            }
            name = format!("{base}~{n}");
        }
        symlink(&logs, &dir.join(&name)).map_err(fail)?;
    }
    Ok(dir)
}

/// The complete entry's logs, else the staging folder's (where a run writes them).
fn logs_of(s: &Session, key: &str) -> PathBuf {
    let entry = if s.cache.is_complete(key) { s.cache.entry_dir(key) } else { s.cache.staging_dir(key) };
    entry.join(LOG_DIR)
}

/// An instance name as a file name: `ddpm[lr=0.001]` stays, path separators, control
/// characters, quotes and spaces become `_`, and a leading dot (a hidden file) too.
pub fn safe_name(name: &str) -> String {
    let mut safe: String =
        name.chars().map(|c| if c.is_alphanumeric() || "[]=,.+-_@".contains(c) { c } else { '_' }).collect();
    if safe.starts_with('.') || safe.is_empty() {
        safe.insert(0, '_');
    }
    safe
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn instance_names_become_file_names() {
        assert_eq!(safe_name("ddpm"), "ddpm");
        assert_eq!(safe_name("ddpm[lr=0.001]"), "ddpm[lr=0.001]");
        assert_eq!(safe_name("gen[sampler=\"a/b\", scale=2]"), "gen[sampler=_a_b_,_scale=2]");
        assert_eq!(safe_name(".."), "_..");
        assert_eq!(safe_name(""), "_");
    }
}
