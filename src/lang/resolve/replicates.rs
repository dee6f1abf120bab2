//! `seed = replicate(N)`: N instances of a stage that differ only by their seeds, on an
//! axis named `replicate` (`ddpm[replicate=2]`). Replicate i (counted from 1) has seed
//! i − 1 added to the key's default (0): replicate 1 is the stage as written without
//! `replicate`, and raising N keeps the keys (and cache entries) of the replicates so far.

use super::*;
use crate::lang::pipeline::REPLICATE_AXIS;

impl<'a> Resolver<'a> {
    pub(super) fn replicate(&mut self, v: &'a ast::Value, count: &'a ast::Value, cx: &Cx) -> Option<Multi<Value>> {
        if !cx.replicable {
            self.not_replicable(v, cx);
            return None;
        }
        let n = self.replicate_count(count)?;
        if self.too_many(n, 1, v.span) {
            return None;
        }
        let key = (v.span.file, v.span.start);
        let axis = match self.axis_ids.get(&key) {
            Some(a) => *a,
            None => {
                self.axes.push(Axis {
                    qualified: format!("{}.{REPLICATE_AXIS}", cx.owner),
                    name: REPLICATE_AXIS.to_string(),
                    labels: (1..=n).map(|i| i.to_string()).collect(),
                    values: (1..=n).map(|i| Value::Int(i as i64)).collect(),
                    pos: key,
                });
                self.axis_ids.insert(key, self.axes.len() - 1);
                self.axes.len() - 1
            }
        };
        let base = self.replicate_base(cx);
        Some((0..n).map(|i| (vec![(axis, i)], Value::Int(base + i as i64))).collect())
    }

    /// The seed of replicate 1: the key's default.
    fn replicate_base(&self, cx: &Cx) -> i64 {
        let spec = self.owner_key(cx);
        match spec.and_then(schema::default_value) {
            Some(Value::Int(i)) => i,
            _ => 0,
        }
    }

    /// The schema's entry for the key being resolved, in any variant of the owner's kind.
    fn owner_key(&self, cx: &Cx) -> Option<&'static schema::KeySpec> {
        let kind = self.decls.get(&*cx.owner)?.kind?;
        kind.variants.iter().find_map(|v| v.key(&cx.key))
    }

    /// N of `replicate(N)`: a whole number, at least 2.
    fn replicate_count(&mut self, count: &ast::Value) -> Option<usize> {
        let ValueKind::Number { value, text, .. } = &count.kind else {
            let found = self.found(count);
            self.diags.push(
                Diagnostic::new(
                    Code::TypeMismatch,
                    format!("`replicate` wants a number of replicates, found {found}"),
                    count.span,
                    "not a number",
                )
                .with_help("write how many instances to run, e.g. `replicate(3)`"),
            );
            return None;
        };
        if value.fract() != 0.0 || !value.is_finite() {
            self.diags.push(
                Diagnostic::new(
                    Code::TypeMismatch,
                    format!("`replicate` wants a whole number of replicates, found `{text}`"),
                    count.span,
                    "not a whole number",
                )
                .with_help(format!("write a whole number, e.g. `replicate({})`", value.round().max(2.0) as i64)),
            );
            return None;
        }
        if *value < 2.0 {
            self.diags.push(
                Diagnostic::new(
                    Code::OutOfRange,
                    format!("`replicate` needs at least 2 replicates, found `{text}`"),
                    count.span,
                    "fewer than 2",
                )
                .with_help("a confidence interval needs two replicates or more; for one run, write a plain `seed`"),
            );
            return None;
        }
        Some(value.min(MAX_INSTANCES as f64 + 1.0) as usize)
    }

    fn not_replicable(&mut self, v: &ast::Value, cx: &Cx) {
        let kinds = replicable_kinds();
        let owner_kind = self.decls.get(&*cx.owner).and_then(|d| d.kind).map_or("", |k| k.name);
        let (message, help) = if self.owner_key(cx).is_some_and(|k| k.replicable) {
            (
                format!("`replicate(…)` must be the value of `{}` itself", cx.key),
                format!("write `{} = replicate(N)` in the {owner_kind} stage, not in a `let`, list or sweep", cx.key),
            )
        } else {
            (
                format!("`{}` of a {owner_kind} cannot be replicated", cx.key),
                format!("`replicate(N)` stands for the `seed` of a {kinds} stage"),
            )
        };
        self.diags.push(Diagnostic::new(Code::NotReplicable, message, v.span, "no replicates here").with_help(help));
    }

    /// A sweep may not be named like the replicate axis.
    pub(super) fn sweep_named_replicate(&mut self, v: &ast::Value, cx: &Cx) -> bool {
        if cx.axis_name != REPLICATE_AXIS {
            return false;
        }
        self.diags.push(
            Diagnostic::new(
                Code::NotReplicable,
                format!("a sweep may not be named `{REPLICATE_AXIS}`"),
                v.span,
                "a sweep under `replicate`",
            )
            .with_help("reports read `replicate` coordinates as replicates; rename the `let`"),
        );
        true
    }
}

/// The kinds with a replicable key, as a message lists them: `train, classifier or sample`.
fn replicable_kinds() -> String {
    let kinds: Vec<&str> = schema::kinds()
        .iter()
        .filter(|k| k.variants.iter().any(|v| v.keys.iter().any(|key| key.replicable)))
        .map(|k| k.name)
        .collect();
    match kinds.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, init)) => format!("{} or {last}", init.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::{render_plain, Code};
    use crate::lang::load_source;
    use crate::lang::value::Value;

    const HEAD: &str = "dataset pts = toy { count = 100 }\nschedule cos = cosine { steps = 10 }\n\
                        model net = mlp { hidden = 8, layers = 1 }\n";

    fn load(body: &str) -> crate::lang::Loaded {
        load_source("test.diff", &format!("{HEAD}{body}"), &[])
    }

    /// The one diagnostic of a pipeline: its code and plain rendering.
    fn problem(body: &str) -> (Code, String) {
        let loaded = load(body);
        assert_eq!(loaded.diagnostics.len(), 1, "{}", render_plain(&loaded.diagnostics, &loaded.sources));
        (loaded.diagnostics[0].code, render_plain(&loaded.diagnostics, &loaded.sources))
    }

    #[test]
    fn replicate_makes_n_instances_with_seeds_counted_from_the_default() {
        let loaded = load(
            "train fit { model = net, data = pts, schedule = cos, steps = 5, batch = 8, seed = replicate(3) }\n\
             sample gen { from = fit, sampler = ddim { steps = 5 }, count = 8 }\n",
        );
        assert!(loaded.diagnostics.is_empty(), "{}", render_plain(&loaded.diagnostics, &loaded.sources));
        let p = loaded.pipeline.unwrap();
        let fits: Vec<(&str, &Value)> =
            p.instances.iter().filter(|i| i.decl == "fit").map(|i| (i.name.as_str(), &i.params["seed"])).collect();
        assert_eq!(
            fits,
            [
                ("fit[replicate=1]", &Value::Int(0)),
                ("fit[replicate=2]", &Value::Int(1)),
                ("fit[replicate=3]", &Value::Int(2))
            ]
        );
        assert_eq!(p.instance("fit[replicate=2]").unwrap().sweep, [("replicate".to_string(), Value::Int(2))]);
        // A stage reading the replicated one is replicated with it.
        let gens: Vec<&str> = p.instances.iter().filter(|i| i.decl == "gen").map(|i| i.name.as_str()).collect();
        assert_eq!(gens, ["gen[replicate=1]", "gen[replicate=2]", "gen[replicate=3]"]);
        assert_eq!(p.instance("gen[replicate=3]").unwrap().params["from"], Value::Stage("fit[replicate=3]".into()));
    }

    #[test]
    fn two_replicated_stages_multiply_and_name_their_axes() {
        let p = load(
            "train fit { model = net, data = pts, schedule = cos, steps = 5, batch = 8, seed = replicate(2) }\n\
             sample gen { from = fit, sampler = ddim { steps = 5 }, count = 8, seed = replicate(2) }\n",
        )
        .pipeline
        .unwrap();
        let gens: Vec<(&str, &Value)> =
            p.instances.iter().filter(|i| i.decl == "gen").map(|i| (i.name.as_str(), &i.params["seed"])).collect();
        assert_eq!(gens.len(), 4);
        assert_eq!(gens[1], ("gen[fit.replicate=1,gen.replicate=2]", &Value::Int(1)));
    }

    #[test]
    fn a_count_that_is_not_a_whole_number_of_two_or_more_is_refused() {
        let train = |count: &str| {
            format!("train fit {{ model = net, data = pts, schedule = cos, steps = 5, batch = 8, seed = replicate({count}) }}\n")
        };
        let (code, text) = problem(&train("0"));
        assert_eq!(code, Code::OutOfRange);
        assert!(text.contains("`replicate` needs at least 2 replicates, found `0`"), "{text}");
        let (code, text) = problem(&train("1.5"));
        assert_eq!(code, Code::TypeMismatch);
        assert!(text.contains("`replicate` wants a whole number of replicates, found `1.5`"), "{text}");
        assert!(text.contains("e.g. `replicate(2)`"), "{text}");
        let (code, text) = problem(&train("\"3\""));
        assert_eq!(code, Code::TypeMismatch);
        assert!(text.contains("`replicate` wants a number of replicates, found the string \"3\""), "{text}");
        let (code, _) = problem(&train("200_000"));
        assert_eq!(code, Code::TooLarge);
    }

    #[test]
    fn replicate_only_stands_for_the_seed_of_a_stage_that_has_replicates() {
        let (code, text) = problem("dataset more = toy { count = 100, seed = replicate(3) }\n");
        assert_eq!(code, Code::NotReplicable);
        assert!(text.contains("`seed` of a dataset cannot be replicated"), "{text}");
        assert!(text.contains("`replicate(N)` stands for the `seed` of a train, classifier or sample stage"), "{text}");
        let (code, text) =
            problem("train fit { model = net, data = pts, schedule = cos, steps = replicate(3), batch = 8 }\n");
        assert_eq!(code, Code::NotReplicable);
        assert!(text.contains("`steps` of a train cannot be replicated"), "{text}");
        let (code, text) = problem(
            "let seeds = replicate(3)\n\
             train fit { model = net, data = pts, schedule = cos, steps = 5, batch = 8, seed = seeds }\n",
        );
        assert_eq!(code, Code::NotReplicable);
        assert!(text.contains("`replicate(…)` must be the value of `seed` itself"), "{text}");
        let (code, text) = problem(
            "let replicate = sweep(1, 2)\n\
             train fit { model = net, data = pts, schedule = cos, steps = 5, batch = 8, seed = replicate }\n",
        );
        assert_eq!(code, Code::NotReplicable);
        assert!(text.contains("a sweep may not be named `replicate`"), "{text}");
    }
}
