//! Hover: the schema's line on a kind, variant, key or value (type, default, range); a
//! name's declaration; a schedule's T and ᾱ_T.

use std::fmt::Write as _;

use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};

use super::analysis::{Analysis, ROOT};
use super::model_size::ModelSizes;
use super::nodes::{self, Declaration, Node};
use crate::lang::value::Config;
use crate::schema::{self, KeySpec, KindSpec, Role};
use crate::syntax::ast::{ItemKind, Span};

pub fn hover(a: &Analysis, offset: usize, sizes: &ModelSizes) -> Option<Hover> {
    let decls = nodes::declarations(a);
    let (text, span) = match nodes::node_at(a, &decls, offset)? {
        Node::Kind(ident) => (kind_doc(schema::writable_kind(&ident.name)?), ident.span),
        Node::Variant { kind, ident } => match schema::variant(kind, &ident.name) {
            Some(v) => {
                let keys: Vec<&str> = v.keys.iter().map(|k| k.name).collect();
                (format!("```difflow\n{kind} = {}\n```\n{}\n\nkeys: {}", v.name, v.doc, keys.join(", ")), ident.span)
            }
            None => (name_doc(a, &decls, &ident.name, sizes)?, ident.span),
        },
        Node::Key { kind, variant, key } => (key_doc(kind, schema::key(kind, variant?, &key.name)?), key.span),
        Node::Literal { kind, variant, key, value } => {
            (key_doc(kind, schema::key(kind, variant?, &key.name)?), value.span)
        }
        Node::Reference(name) | Node::Declared(name) => (name_doc(a, &decls, &name.name, sizes)?, name.span),
        Node::UsePath { path, span } => (use_doc(a, path), span),
    };
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: text }),
        range: Some(a.range(span)),
    })
}

fn kind_doc(kind: &KindSpec) -> String {
    let role = match kind.role {
        Role::Config => "config",
        Role::Stage => "stage",
    };
    let variants: Vec<&str> = kind.variants.iter().map(|v| v.name).collect();
    let mut text =
        format!("```difflow\n{}\n```\n{} ({role})\n\nvariants: {}", kind.name, kind.doc, variants.join(", "));
    if let Some(d) = kind.default_variant {
        let _ = write!(text, " (default {d})");
    }
    text
}

fn key_doc(kind: &str, key: &KeySpec) -> String {
    let mut text = format!("```difflow\n{} : {}\n```\n{}\n\n", key.name, key.ty.short(), key.doc);
    match &key.default {
        schema::Default::Required => text.push_str("required"),
        schema::Default::Unset => text.push_str("optional (unset by default)"),
        schema::Default::Value(v) => {
            let _ = write!(text, "default `{v}`");
        }
    }
    if !key.range.is_any() {
        let _ = write!(text, " · range {}", key.range);
    }
    if !key.in_key {
        let _ = write!(text, " · not part of the {kind}'s cache key");
    }
    if key.replicable {
        let _ = write!(text, "\n\n{}", schema::REPLICATE_DOC);
    }
    text
}

/// A name's declaration as written (its first line), where it is, for a schedule its T
/// and ᾱ_T, for a model its parameter count.
fn name_doc(a: &Analysis, decls: &[Declaration<'_>], name: &str, sizes: &ModelSizes) -> Option<String> {
    let d = nodes::declaration(decls, name)?;
    let source = a.loaded.sources.get(d.item.span.file);
    let written = &source.text[d.item.span.start..d.item.span.end];
    let first_line = written.lines().next().unwrap_or_default().trim_end_matches('{').trim_end();
    let line = source.text[..d.item.span.start].matches('\n').count() + 1;
    let mut text = format!("```difflow\n{first_line}\n```\ndeclared at {}:{line}", source.name);
    for comment in &d.item.leading_comments {
        let _ = write!(text, "\n\n{}", comment.text.trim());
    }
    if let Some(kind) = d.kind.and_then(schema::writable_kind) {
        let variant = nodes::variant_of(decls, kind.name, d.variant.map(|v| v.name.as_str()));
        if let Some(v) = variant.and_then(|v| kind.variant(v)) {
            let _ = write!(text, "\n\n{} `{}`: {}", kind.name, v.name, v.doc);
        }
        let config = resolved_config(a, d.item.span, name);
        if kind.name == "schedule" {
            match config {
                Ok(config) => text.push_str(&schedule_doc(config).unwrap_or_default()),
                Err(why) => {
                    let _ = write!(text, "\n\nT and ᾱ_T unavailable: {why}");
                }
            }
        }
        let file = a.loaded.sources.get(ROOT).path.as_deref();
        match (file, config) {
            (Some(file), Ok(_)) => {
                let checked = a.loaded.pipeline.is_some();
                let pipeline = a.loaded.pipeline.as_ref().or(a.loaded.partial.as_ref());
                if let Some(size) = pipeline.and_then(|p| sizes.describe(file, p, name, checked)) {
                    let _ = write!(text, "\n\n{size}");
                }
            }
            (_, Err(why)) if kind.name == "model" => {
                let _ = write!(text, "\n\nparameter count unavailable: {why}");
            }
            _ => {}
        }
    }
    if let ItemKind::Let { value, .. } = &d.item.kind {
        let _ = write!(text, "\n\nvalue `{}`", span_text(a, value.span));
    }
    Some(text)
}

/// The resolved config `name` declared at `at`, when that declaration has no error of its
/// own (errors elsewhere in the file do not matter); else why not.
fn resolved_config<'a>(a: &'a Analysis, at: Span, name: &str) -> Result<&'a Config, &'static str> {
    let own_error = a.loaded.diagnostics.iter().any(|d| {
        let p = d.primary.span;
        p.file == at.file && p.start >= at.start && p.end <= at.end
    });
    if own_error {
        return Err("this declaration has errors");
    }
    let resolved = a.loaded.pipeline.as_ref().or(a.loaded.partial.as_ref());
    resolved.and_then(|p| p.configs.get(name)).ok_or("the file has errors")
}

/// `T = 1000 · ᾱ_T = 4.04e-5` from the float64 tables `difflow show` prints.
fn schedule_doc(config: &Config) -> Option<String> {
    let spec = crate::diffusion::schedule::ScheduleSpec::from_config(&config.to_json()).ok()?;
    let tables = spec.tables();
    let steps = tables.steps();
    let last = *tables.alphas_cumprod.last()?;
    Some(format!("\n\nT = {steps} · ᾱ_T = {last:.4e} · ᾱ_1 = {:.6}", tables.alphas_cumprod[0]))
}

fn span_text(a: &Analysis, span: Span) -> &str {
    &a.text(span.file)[span.start..span.end]
}

fn use_doc(a: &Analysis, path: &str) -> String {
    match a.loaded.sources.files().iter().find(|f| f.name == path || f.name.ends_with(path.trim_start_matches("./"))) {
        Some(f) => {
            let names: Vec<String> = a
                .loaded
                .files
                .iter()
                .filter(|file| a.loaded.sources.get(file.file).name == f.name)
                .flat_map(|file| &file.items)
                .filter_map(|i| match &i.kind {
                    ItemKind::Decl(d) => Some(d.name.name.clone()),
                    ItemKind::Let { name, .. } => Some(name.name.clone()),
                    ItemKind::Use { .. } => None,
                })
                .collect();
            format!("`{}` declares {}", f.name, if names.is_empty() { "nothing".into() } else { names.join(", ") })
        }
        None => format!("`{path}` (not loaded)"),
    }
}
