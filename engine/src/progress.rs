//! Worker events on stdout (one JSON object per line), read by the orchestrator's
//! progress bars.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use difflow_core::job::Event;

pub fn emit(event: &Event) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the orchestrator went away) must not crash a stage mid-write.
    let _ = writeln!(out, "{}", event.to_line());
    let _ = out.flush();
}

pub fn log(message: impl Into<String>) {
    emit(&Event::Log { message: message.into() });
}

pub fn metric(name: impl Into<String>, value: f64) {
    emit(&Event::Metric { name: name.into(), value });
}

/// A phase of `total` units whose progress events are throttled to about ten a second
/// (the last unit is always reported).
pub struct Progress {
    total: u64,
    last: Option<Instant>,
    every: Duration,
}

impl Progress {
    pub fn begin(what: &str, total: u64) -> Progress {
        emit(&Event::Begin { what: what.to_string(), total });
        Progress { total, last: None, every: Duration::from_millis(100) }
    }

    pub fn update(&mut self, done: u64, loss: Option<f64>) {
        if stop_at() == Some(done) {
            // As a stop request from outside would: a stage that checkpoints stops at its
            // next step boundary.
            // SAFETY: raise(3) sends a signal to this process; its handler only sets a flag.
            unsafe { libc::raise(libc::SIGTERM) };
        }
        if abort_at() == Some(done) {
            // Dies as a kill would: no unwinding, no cleanup, nothing more written.
            std::process::abort();
        }
        let now = Instant::now();
        let due = self.last.is_none_or(|t| now.duration_since(t) >= self.every);
        if due || done >= self.total {
            self.last = Some(now);
            emit(&Event::Progress { done, loss });
        }
    }
}

/// Test hook: with `DIFFLOW_ABORT_AT=N` in its environment the worker aborts when a phase
/// reports N units done, so a test interrupts a stage at a point it chooses (a training
/// run reports step N + 1 after the checkpoint of step N is in place) instead of racing it.
/// `DIFFLOW_ABORT_RANK=R` limits that to data-parallel rank R (the others run on), so a
/// test run through `difflow run --nproc` loses one rank.
fn abort_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| {
        let rank = |name: &str| std::env::var(name).ok();
        let chosen = rank("DIFFLOW_ABORT_RANK");
        let this = rank(crate::dist::RANK_ENV).or_else(|| rank("SLURM_PROCID")).unwrap_or_else(|| "0".into());
        if chosen.is_some_and(|r| r.trim() != this) {
            return None;
        }
        std::env::var("DIFFLOW_ABORT_AT").ok().and_then(|v| v.parse().ok())
    })
}

/// Test hook: with `DIFFLOW_STOP_AT=N` the worker sends itself SIGTERM when a phase reports
/// N units done, so a test stops a stage through its real signal handling at a step it
/// chooses. Read once; unset in production.
fn stop_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var("DIFFLOW_STOP_AT").ok().and_then(|v| v.parse().ok()))
}
