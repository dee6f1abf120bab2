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
                    let message = "`channels` must be 1 (grayscale) or 3 (RGB), found 2";
                    self.push(
                        self.error(inst, "channels", Code::OutOfRange, message, "neither grayscale nor RGB")
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
                let message = format!("an `mlp` cannot model images, and `{data_name}` holds {}", data.describe());
                self.push(
                    self.error(inst, "model", Code::ModelDataMismatch, message, "an mlp")
                    .with_label(data_span, "images come from here")
                    .with_help("use a `unet` for images (e.g. `unet_small` from \"std/unet.diff\"); `mlp` is for vector (toy) data"),
                );
                return;
            }
            ("unet" | "encoder", true) => {
                let message =
                    format!("a `{}` needs images, but `{data_name}` holds {}", model.variant, data.describe());
                self.push(
                    self.error(inst, "model", Code::ModelDataMismatch, message, format!("a {}", model.variant))
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
                NetProblem::NoLevels => self.error(inst, "model.mults", Code::OutOfRange, message, "empty"),
                NetProblem::Indivisible { levels, .. } => self
                    .error(inst, "model.mults", Code::IndivisibleSize, message, format!("{levels} levels"))
                    .with_label(data_span, format!("{} from here", data.describe())),
                NetProblem::Heads { heads, .. } => {
                    self.error(inst, "model.heads", Code::HeadsMismatch, message, format!("{heads} heads"))
                }
                NetProblem::AttentionResolution { resolution: r, .. } => {
                    self.error(inst, "model.attention", Code::AttentionResolution, message, format!("no {r}×{r} level"))
                }
            };
            self.push(diagnostic.with_help(problem.help()));
        }
    }
}
