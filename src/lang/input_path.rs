//! Dataset and weight paths must be regular files or folders of regular files: their
//! contents are hashed into stage keys, and hashing a FIFO would hang `plan`, a device
//! (`/dev/zero`) would never end. A path that does not exist yet is allowed (the stage
//! reports it when it runs).

use std::path::Path;

/// Why `path` cannot be an input, or `None` when it can (or does not exist).
pub fn refusal(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("{} cannot be read: {e}", path.display())),
    };
    if meta.is_file() {
        return if is_proc(path) {
            Some(format!("{} is a /proc entry, not a data file", path.display()))
        } else {
            None
        };
    }
    if !meta.is_dir() {
        return Some(format!("{} is {}, not a file or a folder", path.display(), describe(&meta.file_type())));
    }
    if is_proc(path) {
        return Some(format!("{} is a /proc folder, not data", path.display()));
    }
    first_irregular(path).map(|(bad, ty)| format!("{} holds {}, which is {ty}", path.display(), bad.display()))
}

/// /proc files claim to be regular files of size 0 while their contents change.
fn is_proc(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| p.starts_with("/proc") || p.starts_with("/sys"))
}

/// The first entry below `dir` (following symbolic links) that is neither a regular file
/// nor a folder.
fn first_irregular(dir: &Path) -> Option<(std::path::PathBuf, &'static str)> {
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            // A link cycle would never end; a million entries is far beyond real datasets.
            if seen > 1_000_000 {
                return None;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.is_dir() {
                if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    continue; // not followed when hashing either
                }
                pending.push(path);
            } else if !meta.is_file() {
                return Some((path, describe(&meta.file_type())));
            }
        }
    }
    None
}

fn describe(ty: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ty.is_fifo() {
        "a FIFO (named pipe)"
    } else if ty.is_char_device() || ty.is_block_device() {
        "a device"
    } else if ty.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_of_files_pass_and_others_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("set/sub")).unwrap();
        std::fs::write(d.path().join("set/sub/a.png"), b"x").unwrap();
        assert_eq!(refusal(&d.path().join("set")), None);
        assert_eq!(refusal(&d.path().join("set/sub/a.png")), None);
        assert_eq!(refusal(&d.path().join("missing")), None);
        assert!(refusal(Path::new("/dev/zero")).unwrap().contains("a device"));
        assert!(refusal(Path::new("/proc/self/environ")).unwrap().contains("/proc"));
        let fifo = d.path().join("set/sub/pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let why = refusal(&d.path().join("set")).unwrap();
        assert!(why.contains("pipe") && why.contains("FIFO"), "{why}");
    }
}
