//! What a new user meets first: output into a closed pipe, `--help` and `doc`, the words of
//! `check`, `plan`, `export` and the numbers `run` and `show` print.

mod cli_support;

use std::process::{Command, Stdio};

use cli_support::{difflow_real, line_of, toy_train, Project, TOY, TOY_SETUP};

/// `difflow ARGS` in `dir` with stdout a pipe whose reader is gone before it starts:
/// (exit code or None for a signal, stderr).
fn into_closed_pipe(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_difflow"))
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let p = Project::new(TOY);
    for args in [&["cache", "ls"][..], &["doc"], &["doc", "sample"], &["check", "p.diff"], &["plan", "p.diff"]] {
        let (code, stderr) = into_closed_pipe(p.path(), args);
        assert_ne!(code, Some(101), "difflow {args:?} panicked:\n{stderr}");
        assert_eq!(stderr, "", "difflow {args:?}");
    }
}

#[test]
fn set_is_explained_under_every_command_that_takes_it() {
    let p = Project::new(TOY);
    for command in ["check", "plan", "run", "show", "export", "graph", "cancel"] {
        let help = p.difflow(&[command, "--help"], &[]);
        assert_eq!(help.code(), 0);
        let line = help.stdout().lines().find(|l| l.contains("--set")).map(str::to_string);
        let line = line.unwrap_or_else(|| panic!("{command} --help has no --set:\n{}", help.stdout()));
        assert!(line.contains("Override a `let`: NAME=VALUE (repeatable)"), "{command}: {line}");
    }
}

#[test]
fn doc_shows_a_variant_by_its_name_and_lists_the_kinds_of_an_ambiguous_one() {
    let p = Project::new(TOY);
    let cfg = p.difflow(&["doc", "cfg"], &[]);
    assert_eq!(cfg.code(), 0, "{}", cfg.stderr());
    assert!(cfg.stdout().starts_with("## `guidance = cfg`\n\nA variant of `guidance`"), "{}", cfg.stdout());
    assert!(cfg.stdout().contains("| `scale` |"), "{}", cfg.stdout());
    let shared = p.difflow(&["doc", "default"], &[]);
    assert_eq!(shared.code(), 1);
    assert!(shared.stderr().starts_with("error: `default` is a variant of several kinds: `"), "{}", shared.stderr());
    let typo = p.difflow(&["doc", "cgf"], &[]);
    assert_eq!(typo.code(), 1);
    assert!(typo.stderr().contains("did you mean `cfg`?"), "{}", typo.stderr());
}

#[test]
fn the_seed_of_a_sample_stage_says_what_it_draws() {
    let doc = Project::new(TOY).difflow(&["doc", "sample"], &[]).stdout();
    let seed = doc.lines().find(|l| l.starts_with("| `seed` |")).unwrap();
    assert!(seed.contains("starting noise x_T"), "{seed}");
    assert!(!seed.contains("data order"), "{seed}");
}

#[test]
fn a_missing_fashion_mnist_folder_is_named_with_how_to_get_fashion_mnist() {
    let p = Project::new("dataset clothes = fashion_mnist { path = \"data/fashion\" }\n");
    let check = p.difflow(&["check", "p.diff"], &[]);
    assert_eq!(check.code(), 0, "the pipeline itself is right: {}", check.stderr());
    assert_eq!(check.stdout(), "p.diff: ok (1 stage), but a dataset is missing (below)\n");
    let folder = std::fs::canonicalize(p.path()).unwrap().join("data/fashion");
    let line = format!(
        "dataset `clothes` (fashion_mnist): {} does not exist (leave `path` out and `difflow run` fetches \
         Fashion-MNIST, or put its four IDX files from https://github.com/zalandoresearch/fashion-mnist \
         (data/fashion) there)",
        folder.display()
    );
    assert_eq!(check.stderr(), format!("warning: {line}; `difflow run` stops before any stage until it exists\n"));
    let run = p.run(&[]);
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.stderr(),
        format!("error: missing data; nothing was run:\n  {line}\n(paths are relative to the pipeline's folder)\n")
    );
}

#[test]
fn a_failed_fetch_names_every_file_it_could_not_fetch() {
    // A port that was just free: nothing listens there, each connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = Project::new("dataset clothes = fashion_mnist { split = \"test\" }\n");
    let sources: String = ["train_images", "train_labels", "test_images", "test_labels"]
        .iter()
        .map(|part| format!("[sources.fashion_mnist_{part}]\nurl = \"http://127.0.0.1:{port}/{part}.gz\"\n"))
        .collect();
    std::fs::write(p.path().join("difflow.toml"), format!("user_cache = \"uc\"\n{sources}")).unwrap();
    let out = p.run(&[]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let err = out.stderr();
    assert!(err.starts_with("error: 4 of 4 files could not be fetched:\n"), "{err}");
    for part in ["train_images", "train_labels", "test_images", "test_labels"] {
        assert!(err.contains(&format!("cannot fetch http://127.0.0.1:{port}/{part}.gz")), "{part}: {err}");
    }
}

#[test]
fn export_of_a_sample_stage_names_the_stages_it_can_export() {
    let p = Project::new(TOY);
    let out = p.difflow(&["export", "p.diff", "gen", "--format", "diffusers", "--out", "o"], &[]);
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stderr(),
        "error: `gen` is a sample stage: export writes a trained model; the stages it can export: `ddpm`\n"
    );
}

#[test]
fn plan_after_an_interrupted_training_says_where_it_resumes() {
    let p = Project::new(TOY);
    // The worker double writes a checkpoint at step 1 of 20, then dies.
    assert_eq!(p.difflow(&["run", "p.diff"], &[("CRASH_KIND", "train")]).code(), 2);
    let plan = p.plan();
    let line = line_of(&plan, "ddpm");
    assert!(line.starts_with("resume  ddpm"), "{plan}");
    assert!(line.ends_with("at step 1 of 20 (the checkpoint of an interrupted run)"), "{plan}");
    assert!(plan.contains(", 1 resumed\ntraining: 19 steps to run (1 saved by continuing"), "{plan}");
}

/// A worker double whose stage reports a tiny and a huge metric.
const NUMBERS_WORKER: &str = r#"#!/usr/bin/env python3
import json, os, sys
job = json.load(open(sys.argv[1]))
for name, value in [("tiny", 9.44e-16), ("huge", 123456789012.5), ("loss", 0.25)]:
    print(json.dumps({"event": "metric", "name": name, "value": value}), flush=True)
open(os.path.join(job["out_dir"], job["kind"] + ".txt"), "w").write("done\n")
"#;

#[test]
fn printed_numbers_are_rounded_for_people_and_json_keeps_every_digit() {
    let p = Project::new("dataset pts = toy { shape = \"moons\", count = 64 }\n");
    std::fs::write(&p.worker, NUMBERS_WORKER).unwrap();
    let out = p.run(&[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let printed = out.stdout() + &out.stderr();
    assert!(printed.contains("dataset pts: tiny = 9.440e-16\n"), "{printed}");
    assert!(printed.contains("): huge 1.235e11, loss 0.2500, tiny 9.440e-16\n"), "{printed}");
    let shown = p.difflow(&["show", "p.diff", "pts"], &[]).stdout();
    assert!(shown.contains("  metric   tiny = 9.440e-16\n"), "{shown}");
    assert!(shown.contains("  metric   huge = 1.235e11\n"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&p.difflow(&["show", "p.diff", "pts", "--json"], &[]).stdout()).unwrap();
    assert_eq!(json["metrics"]["tiny"], 9.44e-16);
    assert_eq!(json["metrics"]["huge"], 123456789012.5);
}

#[test]
fn sampling_progress_says_samples_batches_and_steps() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{TOY_SETUP}{}sample gen {{ from = ddpm, sampler = ddim {{ steps = 5 }}, count = 32, batch = 16 }}\n",
        toy_train("2", "1e-3", "")
    );
    std::fs::write(dir.path().join("p.diff"), text).unwrap();
    let (code, out, err) = difflow_real(dir.path(), &["run", "p.diff", "--device", "cpu"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let printed = out + &err;
    assert!(printed.contains("sample gen: sampling 32 samples: 2 batches × 5 steps (10)\n"), "{printed}");
}
