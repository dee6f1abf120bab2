//! Data parallelism over libtorch's c10d (the library PyTorch's DDP uses): the ranks of one
//! stage rendezvous through a `TCPStore` hosted by rank 0 and all-reduce through a Gloo
//! process group. The C++ side is `csrc/c10d_shim.cpp`; this module gives it a safe face.
//!
//! A worker learns its place from the environment the orchestrator (or `srun`) sets:
//! `DIFFLOW_RANK`, `DIFFLOW_WORLD_SIZE` and `DIFFLOW_STORE` (`host:port` of rank 0's store).

use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tch::Tensor;

pub const RANK_ENV: &str = "DIFFLOW_RANK";
pub const WORLD_SIZE_ENV: &str = "DIFFLOW_WORLD_SIZE";
pub const STORE_ENV: &str = "DIFFLOW_STORE";
/// How long the rendezvous and each collective may wait for a peer before failing.
pub const TIMEOUT_ENV: &str = "DIFFLOW_DIST_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

extern "C" {
    fn dfl_c10d_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world_size: c_int,
        timeout_ms: c_long,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn dfl_c10d_all_reduce_sum(group: *mut c_void, tensors: *mut *mut c_void, count: c_int) -> *mut c_char;
    fn dfl_c10d_broadcast(group: *mut c_void, tensor: *mut c_void, root: c_int) -> *mut c_char;
    fn dfl_c10d_barrier(group: *mut c_void) -> *mut c_char;
    fn dfl_c10d_free(group: *mut c_void);
    fn dfl_c10d_free_error(message: *mut c_char);
}

/// Turns the shim's error string (null on success) into a Rust error.
fn check(message: *mut c_char, what: &str) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'ed by the shim.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { dfl_c10d_free_error(message) };
    bail!("{what}: {}", text.trim())
}

/// One rank's membership in a Gloo process group.
pub struct ProcessGroup {
    handle: *mut c_void,
    rank: usize,
    world_size: usize,
}

// The group is used from one thread at a time; c10d's Gloo backend is thread-safe anyway.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins (rank 0: hosts) the store at `host:port` and builds the Gloo group.
    pub fn new(host: &str, port: u16, rank: usize, world_size: usize, timeout: Duration) -> Result<ProcessGroup> {
        if world_size == 0 || rank >= world_size {
            bail!("rank {rank} is not in a world of {world_size} processes");
        }
        let c_host = CString::new(host).context("the store host contains a NUL byte")?;
        let mut handle = std::ptr::null_mut();
        let timeout_ms = timeout.as_millis().min(c_long::MAX as u128) as c_long;
        // SAFETY: the shim only reads the host string and writes `handle` on success.
        let err = unsafe {
            dfl_c10d_new(c_host.as_ptr(), port as c_int, rank as c_int, world_size as c_int, timeout_ms, &mut handle)
        };
        check(err, &format!("rank {rank} of {world_size} cannot join the process group at {host}:{port}"))?;
        Ok(ProcessGroup { handle, rank, world_size })
    }

    /// The group this worker belongs to, from `DIFFLOW_RANK`/`DIFFLOW_WORLD_SIZE`/
    /// `DIFFLOW_STORE`; `None` when the worker runs alone.
    pub fn from_env() -> Result<Option<ProcessGroup>> {
        let world_size: usize = match std::env::var(WORLD_SIZE_ENV) {
            Ok(text) => text.parse().with_context(|| format!("{WORLD_SIZE_ENV}={text} is not a count"))?,
            Err(_) => return Ok(None),
        };
        if world_size <= 1 {
            return Ok(None);
        }
        let rank_text =
            std::env::var(RANK_ENV).with_context(|| format!("{WORLD_SIZE_ENV} is set but {RANK_ENV} is not"))?;
        let rank: usize = rank_text.parse().with_context(|| format!("{RANK_ENV}={rank_text} is not a rank"))?;
        let store =
            std::env::var(STORE_ENV).with_context(|| format!("{WORLD_SIZE_ENV} is set but {STORE_ENV} is not"))?;
        let (host, port) = store
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .with_context(|| format!("{STORE_ENV}={store} is not host:port"))?;
        let timeout = match std::env::var(TIMEOUT_ENV) {
            Ok(text) => Duration::from_secs_f64(
                text.parse().with_context(|| format!("{TIMEOUT_ENV}={text} is not a number of seconds"))?,
            ),
            Err(_) => DEFAULT_TIMEOUT,
        };
        ProcessGroup::new(host, port, rank, world_size, timeout).map(Some)
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Sums `tensors` across ranks in place (all issued at once, then awaited). Each must be
    /// contiguous, and every rank must pass the same shapes in the same order.
    pub fn all_reduce_sum(&self, tensors: &mut [&mut Tensor]) -> Result<()> {
        let mut ptrs: Vec<*mut c_void> = tensors.iter_mut().map(|t| t.as_mut_ptr() as *mut c_void).collect();
        // SAFETY: each pointer is a live at::Tensor owned by the caller for this call.
        let err = unsafe { dfl_c10d_all_reduce_sum(self.handle, ptrs.as_mut_ptr(), ptrs.len() as c_int) };
        check(err, &format!("rank {}: all-reduce failed (a peer died or timed out)", self.rank))
    }

    /// Copies rank `root`'s `tensor` into every rank's.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        // SAFETY: as in all_reduce_sum.
        let err = unsafe { dfl_c10d_broadcast(self.handle, tensor.as_mut_ptr() as *mut c_void, root as c_int) };
        check(err, &format!("rank {}: broadcast from rank {root} failed", self.rank))
    }

    pub fn barrier(&self) -> Result<()> {
        // SAFETY: the handle is live until drop.
        let err = unsafe { dfl_c10d_barrier(self.handle) };
        check(err, &format!("rank {}: barrier failed (a peer died or timed out)", self.rank))
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by dfl_c10d_new, freed once.
        unsafe { dfl_c10d_free(self.handle) }
    }
}

/// The `[start, end)` share of `count` items that `rank` of `world_size` takes: contiguous
/// blocks, the first `count % world_size` ranks one longer.
pub fn share(count: usize, rank: usize, world_size: usize) -> (usize, usize) {
    let base = count / world_size;
    let extra = count % world_size;
    let start = rank * base + rank.min(extra);
    (start, start + base + usize::from(rank < extra))
}
