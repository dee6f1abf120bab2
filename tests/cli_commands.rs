//! The read-only commands on the real binary: check, plan, graph, show, exit codes.

mod cli_support;

use cli_support::{state_of, states, Project, CFG_STUDY, TOY};
use difflow::diffusion::schedule::ScheduleSpec;

#[test]
fn check_exits_0_on_a_good_file_and_1_with_diagnostics_on_a_bad_one() {
    let p = Project::new(TOY);
    let out = p.difflow(&["check", "p.diff"], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    p.write(&TOY.replace("count = 512", "cuont = 512"));
    let out = p.difflow(&["check", "p.diff"], &[]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("cuont"), "{}", out.stderr());
    assert!(out.stdout().is_empty());
    assert!(!p.path().join(".difflow").exists(), "check must not touch the cache");
}

#[test]
fn missing_files_and_bad_arguments_exit_1() {
    let p = Project::new(TOY);
    assert_eq!(p.difflow(&["check", "nope.diff"], &[]).code(), 1);
    assert_eq!(p.difflow(&["plan"], &[]).code(), 1);
    let out = p.difflow(&["run", "p.diff", "--target", "gne"], &[]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("did you mean `gen`"), "{}", out.stderr());
    assert_eq!(p.difflow(&["run", "p.diff", "--device", "gpu"], &[]).code(), 1);
    assert_eq!(p.difflow(&["--help"], &[]).code(), 0);
}

#[test]
fn plan_lists_every_instance_in_topological_order_as_new() {
    let p = Project::new(TOY);
    let plan = p.plan();
    let names: Vec<String> = states(&plan).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["pts", "ddpm", "gen[steps=5]", "gen[steps=10]", "pic"]);
    assert!(states(&plan).iter().all(|(s, _)| s == "new"), "{plan}");
    assert!(plan.contains("5 stages: 0 cached, 5 new, 0 stale"), "{plan}");
    // `--set` overrides a `let` for one command.
    let out = p.difflow(&["plan", "p.diff", "--set", "T=200", "--target", "gen[steps=5]"], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let names: Vec<String> = states(&out.stdout()).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["pts", "ddpm", "gen[steps=5]"]);
}

#[test]
fn graph_is_dot_with_kinds_families_and_edges() {
    let p = Project::new(TOY);
    let out = p.difflow(&["graph", "p.diff"], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let dot = out.stdout();
    assert!(dot.starts_with("digraph difflow {"));
    assert!(dot.trim_end().ends_with('}'));
    assert!(dot.contains("subgraph \"cluster_gen\""), "{dot}");
    assert!(dot.contains("\"ddpm\" [label=\"ddpm\\ntrain = diffusion\"]"), "{dot}");
    for edge in ["\"pts\" -> \"ddpm\";", "\"ddpm\" -> \"gen[steps=5]\";", "\"gen[steps=10]\" -> \"pic\";"] {
        assert!(dot.contains(edge), "{edge} missing in\n{dot}");
    }
    assert_eq!(dot.matches(" -> ").count(), 6);
}

#[test]
fn show_schedule_json_matches_the_float64_tables() {
    let p = Project::new(&TOY.replace("schedule lin = linear { steps = T }", "schedule lin = cosine { steps = 50 }"));
    let out = p.difflow(&["show", "p.diff", "lin", "--json"], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let tables = ScheduleSpec::Cosine { steps: 50, s: 0.008, max_beta: 0.999, zero_terminal_snr: false }.tables();
    let arr = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>();
    assert_eq!(arr("t"), (1..=50).map(f64::from).collect::<Vec<_>>());
    // serde_json's reader may round the last bit differently from the writer.
    let close =
        |a: Vec<f64>, b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-15 * y.abs());
    assert!(close(arr("beta"), &tables.betas));
    assert!(close(arr("alpha_bar"), &tables.alphas_cumprod));
    assert!(close(arr("snr"), &tables.snr));
    assert_eq!(arr("beta")[49], 0.999);
    let text = p.difflow(&["show", "p.diff", "lin"], &[]).stdout();
    assert_eq!(text.lines().count(), 52, "{text}");
    assert!(text.lines().nth(1).unwrap().split_whitespace().eq(["t", "beta", "alpha_bar", "snr"]));
}

#[test]
fn show_of_a_stage_not_run_yet_says_how_to_run_it() {
    let p = Project::new(TOY);
    let out = p.difflow(&["show", "p.diff", "ddpm"], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(out.stdout().contains("not run yet: `difflow run"), "{}", out.stdout());
    assert_eq!(p.difflow(&["show", "p.diff", "nothing"], &[]).code(), 1);
}

#[test]
fn metrics_comparing_statistics_get_shared_hidden_stats_stages() {
    let p = Project::new(&CFG_STUDY.replace("scale = 0.5", "scale = sweep(0.5, 2.0)"));
    let plan = p.plan();
    let stats: Vec<String> = states(&plan).into_iter().map(|(_, n)| n).filter(|n| n.starts_with("stats(")).collect();
    // The reference statistics are computed once for both metrics instances.
    assert_eq!(stats, ["stats(gen[scale=0.5],", "stats(ref,", "stats(gen[scale=2.0],"], "{plan}");
    assert!(plan.contains("stats (shared)"));
    assert_eq!(state_of(&plan, "scores[scale=2.0]"), "new");
    // Hidden stages are not addressable.
    assert_eq!(p.difflow(&["run", "p.diff", "--target", "stats(ref, inception)"], &[]).code(), 1);
    // check counts what plan lists: 7 declared instances and 3 shared statistics.
    assert!(plan.contains("10 stages: 0 cached, 10 new, 0 stale"), "{plan}");
    // With its data present, so that check has nothing to add.
    std::fs::create_dir_all(p.path().join("data/mnist")).unwrap();
    let check = p.difflow(&["check", "p.diff"], &[]);
    assert_eq!(check.stdout(), "p.diff: ok (10 stages, 3 of them shared feature statistics)\n");
}

#[test]
fn fmt_rewrites_check_reports_and_doc_prints_the_reference() {
    let p = Project::new("dataset   pts=toy{shape=\"moons\",count=64}   # points\n");
    let out = p.difflow(&["fmt", "p.diff", "--check"], &[]);
    assert_eq!(out.code(), 1, "an unformatted file fails --check");
    assert!(out.stderr().contains("not formatted"), "{}", out.stderr());
    assert_eq!(p.difflow(&["fmt", "p.diff"], &[]).code(), 0);
    let formatted = std::fs::read_to_string(p.file()).unwrap();
    assert!(formatted.contains("# points"), "{formatted}");
    assert_eq!(p.difflow(&["fmt", "p.diff", "--check"], &[]).code(), 0);
    assert_eq!(std::fs::read_to_string(p.file()).unwrap(), formatted, "fmt is idempotent");

    let doc = p.difflow(&["doc", "sample"], &[]);
    assert_eq!(doc.code(), 0);
    assert!(doc.stdout().contains("`batch`"), "{}", doc.stdout());
    let bad = p.difflow(&["doc", "smaple"], &[]);
    assert_eq!(bad.code(), 1);
    assert!(bad.stderr().contains("did you mean `sample`"), "{}", bad.stderr());
}
