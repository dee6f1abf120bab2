//! The `encoder`: the UNet's down half and middle block with a pooled head (GroupNorm,
//! SiLU, global average pool, linear to the class logits), as guided-diffusion's
//! `EncoderUNetModel` with `pool = "adaptive"`. A noisy classifier (trained on x_t for
//! classifier guidance) embeds the timestep like the UNet; a clean one has no time
//! embedding at all. The class count comes from the data.

use anyhow::{anyhow, Result};
use difflow_core::unet::ConvNet;
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{linear, Block, TimeEmbed};
use super::unet::{down_half, levels, middle, LevelInfo};

#[derive(Debug)]
pub struct Encoder {
    pub config: ConvNet,
    pub in_channels: i64,
    pub size: i64,
    pub classes: i64,
    time_embed: Option<TimeEmbed>,
    input_blocks: Vec<Block>,
    middle_block: Block,
    out_norm: nn::GroupNorm,
    out_linear: nn::Linear,
}

impl Encoder {
    /// `noisy`: embed the timestep (a classifier of x_t for guidance).
    pub fn new(
        vs: &nn::Path,
        config: &ConvNet,
        in_channels: i64,
        size: i64,
        classes: i64,
        noisy: bool,
    ) -> Result<Self> {
        // The encoder is the UNet's down half, built from the same keys by the same code.
        let resolutions = config.resolutions("encoder", size).map_err(|e| anyhow!(e))?;
        anyhow::ensure!(classes >= 2, "a classifier needs at least 2 classes in its data (got {classes})");
        let emb_dim = 4 * config.channels;
        let emb = noisy.then_some(emb_dim);
        let time_embed = noisy.then(|| TimeEmbed::new(vs / "time_embed", config.channels, emb_dim, &config.layout));
        let (input_blocks, _, ch) = down_half(&(vs / "input_blocks"), config, in_channels, &resolutions, emb);
        let middle_block = middle(&(vs / "middle_block"), ch, emb, config);
        Ok(Encoder {
            config: config.clone(),
            in_channels,
            size,
            classes,
            time_embed,
            input_blocks,
            middle_block,
            out_norm: head_norm(vs / "out" / 0, ch),
            out_linear: linear(vs / "out" / 3, ch, classes, true),
        })
    }

    pub fn is_noisy(&self) -> bool {
        self.time_embed.is_some()
    }

    /// Class logits [B, classes] of `x` (model scale [-1, 1]); `t` is required by a noisy
    /// classifier and ignored by a clean one.
    pub fn forward(&self, x: &Tensor, t: Option<&Tensor>, train: bool) -> Tensor {
        self.out_linear.forward(&self.pooled(x, t, train))
    }

    /// The pooled features [B, channels] that the final linear layer maps to logits.
    pub fn pooled(&self, x: &Tensor, t: Option<&Tensor>, train: bool) -> Tensor {
        let emb = match (&self.time_embed, t) {
            (Some(te), Some(t)) => Some(te.forward(t)),
            (Some(te), None) => Some(te.forward(&Tensor::zeros([x.size()[0]], (tch::Kind::Float, x.device())))),
            _ => None,
        };
        let mut h = x.shallow_clone();
        for block in &self.input_blocks {
            h = block.forward(&h, emb.as_ref(), train);
        }
        h = self.middle_block.forward(&h, emb.as_ref(), train);
        self.out_norm.forward(&h).silu().mean_dim([2i64, 3].as_slice(), false, tch::Kind::Float)
    }

    pub fn levels(&self) -> Vec<LevelInfo> {
        levels(&self.config, self.size)
    }
}

/// The key that a classifier stage adds to the model config it records, saying whether the
/// encoder embeds the timestep (trained with a schedule) — so that `build_classifier`
/// rebuilds exactly the net that was trained.
pub const NOISY_KEY: &str = "noisy";

impl Encoder {
    /// The encoder of a `model` config object (`noisy` read from [`NOISY_KEY`], default false).
    pub fn from_config(
        root: &nn::Path,
        config: &serde_json::Value,
        data: &crate::data::DataMeta,
        classes: usize,
    ) -> Result<Self> {
        let (channels, size) = super::unet::image_shape(data, "encoder")?;
        let noisy = config.get(NOISY_KEY).and_then(serde_json::Value::as_bool).unwrap_or(false);
        let net = crate::params::decode::<ConvNet>(config, "the encoder model config")?;
        Encoder::new(root, &net, channels, size, classes as i64, noisy)
    }
}

impl super::Classifier for Encoder {
    fn forward(&self, x: &Tensor, t: Option<&Tensor>, train: bool) -> Tensor {
        Encoder::forward(self, x, t, train)
    }

    fn features(&self, x: &Tensor, t: Option<&Tensor>) -> Option<Tensor> {
        Some(self.pooled(x, t, false))
    }
}

/// The head's GroupNorm: 32 groups as everywhere (guided-diffusion), but at least 4
/// channels per group. With one channel per group (a small net's 32 bottom channels) the
/// norm removes each channel's spatial mean, which is exactly what the average pool that
/// follows keeps: the classifier then learns next to nothing. Same parameters either way.
fn head_norm(vs: nn::Path, channels: i64) -> nn::GroupNorm {
    let groups = difflow_core::unet::NetLayout::default().groups(channels).min((channels / 4).max(1));
    let groups = (1..=groups).rev().find(|g| channels % g == 0).unwrap_or(1);
    nn::group_norm(vs, groups, channels, Default::default())
}
