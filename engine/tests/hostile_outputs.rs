//! What reaches the worker from elsewhere, through the real binaries: a diffusers folder the
//! checker never saw (the worker refuses it with exit 2, never a panic or an allocation of
//! terabytes), an `--out` folder an export is refused into (nothing the user had goes), and
//! a dataset's `meta.json` edited in the cache (`show` refuses it instead of allocating).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{bin_dir, mnist_project, stage_job};
use serde_json::{json, Value};

const MEMORY_LIMIT: u64 = 1 << 30;

fn difflow() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(common::difflow_binary).clone()
}

/// `program ARGS` in `dir` under `prlimit --as` (1 GiB, children included) and `timeout`.
fn limited(program: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={MEMORY_LIMIT}"))
        .args(["timeout", "-s", "KILL", "60"])
        .arg(program)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("prlimit (util-linux) and timeout (coreutils) run")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(difflow()).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap()
}

/// A model folder the front end would have refused, handed to the worker as a
/// `pretrained` job (as a Hub repository reaches it: fetched, never checked).
#[test]
fn the_worker_refuses_a_hostile_diffusers_folder_with_exit_2() {
    let unet = json!({
        "_class_name": "UNet2DModel", "block_out_channels": [32, 64], "attention_head_dim": null,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "in_channels": 3, "out_channels": 3, "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 16
    });
    let scheduler = json!({"_class_name": "DDPMScheduler", "num_train_timesteps": 100});
    let cases: [(&str, Value, &str); 5] = [
        ("norm_num_groups", json!(0), "`norm_num_groups` = 0 is out of range"),
        ("in_channels", json!(0), "`in_channels` = 0 is out of range"),
        ("block_out_channels", json!([1_000_000, 1_000_000]), "above `max_params`"),
        ("num_class_embeds", json!(1i64 << 40), "`num_class_embeds` gives a UNet of"),
        ("num_train_timesteps", json!(1i64 << 40), "`num_train_timesteps` = 1099511627776 is out of range"),
    ];
    let worker = bin_dir().join("difflow-worker");
    let mut failures = Vec::new();
    for (option, value, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("m");
        std::fs::create_dir_all(&model).unwrap();
        let (mut u, mut s) = (unet.clone(), scheduler.clone());
        let config = if option == "num_train_timesteps" { &mut s } else { &mut u };
        config[option] = value;
        std::fs::write(model.join("config.json"), u.to_string()).unwrap();
        std::fs::write(model.join("scheduler_config.json"), s.to_string()).unwrap();
        std::fs::write(model.join("diffusion_pytorch_model.safetensors"), b"stand-in").unwrap();
        let out_dir = tmp.path().join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let params = json!({"path": model});
        let job = stage_job("m", ("pretrained", "diffusers"), &params, [], &out_dir);
        std::fs::write(tmp.path().join("job.json"), serde_json::to_string(&job).unwrap()).unwrap();
        let out = limited(&worker, tmp.path(), &["job.json"]);
        let shown = text(&out);
        println!("{option}: exit {:?}", out.status.code());
        if out.status.code() != Some(2) || !shown.contains(expect) || shown.contains("panicked") {
            failures.push(format!("{option}: exit {:?}, expected {expect:?}:\n{shown}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A project with a tiny UNet on 16×16 digits (exportable) and an MLP on toy points
/// (refused by the export after `--out` is taken), both trained for two steps.
fn trained_project() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    mnist_project(
        dir,
        1,
        8,
        "dataset pts = toy { count = 64 }\n\
         schedule lin = linear { steps = 100 }\n\
         model net = unet { channels = 32, mults = [1], res_blocks = 1, attention = [], dropout = 0 }\n\
         model small = mlp { hidden = 16, layers = 1 }\n\
         train image_model { model = net, data = digits, schedule = lin, steps = 2, batch = 4 }\n\
         train point_model { model = small, data = pts, schedule = lin, steps = 2, batch = 8 }\n",
    );
    let out = run(dir, &["run", "p.diff", "--device", "cpu"]);
    assert!(out.status.success(), "{}", text(&out));
    tmp
}

fn export(dir: &Path, stage: &str, out: &str) -> Output {
    run(dir, &["export", "p.diff", stage, "--format", "diffusers", "--out", out])
}

#[test]
fn a_refused_export_removes_nothing_it_did_not_create_and_an_empty_folder_takes_one() {
    let tmp = trained_project();
    let dir = tmp.path();
    let refused = |out: &str, expect: &str| {
        let o = export(dir, "point_model", out);
        assert_eq!(o.status.code(), Some(1), "{out}: {}", text(&o));
        assert!(text(&o).contains(expect), "{out}: {}", text(&o));
    };
    // An empty folder: the worker refuses the MLP after the folder is taken; it stays, empty.
    std::fs::create_dir(dir.join("empty")).unwrap();
    refused("empty", "has no diffusers equivalent");
    assert_eq!(std::fs::read_dir(dir.join("empty")).unwrap().count(), 0);
    // A link to an empty folder: the link and the folder stay.
    std::fs::create_dir(dir.join("target")).unwrap();
    std::os::unix::fs::symlink("target", dir.join("link")).unwrap();
    refused("link", "has no diffusers equivalent");
    assert!(std::fs::symlink_metadata(dir.join("link")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_dir(dir.join("target")).unwrap().count(), 0);
    // A dangling link, a file and a folder with something in it are refused before the worker.
    std::os::unix::fs::symlink("nowhere", dir.join("dangling")).unwrap();
    refused("dangling", "exists and is not a folder");
    assert!(std::fs::symlink_metadata(dir.join("dangling")).is_ok());
    std::fs::write(dir.join("file.txt"), "mine").unwrap();
    refused("file.txt", "exists and is not a folder");
    std::fs::create_dir(dir.join("full")).unwrap();
    std::fs::write(dir.join("full/keep.txt"), "mine").unwrap();
    refused("full", "exists and is not empty");
    assert_eq!(std::fs::read_to_string(dir.join("full/keep.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(dir.join("file.txt")).unwrap(), "mine");

    // An empty folder takes a UNet's export (and so does a link to one).
    let o = export(dir, "image_model", "empty");
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("empty/unet/diffusion_pytorch_model.safetensors").is_file());
    let o = export(dir, "image_model", "link");
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("target/scheduler/scheduler_config.json").is_file());
}

#[test]
fn show_refuses_a_tampered_dataset_meta_json_without_allocating_it() {
    let tmp = trained_project();
    let dir = tmp.path();
    let shown = run(dir, &["show", "p.diff", "pts", "--json"]);
    let entry: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let meta_path = PathBuf::from(entry["dir"].as_str().unwrap()).join("meta.json");
    let mut meta: Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    // The entries as their runs wrote them agree with their declarations.
    for model in ["small", "net"] {
        let out = run(dir, &["show", "p.diff", model]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for (shape, classes, expect) in [
        (json!([100_000_000_000i64]), json!(2), "is no shape a dataset produces"),
        (json!([3]), json!(2), "but the declaration gives shape [2]"),
        (json!([2]), json!(1i64 << 40), "but the declaration gives shape [2] with 2 classes"),
        (json!("two"), json!(2), "`shape` is not a list of integers"),
    ] {
        meta["shape"] = shape;
        meta["classes"] = classes;
        std::fs::write(&meta_path, meta.to_string()).unwrap();
        let started = std::time::Instant::now();
        let out = limited(&difflow(), dir, &["show", "p.diff", "small"]);
        println!("{}: exit {:?} in {:.2} s", meta["shape"], out.status.code(), started.elapsed().as_secs_f64());
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(shown.contains("meta.json") && shown.contains(expect), "{shown}");
        assert!(shown.contains("p.diff --force --target pts`"), "{shown}");
    }
}
