//! The language front end after parsing: modules (`use`), name resolution, presets,
//! sweeps, type checking against the schema, and the cross-stage checks. The entry points
//! are [`load`] (a pipeline file) and [`load_source`] (text, for tests).

pub mod check;
pub mod input_path;
pub mod modules;
pub mod pipeline;
pub mod python_files;
pub mod resolve;
pub mod suggest;
pub mod use_policy;
pub use difflow_core::value;

use std::path::{Path, PathBuf};

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, ItemKind, Span};
use crate::syntax::{SourceFile, SourceMap};

pub use pipeline::Pipeline;

/// The outcome of loading a pipeline: its sources (for rendering diagnostics), the
/// checked pipeline when there is no error, and every diagnostic.
pub struct Loaded {
    pub sources: SourceMap,
    pub pipeline: Option<Pipeline>,
    pub diagnostics: Vec<Diagnostic>,
    /// Problems that do not stop a run (the pipeline is checked when `diagnostics` is empty).
    pub warnings: Vec<Diagnostic>,
    /// The syntax trees of the files that parsed, used-before-user.
    pub files: Vec<ast::File>,
    /// When the file has errors (`pipeline` is `None`): what did resolve, the declarations
    /// without errors of their own among them. Hover shows their figures.
    pub partial: Option<Pipeline>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        !self.diagnostics.is_empty()
    }
}

/// Load, resolve and check a pipeline file. `overrides` are `--set NAME=VALUE` as written.
pub fn load(path: &Path, overrides: &[String]) -> Loaded {
    load_with_overlay(path, overrides, Default::default())
}

/// [`load`], reading the files in `overlay` (absolute paths) from there instead of the
/// disk: how an editor checks unsaved buffers, the file itself and those it `use`s.
pub fn load_with_overlay(
    path: &Path,
    overrides: &[String],
    overlay: std::collections::HashMap<PathBuf, String>,
) -> Loaded {
    let mut sources = SourceMap::default();
    let mut loader = modules::Loader::new(&mut sources);
    loader.overlay = overlay;
    if let Err(message) = loader.load_root(modules::Root::Path(path)) {
        let id = loader.sources.add(SourceFile { name: path.display().to_string(), path: None, text: String::new() });
        let d = Diagnostic::new(Code::MissingFile, message, Span::new(id, 0, 0), "")
            .with_help("check the path of the pipeline file");
        return Loaded {
            sources,
            pipeline: None,
            diagnostics: vec![d],
            warnings: Vec::new(),
            files: Vec::new(),
            partial: None,
        };
    }
    let root_dir = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| modules::normalize(&cwd().join(path).join("..")));
    finish(loader, overrides, root_dir)
}

/// Load, resolve and check pipeline text (relative `use`s and paths resolve against the
/// current folder).
pub fn load_source(name: &str, text: &str, overrides: &[String]) -> Loaded {
    let mut sources = SourceMap::default();
    let mut loader = modules::Loader::new(&mut sources);
    let base = cwd();
    loader
        .load_root(modules::Root::Text { name, text, base: base.clone() })
        .expect("loading text does not touch the disk");
    finish(loader, overrides, base)
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}

fn finish(loader: modules::Loader<'_>, overrides: &[String], root: PathBuf) -> Loaded {
    let modules::Loader { sources, mut diagnostics, files, syntax_errors, settings_error, .. } = loader;
    let source = pipeline_source(sources, overrides);
    // The settings beside the pipeline, and those of the project when it is a folder above
    // (which decide where a `use` may read): each error is reported, once.
    let settings = crate::project::settings::Settings::load(&root);
    let mut settings_errors: Vec<(PathBuf, String)> = settings_error.into_iter().collect();
    if let Err(e) = &settings {
        let file = root.join(crate::project::settings::FILE_NAME);
        if settings_errors.iter().all(|(f, _)| *f != file) {
            settings_errors.push((file, e.clone()));
        }
    }
    diagnostics.extend(settings_errors.iter().map(|(file, e)| settings_diagnostic(sources, file, e)));
    let (override_items, override_diags) = parse_overrides(sources, overrides);
    // Names after a syntax error (or a `--set` that does not parse) would be missing:
    // report those errors alone.
    let unparsed = syntax_errors || !override_diags.is_empty();
    diagnostics.extend(override_diags);
    if unparsed {
        sort(&mut diagnostics);
        return Loaded {
            sources: sources.clone(),
            pipeline: None,
            diagnostics,
            warnings: Vec::new(),
            files,
            partial: None,
        };
    }
    // A broken difflow.toml is reported above; the check goes on with the default data
    // root and size limits.
    let settings = settings.ok();
    let data_root = settings.as_ref().map_or_else(|| root.clone(), |s| s.data_root.clone());
    let limits = settings.map(|s| s.limits).unwrap_or_default();
    let (mut resolved, resolve_diags) = resolve::resolve(&files, &override_items, root, data_root);
    resolved.pipeline.source = source;
    diagnostics.extend(resolve_diags);
    let checked = check::check(&resolved.pipeline, &resolved.spans, &limits);
    diagnostics.extend(checked.errors);
    let mut warnings = checked.warnings;
    sort(&mut diagnostics);
    sort(&mut warnings);
    for d in diagnostics.iter_mut().chain(&mut warnings) {
        fold_other_files(d, sources);
    }
    let (pipeline, partial) =
        if diagnostics.is_empty() { (Some(resolved.pipeline), None) } else { (None, Some(resolved.pipeline)) };
    Loaded { sources: sources.clone(), pipeline, diagnostics, warnings, files, partial }
}

/// The pipeline file (the first one loaded), the files on disk it `use`s, and the
/// `--set`s.
fn pipeline_source(sources: &SourceMap, overrides: &[String]) -> pipeline::Source {
    let files = sources
        .files()
        .iter()
        .enumerate()
        .filter(|(i, f)| *i == 0 || f.path.is_some())
        .map(|(_, f)| (f.name.clone(), f.text.clone()))
        .collect();
    pipeline::Source { files, sets: overrides.to_vec() }
}

/// A `difflow.toml` that cannot be used, as a diagnostic at the start of that file (its
/// text is not shown: it may be anything).
fn settings_diagnostic(sources: &mut SourceMap, file: &Path, error: &str) -> Diagnostic {
    let name = modules::display_path(file);
    let id = sources.add(SourceFile { name, path: Some(file.to_path_buf()), text: String::new() });
    let (message, help) = match error.split_once("\nhelp: ") {
        Some((message, help)) => (message, help.to_string()),
        None => (
            error,
            format!(
                "{} is a TOML file of at most {} bytes",
                crate::project::settings::FILE_NAME,
                difflow_core::files::Purpose::Settings.limit()
            ),
        ),
    };
    Diagnostic::new(Code::BadSettings, message, Span::new(id, 0, 0), "").with_help(help)
}

/// Secondary labels in another file than the primary one would render as separate reports;
/// they become a line of the help instead (`first defined here: std/unet.diff:34`).
fn fold_other_files(d: &mut Diagnostic, sources: &SourceMap) {
    let file = d.primary.span.file;
    let (here, elsewhere): (Vec<_>, Vec<_>) =
        std::mem::take(&mut d.secondary).into_iter().partition(|l| l.span.file == file);
    d.secondary = here;
    for l in elsewhere {
        let src = sources.get(l.span.file);
        let line = src.text[..l.span.start.min(src.text.len())].matches('\n').count() + 1;
        let note = format!("{}: {}:{line}", l.text, src.name);
        d.help = Some(match d.help.take() {
            Some(h) => format!("{h}\n{note}"),
            None => note,
        });
    }
}

/// At most this many diagnostics are reported; the rest are counted in a last one.
pub const MAX_DIAGNOSTICS: usize = 100;

/// Diagnostics in source order, each reported once, at most [`MAX_DIAGNOSTICS`].
fn sort(diags: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert((d.code, d.primary.span, d.message.clone())));
    diags.sort_by_key(|d| (d.primary.span.file, d.primary.span.start));
    if diags.len() > MAX_DIAGNOSTICS {
        let more = diags.len() - MAX_DIAGNOSTICS;
        let next = diags[MAX_DIAGNOSTICS].primary.span;
        diags.truncate(MAX_DIAGNOSTICS);
        diags.push(
            Diagnostic::new(
                Code::TooManyErrors,
                format!("{more} more problem{} not shown", if more == 1 { "" } else { "s" }),
                next,
                "the next one is here",
            )
            .with_help(format!("fix the first {MAX_DIAGNOSTICS} and check again")),
        );
    }
}

/// `NAME=VALUE` → a `let NAME = VALUE` item parsed from a source file of its own (named
/// `--set NAME=VALUE`), so that diagnostics can point into it.
fn parse_overrides(sources: &mut SourceMap, overrides: &[String]) -> (Vec<ast::Item>, Vec<Diagnostic>) {
    let mut items = Vec::new();
    let mut diags = Vec::new();
    for o in overrides {
        let Some((name, value)) = o.split_once('=') else {
            let id = sources.add(SourceFile { name: "--set".into(), path: None, text: o.clone() });
            diags.push(
                Diagnostic::new(
                    Code::BadOverride,
                    format!("`--set {o}` is not NAME=VALUE"),
                    Span::new(id, 0, o.len()),
                    "missing `=`",
                )
                .with_help("write `--set NAME=VALUE`, e.g. `--set T=500`"),
            );
            continue;
        };
        let text = format!("let {} = {}", name.trim(), value.trim());
        let id = sources.add(SourceFile { name: format!("--set {o}"), path: None, text: text.clone() });
        match crate::syntax::parse(id, &text) {
            Ok(file) => items.extend(file.items.into_iter().filter(|i| matches!(i.kind, ItemKind::Let { .. }))),
            Err(d) => diags.extend(d),
        }
    }
    (items, diags)
}

#[cfg(test)]
mod tests;
