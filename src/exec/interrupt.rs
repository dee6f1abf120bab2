//! Ctrl-C and the lifetime of local workers.
//!
//! `difflow run` catches SIGINT and SIGTERM: instead of dying and orphaning its workers, it
//! forwards SIGTERM to each of them (a training worker writes a checkpoint at its next step
//! boundary and exits with `WORKER_INTERRUPTED`; any other stage just ends), waits for them,
//! says what was kept and exits 130. If `difflow` is killed outright (SIGKILL), the kernel
//! sends each worker SIGTERM through `PR_SET_PDEATHSIG`, with the same effect, so no
//! worker goes on training into a staging folder that nobody will commit.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static CHILDREN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Catch SIGINT and SIGTERM for the rest of the process, and forward a stop to every
/// registered worker once one arrives. Idempotent.
pub fn install() {
    if STOP.get().is_some() {
        return;
    }
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Without the handler Ctrl-C still ends the run, only less politely.
        let _ = signal_hook::flag::register(sig, Arc::clone(flag));
    }
    std::thread::spawn(|| {
        let flag = STOP.get().expect("set above");
        let mut signalled: BTreeSet<u32> = BTreeSet::new();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if !flag.load(Ordering::SeqCst) {
                continue;
            }
            let children = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
            for pid in children.difference(&signalled) {
                terminate(*pid);
            }
            signalled.extend(children);
        }
    });
}

/// Whether the user asked the run to stop.
pub fn requested() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// A running worker, forgotten when dropped.
pub struct Registered(u32);

pub fn register(pid: u32) -> Registered {
    if let Ok(mut c) = CHILDREN.lock() {
        c.insert(pid);
    }
    Registered(pid)
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut c) = CHILDREN.lock() {
            c.remove(&self.0);
        }
    }
}

#[cfg(unix)]
fn terminate(pid: u32) {
    // SAFETY: kill(2) has no memory effects; the pid is a child we have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(_pid: u32) {}

/// Make `command`'s process receive SIGTERM when the thread that spawned it ends (the
/// orchestrator's thread waits for its worker, so in practice: when `difflow` dies).
#[cfg(target_os = "linux")]
pub fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec (prctl, getppid, _exit).
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_command: &mut std::process::Command) {}
