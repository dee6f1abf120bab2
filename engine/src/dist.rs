//! Data parallelism over libtorch's c10d (the library PyTorch's DDP uses): the ranks of one
//! stage rendezvous through a `TCPStore` hosted by rank 0 and all-reduce through a Gloo
//! process group on CPU, an NCCL one on CUDA. The C++ side is `csrc/c10d_shim.cpp` (Gloo,
//! and the collectives of both) and `csrc/c10d_nccl.cpp` (a shared library loaded only for
//! CUDA stages, so CPU runs never load the CUDA libraries); this module gives them a safe face.
//!
//! A worker learns its place from the environment the orchestrator sets: `DIFFLOW_RANK`,
//! `DIFFLOW_WORLD_SIZE`, `DIFFLOW_LOCAL_RANK` and `DIFFLOW_STORE` (`host:port` of rank 0's
//! store). Under `srun` the batch script sets `DIFFLOW_STORE` and the rank and world size
//! come from Slurm's `SLURM_PROCID`, `SLURM_NTASKS` and `SLURM_LOCALID`.

use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tch::{Device, Tensor};

pub const RANK_ENV: &str = "DIFFLOW_RANK";
pub const WORLD_SIZE_ENV: &str = "DIFFLOW_WORLD_SIZE";
pub const STORE_ENV: &str = "DIFFLOW_STORE";
/// The rank among those on this node: it picks the rank's GPU.
pub const LOCAL_RANK_ENV: &str = "DIFFLOW_LOCAL_RANK";
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

/// `dfl_c10d_new_nccl` in the NCCL shim: `dfl_c10d_new` plus the rank's CUDA device.
type NewNccl = unsafe extern "C" fn(*const c_char, c_int, c_int, c_int, c_long, c_int, *mut *mut c_void) -> *mut c_char;

/// Where build.rs put the NCCL shim; empty when libtorch has no CUDA or NCCL was not found.
const NCCL_SHIM: &str = env!("DIFFLOW_NCCL_SHIM");
/// The NCCL shim's file name, wherever it lies.
pub const NCCL_SHIM_FILE: &str = "libdifflow_nccl.so";

/// Which communication library a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    /// NCCL on this CUDA device.
    Nccl(usize),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Gloo => write!(f, "Gloo"),
            Backend::Nccl(index) => write!(f, "NCCL (cuda:{index})"),
        }
    }
}

impl Backend {
    /// NCCL for a CUDA device, Gloo otherwise.
    pub fn for_device(device: Device) -> Backend {
        match device {
            Device::Cuda(index) => Backend::Nccl(index),
            _ => Backend::Gloo,
        }
    }
}

/// Whether this worker was built with the NCCL shim (libtorch with CUDA and NCCL headers).
pub fn nccl_built() -> bool {
    !NCCL_SHIM.is_empty()
}

/// Where the worker looks for the NCCL shim, in order: beside the executable, in a `lib/`
/// folder beside it or beside its folder (a packed kit's `bin/` and `lib/`), then where
/// build.rs put it. A kit carried to another machine has only the first ones.
pub fn nccl_shim_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        candidates.push(dir.join(NCCL_SHIM_FILE));
        candidates.push(dir.join("lib").join(NCCL_SHIM_FILE));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("lib").join(NCCL_SHIM_FILE));
        }
    }
    if nccl_built() {
        candidates.push(PathBuf::from(NCCL_SHIM));
    }
    candidates.dedup();
    candidates
}

/// Loads the first of `candidates` that exists and loads; the error names every path
/// tried and why each failed.
pub fn load_nccl_shim(candidates: &[PathBuf]) -> Result<(libloading::Library, PathBuf)> {
    let mut tried = Vec::new();
    for path in candidates {
        if !path.is_file() {
            tried.push(format!("{} (not found)", path.display()));
            continue;
        }
        // SAFETY: the shim's initialisers are libtorch's own static registrations.
        match unsafe { libloading::Library::new(path) } {
            Ok(library) => return Ok((library, path.clone())),
            Err(e) => tried.push(format!("{} (does not load: {e})", path.display())),
        }
    }
    bail!("cannot load the NCCL shim {NCCL_SHIM_FILE}; tried {}", tried.join(", "))
}

/// The NCCL shim, loaded on first use and kept for the process's life, with its path.
fn nccl_shim() -> Result<&'static (libloading::Library, PathBuf)> {
    static LIBRARY: std::sync::OnceLock<std::result::Result<(libloading::Library, PathBuf), String>> =
        std::sync::OnceLock::new();
    if !nccl_built() {
        bail!("this difflow-worker was built without NCCL (libtorch without CUDA, or no nccl.h): data-parallel CUDA stages need it");
    }
    let loaded = LIBRARY.get_or_init(|| load_nccl_shim(&nccl_shim_candidates()).map_err(|e| format!("{e:#}")));
    loaded.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Where the NCCL shim this worker uses lies (loading it, and libtorch_cuda with it).
pub fn nccl_shim_path() -> Result<PathBuf> {
    Ok(nccl_shim()?.1.clone())
}

/// The NCCL shim's constructor.
fn nccl_constructor() -> Result<NewNccl> {
    let (library, path) = nccl_shim()?;
    // SAFETY: the symbol has the NewNccl signature (csrc/c10d_nccl.cpp).
    let symbol = unsafe { library.get::<NewNccl>(b"dfl_c10d_new_nccl\0") }
        .with_context(|| format!("the NCCL shim {} lacks dfl_c10d_new_nccl", path.display()))?;
    Ok(*symbol)
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
    /// Joins (rank 0: hosts) the store at `host:port` and builds a Gloo group.
    pub fn new(host: &str, port: u16, rank: usize, world_size: usize, timeout: Duration) -> Result<ProcessGroup> {
        ProcessGroup::with_backend(host, port, rank, world_size, timeout, Backend::Gloo)
    }

    /// Joins (rank 0: hosts) the store at `host:port` and builds a group on `backend`.
    pub fn with_backend(
        host: &str,
        port: u16,
        rank: usize,
        world_size: usize,
        timeout: Duration,
        backend: Backend,
    ) -> Result<ProcessGroup> {
        if world_size == 0 || rank >= world_size {
            bail!("rank {rank} is not in a world of {world_size} processes");
        }
        let c_host = CString::new(host).context("the store host contains a NUL byte")?;
        let mut handle = std::ptr::null_mut();
        let timeout_ms = timeout.as_millis().min(c_long::MAX as u128) as c_long;
        let (port, rank_c, world_c) = (port as c_int, rank as c_int, world_size as c_int);
        let what = format!("rank {rank} of {world_size} cannot join the {backend} process group at {host}:{port}");
        // SAFETY: the shims only read the host string and write `handle` on success.
        let err = match backend {
            Backend::Gloo => unsafe { dfl_c10d_new(c_host.as_ptr(), port, rank_c, world_c, timeout_ms, &mut handle) },
            Backend::Nccl(cuda) => {
                let new_nccl = nccl_constructor()?;
                // Loading the shim loaded libtorch_cuda, so libtorch counts the GPUs now.
                let gpus = tch::Cuda::device_count().max(0) as usize;
                if cuda >= gpus {
                    bail!("{what}: no CUDA device cuda:{cuda} (libtorch sees {gpus} CUDA device(s)); NCCL needs a GPU");
                }
                unsafe { new_nccl(c_host.as_ptr(), port, rank_c, world_c, timeout_ms, cuda as c_int, &mut handle) }
            }
        };
        check(err, &what)?;
        Ok(ProcessGroup { handle, rank, world_size })
    }

    /// The group this worker belongs to (see the module's text), with the device this rank
    /// works on: on CUDA each rank takes the GPU of its local rank and talks through NCCL.
    /// `None` and `device` itself when the worker runs alone.
    pub fn from_env(device: Device) -> Result<(Option<ProcessGroup>, Device)> {
        let Some(place) = Place::from_env()? else { return Ok((None, device)) };
        let device = match device {
            Device::Cuda(_) => {
                let count = tch::Cuda::device_count().max(1) as usize;
                Device::Cuda(place.local_rank % count)
            }
            other => other,
        };
        crate::device::note_used(device);
        let store =
            std::env::var(STORE_ENV).with_context(|| format!("{} is set but {STORE_ENV} is not", place.source))?;
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
        let backend = Backend::for_device(device);
        let group = ProcessGroup::with_backend(host, port, place.rank, place.world_size, timeout, backend)?;
        Ok((Some(group), device))
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

/// `grads` (one per parameter, undefined where none flowed) flattened, zeros for the
/// undefined ones.
pub fn flat_gradient_parts(grads: &[Tensor], params: &[Tensor]) -> Vec<Tensor> {
    grads
        .iter()
        .zip(params)
        .map(|(g, p)| if g.defined() { g.reshape([-1]) } else { p.zeros_like().reshape([-1]) })
        .collect()
}

/// Every rank's copy (on the CPU) of the whole `total`-long axis `dim`, each rank having
/// computed its rows from `start` on: a sum of zero-padded copies, exact since x + 0 = x.
pub fn gather_rows(group: &ProcessGroup, mine: &Tensor, start: usize, total: usize, dim: i64) -> Result<Tensor> {
    let mut shape = mine.size();
    shape[dim as usize] = total as i64;
    // On the rank's device: NCCL reduces CUDA tensors only.
    let mut whole = Tensor::zeros(shape.as_slice(), (mine.kind(), mine.device()));
    whole.narrow(dim, start as i64, mine.size()[dim as usize]).copy_(mine);
    group.all_reduce_sum(&mut [&mut whole])?;
    Ok(whole.to_device(Device::Cpu))
}

/// A rank's place in its world, from difflow's variables or else Slurm's (`srun`).
#[derive(Debug, PartialEq)]
struct Place {
    rank: usize,
    world_size: usize,
    local_rank: usize,
    /// The variable the world size came from, for error messages.
    source: &'static str,
}

impl Place {
    fn from_env() -> Result<Option<Place>> {
        Place::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Place>> {
        // srun starts the ranks only when the batch script names a store.
        let names = if var(WORLD_SIZE_ENV).is_some() {
            [WORLD_SIZE_ENV, RANK_ENV, LOCAL_RANK_ENV]
        } else if var(STORE_ENV).is_some() && var("SLURM_NTASKS").is_some() {
            ["SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"]
        } else {
            return Ok(None);
        };
        let [world_name, rank_name, local_name] = names;
        let number = |name: &str| -> Result<Option<usize>> {
            var(name)
                .map(|text| text.trim().parse().with_context(|| format!("{name}={text} is not a count")))
                .transpose()
        };
        let world_size = number(world_name)?.expect("checked above");
        if world_size <= 1 {
            return Ok(None);
        }
        let rank = number(rank_name)?.with_context(|| format!("{world_name} is set but {rank_name} is not"))?;
        if rank >= world_size {
            bail!("{rank_name}={rank} is not a rank of a world of {world_size} ({world_name})");
        }
        let local_rank = number(local_name)?.unwrap_or(rank);
        Ok(Some(Place { rank, world_size, local_rank, source: world_name }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn place(vars: &[(&str, &str)]) -> Result<Option<Place>> {
        Place::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_nccl_shim_lookup_names_every_path_it_tried() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("bin").join(NCCL_SHIM_FILE);
        let broken = dir.path().join("lib").join(NCCL_SHIM_FILE);
        std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
        std::fs::write(&broken, "not a shared library").unwrap();
        let err = match load_nccl_shim(&[missing.clone(), broken.clone()]) {
            Ok(_) => panic!("a text file loaded as the NCCL shim"),
            Err(err) => err.to_string(),
        };
        let expected = format!(
            "cannot load the NCCL shim libdifflow_nccl.so; tried {} (not found), {} (does not load: ",
            missing.display(),
            broken.display()
        );
        assert!(err.starts_with(&expected), "{err}");
        // Beside the executable first, the build's own copy last.
        let candidates = nccl_shim_candidates();
        let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
        assert_eq!(candidates[0], exe_dir.join(NCCL_SHIM_FILE));
        assert_eq!(candidates[1], exe_dir.join("lib").join(NCCL_SHIM_FILE));
        if nccl_built() {
            assert_eq!(candidates.last().unwrap(), Path::new(NCCL_SHIM));
        }
    }

    #[test]
    fn a_place_comes_from_difflows_variables_else_from_srun_with_a_store() {
        assert_eq!(place(&[]).unwrap(), None);
        assert_eq!(place(&[("DIFFLOW_WORLD_SIZE", "1"), ("DIFFLOW_RANK", "0")]).unwrap(), None);
        let local = place(&[("DIFFLOW_WORLD_SIZE", "4"), ("DIFFLOW_RANK", "3")]).unwrap().unwrap();
        assert_eq!((local.rank, local.world_size, local.local_rank), (3, 4, 3));
        // A Slurm job step without a store is not a data-parallel stage.
        assert_eq!(place(&[("SLURM_NTASKS", "2"), ("SLURM_PROCID", "1")]).unwrap(), None);
        let slurm = [("SLURM_NTASKS", "4"), ("SLURM_PROCID", "3"), ("SLURM_LOCALID", "1"), ("DIFFLOW_STORE", "n1:5")];
        let srun = place(&slurm).unwrap().unwrap();
        assert_eq!((srun.rank, srun.world_size, srun.local_rank), (3, 4, 1));
        let bad = place(&[("DIFFLOW_WORLD_SIZE", "2"), ("DIFFLOW_RANK", "2")]).unwrap_err();
        assert_eq!(bad.to_string(), "DIFFLOW_RANK=2 is not a rank of a world of 2 (DIFFLOW_WORLD_SIZE)");
        let missing = place(&[("DIFFLOW_WORLD_SIZE", "2")]).unwrap_err();
        assert_eq!(missing.to_string(), "DIFFLOW_WORLD_SIZE is set but DIFFLOW_RANK is not");
    }
}
