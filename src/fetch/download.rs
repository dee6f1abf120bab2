//! One verified download: `fetch_file` brings a URL into a path when its SHA-256 is the
//! one pinned, with a progress bar, HTTP Range resume of an interrupted transfer,
//! timeouts instead of hangs, and an atomic move into place. Whatever the server does,
//! a download stays within bounds: at most the file's size limit on disk, an overall
//! deadline and a minimum rate, the raw bytes only (never decompressed), redirects to
//! http(s) only. Nothing here knows about datasets; anything that needs a file from the
//! network (the Hub included) calls it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::http::{self, CallError};
use super::sources::Source;

pub use super::options::FetchOptions;

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

/// Why a transfer stopped without the whole file.
enum Stop {
    /// The server sent what no file may be (too much, encoded, the wrong range): what it
    /// sent is deleted.
    Refused(String),
    /// The network failed or was too slow: what arrived is kept for a later resume.
    Interrupted(String),
}

/// Make `dest` hold the file of `source`, verified by its SHA-256. A file already at
/// `dest` is used as it is (that is where a manually fetched copy goes).
pub fn fetch_file(source: &Source, dest: &Path, opts: &FetchOptions) -> Result<Fetched, String> {
    if dest.is_file() {
        return Ok(Fetched { path: dest.to_path_buf(), transferred: 0, resumed_from: 0, seconds: 0.0 });
    }
    if !is_one_component(&source.file_name) {
        return Err(format!("cannot fetch {}: `{}` is not a plain file name", source.url, source.file_name));
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
    match transfer(source, &part, opts).and_then(|()| check_size(source, &part)) {
        Ok(()) => {}
        Err(Stop::Interrupted(why)) => return Err(unreachable(source, dest, &why)),
        Err(Stop::Refused(why)) => {
            let _ = std::fs::remove_file(&part);
            return Err(unreachable(source, dest, &format!("{why} (the download was deleted)")));
        }
    }
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
    let transferred = size.saturating_sub(resumed_from);
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

/// Whether `name` is one plain path component (no separator, not `.` or `..`).
fn is_one_component(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!((components.next(), components.next()), (Some(Component::Normal(c)), None) if c == name)
}

/// A file whose size is pinned must have exactly that size.
fn check_size(source: &Source, part: &Path) -> Result<(), Stop> {
    let got = std::fs::metadata(part).map_or(0, |m| m.len());
    match source.size {
        Some(size) if got != size => {
            Err(Stop::Refused(format!("the server sent {got} bytes, but {} has {size}", source.file_name)))
        }
        _ => Ok(()),
    }
}

/// Bring the whole file into `part`, resuming from what is there.
fn transfer(source: &Source, part: &Path, opts: &FetchOptions) -> Result<(), Stop> {
    let deadline = Instant::now() + opts.deadline;
    let late = || Instant::now() >= deadline;
    let limit = source.size.unwrap_or(opts.max_bytes.unwrap_or(source.cap));
    let mut attempts_left = opts.retries;
    loop {
        let have = std::fs::metadata(part).map_or(0, |m| m.len());
        let range = format!("bytes={have}-");
        let headers: Vec<(&str, &str)> = if have > 0 { vec![("Range", range.as_str())] } else { Vec::new() };
        let agent = http::agent(opts.connect_timeout, opts.stall_timeout(), deadline);
        let response = match http::call(&agent, "GET", &source.url, &headers, deadline) {
            Ok(r) => r,
            Err(CallError::Status(416, r)) if have > 0 => return complete_part(source, have, &r),
            Err(CallError::Status(code, r)) => {
                return Err(Stop::Interrupted(format!("the server answered HTTP {code} {}", r.status_text())))
            }
            Err(CallError::Failed(_)) if late() => return Err(Stop::Interrupted(deadline_passed(opts))),
            Err(CallError::Failed(why)) => return Err(Stop::Interrupted(why)),
        };
        let start = accepted_start(&response, have, limit)?;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(start > 0)
            .truncate(start == 0)
            .open(part)
            .map_err(|e| Stop::Interrupted(format!("cannot write {}: {e}", part.display())))?;
        let total = response.header("Content-Length").and_then(|l| l.parse::<u64>().ok()).map(|n| n + start);
        let copy = Copy { start, total, limit, deadline, label: &source.file_name, opts };
        match copy.run(response.into_reader(), &mut file) {
            Ok(()) => return Ok(()),
            Err(CopyError::Write(e)) => return Err(Stop::Interrupted(format!("cannot write {}: {e}", part.display()))),
            Err(CopyError::Stop(stop)) => return Err(stop),
            Err(CopyError::Read(..)) if late() => return Err(Stop::Interrupted(deadline_passed(opts))),
            Err(CopyError::Read(e, progressed)) => {
                if !progressed || attempts_left == 0 {
                    return Err(Stop::Interrupted(format!("the transfer broke off: {e}")));
                }
                attempts_left -= 1;
                if opts.show_progress {
                    eprintln!("the transfer of {} broke off ({e}); resuming", source.url);
                }
            }
        }
    }
}

/// A 416 to a resume: the part already holds everything when the server says the file
/// has exactly its length; with a pinned checksum, the checksum decides either way.
fn complete_part(source: &Source, have: u64, response: &ureq::Response) -> Result<(), Stop> {
    let total = response.header("Content-Range").and_then(|r| r.strip_prefix("bytes */")?.trim().parse::<u64>().ok());
    if total == Some(have) || !source.sha256.is_empty() {
        return Ok(());
    }
    Err(Stop::Refused(format!(
        "the server refused a resume at byte {have} (HTTP 416) without saying the file has {have} bytes"
    )))
}

/// Where the body of a reply goes in the part (0: from the start, `have`: appended),
/// refusing a reply that is encoded, announces more than `limit` bytes, or resumes at
/// another byte than the part's length.
fn accepted_start(response: &ureq::Response, have: u64, limit: u64) -> Result<u64, Stop> {
    if let Some(encoding) = response.header("Content-Encoding") {
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            return Err(Stop::Refused(format!(
                "the server sent the file with Content-Encoding: {encoding}, but difflow asks for the bytes as \
                 they are (Accept-Encoding: identity) and never decodes them"
            )));
        }
    }
    let start = match response.status() {
        200 => 0,
        // The rest of the file, from the byte the Content-Range names: it must be the
        // part's length, or the file would have a hole or a repeat.
        206 => {
            let range = response.header("Content-Range").unwrap_or("");
            match parse_content_range(range) {
                Some((first, _)) if first == have => have,
                _ => {
                    return Err(Stop::Refused(format!(
                        "asked for the bytes from {have} on, the server answered `Content-Range: {range}`"
                    )))
                }
            }
        }
        code => return Err(Stop::Refused(format!("the server answered HTTP {code} instead of the file"))),
    };
    let announced = response.header("Content-Length").and_then(|l| l.parse::<u64>().ok()).map(|n| n + start);
    let range_total = response.header("Content-Range").and_then(parse_content_range).and_then(|(_, total)| total);
    match announced.into_iter().chain(range_total).max() {
        Some(total) if total > limit => Err(Stop::Refused(too_large(limit, Some(total)))),
        _ => Ok(start),
    }
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`): FIRST and TOTAL.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (span, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let first = span.split_once('-')?.0.trim().parse().ok()?;
    Some((first, total.trim().parse().ok()))
}

/// The message for a body beyond the limit (`announced`: the length the server gave).
fn too_large(limit: u64, announced: Option<u64>) -> String {
    let what = match announced {
        Some(total) => format!("announces {total} bytes,"),
        None => "sent".to_string(),
    };
    format!(
        "the server {what} more than the {limit} bytes this file may have \
         (DIFFLOW_FETCH_MAX_BYTES sets the cap of a file whose size is not pinned)"
    )
}

fn deadline_passed(opts: &FetchOptions) -> String {
    format!(
        "the download took longer than {} s, the deadline for one file (DIFFLOW_FETCH_DEADLINE); \
         what arrived is kept and the next run resumes it",
        opts.deadline.as_secs_f64()
    )
}

enum CopyError {
    Write(std::io::Error),
    /// A read failed; whether any bytes arrived first.
    Read(std::io::Error, bool),
    /// Too much, or too slow.
    Stop(Stop),
}

/// One body into the part: `start` bytes are already there, `total` is what the server
/// announced, `limit` what the file may have, `deadline` when the download must end.
struct Copy<'a> {
    start: u64,
    total: Option<u64>,
    limit: u64,
    deadline: Instant,
    label: &'a str,
    opts: &'a FetchOptions,
}

impl Copy<'_> {
    fn run(&self, mut body: impl Read, file: &mut File) -> Result<(), CopyError> {
        let bar = self.progress_bar();
        let mut rate = RateCheck::new(self.opts.min_rate, self.opts.rate_window);
        let mut buf = vec![0u8; 1 << 16];
        let mut written = self.start;
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
            if written + n as u64 > self.limit {
                bar.abandon();
                return Err(CopyError::Stop(Stop::Refused(too_large(self.limit, None))));
            }
            file.write_all(&buf[..n]).map_err(CopyError::Write)?;
            written += n as u64;
            progressed = true;
            bar.inc(n as u64);
            let too_slow = rate.record(n as u64).err();
            let late = Instant::now() >= self.deadline;
            if let Some(why) = too_slow.or_else(|| late.then(|| deadline_passed(self.opts))) {
                bar.abandon();
                return Err(CopyError::Stop(Stop::Interrupted(why)));
            }
        }
        file.sync_all().map_err(CopyError::Write)?;
        bar.finish_and_clear();
        Ok(())
    }

    fn progress_bar(&self) -> indicatif::ProgressBar {
        let bar = if self.opts.show_progress {
            indicatif::ProgressBar::with_draw_target(self.total, indicatif::ProgressDrawTarget::stderr())
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("the template is valid"),
        );
        bar.set_message(self.label.to_string());
        bar.set_position(self.start);
        bar
    }
}

/// The minimum rate: at the end of each window, at least `min_rate` bytes per second of
/// it must have arrived. (A window without any byte ends in the read timeout, which is
/// never longer than the window.)
struct RateCheck {
    min_rate: u64,
    window: Duration,
    since: Instant,
    bytes: u64,
}

impl RateCheck {
    fn new(min_rate: u64, window: Duration) -> RateCheck {
        RateCheck { min_rate, window, since: Instant::now(), bytes: 0 }
    }

    fn record(&mut self, n: u64) -> Result<(), String> {
        self.bytes += n;
        let elapsed = self.since.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        if (self.bytes as f64) < self.min_rate as f64 * elapsed.as_secs_f64() {
            return Err(format!(
                "the transfer is too slow: {} bytes in {:.1} s, less than {} bytes/s \
                 (DIFFLOW_FETCH_MIN_RATE over DIFFLOW_FETCH_RATE_WINDOW); what arrived is kept and the next run resumes it",
                self.bytes,
                elapsed.as_secs_f64(),
                self.min_rate
            ));
        }
        self.since = Instant::now();
        self.bytes = 0;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_and_file_names_are_one_component() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 0-9/10"), None);
        assert!(is_one_component("cifar-10-python.tar.gz"));
        for bad in ["..", ".", "a/b", "/etc", "", "../x"] {
            assert!(!is_one_component(bad), "{bad}");
        }
    }

    #[test]
    fn the_rate_check_fails_a_window_below_the_minimum_only() {
        let mut r = RateCheck::new(1000, Duration::ZERO);
        assert!(r.record(1_000_000).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        assert!(r.record(1).unwrap_err().contains("too slow"));
        let mut off = RateCheck::new(0, Duration::ZERO);
        assert!(off.record(0).is_ok());
    }
}
