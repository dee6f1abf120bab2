//! diffusers model folders: where their files are, how their configs map onto difflow's
//! `unet` and schedule ([`config`]), and which diffusers module each difflow module is.
//! Both the checker (before anything runs) and the worker (which moves the tensors) use it.

pub mod config;
pub mod limits;

use std::path::{Path, PathBuf};

use crate::files::{self, Purpose};
use crate::net_size::SizeLimits;
use crate::unet::ConvNet;
pub use config::{ConfigError, PretrainedNet, PretrainedProcess, SchedulerConfig, UNet2DConfig};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
pub const SCHEDULER_FILE: &str = "scheduler_config.json";
pub const MODEL_INDEX_FILE: &str = "model_index.json";

/// The three files difflow reads from a diffusers folder: a pipeline folder
/// (`model_index.json`, `unet/`, `scheduler/`) or a model folder with the scheduler config
/// beside the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The folder the others are in (messages name files relative to it).
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: PathBuf,
    pub scheduler: PathBuf,
}

/// The files of the folder `dir`, or what is missing (message, help; files named relative
/// to `dir`, which the caller shows).
pub fn locate(dir: &Path) -> Result<ModelFiles, ConfigError> {
    let err = |message: String, help: &str| ConfigError { message, help: help.into() };
    if !dir.is_dir() {
        return Err(err(
            "the folder does not exist".into(),
            "point `path` at a folder saved by diffusers' `save_pretrained` (relative to the pipeline's folder)",
        ));
    }
    let unet = if dir.join("unet").join(CONFIG_FILE).is_file() { dir.join("unet") } else { dir.to_path_buf() };
    let config = unet.join(CONFIG_FILE);
    if !config.is_file() {
        return Err(err(
            format!("the folder has neither {CONFIG_FILE} nor unet/{CONFIG_FILE}"),
            "save the model with `UNet2DModel.save_pretrained(DIR)` or the pipeline with `save_pretrained(DIR)`",
        ));
    }
    let weights = unet.join(WEIGHTS_FILE);
    if !weights.is_file() {
        let help = if unet.join("diffusion_pytorch_model.bin").is_file() {
            "difflow reads safetensors only: save again with `save_pretrained(DIR, safe_serialization=True)`"
        } else {
            "save the model with `save_pretrained` (it writes the weights beside config.json)"
        };
        return Err(err(format!("{} is missing", relative(&weights, dir)), help));
    }
    let candidates = [dir.join("scheduler").join(SCHEDULER_FILE), dir.join(SCHEDULER_FILE), unet.join(SCHEDULER_FILE)];
    let Some(scheduler) = candidates.iter().find(|p| p.is_file()).cloned() else {
        return Err(err(
            format!("the folder has no scheduler config (scheduler/{SCHEDULER_FILE} or {SCHEDULER_FILE})"),
            "save the noise schedule beside the model, e.g. `DDPMScheduler(...).save_pretrained(DIR)`",
        ));
    };
    Ok(ModelFiles { dir: dir.to_path_buf(), config, weights, scheduler })
}

fn relative(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// Everything difflow learns from a folder's two configs.
#[derive(Debug, Clone, PartialEq)]
pub struct Pretrained {
    pub net: PretrainedNet,
    pub process: PretrainedProcess,
}

/// Reads and maps both configs of a located folder; a model or schedule beyond `limits`
/// is refused naming the option that makes it so.
pub fn read(files: &ModelFiles, limits: &SizeLimits) -> Result<Pretrained, ConfigError> {
    let text = |p: &Path| {
        files::read_text(p, Purpose::Config).map_err(|e| ConfigError {
            message: format!("cannot read {}: {e}", relative(p, &files.dir)),
            help: "a diffusers config is a small JSON file".into(),
        })
    };
    let net = UNet2DConfig::parse(&text(&files.config)?)
        .and_then(|c| c.to_difflow())
        .and_then(|net| limits::check_net_size(&net, limits).map(|()| net))
        .map_err(|e| in_file(e, &relative(&files.config, &files.dir)))?;
    let process = SchedulerConfig::parse(&text(&files.scheduler)?)
        .and_then(|c| c.to_difflow(limits))
        .map_err(|e| in_file(e, &relative(&files.scheduler, &files.dir)))?;
    Ok(Pretrained { net, process })
}

fn in_file(e: ConfigError, file: &str) -> ConfigError {
    ConfigError { message: format!("{file}: {}", e.message), help: e.help }
}

/// How a difflow tensor becomes diffusers' (and back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The same tensor under another name.
    Same,
    /// A 1×1 `Conv1d` weight [O, I, 1] and a `Linear` weight [O, I].
    Squeeze,
    /// improved-diffusion's fused `qkv` (rows per head: q, k, v) and diffusers' `to_q`,
    /// `to_k`, `to_v` (rows per head within each).
    Qkv { heads: i64 },
}

/// One module: its difflow prefix, its diffusers prefix, and how its tensors move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMap {
    pub difflow: String,
    pub diffusers: String,
    pub transform: Transform,
}

/// Older diffusers checkpoints (such as google/ddpm-cifar10-32) name the attention's parts
/// `query`, `key`, `value` and `proj_attn`; diffusers renames them on load, and so does difflow.
pub const LEGACY_ATTENTION_NAMES: [(&str, &str); 4] =
    [("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")];

/// Every module of difflow's `unet` with `net`'s levels, as its diffusers counterpart in a
/// `UNet2DModel` with the same levels (the walk follows the nets' construction order).
pub fn module_map(net: &ConvNet, size: i64, conditional: bool) -> Vec<ModuleMap> {
    let mut map = Maps::default();
    map.same("time_embed.0", "time_embedding.linear_1");
    map.same("time_embed.2", "time_embedding.linear_2");
    if conditional {
        map.same("label_emb", "class_embedding");
    }
    map.same("input_blocks.0.0", "conv_in");
    let levels = net.mults.len();
    let attends = |level: usize| net.attention.contains(&(size >> level));
    let mut index = 1;
    for level in 0..levels {
        for i in 0..net.res_blocks {
            let (ours, theirs) = (format!("input_blocks.{index}"), format!("down_blocks.{level}"));
            map.resnet(&format!("{ours}.0"), &format!("{theirs}.resnets.{i}"));
            if attends(level) {
                map.attention(&format!("{ours}.1"), &format!("{theirs}.attentions.{i}"), net.heads);
            }
            index += 1;
        }
        if level + 1 != levels {
            map.same(&format!("input_blocks.{index}.0.op"), &format!("down_blocks.{level}.downsamplers.0.conv"));
            index += 1;
        }
    }
    map.resnet("middle_block.0", "mid_block.resnets.0");
    map.attention("middle_block.1", "mid_block.attentions.0", net.heads);
    map.resnet("middle_block.2", "mid_block.resnets.1");
    let mut index = 0;
    for (up, level) in (0..levels).rev().enumerate() {
        for i in 0..=net.res_blocks {
            let (ours, theirs) = (format!("output_blocks.{index}"), format!("up_blocks.{up}"));
            map.resnet(&format!("{ours}.0"), &format!("{theirs}.resnets.{i}"));
            let mut at = 1;
            if attends(level) {
                map.attention(&format!("{ours}.1"), &format!("{theirs}.attentions.{i}"), net.heads);
                at = 2;
            }
            if level > 0 && i == net.res_blocks {
                map.same(&format!("{ours}.{at}.conv"), &format!("{theirs}.upsamplers.0.conv"));
            }
            index += 1;
        }
    }
    map.same("out.0", "conv_norm_out");
    map.same("out.2", "conv_out");
    map.0
}

#[derive(Default)]
struct Maps(Vec<ModuleMap>);

impl Maps {
    fn push(&mut self, ours: &str, theirs: &str, transform: Transform) {
        self.0.push(ModuleMap { difflow: ours.into(), diffusers: theirs.into(), transform });
    }
    fn same(&mut self, ours: &str, theirs: &str) {
        self.push(ours, theirs, Transform::Same);
    }
    fn resnet(&mut self, ours: &str, theirs: &str) {
        for (a, b) in [
            ("in_layers.0", "norm1"),
            ("in_layers.2", "conv1"),
            ("emb_layers.1", "time_emb_proj"),
            ("out_layers.0", "norm2"),
            ("out_layers.3", "conv2"),
            ("skip_connection", "conv_shortcut"),
        ] {
            self.same(&format!("{ours}.{a}"), &format!("{theirs}.{b}"));
        }
    }
    fn attention(&mut self, ours: &str, theirs: &str, heads: i64) {
        self.same(&format!("{ours}.norm"), &format!("{theirs}.group_norm"));
        self.push(&format!("{ours}.qkv"), theirs, Transform::Qkv { heads });
        self.push(&format!("{ours}.proj_out"), &format!("{theirs}.to_out.0"), Transform::Squeeze);
    }
}

#[cfg(test)]
mod tests;
