// Bake libtorch's folder into the worker's rpath so it runs without LD_LIBRARY_PATH.
// torch-sys declares `links = "tch"` and exports `libtorch_lib`, which reaches us as
// DEP_TCH_LIBTORCH_LIB because we depend on torch-sys directly.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // The linker drops libtorch_cuda (nothing references it directly), so the worker
        // loads it at run time when a CUDA device is asked for (see device.rs).
        println!("cargo:rustc-env=DIFFLOW_LIBTORCH_LIB={lib}");
    } else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: the worker will need LD_LIBRARY_PATH");
        println!("cargo:rustc-env=DIFFLOW_LIBTORCH_LIB=");
    }
}
