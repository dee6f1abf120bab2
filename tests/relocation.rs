//! A built checkout moved to another folder still runs: `difflow` finds the worker beside
//! itself, and the worker finds libtorch through rpaths relative to itself (`$ORIGIN`,
//! engine/build.rs), which in turn finds the CUDA libraries of its wheel relative to
//! itself. So the binaries and the parts of the Python environment they load (torch's
//! `lib/` and the `nvidia/` wheels beside it) may move together, keeping their relative
//! places; nothing else of the environment is read and no absolute path is baked in.
//!
//! The copy is made of hard links (the environment is gigabytes), laid out as the build
//! saw it relative to the binaries, then renamed; the quickstart runs there, at a tiny
//! size, and the worker must load libtorch from the moved copy.

mod cli_support;

use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The quickstart's sizes and the tiny ones the test runs with.
const TINY: [(&str, &str); 6] = [
    ("count = 4_000", "count = 64"),
    ("steps    = 1_000", "steps    = 20"),
    ("warmup   = 50", "warmup   = 5"),
    ("batch    = 256", "batch    = 32"),
    ("count   = 1_000", "count   = 16"),
    ("sampler = ddpm { steps = 100 }", "sampler = ddpm { steps = 10 }"),
];

/// The folder of each library `binary` loads whose name starts with `prefix`, as the
/// dynamic loader resolves it (`ldd`).
fn loaded_from(binary: &Path, prefix: &str) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter(|l| l.trim_start().starts_with(prefix))
        // `NAME => PATH (0xADDRESS)`, where PATH may hold spaces.
        .filter_map(|l| Some(PathBuf::from(l.split_once("=>")?.1.trim().rsplit_once(" (")?.0)))
        .map(|p| p.parent().expect("a library lies in a folder").to_path_buf())
        .collect()
}

/// `path` less `base`, which must be one of its ancestors.
fn below(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base).unwrap_or_else(|_| panic!("{} is not below {}", path.display(), base.display())).into()
}

/// The deepest folder both paths lie in.
fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    let shared: Vec<Component> =
        a.components().zip(b.components()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect();
    shared.iter().collect()
}

/// Hard-links every file of `from` into `to`, recreating its folders and symbolic links.
fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            link_tree(&source, &target);
        } else {
            std::fs::hard_link(&source, &target)
                .unwrap_or_else(|e| panic!("cannot hard-link {} (same file system?): {e}", source.display()));
        }
    }
}

#[test]
fn a_moved_copy_of_the_built_checkout_runs_the_quickstart() {
    let worker = cli_support::real_worker().canonicalize().unwrap();
    let bin_dir = worker.parent().unwrap().to_path_buf();
    let torch_lib = loaded_from(&worker, "libtorch_cpu.so").pop().expect("the worker links libtorch_cpu");
    let torch_lib = torch_lib.canonicalize().unwrap();
    // site-packages: torch/lib's parent's parent.
    let site_packages = torch_lib.parent().and_then(Path::parent).unwrap().to_path_buf();
    let base = common_ancestor(&bin_dir, &site_packages);

    // Under target/, on the file system of the build (hard links cannot cross file systems).
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let first = scratch.path().join("first");
    let copy_bin = first.join(below(&bin_dir, &base));
    std::fs::create_dir_all(&copy_bin).unwrap();
    for exe in [PathBuf::from(env!("CARGO_BIN_EXE_difflow")), worker.clone()] {
        std::fs::hard_link(&exe, copy_bin.join(exe.file_name().unwrap())).unwrap();
    }
    let copy_site = first.join(below(&site_packages, &base));
    link_tree(&torch_lib, &copy_site.join("torch/lib"));
    if site_packages.join("nvidia").is_dir() {
        link_tree(&site_packages.join("nvidia"), &copy_site.join("nvidia"));
    }

    // Move it: nothing may still point at `first`.
    let moved = scratch.path().join("moved elsewhere");
    std::fs::rename(&first, &moved).unwrap();
    let moved_bin = moved.join(below(&bin_dir, &base));
    let moved_worker = moved_bin.join(worker.file_name().unwrap());
    let loaded = loaded_from(&moved_worker, "libtorch_cpu.so");
    assert_eq!(loaded.len(), 1, "ldd finds libtorch_cpu once for {}", moved_worker.display());
    assert_eq!(loaded[0].canonicalize().unwrap(), moved.join(below(&torch_lib, &base)).canonicalize().unwrap());

    let project = moved.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("pipelines/quickstart.diff")).unwrap();
    for (from, to) in TINY {
        assert!(text.contains(from), "pipelines/quickstart.diff no longer says `{from}`");
        text = text.replace(from, to);
    }
    std::fs::write(project.join("quickstart.diff"), text).unwrap();
    let out = Command::new(moved_bin.join("difflow"))
        .args(["run", "quickstart.diff", "--device", "cpu"])
        .current_dir(&project)
        // Only what a user's shell has: no worker, library or environment path of the build.
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &project)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    let lock = std::fs::read_to_string(project.join("difflow.lock")).unwrap();
    assert!(lock.contains("look"), "the plot stage is in the lock file:\n{lock}");
}
