//! Batch lanes: a network evaluation (or a training step's forward and backward) on the CPU
//! split along the batch into one single-threaded share per intra-op thread, the shares run
//! side by side. ATen parallelises each operator over its threads; for the small images of
//! these nets an operator lasts tens of microseconds, and the team synchronisation at every
//! one of them, and both threads streaming the same tensors, cost more than the split into
//! whole per-thread networks does. Every sample's result depends on its own share only, so
//! the union equals one whole-batch evaluation up to the order of floating-point sums.
//!
//! `DIFFLOW_LANES=1` (read once) turns the split off; a number caps the lane count. Lanes
//! run where the work splits along the batch with nothing drawn at random inside: sampling's
//! network evaluations, and training steps of networks without dropout.

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tch::{Device, Tensor};

use crate::dist::share;
use crate::models::fused;

/// How a batch is split on one device.
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    count: usize,
}

/// What a lane thread must share with its caller: libtorch's grad mode and the fused
/// kernels' switch are per thread.
#[derive(Clone, Copy)]
struct Context {
    grad: bool,
    fused: bool,
}

impl Context {
    fn capture() -> Context {
        Context { grad: fused::grad_enabled(), fused: fused::enabled() }
    }

    fn enter<R>(self, body: impl FnOnce() -> R) -> R {
        let _guard = (!self.grad).then(tch::no_grad_guard);
        fused::with_fused(self.fused, body)
    }
}

impl Lanes {
    /// One lane per intra-op thread on the CPU (capped by `DIFFLOW_LANES`); one elsewhere.
    pub fn for_device(device: Device) -> Lanes {
        if device != Device::Cpu || thread_controls().is_none() {
            return Lanes { count: 1 };
        }
        let threads = tch::get_num_threads().max(1) as usize;
        Lanes { count: threads.min(cap()) }
    }

    /// A single lane: the whole batch on the calling thread.
    pub fn one() -> Lanes {
        Lanes { count: 1 }
    }

    /// `count` lanes whatever the thread count (tests compare lane counts).
    pub fn with_count(count: usize) -> Lanes {
        Lanes { count: count.max(1) }
    }

    /// The lanes a batch of `batch` items runs as: (start, length) of each share.
    pub fn shares(&self, batch: i64) -> Vec<(i64, i64)> {
        let lanes = self.count.min(batch.max(1) as usize);
        (0..lanes)
            .map(|lane| {
                let (start, end) = share(batch as usize, lane, lanes);
                (start as i64, (end - start) as i64)
            })
            .collect()
    }

    /// While the returned guard lives, the calling thread's own operators (between lane runs:
    /// a sampler's update, an optimizer step) run single-threaded too. Otherwise OpenMP's
    /// threads, after each parallel operator, spin waiting for more work on the cores that
    /// the lanes need next. Does nothing with one lane.
    pub fn serial_caller(&self) -> SerialCaller {
        SerialCaller { restore: (self.count > 1).then(one_thread).flatten() }
    }

    /// Whether a batch like `x` (items along the first axis) is split at all.
    pub fn is_split(&self, x: &Tensor) -> bool {
        self.count > 1 && x.dim() > 0 && x.size()[0] > 1
    }

    /// `work(start, length)` for each share of a batch of `batch`, the first on this thread
    /// and the others on their own threads, each with one intra-op thread; results in
    /// batch order.
    ///
    /// # Safety
    /// `work` runs on several threads at once. It may read the libtorch tensors it captures
    /// (weights, inputs: libtorch reads are thread-safe; tch marks tensors `Send` but not
    /// `Sync` only because a handle can be mutated in place) and must not mutate anything it
    /// captures except its own share's rows (disjoint memory), nor draw from libtorch's
    /// global generator (the draws' order would vary).
    pub unsafe fn run<T: Send>(&self, batch: i64, work: impl Fn(i64, i64) -> T) -> Vec<T> {
        let shares = self.shares(batch);
        if shares.len() == 1 {
            return vec![work(0, batch)];
        }
        let work = AssertSync(&work);
        let context = Context::capture();
        let mut results: Vec<Option<T>> = shares.iter().map(|_| None).collect();
        let (first, others) = results.split_at_mut(1);
        pool(shares.len() - 1).in_place_scope(|scope| {
            for (slot, &(start, length)) in others.iter_mut().zip(&shares[1..]) {
                let work = &work;
                scope.spawn(move |_| *slot = Some(context.enter(|| with_one_thread(|| (work.0)(start, length)))));
            }
            let (start, length) = shares[0];
            first[0] = Some(with_one_thread(|| (work.0)(start, length)));
        });
        results.into_iter().map(|r| r.expect("every lane ran")).collect()
    }
}

/// The long-lived threads that run lanes after the first (the caller runs that one): a
/// thread per call would start cold every network evaluation (fresh stacks, caches and
/// allocator arenas).
fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
    static POOLS: Mutex<Vec<Arc<rayon::ThreadPool>>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(pool) = pools.iter().find(|p| p.current_num_threads() == threads) {
        return pool.clone();
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("difflow-lane-{}", i + 1))
        .build()
        .map(Arc::new)
        .unwrap_or_else(|e| panic!("cannot start the batch lanes' threads: {e}"));
    pools.push(pool.clone());
    pool
}

/// Shares a reference with the lane threads; see [`Lanes::run`]'s safety contract.
struct AssertSync<T>(T);
unsafe impl<T> Sync for AssertSync<T> {}

/// The benchmark's switch (0: none): it times one lane against several in one process.
static BENCH_CAP: AtomicUsize = AtomicUsize::new(0);

/// Caps the lane count of every later [`Lanes::for_device`] (0 lifts the cap).
pub fn set_cap(count: usize) {
    BENCH_CAP.store(count, Ordering::Relaxed);
}

fn cap() -> usize {
    static FROM_ENV: OnceLock<usize> = OnceLock::new();
    let from_env = *FROM_ENV.get_or_init(|| {
        std::env::var("DIFFLOW_LANES").ok().and_then(|v| v.trim().parse().ok()).filter(|&n| n > 0).unwrap_or(usize::MAX)
    });
    match BENCH_CAP.load(Ordering::Relaxed) {
        0 => from_env,
        set => set,
    }
}

/// The per-thread team sizes of the two thread pools libtorch's CPU kernels use: OpenMP's
/// (ATen and oneDNN) and MKL's (matrix products), from the libraries libtorch loaded. ATen's
/// `set_num_threads` would also change the process-wide default and clear oneDNN's caches.
#[derive(Clone, Copy)]
struct ThreadControls {
    omp_set: unsafe extern "C" fn(c_int),
    omp_get: unsafe extern "C" fn() -> c_int,
    /// `MKL_Set_Num_Threads_Local` (by value; the lower-case name is the Fortran one): sets this thread's MKL team size (0: the global one) and
    /// returns the previous local value.
    mkl_set_local: Option<unsafe extern "C" fn(c_int) -> c_int>,
}

fn thread_controls() -> Option<ThreadControls> {
    static CONTROLS: OnceLock<Option<ThreadControls>> = OnceLock::new();
    *CONTROLS.get_or_init(|| {
        // SAFETY: dlsym only looks the names up.
        let lookup = |name: &CStr| unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        let (set, get, mkl) =
            (lookup(c"omp_set_num_threads"), lookup(c"omp_get_max_threads"), lookup(c"MKL_Set_Num_Threads_Local"));
        if set.is_null() || get.is_null() {
            return None;
        }
        // SAFETY: the addresses are the C functions of those names, with these signatures.
        unsafe {
            Some(ThreadControls {
                omp_set: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int)>(set),
                omp_get: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(get),
                mkl_set_local: (!mkl.is_null())
                    .then(|| std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int) -> c_int>(mkl)),
            })
        }
    })
}

/// See [`Lanes::serial_caller`].
pub struct SerialCaller {
    restore: Option<TeamSizes>,
}

impl Drop for SerialCaller {
    fn drop(&mut self) {
        if let Some(sizes) = self.restore.take() {
            sizes.restore();
        }
    }
}

/// A thread's team sizes before [`one_thread`] changed them.
struct TeamSizes {
    omp: c_int,
    mkl: Option<c_int>,
}

impl TeamSizes {
    fn restore(self) {
        let Some(c) = thread_controls() else { return };
        // SAFETY: plain setters of the calling thread's team sizes.
        unsafe {
            (c.omp_set)(self.omp);
            if let (Some(set), Some(before)) = (c.mkl_set_local, self.mkl) {
                set(before);
            }
        }
    }
}

/// Makes this thread's operators single-threaded; returns the team sizes before. ATen's lazy
/// per-thread set-up runs first: at a thread's first operator it would reset them.
fn one_thread() -> Option<TeamSizes> {
    let c = thread_controls()?;
    tch::get_num_threads();
    // SAFETY: plain setters and getters of the calling thread's team sizes.
    unsafe {
        let before = TeamSizes { omp: (c.omp_get)(), mkl: c.mkl_set_local.map(|set| set(1)) };
        (c.omp_set)(1);
        Some(before)
    }
}

/// Runs `body` with this thread's operators single-threaded, then restores its team sizes.
fn with_one_thread<R>(body: impl FnOnce() -> R) -> R {
    let before = one_thread();
    let result = body();
    if let Some(sizes) = before {
        sizes.restore();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{random_dataset, schedule, settings, Options};
    use crate::diffusion::{DataSpace, Process, VarianceType};
    use crate::models::evaluate;
    use crate::training::{NoisyBatch, Trainer};
    use tch::{Kind, Tensor};

    fn bench_options(batch: usize) -> Options {
        let model = r#"{"in_ch": 1, "size": 8, "channels": 16, "mults": [1, 2], "res_blocks": 1, "attention": [4], "dropout": 0.0, "classes": 3}"#;
        let args = ["--model", model, "--device", "cpu", "--threads", "2", "--batch", &batch.to_string()];
        Options::parse(&args.map(String::from)).unwrap()
    }

    /// A trainer whose network has random weights everywhere (the UNet's output layers start
    /// at zero, which would make every comparison trivially equal).
    fn trainer(o: &Options) -> Trainer {
        let data = random_dataset(o, 16).unwrap();
        let trainer = Trainer::new(&o.model, &data.meta, Device::Cpu).unwrap();
        tch::manual_seed(0);
        tch::no_grad(|| {
            for (_, mut v) in trainer.vs.variables() {
                let _ = v.g_add_(&(v.randn_like() * 0.1));
            }
        });
        trainer
    }

    fn relative_difference(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
    }

    /// Two lanes give what one whole-batch evaluation gives, item by item, with and without
    /// autograd recording (the fused kernel runs only without).
    #[test]
    fn two_lanes_evaluate_like_one() {
        let o = bench_options(5);
        let trainer = trainer(&o);
        tch::manual_seed(1);
        let x = Tensor::randn([5, 1, 8, 8], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 10, 500, 900, 999]);
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 1]);
        for grad in [false, true] {
            let run = |lanes: &Lanes| {
                let _guard = (!grad).then(tch::no_grad_guard);
                evaluate(trainer.model.as_ref(), lanes, &x, &t, Some(&y)).detach()
            };
            let (one, two) = (run(&Lanes::one()), run(&Lanes::with_count(2)));
            assert_eq!(two.size(), vec![5, 1, 8, 8]);
            assert!(relative_difference(&two, &one) < 1e-6, "grad {grad}: {}", relative_difference(&two, &one));
        }
    }

    /// A training step's loss and gradient from two lanes (added in lane order) equal the
    /// whole batch's up to the order of the sums, and are the same on every run.
    #[test]
    fn two_lanes_give_the_whole_batch_gradient() {
        let o = bench_options(6);
        let spec = o.model_spec().unwrap();
        let trainer = trainer(&o);
        let s = settings(&o, spec.classes);
        let process =
            Process::new(schedule().tables(), spec, VarianceType::FixedSmall, DataSpace::images(), Device::Cpu);
        tch::manual_seed(2);
        let x0 = Tensor::randn([6, 1, 8, 8], (Kind::Float, Device::Cpu));
        let noise = Tensor::randn([6, 1, 8, 8], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[3i64, 100, 250, 600, 800, 990]);
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
        let xt = process.q_sample(&x0, &t, &noise);
        let batch = NoisyBatch { xt: &xt, x0: &x0, t: &t, noise: &noise, y: Some(&y), weight: None, target: None };
        let gradient = |lanes: &Lanes| trainer.gradient(lanes, &s, &process, &batch).unwrap();
        let (g1, loss1) = gradient(&Lanes::one());
        let (g2, loss2) = gradient(&Lanes::with_count(2));
        let (g3, _) = gradient(&Lanes::with_count(2));
        assert!(relative_difference(&g2, &g1) < 1e-5, "gradient: {}", relative_difference(&g2, &g1));
        assert!((loss2.double_value(&[]) - loss1.double_value(&[])).abs() < 1e-6 * loss1.double_value(&[]).abs());
        assert!(g1.abs().sum(Kind::Double).double_value(&[]) > 0.0);
        assert!(g2.equal(&g3), "two-lane gradients differ between runs");
    }

    #[test]
    fn shares_cover_the_batch_in_order() {
        let lanes = Lanes { count: 3 };
        assert_eq!(lanes.shares(8), vec![(0, 3), (3, 3), (6, 2)]);
        assert_eq!(lanes.shares(2), vec![(0, 1), (1, 1)]);
        assert_eq!(Lanes::one().shares(5), vec![(0, 5)]);
    }
}
