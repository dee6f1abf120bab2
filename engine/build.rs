// Bake libtorch's folder into the worker's rpath, relative to the worker ($ORIGIN), so it
// runs without LD_LIBRARY_PATH wherever the checkout or the environment is moved, and
// compile the c10d shim (csrc/c10d_shim.cpp) against the same libtorch's headers. When
// libtorch has CUDA and the NCCL and CUDA runtime headers are at hand (the torch wheel's
// nvidia-* packages), also build the NCCL shim as a shared library the worker loads for
// data-parallel CUDA stages only.
// torch-sys declares `links = "tch"` and exports `libtorch_lib`, which reaches us as
// DEP_TCH_LIBTORCH_LIB because we depend on torch-sys directly.
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The torch versions this build can use, as `major.minor`: the project's (tch 0.26 is
/// generated from it) and the GPU kit's (scripts/gpu_kit.sh patches tch for it).
const SUPPORTED_TORCH: [&str; 2] = ["2.13", "2.11"];

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    println!("cargo:rerun-if-changed=csrc/c10d_common.hpp");
    println!("cargo:rerun-if-changed=csrc/ffi_error.hpp");
    println!("cargo:rerun-if-changed=csrc/c10d_nccl.cpp");
    println!("cargo:rerun-if-changed=csrc/fused.cpp");
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report libtorch's folder");
    };
    let version = torch_version(Path::new(&lib));
    check_torch_version(&version, &lib);
    println!("cargo:rustc-env=DIFFLOW_TORCH_VERSION={version}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for rpath in worker_rpaths(Path::new(&lib), &out_dir) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    }
    let abi = cxx11_abi();
    compile_c10d_shim(Path::new(&lib), &abi);
    compile_fused(Path::new(&lib), &abi);
    compile_autocast(Path::new(&lib), &abi);
    compile_operator_new();
    compile_nccl_shim(Path::new(&lib), &abi);
    #[cfg(feature = "python")]
    {
        libpython_rpath();
        compile_python_shim(Path::new(&lib), &abi);
    }
}

/// Builds `libdifflow_python.so` in OUT_DIR (csrc/python_shim.cpp, against libtorch_python
/// and the headers of the Python pyo3 builds against) and tells the worker where it is
/// (`DIFFLOW_PYTHON_SHIM`).
#[cfg(feature = "python")]
fn compile_python_shim(lib: &Path, abi: &str) {
    println!("cargo:rerun-if-changed=csrc/python_shim.cpp");
    let python = pyo3_build_config::get().executable.clone().unwrap_or_else(|| "python3".into());
    let asked = Command::new(&python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['include'])"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(asked.status.success(), "{python} did not name its include folder");
    let include = PathBuf::from(String::from_utf8_lossy(&asked.stdout).trim());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("libdifflow_python.so");
    let mut command = cc::Build::new().cpp(true).get_compiler().to_command();
    command
        .args(["-shared", "-fPIC", "-O2", "-std=c++17", "-w"])
        .arg(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .arg("csrc/python_shim.cpp")
        .arg("-o")
        .arg(&out)
        .arg("-I")
        .arg(&include);
    for dir in torch_includes(lib) {
        command.arg("-I").arg(dir);
    }
    command.arg(format!("-L{}", lib.display()));
    for rpath in nccl_shim_rpaths(lib, out.parent().expect("the shim lies in OUT_DIR")) {
        command.arg(format!("-Wl,-rpath,{rpath}"));
    }
    command.args(["-Wl,--no-as-needed", "-ltorch_python", "-ltorch_cpu", "-lc10"]);
    let status = command.status().expect("the C++ compiler runs");
    assert!(status.success(), "compiling csrc/python_shim.cpp failed: {command:?}");
    println!("cargo:rustc-env=DIFFLOW_PYTHON_SHIM={}", out.display());
}

/// The worker links the shared libpython of the Python that pyo3 builds against (the
/// environment's base interpreter, which a venv does not copy): its folder, absolute, goes
/// into the rpath so the worker starts without LD_LIBRARY_PATH.
#[cfg(feature = "python")]
fn libpython_rpath() {
    let config = pyo3_build_config::get();
    if !config.shared {
        eprintln!(
            "error: the Python that pyo3 builds against ({}) has no shared libpython, which the worker \
             embeds for `python` models; use a Python built with --enable-shared (pyenv: \
             PYTHON_CONFIGURE_OPTS=--enable-shared), or build without the engine's `python` feature",
            config.executable.as_deref().unwrap_or("python3")
        );
        std::process::exit(1);
    }
    if let Some(dir) = &config.lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

// The version of the libtorch in `lib`: a Python wheel's torch/version.py, or the
// build-version file of a libtorch download; "unknown" when neither says.
fn torch_version(lib: &Path) -> String {
    let root = lib.parent().unwrap_or(lib);
    let (wheel, download) = (root.join("version.py"), root.join("build-version"));
    // Only an existing file: a missing one would rerun this script (and the C++ build) every time.
    for file in [&wheel, &download].into_iter().filter(|f| f.is_file()) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let from_wheel = std::fs::read_to_string(&wheel).ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("__version__"))
            .map(|rest| rest.trim_start_matches([' ', '=']).trim().trim_matches(['\'', '"']).to_string())
    });
    let from_download = || std::fs::read_to_string(&download).ok().map(|t| t.trim().to_string());
    from_wheel.or_else(from_download).filter(|v| !v.is_empty()).unwrap_or_else(|| "unknown".into())
}

/// Stops the build with one clear message when libtorch is a version difflow cannot use
/// (tch's own check is bypassed by LIBTORCH_BYPASS_VERSION_CHECK, which the GPU kit sets).
fn check_torch_version(version: &str, lib: &str) {
    if version == "unknown" {
        println!("cargo:warning=the version of the libtorch in {lib} is unknown; difflow supports torch 2.13 and 2.11");
        return;
    }
    let release = version.split('+').next().unwrap_or(version);
    let supported = SUPPORTED_TORCH.iter().any(|v| release.strip_prefix(v).is_some_and(|rest| rest.starts_with('.')));
    if !supported {
        eprintln!(
            "error: difflow cannot be built against torch {version} (in {lib}).\n\
             Supported: torch 2.13 (the project's: `pip install . --no-build-isolation`, scripts/setup.sh) \
             and torch 2.11 (the GPU kit's: scripts/gpu_kit.sh).\n\
             Install torch==2.13.0 into the Python environment the build uses."
        );
        std::process::exit(1);
    }
}

/// The worker's rpath: libtorch's folder relative to the worker wherever it lies, never
/// an absolute path, so that moving the checkout (with its `.venv`) or the environment
/// keeps it working.
/// - `target/release/` (the profile folder, three levels above OUT_DIR) and one level
///   below it (`deps/`, `examples/`: the engine's tests and examples);
/// - `<env>/bin/`, where `pip install .` puts the worker: libtorch as seen from the
///   environment that holds torch (`$ORIGIN/../lib/pythonX.Y/site-packages/torch/lib`).
fn worker_rpaths(lib: &Path, out_dir: &Path) -> Vec<String> {
    let (Ok(lib), Ok(out_dir)) = (lib.canonicalize(), out_dir.canonicalize()) else {
        panic!("libtorch's folder {} or OUT_DIR {} does not exist", lib.display(), out_dir.display());
    };
    let mut rpaths = Vec::new();
    if let Some(profile) = out_dir.ancestors().nth(3) {
        let from_profile = relative_path(profile, &lib);
        rpaths.push(format!("$ORIGIN/{}", from_profile.display()));
        rpaths.push(format!("$ORIGIN/../{}", from_profile.display()));
    }
    if let Some(prefix) = environment_prefix(&lib) {
        rpaths.push(format!("$ORIGIN/{}", relative_path(&prefix.join("bin"), &lib).display()));
    }
    rpaths.dedup();
    rpaths
}

/// The NCCL shim's rpath: libtorch relative to where build.rs puts it (OUT_DIR) and to
/// `<env>/lib/`, where `pip install .` puts it.
fn nccl_shim_rpaths(lib: &Path, out_dir: &Path) -> Vec<String> {
    let (Ok(lib), Ok(out_dir)) = (lib.canonicalize(), out_dir.canonicalize()) else {
        panic!("libtorch's folder {} or OUT_DIR {} does not exist", lib.display(), out_dir.display());
    };
    let mut rpaths = vec![format!("$ORIGIN/{}", relative_path(&out_dir, &lib).display())];
    if let Some(prefix) = environment_prefix(&lib) {
        rpaths.push(format!("$ORIGIN/{}", relative_path(&prefix.join("lib"), &lib).display()));
    }
    rpaths
}

/// The Python environment (venv, conda env, `~/.local`, system prefix) whose site-packages
/// holds libtorch: `<env>/lib/pythonX.Y/site-packages/torch/lib` (or `dist-packages`).
fn environment_prefix(lib: &Path) -> Option<PathBuf> {
    let site = lib
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "site-packages" || name == "dist-packages"))?;
    let libdir = site.parent()?.parent()?;
    if !libdir.file_name()?.to_string_lossy().starts_with("lib") {
        return None;
    }
    libdir.parent().map(Path::to_path_buf)
}

/// `to` relative to `from`, both absolute and canonical: `..` for each folder of `from`
/// below their common ancestor, then the rest of `to`.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<Component>, Vec<Component>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    out.extend(&to[common..]);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn torch_includes(lib: &Path) -> [PathBuf; 2] {
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    let api = include.join("torch/csrc/api/include");
    [include, api]
}

/// A C++ build of `file` against the torch headers in `lib`'s folder, with its C++ ABI.
fn torch_cpp(lib: &Path, abi: &str, file: &str) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file(file)
        .includes(torch_includes(lib))
        .flag("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .define("_GLIBCXX_USE_CXX11_ABI", abi)
        .warnings(false);
    build
}

fn compile_c10d_shim(lib: &Path, abi: &str) {
    torch_cpp(lib, abi, "csrc/c10d_shim.cpp")
        // Gloo's headers are not in the wheel; the few c10d needs are vendored.
        .include("vendor/gloo")
        .compile("difflow_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The autocast dtype setter tch lacks (csrc/autocast.cpp), built like the c10d shim.
fn compile_autocast(lib: &Path, abi: &str) {
    torch_cpp(lib, abi, "csrc/autocast.cpp").compile("difflow_autocast");
}

/// The fused inference kernels (csrc/fused.cpp), built like the c10d shim, with ATen's
/// portable vectors; on x86-64 also a copy with ATen's AVX2 vectors (`dfl_group_norm_silu_avx2`)
/// that the worker calls only on CPUs with AVX2, FMA and F16C (cfg `fused_avx2_copy`), so
/// one binary runs everywhere and is fast where it can be. A target that has AVX2 anyway
/// (`-C target-cpu=native` on such a CPU) gets the AVX2 build alone. Their loop is an OpenMP
/// one; the worker links the libgomp that libtorch ships, so both share one thread pool.
fn compile_fused(lib: &Path, abi: &str) {
    println!("cargo::rustc-check-cfg=cfg(fused_avx2_copy)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let base = fused_build(lib, abi);
    if target_has_avx2() {
        with_avx2(base).compile("difflow_fused");
    } else {
        // The portable vectors are 32-byte structs passed by value between the kernel's own
        // functions, which makes GCC note an ABI change of GCC 4.6 that nothing here meets.
        let mut portable = base;
        portable
            .define("CPU_CAPABILITY", "DEFAULT")
            .define("CPU_CAPABILITY_DEFAULT", None)
            .flag_if_supported("-Wno-psabi");
        portable.compile("difflow_fused");
        if arch == "x86_64" {
            let mut copy = with_avx2(fused_build(lib, abi));
            let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("avx2");
            copy.define("DFL_FUSED_AVX2_COPY", None).out_dir(out);
            copy.compile("difflow_fused_avx2");
            println!("cargo:rustc-cfg=fused_avx2_copy");
        }
    }
    println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
}

fn fused_build(lib: &Path, abi: &str) -> cc::Build {
    let mut build = torch_cpp(lib, abi, "csrc/fused.cpp");
    build.flag("-fopenmp");
    build
}

fn with_avx2(mut build: cc::Build) -> cc::Build {
    build
        .flag("-mavx2")
        .flag("-mfma")
        .flag("-mf16c")
        .define("CPU_CAPABILITY", "AVX2")
        .define("CPU_CAPABILITY_AVX2", None);
    build
}

/// Whether the build targets x86-64 with AVX2, FMA and F16C (what ATen's AVX2 vectors use):
/// the target's features, as rustc sees them, not the build machine's.
fn target_has_avx2() -> bool {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    arch == "x86_64" && has("avx2") && has("fma") && has("f16c")
}

/// C++'s `operator new`/`delete` on malloc (csrc/operator_new.cpp), linked whole: nothing in
/// the Rust code refers to them, yet they must be in every binary that links the engine.
fn compile_operator_new() {
    println!("cargo:rerun-if-changed=csrc/operator_new.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/operator_new.cpp")
        .flag("-std=c++17")
        .cargo_metadata(false)
        .compile("difflow_operator_new");
    println!("cargo:rustc-link-search=native={}", std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rustc-link-lib=static:+whole-archive=difflow_operator_new");
}

/// Builds `libdifflow_nccl.so` in OUT_DIR and tells the worker where it is
/// (`DIFFLOW_NCCL_SHIM`, empty when this libtorch cannot have one).
fn compile_nccl_shim(lib: &Path, abi: &str) {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("libdifflow_nccl.so");
    let Some((nccl, cuda)) = nccl_and_cuda_includes(lib) else {
        println!("cargo:warning=no NCCL: libtorch_cuda, nccl.h or the CUDA runtime headers (with crt/ and nv/, see scripts/setup.sh) not found; data-parallel CUDA stages are unavailable");
        println!("cargo:rustc-env=DIFFLOW_NCCL_SHIM=");
        return;
    };
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let mut command = compiler.to_command();
    command
        .args(["-shared", "-fPIC", "-O2", "-std=c++17", "-w"])
        .arg(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .arg("csrc/c10d_nccl.cpp")
        .arg("-o")
        .arg(&out);
    for include in torch_includes(lib).iter().chain([&nccl, &cuda]) {
        command.arg("-I").arg(include);
    }
    command.arg(format!("-L{}", lib.display()));
    for rpath in nccl_shim_rpaths(lib, out.parent().expect("the shim lies in OUT_DIR")) {
        command.arg(format!("-Wl,-rpath,{rpath}"));
    }
    command.args(["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"]);
    let status = command.status().expect("the C++ compiler runs");
    assert!(status.success(), "compiling csrc/c10d_nccl.cpp failed: {command:?}");
    println!("cargo:rustc-env=DIFFLOW_NCCL_SHIM={}", out.display());
}

/// The include folders of NCCL and of the CUDA runtime, when libtorch is a CUDA build:
/// the wheel's `nvidia/*/include` beside torch, else `$CUDA_HOME/include`.
fn nccl_and_cuda_includes(lib: &Path) -> Option<(PathBuf, PathBuf)> {
    if !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(nvidia) = lib.parent().and_then(Path::parent).map(|site| site.join("nvidia")) {
        if let Ok(entries) = std::fs::read_dir(nvidia) {
            let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("include")).collect();
            found.sort();
            candidates.extend(found);
        }
    }
    let cuda_home = std::env::var("CUDA_HOME").unwrap_or_else(|_| "/usr/local/cuda".into());
    candidates.push(Path::new(&cuda_home).join("include"));
    let holding = |header: &str| candidates.iter().find(|dir| dir.join(header).exists()).cloned();
    let cuda = holding("cuda_runtime_api.h")?;
    // The runtime's headers include these from nvidia-cuda-crt and nvidia-cuda-cccl
    // (scripts/setup.sh installs them); without them the NCCL shim cannot compile.
    if !["crt/host_config.h", "nv/target"].iter().all(|h| cuda.join(h).exists()) {
        return None;
    }
    Some((holding("nccl.h")?, cuda))
}

// Must match the libtorch build, as torch-sys decides it: LIBTORCH_CXX11_ABI, else the
// Python torch's flag when LIBTORCH_USE_PYTORCH is set, else 1.
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if let Ok(abi) = std::env::var("LIBTORCH_CXX11_ABI") {
        return abi;
    }
    if std::env::var("LIBTORCH_USE_PYTORCH").is_ok() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".into());
        let asked =
            Command::new(python).args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"]).output();
        if let Ok(out) = asked {
            let flag = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && (flag == "0" || flag == "1") {
                return flag;
            }
        }
    }
    "1".into()
}
