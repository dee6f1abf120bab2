//! diffusers in and out, with diffusers itself as the oracle
//! (`engine/tests/reference/diffusers_oracle.py`, run offline): a `UNet2DModel` saved by
//! diffusers gives the same ε in difflow, a DDIM chain ends at the same images, and a
//! difflow UNet exported to a folder loads in diffusers with the same output.

mod common;

use std::path::Path;

use common::oracle;
use std::sync::OnceLock;

use difflow_core::diffusers::{self, UNet2DConfig};
use difflow_core::diffusion::schedule::{ScheduleSpec, Spacing};
use difflow_engine::artifacts::{TrainMeta, EMA_FILE};
use difflow_engine::data::{DataMeta, DataType};
use difflow_engine::diffusion::loss::LossType;
use difflow_engine::diffusion::noise::SampleNoise;
use difflow_engine::diffusion::sampler::{Guidance, SampleSetup, Sampler};
use difflow_engine::diffusion::DataSpace;
use difflow_engine::models::build_denoiser;
use difflow_engine::stages::export::write_folder;
use difflow_engine::stages::pretrained::{convert, model_config};
use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

fn read(path: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// The folder diffusers saved and difflow's stage entry converted from it (made once).
fn made() -> &'static (tempfile::TempDir, TrainMeta) {
    static MADE: OnceLock<(tempfile::TempDir, TrainMeta)> = OnceLock::new();
    MADE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        oracle("make", dir.path());
        let files = diffusers::locate(&dir.path().join("pipeline")).unwrap();
        let pretrained = diffusers::read(&files, &Default::default()).unwrap();
        let entry = dir.path().join("entry");
        std::fs::create_dir_all(&entry).unwrap();
        let meta = convert(&pretrained, &files.weights, &entry).unwrap();
        (dir, meta)
    })
}

#[test]
fn ho_et_al_cifar10_in_diffusers_layout_has_35_746_307_parameters() {
    // google/ddpm-cifar10-32's config.json.
    let config = json!({
        "_class_name": "UNet2DModel", "attention_head_dim": null, "block_out_channels": [128, 256, 256, 256],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3,
        "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
        "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    });
    let net = UNet2DConfig::parse(&config.to_string()).unwrap().to_difflow().unwrap();
    let process = diffusers::SchedulerConfig::parse("{}").unwrap().to_difflow(&Default::default()).unwrap();
    let model = model_config(&diffusers::Pretrained { net: net.clone(), process });
    let vs = nn::VarStore::new(Device::Cpu);
    let data = DataMeta { data_type: DataType::Images, shape: vec![3, 32, 32], classes: 0, count: 0, flip: false };
    build_denoiser(&vs.root(), &model, &data).unwrap();
    let params: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    assert_eq!(params, 35_746_307);
    // Every tensor has a diffusers name: the export side of the same map.
    let tensors = difflow_engine::models::diffusers::export_weights(&vs, &net.net, 32, false).unwrap();
    assert_eq!(tensors.iter().map(|(_, t)| t.numel() as i64).sum::<i64>(), params);
}

#[test]
fn a_unet_saved_by_diffusers_gives_the_same_eps_in_difflow() {
    let (dir, meta) = made();
    let oracle = read(&dir.path().join("oracle.safetensors"));
    let (_vs, model) = meta.load_model(&dir.path().join("entry"), true, Device::Cpu).unwrap();
    let eps = tch::no_grad(|| model.forward(&oracle["x"], &oracle["t"], None, false));
    let scale = oracle["eps"].abs().max().double_value(&[]);
    let diff = max_diff(&eps, &oracle["eps"]);
    println!("diffusers → difflow: max |Δε| = {diff:.3e} (output scale {scale:.3})");
    assert!(scale > 0.1, "the oracle's output is trivially small ({scale})");
    assert!(diff < 1e-4, "difflow's ε differs from diffusers' by {diff}");
}

#[test]
fn a_ddim_chain_ends_at_the_images_diffusers_reaches() {
    let (dir, meta) = made();
    let oracle = read(&dir.path().join("oracle.safetensors"));
    let (_vs, model) = meta.load_model(&dir.path().join("entry"), true, Device::Cpu).unwrap();
    let sampler = Sampler::Ddim { steps: 10, eta: 0.0, spacing: Spacing::Trailing };
    let timesteps: Vec<i64> = sampler.timesteps(1000).into_iter().rev().map(|t| t as i64).collect();
    assert_eq!(Vec::<i64>::try_from(&oracle["ddim_timesteps"]).unwrap(), timesteps, "the same 10 timesteps");
    let setup = SampleSetup {
        tables: &meta.schedule.tables(),
        model: meta.model_spec,
        edm: None,
        space: DataSpace::images(),
        sampler: &sampler,
        guidance: &Guidance::None,
        item_shape: &[3, 16, 16],
        noise: SampleNoise { seed: 0 },
        trajectory: 0,
        device: Device::Cpu,
    };
    let process = setup.process();
    let net = |x: &Tensor, t: &Tensor, _y: Option<&Tensor>| model.forward(&x.to_kind(Kind::Float), t, None, false);
    let x_t = oracle["x_T"].shallow_clone();
    let samples = tch::no_grad(|| setup.sample_from(&process, &net, x_t, &[0, 1], None, &mut |_| {})).unwrap();
    let diff = max_diff(&samples.x0.to_kind(Kind::Float), &oracle["x_0"]);
    println!("DDIM (η = 0, 10 trailing steps): max |Δx₀| = {diff:.3e}");
    assert!(diff < 1e-3, "difflow's DDIM chain ends {diff} away from diffusers'");
}

#[test]
fn a_difflow_unet_exported_loads_in_diffusers_with_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let entry = dir.path().join("entry");
    std::fs::create_dir_all(&entry).unwrap();
    // Scale-shift norm, two heads, three classes (and the null class) and learned variance:
    // the options a UNet2DModel has too.
    let model = difflow_core::schema::with_defaults(
        "model",
        "unet",
        &json!({"kind": "model", "variant": "unet", "channels": 32, "mults": [1, 2], "res_blocks": 1,
                "attention": [8], "heads": 2, "dropout": 0.0, "scale_shift": true, "classes": 3,
                "learn_sigma": true}),
    );
    let data = DataMeta { data_type: DataType::Images, shape: vec![1, 16, 16], classes: 3, count: 0, flip: false };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build_denoiser(&vs.root(), &model, &data).unwrap();
    tch::manual_seed(3);
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            let r = v.randn_like() * 0.1;
            v.copy_(&r);
        }
    });
    vs.save(entry.join(EMA_FILE)).unwrap();
    let schedule = ScheduleSpec::Cosine { steps: 100, s: 0.008, max_beta: 0.999, zero_terminal_snr: false };
    let meta = TrainMeta {
        model_spec: difflow_engine::models::ModelSpec::from_config(&model).unwrap(),
        model,
        schedule_config: json!({"kind": "schedule", "variant": "cosine", "steps": 100}),
        schedule: schedule.clone(),
        data,
        loss: LossType::Hybrid,
        steps: 1,
        final_loss: Some(1.0),
        data_bound: None,

        edm: None,
    };
    write_folder(&meta, &entry, &dir.path().join("pipeline")).unwrap();

    let x = Tensor::randn([3, 1, 16, 16], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[0i64, 41, 99]);
    let y = Tensor::from_slice(&[0i64, 2, 3]); // 3: the null class
    Tensor::write_safetensors(&[("x", &x), ("t", &t), ("y", &y)], dir.path().join("inputs.safetensors")).unwrap();
    oracle("check", dir.path());
    let theirs = read(&dir.path().join("oracle.safetensors"));
    let ours = tch::no_grad(|| net.forward(&x, &t, Some(&y), false));
    let diff = max_diff(&ours, &theirs["eps"]);
    println!("difflow → diffusers: max |Δ output| = {diff:.3e}");
    assert!(theirs["eps"].abs().max().double_value(&[]) > 0.1);
    assert!(diff < 1e-4, "diffusers' output differs from difflow's by {diff}");
    let ab = Tensor::from_slice(&schedule.tables().alphas_cumprod);
    let ab_diff = max_diff(&ab, &theirs["alphas_cumprod"]);
    assert!(ab_diff < 1e-6, "diffusers' ᾱ differs from difflow's by {ab_diff}");
}
