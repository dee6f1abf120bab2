//! Defaults are literals of the language: reading them as values of their key's type.

use super::{Default, KeySpec, Type};
use crate::value::Value;

/// A literal written in the language: a number, string, bool or list of these (the
/// defaults of the table). Ints stay ints; `convert_default` widens them for float keys.
pub(crate) fn parse_literal(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let inner = inner.trim();
        if inner.is_empty() {
            return Some(Value::List(Vec::new()));
        }
        return inner.split(',').map(parse_literal).collect::<Option<Vec<_>>>().map(Value::List);
    }
    if let Some(s) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Some(Value::Str(s.to_string()));
    }
    match text {
        "{}" => return Some(Value::Record(std::collections::BTreeMap::new())),
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    let digits = text.replace('_', "");
    if !digits.contains(['.', 'e', 'E']) {
        if let Ok(i) = digits.parse::<i64>() {
            return Some(Value::Int(i));
        }
    }
    digits.parse::<f64>().ok().map(Value::Float)
}

/// Whether a literal fits a type and range (the schema's own consistency test).
#[cfg(test)]
pub(crate) fn literal_fits(value: &Value, ty: &Type, range: &super::Range) -> bool {
    match (value, ty) {
        (Value::Int(i), Type::Int) => range.contains(*i as f64),
        (Value::Int(i), Type::Float) => range.contains(*i as f64),
        (Value::Float(f), Type::Float) => range.contains(*f),
        (Value::Bool(_), Type::Bool) => true,
        (Value::Str(_), Type::Str | Type::Path) => true,
        (Value::Str(s), Type::Enum(options)) => options.contains(&s.as_str()),
        (Value::List(items), Type::List(inner)) => items.iter().all(|v| literal_fits(v, inner, range)),
        (v, Type::Union(alts)) => alts.iter().any(|t| literal_fits(v, t, range)),
        (Value::Record(_), Type::Record) => true,
        (Value::Config(c), Type::Config(kind)) => {
            c.kind == *kind
                && c.params.iter().all(|(name, value)| {
                    super::key(kind, &c.variant, name).is_some_and(|k| literal_fits(value, &k.ty, &k.range))
                })
        }
        (Value::Record(entries), Type::StageRecord(_)) => entries.is_empty(),
        _ => false,
    }
}

/// The default of a key as a value of its type (ints widened for float keys). A config
/// key's default is a block of its kind (`cosine { steps = 1000 }`) whose unwritten keys
/// take their own defaults, as the resolver fills a block the user writes.
pub fn default_value(spec: &KeySpec) -> Option<Value> {
    let Default::Value(text) = spec.default else { return None };
    if let Type::Config(kind) = spec.ty {
        return config_literal(kind, text);
    }
    let v = parse_literal(text)?;
    Some(widen(v, &spec.ty))
}

/// `VARIANT { KEY = LITERAL, … }` of a config kind, the other keys at their defaults; the
/// written values are single literals (no lists or nested blocks).
fn config_literal(kind: &str, text: &str) -> Option<Value> {
    let (variant, body) = text.trim().split_once('{')?;
    let spec = super::variant(kind, variant.trim())?;
    let body = body.trim().strip_suffix('}')?;
    let mut params = std::collections::BTreeMap::new();
    for entry in body.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry.split_once('=')?;
        let key = spec.key(key.trim())?;
        params.insert(key.name.to_string(), widen(parse_literal(value)?, &key.ty));
    }
    for key in &spec.keys {
        if !params.contains_key(key.name) {
            if let Some(value) = default_value(key) {
                params.insert(key.name.to_string(), value);
            }
        }
    }
    Some(Value::Config(crate::value::Config { kind: kind.to_string(), variant: spec.name.to_string(), params }))
}

pub(super) fn widen(v: Value, ty: &Type) -> Value {
    match (v, ty) {
        (Value::Int(i), Type::Float) => Value::Float(i as f64),
        (Value::List(items), Type::List(inner)) => Value::List(items.into_iter().map(|v| widen(v, inner)).collect()),
        (v, _) => v,
    }
}
