//! Results across pipelines: `difflow report A.diff B.diff --out DIR` (one table of both
//! pipelines' cached metrics) and the records of pipelines sharing a folder in one
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
