//! Hover, completion, navigation and formatting of `difflow lsp` at chosen positions.

mod lsp_support;

use lsp_support::{position_of, url, Client};
use serde_json::{json, Value};

const PIPELINE: &str = r#"use "std/unet.diff"

let T = 500
dataset digits = mnist { path = "data/mnist", split = "train" }
schedule cos = cosine { steps = T }
# Overrides the preset's dropout.
model net = unet_small { classes = 10, dropout = 0.0 }
train ddpm {
    model    = net
    data     = digits
    schedule = cos
    loss     = "simple"
    uncond_p = 0.1
    steps    = 100
}
sample gen { from = ddpm, sampler = ddim { steps = 10 }, count = 16 }
"#;

fn hover(c: &mut Client, uri: &str, needle: &str, shift: usize) -> String {
    let r = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": position_of(PIPELINE, needle, shift) }),
    );
    r["result"]["contents"]["value"].as_str().unwrap_or_else(|| panic!("no hover at {needle:?}: {r}")).to_string()
}

/// The completion labels (in sort order) with the cursor `shift` characters into `needle`.
fn labels(c: &mut Client, uri: &str, text: &str, needle: &str, shift: usize) -> Vec<String> {
    let at = position_of(text, needle, shift);
    let r = c.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": at }));
    let items = r["result"].as_array().unwrap_or_else(|| panic!("no completion in {needle:?}: {r}"));
    let mut items = items.clone();
    items.sort_by_key(|i| i["sortText"].as_str().unwrap_or(i["label"].as_str().unwrap()).to_string());
    items.iter().map(|i| i["label"].as_str().unwrap().to_string()).collect()
}

fn open_clean(c: &mut Client, dir: &std::path::Path) -> String {
    let file = dir.join("p.diff");
    std::fs::write(&file, PIPELINE).unwrap();
    let uri = url(&file);
    c.open(&uri, PIPELINE);
    assert_eq!(c.diagnostics(&uri), Vec::<Value>::new());
    uri
}

/// A stand-in for `difflow-worker` that answers a `describe` job as the real one does.
const WORKER: &str = "#!/bin/sh\necho '{\"params\": 1063905, \"levels\": []}'\n";

#[test]
fn hover_explains_kinds_variants_keys_values_and_names() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("worker.sh");
    std::fs::write(&worker, WORKER).unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Client::initialized_with(dir.path(), &[("DIFFLOW_WORKER", &worker)]);
    let uri = open_clean(&mut c, dir.path());

    let wanted: [(&str, usize, &[&str]); 9] = [
        ("schedule cos", 1, &["(config)", "variants: linear, cosine, sigmoid"]),
        ("cosine {", 2, &["schedule = cosine", "keys: steps"]),
        ("steps = T", 1, &["steps : int", "number of diffusion steps T", "default `1000`", "range 1 ≤ x ≤ 100000"]),
        ("\"simple\"", 2, &["loss : \"simple\" | \"hybrid\" | \"vlb\""]),
        // A schedule's name: its declaration and ᾱ_T from the float64 tables (T = 500 via the let).
        ("cos\n", 1, &["schedule cos = cosine { steps = T }", "T = 500 · ᾱ_T = "]),
        // A model's name: its declaration with its comment; a preset resolves to its variant;
        // its parameter count comes from the worker's `describe` job.
        (
            "= net",
            3,
            &["model net = unet_small", "Overrides the preset's dropout", "model `unet`", "1,063,905 parameters"],
        ),
        ("unet_small", 2, &["model unet_small = unet", "std/unet.diff"]),
        ("steps = T }", 8, &["let T = 500", "value `500`"]),
        // Inline blocks are keyed by the config kind the key wants.
        ("steps = 10", 0, &["steps : int", "sampling steps"]),
    ];
    for (needle, shift, parts) in wanted {
        let text = hover(&mut c, &uri, needle, shift);
        for part in parts {
            assert!(text.contains(part), "{part:?} is not in the hover at {needle:?}: {text}");
        }
    }
}

#[test]
fn completion_offers_what_the_position_wants() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::initialized(dir.path());
    let uri = open_clean(&mut c, dir.path());
    let text = format!(
        "{PIPELINE}tr\nsampler s = \ntrain t2 {{\n    data = digits\n    st\n    loss = \"\n    schedule = \n    model = \n}}\nuse \"st\n"
    );
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": text }] }),
    );
    let kinds = labels(&mut c, &uri, &text, "tr\nsampler", 2);
    for k in ["schedule", "model", "train", "sample", "let", "use"] {
        assert!(kinds.contains(&k.to_string()), "{kinds:?}");
    }
    // The schema's variants, in its order.
    let samplers: Vec<String> =
        difflow_core::schema::kind("sampler").unwrap().variants.iter().map(|v| v.name.to_string()).collect();
    assert!(samplers.len() >= 3, "{samplers:?}");
    assert_eq!(labels(&mut c, &uri, &text, "sampler s = ", 12), samplers);
    // The keys of train's default variant; those written come last.
    let keys = labels(&mut c, &uri, &text, "    st\n", 6);
    assert_eq!(keys.first().map(String::as_str), Some("uncond_p"), "{keys:?}");
    assert_eq!(keys[keys.len() - 4..], ["model", "data", "schedule", "loss"].map(String::from), "{keys:?}");
    assert!(keys.contains(&"steps".to_string()));
    assert_eq!(labels(&mut c, &uri, &text, "loss = \"\n", 8), ["simple", "hybrid", "vlb"].map(String::from));
    let schedules = labels(&mut c, &uri, &text, "schedule = \n", 11);
    assert_eq!(schedules[0], "cos", "{schedules:?}");
    assert!(schedules.contains(&"linear".to_string()) && schedules.contains(&"T".to_string()), "{schedules:?}");
    let models = labels(&mut c, &uri, &text, "    model = \n", 12);
    assert!(models.contains(&"net".into()) && models.contains(&"unet_small".into()), "{models:?}");
    assert!(!models.contains(&"cos".into()), "{models:?}");
    let files = labels(&mut c, &uri, &text, "use \"st\n", 7);
    let stdlib: Vec<String> = difflow::lang::modules::STDLIB.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(files[..stdlib.len()], stdlib[..]);
}

#[test]
fn definition_references_symbols_and_formatting() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::initialized(dir.path());
    let uri = open_clean(&mut c, dir.path());
    let at = |needle: &str, shift: usize| json!({ "textDocument": { "uri": uri }, "position": position_of(PIPELINE, needle, shift) });

    let def = c.request("textDocument/definition", at("= cos\n", 3));
    assert_eq!(def["result"]["uri"], uri);
    assert_eq!(def["result"]["range"]["start"], position_of(PIPELINE, "cos =", 0));
    // A preset from the stdlib: a readable copy of the embedded file.
    let def = c.request("textDocument/definition", at("unet_small", 0));
    let target = def["result"]["uri"].as_str().unwrap().strip_prefix("file://").unwrap().to_string();
    let std_text = std::fs::read_to_string(&target).unwrap();
    assert!(target.ends_with("std/unet.diff"));
    let line = def["result"]["range"]["start"]["line"].as_u64().unwrap() as usize;
    assert!(std_text.lines().nth(line).unwrap().starts_with("model unet_small"), "{def}");
    let def = c.request("textDocument/definition", at("\"std/unet.diff\"", 3));
    assert_eq!(def["result"]["uri"].as_str().unwrap(), format!("file://{target}"));

    let mut params = at("digits =", 0);
    params["context"] = json!({ "includeDeclaration": true });
    let refs = c.request("textDocument/references", params.clone());
    let lines: Vec<u64> =
        refs["result"].as_array().unwrap().iter().map(|l| l["range"]["start"]["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 9]);
    params["context"] = json!({ "includeDeclaration": false });
    assert_eq!(c.request("textDocument/references", params)["result"].as_array().unwrap().len(), 1);
    // A preset: its declaration in the stdlib and its use here.
    let mut params = at("unet_small", 0);
    params["context"] = json!({ "includeDeclaration": true });
    let refs = c.request("textDocument/references", params);
    let uris: Vec<&str> = refs["result"].as_array().unwrap().iter().map(|l| l["uri"].as_str().unwrap()).collect();
    assert_eq!(uris, [format!("file://{target}").as_str(), uri.as_str()], "{refs}");

    let symbols = c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } }));
    let names: Vec<&str> = symbols["result"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["std/unet.diff", "T", "digits", "cos", "net", "ddpm", "gen"]);
    assert_eq!(symbols["result"][5]["detail"], "train");
    assert_eq!(symbols["result"][5]["children"].as_array().unwrap().len(), 6);

    // Formatting: one edit to the canonical layout, none when formatted already.
    let messy = "schedule   cos=cosine{steps=10}\n";
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": messy }] }),
    );
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    assert_eq!(edits["result"][0]["newText"], "schedule cos = cosine {\n    steps = 10\n}\n", "{edits}");
    // Refused, like `difflow fmt`, when the text does not parse.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "text": "schedule cos = {" }] }),
    );
    let refused = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    assert!(refused["error"]["message"].as_str().unwrap().starts_with("difflow fmt refuses to format"), "{refused}");
}

#[test]
fn replicate_is_offered_and_explained_where_a_seed_may_be_replicated() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::initialized(dir.path());
    let uri = open_clean(&mut c, dir.path());
    let change = |c: &mut Client, version: i32, text: &str| {
        c.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "text": text }] }),
        );
    };
    let valid =
        format!("{PIPELINE}sample g2 {{ from = ddpm, sampler = ddim {{ steps = 10 }}, seed = replicate(3) }}\n");
    change(&mut c, 2, &valid);
    let r = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": position_of(&valid, "replicate(3) }", 2) }),
    );
    let shown = r["result"]["contents"]["value"].as_str().unwrap_or_else(|| panic!("no hover: {r}"));
    assert!(shown.contains("seed : int") && shown.contains("`replicate(N)`: N instances"), "{shown}");
    let typing = format!(
        "{valid}dataset pts = toy {{ seed = \n}}\nsample g3 {{ from = ddpm, sampler = ddim {{ steps = 10 }}, seed = \n}}\n"
    );
    change(&mut c, 3, &typing);
    let at_sample = labels(&mut c, &uri, &typing, "10 }, seed = \n", 13);
    assert!(at_sample.contains(&"replicate(3)".to_string()), "{at_sample:?}");
    let at_dataset = labels(&mut c, &uri, &typing, "toy { seed = ", 13);
    assert!(!at_dataset.contains(&"replicate(3)".to_string()), "{at_dataset:?}");
}
