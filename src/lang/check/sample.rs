//! Sampling stages: steps, guidance and labels fit the trained model.

use difflow_core::params::guidance::{CfgInterval, GuidanceConfig};
use difflow_core::params::model::ModelSpec;
use difflow_core::params::sample::{Classes, ClassesProblem, SampleParams};
use difflow_core::params::sampler::{schedule_sigmas, Sampler, SigmaProblem, StepsProblem};

use super::configs::{typed, typed_stage};
use super::*;
use crate::diffusion::schedule::ScheduleSpec;
use difflow_core::params::train::{TrainParams, EDM_SIGMA_MAX, EDM_SIGMA_MIN};

impl<'p> Checker<'p> {
    pub(super) fn sample(&mut self, inst: &Instance) {
        let Some(params) = typed_stage::<SampleParams>(inst) else { return };
        let Some(train) = self.inst(&params.from.name) else { return };
        let pretrained = self.pretrained_model(train);
        let pretrained_configs = pretrained.as_ref().map(super::pretrained::pretrained_configs);
        let configs = match &pretrained_configs {
            Some((model, schedule)) => Some((model, schedule)),
            None => config(&train.params, "model").zip(config(&train.params, "schedule")),
        };
        let Some((model, schedule)) = configs else { return };
        let spec = match &pretrained {
            Some(pretrained) => Some(pretrained.process.schedule.clone()),
            None => typed::<ScheduleSpec>(schedule),
        };
        let Some(spec) = spec else { return };
        self.sampler_fits(inst, train, &params.sampler, model, spec.steps());
        self.sigmas_fit(inst, train, &params.sampler, &spec);
        let class_count = self.guidance_fits(inst, train, model, schedule);
        self.labels_exist(inst, train, &params.classes, class_count);
    }

    /// The sampler takes no more steps than the schedule has, and learned variance needs
    /// a model that learned it.
    fn sampler_fits(&mut self, inst: &Instance, train: &Instance, sampler: &Sampler, model: &Config, t_steps: usize) {
        if let Err(StepsProblem { steps, .. }) = sampler.check_steps(t_steps) {
            let message = format!(
                "the sampler takes {steps} steps, but `{}` trained on a schedule of {t_steps} steps",
                train.decl
            );
            self.push(
                self.error(inst, "sampler.steps", Code::SamplerSteps, message, format!("more than {t_steps}"))
                    .with_label(self.at(train, "schedule"), format!("{t_steps} steps"))
                    .with_help(format!(
                        "use at most {t_steps} sampler steps (respacing picks a subset of the schedule)"
                    )),
            );
        }
        if sampler.sigma_steps().is_none() && self.is_edm(train) {
            let message = format!(
                "`{}` trained an EDM-preconditioned net, which is sampled on σ steps, not on the schedule's timesteps",
                train.decl
            );
            self.push(
                self.error(inst, "sampler", Code::EdmPrecondition, message, "a sampler on timesteps")
                    .with_label(self.at(train, "precondition"), "EDM")
                    .with_help("use `sampler = heun { steps = 18 }` (or euler, euler_ancestral)"),
            );
        }
        let learned_sigma = typed::<ModelSpec>(model).is_some_and(|m| m.learn_sigma);
        if sampler.needs_learned_variance() && !learned_sigma {
            let message =
                format!("variance = \"learned\" needs a model with learn_sigma, and `{}`'s model has none", train.decl);
            self.push(
                self.error(inst, "sampler.variance", Code::NeedsLearnSigma, message, "learned variance")
                    .with_label(self.at(train, "model"), "learn_sigma = false")
                    .with_help("use variance = \"fixed_small\" or \"fixed_large\", or train with `learn_sigma = true`"),
            );
        }
    }

    /// A σ sampler's range is finite and not empty on the schedule ([`SigmaSteps::bounds`],
    /// which the engine applies too).
    fn sigmas_fit(&mut self, inst: &Instance, train: &Instance, sampler: &Sampler, schedule: &ScheduleSpec) {
        let Some(sigma) = sampler.sigma_steps() else { return };
        // An invalid schedule is reported where it is written.
        if schedule.validate().is_err() {
            return;
        }
        // An EDM net knows no schedule: EDM's own σ range (as the engine), else the schedule's.
        let (lowest, highest) = if self.is_edm(train) {
            (EDM_SIGMA_MIN, EDM_SIGMA_MAX)
        } else {
            let table = schedule_sigmas(&schedule.tables().alphas_cumprod);
            (table[0], table[table.len() - 1])
        };
        let Err(problem) = sigma.bounds(lowest, highest) else { return };
        let (key, label, help) = match problem {
            SigmaProblem::InfiniteSigmaMax => {
                ("sampler", "σ_max unset".to_string(), "set `sigma_max` to a finite σ (EDM uses 80)".to_string())
            }
            SigmaProblem::MinNotBelowMax { sigma_max, .. } => (
                "sampler.sigma_min",
                "an empty σ range".to_string(),
                format!("set `sigma_min` below {sigma_max}, or leave it unset (the schedule's σ at t = 1)"),
            ),
        };
        let mut diagnostic = self.error(inst, key, Code::OutOfRange, problem.to_string(), label).with_help(help);
        // A bound left unset is the schedule's.
        if sigma.sigma_min.is_none() || sigma.sigma_max.is_none() {
            diagnostic = diagnostic.with_label(self.at(train, "schedule"), format!("`{}`'s schedule", train.decl));
        }
        self.push(diagnostic);
    }

    /// Whether `train` is a train stage of an EDM-preconditioned net.
    pub(super) fn is_edm(&self, train: &Instance) -> bool {
        train.kind == "train" && typed_stage::<TrainParams>(train).is_some_and(|t| t.precondition.is_some())
    }

    /// Guidance the trained model supports; the number of classes labels may pick from.
    fn guidance_fits(&mut self, inst: &Instance, train: &Instance, model: &Config, schedule: &Config) -> i64 {
        let from_span = self.at(inst, "from");
        let model_classes = typed::<ModelSpec>(model).map_or(0, |m| m.classes as i64);
        let mut class_count = model_classes;
        if let Some(g) = config(&inst.params, "guidance").and_then(typed::<GuidanceConfig>) {
            match g {
                GuidanceConfig::Cfg { interval, .. } => {
                    if let Err(message) = CfgInterval::from_list(&interval) {
                        self.push(self.error(inst, "guidance.interval", Code::OutOfRange, message, "[σ_lo, σ_hi]"));
                    }
                    if model_classes == 0 {
                        let message = format!(
                            "cfg guidance needs a class-conditional model, but `{}` trained one with classes = 0",
                            train.decl
                        );
                        self.push(
                            self.error(inst, "guidance", Code::CfgUnconditional, message, "cfg guidance")
                            .with_label(self.at(train, "model"), "classes = 0")
                            .with_help("set `classes` on the model (and `uncond_p = 0.1` in training), or drop the guidance"),
                        );
                    } else if train.kind == "train" && float(&train.params, "uncond_p").unwrap_or(0.0) == 0.0 {
                        let message = format!(
                            "cfg guidance needs the unconditional model, but `{}` trained with uncond_p = 0",
                            train.decl
                        );
                        self.push(
                            self.error(inst, "guidance", Code::CfgWithoutDropout, message, "cfg guidance")
                                .with_label(from_span, format!("`{}` never dropped the label", train.decl))
                                .with_help(format!(
                                    "set `uncond_p = 0.1` in `{}` (Ho & Salimans use 0.1–0.2), or drop the guidance",
                                    train.decl
                                )),
                        );
                    }
                }
                GuidanceConfig::Classifier { model: classifier, .. } => {
                    if let Some(clf) = self.inst(&classifier.name) {
                        self.guidance_classifier(inst, train, schedule, clf);
                        if let Some(d) = self.data(clf) {
                            class_count = d.classes;
                        }
                    }
                }
            }
        }
        class_count
    }

    /// Labels asked for exist: the model (or the guiding classifier) knows that many classes
    /// ([`Classes::check`], which the engine applies too).
    fn labels_exist(&mut self, inst: &Instance, train: &Instance, classes: &Classes, class_count: i64) {
        let Err(problem) = classes.check(usize::try_from(class_count).unwrap_or(0)) else { return };
        let diagnostic = match problem {
            ClassesProblem::Unconditional { .. } => {
                let message = format!("`classes` picks labels, but `{}` trained an unconditional model", train.decl);
                let help =
                    "remove `classes`, or condition the model (`classes` on the model) or guide with a classifier";
                self.error(inst, "classes", Code::ClassMismatch, message, "no labels to pick").with_help(help)
            }
            ClassesProblem::NoSuchClass { classes, .. } => self
                .error(inst, "classes", Code::OutOfRange, problem.to_string(), "no such class")
                .with_help(format!("pick labels between 0 and {}", classes - 1)),
            ClassesProblem::Empty => self
                .error(inst, "classes", Code::OutOfRange, problem.to_string(), "no labels")
                .with_help("list the labels to draw, or remove `classes` (every class, cycled)"),
        };
        self.push(diagnostic);
    }

    pub(super) fn guidance_classifier(&mut self, inst: &Instance, train: &Instance, schedule: &Config, clf: &Instance) {
        let span = self.at(inst, "guidance.model");
        match config(&clf.params, "schedule") {
            None => self.push(
                Diagnostic::new(
                    Code::CleanClassifier,
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
                    Code::ScheduleMismatch,
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
                        Code::ShapeMismatch,
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
}
