//! The worker's malloc (jemalloc, linked with the engine) keeps freed blocks of tensor sizes
//! for reuse: after the first round, allocating, touching and freeing the same buffers again
//! faults (almost) no new pages, on the main thread and on a second thread at once (the
//! batch lanes). A test without the harness: alone in its process, since page faults are
//! counted per process.

use std::sync::mpsc;

fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) }, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_minflt
}

/// Allocates, touches and frees buffers of an activation's sizes (1–12 MiB, as the UNet's
/// are) on this thread and on `lane` (a long-lived second thread, as the batch lanes' are)
/// at once; returns the page faults of the round.
fn round(lane: &Lane) -> i64 {
    let before = minor_faults();
    lane.start.send(()).expect("the lane thread runs");
    touch_and_free();
    lane.done.recv().expect("the lane thread finishes its round");
    minor_faults() - before
}

fn touch_and_free() {
    let buffers: Vec<Vec<u8>> = (1..=12).map(|mib| vec![1u8; mib << 20]).collect();
    std::hint::black_box(&buffers);
}

struct Lane {
    start: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
}

fn spawn_lane() -> Lane {
    let (start, rounds) = mpsc::channel::<()>();
    let (finished, done) = mpsc::channel();
    std::thread::spawn(move || {
        for () in rounds {
            touch_and_free();
            finished.send(()).expect("the main thread waits");
        }
    });
    Lane { start, done }
}

fn main() {
    assert!(difflow_engine::memory::keeps_freed_memory(), "malloc is not jemalloc with purging off");
    let lane = spawn_lane();
    let first = round(&lane);
    let later: i64 = (0..5).map(|_| round(&lane)).sum();
    println!("page faults: first round {first}, next five rounds {later}");
    // 2 x 78 MiB per round is ~40,000 pages: faulted in once, then reused.
    assert!(first > 20_000, "the first round touches new memory ({first} faults)");
    // Memory that went back to the kernel faults in again every round (five rounds: about
    // 5 x first); reused memory faults a little, more on a loaded machine.
    assert!(later < first / 2, "freed memory went back to the kernel: {later} faults in five rounds");
    println!("test freed_tensor_memory_is_reused_without_new_page_faults ... ok");
}
