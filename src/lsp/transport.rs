//! The stdio transport. lsp-server's own stdio reader stops at the first malformed
//! message; an editor's language server must not, so frames are read here: a body that is
//! not JSON gets a ParseError response, JSON that is not a message an InvalidRequest, and
//! the server goes on.

use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use lsp_server::{ErrorCode, Message};
use serde_json::json;

/// Sends messages to the client; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    out: Arc<Mutex<io::Stdout>>,
}

impl Outbox {
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
    let outbox = Outbox { out: Arc::new(Mutex::new(io::stdout())) };
    let (tx, rx) = mpsc::channel();
    let errors = outbox.clone();
    thread::spawn(move || read_loop(&mut io::stdin().lock(), &tx, &errors));
    (outbox, rx)
}

fn read_loop(input: &mut impl BufRead, tx: &Sender<Message>, errors: &Outbox) {
    loop {
        let body = match read_frame(input) {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(Frame::Bad(why)) => {
                errors.send_raw(&error_body(None, ErrorCode::ParseError, &why));
                continue;
            }
            Err(Frame::Eof) => return,
        };
        let value: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                errors.send_raw(&error_body(None, ErrorCode::ParseError, &format!("not JSON: {e}")));
                continue;
            }
        };
        let id = value.get("id").cloned();
        let is_message = value.get("method").is_some() || value.get("result").is_some() || value.get("error").is_some();
        let parsed = if is_message {
            serde_json::from_value::<Message>(value).map_err(|e| e.to_string())
        } else {
            Err("it has no method, result or error".into())
        };
        match parsed {
            Ok(msg) => {
                if tx.send(msg).is_err() {
                    return;
                }
            }
            Err(e) => errors.send_raw(&error_body(id, ErrorCode::InvalidRequest, &format!("not an LSP message: {e}"))),
        }
    }
}

fn error_body(id: Option<serde_json::Value>, code: ErrorCode, message: &str) -> serde_json::Value {
    json!({ "jsonrpc": "2.0", "id": id.unwrap_or(serde_json::Value::Null), "error": { "code": code as i32, "message": message } })
}

enum Frame {
    /// A header block without a usable Content-Length.
    Bad(String),
    Eof,
}

/// One `Content-Length` framed body; `None` at a clean end of input.
fn read_frame(input: &mut impl BufRead) -> Result<Option<Vec<u8>>, Frame> {
    let mut length = None;
    let mut saw_header = false;
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) if !saw_header => return Ok(None),
            Ok(0) | Err(_) => return Err(Frame::Eof),
            Ok(_) => {}
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            if saw_header {
                break;
            }
            continue;
        }
        saw_header = true;
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let Some(length) = length.filter(|&n| n <= 256 << 20) else {
        return Err(Frame::Bad("a message needs a Content-Length header".into()));
    };
    let mut body = vec![0; length];
    input.read_exact(&mut body).map_err(|_| Frame::Eof)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_and_headers_without_length_are_reported() {
        let mut input =
            io::Cursor::new(b"Content-Length: 2\r\n\r\n{}X-Other: 1\r\n\r\nContent-Length: 1\r\n\r\n1".to_vec());
        assert_eq!(read_frame(&mut input).ok().flatten(), Some(b"{}".to_vec()));
        assert!(matches!(read_frame(&mut input), Err(Frame::Bad(_))));
        assert_eq!(read_frame(&mut input).ok().flatten(), Some(b"1".to_vec()));
        assert!(matches!(read_frame(&mut input), Ok(None)));
    }
}
