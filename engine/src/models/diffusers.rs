//! Moving a `unet`'s weights between difflow's layout (improved-diffusion's names) and a
//! diffusers `UNet2DModel`'s `diffusion_pytorch_model.safetensors`, module by module as
//! `difflow_core::diffusers::module_map` pairs them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use difflow_core::diffusers::{module_map, ModuleMap, Transform, LEGACY_ATTENTION_NAMES};
use difflow_core::unet::ConvNet;
use tch::{nn, Tensor};

/// The diffusers tensors (name, value) of one difflow tensor `leaf` (`weight` or `bias`).
fn to_diffusers(m: &ModuleMap, leaf: &str, t: &Tensor) -> Vec<(String, Tensor)> {
    let theirs = |part: &str| format!("{}.{part}.{leaf}", m.diffusers);
    match m.transform {
        Transform::Same => vec![(format!("{}.{leaf}", m.diffusers), t.shallow_clone())],
        Transform::Squeeze if leaf == "weight" => vec![(format!("{}.{leaf}", m.diffusers), t.squeeze_dim(-1))],
        Transform::Squeeze => vec![(format!("{}.{leaf}", m.diffusers), t.shallow_clone())],
        Transform::Qkv { heads } => {
            // [3C, …] as [heads, 3, C/heads, …]: pick q, k, v and put the heads back together.
            let three_c = t.size()[0];
            let rest: Vec<i64> = if leaf == "weight" { vec![t.size()[1]] } else { vec![] };
            let mut shape = vec![heads, 3, three_c / 3 / heads];
            shape.extend(&rest);
            let split = t.reshape(&shape);
            ["to_q", "to_k", "to_v"]
                .iter()
                .enumerate()
                .map(|(i, part)| {
                    let mut out = vec![three_c / 3];
                    out.extend(&rest);
                    (theirs(part), split.select(1, i as i64).reshape(&out).contiguous())
                })
                .collect()
        }
    }
}

/// The difflow tensor of `leaf` from the diffusers tensors (`take` looks a name up).
fn from_diffusers(m: &ModuleMap, leaf: &str, take: &mut dyn FnMut(&str) -> Option<Tensor>) -> Option<Tensor> {
    match m.transform {
        Transform::Same => take(&format!("{}.{leaf}", m.diffusers)),
        Transform::Squeeze => {
            let t = take(&format!("{}.{leaf}", m.diffusers))?;
            Some(if leaf == "weight" { t.unsqueeze(-1) } else { t })
        }
        Transform::Qkv { heads } => {
            let parts: Vec<Tensor> = ["to_q", "to_k", "to_v"]
                .iter()
                .map(|p| take(&format!("{}.{p}.{leaf}", m.diffusers)))
                .collect::<Option<_>>()?;
            let c = parts[0].size()[0];
            let rest: Vec<i64> = parts[0].size()[1..].to_vec();
            let mut per_head = vec![heads, c / heads];
            per_head.extend(&rest);
            let stacked = Tensor::stack(&parts.iter().map(|p| p.reshape(&per_head)).collect::<Vec<_>>(), 1);
            let mut out = vec![3 * c];
            out.extend(&rest);
            if leaf == "weight" {
                out.push(1);
            }
            Some(stacked.reshape(&out))
        }
    }
}

/// Splits a difflow variable name into (module, leaf), finding its module in `by_prefix`.
fn module_of<'m>(name: &str, by_prefix: &'m BTreeMap<&str, &ModuleMap>) -> Option<(&'m ModuleMap, String)> {
    let (prefix, leaf) = name.rsplit_once('.')?;
    by_prefix.get(prefix).map(|m| (*m, leaf.to_string()))
}

/// The diffusers tensors of a built difflow `unet` (`vs` holds its variables).
pub fn export_weights(vs: &nn::VarStore, net: &ConvNet, size: i64, conditional: bool) -> Result<Vec<(String, Tensor)>> {
    let map = module_map(net, size, conditional);
    let by_prefix: BTreeMap<&str, &ModuleMap> = map.iter().map(|m| (m.difflow.as_str(), m)).collect();
    let mut out = Vec::new();
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    for (name, t) in &variables {
        let Some((m, leaf)) = module_of(name, &by_prefix) else {
            bail!("the net's tensor `{name}` has no diffusers counterpart");
        };
        out.extend(to_diffusers(m, &leaf, &t.detach().to_device(tch::Device::Cpu)));
    }
    Ok(out)
}

/// Loads a diffusers `UNet2DModel` weights file into the variables of the matching difflow
/// `unet` in `vs`: every variable must be found with its shape, and every tensor of the
/// file used.
pub fn import_weights(vs: &mut nn::VarStore, net: &ConvNet, size: i64, conditional: bool, file: &Path) -> Result<()> {
    let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(file)
        .with_context(|| format!("cannot read the weights {}", file.display()))?
        .into_iter()
        .collect();
    let legacy: BTreeMap<String, String> = tensors
        .keys()
        .filter_map(|k| {
            LEGACY_ATTENTION_NAMES.iter().find_map(|(new, old)| {
                k.contains(&format!(".{old}."))
                    .then(|| (k.replacen(&format!(".{old}."), &format!(".{new}."), 1), k.clone()))
            })
        })
        .collect();
    let map = module_map(net, size, conditional);
    let by_prefix: BTreeMap<&str, &ModuleMap> = map.iter().map(|m| (m.difflow.as_str(), m)).collect();
    let mut used = BTreeSet::new();
    let mut take = |name: &str| {
        let key = if tensors.contains_key(name) { name.to_string() } else { legacy.get(name)?.clone() };
        used.insert(key.clone());
        tensors.get(&key).map(|t| t.shallow_clone())
    };
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut var) in variables {
        let (m, leaf) = module_of(&name, &by_prefix).with_context(|| format!("no diffusers name for `{name}`"))?;
        let Some(value) = from_diffusers(m, &leaf, &mut take) else {
            bail!(
                "{} has no `{}.{leaf}` (difflow's `{name}`): not the net its config.json describes",
                file.display(),
                m.diffusers
            );
        };
        if value.size() != var.size() {
            bail!(
                "{}: `{}.{leaf}` has shape {:?}, but the net its config.json describes needs {:?}",
                file.display(),
                m.diffusers,
                value.size(),
                var.size()
            );
        }
        tch::no_grad(|| var.copy_(&value.to_kind(var.kind())));
    }
    let unused: Vec<&String> = tensors.keys().filter(|k| !used.contains(*k)).collect();
    if !unused.is_empty() {
        bail!(
            "{} holds {} tensors the net its config.json describes has no place for (e.g. `{}`)",
            file.display(),
            unused.len(),
            unused[0]
        );
    }
    Ok(())
}
