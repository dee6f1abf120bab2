//! The toy diffusion end to end, in process: gaussians8 → MLP (simple loss) → DDIM and DDPM
//! samples, checked by measured properties of the samples; and per-sample seeding.

mod common;

use std::path::Path;

use common::{input, stage_job};
use difflow_core::job::Job;
use difflow_engine::data::toy::gaussians8_centres;
use difflow_engine::data::Dataset;
use serde_json::{json, Value};

/// libtorch's generator is global and training seeds it at every step, so the tests of this
/// file (threads of one process) take turns to stay deterministic.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn job(kind: &str, variant: &str, params: Value, inputs: &[(&str, &str, &Path)], out: &Path) -> Job {
    let inputs = inputs.iter().map(|(name, kind, dir)| (name.to_string(), input(kind, "", dir)));
    stage_job(&format!("{kind}-{variant}"), (kind, variant), &params, inputs, out)
}

/// Trains the toy model once into `root` (dataset in `root/data`, model in `root/train`).
fn train_toy(root: &Path, steps: usize) {
    let data = root.join("data");
    let train = root.join("train");
    let dataset = json!({"shape": "gaussians8", "count": 4000, "noise": 0.1, "seed": 0});
    difflow_engine::stages::run(&job("dataset", "toy", dataset, &[], &data)).unwrap();
    let params = json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 128, "layers": 3},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 100},
        "loss": "simple", "steps": steps, "batch": 256, "lr": 2e-3, "warmup": 50,
        "grad_clip": 1.0, "ema": 0.995, "seed": 0, "checkpoint_every": 0
    });
    let started = std::time::Instant::now();
    difflow_engine::stages::run(&job("train", "diffusion", params, &[("points", "dataset", &data)], &train)).unwrap();
    println!("trained {steps} steps in {:.1} s", started.elapsed().as_secs_f64());
}

fn sample(root: &Path, name: &str, sampler: Value, count: usize, seed: u64, batch: usize) -> Vec<[f32; 2]> {
    let out = root.join(name);
    let params = json!({"from": {"$stage": "fit"}, "sampler": sampler, "count": count, "seed": seed, "batch": batch});
    let train = root.join("train");
    difflow_engine::stages::run(&job("sample", "default", params, &[("fit", "train", &train)], &out)).unwrap();
    let samples = Dataset::read(&out).unwrap();
    assert_eq!(samples.values.size(), [count as i64, 2]);
    let flat: Vec<f32> = Vec::try_from(samples.values.flatten(0, -1)).unwrap();
    flat.chunks(2).map(|p| [p[0], p[1]]).collect()
}

/// (share of samples per nearest mode, share within `radius` of their nearest mode).
fn mode_statistics(points: &[[f32; 2]], radius: f64) -> ([f64; 8], f64) {
    let centres = gaussians8_centres();
    let mut counts = [0usize; 8];
    let mut near = 0;
    for p in points {
        let (k, d) = centres
            .iter()
            .enumerate()
            .map(|(k, c)| (k, ((p[0] as f64 - c[0]).powi(2) + (p[1] as f64 - c[1]).powi(2)).sqrt()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        counts[k] += 1;
        if d < radius {
            near += 1;
        }
    }
    let n = points.len() as f64;
    (counts.map(|c| c as f64 / n), near as f64 / n)
}

#[test]
fn toy_model_covers_every_mode_and_samples_lie_near_them() {
    let _turn = serial();
    let root = tempfile::tempdir().unwrap();
    train_toy(root.path(), 600);
    let loss_csv = std::fs::read_to_string(root.path().join("train/loss.csv")).unwrap();
    assert_eq!(loss_csv.lines().count(), 601, "a header and one row per step");

    // The data's noise is σ = 0.1: 0.4 is 4σ (99.97 % of the real data lies within it).
    let radius = 0.4;
    for (name, sampler) in [
        ("ddim", json!({"kind": "sampler", "variant": "ddim", "steps": 50, "eta": 0.0})),
        ("ddpm", json!({"kind": "sampler", "variant": "ddpm", "steps": 100, "variance": "fixed_small"})),
        ("dpm_solver", json!({"kind": "sampler", "variant": "dpm_solver", "steps": 20, "order": 2})),
    ] {
        let points = sample(root.path(), name, sampler, 1000, 1, 500);
        let (shares, near) = mode_statistics(&points, radius);
        let shares_pct: Vec<String> = shares.iter().map(|s| format!("{:.1}", 100.0 * s)).collect();
        println!(
            "{name}: {:.1} % within {radius} of a mode; per-mode shares % = [{}]",
            100.0 * near,
            shares_pct.join(", ")
        );
        for (k, share) in shares.iter().enumerate() {
            assert!(*share >= 0.05, "{name}: mode {k} holds only {:.1} % of the samples", 100.0 * share);
        }
        assert!(near >= 0.80, "{name}: only {:.1} % of samples lie within {radius} of a mode", 100.0 * near);
    }
    check_bits_per_dim(root.path());
}

/// The full-bound bits/dim of held-out points under the trained model beats an untrained one,
/// and its parts add up.
fn check_bits_per_dim(root: &Path) {
    use difflow_engine::artifacts::TrainMeta;
    use difflow_engine::diffusion::noise::SampleNoise;
    use difflow_engine::diffusion::vlb::bits_per_dim;
    use difflow_engine::diffusion::{Process, VarianceType};
    use tch::{Device, Kind, Tensor};

    let train = root.join("train");
    let meta = TrainMeta::read(&train).unwrap();
    let data = difflow_engine::data::toy::generate("gaussians8", 200, 0.1, 99).unwrap();
    let x0 = data.values.to_kind(Kind::Float);
    let indices: Vec<u64> = (0..200).collect();
    let process =
        Process::new(meta.schedule.tables(), meta.model_spec, VarianceType::FixedSmall, meta.data_space(), Device::Cpu);
    let bpd = |model: &dyn difflow_engine::models::Denoiser| {
        let net = |x: &Tensor, t: &Tensor, y: Option<&Tensor>| model.forward(x, t, y, false);
        bits_per_dim(&process, &net, &x0, None, &SampleNoise { seed: 5 }, &indices, &mut |_| {}).unwrap()
    };
    let (_vs, trained) = meta.load_model(&train, true, Device::Cpu).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let untrained = difflow_engine::models::build_denoiser(&vs.root(), &meta.model, &meta.data).unwrap();
    let (good, bad) = (bpd(trained.as_ref()), bpd(untrained.as_ref()));
    assert_eq!(good.terms.size(), [200, 100]);
    let parts = good.terms.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) + &good.prior;
    assert!((&parts - &good.total).abs().max().double_value(&[]) < 1e-4);
    let (good, bad) = (good.total.mean(Kind::Float).double_value(&[]), bad.total.mean(Kind::Float).double_value(&[]));
    println!("full-bound bits/dim of held-out points: trained {good:.3}, untrained {bad:.3}");
    assert!(good.is_finite() && good < bad - 0.5, "training should tighten the bound: {good} vs {bad}");
}

#[test]
fn samples_do_not_depend_on_the_sampling_batch_size() {
    let _turn = serial();
    let root = tempfile::tempdir().unwrap();
    train_toy(root.path(), 30);
    // Ancestral sampling draws fresh noise at every step: the strictest case.
    let ddpm = json!({"kind": "sampler", "variant": "ddpm", "steps": 25});
    let small = sample(root.path(), "b7", ddpm.clone(), 50, 3, 7);
    let large = sample(root.path(), "b64", ddpm.clone(), 50, 3, 64);
    let other_seed = sample(root.path(), "s4", ddpm, 50, 4, 64);
    let max_diff = |a: &[[f32; 2]], b: &[[f32; 2]]| {
        a.iter().zip(b).flat_map(|(p, q)| [(p[0] - q[0]).abs(), (p[1] - q[1]).abs()]).fold(0f32, f32::max)
    };
    let same = max_diff(&small, &large);
    let different = max_diff(&large, &other_seed);
    println!("batch 7 vs 64: max |Δ| = {same:e}; seed 3 vs 4: max |Δ| = {different}");
    // Only the BLAS blocking of the two batch shapes may differ, at float32 rounding.
    assert!(same < 1e-4, "batch size changed the samples by {same}");
    assert!(different > 0.1, "another seed should give other samples");
}

/// A class-conditional MLP trained with label dropout, sampled with classifier-free guidance
/// towards one mode, puts its samples in that mode; the trajectory is kept every 5th step.
#[test]
fn classifier_free_guidance_steers_samples_to_the_requested_mode() {
    let _turn = serial();
    let root = tempfile::tempdir().unwrap();
    let (data, train) = (root.path().join("data"), root.path().join("train"));
    let dataset = json!({"shape": "gaussians8", "count": 4000, "noise": 0.1, "seed": 0});
    difflow_engine::stages::run(&job("dataset", "toy", dataset, &[], &data)).unwrap();
    let params = json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 128, "layers": 3, "classes": 8},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 50},
        "uncond_p": 0.2, "steps": 400, "batch": 256, "lr": 2e-3, "warmup": 20, "ema": 0.99, "seed": 0
    });
    difflow_engine::stages::run(&job("train", "diffusion", params, &[("points", "dataset", &data)], &train)).unwrap();

    let out = root.path().join("guided");
    let params = json!({
        "from": {"$stage": "fit"},
        "sampler": {"kind": "sampler", "variant": "ddim", "steps": 25},
        "guidance": {"kind": "guidance", "variant": "cfg", "scale": 2.0},
        "classes": 3, "count": 400, "seed": 2, "trajectory": 5
    });
    difflow_engine::stages::run(&job("sample", "default", params, &[("fit", "train", &train)], &out)).unwrap();
    let samples = Dataset::read(&out).unwrap();
    assert!(samples.labels.eq(3).all().int64_value(&[]) == 1, "every sample is labelled with the requested class");
    let flat: Vec<f32> = Vec::try_from(samples.values.flatten(0, -1)).unwrap();
    let points: Vec<[f32; 2]> = flat.chunks(2).map(|p| [p[0], p[1]]).collect();
    let (shares, near) = mode_statistics(&points, 0.4);
    println!("cfg w=2 towards mode 3: {:.1} % in mode 3, {:.1} % near a mode", 100.0 * shares[3], 100.0 * near);
    assert!(shares[3] >= 0.9, "only {:.1} % of the guided samples are in mode 3", 100.0 * shares[3]);

    classifier_guidance_steers_the_unconditional_model(&train);

    let trajectory = tch::Tensor::read_safetensors(out.join("trajectory.safetensors")).unwrap();
    let get = |name: &str| trajectory.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    assert_eq!(get("t").size(), [5], "25 steps kept every 5th");
    assert_eq!(get("xt").size(), [5, 400, 2]);
    assert_eq!(get("x0").size(), [5, 400, 2]);
    let t: Vec<i64> = Vec::try_from(get("t")).unwrap();
    assert_eq!(t[0], 49, "the trajectory starts at the last timestep");
    assert!(t.windows(2).all(|w| w[0] > w[1]));
}

/// The exact noisy classifier of gaussians8 (σ = 0.1): x_t | y ~ N(√ᾱ_t c_y, (1 − ᾱ_t + ᾱ_t σ²) I),
/// so logits_k = −|x_t − √ᾱ_t c_k|² / (2 (1 − ᾱ_t + ᾱ_t σ²)).
struct NoisyModeClassifier {
    alphas_cumprod: Vec<f64>,
}

impl difflow_engine::models::Classifier for NoisyModeClassifier {
    fn forward(&self, x: &tch::Tensor, t: Option<&tch::Tensor>, _train: bool) -> tch::Tensor {
        let t: Vec<i64> = Vec::try_from(t.expect("a noisy classifier needs t").to_kind(tch::Kind::Int64)).unwrap();
        let ab: Vec<f32> = t.iter().map(|&t| self.alphas_cumprod[t as usize] as f32).collect();
        let ab = tch::Tensor::from_slice(&ab).view([-1, 1, 1]);
        let centres: Vec<f32> = gaussians8_centres().iter().flat_map(|c| [c[0] as f32, c[1] as f32]).collect();
        let c = tch::Tensor::from_slice(&centres).view([1, 8, 2]);
        let d = x.unsqueeze(1) - ab.sqrt() * c;
        let var = (-&ab + 1.0) + &ab * 0.01;
        -(d.square() / (var * 2.0)).sum_dim_intlist([2i64].as_slice(), false, tch::Kind::Float)
    }
}

/// Classifier guidance (mean shift for DDPM, score shift for DDIM) through autograd of a
/// classifier moves the unconditional model's samples (null label) into the requested mode.
fn classifier_guidance_steers_the_unconditional_model(train: &Path) {
    use difflow_engine::artifacts::TrainMeta;
    use difflow_engine::diffusion::noise::SampleNoise;
    use difflow_engine::diffusion::sampler::{Guidance, SampleSetup, Sampler};
    use difflow_engine::diffusion::VarianceType;
    use tch::{Device, Kind, Tensor};

    let meta = TrainMeta::read(train).unwrap();
    let (_vs, model) = meta.load_model(train, true, Device::Cpu).unwrap();
    // The unconditional half of the CFG-trained model: always the null label.
    let net = |x: &Tensor, t: &Tensor, _y: Option<&Tensor>| {
        model.forward(x, t, Some(&Tensor::full([x.size()[0]], 8, (Kind::Int64, Device::Cpu))), false)
    };
    let tables = meta.schedule.tables();
    let classifier = NoisyModeClassifier { alphas_cumprod: tables.alphas_cumprod.clone() };
    let indices: Vec<u64> = (0..300).collect();
    let y = Tensor::full([300], 6, (Kind::Int64, Device::Cpu));
    for (name, sampler, scale) in [
        (
            "none",
            Sampler::Ddim { steps: 25, eta: 0.0, spacing: difflow_core::diffusion::schedule::Spacing::Uniform },
            0.0,
        ),
        ("ddpm", Sampler::Ddpm { variance: VarianceType::FixedSmall, steps: Some(50) }, 3.0),
        (
            "ddim",
            Sampler::Ddim { steps: 25, eta: 0.0, spacing: difflow_core::diffusion::schedule::Spacing::Uniform },
            3.0,
        ),
    ] {
        let guidance =
            if scale > 0.0 { Guidance::Classifier { classifier: &classifier, scale } } else { Guidance::None };
        let setup = SampleSetup {
            tables: &tables,
            model: meta.model_spec,
            edm: None,
            space: meta.data_space(),
            sampler: &sampler,
            guidance: &guidance,
            item_shape: &[2],
            noise: SampleNoise { seed: 11 },
            trajectory: 0,
            device: Device::Cpu,
        };
        let process = setup.process();
        let samples = setup.sample(&process, &net, &indices, Some(&y), &mut |_| {}).unwrap();
        let flat: Vec<f32> = Vec::try_from(samples.x0.flatten(0, -1)).unwrap();
        let points: Vec<[f32; 2]> = flat.chunks(2).map(|p| [p[0], p[1]]).collect();
        let (shares, near) = mode_statistics(&points, 0.4);
        println!(
            "classifier guidance {name} (s = {scale}) towards mode 6: {:.1} % in mode 6, {:.1} % near a mode",
            100.0 * shares[6],
            100.0 * near
        );
        if scale == 0.0 {
            assert!(shares[6] < 0.3, "unguided samples spread over the modes");
        } else {
            assert!(shares[6] >= 0.8, "{name}: only {:.1} % of the guided samples are in mode 6", 100.0 * shares[6]);
        }
    }
}
