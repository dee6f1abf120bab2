//! How the worker's heap hands memory back to the kernel. With glibc's defaults, the
//! blocks a network evaluation frees (activations of a few MiB) go back to the kernel
//! (as their own mappings, or by trimming the heap's top) and the next step's tensors of
//! the same sizes fault their pages in afresh: ~8,000 page faults per DDIM + CFG step of
//! the 16 × 16 MNIST UNet, up to a quarter of the step. PyTorch's CPU tuning guide answers
//! this with jemalloc or tcmalloc; raising glibc's two thresholds does the same here.

/// Blocks below this size come from the heap and are reused after they are freed.
const MMAP_THRESHOLD: i32 = 64 << 20;
/// The heap keeps up to this much free memory at its top instead of trimming it.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Keeps freed tensor memory in the process for reuse (glibc only). A user who set
/// glibc's own `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` keeps those settings.
/// Returns whether the thresholds were set.
pub fn keep_freed_memory() -> bool {
    let user_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"].iter().any(|v| std::env::var_os(v).is_some());
    !user_set && set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it returns 1 on success.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}
