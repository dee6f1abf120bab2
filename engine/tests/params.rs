//! Typed job parameters with errors that name the key; toy data deterministic in its seed.

use std::collections::BTreeMap;

use difflow_core::job::{Input, Job, JobSettings};
use difflow_engine::data::toy;
use difflow_engine::params::Params;
use serde_json::json;

fn job(params: serde_json::Value) -> Job {
    let mut inputs = BTreeMap::new();
    inputs.insert(
        "pts".to_string(),
        Input { kind: "dataset".into(), variant: "toy".into(), params: json!({}), dir: "/tmp/pts".into() },
    );
    Job {
        instance: "fit".into(),
        kind: "train".into(),
        variant: "diffusion".into(),
        params,
        inputs,
        out_dir: "/tmp/out".into(),
        device: "cpu".into(),
        settings: JobSettings::default(),
    }
}

#[test]
fn typed_access_and_defaults() {
    let job = job(json!({
        "steps": 10_000, "big": 1e4, "lr": 2e-4, "loss": "hybrid", "ema_on": true, "unset": null,
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 1000},
        "data": {"$stage": "pts"}, "of": [{"$stage": "pts"}, {"$stage": "pts"}]
    }));
    let p = Params::of_job(&job);
    assert_eq!(p.usize("steps").unwrap(), 10_000);
    assert_eq!(p.usize("big").unwrap(), 10_000, "a whole float is an integer");
    assert_eq!(p.f64("steps").unwrap(), 10_000.0);
    assert_eq!(p.f64("lr").unwrap(), 2e-4);
    assert_eq!(p.str("loss").unwrap(), "hybrid");
    assert!(p.bool("ema_on").unwrap());
    assert_eq!(p.usize_or("unset", 7).unwrap(), 7, "null counts as unset");
    assert_eq!(p.opt_usize("missing").unwrap(), None);
    let schedule = p.config("schedule").unwrap();
    assert_eq!(schedule.variant().unwrap(), "cosine");
    assert_eq!(schedule.usize("steps").unwrap(), 1000);
    let (name, input) = p.stage(&job, "data").unwrap();
    assert_eq!((name, input.kind.as_str()), ("pts", "dataset"));
    assert_eq!(p.stages(&job, "of").unwrap().len(), 2);
    assert_eq!(p.stages(&job, "data").unwrap().len(), 1, "a single reference is a list of one");
}

#[test]
fn errors_name_the_stage_and_the_key() {
    let job = job(json!({"steps": -3, "lr": "fast", "half": 2.5, "data": {"$stage": "gone"}, "model": 3}));
    let p = Params::of_job(&job);
    let msg = |e: anyhow::Error| format!("{e:#}");
    assert_eq!(msg(p.usize("batch").unwrap_err()), "`fit` needs the key `batch`");
    assert_eq!(msg(p.usize("steps").unwrap_err()), "`fit`: the key `steps` must be a non-negative integer, not -3");
    assert_eq!(msg(p.usize("half").unwrap_err()), "`fit`: the key `half` must be a non-negative integer, not 2.5");
    assert_eq!(msg(p.f64("lr").unwrap_err()), "`fit`: the key `lr` must be a number, not \"fast\"");
    assert!(msg(p.config("model").unwrap_err()).contains("the key `model` must be a configuration block"));
    let err = msg(p.stage(&job, "data").unwrap_err());
    assert!(err.contains("the key `data`") && err.contains("no input for the stage `gone`"), "{err}");
}

#[test]
fn toy_data_is_deterministic_in_its_seed() {
    for shape in ["moons", "gaussians8", "swissroll"] {
        let a = toy::generate(shape, 300, 0.05, 1).unwrap();
        let b = toy::generate(shape, 300, 0.05, 1).unwrap();
        let c = toy::generate(shape, 300, 0.05, 2).unwrap();
        assert_eq!(a.values.size(), [300, 2]);
        assert!(a.values.equal(&b.values) && a.labels.equal(&b.labels), "{shape}: same seed, same data");
        assert!(!a.values.equal(&c.values), "{shape}: another seed, other data");
    }
    let g = toy::generate("gaussians8", 800, 0.0, 0).unwrap();
    assert_eq!(g.meta.classes, 8);
    assert_eq!(g.labels.bincount::<tch::Tensor>(None, 8).size(), [8]);
    let Err(err) = toy::generate("spiral", 10, 0.1, 0) else { panic!("an unknown shape is an error") };
    assert!(err.to_string().contains("unknown toy shape `spiral`"));
}
