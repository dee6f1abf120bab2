//! An HTTP server on 127.0.0.1 for the fetch tests (a thread in the test, speaking plain
//! HTTP/1.1), well-behaved or hostile per path: `tests/fetch.rs` and
//! `tests/fetch_hostile.rs`. Every loop in it is bounded.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use difflow::fetch::{sha256_of, FetchOptions, Source};

/// How the server answers one path.
#[derive(Clone)]
pub enum Route {
    File(Vec<u8>),
    /// The first request gets the headers of the whole file and half of it, then the
    /// connection closes; later requests are served normally (with Range).
    DropHalfOnce(Vec<u8>),
    /// Accepts, reads the request and never answers.
    Hang,
    /// `302 Found` to this Location.
    Redirect(String),
    /// 200 without a length, then zeros until the client leaves (or 4 GiB).
    Endless,
    /// The bytes as they are, labelled `Content-Encoding: gzip`.
    Gzipped(Vec<u8>),
    /// The file with its length announced, one byte per `every`.
    Drip(Vec<u8>, Duration),
    /// Like `File`, but a Range request gets `206` with the whole file from byte 0.
    WrongRange(Vec<u8>),
}

/// (path, Range header) of every request, in order.
pub type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct Server {
    pub base: String,
    pub requests: RequestLog,
}

pub fn serve(routes: Vec<(&str, Route)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes: Arc<Mutex<HashMap<String, Route>>> =
        Arc::new(Mutex::new(routes.into_iter().map(|(p, r)| (p.to_string(), r)).collect()));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let routes = routes.clone();
            let log = log.clone();
            std::thread::spawn(move || answer(stream, &routes, &log));
        }
    });
    Server { base, requests }
}

fn answer(mut stream: TcpStream, routes: &Mutex<HashMap<String, Route>>, log: &Mutex<Vec<(String, Option<String>)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("Range:").or_else(|| h.strip_prefix("range:")) {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let route = routes.lock().unwrap().get(&path).cloned();
    let head = |status: &str, extra: &str| format!("HTTP/1.1 {status}\r\n{extra}Connection: close\r\n\r\n");
    let body = match route {
        None => {
            let _ = stream.write_all(head("404 Not Found", "Content-Length: 0\r\n").as_bytes());
            return;
        }
        Some(Route::Hang) => {
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        Some(Route::DropHalfOnce(body)) => {
            routes.lock().unwrap().insert(path, Route::File(body.clone()));
            let _ = stream.write_all(head("200 OK", &format!("Content-Length: {}\r\n", body.len())).as_bytes());
            let _ = stream.write_all(&body[..body.len() / 2]);
            return;
        }
        Some(Route::Redirect(to)) => {
            let _ = stream.write_all(head("302 Found", &format!("Location: {to}\r\nContent-Length: 0\r\n")).as_bytes());
            return;
        }
        Some(Route::Endless) => {
            let _ = stream.write_all(head("200 OK", "").as_bytes());
            let zeros = vec![0u8; 1 << 16];
            for _ in 0..(1 << 16) {
                if stream.write_all(&zeros).is_err() {
                    return;
                }
            }
            return;
        }
        Some(Route::Gzipped(body)) => {
            let extra = format!("Content-Encoding: gzip\r\nContent-Length: {}\r\n", body.len());
            let _ = stream.write_all(head("200 OK", &extra).as_bytes());
            let _ = stream.write_all(&body);
            return;
        }
        Some(Route::Drip(body, every)) => {
            let _ = stream.write_all(head("200 OK", &format!("Content-Length: {}\r\n", body.len())).as_bytes());
            for b in body {
                if stream.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
            return;
        }
        Some(Route::WrongRange(body)) if range.is_some() => {
            let n = body.len();
            let extra = format!("Content-Length: {n}\r\nContent-Range: bytes 0-{}/{n}\r\n", n - 1);
            let _ = stream.write_all(head("206 Partial Content", &extra).as_bytes());
            let _ = stream.write_all(&body);
            return;
        }
        Some(Route::File(body) | Route::WrongRange(body)) => body,
    };
    let start = range.and_then(|r| r.strip_prefix("bytes=")?.trim_end_matches('-').parse::<usize>().ok());
    let reply = match start {
        Some(s) => head(
            "206 Partial Content",
            &format!(
                "Content-Length: {}\r\nContent-Range: bytes {s}-{}/{}\r\n",
                body.len() - s,
                body.len() - 1,
                body.len()
            ),
        ),
        None => head("200 OK", &format!("Content-Length: {}\r\n", body.len())),
    };
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.write_all(&body[start.unwrap_or(0)..]);
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    std::fs::write(&f, bytes).unwrap();
    sha256_of(&f).unwrap()
}

/// A source pinned to `body`'s checksum (its size unpinned, capped at 1 GiB).
pub fn source(name: &str, url: String, body: &[u8]) -> Source {
    Source {
        name: name.into(),
        group: "test".into(),
        url,
        sha256: sha256_hex(body),
        file_name: name.into(),
        size: None,
        cap: 1 << 30,
    }
}

pub fn quiet_options(dir: &Path) -> FetchOptions {
    let mut o = FetchOptions::new(dir.join("partial"));
    o.show_progress = false;
    o.read_timeout = Duration::from_secs(2);
    o.connect_timeout = Duration::from_secs(2);
    o
}

pub fn part_files(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir.join("partial")) else { return Vec::new() };
    rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".part")).collect()
}
