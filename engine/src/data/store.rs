//! The dataset artifact: `data.safetensors` (`images` uint8 [N,C,H,W] or `points` f32
//! [N,D], and `labels` int64 [N]) plus `meta.json` ([`DataMeta`]). Sample stages write
//! `samples.safetensors` in the same layout, so anything that reads data reads samples.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

pub const DATA_FILE: &str = "data.safetensors";
pub const SAMPLES_FILE: &str = "samples.safetensors";
pub const META_FILE: &str = "meta.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// uint8 in [0, 255], mapped to [-1, 1] by the engine on load.
    Images,
    /// float32 vectors, used as they are.
    Points,
}

/// What a dataset (or a sample set) holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataMeta {
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// The shape of one item: [C, H, W] for images, [D] for points.
    pub shape: Vec<i64>,
    /// Number of classes (0: unlabelled; labels are then all 0).
    pub classes: usize,
    pub count: usize,
    /// Training may flip images horizontally (CIFAR-10 with `flip = true`).
    #[serde(default)]
    pub flip: bool,
}

impl DataMeta {
    /// Values per item (C·H·W or D).
    pub fn dims(&self) -> i64 {
        self.shape.iter().product()
    }

    pub fn is_images(&self) -> bool {
        self.data_type == DataType::Images
    }

    pub fn read(dir: &Path) -> Result<DataMeta> {
        let path = dir.join(META_FILE);
        let text = difflow_core::files::read_text(&path, difflow_core::files::Purpose::Metadata)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a dataset description", path.display()))
    }
}

/// A dataset in memory, on the CPU: `values` uint8 images or f32 points, `labels` int64.
pub struct Dataset {
    pub meta: DataMeta,
    pub values: Tensor,
    pub labels: Tensor,
}

impl Dataset {
    pub fn new(meta: DataMeta, values: Tensor, labels: Tensor) -> Result<Dataset> {
        let n = values.size().first().copied().unwrap_or(0);
        if labels.size() != [n] {
            bail!("{n} items but labels of shape {:?}", labels.size());
        }
        if values.size()[1..] != meta.shape[..] {
            bail!("items of shape {:?}, but the description says {:?}", &values.size()[1..], meta.shape);
        }
        Ok(Dataset { meta: DataMeta { count: n as usize, ..meta }, values, labels })
    }

    fn key(&self) -> &'static str {
        match self.meta.data_type {
            DataType::Images => "images",
            DataType::Points => "points",
        }
    }

    /// Writes `data.safetensors` (or another file name, e.g. `samples.safetensors`) and `meta.json`.
    pub fn write(&self, dir: &Path, file: &str) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let kind = if self.meta.is_images() { Kind::Uint8 } else { Kind::Float };
        let values = self.values.to_device(Device::Cpu).to_kind(kind).contiguous();
        let labels = self.labels.to_device(Device::Cpu).to_kind(Kind::Int64).contiguous();
        let path = dir.join(file);
        Tensor::write_safetensors(&[(self.key(), &values), ("labels", &labels)], &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let meta = serde_json::to_string_pretty(&self.meta)?;
        std::fs::write(dir.join(META_FILE), meta).with_context(|| format!("cannot write {}", dir.display()))?;
        Ok(())
    }

    /// Reads a dataset stage's entry (`data.safetensors`) or a sample stage's (`samples.safetensors`).
    pub fn read(dir: &Path) -> Result<Dataset> {
        let meta = DataMeta::read(dir)?;
        let file = [DATA_FILE, SAMPLES_FILE].iter().map(|f| dir.join(f)).find(|p| p.exists());
        let Some(path) = file else {
            bail!("{} holds neither {DATA_FILE} nor {SAMPLES_FILE}", dir.display());
        };
        let file = TensorFile::read(&path)?;
        let key = if meta.is_images() { "images" } else { "points" };
        let dataset = Dataset::new(meta, file.take(key)?, file.take("labels")?)
            .with_context(|| format!("{} does not match its meta.json", path.display()))?;
        Ok(dataset)
    }

    /// Items `index` as float32 on `device`: images mapped from [0, 255] to [-1, 1].
    pub fn batch(&self, index: &Tensor, device: Device) -> (Tensor, Tensor) {
        let x = self.values.index_select(0, index).to_device(device);
        let x = if self.meta.is_images() { to_unit_range(&x) } else { x.to_kind(Kind::Float) };
        (x, self.labels.index_select(0, index).to_device(device))
    }
}

/// uint8 [0, 255] → float32 [-1, 1].
pub fn to_unit_range(images: &Tensor) -> Tensor {
    images.to_kind(Kind::Float) / 127.5 - 1.0
}

/// float [-1, 1] → uint8 [0, 255] (rounded, clamped).
pub fn to_uint8(images: &Tensor) -> Tensor {
    ((images.to_kind(Kind::Float) + 1.0) * 127.5).round().clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// The named tensors of a safetensors file, taken by name with errors that name the file.
pub struct TensorFile {
    path: PathBuf,
    tensors: Vec<(String, Tensor)>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<TensorFile> {
        let tensors = Tensor::read_safetensors(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(TensorFile { path: path.to_path_buf(), tensors })
    }

    /// The tensor called `name` (sharing its storage).
    pub fn take(&self, name: &str) -> Result<Tensor> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("{} has no tensor `{name}`", self.path.display()))
    }
}
