//! Cross-stage checks on a resolved pipeline: contradictions between stages that would
//! otherwise fail (or silently produce nonsense) hours into a run (SPEC §2). Per-key
//! checks (types, ranges, required keys) happen during resolution, driven by the schema.

use std::collections::HashMap;

use crate::diagnostics::Diagnostic;
use crate::lang::pipeline::{Instance, Pipeline};
use crate::lang::value::{Config, Value};
use crate::schema::facts;
use crate::syntax::ast::Span;

use super::resolve::SpanTable;

#[path = "check_steps.rs"]
mod steps;

/// What a stage's data looks like, as far as the checker can tell without reading it.
#[derive(Debug, Clone, PartialEq)]
struct Data {
    points: bool,
    /// Image channels (or the dimension of points).
    channels: i64,
    /// Image side in pixels (0 for points).
    size: i64,
    classes: i64,
    /// Examples available, when known.
    examples: Option<i64>,
    /// The dataset declaration it comes from.
    origin: String,
}

impl Data {
    fn describe(&self) -> String {
        if self.points {
            format!("{}-D points", self.channels)
        } else {
            format!("{}×{}×{} images", self.channels, self.size, self.size)
        }
    }
    fn same_shape(&self, other: &Data) -> bool {
        self.points == other.points && self.channels == other.channels && self.size == other.size
    }
}

struct Checker<'p> {
    spans: &'p SpanTable,
    by_name: HashMap<&'p str, &'p Instance>,
    diags: Vec<Diagnostic>,
}

pub(crate) fn check(pipeline: &Pipeline, spans: &SpanTable) -> Vec<Diagnostic> {
    let mut c = Checker {
        spans,
        by_name: pipeline.instances.iter().map(|i| (i.name.as_str(), i)).collect(),
        diags: Vec::new(),
    };
    for (name, config) in &pipeline.configs {
        let decl = name.split('[').next().unwrap_or(name);
        c.config(config, decl, "");
    }
    for inst in &pipeline.instances {
        for (key, v) in &inst.params {
            if let Value::Config(cfg) = v {
                c.config(cfg, &inst.decl, key);
            }
        }
        match inst.kind.as_str() {
            "dataset" => c.dataset(inst),
            "train" => c.train(inst),
            "classifier" => c.classifier(inst),
            "sample" => c.sample(inst),
            "metrics" => c.metrics(inst),
            "nll" => c.nll(inst),
            "plot" => c.plot(inst),
            _ => {}
        }
        if matches!(inst.kind.as_str(), "sample" | "nll" | "metrics") {
            c.training_step(inst);
        }
    }
    c.diags
}

fn get<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v Value> {
    params.get(key)
}
fn int(params: &std::collections::BTreeMap<String, Value>, key: &str) -> Option<i64> {
    match get(params, key)? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}
fn float(params: &std::collections::BTreeMap<String, Value>, key: &str) -> Option<f64> {
    match get(params, key)? {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}
fn boolean(params: &std::collections::BTreeMap<String, Value>, key: &str) -> bool {
    matches!(get(params, key), Some(Value::Bool(true)))
}
fn string<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v str> {
    match get(params, key)? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}
fn config<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v Config> {
    match get(params, key)? {
        Value::Config(c) => Some(c),
        _ => None,
    }
}
fn stage<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v str> {
    match get(params, key)? {
        Value::Stage(s) => Some(s),
        _ => None,
    }
}
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'p> Checker<'p> {
    /// Where to point for a key path of an instance's declaration.
    /// Where to point for a key path of an instance's declaration: in the declaration's own
    /// file (a preset's key written in another file is shown by the key that names it).
    fn at(&self, inst: &Instance, path: &str) -> Span {
        let file = self.spans.decl(&inst.decl).map_or(inst.span.file, |s| s.file);
        let mut p = path;
        loop {
            if let Some(s) = self.span(&inst.decl, p).filter(|s| s.file == file) {
                return s;
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.decl_span(inst),
            }
        }
    }

    /// The span of a key path, falling back to shorter prefixes and the declaration.
    fn span(&self, decl: &str, path: &str) -> Option<Span> {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.value(decl, p) {
                return Some(s);
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.spans.decl(decl),
            }
        }
    }

    fn decl_span(&self, inst: &Instance) -> Span {
        self.spans.decl(&inst.decl).unwrap_or(inst.span)
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn inst(&self, name: &str) -> Option<&'p Instance> {
        self.by_name.get(name).copied()
    }

    fn data(&self, inst: &Instance) -> Option<Data> {
        let p = &inst.params;
        match inst.kind.as_str() {
            "dataset" => {
                let split = string(p, "split").unwrap_or("train");
                let limit = int(p, "limit");
                let known = facts::dataset_size(&inst.variant, split);
                let examples = match (limit, known) {
                    (Some(l), Some(k)) => Some(l.min(k)),
                    (l, k) => l.or(k),
                };
                let origin = inst.name.clone();
                Some(match inst.variant.as_str() {
                    "mnist" | "fashion_mnist" => Data {
                        points: false,
                        channels: 1,
                        size: int(p, "size")?,
                        classes: int(p, "classes")?,
                        examples,
                        origin,
                    },
                    "cifar10" => Data { points: false, channels: 3, size: 32, classes: 10, examples, origin },
                    "images" => Data {
                        points: false,
                        channels: int(p, "channels")?,
                        size: int(p, "size")?,
                        classes: 0,
                        examples,
                        origin,
                    },
                    "toy" => Data {
                        points: true,
                        channels: 2,
                        size: 0,
                        classes: facts::toy_classes(string(p, "shape")?),
                        examples: int(p, "count"),
                        origin,
                    },
                    _ => return None,
                })
            }
            "train" | "classifier" => self.data(self.inst(stage(p, "data")?)?),
            "sample" => {
                let mut d = self.data(self.inst(stage(p, "from")?)?)?;
                d.examples = int(p, "count");
                Some(d)
            }
            _ => None,
        }
    }

    // ---- configs ------------------------------------------------------------------

    fn config(&mut self, cfg: &Config, decl: &str, path: &str) {
        if cfg.kind != "schedule" {
            return;
        }
        let p = &cfg.params;
        let span = |key: &str| self.span(decl, &join(path, key)).unwrap_or_default();
        match cfg.variant.as_str() {
            "linear" => {
                let (Some(steps), Some(start), Some(end)) = (int(p, "steps"), float(p, "start"), float(p, "end"))
                else {
                    return;
                };
                if start >= end {
                    self.push(
                        Diagnostic::new(
                            "difflow::out_of_range",
                            format!("a linear schedule needs start < end, found start = {start} and end = {end}"),
                            span("end"),
                            "not above start",
                        )
                        .with_help(
                            "β grows over the forward process: set `end` above `start` (Ho et al.: 1e-4 → 0.02)",
                        ),
                    );
                    return;
                }
                let scale = if boolean(p, "scale_with_steps") { 1000.0 / steps as f64 } else { 1.0 };
                if scale * end >= 1.0 {
                    let min_steps = (1000.0 * end).floor() as i64 + 1;
                    self.push(
                        Diagnostic::new(
                            "difflow::out_of_range",
                            format!(
                                "with {steps} steps the linear schedule's last β is {end} × 1000/{steps} = {}, which is not below 1",
                                scale * end
                            ),
                            span("steps"),
                            "too few steps for scale_with_steps",
                        )
                        .with_help(format!(
                            "use at least {min_steps} steps, or set `scale_with_steps = false` to keep β_T = {end}"
                        )),
                    );
                }
            }
            "sigmoid" => {
                if let (Some(start), Some(end)) = (float(p, "start"), float(p, "end")) {
                    if start >= end {
                        self.push(
                            Diagnostic::new(
                                "difflow::out_of_range",
                                format!("a sigmoid schedule needs start < end, found start = {start} and end = {end}"),
                                span("end"),
                                "not above start",
                            )
                            .with_help("Chen 2023 uses start = -3, end = 3"),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    // ---- stages -------------------------------------------------------------------

    fn dataset(&mut self, inst: &Instance) {
        if inst.variant == "images" {
            if let Some(c) = int(&inst.params, "channels") {
                if c == 2 {
                    self.push(
                        Diagnostic::new(
                            "difflow::out_of_range",
                            "`channels` must be 1 (grayscale) or 3 (RGB), found 2",
                            self.at(inst, "channels"),
                            "neither grayscale nor RGB",
                        )
                        .with_help("set `channels = 1` or `channels = 3`"),
                    );
                }
            }
        }
    }

    /// Checks shared by `train` and `classifier`: the network fits the data.
    fn network_fits_data(&mut self, inst: &Instance, model: &Config, data: &Data) {
        let data_name = stage(&inst.params, "data").unwrap_or("the data");
        let data_span = self.at(inst, "data");
        match (model.variant.as_str(), data.points) {
            ("mlp", false) => {
                self.push(
                    Diagnostic::new(
                        "difflow::model_data_mismatch",
                        format!("an `mlp` cannot model images, and `{data_name}` holds {}", data.describe()),
                        self.at(inst, "model"),
                        "an mlp",
                    )
                    .with_label(data_span, "images come from here")
                    .with_help("use a `unet` for images (e.g. `unet_small` from \"std/unet.diff\"); `mlp` is for vector (toy) data"),
                );
                return;
            }
            ("unet" | "encoder", true) => {
                self.push(
                    Diagnostic::new(
                        "difflow::model_data_mismatch",
                        format!("a `{}` needs images, but `{data_name}` holds {}", model.variant, data.describe()),
                        self.at(inst, "model"),
                        format!("a {}", model.variant),
                    )
                    .with_label(data_span, "points come from here")
                    .with_help("use `mlp { }` for vector (toy) data"),
                );
                return;
            }
            _ => {}
        }
        if data.points {
            return;
        }
        let Some(Value::List(mults)) = model.params.get("mults") else { return };
        let levels = mults.len() as u32;
        let mults_span = self.at(inst, "model.mults");
        if levels == 0 {
            self.push(
                Diagnostic::new("difflow::out_of_range", "`mults` needs at least one level", mults_span, "empty")
                    .with_help("write one multiplier per resolution, e.g. `mults = [1, 2, 2]`"),
            );
            return;
        }
        let div = 1i64 << (levels - 1).min(40);
        if data.size % div != 0 {
            let mut fit = 1;
            while fit < levels && data.size % (1i64 << fit) == 0 {
                fit += 1;
            }
            self.push(
                Diagnostic::new(
                    "difflow::indivisible_size",
                    format!(
                        "a {levels}-level {} halves the image {} times, but {}-pixel images are not divisible by {div}",
                        model.variant,
                        levels - 1,
                        data.size
                    ),
                    mults_span,
                    format!("{levels} levels"),
                )
                .with_label(data_span, format!("{} from here", data.describe()))
                .with_help(format!(
                    "use at most {fit} levels in `mults` (e.g. {}), or resize the data to a multiple of {div}",
                    example_mults(fit)
                )),
            );
            return;
        }
        let resolutions: Vec<i64> = (0..levels).map(|i| data.size >> i).collect();
        self.heads_divide_channels(inst, model, &resolutions);
        if let Some(Value::List(att)) = model.params.get("attention") {
            for a in att {
                if let Value::Int(r) = a {
                    if !resolutions.contains(r) {
                        let shown = resolutions.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
                        self.push(
                            Diagnostic::new(
                                "difflow::attention_resolution",
                                format!(
                                    "attention at {r}×{r}, but this {} on {}×{} data only has resolutions {shown}",
                                    model.variant, data.size, data.size
                                ),
                                self.at(inst, "model.attention"),
                                format!("no {r}×{r} level"),
                            )
                            .with_help(format!("pick attention resolutions among {shown}")),
                        );
                    }
                }
            }
        }
    }

    /// Attention splits a level's channels into `heads` equal parts, at every attention
    /// resolution and in the middle block (which always attends).
    fn heads_divide_channels(&mut self, inst: &Instance, model: &Config, resolutions: &[i64]) {
        let (Some(channels), Some(heads)) = (int(&model.params, "channels"), int(&model.params, "heads")) else {
            return;
        };
        let Some(Value::List(mults)) = model.params.get("mults") else { return };
        let mults: Vec<i64> =
            mults.iter().filter_map(|m| if let Value::Int(i) = m { Some(*i) } else { None }).collect();
        let attention: Vec<i64> = match model.params.get("attention") {
            Some(Value::List(a)) => {
                a.iter().filter_map(|m| if let Value::Int(i) = m { Some(*i) } else { None }).collect()
            }
            _ => Vec::new(),
        };
        let mut widths: Vec<(String, i64)> = Vec::new();
        for (i, r) in resolutions.iter().enumerate() {
            if attention.contains(r) {
                widths.push((format!("the {r}×{r} level"), channels * mults.get(i).copied().unwrap_or(1)));
            }
        }
        if let Some(last) = mults.last() {
            widths.push(("the middle block".to_string(), channels * last));
        }
        if let Some((place, width)) = widths.iter().find(|(_, w)| w % heads != 0) {
            self.push(
                Diagnostic::new(
                    "difflow::heads_mismatch",
                    format!("{heads} attention heads cannot split the {width} channels of {place}"),
                    self.at(inst, "model.heads"),
                    format!("{heads} heads"),
                )
                .with_help("choose `heads` dividing channels × every multiplier at attention levels (e.g. 1, 2 or 4)"),
            );
        }
    }

    fn train(&mut self, inst: &Instance) {
        let p = &inst.params;
        let (Some(model), Some(schedule)) = (config(p, "model"), config(p, "schedule")) else { return };
        if model.variant == "encoder" {
            self.push(
                Diagnostic::new(
                    "difflow::wrong_model",
                    "a `train` stage trains a denoiser, but this model is an `encoder` (a classifier network)",
                    self.at(inst, "model"),
                    "an encoder",
                )
                .with_help("use a `unet` (images) or `mlp` (vector data); train encoders in a `classifier` stage"),
            );
            return;
        }
        let Some(data) = self.data(inst) else { return };
        self.network_fits_data(inst, model, &data);
        let classes = int(&model.params, "classes").unwrap_or(0);
        let data_name = stage(p, "data").unwrap_or("the data");
        if classes > 0 && classes != data.classes {
            let what = if data.classes == 0 {
                format!("`{data_name}` has no labels")
            } else {
                format!("`{data_name}` has {} classes", data.classes)
            };
            let help = if data.classes == 0 {
                "set the model's `classes = 0` (unconditional), or train on labelled data".to_string()
            } else {
                format!("set the model's `classes = {}`", data.classes)
            };
            self.push(
                Diagnostic::new(
                    "difflow::class_mismatch",
                    format!("the model is conditioned on {classes} classes, but {what}"),
                    self.at(inst, "model.classes"),
                    format!("{classes} classes"),
                )
                .with_label(self.at(inst, "data"), "the data comes from here")
                .with_help(help),
            );
        }
        let uncond_p = float(p, "uncond_p").unwrap_or(0.0);
        if uncond_p > 0.0 && classes == 0 {
            self.push(
                Diagnostic::new(
                    "difflow::cfg_unconditional",
                    "`uncond_p` drops the class label, but the model is unconditional (classes = 0)",
                    self.at(inst, "uncond_p"),
                    "no label to drop",
                )
                .with_help(if data.classes > 0 {
                    format!(
                        "set the model's `classes = {}` for classifier-free guidance, or remove `uncond_p`",
                        data.classes
                    )
                } else {
                    "remove `uncond_p`: this data has no labels".to_string()
                }),
            );
        }
        let loss = string(p, "loss").unwrap_or("simple");
        if loss != "simple" && !boolean(&model.params, "learn_sigma") {
            self.push(
                Diagnostic::new(
                    "difflow::needs_learn_sigma",
                    format!("loss = \"{loss}\" trains the variance, but the model has learn_sigma = false"),
                    self.at(inst, "loss"),
                    format!("{loss} loss"),
                )
                .with_label(self.at(inst, "model"), "this model predicts no variance")
                .with_help("set `learn_sigma = true` on the model (IDDPM), or use loss = \"simple\""),
            );
        }
        let prediction = string(&model.params, "prediction").unwrap_or("eps");
        if prediction == "eps" && boolean(&schedule.params, "zero_terminal_snr") {
            self.push(
                Diagnostic::new(
                    "difflow::eps_zero_snr",
                    "ε-prediction is undefined at ᾱ_T = 0, and this schedule has zero_terminal_snr = true",
                    self.at(inst, "schedule"),
                    "zero terminal SNR",
                )
                .with_label(self.at(inst, "model"), "this model predicts ε")
                .with_help("set the model's `prediction = \"v\"` (Lin et al. 2024), or `zero_terminal_snr = false`"),
            );
        }
        self.batch_fits(inst, &data);
        if let (Some(warmup), Some(steps)) = (int(p, "warmup"), int(p, "steps")) {
            if warmup >= steps && warmup > 0 {
                self.push(
                    Diagnostic::new(
                        "difflow::out_of_range",
                        format!(
                            "the learning-rate warm-up ({warmup} steps) is not shorter than training ({steps} steps)"
                        ),
                        self.at(inst, "warmup"),
                        "never reaches `lr`",
                    )
                    .with_help("lower `warmup` (a few percent of `steps`) or train longer"),
                );
            }
        }
    }

    fn batch_fits(&mut self, inst: &Instance, data: &Data) {
        if let (Some(batch), Some(n)) = (int(&inst.params, "batch"), data.examples) {
            if batch > n {
                self.push(
                    Diagnostic::new(
                        "difflow::batch_too_large",
                        format!("batch {batch} is larger than the {n} examples of `{}`", data.origin),
                        self.at(inst, "batch"),
                        "larger than the data",
                    )
                    .with_label(self.at(inst, "data"), format!("{n} examples"))
                    .with_help(format!("use `batch` ≤ {n}, or more data")),
                );
            }
        }
    }

    fn classifier(&mut self, inst: &Instance) {
        let p = &inst.params;
        let Some(model) = config(p, "model") else { return };
        if model.variant != "encoder" {
            self.push(
                Diagnostic::new(
                    "difflow::wrong_model",
                    format!("a `classifier` stage trains an `encoder`, but this model is a `{}`", model.variant),
                    self.at(inst, "model"),
                    format!("a {}", model.variant),
                )
                .with_help("use `encoder { … }` (e.g. `classifier_mnist` from \"std/unet.diff\")"),
            );
            return;
        }
        let Some(data) = self.data(inst) else { return };
        self.network_fits_data(inst, model, &data);
        if data.classes == 0 {
            self.push(
                Diagnostic::new(
                    "difflow::class_mismatch",
                    format!("a classifier needs labels, but `{}` has none", data.origin),
                    self.at(inst, "data"),
                    "unlabelled data",
                )
                .with_help(
                    "train the classifier on labelled data (mnist, fashion_mnist, cifar10, toy gaussians8 or moons)",
                ),
            );
        }
        self.batch_fits(inst, &data);
    }

    fn sample(&mut self, inst: &Instance) {
        let p = &inst.params;
        let Some(train) = stage(p, "from").and_then(|n| self.inst(n)) else { return };
        let (Some(model), Some(schedule)) = (config(&train.params, "model"), config(&train.params, "schedule")) else {
            return;
        };
        let t_steps = int(&schedule.params, "steps").unwrap_or(1000);
        let from_span = self.at(inst, "from");
        if let Some(sampler) = config(p, "sampler") {
            if let Some(steps) = int(&sampler.params, "steps") {
                if steps > t_steps {
                    self.push(
                        Diagnostic::new(
                            "difflow::sampler_steps",
                            format!(
                                "the sampler takes {steps} steps, but `{}` trained on a schedule of {t_steps} steps",
                                train.decl
                            ),
                            self.at(inst, "sampler.steps"),
                            format!("more than {t_steps}"),
                        )
                        .with_label(self.at(train, "schedule"), format!("{t_steps} steps"))
                        .with_help(format!(
                            "use at most {t_steps} sampler steps (respacing picks a subset of the schedule)"
                        )),
                    );
                }
            }
            if string(&sampler.params, "variance") == Some("learned") && !boolean(&model.params, "learn_sigma") {
                self.push(
                    Diagnostic::new(
                        "difflow::needs_learn_sigma",
                        format!(
                            "variance = \"learned\" needs a model with learn_sigma, and `{}`'s model has none",
                            train.decl
                        ),
                        self.at(inst, "sampler.variance"),
                        "learned variance",
                    )
                    .with_label(self.at(train, "model"), "learn_sigma = false")
                    .with_help("use variance = \"fixed_small\" or \"fixed_large\", or train with `learn_sigma = true`"),
                );
            }
        }
        let model_classes = int(&model.params, "classes").unwrap_or(0);
        let mut class_count = model_classes;
        let guidance = config(p, "guidance");
        if let Some(g) = guidance {
            match g.variant.as_str() {
                "cfg" => {
                    if model_classes == 0 {
                        self.push(
                            Diagnostic::new(
                                "difflow::cfg_unconditional",
                                format!("cfg guidance needs a class-conditional model, but `{}` trained one with classes = 0", train.decl),
                                self.at(inst, "guidance"),
                                "cfg guidance",
                            )
                            .with_label(self.at(train, "model"), "classes = 0")
                            .with_help("set `classes` on the model (and `uncond_p = 0.1` in training), or drop the guidance"),
                        );
                    } else if float(&train.params, "uncond_p").unwrap_or(0.0) == 0.0 {
                        self.push(
                            Diagnostic::new(
                                "difflow::cfg_without_dropout",
                                format!(
                                    "cfg guidance needs the unconditional model, but `{}` trained with uncond_p = 0",
                                    train.decl
                                ),
                                self.at(inst, "guidance"),
                                "cfg guidance",
                            )
                            .with_label(from_span, format!("`{}` never dropped the label", train.decl))
                            .with_help(format!(
                                "set `uncond_p = 0.1` in `{}` (Ho & Salimans use 0.1–0.2), or drop the guidance",
                                train.decl
                            )),
                        );
                    }
                }
                "classifier" => {
                    if let Some(clf) = stage(&g.params, "model").and_then(|n| self.inst(n)) {
                        self.guidance_classifier(inst, train, schedule, clf);
                        if let Some(d) = self.data(clf) {
                            class_count = d.classes;
                        }
                    }
                }
                _ => {}
            }
        }
        match get(p, "classes") {
            Some(Value::Str(_)) | None => {}
            Some(v) => {
                let labels: Vec<i64> = match v {
                    Value::Int(i) => vec![*i],
                    Value::List(items) => {
                        items.iter().filter_map(|x| if let Value::Int(i) = x { Some(*i) } else { None }).collect()
                    }
                    _ => Vec::new(),
                };
                if class_count == 0 {
                    self.push(
                        Diagnostic::new(
                            "difflow::class_mismatch",
                            format!("`classes` picks labels, but `{}` trained an unconditional model", train.decl),
                            self.at(inst, "classes"),
                            "no labels to pick",
                        )
                        .with_help("remove `classes`, or condition the model (`classes` on the model) or guide with a classifier"),
                    );
                } else if let Some(bad) = labels.iter().find(|l| **l < 0 || **l >= class_count) {
                    self.push(
                        Diagnostic::new(
                            "difflow::out_of_range",
                            format!(
                                "class {bad} does not exist: the model knows {class_count} classes (0…{})",
                                class_count - 1
                            ),
                            self.at(inst, "classes"),
                            "no such class",
                        )
                        .with_help(format!("pick labels between 0 and {}", class_count - 1)),
                    );
                }
            }
        }
    }

    fn guidance_classifier(&mut self, inst: &Instance, train: &Instance, schedule: &Config, clf: &Instance) {
        let span = self.at(inst, "guidance.model");
        match config(&clf.params, "schedule") {
            None => self.push(
                Diagnostic::new(
                    "difflow::clean_classifier",
                    format!("classifier guidance needs a noisy classifier, but `{}` is clean (no schedule)", clf.decl),
                    span,
                    "a clean classifier",
                )
                .with_label(self.decl_span(clf), format!("`{}` is declared here", clf.decl))
                .with_help(format!(
                    "set `schedule` on `{}` to the schedule of `{}` so it learns to classify noisy x_t",
                    clf.decl, train.decl
                )),
            ),
            Some(s) if s != schedule => self.push(
                Diagnostic::new(
                    "difflow::schedule_mismatch",
                    format!("`{}` was trained on another noise schedule than `{}`", clf.decl, train.decl),
                    span,
                    "a classifier for other noise levels",
                )
                .with_label(self.at(clf, "schedule"), format!("`{}`'s schedule", clf.decl))
                .with_label(self.at(train, "schedule"), format!("`{}`'s schedule", train.decl))
                .with_help("train the classifier with the same schedule as the diffusion model"),
            ),
            Some(_) => {}
        }
        if let (Some(a), Some(b)) = (self.data(train), self.data(clf)) {
            if !a.same_shape(&b) {
                self.push(
                    Diagnostic::new(
                        "difflow::shape_mismatch",
                        format!(
                            "`{}` classifies {}, but `{}` generates {}",
                            clf.decl,
                            b.describe(),
                            train.decl,
                            a.describe()
                        ),
                        span,
                        "wrong data shape",
                    )
                    .with_help("train the classifier on the same kind of data as the diffusion model"),
                );
            }
        }
    }

    /// The classifier a metrics stage uses for accuracy, if any.
    fn accuracy_classifier(&self, inst: &Instance) -> Option<&'p Instance> {
        stage(&inst.params, "classifier").or_else(|| stage(&inst.params, "features")).and_then(|n| self.inst(n))
    }

    fn metrics(&mut self, inst: &Instance) {
        let p = &inst.params;
        let measures: Vec<&str> = match get(p, "measure") {
            Some(Value::List(items)) => {
                items.iter().filter_map(|v| if let Value::Str(s) = v { Some(s.as_str()) } else { None }).collect()
            }
            _ => Vec::new(),
        };
        let samples = stage(p, "samples").and_then(|n| self.inst(n));
        let sdata = samples.and_then(|s| self.data(s));
        let reference = stage(p, "reference").and_then(|n| self.inst(n));
        let needs_ref: Vec<&str> =
            measures.iter().copied().filter(|m| matches!(*m, "fid" | "kid" | "precision" | "recall")).collect();
        if reference.is_none() && !needs_ref.is_empty() {
            self.push(
                Diagnostic::new(
                    "difflow::missing_reference",
                    format!(
                        "{} against real data, but this metrics stage has no `reference`",
                        verb(&needs_ref, "compares", "compare")
                    ),
                    self.at(inst, "measure"),
                    "needs a reference",
                )
                .with_help("add `reference = NAME` (a dataset, usually the test split)"),
            );
        }
        if measures.contains(&"accuracy") {
            match self.accuracy_classifier(inst) {
                None => self.push(
                    Diagnostic::new(
                        "difflow::accuracy_without_classifier",
                        "`accuracy` needs a classifier, and this metrics stage has none",
                        self.at(inst, "measure"),
                        "accuracy",
                    )
                    .with_help("set `classifier = NAME` (a classifier stage) or `features = NAME`"),
                ),
                Some(clf) => {
                    if let (Some(s), Some(c)) = (samples, self.data(clf)) {
                        if s.kind == "sample" && !self.conditional(s) {
                            self.push(
                                Diagnostic::new(
                                    "difflow::class_mismatch",
                                    format!("`accuracy` compares the samples' labels with a classifier, but `{}` samples without labels", s.decl),
                                    self.at(inst, "samples"),
                                    "unconditional samples",
                                )
                                .with_help("measure accuracy on a class-conditional model (model `classes` > 0) or classifier-guided samples"),
                            );
                        }
                        let _ = c;
                    }
                }
            }
        }
        let features_clf = stage(p, "features").and_then(|n| self.inst(n));
        if let Some(sd) = &sdata {
            if sd.points && features_clf.is_none() && measures.iter().any(|m| *m != "accuracy") {
                self.push(
                    Diagnostic::new(
                        "difflow::shape_mismatch",
                        format!("Inception features need images, but `{}` holds {}", samples.map_or("", |s| s.decl.as_str()), sd.describe()),
                        self.at(inst, "samples"),
                        "points",
                    )
                    .with_help("use a classifier stage as `features` for non-image data, or plot points with `plot … = scatter`"),
                );
            }
            if let Some(rd) = reference.and_then(|r| self.data(r)) {
                if !sd.same_shape(&rd) {
                    self.push(
                        Diagnostic::new(
                            "difflow::shape_mismatch",
                            format!("the samples are {} but the reference is {}", sd.describe(), rd.describe()),
                            self.at(inst, "reference"),
                            rd.describe(),
                        )
                        .with_label(self.at(inst, "samples"), sd.describe())
                        .with_help(
                            "compare samples with the dataset their model was trained on (usually its test split)",
                        ),
                    );
                }
            }
            for key in ["features", "classifier"] {
                if let Some(clf) = stage(p, key).and_then(|n| self.inst(n)) {
                    if let Some(cd) = self.data(clf) {
                        if !cd.same_shape(sd) {
                            self.push(
                                Diagnostic::new(
                                    "difflow::shape_mismatch",
                                    format!(
                                        "`{}` classifies {}, but the samples are {}",
                                        clf.decl,
                                        cd.describe(),
                                        sd.describe()
                                    ),
                                    self.at(inst, key),
                                    "wrong data shape",
                                )
                                .with_help("use a classifier trained on the same kind of data"),
                            );
                        }
                    }
                }
            }
            if let Some(n) = sd.examples {
                let needs = if measures.contains(&"is") {
                    10
                } else if measures.iter().any(|m| matches!(*m, "fid" | "kid")) {
                    2
                } else {
                    1
                };
                if n < needs {
                    self.push(
                        Diagnostic::new(
                            "difflow::too_few_samples",
                            format!(
                                "{} at least {needs} samples, and `{}` has {n}",
                                verb(&measures, "needs", "need"),
                                samples.map_or("", |s| s.decl.as_str())
                            ),
                            self.at(inst, "samples"),
                            format!("{n} samples"),
                        )
                        .with_help(
                            "draw more samples (`count`); FID is only comparable at equal, large counts (10k–50k)",
                        ),
                    );
                }
            }
        }
    }

    /// Whether a sample stage's samples carry meaningful labels.
    fn conditional(&self, sample: &Instance) -> bool {
        if config(&sample.params, "guidance").is_some_and(|g| g.variant == "classifier") {
            return true;
        }
        stage(&sample.params, "from")
            .and_then(|n| self.inst(n))
            .and_then(|t| config(&t.params, "model"))
            .and_then(|m| int(&m.params, "classes"))
            .unwrap_or(0)
            > 0
    }

    fn nll(&mut self, inst: &Instance) {
        let p = &inst.params;
        let (Some(train), Some(data)) =
            (stage(p, "from").and_then(|n| self.inst(n)), stage(p, "data").and_then(|n| self.inst(n)))
        else {
            return;
        };
        if let (Some(n), Some(available)) = (int(p, "count"), self.data(data).and_then(|d| d.examples)) {
            if n > available {
                self.push(
                    Diagnostic::new(
                        "difflow::out_of_range",
                        format!("`count` asks for {n} examples, but `{}` has {available}", data.decl),
                        self.at(inst, "count"),
                        "more than the data",
                    )
                    .with_help(format!("use `count` ≤ {available}")),
                );
            }
        }
        if let (Some(a), Some(b)) = (self.data(train), self.data(data)) {
            if !a.same_shape(&b) {
                self.push(
                    Diagnostic::new(
                        "difflow::shape_mismatch",
                        format!("`{}` models {}, but `{}` holds {}", train.decl, a.describe(), data.decl, b.describe()),
                        self.at(inst, "data"),
                        b.describe(),
                    )
                    .with_help("evaluate on the same kind of data the model was trained on"),
                );
            }
        }
    }

    fn needs_trajectory(&mut self, inst: &Instance, key: &str) {
        let Some(sample) = stage(&inst.params, key).and_then(|n| self.inst(n)) else { return };
        if get(&sample.params, "trajectory").is_none() {
            self.push(
                Diagnostic::new(
                    "difflow::missing_trajectory",
                    format!("this plot needs the reverse trajectory, but `{}` does not keep it", sample.decl),
                    self.at(inst, key),
                    "no trajectory",
                )
                .with_label(self.decl_span(sample), format!("`{}` is declared here", sample.decl))
                .with_help(format!("set `trajectory = 10` on `{}` (keep every 10th step)", sample.decl)),
            );
        }
    }

    fn plot(&mut self, inst: &Instance) {
        let p = &inst.params;
        match inst.variant.as_str() {
            "scatter" => {
                if let Some(Value::List(of)) = get(p, "of") {
                    for v in of {
                        if let Value::Stage(n) = v {
                            if let Some((decl, d)) = self.inst(n).and_then(|i| Some((i.decl.as_str(), self.data(i)?))) {
                                if !d.points {
                                    self.push(
                                        Diagnostic::new(
                                            "difflow::shape_mismatch",
                                            format!(
                                                "a scatter plot shows 2-D points, but `{decl}` holds {}",
                                                d.describe()
                                            ),
                                            self.at(inst, "of"),
                                            "images",
                                        )
                                        .with_help("use `plot NAME = grid { of = … }` for images"),
                                    );
                                    return;
                                }
                            }
                        }
                    }
                }
            }
            "grid" => {
                if let Some(d) = stage(p, "of").and_then(|n| self.inst(n)).and_then(|i| self.data(i)) {
                    if d.points {
                        self.push(
                            Diagnostic::new(
                                "difflow::shape_mismatch",
                                format!(
                                    "an image grid needs images, but `{}` holds {}",
                                    stage(p, "of").and_then(|n| self.inst(n)).map_or("", |i| i.decl.as_str()),
                                    d.describe()
                                ),
                                self.at(inst, "of"),
                                "points",
                            )
                            .with_help("use `plot NAME = scatter { of = [ … ] }` for 2-D points"),
                        );
                    }
                }
            }
            "forward" => {
                let steps = config(p, "schedule").and_then(|s| int(&s.params, "steps"));
                if let (Some(steps), Some(Value::List(at))) = (steps, get(p, "at")) {
                    if let Some(Value::Int(t)) = at.iter().find(|v| matches!(v, Value::Int(t) if *t >= steps)) {
                        self.push(
                            Diagnostic::new(
                                "difflow::out_of_range",
                                format!("t = {t} is beyond the schedule's {steps} steps (0…{})", steps - 1),
                                self.at(inst, "at"),
                                "past the last step",
                            )
                            .with_help(format!("pick steps between 0 and {}", steps - 1)),
                        );
                    }
                }
            }
            "trajectory" => self.needs_trajectory(inst, "samples"),
            "curve" => {
                self.needs_trajectory(inst, "of");
                if string(p, "y") == Some("fid") && get(p, "reference").is_none() {
                    self.push(
                        Diagnostic::new(
                            "difflow::missing_reference",
                            "a FID curve compares against real data, but this plot has no `reference`",
                            self.at(inst, "y"),
                            "fid",
                        )
                        .with_help("add `reference = NAME` (a dataset), or plot y = \"is\""),
                    );
                }
            }
            _ => {}
        }
    }
}

fn example_mults(levels: u32) -> String {
    let v: Vec<String> = (0..levels).map(|i| if i == 0 { "1".to_string() } else { "2".to_string() }).collect();
    format!("[{}]", v.join(", "))
}

/// `fid needs` / `fid and is need`.
fn verb(items: &[&str], one: &str, many: &str) -> String {
    match items {
        [x] => format!("{x} {one}"),
        [init @ .., last] => format!("{} and {last} {many}", init.join(", ")),
        [] => many.to_string(),
    }
}
