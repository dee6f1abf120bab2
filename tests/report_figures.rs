//! The report's figures as a reader sees them: a swept family's pictures side by side, each
//! titled by what its sweep value means; chart axes that say what they show; legends that
//! fit; a page that fits the window. Written from hand-made entries (no worker), then
//! opened in headless Chromium by `scripts/browser_check.py`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use difflow::job::{Input, Job, JobSettings};
use difflow::report::{write_report_titled, AxisTitles};
use serde_json::json;

/// A grey `width` × `height` PNG (8-bit greyscale, unfiltered rows).
fn png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut rows = Vec::new();
    for y in 0..height {
        rows.push(0);
        rows.extend((0..width).map(|x| ((x + y) * 7 % 256) as u8));
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&rows).unwrap();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

fn entry(root: &Path, name: &str, (kind, variant): (&str, &str), params: serde_json::Value) -> (String, Input) {
    let dir = root.join(name.replace(['[', ']', '=', ',', ' '], "_"));
    std::fs::create_dir_all(&dir).unwrap();
    (name.to_string(), Input { kind: kind.into(), variant: variant.into(), params, dir })
}

/// A CFG-style report: scores swept over w and `scale_shift` (so the charts need a
/// legend), and a grid plot per w.
fn cfg_report(root: &Path) -> PathBuf {
    let mut inputs = BTreeMap::new();
    let mut include = Vec::new();
    for (i, w) in ["0.0", "0.5", "1.0", "2.0", "4.0"].iter().enumerate() {
        for shift in ["false", "true"] {
            let name = format!("scores[scale={w}, scale_shift={shift}]");
            let (name, input) = entry(root, &name, ("metrics", "default"), json!({"features": {"$stage": "judge"}}));
            let fid = 10.0 - i as f64 + if shift == "true" { 0.5 } else { 0.0 };
            let metrics = json!({"fid": fid, "accuracy": 0.5 + 0.1 * i as f64, "count": 50});
            std::fs::write(input.dir.join("metrics.json"), metrics.to_string()).unwrap();
            include.push(json!({"$stage": name}));
            inputs.insert(name, input);
        }
        let (name, input) = entry(root, &format!("grids[scale={w}]"), ("plot", "grid"), json!({"count": 64}));
        std::fs::write(input.dir.join("plot.png"), png(662, 520)).unwrap();
        include.push(json!({"$stage": name}));
        inputs.insert(name, input);
    }
    let out_dir = root.join("report");
    std::fs::create_dir_all(&out_dir).unwrap();
    let job = Job {
        instance: "study".into(),
        kind: "report".into(),
        variant: "default".into(),
        params: json!({"title": "CFG", "include": include}),
        inputs,
        out_dir: out_dir.clone(),
        device: "cpu".into(),
        settings: JobSettings::default(),
    };
    let titles: AxisTitles = [("scale".to_string(), "guidance strength w".to_string())].into();
    write_report_titled(&job, None, &titles).unwrap();
    out_dir
}

#[test]
fn a_swept_family_shows_its_pictures_side_by_side_under_titled_axes() {
    let root = tempfile::tempdir().unwrap();
    let out = cfg_report(root.path());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();

    // The grids: one row, each figure titled by its w; the reading said once.
    assert_eq!(html.matches("<div class=\"sweep\">").count(), 1, "{html}");
    for w in ["0.0", "0.5", "1.0", "2.0", "4.0"] {
        let caption = format!("guidance strength w = {w}");
        assert!(html.contains(&format!(">{caption}</figcaption>")), "no `{caption}` caption");
        assert!(md.contains(&format!("| {caption} |")), "no `{caption}` column:\n{md}");
    }
    assert_eq!(html.matches("one column per class, its label above").count(), 1);
    assert!(md.contains("| ![grids\\[scale=0.0\\]](images/grids_scale_0.0__plot.png) |"), "{md}");

    // The charts say what their axes mean.
    let chart = std::fs::read_to_string(out.join("images/scores_fid_by_scale.svg")).unwrap();
    assert!(chart.contains(">guidance strength w</text>"), "{chart}");
    assert!(chart.contains(">FID (classifier features, lower is better)"), "{chart}");
    assert!(chart.contains(">scale_shift=false</text>"), "{chart}");
    let accuracy = std::fs::read_to_string(out.join("images/scores_accuracy_by_scale.svg")).unwrap();
    assert!(accuracy.contains(">accuracy (higher is better)</text>"), "{accuracy}");
}

#[test]
fn in_a_browser_legends_fit_their_charts_and_the_page_fits_the_window() {
    let root = tempfile::tempdir().unwrap();
    let out = cfg_report(root.path());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-figures.png");
    let check = Command::new("python3")
        .arg(repo.join("scripts/browser_check.py"))
        .arg(out.join("report.html"))
        .arg(&shot)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let page: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    println!("report page: {}", page["page"]);
    assert_eq!(page["problems"], json!([]), "{page}");
    // Every label of every chart (legend, titles, ticks) lies inside its chart's view box.
    assert_eq!(page["svg_text_outside"], json!([]), "{page}");
    // Five grids in one row; nothing wider than the window.
    assert_eq!(page["sweep_rows"], json!([1]), "{page}");
    assert!(page["page"]["width"].as_u64() <= page["page"]["viewport"].as_u64(), "{page}");
    assert!(page["images"].as_array().unwrap().iter().all(|i| i["width"].as_u64() > Some(0)), "{page}");
}
