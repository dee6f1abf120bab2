//! Benchmark: load (parse, resolve, check) a generated pipeline of 2,000 stages and print
//! the time. Run with `cargo bench -p difflow --bench check_2000`. The target is well under
//! 200 ms in release.

use std::fmt::Write as _;
use std::time::Instant;

/// 400 groups of five stages (dataset, train, sample, metrics, plot) over shared configs,
/// a report collecting every metrics stage, and a swept group so families are exercised.
fn pipeline(groups: usize) -> String {
    let mut s = String::from("use \"std/unet.diff\"\nuse \"std/samplers.diff\"\n\nlet T = 1000\n");
    s.push_str("dataset test = mnist { path = \"data/mnist\", split = \"test\" }\n");
    s.push_str("schedule cos = cosine { steps = T }\n\n");
    for g in 0..groups {
        let _ = write!(
            s,
            "dataset d{g} = mnist {{ path = \"data/mnist\", limit = {limit} }}\n\
             train t{g} {{\n    model    = unet_small {{ classes = 10, dropout = 0.{drop} }}\n    data     = d{g}\n    schedule = cos\n    uncond_p = 0.1\n    steps    = 1_000\n    lr       = 2e-4\n}}\n\
             sample s{g} {{ from = t{g}, sampler = ddim {{ steps = 50, eta = 0.0 }}, guidance = cfg {{ scale = 1.5 }}, count = 1000 }}\n\
             metrics m{g} {{ samples = s{g}, reference = test, measure = [\"fid\", \"is\"] }}\n\
             plot p{g} = grid {{ of = s{g} }}\n\n",
            limit = 1000 + g,
            drop = g % 9 + 1,
        );
    }
    let all: Vec<String> = (0..groups).map(|g| format!("m{g}")).collect();
    let _ = writeln!(s, "report all {{ include = [{}] }}", all.join(", "));
    s
}

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
