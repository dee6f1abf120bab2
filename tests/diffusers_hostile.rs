//! diffusers folders whose configs would make the worker allocate terabytes, divide by
//! zero or compute NaN: `difflow check` (the real binary, under `prlimit --as` 1 GiB and
//! `timeout`) refuses each with exit 1, naming the file and the option.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const MEMORY_LIMIT: u64 = 1 << 30;
const TIME_LIMIT_S: u64 = 30;

/// A small UNet2DModel config difflow reads (two levels, attention at 8×8).
fn unet() -> Value {
    json!({
        "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": null,
        "block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "in_channels": 3, "out_channels": 3,
        "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 16
    })
}

fn scheduler() -> Value {
    json!({"_class_name": "DDPMScheduler", "num_train_timesteps": 100, "beta_schedule": "linear"})
}

/// Writes a model folder (`config.json`, `scheduler_config.json`, a stand-in weights file:
/// `check` reads only the configs) and a pipeline reading it.
fn project(dir: &Path, unet: &Value, scheduler: &Value) {
    let model = dir.join("m");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), unet.to_string()).unwrap();
    std::fs::write(model.join("scheduler_config.json"), scheduler.to_string()).unwrap();
    std::fs::write(model.join("diffusion_pytorch_model.safetensors"), b"stand-in").unwrap();
    std::fs::write(
        dir.join("p.diff"),
        "pretrained m = diffusers { path = \"m\" }\nsample gen { from = m, sampler = ddim { steps = 5 }, count = 1 }\n",
    )
    .unwrap();
}

/// `difflow check p.diff` under the memory and time limits: (exit code, output).
fn check_limited(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new("prlimit")
        .arg(format!("--as={MEMORY_LIMIT}"))
        .args(["timeout", "-s", "KILL", &TIME_LIMIT_S.to_string(), env!("CARGO_BIN_EXE_difflow"), "check", "p.diff"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("prlimit (util-linux) and timeout (coreutils) run");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), unwrapped(&output))
}

/// The report with its wrapped lines joined (a long message continues on `│ ` lines).
fn unwrapped(report: &str) -> String {
    let lines = report.lines().map(|l| l.trim_start().trim_start_matches('│').trim());
    lines.collect::<Vec<_>>().join(" ")
}

#[test]
fn the_untouched_folder_passes() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path(), &unet(), &scheduler());
    let (code, output) = check_limited(tmp.path());
    assert_eq!(code, Some(0), "{output}");
}

#[test]
fn every_hostile_option_is_refused_by_name() {
    let big = 1i64 << 40;
    // (the file, the option, its value, what the message must say)
    let cases: [(&str, &str, Value, &str); 8] = [
        (
            "config.json",
            "block_out_channels",
            json!([1_000_000, 1_000_000]),
            "`block_out_channels` [1000000, 1000000] with `layers_per_block` = 1 give a UNet of",
        ),
        ("config.json", "in_channels", json!(0), "`in_channels` = 0 is out of range"),
        ("config.json", "norm_num_groups", json!(0), "`norm_num_groups` = 0 is out of range"),
        ("config.json", "num_class_embeds", json!(big), "`num_class_embeds` gives a UNet of"),
        ("config.json", "sample_size", json!(big), "`sample_size` gives a UNet that needs about"),
        (
            "scheduler_config.json",
            "num_train_timesteps",
            json!(big),
            "`num_train_timesteps` = 1099511627776 is out of range",
        ),
        ("scheduler_config.json", "beta_end", json!(5.0), "`beta_end` = 5 is out of range"),
        (
            "config.json",
            "layers_per_block",
            json!(big),
            "`block_out_channels` [32, 64] with `layers_per_block` = 1099511627776 give",
        ),
    ];
    let mut failures = Vec::new();
    for (file, option, value, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (mut u, mut s) = (unet(), scheduler());
        let config = if file == "config.json" { &mut u } else { &mut s };
        config[option] = value;
        project(tmp.path(), &u, &s);
        let started = std::time::Instant::now();
        let (code, output) = check_limited(tmp.path());
        println!("{option}: exit {code:?} in {:.2} s", started.elapsed().as_secs_f64());
        let named = output.contains(&format!("{file}: {expect}"));
        if code != Some(1) || !named || output.contains("panicked") {
            failures.push(format!("{option}: exit {code:?}, expected `{file}: {expect}`:\n{output}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_size_limits_are_settings() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path(), &unet(), &scheduler());
    std::fs::write(tmp.path().join("difflow.toml"), "max_params = 1_000\n").unwrap();
    let (code, output) = check_limited(tmp.path());
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("above `max_params` = 1,000"), "{output}");
    std::fs::write(tmp.path().join("difflow.toml"), "max_memory_gib = 0\n").unwrap();
    let (code, output) = check_limited(tmp.path());
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("above `max_memory_gib` = 0"), "{output}");
}
