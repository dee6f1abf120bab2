//! The local executor: worker processes on this machine, `--jobs` at a time, each started
//! as soon as its inputs are done.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use super::{continuation, execute, headline_text, interrupt, summarize, write_lock, Execution, Outcome, Progress};
use super::{Failure, RunSummary, Session, StageError};
use crate::project::settings::Nproc;

/// What a local run does: the instances to run (in topological order) and how.
pub(super) struct Plan {
    pub to_run: Vec<usize>,
    pub forced: BTreeSet<usize>,
    pub device: String,
    pub jobs: usize,
    pub nproc: Nproc,
    pub cached_before: usize,
}

/// Where a local run stands: what started, finished, failed or stopped.
#[derive(Default)]
struct Tally {
    started: BTreeSet<usize>,
    done: BTreeSet<usize>,
    failures: Vec<(usize, String)>,
    interrupted: Vec<(usize, String)>,
    ran: usize,
    done_elsewhere: usize,
}

/// Run `plan.to_run` with up to `plan.jobs` workers at once; commit each as it finishes.
pub(super) fn run(s: &Session, plan: Plan, worker: Option<&Path>, progress: &Progress) -> Result<RunSummary, Failure> {
    let threads = threads_per_worker(s.settings.threads, plan.jobs);
    let position: HashMap<usize, usize> = plan.to_run.iter().enumerate().map(|(n, &i)| (i, n + 1)).collect();
    let pending: BTreeSet<usize> = plan.to_run.iter().copied().collect();
    let shorter = continuation::shorter_runs(s, &plan.to_run);
    let mut tally = Tally::default();
    let run_start = Instant::now();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<Outcome, StageError>)>();
        let mut running = 0;
        loop {
            if tally.failures.is_empty() && !interrupt::requested() {
                for &i in &plan.to_run {
                    if running >= plan.jobs {
                        break;
                    }
                    let ready = !tally.started.contains(&i)
                        && s.graph.inputs(i).iter().all(|d| !pending.contains(d) || tally.done.contains(d))
                        && shorter.get(&i).is_none_or(|runs| runs.iter().all(|d| tally.done.contains(d)));
                    if ready {
                        tally.started.insert(i);
                        running += 1;
                        let tx = tx.clone();
                        let inst = s.instance(i);
                        let label = format!("[{}/{}] {} {}", position[&i], plan.to_run.len(), inst.kind, inst.name);
                        let how = Execution {
                            forced: plan.forced.contains(&i),
                            device: &plan.device,
                            threads,
                            nproc: &plan.nproc,
                            worker,
                            progress,
                        };
                        scope.spawn(move || {
                            let r = execute(s, i, &how, &label);
                            let _ = tx.send((i, r));
                        });
                    }
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, result)) = rx.recv() else { break };
            running -= 1;
            tally.record(s, i, result);
        }
    });
    write_lock(s);
    tally.finish(s, plan.to_run.len(), plan.cached_before, run_start)
}

/// Several CPU workers at once would each take every core: share them out, and let
/// libtorch's OpenMP threads wait passively, since spinning ones starve the other
/// workers (a UNet step took 2.5 s instead of 0.44 s). A single worker keeps the
/// default spinning wait: passive waiting made the same step 1.7x slower on an idle
/// 2-core machine (233 ms vs 140 ms). Set before any thread starts; a user's own
/// setting wins.
fn threads_per_worker(threads: usize, jobs: usize) -> usize {
    if jobs > 1 && std::env::var_os("OMP_WAIT_POLICY").is_none() {
        std::env::set_var("OMP_WAIT_POLICY", "PASSIVE");
    }
    match threads {
        0 if jobs > 1 => std::thread::available_parallelism().map_or(1, |n| (n.get() / jobs).max(1)),
        t => t,
    }
}

impl Tally {
    /// Note how instance `i` ended and say so.
    fn record(&mut self, s: &Session, i: usize, result: Result<Outcome, StageError>) {
        let inst = s.instance(i);
        match result {
            Ok(Outcome::Ran(secs)) => {
                self.ran += 1;
                self.done.insert(i);
                println!("done    {} {} ({secs:.1} s){}", inst.kind, inst.name, headline_text(s, i));
            }
            Ok(Outcome::DoneElsewhere) => {
                self.done_elsewhere += 1;
                self.done.insert(i);
                println!("cached  {} {} (its entry was computed meanwhile)", inst.kind, inst.name);
            }
            Err(StageError::Interrupted(msg)) => {
                println!("stopped {} {}", inst.kind, inst.name);
                self.interrupted.push((i, msg));
            }
            // A stage killed by the stop is interrupted, not failed.
            Err(StageError::Failed(msg)) if interrupt::requested() => {
                println!("stopped {} {}", inst.kind, inst.name);
                self.interrupted.push((i, msg.lines().next().unwrap_or_default().to_string()));
            }
            Err(StageError::Failed(msg)) => {
                println!("FAILED  {} {}", inst.kind, inst.name);
                self.failures.push((i, msg));
            }
        }
    }

    /// The run's summary line, and its result: what failed or what a stop kept.
    fn finish(self, s: &Session, total: usize, cached_before: usize, start: Instant) -> Result<RunSummary, Failure> {
        if interrupt::requested() && self.failures.is_empty() {
            return Err(Failure::Interrupted(interrupted_message(s, self.ran, &self.interrupted)));
        }
        let not_started = total - self.started.len();
        let cached = cached_before + self.done_elsewhere;
        summarize(s, (self.ran, cached, not_started), &self.failures, start)
    }
}

/// What an interrupted run kept, and how to go on.
fn interrupted_message(s: &Session, ran: usize, stopped: &[(usize, String)]) -> String {
    let mut msg =
        format!("interrupted: {ran} stage{} finished and cached before the stop", if ran == 1 { "" } else { "s" });
    for (i, said) in stopped {
        let inst = s.instance(*i);
        let _ = write!(msg, "\n  {} {}: {}", inst.kind, inst.name, if said.is_empty() { "stopped" } else { said });
    }
    let _ = write!(msg, "\nrun `difflow run {}` again to continue from there", s.file_label());
    msg
}
