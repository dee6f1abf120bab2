//! `seed = replicate(N)` end to end with the real worker at a tiny size: three replicates
//! of a sampler sweep, scored; the report pools them into mean ± 95 % CI per setting with
//! error bars on the chart, the lock file and `show --json` carry the same summaries, and
//! headless Chromium draws the report.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::{difflow_real, ran};
use difflow::cache::LockFile;

fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    difflow_real(dir, args, &[])
}

fn pipeline(mnist: &Path) -> String {
    format!(
        r#"
dataset digits = mnist {{ path = "{}", split = "train", size = 8, limit = 256 }}
schedule cos = cosine {{ steps = 100 }}
model net = unet {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [], classes = 10, dropout = 0.0 }}
train ddpm {{ model = net, data = digits, schedule = cos, steps = 8, batch = 16, lr = 1e-3 }}
sample gen {{ from = ddpm, sampler = ddim {{ steps = sweep(2, 4) }}, count = 20, seed = replicate(3) }}
classifier judge {{ model = encoder {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [] }}, data = digits, steps = 10, batch = 16 }}
metrics scores {{ samples = gen, reference = digits, features = judge, measure = ["fid", "accuracy"] }}
report study {{ include = [scores] }}
"#,
        mnist.display()
    )
}

#[test]
fn replicates_are_reported_as_mean_and_interval_everywhere() {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    assert!(mnist.join("train-images-idx3-ubyte.gz").exists(), "{} is incomplete: run setup first", mnist.display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.diff"), pipeline(&mnist)).unwrap();
    let (code, out, err) = difflow(dir.path(), &["run", "p.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let scored: Vec<String> = ran(&out).into_iter().filter(|n| n.starts_with("scores")).collect();
    assert_eq!(scored.len(), 6, "{out}");
    assert!(scored.contains(&"scores[steps=4,replicate=3]".to_string()), "{out}");

    // The lock: each setting's summary agrees with its replicates' own metrics.
    let lock = LockFile::read(&dir.path().join("difflow.lock"));
    assert_eq!(lock.replicates.keys().filter(|k| k.starts_with("scores")).count(), 2, "{:?}", lock.replicates);
    let setting = &lock.replicates["scores[steps=2]"];
    let fids: Vec<f64> = setting.instances.iter().map(|n| lock.stages[n].metrics["fid"]).collect();
    assert_eq!(fids.len(), 3);
    let fid = &setting.metrics["fid"];
    let mean = fids.iter().sum::<f64>() / 3.0;
    let sd = (fids.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!((fid.mean - mean).abs() < 1e-9 * mean.abs().max(1.0), "{fid:?} against {fids:?}");
    // t₀.₉₇₅ with 2 degrees of freedom.
    assert!((fid.ci95.unwrap() - 4.302_652_729_749_46 * sd / 3f64.sqrt()).abs() < 1e-9, "{fid:?}");
    assert!(fid.ci95.unwrap() > 0.0, "three seeds gave the same FID: {fids:?}");

    // `show --json`: a replicate carries its setting's summary.
    let (code, json, err) = difflow(dir.path(), &["show", "p.diff", "scores[steps=2,replicate=1]", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["replicates"]["setting"], "scores[steps=2]", "{json}");
    assert_eq!(v["replicates"]["n"], 3, "{json}");
    assert_eq!(v["replicates"]["metrics"]["fid"]["mean"].as_f64(), Some(fid.mean), "{json}");
    assert_eq!(v["replicates"]["metrics"]["fid"]["ci95"].as_f64(), fid.ci95, "{json}");

    // The report: one row per setting with n and mean ± CI, charts of means with error bars.
    let entry = dir.path().join(".difflow/cache").join(&lock.stages["study"].key);
    let md = std::fs::read_to_string(entry.join("report.md")).unwrap();
    assert!(md.contains("| setting | steps | n | accuracy | count | fid |"), "{md}");
    let row = md.lines().find(|l| l.starts_with("| `scores[steps=2]` | 2 | 3 | ")).unwrap_or_else(|| panic!("{md}"));
    assert!(row.matches(" ± ").count() == 2 && row.contains(" | 20 | "), "accuracy and fid, not count: {row}");
    assert!(
        row.contains(&format!(
            "{} ± {}",
            difflow::report::metric_text(fid.mean),
            difflow::report::metric_text(fid.ci95.unwrap())
        )),
        "{row}"
    );
    assert!(md.contains("95 % confidence interval"), "{md}");
    assert!(!md.contains("_by_replicate") && !md.contains("against replicate"), "the replicate is no axis: {md}");
    let chart = std::fs::read_to_string(entry.join("images/scores_fid_by_steps.svg")).unwrap();
    assert_eq!(chart.matches("class=\"error-bar\"").count(), 2, "{chart}");
    let html = std::fs::read_to_string(entry.join("report.html")).unwrap();
    assert!(html.contains("class=\"error-bar\"") && html.contains(" ± "), "no intervals in report.html");

    let fid_shown =
        format!("{} ± {}", difflow::report::metric_text(fid.mean), difflow::report::metric_text(fid.ci95.unwrap()));
    browser_check(&entry.join("report.html"), &fid_shown, html.matches("class=\"error-bar\"").count());
}

/// In headless Chromium: the charts are drawn with their `bars` error bars, the table has a
/// row per setting with `fid_shown` (mean ± interval) in it, and the page logs no error.
fn browser_check(report: &Path, fid_shown: &str, bars: usize) {
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("replicates-report.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/browser_check.py");
    let check = Command::new("python3").arg(script).arg(report).arg(&shot).arg(fid_shown).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let page: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(page["contains"][fid_shown], true, "{page}");
    // Every bar of the page's charts is drawn, at least one per setting on the FID chart.
    assert!(bars >= 2 && page["error_bars"].as_u64() == Some(bars as u64), "{bars} bars in the file: {page}");
    let svgs = page["svgs"].as_array().unwrap();
    assert_eq!(svgs.len(), 2, "fid and accuracy against steps: {page}");
    for svg in svgs {
        assert!(svg["width"].as_f64().unwrap() > 0.0 && svg["height"].as_f64().unwrap() > 0.0, "{svg}");
    }
    let tables: Vec<u64> = page["tables"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
    assert_eq!(tables.first(), Some(&2), "one row per setting: {page}");
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
}
