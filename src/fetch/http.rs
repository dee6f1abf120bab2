//! HTTP requests as the fetcher makes them: the raw bytes only (`Accept-Encoding:
//! identity`, and ureq is built without its gzip decoder, so a reply is never inflated
//! on the way to disk), redirects followed here rather than by ureq, to http and https
//! only (ureq panics on a URL without a host, such as `file:///etc/passwd`), at most
//! [`MAX_REDIRECTS`] of them. ureq's overall timeout would replace its read timeout (and
//! so hide a stall until the deadline): the deadline bounds each wait instead, and the
//! caller checks it between reads.

use std::time::{Duration, Instant};

/// Redirects followed for one request (the Hub sends one, to its CDN).
pub const MAX_REDIRECTS: usize = 5;

/// Why a request got no usable reply.
pub enum CallError {
    /// The server answered with an error status (4xx or 5xx).
    Status(u16, Box<ureq::Response>),
    /// No reply, or a redirect that is not followed.
    Failed(String),
}

/// An agent that follows no redirect itself, waits at most `connect_timeout` for a
/// connection and `read_timeout` for bytes, neither beyond `deadline`.
pub fn agent(connect_timeout: Duration, read_timeout: Duration, deadline: Instant) -> ureq::Agent {
    let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    ureq::AgentBuilder::new()
        .timeout_connect(connect_timeout.min(remaining))
        .timeout_read(read_timeout.min(remaining))
        .redirects(0)
        .build()
}

/// Send `method url` with `headers`, following redirects to http(s) URLs; no request
/// starts after `deadline`.
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    deadline: Instant,
) -> Result<ureq::Response, CallError> {
    let mut url = checked_url(url, None)?;
    for _ in 0..=MAX_REDIRECTS {
        if Instant::now() >= deadline {
            return Err(CallError::Failed("the deadline passed".into()));
        }
        let mut request = agent.request_url(method, &url).set("Accept-Encoding", "identity");
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => return Err(CallError::Status(code, Box::new(r))),
            Err(ureq::Error::Transport(t)) => return Err(CallError::Failed(t.to_string())),
        };
        if !(300..400).contains(&response.status()) {
            return Ok(response);
        }
        let Some(location) = response.header("Location") else {
            return Err(CallError::Failed(format!(
                "the server answered HTTP {} without a Location",
                response.status()
            )));
        };
        url = checked_url(location, Some(&url))?;
    }
    Err(CallError::Failed(format!("more than {MAX_REDIRECTS} redirects")))
}

/// `target` (relative to `from` for a redirect) when it is an http(s) URL with a host; a
/// redirect from https may not go to plain http.
fn checked_url(target: &str, from: Option<&url::Url>) -> Result<url::Url, CallError> {
    let parsed = match from {
        Some(base) => base.join(target),
        None => url::Url::parse(target),
    };
    let what = if from.is_some() { "a redirect to" } else { "the URL" };
    let url = parsed.map_err(|e| CallError::Failed(format!("{what} `{target}` is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(CallError::Failed(format!(
            "{what} `{target}` is refused: only http:// and https:// URLs with a host are fetched"
        )));
    }
    if from.is_some_and(|f| f.scheme() == "https") && url.scheme() == "http" {
        return Err(CallError::Failed(format!("a redirect from https to `{target}` is refused (plain http)")));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: &str, from: Option<&str>) -> Result<String, String> {
        let from = from.map(|f| url::Url::parse(f).unwrap());
        match checked_url(target, from.as_ref()) {
            Ok(u) => Ok(u.to_string()),
            Err(CallError::Failed(m)) => Err(m),
            Err(CallError::Status(..)) => unreachable!(),
        }
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_followed() {
        assert_eq!(check("/b/c", Some("http://h:1/a")).unwrap(), "http://h:1/b/c");
        assert_eq!(check("https://cdn/x", Some("http://h/a")).unwrap(), "https://cdn/x");
        for bad in ["file:///etc/passwd", "ftp://h/x", "data:text/plain,x", "unix:/run/x"] {
            let err = check(bad, Some("http://h/a")).unwrap_err();
            assert!(err.contains("refused") || err.contains("not a valid URL"), "{bad}: {err}");
        }
        assert!(check("http://h/x", Some("https://h/a")).unwrap_err().contains("plain http"));
        assert!(check("file:///etc/passwd", None).unwrap_err().contains("only http:// and https://"));
        assert!(check("not a url", None).unwrap_err().contains("not a valid URL"));
    }
}
