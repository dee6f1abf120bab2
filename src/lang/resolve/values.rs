//! Values against their types: numbers, strings, choices, paths, lists, and names of
//! stages, configs and `let`s.

use super::errors::LET_CHAIN;
use super::*;

impl<'a> Resolver<'a> {
    pub(super) fn value(&mut self, v: &'a ast::Value, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        if self.past_value_limit(v) {
            return None;
        }
        match &v.kind {
            ValueKind::Sweep(items) => return self.sweep(v, items, ty, cx),
            ValueKind::Replicate(count) => return self.replicate(v, count, cx),
            ValueKind::Ident(id) if self.lets.contains_key(id.name.as_str()) => return self.let_ref(id, ty, cx),
            _ => {}
        }
        if let ValueKind::Ident(id) = &v.kind {
            if !self.decls.contains_key(id.name.as_str()) {
                self.undefined(id, ty);
                return None;
            }
        }
        match ty {
            Type::Union(alts) => match alts.iter().find(|t| self.accepts(v, t)) {
                Some(alt) => self.value(v, alt, cx),
                None => self.mismatch(v, ty, cx),
            },
            Type::Int => self.int_value(v, ty, cx),
            Type::Float => match &v.kind {
                ValueKind::Number { value, .. } => {
                    self.in_range(*value, v, cx)?;
                    Some(one(Value::Float(*value)))
                }
                _ => self.mismatch(v, ty, cx),
            },
            Type::Bool => match &v.kind {
                ValueKind::Bool(b) => Some(one(Value::Bool(*b))),
                _ => self.mismatch(v, ty, cx),
            },
            Type::Str => match &v.kind {
                ValueKind::Str(s) => Some(one(Value::Str(s.clone()))),
                _ => self.mismatch(v, ty, cx),
            },
            Type::Enum(options) => self.choice_value(v, options, ty, cx),
            Type::Path => self.path_value(v, ty, cx),
            Type::List(inner) => self.list(v, inner, ty, cx),
            Type::Stage(kinds) => self.stage_ref(v, kinds, ty, cx),
            Type::Config(kind) => self.config_ref(v, kind, ty, cx),
            Type::Record => match &v.kind {
                ValueKind::Record(block) => self.record(block, cx),
                _ => self.mismatch(v, ty, cx),
            },
            Type::StageRecord(kinds) => match &v.kind {
                ValueKind::Record(block) => self.stage_record(block, kinds, cx),
                _ => self.mismatch(v, ty, cx),
            },
        }
    }

    /// `{ KEY = STAGE, … }`: each entry a stage reference; a swept stage makes one record
    /// per instance, as a plain reference does.
    fn stage_record(&mut self, block: &'a ast::Block, kinds: &[&'static str], cx: &Cx) -> Option<Multi<Value>> {
        let mut acc: Multi<std::collections::BTreeMap<String, Value>> = one_record();
        let mut ok = true;
        let entry_type = Type::Stage(kinds.to_vec());
        for e in &block.entries {
            let key = format!("{}.{}", cx.key, e.key.name);
            if acc.first().is_some_and(|(_, r)| r.contains_key(&e.key.name)) {
                self.diags.push(
                    Diagnostic::new(Code::TypeMismatch, format!("`{key}` is set twice"), e.key.span, "set again here")
                        .with_help("name each input once"),
                );
                ok = false;
                continue;
            }
            let sub =
                Cx { key, path: join_path(&cx.path, &e.key.name), collect: false, replicable: false, ..cx.clone() };
            match self.value(&e.value, &entry_type, &sub) {
                Some(m) if ok && !self.too_many(acc.len(), m.len(), e.value.span) => {
                    acc = join(&acc, &m, |record, x| {
                        let mut r = record.clone();
                        r.insert(e.key.name.clone(), x.clone());
                        r
                    });
                }
                _ => ok = false,
            }
        }
        ok.then(|| acc.into_iter().map(|(c, r)| (c, Value::Record(r))).collect())
    }

    /// Counts one more value; past `MAX_VALUES` resolving stops, with one error at the
    /// value that crossed the limit.
    fn past_value_limit(&mut self, v: &ast::Value) -> bool {
        self.values_resolved += 1;
        if self.values_resolved < MAX_VALUES {
            return false;
        }
        if self.values_resolved == MAX_VALUES {
            self.diags.push(
                Diagnostic::new(
                    Code::TooLarge,
                    format!("this pipeline expands to more than {MAX_VALUES} values"),
                    v.span,
                    "checking stopped here",
                )
                .with_help("split the pipeline, or check for `let`s or sweeps that multiply without bound"),
            );
        }
        true
    }

    fn int_value(&mut self, v: &ast::Value, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let ValueKind::Number { value, text, .. } = &v.kind else {
            return self.mismatch(v, ty, cx);
        };
        if value.fract() != 0.0 || !value.is_finite() {
            self.diags.push(
                Diagnostic::new(
                    Code::TypeMismatch,
                    format!("`{}` wants a whole number, found `{text}`", cx.key),
                    v.span,
                    "not an int",
                )
                .with_help(format!("write a whole number, e.g. `{}`", value.round().max(1.0) as i64)),
            );
            return None;
        }
        self.in_range(*value, v, cx)?;
        self.exact_int(*value, v, cx)?;
        Some(one(Value::Int(*value as i64)))
    }

    fn choice_value(&mut self, v: &ast::Value, options: &[&str], ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let ValueKind::Str(s) = &v.kind else {
            return self.mismatch(v, ty, cx);
        };
        if options.contains(&s.as_str()) {
            return Some(one(Value::Str(s.clone())));
        }
        let list = options.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", ");
        let help = match suggest::closest(s, options.iter().copied()) {
            Some(best) => format!("did you mean \"{best}\"? `{}` is one of {list}", cx.key),
            None => format!("`{}` is one of {list}", cx.key),
        };
        self.diags.push(
            Diagnostic::new(
                Code::UnknownChoice,
                format!("\"{s}\" is not a choice of `{}`", cx.key),
                v.span,
                "not one of the choices",
            )
            .with_help(help),
        );
        None
    }

    /// A path relative to the pipeline's folder (a dataset's: to the data root), made
    /// absolute; refused unless it names a regular file or a folder of them.
    fn path_value(&mut self, v: &ast::Value, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let ValueKind::Str(s) = &v.kind else {
            return self.mismatch(v, ty, cx);
        };
        let p = Path::new(s);
        let in_dataset = self.decls.get(&*cx.owner).and_then(|d| d.kind).is_some_and(|k| k.name == "dataset");
        let base = if in_dataset { &self.data_root } else { &self.root };
        let abs = if p.is_absolute() { p.to_path_buf() } else { crate::lang::modules::normalize(&base.join(p)) };
        if let Some(why) = crate::lang::input_path::refusal(&abs) {
            self.diags.push(
                Diagnostic::new(Code::BadInputPath, why, v.span, "not a file or folder of files")
                    .with_help(format!("`{}` must name a regular file or a folder of regular files", cx.key)),
            );
            return None;
        }
        Some(one(Value::Path(abs.display().to_string())))
    }

    /// `{ KEY = VALUE, … }` of literals; anything else (a name, a sweep, a block) is
    /// refused, since the record is passed on as it is.
    fn record(&mut self, block: &'a ast::Block, cx: &Cx) -> Option<Multi<Value>> {
        let mut entries = std::collections::BTreeMap::new();
        let mut ok = true;
        for e in &block.entries {
            let key = format!("{}.{}", cx.key, e.key.name);
            if entries.contains_key(&e.key.name) {
                self.diags.push(
                    Diagnostic::new(Code::TypeMismatch, format!("`{key}` is set twice"), e.key.span, "set again here")
                        .with_help("write each argument once"),
                );
                ok = false;
                continue;
            }
            match self.literal(&e.value, &key) {
                Some(x) => {
                    entries.insert(e.key.name.clone(), x);
                }
                None => ok = false,
            }
        }
        ok.then(|| one(Value::Record(entries)))
    }

    fn literal(&mut self, v: &ast::Value, key: &str) -> Option<Value> {
        match &v.kind {
            ValueKind::Number { value, is_integer: true, .. } => Some(Value::Int(*value as i64)),
            ValueKind::Number { value, .. } => Some(Value::Float(*value)),
            ValueKind::Str(s) => Some(Value::Str(s.clone())),
            ValueKind::Bool(b) => Some(Value::Bool(*b)),
            ValueKind::List(items) => {
                items.iter().map(|x| self.literal(x, key)).collect::<Option<Vec<_>>>().map(Value::List)
            }
            _ => {
                let found = self.found(v);
                self.diags.push(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        format!("`{key}` must be a literal, found {found}"),
                        v.span,
                        "not a literal",
                    )
                    .with_help("constructor arguments are numbers, strings, `true`/`false` or lists of them"),
                );
                None
            }
        }
    }

    pub(super) fn list(&mut self, v: &'a ast::Value, inner: &Type, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let collects = matches!(inner, Type::Stage(_));
        let sub = Cx { collect: collects, replicable: false, ..cx.clone() };
        let items: Vec<&'a ast::Value> = match &v.kind {
            ValueKind::List(items) => items.iter().collect(),
            // A single stage or config where a list of them is wanted.
            _ if matches!(inner, Type::Stage(_) | Type::Config(_)) && self.accepts(v, inner) => vec![v],
            _ => return self.mismatch(v, ty, cx),
        };
        let mut acc: Multi<Vec<Value>> = vec![(Vec::new(), Vec::with_capacity(items.len()))];
        let mut ok = true;
        for item in items {
            match self.value(item, inner, &sub) {
                // The common case, no sweep: append in place (joining would copy the list).
                Some(m) if ok && acc.len() == 1 && m.len() == 1 && m[0].0.is_empty() => {
                    let (_, x) = m.into_iter().next().expect("one entry");
                    match x {
                        Value::List(all) if collects => acc[0].1.extend(all),
                        x => acc[0].1.push(x),
                    }
                }
                Some(m) if ok && !self.too_many(acc.len(), m.len(), item.span) => {
                    acc = join(&acc, &m, |list, x| {
                        let mut l = list.clone();
                        match x {
                            Value::List(all) if collects => l.extend(all.iter().cloned()),
                            x => l.push(x.clone()),
                        }
                        l
                    })
                }
                Some(_) => ok = false,
                None => ok = false,
            }
        }
        ok.then(|| acc.into_iter().map(|(c, l)| (c, Value::List(l))).collect())
    }

    pub(super) fn stage_ref(
        &mut self,
        v: &'a ast::Value,
        kinds: &[&'static str],
        ty: &Type,
        cx: &Cx,
    ) -> Option<Multi<Value>> {
        let ValueKind::Ident(id) = &v.kind else {
            if let ValueKind::Inline { variant, .. } = &v.kind {
                self.diags.push(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        format!("`{}` wants {}; stages cannot be written inline", cx.key, ty.describe()),
                        v.span,
                        "an inline block",
                    )
                    .with_help(format!(
                        "declare the stage with a name (`{} NAME = {} {{ … }}`) and write its name here",
                        kinds[0], variant.name
                    )),
                );
                return None;
            }
            return self.mismatch(v, ty, cx);
        };
        let def = &self.decls[id.name.as_str()];
        let kind = def.kind?;
        if !kinds.contains(&kind.name) {
            return self.wrong_kind(id, kind, ty, cx);
        }
        let name: &'a str = &def.decl.name.name;
        self.spans.refs.insert((cx.owner.to_string(), cx.path.clone()), name.to_string());
        let family = self.stage_family(name, Some(id.span))?;
        if cx.collect {
            let all = family.instances.iter().map(|i| Value::Stage(i.name.clone())).collect();
            return Some(one(Value::List(all)));
        }
        Some(family.instances.iter().map(|i| (i.coord.clone(), Value::Stage(i.name.clone()))).collect())
    }

    pub(super) fn config_ref(
        &mut self,
        v: &'a ast::Value,
        kind_name: &str,
        ty: &Type,
        cx: &Cx,
    ) -> Option<Multi<Value>> {
        let kind = schema::kind(kind_name).expect("config types name kinds (tested)");
        match &v.kind {
            ValueKind::Ident(id) => {
                let def = &self.decls[id.name.as_str()];
                let k = def.kind?;
                if k.name != kind_name {
                    return self.wrong_kind(id, k, ty, cx);
                }
                let name: &'a str = &def.decl.name.name;
                self.spans.refs.insert((cx.owner.to_string(), cx.path.clone()), name.to_string());
                self.config_family(name, Some(id.span)).map(|m| (*m).clone())
            }
            ValueKind::Inline { variant, block } => {
                let (spec, entries) = self.effective(kind, Some(variant), block, variant.span)?;
                let what = format!("the `{}` block", variant.name);
                let multi = self.block(spec, &entries, variant.span, (&what, spec.name), cx)?;
                Some(config_values(kind, spec, multi))
            }
            ValueKind::Str(s) if kind.variant(s).is_some() => {
                self.diags.push(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        format!("`{}` wants {}, found the string \"{s}\"", cx.key, ty.describe()),
                        v.span,
                        "a string, not a block",
                    )
                    .with_help(format!("write the variant with a block, without quotes: `{s} {{ }}`")),
                );
                None
            }
            _ => self.mismatch(v, ty, cx),
        }
    }

    pub(super) fn let_ref(&mut self, id: &'a Ident, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let name: &'a str = self.lets.get_key_value(id.name.as_str()).map(|(k, _)| *k)?;
        let looped = self.let_stack.iter().position(|n| *n == name).map(|from| self.let_stack[from..].to_vec());
        if self.chain_stops(&LET_CHAIN, (self.let_stack.len(), looped), name, id.span) {
            return None;
        }
        let memo_key = (name, ty.short(), cx.range.to_string(), cx.collect);
        if let Some(done) = self.let_memo.get(&memo_key) {
            return done.clone();
        }
        let value = self.lets[name].1;
        self.let_stack.push(name);
        let sub = Cx { axis_name: name.to_string(), replicable: false, ..cx.clone() };
        let r = self.value(value, ty, &sub);
        self.let_stack.pop();
        self.let_memo.insert(memo_key, r.clone());
        r
    }

    /// Whether a value has the shape of a type (used to pick a union's alternative and
    /// to accept a single stage where a list is wanted).
    pub(super) fn accepts(&self, v: &ast::Value, t: &Type) -> bool {
        let v = self.deref(v);
        match (&v.kind, t) {
            (ValueKind::Sweep(items), t) => items.first().is_some_and(|i| self.accepts(i, t)),
            (ValueKind::Replicate(_), t) => *t == Type::Int,
            (ValueKind::Number { .. }, Type::Int | Type::Float) => true,
            (ValueKind::Str(_), Type::Str | Type::Path) => true,
            (ValueKind::Str(s), Type::Enum(options)) => {
                options.contains(&s.as_str()) || suggest::closest(s, options.iter().copied()).is_some()
            }
            (ValueKind::Bool(_), Type::Bool) => true,
            (ValueKind::List(_), Type::List(_)) => true,
            (ValueKind::Inline { .. }, Type::Config(_)) => true,
            (ValueKind::Record(_), Type::Record | Type::StageRecord(_)) => true,
            (ValueKind::Ident(id), Type::Stage(kinds)) => {
                self.decls.get(id.name.as_str()).and_then(|d| d.kind).is_some_and(|k| kinds.contains(&k.name))
            }
            (ValueKind::Ident(id), Type::Config(kind)) => {
                self.decls.get(id.name.as_str()).and_then(|d| d.kind).is_some_and(|k| k.name == *kind)
            }
            (ValueKind::Ident(_), Type::List(inner)) => {
                matches!(**inner, Type::Stage(_) | Type::Config(_)) && self.accepts(v, inner)
            }
            _ => false,
        }
    }

    /// Follow names of `let`s to the value they hold.
    pub(super) fn deref<'v>(&'v self, mut v: &'v ast::Value) -> &'v ast::Value {
        for _ in 0..64 {
            match &v.kind {
                ValueKind::Ident(id) => match self.lets.get(id.name.as_str()) {
                    Some((_, value)) => v = value,
                    None => return v,
                },
                _ => return v,
            }
        }
        v
    }

    pub(super) fn in_range(&mut self, x: f64, v: &ast::Value, cx: &Cx) -> Option<()> {
        if cx.range.contains(x) {
            return Some(());
        }
        let shown = as_written(x, v);
        self.diags.push(
            Diagnostic::new(
                Code::OutOfRange,
                format!("`{}` must be {}, found {shown}", cx.key, cx.range.to_string().replace('x', &cx.key)),
                v.span,
                "out of range",
            )
            .with_help(range_help(&cx.key, cx.doc, &cx.range)),
        );
        None
    }

    /// Ints are read through float64, which holds every whole number up to 2^53 exactly.
    fn exact_int(&mut self, x: f64, v: &ast::Value, cx: &Cx) -> Option<()> {
        if x.abs() <= MAX_EXACT_INT {
            return Some(());
        }
        let shown = as_written(x, v);
        self.diags.push(
            Diagnostic::new(
                Code::OutOfRange,
                format!("`{}` is out of range (max {}), found {shown}", cx.key, MAX_EXACT_INT as i64),
                v.span,
                "out of range",
            )
            .with_help(format!("write a whole number between -{0} and {0}", MAX_EXACT_INT as i64)),
        );
        None
    }
}

/// The largest whole number a float64 holds exactly (2^53).
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

pub(super) fn one(v: Value) -> Multi<Value> {
    vec![(Vec::new(), v)]
}

fn one_record() -> Multi<std::collections::BTreeMap<String, Value>> {
    vec![(Vec::new(), std::collections::BTreeMap::new())]
}

/// `inputs` + `data` → `inputs.data` (the path spans are recorded under).
fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn type_wants(ty: &Type, kind: &str) -> bool {
    match ty {
        Type::Stage(kinds) | Type::StageRecord(kinds) => kinds.contains(&kind),
        Type::Config(k) => *k == kind,
        Type::List(inner) => type_wants(inner, kind),
        Type::Union(alts) => alts.iter().any(|t| type_wants(t, kind)),
        _ => false,
    }
}

/// A number as the file writes it (`1_000`, `1e300`), for messages.
fn as_written(x: f64, v: &ast::Value) -> String {
    match &v.kind {
        ValueKind::Number { text, .. } => text.to_string(),
        _ => x.to_string(),
    }
}
