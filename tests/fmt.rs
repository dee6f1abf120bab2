//! `difflow fmt`: idempotence, comments kept and meaning kept on every `.diff` in the
//! repository, plus golden tests of the layout.

mod cli_support;

use std::path::PathBuf;

use cli_support::diff_files_under;
use difflow::diagnostics::Code;
use difflow::fmt::{comment_texts, format_source, meaning, MAX_WIDTH};
use difflow::syntax::parse;

fn diff_files() -> Vec<PathBuf> {
    diff_files_under(&["pipelines", "stdlib", "tests/check", "tests/fmt", "examples"])
}

fn fmt(text: &str) -> String {
    match format_source(0, text) {
        Ok(s) => s,
        Err(d) => panic!("fmt failed on {text:?}: {d:?}"),
    }
}

#[test]
fn layout() {
    let src = "dataset d=toy{shape=\"moons\",count=1_000}\nlet T=1000\nuse \"std/unet.diff\"\n";
    assert_eq!(
        fmt(src),
        "use \"std/unet.diff\"\n\nlet T = 1000\n\ndataset d = toy {\n    shape = \"moons\"\n    count = 1_000\n}\n"
    );
}

#[test]
fn idempotent_with_comments() {
    let src = "# header\n\n# about T\nlet T = 1000 # steps\n\n\n\nschedule s = cosine { # the schedule\n  steps = T,   # all\n\n\n  # why\n  s = 0.008\n  # end\n} # done\n# tail\n";
    let once = fmt(src);
    assert_eq!(fmt(&once), once);
    assert_eq!(comment_texts(&once), comment_texts(src));
    assert_eq!(
        once,
        "# header\n\n# about T\nlet T = 1000  # steps\n\nschedule s = cosine {  # the schedule\n    steps = T  # all\n\n    # why\n    s = 0.008\n    # end\n}  # done\n# tail\n"
    );
}

#[test]
fn every_repo_file_is_formatted_idempotently_with_comments_and_meaning_kept() {
    let files = diff_files();
    let mut formatted = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let Ok(before) = parse(0, &text) else {
            // A syntax-error case: fmt must refuse it with the parser's diagnostic.
            let err = format_source(0, &text).expect_err("fmt formatted a file that does not parse");
            assert_eq!(err, parse(0, &text).unwrap_err(), "{}", path.display());
            continue;
        };
        let once = fmt(&text);
        let twice = fmt(&once);
        assert_eq!(once, twice, "fmt is not idempotent on {}", path.display());
        assert_eq!(comment_texts(&once), comment_texts(&text), "comments changed in {}", path.display());
        let after = parse(0, &once).unwrap();
        assert_eq!(meaning(&after), meaning(&before), "meaning changed in {}", path.display());
        for (i, line) in once.lines().enumerate() {
            let code = line.split("  #").next().unwrap();
            let long_scalar = !code.contains('[') && !code.contains('{') && !code.contains("sweep(");
            assert!(
                code.chars().count() <= MAX_WIDTH || long_scalar,
                "{}:{}: a breakable line longer than {MAX_WIDTH}: {line}",
                path.display(),
                i + 1
            );
        }
        formatted += 1;
    }
    assert!(formatted >= 3, "expected the stdlib and pipelines to be formatted, found {formatted} files");
}

#[test]
fn golden_declarations_one_key_per_line() {
    let src = "train ddpm{model=net,data=digits\nschedule=cos, steps = 20_000 ,lr=2e-4,ema=0.9999}";
    assert_eq!(
        fmt(src),
        "train ddpm {\n    model = net\n    data = digits\n    schedule = cos\n    steps = 20_000\n    lr = 2e-4\n    ema = 0.9999\n}\n"
    );
}

#[test]
fn golden_use_and_let_first_one_blank_line_between_declarations() {
    let src = "\n\ndataset a = toy {}\n\n\n\nlet T = 10\nuse \"std/unet.diff\"\nlet U = 5\n\n\nlet V = 6\ndataset b = toy { count = 3 }\n";
    assert_eq!(
        fmt(src),
        "use \"std/unet.diff\"\n\nlet T = 10\nlet U = 5\n\nlet V = 6\n\ndataset a = toy {}\n\ndataset b = toy {\n    count = 3\n}\n"
    );
}

#[test]
fn golden_inline_blocks_lists_and_sweeps_on_one_line_when_short() {
    let src = "sample gen {\n  sampler = ddim{steps=250,eta=0.0,}\n  guidance = cfg { scale = sweep( 0.0,0.5 , 2.0, ) }\n  classes = [ 1,2,3, ]\n  none = []\n  default = ddpm {}\n}\n";
    assert_eq!(
        fmt(src),
        "sample gen {\n    sampler = ddim { steps = 250, eta = 0.0 }\n    guidance = cfg { scale = sweep(0.0, 0.5, 2.0) }\n    classes = [1, 2, 3]\n    none = []\n    default = ddpm {}\n}\n"
    );
}

#[test]
fn golden_long_values_break_one_element_per_line_with_trailing_commas() {
    let names: Vec<String> = (0..12).map(|i| format!("\"measure_number_{i}\"")).collect();
    let src = format!(
        "metrics m {{ measure = [{}], sampler = ddim {{ steps = 250, eta = 0.0, spacing = \"quadratic\", comment_key = \"a fairly long string value here\" }} }}",
        names.join(", ")
    );
    let mut want = String::from("metrics m {\n    measure = [\n");
    for n in &names {
        want.push_str(&format!("        {n},\n"));
    }
    want.push_str("    ]\n    sampler = ddim {\n        steps = 250,\n        eta = 0.0,\n        spacing = \"quadratic\",\n        comment_key = \"a fairly long string value here\",\n    }\n}\n");
    assert_eq!(fmt(&src), want);
    assert_eq!(fmt(&want), want);
}

#[test]
fn golden_numbers_and_strings_exactly_as_written() {
    let src = "let a = [10_000, 2e-4, 1E+5, -3, 0.50, \"tab\\\\ \\\"q\\\" \\n\"]\n";
    assert_eq!(fmt(src), src);
}

#[test]
fn comments_inside_values_force_a_break_and_stay_put() {
    let src =
        "model m = unet {\n  mults = [1, # first level\n    2, 2]\n  sampler = ddim { # fast\n    steps = 50 }\n}\n";
    let out = fmt(src);
    assert_eq!(
        out,
        "model m = unet {\n    mults = [\n        1,  # first level\n        2,\n        2,\n    ]\n    sampler = ddim {  # fast\n        steps = 50,\n    }\n}\n"
    );
    assert_eq!(fmt(&out), out);
}

#[test]
fn comments_in_odd_places_are_kept() {
    let src = "dataset # odd\n d = toy { count # between key and value\n = 5 }\nlet x # here\n = 1\nuse # there\n \"a.diff\"\n";
    let out = fmt(src);
    assert_eq!(comment_texts(&out), comment_texts(src), "{out}");
    assert_eq!(fmt(&out), out);
    assert_eq!(meaning(&parse(0, &out).unwrap()), meaning(&parse(0, src).unwrap()));
}

#[test]
fn header_comment_stays_at_the_top_and_item_comments_move_with_their_item() {
    let src = "# A pipeline.\n\n# the data\ndataset d = toy {}\n\n# steps\nlet T = 5  # five\n";
    assert_eq!(fmt(src), "# A pipeline.\n\n# steps\nlet T = 5  # five\n\n# the data\ndataset d = toy {}\n");
}

#[test]
fn blank_lines_inside_blocks_are_kept_at_most_one() {
    let src = "train t {\n\n    a = 1\n\n\n\n    b = 2\n    c = 3\n\n}\n";
    assert_eq!(fmt(src), "train t {\n    a = 1\n\n    b = 2\n    c = 3\n}\n");
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(fmt(""), "");
    assert_eq!(fmt("\n\n  \n"), "");
    assert_eq!(fmt("# only\n\n\n# comments"), "# only\n\n# comments\n");
}

#[test]
fn syntax_errors_are_reported_not_formatted() {
    let err = format_source(0, "train t { steps: 5 }").unwrap_err();
    assert_eq!(err[0].code, Code::Syntax);
    assert!(err[0].message.contains("expected `=` after the key `steps`"), "{}", err[0].message);
}

/// The stage keys (and the resolved configs) of a loaded pipeline, or why there are none.
/// A report's key holds the pipeline's text, which it shows: formatting changes that.
fn keys_and_configs(loaded: &difflow::lang::Loaded) -> Option<String> {
    let p = loaded.pipeline.as_ref()?;
    let reports: Vec<&str> = p.instances.iter().filter(|i| i.kind == "report").map(|i| i.name.as_str()).collect();
    let keys = match difflow::cache::key::stage_keys(p) {
        Ok(mut k) => {
            k.retain(|name, _| !reports.contains(&name.as_str()));
            format!("{k:?}")
        }
        Err(e) => format!("error: {e}"),
    };
    let instances: Vec<String> = p
        .instances
        .iter()
        .map(|i| format!("{} {} {} {:?} {:?}", i.name, i.kind, i.variant, i.params, i.sweep))
        .collect();
    Some(format!("keys {keys}\nconfigs {:?}\nfamilies {:?}\ninstances {instances:#?}", p.configs, p.families))
}

#[test]
fn formatting_keeps_every_stage_key_of_every_repo_pipeline() {
    let mut checked = 0;
    for path in diff_files() {
        let loaded = difflow::lang::load(&path, &[]);
        let Some(before) = keys_and_configs(&loaded) else { continue };
        let formatted = fmt(&std::fs::read_to_string(&path).unwrap());
        // Beside the original, so that relative `use`s and paths resolve the same; not
        // named `*.diff`, so that tests globbing the folder never see it.
        let tmp =
            tempfile::Builder::new().prefix(".fmt-check-").suffix(".tmp").tempfile_in(path.parent().unwrap()).unwrap();
        std::fs::write(tmp.path(), &formatted).unwrap();
        let reloaded = difflow::lang::load(tmp.path(), &[]);
        let after = keys_and_configs(&reloaded)
            .unwrap_or_else(|| panic!("{} no longer checks after fmt: {:?}", path.display(), reloaded.diagnostics));
        assert_eq!(before, after, "fmt changed the stage keys of {}", path.display());
        checked += 1;
    }
    assert!(checked >= 1, "no repository pipeline checked cleanly");
}

#[test]
fn formatting_a_messy_pipeline_keeps_its_stage_keys() {
    let messy = "dataset d=toy{shape=\"moons\",count=1_000 # few\n}\n# the schedule\nschedule s = cosine {steps=T}\n\
                 let T=100\nmodel net=mlp{hidden=64,layers=2}\n\
                 train t{model=net,data=d,schedule=s,steps=5,batch=8,lr=1e-3}\n\
                 sample g{from=t,sampler=ddim{steps=sweep(5,10),eta=0.0},count=4}\n";
    let before = difflow::lang::load_source("messy.diff", messy, &[]);
    let formatted = fmt(messy);
    let after = difflow::lang::load_source("messy.diff", &formatted, &[]);
    match (keys_and_configs(&before), keys_and_configs(&after)) {
        (Some(b), Some(a)) => {
            assert_eq!(b, a);
            assert!(b.contains("g[steps=5]") || b.contains("g[steps=10]"), "the sweep expanded: {b}");
        }
        (None, None) => assert_eq!(
            format!("{:?}", before.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>()),
            format!("{:?}", after.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>())
        ),
        (b, a) => panic!(
            "checking differs before/after fmt: {b:?} vs {a:?}\n{:?}\n{:?}",
            before.diagnostics, after.diagnostics
        ),
    }
}

#[test]
fn crlf_line_ends_and_a_byte_order_mark_are_normalised() {
    let src = "\u{FEFF}# top\r\n\r\ndataset d = toy {\r\n  count = 5 # five\r\n}\r\n";
    assert_eq!(fmt(src), "# top\n\ndataset d = toy {\n    count = 5  # five\n}\n");
}

// ---- property: any valid file, in any layout, formats idempotently and keeps its meaning

mod generated {
    use proptest::prelude::*;

    const NAMES: &[&str] = &["a", "net", "steps", "ddim", "x_1", "_b", "sweeps", "uses", "letter", "True"];
    const NUMBERS: &[&str] = &["1000", "10_000", "2e-4", "0.5", "-3", "1E+5", "0", "-0.25e10"];
    const STRINGS: &[&str] = &[
        "\"a\"",
        "\"\"",
        "\"q\\\"x\\\\y\\n\"",
        "\"# not a comment\"",
        "\"héllo 😀\"",
        "\"a fairly long string value that soon makes a line longer than the width limit\"",
    ];
    /// What may stand between two tokens: spaces, tabs, line breaks, comments.
    const SEPARATORS: &[&str] = &[" ", " ", " ", "\n", "\t", "  ", "\n\n\n", " # note\n", "\n# own line\n", "\r\n"];

    #[derive(Debug, Clone)]
    pub enum V {
        Number(&'static str),
        Str(&'static str),
        Bool(bool),
        Ref(&'static str),
        List(Vec<V>, bool),
        Sweep(Vec<V>, bool),
        Inline(&'static str, Vec<(&'static str, V, bool)>),
    }

    #[derive(Debug, Clone)]
    pub enum I {
        Use(&'static str),
        Let(&'static str, V),
        Decl(&'static str, &'static str, Option<&'static str>, Vec<(&'static str, V, bool)>),
    }

    fn name() -> impl Strategy<Value = &'static str> {
        prop::sample::select(NAMES)
    }

    fn value() -> impl Strategy<Value = V> {
        let leaf = prop_oneof![
            prop::sample::select(NUMBERS).prop_map(V::Number),
            prop::sample::select(STRINGS).prop_map(V::Str),
            any::<bool>().prop_map(V::Bool),
            name().prop_map(V::Ref),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..5), any::<bool>()).prop_map(|(v, t)| V::List(v, t)),
                (prop::collection::vec(inner.clone(), 1..5), any::<bool>()).prop_map(|(v, t)| V::Sweep(v, t)),
                (name(), prop::collection::vec((name(), inner, any::<bool>()), 0..4))
                    .prop_map(|(n, e)| V::Inline(n, e)),
            ]
        })
    }

    pub fn item() -> impl Strategy<Value = I> {
        prop_oneof![
            prop::sample::select(STRINGS).prop_map(I::Use),
            (name(), value()).prop_map(|(n, v)| I::Let(n, v)),
            (
                prop::sample::select(&["dataset", "train", "sample", "model", "x"][..]),
                name(),
                prop::option::of(name()),
                prop::collection::vec((name(), value(), any::<bool>()), 0..5)
            )
                .prop_map(|(k, n, v, e)| I::Decl(k, n, v, e)),
        ]
    }

    fn tokens_of_value(v: &V, out: &mut Vec<String>) {
        match v {
            V::Number(s) | V::Str(s) | V::Ref(s) => out.push(s.to_string()),
            V::Bool(b) => out.push(b.to_string()),
            V::List(vs, trailing) | V::Sweep(vs, trailing) => {
                out.push(if matches!(v, V::List(..)) { "[" } else { "sweep(" }.to_string());
                for (i, x) in vs.iter().enumerate() {
                    if i > 0 {
                        out.push(",".into());
                    }
                    tokens_of_value(x, out);
                }
                if *trailing && !vs.is_empty() {
                    out.push(",".into());
                }
                out.push(if matches!(v, V::List(..)) { "]" } else { ")" }.to_string());
            }
            V::Inline(n, entries) => {
                out.push(n.to_string());
                tokens_of_block(entries, out);
            }
        }
    }

    fn tokens_of_block(entries: &[(&'static str, V, bool)], out: &mut Vec<String>) {
        out.push("{".into());
        for (k, v, comma) in entries {
            out.push(k.to_string());
            out.push("=".into());
            tokens_of_value(v, out);
            if *comma {
                out.push(",".into());
            }
        }
        out.push("}".into());
    }

    pub fn render(items: &[I], seps: &[usize]) -> String {
        let mut toks = Vec::new();
        for it in items {
            match it {
                I::Use(s) => toks.extend(["use".to_string(), s.to_string()]),
                I::Let(n, v) => {
                    toks.extend(["let".to_string(), n.to_string(), "=".to_string()]);
                    tokens_of_value(v, &mut toks);
                }
                I::Decl(k, n, variant, entries) => {
                    toks.extend([k.to_string(), n.to_string()]);
                    if let Some(v) = variant {
                        toks.extend(["=".to_string(), v.to_string()]);
                    }
                    tokens_of_block(entries, &mut toks);
                }
            }
        }
        let mut text = String::new();
        for (i, t) in toks.iter().enumerate() {
            text.push_str(t);
            text.push_str(SEPARATORS[seps[i % seps.len()] % SEPARATORS.len()]);
        }
        text
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("DIFFLOW_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(600),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    #[test]
    fn any_valid_file_in_any_layout_formats_idempotently_keeping_meaning_and_comments(
        items in proptest::collection::vec(generated::item(), 0..6),
        seps in proptest::collection::vec(0usize..100, 1..50),
    ) {
        let text = generated::render(&items, &seps);
        let before = parse(0, &text).unwrap_or_else(|d| panic!("a valid file failed to parse: {text:?}: {d:?}"));
        let once = fmt(&text);
        let twice = fmt(&once);
        proptest::prop_assert_eq!(&once, &twice, "not idempotent on {:?}", text);
        proptest::prop_assert_eq!(comment_texts(&once), comment_texts(&text));
        proptest::prop_assert_eq!(meaning(&parse(0, &once).unwrap()), meaning(&before));
    }
}
