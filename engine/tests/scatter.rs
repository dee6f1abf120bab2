//! The scatter plot stage draws each 2-D point set in its own colour, and refuses images.

mod common;

use std::path::Path;

use common::{input, stage_job};
use difflow_core::job::Job;
use serde_json::json;

fn job(kind: &str, variant: &str, params: serde_json::Value, inputs: &[(&str, &Path)], out: &Path) -> Job {
    let inputs = inputs.iter().map(|(name, dir)| (name.to_string(), input("dataset", "toy", dir)));
    stage_job("look", (kind, variant), &params, inputs, out)
}

#[test]
fn scatter_draws_every_point_set_in_its_colour() {
    let root = tempfile::tempdir().unwrap();
    let (moons, roll, out) = (root.path().join("moons"), root.path().join("roll"), root.path().join("plot"));
    for (shape, dir) in [("moons", &moons), ("swissroll", &roll)] {
        let params = json!({"shape": shape, "count": 500, "noise": 0.05});
        difflow_engine::stages::run(&job("dataset", "toy", params, &[], dir)).unwrap();
    }
    let params = json!({"of": [{"$stage": "moons"}, {"$stage": "roll"}]});
    difflow_engine::stages::run(&job("plot", "scatter", params, &[("moons", &moons), ("roll", &roll)], &out)).unwrap();
    let png = image::open(out.join("plot.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (800, 800));
    // The first two series are blue-ish (31, 119, 180) and orange-ish (255, 127, 14), blended on white.
    let blue = png.pixels().filter(|p| p[2] > 150 && p[0] < 150).count();
    let orange = png.pixels().filter(|p| p[0] > 200 && p[2] < 120).count();
    println!("blue pixels {blue}, orange pixels {orange}");
    assert!(blue > 2000 && orange > 2000, "both point sets are drawn: {blue} blue, {orange} orange pixels");
}

#[test]
fn scatter_refuses_data_that_is_not_2d_points() {
    let root = tempfile::tempdir().unwrap();
    let images = root.path().join("images");
    let meta = difflow_engine::data::DataMeta {
        data_type: difflow_engine::data::DataType::Images,
        shape: vec![1, 4, 4],
        classes: 0,
        count: 2,
        flip: false,
    };
    let values = tch::Tensor::zeros([2, 1, 4, 4], (tch::Kind::Uint8, tch::Device::Cpu));
    let labels = tch::Tensor::zeros([2], (tch::Kind::Int64, tch::Device::Cpu));
    difflow_engine::data::Dataset::new(meta, values, labels).unwrap().write(&images, "data.safetensors").unwrap();
    let params = json!({"of": [{"$stage": "images"}]});
    let err =
        difflow_engine::stages::run(&job("plot", "scatter", params, &[("images", &images)], &root.path().join("p")))
            .unwrap_err();
    assert!(format!("{err:#}").contains("a scatter plot needs 2-D points"), "{err:#}");
}
