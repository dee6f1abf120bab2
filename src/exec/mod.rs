//! The orchestrator: `plan` (each instance cached, new or stale, and why) and `run`
//! (workers for what is not cached, in topological order, `--jobs` at a time, committed to
//! the cache as they finish; `difflow.lock` written at the end).

pub mod cached_metrics;
pub mod cleanup;
pub mod compare;
pub mod continuation;
pub mod export;
pub mod interrupt;
mod local;
pub mod logdir;
mod missing_data;
pub mod out_dir;
mod plan;
mod recipe;
pub mod script;
pub mod show;
pub mod slurm;
pub mod stale;
mod worker;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cache::lockfile::{file_name, headline_metrics};
use crate::cache::store::utc_now;
use crate::cache::{LockFile, LockedStage, Manifest};
pub use crate::failure::Failure;
use crate::graph;
use crate::job::{Input, Job, JobSettings, CONTINUE_INPUT};
pub use crate::project::Session;
use missing_data::missing_data;
pub use missing_data::missing_datasets;
pub use plan::{format_plan, plan, State};
pub use worker::{Progress, WorkerFailure};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub targets: Vec<String>,
    pub force: Vec<String>,
    /// `auto`, `cpu` or `cuda:N`; `None`: the setting from `difflow.toml`.
    pub device: Option<String>,
    pub jobs: Option<usize>,
    /// `--nproc N`: data-parallel processes for every stage that supports them; `None`:
    /// the `nproc` setting.
    pub nproc: Option<usize>,
    /// `local` or `slurm`; `None`: the setting from `difflow.toml`.
    pub executor: Option<String>,
    /// Slurm only: submit the jobs and return without following them.
    pub detach: bool,
    /// Take every missing entry the remote has instead of computing it.
    pub pull: bool,
    /// `--out DIR`: the folder for the finished stages' outputs under readable names.
    pub out: Option<PathBuf>,
}

/// Why one instance did not finish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StageError {
    Failed(String),
    /// Stopped on request; the worker's word on what it kept.
    Interrupted(String),
}

impl From<String> for StageError {
    fn from(m: String) -> Self {
        StageError::Failed(m)
    }
}

impl From<&str> for StageError {
    fn from(m: &str) -> Self {
        StageError::Failed(m.to_string())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub ran: usize,
    pub cached: usize,
}

enum Outcome {
    Ran(f64),
    /// Another `difflow run`, or an instance of this run with the same key, finished it
    /// while we waited for its lock.
    DoneElsewhere,
}

/// Run every selected instance that is not cached (or is forced).
pub fn run(s: &Session, opts: &RunOptions, progress: &Progress) -> Result<RunSummary, Failure> {
    let device = opts.device.clone().unwrap_or_else(|| s.settings.device.clone());
    crate::project::settings::check_device(&device).map_err(Failure::Usage)?;
    let executor = opts.executor.clone().unwrap_or_else(|| s.settings.executor.clone());
    crate::project::settings::check_executor(&executor).map_err(Failure::Usage)?;
    if executor == "slurm" {
        slurm::check_cache_dir(&s.cache.dir).map_err(Failure::Usage)?;
    }
    if opts.detach && executor != "slurm" {
        return Err(Failure::Usage("`--detach` needs a cluster: use it with `--executor slurm`".into()));
    }
    let (selected, forced) = selection_with_forced(s, opts)?;
    let out = out_dir::target(s, opts.out.as_deref(), opts.detach).map_err(Failure::Usage)?;
    if let Some(dir) = &out {
        out_dir::check(dir, s).map_err(Failure::Usage)?;
    }
    // Held until the run ends: `cache gc` leaves these entries alone meanwhile.
    let _reading = s
        .cache
        .hold_for_reading(selected.iter().map(|&i| s.key(i)))
        .map_err(|e| Failure::Failed(format!("cannot lock the cache in {}: {e}", s.cache.dir.display())))?;
    // What a run killed outright (`kill -9`, a lost node) left beside these entries.
    let keys: Vec<&str> = selected.iter().map(|&i| s.key(i)).collect();
    cleanup::remove_leftovers(&s.cache, Some(&keys));
    crate::remote::run::pull_for_run(s, opts.pull, &selected, &forced, progress)?;
    let to_run = instances_to_run(s, &selected, &forced, progress);
    let cached_before = selected.len() - to_run.len();
    if to_run.is_empty() {
        write_lock(s);
        println!("nothing to do: all {} stages cached", selected.len());
        let summary = Ok(RunSummary { ran: 0, cached: cached_before });
        return out_dir::finish(s, &selected, out.as_deref(), summary, true);
    }
    missing_data(to_run.iter().map(|&i| s.instance(i)))?;
    let needs_worker = to_run.iter().any(|&i| !matches!(s.instance(i).kind.as_str(), "report" | "script"));
    let worker = if needs_worker { Some(worker::worker_path()?) } else { None };
    interrupt::install();
    let nproc = opts.nproc.map_or_else(|| s.settings.nproc.clone(), crate::project::settings::Nproc::All);
    if executor == "slurm" {
        let plan = slurm::Plan { to_run, forced, device, cached_before, detach: opts.detach, nproc };
        let summary = slurm::run(s, plan, worker.as_deref(), progress);
        return out_dir::finish(s, &selected, out.as_deref(), summary, false);
    }
    let plan =
        local::Plan { to_run, forced, device, jobs: opts.jobs.unwrap_or(s.settings.jobs).max(1), nproc, cached_before };
    let summary = local::run(s, plan, worker.as_deref(), progress);
    out_dir::finish(s, &selected, out.as_deref(), summary, true)
}

/// The instances the targets select, and those `--force` names; a forced instance outside
/// the selection brings in what it needs upstream.
fn selection_with_forced(s: &Session, opts: &RunOptions) -> Result<(Vec<usize>, BTreeSet<usize>), Failure> {
    let mut selected = s.selection(&opts.targets)?;
    let forced: BTreeSet<usize> = if opts.force.is_empty() {
        BTreeSet::new()
    } else {
        graph::resolve_names(&s.pipeline, &s.graph, &opts.force).map_err(Failure::Usage)?.into_iter().collect()
    };
    if forced.iter().any(|f| !selected.contains(f)) {
        let extra = s.graph.upstream_closure(forced.iter().copied());
        let all: BTreeSet<usize> = selected.iter().copied().chain(extra).collect();
        selected = s.graph.order().iter().copied().filter(|i| all.contains(i)).collect();
    }
    let forced = recipe::with_reports_of_forced(s, &selected, forced);
    Ok((selected, forced))
}

/// What must run: forced, missing, or a cached entry whose files no longer match.
fn instances_to_run(s: &Session, selected: &[usize], forced: &BTreeSet<usize>, progress: &Progress) -> Vec<usize> {
    let mut to_run = Vec::new();
    for &i in selected {
        let key = s.key(i);
        if forced.contains(&i) || !s.cache.is_complete(key) {
            to_run.push(i);
        } else if let Err(why) = s.cache.verify(key) {
            progress.println(&format!(
                "warning: the cache entry of `{}` is corrupt ({why}); recomputing it",
                s.instance(i).name
            ));
            to_run.push(i);
        }
    }
    to_run
}

/// Prints a run's summary line; its result names each failed stage, if any did.
fn summarize(
    s: &Session,
    (ran, cached, not_started): (usize, usize, usize),
    failures: &[(usize, String)],
    start: Instant,
) -> Result<RunSummary, Failure> {
    let mut summary = format!("ran {ran} stage{}, {cached} cached", if ran == 1 { "" } else { "s" });
    if !failures.is_empty() {
        let _ = write!(summary, ", {} failed, {not_started} not started", failures.len());
    }
    let _ = write!(summary, " ({:.1} s)", start.elapsed().as_secs_f64());
    println!("{summary}");
    if failures.is_empty() {
        return Ok(RunSummary { ran, cached });
    }
    let mut msg = String::new();
    for (i, why) in failures {
        let _ = writeln!(msg, "stage `{}` ({}) failed: {why}", s.instance(*i).name, s.instance(*i).kind);
    }
    msg.push_str("what finished before is cached: fix the problem and run again to continue from there");
    Err(Failure::Failed(msg))
}

/// The files a person opens after a run: every report's HTML page, then the plots; the
/// rest stays behind `difflow show`. Their readable copies where the run published them.
fn print_files_to_open(s: &Session, selected: &[usize], published: Option<&out_dir::Published>) {
    const MAX_PLOTS: usize = 8;
    let existing = |i: usize, files: &[&str]| -> Option<PathBuf> {
        let readable = published.and_then(|p| p.folders.get(&i));
        let dir = readable.cloned().unwrap_or_else(|| s.cache.entry_dir(s.key(i)));
        s.cache.is_complete(s.key(i)).then(|| files.iter().map(|f| dir.join(f)).find(|p| p.is_file()))?
    };
    let reports: Vec<PathBuf> = selected
        .iter()
        .filter(|&&i| s.instance(i).kind == "report")
        .filter_map(|&i| existing(i, &["report.html"]))
        .collect();
    let plots: Vec<PathBuf> = selected
        .iter()
        .filter(|&&i| s.instance(i).kind == "plot")
        .filter_map(|&i| existing(i, &["plot.png", "plot.gif"]))
        .collect();
    if reports.is_empty() && plots.is_empty() {
        return;
    }
    println!("open:");
    for path in reports.iter().chain(plots.iter().take(MAX_PLOTS)) {
        println!("  {}", path.display());
    }
    if plots.len() > MAX_PLOTS {
        println!("  … and {} more plots (`difflow show FILE NAME` lists a stage's files)", plots.len() - MAX_PLOTS);
    }
}

/// A few headline numbers of a finished entry, for its `done` line.
fn headline_text(s: &Session, i: usize) -> String {
    let key = s.key(i);
    let Some(m) = s.cache.manifest(key) else { return String::new() };
    let metrics = headline_metrics(&s.cache.entry_dir(key), &m.metrics);
    let shown: Vec<String> =
        metrics.iter().take(4).map(|(k, v)| format!("{k} {}", crate::report::metric_text(*v))).collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(": {}", shown.join(", "))
    }
}

/// How [`execute`] runs one instance.
pub(crate) struct Execution<'a> {
    /// `--force`: recompute even when cached, and start afresh rather than continue.
    pub(crate) forced: bool,
    pub(crate) device: &'a str,
    /// CPU threads per worker; 0: libtorch's default, or the cores shared between ranks.
    pub(crate) threads: usize,
    pub(crate) nproc: &'a crate::project::settings::Nproc,
    /// None where only in-process stages (reports) may run.
    pub(crate) worker: Option<&'a Path>,
    pub(crate) progress: &'a Progress,
}

/// Run one instance under its entry lock and commit its outputs.
fn execute(s: &Session, i: usize, how: &Execution, label: &str) -> Result<Outcome, StageError> {
    let Execution { forced, device, threads, nproc, worker, progress } = *how;
    let inst = s.instance(i);
    let key = s.key(i).to_string();
    let lock = s
        .cache
        .lock(&key, || progress.println(&format!("{label}: waiting for another difflow run that is computing it")))
        .map_err(|e| format!("cannot lock its cache entry in {}: {e}", s.cache.dir.display()))?;
    if !forced && s.cache.is_complete(&key) && s.cache.verify(&key).is_ok() {
        return Ok(Outcome::DoneElsewhere);
    }
    // Only stages that checkpoint resume from what an interrupted run left; any other
    // stage starts from an empty folder, so no stray file of a killed run is committed.
    let resumable = crate::schema::key(&inst.kind, &inst.variant, "checkpoint_every").is_some();
    let out_dir =
        s.cache.staging(&lock, forced || !resumable).map_err(|e| format!("cannot prepare its staging folder: {e}"))?;
    let mut job = build_job(s, i, out_dir, device);
    // The ranks of a data-parallel stage share the cores a single worker would take.
    let nproc = nproc.for_kind(&inst.kind);
    job.settings.threads = match threads {
        0 if nproc > 1 => std::thread::available_parallelism().map_or(1, |n| (n.get() / nproc).max(1)),
        t => t,
    };
    // A longer run of a cached training run continues it (`--force` starts afresh).
    let continued_from = if forced { None } else { continuation::continue_input(s, i) };
    if let Some((_, input)) = &continued_from {
        job.inputs.insert(CONTINUE_INPUT.to_string(), input.clone());
    }
    let started = utc_now();
    let clock = Instant::now();
    let job_file = s.cache.dir.join(format!("{key}.job.json"));
    let outcome = if inst.kind == "report" {
        progress.println(&format!("{label}: writing the report"));
        let recipe = recipe::recipe(s, i);
        let titles = crate::report::axis_titles(&s.pipeline);
        crate::report::write_report_titled(&job, Some(&recipe), &titles)
            .map(|()| Default::default())
            .map_err(StageError::Failed)
    } else if inst.kind == "script" {
        run_script(s, i, (&job, &job_file), progress, label).map_err(StageError::Failed)
    } else {
        match worker {
            None => Err(StageError::Failed("no worker executable".to_string())),
            Some(worker) => worker::run_worker(worker, &job, &job_file, nproc, progress, label).map_err(|f| match f {
                WorkerFailure::Stage(m) | WorkerFailure::Launch(m) | WorkerFailure::Crash(m) => StageError::Failed(m),
                WorkerFailure::Interrupted(m) => StageError::Interrupted(m),
            }),
        }
    };
    let _ = std::fs::remove_file(&job_file);
    let reported: worker::WorkerOutput = outcome.map_err(|e| match e {
        StageError::Failed(m) => StageError::Failed(m + &cleanup::after_failure(&s.cache, &lock, resumable)),
        interrupted => interrupted,
    })?;
    let secs = clock.elapsed().as_secs_f64();
    let mut manifest = Manifest {
        started,
        finished: utc_now(),
        duration_s: (secs * 1000.0).round() / 1000.0,
        metrics: reported.metrics,
        torch: reported.torch.unwrap_or_default(),
        device: reported.device.unwrap_or_default(),
        threads: reported.threads.unwrap_or(0),
        ..manifest_template(s, i, &job)
    };
    if let Some((continued_key, _)) = continued_from {
        manifest.inputs.insert(CONTINUE_INPUT.to_string(), continued_key);
    }
    s.cache.commit(&lock, manifest).map_err(|e| format!("cannot commit its outputs to the cache: {e}"))?;
    crate::remote::run::push_after_commit(s, i, progress);
    Ok(Outcome::Ran(secs))
}

/// Run script instance `i` into `job.out_dir`, its job written to `job_file`.
fn run_script(
    s: &Session,
    i: usize,
    (job, job_file): (&Job, &Path),
    progress: &Progress,
    label: &str,
) -> Result<worker::WorkerOutput, String> {
    let script_job = script::build_job(s, i, job.out_dir.clone(), &job.device)?;
    script::write_job(&script_job, job_file)?;
    script::run(&script_job, job_file, (progress, label), &[])?;
    Ok(worker::WorkerOutput { metrics: script::reported_metrics(&job.out_dir), ..Default::default() })
}

/// The manifest of instance `i`'s entry, less its timings and metrics.
pub(crate) fn manifest_template(s: &Session, i: usize, job: &Job) -> Manifest {
    let inst = s.instance(i);
    Manifest {
        key: s.key(i).to_string(),
        kind: inst.kind.clone(),
        variant: inst.variant.clone(),
        instances: vec![inst.name.clone()],
        started: String::new(),
        finished: String::new(),
        duration_s: 0.0,
        params: job.params.to_string(),
        key_material: crate::cache::key::canonical_json(&s.keys.material[&inst.name]),
        // A continued run's `$continue` input is recorded by the caller that added it.
        inputs: job
            .inputs
            .keys()
            .filter(|n| *n != CONTINUE_INPUT)
            .map(|n| (n.clone(), s.keys.key(n).to_string()))
            .collect(),
        metrics: Default::default(),
        outputs: Default::default(),
        torch: String::new(),
        device: String::new(),
        threads: 0,
        difflow: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The self-contained description of one instance for the worker.
pub fn build_job(s: &Session, i: usize, out_dir: PathBuf, device: &str) -> Job {
    let inst = s.instance(i);
    let params = serde_json::Value::Object(inst.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect());
    let inputs = inst
        .deps()
        .into_iter()
        .filter_map(|name| s.pipeline.instance(name))
        .map(|dep| {
            let input = Input {
                kind: dep.kind.clone(),
                variant: dep.variant.clone(),
                params: serde_json::Value::Object(dep.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
                dir: s.cache.entry_dir(s.keys.key(&dep.name)),
            };
            (dep.name.clone(), input)
        })
        .collect();
    Job {
        instance: inst.name.clone(),
        kind: inst.kind.clone(),
        variant: inst.variant.clone(),
        params,
        inputs,
        out_dir,
        device: device.to_string(),
        settings: JobSettings {
            inception_weights: s.settings.inception_weights.clone(),
            threads: s.settings.threads,
            limits: s.settings.limits,
        },
    }
}

/// Record every instance whose current entry exists; keep the previous record of the
/// others (a failed or unselected stage keeps what it last produced).
pub fn write_lock(s: &Session) {
    let all = LockFile::read(&s.lock_path);
    let old = all.record_of(file_name(&s.file));
    let mut lock = LockFile { pipeline: file_name(&s.file), ..LockFile::default() };
    for &i in s.graph.order() {
        let inst = s.instance(i);
        let key = s.key(i);
        if let Some(m) = s.cache.manifest(key) {
            lock.stages.insert(
                inst.name.clone(),
                LockedStage {
                    key: key.to_string(),
                    kind: inst.kind.clone(),
                    metrics: headline_metrics(&s.cache.entry_dir(key), &m.metrics),
                    outputs: m.output_digests(),
                    steps: continuation::cached_steps(s, i),
                    device: m.device.clone(),
                    threads: m.threads,
                },
            );
        } else if let Some(prev) = old.stages.get(&inst.name) {
            lock.stages.insert(inst.name.clone(), prev.clone());
        }
    }
    let updated = all.clone().with_record(lock.pipeline, lock.stages);
    if updated != all || !s.lock_path.exists() {
        if let Err(e) = updated.write(&s.lock_path) {
            eprintln!("warning: cannot write {}: {e}", s.lock_path.display());
        }
    }
}
