//! Checks of `step = K`, which reads a training run after K steps: the run must get that
//! far, and the stage must read a training run at all.

use crate::diagnostics::Code;
use crate::lang::pipeline::Instance;

use super::{int, stage, Checker};

impl<'p> Checker<'p> {
    /// `step` on a `sample`, `nll` or `metrics` instance.
    pub(super) fn training_step(&mut self, inst: &Instance) {
        let Some(step) = int(&inst.params, "step") else { return };
        let train = match inst.kind.as_str() {
            "metrics" => {
                let Some(samples) = stage(&inst.params, "samples").and_then(|n| self.inst(n)) else { return };
                if samples.kind != "sample" {
                    let message = format!("`step` picks a training step of the run that drew the samples, but `{}` is a {}, not a `sample` stage", samples.decl, samples.kind );
                    self.push(
                        self.error(inst, "step", Code::StepWithoutTraining, message, "no training run to pick from")
                        .with_label(self.at(inst, "samples"), format!("a {}", samples.kind))
                        .with_help("remove `step`, or measure a `sample` stage (its training run is then read at that step)"),
                    );
                    return;
                }
                stage(&samples.params, "from").and_then(|n| self.inst(n))
            }
            _ => stage(&inst.params, "from").and_then(|n| self.inst(n)),
        };
        if let Some(model) = train.filter(|t| t.kind == "pretrained") {
            let message = format!(
                "`step` picks a training step, but `{}` is a pretrained model with no training run here",
                model.decl
            );
            self.push(
                self.error(inst, "step", Code::StepWithoutTraining, message, "no training run to pick from")
                    .with_help("remove `step`: a pretrained model has only its final weights"),
            );
            return;
        }
        let Some(train) = train.filter(|t| t.kind == "train") else { return };
        let Some(steps) = int(&train.params, "steps") else { return };
        if step > steps {
            let message = format!("`step = {step}` reads `{}` after {step} steps, but it trains {steps}", train.decl);
            self.push(
                self.error(inst, "step", Code::StepBeyondTraining, message, format!("beyond step {steps}"))
                    .with_label(self.at(train, "steps"), format!("{steps} steps"))
                    .with_help(format!(
                        "use `step` ≤ {steps}, or raise `steps` of `{}` (the longer run continues the cached one)",
                        train.decl
                    )),
            );
        }
    }
}
