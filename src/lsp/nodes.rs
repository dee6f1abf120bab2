//! The syntax node under the cursor, and the declarations of a pipeline: what hover and
//! navigation are about.

use crate::schema::{self, Type};
use crate::syntax::ast::{self, Block, Ident, ItemKind, Span, Value, ValueKind};

use super::analysis::Analysis;

/// A `let` or a declaration, in any loaded file.
pub struct Declaration<'a> {
    pub name: &'a Ident,
    /// The kind; `None` for a `let`.
    pub kind: Option<&'a str>,
    /// The variant or preset as written.
    pub variant: Option<&'a Ident>,
    pub item: &'a ast::Item,
}

pub fn declarations(a: &Analysis) -> Vec<Declaration<'_>> {
    let mut out = Vec::new();
    for file in &a.loaded.files {
        for item in &file.items {
            match &item.kind {
                ItemKind::Let { name, .. } => out.push(Declaration { name, kind: None, variant: None, item }),
                ItemKind::Decl(d) => out.push(Declaration {
                    name: &d.name,
                    kind: Some(d.kind.name.as_str()),
                    variant: d.variant.as_ref(),
                    item,
                }),
                ItemKind::Use { .. } => {}
            }
        }
    }
    out
}

pub fn declaration<'a>(decls: &'a [Declaration<'a>], name: &str) -> Option<&'a Declaration<'a>> {
    decls.iter().find(|d| d.name.name == name)
}

/// The schema variant a declaration of `kind` written `= written` ends up with, following
/// presets (`unet small = unet_base`) back to a variant.
pub fn variant_of(decls: &[Declaration<'_>], kind: &str, written: Option<&str>) -> Option<&'static str> {
    let mut written = written;
    for _ in 0..32 {
        let spec = schema::kind(kind)?;
        let Some(name) = written else { return spec.default_variant };
        if let Some(v) = spec.variant(name) {
            return Some(v.name);
        }
        let preset = declaration(decls, name).filter(|d| d.kind == Some(kind))?;
        written = preset.variant.map(|v| v.name.as_str());
    }
    None
}

/// The config kind a key's value may be written inline as (`sampler = ddim { … }`).
pub fn config_kind(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Config(k) => Some(k),
        Type::List(inner) => config_kind(inner),
        Type::Union(alts) => alts.iter().find_map(config_kind),
        _ => None,
    }
}

/// What the cursor is on.
pub enum Node<'a> {
    UsePath {
        path: &'a str,
        span: Span,
    },
    Kind(&'a Ident),
    /// The name of a declaration or a `let` where it is declared.
    Declared(&'a Ident),
    /// A variant (or preset) of `kind`, after `=` or inline.
    Variant {
        kind: &'a str,
        ident: &'a Ident,
    },
    Key {
        kind: &'a str,
        variant: Option<&'static str>,
        key: &'a Ident,
    },
    /// A literal value of a key.
    Literal {
        kind: &'a str,
        variant: Option<&'static str>,
        key: &'a Ident,
        value: &'a Value,
    },
    /// A name used as a value.
    Reference(&'a Ident),
}

fn inside(span: Span, offset: usize) -> bool {
    span.start <= offset && offset <= span.end
}

/// The node of the root file at a byte offset.
pub fn node_at<'a>(a: &'a Analysis, decls: &[Declaration<'_>], offset: usize) -> Option<Node<'a>> {
    let file = a.file(super::analysis::ROOT)?;
    let item = file.items.iter().find(|i| inside(i.span, offset))?;
    match &item.kind {
        ItemKind::Use { path, path_span } => Some(Node::UsePath { path, span: *path_span }),
        ItemKind::Let { name, value } => {
            if inside(name.span, offset) {
                Some(Node::Declared(name))
            } else {
                in_value(value, None, offset)
            }
        }
        ItemKind::Decl(d) => {
            if inside(d.kind.span, offset) {
                return Some(Node::Kind(&d.kind));
            }
            if inside(d.name.span, offset) {
                return Some(Node::Declared(&d.name));
            }
            if let Some(v) = d.variant.as_ref().filter(|v| inside(v.span, offset)) {
                return Some(Node::Variant { kind: &d.kind.name, ident: v });
            }
            let variant = variant_of(decls, &d.kind.name, d.variant.as_ref().map(|v| v.name.as_str()));
            in_block(&d.block, &d.kind.name, variant, decls, offset)
        }
    }
}

fn in_block<'a>(
    block: &'a Block,
    kind: &'a str,
    variant: Option<&'static str>,
    decls: &[Declaration<'_>],
    offset: usize,
) -> Option<Node<'a>> {
    let entry = block.entries.iter().find(|e| inside(e.span, offset))?;
    if inside(entry.key.span, offset) {
        return Some(Node::Key { kind, variant, key: &entry.key });
    }
    let ty = variant.and_then(|v| schema::key(kind, v, &entry.key.name)).map(|k| &k.ty);
    let context = Some((kind, variant, &entry.key, ty.and_then(config_kind)));
    in_value_with(&entry.value, context, decls, offset)
}

type ValueContext<'a> = (&'a str, Option<&'static str>, &'a Ident, Option<&'static str>);

fn in_value<'a>(value: &'a Value, context: Option<ValueContext<'a>>, offset: usize) -> Option<Node<'a>> {
    // A `let` value holds no inline block whose kind is known, so no declarations are needed.
    in_value_with(value, context, &[], offset)
}

fn in_value_with<'a>(
    value: &'a Value,
    context: Option<ValueContext<'a>>,
    decls: &[Declaration<'_>],
    offset: usize,
) -> Option<Node<'a>> {
    if !inside(value.span, offset) {
        return None;
    }
    match &value.kind {
        ValueKind::Ident(name) => Some(Node::Reference(name)),
        ValueKind::List(items) | ValueKind::Sweep(items) => {
            items.iter().find_map(|v| in_value_with(v, context, decls, offset))
        }
        ValueKind::Inline { variant, block } => {
            let kind = context.and_then(|(.., config)| config)?;
            if inside(variant.span, offset) {
                return Some(Node::Variant { kind, ident: variant });
            }
            let resolved = variant_of(decls, kind, Some(&variant.name));
            in_block(block, kind, resolved, decls, offset)
        }
        _ => context.map(|(kind, variant, key, _)| Node::Literal { kind, variant, key, value }),
    }
}

/// Every name written in a file: declared (`true`) or used (`false`).
pub fn names(file: &ast::File) -> Vec<(&Ident, bool)> {
    let mut out = Vec::new();
    for item in &file.items {
        match &item.kind {
            ItemKind::Let { name, value } => {
                out.push((name, true));
                value_names(value, &mut out);
            }
            ItemKind::Decl(d) => {
                out.push((&d.name, true));
                if let Some(v) = &d.variant {
                    out.push((v, false));
                }
                block_names(&d.block, &mut out);
            }
            ItemKind::Use { .. } => {}
        }
    }
    out
}

fn block_names<'a>(block: &'a Block, out: &mut Vec<(&'a Ident, bool)>) {
    for e in &block.entries {
        value_names(&e.value, out);
    }
}

fn value_names<'a>(value: &'a Value, out: &mut Vec<(&'a Ident, bool)>) {
    match &value.kind {
        ValueKind::Ident(name) => out.push((name, false)),
        ValueKind::List(items) | ValueKind::Sweep(items) => items.iter().for_each(|v| value_names(v, out)),
        ValueKind::Replicate(count) => value_names(count, out),
        ValueKind::Inline { block, .. } | ValueKind::Record(block) => block_names(block, out),
        _ => {}
    }
}
