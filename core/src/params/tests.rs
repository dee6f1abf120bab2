//! The schema and the typed values agree: every variant of every config kind and of the
//! stage kinds with a type here (dataset, sample, metrics, stats, nll, pretrained, plot),
//! filled with the schema's defaults (required keys given example values, optional keys set or not),
//! decodes into its type, and serialising the type back gives the same keys with the same
//! values. So a key the schema has and the type lacks, a field the schema does not
//! document, or a default the type reads differently all fail here.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::classifier::ClassifierParams;
use super::dataset::DatasetParams;
use super::guidance::GuidanceConfig;
use super::measure::Measure;
use super::metrics::MetricsParams;
use super::model::ModelConfig;
use super::nll::NllParams;
use super::plot::PlotParams;
use super::pretrained::PretrainedParams;
use super::sample::SampleParams;
use super::sampler::Sampler;
use super::schedule::ScheduleSpec;
use super::stats::StatsParams;
use super::train::TrainParams;
use crate::schema::{self, Default, KeySpec, Type};

/// A value of type `ty` for a key the schema requires (or leaves unset).
fn example(ty: &Type) -> Value {
    match ty {
        Type::Int => json!(1),
        Type::Float => json!(0.5),
        Type::Bool => json!(true),
        Type::Str | Type::Path => json!("x"),
        Type::Enum(options) => json!(options[0]),
        Type::List(inner) => json!([example(inner)]),
        Type::Stage(_) => json!({"$stage": "x"}),
        Type::Config(kind) => filled(kind, schema::kind(kind).unwrap().variants[0].name, true),
        Type::Union(alternatives) => example(&alternatives[0]),
        Type::Record => json!({}),
        Type::StageRecord(_) => json!({"k": {"$stage": "x"}}),
    }
}

fn filled(kind: &str, variant: &str, set_optional: bool) -> Value {
    let spec = schema::variant(kind, variant).unwrap();
    let mut object = Map::new();
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
    object.insert("kind".into(), json!(kind));
    object.insert("variant".into(), json!(variant));
    Value::Object(object)
}

/// Decodes `params` as a `T` and serialises it back (`kind` and the never-written net
/// `layout` aside, absent optional keys as null).
fn round_trip<T: DeserializeOwned + Serialize>(params: &Value) -> Result<Map<String, Value>, String> {
    let typed: T = super::decode(params, "params").map_err(|e| e.to_string())?;
    let Value::Object(mut back) = serde_json::to_value(&typed).unwrap() else { panic!("not an object") };
    back.remove("layout");
    back.retain(|_, v| !v.is_null());
    Ok(back)
}

/// [`round_trip`] for a stage's parameters, whose type does not hold its one variant.
fn round_trip_stage<T: DeserializeOwned + Serialize>(params: &Value) -> Result<Map<String, Value>, String> {
    let mut back = round_trip::<T>(params)?;
    back.insert("variant".into(), params["variant"].clone());
    Ok(back)
}

/// The same JSON, numbers compared as f64 (`-3` is `-3.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn agree(kind: &str, round_trip: fn(&Value) -> Result<Map<String, Value>, String>) {
    for variant in &schema::kind(kind).unwrap().variants {
        for set_optional in [false, true] {
            let mut params = filled(kind, variant.name, set_optional);
            let what = format!("{kind} = {} ({params})", variant.name);
            let back = round_trip(&params).unwrap_or_else(|e| panic!("{what}: {e}"));
            // Nested configs' `kind`s compared on neither side: some types keep them, some not.
            let mut back = Value::Object(back);
            without_kinds(&mut params);
            without_kinds(&mut back);
            assert!(same(&params, &back), "{what}: the type reads it as {back:?}");
        }
    }
}

#[test]
fn every_config_variant_of_the_schema_is_its_type_key_for_key() {
    agree("sampler", round_trip::<Sampler>);
    agree("schedule", round_trip::<ScheduleSpec>);
    agree("model", round_trip::<ModelConfig>);
    agree("guidance", round_trip::<GuidanceConfig>);
}

/// The variants `T` decodes, as serde lists them when a value names none of them.
fn variants_of<T: DeserializeOwned>() -> Vec<String> {
    let unknown = json!({"variant": "-"});
    let message = T::deserialize(&unknown).err().expect("no variant is named `-`").to_string();
    let (_, expected) = message.split_once("expected").unwrap_or_else(|| panic!("{message}"));
    expected.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The other direction of [`agree`]: a variant of the type that the schema lacks, beside
/// the ones named in `unwritten` (made by difflow, never written in a pipeline).
fn same_variants<T: DeserializeOwned>(kind: &str, unwritten: &[&str]) {
    let schema: Vec<&str> = schema::kind(kind).unwrap().variants.iter().map(|v| v.name).collect();
    let mut typed = variants_of::<T>();
    typed.retain(|v| !unwritten.contains(&v.as_str()));
    let mut documented: Vec<String> = schema.iter().map(|v| v.to_string()).collect();
    typed.sort();
    documented.sort();
    assert_eq!(typed, documented, "{kind}: the type's variants (left) and the schema's (right)");
}

#[test]
fn every_variant_of_each_type_is_in_the_schema() {
    same_variants::<Sampler>("sampler", &[]);
    // A pretrained model's β step by step.
    same_variants::<ScheduleSpec>("schedule", &["betas"]);
    same_variants::<ModelConfig>("model", &[]);
    same_variants::<GuidanceConfig>("guidance", &[]);
    same_variants::<DatasetParams>("dataset", &[]);
}

#[test]
fn every_dataset_variant_of_the_schema_is_its_type_key_for_key() {
    agree("dataset", round_trip::<DatasetParams>);
}

/// `value` without the `kind` of its nested config objects (their types do not keep it) and
/// without their unset optional keys (a type writes them as null, a filled default leaves
/// them out: the same thing).
fn without_kinds(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if object.contains_key("variant") {
                object.remove("kind");
                object.retain(|_, v| !v.is_null());
            }
            object.values_mut().for_each(without_kinds);
        }
        Value::Array(items) => items.iter_mut().for_each(without_kinds),
        _ => {}
    }
}

/// [`agree`] for a stage kind of one variant, whose type is its parameters (`variant` and
/// the nested configs' `kind` are not among them).
fn agree_stage(kind: &str, round_trip: fn(&Value) -> Result<Map<String, Value>, String>) {
    let spec = schema::kind(kind).unwrap();
    assert_eq!(spec.variants.len(), 1, "{kind}: one variant");
    for set_optional in [false, true] {
        let mut params = filled(kind, spec.variants[0].name, set_optional);
        let what = format!("{kind} ({params})");
        let back = round_trip(&params).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut back = Value::Object(back);
        without_kinds(&mut params);
        without_kinds(&mut back);
        params.as_object_mut().unwrap().remove("variant");
        assert!(same(&params, &back), "{what}: the type reads it as {back:?}");
    }
}

#[test]
fn every_evaluation_stage_of_the_schema_is_its_type_key_for_key() {
    agree_stage("sample", round_trip::<SampleParams>);
    agree_stage("metrics", round_trip::<MetricsParams>);
    agree_stage("stats", round_trip::<StatsParams>);
    agree_stage("nll", round_trip::<NllParams>);
    agree_stage("pretrained", round_trip::<PretrainedParams>);
    agree_stage("classifier", round_trip::<ClassifierParams>);
}

#[test]
fn every_plot_variant_of_the_schema_is_its_type_key_for_key() {
    agree("plot", round_trip::<PlotParams>);
    same_variants::<PlotParams>("plot", &[]);
}

#[test]
fn the_train_stage_of_the_schema_is_its_type_key_for_key() {
    agree("train", round_trip_stage::<TrainParams>);
}

#[test]
fn the_metrics_measure_choices_are_the_measures() {
    let key = schema::key("metrics", "default", "measure").unwrap();
    let Type::List(inner) = &key.ty else { panic!("{:?}", key.ty) };
    let names: Vec<&str> = Measure::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(**inner, Type::Enum(names));
    let defaults: Vec<Measure> = serde_json::from_value(schema::default_value(key).unwrap().to_json()).unwrap();
    assert_eq!(defaults, [Measure::Fid]);
}

#[test]
fn a_key_the_type_lacks_is_found() {
    let mut params = filled("sampler", "ddim", false);
    params.as_object_mut().unwrap().insert("churn".into(), json!(1.0));
    let back = round_trip::<Sampler>(&params).unwrap();
    params.as_object_mut().unwrap().remove("kind");
    assert!(!same(&params, &Value::Object(back)));
}
