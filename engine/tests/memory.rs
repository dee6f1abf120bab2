//! The worker's heap keeps freed blocks of tensor sizes for reuse: after the first round,
//! allocating, touching and freeing the same buffers again faults (almost) no new pages.
//! A test without the harness: it runs on the main thread, whose heap the worker's stages
//! allocate from, and alone in its process, since page faults are counted per process.

fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) }, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_minflt
}

/// Allocates and touches buffers of an activation's sizes (1–12 MiB, as the UNet's are),
/// frees them, and returns the page faults of the round.
fn round() -> i64 {
    let before = minor_faults();
    let buffers: Vec<Vec<u8>> = (1..=12).map(|mib| vec![1u8; mib << 20]).collect();
    std::hint::black_box(&buffers);
    drop(buffers);
    minor_faults() - before
}

fn main() {
    assert!(difflow_engine::memory::keep_freed_memory(), "glibc's thresholds were not set");
    let first = round();
    let later: i64 = (0..5).map(|_| round()).sum();
    println!("page faults: first round {first}, next five rounds {later}");
    // 78 MiB per round is ~20,000 pages: faulted in once, then reused.
    assert!(first > 10_000, "the first round touches new memory ({first} faults)");
    assert!(later < first / 10, "freed memory went back to the kernel: {later} faults in five rounds");
    println!("test freed_tensor_memory_is_reused_without_new_page_faults ... ok");
}
