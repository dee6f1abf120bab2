//! The remote in the commands: `difflow push`, `difflow pull`, `run --pull` (or `pull =
//! true`), `push = true` after each commit, and `cache ls --remote`. Transfers run one
//! after another, in the pipeline's order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use super::pool::{parallel_map, PARALLEL};
use super::MANIFEST_LIMIT;
use super::{manifest_path, pull_entry, push_entry, rate_text, PullOutcome, Remote, Transfer, Transfers};
use crate::cache::key::canonical_json;
use crate::cache::store::human_size;
use crate::cache::{Cache, EntryLock, Manifest};
use crate::exec::{Progress, Session};
use crate::failure::Failure;

/// The `[remote]` table of `difflow.toml`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// A selected entry, with what its transfer needs from the session (which stays on the
/// calling thread).
struct Item {
    key: String,
    name: String,
    /// `train ddpm`: kind and instance, for messages.
    label: String,
    material: String,
}

/// The selected instances, one per key (two instances may share an entry).
fn items(s: &Session, selected: &[usize]) -> Vec<Item> {
    let mut seen = BTreeSet::new();
    selected
        .iter()
        .filter(|&&i| seen.insert(s.key(i).to_string()))
        .map(|&i| {
            let inst = s.instance(i);
            Item {
                key: s.key(i).to_string(),
                name: inst.name.clone(),
                label: format!("{} {}", inst.kind, inst.name),
                material: canonical_json(&s.keys.material[&inst.name]),
            }
        })
        .collect()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `f` on every item under its entry's lock, side by side; the entries whose lock another
/// process holds are waited for afterwards, one at a time. Results in the items' order.
fn under_locks<R: Send>(
    cache: &Cache,
    items: &[Item],
    progress: &Progress,
    f: impl Fn(&Item, &EntryLock) -> Result<R, String> + Sync,
) -> Vec<Result<R, String>> {
    let locked = |item: &Item, lock: std::io::Result<EntryLock>| match lock {
        Ok(lock) => f(item, &lock),
        Err(e) => Err(format!("cannot lock its cache entry in {}: {e}", cache.dir.display())),
    };
    let first = parallel_map(items, PARALLEL, |item| match cache.try_lock(&item.key) {
        Ok(Some(lock)) => Some(f(item, &lock)),
        Ok(None) => None,
        Err(e) => Some(locked(item, Err(e))),
    });
    first
        .into_iter()
        .zip(items)
        .map(|(done, item)| {
            done.unwrap_or_else(|| {
                let wait = || progress.println(&format!("{}: waiting for another difflow that holds it", item.name));
                locked(item, cache.lock(&item.key, wait))
            })
        })
        .collect()
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
) -> Result<usize, Failure> {
    let wanted = asked || s.settings.remote.as_ref().is_some_and(|r| r.pull);
    if !wanted {
        return Ok(0);
    }
    let remote = required(s, "`--pull`").map_err(Failure::Usage)?;
    let unforced: Vec<usize> = selected.iter().copied().filter(|i| !forced.contains(i)).collect();
    let candidates: Vec<Item> =
        items(s, &unforced).into_iter().filter(|item| !s.cache.is_complete(&item.key)).collect();
    if let Err(e) = reachable(&remote, &candidates) {
        progress.println(&format!("warning: {e}; computing everything here"));
        return Ok(0);
    }
    let start = Instant::now();
    let results = pull_many(&remote, &s.cache, &candidates, progress);
    let mut total = Transfer { secs: start.elapsed().as_secs_f64(), ..Transfer::default() };
    let mut pulled = 0;
    for (item, result) in candidates.iter().zip(results) {
        match result {
            Ok(Some(t)) => {
                pulled += 1;
                total.files += t.files;
                total.bytes += t.bytes;
            }
            Ok(None) => {}
            Err(why) => progress
                .println(&format!("warning: not taking `{}` from the remote: {why}; computing it here", item.name)),
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
fn reachable(remote: &Remote, candidates: &[Item]) -> Result<(), String> {
    match candidates.first() {
        Some(first) => remote
            .backend()
            .exists(&manifest_path(&first.key))
            .map(|_| ())
            .map_err(|e| format!("cannot reach the remote ({e})")),
        None => Ok(()),
    }
}

/// Pull the items' entries side by side; per item, `None` when the remote lacks it or
/// it is here already. Prints a `pulled` line for each.
fn pull_many(
    remote: &Remote,
    cache: &Cache,
    items: &[Item],
    progress: &Progress,
) -> Vec<Result<Option<Transfer>, String>> {
    let cx = Transfers::new(remote, cache, progress);
    under_locks(cache, items, progress, |item, lock| {
        if cache.is_complete(&item.key) {
            return Ok(None);
        }
        match pull_entry(&cx, lock, &item.material, &item.label)? {
            PullOutcome::Absent => Ok(None),
            PullOutcome::Pulled(t) => {
                let kept = if t.skipped > 0 {
                    format!("; {} kept from an interrupted pull", plural(t.skipped, "file", "files"))
                } else {
                    String::new()
                };
                println!(
                    "pulled  {} ({}, {}{kept})",
                    item.label,
                    plural(t.files, "file", "files"),
                    rate_text(t.bytes, t.secs)
                );
                Ok(Some(t))
            }
        }
    })
}

/// Push one committed entry whose lock the caller holds to the remote `settings` name;
/// the remote's address and what moved, `None` when it had the entry whole.
fn push_committed(
    settings: &RemoteSettings,
    cache: &Cache,
    key: &str,
    label: &str,
    progress: &Progress,
) -> Result<(String, Option<Transfer>), String> {
    let remote = Remote::open(settings)?;
    let t = push_entry(&Transfers::new(&remote, cache, progress), key, label)?;
    Ok((remote.url, t))
}

/// After a commit (the entry's lock still held): upload it when `push = true`. A failed
/// upload is a warning; the run goes on.
pub fn push_after_commit(s: &Session, i: usize, progress: &Progress) {
    let Some(settings) = s.settings.remote.as_ref().filter(|r| r.push) else { return };
    let inst = s.instance(i);
    let label = format!("{} {}", inst.kind, inst.name);
    match push_committed(settings, &s.cache, s.key(i), &label, progress) {
        Ok((url, Some(t))) => println!("pushed  {label} to {url} ({})", rate_text(t.bytes, t.secs)),
        Ok((_, None)) => {}
        Err(e) => progress.println(&format!("warning: cannot push `{}`: {e}", inst.name)),
    }
}

/// In a Slurm job, right after `difflow __commit` committed the entry (its lock held):
/// upload it to the remote the run was configured to push to. A failed upload is a
/// warning in the job's log; the entry stays committed and the job succeeds.
pub fn push_from_job(settings: &RemoteSettings, cache: &Cache, key: &str, label: &str) {
    match push_committed(settings, cache, key, label, &Progress::plain()) {
        Ok((url, Some(t))) => println!("difflow: pushed  {label} to {url} ({})", rate_text(t.bytes, t.secs)),
        Ok((_, None)) => {}
        Err(e) => eprintln!("difflow: warning: cannot push `{label}`: {e}"),
    }
}

/// `difflow push FILE [STAGE]…`: upload the selected entries this cache holds.
pub fn push(s: &Session, names: &[String]) -> Result<(), Failure> {
    let remote = required(s, "`difflow push`").map_err(Failure::Usage)?;
    let selected = items(s, &s.selection(names)?);
    let _reading = s
        .cache
        .hold_for_reading(selected.iter().map(|item| item.key.as_str()))
        .map_err(|e| Failure::Failed(format!("cannot lock the cache in {}: {e}", s.cache.dir.display())))?;
    let (here, missing): (Vec<Item>, Vec<Item>) = selected.into_iter().partition(|item| s.cache.is_complete(&item.key));
    let progress = Progress::new();
    let cx = Transfers::new(&remote, &s.cache, &progress);
    let start = Instant::now();
    let results = under_locks(&s.cache, &here, &progress, |item, _lock| {
        let t = push_entry(&cx, &item.key, &item.label)?;
        if let Some(t) = &t {
            let there = if t.skipped > 0 { format!("; {} already there", t.skipped) } else { String::new() };
            println!(
                "pushed  {} ({}, {}{there})",
                item.label,
                plural(t.files, "file", "files"),
                rate_text(t.bytes, t.secs)
            );
        }
        Ok(t)
    });
    let mut total = Transfer { secs: start.elapsed().as_secs_f64(), ..Transfer::default() };
    let (mut pushed, mut there, mut failed) = (0, 0, Vec::new());
    for (item, result) in here.iter().zip(results) {
        match result {
            Ok(Some(t)) => {
                pushed += 1;
                total.bytes += t.bytes;
            }
            Ok(None) => there += 1,
            Err(e) => failed.push(format!("`{}`: {e}", item.name)),
        }
    }
    let mut line = format!(
        "pushed {} to {} ({}), {} already there",
        plural(pushed, "entry", "entries"),
        remote.url,
        rate_text(total.bytes, total.secs),
        there
    );
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|item| item.name.as_str()).collect();
        let _ = write!(line, ", {} not computed here yet: {}", missing.len(), names.join(", "));
    }
    println!("{line}");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "cannot push {}:\n  {}",
            plural(failed.len(), "entry", "entries"),
            failed.join("\n  ")
        )))
    }
}

/// `difflow pull FILE [STAGE]…`: download the selected entries the remote has and this
/// cache lacks.
pub fn pull(s: &Session, names: &[String]) -> Result<(), Failure> {
    let remote = required(s, "`difflow pull`").map_err(Failure::Usage)?;
    let selected = items(s, &s.selection(names)?);
    let (cached, missing): (Vec<Item>, Vec<Item>) =
        selected.into_iter().partition(|item| s.cache.is_complete(&item.key));
    reachable(&remote, &missing).map_err(Failure::Failed)?;
    let progress = Progress::new();
    let start = Instant::now();
    let results = pull_many(&remote, &s.cache, &missing, &progress);
    let mut total = Transfer { secs: start.elapsed().as_secs_f64(), ..Transfer::default() };
    let (mut pulled, mut here) = (0, cached.len());
    let (mut absent, mut refused) = (Vec::new(), Vec::new());
    for (item, result) in missing.iter().zip(results) {
        match result {
            Ok(Some(t)) => {
                pulled += 1;
                total.bytes += t.bytes;
            }
            Ok(None) if s.cache.is_complete(&item.key) => here += 1,
            Ok(None) => absent.push(item.name.clone()),
            Err(e) => refused.push(format!("`{}`: {e}", item.name)),
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
        Err(Failure::Failed(format!(
            "cannot pull {}:\n  {}",
            plural(refused.len(), "entry", "entries"),
            refused.join("\n  ")
        )))
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
