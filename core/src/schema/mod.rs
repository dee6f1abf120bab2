//! The one table of every kind, variant and key of the language: type, default, range,
//! one-line meaning and whether the key is part of a stage's cache key. The resolver
//! (which fills every default, so the engine holds none), the checker, `difflow doc`,
//! `docs/language.md` and the cache key all read it, so a kind or key is added here and
//! nowhere else.

mod literal;
pub(crate) mod table;

pub use literal::default_value;

use std::fmt;
use std::sync::LazyLock;

/// What `replicate(N)` means, in one line, wherever a replicable key is described (the
/// reference, hover, completion).
pub const REPLICATE_DOC: &str = "`replicate(N)`: N instances (N ≥ 2) with seeds 0, 1, …, N − 1, \
     reported as mean ± 95 % confidence interval";

/// Whether a kind is folded into its users (config) or runs and leaves artifacts (stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Config,
    Stage,
}

/// The type of a key's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Int,
    Float,
    Bool,
    /// Free text.
    Str,
    /// One of the listed strings.
    Enum(Vec<&'static str>),
    /// A file or folder, resolved against the pipeline's folder.
    Path,
    List(Box<Type>),
    /// A reference to a stage of one of these kinds (by name).
    Stage(Vec<&'static str>),
    /// A config of this kind: a named declaration or an inline block.
    Config(&'static str),
    /// Any of these (tried in order; e.g. `"all"`, an int or a list of ints).
    Union(Vec<Type>),
    /// `{ KEY = VALUE, … }`: named literals (numbers, strings, bools, lists of them),
    /// passed on as they are (a python model's constructor arguments).
    Record,
    /// `{ KEY = STAGE, … }`: named references to stages of these kinds (a script's inputs).
    StageRecord(Vec<&'static str>),
}

impl Type {
    pub fn list(of: Type) -> Type {
        Type::List(Box::new(of))
    }

    /// How the type reads in messages and in the reference.
    pub fn describe(&self) -> String {
        match self {
            Type::Int => "an int".into(),
            Type::Float => "a number".into(),
            Type::Bool => "true or false".into(),
            Type::Str => "a string".into(),
            Type::Enum(options) => one_of(&options.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>()),
            Type::Path => "a path (string)".into(),
            Type::List(inner) => format!("a list of {}", plural(inner)),
            Type::Stage(kinds) => {
                format!("{} stage", articled(&one_of(&kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>())))
            }
            Type::Config(kind) => format!("{} (a name or an inline block)", articled(kind)),
            Type::Union(alts) => one_of(&alts.iter().map(Type::describe).collect::<Vec<_>>()),
            Type::Record => "a record `{ KEY = VALUE, … }` of literals".into(),
            Type::StageRecord(_) => "a record `{ KEY = STAGE, … }` of stage names".into(),
        }
    }

    /// A short form for the reference table: `int`, `list of int`, `stage: dataset | sample`.
    pub fn short(&self) -> String {
        match self {
            Type::Int => "int".into(),
            Type::Float => "float".into(),
            Type::Bool => "bool".into(),
            Type::Str => "string".into(),
            Type::Enum(options) => options.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(" | "),
            Type::Path => "path".into(),
            Type::List(inner) => format!("list of {}", inner.short()),
            Type::Stage(kinds) => format!("{} stage", kinds.join(" | ")),
            Type::Config(kind) => kind.to_string(),
            Type::Union(alts) => alts.iter().map(Type::short).collect::<Vec<_>>().join(" | "),
            Type::Record => "record of literals".into(),
            Type::StageRecord(_) => "record of stages".into(),
        }
    }
}

fn plural(t: &Type) -> String {
    match t {
        Type::Int => "ints".into(),
        Type::Float => "numbers".into(),
        Type::Bool => "bools".into(),
        Type::Str => "strings".into(),
        Type::Path => "paths".into(),
        Type::Stage(kinds) => format!("{} stages", kinds.join(" or ")),
        Type::Config(kind) => format!("{kind}s"),
        other => format!("({})", other.describe()),
    }
}

fn articled(s: &str) -> String {
    let vowel = s.starts_with(['a', 'e', 'i', 'o', 'u']);
    if vowel {
        format!("an {s}")
    } else {
        format!("a {s}")
    }
}

fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// What a key holds when the block does not set it.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    /// The key must be written.
    Required,
    /// The key may be left out; then it is absent from the instance's parameters (the
    /// one-line doc says what that means).
    Unset,
    /// This value, written in the language (`0.02`, `"eps"`, `[1, 2, 2]`).
    Value(&'static str),
}

/// Allowed numeric range (applies to every number of a list too).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range {
    pub min: Option<Bound>,
    pub max: Option<Bound>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub value: f64,
    pub inclusive: bool,
}

impl Range {
    pub const ANY: Range = Range { min: None, max: None };

    pub fn contains(&self, x: f64) -> bool {
        let lo = self.min.is_none_or(|b| if b.inclusive { x >= b.value } else { x > b.value });
        let hi = self.max.is_none_or(|b| if b.inclusive { x <= b.value } else { x < b.value });
        lo && hi
    }

    pub fn is_any(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }
}

impl fmt::Display for Range {
    /// `≥ 1`, `0 ≤ x ≤ 1`, `> 0`, `0 ≤ x < 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |v: f64| if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") };
        match (self.min, self.max) {
            (None, None) => Ok(()),
            (Some(lo), None) => write!(f, "{} {}", if lo.inclusive { "≥" } else { ">" }, num(lo.value)),
            (None, Some(hi)) => write!(f, "{} {}", if hi.inclusive { "≤" } else { "<" }, num(hi.value)),
            (Some(lo), Some(hi)) => write!(
                f,
                "{} {} x {} {}",
                num(lo.value),
                if lo.inclusive { "≤" } else { "<" },
                if hi.inclusive { "≤" } else { "<" },
                num(hi.value)
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: &'static str,
    pub ty: Type,
    pub default: Default,
    pub range: Range,
    /// One line: what the key means (and what its default or absence means).
    pub doc: &'static str,
    /// False for keys that cannot change results (progress, device, sampling batch size):
    /// they are left out of the stage key.
    pub in_key: bool,
    /// What a set value means, counted from 1: bumped when the same value gives other
    /// results, so that a stage key names it `NAME@N` (N > 1) and old entries are not reused.
    pub meaning: u32,
    /// The value (a literal) that means what leaving the key out meant before the key
    /// existed: a stage holding it keys as if the key were absent ([`is_neutral`]).
    pub neutral: Option<&'static str>,
    /// What a reader calls it on a figure's axis or a sweep's column ("guidance strength
    /// w" for cfg's `scale`); unset: the key's name.
    pub title: Option<&'static str>,
    /// Whether `replicate(N)` may stand for the value (a stage's `seed`): N instances that
    /// differ only by their derived seeds, reported as mean ± confidence interval.
    pub replicable: bool,
}

impl KeySpec {
    /// The key's name as a figure shows it.
    pub fn display_title(&self) -> &'static str {
        self.title.unwrap_or(self.name)
    }
}

#[derive(Debug, Clone)]
pub struct VariantSpec {
    pub name: &'static str,
    pub doc: &'static str,
    /// Keys in reference order (the order `difflow doc` and `docs/language.md` list them in).
    pub keys: Vec<KeySpec>,
    /// Groups of keys of which exactly one must be set (`steps` or `epochs`).
    pub exactly_one_of: Vec<&'static [&'static str]>,
}

impl VariantSpec {
    pub fn key(&self, name: &str) -> Option<&KeySpec> {
        self.keys.iter().find(|k| k.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct KindSpec {
    pub name: &'static str,
    pub role: Role,
    pub doc: &'static str,
    /// The variant used when a declaration leaves `= VARIANT` out.
    pub default_variant: Option<&'static str>,
    pub variants: Vec<VariantSpec>,
    /// Implementation version: part of every stage key, bumped when results change.
    pub version: u32,
    /// Created by difflow itself (the `stats` stage), not writable in files.
    pub hidden: bool,
}

impl KindSpec {
    pub fn variant(&self, name: &str) -> Option<&VariantSpec> {
        self.variants.iter().find(|v| v.name == name)
    }
    pub fn is_stage(&self) -> bool {
        self.role == Role::Stage
    }
}

/// Every kind, in reference order.
pub fn kinds() -> &'static [KindSpec] {
    static KINDS: LazyLock<Vec<KindSpec>> = LazyLock::new(table::kinds);
    &KINDS
}

/// A kind by name (hidden kinds included).
pub fn kind(name: &str) -> Option<&'static KindSpec> {
    kinds().iter().find(|k| k.name == name)
}

/// A kind that may be written in a file (not hidden).
pub fn writable_kind(name: &str) -> Option<&'static KindSpec> {
    kind(name).filter(|k| !k.hidden)
}

pub fn variant(kind_name: &str, variant_name: &str) -> Option<&'static VariantSpec> {
    kind(kind_name)?.variant(variant_name)
}

pub fn key(kind_name: &str, variant_name: &str, key_name: &str) -> Option<&'static KeySpec> {
    variant(kind_name, variant_name)?.key(key_name)
}

pub fn is_stage_kind(name: &str) -> bool {
    kind(name).is_some_and(KindSpec::is_stage)
}

pub fn is_config_kind(name: &str) -> bool {
    kind(name).is_some_and(|k| k.role == Role::Config)
}

/// Names of the kinds a file may declare.
pub fn writable_kind_names() -> Vec<&'static str> {
    kinds().iter().filter(|k| !k.hidden).map(|k| k.name).collect()
}

/// `params` of `kind`'s `variant` with the default of every absent key filled in, in
/// nested config objects too (those with `kind` and `variant`): the JSON a pipeline's
/// resolver would have produced. For jobs written by hand (tests, benchmarks); the
/// engine never fills defaults itself.
pub fn with_defaults(kind: &str, variant: &str, params: &serde_json::Value) -> serde_json::Value {
    let mut out = params.clone();
    let Some(object) = out.as_object_mut() else { return out };
    for value in object.values_mut() {
        let nested = |v: &serde_json::Value| {
            let (Some(k), Some(var)) = (v.get("kind")?.as_str(), v.get("variant")?.as_str()) else { return None };
            Some(with_defaults(k, var, v))
        };
        match value {
            serde_json::Value::Array(items) => {
                for item in items {
                    if let Some(filled) = nested(item) {
                        *item = filled;
                    }
                }
            }
            v => {
                if let Some(filled) = nested(v) {
                    *v = filled;
                }
            }
        }
    }
    for spec in variant_keys(kind, variant) {
        if !object.contains_key(spec.name) {
            if let Some(default) = default_value(spec) {
                object.insert(spec.name.to_string(), default.to_json());
            }
        }
    }
    out
}

/// Whether `value` of `kind`'s `variant`'s `key` is that key's neutral value, left out of
/// stage keys so that entries made before the key existed stay valid.
pub fn is_neutral(kind: &str, variant: &str, key_name: &str, value: &crate::value::Value) -> bool {
    key(kind, variant, key_name)
        .and_then(|k| k.neutral.and_then(literal::parse_literal).map(|n| literal::widen(n, &k.ty)))
        .is_some_and(|n| &n == value)
}

fn variant_keys(kind: &str, variant: &str) -> &'static [KeySpec] {
    self::variant(kind, variant).map(|v| v.keys.as_slice()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses_and_fits_its_type_and_range() {
        for k in kinds() {
            for v in &k.variants {
                for key in &v.keys {
                    if let Default::Value(text) = key.default {
                        let value = literal::default_value(key).unwrap_or_else(|| {
                            panic!("{}.{}.{}: default {text} does not parse", k.name, v.name, key.name)
                        });
                        assert!(
                            literal::literal_fits(&value, &key.ty, &key.range),
                            "{}.{}.{}: default {text} is not {} in {}",
                            k.name,
                            v.name,
                            key.name,
                            key.ty.describe(),
                            key.range
                        );
                    }
                }
            }
            if let Some(d) = k.default_variant {
                assert!(k.variant(d).is_some(), "{}: default variant {d} missing", k.name);
            }
        }
    }

    #[test]
    fn key_names_are_unique_per_variant_and_variants_unique_per_kind() {
        for k in kinds() {
            let mut variants: Vec<_> = k.variants.iter().map(|v| v.name).collect();
            variants.sort();
            variants.dedup();
            assert_eq!(variants.len(), k.variants.len(), "{}", k.name);
            for v in &k.variants {
                let mut keys: Vec<_> = v.keys.iter().map(|k| k.name).collect();
                keys.sort();
                keys.dedup();
                assert_eq!(keys.len(), v.keys.len(), "{}.{}", k.name, v.name);
                for group in &v.exactly_one_of {
                    for name in *group {
                        assert!(v.key(name).is_some(), "{}.{}: {name}", k.name, v.name);
                    }
                }
            }
        }
    }

    #[test]
    fn stage_references_name_stage_kinds_and_configs_name_config_kinds() {
        fn walk(t: &Type) {
            match t {
                Type::Stage(kinds) | Type::StageRecord(kinds) => {
                    kinds.iter().for_each(|k| assert!(is_stage_kind(k), "{k}"))
                }
                Type::Config(k) => assert!(is_config_kind(k), "{k}"),
                Type::List(inner) => walk(inner),
                Type::Union(alts) => alts.iter().for_each(walk),
                _ => {}
            }
        }
        for k in kinds() {
            for v in &k.variants {
                v.keys.iter().for_each(|key| walk(&key.ty));
            }
        }
    }

    #[test]
    fn ranges_read_as_written() {
        let r = Range {
            min: Some(Bound { value: 0.0, inclusive: true }),
            max: Some(Bound { value: 1.0, inclusive: false }),
        };
        assert_eq!(r.to_string(), "0 ≤ x < 1");
        assert!(r.contains(0.0) && !r.contains(1.0) && !r.contains(-0.1));
    }
}
