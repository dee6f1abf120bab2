//! Remote caches: entries shared between machines and colleagues, by the same keys as the
//! local cache. A remote holds content-addressed file blobs, `cas/<blake3>`, and one
//! manifest per key, `ac/<key>.toml` (the layout of Bazel's HTTP cache). A push uploads
//! the blobs first and the manifest last, so a pull during a push, or after a push that
//! died, sees either no manifest or every file it names; two pushers of one key write the
//! same bytes to the same names. A pull trusts nothing it receives: each file is checked
//! against the manifest's digest, and the manifest's key material against the local key.
//!
//! One small module per backend ([`folder`], [`http`], [`s3`]) behind the [`Backend`] trait.
//! Moving entries: [`push`] and [`pull`], several files at once ([`pool`]), each with a
//! progress bar or plain lines ([`meter`]).

mod aws_config;
pub mod folder;
pub mod http;
pub mod meter;
pub mod pool;
pub mod pull;
pub mod push;
pub mod run;
pub mod s3;
#[cfg(test)]
mod test_server;
pub mod transfer;

use std::io::Write;
use std::path::Path;

pub use pull::pull_entry;
pub use push::push_entry;
pub use transfer::{PullOutcome, Transfer, Transfers};

/// The largest manifest a remote may send (a sample stage lists a few files; a folder of
/// images a few thousand).
pub const MANIFEST_LIMIT: u64 = 16 << 20;

/// What a storage service must offer: whole-object get, put and existence, by a path
/// relative to the remote's root (`cas/…`, `ac/…`).
pub trait Backend: Send + Sync {
    /// Copy the object into `sink`, at most `limit` bytes (more is an error). `Ok(false)`:
    /// no such object.
    fn get(&self, path: &str, sink: &mut dyn Write, limit: u64) -> Result<bool, String>;
    /// Store `src` (`size` bytes) under `path` so that readers see all of it or nothing.
    fn put(&self, path: &str, src: &Path, size: u64) -> Result<(), String>;
    /// The object's size: `Ok(None)` when there is no such object, `Some(None)` when the
    /// service does not say how large it is.
    fn size(&self, path: &str) -> Result<Option<Option<u64>>, String>;
    fn exists(&self, path: &str) -> Result<bool, String> {
        Ok(self.size(path)?.is_some())
    }
    /// The names in a folder of the remote; `None` when the service cannot list.
    fn list(&self, dir: &str) -> Result<Option<Vec<String>>, String>;
    /// The object's address, for messages.
    fn url(&self, path: &str) -> String;
    /// [`Backend::put`], calling `sent` with each run of bytes as it goes out (progress
    /// bars); without an override, once with `size` at the end.
    fn put_counted(&self, path: &str, src: &Path, size: u64, sent: &(dyn Fn(u64) + Sync)) -> Result<(), String> {
        self.put(path, src, size)?;
        sent(size);
        Ok(())
    }
}

/// An opened remote: its address and its backend.
pub struct Remote {
    pub url: String,
    backend: Box<dyn Backend>,
}

impl Remote {
    /// `file:///folder`, `http(s)://host/prefix` or `s3://bucket/prefix`, as `[remote]`
    /// of difflow.toml names it (with the S3 endpoint and region, if it gives them).
    pub fn open(settings: &run::RemoteSettings) -> Result<Remote, String> {
        let url = settings.url.as_str();
        if !url.starts_with("s3://") && (settings.endpoint.is_some() || settings.region.is_some()) {
            return Err(format!(
                "remote `{}`: `endpoint` and `region` are settings of s3:// remotes",
                http::redacted(url)
            ));
        }
        let backend: Box<dyn Backend> = if url.starts_with("file://") {
            Box::new(folder::Folder::open(url)?)
        } else if url.starts_with("http://") || url.starts_with("https://") {
            Box::new(http::Http::open(url)?)
        } else if url.starts_with("s3://") {
            Box::new(s3::S3::open(url, settings.endpoint.as_deref(), settings.region.as_deref())?)
        } else {
            return Err(format!(
                "remote `{}`: use file:///FOLDER, http://HOST/PREFIX, https://HOST/PREFIX or s3://BUCKET/PREFIX",
                http::redacted(url)
            ));
        };
        Ok(Remote { url: http::redacted(url), backend })
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The keys the remote holds manifests for; `None` when it cannot list them.
    pub fn keys(&self) -> Result<Option<Vec<String>>, String> {
        let Some(names) = self.backend.list("ac")? else { return Ok(None) };
        let mut keys: Vec<String> =
            names.iter().filter_map(|n| n.strip_suffix(".toml")).filter(|k| is_key(k)).map(str::to_string).collect();
        keys.sort();
        Ok(Some(keys))
    }
}

pub fn manifest_path(key: &str) -> String {
    format!("ac/{key}.toml")
}

pub fn blob_path(digest: &str) -> String {
    format!("cas/{digest}")
}

/// A stage key: lowercase hex (it becomes part of a remote path).
pub fn is_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A blake3 digest as manifests write it: 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && is_key(s)
}

/// `12.3 MB in 0.4 s (30.8 MB/s)`.
pub fn rate_text(bytes: u64, secs: f64) -> String {
    let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    format!(
        "{} in {secs:.2} s ({}/s)",
        crate::cache::store::human_size(bytes),
        crate::cache::store::human_size(rate as u64)
    )
}
