//! Cache entries on disk: `<cache>/<key>/` with `manifest.toml`, written aside in
//! `<key>.staging/` under the exclusive lock `<key>.lock` and renamed into place only when
//! complete. An entry counts only when its folder holds a manifest with its key, so a killed
//! run never leaves a half entry that counts; digests in the manifest catch corruption.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use difflow_core::job::LOG_DIR;
use serde::{Deserialize, Serialize};

use super::digest::{hash_file, list_files};

pub const MANIFEST: &str = "manifest.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub kind: String,
    pub variant: String,
    /// The instance names that produced or first asked for this entry.
    pub instances: Vec<String>,
    /// UTC, RFC 3339.
    pub started: String,
    pub finished: String,
    pub duration_s: f64,
    /// The parameters as the worker received them (JSON).
    pub params: String,
    /// What the key hashes (canonical JSON), for explaining what changed later.
    pub key_material: String,
    /// Input instance name → its key.
    pub inputs: BTreeMap<String, String>,
    /// Headline numbers the worker reported.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Every output file, by path relative to the entry.
    pub outputs: BTreeMap<String, OutputFile>,
    /// The libtorch version of the worker that computed it (empty: written in-process).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub torch: String,
    /// The device the worker ran the stage on (`cpu`, `cuda:0`; empty: not recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// The threads of the worker's CPU tensor work (0: not recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub threads: usize,
    /// The version of the `difflow` that committed the entry (empty: not recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub difflow: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    pub blake3: String,
    pub size: u64,
}

impl Manifest {
    /// The digests that stand for the results (`difflow.lock`, `difflow compare`): every
    /// output but the live training logs, whose wall-clock times differ from run to run.
    /// The manifest still digests the logs, so `verify` catches their corruption.
    pub fn output_digests(&self) -> BTreeMap<String, String> {
        let logs = format!("{LOG_DIR}/");
        self.outputs.iter().filter(|(k, _)| !k.starts_with(&logs)).map(|(k, v)| (k.clone(), v.blake3.clone())).collect()
    }
    pub fn total_size(&self) -> u64 {
        self.outputs.values().map(|o| o.size).sum()
    }
}

/// A held per-entry lock; released when dropped.
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    pub fn staging_dir(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.staging"))
    }

    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    /// The manifest of a complete entry (folder present, manifest readable and naming this
    /// key). Does not verify output digests: see [`Cache::verify`].
    pub fn manifest(&self, key: &str) -> Option<Manifest> {
        let text = std::fs::read_to_string(self.entry_dir(key).join(MANIFEST)).ok()?;
        let m: Manifest = toml::from_str(&text).ok()?;
        (m.key == key).then_some(m)
    }

    pub fn is_complete(&self, key: &str) -> bool {
        self.manifest(key).is_some()
    }

    /// Check every output against the manifest's size and digest.
    pub fn verify(&self, key: &str) -> Result<Manifest, String> {
        let m = self.manifest(key).ok_or_else(|| "the entry has no valid manifest".to_string())?;
        let dir = self.entry_dir(key);
        for (rel, out) in &m.outputs {
            let path = dir.join(rel);
            let meta = std::fs::metadata(&path).map_err(|_| format!("`{rel}` is missing"))?;
            if meta.len() != out.size {
                return Err(format!("`{rel}` has {} bytes, the manifest says {}", meta.len(), out.size));
            }
            let d = hash_file(&path).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
            if d != out.blake3 {
                return Err(format!("`{rel}` does not match its digest"));
            }
        }
        Ok(m)
    }

    /// Take the entry's lock, waiting for another process that holds it. `on_wait` is
    /// called once if the lock is busy (to tell the user why nothing happens).
    pub fn lock(&self, key: &str, on_wait: impl FnOnce()) -> io::Result<EntryLock> {
        std::fs::create_dir_all(&self.dir)?;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.lock_path(key))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(EntryLock { _file: file, key: key.to_string() })
    }

    /// The lock if nobody holds it.
    pub fn try_lock(&self, key: &str) -> io::Result<Option<EntryLock>> {
        std::fs::create_dir_all(&self.dir)?;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.lock_path(key))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(EntryLock { _file: file, key: key.to_string() })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// The staging folder for a locked key. A folder left by an interrupted run is kept
    /// (training resumes from its checkpoints) unless `fresh`.
    pub fn staging(&self, lock: &EntryLock, fresh: bool) -> io::Result<PathBuf> {
        let dir = self.staging_dir(&lock.key);
        if fresh && dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        // A manifest left by a run killed between writing it and the rename must not be
        // taken for an output of the next run.
        let _ = std::fs::remove_file(dir.join(MANIFEST));
        Ok(dir)
    }

    /// Digest the staged outputs, write the manifest and move the staging folder into
    /// place (replacing an older entry of the key, e.g. a forced rerun or a corrupt one).
    pub fn commit(&self, lock: &EntryLock, mut manifest: Manifest) -> io::Result<Manifest> {
        let staging = self.staging_dir(&lock.key);
        let mut files = Vec::new();
        list_files(&staging, Path::new(""), &mut files)?;
        files.sort();
        manifest.key = lock.key.clone();
        manifest.outputs.clear();
        for rel in files {
            let name = rel.to_string_lossy().replace('\\', "/");
            if name == MANIFEST {
                continue;
            }
            let path = staging.join(&rel);
            let size = std::fs::metadata(&path)?.len();
            manifest.outputs.insert(name, OutputFile { blake3: hash_file(&path)?, size });
        }
        let text = toml::to_string(&manifest).map_err(io::Error::other)?;
        let tmp = staging.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&tmp, text)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, staging.join(MANIFEST))?;
        let final_dir = self.entry_dir(&lock.key);
        if final_dir.exists() {
            self.discard(&final_dir)?;
        }
        std::fs::rename(&staging, &final_dir)?;
        Ok(manifest)
    }

    /// Whether `key` names difflow's own folders: a committed entry (a manifest naming the
    /// key) or the staging folder of a run (beside its lock file). A user's folder that
    /// merely has a hexadecimal name is neither.
    pub fn is_entry(&self, key: &str) -> bool {
        let beside_lock = |dir: PathBuf| dir.is_dir() && self.lock_path(key).is_file();
        self.is_complete(key)
            || beside_lock(self.staging_dir(key))
            || beside_lock(self.dir.join(format!("{key}.pulling")))
    }

    /// Remove an entry and its staging folder (its lock must be held). A folder under the
    /// key's name that is no entry (no manifest naming the key) is left alone.
    pub fn remove(&self, lock: &EntryLock) -> io::Result<()> {
        let dir = self.entry_dir(&lock.key);
        if self.is_complete(&lock.key) {
            self.discard(&dir)?;
        }
        let staging = self.staging_dir(&lock.key);
        if staging.is_dir() && self.lock_path(&lock.key).is_file() {
            std::fs::remove_dir_all(staging)?;
        }
        // The download folder of a pull that was killed (`remote::transfer`).
        let pulling = self.dir.join(format!("{}.pulling", lock.key));
        if pulling.is_dir() {
            std::fs::remove_dir_all(pulling)?;
        }
        // Leftovers of a removal that was interrupted (see `discard`).
        let trash = format!("{}.trash", lock.key);
        for entry in std::fs::read_dir(&self.dir)?.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with(&trash) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }

    /// Move a folder out of the way first, so that it stops counting at once even if
    /// deleting its files is interrupted.
    fn discard(&self, dir: &Path) -> io::Result<()> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let trash = self.dir.join(format!("{name}.trash{}", std::process::id()));
        std::fs::rename(dir, &trash)?;
        std::fs::remove_dir_all(trash)
    }

    /// Keys of all folders in the cache that look like entries (committed or not).
    pub fn keys(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.split('.').next().unwrap_or("").to_string();
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(key);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Bytes under a folder.
    pub fn disk_size(path: &Path) -> u64 {
        let mut files = Vec::new();
        if list_files(path, Path::new(""), &mut files).is_err() {
            return 0;
        }
        files.iter().filter_map(|f| std::fs::metadata(path.join(f)).ok()).map(|m| m.len()).sum()
    }
}

/// Now, as UTC RFC 3339 (`2026-11-28T13:45:41Z`).
pub fn utc_now() -> String {
    utc_string(SystemTime::now())
}

pub fn utc_string(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A human size: `12.3 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(key: &str) -> Manifest {
        Manifest {
            key: key.into(),
            kind: "sample".into(),
            variant: "default".into(),
            instances: vec!["gen".into()],
            started: utc_now(),
            finished: utc_now(),
            duration_s: 0.5,
            params: "{}".into(),
            key_material: "{}".into(),
            inputs: [("ddpm".to_string(), "ab".to_string())].into_iter().collect(),
            metrics: [("fid".to_string(), 3.5)].into_iter().collect(),
            outputs: BTreeMap::new(),
            torch: String::new(),
            device: String::new(),
            threads: 0,
            difflow: String::new(),
        }
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(utc_string(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(UNIX_EPOCH + std::time::Duration::from_secs(1_795_873_541)), "2026-11-28T13:45:41Z");
    }

    #[test]
    fn staged_outputs_count_only_after_commit_and_corruption_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path().join("cache"));
        let key = "00aa";
        let lock = cache.lock(key, || panic!("nobody else holds it")).unwrap();
        let staging = cache.staging(&lock, false).unwrap();
        std::fs::create_dir_all(staging.join("sub")).unwrap();
        std::fs::write(staging.join("samples.bin"), b"0123").unwrap();
        std::fs::write(staging.join("sub/grid.png"), b"png").unwrap();
        assert!(!cache.is_complete(key), "a staged entry must not count");
        let m = cache.commit(&lock, draft(key)).unwrap();
        assert!(cache.is_complete(key));
        assert!(!cache.staging_dir(key).exists());
        assert_eq!(m.outputs.len(), 2);
        assert_eq!(m.outputs["sub/grid.png"].size, 3);
        assert_eq!(cache.manifest(key).unwrap(), m);
        assert!(cache.verify(key).is_ok());
        std::fs::write(cache.entry_dir(key).join("samples.bin"), b"0124").unwrap();
        assert!(cache.verify(key).unwrap_err().contains("samples.bin"));
        std::fs::remove_file(cache.entry_dir(key).join("samples.bin")).unwrap();
        assert!(cache.verify(key).unwrap_err().contains("missing"));
        assert_eq!(cache.keys().unwrap(), [key]);
        cache.remove(&lock).unwrap();
        assert!(!cache.is_complete(key));
    }

    #[test]
    fn live_logs_are_digested_but_left_out_of_the_compared_digests() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path().join("cache"));
        let lock = cache.lock("00bb", || panic!("nobody else holds it")).unwrap();
        let staging = cache.staging(&lock, false).unwrap();
        std::fs::create_dir_all(staging.join("logs")).unwrap();
        std::fs::write(staging.join("model.safetensors"), b"w").unwrap();
        std::fs::write(staging.join("logs/events.out.tfevents.1.host"), b"e").unwrap();
        std::fs::write(staging.join("logsheet.csv"), b"c").unwrap();
        let m = cache.commit(&lock, draft("00bb")).unwrap();
        assert!(m.outputs.contains_key("logs/events.out.tfevents.1.host"));
        let compared: Vec<String> = m.output_digests().into_keys().collect();
        assert_eq!(compared, ["logsheet.csv", "model.safetensors"]);
    }

    #[test]
    fn a_manifest_with_another_key_does_not_count() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        std::fs::create_dir_all(cache.entry_dir("bb")).unwrap();
        std::fs::write(cache.entry_dir("bb").join(MANIFEST), toml::to_string(&draft("cc")).unwrap()).unwrap();
        assert!(!cache.is_complete("bb"));
    }

    #[test]
    fn the_lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let held = cache.try_lock("k1").unwrap();
        assert!(held.is_some());
        assert!(cache.try_lock("k1").unwrap().is_none());
        assert!(cache.try_lock("k2").unwrap().is_some());
        drop(held);
        assert!(cache.try_lock("k1").unwrap().is_some());
    }

    #[test]
    fn a_user_folder_with_a_hexadecimal_name_is_no_entry() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        std::fs::create_dir_all(d.path().join("cafe")).unwrap();
        std::fs::write(d.path().join("cafe/notes.txt"), b"mine").unwrap();
        std::fs::create_dir_all(d.path().join("beef.staging")).unwrap();
        assert!(!cache.is_entry("cafe") && !cache.is_entry("beef"));
        let lock = cache.try_lock("cafe").unwrap().unwrap();
        cache.remove(&lock).unwrap();
        assert_eq!(std::fs::read(d.path().join("cafe/notes.txt")).unwrap(), b"mine");
    }

    #[test]
    fn the_download_folder_of_a_killed_pull_is_an_entry_that_remove_clears() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let lock = cache.try_lock("ab12").unwrap().unwrap();
        std::fs::create_dir_all(d.path().join("ab12.pulling/sub")).unwrap();
        std::fs::write(d.path().join("ab12.pulling/sub/half.bin"), b"12").unwrap();
        assert!(cache.is_entry("ab12") && !cache.is_complete("ab12"));
        cache.remove(&lock).unwrap();
        assert!(!d.path().join("ab12.pulling").exists());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(12_300_000), "12.3 MB");
    }
}
