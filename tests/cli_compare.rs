//! Results across pipelines and in a stable place: `difflow report A.diff B.diff --out DIR`
//! (one table of both pipelines' cached metrics), `difflow run --out DIR` (readable names,
//! replaced on each run) and the records of pipelines sharing a folder in one
//! `difflow.lock`. With the worker double of `cli_support`.

mod cli_support;

use cli_support::Project;

/// A toy pipeline with a measuring stage (`nll`), a report and a given training length.
fn measured(steps: u32) -> String {
    format!(
        r#"dataset pts = toy {{ shape = "gaussians8", count = 256 }}
schedule lin = linear {{ steps = 50 }}
model net = mlp {{ hidden = 32, layers = 2 }}
train ddpm {{ model = net, data = pts, schedule = lin, steps = {steps}, batch = 64, lr = 1e-3 }}
sample gen {{ from = ddpm, sampler = ddim {{ steps = 5 }}, count = 32 }}
nll scores {{ from = ddpm, data = pts, count = 16 }}
report summary {{ include = [scores, gen] }}
"#
    )
}

fn ok(out: &cli_support::Out) {
    assert_eq!(out.code(), 0, "stdout:\n{}\nstderr:\n{}", out.stdout(), out.stderr());
}

#[test]
fn a_report_across_two_pipelines_has_one_table_of_both() {
    let p = Project::new(&measured(20));
    std::fs::write(p.path().join("b.diff"), measured(30)).unwrap();
    ok(&p.run(&[]));
    ok(&p.difflow(&["run", "b.diff"], &[]));
    let out = p.difflow(&["report", "p.diff", "b.diff", "--out", "cmp"], &[]);
    ok(&out);
    assert!(out.stdout().contains("cmp/report.html"), "{}", out.stdout());
    let md = std::fs::read_to_string(p.path().join("cmp/report.md")).unwrap();
    assert_eq!(md.matches("| pipeline | instance |").count(), 1, "{md}");
    // The worker double reports `loss` 0.25 for every stage.
    assert!(md.contains("| pipeline | instance | loss |"), "{md}");
    assert!(md.contains("| p.diff | `scores` | 0.2500 |\n| b.diff | `scores` | 0.2500 |"), "{md}");
    assert!(md.contains("![loss by pipeline](images/loss.svg)"), "{md}");
    let html = std::fs::read_to_string(p.path().join("cmp/report.html")).unwrap();
    assert_eq!(html.matches("<table>").count(), 1);
    assert!(html.contains("<figure><svg"), "the chart is inline");

    // In headless Chromium: one table with a row per pipeline, one chart, no error.
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compare-report.png");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/browser_check.py");
    let check = std::process::Command::new("python3")
        .arg(script)
        .arg(p.path().join("cmp/report.html"))
        .arg(&shot)
        .args(["p.diff", "b.diff"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let page: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(page["tables"], serde_json::json!([2]), "{page}");
    assert_eq!(page["svgs"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["contains"], serde_json::json!({"p.diff": true, "b.diff": true}), "{page}");
    assert_eq!(
        (&page["problems"], &page["svg_text_outside"]),
        (&serde_json::json!([]), &serde_json::json!([])),
        "{page}"
    );
}

#[test]
fn a_report_of_an_uncached_pipeline_names_its_stages_and_the_run_to_do() {
    let p = Project::new(&measured(20));
    std::fs::write(p.path().join("b.diff"), measured(30)).unwrap();
    ok(&p.run(&[]));
    let out = p.difflow(&["report", "p.diff", "b.diff", "--out", "cmp"], &[]);
    assert_eq!(out.code(), 1, "{}", out.stdout());
    assert!(
        out.stderr().contains("b.diff: `scores` not cached: run `difflow run")
            && out.stderr().contains("b.diff` first"),
        "{}",
        out.stderr()
    );
    assert!(!p.path().join("cmp/report.md").exists());
    assert!(p.take_worker_log().len() > 1, "the run of p.diff");
    let again = p.difflow(&["report", "p.diff", "--out", "cmp", "--stage", "nope"], &[]);
    assert_eq!(again.code(), 1);
    assert!(p.take_worker_log().is_empty(), "report runs nothing");
}

#[test]
fn run_out_writes_readable_paths_and_replaces_the_last_runs() {
    let p = Project::new(&cli_support::tiny_toy(20, "1e-3", "sweep(5, 10)", false));
    let mut text = cli_support::tiny_toy(20, "1e-3", "sweep(5, 10)", false);
    text.push_str("report summary { include = [gen] }\n");
    p.write(&text);
    let results = p.path().join("results");
    let first = p.run(&["--out", "results"]);
    ok(&first);
    assert!(results.join("gen[steps=5]/sample.txt").is_file());
    assert!(results.join("ddpm/train.txt").is_file());
    assert!(!results.join("ddpm/manifest.toml").exists(), "difflow's own record stays in the cache");
    assert!(
        first.stdout().contains("results: 5 stages in results\nopen:\n  results/summary/report.html\n"),
        "{}",
        first.stdout()
    );

    // A link in place of a folder of the last run is removed, never followed.
    let outside = p.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "mine").unwrap();
    std::fs::remove_dir_all(results.join("ddpm")).unwrap();
    std::os::unix::fs::symlink(&outside, results.join("ddpm")).unwrap();

    // A changed training that fails: its samples and report do not run.
    p.write(&text.replace("lr = 1e-3", "lr = 2e-3"));
    let failed = p.difflow(&["run", "p.diff", "--out", "results"], &[("FAIL_KIND", "train")]);
    assert_eq!(failed.code(), 2);
    assert!(outside.join("keep.txt").is_file());
    for stale in ["ddpm", "gen[steps=5]", "summary"] {
        assert!(results.join(stale).symlink_metadata().is_err(), "{stale} of the last run is still there");
    }
    assert!(results.join("pts/dataset.txt").is_file(), "what finished is there");
    let said = "results: 1 stage in results; not there (failed or not run): `ddpm`, `gen[steps=5]`";
    assert!(failed.stdout().contains(said), "{}", failed.stdout());
    assert!(!failed.stdout().contains("report.html"), "no old report to open:\n{}", failed.stdout());

    // Another pipeline's results, or a user's files, are never replaced.
    std::fs::write(p.path().join("b.diff"), &text).unwrap();
    let other = p.difflow(&["run", "b.diff", "--out", "results"], &[]);
    assert_eq!(other.code(), 1);
    assert!(other.stderr().contains("holds the results of p.diff"), "{}", other.stderr());
    let other = p.difflow(&["run", "b.diff", "--out", "outside"], &[]);
    assert!(other.stderr().contains("is not empty and holds no results of `difflow run --out`"), "{}", other.stderr());
}

#[test]
fn the_out_setting_gives_each_pipeline_its_folder() {
    let p = Project::new(&cli_support::tiny_toy(20, "1e-3", "5", false));
    std::fs::write(p.path().join("difflow.toml"), "out = \"results\"\n").unwrap();
    std::fs::copy(p.file(), p.path().join("b.diff")).unwrap();
    ok(&p.run(&[]));
    ok(&p.difflow(&["run", "b.diff"], &[]));
    assert!(p.path().join("results/p/gen/sample.txt").is_file());
    assert!(p.path().join("results/b/gen/sample.txt").is_file());
    // A detached Slurm run ends before its stages: nothing to put in `--out` then.
    let detached = p.difflow(&["run", "p.diff", "--executor", "slurm", "--detach", "--out", "r"], &[]);
    assert_eq!(detached.code(), 1);
    assert!(detached.stderr().contains("`--out` needs the stages to finish"), "{}", detached.stderr());
}

#[test]
fn pipelines_in_one_folder_keep_separate_lock_records() {
    let p = Project::new(&measured(20));
    std::fs::write(p.path().join("b.diff"), measured(30)).unwrap();
    ok(&p.run(&[]));
    ok(&p.difflow(&["run", "b.diff"], &[]));
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(p.path().join("difflow.lock")).unwrap()).unwrap();
    assert_eq!(lock["pipeline"].as_str(), Some("p.diff"));
    let mine = lock["stages"]["ddpm"]["key"].as_str().unwrap();
    let theirs = lock["pipelines"]["b.diff"]["stages"]["ddpm"]["key"].as_str().unwrap();
    assert_ne!(mine, theirs, "{lock}");
    // p.diff's record survived b.diff's run: a change to it is explained, not `new`.
    p.write(&measured(20).replace("lr = 1e-3", "lr = 2e-3"));
    let plan = p.plan();
    assert_eq!(cli_support::state_of(&plan, "ddpm"), "stale", "{plan}");
    // Compared with itself, every record of both pipelines is the same.
    let same = p.difflow(&["compare", "difflow.lock", "difflow.lock"], &[]);
    ok(&same);
    assert!(same.stdout().contains("exact       b.diff: ddpm"), "{}", same.stdout());
}
