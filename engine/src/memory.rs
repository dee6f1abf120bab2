//! The worker's malloc. On Linux it is jemalloc, linked unprefixed so that libtorch's tensor
//! memory comes from it too (the answer of PyTorch's CPU tuning guide, without an
//! `LD_PRELOAD`). glibc's malloc costs a network evaluation twice: the blocks a step frees
//! (activations of a few MiB) go back to the kernel and the next step faults their pages in
//! afresh (~8,000 page faults per DDIM + CFG step of the 16 × 16 MNIST UNet), and threads
//! that allocate side by side (the batch lanes) either queue on one arena's lock or, each on
//! its own arena, return and re-map whole 64 MiB heaps. jemalloc gives every thread its own
//! cache and arena, and here keeps freed pages for reuse instead of purging them over time.
//! A `MALLOC_CONF` in the environment is read after these settings and wins. C++'s
//! `operator new` and `delete` are defined on this malloc too (csrc/operator_new.cpp).

#[cfg(target_os = "linux")]
mod jemalloc {
    use std::ffi::{c_char, c_void, CStr};

    /// A C string pointer that may live in a static.
    #[repr(transparent)]
    pub struct ConfString(*const c_char);
    // SAFETY: it points to an immutable string literal.
    unsafe impl Sync for ConfString {}

    /// jemalloc's compiled-in options (its weak `malloc_conf`, read at its first
    /// allocation): freed dirty and muzzy pages are never purged by time.
    #[export_name = "malloc_conf"]
    pub static MALLOC_CONF: ConfString = ConfString(c"dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

    /// A signed option of jemalloc's (`opt.*`), or None when malloc is not jemalloc.
    pub fn option(name: &CStr) -> Option<isize> {
        let mut value: isize = 0;
        let mut size = std::mem::size_of::<isize>();
        // SAFETY: reads one ssize_t into `value`; a name that does not exist returns an error.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut value as *mut isize).cast::<c_void>(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        (status == 0).then_some(value)
    }
}

/// Whether this process's malloc keeps freed memory for reuse: jemalloc with time-based
/// purging off (unless `MALLOC_CONF` says otherwise).
pub fn keeps_freed_memory() -> bool {
    #[cfg(target_os = "linux")]
    {
        jemalloc::option(c"opt.dirty_decay_ms") == Some(-1) && jemalloc::option(c"opt.muzzy_decay_ms") == Some(-1)
    }
    #[cfg(not(target_os = "linux"))]
    false
}
