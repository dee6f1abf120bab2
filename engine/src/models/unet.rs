//! The UNet of Ho et al. 2020 with the IDDPM options (Nichol & Dhariwal 2021), laid out as
//! improved-diffusion's `UNetModel` (parameter names included): `time_embed`, optional
//! `label_emb` (classes + 1 rows, the last one the null class of classifier-free
//! guidance), `input_blocks`, `middle_block`, `output_blocks`, `out`.
//!
//! Ho et al.'s CIFAR-10 configuration (channels 128, mults [1,2,2,2], 2 res blocks,
//! attention at 16×16, 3×32×32 input) has 35,746,307 parameters, as in the paper's code
//! and in `bench/unet_reference.py`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use super::layers::{conv2d, group_norm, AttentionBlock, Block, Downsample, Layer, ResBlock, TimeEmbed, Upsample};

fn one() -> i64 {
    1
}

fn eps() -> String {
    "eps".into()
}

/// The `unet` model config as the job carries it (SPEC §1; `kind`/`variant` are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub channels: i64,
    pub mults: Vec<i64>,
    pub res_blocks: i64,
    /// Feature-map sizes (e.g. 16 for 16×16) at which blocks get self-attention.
    #[serde(default)]
    pub attention: Vec<i64>,
    #[serde(default = "one")]
    pub heads: i64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default)]
    pub scale_shift: bool,
    #[serde(default)]
    pub classes: i64,
    #[serde(default)]
    pub learn_sigma: bool,
    /// ε, v or x₀: what the output means; the net is the same for all three.
    #[serde(default = "eps")]
    pub prediction: String,
}

impl UNetConfig {
    /// Reads the config from the job's JSON object (`{"kind": "model", "variant": "unet", …}`).
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let cfg: UNetConfig = serde_json::from_value(strip_kind(value)).context("reading the unet model config")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.channels <= 0 || self.mults.is_empty() || self.mults.iter().any(|&m| m <= 0) {
            bail!(
                "unet: `channels` and every `mults` entry must be positive (got {} and {:?})",
                self.channels,
                self.mults
            );
        }
        if self.res_blocks <= 0 || self.heads <= 0 {
            bail!("unet: `res_blocks` and `heads` must be positive");
        }
        for (level, m) in self.mults.iter().enumerate() {
            if (m * self.channels) % self.heads != 0 {
                bail!("unet: {} heads do not divide the {} channels of level {level}", self.heads, m * self.channels);
            }
        }
        Ok(())
    }

    /// The feature-map size of each level for an input of `size`, or an error when the
    /// levels cannot halve it.
    pub fn resolutions(&self, size: i64) -> Result<Vec<i64>> {
        let downs = self.mults.len() as u32 - 1;
        if size % (1 << downs) != 0 {
            bail!(
                "a {size}×{size} image cannot be halved {downs} times by the {} levels of this unet (mults {:?}): \
                 use a size divisible by {}",
                self.mults.len(),
                self.mults,
                1 << downs
            );
        }
        Ok((0..=downs).map(|i| size >> i).collect())
    }
}

/// Drops the `kind`/`variant` fields that configs carry in job files.
pub fn strip_kind(value: &serde_json::Value) -> serde_json::Value {
    let mut v = value.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("kind");
        map.remove("variant");
    }
    v
}

/// One level of a net, for `difflow show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelInfo {
    pub resolution: i64,
    pub channels: i64,
    pub attention: bool,
}

pub fn levels(cfg_channels: i64, mults: &[i64], attention: &[i64], size: i64) -> Vec<LevelInfo> {
    mults
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let resolution = size >> i;
            LevelInfo { resolution, channels: m * cfg_channels, attention: attention.contains(&resolution) }
        })
        .collect()
}

/// The denoiser: `forward(x_t, t, y)` → ε (or v, x₀) with `in_channels` channels, and the
/// variance interpolation `v` in the second half with `learn_sigma` (2C channels).
#[derive(Debug)]
pub struct UNet {
    pub config: UNetConfig,
    pub in_channels: i64,
    pub size: i64,
    time_embed: TimeEmbed,
    label_emb: Option<nn::Embedding>,
    input_blocks: Vec<Block>,
    middle_block: Block,
    output_blocks: Vec<Block>,
    out_norm: nn::GroupNorm,
    out_conv: nn::Conv2D,
}

impl UNet {
    pub fn new(vs: &nn::Path, config: &UNetConfig, in_channels: i64, size: i64) -> Result<Self> {
        config.validate()?;
        let resolutions = config.resolutions(size)?;
        let c = config.channels;
        let emb = 4 * c;
        let time_embed = TimeEmbed::new(vs / "time_embed", c, emb);
        let label_emb = (config.classes > 0)
            .then(|| nn::embedding(vs / "label_emb", config.classes + 1, emb, nn::EmbeddingConfig::default()));
        let (input_blocks, skips, ch) = down_half(&(vs / "input_blocks"), config, in_channels, &resolutions, Some(emb));
        let middle_block = middle(&(vs / "middle_block"), ch, Some(emb), config);

        let outs = vs / "output_blocks";
        let mut output_blocks = Vec::new();
        let mut skips = skips;
        let mut ch = ch;
        let mut index = 0;
        for (level, mult) in config.mults.iter().enumerate().rev() {
            let res = resolutions[level];
            for i in 0..=config.res_blocks {
                let path = &outs / index;
                let skip = skips.pop().expect("one skip per input block");
                let mut block = Block::default();
                block.layers.push(Layer::Res(ResBlock::new(
                    &path / 0,
                    ch + skip,
                    mult * c,
                    Some(emb),
                    config.dropout,
                    config.scale_shift,
                )));
                ch = mult * c;
                if config.attention.contains(&res) {
                    block.layers.push(Layer::Attention(AttentionBlock::new(&path / 1, ch, config.heads)));
                }
                if level > 0 && i == config.res_blocks {
                    let at = block.layers.len();
                    block.layers.push(Layer::Up(Upsample::new(&path / at, ch)));
                }
                output_blocks.push(block);
                index += 1;
            }
        }
        let out_channels = if config.learn_sigma { 2 * in_channels } else { in_channels };
        Ok(UNet {
            config: config.clone(),
            in_channels,
            size,
            time_embed,
            label_emb,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: group_norm(vs / "out" / 0, ch),
            out_conv: conv2d(vs / "out" / 2, ch, out_channels, 3, 1, true),
        })
    }

    /// `x` [B, C, H, W] in model scale, `t` [B] timesteps (integer or float), `y` [B]
    /// class labels where `classes` (the last row) means "no class" (CFG's unconditional
    /// half). `y = None` on a class-conditional net means unconditional for all.
    pub fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        let mut emb = self.time_embed.forward(t);
        if let Some(label_emb) = &self.label_emb {
            let labels = match y {
                Some(y) => y.shallow_clone(),
                None => Tensor::full([x.size()[0]], self.config.classes, (tch::Kind::Int64, x.device())),
            };
            emb += label_emb.forward(&labels);
        }
        let emb = Some(&emb);
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.shallow_clone();
        for block in &self.input_blocks {
            h = block.forward(&h, emb, train);
            hs.push(h.shallow_clone());
        }
        h = self.middle_block.forward(&h, emb, train);
        for block in &self.output_blocks {
            let skip = hs.pop().expect("one skip per output block");
            h = block.forward(&Tensor::cat(&[h, skip], 1), emb, train);
        }
        self.out_conv.forward(&self.out_norm.forward(&h).silu())
    }

    pub fn levels(&self) -> Vec<LevelInfo> {
        levels(self.config.channels, &self.config.mults, &self.config.attention, self.size)
    }
}

/// The input conv and the down-sampling levels, shared with the encoder. Returns the
/// blocks, the channel count of each block's output (the UNet's skips) and the channel
/// count at the bottom.
pub(crate) fn down_half(
    vs: &nn::Path,
    cfg: &UNetConfig,
    in_channels: i64,
    resolutions: &[i64],
    emb: Option<i64>,
) -> (Vec<Block>, Vec<i64>, i64) {
    let c = cfg.channels;
    let mut blocks = vec![Block { layers: vec![Layer::Conv(conv2d(vs / 0 / 0, in_channels, c, 3, 1, false))] }];
    let mut skips = vec![c];
    let mut ch = c;
    let mut index = 1;
    for (level, mult) in cfg.mults.iter().enumerate() {
        for _ in 0..cfg.res_blocks {
            let path = vs / index;
            let mut block = Block::default();
            block.layers.push(Layer::Res(ResBlock::new(&path / 0, ch, mult * c, emb, cfg.dropout, cfg.scale_shift)));
            ch = mult * c;
            if cfg.attention.contains(&resolutions[level]) {
                block.layers.push(Layer::Attention(AttentionBlock::new(&path / 1, ch, cfg.heads)));
            }
            blocks.push(block);
            skips.push(ch);
            index += 1;
        }
        if level + 1 != cfg.mults.len() {
            blocks.push(Block { layers: vec![Layer::Down(Downsample::new(vs / index / 0, ch))] });
            skips.push(ch);
            index += 1;
        }
    }
    (blocks, skips, ch)
}

/// ResBlock, attention, ResBlock at the bottom resolution.
pub(crate) fn middle(vs: &nn::Path, ch: i64, emb: Option<i64>, cfg: &UNetConfig) -> Block {
    Block {
        layers: vec![
            Layer::Res(ResBlock::new(vs / 0, ch, ch, emb, cfg.dropout, cfg.scale_shift)),
            Layer::Attention(AttentionBlock::new(vs / 1, ch, cfg.heads)),
            Layer::Res(ResBlock::new(vs / 2, ch, ch, emb, cfg.dropout, cfg.scale_shift)),
        ],
    }
}

impl UNet {
    /// The UNet of a `model` config object for data described by `data` (square images).
    pub fn from_config(root: &nn::Path, config: &serde_json::Value, data: &crate::data::DataMeta) -> Result<Self> {
        let (channels, size) = image_shape(data, "unet")?;
        UNet::new(root, &UNetConfig::from_json(config)?, channels, size)
    }
}

impl super::Denoiser for UNet {
    fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        UNet::forward(self, x, t, y, train)
    }
}

/// (channels, size) of square image data, or an error naming the model.
pub fn image_shape(data: &crate::data::DataMeta, model: &str) -> Result<(i64, i64)> {
    match data.shape.as_slice() {
        [c, h, w] if data.is_images() && h == w => Ok((*c, *h)),
        [_, h, w] if data.is_images() => bail!("a `{model}` needs square images, but the data is {h}×{w}"),
        shape => bail!("a `{model}` needs image data [C, H, W], but the data has items of shape {shape:?}"),
    }
}
