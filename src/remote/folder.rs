//! A remote in a folder (`file:///shared/difflow-cache`): a shared or network filesystem.
//! Objects are written to a temporary name beside their place and renamed into it, so a
//! reader never sees part of one and two writers of one object do not mix their bytes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use difflow_core::files::{open_regular, FileError};

use super::meter::Counting;
use super::Backend;

pub struct Folder {
    root: PathBuf,
}

impl Folder {
    pub fn open(url: &str) -> Result<Folder, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("remote `{url}` is not a valid URL: {e}"))?;
        let root = parsed.to_file_path().map_err(|()| {
            format!("remote `{url}`: a file:// remote needs an absolute folder, as in file:///srv/cache")
        })?;
        Ok(Folder { root })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

impl Backend for Folder {
    fn get(&self, rel: &str, sink: &mut dyn Write, limit: u64) -> Result<bool, String> {
        let path = self.path(rel);
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(FileError::Missing) => return Ok(false),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let copied = std::io::copy(&mut file.take(limit + 1), sink)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if copied > limit {
            return Err(format!("{} has more than the {limit} bytes expected", path.display()));
        }
        Ok(true)
    }

    fn put(&self, rel: &str, src: &Path, size: u64) -> Result<(), String> {
        self.put_counted(rel, src, size, &|_| {})
    }

    fn put_counted(&self, rel: &str, src: &Path, _size: u64, sent: &(dyn Fn(u64) + Sync)) -> Result<(), String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dest = self.path(rel);
        let dir = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let written = copy_counted(src, &tmp, sent).and_then(|()| std::fs::rename(&tmp, &dest));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", dest.display()));
        }
        Ok(())
    }

    fn size(&self, rel: &str) -> Result<Option<Option<u64>>, String> {
        Ok(std::fs::metadata(self.path(rel)).ok().filter(std::fs::Metadata::is_file).map(|m| Some(m.len())))
    }

    fn list(&self, rel: &str) -> Result<Option<Vec<String>>, String> {
        let dir = self.path(rel);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
        };
        Ok(Some(rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()))
    }

    fn url(&self, rel: &str) -> String {
        format!("file://{}", self.path(rel).display())
    }
}

/// Copy `src` to a new file `dest` and sync it, reporting the bytes as they go.
fn copy_counted(src: &Path, dest: &Path, sent: &(dyn Fn(u64) + Sync)) -> std::io::Result<()> {
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(src)?);
    let mut out = std::fs::File::create(dest)?;
    std::io::copy(&mut Counting { inner: reader, sent }, &mut out)?;
    out.sync_all()
}
