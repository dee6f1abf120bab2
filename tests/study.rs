//! The seven study pipelines under `pipelines/study/`, end to end at a CI size (8 × 8
//! digits, a UNet of 8 channels, tens of steps) through `--set`, with the real worker.
//! A tiny run cannot show sample quality, so each test asserts what it can: the stages
//! that ran, what the cache reused, the files the report names.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::{difflow_real, ran};

const TINY: &[&str] = &[
    "--set",
    "size=8",
    "--set",
    "channels=8",
    "--set",
    "steps=30",
    "--set",
    "batch=8",
    "--set",
    "count=16",
    "--set",
    "judge_steps=20",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A project folder holding `pipelines/study/NAME` and a link to the repository's data.
fn project(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("pipelines/study");
    std::fs::create_dir_all(&study).unwrap();
    std::fs::copy(repo().join("pipelines/study").join(name), study.join(name)).unwrap();
    let mnist = repo().join("data/mnist");
    assert!(mnist.is_dir(), "{} is missing: `. scripts/setup.sh` writes it", mnist.display());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(&mnist, dir.path().join("data/mnist")).unwrap();
    // One thread per worker: these networks are too small to gain from a second, and on a
    // shared machine libtorch's spinning threads make a stage up to 16× slower.
    std::fs::write(study.join("difflow.toml"), "threads = 1\n").unwrap();
    dir
}

fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    difflow_real(&dir.join("pipelines/study"), args, &[])
}

/// `difflow ARGS` at tiny size (with the [`TINY`] overrides), which must succeed: its stdout.
fn tiny(dir: &Path, args: &[&str]) -> String {
    let args = [args, TINY].concat();
    let (code, out, err) = difflow(dir, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    out
}

fn run_tiny(dir: &Path, file: &str, extra: &[&str]) -> String {
    tiny(dir, &[&["run", file, "--device", "cpu"], extra].concat())
}

/// Runs study `file` in a project of its own: the project, the run's stdout and the
/// instances it ran.
fn run_study(file: &str) -> (tempfile::TempDir, String, Vec<String>) {
    let dir = project(file);
    let out = run_tiny(dir.path(), file, &[]);
    let ran = ran(&out);
    (dir, out, ran)
}

fn count(ran: &[String], prefix: &str) -> usize {
    ran.iter().filter(|n| n.starts_with(prefix)).count()
}

/// How many instances ran per name prefix (`out`: what a failure shows).
fn assert_counts(ran: &[String], out: &str, counts: &[(&str, usize)]) {
    for (prefix, n) in counts {
        assert_eq!(count(ran, prefix), *n, "{prefix}: {out}");
    }
}

fn assert_all_ran(ran: &[String], out: &str, stages: &[&str]) {
    for stage in stages {
        assert!(ran.iter().any(|n| n == stage), "{stage} did not run:\n{out}");
    }
}

/// The `study` report's entry folder (named by `difflow show`) and its Markdown.
fn report(dir: &Path, file: &str) -> (PathBuf, String) {
    let out = tiny(dir, &["show", file, "study"]);
    assert!(out.contains("report.html"), "{out}");
    let entry = out.lines().find_map(|l| l.trim().strip_prefix("entry")).expect("a cached report entry");
    let entry = PathBuf::from(entry.trim());
    let md = std::fs::read_to_string(entry.join("report.md")).unwrap();
    (entry, md)
}

/// The `images` (uint8) of a cached sample stage, found by `difflow show`.
fn sample_images(dir: &Path, file: &str, stage: &str) -> Vec<u8> {
    let out = tiny(dir, &["show", file, stage]);
    let entry = out.lines().find_map(|l| l.trim().strip_prefix("entry")).expect("a cached sample entry");
    let bytes = std::fs::read(Path::new(entry.trim()).join("samples.safetensors")).unwrap();
    // safetensors: an 8-byte little-endian header length, a JSON header, then the data.
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let images = &header["images"];
    assert_eq!(images["dtype"], "U8", "{header}");
    let range = images["data_offsets"].as_array().unwrap();
    let (start, end) = (range[0].as_u64().unwrap() as usize, range[1].as_u64().unwrap() as usize);
    bytes[8 + len + start..8 + len + end].to_vec()
}

#[test]
fn ddpm_chain_trains_one_model_per_chain_length() {
    let (dir, out, ran) = run_study("01_ddpm_chain.diff");
    assert_counts(&ran, &out, &[("ddpm[", 3), ("bound[", 3), ("chain[", 3)]);
    // FID and NLL charted against the chain length T, from one table row per T.
    let (_, md) = report(dir.path(), "01_ddpm_chain.diff");
    assert!(md.contains("![scores: FID against steps]"), "{md}");
    assert!(md.contains("![bound: bits/dim against steps]"), "{md}");
}

#[test]
fn iddpm_and_ddpm_both_train_sample_and_score() {
    let (_dir, out, ran) = run_study("02_iddpm.diff");
    assert_all_ran(&ran, &out, &["ddpm", "iddpm", "ddpm_gen", "iddpm_gen", "ddpm_nll", "iddpm_nll", "study"]);
}

#[test]
fn ddim_sweeps_ten_samplers_from_one_trained_model_and_reruns_no_training() {
    let (dir, out, ran) = run_study("03_ddim.diff");
    assert_counts(&ran, &out, &[("ddpm", 1), ("gen[", 10)]);
    // Resampling every setting again reuses the cached model.
    let again = run_tiny(dir.path(), "03_ddim.diff", &["--force", "gen"]);
    assert_counts(&self::ran(&again), &again, &[("ddpm", 0), ("gen[", 10)]);
    // FID against steps (one line per η) and against η (one line per step count).
    let (entry, md) = report(dir.path(), "03_ddim.diff");
    let results = md.split("## Provenance").next().unwrap();
    assert_eq!(results.matches("| `scores[").count(), 10, "one table row per setting:\n{md}");
    for (axis, lines) in [("steps", 2), ("eta", 5)] {
        let file = format!("images/scores_fid_by_{axis}.svg");
        assert!(md.contains(&format!("({file})")), "{md}");
        let svg = std::fs::read_to_string(entry.join(&file)).unwrap();
        assert_eq!(svg.matches("<polyline").count(), lines, "{svg}");
    }
}

#[test]
fn classifier_guidance_sweeps_four_scales_with_one_noisy_classifier() {
    let (_dir, out, ran) = run_study("04_classifier_guidance.diff");
    assert_counts(&ran, &out, &[("noisy", 1), ("guided[", 4), ("quality[", 4)]);
}

#[test]
fn cfg_gives_a_reverse_process_gif_per_guidance_strength_and_a_report_a_browser_shows() {
    let (dir, out, ran) = run_study("05_cfg.diff");
    assert_counts(&ran, &out, &[("reverse[", 5)]);
    let shown = tiny(dir.path(), &["show", "05_cfg.diff", "reverse[scale=2.0]"]);
    assert!(shown.contains(".gif"), "{shown}");
    // Guidance must change the samples: an unguided and a w = 2 set from the same noise
    // differ by far more than rounding (a net blind to its label gave 0.0002 / 255).
    let (plain, guided) = (
        sample_images(dir.path(), "05_cfg.diff", "gen[scale=0.0]"),
        sample_images(dir.path(), "05_cfg.diff", "gen[scale=2.0]"),
    );
    assert_eq!(plain.len(), guided.len());
    let mad = plain.iter().zip(&guided).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / plain.len() as f64;
    println!("mean |x(w=2) - x(w=0)|: {mad:.4} / 255");
    assert!(mad > 0.1, "guidance left the samples (nearly) unchanged: mean difference {mad} / 255");

    // The run ends by naming the report first.
    let opened: Vec<&str> = out.lines().skip_while(|l| *l != "open:").skip(1).map(str::trim).collect();
    let report = Path::new(opened.first().expect("an `open:` list"));
    assert!(report.ends_with("report.html") && report.is_file(), "{out}");
    let html = std::fs::read_to_string(report).unwrap();
    assert!(html.contains("<pre class=\"recipe\">") && html.contains("Provenance"), "recipe or provenance missing");
    // Every included stage ran in a worker, which names its libtorch.
    assert!(html.contains(", torch 2.") && !html.contains("torch not recorded"), "no torch version");

    // In headless Chromium: every image decodes, the tables have their rows, no errors.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("study-05-report.png");
    let started = std::time::Instant::now();
    let check =
        Command::new("python3").arg(repo().join("scripts/browser_check.py")).arg(report).arg(&shot).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    println!("browser check: {:.1} s, screenshot {}", started.elapsed().as_secs_f64(), shot.display());
    let page: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let images = page["images"].as_array().unwrap();
    // Per w a sample grid and the reverse process as a strip (PNG) and a GIF; the loss curve.
    assert_eq!(images.len(), 16, "{page}");
    for img in images {
        assert!(img["width"].as_u64().unwrap() > 0 && img["height"].as_u64().unwrap() > 0, "not decoded: {img}");
    }
    for svg in page["svgs"].as_array().unwrap() {
        assert!(svg["width"].as_f64().unwrap() > 0.0 && svg["height"].as_f64().unwrap() > 0.0, "{svg}");
    }
    let tables: Vec<u64> = page["tables"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
    // The scores per w, then the provenance of the 31 stages the report depends on: the
    // two datasets, the judge, the training run, per w the samples, scores, reverse
    // process and grid, the loss curve, and six feature statistics.
    assert_eq!(tables.first(), Some(&5), "{page}");
    assert_eq!(tables.last(), Some(&31), "{page}");
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 0);
    // Each w's strip, GIF and grid side by side (one row each), titled by what w is; axes
    // that say what they show, every label inside its chart; nothing wider than the window.
    println!("report page: {} ({} bytes)", page["page"], html.len());
    assert_eq!(page["sweep_rows"], serde_json::json!([1, 1, 1]), "{page}");
    assert!(html.contains(">guidance strength w = 2.0</figcaption>"), "no titled sample grid");
    assert!(html.contains(">FID (classifier features, lower is better)"), "no FID axis title");
    assert_eq!(page["svg_text_outside"], serde_json::json!([]), "{page}");
    assert!(page["page"]["width"].as_u64() <= page["page"]["viewport"].as_u64(), "{page}");
}

#[test]
fn schedules_train_three_models_on_equal_budgets() {
    let (dir, out, ran) = run_study("06_schedules.diff");
    assert_all_ran(&ran, &out, &["linear_ddpm", "cosine_ddpm", "sigmoid_ddpm", "curves", "study"]);
    // One section per schedule's scores and NLL, and the ᾱ_t / log-SNR picture.
    let (entry, md) = report(dir.path(), "06_schedules.diff");
    for schedule in ["linear", "cosine", "sigmoid"] {
        assert!(md.contains(&format!("## {schedule}_scores (metrics)")), "{md}");
        assert!(md.contains(&format!("## {schedule}_nll (nll)")), "{md}");
    }
    assert!(md.contains("(images/curves_plot.png)") && entry.join("images/curves_plot.png").is_file(), "{md}");
}

#[test]
fn datasets_names_the_missing_data_before_anything_runs_and_runs_mnist_alone() {
    let dir = project("07_datasets.diff");
    let mut args = vec!["run", "07_datasets.diff", "--device", "cpu"];
    args.extend_from_slice(TINY);
    let (code, out, err) = difflow(dir.path(), &args);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("missing data; nothing was run"), "{err}");
    assert!(err.contains("dataset `fashion_train` (fashion_mnist)"), "{err}");
    assert!(err.contains("dataset `cifar_test` (cifar10)"), "{err}");
    assert!(!err.contains("mnist_train"), "{err}");
    assert!(ran(&out).is_empty(), "{out}");

    let out = run_tiny(dir.path(), "07_datasets.diff", &["--target", "mnist_study"]);
    let ran = ran(&out);
    assert!(ran.iter().any(|n| n == "mnist_scores"), "{out}");
    assert!(!ran.iter().any(|n| n.starts_with("fashion") || n.starts_with("cifar")), "{out}");
}
