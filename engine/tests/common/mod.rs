//! Helpers shared by the engine's tests: jobs built as the front end builds them (the
//! schema's defaults filled in), and the `difflow` binary beside the worker.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use difflow_core::job::{Input, Job, JobSettings};
use serde_json::{json, Value};

/// The job of stage `instance` (`kind` `variant`) on the CPU, its `params` completed with
/// the schema's defaults, writing into `out`.
pub fn stage_job(
    instance: &str,
    (kind, variant): (&str, &str),
    params: &Value,
    inputs: impl IntoIterator<Item = (String, Input)>,
    out: &Path,
) -> Job {
    Job {
        instance: instance.into(),
        kind: kind.into(),
        variant: variant.into(),
        params: difflow_core::schema::with_defaults(kind, variant, params),
        inputs: inputs.into_iter().collect(),
        out_dir: out.to_path_buf(),
        device: "cpu".into(),
        settings: JobSettings::default(),
    }
}

/// An upstream entry in `dir` of a `kind` `variant` stage (its parameters left out).
pub fn input(kind: &str, variant: &str, dir: &Path) -> Input {
    Input { kind: kind.into(), variant: variant.into(), params: json!({}), dir: dir.to_path_buf() }
}

/// `target/<profile>`, where this test's executable (in `deps/`) and the binaries live.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The `difflow` binary, built here if needed (`cargo test -p difflow-engine` builds only
/// the worker), with the worker beside it.
pub fn difflow_binary() -> PathBuf {
    let profile = bin_dir().file_name().unwrap().to_string_lossy().into_owned();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build.current_dir(repo).args(["build", "-p", "difflow", "--bin", "difflow"]);
    if profile == "release" {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo to build the difflow binary");
    let path = bin_dir().join("difflow");
    // A tree that others are editing may not build this minute; an existing binary will do.
    assert!(status.success() || path.exists(), "building the difflow binary failed");
    assert!(bin_dir().join("difflow-worker").exists(), "difflow-worker is not built beside {}", path.display());
    path
}
