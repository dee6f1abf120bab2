//! The stage graph: a petgraph DAG over a pipeline's stage instances, its topological order,
//! upstream closures, target resolution and Graphviz output.
//!
//! Before the graph is built, [`expand_implicit`] adds the hidden `stats` instances that
//! metrics stages read: the feature statistics (μ, Σ) of one input under one extractor are a
//! cache entry of their own, shared by every metrics stage that measures that input.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::lang::pipeline::{Instance, Pipeline};
use crate::lang::value::Value;
use crate::schema::facts;

pub mod snapshots;

/// The kind of the hidden feature-statistics instances.
pub const STATS_KIND: &str = "stats";

/// Measures that compare feature statistics of two inputs, samples and a reference (and
/// so need `stats` entries): the one list, kept with the dataset facts in core.
pub const STATS_MEASURES: &[&str] = facts::REFERENCE_MEASURES;

/// Whether an instance was added by difflow rather than written by the user.
pub fn is_hidden(inst: &Instance) -> bool {
    inst.kind == STATS_KIND
}

/// The pipeline with the training snapshots readers ask for ([`snapshots::expand`]), and
/// one hidden `stats` instance per (input, extractor) that a metrics
/// stage comparing feature statistics reads, and the metrics instances wired to them
/// through the extra params `samples_stats` and `reference_stats`.
/// `default_inception` (from `difflow.toml`) stands in for an unset `inception_weights`
/// so that the weights' content digest is part of the statistics' key.
pub fn expand_implicit(p: &Pipeline, default_inception: Option<&Path>) -> Pipeline {
    let p = &snapshots::expand(p);
    let mut out = Pipeline { instances: Vec::with_capacity(p.instances.len()), ..p.clone() };
    // (input, extractor, weights) → name of the stats instance already made for it.
    let mut made: HashMap<String, String> = HashMap::new();
    let mut taken: BTreeSet<String> = p.instances.iter().map(|i| i.name.clone()).collect();
    for inst in &p.instances {
        if inst.kind != "metrics" || !needs_stats(inst) {
            out.instances.push(inst.clone());
            continue;
        }
        let mut metrics = inst.clone();
        let features = inst.params.get("features").cloned().unwrap_or_else(|| Value::Str("inception".into()));
        let weights = match (&features, inst.params.get("inception_weights")) {
            (Value::Stage(_), _) => None,
            (_, Some(w @ (Value::Path(_) | Value::Str(_)))) => Some(w.clone()),
            (_, _) => default_inception.map(|w| Value::Path(w.to_string_lossy().into_owned())),
        };
        for (input_key, stats_key) in [("samples", "samples_stats"), ("reference", "reference_stats")] {
            let Some(Value::Stage(input)) = inst.params.get(input_key) else { continue };
            let extractor = match &features {
                Value::Stage(name) => name.clone(),
                other => value_text(other),
            };
            let identity =
                format!("{input}\u{0}{extractor}\u{0}{}", weights.as_ref().map(|w| w.display()).unwrap_or_default());
            let name = match made.get(&identity) {
                Some(name) => name.clone(),
                None => {
                    let mut name = format!("stats({input}, {extractor})");
                    // Two metrics stages using different Inception weights on one input
                    // need two entries: keep their names apart.
                    let mut n = 2;
                    while taken.contains(&name) {
                        name = format!("stats({input}, {extractor}, #{n})");
                        n += 1;
                    }
                    taken.insert(name.clone());
                    made.insert(identity, name.clone());
                    let mut params = BTreeMap::new();
                    params.insert("of".to_string(), Value::Stage(input.clone()));
                    params.insert("features".to_string(), features.clone());
                    if let Some(w) = &weights {
                        params.insert("inception_weights".to_string(), w.clone());
                    }
                    out.instances.push(Instance {
                        name: name.clone(),
                        decl: name.clone(),
                        kind: STATS_KIND.into(),
                        variant: "default".into(),
                        params,
                        sweep: Vec::new(),
                        span: inst.span,
                    });
                    name
                }
            };
            metrics.params.insert(stats_key.to_string(), Value::Stage(name));
        }
        out.instances.push(metrics);
    }
    out
}

fn needs_stats(metrics: &Instance) -> bool {
    match metrics.params.get("measure") {
        Some(Value::List(items)) => items.iter().any(|m| matches!(m, Value::Str(s) if facts::needs_reference(s))),
        Some(Value::Str(s)) => facts::needs_reference(s),
        _ => false,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.display(),
    }
}

/// Why a graph could not be built (the checker normally rules these out).
#[derive(Debug, Clone, PartialEq)]
pub enum GraphError {
    UnknownInput { instance: String, input: String },
    Cycle { instances: Vec<String> },
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphError::UnknownInput { instance, input } => {
                write!(f, "stage `{instance}` reads `{input}`, which is not a stage of this pipeline")
            }
            GraphError::Cycle { instances } => {
                write!(f, "the stages {} depend on each other in a cycle", instances.join(", "))
            }
        }
    }
}

impl std::error::Error for GraphError {}

/// The DAG of stage instances: an edge runs from each input to the stage that reads it.
#[derive(Debug, Clone)]
pub struct StageGraph {
    pub graph: DiGraph<usize, ()>,
    /// Instance index (into `Pipeline::instances`) → node.
    nodes: Vec<NodeIndex>,
    by_name: HashMap<String, usize>,
    /// Instance indices, inputs before readers, declaration order among independent ones.
    order: Vec<usize>,
}

impl StageGraph {
    pub fn new(p: &Pipeline) -> Result<StageGraph, GraphError> {
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..p.instances.len()).map(|i| graph.add_node(i)).collect();
        let by_name: HashMap<String, usize> =
            p.instances.iter().enumerate().map(|(i, x)| (x.name.clone(), i)).collect();
        for (i, inst) in p.instances.iter().enumerate() {
            for dep in inst.deps() {
                let Some(&d) = by_name.get(dep) else {
                    return Err(GraphError::UnknownInput { instance: inst.name.clone(), input: dep.to_string() });
                };
                graph.update_edge(nodes[d], nodes[i], ());
            }
        }
        // Kahn's algorithm, always taking the earliest-declared ready instance: a stable
        // order that reads like the file.
        let mut indegree: Vec<usize> =
            nodes.iter().map(|&n| graph.neighbors_directed(n, Direction::Incoming).count()).collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            indegree.iter().enumerate().filter(|(_, &d)| d == 0).map(|(i, _)| Reverse(i)).collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for n in graph.neighbors_directed(nodes[i], Direction::Outgoing) {
                let j = graph[n];
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(Reverse(j));
                }
            }
        }
        if order.len() < nodes.len() {
            let instances =
                (0..nodes.len()).filter(|&i| indegree[i] > 0).map(|i| p.instances[i].name.clone()).collect();
            return Err(GraphError::Cycle { instances });
        }
        Ok(StageGraph { graph, nodes, by_name, order })
    }

    /// Instance indices in topological order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Direct inputs of an instance (indices).
    pub fn inputs(&self, i: usize) -> Vec<usize> {
        self.graph.neighbors_directed(self.nodes[i], Direction::Incoming).map(|n| self.graph[n]).collect()
    }

    /// The given instances and everything they read, transitively.
    pub fn upstream_closure(&self, roots: impl IntoIterator<Item = usize>) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = roots.into_iter().collect();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(self.inputs(i));
            }
        }
        seen
    }

    /// Graphviz DOT: each node labelled with its name and stage kind, the instances of a
    /// family grouped in a cluster, hidden statistics nodes dashed.
    pub fn to_dot(&self, p: &Pipeline) -> String {
        let mut out = String::from(
            "digraph difflow {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n",
        );
        let node_line = |inst: &Instance| {
            let style = if is_hidden(inst) { ", style=\"rounded,dashed\", color=gray40" } else { "" };
            format!("{} [label={}{style}];", quote(&inst.name), quote(&format!("{}\n{}", inst.name, kind_label(inst))))
        };
        let mut in_cluster = BTreeSet::new();
        for (decl, members) in &p.families {
            let members: Vec<usize> = members.iter().filter_map(|m| self.index(m)).collect();
            if members.len() < 2 {
                continue;
            }
            let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{decl}")));
            let _ = writeln!(out, "    label={};\n    style=dashed;", quote(decl));
            for &i in &members {
                let _ = writeln!(out, "    {}", node_line(&p.instances[i]));
                in_cluster.insert(i);
            }
            out.push_str("  }\n");
        }
        for &i in &self.order {
            if !in_cluster.contains(&i) {
                let _ = writeln!(out, "  {}", node_line(&p.instances[i]));
            }
        }
        for &i in &self.order {
            let mut inputs = self.inputs(i);
            inputs.sort_unstable();
            for d in inputs {
                let _ = writeln!(out, "  {} -> {};", quote(&p.instances[d].name), quote(&p.instances[i].name));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn kind_label(inst: &Instance) -> String {
    if inst.variant.is_empty() || inst.variant == "default" {
        inst.kind.clone()
    } else {
        format!("{} = {}", inst.kind, inst.variant)
    }
}

/// A DOT string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Resolve user-given stage names (`gen` for a whole family, `gen[scale=0.5]` for one
/// instance) to instance indices. Hidden statistics instances are not addressable.
pub fn resolve_names(p: &Pipeline, g: &StageGraph, names: &[String]) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for name in names {
        let name = name.trim();
        if let Some(members) = p.families.get(name) {
            out.extend(members.iter().filter_map(|m| g.index(m)));
            continue;
        }
        match g.index(name) {
            Some(i) if !is_hidden(&p.instances[i]) => out.push(i),
            _ => return Err(unknown_stage_message(p, name)),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn unknown_stage_message(p: &Pipeline, name: &str) -> String {
    let candidates = p
        .families
        .keys()
        .cloned()
        .chain(p.instances.iter().filter(|i| !is_hidden(i) && i.name != i.decl).map(|i| i.name.clone()));
    let best = candidates
        .map(|c| (strsim::damerau_levenshtein(name, &c), c))
        .filter(|(distance, c)| *distance <= 2 && *distance < c.chars().count().min(name.chars().count()))
        .min_by_key(|(distance, _)| *distance);
    let mut msg = format!("there is no stage `{name}` in this pipeline");
    match best {
        Some((_, c)) => {
            let _ = write!(msg, "\nhelp: did you mean `{c}`?");
        }
        None => {
            let names: Vec<&str> = p.families.keys().map(String::as_str).collect();
            let _ = write!(msg, "\nhelp: the stages are: {}", names.join(", "));
        }
    }
    msg
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lang::value::Config;

    pub fn inst(name: &str, kind: &str, variant: &str, params: Vec<(&str, Value)>) -> Instance {
        let decl = name.split('[').next().unwrap().to_string();
        Instance {
            name: name.into(),
            decl,
            kind: kind.into(),
            variant: variant.into(),
            params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            sweep: Vec::new(),
            span: Default::default(),
        }
    }

    pub fn pipeline(instances: Vec<Instance>) -> Pipeline {
        let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in &instances {
            families.entry(i.decl.clone()).or_default().push(i.name.clone());
        }
        Pipeline { root: std::env::temp_dir(), instances, configs: BTreeMap::new(), families, ..Default::default() }
    }

    fn stage(n: &str) -> Value {
        Value::Stage(n.into())
    }

    fn cfg(scale: f64) -> Value {
        Value::Config(Config {
            kind: "guidance".into(),
            variant: "cfg".into(),
            params: [("scale".to_string(), Value::Float(scale))].into_iter().collect(),
        })
    }

    /// data → train → gen[scale=0.5], gen[scale=2.0] → scores[...] (fid) ← test data.
    pub fn cfg_study() -> Pipeline {
        let mut v = vec![
            inst("scores[scale=0.5]", "metrics", "default", vec![]),
            inst("digits", "dataset", "toy", vec![("shape", Value::Str("moons".into()))]),
            inst("digits_test", "dataset", "toy", vec![("shape", Value::Str("moons".into()))]),
            inst("ddpm", "train", "diffusion", vec![("data", stage("digits")), ("steps", Value::Int(10))]),
        ];
        v.remove(0);
        for s in [0.5, 2.0] {
            v.push(inst(
                &format!("gen[scale={s}]"),
                "sample",
                "default",
                vec![("from", stage("ddpm")), ("guidance", cfg(s)), ("batch", Value::Int(64))],
            ));
        }
        for s in [0.5, 2.0] {
            v.push(inst(
                &format!("scores[scale={s}]"),
                "metrics",
                "default",
                vec![
                    ("samples", stage(&format!("gen[scale={s}]"))),
                    ("reference", stage("digits_test")),
                    ("features", Value::Str("inception".into())),
                    ("measure", Value::List(vec![Value::Str("fid".into()), Value::Str("is".into())])),
                ],
            ));
        }
        pipeline(v)
    }

    #[test]
    fn stats_instances_are_added_once_per_input_and_extractor() {
        let p = expand_implicit(&cfg_study(), None);
        let stats: Vec<&str> = p.instances.iter().filter(|i| is_hidden(i)).map(|i| i.name.as_str()).collect();
        assert_eq!(
            stats,
            ["stats(gen[scale=0.5], inception)", "stats(digits_test, inception)", "stats(gen[scale=2], inception)"]
        );
        let m = p.instance("scores[scale=2]").unwrap();
        assert_eq!(m.params["samples_stats"], stage("stats(gen[scale=2], inception)"));
        assert_eq!(m.params["reference_stats"], stage("stats(digits_test, inception)"));
        let s = p.instance("stats(digits_test, inception)").unwrap();
        assert_eq!(s.params["of"], stage("digits_test"));
        assert_eq!(s.params["features"], Value::Str("inception".into()));
    }

    #[test]
    fn no_stats_without_a_measure_that_needs_them() {
        let mut base = cfg_study();
        for i in &mut base.instances {
            if i.kind == "metrics" {
                i.params.insert("measure".into(), Value::List(vec![Value::Str("is".into())]));
            }
        }
        let p = expand_implicit(&base, None);
        assert!(!p.instances.iter().any(is_hidden));
    }

    #[test]
    fn default_inception_weights_join_the_stats_params() {
        let p = expand_implicit(&cfg_study(), Some(Path::new("/w/inception.pth")));
        let s = p.instance("stats(digits_test, inception)").unwrap();
        assert_eq!(s.params["inception_weights"], Value::Path("/w/inception.pth".into()));
    }

    #[test]
    fn topological_order_and_closure() {
        let p = expand_implicit(&cfg_study(), None);
        let g = StageGraph::new(&p).unwrap();
        let names: Vec<&str> = g.order().iter().map(|&i| p.instances[i].name.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("digits") < pos("ddpm"));
        assert!(pos("ddpm") < pos("gen[scale=0.5]"));
        assert!(pos("stats(gen[scale=0.5], inception)") < pos("scores[scale=0.5]"));
        let target = resolve_names(&p, &g, &["gen[scale=2]".to_string()]).unwrap();
        let closure: Vec<&str> = g.upstream_closure(target).into_iter().map(|i| p.instances[i].name.as_str()).collect();
        assert_eq!(closure, ["digits", "ddpm", "gen[scale=2]"]);
        let family = resolve_names(&p, &g, &["gen".to_string()]).unwrap();
        assert_eq!(family.len(), 2);
    }

    #[test]
    fn unknown_and_hidden_names_are_rejected_with_a_suggestion() {
        let p = expand_implicit(&cfg_study(), None);
        let g = StageGraph::new(&p).unwrap();
        let err = resolve_names(&p, &g, &["ddmp".to_string()]).unwrap_err();
        assert!(err.contains("did you mean `ddpm`"), "{err}");
        assert!(resolve_names(&p, &g, &["stats(digits_test, inception)".to_string()]).is_err());
    }

    #[test]
    fn cycles_are_reported() {
        let p = pipeline(vec![
            inst("a", "train", "diffusion", vec![("data", stage("b"))]),
            inst("b", "train", "diffusion", vec![("data", stage("a"))]),
        ]);
        assert!(matches!(StageGraph::new(&p), Err(GraphError::Cycle { .. })));
    }

    #[test]
    fn dot_has_clusters_kinds_and_edges() {
        let p = expand_implicit(&cfg_study(), None);
        let dot = StageGraph::new(&p).unwrap().to_dot(&p);
        assert!(dot.starts_with("digraph difflow {"));
        assert!(dot.contains("subgraph \"cluster_gen\""));
        assert!(dot.contains("\"ddpm\" [label=\"ddpm\\ntrain = diffusion\"];"));
        assert!(dot.contains("\"ddpm\" -> \"gen[scale=0.5]\";"));
        assert!(dot.contains("\"stats(digits_test, inception)\" -> \"scores[scale=2]\";"));
        assert!(dot.contains("dashed"));
    }
}
