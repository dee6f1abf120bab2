//! Training that grows, end to end with the real worker on toy data: raising `steps`
//! continues the cached run (and equals a fresh run bit for bit), `step = sweep(…)` reads
//! snapshots that equal runs of exactly that length, and lowering `steps` to a kept
//! snapshot trains nothing.

mod cli_support;

use std::path::Path;

use cli_support::{difflow_real, ran, toy_train, TOY_SETUP};
use difflow::cache::LockFile;

fn train(steps: &str) -> String {
    toy_train(steps, "1e-3", ", warmup = 3, checkpoint_every = 7")
}

const SAMPLE: &str = "sampler = ddim { steps = 5 }, count = 32, seed = 3";

fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    difflow_real(dir, args, &[])
}

/// Writes the pipeline, runs it and returns stdout then stderr (the run must succeed).
fn run(dir: &Path, text: &str) -> String {
    std::fs::write(dir.join("p.diff"), text).unwrap();
    let (code, out, err) = difflow(dir, &["run", "p.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    format!("{out}{err}")
}

fn plan(dir: &Path) -> String {
    let (code, out, err) = difflow(dir, &["plan", "p.diff"]);
    assert_eq!(code, 0, "{err}");
    out
}

/// An output file of an instance's current entry.
fn output(dir: &Path, instance: &str, file: &str) -> Vec<u8> {
    let lock = LockFile::read(&dir.join("difflow.lock"));
    let key = &lock.stages.get(instance).unwrap_or_else(|| panic!("no `{instance}` in the lock file")).key;
    std::fs::read(dir.join(".difflow/cache").join(key).join(file)).unwrap()
}

/// The `done` counts of the training progress lines the run printed for `instance`.
fn training_progress(stdout: &str, instance: &str) -> Vec<u64> {
    let prefix = format!("] train {instance}: training ");
    stdout
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .filter_map(|rest| rest.split('/').next()?.parse().ok())
        .collect()
}

#[test]
fn raising_steps_continues_the_cached_run_and_equals_a_fresh_run() {
    let dir = tempfile::tempdir().unwrap();
    let readers =
        format!("sample gen {{ from = ddpm, {SAMPLE} }}\nsample early {{ from = ddpm, step = 10, {SAMPLE} }}\n");
    let out = run(dir.path(), &format!("{TOY_SETUP}{}{readers}", train("20")));
    assert_eq!(ran(&out), ["pts", "ddpm@10", "ddpm", "gen", "early"], "{out}");
    assert!(out.contains("continuing the cached run of 10 steps"), "ddpm continues its snapshot:\n{out}");

    std::fs::write(dir.path().join("p.diff"), format!("{TOY_SETUP}{}{readers}", train("40"))).unwrap();
    let shown = plan(dir.path());
    let line = shown.lines().find(|l| l.starts_with("continue  ddpm ")).unwrap_or_else(|| panic!("{shown}"));
    assert!(line.contains("20 → 40 steps (from cached entry "), "{shown}");
    assert!(shown.lines().any(|l| l.starts_with("cached") && l.contains("ddpm@10")), "{shown}");
    assert!(shown.contains("training: 20 steps to run (20 saved by continuing"), "{shown}");

    let out = run(dir.path(), &format!("{TOY_SETUP}{}{readers}", train("40")));
    // What reads the new final weights reruns; what reads the unchanged snapshot does not.
    assert_eq!(ran(&out), ["ddpm", "gen"], "{out}");
    assert!(out.contains("continuing the cached run of 20 steps"), "{out}");
    let progress = training_progress(&out, "ddpm");
    assert_eq!(progress.first(), Some(&20), "the bar starts at the resumed step:\n{out}");
    assert_eq!(progress.last(), Some(&40), "{out}");
    let lock = LockFile::read(&dir.path().join("difflow.lock"));
    assert_eq!(lock.stages["ddpm"].steps, [10, 20, 40]);

    let fresh = tempfile::tempdir().unwrap();
    let out = run(fresh.path(), &format!("{TOY_SETUP}{}", train("40")));
    assert!(!out.contains("continuing"), "{out}");
    for file in ["model.safetensors", "ema.safetensors", "optimizer.safetensors", "loss.csv"] {
        assert!(output(dir.path(), "ddpm", file) == output(fresh.path(), "ddpm", file), "{file} differs");
    }
}

#[test]
fn samples_at_swept_steps_equal_samples_of_runs_that_long() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = format!("sample gen {{ from = ddpm, step = sweep(5, 12, 30), {SAMPLE} }}\n");
    let out = run(dir.path(), &format!("{TOY_SETUP}{}{sweep}", train("30")));
    assert_eq!(ran(&out), ["pts", "ddpm@5", "ddpm@12", "ddpm", "gen[step=5]", "gen[step=12]", "gen[step=30]"]);
    assert!(out.contains("continuing the cached run of 5 steps"), "{out}");
    assert!(out.contains("continuing the cached run of 12 steps"), "{out}");
    for steps in [5, 12, 30] {
        let alone = tempfile::tempdir().unwrap();
        let out = run(
            alone.path(),
            &format!("{TOY_SETUP}{}sample gen {{ from = ddpm, {SAMPLE} }}\n", train(&steps.to_string())),
        );
        assert!(!out.contains("continuing"), "{out}");
        let swept = output(dir.path(), &format!("gen[step={steps}]"), "samples.safetensors");
        assert!(swept == output(alone.path(), "gen", "samples.safetensors"), "step {steps}: samples differ");
    }
}

#[test]
fn lowering_steps_to_a_kept_snapshot_trains_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = format!("sample gen {{ from = ddpm, step = sweep(10, 20), {SAMPLE} }}\n");
    run(dir.path(), &format!("{TOY_SETUP}{}{sweep}", train("30")));

    let lowered = format!("{TOY_SETUP}{}sample gen {{ from = ddpm, {SAMPLE} }}\n", train("20"));
    std::fs::write(dir.path().join("p.diff"), &lowered).unwrap();
    let shown = plan(dir.path());
    assert!(shown.lines().any(|l| l.starts_with("cached") && l.contains(" ddpm ")), "{shown}");
    let out = run(dir.path(), &lowered);
    assert_eq!(out.trim(), "nothing to do: all 3 stages cached", "{out}");
    assert_eq!(LockFile::read(&dir.path().join("difflow.lock")).stages["ddpm"].steps, [10, 20, 30]);

    // Below every kept run: plan says it starts over before anything runs.
    std::fs::write(dir.path().join("p.diff"), format!("{TOY_SETUP}{}", train("4"))).unwrap();
    let shown = plan(dir.path());
    assert!(
        shown.contains(
            "trains from step 0: no kept checkpoint of this run at or below step 4 (cached: 10, 20, 30 steps)"
        ),
        "{shown}"
    );
    // Between kept runs: continues from the nearest earlier one.
    std::fs::write(dir.path().join("p.diff"), format!("{TOY_SETUP}{}", train("15"))).unwrap();
    assert!(plan(dir.path()).contains("10 → 15 steps (from cached entry"));
}

#[test]
fn one_training_run_gives_a_report_curve_of_accuracy_against_training_step() {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    assert!(
        mnist.join("train-images-idx3-ubyte.gz").exists(),
        "{} is incomplete: run `. scripts/setup.sh` first",
        mnist.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        r#"
dataset digits = mnist {{ path = "{}", split = "train", size = 8, limit = 512 }}
schedule cos = cosine {{ steps = 100 }}
model net = unet {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [], classes = 10, dropout = 0.0 }}
train ddpm {{ model = net, data = digits, schedule = cos, steps = 24, batch = 16, lr = 1e-3 }}
sample probe {{ from = ddpm, step = sweep(8, 16, 24), sampler = ddim {{ steps = 4 }}, count = 20 }}
classifier judge {{ model = encoder {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [] }}, data = digits, steps = 10, batch = 16 }}
metrics by_step {{ samples = probe, features = judge, measure = ["accuracy"] }}
report growth {{ include = [by_step] }}
"#,
        mnist.display()
    );
    std::fs::write(dir.path().join("p.diff"), &pipeline).unwrap();
    assert!(plan(dir.path()).contains("training: 24 steps to run (24 saved by continuing"));
    let out = run(dir.path(), &pipeline);
    let trained: Vec<String> = ran(&out).into_iter().filter(|n| n.starts_with("ddpm")).collect();
    assert_eq!(trained, ["ddpm@8", "ddpm@16", "ddpm"], "{out}");
    // Each training run took only its own 8 steps.
    for name in ["ddpm@16", "ddpm"] {
        assert!(training_progress(&out, name).iter().all(|&done| done >= 8), "{name}:\n{out}");
    }
    let report = String::from_utf8(output(dir.path(), "growth", "report.md")).unwrap();
    assert!(report.contains("| instance | step | accuracy |"), "{report}");
    for step in [8, 16, 24] {
        assert!(report.contains(&format!("| `by_step[step={step}]` | {step} | ")), "{report}");
    }
    assert!(
        report.contains("![by_step: accuracy against training step](images/by_step_accuracy_by_step.svg)"),
        "{report}"
    );
    let chart = String::from_utf8(output(dir.path(), "growth", "images/by_step_accuracy_by_step.svg")).unwrap();
    assert_eq!(chart.matches("<circle").count(), 3, "{chart}");
}
