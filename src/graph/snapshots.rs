//! Training snapshots: `sample { from = ddpm, step = 5000 }` reads the EMA weights of
//! `ddpm` after 5,000 steps. Each asked-for step becomes a `train` instance of its own,
//! `ddpm@5000`: a copy of `ddpm` with `steps = 5000`, so its key is the key of that very
//! training run and its entry is shared with any pipeline that trains 5,000 steps. The
//! cache then continues one run from the other (see `cache::continuation`), so the
//! snapshots and the final run together cost one training run.
//!
//! `metrics { samples = gen, step = 5000 }` measures `gen` as drawn from the snapshot:
//! a copy of `gen`, `gen@5000`, with `step = 5000`, which then reads `ddpm@5000`.

use std::collections::{BTreeMap, BTreeSet};

use crate::lang::pipeline::{Instance, Pipeline};
use crate::lang::value::Value;

/// The key a reader uses to ask for a training step.
pub const STEP_KEY: &str = "step";
/// The stage keys through which a reader names the training stage it reads.
const TRAIN_INPUT_KEY: &str = "from";

/// The name of the snapshot of `train` at `step`.
pub fn snapshot_name(train: &str, step: i64) -> String {
    format!("{train}@{step}")
}

/// Whether an instance is a snapshot made by [`expand`].
pub fn is_snapshot(inst: &Instance) -> bool {
    inst.kind == "train" && inst.name.contains('@')
}

/// The steps a train instance is asked to run, when `steps` says so (not `epochs`).
pub fn declared_steps(train: &Instance) -> Option<i64> {
    match train.params.get("steps") {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    }
}

/// The pipeline with a snapshot instance per (train instance, asked-for step) placed just
/// before its run (ascending, so the earlier ones run first), and every reader's `step`
/// folded into its `from`. A step equal to the run's own `steps` reads the run itself.
pub fn expand(p: &Pipeline) -> Pipeline {
    let p = &expand_measured_steps(p);
    let trains: BTreeMap<&str, &Instance> =
        p.instances.iter().filter(|i| i.kind == "train").map(|i| (i.name.as_str(), i)).collect();
    let mut wanted: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut readers: Vec<Instance> = Vec::with_capacity(p.instances.len());
    for inst in &p.instances {
        let mut inst = inst.clone();
        if let (Some(Value::Int(step)), Some(Value::Stage(from))) =
            (inst.params.get(STEP_KEY).cloned(), inst.params.get(TRAIN_INPUT_KEY).cloned())
        {
            if let Some(train) = trains.get(from.as_str()) {
                inst.params.remove(STEP_KEY);
                if declared_steps(train) != Some(step) {
                    wanted.entry(from.clone()).or_default().insert(step);
                    inst.params.insert(TRAIN_INPUT_KEY.into(), Value::Stage(snapshot_name(&from, step)));
                }
            }
        }
        readers.push(inst);
    }
    if wanted.is_empty() {
        return Pipeline { instances: readers, ..p.clone() };
    }
    let mut instances = Vec::with_capacity(readers.len() + wanted.values().map(BTreeSet::len).sum::<usize>());
    for inst in readers {
        if let Some(steps) = wanted.get(&inst.name) {
            for &step in steps {
                instances.push(snapshot_of(&inst, step));
            }
        }
        instances.push(inst);
    }
    Pipeline { instances, ..p.clone() }
}

/// Metrics stages with `step`: each measures a copy of its sample stage that reads the
/// training run at that step (placed right after the sample stage it copies).
fn expand_measured_steps(p: &Pipeline) -> Pipeline {
    let by_name: BTreeMap<&str, &Instance> = p.instances.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut copies: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut measured: Vec<Instance> = Vec::with_capacity(p.instances.len());
    for inst in &p.instances {
        let mut inst = inst.clone();
        if inst.kind == "metrics" {
            if let (Some(Value::Int(step)), Some(Value::Stage(samples))) =
                (inst.params.get(STEP_KEY).cloned(), inst.params.get("samples").cloned())
            {
                if let Some(sample) = by_name.get(samples.as_str()).filter(|s| s.kind == "sample") {
                    inst.params.remove(STEP_KEY);
                    if reads_step(p, sample) != Some(step) {
                        copies.entry(samples.clone()).or_default().insert(step);
                        inst.params.insert("samples".into(), Value::Stage(snapshot_name(&samples, step)));
                    }
                }
            }
        }
        measured.push(inst);
    }
    if copies.is_empty() {
        return Pipeline { instances: measured, ..p.clone() };
    }
    let mut instances = Vec::with_capacity(measured.len() + copies.values().map(BTreeSet::len).sum::<usize>());
    for inst in measured {
        let steps = copies.get(&inst.name).cloned();
        let name = inst.name.clone();
        instances.push(inst);
        for step in steps.into_iter().flatten() {
            let mut copy = instances.iter().rfind(|i| i.name == name).expect("just pushed").clone();
            copy.name = snapshot_name(&name, step);
            copy.decl = copy.name.clone();
            copy.params.insert(STEP_KEY.into(), Value::Int(step));
            instances.push(copy);
        }
    }
    Pipeline { instances, ..p.clone() }
}

/// The training step a sample stage reads: its `step`, else its training run's `steps`.
fn reads_step(p: &Pipeline, sample: &Instance) -> Option<i64> {
    match sample.params.get(STEP_KEY) {
        Some(Value::Int(k)) => Some(*k),
        _ => match sample.params.get(TRAIN_INPUT_KEY) {
            Some(Value::Stage(train)) => p.instance(train).and_then(declared_steps),
            _ => None,
        },
    }
}

fn snapshot_of(train: &Instance, step: i64) -> Instance {
    let mut snap = train.clone();
    snap.name = snapshot_name(&train.name, step);
    snap.decl = snap.name.clone();
    snap.params.remove("epochs");
    snap.params.insert("steps".into(), Value::Int(step));
    snap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{inst, pipeline};

    fn reader(name: &str, step: Option<i64>) -> Instance {
        let mut params = vec![("from", Value::Stage("ddpm".into()))];
        if let Some(k) = step {
            params.push(("step", Value::Int(k)));
        }
        inst(name, "sample", "default", params)
    }

    #[test]
    fn each_asked_step_is_one_snapshot_before_its_run() {
        let p = pipeline(vec![
            inst("ddpm", "train", "diffusion", vec![("steps", Value::Int(100))]),
            reader("a", Some(50)),
            reader("b", Some(20)),
            reader("c", Some(50)),
            reader("d", Some(100)),
            reader("e", None),
        ]);
        let out = expand(&p);
        let names: Vec<&str> = out.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["ddpm@20", "ddpm@50", "ddpm", "a", "b", "c", "d", "e"]);
        assert_eq!(out.instances[1].params["steps"], Value::Int(50));
        assert!(is_snapshot(&out.instances[1]) && !is_snapshot(&out.instances[2]));
        let from = |n: &str| out.instances.iter().find(|i| i.name == n).unwrap().params["from"].clone();
        assert_eq!(from("a"), Value::Stage("ddpm@50".into()));
        assert_eq!(from("b"), Value::Stage("ddpm@20".into()));
        assert_eq!(from("d"), Value::Stage("ddpm".into()));
        assert!(out.instances.iter().all(|i| !i.params.contains_key("step")));
    }

    #[test]
    fn a_metrics_step_measures_a_copy_of_its_samples_at_that_step() {
        let m = |name: &str, step: i64| {
            inst(name, "metrics", "default", vec![("samples", Value::Stage("gen".into())), ("step", Value::Int(step))])
        };
        let p = pipeline(vec![
            inst("ddpm", "train", "diffusion", vec![("steps", Value::Int(100))]),
            reader("gen", None),
            m("m10", 10),
            m("m100", 100),
        ]);
        let out = expand(&p);
        let names: Vec<&str> = out.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["ddpm@10", "ddpm", "gen", "gen@10", "m10", "m100"]);
        let get = |n: &str, k: &str| out.instances.iter().find(|i| i.name == n).unwrap().params[k].clone();
        assert_eq!(get("gen@10", "from"), Value::Stage("ddpm@10".into()));
        assert_eq!(get("m10", "samples"), Value::Stage("gen@10".into()));
        assert_eq!(get("m100", "samples"), Value::Stage("gen".into()));
    }

    #[test]
    fn a_snapshot_is_keyed_as_a_run_of_that_many_steps() {
        use crate::cache::{compute_keys, Digests};
        use crate::graph::{expand_implicit, StageGraph};
        let keys = |p: &Pipeline| {
            let p = expand_implicit(p, None);
            compute_keys(&p, &StageGraph::new(&p).unwrap(), &mut Digests::in_memory()).unwrap().keys
        };
        let train = |steps: i64| inst("ddpm", "train", "diffusion", vec![("steps", Value::Int(steps))]);
        let snapshot = keys(&pipeline(vec![train(100), reader("a", Some(40))]));
        let short = keys(&pipeline(vec![train(40), reader("a", None)]));
        assert_eq!(snapshot["ddpm@40"], short["ddpm"]);
        assert_eq!(snapshot["a"], short["a"], "sampling the snapshot is sampling the 40-step run");
        assert_ne!(snapshot["ddpm"], short["ddpm"]);
    }

    #[test]
    fn a_snapshot_of_an_epochs_run_counts_steps() {
        let p =
            pipeline(vec![inst("ddpm", "train", "diffusion", vec![("epochs", Value::Int(3))]), reader("a", Some(7))]);
        let snap = &expand(&p).instances[0];
        assert_eq!(snap.name, "ddpm@7");
        assert_eq!(snap.params.get("epochs"), None);
        assert_eq!(snap.params["steps"], Value::Int(7));
    }
}
