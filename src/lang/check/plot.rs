//! Plots: each variant's inputs have the shape and the trajectories it draws.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn needs_trajectory(&mut self, inst: &Instance, key: &str) {
        let Some(sample) = stage(&inst.params, key).and_then(|n| self.inst(n)) else { return };
        if get(&sample.params, "trajectory").is_none() {
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
                let steps = config(p, "schedule").and_then(|s| int(&s.params, "steps"));
                if let (Some(steps), Some(Value::List(at))) = (steps, get(p, "at")) {
                    if let Some(Value::Int(t)) = at.iter().find(|v| matches!(v, Value::Int(t) if *t >= steps)) {
                        let message = format!("t = {t} is beyond the schedule's {steps} steps (0…{})", steps - 1);
                        self.push(
                            self.error(inst, "at", Code::OutOfRange, message, "past the last step")
                                .with_help(format!("pick steps between 0 and {}", steps - 1)),
                        );
                    }
                }
            }
            "trajectory" => self.needs_trajectory(inst, "samples"),
            "curve" => {
                self.needs_trajectory(inst, "of");
                if string(p, "y") == Some("fid") && get(p, "reference").is_none() {
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
}
