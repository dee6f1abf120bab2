use serde_json::json;

use super::config::{scheduler_config, unet_config};
use super::*;
use crate::diffusion::schedule::ScheduleSpec;

/// google/ddpm-cifar10-32's `config.json` (Ho et al.'s net as diffusers stores it).
fn ddpm_cifar10() -> serde_json::Value {
    json!({
        "_class_name": "UNet2DModel", "_diffusers_version": "0.1.1", "act_fn": "silu",
        "attention_head_dim": null, "block_out_channels": [128, 256, 256, 256], "center_input_sample": false,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3,
        "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
        "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    })
}

fn parse(v: serde_json::Value) -> Result<PretrainedNet, ConfigError> {
    UNet2DConfig::parse(&v.to_string())?.to_difflow()
}

#[test]
fn ho_et_al_cifar10_maps_onto_difflows_unet_with_its_layout() {
    let p = parse(ddpm_cifar10()).unwrap();
    assert_eq!((p.in_channels, p.size, p.classes, p.learn_sigma), (3, 32, 0, false));
    let n = &p.net;
    assert_eq!(
        (n.channels, n.mults.clone(), n.res_blocks, n.attention.clone(), n.heads),
        (128, vec![1, 2, 2, 2], 2, vec![16], 1)
    );
    assert_eq!((n.layout.norm_eps, n.layout.norm_groups, n.layout.downsample_padding), (1e-6, Some(32), 0));
    assert_eq!((n.layout.flip_sin_to_cos, n.layout.freq_shift), (false, 1.0));
}

#[test]
fn an_exported_config_reads_back_as_the_same_net() {
    let p = parse(ddpm_cifar10()).unwrap();
    let out = unet_config(&p.net, 3, 32, 10, true).unwrap();
    assert_eq!(out["num_class_embeds"], 11);
    assert_eq!(out["out_channels"], 6);
    let back = parse(out).unwrap();
    assert_eq!(back.net, p.net);
    assert_eq!((back.classes, back.learn_sigma), (10, true));
}

#[test]
fn unsupported_options_are_named() {
    let mut c = ddpm_cifar10();
    c["down_block_types"][1] = json!("CrossAttnDownBlock2D");
    let e = parse(c).unwrap_err();
    assert!(e.message.contains("`CrossAttnDownBlock2D` in `down_block_types`"), "{e}");
    let mut c = ddpm_cifar10();
    c["time_embedding_type"] = json!("fourier");
    assert!(parse(c).unwrap_err().message.contains("`time_embedding_type` = \"fourier\""));
    let mut c = ddpm_cifar10();
    c["up_block_types"][2] = json!("UpBlock2D");
    assert!(parse(c).unwrap_err().message.contains("attends on the way down but not up"));
}

#[test]
fn a_fixed_head_width_must_give_one_head_count() {
    let mut c = ddpm_cifar10();
    c["attention_head_dim"] = json!(64);
    assert_eq!(parse(c.clone()).unwrap().net.heads, 4);
    c["block_out_channels"] = json!([128, 256, 256, 512]);
    assert!(parse(c).unwrap_err().message.contains("different head counts"));
}

#[test]
fn export_names_the_difflow_option_that_stops_it() {
    let mut net = parse(ddpm_cifar10()).unwrap().net;
    net.layout = Default::default();
    net.channels = 16;
    let e = unet_config(&net, 3, 32, 0, false).unwrap_err();
    assert!(e.message.contains("`channels = 16`"), "{e}");
    net.channels = 64;
    net.heads = 2;
    net.mults = vec![1, 2, 4];
    let e = unet_config(&net, 3, 32, 0, false).unwrap_err();
    assert!(e.message.contains("`heads = 2`"), "{e}");
}

fn scheduler(v: serde_json::Value) -> Result<PretrainedProcess, ConfigError> {
    SchedulerConfig::parse(&v.to_string())?.to_difflow(&crate::net_size::SizeLimits::default())
}

#[test]
fn scheduler_configs_map_onto_schedules() {
    let linear = scheduler(json!({"_class_name": "DDPMScheduler", "num_train_timesteps": 1000})).unwrap();
    assert_eq!(
        linear.schedule,
        ScheduleSpec::Linear { steps: 1000, start: 1e-4, end: 0.02, scale_with_steps: false, zero_terminal_snr: false }
    );
    assert_eq!(linear.prediction, "eps");
    let cos = scheduler(json!({"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 10,
                               "prediction_type": "v_prediction"}))
    .unwrap();
    assert!(matches!(cos.schedule, ScheduleSpec::Cosine { steps: 10, .. }));
    assert_eq!(cos.prediction, "v");
    // diffusers: betas = sigmoid(linspace(-6, 6, T)) · (end − start) + start.
    let sig = scheduler(json!({"beta_schedule": "sigmoid", "num_train_timesteps": 3})).unwrap();
    let ScheduleSpec::Betas { betas } = sig.schedule else { panic!("explicit betas") };
    let expected =
        [0.0001 + 0.0199 / (1.0 + 6f64.exp()), 0.0001 + 0.0199 * 0.5, 0.0001 + 0.0199 / (1.0 + (-6f64).exp())];
    for (b, e) in betas.iter().zip(expected) {
        assert!((b - e).abs() < 1e-15, "{b} vs {e}");
    }
    let e = scheduler(json!({"beta_schedule": "scaled_linear"})).unwrap_err();
    assert!(e.message.contains("`beta_schedule` = \"scaled_linear\""), "{e}");
    let e = scheduler(json!({"_class_name": "EulerDiscreteScheduler"})).unwrap_err();
    assert!(e.message.contains("EulerDiscreteScheduler"), "{e}");
}

#[test]
fn exported_schedules_read_back_with_the_same_betas() {
    for spec in [
        ScheduleSpec::Linear { steps: 100, start: 1e-4, end: 0.02, scale_with_steps: true, zero_terminal_snr: false },
        ScheduleSpec::Cosine { steps: 50, s: 0.008, max_beta: 0.999, zero_terminal_snr: false },
        ScheduleSpec::Sigmoid { steps: 20, start: -3.0, end: 3.0, tau: 1.0, zero_terminal_snr: false },
    ] {
        let back = scheduler(scheduler_config(&spec, "x0", false)).unwrap();
        assert_eq!(back.prediction, "x0");
        for (a, b) in back.schedule.betas().iter().zip(spec.betas()) {
            assert!((a - b).abs() < 1e-15, "{spec:?}: {a} vs {b}");
        }
    }
}

#[test]
fn the_module_map_covers_both_halves_and_the_middle() {
    let net = parse(ddpm_cifar10()).unwrap().net;
    let map = module_map(&net, 32, false);
    let find = |ours: &str| map.iter().find(|m| m.difflow == ours).map(|m| m.diffusers.as_str());
    assert_eq!(find("input_blocks.3.0.op"), Some("down_blocks.0.downsamplers.0.conv"));
    assert_eq!(find("input_blocks.4.1.norm"), Some("down_blocks.1.attentions.0.group_norm"));
    assert_eq!(find("output_blocks.2.1.conv"), Some("up_blocks.0.upsamplers.0.conv"));
    assert_eq!(find("output_blocks.8.2.conv"), Some("up_blocks.2.upsamplers.0.conv"));
    assert_eq!(find("middle_block.2.out_layers.3"), Some("mid_block.resnets.1.conv2"));
    assert_eq!(find("out.2"), Some("conv_out"));
}

#[test]
fn numbers_the_worker_cannot_build_are_refused_by_name() {
    let limits = crate::net_size::SizeLimits::default();
    let mapped = |field: &str, value: serde_json::Value| {
        let mut c = ddpm_cifar10();
        c[field] = value;
        parse(c).and_then(|net| limits::check_net_size(&net, &limits)).unwrap_err().message
    };
    let big = 1i64 << 40;
    assert!(mapped("block_out_channels", json!([1_000_000, 2_000_000, 2_000_000, 2_000_000]))
        .contains("`block_out_channels` [1000000, 2000000, 2000000, 2000000] with `layers_per_block` = 2 give"));
    assert!(mapped("in_channels", json!(0)).contains("`in_channels` = 0 is out of range"));
    assert!(mapped("norm_num_groups", json!(0)).contains("`norm_num_groups` = 0 is out of range"));
    assert!(mapped("norm_num_groups", json!(48)).contains("`norm_num_groups` = 48 does not divide the 128 channels"));
    assert!(mapped("num_class_embeds", json!(big)).contains("`num_class_embeds` gives a UNet of"));
    assert!(mapped("sample_size", json!(big)).contains("`sample_size` gives a UNet that needs about"));
    assert!(mapped("layers_per_block", json!(0)).contains("`layers_per_block` = 0 is out of range"));
    assert!(mapped("dropout", json!(1.5)).contains("`dropout` = 1.5 is out of range"));
    let steps = scheduler(json!({"num_train_timesteps": big})).unwrap_err();
    assert!(steps.message.contains("`num_train_timesteps` = 1099511627776 is out of range"), "{steps}");
    let end = scheduler(json!({"beta_end": 5.0})).unwrap_err();
    assert!(end.message.contains("`beta_end` = 5 is out of range") && end.help.contains("0 < x < 1"), "{end}");
    let order = scheduler(json!({"beta_schedule": "sigmoid", "beta_start": 0.02, "beta_end": 0.01})).unwrap_err();
    assert!(order.message.contains("`beta_start` = 0.02 is not below `beta_end` = 0.01"), "{order}");
    let betas = scheduler(json!({"trained_betas": [0.1, 1.5]})).unwrap_err();
    assert!(betas.message.contains("`trained_betas[1]` = 1.5"), "{betas}");
}
