//! Go to definition, find references and the outline (document symbols).

use std::path::Path;

use lsp_types::{DocumentSymbol, DocumentSymbolResponse, GotoDefinitionResponse, Location, Range, SymbolKind, Url};

use super::analysis::{self, Analysis, ROOT};
use super::nodes::{self, Node};
use crate::lang::modules;
use crate::schema;
use crate::syntax::ast::{FileId, ItemKind};

/// The name the cursor is on: a reference, a declared name, or a preset after `=`.
fn name_at<'a>(node: &Node<'a>) -> Option<&'a str> {
    match node {
        Node::Reference(name) | Node::Declared(name) => Some(&name.name),
        Node::Variant { kind, ident } if schema::variant(kind, &ident.name).is_none() => Some(&ident.name),
        _ => None,
    }
}

pub fn definition(a: &Analysis, offset: usize) -> Option<GotoDefinitionResponse> {
    let decls = nodes::declarations(a);
    let node = nodes::node_at(a, &decls, offset)?;
    if let Node::UsePath { path, .. } = node {
        let uri = use_target(a, ROOT, path)?;
        return Some(GotoDefinitionResponse::Scalar(Location { uri, range: Range::default() }));
    }
    let declared = nodes::declaration(&decls, name_at(&node)?)?;
    a.location(declared.name.span).map(GotoDefinitionResponse::Scalar)
}

/// The file a `use` written in `file` reads.
fn use_target(a: &Analysis, file: FileId, written: &str) -> Option<Url> {
    if written.starts_with("std/") {
        return analysis::stdlib_uri(written);
    }
    let user = a.loaded.sources.get(file).path.as_ref()?;
    Url::from_file_path(modules::normalize(&user.parent().unwrap_or(Path::new("/")).join(written))).ok()
}

pub fn references(a: &Analysis, offset: usize, include_declaration: bool) -> Vec<Location> {
    let decls = nodes::declarations(a);
    let Some(node) = nodes::node_at(a, &decls, offset) else { return Vec::new() };
    if let Node::UsePath { path, .. } = node {
        let target = use_target(a, ROOT, path);
        return a
            .loaded
            .files
            .iter()
            .flat_map(|f| f.items.iter().map(move |i| (f.file, i)))
            .filter_map(|(file, item)| match &item.kind {
                ItemKind::Use { path, path_span } if use_target(a, file, path) == target => a.location(*path_span),
                _ => None,
            })
            .collect();
    }
    let Some(name) = name_at(&node) else { return Vec::new() };
    a.loaded
        .files
        .iter()
        .flat_map(nodes::names)
        .filter(|(ident, declared)| ident.name == name && (include_declaration || !declared))
        .filter_map(|(ident, _)| a.location(ident.span))
        .collect()
}

/// The declarations of the root file, each with its keys as children.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must still be written.
pub fn symbols(a: &Analysis) -> DocumentSymbolResponse {
    let Some(file) = a.file(ROOT) else { return DocumentSymbolResponse::Nested(Vec::new()) };
    let symbol = |name: &str, detail: Option<String>, kind, range, selection, children| DocumentSymbol {
        name: name.to_string(),
        detail,
        kind,
        tags: None,
        deprecated: None,
        range,
        selection_range: selection,
        children,
    };
    let mut out = Vec::new();
    for item in &file.items {
        let range = a.range(item.span);
        match &item.kind {
            ItemKind::Let { name, .. } => {
                out.push(symbol(&name.name, Some("let".into()), SymbolKind::CONSTANT, range, a.range(name.span), None))
            }
            ItemKind::Decl(d) => {
                let keys = d
                    .block
                    .entries
                    .iter()
                    .map(|e| symbol(&e.key.name, None, SymbolKind::FIELD, a.range(e.span), a.range(e.key.span), None))
                    .collect();
                let detail = match &d.variant {
                    Some(v) => format!("{} = {}", d.kind.name, v.name),
                    None => d.kind.name.clone(),
                };
                let kind = if schema::is_stage_kind(&d.kind.name) { SymbolKind::FUNCTION } else { SymbolKind::STRUCT };
                out.push(symbol(&d.name.name, Some(detail), kind, range, a.range(d.name.span), Some(keys)));
            }
            ItemKind::Use { path, path_span } => {
                out.push(symbol(path, Some("use".into()), SymbolKind::FILE, range, a.range(*path_span), None))
            }
        }
    }
    DocumentSymbolResponse::Nested(out)
}
