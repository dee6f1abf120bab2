//! A remote behind plain HTTP(S): GET, PUT and HEAD of whole objects, the protocol of
//! Bazel's HTTP cache (bazel-remote, nginx or Apache with WebDAV PUT, most object-store
//! gateways). An HTTP server cannot list its objects, so `cache ls --remote` asks it for
//! the keys of the named pipelines.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use super::meter::Counting;
use super::Backend;

/// The variable that holds the password of an HTTP remote whose URL names only the user
/// (`https://alice@cache.lab/difflow`), so that `difflow.toml` can be committed.
pub const PASSWORD_VAR: &str = "DIFFLOW_REMOTE_PASSWORD";

pub struct Http {
    /// With the credentials (ureq sends them as HTTP Basic authentication).
    base: String,
    /// Without the password, for messages.
    shown: String,
    agent: ureq::Agent,
}

/// The URL as messages may show it: the password replaced by `***`.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl Http {
    pub fn open(url: &str) -> Result<Http, String> {
        let mut parsed =
            url::Url::parse(url).map_err(|e| format!("remote `{}` is not a valid URL: {e}", redacted(url)))?;
        if !parsed.username().is_empty() && parsed.password().is_none() {
            if let Some(password) = std::env::var_os(PASSWORD_VAR) {
                let _ = parsed.set_password(Some(&password.to_string_lossy()));
            }
        }
        let full = parsed.to_string();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .build();
        Ok(Http {
            base: full.trim_end_matches('/').to_string(),
            shown: redacted(&full).trim_end_matches('/').to_string(),
            agent,
        })
    }
}

impl Http {
    fn request_url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

fn failure(url: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, r) => format!("{url}: the server answered {code} {}", r.status_text()),
        // Not the error's own text: it quotes the URL with the password.
        ureq::Error::Transport(t) => match t.message() {
            Some(m) => format!("{url}: {}: {m}", t.kind()),
            None => format!("{url}: {}", t.kind()),
        },
    }
}

impl Backend for Http {
    fn get(&self, path: &str, sink: &mut dyn Write, limit: u64) -> Result<bool, String> {
        let url = self.url(path);
        let response = match self.agent.get(&self.request_url(path)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(404, _)) => return Ok(false),
            Err(e) => return Err(failure(&url, e)),
        };
        let copied = std::io::copy(&mut response.into_reader().take(limit + 1), sink)
            .map_err(|e| format!("{url}: the download broke off: {e}"))?;
        if copied > limit {
            return Err(format!("{url} has more than the {limit} bytes expected"));
        }
        Ok(true)
    }

    fn put(&self, path: &str, src: &Path, size: u64) -> Result<(), String> {
        self.put_counted(path, src, size, &|_| {})
    }

    fn put_counted(&self, path: &str, src: &Path, size: u64, sent: &(dyn Fn(u64) + Sync)) -> Result<(), String> {
        let url = self.url(path);
        let file = std::fs::File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        // A length instead of chunked encoding: not every cache server takes chunks.
        self.agent
            .put(&self.request_url(path))
            .set("Content-Length", &size.to_string())
            .send(Counting { inner: std::io::BufReader::with_capacity(1 << 20, file), sent })
            .map_err(|e| failure(&url, e))?;
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool, String> {
        let url = self.url(path);
        match self.agent.head(&self.request_url(path)).call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(failure(&url, e)),
        }
    }

    fn list(&self, _dir: &str) -> Result<Option<Vec<String>>, String> {
        Ok(None)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.shown)
    }
}
