//! `use`: loading a pipeline's files. `use "x.diff"` is resolved against the folder of the
//! file that writes it; `use "std/NAME.diff"` reads the stdlib embedded in the binary.
//! Every file is loaded once; files come out used-before-user, so a name's declaration
//! order is stable. Import cycles are reported with the chain, missing files with the
//! path tried. Which files on disk a `use` may read (`.diff` files inside the project) is
//! decided by [`super::use_policy`]; files are keyed by their canonical path, so a symbolic
//! link loop is an import cycle, not an endless chain.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, ItemKind, Span};
use crate::syntax::{SourceFile, SourceMap};

use super::suggest;
use super::use_policy::{read_source, UsePolicy};

/// The stdlib, compiled into the binary: `use "std/NAME.diff"`.
pub const STDLIB: &[(&str, &str)] = &[
    ("std/recipes.diff", include_str!("../../stdlib/recipes.diff")),
    ("std/samplers.diff", include_str!("../../stdlib/samplers.diff")),
    ("std/schedules.diff", include_str!("../../stdlib/schedules.diff")),
    ("std/unet.diff", include_str!("../../stdlib/unet.diff")),
];

/// Where the first file comes from.
pub enum Root<'a> {
    /// A file on disk.
    Path(&'a Path),
    /// Text with a display name; relative `use`s resolve against `base`.
    Text { name: &'a str, text: &'a str, base: PathBuf },
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Disk(PathBuf),
    Std(String),
}

enum State {
    Loading,
    Done,
}

pub struct Loader<'s> {
    pub sources: &'s mut SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    /// Parsed files, used-before-user.
    pub files: Vec<ast::File>,
    /// Whether any file failed to parse (resolution then stops: names would be missing).
    pub syntax_errors: bool,
    /// Unsaved text of files, by absolute normalised path, read instead of the disk (the
    /// buffers an editor has open).
    pub overlay: HashMap<PathBuf, String>,
    state: HashMap<Key, State>,
    /// The chain of files being loaded, with the span of the `use` that led to each.
    stack: Vec<(Key, String, Option<Span>)>,
    /// Which files a `use` may read.
    policy: UsePolicy,
    /// A `difflow.toml` that could not be used for the policy, and why (for [`super::load`]
    /// to report: a settings error is never dropped).
    pub settings_error: Option<(PathBuf, String)>,
}

impl<'s> Loader<'s> {
    pub fn new(sources: &'s mut SourceMap) -> Self {
        Loader {
            sources,
            diagnostics: Vec::new(),
            files: Vec::new(),
            syntax_errors: false,
            overlay: HashMap::new(),
            state: HashMap::new(),
            stack: Vec::new(),
            policy: UsePolicy::default(),
            settings_error: None,
        }
    }

    /// Load the root file and everything it uses. Returns false when the root itself
    /// could not be read (a diagnostic-free failure the caller reports).
    pub fn load_root(&mut self, root: Root<'_>) -> Result<(), String> {
        match root {
            Root::Path(path) => {
                // An editor's unsaved buffer of the file wins over the disk.
                let text = match self.overlay.get(&absolute(path)) {
                    Some(text) => text.clone(),
                    None => read_source(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                };
                let dir = absolute(path).parent().map(Path::to_path_buf).unwrap_or_default();
                (self.policy, self.settings_error) = UsePolicy::for_pipeline(&dir);
                let key = Key::Disk(std::fs::canonicalize(path).unwrap_or_else(|_| absolute(path)));
                let source =
                    SourceFile { name: path.display().to_string(), path: Some(absolute(path)), text: text.clone() };
                self.visit(key, source, None);
            }
            Root::Text { name, text, base } => {
                (self.policy, self.settings_error) = UsePolicy::for_pipeline(&base);
                let key = Key::Disk(base.join(name));
                let source = SourceFile { name: name.to_string(), path: None, text: text.to_string() };
                self.visit_with_base(key, source, None, base);
            }
        }
        Ok(())
    }

    fn visit(&mut self, key: Key, source: SourceFile, via: Option<Span>) {
        let base = match &key {
            Key::Disk(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            Key::Std(_) => PathBuf::new(),
        };
        self.visit_with_base(key, source, via, base)
    }

    fn visit_with_base(&mut self, key: Key, source: SourceFile, via: Option<Span>, base: PathBuf) {
        let name = source.name.clone();
        let text = source.text.clone();
        let id = self.sources.add(source);
        self.state.insert(key.clone(), State::Loading);
        self.stack.push((key.clone(), name, via));
        match crate::syntax::parse(id, &text) {
            Ok(file) => {
                for item in &file.items {
                    if let ItemKind::Use { path, path_span } = &item.kind {
                        self.use_file(path, *path_span, &key, &base);
                    }
                }
                self.files.push(file);
            }
            Err(diags) => {
                self.syntax_errors = true;
                self.diagnostics.extend(diags);
            }
        }
        self.stack.pop();
        self.state.insert(key, State::Done);
    }

    fn use_file(&mut self, written: &str, span: Span, user: &Key, base: &Path) {
        let (key, source) = if let Some(rest) = written.strip_prefix("std/") {
            let Some((name, text)) = STDLIB.iter().find(|(n, _)| *n == written) else {
                let names: Vec<&str> = STDLIB.iter().map(|(n, _)| *n).collect();
                let mut d = Diagnostic::new(
                    Code::MissingFile,
                    format!("there is no `{written}` in the standard library"),
                    span,
                    "not a stdlib file",
                );
                let list = names.join(", ");
                d = d.with_help(match suggest::closest(written, names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`? The stdlib has {list}"),
                    None => format!("the stdlib has {list} (`{rest}` is not one of them)"),
                });
                self.diagnostics.push(d);
                return;
            };
            (Key::Std(name.to_string()), SourceFile { name: name.to_string(), path: None, text: text.to_string() })
        } else {
            if matches!(user, Key::Std(_)) {
                self.diagnostics.push(Diagnostic::new(
                    Code::MissingFile,
                    "a stdlib file can only use other stdlib files",
                    span,
                    "relative to an embedded file",
                ));
                return;
            }
            let path = normalize(&base.join(written));
            match self.policy.read(written, &path) {
                Ok((canonical, _)) if self.state.contains_key(&Key::Disk(canonical.clone())) => {
                    (Key::Disk(canonical), SourceFile { name: String::new(), path: None, text: String::new() })
                }
                Ok((canonical, text)) => {
                    let text = self.overlay.get(&path).cloned().unwrap_or(text);
                    (Key::Disk(canonical), SourceFile { name: display_path(&path), path: Some(path), text })
                }
                Err(refusal) => {
                    let mut d = Diagnostic::new(refusal.code, refusal.message, span, refusal.label);
                    if !refusal.help.is_empty() {
                        d = d.with_help(refusal.help);
                    }
                    self.diagnostics.push(d);
                    return;
                }
            }
        };
        match self.state.get(&key) {
            Some(State::Done) => {}
            Some(State::Loading) => {
                let start = self.stack.iter().position(|(k, _, _)| *k == key).unwrap_or(0);
                let mut chain: Vec<String> = self.stack[start..].iter().map(|(_, n, _)| format!("`{n}`")).collect();
                chain.push(chain[0].clone());
                let mut d = Diagnostic::new(
                    Code::ImportCycle,
                    format!("import cycle: {}", chain.join(" uses ")),
                    span,
                    "this `use` closes the cycle",
                )
                .with_help(
                    "files cannot use each other in a circle; move the shared declarations into a file both use",
                );
                for (_, name, via) in &self.stack[start + 1..] {
                    // Labels in other files would render as separate reports; the chain in
                    // the message already names every file.
                    if let Some(via) = via.filter(|v| v.file == span.file) {
                        d = d.with_label(via, format!("`{name}` is used here"));
                    }
                }
                self.diagnostics.push(d);
            }
            None => self.visit(key, source, Some(span)),
        }
    }
}

pub fn absolute(path: &Path) -> PathBuf {
    let p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    normalize(&p)
}

/// Lexical normalisation: drop `.` and fold `..` (the file need not exist).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A path as messages show it: relative to the current folder when it is inside it.
pub(super) fn display_path(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(rel) = path.strip_prefix(&cwd) {
            return rel.display().to_string();
        }
    }
    path.display().to_string()
}
