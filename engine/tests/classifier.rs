//! The classifier stage (clean and noisy) on a synthetic two-class image set, loading a
//! trained classifier back, and the image/line plots (grid, forward, trajectory,
//! schedules, loss) on small inputs.

mod common;

use std::path::Path;

use common::{input, stage_job, two_class_data};
use difflow_core::job::Job;
use difflow_engine::artifacts::load_classifier as load;
use difflow_engine::data::split::stratified_split;
use difflow_engine::data::{DataMeta, DataType, Dataset};
use difflow_engine::stages::classifier::accuracy;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

fn job(kind: &str, variant: &str, params: Value, inputs: &[(&str, &str, &Path)], out: &Path) -> Job {
    let inputs = inputs.iter().map(|(name, kind, dir)| (name.to_string(), input(kind, "x", dir)));
    let mut job = stage_job(&format!("test_{variant}"), (kind, variant), &params, inputs, out);
    job.settings.threads = 1;
    job
}

fn encoder() -> Value {
    json!({"kind": "model", "variant": "encoder", "channels": 16, "mults": [1, 2], "res_blocks": 1, "attention": [4],
           "dropout": 0.0})
}

fn cosine() -> Value {
    json!({"kind": "schedule", "variant": "cosine", "steps": 100})
}

#[test]
fn clean_and_noisy_classifiers_train_save_and_load() {
    let work = tempfile::tempdir().unwrap();
    let data = two_class_data(work.path(), 200);

    let clean_dir = work.path().join("clean");
    let params = json!({"model": encoder(), "data": {"$stage": "d"}, "steps": 60, "batch": 32, "lr": 3e-3, "seed": 1});
    difflow_engine::stages::run(&job("classifier", "default", params, &[("d", "dataset", &data)], &clean_dir)).unwrap();
    let clean = load(&clean_dir, Device::Cpu).unwrap();
    assert!(clean.meta.schedule.is_none());
    assert_eq!(clean.meta.classes, 2);
    let held_out = clean.meta.accuracy.unwrap();
    assert!(held_out > 0.9, "held-out accuracy {held_out}");
    // The reloaded net agrees with the recorded accuracy on the same held-out items.
    let all = Dataset::read(&data).unwrap();
    let (_, held) = stratified_split(&Vec::<i64>::try_from(&all.labels).unwrap(), 180);
    let held = Tensor::from_slice(&held.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let tail = |t: &Tensor| t.index_select(0, &held);
    let again = accuracy(&*clean.net, &tail(&all.values), &tail(&all.labels), Device::Cpu);
    assert!((again - held_out).abs() < 1e-9, "{again} vs {held_out}");
    assert!(!clean.vars.variables().keys().any(|k| k.starts_with("time_embed")));

    let noisy_dir = work.path().join("noisy");
    let params = json!({"model": encoder(), "data": {"$stage": "d"}, "schedule": cosine(), "steps": 60, "batch": 32,
                        "lr": 3e-3, "seed": 1});
    difflow_engine::stages::run(&job("classifier", "default", params, &[("d", "dataset", &data)], &noisy_dir)).unwrap();
    let noisy = load(&noisy_dir, Device::Cpu).unwrap();
    assert_eq!(noisy.meta.schedule.as_ref().unwrap()["variant"], "cosine");
    assert!(noisy.vars.variables().contains_key("time_embed.0.weight"));
    // At small t the noisy classifier still sees the pattern.
    let x = difflow_engine::data::store::to_unit_range(&tail(&all.values));
    let logits = noisy.net.forward(&x, Some(&Tensor::full([20], 1, (Kind::Int64, Device::Cpu))), false);
    let right = logits.argmax(1, false).eq_tensor(&tail(&all.labels)).to_kind(Kind::Float).mean(Kind::Float);
    assert!(right.double_value(&[]) > 0.8);
}

/// A class-sorted image folder whose two classes look the same: a classifier predicts one
/// class for every image, so its accuracy is that class's part of the held-out items,
/// exactly 1/2 when they keep both classes' shares (the last 10 % would be one class).
#[test]
fn the_held_out_part_of_a_class_sorted_folder_keeps_both_classes() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("folder");
    for class in ["a", "b"] {
        std::fs::create_dir_all(folder.join(class)).unwrap();
        for i in 0..20 {
            let img = image::GrayImage::from_pixel(8, 8, image::Luma([128]));
            img.save(folder.join(class).join(format!("{i:02}.png"))).unwrap();
        }
    }
    let data = work.path().join("data");
    difflow_engine::stages::run(&job("dataset", "images", json!({"path": folder, "channels": 1}), &[], &data)).unwrap();
    let labels = Vec::<i64>::try_from(&Dataset::read(&data).unwrap().labels).unwrap();
    assert!(labels.windows(2).all(|w| w[0] <= w[1]), "stored class by class: {labels:?}");
    let params = json!({"model": encoder(), "data": {"$stage": "d"}, "steps": 2, "batch": 8, "lr": 3e-3, "seed": 1});
    let out = work.path().join("classifier");
    difflow_engine::stages::run(&job("classifier", "default", params, &[("d", "dataset", &data)], &out)).unwrap();
    let classifier = load(&out, Device::Cpu).unwrap();
    assert_eq!(classifier.meta.data.count, 36, "4 of the 40 images held out");
    assert_eq!(classifier.meta.accuracy, Some(0.5));
}

#[test]
fn classifier_refuses_unlabelled_data() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let meta = DataMeta { data_type: DataType::Images, shape: vec![1, 8, 8], classes: 0, count: 4, flip: false };
    let images = Tensor::zeros([4, 1, 8, 8], (Kind::Uint8, Device::Cpu));
    Dataset::new(meta, images, Tensor::zeros([4], (Kind::Int64, Device::Cpu)))
        .unwrap()
        .write(&data, "data.safetensors")
        .unwrap();
    let params = json!({"model": encoder(), "data": {"$stage": "d"}, "steps": 1});
    let err = difflow_engine::stages::run(&job(
        "classifier",
        "default",
        params,
        &[("d", "dataset", &data)],
        &work.path().join("o"),
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("0 classes"), "{err:#}");
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn image_plots_grid_forward_trajectory() {
    let work = tempfile::tempdir().unwrap();
    let data = two_class_data(work.path(), 20);

    let grid = work.path().join("grid");
    difflow_engine::stages::run(&job(
        "plot",
        "grid",
        json!({"of": {"$stage": "d"}, "count": 9}),
        &[("d", "dataset", &data)],
        &grid,
    ))
    .unwrap();
    // Two classes, a column each: ⌈9 / 2⌉ = 5 rows of 8-px images magnified 4× (32 px) with
    // 2-px gutters, under a band for the labels (1.2 × a font of 0.8 × the 34-px cell).
    assert_eq!(png_size(&grid.join("plot.png")), (2 * 34 + 2, 5 * 34 + 2 + 33));

    let forward = work.path().join("forward");
    let params = json!({"data": {"$stage": "d"}, "schedule": cosine(), "at": [0, 50, 99]});
    difflow_engine::stages::run(&job("plot", "forward", params, &[("d", "dataset", &data)], &forward)).unwrap();
    assert_eq!(png_size(&forward.join("plot.png")), (3 * 34 + 2, 8 * 34 + 2));
    let bad = json!({"data": {"$stage": "d"}, "schedule": cosine(), "at": [100]});
    let err =
        difflow_engine::stages::run(&job("plot", "forward", bad, &[("d", "dataset", &data)], &work.path().join("f2")))
            .unwrap_err();
    assert!(format!("{err:#}").contains("(0…99)"), "{err:#}");

    // A sample stage's trajectory: K = 4 kept steps of N = 3 samples.
    let samples = work.path().join("samples");
    std::fs::create_dir_all(&samples).unwrap();
    let xt = Tensor::randint(256, [4, 3, 1, 8, 8], (Kind::Uint8, Device::Cpu));
    let x0 = Tensor::randint(256, [4, 3, 1, 8, 8], (Kind::Uint8, Device::Cpu));
    let t = Tensor::from_slice(&[99i64, 66, 33, 0]);
    Tensor::write_safetensors(&[("t", &t), ("xt", &xt), ("x0", &x0)], samples.join("trajectory.safetensors")).unwrap();
    let traj = work.path().join("traj");
    difflow_engine::stages::run(&job(
        "plot",
        "trajectory",
        json!({"samples": {"$stage": "s"}}),
        &[("s", "sample", &samples)],
        &traj,
    ))
    .unwrap();
    assert_eq!(png_size(&traj.join("plot.png")), (4 * 34 + 2, 6 * 34 + 2));
    let gif = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(traj.join("plot.gif")).unwrap(),
    ))
    .unwrap();
    use image::AnimationDecoder;
    assert_eq!(gif.into_frames().count(), 4);
    // Without a trajectory: a clear error.
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = difflow_engine::stages::run(&job(
        "plot",
        "trajectory",
        json!({"samples": {"$stage": "s"}}),
        &[("s", "sample", &empty)],
        &work.path().join("t2"),
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("trajectory = k"), "{err:#}");
}

#[test]
fn line_plots_schedules_and_loss() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("schedules");
    let of = json!({"of": [cosine(), {"kind": "schedule", "variant": "linear", "steps": 1000},
                           {"kind": "schedule", "variant": "linear", "steps": 1000, "zero_terminal_snr": true}]});
    difflow_engine::stages::run(&job("plot", "schedules", of, &[], &out)).unwrap();
    assert_eq!(png_size(&out.join("plot.png")), (1120, 440));

    let train = work.path().join("train");
    std::fs::create_dir_all(&train).unwrap();
    let mut csv = String::from("step,loss\n");
    for i in 1..=300 {
        csv.push_str(&format!("{i},{}\n", 1.0 / (i as f64).sqrt()));
    }
    std::fs::write(train.join("loss.csv"), csv).unwrap();
    let out = work.path().join("loss");
    difflow_engine::stages::run(&job(
        "plot",
        "loss",
        json!({"of": [{"$stage": "a"}]}),
        &[("a", "train", &train)],
        &out,
    ))
    .unwrap();
    assert_eq!(png_size(&out.join("plot.png")), (900, 560));
    std::fs::write(train.join("loss.csv"), "step,loss\n1,abc\n").unwrap();
    let err = difflow_engine::stages::run(&job(
        "plot",
        "loss",
        json!({"of": [{"$stage": "a"}]}),
        &[("a", "train", &train)],
        &work.path().join("l2"),
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("not `step,loss`"), "{err:#}");
}
