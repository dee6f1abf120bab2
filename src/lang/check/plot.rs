//! Plots: each variant's inputs have the shape and the trajectories it draws.

use difflow_core::params::plot::{AtProblem, ForwardParams, PlotParams};
use difflow_core::params::sample::SampleParams;

use super::configs::typed_stage;
use super::*;

impl<'p> Checker<'p> {
    pub(super) fn needs_trajectory(&mut self, inst: &Instance, key: &str) {
        let Some(sample) = stage(&inst.params, key).and_then(|n| self.inst(n)) else { return };
        let kept = typed_stage::<SampleParams>(sample).is_none_or(|s| s.trajectory.is_some());
        if !kept {
            let message = format!("this plot needs the reverse trajectory, but `{}` does not keep it", sample.decl);
            self.push(
                self.error(inst, key, Code::MissingTrajectory, message, "no trajectory")
                    .with_label(self.decl_span(sample), format!("`{}` is declared here", sample.decl))
                    .with_help(format!("set `trajectory = 10` on `{}` (keep every 10th step)", sample.decl)),
            );
        }
    }

    pub(super) fn plot(&mut self, inst: &Instance) {
        let p = &inst.params;
        match inst.variant.as_str() {
            "scatter" => {
                if let Some(Value::List(of)) = get(p, "of") {
                    for v in of {
                        if let Value::Stage(n) = v {
                            if let Some((decl, d)) = self.inst(n).and_then(|i| Some((i.decl.as_str(), self.data(i)?))) {
                                if !d.points {
                                    let message =
                                        format!("a scatter plot shows 2-D points, but `{decl}` holds {}", d.describe());
                                    self.push(
                                        self.error(inst, "of", Code::ShapeMismatch, message, "images")
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
                        let message = format!(
                            "an image grid needs images, but `{}` holds {}",
                            stage(p, "of").and_then(|n| self.inst(n)).map_or("", |i| i.decl.as_str()),
                            d.describe()
                        );
                        self.push(
                            self.error(inst, "of", Code::ShapeMismatch, message, "points")
                                .with_help("use `plot NAME = scatter { of = [ … ] }` for 2-D points"),
                        );
                    }
                }
            }
            "forward" => {
                if let Some(PlotParams::Forward(forward)) = typed_stage::<PlotParams>(inst) {
                    self.forward_steps(inst, &forward);
                }
            }
            "trajectory" => self.needs_trajectory(inst, "samples"),
            "curve" => {
                self.needs_trajectory(inst, "of");
                let Some(PlotParams::Curve(curve)) = typed_stage::<PlotParams>(inst) else { return };
                if curve.y.needs_reference() && curve.reference.is_none() {
                    let message = "a FID curve compares against real data, but this plot has no `reference`";
                    self.push(
                        self.error(inst, "y", Code::MissingReference, message, "fid")
                            .with_help("add `reference = NAME` (a dataset), or plot y = \"is\""),
                    );
                }
            }
            _ => {}
        }
    }

    /// The steps a forward plot shows are the schedule's ([`ForwardParams::check_at`], which
    /// the engine applies too).
    fn forward_steps(&mut self, inst: &Instance, forward: &ForwardParams) {
        let Err(problem) = forward.check_at() else { return };
        let (label, help) = match problem {
            AtProblem::Beyond { steps, .. } => {
                ("past the last step", format!("pick steps between 0 and {}", steps - 1))
            }
            AtProblem::Empty => ("no steps", "list the steps t to show, as in `at = [0, 500, 999]`".to_string()),
        };
        self.push(self.error(inst, "at", Code::OutOfRange, problem.to_string(), label).with_help(help));
    }
}
