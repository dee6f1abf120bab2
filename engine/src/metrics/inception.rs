//! InceptionV3, the FID variant (the network of TTUR's FID code, ported to PyTorch as
//! `pt_inception-2015-12-05` by pytorch-fid), with the parameter names and shapes of that
//! state dict, so the published file loads as is (`.pth` from `torch.save`, or `.safetensors`).
//!
//! Differences from torchvision's InceptionV3, as in pytorch-fid's FIDInception blocks: the
//! pool branch of the A, C and first E blocks averages without counting the zero padding,
//! and the last E block max-pools there. Inference only: every conv's BatchNorm
//! (eps 0.001) is folded into the conv's weight and bias at load.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// The published file, its source, and the sizes it fixes.
pub const WEIGHTS_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";
pub const WEIGHTS_URL: &str =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";
pub const POOL3_DIM: i64 = 2048;
pub const LOGIT_COUNT: i64 = 1008;
/// Learnable parameters (convs, BN affine, fc), as `sum(p.numel() for p in net.parameters())`.
pub const PARAMETER_COUNT: i64 = 23_850_960;
pub const INPUT_SIZE: i64 = 299;
const BN_EPS: f64 = 0.001;

/// Arithmetic of the forward pass. `Bf16` is for CUDA throughput; its 8-bit mantissa costs
/// real accuracy in this 94-conv network (with the seeded test weights the features keep a
/// cosine similarity above 0.98 but single values move by up to 30 % of the largest), so
/// the metrics stages use `F32`, which reproduces PyTorch to ~1e-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// One `BasicConv2d` (conv without bias, BN, ReLU) of the layout.
#[derive(Debug, Clone)]
struct ConvSpec {
    name: String,
    cin: i64,
    cout: i64,
    kernel: [i64; 2],
    stride: [i64; 2],
    padding: [i64; 2],
}

fn spec(name: String, cin: i64, cout: i64, kernel: [i64; 2], stride: i64, padding: [i64; 2]) -> ConvSpec {
    ConvSpec { name, cin, cout, kernel, stride: [stride, stride], padding }
}

/// Every conv of the network, in order.
fn layout() -> Vec<ConvSpec> {
    let mut convs = vec![
        spec("Conv2d_1a_3x3".into(), 3, 32, [3, 3], 2, [0, 0]),
        spec("Conv2d_2a_3x3".into(), 32, 32, [3, 3], 1, [0, 0]),
        spec("Conv2d_2b_3x3".into(), 32, 64, [3, 3], 1, [1, 1]),
        spec("Conv2d_3b_1x1".into(), 64, 80, [1, 1], 1, [0, 0]),
        spec("Conv2d_4a_3x3".into(), 80, 192, [3, 3], 1, [0, 0]),
    ];
    let block_a = |convs: &mut Vec<ConvSpec>, p: &str, cin: i64, pool: i64| {
        let n = |s: &str| format!("{p}.{s}");
        convs.extend([
            spec(n("branch1x1"), cin, 64, [1, 1], 1, [0, 0]),
            spec(n("branch5x5_1"), cin, 48, [1, 1], 1, [0, 0]),
            spec(n("branch5x5_2"), 48, 64, [5, 5], 1, [2, 2]),
            spec(n("branch3x3dbl_1"), cin, 64, [1, 1], 1, [0, 0]),
            spec(n("branch3x3dbl_2"), 64, 96, [3, 3], 1, [1, 1]),
            spec(n("branch3x3dbl_3"), 96, 96, [3, 3], 1, [1, 1]),
            spec(n("branch_pool"), cin, pool, [1, 1], 1, [0, 0]),
        ]);
    };
    block_a(&mut convs, "Mixed_5b", 192, 32);
    block_a(&mut convs, "Mixed_5c", 256, 64);
    block_a(&mut convs, "Mixed_5d", 288, 64);
    convs.extend([
        spec("Mixed_6a.branch3x3".into(), 288, 384, [3, 3], 2, [0, 0]),
        spec("Mixed_6a.branch3x3dbl_1".into(), 288, 64, [1, 1], 1, [0, 0]),
        spec("Mixed_6a.branch3x3dbl_2".into(), 64, 96, [3, 3], 1, [1, 1]),
        spec("Mixed_6a.branch3x3dbl_3".into(), 96, 96, [3, 3], 2, [0, 0]),
    ]);
    let block_c = |convs: &mut Vec<ConvSpec>, p: &str, c7: i64| {
        let n = |s: &str| format!("{p}.{s}");
        convs.extend([
            spec(n("branch1x1"), 768, 192, [1, 1], 1, [0, 0]),
            spec(n("branch7x7_1"), 768, c7, [1, 1], 1, [0, 0]),
            spec(n("branch7x7_2"), c7, c7, [1, 7], 1, [0, 3]),
            spec(n("branch7x7_3"), c7, 192, [7, 1], 1, [3, 0]),
            spec(n("branch7x7dbl_1"), 768, c7, [1, 1], 1, [0, 0]),
            spec(n("branch7x7dbl_2"), c7, c7, [7, 1], 1, [3, 0]),
            spec(n("branch7x7dbl_3"), c7, c7, [1, 7], 1, [0, 3]),
            spec(n("branch7x7dbl_4"), c7, c7, [7, 1], 1, [3, 0]),
            spec(n("branch7x7dbl_5"), c7, 192, [1, 7], 1, [0, 3]),
            spec(n("branch_pool"), 768, 192, [1, 1], 1, [0, 0]),
        ]);
    };
    block_c(&mut convs, "Mixed_6b", 128);
    block_c(&mut convs, "Mixed_6c", 160);
    block_c(&mut convs, "Mixed_6d", 160);
    block_c(&mut convs, "Mixed_6e", 192);
    convs.extend([
        spec("Mixed_7a.branch3x3_1".into(), 768, 192, [1, 1], 1, [0, 0]),
        spec("Mixed_7a.branch3x3_2".into(), 192, 320, [3, 3], 2, [0, 0]),
        spec("Mixed_7a.branch7x7x3_1".into(), 768, 192, [1, 1], 1, [0, 0]),
        spec("Mixed_7a.branch7x7x3_2".into(), 192, 192, [1, 7], 1, [0, 3]),
        spec("Mixed_7a.branch7x7x3_3".into(), 192, 192, [7, 1], 1, [3, 0]),
        spec("Mixed_7a.branch7x7x3_4".into(), 192, 192, [3, 3], 2, [0, 0]),
    ]);
    let block_e = |convs: &mut Vec<ConvSpec>, p: &str, cin: i64| {
        let n = |s: &str| format!("{p}.{s}");
        convs.extend([
            spec(n("branch1x1"), cin, 320, [1, 1], 1, [0, 0]),
            spec(n("branch3x3_1"), cin, 384, [1, 1], 1, [0, 0]),
            spec(n("branch3x3_2a"), 384, 384, [1, 3], 1, [0, 1]),
            spec(n("branch3x3_2b"), 384, 384, [3, 1], 1, [1, 0]),
            spec(n("branch3x3dbl_1"), cin, 448, [1, 1], 1, [0, 0]),
            spec(n("branch3x3dbl_2"), 448, 384, [3, 3], 1, [1, 1]),
            spec(n("branch3x3dbl_3a"), 384, 384, [1, 3], 1, [0, 1]),
            spec(n("branch3x3dbl_3b"), 384, 384, [3, 1], 1, [1, 0]),
            spec(n("branch_pool"), cin, 192, [1, 1], 1, [0, 0]),
        ]);
    };
    block_e(&mut convs, "Mixed_7b", 1280);
    block_e(&mut convs, "Mixed_7c", 2048);
    convs
}

/// Every entry of the `pt_inception-2015-12-05` state dict with its shape.
pub fn expected_state_dict() -> BTreeMap<String, Vec<i64>> {
    let mut entries = BTreeMap::new();
    for c in layout() {
        entries.insert(format!("{}.conv.weight", c.name), vec![c.cout, c.cin, c.kernel[0], c.kernel[1]]);
        for stat in ["weight", "bias", "running_mean", "running_var"] {
            entries.insert(format!("{}.bn.{stat}", c.name), vec![c.cout]);
        }
    }
    entries.insert("fc.weight".into(), vec![LOGIT_COUNT, POOL3_DIM]);
    entries.insert("fc.bias".into(), vec![LOGIT_COUNT]);
    entries
}

/// Learnable parameters of the layout (running statistics are buffers, not parameters).
pub fn layout_parameter_count() -> i64 {
    expected_state_dict()
        .iter()
        .filter(|(name, _)| !name.ends_with("running_mean") && !name.ends_with("running_var"))
        .map(|(_, shape)| shape.iter().product::<i64>())
        .sum()
}

/// A conv with its BatchNorm folded in.
struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    stride: [i64; 2],
    padding: [i64; 2],
}

/// The network, ready for inference on one device.
pub struct InceptionV3 {
    convs: HashMap<String, FoldedConv>,
    /// `fc.weight` [1008, 2048] in f32: the bias-free logits for IS are `pool3 · fcᵀ`.
    fc_weight: Tensor,
    device: Device,
    precision: Precision,
}

/// Pool3 features and bias-free logits of a set of images, float32 on the CPU.
pub struct InceptionOutput {
    /// [N, 2048]
    pub pool3: Tensor,
    /// [N, 1008], without the fc bias (torch-fidelity's `logits_unbiased`).
    pub logits: Tensor,
}

/// The error for a weights file that is not there: what it is, where it comes from, where to put it.
pub fn missing_weights_message(tried: Option<&Path>) -> String {
    let place = match tried {
        Some(p) => format!("no file at {} (tried because of `inception_weights`)", p.display()),
        None => "no `inception_weights` path is set (neither in the metrics stage nor in difflow.toml)".to_string(),
    };
    format!(
        "the FID InceptionV3 weights are missing: {place}. FID, IS, KID and precision/recall with \
         `features = \"inception\"` need `{WEIGHTS_FILE}`, the `pt_inception-2015-12-05` state dict published \
         with pytorch-fid ({WEIGHTS_URL}). Download it where there is network access, copy it to this machine, \
         and point `inception_weights = \"path/to/{WEIGHTS_FILE}\"` in difflow.toml (beside the pipeline) or in \
         the metrics stage at it. A `.safetensors` conversion of the same state dict works too."
    )
}

/// Reads a state dict from `.safetensors` or a `torch.save` file (`.pth`, `.pt`, `.bin`).
pub fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        bail!(missing_weights_message(Some(path)));
    }
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    if is_safetensors {
        Tensor::read_safetensors(path).with_context(|| format!("cannot read the safetensors file {}", path.display()))
    } else {
        super::torch_file::load_state_dict(path)
    }
}

impl InceptionV3 {
    /// Loads the weights at `path` (checked against the exact layout) onto `device`.
    pub fn load(path: &Path, device: Device, precision: Precision) -> Result<InceptionV3> {
        let tensors = read_weights(path)?;
        Self::from_state_dict(tensors, device, precision)
            .with_context(|| format!("{} is not the `pt_inception-2015-12-05` state dict", path.display()))
    }

    /// Builds the network from named tensors; every expected entry must be present with its
    /// exact shape, and nothing else (BatchNorm's `num_batches_tracked` counters aside).
    pub fn from_state_dict(
        tensors: Vec<(String, Tensor)>,
        device: Device,
        precision: Precision,
    ) -> Result<InceptionV3> {
        let expected = expected_state_dict();
        let mut dict: HashMap<String, Tensor> = HashMap::new();
        let mut unexpected = Vec::new();
        for (name, t) in tensors {
            if expected.contains_key(&name) {
                dict.insert(name, t);
            } else if !name.ends_with(".num_batches_tracked") {
                unexpected.push(name);
            }
        }
        let missing: Vec<&String> = expected.keys().filter(|k| !dict.contains_key(*k)).collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            bail!(
                "{} expected entries missing (e.g. {:?}), {} unexpected entries (e.g. {:?})",
                missing.len(),
                missing.iter().take(4).collect::<Vec<_>>(),
                unexpected.len(),
                unexpected.iter().take(4).collect::<Vec<_>>()
            );
        }
        for (name, shape) in &expected {
            let got = dict[name].size();
            if &got != shape {
                bail!("`{name}` has shape {got:?}, expected {shape:?}");
            }
        }
        let kind = precision.kind();
        let take = |name: &str| -> Tensor { dict[name].to_kind(Kind::Double) };
        let convs = tch::no_grad(|| {
            layout()
                .into_iter()
                .map(|c| {
                    let p = &c.name;
                    let scale =
                        take(&format!("{p}.bn.weight")) / (take(&format!("{p}.bn.running_var")) + BN_EPS).sqrt();
                    let weight = take(&format!("{p}.conv.weight")) * scale.view([-1, 1, 1, 1]);
                    let bias = take(&format!("{p}.bn.bias")) - take(&format!("{p}.bn.running_mean")) * &scale;
                    let folded = FoldedConv {
                        weight: weight.to_kind(kind).to_device(device),
                        bias: bias.to_kind(kind).to_device(device),
                        stride: c.stride,
                        padding: c.padding,
                    };
                    (c.name, folded)
                })
                .collect()
        });
        let fc_weight = dict["fc.weight"].to_kind(Kind::Float).to_device(device);
        Ok(InceptionV3 { convs, fc_weight, device, precision })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    fn conv(&self, block: &str, name: &str, x: &Tensor) -> Tensor {
        let key = if block.is_empty() { name.to_string() } else { format!("{block}.{name}") };
        let c = &self.convs[&key];
        x.conv2d(&c.weight, Some(&c.bias), c.stride, c.padding, [1, 1], 1).relu()
    }

    fn chain(&self, block: &str, names: &[&str], x: &Tensor) -> Tensor {
        let mut y = self.conv(block, names[0], x);
        for name in &names[1..] {
            y = self.conv(block, name, &y);
        }
        y
    }

    fn avg_pool_same(x: &Tensor) -> Tensor {
        // TensorFlow's average pool does not count the zero padding.
        x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>)
    }

    fn block_a(&self, p: &str, x: &Tensor) -> Tensor {
        let b1 = self.conv(p, "branch1x1", x);
        let b5 = self.chain(p, &["branch5x5_1", "branch5x5_2"], x);
        let b3 = self.chain(p, &["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], x);
        let bp = self.conv(p, "branch_pool", &Self::avg_pool_same(x));
        Tensor::cat(&[b1, b5, b3, bp], 1)
    }

    fn block_b(&self, p: &str, x: &Tensor) -> Tensor {
        let b3 = self.conv(p, "branch3x3", x);
        let bd = self.chain(p, &["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], x);
        let bp = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        Tensor::cat(&[b3, bd, bp], 1)
    }

    fn block_c(&self, p: &str, x: &Tensor) -> Tensor {
        let b1 = self.conv(p, "branch1x1", x);
        let b7 = self.chain(p, &["branch7x7_1", "branch7x7_2", "branch7x7_3"], x);
        let bd = self.chain(
            p,
            &["branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"],
            x,
        );
        let bp = self.conv(p, "branch_pool", &Self::avg_pool_same(x));
        Tensor::cat(&[b1, b7, bd, bp], 1)
    }

    fn block_d(&self, p: &str, x: &Tensor) -> Tensor {
        let b3 = self.chain(p, &["branch3x3_1", "branch3x3_2"], x);
        let b7 = self.chain(p, &["branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"], x);
        let bp = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        Tensor::cat(&[b3, b7, bp], 1)
    }

    fn block_e(&self, p: &str, x: &Tensor, max_pool: bool) -> Tensor {
        let b1 = self.conv(p, "branch1x1", x);
        let b3 = self.conv(p, "branch3x3_1", x);
        let b3 = Tensor::cat(&[self.conv(p, "branch3x3_2a", &b3), self.conv(p, "branch3x3_2b", &b3)], 1);
        let bd = self.chain(p, &["branch3x3dbl_1", "branch3x3dbl_2"], x);
        let bd = Tensor::cat(&[self.conv(p, "branch3x3dbl_3a", &bd), self.conv(p, "branch3x3dbl_3b", &bd)], 1);
        let pooled = if max_pool {
            // The FID network's last block max-pools here (pytorch-fid's FIDInceptionE_2).
            x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false)
        } else {
            Self::avg_pool_same(x)
        };
        let bp = self.conv(p, "branch_pool", &pooled);
        Tensor::cat(&[b1, b3, bd, bp], 1)
    }

    /// Float images in [-1, 1], [N, 3, 299, 299] on the device → pool3 [N, 2048] (f32).
    pub fn pool3(&self, x: &Tensor) -> Tensor {
        let x = x.to_kind(self.precision.kind());
        let x = self.chain("", &["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"], &x);
        let x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        let x = self.chain("", &["Conv2d_3b_1x1", "Conv2d_4a_3x3"], &x);
        let mut x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        for p in ["Mixed_5b", "Mixed_5c", "Mixed_5d"] {
            x = self.block_a(p, &x);
        }
        x = self.block_b("Mixed_6a", &x);
        for p in ["Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"] {
            x = self.block_c(p, &x);
        }
        x = self.block_d("Mixed_7a", &x);
        x = self.block_e("Mixed_7b", &x, false);
        x = self.block_e("Mixed_7c", &x, true);
        x.to_kind(Kind::Float).mean_dim([2i64, 3].as_slice(), false, Kind::Float)
    }

    /// Bias-free logits [N, 1008] of pool3 features [N, 2048].
    pub fn logits(&self, pool3: &Tensor) -> Tensor {
        pool3.to_kind(Kind::Float).to_device(self.device).matmul(&self.fc_weight.tr())
    }

    /// Features and logits of uint8 images [N, C, H, W] (C = 1 or 3, any size), in batches
    /// of `batch`; `progress(done)` after each batch.
    pub fn extract(&self, images: &Tensor, batch: usize, mut progress: impl FnMut(usize)) -> Result<InceptionOutput> {
        let size = images.size();
        if size.len() != 4 || !(size[1] == 1 || size[1] == 3) {
            bail!("InceptionV3 features need images [N, 1 or 3, H, W], got a tensor of shape {size:?}");
        }
        let n = size[0];
        let batch = batch.max(1) as i64;
        let mut pools = Vec::new();
        let mut logits = Vec::new();
        tch::no_grad(|| -> Result<()> {
            let mut start = 0;
            while start < n {
                let len = batch.min(n - start);
                let x = preprocess(&images.narrow(0, start, len), self.device)?;
                let pool = self.pool3(&x);
                logits.push(self.logits(&pool).to_device(Device::Cpu));
                pools.push(pool.to_device(Device::Cpu));
                start += len;
                progress(start as usize);
            }
            Ok(())
        })?;
        if pools.is_empty() {
            return Ok(InceptionOutput {
                pool3: Tensor::zeros([0, POOL3_DIM], (Kind::Float, Device::Cpu)),
                logits: Tensor::zeros([0, LOGIT_COUNT], (Kind::Float, Device::Cpu)),
            });
        }
        Ok(InceptionOutput { pool3: Tensor::cat(&pools, 0), logits: Tensor::cat(&logits, 0) })
    }
}

/// uint8 [N, C, H, W] (C = 1 or 3) → float [N, 3, 299, 299] in [-1, 1] on `device`:
/// x/255, gray repeated to 3 channels, bilinear resize (align_corners = false), 2x − 1.
pub fn preprocess(images: &Tensor, device: Device) -> Result<Tensor> {
    let size = images.size();
    if images.kind() != Kind::Uint8 {
        return Err(anyhow!("InceptionV3 expects uint8 images, got {:?}", images.kind()));
    }
    let x = images.to_device(device).to_kind(Kind::Float) / 255.0;
    let x = if size[1] == 1 { x.repeat([1, 3, 1, 1]) } else { x };
    let x = x.upsample_bilinear2d([INPUT_SIZE, INPUT_SIZE], false, None::<f64>, None::<f64>);
    Ok(x * 2.0 - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_the_published_parameter_count() {
        assert_eq!(layout_parameter_count(), PARAMETER_COUNT);
        // 94 convs × (weight + 4 BN entries) + fc weight and bias.
        assert_eq!(expected_state_dict().len(), 94 * 5 + 2);
    }
}
