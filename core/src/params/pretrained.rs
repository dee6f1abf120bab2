//! The `pretrained` stage's parameters: a diffusers model from a folder or the Hub.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The parameters of a `pretrained = diffusers` stage (exactly one of `path` and `repo` is
/// set). A `repo` has been fetched into the user cache by the orchestrator, which passes
/// that folder as `path` in the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainedParams {
    pub path: Option<PathBuf>,
    pub repo: Option<String>,
    pub revision: String,
}
