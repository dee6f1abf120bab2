//! Whether a cache folder can be shared by the cluster's nodes.

use std::path::Path;
use std::process::Command;

/// The cache must be visible from every node: refuse a folder on a filesystem that is
/// local to this host (tmpfs, ext4, xfs, btrfs) when the cluster has more than one node.
/// Network filesystems and single-node clusters pass; an unknown type passes with trust.
pub(super) fn check_shared_cache(dir: &Path) -> Result<(), String> {
    let Some(fs) = local_filesystem(dir) else { return Ok(()) };
    let nodes = Command::new("sinfo")
        .args(["--noheader", "--format=%D"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse::<usize>().ok()).sum())
        .unwrap_or(0usize);
    if nodes <= 1 {
        return Ok(());
    }
    Err(format!(
        "the cache folder {} is on a {fs} filesystem local to this host, but the cluster has {nodes} nodes that \
         must all read and write it\nhelp: set `cache = \"…\"` in difflow.toml to a folder on the cluster's \
         shared filesystem (NFS, Lustre, GPFS, BeeGFS, CephFS)",
        dir.display()
    ))
}

#[cfg(target_os = "linux")]
fn local_filesystem(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    match st.f_type as i64 {
        0x0102_1994 => Some("tmpfs"),
        0x8584_58f6 => Some("ramfs"),
        0xEF53 => Some("ext4"),
        0x5846_5342 => Some("xfs"),
        0x9123_683E => Some("btrfs"),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn local_filesystem(_dir: &Path) -> Option<&'static str> {
    None
}
