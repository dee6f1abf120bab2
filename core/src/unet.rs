//! The conv net of the UNet family (`model = unet` and `model = encoder`) and the rules its
//! levels must meet on an image size. The checker reports these rules as diagnostics
//! before anything runs; the engine checks them again when it builds the net, with the
//! same words, so the two can never disagree.

use serde::{Deserialize, Serialize};

/// The keys that shape the down path, as the job carries them (`kind`/`variant` ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvNet {
    pub channels: i64,
    pub mults: Vec<i64>,
    pub res_blocks: i64,
    /// Feature-map sizes (e.g. 16 for 16×16) at which blocks get self-attention.
    pub attention: Vec<i64>,
    pub heads: i64,
    pub dropout: f64,
    pub scale_shift: bool,
    /// Conventions that differ between implementations of the same net; never written in a
    /// pipeline (the defaults are improved-diffusion's), set for pretrained diffusers models.
    #[serde(default)]
    pub layout: NetLayout,
}

/// The details in which diffusers' `UNet2DModel` may differ from improved-diffusion's UNet
/// with the same levels (named after the `UNet2DModel` options they stand for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetLayout {
    /// GroupNorm ε.
    pub norm_eps: f64,
    /// One group count for every GroupNorm; unset: 32, halved until it divides the channels.
    pub norm_groups: Option<i64>,
    /// Stride-2 downsampling conv padding: 1 on every side, or 0 after padding the right and
    /// bottom edges by one (TensorFlow's "SAME", as Ho et al.'s checkpoints have it).
    pub downsample_padding: i64,
    /// Timestep embedding [cos, sin] (true) or [sin, cos].
    pub flip_sin_to_cos: bool,
    /// Frequencies exp(−ln(10000)·i / (half − freq_shift)).
    pub freq_shift: f64,
}

impl Default for NetLayout {
    fn default() -> Self {
        NetLayout { norm_eps: 1e-5, norm_groups: None, downsample_padding: 1, flip_sin_to_cos: true, freq_shift: 0.0 }
    }
}

impl NetLayout {
    /// The GroupNorm group count for `channels` channels.
    pub fn groups(&self, channels: i64) -> i64 {
        if let Some(g) = self.norm_groups {
            return g;
        }
        let mut groups = 32;
        while channels % groups != 0 {
            groups /= 2;
        }
        groups
    }
}

/// A broken rule, in the order the checker reports them.
#[derive(Debug, Clone, PartialEq)]
pub enum NetProblem {
    /// `mults` is empty.
    NoLevels,
    /// The levels halve the image more often than its size allows.
    Indivisible {
        levels: u32,
        size: i64,
        divisor: i64,
        /// The most levels this size allows.
        fitting: u32,
    },
    /// Attention splits `width` channels into `heads` parts at `place`.
    Heads { heads: i64, width: i64, place: String },
    /// Attention asked at a resolution the net never has.
    AttentionResolution { resolution: i64, resolutions: Vec<i64> },
}

impl NetProblem {
    /// The one-line message; `variant` is `unet` or `encoder`.
    pub fn message(&self, variant: &str) -> String {
        match self {
            NetProblem::NoLevels => "`mults` needs at least one level".into(),
            NetProblem::Indivisible { levels, size, divisor, .. } => format!(
                "a {levels}-level {variant} halves the image {} times, but {size}-pixel images are not divisible by {divisor}",
                levels - 1
            ),
            NetProblem::Heads { heads, width, place } => {
                format!("{heads} attention heads cannot split the {width} channels of {place}")
            }
            NetProblem::AttentionResolution { resolution: r, resolutions } => format!(
                "attention at {r}×{r}, but this {variant} on {size}×{size} data only has resolutions {}",
                shown(resolutions),
                size = resolutions.first().copied().unwrap_or(0)
            ),
        }
    }

    /// What to change.
    pub fn help(&self) -> String {
        match self {
            NetProblem::NoLevels => "write one multiplier per resolution, e.g. `mults = [1, 2, 2]`".into(),
            NetProblem::Indivisible { divisor, fitting, .. } => format!(
                "use at most {fitting} levels in `mults` (e.g. {}), or resize the data to a multiple of {divisor}",
                example_mults(*fitting)
            ),
            NetProblem::Heads { .. } => {
                "choose `heads` dividing channels × every multiplier at attention levels (e.g. 1, 2 or 4)".into()
            }
            NetProblem::AttentionResolution { resolutions, .. } => {
                format!("pick attention resolutions among {}", shown(resolutions))
            }
        }
    }
}

fn shown(resolutions: &[i64]) -> String {
    resolutions.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
}

fn example_mults(levels: u32) -> String {
    let v: Vec<&str> = (0..levels).map(|i| if i == 0 { "1" } else { "2" }).collect();
    format!("[{}]", v.join(", "))
}

/// Every broken rule of a net with `mults` levels on `size`-pixel images. `channels` and
/// `heads` may be unknown (a key the checker already reported), which skips the heads rule.
/// The first two problems end the check: without levels that fit there are no resolutions.
pub fn net_problems(
    channels: Option<i64>,
    heads: Option<i64>,
    mults: &[i64],
    attention: &[i64],
    size: i64,
) -> Vec<NetProblem> {
    let levels = mults.len() as u32;
    if levels == 0 {
        return vec![NetProblem::NoLevels];
    }
    let divisor = 1i64 << (levels - 1).min(40);
    if size % divisor != 0 {
        let mut fitting = 1;
        while fitting < levels && size % (1i64 << fitting) == 0 {
            fitting += 1;
        }
        return vec![NetProblem::Indivisible { levels, size, divisor, fitting }];
    }
    let resolutions: Vec<i64> = (0..levels).map(|i| size >> i).collect();
    let mut problems = Vec::new();
    if let (Some(channels), Some(heads)) = (channels, heads) {
        problems.extend(heads_problem(channels, heads, mults, attention, &resolutions));
    }
    for &r in attention {
        if !resolutions.contains(&r) {
            problems.push(NetProblem::AttentionResolution { resolution: r, resolutions: resolutions.clone() });
        }
    }
    problems
}

/// Attention splits a level's channels into `heads` equal parts, at every attention
/// resolution and in the middle block (which always attends).
fn heads_problem(
    channels: i64,
    heads: i64,
    mults: &[i64],
    attention: &[i64],
    resolutions: &[i64],
) -> Option<NetProblem> {
    if heads <= 0 {
        return None;
    }
    let mut widths: Vec<(String, i64)> = Vec::new();
    for (i, r) in resolutions.iter().enumerate() {
        if attention.contains(r) {
            widths.push((format!("the {r}×{r} level"), channels * mults.get(i).copied().unwrap_or(1)));
        }
    }
    if let Some(last) = mults.last() {
        widths.push(("the middle block".to_string(), channels * last));
    }
    widths.into_iter().find(|(_, w)| w % heads != 0).map(|(place, width)| NetProblem::Heads { heads, width, place })
}

impl ConvNet {
    /// The feature-map size of each level on `size`-pixel images, or the first broken rule
    /// as the checker words it (`variant`: `unet` or `encoder`).
    pub fn resolutions(&self, variant: &str, size: i64) -> Result<Vec<i64>, String> {
        if self.channels <= 0 || self.res_blocks <= 0 || self.heads <= 0 || self.mults.iter().any(|&m| m <= 0) {
            return Err(format!(
                "{variant}: `channels`, `res_blocks`, `heads` and every `mults` entry must be positive \
                 (got {}, {}, {} and {:?})",
                self.channels, self.res_blocks, self.heads, self.mults
            ));
        }
        let problems = net_problems(Some(self.channels), Some(self.heads), &self.mults, &self.attention, size);
        match problems.first() {
            Some(p) => Err(format!("{}; {}", p.message(variant), p.help())),
            None => Ok((0..self.mults.len() as u32).map(|i| size >> i).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(mults: &[i64], attention: &[i64], heads: i64) -> ConvNet {
        ConvNet {
            channels: 32,
            mults: mults.to_vec(),
            res_blocks: 1,
            attention: attention.to_vec(),
            heads,
            dropout: 0.0,
            scale_shift: false,
            layout: NetLayout::default(),
        }
    }

    #[test]
    fn a_fitting_net_has_one_resolution_per_level() {
        assert_eq!(net(&[1, 2, 2], &[14], 4).resolutions("unet", 28), Ok(vec![28, 14, 7]));
    }

    #[test]
    fn levels_that_cannot_halve_the_size_name_the_levels_that_fit() {
        let problems = net_problems(Some(32), Some(1), &[1, 2, 2, 2], &[], 28);
        assert_eq!(problems, vec![NetProblem::Indivisible { levels: 4, size: 28, divisor: 8, fitting: 3 }]);
        assert!(problems[0].help().contains("at most 3 levels in `mults` (e.g. [1, 2, 2])"));
    }

    #[test]
    fn heads_must_divide_the_attention_levels_and_the_middle_block_only() {
        // 3 heads divide 96 (the middle block, 32 × 3) but not 64 at the 14×14 level.
        let problems = net_problems(Some(32), Some(3), &[1, 2, 3], &[14], 28);
        assert_eq!(problems, vec![NetProblem::Heads { heads: 3, width: 64, place: "the 14×14 level".into() }]);
        // Without attention at 14×14 only the middle block attends.
        assert!(net_problems(Some(32), Some(3), &[1, 2, 3], &[], 28).is_empty());
    }

    #[test]
    fn attention_at_a_missing_resolution_lists_the_ones_there_are() {
        let err = net(&[1, 2], &[16], 1).resolutions("encoder", 28).unwrap_err();
        assert_eq!(
            err,
            "attention at 16×16, but this encoder on 28×28 data only has resolutions 28, 14; \
             pick attention resolutions among 28, 14"
        );
    }

    #[test]
    fn an_empty_net_is_refused() {
        assert_eq!(net_problems(None, None, &[], &[], 32), vec![NetProblem::NoLevels]);
        assert!(net(&[1, 0], &[], 1).resolutions("unet", 32).is_err());
    }
}
