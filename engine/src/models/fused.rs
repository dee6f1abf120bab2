//! GroupNorm with the residual blocks' embedding (added, or as scale and shift) and SiLU in
//! one pass for inference on the CPU (csrc/fused.cpp), and today's ATen composition for
//! everything else: training, autograd, other devices and types. Both paths compute the
//! same function; `DIFFLOW_FUSED=0` (read once) or [`with_fused`] picks ATen's.

use std::cell::Cell;
use std::ffi::{c_char, c_int, CStr};
use std::ptr::null;
use std::sync::OnceLock;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn dfl_fused_free_error(message: *mut c_char);
    fn dfl_fused_grad_enabled() -> c_int;
}

/// Declares csrc/fused.cpp's kernel entry points, one per build of the kernel.
macro_rules! group_norm_silu_entries {
    ($($name:ident),*) => {
        extern "C" {
            $(fn $name(
                x: *const C_tensor,
                groups: i64,
                eps: f64,
                gamma: *const C_tensor,
                beta: *const C_tensor,
                add: *const C_tensor,
                scale: *const C_tensor,
                shift: *const C_tensor,
                silu: c_int,
                out: *mut *mut C_tensor,
            ) -> *mut c_char;)*
        }
    };
}

group_norm_silu_entries!(dfl_group_norm_silu);
#[cfg(fused_avx2_copy)]
group_norm_silu_entries!(dfl_group_norm_silu_avx2);

/// The kernels' signature.
type GroupNormSilu = unsafe extern "C" fn(
    *const C_tensor,
    i64,
    f64,
    *const C_tensor,
    *const C_tensor,
    *const C_tensor,
    *const C_tensor,
    *const C_tensor,
    c_int,
    *mut *mut C_tensor,
) -> *mut c_char;

/// The kernel built for this CPU: the AVX2 copy where the CPU has AVX2, FMA and F16C (and
/// the build made one), else the portable build.
fn group_norm_silu_kernel() -> GroupNormSilu {
    #[cfg(fused_avx2_copy)]
    {
        static AVX2: OnceLock<bool> = OnceLock::new();
        let avx2 = *AVX2.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        });
        if avx2 {
            return dfl_group_norm_silu_avx2;
        }
    }
    dfl_group_norm_silu
}

thread_local! {
    static OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Runs `body` with the fused kernels switched on or off on this thread (tests and
/// benchmarks compare the two paths in one process).
pub fn with_fused<R>(on: bool, body: impl FnOnce() -> R) -> R {
    let before = OVERRIDE.with(|o| o.replace(Some(on)));
    let result = body();
    OVERRIDE.with(|o| o.set(before));
    result
}

/// Whether the fused kernels may run: not switched off. They run on every CPU the worker
/// runs on (the AVX2 copy only where the CPU has it: `group_norm_silu_kernel`).
pub fn enabled() -> bool {
    static FROM_ENV: OnceLock<bool> = OnceLock::new();
    OVERRIDE
        .with(Cell::get)
        .unwrap_or_else(|| *FROM_ENV.get_or_init(|| std::env::var("DIFFLOW_FUSED").map_or(true, |v| v.trim() != "0")))
}

/// Whether libtorch records autograd on this thread (tch can set the mode but not read it).
pub fn grad_enabled() -> bool {
    // SAFETY: a plain query of the calling thread's autograd state.
    unsafe { dfl_fused_grad_enabled() != 0 }
}

/// What joins the activation in a residual block's second norm.
#[derive(Clone, Copy)]
pub enum Embedding<'a> {
    None,
    /// Added before the norm: `GN(x + e)`, e [B, C, 1, 1].
    Add(&'a Tensor),
    /// IDDPM's scale-shift norm: `GN(x)·(1 + scale) + shift`, both [B, C, 1, 1].
    ScaleShift(&'a Tensor, &'a Tensor),
}

impl<'a> Embedding<'a> {
    /// The kernel's optional inputs: (add, scale, shift).
    fn inputs(self) -> [Option<&'a Tensor>; 3] {
        match self {
            Embedding::None => [None, None, None],
            Embedding::Add(e) => [Some(e), None, None],
            Embedding::ScaleShift(scale, shift) => [None, Some(scale), Some(shift)],
        }
    }
}

/// An affine GroupNorm (parameters `weight` and `bias`, as `nn::GroupNorm`) that knows
/// its ε, so that the fused kernel can take its place.
#[derive(Debug)]
pub struct Norm {
    inner: nn::GroupNorm,
    eps: f64,
}

impl Norm {
    pub fn new(vs: nn::Path, groups: i64, channels: i64, eps: f64) -> Norm {
        let config = nn::GroupNormConfig { eps, ..Default::default() };
        Norm { inner: nn::group_norm(vs, groups, channels, config), eps }
    }

    /// `GN(x)`, then SiLU when `silu`.
    pub fn forward(&self, x: &Tensor, silu: bool, train: bool) -> Tensor {
        self.forward_with(x, Embedding::None, silu, train)
    }

    /// `GN(x)` with the embedding joined as `emb` says, then SiLU when `silu`.
    pub fn forward_with(&self, x: &Tensor, emb: Embedding, silu: bool, train: bool) -> Tensor {
        if !train && self.fusable(x, emb) {
            return self.fused(x, emb, silu);
        }
        let h = match emb {
            Embedding::None => self.inner.forward(x),
            Embedding::Add(e) => self.inner.forward(&(x + e)),
            Embedding::ScaleShift(scale, shift) => self.inner.forward(x) * (scale + 1.0) + shift,
        };
        if silu {
            h.silu()
        } else {
            h
        }
    }

    /// Float32 CPU tensors in a layout the kernel reads, and no autograd to record.
    fn fusable(&self, x: &Tensor, emb: Embedding) -> bool {
        let (Some(gamma), Some(beta)) = (&self.inner.ws, &self.inner.bs) else { return false };
        let extra = emb.inputs();
        let all = || [x, gamma, beta].into_iter().chain(extra.into_iter().flatten());
        if !enabled() || !all().all(|t| t.device() == Device::Cpu && t.kind() == Kind::Float) {
            return false;
        }
        let recording = grad_enabled() && all().any(Tensor::requires_grad);
        let per_sample = x.size().iter().take(2).product::<i64>();
        !recording
            && x.dim() >= 2
            && x.is_contiguous()
            && extra.into_iter().flatten().all(|t| t.numel() as i64 == per_sample)
    }

    fn fused(&self, x: &Tensor, emb: Embedding, silu: bool) -> Tensor {
        let (gamma, beta) = (self.inner.ws.as_ref().expect("affine"), self.inner.bs.as_ref().expect("affine"));
        let [add, scale, shift] = emb.inputs().map(|t| t.map_or(null(), Tensor::as_ptr));
        let mut out: *mut C_tensor = std::ptr::null_mut();
        // SAFETY: every pointer is a live `at::Tensor*` borrowed for the call (or null where
        // the kernel takes none); on success `out` is a new tensor we own.
        let error = unsafe {
            group_norm_silu_kernel()(
                x.as_ptr(),
                self.inner.num_groups,
                self.eps,
                gamma.as_ptr(),
                beta.as_ptr(),
                add,
                scale,
                shift,
                silu as c_int,
                &mut out,
            )
        };
        if !error.is_null() {
            // SAFETY: a NUL-terminated message from the kernel, freed by its own allocator.
            let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
            unsafe { dfl_fused_free_error(error) };
            panic!("fused GroupNorm failed: {message}");
        }
        // SAFETY: the kernel returned a heap `at::Tensor*` that nothing else owns.
        unsafe { Tensor::from_ptr(out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A norm with random (non-trivial) affine parameters.
    fn norm(groups: i64, channels: i64, seed: i64) -> (nn::VarStore, Norm) {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let norm = Norm::new(vs.root(), groups, channels, 1e-5);
        tch::no_grad(|| {
            norm.inner
                .ws
                .as_ref()
                .unwrap()
                .shallow_clone()
                .copy_(&(Tensor::randn([channels], tch::kind::FLOAT_CPU) + 1.0));
            norm.inner.bs.as_ref().unwrap().shallow_clone().copy_(&Tensor::randn([channels], tch::kind::FLOAT_CPU));
        });
        (vs, norm)
    }

    fn max_relative(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1.0);
        (a - b).abs().max().double_value(&[]) / scale
    }

    #[test]
    fn fused_norm_matches_atens_composition() {
        // (shape, groups): batch 1, odd spatial sizes, one channel per group, a flat
        // attention input [B, C, L], and activations far from zero mean.
        let cases: [(&[i64], i64); 6] = [
            (&[1, 32, 7, 7], 1),
            (&[2, 32, 7, 7], 8),
            (&[3, 64, 5, 5], 32),
            (&[2, 32, 28, 28], 32),
            (&[4, 64, 49], 8),
            (&[2, 16, 3, 5], 8),
        ];
        for (i, (shape, groups)) in cases.into_iter().enumerate() {
            let (b, c) = (shape[0], shape[1]);
            let (_vs, norm) = norm(groups, c, i as i64);
            let x = Tensor::randn(shape, tch::kind::FLOAT_CPU) * 3.0 + (i as f64) * 2.0;
            // Per-sample tensors shaped to broadcast: [B, C, 1, 1] (or [B, C, 1]).
            let per_sample = |channels: i64| [vec![b, channels], vec![1; shape.len() - 2]].concat();
            let random = |channels: i64| Tensor::randn(per_sample(channels), tch::kind::FLOAT_CPU);
            let (scale, shift, add) = (random(c), random(c), random(c) * 5.0);
            let both = random(2 * c);
            let halves = both.chunk(2, 1); // strided views, as the residual block passes them
            let embeddings = [
                ("none", Embedding::None),
                ("scale-shift", Embedding::ScaleShift(&scale, &shift)),
                ("scale-shift views", Embedding::ScaleShift(&halves[0], &halves[1])),
                ("add", Embedding::Add(&add)),
            ];
            for (name, emb) in embeddings {
                for silu in [false, true] {
                    tch::no_grad(|| {
                        assert!(norm.fusable(&x, emb), "{shape:?} {name}: the fused path should run");
                        let fused = with_fused(true, || norm.forward_with(&x, emb, silu, false));
                        let aten = with_fused(false, || norm.forward_with(&x, emb, silu, false));
                        let error = max_relative(&fused, &aten);
                        assert!(error < 1e-5, "{shape:?} groups {groups} {name} silu {silu}: error {error}");
                    });
                }
            }
        }
    }

    #[test]
    fn training_autograd_and_other_types_take_atens_path() {
        let (_vs, norm) = norm(8, 32, 7);
        let x = Tensor::randn([2, 32, 4, 4], tch::kind::FLOAT_CPU);
        // Parameters require grad: outside no_grad autograd records, so ATen's path runs.
        assert!(!norm.fusable(&x, Embedding::None));
        let grad = norm.forward(&x, true, false).sum(Kind::Float).requires_grad();
        assert!(grad, "the output keeps its autograd graph");
        tch::no_grad(|| {
            assert!(norm.fusable(&x, Embedding::None));
            assert!(!norm.fusable(&x.to_kind(Kind::Double), Embedding::None));
            assert!(!norm.fusable(&x.transpose(2, 3), Embedding::None), "non-contiguous input");
            let wrong = Tensor::zeros([1, 32, 1, 1], tch::kind::FLOAT_CPU);
            assert!(!norm.fusable(&x, Embedding::Add(&wrong)), "a broadcast embedding");
            with_fused(false, || assert!(!norm.fusable(&x, Embedding::None)));
        });
    }

    #[test]
    fn kernel_errors_come_back_as_messages() {
        let (_vs, norm) = norm(8, 32, 3);
        let x = Tensor::randn([2, 32, 4, 4], tch::kind::FLOAT_CPU);
        let wrong = Tensor::zeros([2, 31], tch::kind::FLOAT_CPU);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tch::no_grad(|| norm.fused(&x, Embedding::Add(&wrong), true))
        }));
        let message = caught.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("the added embedding must have 2x32 values"), "{message}");
    }
}
