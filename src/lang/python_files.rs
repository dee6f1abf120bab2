//! Project Python files a pipeline names (a `python` model's `file`): where they may be
//! (inside the project, the rule of `use`), whether a class is defined in one, and which
//! project files a module imports. All of it reads text only: no Python runs here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use difflow_core::files::{self, Purpose};

use super::use_policy::UsePolicy;

/// The most project files an import scan follows (a real model imports a handful).
const MAX_IMPORTED_FILES: usize = 1000;

/// Why a Python file may not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// There is no such file.
    Missing,
    /// It lies (after following links) outside the project's folders: its canonical path.
    Outside(PathBuf),
    /// It cannot be read as a code file (not a regular file, too large, not UTF-8).
    Unreadable(String),
}

/// The canonical path and text of a project Python file.
pub fn read_module(path: &Path, policy: &UsePolicy) -> Result<(PathBuf, String), Refused> {
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Refused::Missing),
        Err(e) => return Err(Refused::Unreadable(e.to_string())),
    };
    if !policy.contains(&canonical) {
        return Err(Refused::Outside(canonical));
    }
    let text = files::read_text(&canonical, Purpose::Code).map_err(|e| Refused::Unreadable(e.to_string()))?;
    Ok((canonical, text))
}

/// Whether `text` defines `class` at the top level: a line `class NAME(` or `class NAME:`.
/// A quick look, not a parse: a class made some other way is not seen.
pub fn defines_class(text: &str, class: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("class ")
            .and_then(|rest| rest.trim_start().strip_prefix(class))
            .is_some_and(|after| after.trim_start().starts_with(['(', ':']))
    })
}

/// The project files that `entry` imports, directly or through each other, canonical and
/// sorted, `entry` itself left out. `import a.b` and `from a.b import c` are looked up as
/// `a/b.py`, `a/b/__init__.py` (and `a/b/c.py`) beside the entry module (which the worker
/// puts on `sys.path`); `from .x import y` beside the importing file. Modules that are not
/// project files (torch, the standard library) are skipped.
pub fn imported_files(entry: &Path, entry_text: &str, policy: &UsePolicy) -> Vec<PathBuf> {
    let base = entry.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::from([entry.to_path_buf()]);
    let mut pending: Vec<(PathBuf, String)> = vec![(entry.to_path_buf(), entry_text.to_string())];
    while let Some((file, text)) = pending.pop() {
        let here = file.parent().unwrap_or(&base).to_path_buf();
        for module in imports(&text) {
            for candidate in candidates(&module, &base, &here) {
                if seen.len() >= MAX_IMPORTED_FILES || !candidate.is_file() || seen.contains(&candidate) {
                    continue;
                }
                let Ok((canonical, text)) = read_module(&candidate, policy) else { continue };
                if seen.insert(canonical.clone()) {
                    pending.push((canonical, text));
                }
            }
        }
    }
    seen.remove(entry);
    seen.into_iter().collect()
}

/// A module named by an import line: its dotted name, how many leading dots (0: absolute),
/// and for `from M import a, b` the imported names (which may be submodules).
#[derive(Debug, PartialEq)]
struct Import {
    dots: usize,
    name: String,
    names: Vec<String>,
}

fn imports(text: &str) -> Vec<Import> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("import ") {
            for part in rest.split(',') {
                let name = part.split_whitespace().next().unwrap_or("");
                if !name.is_empty() {
                    out.push(Import { dots: 0, name: name.to_string(), names: Vec::new() });
                }
            }
        } else if let Some(rest) = line.strip_prefix("from ") {
            let Some((module, names)) = rest.split_once(" import ") else { continue };
            let module = module.trim();
            let dots = module.chars().take_while(|&c| c == '.').count();
            let names = names
                .trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace())
                .split(',')
                .filter_map(|n| n.split_whitespace().next())
                .map(str::to_string)
                .collect();
            out.push(Import { dots, name: module[dots..].to_string(), names });
        }
    }
    out
}

fn candidates(import: &Import, base: &Path, here: &Path) -> Vec<PathBuf> {
    let mut dir = if import.dots == 0 { base.to_path_buf() } else { here.to_path_buf() };
    for _ in 1..import.dots {
        dir = dir.parent().map_or(dir.clone(), Path::to_path_buf);
    }
    let module_dir = import.name.split('.').filter(|p| !p.is_empty()).fold(dir, |d, p| d.join(p));
    let mut out = Vec::new();
    if !import.name.is_empty() {
        out.push(module_dir.with_extension("py"));
    }
    out.push(module_dir.join("__init__.py"));
    out.extend(import.names.iter().filter(|n| *n != "*").map(|n| module_dir.join(format!("{n}.py"))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_is_found_at_the_start_of_a_line_only() {
        let text = "import torch\nclass Net(torch.nn.Module):\n    pass\n    class Inner:\n";
        assert!(defines_class(text, "Net"));
        assert!(!defines_class(text, "Ne"));
        assert!(!defines_class(text, "Inner"));
        assert!(defines_class("class  Plain :\n", "Plain"));
    }

    #[test]
    fn import_lines_name_modules_and_their_names() {
        let found = imports("import torch, helpers.blocks as b\nfrom .layers import (Attn, mlp)\nx = 1 # import no\n");
        let names: Vec<(usize, &str)> = found.iter().map(|i| (i.dots, i.name.as_str())).collect();
        assert_eq!(names, [(0, "torch"), (0, "helpers.blocks"), (1, "layers")]);
        assert_eq!(found[2].names, ["Attn", "mlp"]);
    }

    #[test]
    fn imports_are_followed_inside_the_project_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::write(root.join("net.py"), "import torch\nfrom helpers import blocks\n").unwrap();
        std::fs::create_dir(root.join("helpers")).unwrap();
        std::fs::write(root.join("helpers/__init__.py"), "").unwrap();
        std::fs::write(root.join("helpers/blocks.py"), "from .deep import f\n").unwrap();
        std::fs::write(root.join("helpers/deep.py"), "def f(): pass\n").unwrap();
        std::fs::write(root.join("unrelated.py"), "").unwrap();
        let (policy, _) = UsePolicy::for_pipeline(&root);
        let (entry, text) = read_module(&root.join("net.py"), &policy).unwrap();
        let found = imported_files(&entry, &text, &policy);
        let rel: Vec<_> = found.iter().map(|p| p.strip_prefix(&root).unwrap().to_path_buf()).collect();
        let expected: Vec<PathBuf> =
            ["helpers/__init__.py", "helpers/blocks.py", "helpers/deep.py"].iter().map(PathBuf::from).collect();
        assert_eq!(rel, expected);
    }
}
