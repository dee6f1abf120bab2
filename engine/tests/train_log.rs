//! The live training log, read by TensorBoard itself: a toy training run's event file shows
//! scalars while the run goes on, and every step's loss (as in `loss.csv`) once it ends; an
//! instance of a sweep records its swept values for the HParams tab; a sampling stage's grid
//! is an image in the Images tab.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{input, python, stage_job, two_class_data};
use serde_json::{json, Value};

const STEPS: usize = 2000;

/// Reads an event file with TensorBoard's `EventAccumulator`: tag → [(step, value)].
const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
"#;

/// The project venv's python with TensorBoard (the oracle), installed from PyPI if missing.
fn tensorboard_python() -> PathBuf {
    let python = python();
    let has = |py: &Path| Command::new(py).args(["-c", "import tensorboard"]).status().is_ok_and(|s| s.success());
    if !has(&python) {
        let status = Command::new(&python).args(["-m", "pip", "install", "-q", "tensorboard"]).status().unwrap();
        assert!(status.success() && has(&python), "cannot install tensorboard into the project venv");
    }
    python
}

fn read_scalars(python: &Path, file: &Path) -> serde_json::Map<String, Value> {
    let out = Command::new(python).args(["-c", READER]).arg(file).output().unwrap();
    assert!(out.status.success(), "EventAccumulator failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_object().unwrap().clone()
}

/// Reads the hparams plugin's session start with the plugin's own parser: name → [kind, value].
const HPARAMS_READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
acc = EventAccumulator(sys.argv[1])
acc.Reload()
content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
hparams = {k: [v.WhichOneof("kind"), getattr(v, v.WhichOneof("kind"))] for k, v in info.hparams.items()}
print(json.dumps({"hparams": hparams, "start": info.start_time_secs, "scalars": acc.Tags()["scalars"]}))
"#;

/// The experiment the HParams tab shows for the runs under a folder, as its backend builds
/// it from their session starts and scalars: {"hparams": {name: differs}, "metrics": [tag]}.
const HPARAMS_EXPERIMENT: &str = r#"
import json, sys
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import backend_context
mux = plugin_event_multiplexer.EventMultiplexer()
mux.AddRunsFromDirectory(sys.argv[1])
mux.Reload()
provider = data_provider.MultiplexerDataProvider(mux, sys.argv[1])
ctx = backend_context.Context(base_plugin.TBContext(logdir=sys.argv[1], multiplexer=mux, data_provider=provider))
rc = context.RequestContext()
exp = ctx.experiment_from_metadata(rc, "", True, ctx.hparams_metadata(rc, ""), ctx.hparams_from_data_provider(rc, "", 0))
print(json.dumps({"hparams": {h.name: h.differs for h in exp.hparam_infos},
                  "metrics": sorted(m.name.tag for m in exp.metric_infos)}))
"#;

fn event_files(logs: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(logs) else { return Vec::new() };
    entries.map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains("tfevents")).collect()
}

fn train_job(root: &Path) -> difflow_core::job::Job {
    train_job_named(root, "fit", STEPS)
}

fn train_job_named(root: &Path, instance: &str, steps: usize) -> difflow_core::job::Job {
    let data = root.join("data");
    let dataset = json!({"shape": "gaussians8", "count": 256, "noise": 0.1, "seed": 0});
    let dataset_job = stage_job("points", ("dataset", "toy"), &dataset, [], &data);
    difflow_engine::stages::run(&dataset_job).unwrap();
    let params = json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 16, "layers": 2},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 50},
        "steps": steps, "batch": 8, "lr": 1e-3, "warmup": 100, "seed": 0, "checkpoint_every": 0
    });
    let inputs = [("points".to_string(), input("dataset", "toy", &data))];
    stage_job(instance, ("train", "diffusion"), &params, inputs, &root.join("train"))
}

#[test]
fn tensorboard_reads_the_losses_while_training_runs_and_every_step_after() {
    let python = tensorboard_python();
    let root = tempfile::tempdir().unwrap();
    let job = train_job(root.path());
    let logs = job.out_dir.join(difflow_core::job::LOG_DIR);
    let run = std::thread::spawn(move || difflow_engine::stages::run(&job));

    // Snapshot the event file once it holds more than its header, while the run goes on.
    let snapshot = root.path().join("snapshot.tfevents");
    let deadline = Instant::now() + Duration::from_secs(300);
    let file = loop {
        assert!(Instant::now() < deadline, "no event file with scalars appeared in {}", logs.display());
        assert!(!run.is_finished(), "training ended before its log showed a scalar");
        let files = event_files(&logs);
        if let [file] = files.as_slice() {
            std::fs::copy(file, &snapshot).unwrap();
            // The file-version record alone is under 40 bytes.
            if std::fs::metadata(&snapshot).unwrap().len() > 64 {
                break file.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let copied_while_running = !run.is_finished();
    let early = read_scalars(&python, &snapshot);
    run.join().unwrap().unwrap();
    assert!(copied_while_running, "the snapshot was taken after training ended");
    let early_losses = early["loss"].as_array().unwrap();
    assert!(!early_losses.is_empty() && early_losses.len() < STEPS, "{} losses mid-run", early_losses.len());

    let all = read_scalars(&python, &file);
    let csv = std::fs::read_to_string(root.path().join("train/loss.csv")).unwrap();
    let expected: Vec<(u64, f32)> = csv
        .lines()
        .skip(1)
        .map(|line| {
            let (step, loss) = line.split_once(',').unwrap();
            (step.parse().unwrap(), loss.parse::<f64>().unwrap() as f32)
        })
        .collect();
    let logged: Vec<(u64, f32)> = all["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap() as f32))
        .collect();
    assert_eq!(expected.len(), STEPS);
    assert_eq!(logged, expected);
    for tag in ["loss_ema", "lr", "grad_norm"] {
        assert_eq!(all[tag].as_array().unwrap().len(), STEPS, "`{tag}` is not logged every step");
    }
    // Warmup: the learning rate climbs to `lr` over 100 steps.
    let lr = all["lr"].as_array().unwrap();
    assert!(
        (lr[0][1].as_f64().unwrap() - 1e-5).abs() < 1e-9 && (lr[STEPS - 1][1].as_f64().unwrap() - 1e-3).abs() < 1e-9
    );
}

#[test]
fn the_hparams_tab_reads_the_swept_values_of_an_instance() {
    let python = tensorboard_python();
    let root = tempfile::tempdir().unwrap();
    let job = train_job_named(root.path(), "fit[lr=1e-3, sampler=ddim, scale_shift=false]", 20);
    let logs = job.out_dir.join(difflow_core::job::LOG_DIR);
    difflow_engine::stages::run(&job).unwrap();
    let [file] = event_files(&logs).try_into().unwrap();
    let out = Command::new(&python).args(["-c", HPARAMS_READER]).arg(&file).output().unwrap();
    assert!(out.status.success(), "the hparams plugin cannot read it:\n{}", String::from_utf8_lossy(&out.stderr));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        read["hparams"],
        json!({"lr": ["number_value", 1e-3], "sampler": ["string_value", "ddim"], "scale_shift": ["bool_value", false]}),
        "{read}"
    );
    assert!(read["start"].as_f64().unwrap() > 1.5e9, "{read}");
    // The scalars stay where they were, beside the session start.
    assert!(read["scalars"].as_array().unwrap().contains(&json!("loss")), "{read}");

    // A second instance of the sweep: the HParams tab compares the two on lr.
    let mut other = train_job_named(root.path(), "fit[lr=2e-3, sampler=ddim, scale_shift=false]", 20);
    other.out_dir = root.path().join("other");
    difflow_engine::stages::run(&other).unwrap();
    let out = Command::new(&python).args(["-c", HPARAMS_EXPERIMENT]).arg(root.path()).output().unwrap();
    assert!(out.status.success(), "the HParams backend failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let experiment: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(experiment["hparams"], json!({"lr": true, "sampler": false, "scale_shift": false}), "{experiment}");
    assert!(experiment["metrics"].as_array().unwrap().contains(&json!("loss")), "{experiment}");
}

/// A decaying learning-rate schedule is what each step trains with and what TensorBoard
/// shows: every logged `lr` is `LrPlan::at` of its step (1-based in the log).
#[test]
fn tensorboard_shows_the_decaying_learning_rate_of_every_step() {
    use difflow_core::params::train::{LrPlan, LrSchedule};

    let python = tensorboard_python();
    let root = tempfile::tempdir().unwrap();
    let mut job = train_job_named(root.path(), "decay", 40);
    job.params["warmup"] = json!(10);
    job.params["lr_schedule"] = json!("cosine");
    job.params["lr_floor"] = json!(0.1);
    difflow_engine::stages::run(&job).unwrap();
    let [file] = event_files(&job.out_dir.join(difflow_core::job::LOG_DIR)).try_into().unwrap();
    let logged = read_scalars(&python, &file)["lr"].as_array().unwrap().clone();
    let plan = LrPlan { lr: 1e-3, warmup: 10, steps: 40, schedule: LrSchedule::Cosine, floor: 0.1 };
    assert_eq!(logged.len(), 40);
    for entry in &logged {
        let step = entry[0].as_u64().unwrap() as usize;
        let want = plan.at(step - 1) as f32;
        assert_eq!(entry[1].as_f64().unwrap() as f32, want, "lr at step {step}");
    }
    // It decays: the last step's rate is near the floor, far below the peak.
    assert!(logged[39][1].as_f64().unwrap() < 0.11e-3, "{:?}", logged[39]);
}

/// Reads the images of an event file with `EventAccumulator`: tag → [[step, width, height,
/// the encoded bytes in hex]], and the hparams of its session start (if any).
const IMAGE_READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
acc = EventAccumulator(sys.argv[1], size_guidance={"images": 0})
acc.Reload()
images = {t: [[e.step, e.width, e.height, e.encoded_image_string.hex()] for e in acc.Images(t)] for t in acc.Tags()["images"]}
try:
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    hparams = {k: v.number_value for k, v in metadata.parse_session_start_info_plugin_data(content).hparams.items()}
except KeyError:
    hparams = {}
print(json.dumps({"images": images, "hparams": hparams}))
"#;

/// A sample stage of images logs its grid, byte for byte, at the step its model trained
/// to, with the instance's swept values; TensorBoard reads both.
#[test]
fn tensorboard_shows_a_sampling_stages_grid_as_an_image() {
    let python = tensorboard_python();
    let root = tempfile::tempdir().unwrap();
    let data = two_class_data(root.path(), 32);
    let params = json!({
        "model": {"kind": "model", "variant": "unet", "channels": 8, "mults": [1], "res_blocks": 1,
                  "attention": [], "dropout": 0.0, "classes": 2},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 20},
        "uncond_p": 0.1, "steps": 6, "batch": 8, "lr": 1e-3, "seed": 0, "checkpoint_every": 0
    });
    let inputs = [("points".to_string(), input("dataset", "images", &data))];
    let train = stage_job("fit", ("train", "diffusion"), &params, inputs, &root.path().join("train"));
    difflow_engine::stages::run(&train).unwrap();
    let params = json!({
        "from": {"$stage": "fit"}, "sampler": {"kind": "sampler", "variant": "ddim", "steps": 2},
        "count": 12, "seed": 1, "guidance": {"kind": "guidance", "variant": "cfg", "scale": 2.0}
    });
    let inputs = [("fit".to_string(), input("train", "diffusion", &train.out_dir))];
    let sample = stage_job("gen[scale=2.0]", ("sample", "default"), &params, inputs, &root.path().join("gen"));
    difflow_engine::stages::run(&sample).unwrap();

    let [file] = event_files(&sample.out_dir.join(difflow_core::job::LOG_DIR)).try_into().unwrap();
    let out = Command::new(&python).args(["-c", IMAGE_READER]).arg(&file).output().unwrap();
    assert!(out.status.success(), "EventAccumulator failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    let grid = std::fs::read(sample.out_dir.join("grid.png")).unwrap();
    let hex: String = grid.iter().map(|b| format!("{b:02x}")).collect();
    // 12 samples of 8 × 8 in rows of 10: the grid's own size, from its header.
    let [width, height] = [16, 20].map(|at| u32::from_be_bytes(grid[at..at + 4].try_into().unwrap()));
    assert!(width > height && height > 8, "{width} × {height}");
    assert_eq!(read["images"], json!({"samples": [[6, width, height, hex]]}), "{}", read["hparams"]);
    assert_eq!(read["hparams"], json!({"scale": 2.0}));

    // Without images (points), a sample stage logs nothing.
    let job = train_job_named(root.path(), "toy", 4);
    difflow_engine::stages::run(&job).unwrap();
    let params =
        json!({"from": {"$stage": "toy"}, "sampler": {"kind": "sampler", "variant": "ddim", "steps": 2}, "count": 8});
    let inputs = [("toy".to_string(), input("train", "diffusion", &job.out_dir))];
    let points = stage_job("gen", ("sample", "default"), &params, inputs, &root.path().join("points-gen"));
    difflow_engine::stages::run(&points).unwrap();
    assert!(!points.out_dir.join(difflow_core::job::LOG_DIR).exists());
}
