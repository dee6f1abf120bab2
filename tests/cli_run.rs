//! `difflow run` and the cache with a test double of the worker process: what runs, what
//! stays cached, stale reasons, commit/crash/corruption semantics, difflow.lock, locks,
//! `cache ls|gc`.

mod cli_support;

use cli_support::{line_of, state_of, states, Project, CFG_STUDY, TOY};

fn run_ok(p: &Project, extra: &[&str]) -> String {
    let out = p.run(extra);
    assert_eq!(out.code(), 0, "stdout:\n{}\nstderr:\n{}", out.stdout(), out.stderr());
    out.stdout()
}

#[test]
fn a_second_run_does_nothing_and_says_so() {
    let p = Project::new(TOY);
    let first = run_ok(&p, &[]);
    assert!(first.contains("ran 5 stages, 0 cached"), "{first}");
    assert_eq!(p.take_worker_log(), ["pts", "ddpm", "gen[steps=5]", "gen[steps=10]", "pic"]);
    assert_eq!(p.entries().len(), 5);
    let second = run_ok(&p, &[]);
    assert_eq!(second.trim(), "nothing to do: all 5 stages cached");
    assert!(p.take_worker_log().is_empty());
    assert!(states(&p.plan()).iter().all(|(s, _)| s == "cached"));
}

#[test]
fn renaming_reformatting_and_reordering_keys_rerun_nothing() {
    let p = Project::new(TOY);
    run_ok(&p, &[]);
    p.take_worker_log();
    p.write(
        r#"
let T = 100

# the same pipeline, renamed, reordered and laid out differently
dataset points = toy {
    count = 512
    shape = "gaussians8"
}
schedule lin = linear { steps = T }
model network = mlp { layers = 2, hidden = 64 }
train trained {
    lr = 1e-3
    batch = 64
    steps = 20
    schedule = lin
    data = points
    model = network
}
sample gen { count = 64, sampler = ddim { steps = sweep(5, 10) }, from = trained, batch = 32 }
plot pic = scatter { of = [points, gen] }
"#,
    );
    let plan = p.plan();
    assert!(states(&plan).iter().all(|(s, _)| s == "cached"), "{plan}");
    assert!(run_ok(&p, &[]).contains("nothing to do: all 5 stages cached"));
    // `difflow fmt` never changes a key.
    assert_eq!(p.difflow(&["fmt", "p.diff"], &[]).code(), 0);
    assert!(states(&p.plan()).iter().all(|(s, _)| s == "cached"));
    assert!(p.take_worker_log().is_empty());
}

#[test]
fn changing_the_sampler_reruns_only_sampling_and_its_readers_and_plan_says_why() {
    let p = Project::new(TOY);
    run_ok(&p, &[]);
    p.take_worker_log();
    // Sampling batch size cannot change results.
    p.write(&TOY.replace("batch = 32", "batch = 8"));
    assert!(states(&p.plan()).iter().all(|(s, _)| s == "cached"));
    p.write(
        &TOY.replace("sampler = ddim { steps = sweep(5, 10) }", "sampler = ddim { steps = sweep(5, 10), eta = 1.0 }"),
    );
    let plan = p.plan();
    assert_eq!(state_of(&plan, "ddpm"), "cached");
    assert_eq!(state_of(&plan, "gen[steps=5]"), "stale");
    assert!(line_of(&plan, "gen[steps=5]").contains("sampler.eta 0.0 → 1.0"), "{plan}");
    assert_eq!(state_of(&plan, "pic"), "stale");
    assert!(line_of(&plan, "pic").contains("input `gen[steps=5]` changed"), "{plan}");
    run_ok(&p, &[]);
    assert_eq!(p.take_worker_log(), ["gen[steps=5]", "gen[steps=10]", "pic"]);
    // More training steps continue the cached run and rerun everything after it, never
    // the data.
    p.write(&TOY.replace("steps = 20", "steps = 30"));
    let plan = p.plan();
    assert_eq!(state_of(&plan, "pts"), "cached");
    assert_eq!(state_of(&plan, "ddpm"), "continue");
    assert!(line_of(&plan, "ddpm").contains("20 → 30 steps (from cached entry "), "{plan}");
    assert!(line_of(&plan, "gen[steps=10]").contains("input `ddpm` changed"), "{plan}");
    // A new instance of a family is new, not stale.
    p.write(&TOY.replace("sweep(5, 10)", "sweep(5, 20)"));
    assert_eq!(state_of(&p.plan(), "gen[steps=20]"), "new");
}

#[test]
fn every_result_changing_parameter_changes_the_key() {
    let p = Project::new(TOY);
    run_ok(&p, &[]);
    for (from, to, stale) in [
        ("count = 512", "count = 256", "pts"),
        ("shape = \"gaussians8\"", "shape = \"moons\"", "pts"),
        ("hidden = 64", "hidden = 32", "ddpm"),
        ("layers = 2", "layers = 3", "ddpm"),
        ("lr = 1e-3", "lr = 2e-3", "ddpm"),
        ("batch = 64", "batch = 32, seed = 7", "ddpm"),
        ("let T = 100", "let T = 200", "ddpm"),
        ("linear { steps = T }", "cosine { steps = T }", "ddpm"),
        ("count = 64", "count = 32", "gen[steps=5]"),
        ("ddim { steps", "ddpm { steps", "gen[steps=5]"),
    ] {
        assert!(TOY.contains(from), "{from}");
        p.write(&TOY.replace(from, to));
        let plan = p.plan();
        assert_eq!(state_of(&plan, stale), "stale", "{from} → {to}:\n{plan}");
    }
}

#[test]
fn target_runs_a_family_or_one_instance_with_its_upstream_and_force_reruns() {
    let p = Project::new(TOY);
    let out = run_ok(&p, &["--target", "gen[steps=10]"]);
    assert!(out.contains("ran 3 stages"), "{out}");
    assert_eq!(p.take_worker_log(), ["pts", "ddpm", "gen[steps=10]"]);
    run_ok(&p, &["--target", "gen"]);
    assert_eq!(p.take_worker_log(), ["gen[steps=5]"]);
    run_ok(&p, &["--target", "pic", "--force", "ddpm"]);
    assert_eq!(p.take_worker_log(), ["ddpm", "pic"]);
}

#[test]
fn a_failed_stage_exits_2_and_keeps_what_finished_before() {
    let p = Project::new(TOY);
    let out = p.difflow(&["run", "p.diff"], &[("FAIL_KIND", "sample")]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("the data file is missing"), "{}", out.stderr());
    assert!(out.stderr().contains("stage `gen[steps=5]`"), "{}", out.stderr());
    let plan = p.plan();
    assert_eq!(state_of(&plan, "ddpm"), "cached");
    assert_eq!(state_of(&plan, "gen[steps=5]"), "new");
    let lock = std::fs::read_to_string(p.path().join("difflow.lock")).unwrap();
    assert!(lock.contains("[stages.ddpm]") && !lock.contains("gen[steps=5]"), "{lock}");
    p.take_worker_log();
    run_ok(&p, &[]);
    assert_eq!(p.take_worker_log(), ["gen[steps=5]", "gen[steps=10]", "pic"]);
}

#[test]
fn a_killed_worker_leaves_no_entry_that_counts() {
    let p = Project::new(TOY);
    let out = p.difflow(&["run", "p.diff"], &[("CRASH_KIND", "train")]);
    assert_eq!(out.code(), 2);
    assert!(out.stderr().contains("signal 9"), "{}", out.stderr());
    assert_eq!(p.entries().len(), 1, "only the dataset is committed");
    // Its checkpoint (step 1 of 20) is what the rerun starts from.
    assert_eq!(state_of(&p.plan(), "ddpm"), "resume");
    run_ok(&p, &[]);
    assert_eq!(p.entries().len(), 5);
    // Training checkpoints: its rerun found what the killed run left in the staging folder.
    let train = p.entries().into_iter().find(|e| e.join("train.txt").exists()).unwrap();
    assert!(train.join("partial.txt").exists());
}

#[test]
fn a_stage_that_does_not_checkpoint_restarts_from_an_empty_folder() {
    let p = Project::new(TOY);
    assert_eq!(p.difflow(&["run", "p.diff"], &[("CRASH_KIND", "sample")]).code(), 2);
    run_ok(&p, &[]);
    let samples: Vec<_> = p.entries().into_iter().filter(|e| e.join("sample.txt").exists()).collect();
    assert_eq!(samples.len(), 2);
    assert!(samples.iter().all(|e| !e.join("partial.txt").exists()));
}

#[test]
fn a_corrupted_entry_is_detected_and_recomputed() {
    let p = Project::new(TOY);
    run_ok(&p, &[]);
    p.take_worker_log();
    let train = p.entries().into_iter().find(|e| e.join("train.txt").exists()).unwrap();
    std::fs::write(train.join("train.txt"), "tampered\n").unwrap();
    let out = p.run(&[]);
    assert_eq!(out.code(), 0);
    assert!(out.stderr().contains("cache entry of `ddpm` is corrupt"), "{}", out.stderr());
    assert_eq!(p.take_worker_log(), ["ddpm"]);
    assert_eq!(std::fs::read_to_string(train.join("train.txt")).unwrap(), "ddpm\n");
}

#[test]
fn the_lock_file_records_keys_digests_and_metrics() {
    let p = Project::new(TOY);
    run_ok(&p, &[]);
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(p.path().join("difflow.lock")).unwrap()).unwrap();
    let ddpm = &lock["stages"]["ddpm"];
    let key = ddpm["key"].as_str().unwrap();
    assert!(p.cache_dir().join(key).join("manifest.toml").is_file());
    assert_eq!(ddpm["metrics"]["loss"].as_float(), Some(0.25));
    let digest = ddpm["outputs"]["train.txt"].as_str().unwrap();
    assert_eq!(digest, blake3::hash(b"ddpm\n").to_hex().as_str());
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(p.cache_dir().join(key).join("manifest.toml")).unwrap()).unwrap();
    assert_eq!(manifest["kind"].as_str(), Some("train"));
    assert_eq!(manifest["outputs"]["train.txt"]["size"].as_integer(), Some(5));
    assert!(manifest["inputs"]["pts"].as_str().is_some());
}

#[test]
fn two_concurrent_runs_compute_each_stage_once() {
    let p = Project::new(TOY);
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_difflow"))
            .args(["run", "p.diff"])
            .current_dir(p.path())
            .env("DIFFLOW_WORKER", &p.worker)
            .env("LOG", &p.log)
            .env("SLEEP", "0.3")
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success());
    let mut log = p.take_worker_log();
    log.sort();
    assert_eq!(log, ["ddpm", "gen[steps=10]", "gen[steps=5]", "pic", "pts"], "each stage ran exactly once");
    assert_eq!(p.entries().len(), 5);
}

#[test]
fn jobs_run_independent_stages_at_once() {
    let p = Project::new(TOY);
    run_ok(&p, &["--target", "ddpm"]);
    // Each sampling waits until the other is running too: they finish only if they overlap.
    let meeting = p.path().join("meeting");
    std::fs::create_dir(&meeting).unwrap();
    let meeting = meeting.to_str().unwrap();
    let env = [("RENDEZVOUS", meeting), ("RENDEZVOUS_KIND", "sample")];
    let out = p.difflow(&["run", "p.diff", "--target", "gen", "--jobs", "2"], &env);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert_eq!(std::fs::read_dir(meeting).unwrap().count(), 2, "both samplings met");
}

#[test]
fn cache_ls_lists_and_gc_removes_what_no_pipeline_uses() {
    let p = Project::new(TOY);
    run_ok(&p, &[]);
    p.write(&TOY.replace("sweep(5, 10)", "sweep(5, 20)"));
    run_ok(&p, &[]);
    assert_eq!(p.entries().len(), 7);
    let ls = p.difflow(&["cache", "ls", "p.diff"], &[]);
    assert_eq!(ls.code(), 0);
    assert!(ls.stdout().contains("(7 entries)"), "{}", ls.stdout());
    assert!(ls.stdout().contains("gen[steps=10]"), "{}", ls.stdout());
    let gc = p.difflow(&["cache", "gc", "p.diff"], &[]);
    assert_eq!(gc.code(), 0, "{}", gc.stderr());
    assert!(gc.stdout().contains("removed 2 entries"), "{}", gc.stdout());
    assert_eq!(p.entries().len(), 5);
    assert!(states(&p.plan()).iter().all(|(s, _)| s == "cached"));
}

#[test]
fn the_report_stage_tabulates_and_inlines_its_included_stages() {
    let p = Project::new(&format!("{TOY}report study {{ include = [gen, pic], title = \"Toy study\" }}\n"));
    let out = run_ok(&p, &["--target", "study"]);
    assert!(out.contains("ran 6 stages"), "{out}");
    assert!(!p.take_worker_log().contains(&"study".to_string()), "the report is written in-process");
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(p.path().join("difflow.lock")).unwrap()).unwrap();
    let entry = p.cache_dir().join(lock["stages"]["study"]["key"].as_str().unwrap());
    let html = std::fs::read_to_string(entry.join("report.html")).unwrap();
    assert!(html.contains("<h1>Toy study</h1>"));
    let grid = difflow::report::base64(b"gen[steps=10]\n");
    assert!(html.contains(&format!("data:image/png;base64,{grid}")), "{html}");
    let md = std::fs::read_to_string(entry.join("report.md")).unwrap();
    assert!(md.contains(r"![gen\[steps=5\]](images/gen_steps_5__grid.png)"), "{md}");
    assert!(entry.join("images/gen_steps_5__grid.png").is_file());
}

#[test]
fn data_files_are_keyed_by_content_and_plan_names_the_changed_path() {
    let p = Project::new("dataset d = images { path = \"imgs\", size = 8, channels = 1 }\n");
    std::fs::create_dir_all(p.path().join("imgs")).unwrap();
    std::fs::write(p.path().join("imgs/a.png"), b"first").unwrap();
    run_ok(&p, &[]);
    // Moving the data elsewhere changes nothing: only contents count.
    std::fs::rename(p.path().join("imgs"), p.path().join("pictures")).unwrap();
    p.write("dataset d = images { path = \"pictures\", size = 8, channels = 1 }\n");
    assert_eq!(state_of(&p.plan(), "d"), "cached");
    std::fs::write(p.path().join("pictures/a.png"), b"second").unwrap();
    let plan = p.plan();
    assert_eq!(state_of(&plan, "d"), "stale");
    assert!(line_of(&plan, "d").contains("the contents of `path`"), "{plan}");
    assert!(plan.contains("1 stage: 0 cached, 0 new, 1 stale"), "{plan}");
}

#[test]
fn identical_declarations_share_one_entry() {
    let p = Project::new(
        "dataset a = toy { shape = \"moons\", count = 64 }\ndataset b = toy { count = 64, shape = \"moons\" }\n",
    );
    let out = run_ok(&p, &["--jobs", "2"]);
    assert!(out.contains("ran 1 stage, 1 cached"), "{out}");
    assert_eq!(p.take_worker_log().len(), 1);
    assert_eq!(p.entries().len(), 1);
    let lock = std::fs::read_to_string(p.path().join("difflow.lock")).unwrap();
    assert!(lock.contains("[stages.a]") && lock.contains("[stages.b]"), "{lock}");
}

#[test]
fn guidance_scale_reruns_sampling_and_metrics_never_training_or_reference_statistics() {
    let p = Project::new(CFG_STUDY);
    // The worker double never reads the digits, but a run refuses a dataset folder that
    // does not exist: a stand-in folder.
    std::fs::create_dir_all(p.path().join("data/mnist")).unwrap();
    std::fs::write(p.path().join("data/mnist/README"), "stand-in\n").unwrap();
    let out = run_ok(&p, &[]);
    assert!(out.contains("ran 7 stages"), "{out}");
    p.take_worker_log();
    p.write(&CFG_STUDY.replace("scale = 0.5", "scale = 2.0"));
    let plan = p.plan();
    for cached in ["digits", "ref", "ddpm", "stats(ref,"] {
        assert_eq!(state_of(&plan, cached), "cached", "{plan}");
    }
    assert!(line_of(&plan, "gen").contains("guidance.scale 0.5 → 2.0"), "{plan}");
    assert_eq!(state_of(&plan, "scores"), "stale");
    run_ok(&p, &[]);
    assert_eq!(p.take_worker_log(), ["gen", "stats(gen, inception)", "scores"]);
    // The metrics job reads both statistics entries.
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(p.path().join("difflow.lock")).unwrap()).unwrap();
    let key = lock["stages"]["scores"]["key"].as_str().unwrap();
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(p.cache_dir().join(key).join("manifest.toml")).unwrap()).unwrap();
    let params: serde_json::Value = serde_json::from_str(manifest["params"].as_str().unwrap()).unwrap();
    assert_eq!(params["samples_stats"]["$stage"], "stats(gen, inception)");
    assert_eq!(params["reference_stats"]["$stage"], "stats(ref, inception)");
    assert!(manifest["inputs"].get("stats(ref, inception)").is_some());
}

#[test]
fn pipelines_sharing_a_folder_do_not_read_each_others_lock_records() {
    let p = Project::new(TOY);
    run_ok(&p, &[]);
    // Another pipeline beside it reuses the name `pts` for a different dataset.
    std::fs::write(p.path().join("other.diff"), "dataset pts = toy { shape = \"moons\", count = 256 }\n").unwrap();
    let out = p.difflow(&["plan", "other.diff"], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert_eq!(state_of(&out.stdout(), "pts"), "new", "{}", out.stdout());
    assert_eq!(p.difflow(&["run", "other.diff"], &[]).code(), 0);
    // The lock now holds both records, the other pipeline's in its own section; the first
    // one's stages are still cached (the cache decides what is cached, the lock only
    // explains what changed).
    let lock = std::fs::read_to_string(p.path().join("difflow.lock")).unwrap();
    assert!(lock.contains("pipeline = \"p.diff\"") && lock.contains("[pipelines.\"other.diff\".stages.pts]"), "{lock}");
    assert_eq!(state_of(&p.plan(), "ddpm"), "cached");
}
