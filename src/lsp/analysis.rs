//! Checking an open buffer with the checker of `difflow check`, and turning its
//! diagnostics into the protocol's: the same code and message, the help below the
//! message, the primary and secondary labels as related information.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lsp_types::{DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Range, Url};

use super::documents::Document;
use super::position::{Encoding, LineIndex};
use crate::diagnostics::Diagnostic;
use crate::lang::{self, modules, Loaded};
use crate::syntax::ast::{self, FileId, ItemKind, Span};

/// One check of a buffer (the root, file 0) and the files it uses.
pub struct Analysis {
    pub loaded: Loaded,
    /// The URI of each loaded source file (stdlib files as copies in a temporary folder).
    pub uris: Vec<Option<Url>>,
    pub encoding: Encoding,
}

/// The root of every analysis is the first source file.
pub const ROOT: FileId = 0;

pub fn analyze(uri: &Url, doc: &Document, overlay: HashMap<PathBuf, String>, encoding: Encoding) -> Analysis {
    let loaded = match &doc.path {
        Some(path) => lang::load_with_overlay(&shown_path(path), &[], overlay),
        None => lang::load_source(uri.as_str(), &doc.text, &[]),
    };
    let uris = loaded
        .sources
        .files()
        .iter()
        .enumerate()
        .map(|(id, f)| match &f.path {
            _ if id == ROOT => Some(uri.clone()),
            Some(path) => Url::from_file_path(path).ok(),
            None => stdlib_uri(&f.name),
        })
        .collect();
    Analysis { loaded, uris, encoding }
}

/// A path relative to the current folder when inside it, as `difflow check` run there
/// would name the file in its messages.
fn shown_path(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

/// Stdlib files live in the binary; an editor can only open files, so they are written
/// once per process to a temporary folder (for go-to-definition and related information).
pub fn stdlib_uri(name: &str) -> Option<Url> {
    static WRITTEN: OnceLock<HashMap<&'static str, Option<Url>>> = OnceLock::new();
    let written =
        WRITTEN.get_or_init(|| modules::STDLIB.iter().map(|(name, text)| (*name, write_stdlib(name, text))).collect());
    written.get(name).cloned().flatten()
}

fn write_stdlib(name: &str, text: &str) -> Option<Url> {
    let dir = std::env::temp_dir().join(format!("difflow-{}-stdlib", env!("CARGO_PKG_VERSION")));
    let path = dir.join(name);
    // Through the one rule for reading files: the shared temporary folder may hold anything.
    if difflow_core::files::read_text(&path, difflow_core::files::Purpose::Source).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(path.parent()?).ok()?;
        // Through a rename, so that another server never reads a half-written copy.
        let partial = path.with_extension(format!("{}.partial", std::process::id()));
        std::fs::write(&partial, text).ok()?;
        std::fs::rename(&partial, &path).ok()?;
    }
    Url::from_file_path(path).ok()
}

impl Analysis {
    pub fn text(&self, file: FileId) -> &str {
        &self.loaded.sources.get(file).text
    }

    pub fn range(&self, span: Span) -> Range {
        LineIndex::new(self.text(span.file), self.encoding).range(span.start, span.end)
    }

    pub fn location(&self, span: Span) -> Option<Location> {
        Some(Location { uri: self.uris.get(span.file)?.clone()?, range: self.range(span) })
    }

    /// The syntax tree of a loaded file, when it parsed.
    pub fn file(&self, id: FileId) -> Option<&ast::File> {
        self.loaded.files.iter().find(|f| f.file == id)
    }

    /// The protocol's diagnostics for the root buffer. A problem in a used file is shown
    /// on the `use` that brings the file in, its message naming where it is.
    pub fn diagnostics(&self) -> Vec<lsp_types::Diagnostic> {
        let index = LineIndex::new(self.text(ROOT), self.encoding);
        let errors = self.loaded.diagnostics.iter().map(|d| self.convert(d, &index, DiagnosticSeverity::ERROR));
        let warnings = self.loaded.warnings.iter().map(|d| self.convert(d, &index, DiagnosticSeverity::WARNING));
        errors.chain(warnings).collect()
    }

    fn convert(&self, d: &Diagnostic, root_index: &LineIndex, severity: DiagnosticSeverity) -> lsp_types::Diagnostic {
        let mut message = d.message.clone();
        let primary = d.primary.span;
        let range = if primary.file == ROOT {
            root_index.range(primary.start, primary.end)
        } else {
            let source = self.loaded.sources.get(primary.file);
            let line = source.text[..primary.start.min(source.text.len())].matches('\n').count() + 1;
            message = format!("{}:{line}: {message}", source.name);
            let at = self.use_bringing(primary.file).unwrap_or_default();
            root_index.range(at.start, at.end)
        };
        if let Some(help) = &d.help {
            message = format!("{message}\nhelp: {help}");
        }
        let related: Vec<_> = std::iter::once(&d.primary)
            .chain(&d.secondary)
            .filter(|l| !l.text.is_empty())
            .filter_map(|l| {
                Some(DiagnosticRelatedInformation { location: self.location(l.span)?, message: l.text.clone() })
            })
            .collect();
        lsp_types::Diagnostic {
            range,
            severity: Some(severity),
            code: Some(NumberOrString::String(d.code.as_str().to_string())),
            source: Some("difflow".into()),
            message,
            related_information: (!related.is_empty()).then_some(related),
            ..Default::default()
        }
    }

    /// The `use` of the root that leads to `file` (directly, or the first `use` when the
    /// file is reached through another one).
    fn use_bringing(&self, file: FileId) -> Option<Span> {
        let target = self.loaded.sources.get(file);
        let root = self.file(ROOT)?;
        let base = self.loaded.sources.get(ROOT).path.as_ref().and_then(|p| p.parent().map(Path::to_path_buf));
        let uses: Vec<(&str, Span)> = root
            .items
            .iter()
            .filter_map(|i| match &i.kind {
                ItemKind::Use { path, path_span } => Some((path.as_str(), *path_span)),
                _ => None,
            })
            .collect();
        let leads_there = |written: &str| match (&target.path, &base) {
            (Some(path), Some(base)) => modules::normalize(&base.join(written)) == *path,
            _ => written == target.name,
        };
        uses.iter().find(|(w, _)| leads_there(w)).or(uses.first()).map(|(_, s)| *s)
    }
}
