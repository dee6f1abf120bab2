//! A remote in an S3 bucket (`s3://BUCKET/PREFIX`): AWS, or any S3-compatible server
//! (MinIO, Ceph's RADOS Gateway, Garage) through an endpoint. rusty-s3 signs each request
//! (SigV4, as a URL valid for an hour) and reads the XML of listings; ureq, the HTTP
//! client difflow has anyway, sends it. An S3 PUT replaces an object whole, so readers
//! never see part of one.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::aws_config::{self, AwsConfig};
use super::http::{content_length, download, transport_failure};
use super::Backend;

/// How long a signed request stays valid: long enough for a slow upload to start.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// The most of an error reply read for its `<Code>` and `<Message>`.
const ERROR_BODY_LIMIT: u64 = 64 << 10;
/// The largest page of a listing accepted (S3 sends at most 1000 keys, about 300 kB).
const LISTING_LIMIT: u64 = 16 << 20;

pub struct S3 {
    bucket: Bucket,
    /// `""` or `a/b/`: where the remote's `cas/` and `ac/` are in the bucket.
    prefix: String,
    /// `s3://BUCKET/PREFIX` without the trailing slash, for messages.
    shown: String,
    credentials: Result<Credentials, String>,
    agent: ureq::Agent,
}

impl S3 {
    /// `endpoint`: the `[remote]` setting, which comes before the environment's. With an
    /// endpoint the bucket is addressed by path (`http://HOST/BUCKET/KEY`), as MinIO and
    /// Ceph expect; on AWS by host name (`https://BUCKET.s3.REGION.amazonaws.com/KEY`).
    pub fn open(url: &str, endpoint: Option<&str>, region: Option<&str>) -> Result<S3, String> {
        let config = aws_config::load().map_err(|e| format!("remote `{}`: {e}", super::http::redacted(url)))?;
        S3::with_config(url, endpoint, region, config)
    }

    /// [`S3::open`] with the environment's and the profile's settings given.
    fn with_config(url: &str, endpoint: Option<&str>, region: Option<&str>, config: AwsConfig) -> Result<S3, String> {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("remote `{}` is not a valid URL: {e}", super::http::redacted(url)))?;
        let name = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("remote `{url}`: an S3 remote is s3://BUCKET or s3://BUCKET/PREFIX"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
            return Err(format!(
                "remote `{}`: an S3 URL carries no credentials or options; credentials come from \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or ~/.aws/credentials",
                super::http::redacted(url)
            ));
        }
        let path = parsed.path().trim_matches('/');
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let shown = format!("s3://{name}/{path}").trim_end_matches('/').to_string();
        let region = region.map(str::to_string).or(config.region).unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = endpoint.map(str::to_string).or(config.endpoint);
        let (base, style) = match &endpoint {
            Some(e) => (e.clone(), UrlStyle::Path),
            // Dotted names break TLS of virtual hosts (the certificate is for *.s3…).
            None if name.contains('.') => (format!("https://s3.{region}.amazonaws.com"), UrlStyle::Path),
            None => (format!("https://s3.{region}.amazonaws.com"), UrlStyle::VirtualHost),
        };
        let base_shown = super::http::redacted(&base);
        let base_url = url::Url::parse(&base)
            .map_err(|e| format!("remote `{shown}`: the endpoint `{base_shown}` is not a valid URL: {e}"))?;
        let bucket = Bucket::new(base_url, style, name.to_string(), region).map_err(|e| {
            format!("remote `{shown}`: the endpoint `{base_shown}` is no http(s)://HOST[:PORT] address ({e:?})")
        })?;
        let credentials = config.keys.map(|k| match k.token {
            Some(token) => Credentials::new_with_token(k.id, k.secret, token),
            None => Credentials::new(k.id, k.secret),
        });
        Ok(S3 { bucket, prefix, shown, credentials, agent: super::http::agent() })
    }

    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    fn credentials(&self) -> Result<&Credentials, String> {
        self.credentials.as_ref().map_err(|why| format!("remote `{}`: {why}", self.shown))
    }

    /// Send a signed request; `Ok(None)` for 404.
    fn send(&self, path: &str, signed: url::Url, body: Option<(&Path, u64)>) -> Result<Option<ureq::Response>, String> {
        let method = if body.is_some() { "PUT" } else { "GET" };
        let request = self.agent.request_url(method, &signed);
        let result = match body {
            Some((src, size)) => {
                let file = std::fs::File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
                request.set("Content-Length", &size.to_string()).send(file)
            }
            None => request.call(),
        };
        match result {
            Ok(r) if !(200..300).contains(&r.status()) => Err(refusal(&self.url(path), r)),
            Ok(r) => Ok(Some(r)),
            Err(ureq::Error::Status(404, r)) => match error_code(r).as_deref() {
                Some("NoSuchBucket") => {
                    Err(format!("{}: the bucket {} does not exist", self.url(path), self.bucket.name()))
                }
                _ => Ok(None),
            },
            Err(e) => Err(failure(&self.url(path), e)),
        }
    }
}

/// A reply other than 2xx as a message. AWS answers a request to the wrong region with
/// a redirect that names the right one, which ureq does not follow (no `Location`).
fn refusal(url: &str, r: ureq::Response) -> String {
    let code = r.status();
    let status = r.status_text().to_string();
    let region = r.header("x-amz-bucket-region").map(str::to_string);
    let mut body = String::new();
    let _ = r.into_reader().take(ERROR_BODY_LIMIT).read_to_string(&mut body);
    let reason = match (xml_field(&body, "Code"), xml_field(&body, "Message")) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        // A HEAD reply has no body to say why.
        _ if code == 403 => ": access denied (check the credentials and the bucket's policy)".to_string(),
        _ => String::new(),
    };
    let hint = match region {
        Some(region) if (300..=400).contains(&code) => {
            format!(" (the bucket is in the region {region}: set `region = \"{region}\"` in [remote])")
        }
        _ => String::new(),
    };
    format!("{url}: the server answered {code} {status}{reason}{hint}")
}

/// The `<Code>` of an S3 error reply, if it has one.
fn error_code(r: ureq::Response) -> Option<String> {
    let mut body = String::new();
    r.into_reader().take(ERROR_BODY_LIMIT).read_to_string(&mut body).ok()?;
    xml_field(&body, "Code")
}

fn xml_field(body: &str, tag: &str) -> Option<String> {
    let (_, rest) = body.split_once(&format!("<{tag}>"))?;
    let (value, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(value.trim().to_string())
}

/// A failed request as a message: the object's `s3://` address and the server's reason.
/// Never the request's own URL, which carries the access key's id and signature.
fn failure(url: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(_, r) => refusal(url, r),
        ureq::Error::Transport(t) => transport_failure(url, &t),
    }
}

impl Backend for S3 {
    fn get(&self, path: &str, sink: &mut dyn Write, limit: u64) -> Result<bool, String> {
        let url = self.url(path);
        let key = self.key(path);
        let signed = self.bucket.get_object(Some(self.credentials()?), &key).sign(SIGNED_FOR);
        let Some(response) = self.send(path, signed, None)? else { return Ok(false) };
        download(&url, response, sink, limit)?;
        Ok(true)
    }

    fn put(&self, path: &str, src: &Path, size: u64) -> Result<(), String> {
        let key = self.key(path);
        let signed = self.bucket.put_object(Some(self.credentials()?), &key).sign(SIGNED_FOR);
        self.send(path, signed, Some((src, size)))?
            .map(|_| ())
            .ok_or_else(|| format!("{}: the server answered 404 Not Found", self.url(path)))
    }

    fn size(&self, path: &str) -> Result<Option<Option<u64>>, String> {
        let key = self.key(path);
        let signed = self.bucket.head_object(Some(self.credentials()?), &key).sign(SIGNED_FOR);
        let url = self.url(path);
        match self.agent.request_url("HEAD", &signed).call() {
            Ok(r) if !(200..300).contains(&r.status()) => Err(refusal(&url, r)),
            Ok(r) => Ok(Some(content_length(&r))),
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(e) => Err(failure(&url, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Option<Vec<String>>, String> {
        let folder = format!("{}{dir}/", self.prefix);
        let url = self.url(dir);
        let credentials = self.credentials()?;
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(credentials));
            action.with_prefix(folder.as_str());
            action.with_delimiter("/");
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let Some(response) = self.send(dir, action.sign(SIGNED_FOR), None)? else {
                return Err(format!("{url}: the server answered 404 Not Found"));
            };
            let mut text = String::new();
            response
                .into_reader()
                .take(LISTING_LIMIT)
                .read_to_string(&mut text)
                .map_err(|e| format!("{url}: the listing broke off: {e}"))?;
            let page = ListObjectsV2::parse_response(&text)
                .map_err(|e| format!("{url}: the server's listing is not S3's XML ({e})"))?;
            names.extend(page.contents.iter().filter_map(|c| c.key.strip_prefix(&folder)).map(str::to_string));
            match page.next_continuation_token {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => break,
            }
        }
        Ok(Some(names))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use rusty_s3::S3Action;

    use super::{refusal, AwsConfig, S3, SIGNED_FOR};
    use crate::remote::aws_config::Keys;
    use crate::remote::test_server::answering;
    use crate::remote::Backend;

    fn config(region: Option<&str>, endpoint: Option<&str>, token: Option<&str>) -> AwsConfig {
        let keys = Keys { id: "AKIDTEST".into(), secret: "secret".into(), token: token.map(str::to_string) };
        AwsConfig { keys: Ok(keys), region: region.map(str::to_string), endpoint: endpoint.map(str::to_string) }
    }

    /// The signed GET of `path`, as sent.
    fn signed_get(s3: &S3, path: &str) -> String {
        s3.bucket.get_object(Some(s3.credentials().unwrap()), &s3.key(path)).sign(SIGNED_FOR).to_string()
    }

    #[test]
    fn an_endpoint_addresses_the_bucket_by_path_and_the_setting_comes_first() {
        let env = config(Some("eu-west-1"), Some("http://10.0.0.1:1"), None);
        let s3 = S3::with_config("s3://lab/team/cache/", Some("http://127.0.0.1:9000"), None, env).unwrap();
        let url = signed_get(&s3, "cas/abc");
        assert!(url.starts_with("http://127.0.0.1:9000/lab/team/cache/cas/abc?"), "{url}");
        assert!(
            url.contains("X-Amz-Credential=AKIDTEST%2F") && url.contains("%2Feu-west-1%2Fs3%2Faws4_request"),
            "{url}"
        );
        assert!(!url.contains("X-Amz-Security-Token"), "{url}");
        assert_eq!(s3.url("cas/abc"), "s3://lab/team/cache/cas/abc");
    }

    #[test]
    fn aws_is_addressed_by_host_unless_the_bucket_has_a_dot() {
        let s3 = S3::with_config("s3://lab", None, Some("ap-south-1"), config(Some("eu-west-1"), None, Some("tok")))
            .unwrap();
        let url = signed_get(&s3, "ac/k.toml");
        assert!(url.starts_with("https://lab.s3.ap-south-1.amazonaws.com/ac/k.toml?"), "{url}");
        assert!(url.contains("X-Amz-Security-Token=tok"), "{url}");
        assert_eq!(s3.url("ac/k.toml"), "s3://lab/ac/k.toml");
        let s3 = S3::with_config("s3://lab.data/p", None, None, config(None, None, None)).unwrap();
        let url = signed_get(&s3, "cas/abc");
        assert!(url.starts_with("https://s3.us-east-1.amazonaws.com/lab.data/p/cas/abc?"), "{url}");
    }

    #[test]
    fn an_url_with_credentials_is_refused_without_showing_them() {
        let Err(why) = S3::with_config("s3://key:hunter2@lab/p", None, None, config(None, None, None)) else {
            panic!("accepted")
        };
        assert!(why.contains("carries no credentials") && !why.contains("hunter2"), "{why}");
    }

    #[test]
    fn a_redirect_to_another_region_is_an_error_that_names_it() {
        let reply = "HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\n\r\n\
                     <Error><Code>PermanentRedirect</Code><Message>Use the right endpoint.</Message></Error>";
        let why = refusal("s3://lab/p/ac/k.toml", reply.parse().unwrap());
        assert_eq!(
            why,
            "s3://lab/p/ac/k.toml: the server answered 301 Moved Permanently: PermanentRedirect: Use the right \
             endpoint. (the bucket is in the region eu-west-1: set `region = \"eu-west-1\"` in [remote])"
        );
        let why = refusal("s3://lab/x", "HTTP/1.1 403 Forbidden\r\n\r\n".parse().unwrap());
        assert!(why.ends_with("403 Forbidden: access denied (check the credentials and the bucket's policy)"), "{why}");
    }

    #[test]
    fn a_redirect_is_never_taken_for_an_answer() {
        let endpoint = answering(
            "HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string(),
        );
        let s3 = S3::with_config("s3://lab/p", Some(&endpoint), None, config(None, None, None)).unwrap();
        let expect = |result: Result<(), String>, path: &str| {
            let why = result.unwrap_err();
            assert!(why.starts_with(&format!("s3://lab/p/{path}: the server answered 301")), "{why}");
            assert!(why.contains("region eu-west-1"), "{why}");
        };
        expect(s3.exists("ac/k.toml").map(|_| ()), "ac/k.toml");
        expect(s3.get("cas/abc", &mut Vec::new(), 10).map(|_| ()), "cas/abc");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"bytes").unwrap();
        expect(s3.put("cas/abc", file.path(), 5), "cas/abc");
    }

    #[test]
    fn a_redirect_with_a_location_is_not_followed() {
        let ok = answering("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbytes".to_string());
        let endpoint = answering(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {ok}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let s3 = S3::with_config("s3://lab/p", Some(&endpoint), None, config(None, None, None)).unwrap();
        let why = s3.exists("ac/k.toml").unwrap_err();
        assert!(why.starts_with("s3://lab/p/ac/k.toml: the server answered 307"), "{why}");
        assert!(s3.get("cas/abc", &mut Vec::new(), 10).unwrap_err().contains("307"));
    }
}
