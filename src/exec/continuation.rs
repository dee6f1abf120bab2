//! Plan and run for training runs that grow (see `cache::continuation`): which cached (or
//! earlier planned) run of the same training a `train` instance continues from, the
//! training steps a plan will take, and the order that lets each run continue the last.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Session, State};
use crate::cache::continuation::{self, grouped, CachedRun};
use crate::job::{Input, CONTINUE_INPUT};

/// The steps a train instance runs to: its `steps`, or `epochs` × batches per epoch when
/// its dataset's entry says how many examples there are.
pub fn target_steps(s: &Session, i: usize) -> Option<u64> {
    if let Some(steps) = continuation::material_steps(&s.keys.material[&s.instance(i).name]) {
        return Some(steps);
    }
    let inst = s.instance(i);
    let epochs = inst.params.get("epochs")?.to_json().as_u64()?;
    let batch = inst.params.get("batch")?.to_json().as_u64()?.max(1);
    let data = match inst.params.get("data")? {
        crate::lang::value::Value::Stage(name) => name,
        _ => return None,
    };
    let meta_path = s.cache.entry_dir(s.keys.key(data)).join("meta.json");
    let meta = difflow_core::files::read_text(&meta_path, difflow_core::files::Purpose::Metadata).ok()?;
    let count = serde_json::from_str::<serde_json::Value>(&meta).ok()?.get("count")?.as_u64()?;
    Some(epochs * count.div_ceil(batch))
}

fn lineage(s: &Session, i: usize) -> Option<String> {
    continuation::lineage(&s.keys.material[&s.instance(i).name])
}

/// The cached run that instance `i` continues from now, as the job input that tells the
/// worker so (`None`: it trains from step 0).
pub fn continue_input(s: &Session, i: usize) -> Option<(String, Input)> {
    cached_start(s, i).map(|(_, key, input)| (key, input))
}

/// The longest intact cached run short of instance `i`'s target (a corrupt entry is passed
/// over): its steps, key and job input.
fn cached_start(s: &Session, i: usize) -> Option<(u64, String, Input)> {
    let target = target_steps(s, i)?;
    let runs = continuation::cached_runs(&s.cache, &lineage(s, i)?);
    let (from, m) =
        runs.iter().rev().filter(|r| r.steps < target).find_map(|r| s.cache.verify(&r.key).ok().map(|m| (r, m)))?;
    let params = serde_json::from_str(&m.params).unwrap_or(serde_json::Value::Null);
    let input = Input { kind: m.kind, variant: m.variant, params, dir: s.cache.entry_dir(&from.key) };
    Some((from.steps, from.key.clone(), input))
}

/// What instance `i` continues when its cluster job is submitted now: the longest run short
/// of its target among the cached ones and those `submitted` in this run (instance → job
/// id), which are not cached yet but will be once their job succeeds. Returns the key
/// continued, the job input, and the job to wait for when that run is a submitted one.
pub fn continue_at_submission(
    s: &Session,
    i: usize,
    submitted: &BTreeMap<usize, String>,
) -> Option<(String, Input, Option<String>)> {
    let (line, target) = (lineage(s, i)?, target_steps(s, i)?);
    let cached = cached_start(s, i);
    let planned = submitted
        .iter()
        .filter(|(&j, _)| j != i && lineage(s, j).as_ref() == Some(&line))
        .filter_map(|(&j, id)| Some((target_steps(s, j)?, j, id)))
        .filter(|(steps, _, _)| *steps < target)
        .max_by_key(|(steps, _, _)| *steps);
    match (cached, planned) {
        (Some((from, key, input)), Some((steps, _, _))) if from >= steps => Some((key, input, None)),
        (_, Some((_, j, id))) => {
            let inst = s.instance(j);
            let params = inst.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            let input = Input {
                kind: inst.kind.clone(),
                variant: inst.variant.clone(),
                params: serde_json::Value::Object(params),
                dir: s.cache.entry_dir(s.key(j)),
            };
            Some((s.key(j).to_string(), input, Some(id.clone())))
        }
        (Some((_, key, input)), None) => Some((key, input, None)),
        (None, None) => None,
    }
}

/// `to_run` in an order that submits the runs of one training together, fewest steps first,
/// at the place of the first (they read the same inputs), so that each longer run can wait
/// for and continue the shorter. A run whose inputs are not all placed by then keeps its place.
pub fn submission_order(s: &Session, to_run: &[usize]) -> Vec<usize> {
    let mut groups: HashMap<String, Vec<(u64, usize)>> = HashMap::new();
    for &i in to_run {
        if let (Some(line), Some(target)) = (lineage(s, i), target_steps(s, i)) {
            groups.entry(line).or_default().push((target, i));
        }
    }
    let pending: HashSet<usize> = to_run.iter().copied().collect();
    let mut placed: HashSet<usize> = HashSet::new();
    let mut out = Vec::with_capacity(to_run.len());
    for &i in to_run {
        if placed.contains(&i) {
            continue;
        }
        let mut members = lineage(s, i).and_then(|line| groups.get(&line)).cloned().unwrap_or_default();
        members.sort();
        for (_, j) in members {
            let ready = j == i || s.graph.inputs(j).iter().all(|d| !pending.contains(d) || placed.contains(d));
            if ready && placed.insert(j) {
                out.push(j);
            }
        }
        if placed.insert(i) {
            out.push(i);
        }
    }
    out
}

/// The step counts of every cached run of instance `i`'s training (empty for other kinds).
pub fn cached_steps(s: &Session, i: usize) -> Vec<u64> {
    match lineage(s, i) {
        Some(line) => continuation::cached_runs(&s.cache, &line).into_iter().map(|r| r.steps).collect(),
        None => Vec::new(),
    }
}

/// For each instance to run, the shorter runs of its training that also run: it waits
/// for them, so that it continues from the longest rather than starting over.
pub fn shorter_runs(s: &Session, to_run: &[usize]) -> HashMap<usize, Vec<usize>> {
    let runs: Vec<(usize, String, u64)> =
        to_run.iter().filter_map(|&i| Some((i, lineage(s, i)?, target_steps(s, i)?))).collect();
    let mut out = HashMap::new();
    for (i, line, target) in &runs {
        let shorter: Vec<usize> = runs.iter().filter(|(_, l, t)| l == line && t < target).map(|(j, _, _)| *j).collect();
        if !shorter.is_empty() {
            out.insert(*i, shorter);
        }
    }
    out
}

/// Follows a plan in order: knows which runs the cache holds and which the plan will
/// have made by the time each row runs.
#[derive(Default)]
pub struct Planner {
    cached: HashMap<String, Vec<CachedRun>>,
    /// Lineage → (steps, instance name) of the runs planned so far.
    planned: HashMap<String, Vec<(u64, String)>>,
}

impl Planner {
    /// The state of row `i` whose entry is missing (`base`: new or stale, as keys say).
    pub fn state(&mut self, s: &Session, i: usize, base: State) -> State {
        let (Some(line), Some(target)) = (lineage(s, i), target_steps(s, i)) else {
            return base;
        };
        let cached = self.cached.entry(line.clone()).or_insert_with(|| continuation::cached_runs(&s.cache, &line));
        let from_cache = continuation::start_point(cached, target).map(|r| (r.steps, r.key.clone()));
        let longer: Vec<u64> = cached.iter().map(|r| r.steps).filter(|&n| n > target).collect();
        let planned = self.planned.entry(line).or_default();
        let from_plan = planned.iter().filter(|(n, _)| *n < target).max_by_key(|(n, _)| *n).cloned();
        planned.push((target, s.instance(i).name.clone()));
        let start = match (from_cache, from_plan) {
            (Some((c, key)), Some((p, _))) if c >= p => Some((c, format!("from cached entry {}", &key[..8]))),
            (_, Some((p, name))) => Some((p, format!("from `{name}`, which runs first"))),
            (Some((c, key)), None) => Some((c, format!("from cached entry {}", &key[..8]))),
            (None, None) => None,
        };
        // The worker resumes its own interrupted run rather than continue a shorter one
        // when that run got at least as far.
        let staged = difflow_core::job::checkpoint_step(&s.cache.staging_dir(s.key(i))).filter(|&n| n < target);
        if let Some(step) = staged.filter(|&n| n > 0 && start.as_ref().is_none_or(|(from, _)| n >= *from)) {
            return State::Resume { from: step, to: target };
        }
        match start {
            Some((from, source)) => State::Continue { from, to: target, source },
            None => {
                if longer.is_empty() {
                    return base;
                }
                let shown: Vec<String> = longer.iter().map(|&n| grouped(n)).collect();
                let note = format!(
                    "trains from step 0: no kept checkpoint of this run at or below step {} (cached: {} steps)",
                    grouped(target),
                    shown.join(", ")
                );
                match base {
                    State::Stale(mut reasons) => {
                        reasons.push(note);
                        State::Stale(reasons)
                    }
                    _ => State::New(Some(note)),
                }
            }
        }
    }
}

/// The plan's closing line about training work, when it trains at all: the steps that
/// new, stale and continued runs take, and those that continuing saves.
pub fn work_summary(s: &Session, rows: &[(usize, State)]) -> Option<String> {
    let (mut to_run, mut saved) = (0, 0);
    for (i, state) in rows {
        match state {
            State::Continue { from, to, .. } | State::Resume { from, to } => {
                to_run += to - from;
                saved += from;
            }
            State::New(_) | State::Stale(_) if s.instance(*i).kind == continuation::TRAIN_KIND => {
                to_run += target_steps(s, *i).unwrap_or(0);
            }
            _ => {}
        }
    }
    if to_run == 0 && saved == 0 {
        return None;
    }
    let mut line = format!("training: {} steps to run", grouped(to_run));
    if saved > 0 {
        line.push_str(&format!(" ({} saved by continuing cached, earlier or interrupted runs)", grouped(saved)));
    }
    let trains = rows.iter().filter(|(i, st)| *st != State::Cached && s.instance(*i).kind == continuation::TRAIN_KIND);
    if let Some(rate) = trains.filter_map(|(i, _)| seconds_per_step(s, *i)).reduce(f64::max) {
        line.push_str(&format!(", about {} at {rate:.3} s/step", duration(rate * to_run as f64)));
    }
    Some(line)
}

/// The seconds per step that cached runs of instance `i`'s training took here (the
/// slowest, to be safe), from their manifests; a continued run counts its own steps.
fn seconds_per_step(s: &Session, i: usize) -> Option<f64> {
    let runs = continuation::cached_runs(&s.cache, &lineage(s, i)?);
    let steps_of = |key: &str| runs.iter().find(|r| r.key == key).map(|r| r.steps);
    runs.iter()
        .filter_map(|r| {
            let m = s.cache.manifest(&r.key)?;
            let from = m.inputs.get(CONTINUE_INPUT).and_then(|k| steps_of(k)).unwrap_or(0);
            let steps = r.steps.checked_sub(from).filter(|&n| n > 0)?;
            Some(m.duration_s / steps as f64)
        })
        .reduce(f64::max)
}

fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}
