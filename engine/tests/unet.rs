//! The UNet and the encoder: parameter counts against the paper, output shapes, and a
//! numerical cross-check against the PyTorch reference (`bench/unet_reference.py`) with
//! identical weights.

use std::path::{Path, PathBuf};
use std::process::Command;

use difflow_core::schema::with_defaults;
use difflow_core::unet::ConvNet;
use difflow_engine::data::{DataMeta, DataType};
use difflow_engine::models::encoder::Encoder;
use difflow_engine::models::unet::{UNet, UNetConfig};
use difflow_engine::models::{build_classifier, build_denoiser};
use difflow_engine::stages::describe::{describe, unet_params};
use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `. scripts/setup.sh` first (it creates the venv with torch)", p.display());
    p
}

/// A `model` config object with the schema's defaults filled in, as the front end fills it
/// (Ho et al.'s net is additive: its configs say `scale_shift = false`, the default's opposite).
fn model(config: Value) -> Value {
    with_defaults("model", config["variant"].as_str().unwrap(), &config)
}

fn unet(config: Value) -> UNetConfig {
    difflow_engine::params::decode(&model(config), "the test's unet").unwrap()
}

fn ho_cifar10() -> UNetConfig {
    unet(json!({"kind": "model", "variant": "unet", "channels": 128, "mults": [1, 2, 2, 2], "res_blocks": 2,
                "attention": [16], "heads": 1, "dropout": 0.1, "scale_shift": false}))
}

#[test]
fn ho_et_al_cifar10_unet_has_35_746_307_parameters() {
    assert_eq!(unet_params(&ho_cifar10(), [3, 32, 32]).unwrap(), 35_746_307);
}

#[test]
fn describe_lists_levels_and_counts_like_the_paper() {
    let config = model(json!({"kind": "model", "variant": "unet", "channels": 128, "mults": [1, 2, 2, 2],
                        "res_blocks": 2, "attention": [16], "dropout": 0.1, "scale_shift": false}));
    let d = describe(&config, &[3, 32, 32], 0).unwrap();
    assert_eq!(d.params, 35_746_307);
    let levels: Vec<(i64, i64, bool)> = d.levels.iter().map(|l| (l.resolution, l.channels, l.attention)).collect();
    assert_eq!(levels, vec![(32, 128, false), (16, 256, true), (8, 256, false), (4, 256, false)]);
    // Class conditioning adds (classes + 1) × 4C embedding rows; learn_sigma doubles the
    // output conv's filters (C_out · C · 9 + C_out more).
    let conditional = model(json!({"kind": "model", "variant": "unet", "channels": 128, "mults": [1, 2, 2, 2],
                             "res_blocks": 2, "attention": [16], "classes": 10, "learn_sigma": true,
                             "scale_shift": false}));
    let d2 = describe(&conditional, &[3, 32, 32], 0).unwrap();
    assert_eq!(d2.params, 35_746_307 + 11 * 512 + (3 * 128 * 9 + 3));
}

#[test]
fn describe_encoder_counts_its_head_for_the_classes() {
    let config = model(json!({"kind": "model", "variant": "encoder", "channels": 32, "mults": [1, 2], "res_blocks": 1,
                        "attention": []}));
    let ten = describe(&config, &[1, 28, 28], 10).unwrap();
    let two = describe(&config, &[1, 28, 28], 2).unwrap();
    assert_eq!(ten.params - two.params, 8 * (64 + 1));
}

#[test]
fn unet_rejects_sizes_its_levels_cannot_halve() {
    let vs = nn::VarStore::new(Device::Cpu);
    let err = UNet::new(&vs.root(), &ho_cifar10(), 3, 28).unwrap_err().to_string();
    assert!(err.contains("28-pixel images are not divisible by 8"), "{err}");
}

fn small(scale_shift: bool, heads: i64, classes: i64, learn_sigma: bool) -> UNetConfig {
    unet(json!({"kind": "model", "variant": "unet", "channels": 32, "mults": [1, 2], "res_blocks": 1,
                "attention": [8], "heads": heads, "dropout": 0.0, "scale_shift": scale_shift, "classes": classes,
                "learn_sigma": learn_sigma}))
}

#[test]
fn unet_output_shape_and_zero_initialised_output() {
    let vs = nn::VarStore::new(Device::Cpu);
    let meta = DataMeta { data_type: DataType::Images, shape: vec![1, 16, 16], classes: 10, count: 0, flip: false };
    let config = model(json!({"kind": "model", "variant": "unet", "channels": 32, "mults": [1, 2], "res_blocks": 1,
                        "attention": [8], "classes": 10, "learn_sigma": true}));
    let net = build_denoiser(&vs.root(), &config, &meta).unwrap();
    let x = Tensor::randn([4, 1, 16, 16], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[0i64, 10, 500, 999]);
    let y = Tensor::from_slice(&[0i64, 3, 9, 10]); // 10: the null class
    let out = net.forward(&x, &t, Some(&y), false);
    assert_eq!(out.size(), vec![4, 2, 16, 16]);
    // IDDPM zero-initialises the last conv: an untrained net predicts exactly 0.
    assert_eq!(out.abs().max().double_value(&[]), 0.0);
}

/// Fills every variable with N(0, 0.2²) so that zero-initialised layers do something.
fn randomise(vs: &nn::VarStore) {
    tch::manual_seed(7);
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            let r = v.randn_like() * 0.2;
            v.copy_(&r);
        }
    });
}

fn cross_check(config: &UNetConfig, in_ch: i64, size: i64) {
    let dir = tempfile::tempdir().unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), config, in_ch, size).unwrap();
    randomise(&vs);
    vs.save(dir.path().join("weights.safetensors")).unwrap();
    let x = Tensor::randn([3, in_ch, size, size], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[0i64, 417, 999]);
    let mut inputs = vec![("x", x.shallow_clone()), ("t", t.shallow_clone())];
    let classes = config.spec.classes as i64;
    let y = (classes > 0).then(|| Tensor::from_slice(&[0i64, classes - 1, classes]));
    if let Some(y) = &y {
        inputs.push(("y", y.shallow_clone()));
    }
    Tensor::write_safetensors(&inputs, dir.path().join("inputs.safetensors")).unwrap();
    let ours = tch::no_grad(|| net.forward(&x, &t, y.as_ref(), false));

    let net = &config.net;
    let cfg = json!({"in_ch": in_ch, "size": size, "channels": net.channels, "mults": net.mults,
                     "res_blocks": net.res_blocks, "attention": net.attention, "heads": net.heads,
                     "dropout": net.dropout, "scale_shift": net.scale_shift, "classes": classes,
                     "learn_sigma": config.spec.learn_sigma});
    let status = Command::new(python())
        .arg(repo().join("bench/unet_reference.py"))
        .args(["--config", &cfg.to_string(), "--check"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "the PyTorch reference failed (names/shapes must match exactly)");
    let theirs = Tensor::read_safetensors(dir.path().join("outputs.safetensors")).unwrap().remove(0).1;
    assert_eq!(ours.size(), theirs.size());
    let scale = theirs.abs().max().double_value(&[]);
    let diff = (&ours - &theirs).abs().max().double_value(&[]);
    assert!(scale > 1e-2, "the reference output is trivially small ({scale})");
    assert!(diff <= 1e-4 * scale.max(1.0), "difflow and PyTorch differ by {diff} (output scale {scale})");
}

#[test]
fn unet_matches_the_pytorch_reference_with_scale_shift_heads_and_classes() {
    cross_check(&small(true, 2, 3, true), 1, 16);
}

#[test]
fn unet_matches_the_pytorch_reference_additive_unconditional() {
    cross_check(&small(false, 1, 0, false), 3, 16);
}

#[test]
fn encoder_clean_and_noisy() {
    let config = ConvNet {
        channels: 32,
        mults: vec![1, 2],
        res_blocks: 1,
        attention: vec![8],
        heads: 1,
        dropout: 0.0,
        scale_shift: true,
        layout: Default::default(),
    };
    let clean_vs = nn::VarStore::new(Device::Cpu);
    let clean = Encoder::new(&clean_vs.root(), &config, 1, 16, 10, false).unwrap();
    let noisy_vs = nn::VarStore::new(Device::Cpu);
    let noisy = Encoder::new(&noisy_vs.root(), &config, 1, 16, 10, true).unwrap();
    let names = |vs: &nn::VarStore| vs.variables().into_keys().collect::<std::collections::BTreeSet<_>>();
    assert!(!names(&clean_vs).iter().any(|n| n.starts_with("time_embed") || n.contains("emb_layers")));
    assert!(names(&noisy_vs).contains("time_embed.0.weight"));
    randomise(&noisy_vs);
    let x = Tensor::randn([5, 1, 16, 16], (Kind::Float, Device::Cpu));
    assert_eq!(clean.forward(&x, None, false).size(), vec![5, 10]);
    // A noisy classifier's logits depend on t.
    let a = noisy.forward(&x, Some(&Tensor::from_slice(&[10i64; 5])), false);
    let b = noisy.forward(&x, Some(&Tensor::from_slice(&[900i64; 5])), false);
    assert!((a - b).abs().max().double_value(&[]) > 1e-3);
    // The builder reads `noisy` from the recorded model config.
    let meta = DataMeta { data_type: DataType::Images, shape: vec![1, 16, 16], classes: 10, count: 0, flip: false };
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = model(json!({"kind": "model", "variant": "encoder", "channels": 32, "mults": [1, 2], "res_blocks": 1,
                     "attention": [8], "noisy": true}));
    build_classifier(&vs.root(), &cfg, &meta, 10).unwrap();
    assert_eq!(names(&vs), names(&noisy_vs));
}

/// How much the output of `config`'s net (random weights) changes with the label, and with
/// the timestep.
fn label_and_time_effect(config: Value) -> (f64, f64) {
    let vs = nn::VarStore::new(Device::Cpu);
    let meta = DataMeta { data_type: DataType::Images, shape: vec![1, 8, 8], classes: 10, count: 0, flip: false };
    let net = build_denoiser(&vs.root(), &model(config), &meta).unwrap();
    randomise(&vs);
    let x = Tensor::randn([1, 1, 8, 8], (Kind::Float, Device::Cpu)).repeat([2, 1, 1, 1]);
    let out = |t: [i64; 2], y: [i64; 2]| {
        let o = tch::no_grad(|| net.forward(&x, &Tensor::from_slice(&t), Some(&Tensor::from_slice(&y)), false));
        let scale = o.abs().max().double_value(&[]);
        assert!(scale > 1e-2, "trivially small output ({scale})");
        (o.get(0) - o.get(1)).abs().max().double_value(&[]) / scale
    };
    (out([500, 500], [3, 10]), out([10, 900], [3, 3]))
}

#[test]
fn at_one_channel_per_group_only_scale_shift_lets_the_label_and_time_through() {
    // 8 and 16 channels: every GroupNorm normalises single channels, so an embedding added
    // before it is subtracted out again (rounding is all that is left); applied after the
    // norm as scale and shift, it changes the output.
    let net = |scale_shift: bool| {
        json!({"kind": "model", "variant": "unet", "channels": 8, "mults": [1, 2], "res_blocks": 1,
               "attention": [], "classes": 10, "dropout": 0.0, "scale_shift": scale_shift})
    };
    let (label, time) = label_and_time_effect(net(false));
    println!("additive: label {label:.1e}, time {time:.1e} of the output scale");
    assert!(label < 1e-4 && time < 1e-4, "additive: label {label}, time {time}");
    let (label, time) = label_and_time_effect(net(true));
    println!("scale-shift: label {label:.1e}, time {time:.1e} of the output scale");
    assert!(label > 1e-2 && time > 1e-2, "scale-shift: label {label}, time {time}");
}
