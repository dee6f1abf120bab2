//! The generated pipeline the benchmarks load: `groups` groups of five stages.

use std::fmt::Write as _;

/// Groups of five stages (dataset, train, sample, metrics, plot) over shared configs,
/// a report collecting every metrics stage, and a swept group so families are exercised.
pub fn pipeline(groups: usize) -> String {
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
