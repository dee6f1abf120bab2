//! The engine's diffusion math against reference values computed independently in numpy
//! float64 from the papers' formulas (`scripts/reference_numbers.py` →
//! `tests/reference/numbers.json`), at float64 tolerance. The samplers' values are not
//! stored: the script prints them when the test runs (`reference_numbers.py samplers`).

mod common;

use std::cell::Cell;

use difflow_core::diffusion::schedule::{space_timesteps, Spacing};
use difflow_engine::diffusion::guidance::{cfg_output, classifier_gradient, guided_eps, guided_mean};
use difflow_engine::diffusion::sampler::{ddim_step, ddpm_step, dpm_solver_2m_update};
use difflow_engine::diffusion::vlb::{
    approx_standard_normal_cdf, discretized_gaussian_log_likelihood, gaussian_log_likelihood, normal_kl,
};
use difflow_engine::diffusion::{DataSpace, Denoised, Process, VarianceType};
use difflow_engine::models::{Classifier, ModelSpec, Prediction};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const RTOL: f64 = 1e-12;
/// Quantities formed by cancellation (β = 1 − ᾱ_t/ᾱ_{t−1}, ᾱ ≈ 0 under zero terminal SNR)
/// carry absolute rounding of a few ulps of 1.
const ATOL: f64 = 1e-14;

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/numbers.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("numbers.json exists")).expect("valid JSON")
}

fn flat(v: &Value, out: &mut Vec<f64>, shape: &mut Vec<i64>, depth: usize) {
    match v {
        Value::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len() as i64);
            }
            items.iter().for_each(|i| flat(i, out, shape, depth + 1));
        }
        other => out.push(other.as_f64().expect("a number")),
    }
}

fn tensor(v: &Value) -> Tensor {
    let (mut values, mut shape) = (Vec::new(), Vec::new());
    flat(v, &mut values, &mut shape, 0);
    Tensor::from_slice(&values).view(shape.as_slice())
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().flatten(0, -1)).unwrap()
}

/// Asserts |got − want| ≤ RTOL·|want| + ATOL·max(1, max|want|) elementwise.
fn assert_close(what: &str, got: &Tensor, want: &Value) {
    let want_t = tensor(want);
    assert_eq!(got.size(), want_t.size(), "{what}: shape");
    let (g, w) = (values(got), values(&want_t));
    let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        let tol = RTOL * b.abs() + ATOL * scale;
        assert!(err <= tol, "{what}[{i}]: got {a:e}, want {b:e} (error {err:e} > {tol:e})");
        worst = worst.max(err / (b.abs() + ATOL * scale));
    }
    let _ = worst;
}

/// The schedule of a reference config, its unset keys filled with the schema's defaults.
fn spec_of(v: &Value) -> difflow_core::diffusion::schedule::ScheduleSpec {
    let variant = v["variant"].as_str().expect("a schedule variant");
    let config = difflow_core::schema::with_defaults("schedule", variant, v);
    difflow_core::diffusion::schedule::ScheduleSpec::from_config(&config).expect("a valid schedule")
}

#[test]
fn schedules_match_the_papers() {
    let r = reference();
    for case in r["schedules"].as_array().unwrap() {
        let tables = spec_of(&case["spec"]).tables();
        let at: Vec<usize> = case["at"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let pick = |v: &[f64]| Tensor::from_slice(&at.iter().map(|&i| v[i]).collect::<Vec<_>>());
        let name = case["spec"].to_string();
        assert_close(&format!("{name} betas"), &pick(&tables.betas), &case["betas"]);
        assert_close(&format!("{name} alphas_cumprod"), &pick(&tables.alphas_cumprod), &case["alphas_cumprod"]);
        assert_close(
            &format!("{name} posterior variance"),
            &pick(&tables.posterior_variance),
            &case["posterior_variance"],
        );
        assert_close(
            &format!("{name} posterior log-variance (clipped)"),
            &pick(&tables.posterior_log_variance_clipped),
            &case["posterior_log_variance_clipped"],
        );
    }
}

fn spacing(name: &str) -> Spacing {
    match name {
        "uniform" => Spacing::Uniform,
        "quadratic" => Spacing::Quadratic,
        "trailing" => Spacing::Trailing,
        other => panic!("unknown spacing {other}"),
    }
}

#[test]
fn respaced_timesteps_and_betas_match() {
    let r = reference();
    let cosine = serde_json::json!({"variant": "cosine", "steps": 1000});
    let tables = spec_of(&cosine).tables();
    for case in r["respacing"].as_array().unwrap() {
        let (count, name) = (case["count"].as_u64().unwrap() as usize, case["spacing"].as_str().unwrap());
        let ts = space_timesteps(1000, count, spacing(name));
        let want: Vec<usize> =
            case["timesteps"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(ts, want, "{name} spacing of 1000 into {count}");
        let respaced = tables.respaced(&ts);
        assert_close(&format!("{name}/{count} respaced betas"), &Tensor::from_slice(&respaced.betas), &case["betas"]);
        // The first kept step always leads to ᾱ = 1 (x₀), whatever timestep it is.
        assert_eq!(respaced.alphas_cumprod_prev[0], 1.0);
    }
}

fn process_of(case: &Value) -> Process {
    let tables = spec_of(&case["schedule"]).tables();
    let prediction = match case["prediction"].as_str().unwrap() {
        "eps" => Prediction::Eps,
        "v" => Prediction::V,
        _ => Prediction::X0,
    };
    let variance = match case["variance"].as_str().unwrap() {
        "fixed_small" => VarianceType::FixedSmall,
        "fixed_large" => VarianceType::FixedLarge,
        _ => VarianceType::Learned,
    };
    let model = ModelSpec { classes: 3, learn_sigma: case["learn_sigma"].as_bool().unwrap(), prediction };
    let space = DataSpace { clip: case["clip"].as_f64(), discrete: case["discrete"].as_bool().unwrap() };
    match case.get("respace").filter(|v| !v.is_null()) {
        Some(rs) => {
            let ts = space_timesteps(
                tables.steps(),
                rs["count"].as_u64().unwrap() as usize,
                spacing(rs["spacing"].as_str().unwrap()),
            );
            Process::respaced(&tables, &ts, model, variance, space, Device::Cpu)
        }
        None => Process::new(tables, model, variance, space, Device::Cpu),
    }
}

/// A reference case of the process: its inputs and expected values, and its process, name
/// and timesteps.
struct Case {
    json: Value,
    p: Process,
    name: String,
    t: Tensor,
}

impl Case {
    fn input(&self, key: &str) -> Tensor {
        tensor(&self.json[key])
    }

    /// `got` is close to the expected value `key`; a failure names the case and `what`.
    fn check(&self, what: &str, got: &Tensor, key: &str) {
        assert_close(&format!("{} {what}", self.name), got, &self.json["expected"][key]);
    }

    /// x_t and what the model's output of the case makes of it.
    fn denoised(&self) -> (Tensor, Denoised) {
        let xt = self.input("xt");
        let d = self.p.p_mean_variance(&self.input("output"), &xt, &self.t).unwrap();
        (xt, d)
    }
}

fn process_cases() -> Vec<Case> {
    let Value::Array(cases) = reference()["process"].take() else { panic!("no process cases") };
    cases
        .into_iter()
        .map(|json| {
            let t: Vec<i64> = json["t"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            Case { p: process_of(&json), name: case_name(&json), t: Tensor::from_slice(&t), json }
        })
        .collect()
}

fn case_name(case: &Value) -> String {
    format!(
        "{}/{}/{}{}",
        case["schedule"]["variant"].as_str().unwrap(),
        case["prediction"].as_str().unwrap(),
        case["variance"].as_str().unwrap(),
        case.get("respace").filter(|v| !v.is_null()).map(|r| format!("/{}", r["spacing"])).unwrap_or_default()
    )
}

#[test]
fn forward_posterior_and_model_parameterisations_match() {
    for c in process_cases() {
        let (x0, xt, noise) = (c.input("x0"), c.input("xt"), c.input("noise"));
        c.check("q_sample", &c.p.q_sample(&x0, &c.t, &noise), "q_sample");
        let (mean, var, log_var) = c.p.q_posterior(&x0, &xt, &c.t);
        c.check("posterior mean", &mean, "posterior_mean");
        c.check("posterior variance", &var, "posterior_variance");
        c.check("posterior log-variance", &log_var, "posterior_log_variance");

        let (_, d) = c.denoised();
        c.check("x̂₀", &d.x0, "x0");
        c.check("ε̂", &d.eps, "eps");
        c.check("model mean", &d.mean, "mean");
        c.check("model variance", &d.variance, "variance");
        c.check("model log-variance", &d.log_variance, "log_variance");
    }
}

#[test]
fn ddpm_and_ddim_steps_match() {
    for c in process_cases() {
        let ((xt, d), z) = (c.denoised(), c.input("step_noise"));
        c.check("DDPM step", &ddpm_step(&c.p, &d, &c.t, &z), "ddpm_step");
        c.check("DDIM step η=0", &ddim_step(&c.p, &d, &xt, &c.t, 0.0, &z), "ddim_eta0");
        c.check("DDIM step η=1", &ddim_step(&c.p, &d, &xt, &c.t, 1.0, &z), "ddim_eta1");
    }
}

#[test]
fn vlb_terms_match() {
    for c in process_cases() {
        let (x0, xt, output) = (c.input("x0"), c.input("xt"), c.input("output"));
        c.check("L_t (bits/dim)", &c.p.vb_term_bits(&output, &x0, &xt, &c.t, false).unwrap(), "vb_bits");
    }
    let r = reference();
    let el = &r["elementwise"];
    let (x, means, log_scales) = (tensor(&el["x"]), tensor(&el["means"]), tensor(&el["log_scales"]));
    assert_close(
        "normal KL",
        &normal_kl(&x, &tensor(&el["log_var1"]), &tensor(&el["mean2"]), &tensor(&el["log_var2"])),
        &el["normal_kl"],
    );
    assert_close("approximate Φ", &approx_standard_normal_cdf(&(&x * 3.0)), &el["approx_cdf"]);
    assert_close(
        "discretised Gaussian log-likelihood",
        &discretized_gaussian_log_likelihood(&x, &means, &log_scales),
        &el["discretized_ll"],
    );
    assert_close("Gaussian log-likelihood", &gaussian_log_likelihood(&x, &means, &log_scales), &el["gaussian_ll"]);
}

#[test]
fn classifier_free_guidance_matches_with_one_batched_forward() {
    for c in process_cases() {
        let (xt, cond, uncond) = (c.input("xt"), c.input("output"), c.input("uncond"));
        let b = xt.size()[0];
        let calls = Cell::new(0);
        let y = Tensor::from_slice(&[0i64, 1, 2, 0, 1]);
        let net = |x: &Tensor, tm: &Tensor, labels: Option<&Tensor>| {
            calls.set(calls.get() + 1);
            assert_eq!(x.size()[0], 2 * b, "both halves in one batch");
            assert_eq!(tm.size(), [2 * b]);
            let labels = labels.expect("labels");
            assert_eq!(values(&labels.narrow(0, 0, b)), values(&y), "conditional half keeps the labels");
            assert!(
                values(&labels.narrow(0, b, b)).iter().all(|&v| v == 3.0),
                "unconditional half uses the null class"
            );
            Tensor::cat(&[&cond, &uncond], 0)
        };
        let scale = c.json["cfg_scale"].as_f64().unwrap();
        let guided = cfg_output(&net, &xt, &c.p.model_timesteps(&c.t), &y, 3, scale, xt.size()[1]);
        assert_eq!(calls.get(), 1, "one forward for both halves");
        c.check("CFG output (variance channels untouched)", &guided, "cfg_output");
        let d = c.p.p_mean_variance_with(&guided, &xt, &c.t, None).unwrap();
        c.check("CFG ε̃", &d.eps, "cfg_eps");
    }
}

#[test]
fn classifier_guidance_matches() {
    for c in process_cases() {
        let ((xt, d), grad) = (c.denoised(), c.input("cls_grad"));
        c.check("DDPM mean + Σ s∇log p", &guided_mean(&d.mean, &d.variance, &grad), "cls_mean");
        let eps = guided_eps(&d.eps, &c.p.sqrt_one_minus_alpha_bar(&c.t, &xt), &grad);
        c.check("ε − √(1−ᾱ) s∇log p", &eps, "cls_eps");
        let g = c.p.with_eps(d, eps, &xt, &c.t);
        c.check("guided x̂₀", &g.x0, "cls_x0");
        c.check("guided posterior mean", &g.mean, "cls_posterior_mean");
    }
}

/// A classifier with logits_k = −|x − μ_k|²/2, whose ∇_x log p(y|x) = −(x − μ_y) + Σ_k p_k (x − μ_k).
struct Prototypes {
    mu: Tensor,
}

impl Classifier for Prototypes {
    fn forward(&self, x: &Tensor, _t: Option<&Tensor>, _train: bool) -> Tensor {
        let diff = x.unsqueeze(1) - self.mu.unsqueeze(0);
        -(diff.square().sum_dim_intlist([2i64].as_slice(), false, Kind::Float)) * 0.5
    }
}

#[test]
fn classifier_gradient_is_the_score_of_the_classifier() {
    let mu = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.5, 0.0, -2.0]).view([3, 2]);
    let x = Tensor::from_slice(&[0.3f32, -0.2, 1.5, 1.0, -0.7, 0.1, 0.0, 0.0]).view([4, 2]);
    let y = Tensor::from_slice(&[0i64, 1, 2, 1]);
    let clf = Prototypes { mu: mu.shallow_clone() };
    let t = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
    let g = classifier_gradient(&clf, &x, &t, &y, 2.0);
    let probs = clf.forward(&x, None, false).softmax(-1, Kind::Float);
    let mu_y = mu.index_select(0, &y);
    let expected = (-(&x - &mu_y) + (&x - probs.matmul(&mu))) * 2.0;
    let err = (&g - &expected).abs().max().double_value(&[]);
    assert!(err < 1e-5, "autograd gradient off by {err}");
}

#[test]
fn dpm_solver_2m_steps_match() {
    let r = reference();
    for (i, case) in r["dpm_solver"].as_array().unwrap().iter().enumerate() {
        let x0_prev = case["x0_prev"].as_array().map(|_| tensor(&case["x0_prev"]));
        let (next, h) = dpm_solver_2m_update(
            &tensor(&case["x"]),
            &tensor(&case["x0"]),
            x0_prev.as_ref(),
            case["alpha_bar_s"].as_f64().unwrap(),
            case["alpha_bar_t"].as_f64().unwrap(),
            case["h_prev"].as_f64(),
        );
        let want_h = case["h"].as_f64().unwrap();
        assert!((h - want_h).abs() <= RTOL * want_h.abs() + ATOL, "step {i}: h = {h}, want {want_h}");
        assert_close(&format!("DPM-Solver++(2M) step {i}"), &next, &case["expected"]);
    }
}

#[test]
fn training_losses_match() {
    use difflow_engine::diffusion::loss::LossType;
    for c in process_cases() {
        let (x0, xt, noise, output) = (c.input("x0"), c.input("xt"), c.input("noise"), c.input("output"));
        let loss = |kind| c.p.training_loss(&output, &x0, &xt, &c.t, &noise, kind, None);
        c.check("simple loss", &loss(LossType::Simple).unwrap(), "loss_simple");
        c.check("vlb loss", &loss(LossType::Vlb).unwrap(), "loss_vlb");
        if c.json["learn_sigma"].as_bool().unwrap() {
            c.check("hybrid loss", &loss(LossType::Hybrid).unwrap(), "loss_hybrid");
        } else {
            assert!(loss(LossType::Hybrid).is_err(), "{}: hybrid needs learn_sigma", c.name);
        }
    }
}

/// The hybrid loss's VLB term trains only the variance: no gradient reaches the mean
/// (prediction) channels through it.
#[test]
fn hybrid_loss_stops_the_vlb_gradient_at_the_mean() {
    use difflow_engine::diffusion::loss::LossType;
    let tables = spec_of(&serde_json::json!({"variant": "cosine", "steps": 100})).tables();
    let model = ModelSpec { classes: 0, learn_sigma: true, prediction: Prediction::Eps };
    let p = Process::new(tables, model, VarianceType::Learned, DataSpace::points(None), Device::Cpu);
    let x0 = Tensor::from_slice(&[0.5f64, -0.3, 1.2, 0.1]).view([2, 2]);
    let noise = Tensor::from_slice(&[0.2f64, -1.0, 0.4, 0.9]).view([2, 2]);
    let t = Tensor::from_slice(&[3i64, 60]);
    let xt = p.q_sample(&x0, &t, &noise);
    let grads = |kind| {
        let output =
            Tensor::from_slice(&[0.1f64, -0.2, 0.3, 0.0, 0.5, -0.4, -0.6, 0.2]).view([2, 4]).set_requires_grad(true);
        let loss = p.training_loss(&output, &x0, &xt, &t, &noise, kind, None).unwrap().sum(Kind::Double);
        Tensor::run_backward(&[loss], &[&output], false, false).pop().unwrap()
    };
    let (simple, hybrid) = (grads(LossType::Simple), grads(LossType::Hybrid));
    let mean_diff = (simple.narrow(1, 0, 2) - hybrid.narrow(1, 0, 2)).abs().max().double_value(&[]);
    assert!(mean_diff < 1e-15, "the VLB term leaked {mean_diff} into the mean's gradient");
    assert!(hybrid.narrow(1, 2, 2).abs().max().double_value(&[]) > 1e-6, "the variance channels learn from the VLB");
}

/// On Gaussian data N(0, s²) the exact data prediction is known, and so is the probability
/// flow ODE's solution: x₀ = x_start · s / √(ᾱ_start s² + 1 − ᾱ_start). With 10 steps the
/// 2nd and 3rd orders are far more accurate than the 1st, which is DDIM (η = 0) on the same
/// (trailing) timesteps. (`scripts/reference_numbers.py`'s formulas in plain Python give the
/// same figures: relative errors 0.146, 0.049, 0.044.)
#[test]
fn dpm_solver_orders_converge_on_gaussian_data() {
    use difflow_core::diffusion::schedule::Spacing;
    use difflow_engine::diffusion::noise::{SampleNoise, STREAM_INIT};
    use difflow_engine::diffusion::sampler::{Guidance, SampleSetup, Sampler};

    let s2 = 0.25f64;
    let tables = spec_of(&serde_json::json!({"variant": "cosine", "steps": 1000})).tables();
    let ab = Tensor::from_slice(&tables.alphas_cumprod);
    // The exact ε-prediction for N(0, s²) data: x̂₀ = √ᾱ s² x / (ᾱ s² + 1 − ᾱ).
    let net = |x: &Tensor, t: &Tensor, _y: Option<&Tensor>| {
        let a = ab.index_select(0, t).to_kind(x.kind()).view([-1, 1]);
        let x0 = &a.sqrt() * s2 * x / (&a * s2 - &a + 1.0);
        (x - a.sqrt() * x0) / (-&a + 1.0).sqrt()
    };
    let model = ModelSpec { classes: 0, learn_sigma: false, prediction: Prediction::Eps };
    let indices: Vec<u64> = (0..64).collect();
    let noise = SampleNoise { seed: 1 };
    let run = |sampler: Sampler| {
        let setup = SampleSetup {
            tables: &tables,
            model,
            edm: None,
            space: DataSpace::points(None),
            sampler: &sampler,
            guidance: &Guidance::None,
            item_shape: &[1],
            noise,
            trajectory: 0,
            device: Device::Cpu,
        };
        let process = setup.process();
        let first = process.timestep_map.last().copied().unwrap() as usize;
        let out = setup.sample(&process, &net, &indices, None, &mut |_| {}).unwrap();
        let start = noise.normal(&indices, STREAM_INIT, &[1], Device::Cpu);
        let a = tables.alphas_cumprod[first];
        let exact = start * (s2.sqrt() / (a * s2 + 1.0 - a).sqrt());
        (&out.x0 - &exact).abs().max().double_value(&[])
    };
    let errors: Vec<f64> = (1..=3).map(|order| run(Sampler::DpmSolver { steps: 10, order })).collect();
    let ddim = run(Sampler::Ddim { steps: 10, eta: 0.0, spacing: Spacing::Trailing });
    println!(
        "10 steps, max error: DDIM {ddim:.2e}; DPM-Solver++ order 1 {:.2e}, 2 {:.2e}, 3 {:.2e}",
        errors[0], errors[1], errors[2]
    );
    assert!((errors[0] - ddim).abs() < 1e-5, "order 1 is DDIM");
    assert!(errors[1] < 0.4 * errors[0] && errors[2] < 0.4 * errors[0], "higher orders are more accurate: {errors:?}");
}

/// The samplers' reference values, computed now by `scripts/reference_numbers.py samplers`
/// with the project venv's numpy.
fn sampler_reference() -> Value {
    let out = std::process::Command::new(common::python())
        .arg(common::repo_root().join("scripts/reference_numbers.py"))
        .arg("samplers")
        .output()
        .expect("the venv's python runs");
    assert!(out.status.success(), "reference_numbers.py samplers failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("reference_numbers.py samplers prints JSON")
}

/// Karras σ samplers: k-diffusion's formulas in `scripts/reference_numbers.py` to 1e-5.
fn assert_near(what: &str, got: &Tensor, want: &Value) {
    let (got, want) = (values(got), values(&tensor(want)));
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{what}[{i}]: got {a}, want {b}");
    }
}

#[test]
fn karras_sigmas_and_step_rules_match_k_diffusion() {
    use difflow_core::params::sampler::karras_sigmas;
    use difflow_engine::diffusion::sampler::{sample_euler, sample_euler_ancestral, sample_heun};

    let r = sampler_reference();
    for case in r["sigmas"].as_array().unwrap() {
        let f = |k: &str| case[k].as_f64().unwrap();
        let got = karras_sigmas(case["steps"].as_u64().unwrap() as usize, f("sigma_min"), f("sigma_max"), f("rho"));
        assert_near("get_sigmas_karras", &Tensor::from_slice(&got), &case["expected"]);
    }
    let s = &r["steps"];
    let sigmas: Vec<f64> = s["sigmas"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let (x, noise) = (tensor(&s["x"]), tensor(&s["noise"]));
    let mut toy = |x: &Tensor, sigma: f64| Ok(x * (0.9 / (1.0 + sigma * sigma)) + x.tanh() * 0.1);
    assert_near("sample_euler", &sample_euler(x.copy(), &sigmas, &mut toy).unwrap(), &s["euler"]);
    assert_near("sample_heun", &sample_heun(x.copy(), &sigmas, &mut toy).unwrap(), &s["heun"]);
    let ancestral = sample_euler_ancestral(x.copy(), &sigmas, &mut toy, &mut |i| noise.get(i as i64)).unwrap();
    assert_near("sample_euler_ancestral", &ancestral, &s["euler_ancestral"]);
}

#[test]
fn karras_samplers_run_nets_of_discrete_schedules_with_guidance() {
    use difflow_engine::diffusion::noise::SampleNoise;
    use difflow_engine::diffusion::sampler::{Guidance, SampleSetup, Sampler};

    let r = sampler_reference();
    let chains = &r["chains"];
    let tables = spec_of(&serde_json::json!({"variant": "linear", "steps": 1000})).tables();
    let (x_init, mu) = (tensor(&chains["x_init"]), tensor(&chains["prototypes"]));
    let y = tensor(&chains["labels"]).to_kind(Kind::Int64);
    let net = |x: &Tensor, t: &Tensor, y: Option<&Tensor>| {
        let scale = (t.to_kind(Kind::Double) / 1000.0 + 0.5).view([-1, 1]);
        let out = x.tanh() * scale;
        match y {
            Some(y) => out + (y.to_kind(Kind::Double) * 0.1).view([-1, 1]),
            None => out,
        }
    };
    let classifier = Prototypes { mu };
    for case in chains["cases"].as_array().unwrap() {
        let name = format!("{} {} {}", case["sampler"], case["prediction"], case["guidance"]);
        let prediction = match case["prediction"].as_str().unwrap() {
            "eps" => Prediction::Eps,
            "v" => Prediction::V,
            _ => Prediction::X0,
        };
        let guidance = match case["guidance"].as_str() {
            Some("cfg") => Guidance::Cfg { scale: 2.0, interval: None },
            Some(_) => Guidance::Classifier { classifier: &classifier, scale: 1.5 },
            None => Guidance::None,
        };
        let sampler = match case["sampler"].as_str().unwrap() {
            "euler" => Sampler::Euler { steps: 4, rho: 7.0, sigma_min: None, sigma_max: None },
            _ => Sampler::Heun { steps: 4, rho: 7.0, sigma_min: None, sigma_max: None },
        };
        let setup = SampleSetup {
            tables: &tables,
            model: ModelSpec { classes: 3, learn_sigma: false, prediction },
            edm: None,
            space: DataSpace::points(None),
            sampler: &sampler,
            guidance: &guidance,
            item_shape: &[2],
            noise: SampleNoise { seed: 0 },
            trajectory: 0,
            device: Device::Cpu,
        };
        let labels = case["guidance"].as_str().map(|_| &y);
        let mut evaluations = 0;
        let out = setup
            .sample_from(&setup.process(), &net, x_init.copy(), &[0, 1], labels, &mut |k| evaluations = k)
            .unwrap();
        assert_near(&name, &out.x0, &case["expected"]);
        assert_eq!(evaluations, sampler.steps(1000), "{name}: progress counts every evaluation");
    }
}
