//! The remote in the commands: `difflow push`, `difflow pull`, `run --pull` (or `pull =
//! true`), `push = true` after each commit, and `cache ls --remote`. Transfers run one
//! after another, in the pipeline's order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{manifest_path, pull_entry, push_entry, rate_text, PullOutcome, Remote, Transfer, MANIFEST_LIMIT};
use crate::cache::key::canonical_json;
use crate::cache::store::human_size;
use crate::cache::Manifest;
use crate::exec::{Progress, Session};

/// The `[remote]` table of `difflow.toml`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSettings {
    pub url: String,
    /// `difflow run` takes every entry the remote has instead of computing it.
    #[serde(default)]
    pub pull: bool,
    /// `difflow run` uploads each entry it commits.
    #[serde(default)]
    pub push: bool,
    /// An S3-compatible server instead of AWS (`http://127.0.0.1:9000`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The S3 bucket's region, instead of the environment's or the profile's.
    #[serde(default)]
    pub region: Option<String>,
}

/// The session's remote, if `difflow.toml` names one.
pub fn configured(s: &Session) -> Result<Option<Remote>, String> {
    s.settings.remote.as_ref().map(Remote::open).transpose()
}

fn required(s: &Session, what: &str) -> Result<Remote, String> {
    configured(s)?.ok_or_else(|| {
        format!(
            "{what} needs a remote: add `[remote]` with `url = \"file:///…\"`, `\"https://…\"` or `\"s3://…\"` to difflow.toml"
        )
    })
}

/// The selected instances, one per key (two instances may share an entry).
fn distinct_keys(s: &Session, selected: &[usize]) -> Vec<usize> {
    let mut seen = BTreeSet::new();
    selected.iter().copied().filter(|&i| seen.insert(s.key(i).to_string())).collect()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Before a run: take from the remote every selected entry missing here (forced ones
/// aside) when `--pull` or `pull = true` asks for it. A refused or unreachable entry is a
/// warning: the stage is computed locally. Returns how many entries were pulled.
pub fn pull_for_run(
    s: &Session,
    asked: bool,
    selected: &[usize],
    forced: &BTreeSet<usize>,
    progress: &Progress,
) -> Result<usize, String> {
    let wanted = asked || s.settings.remote.as_ref().is_some_and(|r| r.pull);
    if !wanted {
        return Ok(0);
    }
    let remote = required(s, "`--pull`")?;
    let candidates: Vec<usize> = distinct_keys(s, selected)
        .into_iter()
        .filter(|i| !forced.contains(i) && !s.cache.is_complete(s.key(*i)))
        .collect();
    if let Err(e) = reachable(s, &remote, &candidates) {
        progress.println(&format!("warning: {e}; computing everything here"));
        return Ok(0);
    }
    let mut total = Transfer::default();
    let mut pulled = 0;
    for i in candidates {
        match pull_one(s, &remote, i, progress) {
            Ok(Some(t)) => {
                pulled += 1;
                total.files += t.files;
                total.bytes += t.bytes;
                total.secs += t.secs;
            }
            Ok(None) => {}
            Err(why) => progress.println(&format!(
                "warning: not taking `{}` from the remote: {why}; computing it here",
                s.instance(i).name
            )),
        }
    }
    if pulled > 0 {
        println!(
            "pulled {} from {} ({})",
            plural(pulled, "entry", "entries"),
            remote.url,
            rate_text(total.bytes, total.secs)
        );
    }
    Ok(pulled)
}

/// One question before many: a remote that is down costs one timeout, not one per stage.
fn reachable(s: &Session, remote: &Remote, candidates: &[usize]) -> Result<(), String> {
    match candidates.first() {
        Some(&first) => remote
            .backend()
            .exists(&manifest_path(s.key(first)))
            .map(|_| ())
            .map_err(|e| format!("cannot reach the remote ({e})")),
        None => Ok(()),
    }
}

/// Pull instance `i`'s entry under its lock; `None` when the remote lacks it or it is
/// here already. Prints a `pulled` line.
fn pull_one(s: &Session, remote: &Remote, i: usize, progress: &Progress) -> Result<Option<Transfer>, String> {
    let inst = s.instance(i);
    let key = s.key(i);
    let lock = s
        .cache
        .lock(key, || progress.println(&format!("{}: waiting for another difflow run that is computing it", inst.name)))
        .map_err(|e| format!("cannot lock its cache entry in {}: {e}", s.cache.dir.display()))?;
    if s.cache.is_complete(key) {
        return Ok(None);
    }
    let material = canonical_json(&s.keys.material[&inst.name]);
    match pull_entry(remote, &s.cache, &lock, &material)? {
        PullOutcome::Absent => Ok(None),
        PullOutcome::Pulled(t) => {
            println!(
                "pulled  {} {} ({}, {})",
                inst.kind,
                inst.name,
                plural(t.files, "file", "files"),
                rate_text(t.bytes, t.secs)
            );
            Ok(Some(t))
        }
    }
}

/// After a commit (the entry's lock still held): upload it when `push = true`. A failed
/// upload is a warning; the run goes on.
pub fn push_after_commit(s: &Session, i: usize, progress: &Progress) {
    let Some(settings) = s.settings.remote.as_ref().filter(|r| r.push) else { return };
    let inst = s.instance(i);
    let pushed =
        Remote::open(settings).and_then(|remote| push_entry(&remote, &s.cache, s.key(i)).map(|t| (remote.url, t)));
    match pushed {
        Ok((url, Some(t))) => {
            println!("pushed  {} {} to {url} ({})", inst.kind, inst.name, rate_text(t.bytes, t.secs))
        }
        Ok((_, None)) => {}
        Err(e) => progress.println(&format!("warning: cannot push `{}`: {e}", inst.name)),
    }
}

/// `difflow push FILE [STAGE]…`: upload the selected entries this cache holds.
pub fn push(s: &Session, names: &[String]) -> Result<(), String> {
    let remote = required(s, "`difflow push`")?;
    let selected = distinct_keys(s, &s.selection(names)?);
    let _reading = s
        .cache
        .hold_for_reading(selected.iter().map(|&i| s.key(i)))
        .map_err(|e| format!("cannot lock the cache in {}: {e}", s.cache.dir.display()))?;
    let (mut total, mut pushed, mut there) = (Transfer::default(), 0, 0);
    let (mut missing, mut failed) = (Vec::new(), Vec::new());
    for i in selected {
        let inst = s.instance(i);
        let key = s.key(i);
        if !s.cache.is_complete(key) {
            missing.push(inst.name.clone());
            continue;
        }
        let lock = s.cache.lock(key, || {}).map_err(|e| format!("cannot lock {}: {e}", s.cache.dir.display()))?;
        match push_entry(&remote, &s.cache, key) {
            Ok(Some(t)) => {
                println!(
                    "pushed  {} {} ({}, {}{})",
                    inst.kind,
                    inst.name,
                    plural(t.files, "file", "files"),
                    rate_text(t.bytes, t.secs),
                    if t.skipped > 0 { format!("; {} already there", t.skipped) } else { String::new() }
                );
                pushed += 1;
                total.bytes += t.bytes;
                total.secs += t.secs;
            }
            Ok(None) => there += 1,
            Err(e) => failed.push(format!("`{}`: {e}", inst.name)),
        }
        drop(lock);
    }
    let mut line = format!(
        "pushed {} to {} ({}), {} already there",
        plural(pushed, "entry", "entries"),
        remote.url,
        rate_text(total.bytes, total.secs),
        there
    );
    if !missing.is_empty() {
        let _ = write!(line, ", {} not computed here yet: {}", missing.len(), missing.join(", "));
    }
    println!("{line}");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("cannot push {}:\n  {}", plural(failed.len(), "entry", "entries"), failed.join("\n  ")))
    }
}

/// `difflow pull FILE [STAGE]…`: download the selected entries the remote has and this
/// cache lacks.
pub fn pull(s: &Session, names: &[String]) -> Result<(), String> {
    let remote = required(s, "`difflow pull`")?;
    let selected = distinct_keys(s, &s.selection(names)?);
    let progress = Progress::plain();
    let missing: Vec<usize> = selected.iter().copied().filter(|&i| !s.cache.is_complete(s.key(i))).collect();
    reachable(s, &remote, &missing)?;
    let (mut total, mut pulled, mut here) = (Transfer::default(), 0, 0);
    let (mut absent, mut refused) = (Vec::new(), Vec::new());
    for i in selected {
        let name = &s.instance(i).name;
        if s.cache.is_complete(s.key(i)) {
            here += 1;
            continue;
        }
        match pull_one(s, &remote, i, &progress) {
            Ok(Some(t)) => {
                pulled += 1;
                total.bytes += t.bytes;
                total.secs += t.secs;
            }
            Ok(None) if s.cache.is_complete(s.key(i)) => here += 1,
            Ok(None) => absent.push(name.clone()),
            Err(e) => refused.push(format!("`{name}`: {e}")),
        }
    }
    let mut line = format!(
        "pulled {} from {} ({}), {} cached here already",
        plural(pulled, "entry", "entries"),
        remote.url,
        rate_text(total.bytes, total.secs),
        here
    );
    if !absent.is_empty() {
        let _ = write!(line, ", {} not on the remote: {}", absent.len(), absent.join(", "));
    }
    println!("{line}");
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!("cannot pull {}:\n  {}", plural(refused.len(), "entry", "entries"), refused.join("\n  ")))
    }
}

/// `difflow cache ls --remote`: the remote's entries. A remote that cannot list (HTTP)
/// is asked for the keys of the given pipelines.
pub fn list(remote: &Remote, sessions: &[Session]) -> Result<String, String> {
    let keys: Vec<String> = match remote.keys()? {
        Some(keys) => keys,
        None if sessions.is_empty() => {
            return Err(format!(
                "{} cannot list its entries (HTTP has no listing): name the pipelines, \
                 `difflow cache ls --remote FILE…`, to see which of their entries it holds",
                remote.url
            ))
        }
        None => {
            let wanted: BTreeSet<&String> = sessions.iter().flat_map(|s| s.keys.keys.values()).collect();
            let mut found = Vec::new();
            for key in wanted {
                if remote.backend().exists(&manifest_path(key))? {
                    found.push(key.clone());
                }
            }
            found
        }
    };
    let mut out = format!("{} ({})\n", remote.url, plural(keys.len(), "entry", "entries"));
    let mut total = 0;
    let mut rows = BTreeMap::new();
    for key in &keys {
        let mut bytes = Vec::new();
        let m = remote
            .backend()
            .get(&manifest_path(key), &mut bytes, MANIFEST_LIMIT)
            .ok()
            .and_then(|_| String::from_utf8(bytes).ok())
            .and_then(|t| toml::from_str::<Manifest>(&t).ok());
        let row = match m {
            Some(m) => {
                total += m.total_size();
                format!(
                    "{}  {:<10}  {:>9}  {}  {}",
                    &key[..12.min(key.len())],
                    m.kind,
                    human_size(m.total_size()),
                    m.finished,
                    m.instances.join(", ")
                )
            }
            None => format!("{}  (unreadable manifest)", &key[..12.min(key.len())]),
        };
        rows.insert(key.clone(), row);
    }
    for row in rows.values() {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out, "total {}", human_size(total));
    Ok(out)
}
