//! The stdio transport. lsp-server's own stdio reader stops at the first malformed
//! message and trusts every header; an editor's language server must not, so frames are
//! read here, in bounded memory whatever arrives:
//! - a header line keeps at most [`LIMITS`]`.line` bytes (the rest of a longer one is read
//!   and dropped), a header block at most `.headers` lines;
//! - headers are ASCII `Name: value`; the length is decimal digits;
//! - a body has at most `.body` bytes; a longer one is read and dropped.
//!
//! A frame that breaks a rule, or whose body is not JSON, gets a ParseError response; JSON
//! that is not a message an InvalidRequest; and the server goes on. After a header block
//! without a usable length the body's end is unknown: the bytes up to the next line
//! holding `Content-Length:` are dropped, and reading goes on from that header.

use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use lsp_server::{ErrorCode, Message};
use serde_json::json;

/// How much of a frame is kept in memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one header line.
    pub line: usize,
    /// Lines of one header block.
    pub headers: usize,
    /// Bytes of one body.
    pub body: u64,
}

/// A real message is a few kB (a whole pipeline file on `didOpen`); 64 MiB is far beyond.
pub const LIMITS: Limits = Limits { line: 8 << 10, headers: 32, body: 64 << 20 };

/// Messages read ahead of the server: the reader waits when this many are queued, so a
/// client that sends faster than the server checks cannot grow the queue without limit.
const QUEUED: usize = 16;

/// Sends messages to the client; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Outbox {
    fn new(out: impl Write + Send + 'static) -> Outbox {
        Outbox { out: Arc::new(Mutex::new(Box::new(out))) }
    }

    pub fn send(&self, msg: Message) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A client that closed its end gets nothing more; the read side then ends too.
        let _ = msg.write(&mut *out);
    }

    fn send_raw(&self, body: &serde_json::Value) {
        let text = body.to_string();
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write!(out, "Content-Length: {}\r\n\r\n{text}", text.len());
        let _ = out.flush();
    }
}

/// Start reading stdin on a thread: well-formed messages arrive on the receiver, which
/// closes at the end of input.
pub fn stdio() -> (Outbox, Receiver<Message>) {
    let outbox = Outbox::new(io::stdout());
    let (tx, rx) = mpsc::sync_channel(QUEUED);
    let errors = outbox.clone();
    thread::spawn(move || read_loop(&mut FrameReader::new(io::stdin().lock(), LIMITS), &tx, &errors));
    (outbox, rx)
}

fn read_loop(reader: &mut FrameReader<impl BufRead>, tx: &SyncSender<Message>, errors: &Outbox) {
    loop {
        match decode(reader.next_frame()) {
            Incoming::Message(msg) => {
                if tx.send(msg).is_err() {
                    return;
                }
            }
            Incoming::Error(body) => errors.send_raw(&body),
            Incoming::End => return,
        }
    }
}

/// What one frame amounts to.
enum Incoming {
    Message(Message),
    /// An error response to send back.
    Error(serde_json::Value),
    End,
}

fn decode(frame: Frame) -> Incoming {
    let body = match frame {
        Frame::Body(body) => body,
        Frame::Bad(why) => return Incoming::Error(error_body(None, ErrorCode::ParseError, &why)),
        Frame::End => return Incoming::End,
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Incoming::Error(error_body(None, ErrorCode::ParseError, &format!("not JSON: {e}"))),
    };
    let id = value.get("id").cloned();
    let is_message = value.get("method").is_some() || value.get("result").is_some() || value.get("error").is_some();
    let parsed = if is_message {
        serde_json::from_value::<Message>(value).map_err(|e| e.to_string())
    } else {
        Err("it has no method, result or error".into())
    };
    match parsed {
        Ok(msg) => Incoming::Message(msg),
        Err(e) => Incoming::Error(error_body(id, ErrorCode::InvalidRequest, &format!("not an LSP message: {e}"))),
    }
}

fn error_body(id: Option<serde_json::Value>, code: ErrorCode, message: &str) -> serde_json::Value {
    json!({ "jsonrpc": "2.0", "id": id.unwrap_or(serde_json::Value::Null), "error": { "code": code as i32, "message": message } })
}

enum Frame {
    Body(Vec<u8>),
    /// A frame that breaks a rule (its body, when its length was known, is dropped).
    Bad(String),
    /// The end of input (or a read error: the client is gone).
    End,
}

/// How a header line ended.
enum Line {
    /// Kept whole in the reader's line buffer.
    Kept,
    /// Longer than the limit: read and dropped.
    TooLong,
    /// The input ended (a line cut off by the end cannot belong to a whole frame).
    End,
}

struct FrameReader<R> {
    input: R,
    limits: Limits,
    /// The current header line, without its line ending; never more than `limits.line`.
    line: Vec<u8>,
    /// The last header block had no usable length: what follows is its body, of unknown
    /// end, up to the next line holding `Content-Length:`.
    lost: bool,
}

impl<R: BufRead> FrameReader<R> {
    fn new(input: R, limits: Limits) -> Self {
        FrameReader { input, limits, line: Vec::with_capacity(limits.line), lost: false }
    }

    /// The next frame's body, or why it was refused.
    fn next_frame(&mut self) -> Frame {
        let (length, problem) = match self.read_headers() {
            Some(headers) => headers,
            None => return Frame::End,
        };
        let Some(length) = length else {
            self.lost = true;
            return Frame::Bad(problem.unwrap_or_else(|| "a message needs a Content-Length header".into()));
        };
        self.lost = false;
        let problem = problem.or_else(|| {
            (length > self.limits.body)
                .then(|| format!("a message of {length} bytes; messages may have at most {}", self.limits.body))
        });
        if let Some(problem) = problem {
            // Read and dropped, so that the next frame starts where it should.
            let skipped = io::copy(&mut (&mut self.input).take(length), &mut io::sink()).unwrap_or(0);
            return if skipped == length { Frame::Bad(problem) } else { Frame::End };
        }
        let mut body = Vec::with_capacity(length as usize);
        match (&mut self.input).take(length).read_to_end(&mut body) {
            Ok(n) if n as u64 == length => Frame::Body(body),
            _ => Frame::End,
        }
    }

    /// One header block: its length and its first problem; `None` at the end of input.
    fn read_headers(&mut self) -> Option<(Option<u64>, Option<String>)> {
        let (mut length, mut problem, mut lines) = (None, None, 0);
        loop {
            match self.read_line() {
                Line::End => return None,
                Line::TooLong if self.lost => continue,
                Line::TooLong => {
                    problem.get_or_insert(format!("a header line is longer than {} bytes", self.limits.line));
                }
                Line::Kept if self.line.is_empty() => {
                    if lines > 0 {
                        return Some((length, problem));
                    }
                    // Blank lines between frames (or in a lost body) are passed over.
                    continue;
                }
                Line::Kept if self.lost => {
                    // The tail of a body of unknown length: resume at a length header.
                    let Some(at) = find_ignoring_case(&self.line, b"content-length:") else { continue };
                    self.line.drain(..at);
                    self.lost = false;
                    header(&self.line, &mut length, &mut problem);
                }
                Line::Kept => {
                    if lines >= self.limits.headers {
                        problem.get_or_insert(format!("more than {} header lines", self.limits.headers));
                    }
                    // Still read: with the length, the body is skipped and the next frame found.
                    header(&self.line, &mut length, &mut problem);
                }
            }
            lines += 1;
        }
    }

    /// Reads one line into `self.line` (without `\r\n`), keeping at most `limits.line`
    /// bytes: the rest of a longer line is read and dropped.
    fn read_line(&mut self) -> Line {
        self.line.clear();
        let mut too_long = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok([]) => return Line::End,
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Line::End,
            };
            let newline = buf.iter().position(|&b| b == b'\n');
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            if too_long || self.line.len() + chunk.len() > self.limits.line {
                too_long = true;
                self.line.clear();
            } else {
                self.line.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.input.consume(used);
            if newline.is_some() {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return if too_long { Line::TooLong } else { Line::Kept };
            }
        }
    }
}

/// Reads one `Name: value` header: the length from `Content-Length`, others ignored; the
/// first problem is kept (without the line's bytes: they may be anything).
fn header(line: &[u8], length: &mut Option<u64>, problem: &mut Option<String>) {
    let Some(colon) = line.iter().position(|&b| b == b':').filter(|_| line.is_ascii()) else {
        problem.get_or_insert_with(|| "a header line that is not `Name: value` in ASCII".into());
        return;
    };
    let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
    if !name.eq_ignore_ascii_case(b"content-length") {
        return;
    }
    let number = (!value.is_empty() && value.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
        .flatten();
    match number {
        Some(n) => *length = Some(n),
        None => {
            problem.get_or_insert_with(|| "the Content-Length is not a number of bytes".into());
        }
    }
}

fn find_ignoring_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
