//! Training stages: the model, loss and guidance training fit the data and schedule.

use difflow_core::params::classifier::ClassifierParams;
use difflow_core::params::model::{ModelSpec, Prediction};
use difflow_core::params::schedule::ScheduleSpec;
use difflow_core::params::train::{LossType, LrSchedule, TrainParams, Weighting};

use super::configs::typed;
use super::*;

impl<'p> Checker<'p> {
    pub(super) fn train(&mut self, inst: &Instance) {
        let p = &inst.params;
        let (Some(model), Some(schedule)) = (config(p, "model"), config(p, "schedule")) else { return };
        let Some(params) = self.decoded_stage::<TrainParams>(inst) else { return };
        if model.variant == "encoder" {
            let message = "a `train` stage trains a denoiser, but this model is an `encoder` (a classifier network)";
            self.push(
                self.error(inst, "model", Code::WrongModel, message, "an encoder")
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
            let message = format!("the model is conditioned on {classes} classes, but {what}");
            self.push(
                self.error(inst, "model.classes", Code::ClassMismatch, message, format!("{classes} classes"))
                    .with_label(self.at(inst, "data"), "the data comes from here")
                    .with_help(help),
            );
        }
        // Its default (0.1) is for class-conditional models; written, it must have labels to drop.
        if params.uncond_p > 0.0 && classes == 0 && self.spans.value(&inst.decl, "uncond_p").is_some() {
            let message = "`uncond_p` drops the class label, but the model is unconditional (classes = 0)";
            let help = if data.classes > 0 {
                format!(
                    "set the model's `classes = {}` for classifier-free guidance, or remove `uncond_p`",
                    data.classes
                )
            } else {
                "remove `uncond_p`: this data has no labels".to_string()
            };
            self.push(
                self.error(inst, "uncond_p", Code::CfgUnconditional, message, "no label to drop").with_help(help),
            );
        }
        let spec = typed::<ModelSpec>(model);
        let learn_sigma = spec.is_some_and(|m| m.learn_sigma);
        if params.loss != LossType::Simple && !learn_sigma {
            let loss = string(p, "loss").unwrap_or("hybrid");
            let message = format!("loss = \"{loss}\" trains the variance, but the model has learn_sigma = false");
            self.push(
                self.error(inst, "loss", Code::NeedsLearnSigma, message, format!("{loss} loss"))
                    .with_label(self.at(inst, "model"), "this model predicts no variance")
                    .with_help("set `learn_sigma = true` on the model (IDDPM), or use loss = \"simple\""),
            );
        }
        self.recipe_keys_agree(inst, &params);
        self.edm_fits(inst, &params, spec);
        let prediction = spec.map(|m| m.prediction);
        let fits = prediction.zip(typed::<ScheduleSpec>(schedule)).map(|(p, s)| p.fits(&s));
        if let Some(Err(message)) = fits {
            self.push(
                self.error(inst, "schedule", Code::EpsZeroSnr, message, "zero terminal SNR")
                    .with_label(self.at(inst, "model"), "this model predicts ε")
                    .with_help(
                        "set the model's `prediction = \"v\"` (Lin et al. 2024), or `zero_terminal_snr = false`",
                    ),
            );
        }
        self.batch_fits(inst, &data);
        // The default warm-up (20 steps) may outlast a tiny run, which then warms up throughout;
        // a written one that does is a mistake.
        let written = self.spans.value(&inst.decl, "warmup").is_some();
        if let (Some(warmup), Some(steps), true) = (int(p, "warmup"), int(p, "steps"), written) {
            if warmup >= steps && warmup > 0 {
                let message =
                    format!("the learning-rate warm-up ({warmup} steps) is not shorter than training ({steps} steps)");
                self.push(
                    self.error(inst, "warmup", Code::OutOfRange, message, "never reaches `lr`")
                        .with_help("lower `warmup` (a few percent of `steps`) or train longer"),
                );
            }
        }
    }

    /// The loss weighting and learning-rate keys: a key that only refines another choice
    /// needs that choice (`snr_gamma` Min-SNR-γ, `lr_floor` a decaying schedule), and the
    /// weighting needs an MSE term to weigh.
    fn recipe_keys_agree(&mut self, inst: &Instance, params: &TrainParams) {
        let min_snr = params.weighting == Some(Weighting::MinSnr);
        if min_snr && params.loss == LossType::Vlb {
            let message = "weighting = \"min_snr\" weighs the MSE term, and loss = \"vlb\" has none";
            self.push(
                self.error(inst, "weighting", Code::OutOfRange, message, "nothing to weigh")
                    .with_help("use loss = \"simple\" (or \"hybrid\"), or remove `weighting`"),
            );
        }
        if params.snr_gamma.is_some() && !min_snr {
            let message = "`snr_gamma` is γ of Min-SNR-γ, but the loss weighting is uniform";
            self.push(
                self.error(inst, "snr_gamma", Code::OutOfRange, message, "unused")
                    .with_help("set `weighting = \"min_snr\"`, or remove `snr_gamma`"),
            );
        }
        let decays = matches!(params.lr_schedule, Some(LrSchedule::Cosine | LrSchedule::Linear));
        if params.lr_floor.is_some() && !decays {
            let message = "`lr_floor` is where a decaying learning rate ends, but the learning rate is constant";
            self.push(
                self.error(inst, "lr_floor", Code::OutOfRange, message, "unused")
                    .with_help("set `lr_schedule = \"cosine\"` or `\"linear\"`, or remove `lr_floor`"),
            );
        }
    }

    /// EDM preconditioning replaces the prediction, its loss and weighting; its constants
    /// mean nothing without it.
    fn edm_fits(&mut self, inst: &Instance, params: &TrainParams, spec: Option<ModelSpec>) {
        if params.precondition.is_none() {
            let set = [("sigma_data", params.sigma_data), ("p_mean", params.p_mean), ("p_std", params.p_std)];
            for (key, _) in set.iter().filter(|(_, value)| value.is_some()) {
                let message = format!("`{key}` is a constant of EDM, but the net is not EDM-preconditioned");
                self.push(
                    self.error(inst, key, Code::EdmPrecondition, message, "unused")
                        .with_help(format!("set `precondition = \"edm\"`, or remove `{key}`")),
                );
            }
            return;
        }
        let mut refuse = |key: &str, message: &str, help: &str| {
            let d = self.error(inst, key, Code::EdmPrecondition, message, "not with EDM").with_help(help);
            self.push(d);
        };
        if params.loss != LossType::Simple {
            refuse("loss", "EDM trains D(x; σ) by its weighted MSE, not a VLB", "use loss = \"simple\" with EDM");
        }
        if params.weighting.is_some() {
            refuse(
                "weighting",
                "EDM weighs its loss by λ(σ) = (σ² + σ_d²)/(σ σ_d)² already",
                "remove `weighting` (it is for the schedule's ε, v or x₀ prediction)",
            );
        }
        if let Some(spec) = spec.filter(|s| s.learn_sigma || s.prediction != Prediction::Eps) {
            let (what, help) = if spec.learn_sigma {
                ("learns no variance", "set the model's `learn_sigma = false`")
            } else {
                ("has no ε, v or x₀ prediction: F is scaled by c_out", "leave the model's `prediction` unset")
            };
            refuse("model", &format!("an EDM-preconditioned net {what}"), help);
        }
    }

    pub(super) fn batch_fits(&mut self, inst: &Instance, data: &Data) {
        if let (Some(batch), Some(n)) = (int(&inst.params, "batch"), data.examples) {
            if batch > n {
                let message = format!("batch {batch} is larger than the {n} examples of `{}`", data.origin);
                self.push(
                    self.error(inst, "batch", Code::BatchTooLarge, message, "larger than the data")
                        .with_label(self.at(inst, "data"), format!("{n} examples"))
                        .with_help(format!("use `batch` ≤ {n}, or more data")),
                );
            }
        }
    }

    pub(super) fn classifier(&mut self, inst: &Instance) {
        let p = &inst.params;
        let Some(model) = config(p, "model") else { return };
        if self.decoded_stage::<ClassifierParams>(inst).is_none() {
            return;
        }
        if model.variant != "encoder" {
            let message = format!("a `classifier` stage trains an `encoder`, but this model is a `{}`", model.variant);
            self.push(
                self.error(inst, "model", Code::WrongModel, message, format!("a {}", model.variant))
                    .with_help("use `encoder { … }` (e.g. `classifier_mnist` from \"std/unet.diff\")"),
            );
            return;
        }
        let Some(data) = self.data(inst) else { return };
        self.network_fits_data(inst, model, &data);
        if data.classes == 0 {
            let message = format!("a classifier needs labels, but `{}` has none", data.origin);
            self.push(self.error(inst, "data", Code::ClassMismatch, message, "unlabelled data").with_help(
                "train the classifier on labelled data (mnist, fashion_mnist, cifar10, toy gaussians8 or moons)",
            ));
        }
        self.batch_fits(inst, &data);
    }
}
