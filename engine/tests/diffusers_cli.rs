//! diffusers through the real `difflow` binary and worker: a pipeline samples from a
//! diffusers folder (`pretrained … = diffusers { path }`) and from a Hub repository served
//! on 127.0.0.1 (`{ repo }`, found through HF_ENDPOINT); a difflow-trained UNet is written
//! by `difflow export` and loaded by diffusers (the oracle script) with the same output.

mod common;

use common::{mnist_project, oracle, serve};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use difflow_engine::artifacts::TrainMeta;
use tch::{Device, Kind, Tensor};

/// The `difflow` binary, built once for all tests here.
fn difflow() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(common::difflow_binary).clone()
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(difflow());
    cmd.current_dir(dir).args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}{}", String::from_utf8_lossy(&out.stdout));
    stderr
}

fn samples(dir: &Path, stage: &str) -> Tensor {
    let out = run(dir, &["show", "p.diff", stage, "--json"], &[]);
    ok(&out);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = PathBuf::from(shown["dir"].as_str().unwrap());
    let tensors = Tensor::read_safetensors(entry.join("samples.safetensors")).unwrap();
    tensors.into_iter().find(|(name, _)| name == "images").expect("a sample entry holds images").1
}

#[test]
fn a_pipeline_samples_from_a_diffusers_folder_and_from_a_hub_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    oracle("make", dir);
    std::fs::write(dir.join("difflow.toml"), "user_cache = \"uc\"\nthreads = 2\n").unwrap();
    let sample = "sample gen { from = tiny, sampler = ddim { steps = 5 }, count = 4 }\n";
    std::fs::write(dir.join("p.diff"), format!("pretrained tiny = diffusers {{ path = \"pipeline\" }}\n{sample}"))
        .unwrap();
    ok(&run(dir, &["run", "p.diff", "--device", "cpu"], &[]));
    let local = samples(dir, "gen");
    assert_eq!(local.size(), vec![4, 3, 16, 16]);

    // The same files as a Hub repository: difflow finds the pipeline layout and fetches
    // the three files it reads (model_index.json and the rest stay on the server).
    let mut files = Vec::new();
    for rel in [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    ] {
        files.push((format!("/org/tiny/resolve/main/{rel}"), std::fs::read(dir.join("pipeline").join(rel)).unwrap()));
    }
    let base = serve(files);
    std::fs::write(dir.join("p.diff"), format!("pretrained tiny = diffusers {{ repo = \"org/tiny\" }}\n{sample}"))
        .unwrap();
    let stderr = ok(&run(dir, &["run", "p.diff", "--device", "cpu"], &[("HF_ENDPOINT", &base)]));
    for line in stderr.lines().filter(|l| l.starts_with("fetched ")) {
        println!("{line}");
    }
    assert_eq!(stderr.matches("fetched org--tiny--main--").count(), 3, "{stderr}");
    let cached = dir.join("uc/hub/org--tiny/main");
    assert!(cached.join("unet/diffusion_pytorch_model.safetensors").is_file());
    assert!(!cached.join("model_index.json").exists());
    // The same weights and noise: the same samples.
    assert!(samples(dir, "gen").equal(&local));

    // A second run finds everything cached and fetches nothing, even offline.
    let stderr = ok(&run(dir, &["run", "p.diff", "--device", "cpu"], &[("HF_ENDPOINT", "http://127.0.0.1:9")]));
    assert!(!stderr.contains("fetched"), "{stderr}");
}

#[test]
fn a_difflow_trained_unet_is_exported_and_loads_in_diffusers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    mnist_project(
        dir,
        2,
        16,
        "schedule lin = linear { steps = 100 }\n\
         model net = unet { channels = 32, mults = [1, 2], res_blocks = 1, attention = [8], dropout = 0 }\n\
         train ddpm { model = net, data = digits, schedule = lin, steps = 3, batch = 8 }\n",
    );
    ok(&run(dir, &["run", "p.diff", "--device", "cpu"], &[]));
    let out = run(dir, &["export", "p.diff", "ddpm", "--format", "diffusers", "--out", "pipeline"], &[]);
    ok(&out);
    assert!(dir.join("pipeline/unet/diffusion_pytorch_model.safetensors").is_file());
    // A second export does not overwrite the folder.
    let again = run(dir, &["export", "p.diff", "ddpm", "--format", "diffusers", "--out", "pipeline"], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists and is not empty"));

    let shown = run(dir, &["show", "p.diff", "ddpm", "--json"], &[]);
    let entry: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let entry = PathBuf::from(entry["dir"].as_str().unwrap());
    let meta = TrainMeta::read(&entry).unwrap();
    let (_vs, model) = meta.load_model(&entry, true, Device::Cpu).unwrap();
    tch::manual_seed(5);
    let x = Tensor::randn([2, 1, 16, 16], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[3i64, 90]);
    Tensor::write_safetensors(&[("x", &x), ("t", &t)], dir.join("inputs.safetensors")).unwrap();
    oracle("check", dir);
    let theirs = Tensor::read_safetensors(dir.join("oracle.safetensors")).unwrap();
    let eps = &theirs.iter().find(|(n, _)| n == "eps").unwrap().1;
    let ours = tch::no_grad(|| model.forward(&x, &t, None, false));
    let diff = (&ours - eps).abs().max().double_value(&[]);
    println!("difflow export → diffusers: max |Δε| = {diff:.3e}");
    assert!(diff < 1e-4, "diffusers' ε differs from difflow's by {diff}");
}

#[test]
fn a_repository_without_a_model_or_out_of_reach_says_what_and_where() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("difflow.toml"), "user_cache = \"uc\"\n").unwrap();
    std::fs::write(
        dir.join("p.diff"),
        "pretrained m = diffusers { repo = \"org/text-model\", revision = \"v1\" }\n\
         sample gen { from = m, sampler = ddim { steps = 5 }, count = 1 }\n",
    )
    .unwrap();
    let base = serve(vec![("/org/text-model/resolve/v1/README.md".into(), b"a card".to_vec())]);
    let out = run(dir, &["run", "p.diff", "--device", "cpu"], &[("HF_ENDPOINT", &base)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`org/text-model` (revision v1) has neither config.json nor unet/config.json"), "{stderr}");

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("http://127.0.0.1:{port}");
    let out = run(dir, &["run", "p.diff", "--device", "cpu"], &[("HF_ENDPOINT", &closed)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot fetch {closed}/org/text-model/resolve/v1/config.json")), "{stderr}");
    let cache = std::fs::canonicalize(dir).unwrap().join("uc/hub/org--text-model/v1");
    assert!(stderr.contains(&format!("put the model's files under {}", cache.display())), "{stderr}");
}
