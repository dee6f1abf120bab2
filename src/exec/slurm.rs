//! The Slurm executor: every stage instance that is not cached becomes one `sbatch` job
//! running the worker on its job file, with `afterok` dependencies on the jobs of its
//! inputs. The job commits its own outputs to the cache (`difflow __commit`), so jobs
//! finish and count even when no `difflow` follows them; a record beside each staging
//! folder (`<key>.slurm.json`) names the job building that entry, so that the next
//! `difflow run` adopts a queued or running job instead of submitting it again.
//!
//! The orchestrator follows the jobs with one `squeue` call per poll for all of them (the
//! interval grows from 0.5 s to 5 s while nothing changes) and the worker's event lines in
//! each job's log, and prints the same lines and summary as a local run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Progress;
use super::{
    build_job, execute, headline_text, interrupt, manifest_template, summarize, write_lock, Execution, Outcome,
};
use super::{Failure, RunSummary, Session};
use crate::cache::store::{utc_string, Manifest};
use crate::job::{Event, Input, CONTINUE_INPUT};

mod batch;
mod shared_cache;
pub use crate::project::slurm::{Resources, SlurmSettings};
pub use batch::check_cache_dir;

/// The job log's name inside the staging folder.
pub const LOG_FILE: &str = "slurm.log";

/// Which job builds a cache entry: `<cache>/<key>.slurm.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub pipeline: PathBuf,
    pub instance: String,
    pub submitted: String,
    /// The entry's manifest less timings, metrics and outputs, for `difflow __commit`.
    pub manifest: Manifest,
    /// The remote that `difflow __commit` uploads the entry to (`push = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_to: Option<crate::remote::run::RemoteSettings>,
}

pub fn record_path(s: &Session, key: &str) -> PathBuf {
    s.cache.dir.join(format!("{key}.slurm.json"))
}

fn read_record(path: &Path) -> Option<JobRecord> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// What `run` decided before handing over to this executor.
pub struct Plan {
    pub to_run: Vec<usize>,
    pub forced: BTreeSet<usize>,
    pub device: String,
    pub cached_before: usize,
    pub detach: bool,
    /// Processes of each data-parallel stage (`--nproc` or the `nproc` setting).
    pub nproc: crate::project::settings::Nproc,
}

/// A job's state as `squeue` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub state: String,
    pub reason: String,
}

impl JobState {
    /// Still queued, running or on its way back to the queue.
    pub fn is_live(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "COMPLETED"
                | "FAILED"
                | "CANCELLED"
                | "TIMEOUT"
                | "NODE_FAIL"
                | "OUT_OF_MEMORY"
                | "BOOT_FAIL"
                | "DEADLINE"
                | "PREEMPTED"
        )
    }
}

/// One `squeue` call for all `ids`: their states, for the jobs the controller still knows.
pub fn query(ids: &[String]) -> Result<HashMap<String, JobState>, String> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let out = Command::new("squeue")
        .args(["--noheader", "--states=all", "--format=%i|%T|%r", "--jobs", &ids.join(",")])
        .output()
        .map_err(|e| format!("cannot run squeue: {e} (is the Slurm client installed and on PATH?)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // squeue fails when every id is unknown (purged); that means "none known", not an error.
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("Invalid job id") {
        return Err(format!("squeue failed: {}", err.trim()));
    }
    let mut states = HashMap::new();
    for line in text.lines() {
        let mut parts = line.trim().splitn(3, '|');
        if let (Some(id), Some(state), reason) = (parts.next(), parts.next(), parts.next()) {
            let state = JobState { state: state.to_string(), reason: reason.unwrap_or("").to_string() };
            states.insert(id.to_string(), state);
        }
    }
    Ok(states)
}

/// The live job of each instance that has one: instance index → job id. Asks `squeue`
/// only when a record exists.
pub fn running_jobs(s: &Session) -> Result<BTreeMap<usize, String>, String> {
    let records: Vec<(usize, String)> = s
        .graph
        .order()
        .iter()
        .filter_map(|&i| read_record(&record_path(s, s.key(i))).map(|r| (i, r.job_id)))
        .filter(|(i, _)| !s.cache.is_complete(s.key(*i)))
        .collect();
    let ids: Vec<String> = records.iter().map(|(_, id)| id.clone()).collect();
    let states = query(&ids)?;
    Ok(records.into_iter().filter(|(_, id)| states.get(id).is_some_and(JobState::is_live)).collect())
}

/// `difflow cancel FILE`: cancel the pipeline's queued and running jobs.
pub fn cancel(s: &Session) -> Result<Vec<(usize, String)>, Failure> {
    let jobs = running_jobs(s).map_err(Failure::Failed)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = jobs.values().cloned().collect();
    let out =
        Command::new("scancel").args(&ids).output().map_err(|e| Failure::Failed(format!("cannot run scancel: {e}")))?;
    if !out.status.success() {
        return Err(Failure::Failed(format!("scancel failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(jobs.into_iter().collect())
}

/// A submitted or adopted job the orchestrator follows.
struct Followed {
    id: String,
    label: String,
    log: PathBuf,
    /// Bytes of the log already read.
    offset: u64,
    partial: String,
    /// Log lines that are not events: the worker's messages.
    said: Vec<String>,
    stage: Option<super::worker::StageProgress>,
}

impl Followed {
    /// Show the events the log gained since the last call.
    fn read_log(&mut self, progress: &Progress) {
        let Ok(mut f) = std::fs::File::open(&self.log) else { return };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = String::new();
        let Ok(n) = f.read_to_string(&mut buf) else { return };
        self.offset += n as u64;
        self.partial.push_str(&buf);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end();
            match serde_json::from_str::<Event>(line) {
                Ok(ev) => {
                    let stage = self.stage.get_or_insert_with(|| progress.stage(&self.label));
                    stage.event(progress, &ev);
                }
                Err(_) if line.trim().is_empty() => {}
                Err(_) => {
                    // What happened to the job (requeue, preemption, the checkpoint written) is
                    // worth a line as it happens; the rest is kept for a failure's message.
                    let notable = ["interrupted: ", "difflow: "].iter().any(|p| line.starts_with(p))
                        || line.starts_with("slurmstepd");
                    if notable {
                        progress.println(&format!("{}: {}", self.label, line.trim_start_matches("difflow: ")));
                    }
                    self.said.push(line.to_string());
                }
            }
        }
    }

    /// The worker's message, for a failed job.
    fn message(&self) -> String {
        // srun's own lines name the rank (task) that died first in a data-parallel job.
        let errors: Vec<&str> = self
            .said
            .iter()
            .filter_map(|l| l.strip_prefix("error: ").or_else(|| l.starts_with("srun: error: ").then_some(l.as_str())))
            .map(str::trim)
            .collect::<Vec<_>>();
        let text = if errors.is_empty() {
            let tail: Vec<&str> = self.said.iter().rev().take(20).map(String::as_str).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        } else {
            errors.join("\n")
        };
        if text.is_empty() {
            "the job ended without a message".into()
        } else {
            text
        }
    }
}

/// Submit (or adopt) the jobs of `plan.to_run`, then follow them unless detached.
pub fn run(s: &Session, plan: Plan, worker: Option<&Path>, progress: &Progress) -> Result<RunSummary, Failure> {
    let run_start = Instant::now();
    std::fs::create_dir_all(&s.cache.dir)
        .map_err(|e| Failure::Failed(format!("cannot create the cache folder {}: {e}", s.cache.dir.display())))?;
    shared_cache::check_shared_cache(&s.cache.dir).map_err(Failure::Usage)?;
    let difflow = std::env::current_exe().map_err(|e| Failure::Failed(format!("cannot locate difflow: {e}")))?;
    let total = plan.to_run.len();
    let position: HashMap<usize, usize> = plan.to_run.iter().enumerate().map(|(n, &i)| (i, n + 1)).collect();
    let label = |i: usize| format!("[{}/{total}] {} {}", position[&i], s.instance(i).kind, s.instance(i).name);

    // Records of earlier runs: one squeue call tells which of their jobs still live.
    let records: HashMap<usize, JobRecord> =
        plan.to_run.iter().filter_map(|&i| read_record(&record_path(s, s.key(i))).map(|r| (i, r))).collect();
    let known: Vec<String> = records.values().map(|r| r.job_id.clone()).collect();
    let states = query(&known).map_err(Failure::Failed)?;

    let mut jobs: BTreeMap<usize, Followed> = BTreeMap::new();
    let mut reports: Vec<usize> = Vec::new();
    let mut done_elsewhere = 0;
    let mut submitted = 0;
    for i in super::continuation::submission_order(s, &plan.to_run) {
        let inst = s.instance(i);
        if inst.kind == "report" {
            reports.push(i);
            continue;
        }
        let key = s.key(i);
        let forced = plan.forced.contains(&i);
        let lock = s
            .cache
            .lock(key, || progress.println(&format!("{}: waiting for another difflow run", label(i))))
            .map_err(|e| Failure::Failed(format!("cannot lock the cache entry of `{}`: {e}", inst.name)))?;
        if !forced && s.cache.is_complete(key) && s.cache.verify(key).is_ok() {
            done_elsewhere += 1;
            println!("cached  {} {} (its entry was computed meanwhile)", inst.kind, inst.name);
            continue;
        }
        let log = s.cache.staging_dir(key).join(LOG_FILE);
        let live = records.get(&i).filter(|r| states.get(&r.job_id).is_some_and(JobState::is_live));
        let (id, offset) = match live {
            Some(r) => {
                println!("adopted {} {} (job {})", inst.kind, inst.name, r.job_id);
                (r.job_id.clone(), 0)
            }
            None => {
                let mut deps: Vec<String> =
                    s.graph.inputs(i).iter().filter_map(|d| jobs.get(d).map(|f| f.id.clone())).collect();
                // A longer run of a training continues the longest shorter one, cached or
                // submitted now (`--force` starts afresh), as a local run does.
                let continued = if forced { None } else { continue_from(s, i, &jobs) };
                deps.extend(continued.as_ref().and_then(|(_, _, wait)| wait.clone()));
                let resumable = crate::schema::key(&inst.kind, &inst.variant, "checkpoint_every").is_some();
                let out_dir = s.cache.staging(&lock, forced || !resumable).map_err(|e| {
                    Failure::Failed(format!("cannot prepare the staging folder of `{}`: {e}", inst.name))
                })?;
                let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
                // A script's job runs `difflow __script` instead of the worker.
                let worker = match inst.kind.as_str() {
                    "script" => difflow.as_path(),
                    _ => worker.ok_or_else(|| Failure::Failed("no worker executable".into()))?,
                };
                let nproc = plan.nproc.for_kind(&inst.kind);
                let continued = continued.map(|(key, input, _)| (key, input));
                let id = submit(s, i, (out_dir, continued), (&plan.device, nproc), &deps, worker, &difflow)
                    .map_err(|e| Failure::Failed(format!("cannot submit `{}` to Slurm: {e}", inst.name)))?;
                submitted += 1;
                println!("queued  {} {} (job {id})", inst.kind, inst.name);
                (id, offset)
            }
        };
        drop(lock);
        jobs.insert(
            i,
            Followed { id, label: label(i), log, offset, partial: String::new(), said: Vec::new(), stage: None },
        );
    }

    let file = s.file_label();
    if plan.detach {
        println!(
            "detached: {} job{} on the cluster ({submitted} submitted now); `difflow plan {file}` shows them, \
             `difflow run {file}` follows them, `difflow cancel {file}` cancels them",
            jobs.len(),
            if jobs.len() == 1 { "" } else { "s" }
        );
        return Ok(RunSummary { ran: 0, cached: plan.cached_before + done_elsewhere });
    }
    follow(s, plan, jobs, reports, done_elsewhere, run_start, progress)
}

/// How the followed stages ended.
#[derive(Default)]
struct Tally {
    ran: usize,
    failures: Vec<(usize, String)>,
    /// Never ran: Slurm cancelled them because an input failed.
    cancelled: Vec<usize>,
}

impl Tally {
    /// Record a job that left the queue (`st`: its last state, when Slurm still knows it).
    fn settle(&mut self, s: &Session, i: usize, mut f: Followed, st: Option<JobState>, progress: &Progress) {
        f.read_log(progress);
        if let Some(stage) = f.stage.take() {
            stage.finish();
        }
        let inst = s.instance(i);
        if s.cache.is_complete(s.key(i)) {
            self.ran += 1;
            let secs = s.cache.manifest(s.key(i)).map_or(0.0, |m| m.duration_s);
            println!("done    {} {} ({secs:.1} s, job {}){}", inst.kind, inst.name, f.id, headline_text(s, i));
            // The job pushed it (`push = true`), but its messages went with its log:
            // upload what it could not, and say why when that fails here too.
            if let Ok(Some(_lock)) = s.cache.try_lock(s.key(i)) {
                crate::remote::run::push_after_commit(s, i, progress);
            }
        } else if st.as_ref().is_some_and(|st| st.state == "CANCELLED" && st.reason.contains("Dependency")) {
            println!("skipped {} {} (job {} cancelled by Slurm: an input failed)", inst.kind, inst.name, f.id);
            self.cancelled.push(i);
        } else {
            let how = st.map_or("ended".to_string(), |st| st.state.to_lowercase());
            println!("FAILED  {} {} (job {})", inst.kind, inst.name, f.id);
            let log = f.log.display();
            self.failures.push((i, format!("{}\n(Slurm job {} {how}; its log: {log})", f.message(), f.id)));
        }
    }

    /// Write the reports whose inputs are all cached, here, by the orchestrator.
    fn write_ready_reports(&mut self, s: &Session, plan: &Plan, reports: &mut Vec<usize>, progress: &Progress) {
        let ready: Vec<usize> = reports
            .iter()
            .copied()
            .filter(|&r| s.graph.inputs(r).iter().all(|&d| s.cache.is_complete(s.key(d))))
            .collect();
        for r in ready {
            reports.retain(|&x| x != r);
            let inst = s.instance(r);
            let label = format!("{} {}", inst.kind, inst.name);
            let how = Execution {
                forced: plan.forced.contains(&r),
                device: &plan.device,
                threads: 0,
                nproc: &crate::project::settings::Nproc::All(1),
                worker: None,
                progress,
            };
            match execute(s, r, &how, &label) {
                Ok(Outcome::Ran(secs)) => {
                    self.ran += 1;
                    println!("done    {} {} ({secs:.1} s)", inst.kind, inst.name);
                }
                Ok(Outcome::DoneElsewhere) => println!("cached  {} {}", inst.kind, inst.name),
                Err(super::StageError::Failed(m) | super::StageError::Interrupted(m)) => {
                    println!("FAILED  {} {}", inst.kind, inst.name);
                    self.failures.push((r, m));
                }
            }
        }
    }

    /// The summary line, and the run's result.
    fn finish(self, s: &Session, cached: usize, run_start: Instant) -> Result<RunSummary, Failure> {
        write_lock(s);
        summarize(s, (self.ran, cached, self.cancelled.len()), &self.failures, run_start)
    }
}

/// Poll the jobs until every one has ended; write the in-process report stages as their
/// inputs complete.
fn follow(
    s: &Session,
    plan: Plan,
    mut jobs: BTreeMap<usize, Followed>,
    mut reports: Vec<usize>,
    done_elsewhere: usize,
    run_start: Instant,
    progress: &Progress,
) -> Result<RunSummary, Failure> {
    let mut tally = Tally::default();
    let mut interval = Duration::from_millis(500);
    let mut next_poll = Instant::now();
    loop {
        if interrupt::requested() {
            write_lock(s);
            let ids: Vec<&str> = jobs.values().map(|f| f.id.as_str()).collect();
            let file = s.file_label();
            return Err(Failure::Interrupted(format!(
                "interrupted: {} job{} keep running on the cluster ({}); `difflow run {file}` follows them again, \
                 `difflow cancel {file}` cancels them",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                ids.join(", ")
            )));
        }
        for f in jobs.values_mut() {
            f.read_log(progress);
        }
        tally.write_ready_reports(s, &plan, &mut reports, progress);
        if jobs.is_empty() {
            // Reports whose inputs will never be cached.
            tally.cancelled.append(&mut reports);
            break;
        }
        if Instant::now() < next_poll {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let ids: Vec<String> = jobs.values().map(|f| f.id.clone()).collect();
        let states = query(&ids).map_err(Failure::Failed)?;
        let ended: Vec<usize> =
            jobs.iter().filter(|(_, f)| states.get(&f.id).is_none_or(|st| !st.is_live())).map(|(&i, _)| i).collect();
        let changed = !ended.is_empty();
        for i in ended {
            let f = jobs.remove(&i).expect("listed above");
            let st = states.get(&f.id).cloned();
            tally.settle(s, i, f, st, progress);
        }
        // Poll often while jobs end, less and less while nothing changes.
        interval = if changed { Duration::from_millis(500) } else { (interval * 3 / 2).min(Duration::from_secs(5)) };
        next_poll = Instant::now() + interval;
    }
    tally.finish(s, plan.cached_before + done_elsewhere, run_start)
}

/// What instance `i` continues (see `continuation::continue_at_submission`), given the jobs
/// submitted or adopted so far.
fn continue_from(s: &Session, i: usize, jobs: &BTreeMap<usize, Followed>) -> Option<(String, Input, Option<String>)> {
    let submitted: BTreeMap<usize, String> = jobs.iter().map(|(&j, f)| (j, f.id.clone())).collect();
    super::continuation::continue_at_submission(s, i, &submitted)
}

/// Write the job file, the batch script and the record, and `sbatch` the job. `continued`:
/// the key and job input of the run it continues.
fn submit(
    s: &Session,
    i: usize,
    (out_dir, continued): (PathBuf, Option<(String, Input)>),
    (device, nproc): (&str, usize),
    deps: &[String],
    worker: &Path,
    difflow: &Path,
) -> Result<String, String> {
    let inst = s.instance(i);
    let key = s.key(i);
    let resources = s.settings.slurm.resources(&inst.kind, nproc);
    let log = out_dir.join(LOG_FILE);
    let mut job = build_job(s, i, out_dir, device);
    // A stage's results depend on its thread count: give it the one a local run with the
    // same settings would use, or the CPUs it asked Slurm for.
    job.settings.threads = if s.settings.threads > 0 { s.settings.threads } else { resources.cpus };
    if let Some((_, input)) = &continued {
        job.inputs.insert(CONTINUE_INPUT.to_string(), input.clone());
    }
    let job_file = s.cache.dir.join(format!("{key}.job.json"));
    let script_stage = inst.kind == "script";
    if script_stage {
        super::script::write_job(&super::script::build_job(s, i, job.out_dir.clone(), device)?, &job_file)?;
    } else {
        std::fs::write(&job_file, serde_json::to_string_pretty(&job).expect("jobs serialise"))
            .map_err(|e| format!("cannot write {}: {e}", job_file.display()))?;
    }
    let record = record_path(s, key);
    let script = s.cache.dir.join(format!("{key}.slurm.sh"));
    let pipeline = s.file.file_stem().map_or("pipeline".into(), |n| n.to_string_lossy().into_owned());
    let text = batch::script(&batch::Script {
        title: &format!("stage `{}` of {}", inst.name, s.file.display()),
        worker,
        job_file: &job_file,
        difflow,
        record: &record,
        nproc: resources.nproc,
        cpus: resources.cpus,
        script_stage,
    });
    std::fs::write(&script, text).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    // Stages that checkpoint (training, classifiers) resume when requeued; others rerun.
    let training = crate::schema::key(&inst.kind, &inst.variant, "checkpoint_every").is_some();
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name=difflow:{pipeline}:{}", inst.name),
        format!("--output={}", batch::output_pattern(&log)?),
        "--open-mode=append".into(),
        format!("--chdir={}", s.settings.root.display()),
    ];
    if !deps.is_empty() {
        args.push(format!("--dependency=afterok:{}", deps.join(":")));
        args.push("--kill-on-invalid-dep=yes".into());
    }
    if training {
        // The warning before the time limit: the worker checkpoints, the script requeues.
        args.push("--requeue".into());
        args.push(format!("--signal=B:USR1@{}", batch::WARNING_SECONDS));
    } else {
        args.push("--no-requeue".into());
    }
    args.extend(resources.sbatch_args());
    args.push(script.display().to_string());
    let out = Command::new("sbatch").args(&args).output().map_err(|e| format!("cannot run sbatch: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("sbatch answered `{}`, not a job id", stdout.trim()));
    }
    let mut manifest = manifest_template(s, i, &job);
    if let Some((key, _)) = continued {
        manifest.inputs.insert(CONTINUE_INPUT.to_string(), key);
    }
    let rec = JobRecord {
        job_id: id.clone(),
        pipeline: s.file.clone(),
        instance: inst.name.clone(),
        submitted: crate::cache::store::utc_now(),
        manifest,
        push_to: s.settings.remote.clone().filter(|r| r.push),
    };
    std::fs::write(&record, serde_json::to_string_pretty(&rec).expect("records serialise"))
        .map_err(|e| format!("cannot write {} (job {id} was submitted): {e}", record.display()))?;
    Ok(id)
}

/// `difflow __commit RECORD STARTED`: run by the batch script after the worker succeeded.
/// Commits the staging folder (less the job log) to the cache with the metrics the
/// worker reported, and removes the job's files.
pub fn commit_job(record_file: &Path, started_epoch: u64) -> Result<(), String> {
    let rec =
        read_record(record_file).ok_or_else(|| format!("cannot read the job record {}", record_file.display()))?;
    let cache_dir = record_file.parent().ok_or("the record has no folder")?;
    let cache = crate::cache::Cache::new(cache_dir);
    let key = rec.manifest.key.clone();
    let lock = cache.lock(&key, || {}).map_err(|e| format!("cannot lock the entry {key}: {e}"))?;
    let staging = cache.staging_dir(&key);
    let log = staging.join(LOG_FILE);
    let mut metrics = BTreeMap::new();
    let (mut torch, mut device, mut threads) = (String::new(), String::new(), 0);
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        match serde_json::from_str::<Event>(line) {
            Ok(Event::Metric { name, value }) => {
                metrics.insert(name, value);
            }
            Ok(Event::Runtime { torch: version, device: used, threads: used_threads }) => {
                torch = version;
                device = used.unwrap_or(device);
                threads = used_threads.unwrap_or(threads);
            }
            _ => {}
        }
    }
    // The log is not an output: a local run has none, and digests must agree.
    let _ = std::fs::remove_file(&log);
    if rec.manifest.kind == "script" {
        metrics = super::script::reported_metrics(&staging);
    }
    let started = std::time::UNIX_EPOCH + Duration::from_secs(started_epoch);
    let secs = std::time::SystemTime::now().duration_since(started).map_or(0.0, |d| d.as_secs_f64());
    let manifest = Manifest {
        started: utc_string(started),
        finished: crate::cache::store::utc_now(),
        duration_s: (secs * 1000.0).round() / 1000.0,
        metrics,
        torch,
        device,
        threads,
        difflow: env!("CARGO_PKG_VERSION").to_string(),
        ..rec.manifest
    };
    let kind = manifest.kind.clone();
    cache.commit(&lock, manifest).map_err(|e| format!("cannot commit the outputs of `{}`: {e}", rec.instance))?;
    if let Some(remote) = &rec.push_to {
        crate::remote::run::push_from_job(remote, &cache, &key, &format!("{kind} {}", rec.instance));
    }
    for f in [format!("{key}.job.json"), format!("{key}.slurm.sh"), format!("{key}.slurm.json")] {
        let _ = std::fs::remove_file(cache_dir.join(f));
    }
    Ok(())
}
