//! `difflow-worker check --device D [OPTIONS]`: the device checks of the GPU kit. Each
//! check computes the same thing on the CPU and on `D` from the same weights and inputs and
//! prints one JSON line `{"check", "error", "tolerance", "ok", "note"}` where `error` is the
//! largest absolute difference relative to the largest absolute CPU value. Exit status 1
//! when a check fails. With `--device cpu` every comparison is CPU against CPU: the run
//! then proves that the checks and the code paths they drive work, not a device. The NCCL
//! checks (kit_nccl.rs) come last; without a GPU their group check is skipped, saying so.

use anyhow::{bail, Result};
use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

use crate::bench::{random_dataset, random_inception, sample_chain, schedule, settings, ChainSettings, Options};
use crate::diffusion::sampler::Sampler;
use crate::diffusion::{DataSpace, Process, VarianceType};
use crate::kit_nccl::Outcome;
use crate::models::{build_denoiser, Denoiser, ModelSpec};
use crate::training::Trainer;

/// max |a − b| / max |b| (b the CPU reference; 0 when both are all zeros).
pub(crate) fn relative_error(a: &Tensor, reference: &Tensor) -> f64 {
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = reference.to_device(Device::Cpu).to_kind(Kind::Double);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    (a - b).abs().max().double_value(&[]) / scale
}

struct Report {
    failed: Vec<String>,
}

impl Report {
    fn record(&mut self, check: &str, error: f64, tolerance: f64, note: &str) {
        let outcome = Outcome::Measured { error, tolerance, note: note.to_string() };
        self.record_outcome(check, &outcome);
    }

    fn record_outcome(&mut self, check: &str, outcome: &Outcome) {
        if !print_outcome(check, outcome) {
            self.failed.push(check.to_string());
        }
    }
}

/// Prints a check's JSON line; false when it failed. A skipped check (`"skipped": true`,
/// `ok` null) neither passes nor fails; its note says why it did not run.
pub(crate) fn print_outcome(check: &str, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Measured { error, tolerance, note } => {
            let ok = error.is_finite() && error <= tolerance;
            // JSON has no infinity: a check that could not run reports a null error.
            let error = if error.is_finite() { json!(error) } else { json!(null) };
            println!("{}", json!({"check": check, "error": error, "tolerance": tolerance, "ok": ok, "note": note}));
            ok
        }
        Outcome::Skipped(why) => {
            let line =
                json!({"check": check, "error": null, "tolerance": null, "ok": null, "skipped": true, "note": why});
            println!("{line}");
            true
        }
    }
}

/// A denoiser with its variables.
type Model = (nn::VarStore, Box<dyn Denoiser>);

/// The same denoiser on the CPU and on `device`, with random non-zero weights everywhere
/// (the UNet's zero-initialised output convolutions would make every comparison trivial).
fn twin_models(o: &Options, device: Device) -> Result<(Model, Model)> {
    let meta = o.data_meta(1);
    let cpu_vs = nn::VarStore::new(Device::Cpu);
    let cpu = build_denoiser(&cpu_vs.root(), &o.model, &meta)?;
    tch::no_grad(|| {
        for (_, mut t) in cpu_vs.variables() {
            let noise = t.randn_like() * 0.05;
            let _ = t.g_add_(&noise);
        }
    });
    let mut dev_vs = nn::VarStore::new(device);
    let dev = build_denoiser(&dev_vs.root(), &o.model, &meta)?;
    dev_vs.copy(&cpu_vs)?;
    Ok(((cpu_vs, cpu), (dev_vs, dev)))
}

/// Loss and global gradient norm of one ε-MSE step on a fixed batch.
fn loss_and_grad_norm(vs: &nn::VarStore, net: &dyn Denoiser, inputs: &[Tensor; 4], bf16: bool) -> (Tensor, f64) {
    let device = vs.device();
    let [x, t, y, noise] = inputs.each_ref().map(|t| t.to_device(device));
    for mut p in vs.trainable_variables() {
        p.zero_grad();
    }
    let out = if bf16 {
        crate::device::use_bf16_autocast();
        tch::autocast(true, || net.forward(&x, &t, Some(&y), false))
    } else {
        net.forward(&x, &t, Some(&y), false)
    };
    let loss = (out.to_kind(Kind::Float) - noise).square().mean(Kind::Float);
    loss.backward();
    let norm: f64 =
        vs.trainable_variables().iter().map(|p| p.grad().square().sum(Kind::Double).double_value(&[])).sum();
    (loss.detach(), norm.sqrt())
}

/// Runs every check; fails when one is outside its tolerance.
pub fn run(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let device = o.device;
    let spec = o.model_spec()?;
    let (c, size, classes) = o.shape();
    let mut report = Report { failed: Vec::new() };
    let fp32_note = if device.is_cuda() { "fp32 (cuDNN may use TF32)" } else { "fp32, CPU against CPU" };
    tch::manual_seed(1);
    let ((cpu_vs, cpu), (dev_vs, dev)) = twin_models(&o, device)?;

    let b = o.batch as i64;
    let x = Tensor::randn([b, c, size, size], (Kind::Float, Device::Cpu));
    let t = Tensor::randint(1000, [b], (Kind::Int64, Device::Cpu));
    let y = Tensor::randint(classes.max(1) + 1, [b], (Kind::Int64, Device::Cpu)).clamp_max(classes);
    let noise = x.randn_like();
    let reference = tch::no_grad(|| cpu.forward(&x, &t, Some(&y), false));
    let on_device =
        tch::no_grad(|| dev.forward(&x.to_device(device), &t.to_device(device), Some(&y.to_device(device)), false));
    report.record("unet_forward", relative_error(&on_device, &reference), 1e-2, fp32_note);

    let inputs = [x, t, y, noise];
    let (cpu_loss, cpu_norm) = loss_and_grad_norm(&cpu_vs, cpu.as_ref(), &inputs, false);
    let (dev_loss, dev_norm) = loss_and_grad_norm(&dev_vs, dev.as_ref(), &inputs, false);
    report.record("train_loss_fp32", relative_error(&dev_loss, &cpu_loss), 1e-2, fp32_note);
    report.record("train_grad_norm_fp32", (dev_norm - cpu_norm).abs() / cpu_norm.max(1e-12), 2e-2, fp32_note);
    let (bf_loss, bf_norm) = loss_and_grad_norm(&dev_vs, dev.as_ref(), &inputs, o.device.is_cuda());
    let bf16_note = if device.is_cuda() { "bf16 autocast" } else { "autocast is CUDA-only: fp32 here" };
    report.record("train_loss_bf16", relative_error(&bf_loss, &cpu_loss), 5e-2, bf16_note);
    report.record("train_grad_norm_bf16", (bf_norm - cpu_norm).abs() / cpu_norm.max(1e-12), 1e-1, bf16_note);

    // A few real training steps on the device: the loss stays finite in both precisions.
    let data = random_dataset(&o, 64)?;
    let process = Process::new(schedule().tables(), spec, VarianceType::FixedSmall, DataSpace::images(), device);
    for bf16 in [false, true] {
        let mut trainer = Trainer::new(&o.model, &data.meta, device)?;
        let s = crate::training::Settings { bf16: bf16 && device.is_cuda(), ..settings(&o, spec.classes) };
        let mut non_finite = 0.0;
        for step in 0..3 {
            if !trainer.step(step, &s, &process, &data, spec, None)?.loss.is_finite() {
                non_finite += 1.0;
            }
        }
        let name = if bf16 { "train_steps_bf16" } else { "train_steps_fp32" };
        report.record(name, non_finite, 0.0, "3 AdamW steps on the device; error = non-finite losses");
    }

    let samplers = [
        (
            "sample_ddim",
            Sampler::Ddim { steps: 10, eta: 0.0, spacing: difflow_core::diffusion::schedule::Spacing::Uniform },
        ),
        ("sample_ddpm", Sampler::Ddpm { variance: VarianceType::FixedSmall, steps: Some(10) }),
        ("sample_dpm_solver", Sampler::DpmSolver { steps: 10, order: 2 }),
    ];
    for (name, sampler) in samplers {
        let cpu_x = sample(&o, spec, &sampler, cpu.as_ref(), Device::Cpu)?;
        let dev_x = sample(&o, spec, &sampler, dev.as_ref(), device)?;
        report.record(name, relative_error(&dev_x, &cpu_x), 2e-2, "10 steps, CFG 2, per-sample noise");
    }

    tch::manual_seed(2);
    let inception_cpu = random_inception(Device::Cpu)?;
    tch::manual_seed(2);
    let inception_dev = random_inception(device)?;
    let images =
        Tensor::randint(256, [o.inception_batch, 3, o.inception_size, o.inception_size], (Kind::Uint8, Device::Cpu));
    let a = inception_cpu.extract(&images, o.inception_batch as usize, |_| {})?;
    let d = inception_dev.extract(&images, o.inception_batch as usize, |_| {})?;
    report.record("inception_pool3", relative_error(&d.pool3, &a.pool3), 1e-2, "random weights, fp32");

    for (name, outcome) in crate::kit_nccl::checks(device) {
        report.record_outcome(name, &outcome);
    }

    if !report.failed.is_empty() {
        bail!("{} check(s) failed: {}", report.failed.len(), report.failed.join(", "));
    }
    Ok(())
}

fn sample(o: &Options, spec: ModelSpec, sampler: &Sampler, net: &dyn Denoiser, device: Device) -> Result<Tensor> {
    Ok(sample_chain(o, spec, sampler, net, device, ChainSettings { scale: 2.0, seed: 3 })?.0)
}
