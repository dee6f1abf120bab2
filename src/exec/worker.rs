//! Launching `difflow-worker JOB.json` and following its events: progress bars on a
//! terminal (step, loss, it/s, ETA), plain lines otherwise, stderr captured for messages.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::failure::Failure;
use crate::job::{Event, Job, WORKER_INTERRUPTED, WORKER_STAGE_FAILED};

/// Where the worker executable is: `$DIFFLOW_WORKER`, else `difflow-worker` beside the
/// running `difflow`.
pub fn worker_path() -> Result<PathBuf, Failure> {
    if let Some(p) = std::env::var_os("DIFFLOW_WORKER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Failure::Failed(format!("DIFFLOW_WORKER is set to {}, which is not a file", p.display())))
        };
    }
    let exe =
        std::env::current_exe().map_err(|e| Failure::Failed(format!("cannot locate the difflow executable: {e}")))?;
    let name = format!("difflow-worker{}", std::env::consts::EXE_SUFFIX);
    let beside = exe.parent().map(|d| d.join(&name)).unwrap_or_else(|| PathBuf::from(&name));
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(Failure::Failed(format!(
            "the stage worker `{name}` is not beside {}\nhelp: build it with `cargo build --release -p difflow-engine`, \
             or point DIFFLOW_WORKER at it",
            exe.display()
        )))
    }
}

/// How a worker run ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerFailure {
    /// Exit 2: a failure the user can fix; the worker's message.
    Stage(String),
    /// Any other exit or a signal: what we know, with the end of stderr.
    Crash(String),
    /// The worker could not be started.
    Launch(String),
    /// Exit 3: it stopped on request (after a checkpoint, for training); what it said.
    Interrupted(String),
}

/// What a successful worker run reported.
#[derive(Debug, Clone, Default)]
pub struct WorkerOutput {
    pub metrics: BTreeMap<String, f64>,
    /// The worker's libtorch version, when it said.
    pub torch: Option<String>,
    /// The device and the CPU threads the stage ran on, when the worker said.
    pub device: Option<String>,
    pub threads: Option<usize>,
    /// stdout lines that were not events (the `describe` job prints its answer there).
    pub other_stdout: Vec<String>,
}

/// The progress display shared by all stages of a run.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress { multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
        } else {
            Progress { multi: None }
        }
    }

    /// Plain lines only (tests, `show`).
    pub fn plain() -> Progress {
        Progress { multi: None }
    }

    /// Print a line without tearing the bars.
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A bar of `len` units among the run's bars; `None` when printing plain lines.
    pub(crate) fn bar(&self, len: u64) -> Option<ProgressBar> {
        self.multi.as_ref().map(|m| m.add(ProgressBar::new(len)))
    }

    pub(crate) fn stage(&self, label: &str) -> StageProgress {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}").expect("valid template"));
            bar.set_prefix(label.to_string());
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        StageProgress {
            label: label.to_string(),
            bar,
            what: String::new(),
            total: 0,
            began: Instant::now(),
            next_report: 0,
            last_loss: None,
            first_done: None,
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

pub(crate) struct StageProgress {
    label: String,
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    began: Instant,
    /// Plain mode: the next `done` worth a line (every 10 %).
    next_report: u64,
    last_loss: Option<f64>,
    /// The first `done` of the phase: above 0 when training resumes or continues a run,
    /// and then not work done at this phase's rate.
    first_done: Option<u64>,
}

impl StageProgress {
    pub(crate) fn event(&mut self, progress: &Progress, ev: &Event) {
        match ev {
            Event::Begin { what, total } => {
                self.what = what.clone();
                self.total = *total;
                self.began = Instant::now();
                self.next_report = total.div_ceil(10).max(1);
                self.first_done = None;
                match &self.bar {
                    Some(bar) => {
                        bar.set_length(*total);
                        bar.set_position(0);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix:.bold} {msg} [{bar:30.cyan/blue}] {pos}/{len} {rate} ETA {eta}",
                            )
                            .expect("valid template")
                            .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = write!(w, "{:.1} it/s", state.per_sec());
                            })
                            .progress_chars("=> "),
                        );
                        bar.reset_eta();
                        bar.set_message(what.clone());
                    }
                    None => progress.println(&format!("{}: {what} ({total})", self.label)),
                }
            }
            Event::Progress { done, loss } => {
                if loss.is_some() {
                    self.last_loss = *loss;
                }
                let loss_text = self.last_loss.map(|l| format!(" loss {l:.4}")).unwrap_or_default();
                let resumed = *self.first_done.get_or_insert(*done);
                match &self.bar {
                    Some(bar) => {
                        bar.set_position(*done);
                        if *done == resumed {
                            bar.reset_eta();
                        }
                        bar.set_message(format!("{}{loss_text}", self.what));
                    }
                    None if *done >= self.next_report || *done == self.total => {
                        let secs = self.began.elapsed().as_secs_f64().max(1e-9);
                        let rate = done.saturating_sub(resumed) as f64 / secs;
                        let eta = if rate > 0.0 { self.total.saturating_sub(*done) as f64 / rate } else { 0.0 };
                        progress.println(&format!(
                            "{}: {} {done}/{}{loss_text} ({rate:.1} it/s, ETA {eta:.0}s)",
                            self.label, self.what, self.total
                        ));
                        let step = self.total.div_ceil(10).max(1);
                        while self.next_report <= *done {
                            self.next_report += step;
                        }
                    }
                    None => {}
                }
            }
            Event::Log { message } => progress.println(&format!("{}: {message}", self.label)),
            Event::Metric { name, value } => {
                progress.println(&format!("{}: {name} = {}", self.label, crate::report::metric_text(*value)))
            }
            Event::Runtime { .. } => {}
        }
    }

    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What a data-parallel rank's error says when a peer, not the rank itself, failed.
const PEER_LOST: &str = "failed (a peer died or timed out)";

/// Starts one worker process; `rank` = (rank, world size, store port) for a data-parallel
/// stage, whose ranks rendezvous through rank 0's c10d store on the loopback.
fn spawn_worker(
    worker: &Path,
    job_file: &Path,
    rank: Option<(usize, usize, u16)>,
    follow: bool,
) -> Result<(Child, JoinHandle<String>, super::interrupt::Registered), WorkerFailure> {
    let mut command = Command::new(worker);
    super::interrupt::die_with_parent(&mut command);
    command.arg(job_file).stdin(Stdio::null()).stderr(Stdio::piped());
    command.stdout(if follow { Stdio::piped() } else { Stdio::null() });
    if let Some((rank, world, port)) = rank {
        command
            .env("DIFFLOW_RANK", rank.to_string())
            .env("DIFFLOW_LOCAL_RANK", rank.to_string())
            .env("DIFFLOW_WORLD_SIZE", world.to_string())
            .env("DIFFLOW_STORE", format!("127.0.0.1:{port}"));
    }
    let mut child = command
        .spawn()
        .map_err(|e| WorkerFailure::Launch(format!("cannot start the worker {}: {e}", worker.display())))?;
    let registered = super::interrupt::register(child.id());
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    Ok((child, reader, registered))
}

/// Write `job` to `job_file` and run the worker on it (on `nproc` data-parallel ranks),
/// following rank 0's events.
pub fn run_worker(
    worker: &Path,
    job: &Job,
    job_file: &Path,
    nproc: usize,
    progress: &Progress,
    label: &str,
) -> Result<WorkerOutput, WorkerFailure> {
    let text = serde_json::to_string_pretty(job).expect("jobs serialise");
    std::fs::write(job_file, text)
        .map_err(|e| WorkerFailure::Launch(format!("cannot write {}: {e}", job_file.display())))?;
    let world = nproc.max(1);
    let port = if world > 1 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| WorkerFailure::Launch(format!("cannot find a free port for the ranks' store: {e}")))?;
        probe.local_addr().map_err(|e| WorkerFailure::Launch(e.to_string()))?.port()
    } else {
        0
    };
    let rank = |r: usize| (world > 1).then_some((r, world, port));
    let (mut child, stderr_reader, _registered) = spawn_worker(worker, job_file, rank(0), true)?;
    let mut others = Vec::new();
    for r in 1..world {
        match spawn_worker(worker, job_file, rank(r), false) {
            Ok(other) => others.push(other),
            Err(e) => {
                let _ = child.kill();
                for (mut o, _, _) in others {
                    let _ = o.kill();
                }
                return Err(e);
            }
        }
    }
    let mut out = WorkerOutput::default();
    let mut stage = progress.stage(label);
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Event>(&line) {
            Ok(ev) => {
                match &ev {
                    Event::Metric { name, value } => {
                        out.metrics.insert(name.clone(), *value);
                    }
                    Event::Runtime { torch, device, threads } => {
                        out.torch = Some(torch.clone());
                        out.device = device.clone().or(out.device.take());
                        out.threads = threads.or(out.threads);
                    }
                    _ => {}
                }
                stage.event(progress, &ev);
            }
            Err(_) if line.trim().is_empty() => {}
            Err(_) => out.other_stdout.push(line),
        }
    }
    stage.finish();
    let status = child.wait().map_err(|e| WorkerFailure::Crash(format!("lost the worker: {e}")))?;
    let err_text = stderr_reader.join().unwrap_or_default();
    let mut ranks = vec![(status, err_text)];
    for (mut other, reader, _registered) in others {
        if !ranks[0].0.success() {
            // Rank 0 has gone: the others cannot finish.
            let _ = other.kill();
        }
        let status = other.wait().map_err(|e| WorkerFailure::Crash(format!("lost a worker: {e}")))?;
        ranks.push((status, reader.join().unwrap_or_default()));
    }
    if ranks.iter().all(|(status, _)| status.success()) {
        return Ok(out);
    }
    if world == 1 {
        let (status, err_text) = ranks.pop().expect("one rank");
        return Err(failure(status, &err_text));
    }
    // Name the rank that failed first-hand, not one that only lost its peer.
    let lost = ranks
        .iter()
        .position(|(status, err)| !status.success() && !err.contains(PEER_LOST))
        .or_else(|| ranks.iter().position(|(status, _)| !status.success()))
        .expect("a rank failed");
    let (status, err_text) = &ranks[lost];
    Err(match failure(*status, err_text) {
        WorkerFailure::Stage(m) => WorkerFailure::Stage(format!("rank {lost} of {world}: {m}")),
        WorkerFailure::Crash(m) => WorkerFailure::Crash(format!("rank {lost} of {world} was lost: {m}")),
        other => other,
    })
}

/// The failure a worker's exit status and stderr describe.
fn failure(status: ExitStatus, err_text: &str) -> WorkerFailure {
    if status.code() == Some(WORKER_INTERRUPTED) {
        let msg = err_text.trim();
        return WorkerFailure::Interrupted(msg.strip_prefix("interrupted: ").unwrap_or(msg).to_string());
    }
    if status.code() == Some(WORKER_STAGE_FAILED) {
        let msg = err_text.trim();
        let msg = msg.strip_prefix("error: ").unwrap_or(msg);
        return WorkerFailure::Stage(if msg.is_empty() { "the stage failed".into() } else { msg.to_string() });
    }
    let how = match status.code() {
        Some(c) => format!("exit code {c}"),
        None => describe_signal(&status),
    };
    let tail: Vec<&str> = err_text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    WorkerFailure::Crash(format!(
        "the worker crashed ({how}){}{}",
        if tail.is_empty() { "" } else { ":\n" },
        tail.join("\n")
    ))
}

#[cfg(unix)]
fn describe_signal(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => "killed by signal 9: out of memory, or stopped by hand".into(),
        Some(s) => format!("killed by signal {s}"),
        None => "no exit code".into(),
    }
}

#[cfg(not(unix))]
fn describe_signal(_status: &std::process::ExitStatus) -> String {
    "no exit code".into()
}
