//! A remote behind plain HTTP(S): GET, PUT and HEAD of whole objects, the protocol of
//! Bazel's HTTP cache (bazel-remote, nginx or Apache with WebDAV PUT, most object-store
//! gateways). An HTTP server cannot list its objects, so `cache ls --remote` asks it for
//! the keys of the named pipelines.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use super::Backend;

pub struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn open(url: &str) -> Result<Http, String> {
        url::Url::parse(url).map_err(|e| format!("remote `{url}` is not a valid URL: {e}"))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .build();
        Ok(Http { base: url.trim_end_matches('/').to_string(), agent })
    }
}

fn failure(url: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, r) => format!("{url}: the server answered {code} {}", r.status_text()),
        ureq::Error::Transport(t) => format!("{url}: {t}"),
    }
}

impl Backend for Http {
    fn get(&self, path: &str, sink: &mut dyn Write, limit: u64) -> Result<bool, String> {
        let url = self.url(path);
        let response = match self.agent.get(&url).call() {
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
        let url = self.url(path);
        let file = std::fs::File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        // A length instead of chunked encoding: not every cache server takes chunks.
        self.agent.put(&url).set("Content-Length", &size.to_string()).send(file).map_err(|e| failure(&url, e))?;
        Ok(())
    }

    fn exists(&self, path: &str) -> Result<bool, String> {
        let url = self.url(path);
        match self.agent.head(&url).call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(e) => Err(failure(&url, e)),
        }
    }

    fn list(&self, _dir: &str) -> Result<Option<Vec<String>>, String> {
        Ok(None)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}
