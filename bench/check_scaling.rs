//! Benchmark: how `check` scales with the number of mistakes and of sweep instances.
//! Prints the time to load (parse, resolve, check) and render the diagnostics of
//! generated pipelines: 16,000 mistakes against 4,000 presets, a sweep of 100,000
//! instances, and a 100,000 × 100,000 product (refused). Run with
//! `cargo bench -p difflow --bench check_scaling`; the targets are under 2 s for the
//! mistakes and under 3 s for the sweep, in release.

use std::fmt::Write as _;
use std::time::Instant;

/// 4,000 groups of four mistakes: a misspelt variant, a misspelt key, a misspelt preset
/// among thousands and an undefined stage name.
fn mistakes(groups: usize) -> String {
    let mut s = String::from("use \"std/unet.diff\"\n");
    for g in 0..groups {
        let _ = write!(
            s,
            "schedule s{g} = cosin {{ steps = 10 }}\nsampler q{g} = ddim {{ stpes = 10 }}\n\
             model n{g} = unet_smal {{ }}\nsample z{g} {{ from = trian{g} }}\n"
        );
    }
    s
}

fn sweep_values(n: usize) -> String {
    (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// Median and maximum of `runs` loads (and renders) of `text`, in seconds, with the
/// number of diagnostics and instances of the last run.
fn time(text: &str, runs: usize) -> (f64, f64, usize, usize) {
    let mut times = Vec::new();
    let (mut diags, mut instances) = (0, 0);
    for _ in 0..runs {
        let start = Instant::now();
        let loaded = difflow::lang::load_source("bench.diff", text, &[]);
        let shown = difflow::diagnostics::render_plain(&loaded.diagnostics, &loaded.sources);
        times.push(start.elapsed().as_secs_f64());
        assert!(shown.len() < 10_000_000);
        diags = loaded.diagnostics.len();
        instances = loaded.pipeline.map_or(0, |p| p.instances.len());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times[runs / 2], times[runs - 1], diags, instances)
}

fn main() {
    let cases = [
        ("16,000 mistakes", mistakes(4000)),
        ("100,000-instance sweep", format!("dataset d = toy {{ count = sweep({}) }}\n", sweep_values(100_000))),
        (
            "100,000 × 100,000 product",
            format!("dataset d = toy {{ count = sweep({0}), seed = sweep({0}) }}\n", sweep_values(100_000)),
        ),
    ];
    for (name, text) in &cases {
        let (median, max, diags, instances) = time(text, 3);
        println!(
            "{name}: {} KiB of source, {diags} diagnostics shown, {instances} instances: median {median:.2} s, max {max:.2} s",
            text.len() / 1024
        );
    }
}
