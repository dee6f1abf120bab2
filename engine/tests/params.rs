//! Job parameters decode into the engine's typed structs: every variant of the schema with
//! its defaults (so the schema and the engine cannot drift apart), errors that name the
//! stage and the key, and toy data deterministic in its seed.

use std::collections::BTreeMap;

use difflow_core::job::{Input, Job, JobSettings, StageRef};
use difflow_core::schema::{self, Default, KeySpec, Type};
use difflow_engine::data::toy;
use difflow_engine::params::{decode_any, input, job_params};
use difflow_engine::stages::train::TrainParams;
use serde_json::{json, Value};

fn job(params: Value) -> Job {
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

/// A value of type `ty` for a key the schema requires (or leaves unset): what a user
/// could write there, as the resolver would pass it on.
fn example(ty: &Type) -> Value {
    match ty {
        Type::Int => json!(1),
        Type::Float => json!(0.5),
        Type::Bool => json!(true),
        Type::Str | Type::Path => json!("x"),
        Type::Enum(options) => json!(options[0]),
        Type::List(inner) => json!([example(inner)]),
        Type::Stage(_) => json!({"$stage": "pts"}),
        Type::Config(kind) => {
            let spec = schema::kind(kind).unwrap();
            filled(kind, spec.variants[0].name, true)
        }
        Type::Union(alternatives) => example(&alternatives[0]),
        Type::Record => json!({"k": 1}),
        Type::StageRecord(_) => json!({"k": {"$stage": "pts"}}),
    }
}

/// The variant's defaults, required keys given example values, and the keys it may leave
/// unset either left out or (`set_optional`) set.
fn filled(kind: &str, variant: &str, set_optional: bool) -> Value {
    let spec = schema::variant(kind, variant).unwrap();
    let mut object = serde_json::Map::new();
    let wanted = |k: &KeySpec| match k.default {
        Default::Required => Some(example(&k.ty)),
        Default::Unset => set_optional.then(|| example(&k.ty)),
        Default::Value(_) => Some(schema::default_value(k).unwrap().to_json()),
    };
    for key in &spec.keys {
        if let Some(v) = wanted(key) {
            object.insert(key.name.to_string(), v);
        }
    }
    if schema::kind(kind).unwrap().role == schema::Role::Config {
        object.insert("kind".into(), json!(kind));
        object.insert("variant".into(), json!(variant));
    }
    Value::Object(object)
}

#[test]
fn every_variant_of_the_schema_decodes_into_the_engine_types_with_its_defaults() {
    for kind in schema::kinds() {
        for variant in &kind.variants {
            for set_optional in [false, true] {
                let params = filled(kind.name, variant.name, set_optional);
                decode_any(kind.name, variant.name, &params)
                    .unwrap_or_else(|e| panic!("{} = {} ({params}): {e:#}", kind.name, variant.name));
            }
        }
    }
}

#[test]
fn a_missing_key_is_an_error_not_a_default() {
    let mut params = filled("train", "diffusion", false);
    params.as_object_mut().unwrap().remove("lr");
    let err = format!("{:#}", job_params::<TrainParams>(&job(params)).unwrap_err());
    assert!(err.starts_with("`fit`: missing field `lr`"), "{err}");
    let err = format!("{:#}", decode_any("sampler", "ddim", &json!({"steps": 10})).unwrap_err());
    assert!(err.contains("missing field `eta`"), "{err}");
}

#[test]
fn errors_name_the_stage_and_the_key() {
    let mut params = filled("train", "diffusion", false);
    params["lr"] = json!("fast");
    let err = format!("{:#}", job_params::<TrainParams>(&job(params)).unwrap_err());
    assert!(err.starts_with("`fit`: invalid type: string \"fast\", expected f64"), "{err}");
    let job = job(json!({}));
    let (name, pts) = input(&job, &StageRef { name: "pts".into() }).unwrap();
    assert_eq!((name, pts.kind.as_str()), ("pts", "dataset"));
    let err = input(&job, &StageRef { name: "gone".into() }).unwrap_err().to_string();
    assert!(err.contains("no input for the stage `gone`"), "{err}");
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
