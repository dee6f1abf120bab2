//! The train stage's recipe keys against diffusers and PyTorch (`scripts/reference_recipes.py`
//! → the "recipes" part of `tests/reference/numbers.json`), to 1e-5: Min-SNR-γ weights and
//! weighted losses, the learning rate at every step of each schedule, the EMA's warm-up, EDM's
//! training batch and loss, and Heun's chain on an EDM-preconditioned net.

mod common;

use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::params::model::Prediction;
use difflow_core::params::train::{ema_decay, min_snr_weights, Edm, LrPlan, LrSchedule};
use difflow_engine::diffusion::edm;
use difflow_engine::diffusion::loss::LossType;
use difflow_engine::diffusion::{DataSpace, Process, VarianceType};
use difflow_engine::models::ModelSpec;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/numbers.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("numbers.json")).expect("JSON");
    all["recipes"].clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
}

fn matrix(v: &Value) -> Tensor {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(floats).collect();
    let width = rows[0].len() as i64;
    Tensor::from_slice(&rows.concat()).view([-1, width])
}

/// |got − want| ≤ 1e-5 · max(1, |want|) elementwise.
fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOLERANCE * w.abs().max(1.0), "{what}[{i}]: got {g:e}, want {w:e}");
    }
}

fn cosine_1000() -> ScheduleSpec {
    ScheduleSpec::Cosine { steps: 1000, s: 0.008, max_beta: 0.999, zero_terminal_snr: false }
}

#[test]
fn min_snr_weights_and_losses_match_diffusers() {
    let r = &reference()["min_snr"];
    let tables = cosine_1000().tables();
    let t: Vec<i64> = r["t"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let gamma = r["gamma"].as_f64().unwrap();
    let (x0, noise, output) = (matrix(&r["x0"]), matrix(&r["noise"]), matrix(&r["output"]));
    let t_tensor = Tensor::from_slice(&t);
    for case in r["cases"].as_array().unwrap() {
        let name = case["prediction"].as_str().unwrap();
        let prediction = match name {
            "eps" => Prediction::Eps,
            "v" => Prediction::V,
            _ => Prediction::X0,
        };
        let table = min_snr_weights(&tables.alphas_cumprod, gamma, prediction);
        let weights: Vec<f64> = t.iter().map(|&k| table[k as usize]).collect();
        assert_close(&format!("{name} weights"), &weights, &floats(&case["weights"]));

        let model = ModelSpec { classes: 0, learn_sigma: false, prediction };
        let process =
            Process::new(tables.clone(), model, VarianceType::FixedSmall, DataSpace::points(None), Device::Cpu);
        let xt = process.q_sample(&x0, &t_tensor, &noise);
        let w = Tensor::from_slice(&weights);
        let loss = process.training_loss(&output, &x0, &xt, &t_tensor, &noise, LossType::Simple, Some(&w)).unwrap();
        let loss = Vec::<f64>::try_from(loss.to_kind(Kind::Double)).unwrap();
        assert_close(&format!("{name} weighted loss"), &loss, &floats(&case["loss"]));
    }
}

#[test]
fn weighting_refuses_the_vlb_loss_it_cannot_weigh() {
    let model = ModelSpec { classes: 0, learn_sigma: true, prediction: Prediction::Eps };
    let process =
        Process::new(cosine_1000().tables(), model, VarianceType::Learned, DataSpace::points(None), Device::Cpu);
    let x0 = Tensor::zeros([2, 3], (Kind::Double, Device::Cpu));
    let t = Tensor::from_slice(&[3i64, 500]);
    let output = Tensor::zeros([2, 6], (Kind::Double, Device::Cpu));
    let w = Tensor::ones([2], (Kind::Double, Device::Cpu));
    let err = process.training_loss(&output, &x0, &x0, &t, &x0, LossType::Vlb, Some(&w)).unwrap_err();
    assert!(err.to_string().contains("vlb"), "{err}");
}

#[test]
fn learning_rate_schedules_match_diffusers_and_torch() {
    let r = &reference()["lr"];
    let (warmup, steps) = (r["warmup"].as_u64().unwrap() as usize, r["steps"].as_u64().unwrap() as usize);
    for case in r["cases"].as_array().unwrap() {
        let schedule = match case["schedule"].as_str().unwrap() {
            "cosine" => LrSchedule::Cosine,
            _ => LrSchedule::Linear,
        };
        let floor = case["floor"].as_f64().unwrap();
        let plan = LrPlan { lr: r["lr"].as_f64().unwrap(), warmup, steps, schedule, floor };
        let got: Vec<f64> = (0..steps).map(|s| plan.at(s)).collect();
        assert_close(&format!("{schedule:?} floor {floor}"), &got, &floats(&case["expected"]));
    }
}

#[test]
fn the_ema_warm_up_matches_diffusers_after_its_first_update() {
    let r = &reference()["ema"];
    let ema = r["ema"].as_f64().unwrap();
    let steps: Vec<usize> = r["steps"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let got: Vec<f64> = steps.iter().map(|&s| ema_decay(ema, s)).collect();
    assert_close("EMA decay", &got, &floats(&r["expected"]));
    // diffusers' first update copies the weights; difflow's weighs them 0.9 (decay 1/10).
    assert_eq!(ema_decay(ema, 0), 0.1);
}

fn edm_of(r: &Value) -> Edm {
    let f = |k: &str| r[k].as_f64().unwrap();
    Edm { sigma_data: f("sigma_data"), p_mean: f("p_mean"), p_std: f("p_std") }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn edm_training_batches_and_loss_match_the_papers_code() {
    let r = &reference()["edm"];
    let edm = edm_of(r);
    let c = &r["training"];
    let (x0, noise, output) = (matrix(&c["x0"]), matrix(&c["noise"]), matrix(&c["output"]));
    let sigma = edm::training_sigmas(&edm, &Tensor::from_slice(&floats(&c["normal"])));
    let batch = edm::training_batch(&edm, &x0, &sigma, &noise);
    let rows = |v: &Value| v.as_array().unwrap().iter().flat_map(floats).collect::<Vec<f64>>();
    assert_close("c_in·x", &values(&batch.input), &rows(&c["input"]));
    assert_close("c_noise", &values(&batch.c_noise), &floats(&c["c_noise"]));
    // The unit-weighted MSE of F against its target is EDM's λ(σ)‖D − x₀‖².
    let loss = (&output - &batch.target).square().mean_dim(1, false, Kind::Double);
    assert_close("EDM loss", &values(&loss), &floats(&c["loss"]));
}

#[test]
fn heun_samples_an_edm_net_with_and_without_guidance() {
    use difflow_core::params::sampler::Sampler;
    use difflow_engine::diffusion::noise::SampleNoise;
    use difflow_engine::diffusion::sampler::{Guidance, SampleSetup};

    let r = &reference()["edm"];
    let x_init = matrix(&r["x_init"]);
    let y = Tensor::from_slice(&floats(&r["labels"])).to_kind(Kind::Int64);
    // F(x_in, c_noise, y) = tanh(x_in)(0.5 + c_noise/4) + 0.1 y: the net sees the real c_noise.
    let net = |x: &Tensor, t: &Tensor, y: Option<&Tensor>| {
        assert_eq!(t.kind(), Kind::Float, "an EDM net's timestep is c_noise");
        let out = x.tanh() * (t.to_kind(Kind::Double) / 4.0 + 0.5).view([-1, 1]);
        match y {
            Some(y) => out + (y.to_kind(Kind::Double) * 0.1).view([-1, 1]),
            None => out,
        }
    };
    let tables = cosine_1000().tables();
    let sampler = Sampler::Heun { steps: 4, rho: 7.0, sigma_min: None, sigma_max: None };
    for case in r["chains"].as_array().unwrap() {
        let cfg = case["guidance"] == "cfg";
        let guidance = if cfg {
            Guidance::Cfg { scale: r["cfg_scale"].as_f64().unwrap(), interval: None }
        } else {
            Guidance::None
        };
        let setup = SampleSetup {
            tables: &tables,
            model: ModelSpec { classes: 3, learn_sigma: false, prediction: Prediction::Eps },
            edm: Some(edm_of(r)),
            space: DataSpace::points(None),
            sampler: &sampler,
            guidance: &guidance,
            item_shape: &[2],
            noise: SampleNoise { seed: 0 },
            trajectory: 0,
            device: Device::Cpu,
        };
        let labels = cfg.then_some(&y);
        let out = setup.sample_from(&setup.process(), &net, x_init.copy(), &[0, 1], labels, &mut |_| {}).unwrap();
        let rows: Vec<f64> = case["expected"].as_array().unwrap().iter().flat_map(floats).collect();
        assert_close(&format!("heun on EDM, guidance {}", case["guidance"]), &values(&out.x0), &rows);
    }
    // Timestep samplers cannot drive an EDM net.
    let ddim = Sampler::Ddim { steps: 4, eta: 0.0, spacing: difflow_core::diffusion::schedule::Spacing::Uniform };
    let setup = SampleSetup {
        tables: &tables,
        model: ModelSpec { classes: 0, learn_sigma: false, prediction: Prediction::Eps },
        edm: Some(edm_of(r)),
        space: DataSpace::points(None),
        sampler: &ddim,
        guidance: &Guidance::None,
        item_shape: &[2],
        noise: SampleNoise { seed: 0 },
        trajectory: 0,
        device: Device::Cpu,
    };
    let result = setup.sample_from(&setup.process(), &net, x_init.copy(), &[0, 1], None, &mut |_| {});
    let err = result.err().expect("DDIM refuses an EDM net");
    assert!(err.to_string().contains("σ steps"), "{err}");
}

/// The first step's loss of a toy run, with `extra` keys in its train job.
fn first_loss(root: &std::path::Path, name: &str, extra: Value) -> f64 {
    use common::{input, stage_job};
    let data = root.join("data");
    if !data.exists() {
        let dataset = serde_json::json!({"shape": "gaussians8", "count": 256, "noise": 0.1, "seed": 0});
        difflow_engine::stages::run(&stage_job("points", ("dataset", "toy"), &dataset, [], &data)).unwrap();
    }
    let mut params = serde_json::json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 16, "layers": 2},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 1000},
        "steps": 1, "batch": 64, "lr": 1e-3, "seed": 0, "checkpoint_every": 0
    });
    params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let inputs = [("points".to_string(), input("dataset", "toy", &data))];
    difflow_engine::stages::run(&stage_job(name, ("train", "diffusion"), &params, inputs, &root.join(name))).unwrap();
    let csv = std::fs::read_to_string(root.join(name).join("loss.csv")).unwrap();
    csv.lines().nth(1).unwrap().split_once(',').unwrap().1.parse().unwrap()
}

/// The train stage applies the weighting: with the same draws, ε's Min-SNR-γ weights (at most
/// 1, below 1 wherever SNR > γ) lower the first step's loss, and a larger γ lowers it less.
#[test]
fn the_train_stage_weighs_its_loss_by_min_snr() {
    let root = tempfile::tempdir().unwrap();
    let uniform = first_loss(root.path(), "uniform", serde_json::json!({}));
    let gamma_5 = first_loss(root.path(), "gamma_5", serde_json::json!({"weighting": "min_snr"}));
    let gamma_50 = first_loss(root.path(), "gamma_50", serde_json::json!({"weighting": "min_snr", "snr_gamma": 50.0}));
    assert!(gamma_5 < gamma_50 && gamma_50 < uniform, "γ = 5: {gamma_5}, γ = 50: {gamma_50}, uniform: {uniform}");
}

/// A guidance interval guides exactly the steps whose σ lies inside it: one that holds every
/// σ of the chain samples as plain guidance, one that holds none as w = 0.
#[test]
fn a_guidance_interval_guides_only_the_steps_inside_it() {
    use difflow_core::params::guidance::CfgInterval;
    use difflow_core::params::sampler::Sampler;
    use difflow_engine::diffusion::noise::SampleNoise;
    use difflow_engine::diffusion::sampler::{Guidance, SampleSetup};

    let net = |x: &Tensor, _t: &Tensor, y: Option<&Tensor>| {
        let out = x.tanh() * 0.5;
        match y {
            Some(y) => out + (y.to_kind(Kind::Double) * 0.1).view([-1, 1]),
            None => out,
        }
    };
    let tables = cosine_1000().tables();
    let x_init = Tensor::from_slice(&[0.3f64, -1.2, 0.8, 0.1]).view([2, 2]);
    let y = Tensor::from_slice(&[1i64, 2]);
    let draw = |sampler: &Sampler, guidance: Guidance| {
        let setup = SampleSetup {
            tables: &tables,
            model: ModelSpec { classes: 3, learn_sigma: false, prediction: Prediction::Eps },
            edm: None,
            space: DataSpace::points(None),
            sampler,
            guidance: &guidance,
            item_shape: &[2],
            noise: SampleNoise { seed: 0 },
            trajectory: 0,
            device: Device::Cpu,
        };
        let out = setup.sample_from(&setup.process(), &net, x_init.copy(), &[0, 1], Some(&y), &mut |_| {}).unwrap();
        values(&out.x0)
    };
    let everywhere = Some(CfgInterval { low: 1e-9, high: 1e9 });
    let nowhere = Some(CfgInterval { low: 1e8, high: 1e9 });
    let heun = Sampler::Heun { steps: 4, rho: 7.0, sigma_min: None, sigma_max: Some(80.0) };
    let ddim = Sampler::Ddim { steps: 4, eta: 0.0, spacing: difflow_core::diffusion::schedule::Spacing::Uniform };
    for sampler in [&heun, &ddim] {
        let guided = draw(sampler, Guidance::Cfg { scale: 2.0, interval: None });
        let plain = draw(sampler, Guidance::Cfg { scale: 0.0, interval: None });
        assert_ne!(guided, plain, "{sampler:?}: guidance changes the samples");
        assert_eq!(draw(sampler, Guidance::Cfg { scale: 2.0, interval: everywhere }), guided, "{sampler:?}");
        assert_eq!(draw(sampler, Guidance::Cfg { scale: 2.0, interval: nowhere }), plain, "{sampler:?}");
        let partly = draw(sampler, Guidance::Cfg { scale: 2.0, interval: Some(CfgInterval { low: 0.28, high: 5.42 }) });
        assert!(partly != guided && partly != plain, "{sampler:?}: some steps guided, some not");
    }
}
