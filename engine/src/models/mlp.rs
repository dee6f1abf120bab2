//! A residual MLP denoiser for vector data (`model … = mlp { hidden, layers }`): the input
//! projected to `hidden` features, `layers` residual blocks each conditioned on the
//! sinusoidal time embedding (plus a class embedding with a null class when `classes` > 0),
//! and an output projection to D values (2·D with `learn_sigma`).

use anyhow::{bail, Result};
use tch::nn::{self, Module};
use tch::Tensor;

use super::{timestep_embedding, Denoiser};
use crate::data::DataMeta;

pub use difflow_core::params::model::MlpConfig;

pub struct Mlp {
    hidden: i64,
    input: nn::Linear,
    time: nn::Sequential,
    class: Option<nn::Embedding>,
    blocks: Vec<Block>,
    out_norm: nn::LayerNorm,
    output: nn::Linear,
}

struct Block {
    norm: nn::LayerNorm,
    emb: nn::Linear,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    pub fn new(root: &nn::Path, config: &MlpConfig, data: &DataMeta) -> Result<Mlp> {
        if data.is_images() || data.shape.len() != 1 {
            bail!("an `mlp` model needs vector data (points), but the data has items of shape {:?}", data.shape);
        }
        let spec = config.spec;
        let hidden = config.hidden as i64;
        let layers = config.layers;
        if hidden == 0 {
            bail!("an `mlp` needs `hidden` ≥ 1");
        }
        let d = data.shape[0];
        let out = if spec.learn_sigma { 2 * d } else { d };
        let lin = nn::LinearConfig::default();
        let time = nn::seq()
            .add(nn::linear(root / "time" / "0", hidden, 2 * hidden, lin))
            .add_fn(|x| x.silu())
            .add(nn::linear(root / "time" / "2", 2 * hidden, 2 * hidden, lin));
        let class = (spec.classes > 0).then(|| {
            nn::embedding(root / "class", spec.classes as i64 + 1, 2 * hidden, nn::EmbeddingConfig::default())
        });
        let blocks = (0..layers)
            .map(|i| {
                let p = root / "blocks" / i;
                Block {
                    norm: nn::layer_norm(&p / "norm", vec![hidden], Default::default()),
                    emb: nn::linear(&p / "emb", 2 * hidden, hidden, lin),
                    fc1: nn::linear(&p / "fc1", hidden, 2 * hidden, lin),
                    fc2: nn::linear(&p / "fc2", 2 * hidden, hidden, lin),
                }
            })
            .collect();
        // A zero-initialised output layer: the untrained model predicts 0, a stable start.
        let output = nn::linear(
            root / "output",
            hidden,
            out,
            nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true },
        );
        Ok(Mlp {
            hidden,
            input: nn::linear(root / "input", d, hidden, lin),
            time,
            class,
            blocks,
            out_norm: nn::layer_norm(root / "out_norm", vec![hidden], Default::default()),
            output,
        })
    }
}

impl Block {
    /// h + fc2(silu(fc1(norm(h) + emb))).
    fn forward(&self, h: &Tensor, emb: &Tensor) -> Tensor {
        let z = self.norm.forward(h) + self.emb.forward(emb);
        h + self.fc2.forward(&self.fc1.forward(&z).silu())
    }
}

impl Denoiser for Mlp {
    fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, _train: bool) -> Tensor {
        let time = self.time.forward(&timestep_embedding(t, self.hidden, true, 0.0));
        let emb = match (&self.class, y) {
            (Some(class), Some(y)) => time + class.forward(y),
            _ => time,
        }
        .silu();
        let h = self.input.forward(&x.to_kind(tch::Kind::Float));
        let h = self.blocks.iter().fold(h, |h, block| block.forward(&h, &emb));
        self.output.forward(&self.out_norm.forward(&h).silu())
    }

    fn draws_in_training(&self) -> bool {
        false
    }
}
