//! Resolution semantics on small pipelines (in-process).

use super::*;
use crate::diagnostics::Code;
use crate::lang::value::Value;

fn ok(text: &str) -> Pipeline {
    ok_with(text, &[])
}

fn ok_with(text: &str, overrides: &[&str]) -> Pipeline {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    clean(load_source("test.diff", text, &overrides))
}

/// The pipeline of a load that must have no diagnostics.
fn clean(loaded: Loaded) -> Pipeline {
    if !loaded.diagnostics.is_empty() {
        panic!("{}", crate::diagnostics::render_plain(&loaded.diagnostics, &loaded.sources));
    }
    loaded.pipeline.expect("no diagnostics means a pipeline")
}

fn codes(text: &str) -> Vec<Code> {
    let loaded = load_source("test.diff", text, &[]);
    assert!(loaded.pipeline.is_none());
    loaded.diagnostics.iter().map(|d| d.code).collect()
}

fn names(p: &Pipeline) -> Vec<&str> {
    p.instances.iter().map(|i| i.name.as_str()).collect()
}

#[test]
fn spec_example_resolves_into_families() {
    let text = include_str!("../../pipelines/mnist_cfg.diff");
    let p = ok(text);
    assert_eq!(
        names(&p),
        vec![
            "digits",
            "digits_test",
            "ddpm",
            "gen[scale=0.0]",
            "gen[scale=0.5]",
            "gen[scale=2.0]",
            "scores[scale=0.0]",
            "scores[scale=0.5]",
            "scores[scale=2.0]",
            "study"
        ]
    );
    let scores = p.instance("scores[scale=0.5]").unwrap();
    assert_eq!(scores.params["samples"], Value::Stage("gen[scale=0.5]".into()));
    let study = p.instance("study").unwrap();
    assert_eq!(
        study.params["include"],
        Value::List(vec![
            Value::Stage("scores[scale=0.0]".into()),
            Value::Stage("scores[scale=0.5]".into()),
            Value::Stage("scores[scale=2.0]".into())
        ])
    );
    let ddpm = p.instance("ddpm").unwrap();
    let Value::Config(model) = &ddpm.params["model"] else { panic!("model is a config") };
    assert_eq!(model.variant, "unet");
    assert_eq!(model.params["channels"], Value::Int(32));
    assert_eq!(model.params["classes"], Value::Int(10));
    assert_eq!(model.params["learn_sigma"], Value::Bool(true));
    assert_eq!(ddpm.params["warmup"], Value::Int(20));
    assert_eq!(ddpm.params["lr"], Value::Float(2e-4));
    let Value::Config(s) = &ddpm.params["schedule"] else { panic!() };
    assert_eq!(s.params["steps"], Value::Int(1000));
    assert_eq!(p.families["gen"].len(), 3);
    assert_eq!(p.instance("gen[scale=0.5]").unwrap().sweep, vec![("scale".to_string(), Value::Float(0.5))]);
    let Value::Path(path) = &p.instance("digits").unwrap().params["path"] else { panic!() };
    assert!(path.ends_with("data/mnist") && std::path::Path::new(path).is_absolute());
    assert!(p.configs.contains_key("cos") && p.configs.contains_key("net") && p.configs.contains_key("unet_small"));
}

#[test]
fn set_overrides_a_let_and_is_type_checked_where_used() {
    let text = include_str!("../../pipelines/mnist_cfg.diff");
    let p = ok_with(text, &["T=500"]);
    let Value::Config(s) = &p.instance("ddpm").unwrap().params["schedule"] else { panic!() };
    assert_eq!(s.params["steps"], Value::Int(500));
    let bad = load_source("t.diff", text, &["T=2.5".to_string()]);
    assert_eq!(bad.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>(), vec![Code::TypeMismatch]);
    let unknown = load_source("t.diff", text, &["Q=5".to_string()]);
    assert_eq!(unknown.diagnostics[0].code, Code::UndefinedName);
    assert!(unknown.diagnostics[0].help.as_deref().unwrap().contains("`T`"));
}

const TOY: &str = r#"
dataset pts = toy { shape = "gaussians8" }
schedule lin = linear { steps = 100 }
train tr { model = mlp { classes = 8 }, data = pts, schedule = lin, steps = 10, uncond_p = 0.1 }
"#;

#[test]
fn two_sweeps_multiply_and_one_sweep_read_twice_stays_aligned() {
    let text = format!(
        "{TOY}\nlet w = sweep(1, 2)\nsample s {{ from = tr, sampler = ddim {{ steps = sweep(10, 20) }}, guidance = cfg {{ scale = w }}, seed = w }}\n"
    );
    let p = ok(&text);
    let s: Vec<_> = names(&p).into_iter().filter(|n| n.starts_with("s[")).collect();
    assert_eq!(s, vec!["s[w=1,steps=10]", "s[w=2,steps=10]", "s[w=1,steps=20]", "s[w=2,steps=20]"]);
    let i = p.instance("s[w=2,steps=20]").unwrap();
    assert_eq!(i.params["seed"], Value::Int(2));
}

#[test]
fn downstream_of_two_families_is_their_product_and_lists_collect() {
    let text = r#"
use "std/unet.diff"
dataset d = mnist { path = "data/mnist" }
schedule lin = linear { steps = 100 }
train tr { model = unet_small, data = d, schedule = lin, steps = 10 }
sample a { from = tr, sampler = ddim { steps = sweep(10, 20) } }
sample b { from = tr, sampler = ddpm { steps = sweep(5, 6, 7) } }
metrics m { samples = a, reference = b, measure = ["fid"] }
plot p = grid { of = a }
report r { include = [d, a, b, p] }
"#;
    let p = ok(text);
    assert_eq!(p.families["m"].len(), 6);
    assert!(p.instance("m[steps=20,steps=6]").is_none());
    assert!(p.instance("m[a.steps=20,b.steps=6]").is_some(), "{:?}", p.families["m"]);
    assert_eq!(p.families["p"].len(), 2);
    let Value::List(inc) = &p.instance("r").unwrap().params["include"] else { panic!() };
    assert_eq!(inc.len(), 1 + 2 + 3 + 2);
}

#[test]
fn presets_override_keys_and_chain() {
    let p = ok(&format!("{TOY}\nmodel big = mlp {{ hidden = 512, layers = 4 }}\nmodel bigger = big {{ layers = 6 }}\ntrain t2 {{ model = bigger {{ classes = 8 }}, data = pts, schedule = lin, epochs = 1 }}\n"));
    let Value::Config(m) = &p.instance("t2").unwrap().params["model"] else { panic!() };
    assert_eq!(
        (m.params["hidden"].clone(), m.params["layers"].clone(), m.params["classes"].clone()),
        (Value::Int(512), Value::Int(6), Value::Int(8))
    );
}

#[test]
fn basic_errors_have_their_codes() {
    assert_eq!(
        codes(&format!("{TOY}\nsample s {{ from = tr, sampler = ddim {{ stpes = 3 }} }}")),
        vec![Code::UnknownKey]
    );
    assert_eq!(codes(&format!("{TOY}\nsample s {{ from = pts, sampler = ddim {{ }} }}")), vec![Code::WrongKind]);
    assert_eq!(codes(&format!("{TOY}\nsample s {{ from = trr, sampler = ddim {{ }} }}")), vec![Code::UndefinedName]);
    assert_eq!(codes(&format!("{TOY}\nsample tr {{ from = tr, sampler = ddim {{ }} }}")), vec![Code::DuplicateName]);
    assert_eq!(
        codes(&format!("{TOY}\nsample s {{ from = tr, sampler = ddim {{ eta = 1.5 }} }}")),
        vec![Code::OutOfRange]
    );
    assert_eq!(codes(&format!("{TOY}\nsample s {{ sampler = ddim {{ }} }}")), vec![Code::MissingKey]);
    assert_eq!(codes("schedule s = cosin { }"), vec![Code::UnknownVariant]);
    assert_eq!(codes("shedule s = cosine { }"), vec![Code::UnknownKind]);
    assert_eq!(
        codes(&format!("{TOY}\nsample a {{ from = tr, sampler = ddim {{ }}, seed = b }}\nsample b {{ from = tr, sampler = ddim {{ }} }}")),
        vec![Code::TypeMismatch]
    );
}

#[test]
fn lets_hold_inline_blocks_and_sweeps_and_set_can_sweep() {
    let text = format!("{TOY}\nlet fast = ddim {{ steps = sweep(10, 20) }}\nlet w = 1\nsample s {{ from = tr, sampler = fast, guidance = cfg {{ scale = w }} }}\n");
    let p = ok(&text);
    assert_eq!(p.families["s"], vec!["s[steps=10]".to_string(), "s[steps=20]".to_string()]);
    let p = ok_with(&text, &["w=sweep(0.5, 2)"]);
    assert_eq!(p.families["s"].len(), 4);
    assert!(p.instance("s[steps=20,w=2]").is_some(), "{:?}", p.families["s"]);
}

#[test]
fn use_resolves_against_the_using_file_and_paths_against_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(dir.path().join("lib/models.diff"), "use \"more.diff\"\nmodel tiny = mlp { hidden = 8 }\n").unwrap();
    std::fs::write(dir.path().join("lib/more.diff"), "schedule short = linear { steps = 50 }\n").unwrap();
    std::fs::write(
        dir.path().join("main.diff"),
        "use \"lib/models.diff\"\ndataset pts = toy { }\ndataset m = mnist { path = \"data/m\" }\ntrain t { model = tiny, data = pts, schedule = short, steps = 5 }\n",
    )
    .unwrap();
    let p = clean(load(&dir.path().join("main.diff"), &[]));
    let Value::Path(path) = &p.instance("m").unwrap().params["path"] else { panic!() };
    assert_eq!(std::path::Path::new(path), std::fs::canonicalize(dir.path()).unwrap().join("data/m"));
    assert_eq!(p.root, std::fs::canonicalize(dir.path()).unwrap());
}

#[test]
fn data_root_from_difflow_toml_applies_to_dataset_paths_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("difflow.toml"), "data_root = \"datasets\"\n").unwrap();
    std::fs::write(
        dir.path().join("main.diff"),
        "dataset m = mnist { path = \"mnist\" }\ndataset r = mnist { path = \"/abs/mnist\" }\n\
         metrics s { samples = m, reference = r, features = \"inception\", measure = [\"fid\"], \
         inception_weights = \"w/inception.pth\" }\n",
    )
    .unwrap();
    let p = clean(load(&dir.path().join("main.diff"), &[]));
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let path_of = |stage: &str, key: &str| match &p.instance(stage).unwrap().params[key] {
        Value::Path(path) => std::path::PathBuf::from(path),
        other => panic!("{other:?}"),
    };
    assert_eq!(path_of("m", "path"), root.join("datasets/mnist"));
    assert_eq!(path_of("r", "path"), std::path::PathBuf::from("/abs/mnist"));
    assert_eq!(path_of("s", "inception_weights"), root.join("w/inception.pth"));
}

#[test]
fn adversarial_names_neither_hang_nor_blow_the_stack() {
    // Each let doubles the previous one: 2^40 values if expanded naively.
    let mut text = String::from("let a0 = [1]\n");
    for i in 1..40 {
        text.push_str(&format!("let a{i} = [a{}, a{}]\n", i - 1, i - 1));
    }
    text.push_str("plot f = forward { data = d, schedule = linear { }, at = a39 }\ndataset d = toy { }\n");
    let loaded = load_source("t.diff", &text, &[]);
    assert!(!loaded.diagnostics.is_empty());
    // A long chain of lets and of presets.
    let mut chain = String::from("let b0 = 5\n");
    for i in 1..5000 {
        chain.push_str(&format!("let b{i} = b{}\nmodel m{i} = m{} {{ }}\n", i - 1, i - 1));
    }
    chain.push_str("model m0 = mlp { }\nschedule s = linear { steps = b4999 }\nmodel last = m4999 { }\n");
    let loaded = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || load_source("t.diff", &chain, &[]).diagnostics.iter().map(|d| d.code).collect::<Vec<_>>())
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert!(loaded.contains(&Code::TooDeep), "{loaded:?}");
    // Thirty two-valued sweeps in one block: 2^30 instances.
    let sweeps: Vec<String> = (0..30).map(|_| "sweep(1, 2)".to_string()).collect();
    let text = format!(
        "dataset d = toy {{ }}\nplot f = forward {{ data = d, schedule = linear {{ }}, at = [{}] }}\n",
        sweeps.join(", ")
    );
    assert_eq!(codes(&text), vec![Code::TooLarge]);
    let text = format!(
        "{TOY}\nsample s {{ from = tr, sampler = ddim {{ }}, seed = sweep({}) }}\n",
        (0..1000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    );
    assert_eq!(ok(&text).families["s"].len(), 1000);
}

#[test]
fn sweeps_over_stages_and_inline_blocks_name_instances_as_written() {
    let text = format!(
        "{TOY}\ntrain b {{ model = mlp {{ hidden = 64 }}, data = pts, schedule = lin, steps = sweep(10, 20) }}\nsample s {{ from = sweep(tr, b), sampler = sweep(ddim {{ steps = 5 }}, ddpm {{ }}) }}\n"
    );
    let p = ok(&text);
    assert_eq!(
        p.families["s"],
        vec![
            "s[from=tr,sampler=ddim(steps=5)]",
            "s[from=tr,sampler=ddpm]",
            "s[steps=10,from=b,sampler=ddim(steps=5)]",
            "s[steps=10,from=b,sampler=ddpm]",
            "s[steps=20,from=b,sampler=ddim(steps=5)]",
            "s[steps=20,from=b,sampler=ddpm]",
        ]
    );
    let i = p.instance("s[steps=20,from=b,sampler=ddpm]").unwrap();
    assert_eq!(i.params["from"], Value::Stage("b[steps=20]".into()));
    assert_eq!(i.deps(), vec!["b[steps=20]"]);
}

#[test]
fn a_product_of_large_sweeps_is_refused_before_it_is_expanded() {
    let values = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    // 1,000 × 1,000 values in one block: refused at the second sweep, before its values.
    let text = format!("dataset d = toy {{ count = sweep({}), seed = sweep({}) }}\n", values(1000), values(1000));
    let loaded = load_source("t.diff", &text, &[]);
    assert_eq!(loaded.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>(), vec![Code::TooLarge]);
    let seed_sweep = text.find("seed = ").unwrap() + "seed = ".len();
    assert_eq!(loaded.diagnostics[0].primary.span.start, seed_sweep);
    // One sweep of more values than instances allowed is refused as it stands.
    let text = format!("dataset d = toy {{ count = sweep({}) }}\n", values(100_001));
    assert_eq!(codes(&text), vec![Code::TooLarge]);
}

#[test]
fn a_misspelt_variant_among_thousands_of_presets_gets_a_bounded_help_line() {
    let mut text = String::from("schedule s0 = cosine { }\n");
    for i in 1..3000 {
        text.push_str(&format!("schedule s{i} = s{} {{ }}\n", i - 1));
    }
    text.push_str("schedule last = s2777x { }\n");
    let loaded = load_source("t.diff", &text, &[]);
    assert_eq!(loaded.diagnostics.len(), 1);
    let help = loaded.diagnostics[0].help.as_deref().unwrap();
    assert!(help.starts_with("did you mean `s2777`?"), "{help}");
    assert!(help.ends_with("; presets declared: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15, s16, s17, s18, s19 and 2980 more"), "{help}");
}
