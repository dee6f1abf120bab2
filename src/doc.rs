//! `difflow doc [KIND]`: the language reference, generated from the schema. The same text
//! (for every kind, after an introduction and the grammar) is `docs/language.md`; a test
//! fails when that file is out of date.

use crate::diagnostics::Code;
use crate::lang::suggest;
use crate::schema::{self, Default, KindSpec, Role, VariantSpec};

/// The reference of every kind followed by the diagnostic codes; of one kind; or of one
/// variant (`difflow doc cfg`) when the name is a variant of exactly one kind.
pub fn render(name: Option<&str>) -> Result<String, String> {
    let Some(name) = name else {
        return Ok(format!("{}# Diagnostic codes\n\n{}", render_kinds(), code_table()));
    };
    if let Some(k) = schema::kind(name) {
        return Ok(render_kind(k));
    }
    let owners: Vec<&KindSpec> = schema::kinds().iter().filter(|k| !k.hidden && k.variant(name).is_some()).collect();
    match owners.as_slice() {
        [k] => Ok(render_one_variant(k, name)),
        [] => Err(unknown_name(name)),
        several => {
            let kinds: Vec<String> = several.iter().map(|k| format!("`{}`", k.name)).collect();
            Err(format!(
                "`{name}` is a variant of several kinds: {}; run `difflow doc KIND` for one of them",
                kinds.join(", ")
            ))
        }
    }
}

/// Neither a kind nor a variant: the closest kind or variant, and the kinds.
fn unknown_name(name: &str) -> String {
    let kinds = schema::writable_kind_names();
    let list = kinds.join(", ");
    let variants = schema::kinds().iter().filter(|k| !k.hidden).flat_map(|k| k.variants.iter().map(|v| v.name));
    match suggest::closest(name, kinds.iter().copied().chain(variants)) {
        Some(best) => format!("unknown kind or variant `{name}`: did you mean `{best}`? The kinds are {list}"),
        None => format!("unknown kind or variant `{name}`; the kinds are {list}"),
    }
}

/// One variant's section, after the line that says which kind it belongs to.
fn render_one_variant(k: &KindSpec, variant: &str) -> String {
    let v = k.variant(variant).expect("the caller found the variant in this kind");
    let mut out = format!(
        "## `{} = {}`\n\nA variant of `{}` ({}); `difflow doc {}` lists the others.\n\n",
        k.name, v.name, k.name, k.doc, k.name
    );
    out.push_str(&render_variant_body(v));
    out
}

fn render_kinds() -> String {
    let mut out = String::from("# Kinds, variants and keys\n\n");
    for k in schema::kinds().iter().filter(|k| !k.hidden) {
        out.push_str(&render_kind(k));
    }
    for k in schema::kinds().iter().filter(|k| k.hidden) {
        out.push_str(&render_kind(k));
    }
    out
}

fn render_kind(k: &KindSpec) -> String {
    let mut out = String::new();
    let role = match k.role {
        Role::Config => "config: folded into the stages that use it",
        Role::Stage => "stage: runs and leaves artifacts in the cache",
    };
    out.push_str(&format!("## `{}` ({role})\n\n{}.", k.name, capitalise(k.doc)));
    if k.hidden {
        out.push_str(" Created by difflow itself; it cannot be declared in a file.");
    }
    match k.default_variant {
        Some(d) if k.variants.len() == 1 => {
            out.push_str(&format!(" One variant, `{d}`, so `= VARIANT` is left out: `{} NAME {{ … }}`.", k.name))
        }
        Some(d) => out.push_str(&format!(" Default variant: `{d}`.")),
        None => out.push_str(&format!(" Write `{} NAME = VARIANT {{ … }}`.", k.name)),
    }
    if k.role == Role::Stage {
        out.push_str(&format!(" Implementation version {} (part of the stage key).", k.version));
    }
    out.push_str("\n\n");
    for v in &k.variants {
        if k.variants.len() > 1 || k.default_variant.is_none() {
            out.push_str(&format!("### `{} = {}`\n\n", k.name, v.name));
        }
        out.push_str(&render_variant_body(v));
    }
    out
}

fn render_variant_body(v: &VariantSpec) -> String {
    let mut out = format!("{}.\n\n", capitalise(v.doc));
    out.push_str("| key | type | default | range | meaning |\n|---|---|---|---|---|\n");
    for key in &v.keys {
        let default = match &key.default {
            Default::Required => "required".to_string(),
            Default::Unset => "unset".to_string(),
            Default::Value(text) => format!("`{text}`"),
        };
        let mut meaning = key.doc.to_string();
        if !key.in_key {
            meaning.push_str(" (not part of the stage key)");
        }
        if key.replicable {
            meaning.push_str("; or `replicate(N)` (see Replicates)");
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            key.name,
            key.ty.short().replace('|', "\\|"),
            default,
            key.range.to_string().replace('x', key.name),
            meaning.replace('|', "\\|")
        ));
    }
    for group in &v.exactly_one_of {
        let names: Vec<String> = group.iter().map(|n| format!("`{n}`")).collect();
        out.push_str(&format!("\nSet exactly one of {}.\n", names.join(" and ")));
    }
    out.push('\n');
    out
}

/// The first letter in upper case when the text starts with a plain word; a symbol
/// (`x_t`, `ᾱ_t`), a type (`uint8`) or a file name (`metrics.json`) keeps its case.
fn capitalise(s: &str) -> String {
    let first_word = s.split([' ', ',', ';', ':']).next().unwrap_or("");
    if !first_word.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
        return s.to_string();
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Every diagnostic code with its meaning, as a Markdown table.
fn code_table() -> String {
    let mut out = String::from("| code | what |\n|---|---|\n");
    for code in Code::ALL {
        out.push_str(&format!("| `{}` | {} |\n", code.as_str(), code.doc().replace('|', "\\|")));
    }
    out
}

/// The introduction and grammar summary of `docs/language.md`.
const INTRO: &str = r##"# The difflow language

<!-- Generated by `DIFFLOW_BLESS=1 cargo test --release -p difflow --test lang_doc` from
     src/doc.rs and the schema (src/schema/); do not edit by hand. -->

A `.diff` file declares the data, noise schedule, network, training objective, sampler
chain, guidance and metrics of an experiment. `difflow check FILE` validates it in
milliseconds; `difflow doc [KIND]` prints the part of this page about one kind.

## Grammar

```text
file     = item*
item     = use | let | decl
use      = "use" STRING                  # relative to the file, or "std/NAME.diff" (embedded stdlib)
let      = "let" IDENT "=" value
decl     = KIND IDENT ("=" VARIANT)? block
block    = "{" (IDENT "=" value ","?)* "}"
value    = NUMBER | STRING | BOOL | list | sweep | replicate | inline | IDENT
inline   = VARIANT block                 # an anonymous declaration: ddim { steps = 50 }
list     = "[" (value ("," value)* ","?)? "]"
sweep    = "sweep" "(" value ("," value)* ","? ")"
replicate = "replicate" "(" NUMBER ")"    # only as a train, classifier or sample stage's seed
comment  = "#" … end of line
```

- Numbers: `1000`, `10_000`, `2e-4`, `0.5`, `-3`. An int written for a float key is
  fine; a fraction for an int key (`steps = 2.5`) is an error. Strings: double quotes
  with `\"` `\\` `\n`.
- A declaration is `KIND NAME = VARIANT { … }`; `= VARIANT` may be left out where the
  kind has a default variant. `VARIANT` may also name another declaration of the same
  kind (a preset): its keys are taken and the block overrides them
  (`model net = unet_small { classes = 10 }`). Presets chain.
- An identifier in value position names a `let` or a declaration, anywhere in the file
  or the files it `use`s (one namespace; a name defined twice is an error). A
  declaration of the wrong kind is an error. A `let` may hold any value: a number, a
  list, an inline block, a sweep, or another name.
- Inline blocks take their kind from the key that holds them:
  `sampler = ddim { steps = 50 }`, `guidance = cfg { scale = 3 }`. Stages cannot be
  written inline; declare them with a name.
- A record `{ KEY = VALUE, … }` (braces with no variant) holds named literals —
  numbers, strings, `true`/`false` and lists of them — passed on as they are: a
  `python` model's `args` (see `docs/own_code.md`). A `script` stage's `inputs` is a
  record of stage names instead, `{ samples = gen, data = digits }`.
- Keys left out take the defaults below; keys with no default that are left out are
  absent from the stage's parameters ("unset"). Paths are resolved against the folder
  of the pipeline file.
- `use "std/NAME.diff"` reads the standard library embedded in the binary:
{STDLIB}

## Sweeps and families

`sweep(a, b, …)` may stand for any value, in a declaration, an inline block or a `let`.
The declaration becomes a *family* of instances, one per value; several sweeps give the
cartesian product. Instances are named after the innermost key (or `let`) the sweep is
written under, in the order the sweeps are written: `gen[scale=0.5]`,
`gen[scale=0.5,steps=50]` (values shown as written, strings without quotes; when two
sweeps of one instance share a key name they are qualified by their declaration,
`m[a.steps=10,b.steps=5]`).

Everything downstream of a family is a family too: a stage reading a family has one
instance per member (`scores[scale=0.5]` reads `gen[scale=0.5]`). A stage reading two
families that come from the same sweep stays aligned with it (zipped); two different
sweeps multiply. Keys that hold a *list of stages* (`report { include = [...] }`,
`plot = scatter { of = [...] }`, `plot = loss { of = [...] }`) collect whole families:
every instance, in order.

## Replicates

`seed = replicate(N)` on a `train`, `classifier` or `sample` stage runs it N times
(N ≥ 2, a whole number), the runs differing only by their seeds: replicate i (counted
from 1) has seed i − 1, the seed's default plus i − 1. Replicate 1 is therefore the stage
as it is without `replicate`, and raising N keeps the keys (and cache entries) of the
replicates already run. The instances are named `fit[replicate=1]` … `fit[replicate=N]`
(`gen[fit.replicate=1,gen.replicate=2]` where two replicated stages meet; they
multiply like two sweeps). `replicate(…)` is written as the `seed` itself: not in a
`let`, a list or a sweep, and no sweep may be named `replicate`.

Stages downstream are replicated with it (a metrics stage reading a replicated sample
stage has N instances). Reports pool instances that differ only by their replicate
coordinates into one row per setting and give each metric as mean ± the half-width of
its 95 % confidence interval, mean ± t₀.₉₇₅(n − 1) · s / √n (Student's t with n − 1
degrees of freedom, s the sample standard deviation), with n; settings whose intervals
overlap are listed below the table (the difference is within the replicates' spread).
Charts draw the means with error bars against the swept coordinates, never against the
replicate or a seed. `difflow.lock` records each setting's summaries under
`[replicates."SETTING".metrics.NAME]` (`n`, `mean`, `ci95`, `low`, `high`), and
`difflow show --json` adds them to each replicate as `replicates`.

`difflow run --set NAME=VALUE` replaces the value of a `let` (written as in a file:
`--set T=500`, `--set 'scales=sweep(1, 3)'`) and is type-checked where the `let` is
used; an unknown NAME is an error.

## Checks

Besides syntax, names, kinds, variants, keys, types, ranges and required keys,
`difflow check` reports contradictions between stages that would fail or mislead late
in a run, each with a stable code:

{CODES}
Dataset facts the checks use: `mnist`, `fashion_mnist` (1 × 28 × 28, or `size`; 10
classes, or `classes`; 60,000 train / 10,000 test), `cifar10` (3 × 32 × 32, 10 classes,
50,000 / 10,000), `images` (`channels` × `size` × `size`, unlabelled), `toy` (2-D
points; gaussians8 has 8 labels, moons 2, swissroll none).

"##;

/// The whole of `docs/language.md`.
pub fn language_md() -> String {
    let mut out = INTRO.replace("{CODES}", &code_table()).replace("{STDLIB}", &stdlib_list());
    out.push_str(&render_kinds());
    out
}

/// One line per stdlib file with the declarations it holds, read from the files themselves.
fn stdlib_list() -> String {
    let lines: Vec<String> = crate::lang::modules::STDLIB
        .iter()
        .map(|(name, text)| {
            let names: Vec<String> = text
                .lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let (kind, decl) = (words.next()?, words.next()?);
                    crate::schema::kind(kind).map(|_| format!("`{decl}`"))
                })
                .collect();
            format!("  - `{name}`: {}", names.join(", "))
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::capitalise;

    #[test]
    fn capitalises_words_but_not_symbols_types_or_file_names() {
        assert_eq!(capitalise("decoded, normalised tensors"), "Decoded, normalised tensors");
        assert_eq!(capitalise("x_t and the predicted x₀"), "x_t and the predicted x₀");
        assert_eq!(capitalise("ᾱ_t and log SNR"), "ᾱ_t and log SNR");
        assert_eq!(capitalise("uint8 images"), "uint8 images");
        assert_eq!(capitalise("metrics.json; each input"), "metrics.json; each input");
        assert_eq!(capitalise(""), "");
    }
}
