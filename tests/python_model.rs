//! `python` models in pipelines: the train stage's key follows the model's file and the
//! project files it imports, and nothing else; a project runs its Python only once the
//! user trusted it, and then a python net trains with the real worker.

mod cli_support;

use std::ffi::OsStr;
use std::path::Path;

use cli_support::{difflow_real, ran, trusted_python_project, PYTHON_TOY_SETUP};

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
    assert_eq!(out, "model net (python): 628 parameters\n  output: 2 per item (input: 2)\n");
}

fn run_trusted(dir: &Path, env: &[(&'static str, std::ffi::OsString)], args: &[&str]) -> (i32, String, String) {
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    difflow_real(dir, args, &env)
}

/// An output file of an instance's current cache entry.
fn entry_file(dir: &Path, instance: &str, file: &str) -> Vec<u8> {
    let lock = difflow::cache::LockFile::read(&dir.join("difflow.lock"));
    let key = &lock.stages.get(instance).unwrap_or_else(|| panic!("no `{instance}` in the lock file")).key;
    std::fs::read(dir.join(".difflow/cache").join(key).join(file)).unwrap()
}

fn python_train(steps: u32) -> String {
    format!(
        "{PYTHON_TOY_SETUP}train ddpm {{ model = net, data = pts, schedule = lin, steps = {steps}, batch = 64, \
         lr = 1e-3, warmup = 3, checkpoint_every = 7 }}\n"
    )
}

#[test]
fn raising_steps_continues_a_python_nets_cached_run_and_equals_a_fresh_run() {
    let (dir, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = trusted_python_project(dir.path());
    let run = |dir: &Path, env: &[(&'static str, std::ffi::OsString)], steps: u32| {
        std::fs::write(dir.join("p.diff"), python_train(steps)).unwrap();
        let (code, out, err) = run_trusted(dir, env, &["run", "p.diff", "--device", "cpu"]);
        assert_eq!(code, 0, "{out}\n{err}");
        format!("{out}{err}")
    };
    run(dir.path(), &env, 20);
    let out = run(dir.path(), &env, 40);
    assert_eq!(ran(&out), ["ddpm"], "{out}");
    assert!(out.contains("continuing the cached run of 20 steps"), "{out}");

    let fresh_env = trusted_python_project(fresh.path());
    let out = run(fresh.path(), &fresh_env, 40);
    assert!(!out.contains("continuing"), "{out}");
    for file in ["model.safetensors", "ema.safetensors", "optimizer.safetensors", "loss.csv"] {
        let (continued, straight) = (entry_file(dir.path(), "ddpm", file), entry_file(fresh.path(), "ddpm", file));
        assert!(continued == straight, "{file}: the continued run differs from the straight one");
    }
}

#[test]
fn show_prints_a_python_nets_size_and_output_shape_or_its_shape_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = trusted_python_project(dir.path());
    // `show` takes the shape from the data of a stage that trains the model.
    let bad =
        "model bad = python { file = \"nets/toy_net.py\", class = \"WrongShape\", args = { dim = 2, hidden = 16 } }\n\
               train bad_fit { model = bad, data = pts, schedule = lin, steps = 5 }\n";
    std::fs::write(dir.path().join("p.diff"), format!("{}{bad}", python_train(5))).unwrap();
    let (code, out, err) = run_trusted(dir.path(), &env, &["show", "p.diff", "net"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "model net (python): 628 parameters\n  output: 2 per item (input: 2)\n");
    let (code, out, err) = run_trusted(dir.path(), &env, &["show", "p.diff", "bad"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("toy_net.py:32: ") && err.contains("returned a tensor of shape [2, 1]; expected [2, 2]"),
        "{err}"
    );
}
