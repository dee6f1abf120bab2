//! A small HTTP object store on 127.0.0.1 (whole-object GET, HEAD and PUT into a folder,
//! the protocol of an HTTP remote) that can hold requests back: a held request gets no
//! answer until the gate is released, and then none at all, so a test can kill a push or
//! a pull at a known point without timing anything. Every request it completed is logged.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which requests to hold: those whose `METHOD path` starts with `prefix`, after the first
/// `pass` of them went through.
struct Hold {
    prefix: String,
    pass: usize,
    seen: usize,
}

#[derive(Clone)]
struct Shared {
    root: Arc<PathBuf>,
    hold: Arc<Mutex<Option<Hold>>>,
    released: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

pub struct Gate {
    pub port: u16,
    pub dir: tempfile::TempDir,
    shared: Shared,
}

impl Gate {
    pub fn start() -> Gate {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            root: Arc::new(dir.path().to_path_buf()),
            hold: Arc::default(),
            released: Arc::default(),
            held: Arc::default(),
            log: Arc::default(),
        };
        let accepting = shared.clone();
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = accepting.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Gate { port, dir, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/c", self.port)
    }

    /// The folder that holds the remote's objects (`cas/…`, `ac/…`).
    pub fn objects(&self) -> PathBuf {
        self.dir.path().join("c")
    }

    /// Hold every request whose `METHOD path` (path below the remote, `PUT ac/…`) starts
    /// with `prefix`, once `pass` of them went through.
    pub fn hold(&self, prefix: &str, pass: usize) {
        *self.shared.hold.lock().unwrap() = Some(Hold { prefix: prefix.to_string(), pass, seen: 0 });
    }

    /// How many requests are held now.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Drop the held requests unanswered and hold no more.
    pub fn release(&self) {
        *self.shared.hold.lock().unwrap() = None;
        self.shared.released.store(true, Ordering::SeqCst);
    }

    /// The requests it answered, as `METHOD path`, in order.
    pub fn log(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }
}

/// One connection: requests one after another (clients keep connections alive).
fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut length = 0u64;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = Vec::new();
        if (&mut reader).take(length).read_to_end(&mut body).is_err() || body.len() as u64 != length {
            return;
        }
        let path = target.trim_start_matches('/').to_string();
        let request = format!("{method} {}", path.trim_start_matches("c/"));
        if should_hold(shared, &request) {
            shared.held.fetch_add(1, Ordering::SeqCst);
            while !shared.released.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            shared.held.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let answered = answer(&shared.root.join(&path), &method, &body, &mut writer);
        if answered.is_err() {
            return;
        }
        shared.log.lock().unwrap().push(request);
    }
}

fn should_hold(shared: &Shared, request: &str) -> bool {
    let mut hold = shared.hold.lock().unwrap();
    let Some(h) = hold.as_mut().filter(|h| request.starts_with(&h.prefix)) else { return false };
    h.seen += 1;
    h.seen > h.pass
}

fn answer(file: &Path, method: &str, body: &[u8], out: &mut TcpStream) -> std::io::Result<()> {
    let reply = |out: &mut TcpStream, status: &str, length: usize| {
        write!(out, "HTTP/1.1 {status}\r\nContent-Length: {length}\r\n\r\n")
    };
    match method {
        "GET" | "HEAD" => match std::fs::read(file) {
            Ok(bytes) => {
                reply(out, "200 OK", bytes.len())?;
                if method == "GET" {
                    out.write_all(&bytes)?;
                }
            }
            Err(_) => reply(out, "404 Not Found", 0)?,
        },
        "PUT" => {
            std::fs::create_dir_all(file.parent().unwrap())?;
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let tmp = file.with_extension(format!("tmp{}", NEXT.fetch_add(1, Ordering::SeqCst)));
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, file)?;
            reply(out, "201 Created", 0)?;
        }
        _ => reply(out, "405 Method Not Allowed", 0)?,
    }
    out.flush()
}
