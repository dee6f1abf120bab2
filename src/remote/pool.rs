//! Bounded parallelism for transfers, on plain scoped threads: [`parallel_map`] runs one
//! call per item on a few threads, and [`Slots`] caps the requests in flight across
//! nested maps (entries side by side, each entry's files side by side).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

/// Requests in flight at once: enough to hide a round trip per file, few enough not to
/// flood a lab's cache server or a shared filesystem.
pub const PARALLEL: usize = 4;

/// `work` on every item, at most `threads` at a time; the results in the items' order.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 || threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(items.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = work(item);
                results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(result);
            });
        }
    });
    // Every index below items.len() was taken by exactly one thread, which stored its
    // result (a panic in `work` would have propagated out of the scope).
    results.into_inner().unwrap_or_else(PoisonError::into_inner).into_iter().flatten().collect()
}

/// A counting semaphore: at most `n` holders of a [`Slot`] at once.
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// One request's permission to run; given back when dropped.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots { free: Mutex::new(n.max(1)), freed: Condvar::new() }
    }

    /// Wait for a free slot. A holder must not wait for a second one.
    pub fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn results_keep_the_items_order_and_slots_bound_what_runs_at_once() {
        let slots = Slots::new(3);
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let items: Vec<u64> = (0..40).collect();
        let out = parallel_map(&items, 4, |&x| {
            // Nested maps share the slots, as entries and their files do.
            let inner = parallel_map(&[x, x + 1], 4, |&y| {
                let _slot = slots.take();
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::yield_now();
                running.fetch_sub(1, Ordering::SeqCst);
                y * 2
            });
            inner[0] + inner[1]
        });
        assert_eq!(out, items.iter().map(|x| 4 * x + 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3, "{} at once", most.load(Ordering::SeqCst));
    }
}
