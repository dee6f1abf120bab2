//! One verified download: `fetch_file` brings a URL into a path when its SHA-256 is the
//! one pinned, with a progress bar, HTTP Range resume of an interrupted transfer,
//! timeouts instead of hangs, and an atomic move into place. Nothing here knows about
//! datasets; anything that needs a file from the network (the Hub included) calls it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::sources::Source;

/// How a download behaves; the defaults suit a person at a terminal.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes once connected.
    pub read_timeout: Duration,
    /// Resumed attempts after a transfer broke off having made progress.
    pub retries: u32,
    /// Where unfinished downloads wait (`NAME.part`); on the same file system as the
    /// destination so that the final move is atomic.
    pub partial_dir: PathBuf,
    /// A progress bar on a terminal and a summary line on stderr.
    pub show_progress: bool,
}

impl FetchOptions {
    pub fn new(partial_dir: PathBuf) -> FetchOptions {
        FetchOptions {
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
            retries: 5,
            partial_dir,
            show_progress: true,
        }
    }
}

/// What a call did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub path: PathBuf,
    /// Bytes transferred by this call (0 when the file was already there).
    pub transferred: u64,
    /// Bytes that an earlier, interrupted transfer had already brought.
    pub resumed_from: u64,
    pub seconds: f64,
}

/// Make `dest` hold the file of `source`, verified by its SHA-256. A file already at
/// `dest` is used as it is (that is where a manually fetched copy goes).
pub fn fetch_file(source: &Source, dest: &Path, opts: &FetchOptions) -> Result<Fetched, String> {
    if dest.is_file() {
        return Ok(Fetched { path: dest.to_path_buf(), transferred: 0, resumed_from: 0, seconds: 0.0 });
    }
    let io = |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    std::fs::create_dir_all(&opts.partial_dir).map_err(|e| io("create", &opts.partial_dir, e))?;
    let part =
        opts.partial_dir.join(format!("{}-{}.part", &source.sha256[..16.min(source.sha256.len())], source.file_name));
    // One process at a time per file: a second run waits, then finds the file in place.
    let lock_path = part.with_extension("lock");
    let lock = File::create(&lock_path).map_err(|e| io("create", &lock_path, e))?;
    lock.lock().map_err(|e| io("lock", &lock_path, e))?;
    if dest.is_file() {
        return Ok(Fetched { path: dest.to_path_buf(), transferred: 0, resumed_from: 0, seconds: 0.0 });
    }
    let started = Instant::now();
    let resumed_from = std::fs::metadata(&part).map_or(0, |m| m.len());
    transfer(source, &part, dest, opts)?;
    let got = sha256_of(&part).map_err(|e| io("read", &part, e))?;
    // An empty checksum: a file nobody pins (a Hub repository's); its content digest keys the stage.
    if !source.sha256.is_empty() && got != source.sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(format!(
            "{} served a file whose sha256 is {got}, but {} must have sha256 {} (the download was deleted)\n\
             help: if this mirror is right and the checksum is not, set `sha256` under [sources.{}] in difflow.toml",
            source.url, source.file_name, source.sha256, source.name
        ));
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    std::fs::rename(&part, dest).map_err(|e| io("move the download into", dest, e))?;
    let size = std::fs::metadata(dest).map_or(0, |m| m.len());
    let seconds = started.elapsed().as_secs_f64();
    let transferred = size - resumed_from;
    if opts.show_progress {
        eprintln!(
            "fetched {} ({}, {:.1} MB/s{}){}",
            source.file_name,
            human_bytes(size),
            transferred as f64 / 1e6 / seconds.max(1e-9),
            if resumed_from > 0 { format!(", resumed at {}", human_bytes(resumed_from)) } else { String::new() },
            if source.sha256.is_empty() { "" } else { ", sha256 verified" }
        );
    }
    Ok(Fetched { path: dest.to_path_buf(), transferred, resumed_from, seconds })
}

/// Bring the whole file into `part`, resuming from what is there.
fn transfer(source: &Source, part: &Path, dest: &Path, opts: &FetchOptions) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout_connect(opts.connect_timeout).timeout_read(opts.read_timeout).build();
    let mut attempts_left = opts.retries;
    loop {
        let have = std::fs::metadata(part).map_or(0, |m| m.len());
        let mut request = agent.get(&source.url);
        if have > 0 {
            request = request.set("Range", &format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(r) => r,
            // The part already holds everything: the checksum decides.
            Err(ureq::Error::Status(416, _)) if have > 0 => return Ok(()),
            Err(ureq::Error::Status(code, r)) => {
                return Err(unreachable(source, dest, &format!("the server answered HTTP {code} {}", r.status_text())))
            }
            Err(ureq::Error::Transport(t)) => return Err(unreachable(source, dest, &t.to_string())),
        };
        // 206: the rest of the file; 200: the server ignored the range, start over.
        let append = response.status() == 206 && have > 0;
        let start = if append { have } else { 0 };
        let total = response.header("Content-Length").and_then(|l| l.parse::<u64>().ok()).map(|n| n + start);
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        match copy_with_progress(response.into_reader(), &mut file, start, total, &source.file_name, opts) {
            Ok(()) => return Ok(()),
            Err(CopyError::Write(e)) => return Err(format!("cannot write {}: {e}", part.display())),
            Err(CopyError::Read(e, progressed)) => {
                if !progressed || attempts_left == 0 {
                    return Err(unreachable(source, dest, &format!("the transfer broke off: {e}")));
                }
                attempts_left -= 1;
                if opts.show_progress {
                    eprintln!("the transfer of {} broke off ({e}); resuming", source.url);
                }
            }
        }
    }
}

enum CopyError {
    Write(std::io::Error),
    /// A read failed; whether any bytes arrived first.
    Read(std::io::Error, bool),
}

fn copy_with_progress(
    mut body: impl Read,
    file: &mut File,
    start: u64,
    total: Option<u64>,
    label: &str,
    opts: &FetchOptions,
) -> Result<(), CopyError> {
    let bar = if opts.show_progress {
        indicatif::ProgressBar::with_draw_target(total, indicatif::ProgressDrawTarget::stderr())
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("the template is valid"),
    );
    bar.set_message(label.to_string());
    bar.set_position(start);
    let mut buf = vec![0u8; 1 << 16];
    let mut progressed = false;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(CopyError::Read(e, progressed));
            }
        };
        file.write_all(&buf[..n]).map_err(CopyError::Write)?;
        progressed = true;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(CopyError::Write)?;
    bar.finish_and_clear();
    Ok(())
}

/// The message when a source cannot be fetched: what failed, and how to do without.
fn unreachable(source: &Source, dest: &Path, why: &str) -> String {
    if source.sha256.is_empty() {
        return format!(
            "cannot fetch {}: {why}\n  \
             help: fetch it by other means and put it at {} (it is used as it is), or set HF_ENDPOINT to a mirror",
            source.url,
            dest.display()
        );
    }
    format!(
        "cannot fetch {}: {why}\n  \
         the file must have sha256 {}\n  \
         help: fetch it by other means and put it at {} (it is used as it is), \
         or point [sources.{}] url in difflow.toml at a mirror",
        source.url,
        source.sha256,
        dest.display(),
        source.name
    )
}

/// SHA-256 of a file's contents, lowercase hex.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    crate::cache::digest::read_into(path, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
