//! Which files a `use` may read. Recipes are shared, so a `.diff` file from a stranger must
//! not be able to read (and echo in a diagnostic) `/etc/passwd`, hang on a FIFO or exhaust
//! memory on `/dev/zero`. A `use` reads only:
//! - `.diff` files (checked before the disk is touched, so no other file's bytes are ever
//!   read, let alone shown);
//! - inside the project: the nearest folder up from the pipeline that holds
//!   `difflow.toml` (else the pipeline's own folder) and everything below it, plus the
//!   folders its `use_roots` setting names; symbolic links are followed before the check;
//! - regular files (no FIFOs, devices or `/proc` entries) of at most [`MAX_SOURCE_BYTES`].

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::diagnostics::Code;
use crate::settings::{Settings, FILE_NAME};

/// The largest `.diff` file difflow reads (real pipelines are a few kB).
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

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
    /// the project's `difflow.toml`.
    pub fn for_pipeline(dir: &Path) -> UsePolicy {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let project = dir.ancestors().find(|d| d.join(FILE_NAME).is_file()).unwrap_or(&dir).to_path_buf();
        let mut roots = vec![project.clone()];
        // A broken difflow.toml is reported where the settings are used; here it only
        // means no extra roots.
        if let Ok(settings) = Settings::load(&project) {
            roots.extend(settings.use_roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()));
        }
        UsePolicy { roots }
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
        if !self.roots.iter().any(|r| canonical.starts_with(r)) {
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

/// The text of a pipeline file: a regular file of at most [`MAX_SOURCE_BYTES`], UTF-8.
/// The messages never quote the file's bytes.
pub fn read_source(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    // /proc and /sys entries claim to be regular files of size 0.
    let canonical = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    if canonical.starts_with("/proc") || canonical.starts_with("/sys") {
        return Err("it is a /proc or /sys entry, not a regular file".into());
    }
    if !meta.is_file() {
        return Err("it is not a regular file (a folder, FIFO, device or socket)".into());
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(format!("it has {} bytes; pipeline files may have at most {MAX_SOURCE_BYTES}", meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // The file may have been swapped for another since the check above: read no more
    // than the limit whatever it is now.
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!("it has more than {MAX_SOURCE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
}
