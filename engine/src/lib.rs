//! difflow's diffusion engine on libtorch: data, models, objectives, samplers, guidance,
//! metrics and plots, and the stages that glue them to a job file (`difflow_core::job::Job`).
//! The worker binary (`difflow-worker`) runs exactly one stage, or the speed benchmark
//! (`bench`) and device checks (`check`) of the GPU kit.

pub mod artifacts;
pub mod bench;
pub mod data;
pub mod device;
pub mod diffusion;
pub mod dist;
pub mod interrupt;
pub mod kit_check;
pub mod kit_nccl;
pub mod lanes;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod oom;
pub mod params;
pub mod pickle;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod stages;
pub mod tblog;
pub mod training;

/// The libtorch this worker was built against (read from its folder at build time).
pub const TORCH_VERSION: &str = env!("DIFFLOW_TORCH_VERSION");
