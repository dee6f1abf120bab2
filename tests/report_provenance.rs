//! A report tells the truth about how its numbers were made: the values every stage it
//! depends on ran with (`--set`s included), the pipeline's text as it is now, and each
//! upstream stage's headline numbers and the device it ran on. A tiny MNIST study (8 × 8
//! digits, tens of steps) with the real worker.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::{difflow_real, ran};

/// A classifier judges the samples of a small class-conditional UNet; the report includes
/// only the scores, so the judge and the training run are upstream of it.
const STUDY: &str = r#"# a tiny judged study
use "std/unet.diff"
let steps = 30
let judge_steps = 20
dataset digits = mnist { path = "data/mnist", split = "train", size = 8, limit = 200 }
classifier judge { model = encoder { channels = 8, mults = [1], res_blocks = 1, attention = [] }, data = digits, steps = judge_steps, batch = 16, lr = 1e-3 }
schedule cos = cosine { steps = 50 }
model net = unet_small { channels = 8, dropout = 0.0, classes = 10, scale_shift = true }
train ddpm { model = net, data = digits, schedule = cos, uncond_p = 0.1, steps = steps, batch = 8, lr = 1e-3 }
sample gen { from = ddpm, sampler = ddim { steps = 5 }, guidance = cfg { scale = 1.0 }, count = 16 }
metrics scores { samples = gen, reference = digits, features = judge, measure = ["accuracy"] }
report study { include = [scores], title = "Judged" }
"#;

const SETS: &[&str] = &["--set", "steps=12", "--set", "judge_steps=6"];

/// A project folder holding `p.diff` ([`STUDY`]) and a link to the repository's MNIST.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    assert!(mnist.is_dir(), "{} is missing: `. scripts/setup.sh` writes it", mnist.display());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(&mnist, dir.path().join("data/mnist")).unwrap();
    std::fs::write(dir.path().join("p.diff"), STUDY).unwrap();
    // One thread: these networks gain nothing from more, and the report must say so.
    std::fs::write(dir.path().join("difflow.toml"), "threads = 1\n").unwrap();
    dir
}

/// `difflow run p.diff --device auto` with the tiny `--set`s and `extra`: its stdout.
fn run(dir: &Path, extra: &[&str]) -> String {
    let args = [&["run", "p.diff", "--device", "auto"], SETS, extra].concat();
    let (code, out, err) = difflow_real(dir, &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    out
}

/// The `study` report's entry folder and its Markdown.
fn report(dir: &Path) -> (PathBuf, String) {
    let args = [&["show", "p.diff", "study"], SETS].concat();
    let (code, out, err) = difflow_real(dir, &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let entry = out.lines().find_map(|l| l.trim().strip_prefix("entry")).expect("a cached report entry");
    let entry = PathBuf::from(entry.trim());
    let md = std::fs::read_to_string(entry.join("report.md")).unwrap();
    (entry, md)
}

/// The row of `stage` in the report's provenance table.
fn provenance_row<'a>(md: &'a str, stage: &str) -> &'a str {
    let table = md.split("## Provenance").nth(1).expect("a provenance section");
    let start = format!("| `{stage}` |");
    table.lines().find(|l| l.starts_with(&start)).unwrap_or_else(|| panic!("no row of {stage}:\n{md}"))
}

#[test]
fn a_report_after_set_shows_the_values_used_and_every_upstream_models_numbers_and_device() {
    let dir = project();
    let out = run(dir.path(), &[]);
    assert_eq!(ran(&out), ["digits", "judge", "ddpm", "gen", "scores", "study"], "{out}");
    let (entry, md) = report(dir.path());

    // The `--set`s, and the values they gave, not the file's `let`s alone.
    assert!(md.contains("Run with `--set steps=12` `--set judge_steps=6`."), "{md}");
    let values =
        md.split("### Effective values").nth(1).expect("the effective values").split("### Text").next().unwrap();
    for block in ["train ddpm {", "classifier judge {", "dataset digits = mnist {"] {
        assert!(values.contains(&format!("\n{block}\n")), "{block}:\n{values}");
    }
    let block = |head: &str| -> Vec<String> {
        let body = values.split(head).nth(1).unwrap().split("\n}").next().unwrap();
        body.lines().map(str::to_string).collect()
    };
    let ddpm = block("train ddpm {");
    assert!(ddpm.contains(&"    steps = 12".to_string()), "{ddpm:?}");
    assert!(ddpm.iter().any(|l| l.starts_with("    model = unet { ")), "the preset's values: {ddpm:?}");
    assert!(block("classifier judge {").contains(&"    steps = 6".to_string()), "{values}");
    // The text too, as written.
    assert!(md.contains("let steps = 30\n") && md.contains("# a tiny judged study"), "{md}");

    // Every stage upstream, with its numbers, on the device it actually ran on.
    for stage in ["digits", "judge", "ddpm", "gen", "scores"] {
        let row = provenance_row(&md, stage);
        assert!(row.contains(" | cpu | 1 | 2.") && !row.contains("auto"), "{row}");
        assert!(row.contains(&format!(" | {} |", env!("CARGO_PKG_VERSION"))), "the difflow version: {row}");
    }
    let ddpm = provenance_row(&md, "ddpm");
    assert!(ddpm.contains("| train | steps 12, final loss "), "{ddpm}");
    let judge = provenance_row(&md, "judge");
    assert!(judge.contains("| classifier | steps 6, held-out accuracy "), "{judge}");
    assert!(provenance_row(&md, "scores").contains("| metrics | accuracy "), "{md}");
    assert!(md.contains(", device `cpu`"), "{md}");

    // The lock records the device and threads of each stage.
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(dir.path().join("difflow.lock")).unwrap()).unwrap();
    let ddpm = &lock["stages"]["ddpm"];
    assert_eq!((ddpm["device"].as_str(), ddpm["threads"].as_integer()), (Some("cpu"), Some(1)), "{lock}");

    // In headless Chromium: the page loads clean, with a provenance row per upstream stage,
    // and shows the `--set`s, the values they gave and the upstream models' numbers.
    let shown = ["--set steps=12", "steps = 12", "steps = 6", "final loss", "held-out accuracy", "let steps = 30"];
    let page = browser_check(&entry.join("report.html"), "report-provenance.png", &shown);
    assert_eq!(page["tables"], serde_json::json!([1, 5]), "the scores, then 5 upstream stages: {page}");
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
    for text in shown {
        assert_eq!(page["contains"][text], true, "`{text}` is not on the page: {page}");
    }

    // `difflow logdir` links the training runs and the sampling stage's grid (MNIST images).
    let args = [&["logdir", "p.diff"], SETS].concat();
    let (code, out, err) = difflow_real(dir.path(), &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut linked: Vec<String> =
        std::fs::read_dir(out.trim()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    linked.sort();
    assert_eq!(linked, ["ddpm", "gen", "judge"], "{out}");
}

/// Opens `html` in headless Chromium (`scripts/browser_check.py`), looking for `texts`.
fn browser_check(html: &Path, shot: &str, texts: &[&str]) -> serde_json::Value {
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(shot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/browser_check.py");
    let check = Command::new("python3").arg(script).arg(html).arg(&shot).args(texts).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    serde_json::from_slice(&check.stdout).unwrap()
}

#[test]
fn a_comment_rewrites_the_report_and_nothing_else() {
    let dir = project();
    run(dir.path(), &[]);
    let file = dir.path().join("p.diff");
    std::fs::write(&file, format!("{STUDY}# judged by a clean classifier\n")).unwrap();
    let args = [&["plan", "p.diff"], SETS].concat();
    let (_, plan, _) = difflow_real(dir.path(), &args, &[]);
    assert!(plan.contains("the pipeline's text changed"), "{plan}");
    let out = run(dir.path(), &[]);
    assert_eq!(ran(&out), ["study"], "{out}");
    let (entry, md) = report(dir.path());
    assert!(md.contains("# judged by a clean classifier"), "{md}");
    let comment = "# judged by a clean classifier";
    let page = browser_check(&entry.join("report.html"), "report-comment.png", &[comment]);
    assert_eq!(page["contains"][comment], true, "the page shows the old text: {page}");

    // An upstream entry computed again is shown again (its wall time, its device).
    let out = run(dir.path(), &["--force", "digits"]);
    assert_eq!(ran(&out), ["digits", "study"], "{out}");
}
