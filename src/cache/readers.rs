//! Entries in use. A run holds a shared lock on `<key>.use` for every entry it reads or
//! produces, from before it looks at the cache until it ends; `cache gc` removes an entry
//! only while it holds that lock exclusively (and the writers' `<key>.lock`), so it never
//! deletes an entry a running pipeline is about to read. Readers use a file of their own
//! because a run that holds an entry for reading may also recompute it (a corrupt entry),
//! and flock locks on two descriptors of one file would then block each other within the
//! same process.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use super::store::Cache;

/// Shared locks on entries being read; released when dropped.
#[derive(Debug, Default)]
pub struct ReadLocks {
    _files: Vec<File>,
}

impl Cache {
    fn use_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.use"))
    }

    fn open_use_file(&self, key: &str) -> io::Result<File> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.use_path(key))
    }

    /// Shared locks on `keys`, waiting while a `cache gc` is removing one of them.
    pub fn hold_for_reading<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> io::Result<ReadLocks> {
        let mut files = Vec::new();
        for key in keys {
            let file = self.open_use_file(key)?;
            file.lock_shared()?;
            files.push(file);
        }
        Ok(ReadLocks { _files: files })
    }

    /// The exclusive lock on `key`'s readers' file if no run reads the entry.
    pub fn try_lock_unread(&self, key: &str) -> io::Result<Option<File>> {
        let file = self.open_use_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_held_for_reading_cannot_be_taken_by_gc() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let held = cache.hold_for_reading(["k1"]).unwrap();
        // Another reader is welcome; gc is not.
        let other = cache.hold_for_reading(["k1"]).unwrap();
        assert!(cache.try_lock_unread("k1").unwrap().is_none());
        assert!(cache.try_lock_unread("k2").unwrap().is_some());
        drop(held);
        assert!(cache.try_lock_unread("k1").unwrap().is_none());
        drop(other);
        assert!(cache.try_lock_unread("k1").unwrap().is_some());
    }
}
