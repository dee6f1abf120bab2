//! Benchmark: keystroke-to-diagnostics latency of `difflow lsp`, measured as an editor sees
//! it: from writing a `didChange` (one character typed, or a typo) to reading the
//! `publishDiagnostics` for that version, over stdio against the real binary. Small
//! (the quickstart pipeline), 500-stage and 2,000-stage files. When `nvim` is installed,
//! the same keystrokes are timed inside headless Neovim too, from the buffer edit to
//! Neovim's diagnostic list (`bench/lsp_neovim_latency.lua`). Run with
//! `cargo bench -p difflow --bench lsp_latency`.

mod generate;

#[path = "../tests/lsp_support/mod.rs"]
mod lsp_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use lsp_support::{url, Client};
use serde_json::{json, Value};

const KEYSTROKES: usize = 30;

fn main() {
    let quickstart = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/quickstart.diff"))
        .expect("pipelines/quickstart.diff");
    let cases = [
        ("small (quickstart.diff)", quickstart),
        ("500 stages", generate::pipeline(100)),
        ("2,000 stages", generate::pipeline(400)),
    ];
    for (name, text) in cases {
        measure(name, &text);
    }
}

fn measure(name: &str, text: &str) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("bench.diff");
    std::fs::write(&file, text).expect("writable");
    let uri = url(&file);
    let mut c = Client::initialized(dir.path());
    let open = Instant::now();
    c.open(&uri, text);
    let first = c.diagnostics(&uri);
    let open_ms = open.elapsed().as_secs_f64() * 1000.0;

    // Type a digit after the first `= ` number and delete it again; then a typo in a key.
    let at = text.find("steps").expect("a steps key");
    let line = text[..at].matches('\n').count();
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut valid = Vec::new();
    let mut typo = Vec::new();
    for i in 0..KEYSTROKES {
        let version = 2 + 2 * i as i32;
        let start = json!({ "line": line, "character": column + 1 });
        let end = json!({ "line": line, "character": column + 2 });
        // `steps` → `sbeps` (one unknown key) and back.
        typo.push(change(&mut c, &uri, version, json!({ "start": start, "end": end }), "b"));
        valid.push(change(&mut c, &uri, version + 1, json!({ "start": start, "end": end }), "t"));
    }
    let (typo_ms, typo_count) = summary(&typo);
    let (valid_ms, valid_count) = summary(&valid);
    assert_eq!(valid_count, first.len(), "the restored text checks as at first");
    println!(
        "lsp_latency {name}: {} KiB, open→diagnostics {open_ms:.1} ms; keystroke→diagnostics over {KEYSTROKES} keystrokes \
         (median / p90 / max): typo {typo_ms} ({typo_count} diagnostic), fix {valid_ms} ({valid_count} diagnostics)",
        text.len() / 1024,
    );
    drop(c);
    if let Some(line) = in_neovim(&file, dir.path()) {
        println!("lsp_latency {name} in Neovim: {line}");
    }
}

/// The same keystrokes typed in headless Neovim; `None` without `nvim`.
fn in_neovim(file: &Path, dir: &Path) -> Option<String> {
    let nvim = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("nvim")).find(|p| p.is_file()))?;
    let out = dir.join("neovim.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/lsp_neovim_latency.lua");
    let status = Command::new(nvim)
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c", &format!("luafile {script}")])
        .env("DIFFLOW_BIN", env!("CARGO_BIN_EXE_difflow"))
        .env("PIPELINE", file)
        .env("LSP_OUT", &out)
        .env("KEYSTROKES", KEYSTROKES.to_string())
        .env("XDG_STATE_HOME", dir)
        .env("XDG_CACHE_HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return Some(format!("nvim failed ({status})"));
    }
    let seen: Value = serde_json::from_str(&std::fs::read_to_string(out).ok()?).ok()?;
    let times = |k: &str| -> Vec<(f64, usize)> {
        seen[k].as_array().map(|a| a.iter().filter_map(Value::as_f64).map(|ms| (ms, 0)).collect()).unwrap_or_default()
    };
    Some(format!("typo {}, fix {} (median / p90 / max)", summary(&times("typo")).0, summary(&times("fix")).0))
}

/// Send one change; milliseconds until its diagnostics arrive, and how many there were.
fn change(c: &mut Client, uri: &str, version: i32, range: Value, text: &str) -> (f64, usize) {
    let start = Instant::now();
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "range": range, "text": text }] }),
    );
    let msg = c.wait_for(|m| m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == version);
    (start.elapsed().as_secs_f64() * 1000.0, msg["params"]["diagnostics"].as_array().map_or(0, Vec::len))
}

fn summary(samples: &[(f64, usize)]) -> (String, usize) {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.0).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (format!("{:.1} / {:.1} / {:.1} ms", at(0.5), at(0.9), at(1.0)), samples.last().map_or(0, |s| s.1))
}
