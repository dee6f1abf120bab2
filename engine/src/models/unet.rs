//! The UNet of Ho et al. 2020 with the IDDPM options (Nichol & Dhariwal 2021), laid out as
//! improved-diffusion's `UNetModel` (parameter names included): `time_embed`, optional
//! `label_emb` (classes + 1 rows, the last one the null class of classifier-free
//! guidance), `input_blocks`, `middle_block`, `output_blocks`, `out`.
//!
//! Ho et al.'s CIFAR-10 configuration (channels 128, mults [1,2,2,2], 2 res blocks,
//! attention at 16×16, 3×32×32 input) has 35,746,307 parameters, as in the paper's code
//! and in `bench/unet_reference.py`.

use anyhow::{anyhow, bail, Result};
use difflow_core::unet::ConvNet;
use serde::Serialize;
use tch::nn::{self, Module};
use tch::Tensor;

use super::fused::Norm;
use super::layers::{conv2d, group_norm, AttentionBlock, Block, Downsample, Layer, ResBlock, TimeEmbed, Upsample};

pub use difflow_core::params::model::UNetConfig;

/// One level of a net, for `difflow show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelInfo {
    pub resolution: i64,
    pub channels: i64,
    pub attention: bool,
}

pub fn levels(net: &ConvNet, size: i64) -> Vec<LevelInfo> {
    net.mults
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let resolution = size >> i;
            LevelInfo { resolution, channels: m * net.channels, attention: net.attention.contains(&resolution) }
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
    out_norm: Norm,
    out_conv: nn::Conv2D,
}

impl UNet {
    pub fn new(vs: &nn::Path, config: &UNetConfig, in_channels: i64, size: i64) -> Result<Self> {
        let resolutions = config.net.resolutions("unet", size).map_err(|e| anyhow!(e))?;
        let net = &config.net;
        let classes = config.spec.classes as i64;
        let c = net.channels;
        let emb = 4 * c;
        let time_embed = TimeEmbed::new(vs / "time_embed", c, emb, &net.layout);
        let label_emb =
            (classes > 0).then(|| nn::embedding(vs / "label_emb", classes + 1, emb, nn::EmbeddingConfig::default()));
        let (input_blocks, skips, ch) = down_half(&(vs / "input_blocks"), net, in_channels, &resolutions, Some(emb));
        let middle_block = middle(&(vs / "middle_block"), ch, Some(emb), net);

        let outs = vs / "output_blocks";
        let mut output_blocks = Vec::new();
        let mut skips = skips;
        let mut ch = ch;
        let mut index = 0;
        for (level, mult) in net.mults.iter().enumerate().rev() {
            let res = resolutions[level];
            for i in 0..=net.res_blocks {
                let path = &outs / index;
                let skip = skips.pop().expect("one skip per input block");
                let mut block = Block::default();
                block.layers.push(Layer::Res(ResBlock::new(
                    &path / 0,
                    ch + skip,
                    mult * c,
                    Some(emb),
                    net.dropout,
                    net.scale_shift,
                    &net.layout,
                )));
                ch = mult * c;
                if net.attention.contains(&res) {
                    block.layers.push(Layer::Attention(AttentionBlock::new(&path / 1, ch, net.heads, &net.layout)));
                }
                if level > 0 && i == net.res_blocks {
                    let at = block.layers.len();
                    block.layers.push(Layer::Up(Upsample::new(&path / at, ch)));
                }
                output_blocks.push(block);
                index += 1;
            }
        }
        let out_channels = if config.spec.learn_sigma { 2 * in_channels } else { in_channels };
        Ok(UNet {
            config: config.clone(),
            in_channels,
            size,
            time_embed,
            label_emb,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: group_norm(vs / "out" / 0, ch, &net.layout),
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
                None => Tensor::full([x.size()[0]], self.config.spec.classes as i64, (tch::Kind::Int64, x.device())),
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
        self.out_conv.forward(&self.out_norm.forward(&h, true, train))
    }

    pub fn levels(&self) -> Vec<LevelInfo> {
        levels(&self.config.net, self.size)
    }
}

/// The input conv and the down-sampling levels, shared with the encoder. Returns the
/// blocks, the channel count of each block's output (the UNet's skips) and the channel
/// count at the bottom.
pub(crate) fn down_half(
    vs: &nn::Path,
    cfg: &ConvNet,
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
            let res = ResBlock::new(&path / 0, ch, mult * c, emb, cfg.dropout, cfg.scale_shift, &cfg.layout);
            block.layers.push(Layer::Res(res));
            ch = mult * c;
            if cfg.attention.contains(&resolutions[level]) {
                block.layers.push(Layer::Attention(AttentionBlock::new(&path / 1, ch, cfg.heads, &cfg.layout)));
            }
            blocks.push(block);
            skips.push(ch);
            index += 1;
        }
        if level + 1 != cfg.mults.len() {
            blocks.push(Block { layers: vec![Layer::Down(Downsample::new(vs / index / 0, ch, &cfg.layout))] });
            skips.push(ch);
            index += 1;
        }
    }
    (blocks, skips, ch)
}

/// ResBlock, attention, ResBlock at the bottom resolution.
pub(crate) fn middle(vs: &nn::Path, ch: i64, emb: Option<i64>, cfg: &ConvNet) -> Block {
    Block {
        layers: vec![
            Layer::Res(ResBlock::new(vs / 0, ch, ch, emb, cfg.dropout, cfg.scale_shift, &cfg.layout)),
            Layer::Attention(AttentionBlock::new(vs / 1, ch, cfg.heads, &cfg.layout)),
            Layer::Res(ResBlock::new(vs / 2, ch, ch, emb, cfg.dropout, cfg.scale_shift, &cfg.layout)),
        ],
    }
}

impl UNet {
    /// The UNet of a `model` config object for data described by `data` (square images).
    pub fn from_config(root: &nn::Path, config: &UNetConfig, data: &crate::data::DataMeta) -> Result<Self> {
        let (channels, size) = image_shape(data, "unet")?;
        UNet::new(root, config, channels, size)
    }
}

impl super::Denoiser for UNet {
    fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        UNet::forward(self, x, t, y, train)
    }

    fn draws_in_training(&self) -> bool {
        self.config.net.dropout > 0.0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::fused::with_fused;
    use crate::models::{ModelSpec, Prediction};
    use difflow_core::unet::NetLayout;
    use tch::{Device, Kind};

    fn net(size: i64, attention: Vec<i64>, scale_shift: bool) -> (nn::VarStore, UNet) {
        let net = ConvNet {
            channels: 32,
            mults: vec![1, 2],
            res_blocks: 1,
            attention,
            heads: 2,
            dropout: 0.1,
            scale_shift,
            layout: NetLayout::default(),
        };
        let config = UNetConfig { net, spec: ModelSpec { classes: 3, learn_sigma: true, prediction: Prediction::Eps } };
        let vs = nn::VarStore::new(Device::Cpu);
        let unet = UNet::new(&vs.root(), &config, 1, size).unwrap();
        // IDDPM zero-initialises the output convs: randomise every weight (norms included)
        // so that no block is an identity and the output is not zero.
        tch::manual_seed(11);
        tch::no_grad(|| {
            for (name, mut var) in vs.variables() {
                let fan_in = (var.numel() / var.size()[0] as usize).max(1) as f64;
                let noise = Tensor::randn_like(&var) / fan_in.sqrt();
                let value = if name.ends_with(".weight") && var.dim() == 1 { noise * 0.5 + 1.0 } else { noise };
                var.copy_(&value);
            }
        });
        (vs, unet)
    }

    #[test]
    fn eval_forward_with_fused_norms_equals_atens() {
        for (size, attention, scale_shift) in [(8, vec![4], true), (12, vec![], false)] {
            let (_vs, unet) = net(size, attention, scale_shift);
            tch::manual_seed(5);
            let x = Tensor::randn([3, 1, size, size], (Kind::Float, Device::Cpu));
            let t = Tensor::from_slice(&[1i64, 250, 999]);
            let y = Tensor::from_slice(&[0i64, 2, 3]);
            tch::no_grad(|| {
                let fused = with_fused(true, || unet.forward(&x, &t, Some(&y), false));
                let aten = with_fused(false, || unet.forward(&x, &t, Some(&y), false));
                let spread = aten.abs().max().double_value(&[]);
                assert!(spread > 0.1, "size {size}: the output is not trivial ({spread})");
                let error = (&fused - &aten).abs().max().double_value(&[]) / spread;
                assert!(error < 1e-5, "size {size}, scale-shift {scale_shift}: relative error {error}");
            });
        }
    }
}
