//! Names, presets, inline blocks, types, defaults and sweeps: `ast::File`s → the stage
//! instances and configs of a [`Pipeline`].
//!
//! Every value resolves to a *multi-value*: a list of (coordinates, value), where the
//! coordinates say which value of which sweep picked it. A plain value has one entry with
//! no coordinates; `sweep(a, b)` has one entry per value on a new axis. Combining two
//! multi-values joins them on shared axes (the same sweep read twice stays aligned) and
//! multiplies different axes (the cartesian product). A declaration's family is the join
//! of its keys, so a stage reading a family becomes a family aligned with it, and a
//! stage reading two different families gets their product. Lists of stages collect
//! whole families instead. Every declaration resolves once (memoised), which keeps a
//! pipeline of thousands of stages linear.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::diagnostics::{Code, Diagnostic};
use crate::lang::pipeline::{Instance, Pipeline};
use crate::lang::value::{Config, Value};
use crate::schema::{self, KindSpec, Range, Role, Type, VariantSpec};
use crate::syntax::ast::{self, Block, Decl, Entry, FileId, Ident, ItemKind, Span, ValueKind};

use super::suggest;

/// (axis, index of the value on that axis), sorted by axis.
type Coord = Vec<(usize, usize)>;
/// A value per combination of sweep coordinates.
type Multi<T> = Vec<(Coord, T)>;
type Params = BTreeMap<String, Value>;

struct Axis {
    /// The innermost key (or `let`) the sweep is written under.
    name: String,
    /// `owner.name`, used when two axes of one instance share a name.
    qualified: String,
    /// How each value is shown in instance names.
    labels: Vec<String>,
    values: Vec<Value>,
    /// Source position, for ordering coordinates in names as written.
    pos: (FileId, usize),
}

enum Slot<T> {
    Busy,
    Done(Option<T>),
}

/// One resolved stage declaration: its instances.
#[derive(Clone)]
pub(crate) struct Family {
    pub kind: &'static str,
    pub variant: &'static str,
    pub instances: Vec<FamilyInstance>,
}

#[derive(Clone)]
pub(crate) struct FamilyInstance {
    coord: Coord,
    pub name: String,
    pub params: Params,
    pub sweep: Vec<(String, Value)>,
}

struct DeclDef<'a> {
    decl: &'a Decl,
    kind: Option<&'static KindSpec>,
}

/// Where keys are written, for labels of cross-stage diagnostics.
#[derive(Default)]
pub(crate) struct SpanTable {
    /// (declaration, key path like `sampler.steps`) → (key span, value span).
    entries: HashMap<(String, String), (Span, Span)>,
    /// (declaration, key path) → the declaration a name there refers to.
    refs: HashMap<(String, String), String>,
    /// Declaration → the span of its name.
    decls: HashMap<String, Span>,
}

impl SpanTable {
    /// The value span of a key path of a declaration, following names of configs
    /// (`model.learn_sigma` → the `learn_sigma` written in the model declaration).
    pub fn value(&self, decl: &str, path: &str) -> Option<Span> {
        self.lookup(decl, path, 0).map(|(_, v)| v)
    }

    fn lookup(&self, decl: &str, path: &str, depth: usize) -> Option<(Span, Span)> {
        if let Some(s) = self.entries.get(&(decl.to_string(), path.to_string())) {
            return Some(*s);
        }
        if depth > 16 {
            return None;
        }
        // Follow a name at any prefix of the path: `sampler.steps` with `sampler = fast`.
        let mut split = path.len();
        while let Some(i) = path[..split].rfind('.') {
            let (head, rest) = (&path[..i], &path[i + 1..]);
            if let Some(target) = self.refs.get(&(decl.to_string(), head.to_string())) {
                return self.lookup(target, rest, depth + 1);
            }
            split = i;
        }
        None
    }

    /// Where a declaration's name is written.
    pub fn decl(&self, decl: &str) -> Option<Span> {
        self.decls.get(decl).copied()
    }
}

#[derive(Clone)]
struct Cx {
    /// The declaration being resolved (spans are recorded under it).
    owner: Rc<str>,
    /// Dotted key path inside the owner (`guidance.scale`).
    path: String,
    /// Name for a sweep written here.
    axis_name: String,
    /// The key being resolved (for messages; a `let` keeps its user's key).
    key: String,
    range: Range,
    /// The key's one-line meaning (for help lines).
    doc: &'static str,
    /// A list of stages: names of families stand for all their instances.
    collect: bool,
}

pub(crate) struct Resolver<'a> {
    root: PathBuf,
    /// Relative `path`s of dataset declarations resolve against this (`data_root` in
    /// `difflow.toml`; the pipeline's folder by default).
    data_root: PathBuf,
    pub diags: Vec<Diagnostic>,
    lets: HashMap<&'a str, (&'a Ident, &'a ast::Value)>,
    decls: HashMap<&'a str, DeclDef<'a>>,
    /// Declarations in file order (used files first).
    order: Vec<&'a str>,
    axes: Vec<Axis>,
    axis_ids: HashMap<(FileId, usize), usize>,
    stages: HashMap<&'a str, Slot<Rc<Family>>>,
    configs: HashMap<&'a str, Slot<Rc<Multi<Value>>>>,
    let_stack: Vec<&'a str>,
    preset_stack: Vec<&'a str>,
    /// Declarations being resolved and the span of the reference that led into each.
    stack: Vec<(&'a str, Option<Span>)>,
    pub spans: SpanTable,
    /// Preset cycles already reported (by their sorted members).
    reported_cycles: std::collections::HashSet<String>,
    /// Resolved `let`s by (name, wanted type, range, collect): a `let` read many times
    /// (or lets built from lets) is resolved once per use type, never exponentially.
    let_memo: HashMap<(&'a str, String, String, bool), Option<Multi<Value>>>,
    /// Values resolved so far, bounded by [`MAX_VALUES`].
    values_resolved: usize,
    /// The effective variant and entries of each preset declaration, resolved once.
    #[allow(clippy::type_complexity)]
    preset_memo: HashMap<&'a str, Option<(&'static VariantSpec, Vec<&'a Entry>)>>,
    /// Parsed schema defaults, by key (the schema is static, so its addresses are stable).
    defaults: HashMap<*const schema::KeySpec, Value>,
    /// Declarations by kind, in file order (the presets a variant may name).
    by_kind: HashMap<&'static str, Vec<&'a str>>,
    /// The declaration whose name is written at a span.
    decl_at: HashMap<Span, &'a str>,
    /// Did-you-mean indexes, built on the first misspelling that needs them: the
    /// variants and presets of a kind, and the names a type accepts.
    variant_names: HashMap<&'static str, suggest::Names<'a>>,
    wanted_names: HashMap<String, suggest::Names<'a>>,
}

/// How deep `let` and preset chains may nest (recursion stays far from the stack's end).
const MAX_DEPTH: usize = 200;
/// More values than any real pipeline has; past this, checking stops with a diagnostic
/// instead of exhausting memory on adversarial input.
const MAX_VALUES: usize = 5_000_000;
/// The most instances one declaration (or value) may expand to.
const MAX_INSTANCES: usize = 100_000;
/// The most names a help line lists (the rest are counted).
const MAX_LISTED: usize = 20;

pub(crate) struct Resolved {
    pub pipeline: Pipeline,
    pub spans: SpanTable,
}

/// Resolve loaded files (used-before-user) with `--set` overrides (parsed `let` items).
/// The pipeline holds every declaration that resolved; it is complete when there are no
/// diagnostics.
pub(crate) fn resolve(
    files: &[ast::File],
    overrides: &[ast::Item],
    root: PathBuf,
    data_root: PathBuf,
) -> (Resolved, Vec<Diagnostic>) {
    let mut r = Resolver {
        root,
        data_root,
        diags: Vec::new(),
        lets: HashMap::new(),
        decls: HashMap::new(),
        order: Vec::new(),
        axes: Vec::new(),
        axis_ids: HashMap::new(),
        stages: HashMap::new(),
        configs: HashMap::new(),
        let_stack: Vec::new(),
        preset_stack: Vec::new(),
        stack: Vec::new(),
        spans: SpanTable::default(),
        reported_cycles: Default::default(),
        let_memo: HashMap::new(),
        values_resolved: 0,
        preset_memo: HashMap::new(),
        defaults: HashMap::new(),
        by_kind: HashMap::new(),
        decl_at: HashMap::new(),
        variant_names: HashMap::new(),
        wanted_names: HashMap::new(),
    };
    r.register(files);
    r.apply_overrides(overrides);
    let order = r.order.clone();
    for name in &order {
        let kind = r.decls[name].kind;
        match kind {
            Some(k) if k.role == Role::Stage => {
                r.stage_family(name, None);
            }
            Some(_) => {
                r.config_family(name, None);
            }
            None => {}
        }
    }
    r.check_unused_lets();
    // With errors, the pipeline holds what did resolve, so that the cross-stage checks
    // still report independent problems; the caller returns no pipeline then.
    let mut pipeline = Pipeline { root: r.root.clone(), ..Pipeline::default() };
    for name in &order {
        let def = &r.decls[name];
        let Some(kind) = def.kind else { continue };
        let span = def.decl.kind.span.to(def.decl.block.span);
        if kind.role == Role::Stage {
            let Some(Slot::Done(Some(family))) = r.stages.remove(name) else { continue };
            // Nothing else holds a family once all are resolved: move rather than copy.
            let family = Rc::try_unwrap(family).unwrap_or_else(|shared| (*shared).clone());
            let names = family.instances.iter().map(|i| i.name.clone()).collect();
            pipeline.families.insert(name.to_string(), names);
            for i in family.instances {
                pipeline.instances.push(Instance {
                    name: i.name,
                    decl: name.to_string(),
                    kind: family.kind.to_string(),
                    variant: family.variant.to_string(),
                    params: i.params,
                    sweep: i.sweep,
                    span,
                });
            }
        } else if let Some(Slot::Done(Some(multi))) = r.configs.get(name) {
            for (coord, value) in multi.iter() {
                if let Value::Config(c) = value {
                    pipeline.configs.insert(r.instance_name(name, coord), c.clone());
                }
            }
        }
    }
    let diags = std::mem::take(&mut r.diags);
    (Resolved { pipeline, spans: r.spans }, diags)
}

impl<'a> Resolver<'a> {
    fn register(&mut self, files: &'a [ast::File]) {
        let mut first: HashMap<&'a str, Span> = HashMap::new();
        for file in files {
            for item in &file.items {
                let (ident, is_decl) = match &item.kind {
                    ItemKind::Use { .. } => continue,
                    ItemKind::Let { name, .. } => (name, false),
                    ItemKind::Decl(d) => (&d.name, true),
                };
                if let Some(prev) = first.get(ident.name.as_str()) {
                    self.diags.push(
                        Diagnostic::new(
                            Code::DuplicateName,
                            format!("`{}` is defined twice", ident.name),
                            ident.span,
                            "defined again here",
                        )
                        .with_label(*prev, "first defined here")
                        .with_help("every let and declaration needs its own name; rename one of them"),
                    );
                    continue;
                }
                first.insert(&ident.name, ident.span);
                match &item.kind {
                    ItemKind::Let { name, value } => {
                        self.lets.insert(&name.name, (name, value));
                    }
                    ItemKind::Decl(d) => {
                        let kind = self.kind_of(d);
                        if let Some(k) = kind {
                            self.by_kind.entry(k.name).or_default().push(&d.name.name);
                        }
                        self.decl_at.insert(d.name.span, &d.name.name);
                        self.decls.insert(&d.name.name, DeclDef { decl: d, kind });
                        self.spans.decls.insert(d.name.name.clone(), d.name.span);
                        self.order.push(&d.name.name);
                    }
                    ItemKind::Use { .. } => {}
                }
                let _ = is_decl;
            }
        }
    }

    fn kind_of(&mut self, d: &Decl) -> Option<&'static KindSpec> {
        if let Some(k) = schema::writable_kind(&d.kind.name) {
            return Some(k);
        }
        let names = schema::writable_kind_names();
        let mut diag =
            Diagnostic::new(Code::UnknownKind, format!("unknown kind `{}`", d.kind.name), d.kind.span, "not a kind");
        let list = names.join(", ");
        diag =
            diag.with_help(match (schema::kind(&d.kind.name), suggest::closest(&d.kind.name, names.iter().copied())) {
                (Some(_), _) => format!(
                    "`{}` stages are created by difflow itself; the kinds you can declare are {list}",
                    d.kind.name
                ),
                (None, Some(best)) => format!("did you mean `{best}`? The kinds are {list}"),
                (None, None) => format!("the kinds are {list}"),
            });
        self.diags.push(diag);
        None
    }

    /// A `let` is resolved where it is used, against the key's type; one that no key uses
    /// still must not name something undefined.
    fn check_unused_lets(&mut self) {
        let used: std::collections::HashSet<&str> = self.let_memo.keys().map(|(n, ..)| *n).collect();
        let mut unused: Vec<(&'a Ident, &'a ast::Value)> =
            self.lets.iter().filter(|(n, _)| !used.contains(**n)).map(|(_, v)| *v).collect();
        unused.sort_by_key(|(id, _)| (id.span.file, id.span.start));
        for (_, value) in unused {
            let mut stack = vec![value];
            while let Some(v) = stack.pop() {
                match &v.kind {
                    ValueKind::Ident(id)
                        if !self.lets.contains_key(id.name.as_str()) && !self.decls.contains_key(id.name.as_str()) =>
                    {
                        self.undefined(id, &Type::Union(Vec::new()));
                    }
                    ValueKind::List(items) | ValueKind::Sweep(items) => stack.extend(items.iter()),
                    ValueKind::Inline { block, .. } => stack.extend(block.entries.iter().map(|e| &e.value)),
                    _ => {}
                }
            }
        }
    }

    fn apply_overrides(&mut self, overrides: &'a [ast::Item]) {
        for item in overrides {
            let ItemKind::Let { name, value } = &item.kind else { continue };
            if let Some(slot) = self.lets.get_mut(name.name.as_str()) {
                slot.1 = value;
            } else {
                let help = match suggest::closest(&name.name, self.lets.keys().copied()) {
                    Some(best) => format!("did you mean `{best}`? `--set` overrides a `let` of the pipeline"),
                    None if self.lets.is_empty() => "`--set` overrides a `let`, and this pipeline has none".to_string(),
                    None => {
                        let mut names: Vec<_> = self.lets.keys().copied().collect();
                        names.sort();
                        format!("`--set` overrides a `let`; the pipeline's are {}", names.join(", "))
                    }
                };
                self.diags.push(
                    Diagnostic::new(
                        Code::UndefinedName,
                        format!("`--set {}`: the pipeline has no `let {}`", name.name, name.name),
                        name.span,
                        "no such let",
                    )
                    .with_help(help),
                );
            }
        }
    }

    // ---- declarations -------------------------------------------------------------

    fn cycle(&mut self, name: &str, at: Option<Span>) {
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

    fn stage_family(&mut self, name: &'a str, at: Option<Span>) -> Option<Rc<Family>> {
        match self.stages.get(name) {
            Some(Slot::Done(f)) => return f.clone(),
            Some(Slot::Busy) => {
                self.cycle(name, at);
                return None;
            }
            None => {}
        }
        self.stages.insert(name, Slot::Busy);
        self.stack.push((name, at));
        let result = self.build_stage(name).map(Rc::new);
        self.stack.pop();
        self.stages.insert(name, Slot::Done(result.clone()));
        result
    }

    fn build_stage(&mut self, name: &'a str) -> Option<Family> {
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
        };
        let what = format!("`{} {}`", kind.name, name);
        let multi = self.block(variant, &entries, decl.name.span, &what, &cx)?;
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

    fn config_family(&mut self, name: &'a str, at: Option<Span>) -> Option<Rc<Multi<Value>>> {
        match self.configs.get(name) {
            Some(Slot::Done(f)) => return f.clone(),
            Some(Slot::Busy) => {
                self.cycle(name, at);
                return None;
            }
            None => {}
        }
        self.configs.insert(name, Slot::Busy);
        self.stack.push((name, at));
        let result = self.build_config(name).map(Rc::new);
        self.stack.pop();
        self.configs.insert(name, Slot::Done(result.clone()));
        result
    }

    fn build_config(&mut self, name: &'a str) -> Option<Multi<Value>> {
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
        };
        let what = format!("`{} {}`", kind.name, name);
        let multi = self.block(variant, &entries, decl.name.span, &what, &cx)?;
        Some(config_values(kind, variant, multi))
    }

    /// The variant and entries of a block: its own, or a preset's overridden by its own.
    fn effective(
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
        let count = presets.len() - usize::from(own_name.is_some_and(|o| presets.contains(&o)));
        if count > 0 {
            let shown_name: Vec<&str> =
                presets.iter().copied().filter(|p| Some(*p) != own_name).take(MAX_LISTED).collect();
            help.push_str(&format!("; presets declared: {}", shown_name.join(", ")));
            if count > shown_name.len() {
                help.push_str(&format!(" and {} more", count - shown_name.len()));
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
    fn suggest_variant(&mut self, kind: &'static KindSpec, name: &str, own: Option<&str>) -> Option<&'a str> {
        let by_kind = &self.by_kind;
        let names = self.variant_names.entry(kind.name).or_insert_with(|| {
            let presets = by_kind.get(kind.name).into_iter().flatten().copied();
            suggest::Names::new(kind.variants.iter().map(|v| v.name).chain(presets))
        });
        names.closest(name, own)
    }

    /// The effective variant and entries of a preset declaration (its own preset chain
    /// resolved), with cycle and depth checks; `None` after reporting a problem.
    fn preset_base(
        &mut self,
        kind: &'static KindSpec,
        preset: &'a Decl,
        variant: &'a Ident,
    ) -> Option<(&'static VariantSpec, Vec<&'a Entry>)> {
        if self.preset_stack.contains(&variant.name.as_str()) {
            let mut members: Vec<&str> = self.preset_stack.clone();
            members.sort();
            if !self.reported_cycles.insert(members.join(" ")) {
                return None;
            }
            let mut chain: Vec<String> = self.preset_stack.iter().map(|n| format!("`{n}`")).collect();
            chain.push(format!("`{}`", variant.name));
            self.diags.push(
                Diagnostic::new(
                    Code::DependencyCycle,
                    format!("preset cycle: {}", chain.join(" → ")),
                    variant.span,
                    "this preset leads back to itself",
                )
                .with_help("a preset must bottom out in a variant; make one of these declarations name a variant"),
            );
            return None;
        }
        if self.preset_stack.len() >= MAX_DEPTH {
            self.too_deep(variant.span, "presets built on other presets");
            return None;
        }
        self.preset_stack.push(&variant.name);
        let base = self.effective(kind, preset.variant.as_ref(), &preset.block, preset.name.span);
        self.preset_stack.pop();
        base
    }

    /// A block's entries, reporting keys written twice (the first one counts).
    fn own_entries(&mut self, block: &'a Block) -> Vec<&'a Entry> {
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

    /// Resolve a variant's keys: every key of the variant, defaults filled.
    fn block(
        &mut self,
        variant: &'static VariantSpec,
        entries: &[&'a Entry],
        at: Span,
        what: &str,
        cx: &Cx,
    ) -> Option<Multi<Params>> {
        let mut acc: Multi<Params> = vec![(Vec::new(), Params::new())];
        let mut ok = true;
        for e in entries {
            let path = if cx.path.is_empty() { e.key.name.clone() } else { format!("{}.{}", cx.path, e.key.name) };
            self.spans.entries.insert((cx.owner.to_string(), path.clone()), (e.key.span, e.value.span));
            let Some(spec) = variant.key(&e.key.name) else {
                self.unknown_key(variant, e, cx);
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
            };
            // A sweep written here is a new axis: its product with the block so far is
            // known before its values are resolved.
            if let ValueKind::Sweep(items) = &e.value.kind {
                if ok && self.too_many(acc.len(), items.len(), e.value.span) {
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
        for spec in &variant.keys {
            if entries.iter().any(|e| e.key.name == spec.name) {
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
        for group in &variant.exactly_one_of {
            let set: Vec<&&Entry> = entries.iter().filter(|e| group.contains(&e.key.name.as_str())).collect();
            let names = group.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" or ");
            if set.is_empty() {
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
        ok.then_some(acc)
    }

    fn unknown_key(&mut self, variant: &'static VariantSpec, e: &Entry, cx: &Cx) {
        let keys: Vec<&str> = variant.keys.iter().map(|k| k.name).collect();
        let owner_kind = schema::kinds().iter().find(|k| k.variants.iter().any(|v| std::ptr::eq(v, variant)));
        let elsewhere = owner_kind.and_then(|k| {
            k.variants.iter().find(|v| v.name != variant.name && v.key(&e.key.name).is_some()).map(|v| v.name)
        });
        let mut help = match suggest::closest(&e.key.name, keys.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? "),
            None => String::new(),
        };
        if let Some(other) = elsewhere {
            help.push_str(&format!("`{}` is a key of `{other}`, not `{}`. ", e.key.name, variant.name));
        }
        help.push_str(&format!("The keys of `{}` are {}", variant.name, keys.join(", ")));
        let _ = cx;
        self.diags.push(
            Diagnostic::new(
                Code::UnknownKey,
                format!("unknown key `{}` for `{}`", e.key.name, variant.name),
                e.key.span,
                format!("not a key of `{}`", variant.name),
            )
            .with_help(help),
        );
    }

    // ---- values -------------------------------------------------------------------

    fn value(&mut self, v: &'a ast::Value, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        self.values_resolved += 1;
        if self.values_resolved >= MAX_VALUES {
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
            return None;
        }
        match &v.kind {
            ValueKind::Sweep(items) => return self.sweep(v, items, ty, cx),
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
            Type::Int => match &v.kind {
                ValueKind::Number { value, text, .. } => {
                    if value.fract() != 0.0 || !value.is_finite() || value.abs() > 9.0e15 {
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
                    Some(one(Value::Int(*value as i64)))
                }
                _ => self.mismatch(v, ty, cx),
            },
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
            Type::Enum(options) => match &v.kind {
                ValueKind::Str(s) if options.contains(&s.as_str()) => Some(one(Value::Str(s.clone()))),
                ValueKind::Str(s) => {
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
                _ => self.mismatch(v, ty, cx),
            },
            Type::Path => match &v.kind {
                ValueKind::Str(s) => {
                    let p = Path::new(s);
                    let in_dataset =
                        self.decls.get(&*cx.owner).and_then(|d| d.kind).is_some_and(|k| k.name == "dataset");
                    let base = if in_dataset { &self.data_root } else { &self.root };
                    let abs = if p.is_absolute() { p.to_path_buf() } else { super::modules::normalize(&base.join(p)) };
                    Some(one(Value::Path(abs.display().to_string())))
                }
                _ => self.mismatch(v, ty, cx),
            },
            Type::List(inner) => self.list(v, inner, ty, cx),
            Type::Stage(kinds) => self.stage_ref(v, kinds, ty, cx),
            Type::Config(kind) => self.config_ref(v, kind, ty, cx),
        }
    }

    fn list(&mut self, v: &'a ast::Value, inner: &Type, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let collects = matches!(inner, Type::Stage(_));
        let sub = Cx { collect: collects, ..cx.clone() };
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

    fn stage_ref(&mut self, v: &'a ast::Value, kinds: &[&'static str], ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
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

    fn config_ref(&mut self, v: &'a ast::Value, kind_name: &str, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
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
                let multi = self.block(spec, &entries, variant.span, &what, cx)?;
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

    fn let_ref(&mut self, id: &'a Ident, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let name: &'a str = self.lets.get_key_value(id.name.as_str()).map(|(k, _)| *k)?;
        if let Some(pos) = self.let_stack.iter().position(|n| *n == name) {
            let mut chain: Vec<String> = self.let_stack[pos..].iter().map(|n| format!("`{n}`")).collect();
            chain.push(format!("`{name}`"));
            self.diags.push(
                Diagnostic::new(
                    Code::DependencyCycle,
                    format!("dependency cycle: {}", chain.join(" → ")),
                    id.span,
                    "this name leads back to itself",
                )
                .with_help("a `let` cannot be defined through itself; give one of them a value"),
            );
            return None;
        }
        if self.let_stack.len() >= MAX_DEPTH {
            self.too_deep(id.span, "`let`s defined through other `let`s");
            return None;
        }
        let memo_key = (name, ty.short(), cx.range.to_string(), cx.collect);
        if let Some(done) = self.let_memo.get(&memo_key) {
            return done.clone();
        }
        let value = self.lets[name].1;
        self.let_stack.push(name);
        let sub = Cx { axis_name: name.to_string(), ..cx.clone() };
        let r = self.value(value, ty, &sub);
        self.let_stack.pop();
        self.let_memo.insert(memo_key, r.clone());
        r
    }

    fn sweep(&mut self, v: &'a ast::Value, items: &'a [ast::Value], ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
        let key = (v.span.file, v.span.start);
        if items.len() > MAX_INSTANCES {
            self.too_many(items.len(), 1, v.span);
            return None;
        }
        let labels: Vec<String> = items.iter().map(label).collect();
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(labels.len());
        for (i, l) in labels.iter().enumerate() {
            if let Some(&j) = first.get(l.as_str()) {
                self.diags.push(
                    Diagnostic::new(
                        Code::DuplicateSweepValue,
                        format!("`{l}` appears twice in this sweep"),
                        items[i].span,
                        "again here",
                    )
                    .with_label(items[j].span, "first here")
                    .with_help("each value of a sweep names an instance; remove the repeat"),
                );
                return None;
            }
            first.insert(l, i);
        }
        let mut out = Vec::new();
        let mut values = Vec::with_capacity(items.len());
        let mut ok = true;
        let axis = match self.axis_ids.get(&key) {
            Some(a) => *a,
            None => {
                let id = self.axes.len();
                let name = if cx.axis_name.is_empty() { "sweep".to_string() } else { cx.axis_name.clone() };
                self.axes.push(Axis {
                    qualified: format!("{}.{}", cx.owner, name),
                    name,
                    labels: labels.clone(),
                    values: Vec::new(),
                    pos: key,
                });
                self.axis_ids.insert(key, id);
                id
            }
        };
        for (i, item) in items.iter().enumerate() {
            match self.value(item, ty, cx) {
                Some(m) => {
                    let shown = match m.as_slice() {
                        [(_, x @ (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Str(_)))] => x.clone(),
                        _ => Value::Str(labels[i].clone()),
                    };
                    values.push(shown);
                    for (coord, x) in m {
                        if let Some(c) = merge(&coord, &vec![(axis, i)]) {
                            out.push((c, x));
                        }
                    }
                }
                None => ok = false,
            }
        }
        if ok && self.axes[axis].values.is_empty() {
            self.axes[axis].values = values;
        }
        ok.then_some(out)
    }

    /// Whether a value has the shape of a type (used to pick a union's alternative and
    /// to accept a single stage where a list is wanted).
    fn accepts(&self, v: &ast::Value, t: &Type) -> bool {
        let v = self.deref(v);
        match (&v.kind, t) {
            (ValueKind::Sweep(items), t) => items.first().is_some_and(|i| self.accepts(i, t)),
            (ValueKind::Number { .. }, Type::Int | Type::Float) => true,
            (ValueKind::Str(_), Type::Str | Type::Path) => true,
            (ValueKind::Str(s), Type::Enum(options)) => {
                options.contains(&s.as_str()) || suggest::closest(s, options.iter().copied()).is_some()
            }
            (ValueKind::Bool(_), Type::Bool) => true,
            (ValueKind::List(_), Type::List(_)) => true,
            (ValueKind::Inline { .. }, Type::Config(_)) => true,
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
    fn deref<'v>(&'v self, mut v: &'v ast::Value) -> &'v ast::Value {
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

    fn in_range(&mut self, x: f64, v: &ast::Value, cx: &Cx) -> Option<()> {
        if cx.range.contains(x) {
            return Some(());
        }
        let shown = match &v.kind {
            ValueKind::Number { text, .. } => text.to_string(),
            _ => x.to_string(),
        };
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

    /// Whether joining multi-values of these sizes could exceed [`MAX_INSTANCES`] (reported).
    fn too_many(&mut self, a: usize, b: usize, at: Span) -> bool {
        if a.saturating_mul(b) <= MAX_INSTANCES {
            return false;
        }
        self.diags.push(
            Diagnostic::new(
                Code::TooLarge,
                format!("the sweeps here would make more than {MAX_INSTANCES} instances"),
                at,
                "too many combinations",
            )
            .with_help("sweep fewer values at once; every combination of sweeps is an instance"),
        );
        true
    }

    fn too_deep(&mut self, at: Span, what: &str) {
        self.diags.push(
            Diagnostic::new(Code::TooDeep, format!("{what} nest more than {MAX_DEPTH} levels deep"), at, "too deep")
                .with_help("write the value directly instead of through a long chain of names"),
        );
    }

    fn undefined(&mut self, id: &Ident, ty: &Type) {
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
    fn suggest_name(&mut self, name: &str, ty: &Type, any_type: bool) -> Option<&'a str> {
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

    fn wrong_kind(&mut self, id: &Ident, actual: &KindSpec, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
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

    fn mismatch(&mut self, v: &ast::Value, ty: &Type, cx: &Cx) -> Option<Multi<Value>> {
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

    fn found(&self, v: &ast::Value) -> String {
        match &v.kind {
            ValueKind::Number { text, .. } => format!("the number {text}"),
            ValueKind::Str(s) => format!("the string \"{s}\""),
            ValueKind::Bool(b) => format!("`{b}`"),
            ValueKind::List(_) => "a list".into(),
            ValueKind::Sweep(_) => "a sweep".into(),
            ValueKind::Inline { variant, .. } => format!("an inline `{}` block", variant.name),
            ValueKind::Ident(id) => match self.decls.get(id.name.as_str()).and_then(|d| d.kind) {
                Some(k) => format!("`{}` (a {})", id.name, k.name),
                None => format!("`{}`", id.name),
            },
        }
    }

    // ---- names --------------------------------------------------------------------

    fn instance_name(&self, decl: &str, coord: &Coord) -> String {
        if coord.is_empty() {
            return decl.to_string();
        }
        let mut parts: Vec<&(usize, usize)> = coord.iter().collect();
        parts.sort_by_key(|(a, _)| self.axes[*a].pos);
        let clash = |a: usize| parts.iter().filter(|(b, _)| self.axes[*b].name == self.axes[a].name).count() > 1;
        let shown: Vec<String> = parts
            .iter()
            .map(|(a, i)| {
                let axis = &self.axes[*a];
                let name = if clash(*a) { &axis.qualified } else { &axis.name };
                format!("{name}={}", axis.labels[*i])
            })
            .collect();
        format!("{decl}[{}]", shown.join(","))
    }

    fn sweep_values(&self, coord: &Coord) -> Vec<(String, Value)> {
        let mut parts: Vec<&(usize, usize)> = coord.iter().collect();
        parts.sort_by_key(|(a, _)| self.axes[*a].pos);
        parts
            .iter()
            .map(|(a, i)| {
                let axis = &self.axes[*a];
                let v = axis.values.get(*i).cloned().unwrap_or_else(|| Value::Str(axis.labels[*i].clone()));
                (axis.name.clone(), v)
            })
            .collect()
    }
}

fn type_wants(ty: &Type, kind: &str) -> bool {
    match ty {
        Type::Stage(kinds) => kinds.contains(&kind),
        Type::Config(k) => *k == kind,
        Type::List(inner) => type_wants(inner, kind),
        Type::Union(alts) => alts.iter().any(|t| type_wants(t, kind)),
        _ => false,
    }
}

fn config_values(kind: &'static KindSpec, variant: &'static VariantSpec, multi: Multi<Params>) -> Multi<Value> {
    multi
        .into_iter()
        .map(|(c, params)| {
            (c, Value::Config(Config { kind: kind.name.to_string(), variant: variant.name.to_string(), params }))
        })
        .collect()
}

fn range_help(key: &str, doc: &str, range: &Range) -> String {
    let bound = range.to_string().replace('x', key);
    if doc.is_empty() {
        format!("choose a value with {bound}")
    } else {
        format!("`{key}`: {doc}. Choose a value with {bound}")
    }
}

fn one(v: Value) -> Multi<Value> {
    vec![(Vec::new(), v)]
}

/// How a sweep value is shown in an instance name: as written (`2e-4`, `ddim`), strings
/// without quotes.
fn label(v: &ast::Value) -> String {
    match &v.kind {
        ValueKind::Number { text, .. } => text.to_string(),
        ValueKind::Str(s) => s.clone(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Ident(id) => id.name.clone(),
        ValueKind::Inline { variant, block } => {
            let inner: Vec<String> =
                block.entries.iter().map(|e| format!("{}={}", e.key.name, label(&e.value))).collect();
            if inner.is_empty() {
                variant.name.clone()
            } else {
                format!("{}({})", variant.name, inner.join(","))
            }
        }
        ValueKind::List(items) => format!("[{}]", items.iter().map(label).collect::<Vec<_>>().join(",")),
        ValueKind::Sweep(items) => format!("sweep({})", items.iter().map(label).collect::<Vec<_>>().join(",")),
    }
}

/// Two coordinates agree on their shared axes: their union; otherwise none.
fn merge(a: &Coord, b: &Coord) -> Option<Coord> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if a[i].1 != b[j].1 {
                    return None;
                }
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    Some(out)
}

/// Natural join of two multi-values on shared axes (product on the others).
fn join<A, B, C>(a: &Multi<A>, b: &Multi<B>, mut f: impl FnMut(&A, &B) -> C) -> Multi<C> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    for (ca, x) in a {
        for (cb, y) in b {
            if let Some(c) = merge(ca, cb) {
                out.push((c, f(x, y)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_zips_shared_axes_and_multiplies_others() {
        let a: Multi<i32> = vec![(vec![(0, 0)], 1), (vec![(0, 1)], 2)];
        let b: Multi<i32> = vec![(vec![(0, 0)], 10), (vec![(0, 1)], 20)];
        let zipped = join(&a, &b, |x, y| x + y);
        assert_eq!(zipped.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![11, 22]);
        let c: Multi<i32> = vec![(vec![(1, 0)], 100), (vec![(1, 1)], 200), (vec![(1, 2)], 300)];
        assert_eq!(join(&a, &c, |x, y| x + y).len(), 6);
    }
}
