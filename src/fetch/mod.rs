//! Fetching what a pipeline needs and the user did not give: a `mnist`, `fashion_mnist`
//! or `cifar10` dataset without `path`, and the Inception weights of metrics stages
//! without `inception_weights` (and none in `difflow.toml`). Files land in the user cache
//! (`$XDG_CACHE_HOME/difflow`, or `user_cache` in `difflow.toml`) and are verified by
//! SHA-256 before use. This runs before stage keys are computed and fills in the paths,
//! so a fetched dataset has the key it would have had if the user had given the same
//! files by `path`.

pub mod download;
mod http;
pub mod hub;
mod options;
pub mod sources;

use std::path::{Path, PathBuf};

pub use download::{fetch_file, sha256_of, FetchOptions, Fetched};
pub use sources::{hf_endpoint, hf_file_url, Source};

use crate::lang::pipeline::Pipeline;
use crate::lang::value::Value;
use crate::project::settings::Settings;

/// The pipeline with the user-cache folder filled in as `path` for each fetchable dataset
/// without one, and the Inception weights to use when neither a stage nor `difflow.toml`
/// names them (`None` when nothing needs them). Nothing is downloaded here: `plan`
/// locates, and `run` calls `missing` and `fetch_all` for the stages it will run.
pub fn fill_in(p: &Pipeline, settings: &Settings) -> Result<(Pipeline, Option<PathBuf>), String> {
    sources::table(&settings.sources)?;
    let mut out = p.clone();
    for inst in &mut out.instances {
        let fetchable = inst.kind == "dataset" && sources::DATASETS.contains(&inst.variant.as_str());
        if fetchable && !inst.params.contains_key("path") {
            let dir = sources::dataset_dir(&settings.user_cache, &inst.variant);
            inst.params.insert("path".into(), Value::Path(dir.to_string_lossy().into_owned()));
        }
        if let (Some(Value::Str(repo)), false) = (inst.params.get("repo"), inst.params.contains_key("path")) {
            let revision = match inst.params.get("revision") {
                Some(Value::Str(r)) => r.as_str(),
                _ => "main",
            };
            let dir = hub::repo_dir(&settings.user_cache, repo, revision)?;
            inst.params.insert("path".into(), Value::Path(dir.to_string_lossy().into_owned()));
        }
    }
    let inception = match &settings.inception_weights {
        Some(w) => Some(w.clone()),
        None if needs_default_inception(&out) => Some(inception_path(settings)),
        None => None,
    };
    Ok((out, inception))
}

/// The files that the instances `selected` of an expanded, filled-in pipeline read from
/// the user cache and that are not there yet, with where each goes.
pub fn missing(p: &Pipeline, selected: &[usize], settings: &Settings) -> Result<Vec<(Source, PathBuf)>, String> {
    let table = sources::table(&settings.sources)?;
    let weights = inception_path(settings);
    let mut out: Vec<(Source, PathBuf)> = Vec::new();
    for inst in selected.iter().map(|&i| &p.instances[i]) {
        let wanted: Vec<(&Source, PathBuf)> = match inst.params.get("path") {
            Some(Value::Path(path)) if inst.kind == "dataset" && sources::DATASETS.contains(&inst.variant.as_str()) => {
                let dir = sources::dataset_dir(&settings.user_cache, &inst.variant);
                if Path::new(path) != dir {
                    continue;
                }
                sources::dataset_sources(&table, &inst.variant)
                    .into_iter()
                    .map(|s| (s, dir.join(&s.file_name)))
                    .collect()
            }
            _ => match inst.params.get("inception_weights") {
                Some(Value::Path(w)) if Path::new(w) == weights => {
                    vec![(
                        table.iter().find(|s| s.name == sources::INCEPTION).expect("the table has it"),
                        weights.clone(),
                    )]
                }
                _ => continue,
            },
        };
        for (source, dest) in wanted {
            if !dest.is_file() && !out.iter().any(|(_, d)| *d == dest) {
                out.push((source.clone(), dest));
            }
        }
    }
    Ok(out)
}

/// Fetch the Hub repositories of the `pretrained` instances `selected` that the user cache
/// does not hold yet; the first failure stops.
pub fn fetch_repos(p: &Pipeline, selected: &[usize], settings: &Settings) -> Result<bool, String> {
    let opts = FetchOptions::from_env(settings.user_cache.join("partial"))?;
    let mut fetched = false;
    for inst in selected.iter().map(|&i| &p.instances[i]).filter(|i| i.kind == "pretrained") {
        let (Some(Value::Str(repo)), Some(Value::Path(dir))) = (inst.params.get("repo"), inst.params.get("path"))
        else {
            continue;
        };
        let revision = match inst.params.get("revision") {
            Some(Value::Str(r)) => r.as_str(),
            _ => "main",
        };
        if difflow_core::diffusers::locate(Path::new(dir)).is_err() {
            hub::fetch_repo(repo, revision, &settings.user_cache, &opts)?;
            fetched = true;
        }
    }
    Ok(fetched)
}

/// Fetch each file in turn; a failure does not stop the others, and the error names
/// every file that could not be fetched.
pub fn fetch_all(files: &[(Source, PathBuf)], settings: &Settings) -> Result<(), String> {
    let opts = FetchOptions::from_env(settings.user_cache.join("partial"))?;
    let failures: Vec<String> =
        files.iter().filter_map(|(source, dest)| fetch_file(source, dest, &opts).err()).collect();
    match failures.as_slice() {
        [] => Ok(()),
        [one] => Err(one.clone()),
        all => Err(format!("{} of {} files could not be fetched:\n  {}", all.len(), files.len(), all.join("\n  "))),
    }
}

fn inception_path(settings: &Settings) -> PathBuf {
    let file = sources::builtin().into_iter().find(|s| s.name == sources::INCEPTION).expect("built in").file_name;
    sources::weights_dir(&settings.user_cache).join(file)
}

/// Whether a metrics stage extracts Inception features without naming the weights.
fn needs_default_inception(p: &Pipeline) -> bool {
    let expanded = crate::graph::expand_implicit(p, None);
    expanded.instances.iter().any(|i| {
        crate::graph::is_hidden(i)
            && !matches!(i.params.get("features"), Some(Value::Stage(_)))
            && !i.params.contains_key("inception_weights")
    })
}
