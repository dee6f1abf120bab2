//! diffusers' `UNet2DModel` config (`config.json`) and DDPM/DDIM scheduler config
//! (`scheduler_config.json`) read into difflow's `unet` options and schedule, and written
//! back from them. Every option without a difflow equivalent is refused by name.

use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::limits;
use crate::diffusion::schedule::{linspace, rescale_zero_terminal_snr, ScheduleSpec};
use crate::net_size::SizeLimits;
use crate::unet::{ConvNet, NetLayout};

/// The `UNet2DModel` options difflow reads, with `UNet2DModel`'s own defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct UNet2DConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default)]
    pub sample_size: Option<Json>,
    #[serde(default = "three")]
    pub in_channels: i64,
    #[serde(default = "three")]
    pub out_channels: i64,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub time_embedding_dim: Option<i64>,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    #[serde(default = "mid_block")]
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<i64>,
    #[serde(default = "two")]
    pub layers_per_block: i64,
    #[serde(default = "one")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "one_int")]
    pub downsample_padding: i64,
    #[serde(default = "conv")]
    pub downsample_type: String,
    #[serde(default = "conv")]
    pub upsample_type: String,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "silu")]
    pub act_fn: String,
    #[serde(default = "eight")]
    pub attention_head_dim: Option<i64>,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: Option<i64>,
    #[serde(default)]
    pub attn_norm_num_groups: Option<i64>,
    #[serde(default = "norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "yes")]
    pub add_attention: bool,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub num_class_embeds: Option<i64>,
}

/// The `#[serde(default = "…")]` functions: `name: type = value;` each.
macro_rules! serde_defaults {
    ($($name:ident: $ty:ty = $value:expr;)*) => {
        $(fn $name() -> $ty {
            $value
        })*
    };
}

serde_defaults! {
    three: i64 = 3;
    two: i64 = 2;
    one: f64 = 1.0;
    one_int: i64 = 1;
    yes: bool = true;
    eight: Option<i64> = Some(8);
    thirty_two: Option<i64> = Some(32);
    norm_eps: f64 = 1e-5;
    positional: String = "positional".into();
    mid_block: Option<String> = Some("UNetMidBlock2D".into());
    conv: String = "conv".into();
    silu: String = "silu".into();
    default_shift: String = "default".into();
}

/// A refused or broken config: the message names the option, `help` says what works.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub message: String,
    pub help: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.message, self.help)
    }
}

fn refuse(message: impl Into<String>, help: impl Into<String>) -> ConfigError {
    ConfigError { message: message.into(), help: help.into() }
}

/// What difflow builds from a `UNet2DModel` config.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedNet {
    pub net: ConvNet,
    pub in_channels: i64,
    pub size: i64,
    /// Classes of a conditional model: `num_class_embeds` − 1, the last row the null class.
    pub classes: i64,
    /// `out_channels` = 2 × `in_channels`: the second half is the learned variance range.
    pub learn_sigma: bool,
}

const DOWN: [&str; 2] = ["DownBlock2D", "AttnDownBlock2D"];
const UP: [&str; 2] = ["UpBlock2D", "AttnUpBlock2D"];

impl UNet2DConfig {
    pub fn parse(text: &str) -> Result<UNet2DConfig, ConfigError> {
        serde_json::from_str(text).map_err(|e| {
            refuse(format!("not a UNet2DModel config: {e}"), "point at a folder saved by `UNet2DModel.save_pretrained`")
        })
    }

    /// The difflow net this config describes, or the first option difflow cannot follow.
    pub fn to_difflow(&self) -> Result<PretrainedNet, ConfigError> {
        if let Some(name) = self.class_name.as_deref().filter(|n| *n != "UNet2DModel") {
            return Err(refuse(format!("the model is a `{name}`"), "difflow reads `UNet2DModel` folders"));
        }
        self.refuse_unsupported()?;
        limits::check_unet_ranges(self)?;
        let levels = self.block_out_channels.len();
        if levels == 0 || self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            return Err(refuse(
                "`block_out_channels`, `down_block_types` and `up_block_types` differ in length",
                "give one entry per level in each",
            ));
        }
        let base = self.block_out_channels[0];
        if base <= 0 || self.block_out_channels.iter().any(|c| *c <= 0 || c % base != 0) {
            return Err(refuse(
                format!("`block_out_channels` {:?} are not multiples of the first", self.block_out_channels),
                "difflow's levels have channels × an integer multiplier",
            ));
        }
        if let Some(groups) = self.norm_num_groups {
            // Every GroupNorm normalises a level's channels or a sum of them.
            limits::check_groups(groups, &self.block_out_channels)?;
        }
        let size = self.size()?;
        let mut attention = Vec::new();
        for (level, kind) in self.down_block_types.iter().enumerate() {
            let up = &self.up_block_types[levels - 1 - level];
            let attends = block_attends(kind, &DOWN, "down_block_types")?;
            if attends != block_attends(up, &UP, "up_block_types")? {
                return Err(refuse(
                    format!("level {level} attends on the way down but not up (or the reverse): `{kind}` and `{up}`"),
                    "difflow attends at the same resolutions in both halves",
                ));
            }
            if attends {
                attention.push(size >> level);
            }
        }
        let heads = self.heads(&attention, size)?;
        let learn_sigma = match self.out_channels {
            o if o == self.in_channels => false,
            o if o == 2 * self.in_channels => true,
            o => {
                return Err(refuse(
                    format!("`out_channels` = {o} with `in_channels` = {}", self.in_channels),
                    "difflow reads nets whose output has the input's channels (ε) or twice that (learned variance)",
                ))
            }
        };
        let layout = NetLayout {
            norm_eps: self.norm_eps,
            norm_groups: self.norm_num_groups,
            downsample_padding: self.downsample_padding,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
        };
        let net = ConvNet {
            channels: base,
            mults: self.block_out_channels.iter().map(|c| c / base).collect(),
            res_blocks: self.layers_per_block,
            attention,
            heads,
            dropout: self.dropout,
            scale_shift: self.resnet_time_scale_shift == "scale_shift",
            layout,
        };
        net.resolutions("unet", size).map_err(|e| refuse(e, "the folder's config does not fit its `sample_size`"))?;
        Ok(PretrainedNet {
            net,
            in_channels: self.in_channels,
            size,
            classes: self.num_class_embeds.map_or(0, |n| n - 1),
            learn_sigma,
        })
    }

    fn size(&self) -> Result<i64, ConfigError> {
        let square = "difflow samples square images of a known size";
        match &self.sample_size {
            Some(Json::Number(n)) if n.as_i64().is_some_and(|n| n > 0) => Ok(n.as_i64().unwrap_or(0)),
            Some(Json::Array(hw)) if hw.len() == 2 && hw[0] == hw[1] && hw[0].as_i64().is_some_and(|n| n > 0) => {
                Ok(hw[0].as_i64().unwrap_or(0))
            }
            Some(other) => Err(refuse(format!("`sample_size` = {other}"), square)),
            None => Err(refuse("`sample_size` is not set", square)),
        }
    }

    fn refuse_unsupported(&self) -> Result<(), ConfigError> {
        let checks: [(bool, String, &str); 12] = [
            (self.center_input_sample, "`center_input_sample` = true".into(), "false"),
            (
                self.time_embedding_type != "positional",
                format!("`time_embedding_type` = {:?}", self.time_embedding_type),
                "\"positional\"",
            ),
            (
                self.time_embedding_dim.is_some(),
                "`time_embedding_dim` is set".into(),
                "unset (4 × the first block's channels)",
            ),
            (
                self.mid_block_type.as_deref() != Some("UNetMidBlock2D"),
                format!("`mid_block_type` = {:?}", self.mid_block_type),
                "\"UNetMidBlock2D\"",
            ),
            (
                self.mid_block_scale_factor != 1.0,
                format!("`mid_block_scale_factor` = {}", self.mid_block_scale_factor),
                "1",
            ),
            (
                !matches!(self.downsample_padding, 0 | 1),
                format!("`downsample_padding` = {}", self.downsample_padding),
                "0 or 1",
            ),
            (
                self.downsample_type != "conv" || self.upsample_type != "conv",
                "`downsample_type`/`upsample_type` other than \"conv\"".into(),
                "\"conv\"",
            ),
            (self.act_fn != "silu", format!("`act_fn` = {:?}", self.act_fn), "\"silu\""),
            (
                !matches!(self.resnet_time_scale_shift.as_str(), "default" | "scale_shift"),
                format!("`resnet_time_scale_shift` = {:?}", self.resnet_time_scale_shift),
                "\"default\" or \"scale_shift\"",
            ),
            (!self.add_attention, "`add_attention` = false".into(), "true (the middle block attends)"),
            (
                self.class_embed_type.is_some(),
                format!("`class_embed_type` = {:?}", self.class_embed_type),
                "unset (a class-label table, `num_class_embeds`)",
            ),
            (
                self.attn_norm_num_groups.is_some_and(|g| Some(g) != self.norm_num_groups)
                    || (self.attn_norm_num_groups.is_none() && self.resnet_time_scale_shift == "scale_shift"),
                "the middle block's attention normalises differently (`attn_norm_num_groups`)".into(),
                "`attn_norm_num_groups` equal to `norm_num_groups`",
            ),
        ];
        for (bad, what, wanted) in checks {
            if bad {
                return Err(refuse(
                    format!("{what} has no difflow equivalent"),
                    format!("difflow reads UNet2DModels with {wanted}"),
                ));
            }
        }
        if self.norm_num_groups.is_none() {
            return Err(refuse("`norm_num_groups` = null has no difflow equivalent", "set a group count"));
        }
        if self.num_class_embeds.is_some_and(|n| n < 2) {
            return Err(refuse(
                "`num_class_embeds` below 2",
                "difflow reads the class table as the classes and a last, null row",
            ));
        }
        Ok(())
    }

    /// difflow's one head count for every attention layer (diffusers fixes the head width).
    fn heads(&self, attention: &[i64], size: i64) -> Result<i64, ConfigError> {
        let Some(width) = self.attention_head_dim else { return Ok(1) };
        let levels = self.block_out_channels.len();
        let mut widths: Vec<i64> =
            (0..levels).filter(|&l| attention.contains(&(size >> l))).map(|l| self.block_out_channels[l]).collect();
        widths.push(self.block_out_channels[levels - 1]);
        let heads: Vec<i64> = widths.iter().map(|w| if width > 0 && w % width == 0 { w / width } else { 0 }).collect();
        if heads.iter().any(|h| *h != heads[0]) || heads[0] == 0 {
            return Err(refuse(
                format!(
                    "`attention_head_dim` = {width} gives different head counts on the attending levels {widths:?}"
                ),
                "difflow uses one head count everywhere: all attending levels need the same channels",
            ));
        }
        Ok(heads[0])
    }
}

fn block_attends(kind: &str, known: &[&str; 2], key: &str) -> Result<bool, ConfigError> {
    match known.iter().position(|k| *k == kind) {
        Some(i) => Ok(i == 1),
        None => Err(refuse(
            format!("the block type `{kind}` in `{key}` has no difflow equivalent"),
            format!("difflow reads {} and {}", known[0], known[1]),
        )),
    }
}

/// The scheduler options difflow reads (`DDPMScheduler`/`DDIMScheduler` defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "thousand")]
    pub num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    pub beta_start: f64,
    #[serde(default = "beta_end")]
    pub beta_end: f64,
    #[serde(default = "linear")]
    pub beta_schedule: String,
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(default = "epsilon")]
    pub prediction_type: String,
    #[serde(default)]
    pub variance_type: Option<String>,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
}

serde_defaults! {
    thousand: usize = 1000;
    beta_start: f64 = 1e-4;
    beta_end: f64 = 0.02;
    linear: String = "linear".into();
    epsilon: String = "epsilon".into();
}

/// What a scheduler config gives difflow: the schedule and what the net predicts.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedProcess {
    pub schedule: ScheduleSpec,
    /// `eps`, `v` or `x0`.
    pub prediction: &'static str,
}

const SCHEDULERS: [&str; 2] = ["DDPMScheduler", "DDIMScheduler"];

impl SchedulerConfig {
    pub fn parse(text: &str) -> Result<SchedulerConfig, ConfigError> {
        serde_json::from_str(text)
            .map_err(|e| refuse(format!("not a scheduler config: {e}"), "save it with `DDPMScheduler.save_pretrained`"))
    }

    /// The schedule, or the first option difflow refuses; `limits` bound its tables.
    pub fn to_difflow(&self, limits: &SizeLimits) -> Result<PretrainedProcess, ConfigError> {
        if let Some(name) = self.class_name.as_deref().filter(|n| !SCHEDULERS.contains(n)) {
            return Err(refuse(
                format!("the scheduler is a `{name}`"),
                "difflow reads DDPMScheduler and DDIMScheduler configs (its own sampler picks the steps)",
            ));
        }
        limits::check_scheduler(self, limits)?;
        let steps = self.num_train_timesteps;
        let prediction = match self.prediction_type.as_str() {
            "epsilon" => "eps",
            "v_prediction" => "v",
            "sample" => "x0",
            other => {
                return Err(refuse(
                    format!("`prediction_type` = {other:?} has no difflow equivalent"),
                    "difflow reads \"epsilon\", \"v_prediction\" and \"sample\"",
                ))
            }
        };
        if self.thresholding {
            return Err(refuse(
                "`thresholding` = true has no difflow equivalent",
                "difflow clips x̂₀ to [-1, 1] (diffusers' `clip_sample`)",
            ));
        }
        if let Some(v) = self.variance_type.as_deref().filter(|v| *v == "learned") {
            return Err(refuse(
                format!("`variance_type` = {v:?} has no difflow equivalent"),
                "difflow reads \"fixed_small\", \"fixed_large\" and \"learned_range\"",
            ));
        }
        let zero_terminal_snr = self.rescale_betas_zero_snr;
        let schedule = match (&self.trained_betas, self.beta_schedule.as_str()) {
            (Some(betas), _) => ScheduleSpec::Betas { betas: maybe_rescaled(betas.clone(), zero_terminal_snr) },
            (None, "linear") => ScheduleSpec::Linear {
                steps,
                start: self.beta_start,
                end: self.beta_end,
                scale_with_steps: false,
                zero_terminal_snr,
            },
            (None, "squaredcos_cap_v2") => {
                ScheduleSpec::Cosine { steps, s: COSINE_S, max_beta: COSINE_MAX_BETA, zero_terminal_snr }
            }
            (None, "sigmoid") => {
                let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
                let betas = linspace(-6.0, 6.0, steps)
                    .into_iter()
                    .map(|x| sigmoid(x) * (self.beta_end - self.beta_start) + self.beta_start)
                    .collect();
                ScheduleSpec::Betas { betas: maybe_rescaled(betas, zero_terminal_snr) }
            }
            (None, other) => {
                return Err(refuse(
                    format!("`beta_schedule` = {other:?} has no difflow equivalent"),
                    "difflow reads \"linear\", \"squaredcos_cap_v2\" and \"sigmoid\" (or `trained_betas`)",
                ))
            }
        };
        Ok(PretrainedProcess { schedule, prediction })
    }
}

fn maybe_rescaled(betas: Vec<f64>, zero_terminal_snr: bool) -> Vec<f64> {
    if zero_terminal_snr {
        rescale_zero_terminal_snr(&betas)
    } else {
        betas
    }
}

/// diffusers' `squaredcos_cap_v2`: IDDPM's cosine schedule with these constants.
const COSINE_S: f64 = 0.008;
const COSINE_MAX_BETA: f64 = 0.999;

/// The `UNet2DModel` config of a difflow `unet` (as built on `in_channels` × `size`²
/// images), or the difflow option that has no diffusers equivalent.
pub fn unet_config(
    net: &ConvNet,
    in_channels: i64,
    size: i64,
    classes: i64,
    learn_sigma: bool,
) -> Result<Json, ConfigError> {
    let resolutions = net.resolutions("unet", size).map_err(|e| refuse(e, "fix the net first"))?;
    let levels = net.mults.len();
    let attends: Vec<bool> = resolutions.iter().map(|r| net.attention.contains(r)).collect();
    let block_out: Vec<i64> = net.mults.iter().map(|m| m * net.channels).collect();
    let groups = one_group_count(net, &block_out)?;
    let attention_head_dim = if net.heads == 1 {
        Json::Null
    } else {
        let mut widths: Vec<i64> = (0..levels).filter(|&l| attends[l]).map(|l| block_out[l]).collect();
        widths.push(block_out[levels - 1]);
        if widths.iter().any(|w| *w != widths[0]) {
            return Err(refuse(
                format!("`heads = {}` splits attention layers of {widths:?} channels", net.heads),
                "diffusers fixes the width of a head, not their number: use `heads = 1`, or attend only at \
                 levels with the middle block's channels",
            ));
        }
        json!(widths[0] / net.heads)
    };
    let down: Vec<&str> = attends.iter().map(|a| DOWN[*a as usize]).collect();
    let up: Vec<&str> = attends.iter().rev().map(|a| UP[*a as usize]).collect();
    let layout = &net.layout;
    Ok(json!({
        "_class_name": "UNet2DModel",
        "sample_size": size,
        "in_channels": in_channels,
        "out_channels": if learn_sigma { 2 * in_channels } else { in_channels },
        "center_input_sample": false,
        "time_embedding_type": "positional",
        "freq_shift": layout.freq_shift,
        "flip_sin_to_cos": layout.flip_sin_to_cos,
        "down_block_types": down,
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": up,
        "block_out_channels": block_out,
        "layers_per_block": net.res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": layout.downsample_padding,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": net.dropout,
        "act_fn": "silu",
        "attention_head_dim": attention_head_dim,
        "norm_num_groups": groups,
        "attn_norm_num_groups": groups,
        "norm_eps": layout.norm_eps,
        "resnet_time_scale_shift": if net.scale_shift { "scale_shift" } else { "default" },
        "add_attention": true,
        "class_embed_type": null,
        "num_class_embeds": if classes > 0 { json!(classes + 1) } else { Json::Null },
    }))
}

/// diffusers has one `norm_num_groups`; difflow picks 32 or fewer per layer. The export
/// works when every GroupNorm of the net gets the same count.
fn one_group_count(net: &ConvNet, block_out: &[i64]) -> Result<i64, ConfigError> {
    let mut normed: Vec<i64> = block_out.to_vec();
    // The up path's residual blocks normalise the concatenation of a skip and the path.
    let mut skips = vec![block_out[0]];
    let mut ch = block_out[0];
    for (level, out) in block_out.iter().enumerate() {
        for _ in 0..net.res_blocks {
            normed.push(ch);
            ch = *out;
            skips.push(ch);
        }
        if level + 1 != block_out.len() {
            skips.push(ch);
        }
    }
    for out in block_out.iter().rev() {
        for _ in 0..=net.res_blocks {
            normed.push(ch + skips.pop().unwrap_or(0));
            ch = *out;
        }
    }
    let counts: Vec<i64> = normed.iter().map(|c| net.layout.groups(*c)).collect();
    if counts.iter().any(|g| *g != counts[0]) {
        let mut distinct = counts.clone();
        distinct.sort_unstable();
        distinct.dedup();
        return Err(refuse(
            format!(
                "`channels = {}` gives GroupNorms of {distinct:?} groups, and diffusers has one `norm_num_groups`",
                net.channels
            ),
            "use `channels` (and every channels × mults) a multiple of 32",
        ));
    }
    Ok(counts[0])
}

/// The `DDPMScheduler` config of a difflow schedule and prediction.
pub fn scheduler_config(schedule: &ScheduleSpec, prediction: &str, learn_sigma: bool) -> Json {
    let mut config = json!({
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": schedule.steps(),
        "prediction_type": match prediction { "v" => "v_prediction", "x0" => "sample", _ => "epsilon" },
        "variance_type": if learn_sigma { "learned_range" } else { "fixed_small" },
        "clip_sample": true,
        "clip_sample_range": 1.0,
    });
    let named = match schedule {
        ScheduleSpec::Linear { steps, start, end, scale_with_steps, zero_terminal_snr } => {
            let scale = if *scale_with_steps { 1000.0 / *steps as f64 } else { 1.0 };
            Some(json!({"beta_schedule": "linear", "beta_start": scale * start, "beta_end": scale * end,
                        "rescale_betas_zero_snr": zero_terminal_snr}))
        }
        ScheduleSpec::Cosine { s, max_beta, zero_terminal_snr, .. }
            if *s == COSINE_S && *max_beta == COSINE_MAX_BETA =>
        {
            Some(json!({"beta_schedule": "squaredcos_cap_v2", "rescale_betas_zero_snr": zero_terminal_snr}))
        }
        _ => None,
    };
    // Any other schedule goes over exactly as its β.
    let extra = named.unwrap_or_else(|| json!({"beta_schedule": "linear", "trained_betas": schedule.betas()}));
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    config
}
