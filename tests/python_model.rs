//! `python` models in pipelines: the train stage's key follows the model's file and the
//! project files it imports, and nothing else; a project runs its Python only once the
//! user trusted it, and then a python net trains with the real worker.

mod cli_support;

use std::ffi::OsStr;
use std::path::Path;

use cli_support::difflow_real;

const NET: &str = "import torch\nfrom helpers import blocks\n\nclass Net(torch.nn.Module):\n    pass\n";

const PIPELINE: &str = r#"
dataset pts = toy { shape = "gaussians8", count = 64 }
model net = python { file = "net.py", class = "Net", args = { hidden = 8 } }
train fit { model = net, data = pts, schedule = linear { steps = 100 }, steps = 2, batch = 16 }
"#;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("difflow.toml"), "").unwrap();
    std::fs::write(p.join("p.diff"), PIPELINE).unwrap();
    std::fs::write(p.join("net.py"), NET).unwrap();
    std::fs::create_dir(p.join("helpers")).unwrap();
    std::fs::write(p.join("helpers/__init__.py"), "").unwrap();
    std::fs::write(p.join("helpers/blocks.py"), "WIDTH = 8\n").unwrap();
    std::fs::write(p.join("unrelated.py"), "X = 1\n").unwrap();
    dir
}

fn train_key(dir: &Path) -> String {
    let loaded = difflow::lang::load(&dir.join("p.diff"), &[]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    difflow::cache::key::stage_keys(&loaded.pipeline.unwrap()).unwrap()["fit"].clone()
}

#[test]
fn the_train_key_follows_the_model_file_and_its_imports_only() {
    let dir = project();
    let p = dir.path();
    let base = train_key(p);
    std::fs::write(p.join("unrelated.py"), "X = 2  # edited\n").unwrap();
    assert_eq!(train_key(p), base, "an unrelated file changed the key");

    std::fs::write(p.join("helpers/blocks.py"), "WIDTH = 16\n").unwrap();
    let helper_edited = train_key(p);
    assert_ne!(helper_edited, base, "editing an imported helper kept the key");

    std::fs::write(p.join("net.py"), format!("{NET}# a comment\n")).unwrap();
    let model_edited = train_key(p);
    assert_ne!(model_edited, helper_edited, "editing the model file kept the key");

    std::fs::write(p.join("p.diff"), PIPELINE.replace("hidden = 8", "hidden = 9")).unwrap();
    assert_ne!(train_key(p), model_edited, "changing an argument kept the key");
}

/// A project with the tiny Python test net of the checker's tests, trained for a few steps.
const TRAIN_TOY_NET: &str = r#"
dataset pts = toy { shape = "gaussians8", count = 64 }
schedule lin = linear { steps = 100 }
model net = python { file = "nets/toy_net.py", class = "ToyNet", args = { dim = 2, hidden = 16 } }
train fit { model = net, data = pts, schedule = lin, steps = 3, batch = 16 }
"#;

#[test]
fn an_untrusted_project_refuses_to_run_until_trusted_then_trains() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(p.join("difflow.toml"), "").unwrap();
    std::fs::create_dir(p.join("nets")).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check/python/toy_net.py");
    let net = std::fs::read_to_string(fixture).unwrap();
    std::fs::write(p.join("nets/toy_net.py"), format!("import helpers\n{net}")).unwrap();
    std::fs::write(p.join("nets/helpers.py"), "SCALE = 1.0\n").unwrap();
    std::fs::write(p.join("p.diff"), TRAIN_TOY_NET).unwrap();
    let (config, cache) = (home.path().join("config"), home.path().join("cache"));
    let env: [(&str, &OsStr); 2] = [("XDG_CONFIG_HOME", config.as_os_str()), ("XDG_CACHE_HOME", cache.as_os_str())];
    let difflow = |args: &[&str]| difflow_real(&p, args, &env);

    // check and plan never run the project's Python, so they need no trust.
    assert_eq!(difflow(&["check", "p.diff"]).0, 0);
    assert_eq!(difflow(&["plan", "p.diff"]).0, 0);

    let (code, out, err) = difflow(&["run", "p.diff", "--device", "cpu"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let expected = format!(
        "error: this pipeline runs Python code of the project {root}, which you have not trusted:\n  \
         {root}/nets/helpers.py\n  {root}/nets/toy_net.py\nread them, then trust the project once with:\n  difflow trust {root}\n",
        root = p.display()
    );
    assert_eq!(err, expected);
    assert!(out.is_empty(), "nothing ran: {out}");
    // Showing the net's size builds it, which runs its code: refused too.
    let (code, _, err) = difflow(&["show", "p.diff", "net"]);
    assert_eq!((code, err), (1, expected));

    let (code, out, err) = difflow(&["trust"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let list = std::fs::read_to_string(config.join("difflow/trusted")).unwrap();
    assert_eq!(list, format!("{}\n", p.display()));
    // Trusting again keeps one line.
    assert_eq!(difflow(&["trust", "p.diff"]).0, 0);
    assert_eq!(std::fs::read_to_string(config.join("difflow/trusted")).unwrap(), list);

    let (code, out, err) = difflow(&["run", "p.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(cli_support::ran(&out).contains(&"fit".to_string()), "{out}\n{err}");
    let (code, out, err) = difflow(&["show", "p.diff", "net"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "model net (python): 628 parameters\n");
}
