// Bake libtorch's folder into the worker's rpath so it runs without LD_LIBRARY_PATH, and
// compile the c10d shim (csrc/c10d_shim.cpp) against the same libtorch's headers.
// torch-sys declares `links = "tch"` and exports `libtorch_lib`, which reaches us as
// DEP_TCH_LIBTORCH_LIB because we depend on torch-sys directly.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report libtorch's folder");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // The linker drops libtorch_cuda (nothing references it directly), so the worker
    // loads it at run time when a CUDA device is asked for (see device.rs).
    println!("cargo:rustc-env=DIFFLOW_LIBTORCH_LIB={lib}");
    println!("cargo:rustc-env=DIFFLOW_TORCH_VERSION={}", torch_version(Path::new(&lib)));
    compile_c10d_shim(Path::new(&lib));
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

fn compile_c10d_shim(lib: &Path) {
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    cc::Build::new()
        .cpp(true)
        .file("csrc/c10d_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // Gloo's headers are not in the wheel; the few c10d needs are vendored.
        .include("vendor/gloo")
        .flag("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi().as_str())
        .warnings(false)
        .compile("difflow_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
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
