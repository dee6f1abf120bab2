//! Which projects may run their own Python. A recipe from someone else must not run its
//! code behind the user's back: a pipeline with `python` models or `script` stages runs
//! only in a project folder the user trusted once with `difflow trust`. The list is the
//! user's, kept outside every project (`$XDG_CONFIG_HOME/difflow/trusted`, else
//! `~/.config/difflow/trusted`), one canonical folder a line. Trust covers a folder and
//! everything below it, whatever the files hold later: it is not a review of their contents.

use std::path::{Path, PathBuf};

use difflow_core::files::{self, Purpose};

use crate::failure::Failure;
use crate::lang::pipeline::Pipeline;
use crate::lang::value::Value;

/// The file holding the trusted folders; `None` when neither `XDG_CONFIG_HOME` nor `HOME`
/// is set (then nothing is trusted and nothing can be).
pub fn trust_file() -> Option<PathBuf> {
    let from_env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    match (from_env("XDG_CONFIG_HOME"), from_env("HOME")) {
        (Some(x), _) => Some(x.join("difflow").join("trusted")),
        (None, Some(h)) => Some(h.join(".config").join("difflow").join("trusted")),
        (None, None) => None,
    }
}

/// The trusted folders as listed (an unreadable or missing list trusts nothing).
fn trusted_folders(list: &Path) -> Vec<PathBuf> {
    match files::read_text_if_present(list, Purpose::Settings) {
        Ok(Some(text)) => text.lines().filter(|l| !l.trim().is_empty()).map(PathBuf::from).collect(),
        _ => Vec::new(),
    }
}

/// Whether `folder` (canonical) is a trusted folder or lies below one.
pub fn is_trusted(folder: &Path) -> bool {
    let Some(list) = trust_file() else { return false };
    trusted_folders(&list).iter().any(|t| folder.starts_with(t))
}

/// Adds `folder` to the user's list (written whole to a temporary file, then renamed, so
/// the list is never half-written); its canonical path.
pub fn trust(folder: &Path) -> Result<PathBuf, String> {
    let folder = std::fs::canonicalize(folder).map_err(|e| format!("cannot trust {}: {e}", folder.display()))?;
    if !folder.is_dir() {
        return Err(format!("cannot trust {}: not a folder", folder.display()));
    }
    let list =
        trust_file().ok_or("cannot keep the list of trusted folders: neither XDG_CONFIG_HOME nor HOME is set")?;
    let mut folders = trusted_folders(&list);
    if folders.contains(&folder) {
        return Ok(folder);
    }
    folders.push(folder.clone());
    let dir = list.parent().expect("the list lies in a folder");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let text: String = folders.iter().map(|f| format!("{}\n", f.display())).collect();
    let temporary = dir.join(format!(".trusted.{}", std::process::id()));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &list))
        .map_err(|e| format!("cannot write {}: {e}", list.display()))?;
    Ok(folder)
}

/// The project folder of a pipeline in `dir`: the nearest folder up that holds
/// `difflow.toml`, else `dir` itself (canonical where it can be).
pub fn project_folder(dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let marks_project = |d: &&Path| std::fs::symlink_metadata(d.join(super::settings::FILE_NAME)).is_ok();
    dir.ancestors().find(marks_project).unwrap_or(&dir).to_path_buf()
}

/// The project Python files a pipeline would run (`python` models' files, script stages'
/// `run` files and the project files they import), sorted.
pub fn python_files(p: &Pipeline) -> Vec<PathBuf> {
    fn collect(v: &Value, out: &mut Vec<PathBuf>) {
        match v {
            Value::Config(c) if c.kind == "model" && c.variant == "python" => {
                if let Some(Value::Path(file)) = c.params.get("file") {
                    out.push(PathBuf::from(file));
                }
            }
            Value::Config(c) => c.params.values().for_each(|x| collect(x, out)),
            Value::List(items) => items.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for inst in &p.instances {
        if let ("script", Some(Value::Path(file))) = (inst.kind.as_str(), inst.params.get("run")) {
            out.push(PathBuf::from(file));
        }
        inst.params.values().for_each(|v| collect(v, &mut out));
    }
    let (policy, _) = crate::lang::use_policy::UsePolicy::for_pipeline(&p.root);
    for module in out.clone() {
        if let Ok((module, text)) = crate::lang::python_files::read_module(&module, &policy) {
            out.extend(crate::lang::python_files::imported_files(&module, &text, &policy));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Refuses a pipeline that would run Python in a project the user has not trusted: the
/// message lists the files and the command that trusts them.
pub fn require(p: &Pipeline) -> Result<(), Failure> {
    let files = python_files(p);
    let project = project_folder(&p.root);
    if files.is_empty() || is_trusted(&project) {
        return Ok(());
    }
    let listed: String = files.iter().map(|f| format!("\n  {}", f.display())).collect();
    Err(Failure::Usage(format!(
        "this pipeline runs Python code of the project {}, which you have not trusted:{listed}\n\
         read them, then trust the project once with:\n  difflow trust {}",
        project.display(),
        shell_quoted(&project)
    )))
}

/// A path as a shell word (single-quoted when it holds anything but plain characters).
fn shell_quoted(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
