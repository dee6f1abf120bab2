//! A minimal LSP client for the tests: it starts the real `difflow lsp`, frames JSON-RPC
//! messages over its stdin and reads its stdout on a thread, so every wait has a timeout.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The tail of the LSP tests' pipelines: a cosine schedule, a conditional UNet trained with
/// `loss`, and a sampler with a misspelt key (`stpes`).
pub fn train_and_misspelt_sampler(loss: &str) -> String {
    format!(
        r#"schedule cos = cosine {{ steps = 1000 }}
train ddpm {{
    model    = unet_small {{ classes = 10 }}
    data     = digits
    schedule = cos
    uncond_p = 0.1
    loss     = "{loss}"
    steps    = 1000
}}
sample gen {{ from = ddpm, sampler = ddim {{ stpes = 50 }} }}
"#
    )
}

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    incoming: Receiver<Value>,
    next_id: i64,
    /// Notifications and responses read while waiting for something else.
    pub seen: Vec<Value>,
}

impl Client {
    /// `difflow lsp` started in `dir`.
    pub fn start(dir: &Path) -> Client {
        Client::start_with(dir, &[])
    }

    /// `difflow lsp` started in `dir` with these environment variables.
    pub fn start_with(dir: &Path, env: &[(&str, &Path)]) -> Client {
        let mut command = Command::new(env!("CARGO_BIN_EXE_difflow"));
        command.envs(env.iter().copied());
        Client::spawn(command, dir)
    }

    /// `difflow lsp` started in `dir` under `prlimit --as` (`max_bytes` of address space),
    /// initialized. `DIFFLOW_UNDER_TEST=PATH` starts another binary (an older build, to
    /// see what a test catches).
    pub fn initialized_limited(dir: &Path, max_bytes: u64) -> Client {
        let binary = std::env::var("DIFFLOW_UNDER_TEST").unwrap_or_else(|_| env!("CARGO_BIN_EXE_difflow").to_string());
        let mut command = Command::new("prlimit");
        command.arg(format!("--as={max_bytes}")).arg(binary);
        let mut c = Client::spawn(command, dir);
        let result = c.request("initialize", json!({ "processId": null, "rootUri": url(dir), "capabilities": {} }));
        assert!(result["result"]["capabilities"].is_object(), "{result}");
        c.notify("initialized", json!({}));
        c
    }

    fn spawn(mut command: Command, dir: &Path) -> Client {
        let mut child = command
            .arg("lsp")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("difflow lsp starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(body) = read_frame(&mut reader) {
                let value: Value = serde_json::from_slice(&body).expect("the server writes JSON");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Client { child, stdin, incoming, next_id: 0, seen: Vec::new() }
    }

    /// Start and initialize, offering only UTF-16 positions (the protocol's default).
    pub fn initialized(dir: &Path) -> Client {
        Client::initialized_with(dir, &[])
    }

    pub fn initialized_with(dir: &Path, env: &[(&str, &Path)]) -> Client {
        let mut c = Client::start_with(dir, env);
        let root = url(dir);
        let result = c.request("initialize", json!({ "processId": null, "rootUri": root, "capabilities": {} }));
        assert_eq!(result["result"]["capabilities"]["positionEncoding"], "utf-16", "{result}");
        c.notify("initialized", json!({}));
        c
    }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_memory(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the server runs");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("Linux reports VmHWM");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM: N kB");
        kib << 10
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("the server reads");
        stdin.flush().expect("the server reads");
    }

    pub fn send(&mut self, message: &Value) {
        let body = message.to_string();
        self.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Send a request and return its whole response (`result` or `error`).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        self.wait_for(|m| m["id"] == id && m.get("method").is_none())
    }

    /// The next message that satisfies `pred`; others are kept in `seen`.
    pub fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .incoming
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no awaited message from difflow lsp ({e}); seen: {:#?}", self.seen));
            if pred(&msg) {
                return msg;
            }
            self.seen.push(msg);
        }
    }

    /// `shutdown`, answered with null, then `exit`: the server ends with 0.
    pub fn shut_down(mut self) {
        assert_eq!(self.request("shutdown", Value::Null)["result"], Value::Null);
        self.exit_with(0);
    }

    /// `exit`, and the code the server must end with.
    pub fn exit_with(mut self, code: i32) {
        self.notify("exit", Value::Null);
        assert_eq!(self.finish().code(), Some(code));
    }

    /// The next diagnostics published for `uri`.
    pub fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let msg = self.wait_for(|m| m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri);
        msg["params"]["diagnostics"].as_array().cloned().unwrap_or_default()
    }

    pub fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "difflow", "version": 1, "text": text } }),
        );
    }

    /// Close stdin and wait for the process to end.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(Instant::now() < deadline, "difflow lsp did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_frame(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.parse().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

pub fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A position `{line, character}` of the `n`th occurrence of `needle` in `text` (plus
/// `shift` characters), counting UTF-16 code units as the protocol does by default.
pub fn position_of(text: &str, needle: &str, shift: usize) -> Value {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the text"));
    let before = &text[..at];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let character: usize = text[line_start..at].chars().map(char::len_utf16).sum::<usize>() + shift;
    json!({ "line": line, "character": character })
}
