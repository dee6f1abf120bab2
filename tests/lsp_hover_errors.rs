//! Hover on a schedule or a model while the file has errors: the figures of a declaration
//! that resolves are shown all the same; one with errors of its own says why there are none.

mod lsp_support;

use lsp_support::{position_of, url, Client};
use serde_json::json;

/// A typo in the sampler of `gen`, and two declarations with errors of their own.
const PIPELINE: &str = r#"use "std/unet.diff"
dataset digits = mnist { path = "data/mnist", split = "train" }
schedule cos = cosine { steps = 500 }
schedule broken = cosine { stpes = 500 }
model net = unet_small { classes = 10 }
model odd = unet_small { clases = 10 }
train ddpm { model = net, data = digits, schedule = cos, uncond_p = 0.1, steps = 100 }
sample gen { from = ddpm, sampler = ddim { stpes = 10 }, count = 16 }
"#;

/// A stand-in for `difflow-worker` that answers a `describe` job as the real one does.
const WORKER: &str = "#!/bin/sh\necho '{\"params\": 1063905, \"levels\": []}'\n";

fn hover(c: &mut Client, uri: &str, needle: &str) -> String {
    let r = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": position_of(PIPELINE, needle, 1) }),
    );
    r["result"]["contents"]["value"].as_str().unwrap_or_else(|| panic!("no hover at {needle:?}: {r}")).to_string()
}

#[test]
fn hover_shows_the_figures_of_declarations_that_resolve_in_a_file_with_errors() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("worker.sh");
    std::fs::write(&worker, WORKER).unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Client::initialized_with(dir.path(), &[("DIFFLOW_WORKER", &worker)]);
    let file = dir.path().join("p.diff");
    std::fs::write(&file, PIPELINE).unwrap();
    let uri = url(&file);
    c.open(&uri, PIPELINE);
    assert_eq!(c.diagnostics(&uri).len(), 3, "the file has errors");

    let wanted: [(&str, &str); 4] = [
        ("cos =", "T = 500 · ᾱ_T = "),
        ("broken =", "T and ᾱ_T unavailable: this declaration has errors"),
        ("net =", "1,063,905 parameters"),
        ("odd =", "parameter count unavailable: this declaration has errors"),
    ];
    for (needle, part) in wanted {
        let text = hover(&mut c, &uri, needle);
        assert!(text.contains(part), "{part:?} is not in the hover at {needle:?}: {text}");
    }
}
