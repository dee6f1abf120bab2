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

mod decls;
mod errors;
mod replicates;
mod spans;
mod sweeps;
mod values;

use decls::config_values;
use errors::range_help;
use sweeps::join;
use values::type_wants;

pub(crate) use spans::SpanTable;

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
    /// The value of a replicable key itself (not in a `let`, list or sweep).
    replicable: bool,
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
                    ValueKind::Inline { block, .. } | ValueKind::Record(block) => {
                        stack.extend(block.entries.iter().map(|e| &e.value))
                    }
                    _ => {}
                }
            }
        }
    }

    fn apply_overrides(&mut self, overrides: &'a [ast::Item]) {
        let mut names: Vec<&'a str> = self.lets.keys().copied().collect();
        names.sort_unstable();
        let index = suggest::Names::new(names.iter().copied());
        for item in overrides {
            let ItemKind::Let { name, value } = &item.kind else { continue };
            if let Some(slot) = self.lets.get_mut(name.name.as_str()) {
                slot.1 = value;
            } else {
                let help = match index.closest(&name.name, None) {
                    Some(best) => format!("did you mean `{best}`? `--set` overrides a `let` of the pipeline"),
                    None if names.is_empty() => "`--set` overrides a `let`, and this pipeline has none".to_string(),
                    None => {
                        let shown = names[..names.len().min(MAX_LISTED)].join(", ");
                        let more = names.len().saturating_sub(MAX_LISTED);
                        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                        format!("`--set` overrides a `let`; the pipeline's are {shown}{more}")
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
}
