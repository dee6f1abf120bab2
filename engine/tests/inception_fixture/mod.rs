//! The seeded FID-Inception weights and reference outputs of `scripts/inception_reference.py`,
//! generated once per version of the script into the target directory (95 MB per format,
//! so never committed), shared by the Inception and metrics tests.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("DIFFLOW_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs the reference script once per version of the script; returns its output folder.
/// Tests of one binary run on parallel threads: a lock makes one of them generate the
/// fixture while the others wait (a per-process staging name alone would be shared).
pub fn reference_dir() -> PathBuf {
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = GENERATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let script = repo_root().join("scripts/inception_reference.py");
    let text = std::fs::read(&script).expect("scripts/inception_reference.py");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("inception_reference-{:016x}", hasher.finish()));
    if !dir.join("reference.json").exists() {
        let staging = dir.with_extension(format!("staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let status = Command::new(python()).arg(&script).arg(&staging).status().expect(
            "run scripts/inception_reference.py (needs Python with torch, numpy, safetensors: scripts/setup.sh)",
        );
        assert!(status.success(), "scripts/inception_reference.py failed");
        let _ = std::fs::remove_dir_all(&dir);
        // Another test process may have finished first; either copy is complete.
        if std::fs::rename(&staging, &dir).is_err() {
            assert!(dir.join("reference.json").exists());
        }
    }
    dir
}
