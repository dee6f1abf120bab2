//! EDM end to end, in process: gaussians8 → an MLP trained with `precondition = "edm"`
//! (log-normal σ, the net seeing c_noise = ln(σ)/4) → Heun and Euler samples on EDM's σ
//! range, which must cover every mode and lie near them. A wrong preconditioning, a net
//! that cannot read its real-valued timestep or a sampler that ignores EDM gives samples
//! that do neither.

mod common;

use std::path::Path;

use common::{input, stage_job};
use difflow_engine::data::toy::gaussians8_centres;
use difflow_engine::data::Dataset;
use serde_json::{json, Value};

fn run(kind: &str, variant: &str, params: Value, inputs: &[(&str, &str, &Path)], out: &Path) {
    let inputs = inputs.iter().map(|(name, kind, dir)| (name.to_string(), input(kind, "", dir)));
    let job = stage_job(&format!("{kind}-{variant}"), (kind, variant), &params, inputs, out);
    difflow_engine::stages::run(&job).unwrap();
}

/// The share of `points` within `radius` of their nearest mode, and the smallest share of
/// points any mode is nearest to.
fn near_and_coverage(points: &[[f32; 2]], radius: f64) -> (f64, f64) {
    let centres = gaussians8_centres();
    let mut counts = [0usize; 8];
    let mut near = 0;
    for p in points {
        let distance = |c: &[f64; 2]| ((p[0] as f64 - c[0]).powi(2) + (p[1] as f64 - c[1]).powi(2)).sqrt();
        let (k, d) = centres.iter().map(distance).enumerate().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        counts[k] += 1;
        near += usize::from(d < radius);
    }
    let n = points.len() as f64;
    (near as f64 / n, counts.iter().map(|&c| c as f64 / n).fold(1.0, f64::min))
}

#[test]
fn an_edm_trained_net_samples_the_modes() {
    let root = tempfile::tempdir().unwrap();
    let (data, train) = (root.path().join("data"), root.path().join("train"));
    let dataset = json!({"shape": "gaussians8", "count": 4000, "noise": 0.1, "seed": 0});
    run("dataset", "toy", dataset, &[], &data);
    let params = json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 128, "layers": 3},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 100},
        "loss": "simple", "steps": 600, "batch": 256, "lr": 2e-3, "warmup": 50,
        "grad_clip": 1.0, "ema": 0.995, "seed": 0, "checkpoint_every": 0,
        "precondition": "edm", "sigma_data": 1.0, "lr_schedule": "cosine"
    });
    run("train", "diffusion", params, &[("points", "dataset", &data)], &train);

    // The data's noise is σ = 0.1: 0.4 is 4σ (99.97 % of the real data lies within it).
    for variant in ["heun", "euler"] {
        let out = root.path().join(variant);
        let sampler = json!({"kind": "sampler", "variant": variant, "steps": 20, "rho": 7.0});
        let params = json!({"from": {"$stage": "fit"}, "sampler": sampler, "count": 1000, "seed": 1, "batch": 500});
        run("sample", "default", params, &[("fit", "train", &train)], &out);
        let values = Dataset::read(&out).unwrap().values;
        let flat: Vec<f32> = Vec::try_from(values.flatten(0, -1)).unwrap();
        let points: Vec<[f32; 2]> = flat.chunks(2).map(|p| [p[0], p[1]]).collect();
        let (near, fewest) = near_and_coverage(&points, 0.4);
        println!("{variant}: {:.1} % within 0.4 of a mode; the emptiest mode {:.1} %", 100.0 * near, 100.0 * fewest);
        assert!(fewest >= 0.05, "{variant}: a mode holds only {:.1} % of the samples", 100.0 * fewest);
        assert!(near >= 0.80, "{variant}: only {:.1} % of samples lie near a mode", 100.0 * near);
    }
}
