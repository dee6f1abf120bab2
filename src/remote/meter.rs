//! What a transfer shows while it runs: on a terminal, a bar per entry with bytes, total
//! and rate beside the run's other bars; otherwise (logs, pipes, Slurm jobs) a plain line
//! every few seconds for a transfer that lasts that long, and none for a quick one. The
//! result line of each entry (`pushed …`, `pulled …`) is printed by the caller.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cache::store::human_size;
use crate::exec::Progress;

/// How often a plain line reports a transfer that is still running.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The progress of one entry's transfer; shared by the threads that move its files.
pub struct Meter {
    label: String,
    total: u64,
    done: AtomicU64,
    began: Instant,
    bar: Option<ProgressBar>,
    /// Plain mode: when the last line was printed.
    last_line: Mutex<Instant>,
    progress: Progress,
}

impl Meter {
    /// `label`: what moves, as in `push train ddpm`; `total`: its bytes.
    pub fn new(progress: &Progress, label: String, total: u64) -> Meter {
        let bar = progress.bar(total).inspect(|bar| {
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
        });
        let now = Instant::now();
        Meter {
            label,
            total,
            done: AtomicU64::new(0),
            began: now,
            bar,
            last_line: Mutex::new(now),
            progress: progress.clone(),
        }
    }

    /// `n` more bytes moved (or found in place).
    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(PoisonError::into_inner);
                if last.elapsed() >= PLAIN_EVERY && done < self.total {
                    *last = Instant::now();
                    let secs = self.began.elapsed().as_secs_f64().max(1e-9);
                    self.progress.println(&format!(
                        "{}: {} of {} ({}/s)",
                        self.label,
                        human_size(done),
                        human_size(self.total),
                        human_size((done as f64 / secs) as u64)
                    ));
                }
            }
        }
    }

    /// Remove the bar (the caller prints the result line).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A reader that reports how many bytes passed through it.
pub struct Counting<'a, R: Read> {
    pub inner: R,
    pub sent: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.sent)(n as u64);
        Ok(n)
    }
}
