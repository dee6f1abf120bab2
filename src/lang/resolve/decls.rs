//! Declarations: stage families and configs (memoised, with cycle detection), presets
//! and their chains, and a block's keys with defaults, required keys and exclusive keys.

use super::errors::PRESET_CHAIN;
use super::*;

impl<'a> Resolver<'a> {
    pub(super) fn cycle(&mut self, name: &str, at: Option<Span>) {
        let start = self.stack.iter().position(|(n, _)| *n == name).unwrap_or(0);
        let mut chain: Vec<String> = self.stack[start..].iter().map(|(n, _)| format!("`{n}`")).collect();
        chain.push(format!("`{name}`"));
        let last = self.stack.last().map(|(n, _)| *n).unwrap_or(name);
        let span = at.or_else(|| self.spans.decl(name)).unwrap_or_default();
        let mut d = Diagnostic::new(
            Code::DependencyCycle,
            format!("dependency cycle: {}", chain.join(" → ")),
            span,
            format!("`{last}` reads `{name}` here, closing the cycle"),
        )
        .with_help("a declaration cannot depend on itself, directly or through others; remove one of these references");
        for (n, via) in &self.stack[start + 1..] {
            if let Some(via) = via {
                d = d.with_label(*via, format!("reads `{n}`"));
            }
        }
        self.diags.push(d);
    }

    /// A declaration's resolution, built once: asking for it again while it is being built
    /// is a dependency cycle.
    fn memoized<T: Clone>(
        &mut self,
        name: &'a str,
        at: Option<Span>,
        table: fn(&mut Self) -> &mut HashMap<&'a str, Slot<T>>,
        build: fn(&mut Self, &'a str) -> Option<T>,
    ) -> Option<T> {
        match table(self).get(name) {
            Some(Slot::Done(f)) => return f.clone(),
            Some(Slot::Busy) => {
                self.cycle(name, at);
                return None;
            }
            None => {}
        }
        table(self).insert(name, Slot::Busy);
        self.stack.push((name, at));
        let result = build(self, name);
        self.stack.pop();
        table(self).insert(name, Slot::Done(result.clone()));
        result
    }

    pub(super) fn stage_family(&mut self, name: &'a str, at: Option<Span>) -> Option<Rc<Family>> {
        self.memoized(name, at, |r| &mut r.stages, |r, name| r.build_stage(name).map(Rc::new))
    }

    pub(super) fn config_family(&mut self, name: &'a str, at: Option<Span>) -> Option<Rc<Multi<Value>>> {
        self.memoized(name, at, |r| &mut r.configs, |r, name| r.build_config(name).map(Rc::new))
    }

    /// A declaration's kind, variant and the parameters of each of its instances.
    fn declared_block(&mut self, name: &'a str) -> Option<(&'static KindSpec, &'static VariantSpec, Multi<Params>)> {
        let def = &self.decls[name];
        let (decl, kind) = (def.decl, def.kind?);
        let (variant, entries) = self.effective(kind, decl.variant.as_ref(), &decl.block, decl.name.span)?;
        let cx = Cx {
            owner: Rc::from(name),
            path: String::new(),
            axis_name: String::new(),
            key: String::new(),
            range: Range::ANY,
            doc: "",
            collect: false,
            replicable: false,
        };
        let what = format!("`{} {}`", kind.name, name);
        // Messages name the variant as the user knows it: the kind when it was defaulted.
        let shown = if decl.variant.is_some() { variant.name } else { kind.name };
        let multi = self.block(variant, &entries, decl.name.span, (&what, shown), &cx)?;
        Some((kind, variant, multi))
    }

    fn build_stage(&mut self, name: &'a str) -> Option<Family> {
        let (kind, variant, multi) = self.declared_block(name)?;
        let instances = multi
            .into_iter()
            .map(|(coord, params)| FamilyInstance {
                name: self.instance_name(name, &coord),
                sweep: self.sweep_values(&coord),
                coord,
                params,
            })
            .collect();
        Some(Family { kind: kind.name, variant: variant.name, instances })
    }

    fn build_config(&mut self, name: &'a str) -> Option<Multi<Value>> {
        let (kind, variant, multi) = self.declared_block(name)?;
        Some(config_values(kind, variant, multi))
    }

    /// The variant and entries of a block: its own, or a preset's overridden by its own.
    pub(super) fn effective(
        &mut self,
        kind: &'static KindSpec,
        variant: Option<&'a Ident>,
        block: &'a Block,
        at: Span,
    ) -> Option<(&'static VariantSpec, Vec<&'a Entry>)> {
        let own = self.own_entries(block);
        let Some(variant) = variant else {
            return match kind.default_variant.and_then(|v| kind.variant(v)) {
                Some(v) => Some((v, own)),
                None => {
                    let names: Vec<_> = kind.variants.iter().map(|v| v.name).collect();
                    self.diags.push(
                        Diagnostic::new(
                            Code::MissingVariant,
                            format!("a `{}` needs a variant", kind.name),
                            at,
                            "which variant?",
                        )
                        .with_help(format!(
                            "write `{} NAME = VARIANT {{ … }}` with one of {} (or an earlier `{}` declaration as a preset)",
                            kind.name,
                            names.join(", "),
                            kind.name
                        )),
                    );
                    None
                }
            };
        };
        if let Some(v) = kind.variant(&variant.name) {
            return Some((v, own));
        }
        if let Some(def) = self.decls.get(variant.name.as_str()) {
            let (preset, preset_kind) = (def.decl, def.kind);
            if let Some(pk) = preset_kind {
                if pk.name != kind.name {
                    self.diags.push(
                        Diagnostic::new(
                            Code::WrongKind,
                            format!("`{}` is a {}, not a {}", variant.name, pk.name, kind.name),
                            variant.span,
                            format!("a {} used as a {} preset", pk.name, kind.name),
                        )
                        .with_label(preset.name.span, format!("`{}` declared here", variant.name))
                        .with_help(format!("a preset must be a declaration of the same kind ({})", kind.name)),
                    );
                    return None;
                }
            } else {
                return None;
            }
            let preset_name: &'a str = &preset.name.name;
            let base = match self.preset_memo.get(preset_name) {
                Some(done) => done.clone(),
                None => {
                    let base = self.preset_base(kind, preset, variant);
                    self.preset_memo.insert(preset_name, base.clone());
                    base
                }
            };
            let (spec, mut entries) = base?;
            let overridden: std::collections::HashSet<&str> = own.iter().map(|o| o.key.name.as_str()).collect();
            entries.retain(|e| !overridden.contains(e.key.name.as_str()));
            entries.extend(own);
            return Some((spec, entries));
        }
        let own_name = self.decl_at.get(&at).copied();
        let names = kind.variants.iter().map(|v| v.name).collect::<Vec<_>>().join(", ");
        let mut help = match self.suggest_variant(kind, &variant.name, own_name) {
            Some(best) => format!("did you mean `{best}`? The variants of `{}` are {names}", kind.name),
            None => format!("the variants of `{}` are {names}", kind.name),
        };
        let presets = self.by_kind.get(kind.name).map(Vec::as_slice).unwrap_or_default();
        let own_is_preset = own_name.is_some_and(|o| self.decls[o].kind.is_some_and(|k| k.name == kind.name));
        let count = presets.len() - usize::from(own_is_preset);
        if count > 0 {
            let shown: Vec<&str> = presets.iter().copied().filter(|p| Some(*p) != own_name).take(MAX_LISTED).collect();
            help.push_str(&format!("; presets declared: {}", shown.join(", ")));
            if count > shown.len() {
                help.push_str(&format!(" and {} more", count - shown.len()));
            }
        }
        self.diags.push(
            Diagnostic::new(
                Code::UnknownVariant,
                format!("unknown {} variant `{}`", kind.name, variant.name),
                variant.span,
                format!("not a {} variant or preset", kind.name),
            )
            .with_help(help),
        );
        None
    }

    /// The variant or preset of `kind` closest to a misspelt one (never `own`, the
    /// declaration being resolved).
    pub(super) fn suggest_variant(
        &mut self,
        kind: &'static KindSpec,
        name: &str,
        own: Option<&str>,
    ) -> Option<&'a str> {
        let by_kind = &self.by_kind;
        let names = self.variant_names.entry(kind.name).or_insert_with(|| {
            let presets = by_kind.get(kind.name).into_iter().flatten().copied();
            suggest::Names::new(kind.variants.iter().map(|v| v.name).chain(presets))
        });
        names.closest(name, own)
    }

    /// The effective variant and entries of a preset declaration (its own preset chain
    /// resolved), with cycle and depth checks; `None` after reporting a problem.
    pub(super) fn preset_base(
        &mut self,
        kind: &'static KindSpec,
        preset: &'a Decl,
        variant: &'a Ident,
    ) -> Option<(&'static VariantSpec, Vec<&'a Entry>)> {
        let looped = self.preset_stack.contains(&variant.name.as_str());
        if looped {
            // One report per cycle, whichever of its presets the walk started from.
            let mut members: Vec<&str> = self.preset_stack.clone();
            members.sort();
            if !self.reported_cycles.insert(members.join(" ")) {
                return None;
            }
        }
        let walked = (self.preset_stack.len(), looped.then(|| self.preset_stack.clone()));
        if self.chain_stops(&PRESET_CHAIN, walked, &variant.name, variant.span) {
            return None;
        }
        self.preset_stack.push(&variant.name);
        let base = self.effective(kind, preset.variant.as_ref(), &preset.block, preset.name.span);
        self.preset_stack.pop();
        base
    }

    /// A block's entries, reporting keys written twice (the first one counts).
    pub(super) fn own_entries(&mut self, block: &'a Block) -> Vec<&'a Entry> {
        let mut out: Vec<&'a Entry> = Vec::with_capacity(block.entries.len());
        let mut seen: HashMap<&'a str, &'a Entry> = HashMap::with_capacity(block.entries.len());
        for e in &block.entries {
            if let Some(prev) = seen.get(e.key.name.as_str()) {
                self.diags.push(
                    Diagnostic::new(
                        Code::DuplicateKey,
                        format!("`{}` is set twice", e.key.name),
                        e.key.span,
                        "set again here",
                    )
                    .with_label(prev.key.span, "first set here")
                    .with_help("remove one of them"),
                );
                continue;
            }
            seen.insert(&e.key.name, e);
            out.push(e);
        }
        out
    }

    /// Resolve a variant's keys: every key of the variant, defaults filled. `what` names
    /// the block (`` `train ddpm` ``) and `shown` its variant in messages.
    pub(super) fn block(
        &mut self,
        variant: &'static VariantSpec,
        entries: &[&'a Entry],
        at: Span,
        (what, shown): (&str, &str),
        cx: &Cx,
    ) -> Option<Multi<Params>> {
        let mut acc: Multi<Params> = vec![(Vec::new(), Params::new())];
        let mut ok = true;
        // Keys that an unknown key is a misspelling of: reported once, as that misspelling.
        let mut misspelt: Vec<&'static str> = Vec::new();
        for e in entries {
            let path = if cx.path.is_empty() { e.key.name.clone() } else { format!("{}.{}", cx.path, e.key.name) };
            self.spans.entries.insert((cx.owner.to_string(), path.clone()), (e.key.span, e.value.span));
            let Some(spec) = variant.key(&e.key.name) else {
                misspelt.extend(self.unknown_key(variant, shown, e));
                ok = false;
                continue;
            };
            let sub = Cx {
                owner: cx.owner.clone(),
                path,
                axis_name: e.key.name.clone(),
                key: e.key.name.clone(),
                range: spec.range,
                doc: spec.doc,
                collect: false,
                replicable: spec.replicable,
            };
            // A sweep written here is a new axis: its product with the block so far is
            // known before its values are resolved.
            let written = match &e.value.kind {
                ValueKind::Sweep(items) => Some(items.len()),
                ValueKind::Replicate(count) => match count.kind {
                    ValueKind::Number { value, .. } if value >= 1.0 => Some(value.min(usize::MAX as f64) as usize),
                    _ => None,
                },
                _ => None,
            };
            if let Some(n) = written {
                if ok && self.too_many(acc.len(), n, e.value.span) {
                    ok = false;
                    continue;
                }
            }
            match self.value(&e.value, &spec.ty, &sub) {
                Some(m) => {
                    if ok && !self.too_many(acc.len(), m.len(), e.value.span) {
                        acc = join(&acc, &m, |params, v| {
                            let mut p = params.clone();
                            p.insert(e.key.name.clone(), v.clone());
                            p
                        });
                    } else {
                        ok = false;
                    }
                }
                None => ok = false,
            }
        }
        ok &= self.fill_defaults(variant, entries, &misspelt, (what, at), &mut acc);
        ok &= self.exactly_one_of(variant, entries, &misspelt, (what, at));
        ok.then_some(acc)
    }

    /// Every key the block does not write (nor misspells): its default into each
    /// instance's parameters, or an error where the key is required. False on an error.
    fn fill_defaults(
        &mut self,
        variant: &'static VariantSpec,
        entries: &[&'a Entry],
        misspelt: &[&'static str],
        (what, at): (&str, Span),
        acc: &mut Multi<Params>,
    ) -> bool {
        let mut ok = true;
        for spec in &variant.keys {
            if entries.iter().any(|e| e.key.name == spec.name) || misspelt.contains(&spec.name) {
                continue;
            }
            match &spec.default {
                schema::Default::Required => {
                    self.diags.push(
                        Diagnostic::new(
                            Code::MissingKey,
                            format!("{what} is missing the key `{}`", spec.name),
                            at,
                            format!("`{}` is required", spec.name),
                        )
                        .with_help(format!(
                            "add `{} = …` ({}); it takes {}",
                            spec.name,
                            spec.doc,
                            spec.ty.describe()
                        )),
                    );
                    ok = false;
                }
                schema::Default::Value(_) => {
                    let v = self
                        .defaults
                        .entry(spec as *const schema::KeySpec)
                        .or_insert_with(|| schema::default_value(spec).expect("schema defaults parse (tested)"))
                        .clone();
                    for (_, p) in acc.iter_mut() {
                        p.insert(spec.name.to_string(), v.clone());
                    }
                }
                schema::Default::Unset => {}
            }
        }
        ok
    }

    /// Each group of keys of which exactly one must be set: an error where none or two
    /// are. False on an error.
    fn exactly_one_of(
        &mut self,
        variant: &'static VariantSpec,
        entries: &[&'a Entry],
        misspelt: &[&'static str],
        (what, at): (&str, Span),
    ) -> bool {
        let mut ok = true;
        for group in &variant.exactly_one_of {
            let set: Vec<&&Entry> = entries.iter().filter(|e| group.contains(&e.key.name.as_str())).collect();
            let names = group.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" or ");
            if set.is_empty() && !group.iter().any(|n| misspelt.contains(n)) {
                self.diags.push(
                    Diagnostic::new(Code::MissingKey, format!("{what} needs {names}"), at, format!("set {names}"))
                        .with_help(format!("add exactly one of {names}")),
                );
                ok = false;
            } else if set.len() > 1 {
                self.diags.push(
                    Diagnostic::new(
                        Code::ConflictingKeys,
                        format!("{what} sets both `{}` and `{}`", set[0].key.name, set[1].key.name),
                        set[1].key.span,
                        "set here too",
                    )
                    .with_label(set[0].key.span, "first set here")
                    .with_help(format!("set exactly one of {names}")),
                );
                ok = false;
            }
        }
        ok
    }

    /// Report a key that `variant` (named `shown` in the message) does not have; the key
    /// it is a misspelling of, if any.
    pub(super) fn unknown_key(
        &mut self,
        variant: &'static VariantSpec,
        shown: &str,
        e: &Entry,
    ) -> Option<&'static str> {
        let keys: Vec<&'static str> = variant.keys.iter().map(|k| k.name).collect();
        let owner_kind = schema::kinds().iter().find(|k| k.variants.iter().any(|v| std::ptr::eq(v, variant)));
        let elsewhere = owner_kind.and_then(|k| {
            k.variants.iter().find(|v| v.name != variant.name && v.key(&e.key.name).is_some()).map(|v| v.name)
        });
        let closest = suggest::closest(&e.key.name, keys.iter().copied());
        let mut help = match closest {
            Some(best) => format!("did you mean `{best}`? "),
            None => String::new(),
        };
        if let Some(other) = elsewhere {
            help.push_str(&format!("`{}` is a key of `{other}`, not `{shown}`. ", e.key.name));
        }
        help.push_str(&format!("The keys of `{shown}` are {}", keys.join(", ")));
        self.diags.push(
            Diagnostic::new(
                Code::UnknownKey,
                format!("unknown key `{}` for `{shown}`", e.key.name),
                e.key.span,
                format!("not a key of `{shown}`"),
            )
            .with_help(help),
        );
        closest
    }
}

pub(super) fn config_values(
    kind: &'static KindSpec,
    variant: &'static VariantSpec,
    multi: Multi<Params>,
) -> Multi<Value> {
    multi
        .into_iter()
        .map(|(c, params)| {
            (c, Value::Config(Config { kind: kind.name.to_string(), variant: variant.name.to_string(), params }))
        })
        .collect()
}
