//! Schedules whose numbers contradict each other.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn config(&mut self, cfg: &Config, decl: &str, path: &str) {
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
                            Code::OutOfRange,
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
                            Code::OutOfRange,
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
                                Code::OutOfRange,
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
}
