//! What push and pull share: the context of a batch of transfers (the remote, the local
//! cache, the slots that bound the requests in flight, the progress display) and what
//! one entry's transfer moved.

use std::io::Write;

use super::pool::{Slots, PARALLEL};
use super::Remote;
use crate::cache::Cache;
use crate::exec::Progress;

/// A batch of transfers between one remote and one cache. Entries and their files move
/// side by side; [`Slots`] keeps the requests in flight at [`PARALLEL`].
pub struct Transfers<'a> {
    pub remote: &'a Remote,
    pub cache: &'a Cache,
    pub slots: Slots,
    pub progress: Progress,
}

impl<'a> Transfers<'a> {
    pub fn new(remote: &'a Remote, cache: &'a Cache, progress: &Progress) -> Transfers<'a> {
        Transfers { remote, cache, slots: Slots::new(PARALLEL), progress: progress.clone() }
    }
}

/// What one push or pull moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transfer {
    /// Files sent or received.
    pub files: usize,
    pub bytes: u64,
    /// Files left out: a push's blobs the remote had already; a pull's files found whole
    /// in the download folder of an earlier, interrupted pull.
    pub skipped: usize,
    pub secs: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PullOutcome {
    Pulled(Transfer),
    /// The remote has no (complete) entry of the key.
    Absent,
}

/// A writer that digests and counts what passes through it, and reports each write.
pub(crate) struct Hashing<'a, W: Write> {
    pub inner: W,
    pub hasher: blake3::Hasher,
    pub bytes: u64,
    pub received: &'a (dyn Fn(u64) + Sync),
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        (self.received)(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
