//! The `model` kind: the UNet and the encoder (the conv net of `crate::unet`), the MLP, and
//! what the diffusion process needs to know of a denoiser ([`ModelSpec`]). The rules a
//! net's levels must meet on an image size are `crate::unet::net_problems`; the one rule
//! that needs no image size, the group-norm trap, is [`UNetConfig::embedding_blind_levels`].

use serde::{Deserialize, Serialize};

pub use crate::unet::{ConvNet, NetLayout};

use super::{decode, DecodeError};
use crate::diffusion::schedule::ScheduleSpec;

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    Eps,
    V,
    X0,
}

impl Prediction {
    /// Whether the prediction is defined on `schedule`: ε is not where ᾱ_T = 0 (x_T holds
    /// no signal to take the noise from), so zero terminal SNR needs v or x₀ (Lin et al. 2024).
    pub fn fits(self, schedule: &ScheduleSpec) -> Result<(), &'static str> {
        match self {
            Prediction::Eps if schedule.zero_terminal_snr() => {
                Err("ε-prediction is undefined at ᾱ_T = 0, and this schedule has zero_terminal_snr = true")
            }
            Prediction::Eps | Prediction::V | Prediction::X0 => Ok(()),
        }
    }
}

/// The parts of a model config that the diffusion process (not the network) needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Class count of a conditional model (0: unconditional). Label `classes` is the null class.
    pub classes: usize,
    pub learn_sigma: bool,
    pub prediction: Prediction,
}

impl ModelSpec {
    /// The denoising keys of a `model` config object (its other keys are ignored).
    pub fn from_config(config: &serde_json::Value) -> Result<ModelSpec, DecodeError> {
        decode(config, "the model config")
    }
}

/// The `unet` model config (`kind`/`variant` ignored): the conv net shared with the
/// encoder, and what the output means (the net is the same for ε, v and x₀).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    #[serde(flatten)]
    pub net: ConvNet,
    #[serde(flatten)]
    pub spec: ModelSpec,
}

/// The `mlp` model config (`kind`/`variant` ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub hidden: usize,
    pub layers: usize,
    #[serde(flatten)]
    pub spec: ModelSpec,
}

/// A `model` config object, decoded by its variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum ModelConfig {
    Unet(UNetConfig),
    Mlp(MlpConfig),
    Encoder(ConvNet),
    Python(PythonConfig),
}

/// A network written in Python: a `torch.nn.Module` subclass in a module file, built as
/// `class(**args)` and called as `forward(x, t, y)` (`kind`/`variant` are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PythonConfig {
    /// The module file, absolute or relative to the worker's folder.
    pub file: std::path::PathBuf,
    /// The `torch.nn.Module` subclass in it.
    pub class: String,
    /// Keyword arguments of the constructor.
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    pub spec: ModelSpec,
}

impl ModelConfig {
    /// What the diffusion process needs of a denoiser; None for the encoder (a classifier).
    pub fn spec(&self) -> Option<ModelSpec> {
        match self {
            ModelConfig::Unet(unet) => Some(unet.spec),
            ModelConfig::Mlp(mlp) => Some(mlp.spec),
            ModelConfig::Python(net) => Some(net.spec),
            ModelConfig::Encoder(_) => None,
        }
    }
}

/// A level of a UNet whose GroupNorms hold one channel per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlindLevel {
    /// 0 for the full-resolution level.
    pub level: usize,
    pub channels: i64,
}

impl UNetConfig {
    /// The levels at which the time and label embedding is lost: with the additive
    /// embedding (`scale_shift = false`) the residual blocks add it as a per-channel
    /// constant right before a GroupNorm, and a GroupNorm with one channel per group
    /// subtracts each channel's mean, the constant with it. GroupNorm takes 32 groups
    /// (fewer when they do not divide the channels), so every level of ≤ 32 channels is
    /// blind to t and y. Scale-shift norm applies the embedding after the norm and is safe.
    pub fn embedding_blind_levels(&self) -> Vec<BlindLevel> {
        if self.net.scale_shift {
            return Vec::new();
        }
        let layout = &self.net.layout;
        self.net
            .mults
            .iter()
            .enumerate()
            .map(|(level, mult)| BlindLevel { level, channels: self.net.channels * mult })
            .filter(|l| l.channels > 0 && layout.groups(l.channels) == l.channels)
            .collect()
    }

    /// Whether every level is blind to the embedding ([`Self::embedding_blind_levels`]):
    /// then the net sees neither the timestep nor the label anywhere.
    pub fn ignores_embedding(&self) -> bool {
        !self.net.mults.is_empty() && self.embedding_blind_levels().len() == self.net.mults.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unet(channels: i64, mults: &[i64], scale_shift: bool) -> UNetConfig {
        let net = ConvNet {
            channels,
            mults: mults.to_vec(),
            res_blocks: 1,
            attention: Vec::new(),
            heads: 1,
            dropout: 0.0,
            scale_shift,
            layout: NetLayout::default(),
        };
        UNetConfig { net, spec: ModelSpec { classes: 10, learn_sigma: false, prediction: Prediction::Eps } }
    }

    #[test]
    fn levels_of_at_most_32_channels_lose_the_additive_embedding() {
        let small = unet(16, &[1, 2, 2], false);
        let levels: Vec<_> = small.embedding_blind_levels().iter().map(|l| (l.level, l.channels)).collect();
        assert_eq!(levels, [(0, 16), (1, 32), (2, 32)]);
        assert!(small.ignores_embedding());
        let wider = unet(32, &[1, 2, 2], false);
        assert_eq!(wider.embedding_blind_levels(), [BlindLevel { level: 0, channels: 32 }]);
        assert!(!wider.ignores_embedding());
        assert!(unet(16, &[1, 2, 2], true).embedding_blind_levels().is_empty());
        assert!(unet(64, &[1, 2], false).embedding_blind_levels().is_empty());
        // 24 channels take 8 groups of 3: normalised together, the constant survives.
        assert!(unet(24, &[1], false).embedding_blind_levels().is_empty());
    }
}
