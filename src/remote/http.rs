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
        Ok(Http {
            base: full.trim_end_matches('/').to_string(),
            shown: redacted(&full).trim_end_matches('/').to_string(),
            agent: agent(),
        })
    }
}

/// The HTTP client of the http and s3 backends. It follows no redirect: ureq turns a PUT
/// that meets a 301/302 into a GET, whose 200 would fake an upload, a HEAD's redirect
/// would read as "present", and an S3 signature holds for one host and path only.
pub(super) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(120))
        .timeout_write(Duration::from_secs(120))
        .redirects(0)
        .build()
}

impl Http {
    fn request_url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

/// The reply, or None for a 404; any other reply than 2xx is an error naming `url`.
fn answered(url: &str, result: Result<ureq::Response, ureq::Error>) -> Result<Option<ureq::Response>, String> {
    match result {
        Ok(r) if (200..300).contains(&r.status()) => Ok(Some(r)),
        Ok(r) => {
            let moved = r.header("location").map(|l| format!(" (to {}: set the remote's URL to it)", redacted(l)));
            Err(format!("{url}: the server answered {} {}{}", r.status(), r.status_text(), moved.unwrap_or_default()))
        }
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(e) => Err(failure(url, e)),
    }
}

fn failure(url: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, r) => format!("{url}: the server answered {code} {}", r.status_text()),
        ureq::Error::Transport(t) => transport_failure(url, &t),
    }
}

/// A request that got no answer, as a message naming `url`: not the error's own text,
/// which quotes the request's URL (with a password, or an S3 signature).
pub(super) fn transport_failure(url: &str, t: &ureq::Transport) -> String {
    match t.message() {
        Some(m) => format!("{url}: {}: {m}", t.kind()),
        None => format!("{url}: {}", t.kind()),
    }
}

/// The length an answer gives, if any (a HEAD's is the object's size).
pub(super) fn content_length(r: &ureq::Response) -> Option<u64> {
    r.header("content-length").and_then(|n| n.trim().parse().ok())
}

/// The body of an answer into `sink`: at most `limit` bytes, more is an error naming `url`.
pub(super) fn download(url: &str, response: ureq::Response, sink: &mut dyn Write, limit: u64) -> Result<(), String> {
    let copied = std::io::copy(&mut response.into_reader().take(limit + 1), sink)
        .map_err(|e| format!("{url}: the download broke off: {e}"))?;
    if copied > limit {
        return Err(format!("{url} has more than the {limit} bytes expected"));
    }
    Ok(())
}

impl Backend for Http {
    fn get(&self, path: &str, sink: &mut dyn Write, limit: u64) -> Result<bool, String> {
        let url = self.url(path);
        let Some(response) = answered(&url, self.agent.get(&self.request_url(path)).call())? else {
            return Ok(false);
        };
        download(&url, response, sink, limit)?;
        Ok(true)
    }

    fn put(&self, path: &str, src: &Path, size: u64) -> Result<(), String> {
        self.put_counted(path, src, size, &|_| {})
    }

    fn put_counted(&self, path: &str, src: &Path, size: u64, sent: &(dyn Fn(u64) + Sync)) -> Result<(), String> {
        let url = self.url(path);
        let file = std::fs::File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        // A length instead of chunked encoding: not every cache server takes chunks.
        let result = self
            .agent
            .put(&self.request_url(path))
            .set("Content-Length", &size.to_string())
            .send(Counting { inner: std::io::BufReader::with_capacity(1 << 20, file), sent });
        match answered(&url, result)? {
            Some(_) => Ok(()),
            None => Err(format!("{url}: the server answered 404 Not Found to an upload")),
        }
    }

    fn size(&self, path: &str) -> Result<Option<Option<u64>>, String> {
        let url = self.url(path);
        Ok(answered(&url, self.agent.head(&self.request_url(path)).call())?.map(|r| content_length(&r)))
    }

    fn list(&self, _dir: &str) -> Result<Option<Vec<String>>, String> {
        Ok(None)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::test_server::answering;

    #[test]
    fn a_redirect_is_an_error_never_an_answer() {
        let elsewhere = answering("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbytes".into());
        let base = answering(format!(
            "HTTP/1.1 302 Found\r\nLocation: {elsewhere}/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let remote = Http::open(&base).unwrap();
        let expect = |why: String| {
            assert!(
                why.starts_with(&format!("{base}/cas/abc: the server answered 302 Found (to {elsewhere}/x")),
                "{why}"
            )
        };
        expect(remote.exists("cas/abc").unwrap_err());
        expect(remote.get("cas/abc", &mut Vec::new(), 10).unwrap_err());
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"bytes").unwrap();
        expect(remote.put("cas/abc", file.path(), 5).unwrap_err());
    }
}
