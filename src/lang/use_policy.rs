//! Which files a `use` may read. Recipes are shared, so a `.diff` file from a stranger must
//! not be able to read (and echo in a diagnostic) `/etc/passwd`, hang on a FIFO or exhaust
//! memory on `/dev/zero`. A `use` reads only:
//! - `.diff` files (checked before the disk is touched, so no other file's bytes are ever
//!   read, let alone shown);
//! - inside the project: the nearest folder up from the pipeline that holds
//!   `difflow.toml` (else the pipeline's own folder) and everything below it, plus the
//!   folders its `use_roots` setting names; symbolic links are followed before the check;
//! - regular files (no FIFOs, devices or `/proc` entries) of at most [`MAX_SOURCE_BYTES`].

use std::path::{Path, PathBuf};

use difflow_core::files::{self, Purpose};

use crate::diagnostics::Code;
use crate::project::settings::{Settings, FILE_NAME};

/// The largest `.diff` file difflow reads (real pipelines are a few kB).
pub const MAX_SOURCE_BYTES: u64 = Purpose::Source.limit();

/// Why a `use` was refused: a diagnostic code, the message, its label and help.
pub struct Refusal {
    pub code: Code,
    pub message: String,
    pub label: String,
    pub help: String,
}

#[derive(Debug, Clone, Default)]
pub struct UsePolicy {
    /// Canonical folders a `use` may read below.
    roots: Vec<PathBuf>,
}

impl UsePolicy {
    /// The policy for a pipeline in `dir`: its project folder and the `use_roots` of
    /// the project's `difflow.toml`. A `difflow.toml` that cannot be used (not a regular
    /// file, too large, invalid) still marks the project; the policy then has no extra
    /// roots, and the error comes back with the file's path, for the caller to report.
    pub fn for_pipeline(dir: &Path) -> (UsePolicy, Option<(PathBuf, String)>) {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let marks_project = |d: &&Path| std::fs::symlink_metadata(d.join(FILE_NAME)).is_ok();
        let project = dir.ancestors().find(marks_project).unwrap_or(&dir).to_path_buf();
        let mut roots = vec![project.clone()];
        let error = match Settings::load(&project) {
            Ok(settings) => {
                roots.extend(settings.use_roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()));
                None
            }
            Err(e) => Some((project.join(FILE_NAME), e)),
        };
        (UsePolicy { roots }, error)
    }

    /// Whether a canonical path lies inside the project's folders.
    pub fn contains(&self, canonical: &Path) -> bool {
        self.roots.iter().any(|r| canonical.starts_with(r))
    }

    /// Reads the file a `use "written"` names (already joined to its folder as `path`):
    /// its canonical path and text, or why it may not be read.
    pub fn read(&self, written: &str, path: &Path) -> Result<(PathBuf, String), Refusal> {
        if path.extension().is_none_or(|e| e != "diff") {
            return Err(refuse(
                format!("`use` reads only `.diff` files, and `{written}` is not one"),
                "not a .diff file".into(),
                "a `use` names another pipeline file (`NAME.diff`) or a stdlib file (`std/NAME.diff`)".into(),
            ));
        }
        let canonical = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) => return Err(missing(written, path, &e)),
        };
        if !self.contains(&canonical) {
            return Err(refuse(
                format!("`{written}` is outside the project"),
                "outside the project's folders".into(),
                format!(
                    "a `use` reads only files inside the project: the folder holding {FILE_NAME} (or the \
                     pipeline's folder) and below; list more folders in `use_roots` in {FILE_NAME}"
                ),
            ));
        }
        match read_source(&canonical) {
            Ok(text) => Ok((canonical, text)),
            Err(why) => Err(refuse(
                format!("cannot read `{written}`: {why}"),
                format!("tried {}", super::modules::display_path(&canonical)),
                String::new(),
            )),
        }
    }
}

fn refuse(message: String, label: String, help: String) -> Refusal {
    Refusal { code: Code::ForbiddenUse, message, label, help }
}

fn missing(written: &str, path: &Path, e: &std::io::Error) -> Refusal {
    let why = if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_string() } else { e.to_string() };
    Refusal {
        code: Code::MissingFile,
        message: format!("cannot read `{written}`: {why}"),
        label: format!("tried {}", super::modules::display_path(path)),
        help: "a `use` path is relative to the folder of the file that writes it; stdlib files are `std/NAME.diff`"
            .into(),
    }
}

/// The text of a pipeline file: a regular file of at most [`MAX_SOURCE_BYTES`], UTF-8,
/// read by the one rule for user-named files ([`difflow_core::files`]). The messages never
/// quote the file's bytes.
pub fn read_source(path: &Path) -> Result<String, String> {
    files::read_text(path, Purpose::Source).map_err(|e| e.to_string())
}
