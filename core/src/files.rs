//! The one rule for every file difflow reads that a user, a recipe or a cache entry names.
//!
//! Recipes, diffusers folders and cache entries come from other people, and git carries
//! symbolic links, so any path may turn out to be a FIFO (an open blocks forever), a
//! device (`/dev/zero` never ends), a `/proc` entry (claims size 0, then streams) or a
//! file far larger than its purpose. Every such read goes through [`read_limited`] (or
//! its text and "may be absent" forms), which:
//! - opens without blocking (`O_NONBLOCK`, so a FIFO without a writer opens at once) and
//!   checks the *opened* file, not the path, so a swap between check and open changes nothing;
//! - accepts regular files only, outside `/proc` and `/sys`;
//! - refuses a file larger than its [`Purpose`]'s limit before reading, and never reads
//!   more than the limit even if the file grows meanwhile.
//!
//! Messages never quote the file's bytes.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a file is read for; each purpose has its own size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A `.diff` pipeline file (real pipelines are a few kB).
    Source,
    /// `difflow.toml`.
    Settings,
    /// A small JSON or TOML file difflow itself writes into cache entries and job files
    /// (`meta.json`, `manifest.toml`, `metrics.json`, a job file, a lock file).
    Metadata,
    /// A diffusers folder's `config.json` or `scheduler_config.json`.
    Config,
    /// A Python file of the project (models, scripts).
    Code,
}

impl Purpose {
    /// The largest file accepted for this purpose, in bytes.
    pub const fn limit(self) -> u64 {
        match self {
            Purpose::Source => 4 << 20,
            Purpose::Settings => 1 << 20,
            Purpose::Metadata => 64 << 20,
            Purpose::Config => 1 << 20,
            Purpose::Code => 16 << 20,
        }
    }

    /// How a message names a file of this purpose.
    pub const fn noun(self) -> &'static str {
        match self {
            Purpose::Source => "pipeline files",
            Purpose::Settings => "settings files",
            Purpose::Metadata => "metadata files",
            Purpose::Config => "config files",
            Purpose::Code => "code files",
        }
    }
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum FileError {
    /// Nothing at the path (or a dangling link).
    Missing,
    /// Not a regular file: a folder, FIFO, device, socket, or a `/proc` or `/sys` entry.
    NotRegular(&'static str),
    /// Larger than the purpose allows.
    TooLarge { bytes: Option<u64>, limit: u64, noun: &'static str },
    /// Not UTF-8 where text was asked for.
    NotText,
    /// Any other I/O failure (permissions, a read error).
    Io(std::io::Error),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Missing => write!(f, "no such file"),
            FileError::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            FileError::TooLarge { bytes: Some(b), limit, noun } => {
                write!(f, "it has {b} bytes; {noun} may have at most {limit}")
            }
            FileError::TooLarge { bytes: None, limit, noun } => {
                write!(f, "it has more than {limit} bytes, the most {noun} may have")
            }
            FileError::NotText => write!(f, "it is not UTF-8 text"),
            FileError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FileError {}

impl FileError {
    pub fn is_missing(&self) -> bool {
        matches!(self, FileError::Missing)
    }
}

/// The bytes of a regular file of at most `purpose.limit()` bytes.
pub fn read_limited(path: &Path, purpose: Purpose) -> Result<Vec<u8>, FileError> {
    let limit = purpose.limit();
    let file = open_regular(path)?;
    let len = file.metadata().map_err(FileError::Io)?.len();
    if len > limit {
        return Err(FileError::TooLarge { bytes: Some(len), limit, noun: purpose.noun() });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(FileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge { bytes: None, limit, noun: purpose.noun() });
    }
    Ok(bytes)
}

/// The UTF-8 text of a regular file of at most `purpose.limit()` bytes.
pub fn read_text(path: &Path, purpose: Purpose) -> Result<String, FileError> {
    String::from_utf8(read_limited(path, purpose)?).map_err(|_| FileError::NotText)
}

/// Like [`read_text`], but `Ok(None)` when nothing is at the path.
pub fn read_text_if_present(path: &Path, purpose: Purpose) -> Result<Option<String>, FileError> {
    match read_text(path, purpose) {
        Ok(t) => Ok(Some(t)),
        Err(FileError::Missing) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens `path` for reading if it is a regular file, without blocking on a FIFO.
pub fn open_regular(path: &Path) -> Result<std::fs::File, FileError> {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        if canonical.starts_with("/proc") || canonical.starts_with("/sys") {
            return Err(FileError::NotRegular("a /proc or /sys entry"));
        }
    }
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::NotFound => FileError::Missing,
                _ => FileError::Io(e),
            },
        )?;
    let ty = file.metadata().map_err(FileError::Io)?.file_type();
    if !ty.is_file() {
        return Err(FileError::NotRegular(describe(&ty)));
    }
    Ok(file)
}

fn describe(ty: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ty.is_dir() {
        "a folder"
    } else if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_char_device() || ty.is_block_device() {
        "a device"
    } else if ty.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "difflow-files-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn regular_file_within_its_limit_is_read() {
        let d = tmp();
        std::fs::write(d.join("a.toml"), "threads = 1\n").unwrap();
        assert_eq!(read_text(&d.join("a.toml"), Purpose::Settings).unwrap(), "threads = 1\n");
        assert!(read_text_if_present(&d.join("none.toml"), Purpose::Settings).unwrap().is_none());
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let d = tmp();
        let fifo = d.join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_text(&fifo, Purpose::Settings).unwrap_err();
        assert_eq!(err.to_string(), "it is a FIFO, not a regular file");
    }

    #[test]
    fn devices_proc_and_folders_are_refused() {
        assert!(matches!(
            read_limited(Path::new("/dev/zero"), Purpose::Settings),
            Err(FileError::NotRegular("a device"))
        ));
        assert!(matches!(
            read_limited(Path::new("/proc/self/status"), Purpose::Settings),
            Err(FileError::NotRegular(_))
        ));
        assert!(matches!(read_limited(&tmp(), Purpose::Settings), Err(FileError::NotRegular("a folder"))));
        let d = tmp();
        std::os::unix::fs::symlink("/dev/zero", d.join("link.toml")).ok();
        assert!(matches!(
            read_limited(&d.join("link.toml"), Purpose::Settings),
            Err(FileError::NotRegular("a device"))
        ));
    }

    #[test]
    fn too_large_is_refused_before_reading() {
        let d = tmp();
        let f = std::fs::File::create(d.join("big.json")).unwrap();
        f.set_len(Purpose::Config.limit() + 1).unwrap();
        let err = read_limited(&d.join("big.json"), Purpose::Config).unwrap_err();
        assert!(err.to_string().contains("config files may have at most 1048576"), "{err}");
    }
}
