//! The building blocks of the UNet and the encoder, written after improved-diffusion's
//! `unet.py` (Nichol & Dhariwal 2021) with the same parameter names and shapes, so that a
//! checkpoint maps one to one onto the PyTorch reference in `bench/unet_reference.py`.

use difflow_core::unet::NetLayout;
use tch::nn::{self, Module};
use tch::Tensor;

use super::fused::{Embedding, Norm};
use super::timestep_embedding;

/// PyTorch's default initialisation (kaiming-uniform weights with a = √5, uniform biases in
/// ±1/√fan_in): tch initialises conv biases to zero, and we want the same start as the
/// reference.
fn torch_bias(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// A 2-D convolution with PyTorch's initialisation; `zero` initialises weight and bias to
/// zero (the output convs of residual branches and of the whole net, as in IDDPM).
pub fn conv2d(vs: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, zero: bool) -> nn::Conv2D {
    let mut cfg = nn::ConvConfig { stride, padding: k / 2, bs_init: torch_bias(cin * k * k), ..Default::default() };
    if zero {
        cfg.ws_init = nn::Init::Const(0.0);
        cfg.bs_init = nn::Init::Const(0.0);
    }
    nn::conv2d(vs, cin, cout, k, cfg)
}

/// A 1×1 convolution over a flattened sequence (`[B, C, L]`), as the attention's qkv and
/// output projections in improved-diffusion.
pub fn conv1x1(vs: nn::Path, cin: i64, cout: i64, zero: bool) -> nn::Conv1D {
    let mut cfg = nn::ConvConfig { bs_init: torch_bias(cin), ..Default::default() };
    if zero {
        cfg.ws_init = nn::Init::Const(0.0);
        cfg.bs_init = nn::Init::Const(0.0);
    }
    nn::conv1d(vs, cin, cout, 1, cfg)
}

pub fn linear(vs: nn::Path, cin: i64, cout: i64, zero: bool) -> nn::Linear {
    let mut cfg = nn::LinearConfig::default();
    if zero {
        cfg.ws_init = nn::Init::Const(0.0);
        cfg.bs_init = Some(nn::Init::Const(0.0));
    }
    nn::linear(vs, cin, cout, cfg)
}

/// GroupNorm with 32 groups (IDDPM's `normalization`), fewer when the channel count is
/// not a multiple of 32 (small test nets), unless the layout fixes the count and ε.
pub fn group_norm(vs: nn::Path, channels: i64, layout: &NetLayout) -> Norm {
    Norm::new(vs, layout.groups(channels), channels, layout.norm_eps)
}

/// The time-embedding MLP: `time_embed.0` (C → 4C), SiLU, `time_embed.2` (4C → 4C).
#[derive(Debug)]
pub struct TimeEmbed {
    channels: i64,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    lin1: nn::Linear,
    lin2: nn::Linear,
}

impl TimeEmbed {
    pub fn new(vs: nn::Path, channels: i64, emb: i64, layout: &NetLayout) -> Self {
        TimeEmbed {
            channels,
            flip_sin_to_cos: layout.flip_sin_to_cos,
            freq_shift: layout.freq_shift,
            lin1: linear(&vs / 0, channels, emb, false),
            lin2: linear(&vs / 2, emb, emb, false),
        }
    }

    pub fn forward(&self, t: &Tensor) -> Tensor {
        let sinusoids = timestep_embedding(t, self.channels, self.flip_sin_to_cos, self.freq_shift);
        self.lin2.forward(&self.lin1.forward(&sinusoids).silu())
    }
}

/// The residual block: GroupNorm, SiLU, conv; the embedding added (or applied as scale and
/// shift of the second norm: IDDPM's `use_scale_shift_norm`); GroupNorm, SiLU, dropout,
/// zero-initialised conv; a 1×1 skip conv when the channel count changes. `emb = None`
/// for a net without timestep embedding (a clean classifier).
#[derive(Debug)]
pub struct ResBlock {
    in_norm: Norm,
    in_conv: nn::Conv2D,
    emb: Option<nn::Linear>,
    out_norm: Norm,
    out_conv: nn::Conv2D,
    skip: Option<nn::Conv2D>,
    dropout: f64,
    scale_shift: bool,
}

impl ResBlock {
    pub fn new(
        vs: nn::Path,
        cin: i64,
        cout: i64,
        emb: Option<i64>,
        dropout: f64,
        scale_shift: bool,
        layout: &NetLayout,
    ) -> Self {
        let inl = &vs / "in_layers";
        let outl = &vs / "out_layers";
        ResBlock {
            in_norm: group_norm(&inl / 0, cin, layout),
            in_conv: conv2d(&inl / 2, cin, cout, 3, 1, false),
            emb: emb.map(|e| linear(&vs / "emb_layers" / 1, e, if scale_shift { 2 * cout } else { cout }, false)),
            out_norm: group_norm(&outl / 0, cout, layout),
            out_conv: conv2d(&outl / 3, cout, cout, 3, 1, true),
            skip: (cin != cout).then(|| conv2d(&vs / "skip_connection", cin, cout, 1, 1, false)),
            dropout,
            scale_shift,
        }
    }

    pub fn forward(&self, x: &Tensor, emb: Option<&Tensor>, train: bool) -> Tensor {
        let h = self.in_conv.forward(&self.in_norm.forward(x, true, train));
        let e = match (&self.emb, emb) {
            (Some(layer), Some(e)) => Some(layer.forward(&e.silu()).unsqueeze(-1).unsqueeze(-1)),
            _ => None,
        };
        let parts = e.as_ref().filter(|_| self.scale_shift).map(|e| e.chunk(2, 1));
        let joined = match (&parts, &e) {
            (Some(parts), _) => Embedding::ScaleShift(&parts[0], &parts[1]),
            (None, Some(e)) => Embedding::Add(e),
            (None, None) => Embedding::None,
        };
        let h = self.out_norm.forward_with(&h, joined, true, train);
        let h = self.out_conv.forward(&h.dropout(self.dropout, train));
        match &self.skip {
            Some(skip) => skip.forward(x) + h,
            None => x + h,
        }
    }
}

/// Multi-head self-attention over the pixels of a feature map (improved-diffusion's
/// `AttentionBlock` with `QKVAttention`: q·k scaled by 1/√(C/heads), softmax over keys),
/// a zero-initialised output projection and a residual connection.
#[derive(Debug)]
pub struct AttentionBlock {
    norm: Norm,
    qkv: nn::Conv1D,
    proj_out: nn::Conv1D,
    heads: i64,
}

impl AttentionBlock {
    pub fn new(vs: nn::Path, channels: i64, heads: i64, layout: &NetLayout) -> Self {
        AttentionBlock {
            norm: group_norm(&vs / "norm", channels, layout),
            qkv: conv1x1(&vs / "qkv", channels, 3 * channels, false),
            proj_out: conv1x1(&vs / "proj_out", channels, channels, true),
            heads,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, c, h, w) = x.size4().expect("attention wants [B, C, H, W]");
        let flat = x.reshape([b, c, h * w]);
        // improved-diffusion splits heads from the qkv channels as [B·heads, 3·C/heads, L].
        let qkv = self.qkv.forward(&self.norm.forward(&flat, false, train)).reshape([
            b * self.heads,
            3 * c / self.heads,
            h * w,
        ]);
        let parts = qkv.chunk(3, 1);
        // SDPA wants [batch, L, d]; its default scale 1/√d equals the reference's (1/d^¼)².
        let q = parts[0].transpose(1, 2);
        let k = parts[1].transpose(1, 2);
        let v = parts[2].transpose(1, 2);
        let att = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, false);
        let att = att.transpose(1, 2).reshape([b, c, h * w]);
        (flat + self.proj_out.forward(&att)).reshape([b, c, h, w])
    }
}

/// Halving the resolution with a stride-2 3×3 conv (`op`), padded by one on every side or
/// (layout `downsample_padding = 0`) only on the right and bottom.
#[derive(Debug)]
pub struct Downsample {
    op: nn::Conv2D,
    pad_right_bottom: bool,
}

impl Downsample {
    pub fn new(vs: nn::Path, channels: i64, layout: &NetLayout) -> Self {
        let padding = layout.downsample_padding;
        let cfg = nn::ConvConfig { stride: 2, padding, bs_init: torch_bias(channels * 9), ..Default::default() };
        let op = nn::conv2d(&vs / "op", channels, channels, 3, cfg);
        Downsample { op, pad_right_bottom: layout.downsample_padding == 0 }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.pad_right_bottom {
            self.op.forward(&x.constant_pad_nd([0, 1, 0, 1]))
        } else {
            self.op.forward(x)
        }
    }
}

/// Doubling the resolution: nearest-neighbour ×2 then a 3×3 conv (`conv`).
#[derive(Debug)]
pub struct Upsample {
    conv: nn::Conv2D,
}

impl Upsample {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        Upsample { conv: conv2d(&vs / "conv", channels, channels, 3, 1, false) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (_, _, h, w) = x.size4().expect("upsample wants [B, C, H, W]");
        self.conv.forward(&x.upsample_nearest2d([2 * h, 2 * w], None, None))
    }
}

/// One entry of a block list (improved-diffusion's `TimestepEmbedSequential`). Built once
/// per net, so the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Layer {
    Conv(nn::Conv2D),
    Res(ResBlock),
    Attention(AttentionBlock),
    Down(Downsample),
    Up(Upsample),
}

/// A sequence of layers that pass the embedding to the residual blocks.
#[derive(Debug, Default)]
pub struct Block {
    pub layers: Vec<Layer>,
}

impl Block {
    pub fn forward(&self, x: &Tensor, emb: Option<&Tensor>, train: bool) -> Tensor {
        let mut h = self.layers[0].forward(x, emb, train);
        for layer in &self.layers[1..] {
            h = layer.forward(&h, emb, train);
        }
        h
    }
}

impl Layer {
    fn forward(&self, x: &Tensor, emb: Option<&Tensor>, train: bool) -> Tensor {
        match self {
            Layer::Conv(c) => c.forward(x),
            Layer::Res(r) => r.forward(x, emb, train),
            Layer::Attention(a) => a.forward(x, train),
            Layer::Down(d) => d.forward(x),
            Layer::Up(u) => u.forward(x),
        }
    }
}
