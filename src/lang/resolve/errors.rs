//! The diagnostics of resolution that need the resolver's names: undefined names (with
//! did-you-mean), wrong kinds, type mismatches, cycles and nesting too deep.

use super::*;

/// How the diagnostics of a chain of names (presets built on presets, `let`s through
/// `let`s) speak of it.
pub(super) struct ChainWords {
    /// "… cycle: `a` → `b` → `a`"
    pub cycle: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    /// "… nest more than N levels deep"
    pub nested: &'static str,
}

pub(super) const PRESET_CHAIN: ChainWords = ChainWords {
    cycle: "preset",
    label: "this preset leads back to itself",
    help: "a preset must bottom out in a variant; make one of these declarations name a variant",
    nested: "presets built on other presets",
};

pub(super) const LET_CHAIN: ChainWords = ChainWords {
    cycle: "dependency",
    label: "this name leads back to itself",
    help: "a `let` cannot be defined through itself; give one of them a value",
    nested: "`let`s defined through other `let`s",
};

impl<'a> Resolver<'a> {
    /// Whether a walk along names that stand for other names must stop before `next`: when
    /// `looped` holds the names from where `next` stood before (a cycle), or when `depth`
    /// names are already followed. Either is reported.
    pub(super) fn chain_stops(
        &mut self,
        words: &ChainWords,
        (depth, looped): (usize, Option<Vec<&str>>),
        next: &str,
        at: Span,
    ) -> bool {
        if let Some(names) = looped {
            let chain: Vec<String> = names.iter().chain([&next]).map(|n| format!("`{n}`")).collect();
            let message = format!("{} cycle: {}", words.cycle, chain.join(" → "));
            self.diags.push(Diagnostic::new(Code::DependencyCycle, message, at, words.label).with_help(words.help));
            return true;
        }
        if depth >= MAX_DEPTH {
            self.too_deep(at, words.nested);
            return true;
        }
        false
    }

    pub(super) fn too_deep(&mut self, at: Span, what: &str) {
        self.diags.push(
            Diagnostic::new(Code::TooDeep, format!("{what} nest more than {MAX_DEPTH} levels deep"), at, "too deep")
                .with_help("write the value directly instead of through a long chain of names"),
        );
    }

    pub(super) fn undefined(&mut self, id: &Ident, ty: &Type) {
        // An empty union: a name in a `let` no key reads, so any kind would do.
        let any_type = matches!(ty, Type::Union(alts) if alts.is_empty());
        let is_variant = schema::kinds().iter().any(|k| k.variant(&id.name).is_some() && k.role == Role::Config);
        let best = if is_variant { None } else { self.suggest_name(&id.name, ty, any_type) };
        let mut d = Diagnostic::new(
            Code::UndefinedName,
            format!("`{}` is not defined", id.name),
            id.span,
            "no let or declaration has this name",
        );
        let mut help = match best {
            Some(b) => format!("did you mean `{b}`? "),
            None => String::new(),
        };
        if any_type {
            help.push_str("declare it (or `use` the file that does)");
        } else {
            help.push_str(&format!("this key wants {}; declare it (or `use` the file that does)", ty.describe()));
        }
        if let Some(b) = best {
            if let Some(s) = self.spans.decl(b) {
                d = d.with_label(s, format!("`{b}` is declared here"));
            }
        }
        if let Some(kind) = schema::kinds().iter().find(|k| k.variant(&id.name).is_some() && k.role == Role::Config) {
            help = format!("`{}` is a {} variant: write it as a block, `{} {{ }}`", id.name, kind.name, id.name);
        }
        self.diags.push(d.with_help(help));
    }

    /// The declaration of a kind `ty` accepts, or the `let`, closest to a misspelt name.
    pub(super) fn suggest_name(&mut self, name: &str, ty: &Type, any_type: bool) -> Option<&'a str> {
        let key = if any_type { String::new() } else { ty.short() };
        if !self.wanted_names.contains_key(&key) {
            let mut lets: Vec<&'a str> = self.lets.keys().copied().collect();
            lets.sort_by_key(|n| (self.lets[n].0.span.file, self.lets[n].0.span.start));
            let decls = self
                .order
                .iter()
                .copied()
                .filter(|n| any_type || self.decls[n].kind.is_some_and(|k| type_wants(ty, k.name)));
            self.wanted_names.insert(key.clone(), suggest::Names::new(decls.chain(lets)));
        }
        self.wanted_names[&key].closest(name, None)
    }

    pub(super) fn wrong_kind(&mut self, id: &Ident, actual: &KindSpec, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let decl_span = self.spans.decl(&id.name);
        let mut d = Diagnostic::new(
            Code::WrongKind,
            format!("`{}` wants {}, but `{}` is a {}", cx.key, ty.describe(), id.name, actual.name),
            id.span,
            format!("a {}", actual.name),
        )
        .with_help(format!("name a declaration of the right kind here ({})", ty.short()));
        if let Some(s) = decl_span {
            d = d.with_label(s, format!("`{}` is declared here", id.name));
        }
        self.diags.push(d);
        None
    }

    pub(super) fn mismatch(&mut self, v: &ast::Value, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let found = self.found(v);
        let help = match ty {
            Type::Int => "write a whole number such as `2` or `10_000`".to_string(),
            Type::Float => "write a number such as `0.5` or `2e-4`".to_string(),
            Type::Bool => "write `true` or `false`".to_string(),
            Type::Str | Type::Path => "write it in double quotes".to_string(),
            Type::Enum(options) => {
                format!("write one of {}", options.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", "))
            }
            Type::List(inner) => format!("write a list in brackets: [a, b] of {}", inner.short()),
            Type::Stage(kinds) => format!("name a {} declaration", kinds.join(" or ")),
            Type::Config(kind) => {
                let k = schema::kind(kind).expect("config kinds exist");
                format!(
                    "name a {kind} declaration or write one inline, e.g. `{} {{ … }}` (variants: {})",
                    k.variants[0].name,
                    k.variants.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
                )
            }
            Type::Union(_) => format!("write {}", ty.describe()),
            Type::Record => "write named literals in braces: `{ hidden = 64, name = \"small\" }`".to_string(),
            Type::StageRecord(_) => "write stage names in braces: `{ samples = gen, data = digits }`".to_string(),
        };
        self.diags.push(
            Diagnostic::new(
                Code::TypeMismatch,
                format!("`{}` wants {}, found {found}", cx.key, ty.describe()),
                v.span,
                format!("expected {}", ty.short()),
            )
            .with_help(help),
        );
        None
    }

    pub(super) fn found(&self, v: &ast::Value) -> String {
        match &v.kind {
            ValueKind::Number { text, .. } => format!("the number {text}"),
            ValueKind::Str(s) => format!("the string \"{s}\""),
            ValueKind::Bool(b) => format!("`{b}`"),
            ValueKind::List(_) => "a list".into(),
            ValueKind::Sweep(_) => "a sweep".into(),
            ValueKind::Replicate(_) => "`replicate(…)`".into(),
            ValueKind::Inline { variant, .. } => format!("an inline `{}` block", variant.name),
            ValueKind::Record(_) => "a record `{ … }`".into(),
            ValueKind::Ident(id) => match self.decls.get(id.name.as_str()).and_then(|d| d.kind) {
                Some(k) => format!("`{}` (a {})", id.name, k.name),
                None => format!("`{}`", id.name),
            },
        }
    }
}

pub(super) fn range_help(key: &str, doc: &str, range: &Range) -> String {
    let bound = range.to_string().replace('x', key);
    if doc.is_empty() {
        format!("choose a value with {bound}")
    } else {
        format!("`{key}`: {doc}. Choose a value with {bound}")
    }
}
