//! Schedules that cannot drive a diffusion process: the judgement is
//! `ScheduleSpec::validate` in difflow-core, the one the engine applies too.

use super::*;
use crate::diffusion::schedule::ScheduleSpec;

impl<'p> Checker<'p> {
    pub(super) fn config(&mut self, cfg: &Config, decl: &str, path: &str) {
        if cfg.kind != "schedule" {
            return;
        }
        let Ok(spec) = ScheduleSpec::decode(&cfg.to_json()) else { return };
        let Err(problem) = spec.validate() else { return };
        let span = self.span(decl, &join(path, problem.key)).unwrap_or_default();
        self.push(Diagnostic::new(Code::OutOfRange, problem.message, span, problem.label).with_help(problem.help));
    }
}
