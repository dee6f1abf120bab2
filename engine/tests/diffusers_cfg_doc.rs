//! The class-conditional sampling snippet of docs/diffusers.md, read from the page and run
//! as written by the venv's diffusers on a class-conditional UNet that `difflow export`
//! wrote: labels and the null class reach the exported class table.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{difflow_binary, mnist_project, python, repo_root};

/// The Python block of docs/diffusers.md that samples with `class_labels`.
fn documented_snippet() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/diffusers.md")).unwrap();
    let blocks: Vec<&str> = doc.split("```python\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    let with_labels: Vec<&&str> = blocks.iter().filter(|b| b.contains("class_labels")).collect();
    assert_eq!(with_labels.len(), 1, "docs/diffusers.md has one Python block that passes class_labels");
    with_labels[0].to_string()
}

fn difflow(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(difflow_binary()).current_dir(dir).args(args).env("NO_COLOR", "1").output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "difflow {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    out
}

#[test]
fn the_documented_guidance_snippet_samples_an_exported_class_conditional_unet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    mnist_project(
        dir,
        2,
        16,
        "schedule lin = linear { steps = 50 }\n\
         model net = unet { channels = 32, mults = [1, 2], res_blocks = 1, attention = [8], dropout = 0, classes = 10 }\n\
         train ddpm { model = net, data = digits, schedule = lin, steps = 2, batch = 8, uncond_p = 0.1 }\n",
    );
    difflow(dir, &["run", "p.diff", "--device", "cpu"]);
    difflow(dir, &["export", "p.diff", "ddpm", "--format", "diffusers", "--out", "exported"]);
    let script = format!(
        "{}\nassert null == 10, null\nassert tuple(images.shape) == (4, 1, 16, 16), images.shape\n\
         assert bool(torch.isfinite(images).all())\n",
        documented_snippet()
    );
    let out =
        Command::new(python()).current_dir(dir).args(["-c", &script]).env("HF_HUB_OFFLINE", "1").output().unwrap();
    assert!(out.status.success(), "the snippet failed:\n{}", String::from_utf8_lossy(&out.stderr));
}
