//! Stage keys: blake3 over the canonical JSON of a stage's kind, variant, implementation
//! version and result-changing parameters, with each upstream stage replaced by its key and
//! each file or folder by its content digest. Names, comments, layout, key order, device
//! and sampling batch size are not in it, except in a report's key: a report shows the
//! pipeline's text and `--set`s, so its key holds them too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value as Json};

use super::digest::Digests;
use crate::graph::{self, StageGraph};
use crate::lang::pipeline::{Instance, Pipeline, Source};
use crate::lang::value::Value;
use crate::project::settings::Settings;

/// Keys of every instance of a pipeline, with what was hashed (for "stale" explanations).
#[derive(Debug, Clone, Default)]
pub struct StageKeys {
    /// Instance name → key.
    pub keys: BTreeMap<String, String>,
    /// Instance name → the canonical JSON the key hashes.
    pub material: BTreeMap<String, Json>,
}

impl StageKeys {
    pub fn key(&self, instance: &str) -> &str {
        &self.keys[instance]
    }
}

/// Why a stage has no key, in words (as the settings and fetch errors it passes on).
pub type KeyError = String;

/// The keys `difflow run` would use for this pipeline (hidden statistics instances
/// included), with the settings of its `difflow.toml` and no digest memo on disk.
pub fn stage_keys(p: &Pipeline) -> Result<BTreeMap<String, String>, KeyError> {
    let settings = Settings::load(&p.root)?;
    let (p, inception) = crate::fetch::fill_in(p, &settings)?;
    let expanded = graph::expand_implicit(&p, inception.as_deref());
    let g = StageGraph::new(&expanded).map_err(|e| e.to_string())?;
    Ok(compute_keys(&expanded, &g, &mut Digests::in_memory())?.keys)
}

/// Keys of an already expanded pipeline, inputs first.
pub fn compute_keys(p: &Pipeline, g: &StageGraph, digests: &mut Digests) -> Result<StageKeys, KeyError> {
    let mut out = StageKeys::default();
    for &i in g.order() {
        let inst = &p.instances[i];
        let mut material = key_material(inst, &out.keys, digests)?;
        if inst.kind == "report" {
            material["recipe"] = recipe_material(&p.source);
        }
        let key = hash_material(&material);
        out.keys.insert(inst.name.clone(), key);
        out.material.insert(inst.name.clone(), material);
    }
    Ok(out)
}

/// What a report shows of the text its pipeline was loaded from, for its key alone: a
/// comment or a `--set` rewrites the report, and leaves every other stage's key as it was.
fn recipe_material(source: &Source) -> Json {
    let texts: Vec<&str> = source.files.iter().map(|(_, text)| text.as_str()).collect();
    json!({ "text": hash_material(&json!(texts)), "set": source.sets })
}

/// A train stage's `uncond_p` as it acts: an unconditional model (classes = 0) drops no
/// label whatever the value says (`TrainParams::label_drop`), so it keys as 0 and its
/// entries do not depend on the default for class-conditional nets.
fn label_drop_of(inst: &Instance, name: &str) -> Option<Value> {
    if inst.kind != "train" || name != "uncond_p" {
        return None;
    }
    let Some(Value::Config(model)) = inst.params.get("model") else { return None };
    match model.params.get("classes") {
        Some(Value::Int(classes)) if *classes > 0 => None,
        _ => Some(Value::Float(0.0)),
    }
}

/// A key: the first 128 bits of blake3 over the canonical JSON, hex.
pub fn hash_material(material: &Json) -> String {
    let hex = blake3::hash(canonical_json(material).as_bytes()).to_hex();
    hex[..32].to_string()
}

fn key_material(inst: &Instance, upstream: &BTreeMap<String, String>, digests: &mut Digests) -> Result<Json, KeyError> {
    let mut params = serde_json::Map::new();
    for (name, value) in &inst.params {
        if let Some(files) = pretrained_files(inst, name, value, digests)? {
            params.insert(name.clone(), files);
            continue;
        }
        if let (true, "run", Value::Path(file)) = (inst.kind == "script", name.as_str(), value) {
            params.insert(name.clone(), python_module_material(Path::new(file), inst, digests)?);
            continue;
        }
        if in_key(&inst.kind, &inst.variant, name) && !crate::schema::is_neutral(&inst.kind, &inst.variant, name, value)
        {
            let value = label_drop_of(inst, name).unwrap_or_else(|| value.clone());
            params
                .insert(keyed_name(&inst.kind, &inst.variant, name), value_material(&value, inst, upstream, digests)?);
        }
    }
    Ok(json!({
        "kind": inst.kind,
        "variant": inst.variant,
        "version": implementation_version(&inst.kind),
        "params": Json::Object(params),
    }))
}

/// A `pretrained` folder is keyed by the content of the three files read from it (model
/// config, weights, scheduler config), not by the rest of the folder; `None` for any other
/// key. A folder that cannot be read keys as missing (check reports why, the run stops).
fn pretrained_files(inst: &Instance, name: &str, v: &Value, digests: &mut Digests) -> Result<Option<Json>, KeyError> {
    let (true, "path", Value::Path(dir)) = (inst.kind == "pretrained", name, v) else { return Ok(None) };
    let Ok(files) = difflow_core::diffusers::locate(Path::new(dir)) else {
        return Ok(Some(json!({ "$missing": dir })));
    };
    let mut out = serde_json::Map::new();
    for (role, file) in [("config", &files.config), ("weights", &files.weights), ("scheduler", &files.scheduler)] {
        let digest = digests
            .digest(file)
            .map_err(|e| format!("cannot read `{}` (used by `{}`): {e}", file.display(), inst.name))?;
        out.insert(role.into(), json!({ "$file": digest }));
    }
    Ok(Some(Json::Object(out)))
}

fn value_material(
    v: &Value,
    inst: &Instance,
    upstream: &BTreeMap<String, String>,
    digests: &mut Digests,
) -> Result<Json, KeyError> {
    Ok(match v {
        Value::Stage(name) => match upstream.get(name) {
            Some(k) => json!({ "$stage": k }),
            None => return Err(format!("stage `{}` reads `{name}`, which has no key yet", inst.name)),
        },
        Value::Path(p) => match digests.digest(Path::new(p)) {
            Ok(Some(d)) => json!({ "$file": d }),
            // A file that is not there yet: the key still exists (plan can show the
            // stage), and running it fails with the worker's message about the file.
            Ok(None) => json!({ "$missing": p }),
            Err(e) => return Err(format!("cannot read `{p}` (used by `{}`): {e}", inst.name)),
        },
        Value::List(items) => {
            Json::Array(items.iter().map(|x| value_material(x, inst, upstream, digests)).collect::<Result<_, _>>()?)
        }
        Value::Config(c) => {
            let mut map = serde_json::Map::new();
            map.insert("kind".into(), json!(c.kind));
            map.insert("variant".into(), json!(c.variant));
            for (k, x) in &c.params {
                if let (true, "file", Value::Path(file)) = (c.kind == "model" && c.variant == "python", k.as_str(), x) {
                    map.insert(k.clone(), python_module_material(Path::new(file), inst, digests)?);
                } else if in_key(&c.kind, &c.variant, k) && !crate::schema::is_neutral(&c.kind, &c.variant, k, x) {
                    map.insert(k.clone(), value_material(x, inst, upstream, digests)?);
                }
            }
            Json::Object(map)
        }
        Value::Record(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, x)| Ok((k.clone(), value_material(x, inst, upstream, digests)?)))
                .collect::<Result<_, KeyError>>()?,
        ),
        other => other.to_json(),
    })
}

/// A python model's module (or a script): its content digest and those of the project files it imports
/// (sorted by digest, so that moving the project keeps the key), so that editing the
/// model or a helper it imports retrains and editing any other file does not. A module
/// that cannot be read keys as missing (check reports why, the run stops).
fn python_module_material(file: &Path, inst: &Instance, digests: &mut Digests) -> Result<Json, KeyError> {
    let folder = file.parent().unwrap_or(Path::new("."));
    let (policy, _) = crate::lang::use_policy::UsePolicy::for_pipeline(folder);
    let Ok((module, text)) = crate::lang::python_files::read_module(file, &policy) else {
        return Ok(json!({ "$missing": file.display().to_string() }));
    };
    let mut digest = |path: &Path| match digests.digest(path) {
        Ok(Some(d)) => Ok(json!(d)),
        Ok(None) => Ok(json!({ "$missing": path.display().to_string() })),
        Err(e) => Err(format!("cannot read `{}` (used by `{}`): {e}", path.display(), inst.name)),
    };
    let module_digest = digest(&module)?;
    let mut imports = crate::lang::python_files::imported_files(&module, &text, &policy)
        .iter()
        .map(|p| digest(p))
        .collect::<Result<Vec<_>, _>>()?;
    imports.sort_by_key(|d| d.to_string());
    Ok(json!({ "$file": module_digest, "imports": imports }))
}

/// Whether a key can change results (keys the schema does not know, such as the
/// statistics inputs wired in by the graph, always can).
fn in_key(kind: &str, variant: &str, key: &str) -> bool {
    schema_in_key(kind, variant, key).unwrap_or(true)
}

/// The schema's `in_key` flag; `None` for keys it does not know.
fn schema_in_key(kind: &str, variant: &str, key: &str) -> Option<bool> {
    crate::schema::key(kind, variant, key).map(|k| k.in_key)
}

/// A set key's name in the key material: `NAME@N` when its meaning has changed N - 1 times
/// (see `KeySpec::meaning`), else `NAME`; an unset optional key is not in the params, so
/// the keys of stages that leave it unset stay as they were.
fn keyed_name(kind: &str, variant: &str, key: &str) -> String {
    match crate::schema::key(kind, variant, key).map(|k| k.meaning) {
        Some(meaning) if meaning > 1 => format!("{key}@{meaning}"),
        _ => key.to_string(),
    }
}

/// The kind's implementation version (1 for a kind the schema does not know).
fn implementation_version(kind: &str) -> u32 {
    crate::schema::kind(kind).map_or(1, |k| k.version)
}

/// JSON with object keys sorted at every level and no whitespace: the same value always
/// gives the same bytes, whatever the order it was built in.
pub fn canonical_json(v: &Json) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Json::String(k.clone()));
                write_canonical(x, out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::expand_implicit;
    use crate::graph::tests::{cfg_study, inst, pipeline};

    fn keys(p: &Pipeline) -> BTreeMap<String, String> {
        let p = expand_implicit(p, None);
        let g = StageGraph::new(&p).unwrap();
        compute_keys(&p, &g, &mut Digests::in_memory()).unwrap().keys
    }

    /// The keys of the CFG study, and of the study with `key` of `instance` set to `v`.
    fn keys_with(instance: &str, key: &str, v: Value) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut p = cfg_study();
        p.instances.iter_mut().find(|i| i.name == instance).unwrap().params.insert(key.into(), v);
        (keys(&cfg_study()), keys(&p))
    }

    /// Whether each of `names` has one key in `a` and `b`.
    fn same_keys(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, names: &[&str]) -> Vec<bool> {
        names.iter().map(|n| a[*n] == b[*n]).collect()
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: Json = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
    }

    #[test]
    fn renaming_and_reordering_change_no_key() {
        let base = keys(&cfg_study());
        let mut renamed = cfg_study();
        for i in &mut renamed.instances {
            i.name = i.name.replace("ddpm", "trained");
            for v in i.params.values_mut() {
                if let Value::Stage(s) = v {
                    *s = s.replace("ddpm", "trained");
                }
            }
        }
        renamed.instances.reverse();
        let renamed = keys(&renamed);
        assert_eq!(base["ddpm"], renamed["trained"]);
        assert_eq!(same_keys(&base, &renamed, &["scores[scale=0.5]", "stats(digits_test, inception)"]), [true, true]);
    }

    #[test]
    fn guidance_scale_changes_sampling_and_metrics_but_not_training() {
        let (base, changed) = keys_with("gen[scale=0.5]", "guidance", Value::Float(0.7));
        let kept = ["ddpm", "scores[scale=2]", "stats(digits_test, inception)"];
        assert_eq!(same_keys(&base, &changed, &kept), [true; 3]);
        let rekeyed = ["gen[scale=0.5]", "stats(gen[scale=0.5], inception)", "scores[scale=0.5]"];
        assert_eq!(same_keys(&base, &changed, &rekeyed), [false; 3]);
    }

    #[test]
    fn sampling_batch_is_not_in_the_key_but_training_steps_are() {
        let (base, batched) = keys_with("gen[scale=0.5]", "batch", Value::Int(7));
        assert_eq!(base, batched);
        let (_, changed) = keys_with("ddpm", "steps", Value::Int(11));
        let rekeyed = ["ddpm", "gen[scale=0.5]", "gen[scale=2]", "scores[scale=2]"];
        assert_eq!(same_keys(&base, &changed, &rekeyed), [false; 4]);
        assert_eq!(base["digits"], changed["digits"]);
    }

    #[test]
    fn a_key_whose_meaning_changed_rekeys_only_stages_that_set_it() {
        let material = |params: Vec<(&str, Value)>| {
            let p = pipeline(vec![inst("data", "dataset", "toy", params)]);
            let inst = &p.instances[0];
            key_material(inst, &BTreeMap::new(), &mut Digests::in_memory()).unwrap()["params"].clone()
        };
        assert_eq!(crate::schema::key("dataset", "mnist", "limit").map(|k| k.meaning), Some(2));
        let digits = |params: Vec<(&str, Value)>| {
            let p = pipeline(vec![inst("data", "dataset", "mnist", params)]);
            key_material(&p.instances[0], &BTreeMap::new(), &mut Digests::in_memory()).unwrap()["params"].clone()
        };
        let limited = digits(vec![("split", Value::Str("train".into())), ("limit", Value::Int(5))]);
        assert_eq!(limited.get("limit@2"), Some(&serde_json::json!(5)), "{limited}");
        assert!(limited.get("limit").is_none());
        let whole = digits(vec![("split", Value::Str("train".into()))]);
        assert_eq!(whole, serde_json::json!({ "split": "train" }));
        assert_eq!(material(vec![("count", Value::Int(3))]), serde_json::json!({ "count": 3 }));
    }

    #[test]
    fn a_neutral_value_and_a_label_drop_without_labels_key_as_before_the_keys_existed() {
        use difflow_core::value::Config;
        let params_of = |kind: &str, variant: &str, params: Vec<(&str, Value)>| {
            let p = pipeline(vec![inst("s", kind, variant, params)]);
            key_material(&p.instances[0], &BTreeMap::new(), &mut Digests::in_memory()).unwrap()["params"].clone()
        };
        let cfg = |interval: Option<Vec<f64>>| {
            let mut params = BTreeMap::from([("scale".to_string(), Value::Float(2.0))]);
            if let Some(i) = interval {
                params.insert("interval".into(), Value::List(i.into_iter().map(Value::Float).collect()));
            }
            Value::Config(Config { kind: "guidance".into(), variant: "cfg".into(), params })
        };
        let guided = |interval| params_of("sample", "default", vec![("guidance", cfg(interval))]);
        assert_eq!(guided(Some(vec![])), guided(None), "`interval = []` guides every step, as before the key");
        assert_ne!(guided(Some(vec![0.28, 5.42])), guided(None));

        let net = |classes: i64| {
            let params = BTreeMap::from([("classes".to_string(), Value::Int(classes))]);
            Value::Config(Config { kind: "model".into(), variant: "unet".into(), params })
        };
        let trained = |classes, uncond_p| {
            params_of("train", "diffusion", vec![("model", net(classes)), ("uncond_p", Value::Float(uncond_p))])
        };
        assert_eq!(trained(0, 0.1), trained(0, 0.0), "an unconditional net drops no label");
        assert_eq!(trained(0, 0.1)["uncond_p"], serde_json::json!(0.0));
        assert_ne!(trained(10, 0.1), trained(10, 0.0));
    }

    #[test]
    fn paths_are_keyed_by_content() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.bin");
        let b = d.path().join("b.bin");
        std::fs::write(&a, b"same").unwrap();
        std::fs::write(&b, b"same").unwrap();
        let with = |path: &Path| {
            keys(&pipeline(vec![inst(
                "data",
                "dataset",
                "images",
                vec![("path", Value::Path(path.to_string_lossy().into_owned()))],
            )]))["data"]
                .clone()
        };
        assert_eq!(with(&a), with(&b));
        std::fs::write(&b, b"different").unwrap();
        assert_ne!(with(&a), with(&b));
        assert_ne!(with(&a), with(&d.path().join("missing")));
    }

    #[test]
    fn a_pretrained_folder_is_keyed_by_the_three_files_it_reads() {
        let d = tempfile::tempdir().unwrap();
        for (file, text) in
            [("config.json", "{}"), ("diffusion_pytorch_model.safetensors", "weights"), ("scheduler_config.json", "{}")]
        {
            std::fs::write(d.path().join(file), text).unwrap();
        }
        let key = || {
            let path = Value::Path(d.path().to_string_lossy().into_owned());
            keys(&pipeline(vec![inst("m", "pretrained", "diffusers", vec![("path", path)])]))["m"].clone()
        };
        let base = key();
        std::fs::write(d.path().join("README.md"), "a model card").unwrap();
        assert_eq!(key(), base, "files difflow does not read are not in the key");
        std::fs::write(d.path().join("diffusion_pytorch_model.safetensors"), "other weights").unwrap();
        assert_ne!(key(), base);
    }

    #[test]
    fn the_text_and_sets_are_in_a_reports_key_alone() {
        let study = || {
            let mut p = cfg_study();
            let include = Value::List(vec![Value::Stage("scores[scale=0.5]".into())]);
            p.instances.push(inst("study", "report", "default", vec![("include", include)]));
            p
        };
        let base = keys(&study());
        let mut commented = study();
        commented.source.files.push(("p.diff".into(), "# a comment\n".into()));
        let mut set = study();
        set.source.sets.push("steps=100".into());
        for changed in [keys(&commented), keys(&set)] {
            let rekeyed: Vec<&String> = base.keys().filter(|name| base[*name] != changed[*name]).collect();
            assert_eq!(rekeyed, ["study"]);
        }
    }

    #[test]
    fn kind_and_variant_are_in_the_key() {
        let a = keys(&pipeline(vec![inst("x", "dataset", "toy", vec![])]));
        let b = keys(&pipeline(vec![inst("x", "dataset", "mnist", vec![])]));
        let c = keys(&pipeline(vec![inst("x", "nll", "toy", vec![])]));
        assert_ne!(a["x"], b["x"]);
        assert_ne!(a["x"], c["x"]);
    }
}
