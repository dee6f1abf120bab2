//! Stop requests for long stages: SIGINT (Ctrl-C), SIGTERM (`difflow` stopping its
//! workers, Slurm ending or requeueing a job) and SIGUSR1 (the warning Slurm sends before a
//! time limit) set a flag instead of killing the worker. A training stage checks the flag at
//! each step boundary, writes a checkpoint and ends with [`WORKER_INTERRUPTED`], so the
//! next run (or the requeued job) resumes where it stopped.
//!
//! Only stages that can stop cleanly call [`install`]; every other stage keeps the default
//! disposition and dies at once on these signals (it has nothing to save).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

pub use difflow_core::job::WORKER_INTERRUPTED;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The signals that ask a stage to stop.
pub const STOP_SIGNALS: [i32; 3] =
    [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1];

/// Route the stop signals to the flag. Idempotent.
pub fn install() -> anyhow::Result<()> {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_none() {
        for sig in STOP_SIGNALS {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .map_err(|e| anyhow::anyhow!("cannot handle signal {sig}: {e}"))?;
        }
        let _ = INSTALLED.set(());
    }
    Ok(())
}

/// Whether a stop signal arrived since [`install`].
pub fn stop_requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// The error a stage returns when it stopped on request; the worker's `main` turns it into
/// the exit status [`WORKER_INTERRUPTED`].
#[derive(Debug)]
pub struct Interrupted {
    pub message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}
