//! `pretrained` stages: the folder is there with the files difflow reads, its configs map
//! onto difflow's net and schedule, and the stages that read it ask what it can give.

use std::collections::BTreeMap;
use std::path::Path;

use difflow_core::diffusers::{self, Pretrained};
use difflow_core::params::pretrained::PretrainedParams;

use super::configs::typed_stage;
use super::*;
use crate::diffusion::schedule::ScheduleSpec;
use crate::fetch;

impl<'p> Checker<'p> {
    /// A local folder is read now; a Hub repository is read once fetched, by the run, and
    /// its names become paths in the user cache: they must follow the Hub's rules.
    pub(super) fn pretrained(&mut self, inst: &Instance) {
        let Some(params) = typed_stage::<PretrainedParams>(inst) else { return };
        if let Some(message) = params.repo.as_deref().and_then(fetch::hub::repo_error) {
            let help = "a Hub repository id is NAME or ORG/NAME, as in \"google/ddpm-cifar10-32\"";
            self.push(self.error(inst, "repo", Code::OutOfRange, message, "not a valid Hub name").with_help(help));
        }
        if let Some(message) = fetch::hub::revision_error(&params.revision) {
            let help = "a revision is a branch, tag or commit, as in \"main\"";
            self.push(self.error(inst, "revision", Code::OutOfRange, message, "not a valid Hub name").with_help(help));
        }
        let Some(dir) = &params.path else { return };
        let (code, label, error) = match diffusers::locate(dir) {
            Err(e) => (Code::PretrainedFolder, "not a diffusers model folder", e),
            Ok(files) => match diffusers::read(&files, self.limits) {
                Ok(_) => return,
                Err(e) => (Code::PretrainedUnsupported, "a model difflow cannot read", e),
            },
        };
        let message = format!("`{}`: {}", inst.decl, error.message);
        self.push(self.error(inst, "path", code, message, label).with_help(error.help));
    }

    /// What a readable local `pretrained` folder holds (None for anything else).
    pub(super) fn pretrained_model(&self, inst: &Instance) -> Option<Pretrained> {
        let Some(Value::Path(dir)) = get(&inst.params, "path") else { return None };
        if inst.kind != "pretrained" {
            return None;
        }
        diffusers::locate(Path::new(dir)).and_then(|f| diffusers::read(&f, self.limits)).ok()
    }
}

/// The `model` and `schedule` configs a pipeline would write for a pretrained model, as far
/// as the cross-stage checks read them (classes, learn_sigma; steps; the schedule's keys).
pub(super) fn pretrained_configs(p: &Pretrained) -> (Config, Config) {
    let mut model = BTreeMap::new();
    model.insert("classes".to_string(), Value::Int(p.net.classes));
    model.insert("learn_sigma".to_string(), Value::Bool(p.net.learn_sigma));
    let mut schedule = BTreeMap::new();
    let steps = Value::Int(p.process.schedule.steps() as i64);
    let variant = match &p.process.schedule {
        ScheduleSpec::Linear { start, end, scale_with_steps, zero_terminal_snr, .. } => {
            schedule.insert("start".into(), Value::Float(*start));
            schedule.insert("end".into(), Value::Float(*end));
            schedule.insert("scale_with_steps".into(), Value::Bool(*scale_with_steps));
            schedule.insert("zero_terminal_snr".into(), Value::Bool(*zero_terminal_snr));
            "linear"
        }
        ScheduleSpec::Cosine { s, max_beta, zero_terminal_snr, .. } => {
            schedule.insert("s".into(), Value::Float(*s));
            schedule.insert("max_beta".into(), Value::Float(*max_beta));
            schedule.insert("zero_terminal_snr".into(), Value::Bool(*zero_terminal_snr));
            "cosine"
        }
        ScheduleSpec::Sigmoid { .. } | ScheduleSpec::Betas { .. } => "betas",
    };
    schedule.insert("steps".into(), steps);
    (
        Config { kind: "model".into(), variant: "unet".into(), params: model },
        Config { kind: "schedule".into(), variant: variant.into(), params: schedule },
    )
}
