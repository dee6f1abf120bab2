//! Datasets and the networks that model them: sizes the UNet can halve, attention
//! resolutions it has, heads that divide channels.

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
        let levels = mults.len() as u32;
        let mults_span = self.at(inst, "model.mults");
        if levels == 0 {
            self.push(
                Diagnostic::new(Code::OutOfRange, "`mults` needs at least one level", mults_span, "empty")
                    .with_help("write one multiplier per resolution, e.g. `mults = [1, 2, 2]`"),
            );
            return;
        }
        let div = 1i64 << (levels - 1).min(40);
        if data.size % div != 0 {
            let mut fit = 1;
            while fit < levels && data.size % (1i64 << fit) == 0 {
                fit += 1;
            }
            self.push(
                Diagnostic::new(
                    Code::IndivisibleSize,
                    format!(
                        "a {levels}-level {} halves the image {} times, but {}-pixel images are not divisible by {div}",
                        model.variant,
                        levels - 1,
                        data.size
                    ),
                    mults_span,
                    format!("{levels} levels"),
                )
                .with_label(data_span, format!("{} from here", data.describe()))
                .with_help(format!(
                    "use at most {fit} levels in `mults` (e.g. {}), or resize the data to a multiple of {div}",
                    example_mults(fit)
                )),
            );
            return;
        }
        let resolutions: Vec<i64> = (0..levels).map(|i| data.size >> i).collect();
        self.heads_divide_channels(inst, model, &resolutions);
        if let Some(Value::List(att)) = model.params.get("attention") {
            for a in att {
                if let Value::Int(r) = a {
                    if !resolutions.contains(r) {
                        let shown = resolutions.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
                        self.push(
                            Diagnostic::new(
                                Code::AttentionResolution,
                                format!(
                                    "attention at {r}×{r}, but this {} on {}×{} data only has resolutions {shown}",
                                    model.variant, data.size, data.size
                                ),
                                self.at(inst, "model.attention"),
                                format!("no {r}×{r} level"),
                            )
                            .with_help(format!("pick attention resolutions among {shown}")),
                        );
                    }
                }
            }
        }
    }

    /// Attention splits a level's channels into `heads` equal parts, at every attention
    /// resolution and in the middle block (which always attends).
    pub(super) fn heads_divide_channels(&mut self, inst: &Instance, model: &Config, resolutions: &[i64]) {
        let (Some(channels), Some(heads)) = (int(&model.params, "channels"), int(&model.params, "heads")) else {
            return;
        };
        let Some(Value::List(mults)) = model.params.get("mults") else { return };
        let mults: Vec<i64> =
            mults.iter().filter_map(|m| if let Value::Int(i) = m { Some(*i) } else { None }).collect();
        let attention: Vec<i64> = match model.params.get("attention") {
            Some(Value::List(a)) => {
                a.iter().filter_map(|m| if let Value::Int(i) = m { Some(*i) } else { None }).collect()
            }
            _ => Vec::new(),
        };
        let mut widths: Vec<(String, i64)> = Vec::new();
        for (i, r) in resolutions.iter().enumerate() {
            if attention.contains(r) {
                widths.push((format!("the {r}×{r} level"), channels * mults.get(i).copied().unwrap_or(1)));
            }
        }
        if let Some(last) = mults.last() {
            widths.push(("the middle block".to_string(), channels * last));
        }
        if let Some((place, width)) = widths.iter().find(|(_, w)| w % heads != 0) {
            self.push(
                Diagnostic::new(
                    Code::HeadsMismatch,
                    format!("{heads} attention heads cannot split the {width} channels of {place}"),
                    self.at(inst, "model.heads"),
                    format!("{heads} heads"),
                )
                .with_help("choose `heads` dividing channels × every multiplier at attention levels (e.g. 1, 2 or 4)"),
            );
        }
    }
}

fn example_mults(levels: u32) -> String {
    let v: Vec<String> = (0..levels).map(|i| if i == 0 { "1".to_string() } else { "2".to_string() }).collect();
    format!("[{}]", v.join(", "))
}
