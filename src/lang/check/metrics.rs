//! Metrics and likelihood stages: what each measure needs (a reference, a classifier,
//! enough samples, matching shapes).

use difflow_core::params::guidance::GuidanceConfig;
use difflow_core::params::measure::Measure;
use difflow_core::params::metrics::{MetricsParams, Side};
use difflow_core::params::model::ModelSpec;
use difflow_core::params::nll::NllParams;

use super::configs::{typed, typed_stage};
use super::*;

impl<'p> Checker<'p> {
    /// The classifier a metrics stage uses for accuracy, if any.
    pub(super) fn accuracy_classifier(&self, inst: &Instance) -> Option<&'p Instance> {
        stage(&inst.params, "classifier").or_else(|| stage(&inst.params, "features")).and_then(|n| self.inst(n))
    }

    pub(super) fn metrics(&mut self, inst: &Instance) {
        let Some(params) = typed_stage::<MetricsParams>(inst) else { return };
        let measures = &params.measure;
        let samples = self.inst(&params.samples.name);
        let reference = params.reference.as_ref().and_then(|r| self.inst(&r.name));
        self.reference_given(inst, measures, reference);
        if measures.contains(&Measure::Accuracy) {
            self.accuracy_has_labels(inst, samples);
        }
        if let Some(sd) = samples.and_then(|s| self.data(s)) {
            self.shapes_match(inst, measures, samples, &sd, reference);
            self.enough_samples(inst, &params, samples, &sd);
        }
    }

    /// Measures that compare with real data have a reference.
    fn reference_given(&mut self, inst: &Instance, measures: &[Measure], reference: Option<&Instance>) {
        let needs_ref: Vec<&str> = measures.iter().filter(|m| m.needs_reference()).map(|m| m.name()).collect();
        if reference.is_none() && !needs_ref.is_empty() {
            let message = format!(
                "{} against real data, but this metrics stage has no `reference`",
                verb(&needs_ref, "compares", "compare")
            );
            self.push(
                self.error(inst, "measure", Code::MissingReference, message, "needs a reference")
                    .with_help("add `reference = NAME` (a dataset, usually the test split)"),
            );
        }
    }

    /// `accuracy` has a classifier, and samples whose labels it can check.
    fn accuracy_has_labels(&mut self, inst: &Instance, samples: Option<&Instance>) {
        match self.accuracy_classifier(inst) {
            None => self.push(
                Diagnostic::new(
                    Code::AccuracyWithoutClassifier,
                    "`accuracy` needs a classifier, and this metrics stage has none",
                    self.at(inst, "measure"),
                    "accuracy",
                )
                .with_help("set `classifier = NAME` (a classifier stage) or `features = NAME`"),
            ),
            Some(clf) => {
                if let (Some(s), Some(c)) = (samples, self.data(clf)) {
                    if s.kind == "sample" && !self.conditional(s) {
                        let message = format!("`accuracy` compares the samples' labels with a classifier, but `{}` samples without labels", s.decl);
                        self.push(
                            self.error(inst, "samples", Code::ClassMismatch, message, "unconditional samples")
                            .with_help("measure accuracy on a class-conditional model (model `classes` > 0) or classifier-guided samples"),
                        );
                    }
                    let _ = c;
                }
            }
        }
    }

    /// Samples, reference and classifiers hold data of one shape (images for Inception).
    fn shapes_match(
        &mut self,
        inst: &Instance,
        measures: &[Measure],
        samples: Option<&Instance>,
        sd: &Data,
        reference: Option<&Instance>,
    ) {
        let p = &inst.params;
        let features_clf = stage(p, "features").and_then(|n| self.inst(n));
        if sd.points && features_clf.is_none() && measures.iter().any(|m| m.reads_features()) {
            let message = format!(
                "Inception features need images, but `{}` holds {}",
                samples.map_or("", |s| s.decl.as_str()),
                sd.describe()
            );
            self.push(self.error(inst, "samples", Code::ShapeMismatch, message, "points").with_help(
                "use a classifier stage as `features` for non-image data, or plot points with `plot … = scatter`",
            ));
        }
        if let Some(rd) = reference.and_then(|r| self.data(r)) {
            if !sd.same_shape(&rd) {
                let message = format!("the samples are {} but the reference is {}", sd.describe(), rd.describe());
                self.push(
                    self.error(inst, "reference", Code::ShapeMismatch, message, rd.describe())
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
                        let message = format!(
                            "`{}` classifies {}, but the samples are {}",
                            clf.decl,
                            cd.describe(),
                            sd.describe()
                        );
                        self.push(
                            self.error(inst, key, Code::ShapeMismatch, message, "wrong data shape")
                                .with_help("use a classifier trained on the same kind of data"),
                        );
                    }
                }
            }
        }
    }

    /// Enough items on each side for the measures ([`MetricsParams::most_items`]: IS splits
    /// into 10, FID and KID need 2, precision and recall k + 1).
    fn enough_samples(&mut self, inst: &Instance, params: &MetricsParams, samples: Option<&Instance>, sd: &Data) {
        let Some(most) = params.most_items(Side::Samples) else { return };
        if let (Some(n), Some(s)) = (sd.examples, samples) {
            self.enough_on_side(inst, "samples", most, s, n);
        }
        let Some(most) = params.most_items(Side::Reference) else { return };
        let reference = params.reference.as_ref().and_then(|r| self.inst(&r.name));
        if let Some(r) = reference {
            if let Some(n) = self.data(r).and_then(|d| d.examples) {
                self.enough_on_side(inst, "reference", most, r, n);
            }
        }
    }

    fn enough_on_side(
        &mut self,
        inst: &Instance,
        key: &str,
        (measure, needs): (Measure, usize),
        side: &Instance,
        n: i64,
    ) {
        if n >= needs as i64 {
            return;
        }
        let each_side = if measure.needs_reference() { " on each side" } else { "" };
        let message = format!("{measure} needs at least {needs} items{each_side}, and `{}` has {n}", side.decl);
        let help = if key == "samples" {
            "draw more samples (`count`); FID is only comparable at equal, large counts (10k–50k)"
        } else {
            "use more reference examples (raise or remove `limit`, or `count` of a sample stage)"
        };
        self.push(
            self.error(
                inst,
                key,
                Code::TooFewSamples,
                message,
                if n == 1 { "1 item".to_string() } else { format!("{n} items") },
            )
            .with_help(help),
        );
    }

    /// Whether a sample stage's samples carry meaningful labels.
    pub(super) fn conditional(&self, sample: &Instance) -> bool {
        let guidance = config(&sample.params, "guidance").and_then(typed::<GuidanceConfig>);
        if matches!(guidance, Some(GuidanceConfig::Classifier { .. })) {
            return true;
        }
        stage(&sample.params, "from")
            .and_then(|n| self.inst(n))
            .and_then(|t| config(&t.params, "model"))
            .and_then(typed::<ModelSpec>)
            .is_some_and(|m| m.classes > 0)
    }

    pub(super) fn nll(&mut self, inst: &Instance) {
        let Some(params) = typed_stage::<NllParams>(inst) else { return };
        let (Some(train), Some(data)) = (self.inst(&params.from.name), self.inst(&params.data.name)) else {
            return;
        };
        if self.is_edm(train) {
            let message =
                format!("the NLL is the bound of a discrete schedule, and `{}` trained an EDM net", train.decl);
            self.push(
                self.error(inst, "from", Code::EdmPrecondition, message, "an EDM net")
                    .with_help("measure an EDM net by its samples (`metrics`)"),
            );
            return;
        }
        if let Some(available) = self.data(data).and_then(|d| d.examples) {
            let n = params.count as i64;
            if n > available {
                let message = format!("`count` asks for {n} examples, but `{}` has {available}", data.decl);
                self.push(
                    self.error(inst, "count", Code::OutOfRange, message, "more than the data")
                        .with_help(format!("use `count` ≤ {available}")),
                );
            }
        }
        if let (Some(a), Some(b)) = (self.data(train), self.data(data)) {
            if !a.same_shape(&b) {
                let message =
                    format!("`{}` models {}, but `{}` holds {}", train.decl, a.describe(), data.decl, b.describe());
                self.push(
                    self.error(inst, "data", Code::ShapeMismatch, message, b.describe())
                        .with_help("evaluate on the same kind of data the model was trained on"),
                );
            }
        }
    }
}

/// `fid needs` / `fid and is need`.
fn verb(items: &[&str], one: &str, many: &str) -> String {
    match items {
        [x] => format!("{x} {one}"),
        [init @ .., last] => format!("{} and {last} {many}", init.join(", ")),
        [] => many.to_string(),
    }
}
