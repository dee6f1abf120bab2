//! How big a UNet is before anything builds it: its parameter count, the memory one
//! forward pass of one example takes, and the memory of a schedule's tables. A config from
//! elsewhere (a diffusers folder) is compared with [`SizeLimits`] so that an absurd one is
//! refused by name instead of making libtorch try to allocate terabytes.
//!
//! Sizes are f64: an absurd config's sizes overflow every integer type, and they are only
//! compared with a limit (exact for every count below 2⁵³).

use serde::{Deserialize, Serialize};

use crate::unet::ConvNet;

/// The largest model difflow builds (`max_params`, `max_memory_gib` in `difflow.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeLimits {
    pub max_params: u64,
    /// Bytes.
    pub max_memory: u64,
}

impl SizeLimits {
    /// 2·10⁹ parameters (8 GB of float32 weights): far above any UNet2DModel on the Hub.
    pub const DEFAULT_MAX_PARAMS: u64 = 2_000_000_000;
    /// 32 GiB for the weights, one example's activations and the schedule's tables.
    pub const DEFAULT_MAX_MEMORY_GIB: u64 = 32;
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits { max_params: Self::DEFAULT_MAX_PARAMS, max_memory: Self::DEFAULT_MAX_MEMORY_GIB << 30 }
    }
}

/// Bytes of a float32.
const FLOAT: f64 = 4.0;
/// Float64 tables a schedule of T steps keeps (β, ᾱ, posterior coefficients, …) and their
/// float32 copies on the device, per step.
const SCHEDULE_BYTES_PER_STEP: f64 = 16.0 * 8.0 + 16.0 * 4.0;
/// Feature maps of a block's width a residual block holds at once (input, normalised,
/// convolved, normalised again, output), and an attention block (q, k, v, output, input).
const MAPS_PER_BLOCK: f64 = 5.0;

/// A UNet as built on `in_channels` × `size`² images: the net, its output channels and
/// the rows of its class table (0: unconditional).
#[derive(Debug, Clone, Copy)]
pub struct UNetShape<'a> {
    pub net: &'a ConvNet,
    pub in_channels: i64,
    pub out_channels: i64,
    pub class_rows: i64,
    pub size: i64,
}

/// What [`UNetShape::estimate`] finds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetSize {
    pub params: f64,
    /// Of `params`, the class table's.
    pub class_params: f64,
    /// Bytes of one example's forward pass (batch 1, float32), weights not included.
    pub activation_bytes: f64,
}

impl NetSize {
    /// Weights and activations, in bytes.
    pub fn memory(&self) -> f64 {
        self.params * FLOAT + self.activation_bytes
    }
}

/// Bytes of the tables of a schedule of `steps` steps.
pub fn schedule_bytes(steps: f64) -> f64 {
    steps * SCHEDULE_BYTES_PER_STEP
}

/// `n` in words: `35,746,307`, `1.1e12`, `16 GiB`.
pub fn count_text(n: f64) -> String {
    if n < 1e15 {
        let digits = format!("{}", n as u64);
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else {
        format!("{n:.1e}")
    }
}

/// Bytes in GiB, one decimal.
pub fn gib_text(bytes: f64) -> String {
    let gib = bytes / (1u64 << 30) as f64;
    if gib < 1e6 {
        format!("{gib:.1} GiB")
    } else {
        format!("{gib:.1e} GiB")
    }
}

fn conv(cin: f64, cout: f64, kernel: f64) -> f64 {
    cin * cout * kernel * kernel + cout
}

impl UNetShape<'_> {
    /// Parameters as difflow's `unet` builds them (improved-diffusion's layout) and the
    /// activations a training step of one example keeps. The level's repeated residual
    /// blocks are counted by multiplication, so a huge `res_blocks` costs no time.
    pub fn estimate(&self) -> NetSize {
        let net = self.net;
        let c = net.channels as f64;
        let emb = 4.0 * c;
        let mut walk = Walk { net, emb, params: 0.0, activations: 0.0 };
        let class_params = self.class_rows as f64 * emb;
        walk.params += conv(c, emb, 1.0) + conv(emb, emb, 1.0) + class_params;
        walk.params += conv(self.in_channels as f64, c, 3.0);
        let levels = net.mults.len();
        let resolution = |level: usize| (self.size as f64) / 2f64.powi(level as i32);
        let attends = |level: usize| net.attention.iter().any(|&r| r as f64 == resolution(level));
        let out: Vec<f64> = net.mults.iter().map(|m| *m as f64 * c).collect();
        let blocks = net.res_blocks as f64;
        let mut ch = c;
        for (level, &width) in out.iter().enumerate() {
            let r = resolution(level);
            walk.res_block(ch, width, r, 1.0);
            walk.res_block(width, width, r, blocks - 1.0);
            ch = width;
            if attends(level) {
                walk.attention(ch, r, blocks);
            }
            if level + 1 != levels {
                walk.params += conv(ch, ch, 3.0);
            }
        }
        let bottom = resolution(levels.saturating_sub(1));
        walk.res_block(ch, ch, bottom, 2.0);
        walk.attention(ch, bottom, 1.0);
        // Each up level reads the skips of its own level's blocks, then the one below it
        // (the downsampler's, or the input conv's at the top resolution).
        for level in (0..levels).rev() {
            let r = resolution(level);
            let below = if level > 0 { out[level - 1] } else { c };
            walk.res_block(ch + out[level], out[level], r, 1.0);
            walk.res_block(2.0 * out[level], out[level], r, blocks - 1.0);
            walk.res_block(out[level] + below, out[level], r, 1.0);
            ch = out[level];
            if attends(level) {
                walk.attention(ch, r, blocks + 1.0);
            }
            if level > 0 {
                walk.params += conv(ch, ch, 3.0);
            }
        }
        walk.params += 2.0 * c + conv(c, self.out_channels as f64, 3.0);
        NetSize { params: walk.params, class_params, activation_bytes: walk.activations }
    }
}

struct Walk<'a> {
    net: &'a ConvNet,
    emb: f64,
    params: f64,
    activations: f64,
}

impl Walk<'_> {
    /// `times` residual blocks from `cin` to `cout` channels at `r` × `r` pixels.
    fn res_block(&mut self, cin: f64, cout: f64, r: f64, times: f64) {
        if times <= 0.0 {
            return;
        }
        let emb_out = if self.net.scale_shift { 2.0 * cout } else { cout };
        let mut params = 2.0 * cin + conv(cin, cout, 3.0) + conv(self.emb, emb_out, 1.0) + 2.0 * cout;
        params += conv(cout, cout, 3.0);
        if cin != cout {
            params += conv(cin, cout, 1.0);
        }
        self.params += times * params;
        self.activations += times * FLOAT * MAPS_PER_BLOCK * cin.max(cout) * r * r;
    }

    /// `times` attention blocks over `ch` channels at `r` × `r` pixels.
    fn attention(&mut self, ch: f64, r: f64, times: f64) {
        self.params += times * (2.0 * ch + conv(ch, 3.0 * ch, 1.0) + conv(ch, ch, 1.0));
        // The weights of every head, r² × r², before and after the softmax.
        let pixels = r * r;
        let bytes = FLOAT * (MAPS_PER_BLOCK * ch * pixels + 2.0 * self.net.heads as f64 * pixels * pixels);
        self.activations += times * bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::NetLayout;

    fn net(channels: i64, mults: &[i64], res_blocks: i64, attention: &[i64]) -> ConvNet {
        ConvNet {
            channels,
            mults: mults.to_vec(),
            res_blocks,
            attention: attention.to_vec(),
            heads: 1,
            dropout: 0.0,
            scale_shift: false,
            layout: NetLayout::default(),
        }
    }

    #[test]
    fn ho_et_al_cifar10_net_has_the_papers_parameter_count() {
        let net = net(128, &[1, 2, 2, 2], 2, &[16]);
        let size = UNetShape { net: &net, in_channels: 3, out_channels: 3, class_rows: 0, size: 32 }.estimate();
        assert_eq!(size.params, 35_746_307.0);
        assert_eq!(count_text(size.params), "35,746,307");
        assert!(size.activation_bytes > 1e6 && size.activation_bytes < 1e9, "{}", size.activation_bytes);
    }

    #[test]
    fn ho_et_al_256_pixel_nets_fit_the_default_limits() {
        // google/ddpm-church-256: block_out_channels [128, 128, 256, 256, 512, 512], attention at 16×16.
        let net = net(128, &[1, 1, 2, 2, 4, 4], 2, &[16]);
        let size = UNetShape { net: &net, in_channels: 3, out_channels: 3, class_rows: 0, size: 256 }.estimate();
        assert!(size.params > 100e6 && size.params < 130e6, "{}", size.params);
        let limits = SizeLimits::default();
        assert!(size.params < limits.max_params as f64 && size.memory() < limits.max_memory as f64 / 4.0);
    }

    #[test]
    fn a_class_table_and_scale_shift_add_their_rows() {
        let mut plain = net(32, &[1, 2], 1, &[8]);
        let base = UNetShape { net: &plain, in_channels: 1, out_channels: 1, class_rows: 0, size: 16 }.estimate();
        let classes = UNetShape { net: &plain, in_channels: 1, out_channels: 1, class_rows: 11, size: 16 }.estimate();
        assert_eq!(classes.params - base.params, 11.0 * 128.0);
        assert_eq!(classes.class_params, 11.0 * 128.0);
        plain.scale_shift = true;
        let shifted = UNetShape { net: &plain, in_channels: 1, out_channels: 1, class_rows: 0, size: 16 }.estimate();
        assert!(shifted.params > base.params);
    }

    #[test]
    fn absurd_sizes_are_finite_or_infinite_never_wrapped() {
        let net = net(1_000_000, &[1, 1], 2, &[1 << 40]);
        let size =
            UNetShape { net: &net, in_channels: 3, out_channels: 3, class_rows: 1 << 40, size: 1 << 40 }.estimate();
        assert!(size.params > 1e13 && size.memory() > 1e30);
        assert_eq!(count_text(1.1e13), "11,000,000,000,000");
        assert_eq!(count_text(2e16), "2.0e16");
        assert_eq!(gib_text(16.0 * (1u64 << 30) as f64), "16.0 GiB");
    }
}
