//! Completion from the schema and the pipeline's names: kinds at the start of a line,
//! variants (and presets) after `KIND NAME =`, the keys of the enclosing block's variant
//! (those not yet written first), choice values, names of declarations of the kind a
//! key wants, and files after `use`.

use std::path::Path;

use lsp_types::{CompletionItem, CompletionItemKind, CompletionResponse, Documentation};

use super::analysis::{Analysis, ROOT};
use super::context::{self, Slot};
use super::nodes;
use crate::lang::modules::{self, STDLIB};
use crate::lang::use_policy::UsePolicy;
use crate::schema::{self, Type};

/// A declared name as completion needs it.
struct Name {
    name: String,
    /// `None` for a `let`.
    kind: Option<String>,
    variant: Option<String>,
}

pub fn complete(a: &Analysis, offset: usize) -> CompletionResponse {
    let text = a.text(ROOT);
    let cursor = context::at(text, offset);
    let names = names(a);
    let items = match cursor.slot {
        Slot::Nothing => Vec::new(),
        Slot::UsePath => use_paths(a),
        Slot::Word if cursor.blocks.is_empty() => kinds(),
        Slot::Word => match block_variant(&cursor.blocks, &names) {
            Some((kind, Some(variant))) => {
                keys(kind, variant, &context::written_keys(text, *cursor.block_starts.last().expect("in a block")))
            }
            _ => Vec::new(),
        },
        Slot::Value { lhs, .. } if cursor.blocks.is_empty() => match lhs.as_slice() {
            [kind, name] if schema::writable_kind(kind).is_some() => variants_and_presets(kind, name, &names),
            _ => Vec::new(),
        },
        Slot::Value { lhs, in_string } => {
            let key = lhs.last().copied().unwrap_or_default();
            match block_variant(&cursor.blocks, &names) {
                Some((kind, Some(variant))) => match schema::key(kind, variant, key) {
                    Some(spec) => {
                        let mut items = values(&spec.ty, in_string, &names);
                        if !in_string {
                            items.extend(lets(&names));
                        }
                        if spec.replicable && !in_string {
                            items.push(item("replicate(3)", CompletionItemKind::KEYWORD, schema::REPLICATE_DOC));
                        }
                        items
                    }
                    None => Vec::new(),
                },
                _ => Vec::new(),
            }
        }
    };
    CompletionResponse::Array(items)
}

/// Declarations of every loaded file, and of the root read from its text when it does not
/// parse (the usual state while typing).
fn names(a: &Analysis) -> Vec<Name> {
    let mut out: Vec<Name> = nodes::declarations(a)
        .iter()
        .map(|d| Name {
            name: d.name.name.clone(),
            kind: d.kind.map(str::to_string),
            variant: d.variant.map(|v| v.name.clone()),
        })
        .collect();
    if a.file(ROOT).is_none() {
        let text = a.text(ROOT);
        out.extend(text.lines().filter_map(header_of_line));
        let folder = a.loaded.sources.get(ROOT).path.as_ref().and_then(|p| p.parent());
        let policy = folder.map(|f| (f, UsePolicy::for_pipeline(f).0));
        for used in text.lines().filter_map(|l| l.strip_prefix("use \"")?.split('"').next()) {
            out.extend(used_text(policy.as_ref(), used).lines().filter_map(header_of_line));
        }
    }
    out
}

/// The text of a file the root uses (read again: a root that does not parse loads none),
/// by the rule `check` reads it with: nothing where `check` would refuse the `use`.
fn used_text(policy: Option<&(&Path, UsePolicy)>, written: &str) -> String {
    if let Some((_, text)) = STDLIB.iter().find(|(n, _)| *n == written) {
        return text.to_string();
    }
    let Some((folder, policy)) = policy else { return String::new() };
    policy.read(written, &modules::normalize(&folder.join(written))).map(|(_, text)| text).unwrap_or_default()
}

/// `train t = base {` or `let T = 5` at the start of a line.
fn header_of_line(line: &str) -> Option<Name> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let (lhs, rhs) = match line.split_once('=') {
        Some((l, r)) => (l, Some(r)),
        None => (line.split('{').next()?, None),
    };
    let words: Vec<&str> = lhs.split_whitespace().collect();
    let [kind, name] = words.as_slice() else { return None };
    let variant = rhs.and_then(|r| r.split(|c: char| !context::is_ident_char(c)).find(|w| !w.is_empty()));
    if *kind == "let" {
        return Some(Name { name: name.to_string(), kind: None, variant: None });
    }
    schema::writable_kind(kind)?;
    Some(Name { name: name.to_string(), kind: Some(kind.to_string()), variant: variant.map(str::to_string) })
}

fn variant_of(names: &[Name], kind: &str, written: Option<&str>) -> Option<&'static str> {
    let mut written = written.map(str::to_string);
    for _ in 0..32 {
        let spec = schema::kind(kind)?;
        let Some(name) = written else { return spec.default_variant };
        if let Some(v) = spec.variant(&name) {
            return Some(v.name);
        }
        written = names.iter().find(|n| n.name == name && n.kind.as_deref() == Some(kind))?.variant.clone();
    }
    None
}

/// The kind and variant of the innermost block, from the headers outermost first.
fn block_variant(headers: &[&str], names: &[Name]) -> Option<(&'static str, Option<&'static str>)> {
    let mut current: Option<(&'static str, Option<&'static str>)> = None;
    for header in headers {
        let (lhs, rhs) = match header.split_once('=') {
            Some((l, r)) => (l.trim(), Some(r.trim())),
            None => (header.trim(), None),
        };
        current = match current {
            None => {
                let kind = schema::writable_kind(lhs.split_whitespace().next()?)?.name;
                Some((kind, variant_of(names, kind, rhs)))
            }
            Some((kind, variant)) => {
                let key = schema::key(kind, variant?, lhs)?;
                let inner = nodes::config_kind(&key.ty)?;
                Some((inner, variant_of(names, inner, rhs)))
            }
        };
    }
    current
}

fn item(label: impl Into<String>, kind: CompletionItemKind, detail: impl Into<String>) -> CompletionItem {
    CompletionItem { label: label.into(), kind: Some(kind), detail: Some(detail.into()), ..Default::default() }
}

fn kinds() -> Vec<CompletionItem> {
    let mut items: Vec<CompletionItem> =
        schema::kinds().iter().filter(|k| !k.hidden).map(|k| item(k.name, CompletionItemKind::CLASS, k.doc)).collect();
    items.push(item("let", CompletionItemKind::KEYWORD, "let NAME = VALUE"));
    items.push(item("use", CompletionItemKind::KEYWORD, "use \"FILE.diff\""));
    items
}

fn keys(kind: &str, variant: &str, written: &[&str]) -> Vec<CompletionItem> {
    let Some(spec) = schema::variant(kind, variant) else { return Vec::new() };
    spec.keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let done = written.contains(&k.name);
            CompletionItem {
                sort_text: Some(format!("{}{i:03}", u8::from(done))),
                insert_text: Some(format!("{} = ", k.name)),
                documentation: Some(Documentation::String(k.doc.to_string())),
                ..item(k.name, CompletionItemKind::FIELD, k.ty.short())
            }
        })
        .collect()
}

/// In schema order, then the earlier declarations of the kind (presets).
fn variants_and_presets(kind: &str, declaring: &str, names: &[Name]) -> Vec<CompletionItem> {
    let Some(spec) = schema::writable_kind(kind) else { return Vec::new() };
    let mut items = variants(spec);
    items.extend(names.iter().filter(|n| n.kind.as_deref() == Some(kind) && n.name != declaring).map(|n| {
        CompletionItem {
            sort_text: Some(format!("1{}", n.name)),
            ..item(&n.name, CompletionItemKind::VARIABLE, format!("{kind} (preset)"))
        }
    }));
    items
}

fn variants(spec: &schema::KindSpec) -> Vec<CompletionItem> {
    let variant = |(i, v): (usize, &schema::VariantSpec)| CompletionItem {
        sort_text: Some(format!("0{i:03}")),
        ..item(v.name, CompletionItemKind::ENUM_MEMBER, v.doc)
    };
    spec.variants.iter().enumerate().map(variant).collect()
}

fn values(ty: &Type, in_string: bool, names: &[Name]) -> Vec<CompletionItem> {
    let declared_of = |kinds: &[&str]| -> Vec<CompletionItem> {
        names
            .iter()
            .filter(|n| n.kind.as_deref().is_some_and(|k| kinds.contains(&k)))
            .map(|n| CompletionItem {
                sort_text: Some(format!("0{}", n.name)),
                ..item(&n.name, CompletionItemKind::VARIABLE, n.kind.clone().unwrap_or_default())
            })
            .collect()
    };
    match ty {
        Type::Enum(options) => options
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let label = if in_string { o.to_string() } else { format!("\"{o}\"") };
                CompletionItem {
                    sort_text: Some(format!("0{i:03}")),
                    ..item(label, CompletionItemKind::ENUM_MEMBER, ty.short())
                }
            })
            .collect(),
        _ if in_string => Vec::new(),
        Type::Bool => ["true", "false"].iter().map(|b| item(*b, CompletionItemKind::KEYWORD, "bool")).collect(),
        Type::Stage(kinds) => declared_of(kinds),
        Type::Config(kind) => {
            let mut items = declared_of(&[kind]);
            if let Some(spec) = schema::kind(kind) {
                // Inline blocks after the named declarations.
                items.extend(
                    variants(spec)
                        .into_iter()
                        .map(|v| CompletionItem { sort_text: v.sort_text.map(|s| format!("1{s}")), ..v }),
                );
            }
            items
        }
        Type::List(inner) => values(inner, in_string, names),
        Type::Union(alts) => alts.iter().flat_map(|t| values(t, in_string, names)).collect(),
        _ => Vec::new(),
    }
}

fn lets(names: &[Name]) -> Vec<CompletionItem> {
    names
        .iter()
        .filter(|n| n.kind.is_none())
        .map(|n| CompletionItem {
            sort_text: Some(format!("9{}", n.name)),
            ..item(&n.name, CompletionItemKind::CONSTANT, "let")
        })
        .collect()
}

/// The stdlib files and the `.diff` files next to the buffer.
fn use_paths(a: &Analysis) -> Vec<CompletionItem> {
    let mut items: Vec<CompletionItem> =
        STDLIB.iter().map(|(name, _)| item(*name, CompletionItemKind::FILE, "standard library")).collect();
    let root = a.loaded.sources.get(ROOT);
    let folder = root.path.as_ref().and_then(|p| p.parent());
    if let Some(entries) = folder.and_then(|f| std::fs::read_dir(f).ok()) {
        let mut files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.ends_with(".diff")
                    && root.path.as_ref().and_then(|p| p.file_name()).is_none_or(|own| own != n.as_str())
            })
            .collect();
        files.sort();
        items.extend(files.into_iter().map(|n| item(n, CompletionItemKind::FILE, "next to this file")));
    }
    items
}
