//! `pip install .` end to end: the project venv's pip builds the wheel (pyproject.toml,
//! python/backend) from the release build, a fresh environment installs it, and from there
//! the installed `difflow` checks and runs a small copy of pipelines/quickstart.diff with
//! the installed worker (no LD_LIBRARY_PATH, no target/ on PATH) and Python reads the run
//! through the installed `difflow` package, docs/python.md's code blocks included.
//!
//! The fresh environment is a venv whose site-packages has the project venv's torch (and
//! its nvidia libraries) as symbolic links, so that it holds torch where pip would have
//! put it (the worker's rpath looks there) without a second 4.7 GB download, and a .pth
//! file for the project venv's other packages (safetensors, numpy).

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use cli_support::{repo, venv};

/// A command without what this test's own environment would lend the installed binaries
/// or the build: cargo's per-package variables, a library path, another worker.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let cargo_own = name.starts_with("CARGO_")
            && !["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_JOBS"].contains(&name.as_str());
        if cargo_own || ["LD_LIBRARY_PATH", "DIFFLOW_WORKER", "PYTHONPATH", "VIRTUAL_ENV"].contains(&name.as_str()) {
            cmd.env_remove(&name);
        }
    }
    cmd.env("PIP_DISABLE_PIP_VERSION_CHECK", "1").env("PIP_NO_INPUT", "1");
    cmd
}

fn check(out: Output, what: &str) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout.into_owned()
}

/// The project venv's pip building a wheel of the repository into `out`.
fn pip_wheel(out: &Path, isolated: bool) -> Command {
    let mut cmd = command(venv().join("bin/python"));
    cmd.args(["-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--no-index", "-w"]).arg(out).arg(repo());
    if !isolated {
        cmd.arg("--no-build-isolation");
    }
    cmd
}

struct Installed {
    /// The fresh environment.
    env: PathBuf,
    /// Its site-packages.
    site: PathBuf,
    /// A project folder with `pipelines/quickstart.diff` (small) after one run.
    project: PathBuf,
}

impl Installed {
    fn bin(&self, name: &str) -> PathBuf {
        self.env.join("bin").join(name)
    }

    /// A command run from the fresh environment only: its bin/ and the system's on PATH.
    fn run(&self, program: &str) -> Command {
        let mut cmd = command(self.bin(program));
        cmd.env("PATH", format!("{}:/usr/bin:/bin", self.env.join("bin").display()))
            .env("XDG_CACHE_HOME", self.project.join("xdg-cache"))
            .current_dir(&self.project);
        cmd
    }
}

/// Built, installed and run once for all tests of this file.
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pip_install");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();

        let started = Instant::now();
        check(pip_wheel(&base.join("wheels"), false).output().unwrap(), "pip wheel");
        eprintln!("[pip_install] wheel built in {:.1} s", started.elapsed().as_secs_f64());
        let wheel = std::fs::read_dir(base.join("wheels")).unwrap().flatten().map(|e| e.path()).next().unwrap();

        let env = base.join("fresh");
        check(
            command(venv().join("bin/python")).args(["-m", "venv", "--without-pip"]).arg(&env).output().unwrap(),
            "venv",
        );
        let site = purelib(&env.join("bin/python"));
        share_torch(&venv(), &site);

        let started = Instant::now();
        let mut install = command(venv().join("bin/python"));
        install.args(["-m", "pip", "--python"]).arg(env.join("bin/python"));
        check(install.args(["install", "--no-index", "--no-cache-dir"]).arg(&wheel).output().unwrap(), "pip install");
        eprintln!("[pip_install] installed in {:.1} s", started.elapsed().as_secs_f64());

        let project = base.join("project");
        std::fs::create_dir_all(project.join("pipelines")).unwrap();
        std::fs::write(project.join("pipelines/quickstart.diff"), small_quickstart()).unwrap();
        std::fs::write(project.join("pipelines/difflow.toml"), "threads = 1\n").unwrap();
        let installed = Installed { env, site, project };
        check(installed.run("difflow").args(["check", "pipelines/quickstart.diff"]).output().unwrap(), "difflow check");
        check(installed.run("difflow").args(["run", "pipelines/quickstart.diff"]).output().unwrap(), "difflow run");
        installed
    })
}

/// The site-packages folder of the environment of `python`.
/// The folder of the shared libpython of `python`'s base interpreter.
fn base_libpython_dir(python: &Path) -> String {
    let out = command(python).args(["-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"]).output();
    check(out.unwrap(), "sysconfig").trim().to_string()
}

fn purelib(python: &Path) -> PathBuf {
    let out = command(python).args(["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).output().unwrap();
    PathBuf::from(check(out, "sysconfig").trim())
}

/// `site` gets the project venv's torch, its metadata and nvidia libraries as links, and
/// a .pth file for the rest of the venv's packages.
fn share_torch(venv: &Path, site: &Path) {
    let venv_site = purelib(&venv.join("bin/python"));
    for entry in std::fs::read_dir(&venv_site).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let torch = name == "torch" || name == "nvidia" || (name.starts_with("torch-") && name.ends_with(".dist-info"));
        if torch {
            std::os::unix::fs::symlink(entry.path(), site.join(&name)).unwrap();
        }
    }
    std::fs::write(site.join("project_venv.pth"), format!("{}\n", venv_site.display())).unwrap();
}

/// pipelines/quickstart.diff with fewer points and steps: the same stages, seconds to run.
fn small_quickstart() -> String {
    let mut text = std::fs::read_to_string(repo().join("pipelines/quickstart.diff")).unwrap();
    for (from, to) in [
        ("count = 4_000", "count = 256"),
        ("steps    = 1_000", "steps    = 40"),
        ("warmup   = 50", "warmup   = 4"),
        ("count   = 1_000", "count   = 64"),
    ] {
        assert!(text.contains(from), "pipelines/quickstart.diff no longer says `{from}`: update this test");
        text = text.replace(from, to);
    }
    text
}

/// The RUNPATH entries of an ELF file, from `readelf -d`.
fn runpath(file: &Path) -> Vec<String> {
    let out = check(Command::new("readelf").arg("-d").arg(file).output().unwrap(), "readelf");
    let line = out.lines().find(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"));
    let line = line.unwrap_or_else(|| panic!("{} has no RUNPATH:\n{out}", file.display()));
    let list = line.split_once('[').and_then(|(_, rest)| rest.rsplit_once(']')).map(|(list, _)| list).unwrap();
    list.split(':').map(str::to_string).collect()
}

#[test]
fn the_installed_worker_and_shim_find_libtorch_by_paths_relative_to_themselves() {
    let inst = installed();
    let site_from_env = inst.site.strip_prefix(&inst.env).unwrap().display().to_string();
    // Every entry relative, but for the folder of the base interpreter's libpython, which
    // the worker embeds for Python models: a venv never holds (or moves) its base Python.
    let libpython = base_libpython_dir(&inst.env.join("bin/python"));
    let relative = |p: &String| p.starts_with("$ORIGIN/") || *p == libpython;
    let worker = runpath(&inst.bin("difflow-worker"));
    assert!(worker.iter().all(relative), "an rpath entry is not relative: {worker:?}");
    assert!(worker.contains(&format!("$ORIGIN/../{site_from_env}/torch/lib")), "{worker:?}");
    // The repository's own build too: target/release/ and deps/ both reach the venv's torch.
    let built = PathBuf::from(env!("CARGO_BIN_EXE_difflow")).with_file_name("difflow-worker");
    assert!(runpath(&built).iter().all(relative), "{:?}", runpath(&built));

    // The NCCL shim, when this torch has CUDA, lies in the environment's lib/ and loads
    // there with libtorch found relative to it (a GPU is not needed to load it).
    let shim = inst.env.join("lib/libdifflow_nccl.so");
    let out = inst.run("difflow-worker").args(["check-nccl", "--device", "cuda:0"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let loads = stdout.lines().find(|l| l.contains("\"nccl_shim_loads\"")).unwrap_or_else(|| panic!("{stdout}"));
    let loads: serde_json::Value = serde_json::from_str(loads).unwrap();
    if shim.exists() {
        assert!(runpath(&shim).iter().all(|p| p.starts_with("$ORIGIN/")), "{:?}", runpath(&shim));
        assert_eq!(loads["note"], format!("loaded {}", shim.display()).as_str(), "{loads}");
    } else {
        assert_eq!(loads["ok"], false, "a shim loaded, yet the wheel installed none: {loads}");
    }
}

/// Runs `code` with the fresh environment's Python in the project folder.
fn python(code: &str) -> String {
    let inst = installed();
    check(inst.run("python").args(["-c", code]).output().unwrap(), "python")
}

#[test]
fn python_reads_numbers_params_and_tensors_of_the_installed_difflows_run() {
    let out = python(
        r#"
import math, difflow
assert difflow.__file__.startswith(__import__("sysconfig").get_path("purelib")), difflow.__file__
fit = difflow.results("pipelines/quickstart.diff", "fit")
assert fit.params["steps"] == 40, fit.params
assert fit.numbers and all(math.isfinite(v) for v in fit.numbers.values()), fit.numbers
fast = difflow.results("pipelines/quickstart.diff", "fast")
points = fast.tensors["samples"]["points"]
assert tuple(points.shape) == (64, 2), points.shape
assert fast.files["samples.safetensors"].is_file()
lock = difflow.lock("pipelines/quickstart.diff")
assert lock["pipeline"] == "quickstart.diff" and lock["stages"]["fast"]["key"] == fast.key, lock
print(sorted(fit.numbers))
"#,
    );
    assert!(out.starts_with('['), "{out}");
}

/// The ```python blocks of a markdown file, in order, as one program.
fn python_blocks(markdown: &str) -> String {
    let mut code = String::new();
    let mut inside = false;
    for line in markdown.lines() {
        match (inside, line.trim_end()) {
            (false, "```python") => inside = true,
            (true, "```") => inside = false,
            (true, text) => {
                code.push_str(text);
                code.push('\n');
            }
            _ => {}
        }
    }
    code
}

#[test]
fn the_code_blocks_of_docs_python_md_run_against_a_run_of_the_quickstart() {
    let doc = std::fs::read_to_string(repo().join("docs/python.md")).unwrap();
    let code = python_blocks(&doc);
    assert!(code.contains("difflow.results(") && code.contains("difflow.lock("), "docs/python.md lost its examples");
    python(&code);
}

#[test]
fn pip_refuses_a_torch_it_cannot_build_against_naming_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    // A torch 2.12 that Python's metadata finds first; no cargo must run.
    let fake = dir.path().join("fake/torch-2.12.0.dist-info");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("METADATA"), "Metadata-Version: 2.1\nName: torch\nVersion: 2.12.0\n").unwrap();
    let out = pip_wheel(&dir.path().join("out"), false).env("PYTHONPATH", dir.path().join("fake")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("difflow cannot be built by pip against torch 2.12.0"), "{text}");
    assert!(text.contains("Supported: torch 2.13") && text.contains("torch 2.11 (the GPU kit's"), "{text}");
    assert!(!text.contains("cargo build"), "cargo ran:\n{text}");
    let wheels = std::fs::read_dir(dir.path().join("out")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(wheels, 0, "a wheel was built:\n{text}");
}

#[test]
fn an_isolated_pip_build_says_to_build_without_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let out = pip_wheel(&dir.path().join("out"), true).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("torch is not visible to this build"), "{text}");
    assert!(text.contains("`pip install . --no-build-isolation`"), "{text}");
}
