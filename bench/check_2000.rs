//! Benchmark: load (parse, resolve, check) a generated pipeline of 2,000 stages and print
//! the time. Run with `cargo bench -p difflow --bench check_2000`. The target is well under
//! 200 ms in release.

use std::time::Instant;

mod generate;

use generate::pipeline;

fn main() {
    let groups = 400;
    let text = pipeline(groups);
    let mut times = Vec::new();
    let mut instances = 0;
    for _ in 0..7 {
        let start = Instant::now();
        let loaded = difflow::lang::load_source("bench.diff", &text, &[]);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(loaded.diagnostics.is_empty(), "the generated pipeline must check clean");
        instances = loaded.pipeline.map(|p| p.instances.len()).unwrap_or(0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut parse: Vec<f64> = (0..7).map(|_| parse_only(&text)).collect();
    parse.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("parse alone: median {:.1} ms", parse[3]);
    println!(
        "check_2000: {instances} stage instances, {} KiB of source: load (parse + resolve + check) median {:.1} ms, min {:.1} ms, max {:.1} ms",
        text.len() / 1024,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

fn parse_only(text: &str) -> f64 {
    let start = Instant::now();
    let _ = difflow::syntax::parse(0, text).expect("parses");
    start.elapsed().as_secs_f64() * 1000.0
}
