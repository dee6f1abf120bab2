//! Training stages: the model, loss and guidance training fit the data and schedule.

use difflow_core::params::model::ModelSpec;
use difflow_core::params::schedule::ScheduleSpec;

use super::configs::typed;
use super::*;

impl<'p> Checker<'p> {
    pub(super) fn train(&mut self, inst: &Instance) {
        let p = &inst.params;
        let (Some(model), Some(schedule)) = (config(p, "model"), config(p, "schedule")) else { return };
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
        let uncond_p = float(p, "uncond_p").unwrap_or(0.0);
        if uncond_p > 0.0 && classes == 0 {
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
        let loss = string(p, "loss").unwrap_or("simple");
        if loss != "simple" && !boolean(&model.params, "learn_sigma") {
            let message = format!("loss = \"{loss}\" trains the variance, but the model has learn_sigma = false");
            self.push(
                self.error(inst, "loss", Code::NeedsLearnSigma, message, format!("{loss} loss"))
                    .with_label(self.at(inst, "model"), "this model predicts no variance")
                    .with_help("set `learn_sigma = true` on the model (IDDPM), or use loss = \"simple\""),
            );
        }
        let prediction = typed::<ModelSpec>(model).map(|m| m.prediction);
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
        if let (Some(warmup), Some(steps)) = (int(p, "warmup"), int(p, "steps")) {
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
