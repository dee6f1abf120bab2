//! Datasets and the networks that model them: sizes the UNet can halve, attention
//! resolutions it has, heads that divide channels (the rules themselves are
//! `difflow_core::unet`'s, which the engine applies too).

use difflow_core::unet::{net_problems, NetProblem};

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn dataset(&mut self, inst: &Instance) {
        if inst.variant == "images" {
            if let Some(c) = int(&inst.params, "channels") {
                if c == 2 {
                    self.push(
                        Diagnostic::new(
                            Code::OutOfRange,
                            "`channels` must be 1 (grayscale) or 3 (RGB), found 2",
                            self.at(inst, "channels"),
                            "neither grayscale nor RGB",
                        )
                        .with_help("set `channels = 1` or `channels = 3`"),
                    );
                }
            }
        }
    }

    /// Checks shared by `train` and `classifier`: the network fits the data.
    pub(super) fn network_fits_data(&mut self, inst: &Instance, model: &Config, data: &Data) {
        let data_name = stage(&inst.params, "data").unwrap_or("the data");
        let data_span = self.at(inst, "data");
        match (model.variant.as_str(), data.points) {
            ("mlp", false) => {
                self.push(
                    Diagnostic::new(
                        Code::ModelDataMismatch,
                        format!("an `mlp` cannot model images, and `{data_name}` holds {}", data.describe()),
                        self.at(inst, "model"),
                        "an mlp",
                    )
                    .with_label(data_span, "images come from here")
                    .with_help("use a `unet` for images (e.g. `unet_small` from \"std/unet.diff\"); `mlp` is for vector (toy) data"),
                );
                return;
            }
            ("unet" | "encoder", true) => {
                self.push(
                    Diagnostic::new(
                        Code::ModelDataMismatch,
                        format!("a `{}` needs images, but `{data_name}` holds {}", model.variant, data.describe()),
                        self.at(inst, "model"),
                        format!("a {}", model.variant),
                    )
                    .with_label(data_span, "points come from here")
                    .with_help("use `mlp { }` for vector (toy) data"),
                );
                return;
            }
            _ => {}
        }
        if data.points {
            return;
        }
        let Some(Value::List(mults)) = model.params.get("mults") else { return };
        let ints = |items: &[Value]| -> Vec<i64> {
            items.iter().filter_map(|v| if let Value::Int(i) = v { Some(*i) } else { None }).collect()
        };
        let attention = match model.params.get("attention") {
            Some(Value::List(a)) => ints(a),
            _ => Vec::new(),
        };
        let (channels, heads) = (int(&model.params, "channels"), int(&model.params, "heads"));
        for problem in net_problems(channels, heads, &ints(mults), &attention, data.size) {
            let message = problem.message(&model.variant);
            let diagnostic = match &problem {
                NetProblem::NoLevels => {
                    Diagnostic::new(Code::OutOfRange, message, self.at(inst, "model.mults"), "empty")
                }
                NetProblem::Indivisible { levels, .. } => Diagnostic::new(
                    Code::IndivisibleSize,
                    message,
                    self.at(inst, "model.mults"),
                    format!("{levels} levels"),
                )
                .with_label(data_span, format!("{} from here", data.describe())),
                NetProblem::Heads { heads, .. } => Diagnostic::new(
                    Code::HeadsMismatch,
                    message,
                    self.at(inst, "model.heads"),
                    format!("{heads} heads"),
                ),
                NetProblem::AttentionResolution { resolution: r, .. } => Diagnostic::new(
                    Code::AttentionResolution,
                    message,
                    self.at(inst, "model.attention"),
                    format!("no {r}×{r} level"),
                ),
            };
            self.push(diagnostic.with_help(problem.help()));
        }
    }
}
