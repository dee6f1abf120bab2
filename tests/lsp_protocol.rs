//! `difflow lsp` driven over stdio by a test client: diagnostics equal to `difflow check`'s,
//! a code action, the protocol's error answers, shutdown and exit.

mod cli_support;
mod lsp_support;

use std::path::Path;

use cli_support::difflow_check;
use lsp_support::{position_of, train_and_misspelt_sampler, url, Client};
use serde_json::{json, Value};

/// Three mistakes, one after non-ASCII text on its line (UTF-16 positions differ from
/// bytes and from chars there).
fn three_mistakes() -> String {
    let head =
        "# ᾱ_T and σ in a comment\nuse \"std/unet.diff\"\ndataset digits = mnist { path = \"dätä/ᾱ𝜎\", limt = 5 }\n";
    format!("{head}{}", train_and_misspelt_sampler("hybird"))
}

/// `(code, range)` of each diagnostic `difflow check` prints: the code line, the
/// `[file:LINE:BYTECOL]` of the primary label and the width of its underline (chars),
/// turned into a UTF-16 range.
fn check_diagnostics(dir: &Path, name: &str, text: &str) -> Vec<(String, Value)> {
    let (_, _, stderr) = difflow_check(dir, name);
    let lines: Vec<&str> = stderr.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(code) = line.strip_prefix("difflow::") else { continue };
        let header = lines[i..].iter().find(|l| l.contains(&format!("[{name}:"))).unwrap();
        let place = &header[header.find('[').unwrap() + name.len() + 2..header.find(']').unwrap()];
        let (line_no, col) = place.split_once(':').unwrap();
        let (line_no, col): (usize, usize) = (line_no.parse().unwrap(), col.parse().unwrap());
        let underline = lines[i..].iter().find(|l| l.contains('┬')).unwrap();
        let width = underline.chars().filter(|c| matches!(c, '─' | '┬')).count();
        let source_line = text.lines().nth(line_no - 1).unwrap();
        let start: usize = source_line[..col - 1].chars().map(char::len_utf16).sum();
        let end: usize = start + source_line[col - 1..].chars().take(width).map(char::len_utf16).sum::<usize>();
        let range = json!({ "start": { "line": line_no - 1, "character": start }, "end": { "line": line_no - 1, "character": end } });
        found.push((format!("difflow::{code}"), range));
    }
    found
}

fn codes_and_ranges(diags: &[Value]) -> Vec<(String, Value)> {
    diags.iter().map(|d| (d["code"].as_str().unwrap().to_string(), d["range"].clone())).collect()
}

#[test]
fn three_mistakes_match_check_and_a_code_action_fixes_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("three.diff");
    let text = three_mistakes();
    std::fs::write(&file, &text).unwrap();
    let expected = check_diagnostics(dir.path(), "three.diff", &text);
    assert_eq!(expected.len(), 3, "{expected:?}");

    let mut c = Client::initialized(dir.path());
    let uri = url(&file);
    c.open(&uri, &text);
    let diags = c.diagnostics(&uri);
    assert_eq!(codes_and_ranges(&diags), expected);
    // The message, help and label are those of `difflow check`.
    let stpes = &diags[2];
    assert_eq!(
        stpes["message"],
        "unknown key `stpes` for `ddim`\nhelp: did you mean `steps`? The keys of `ddim` are steps, eta, spacing"
    );
    assert_eq!(stpes["relatedInformation"][0]["message"], "not a key of `ddim`");
    assert_eq!(stpes["source"], "difflow");

    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": stpes["range"], "context": { "diagnostics": [stpes] } }),
    );
    let actions = actions["result"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["title"], "Replace stpes with steps");
    let edit = &actions[0]["edit"]["changes"][&uri][0];
    assert_eq!(edit["newText"], "steps");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "range": edit["range"], "text": "steps" }] }),
    );
    let after = c.diagnostics(&uri);
    assert_eq!(codes_and_ranges(&after), expected[..2].to_vec());

    // The quoted suggestion keeps its quotes.
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": after[1]["range"], "context": { "diagnostics": [] } }),
    );
    assert_eq!(actions["result"][0]["edit"]["changes"][&uri][0]["newText"], "\"hybrid\"");
    c.shut_down();
}

#[test]
fn garbage_and_out_of_order_messages_get_protocol_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(dir.path());
    // Before `initialize`: ServerNotInitialized.
    let early = c.request("textDocument/hover", json!({}));
    assert_eq!(early["error"]["code"], -32002, "{early}");
    // Not JSON: ParseError with a null id; then the server goes on.
    c.send_raw(b"Content-Length: 9\r\n\r\n{not json");
    let parse = c.wait_for(|m| m.get("error").is_some());
    assert_eq!((parse["error"]["code"].clone(), parse["id"].clone()), (json!(-32700), Value::Null));
    // JSON that is no message: InvalidRequest, answering its id.
    c.send(&json!({ "jsonrpc": "2.0", "id": 77, "params": 5 }));
    let invalid = c.wait_for(|m| m["id"] == 77);
    assert_eq!(invalid["error"]["code"], -32600, "{invalid}");
    // A header block without Content-Length.
    c.send_raw(b"X-Nonsense: yes\r\n\r\n");
    let no_length = c.wait_for(|m| m.get("error").is_some());
    assert_eq!(no_length["error"]["code"], -32700);

    let init = c.request("initialize", json!({ "processId": null, "capabilities": {} }));
    assert!(init["result"]["capabilities"]["hoverProvider"].as_bool().unwrap());
    let again = c.request("initialize", json!({ "processId": null, "capabilities": {} }));
    assert_eq!(again["error"]["code"], -32600);
    let unknown = c.request("workspace/frobnicate", json!({}));
    assert_eq!(unknown["error"]["code"], -32601);
    let bad_params = c.request("textDocument/hover", json!({ "textDocument": 3 }));
    assert_eq!(bad_params["error"]["code"], -32602);
    let not_open = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": "file:///nowhere.diff" }, "position": { "line": 0, "character": 0 } }),
    );
    assert_eq!(not_open["error"]["code"], -32602);
    // A change to a buffer that is not open is reported, not fatal.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": "file:///nowhere.diff", "version": 2 }, "contentChanges": [] }),
    );
    let shown = c.wait_for(|m| m["method"] == "window/showMessage");
    assert!(shown["params"]["message"].as_str().unwrap().contains("not open"), "{shown}");

    assert_eq!(c.request("shutdown", Value::Null)["result"], Value::Null);
    let late = c.request("textDocument/hover", json!({}));
    assert_eq!(late["error"]["code"], -32600);
    c.exit_with(0);
}

#[test]
fn exit_without_shutdown_and_end_of_input_exit_with_1() {
    let dir = tempfile::tempdir().unwrap();
    Client::initialized(dir.path()).exit_with(1);
    let c = Client::initialized(dir.path());
    assert_eq!(c.finish().code(), Some(1));
}

#[test]
fn unsaved_text_of_a_used_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib.diff");
    let main = dir.path().join("main.diff");
    std::fs::write(&lib, "schedule cos = cosine { steps = 100 }\n").unwrap();
    let main_text = "use \"lib.diff\"\nmodel net = mlp { hidden = 32 }\ndataset pts = toy { shape = \"moons\", count = 64 }\ntrain t { model = net, data = pts, schedule = cos, steps = 2, batch = 32 }\n";
    std::fs::write(&main, main_text).unwrap();
    let mut c = Client::initialized(dir.path());
    c.open(&url(&main), main_text);
    assert_eq!(c.diagnostics(&url(&main)), Vec::<Value>::new());
    // Rename the schedule in the unsaved buffer of lib.diff: main.diff loses `cos`.
    c.open(&url(&lib), "schedule cosine2 = cosine { steps = 100 }\n");
    let diags = loop {
        let d = c.diagnostics(&url(&main));
        if !d.is_empty() {
            break d;
        }
    };
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["range"]["start"], position_of(main_text, "cos, steps", 0));
    // A syntax error in the used buffer is shown on the `use` that brings it in.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": url(&lib), "version": 2 }, "contentChanges": [{ "text": "schedule cos = cosine { steps = }\n" }] }),
    );
    let diags = loop {
        let d = c.diagnostics(&url(&main));
        if d.iter().any(|d| d["code"] == "difflow::syntax") {
            break d;
        }
    };
    assert_eq!(diags[0]["range"]["start"], json!({ "line": 0, "character": 4 }));
    assert!(diags[0]["message"].as_str().unwrap().starts_with("lib.diff:1: "), "{}", diags[0]);
}

#[test]
fn utf8_positions_when_the_client_offers_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(dir.path());
    let init = c.request(
        "initialize",
        json!({ "processId": null, "capabilities": { "general": { "positionEncodings": ["utf-8", "utf-16"] } } }),
    );
    assert_eq!(init["result"]["capabilities"]["positionEncoding"], "utf-8");
    let text = "dataset d = toy { shape = \"ᾱ\", cuont = 5 }\n";
    let uri = url(&dir.path().join("u.diff"));
    c.open(&uri, text);
    let diags = c.diagnostics(&uri);
    let cuont = diags.iter().find(|d| d["code"] == "difflow::unknown_key").expect("unknown key reported");
    assert_eq!(cuont["range"]["start"]["character"], text.find("cuont").unwrap());
}

/// Typing a whole pipeline character by character: every intermediate text (unclosed
/// strings and blocks, half-written keys) gets diagnostics, and completion and hover at
/// the cursor get answers, never a failure.
#[test]
fn typing_a_pipeline_character_by_character_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/quickstart.diff")).unwrap();
    let mut c = Client::initialized(dir.path());
    let uri = url(&dir.path().join("typed.diff"));
    c.open(&uri, "");
    c.diagnostics(&uri);
    let (mut line, mut character) = (0, 0);
    for (i, ch) in text.chars().enumerate() {
        let at = json!({ "line": line, "character": character });
        c.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": i + 2 }, "contentChanges": [{ "range": { "start": at, "end": at }, "text": ch.to_string() }] }),
        );
        if ch == '\n' {
            (line, character) = (line + 1, 0);
        } else {
            character += ch.len_utf16();
        }
        let cursor = json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } });
        for method in ["textDocument/completion", "textDocument/hover"] {
            let answer = c.request(method, cursor.clone());
            assert!(
                answer.get("error").is_none(),
                "{method} after {:?}: {answer}",
                &text[..text.char_indices().nth(i).unwrap().0]
            );
        }
    }
    let last = c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } }));
    assert!(!last["result"].as_array().unwrap().is_empty());
    // Published before the last requests were answered, so among the messages seen.
    let last_version = text.chars().count() + 1;
    let diags =
        c.seen.iter().rev().find(|m| m["params"]["version"] == last_version).expect("the last version's diagnostics");
    assert_eq!(diags["params"]["diagnostics"], json!([]), "the typed pipeline checks clean");
}

/// Every "did you mean" of the check cases becomes a code action, and applying it makes
/// that diagnostic go away (the replaced span is the misspelt word itself).
#[test]
fn every_did_you_mean_of_the_check_cases_is_fixed_by_its_code_action() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/check");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "stderr"))
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("did you mean"))
        .map(|p| p.with_extension("diff"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "{cases:?}");
    let mut c = Client::initialized(&dir);
    let mut fixed = 0;
    for (n, case) in cases.iter().enumerate() {
        let uri = url(case);
        let text = std::fs::read_to_string(case).unwrap();
        c.open(&uri, &text);
        let diags = c.diagnostics(&uri);
        let mut version = 1;
        for d in diags.iter().filter(|d| d["message"].as_str().unwrap().contains("did you mean")) {
            let actions = c.request(
                "textDocument/codeAction",
                json!({ "textDocument": { "uri": uri }, "range": d["range"], "context": { "diagnostics": [d] } }),
            );
            let action = actions["result"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["diagnostics"][0]["message"] == d["message"]))
                .unwrap_or_else(|| panic!("{}: no action for {d}: {actions}", case.display()));
            let edit = &action["edit"]["changes"][&uri][0];
            // Apply the edit to a copy of the text as an editor would, and send it whole.
            let mut fixed_text = text.clone();
            let (start, end) = (offset(&text, &edit["range"]["start"]), offset(&text, &edit["range"]["end"]));
            fixed_text.replace_range(start..end, edit["newText"].as_str().unwrap());
            version += 1;
            c.notify(
                "textDocument/didChange",
                json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "text": fixed_text }] }),
            );
            let after = c.diagnostics(&uri);
            assert!(
                !after.iter().any(|a| a["message"] == d["message"] && a["range"] == d["range"]),
                "{}: {} did not fix {d}: {after:?}",
                case.display(),
                action["title"]
            );
            // Undo, for the next diagnostic of the file.
            version += 1;
            c.notify(
                "textDocument/didChange",
                json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [{ "text": text }] }),
            );
            c.diagnostics(&uri);
            fixed += 1;
        }
        c.notify("textDocument/didClose", json!({ "textDocument": { "uri": uri } }));
        assert_eq!(c.diagnostics(&uri), Vec::<Value>::new(), "closing clears case {n}");
    }
    assert!(fixed >= 10, "only {fixed} fixes");
}

/// The byte offset of a UTF-16 `{line, character}` position.
fn offset(text: &str, pos: &Value) -> usize {
    let line = pos["line"].as_u64().unwrap() as usize;
    let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
    let mut units = pos["character"].as_u64().unwrap() as usize;
    let mut at = start;
    for ch in text[start..].chars() {
        if units == 0 {
            break;
        }
        units -= ch.len_utf16();
        at += ch.len_utf8();
    }
    at
}

/// Address space for the servers of the hostile cases: a server that reads `/dev/zero` or
/// keeps a huge frame fails instead of filling the machine.
const SERVER_MEMORY: u64 = 1 << 30;

/// Growth of the peak memory (`VmHWM`) that the hostile frames may cause: far less than
/// what they would take if kept.
const FRAME_GROWTH: u64 = 16 << 20;

/// Completion in a buffer that does not parse reads the files it `use`s again, by the rule
/// `check` reads them with: nothing outside the project, no FIFO, no device.
#[test]
fn completion_reads_used_files_only_as_check_would() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("a/b");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("difflow.toml"), "").unwrap();
    std::fs::write(root.path().join("outside.txt"), "let OUTSIDE_TXT = 1\n").unwrap();
    std::fs::write(root.path().join("outside.diff"), "let OUTSIDE_DIFF = 1\n").unwrap();
    std::fs::write(project.join("inside.diff"), "let INSIDE = 1\n").unwrap();
    assert!(std::process::Command::new("mkfifo").arg(project.join("fifo.diff")).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/zero", project.join("zero.diff")).unwrap();
    let uses = ["../../outside.txt", "../../outside.diff", "fifo.diff", "zero.diff", "/dev/zero", "inside.diff"];
    let mut text: String = uses.iter().map(|u| format!("use \"{u}\"\n")).collect();
    text.push_str(&train_and_misspelt_sampler("simple"));
    text.push_str("sample s2 { from = \n");
    let file = project.join("p.diff");
    std::fs::write(&file, &text).unwrap();

    let mut c = Client::initialized_limited(&project, SERVER_MEMORY);
    let uri = url(&file);
    c.open(&uri, &text);
    let at = position_of(&text, "from = \n", 7);
    // A server stuck on the FIFO never answers: the client's wait fails.
    let r = c.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": at }));
    let labels: Vec<&str> = r["result"].as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    assert!(labels.contains(&"ddpm") && labels.contains(&"INSIDE"), "{labels:?}");
    assert!(!labels.iter().any(|l| l.starts_with("OUTSIDE")), "{labels:?}");
    assert!(c.peak_memory() < 256 << 20, "{} bytes", c.peak_memory());
    c.shut_down();
}

/// A `difflow.toml` at a FIFO: the buffer's check shows the settings error instead of
/// hanging the server.
#[test]
fn a_settings_file_at_a_fifo_is_a_diagnostic_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("mkfifo").arg(dir.path().join("difflow.toml")).status().unwrap().success());
    let file = dir.path().join("p.diff");
    let text = "schedule s = linear { steps = 100 }\n";
    std::fs::write(&file, text).unwrap();
    let mut c = Client::initialized_limited(dir.path(), SERVER_MEMORY);
    let uri = url(&file);
    c.open(&uri, text);
    let diags = c.diagnostics(&uri);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["code"], "difflow::bad_settings");
    assert!(diags[0]["message"].as_str().unwrap().contains("it is a FIFO, not a regular file"), "{diags:?}");
    c.shut_down();
}

/// A header line without a newline and a body beyond the limit are read and dropped: the
/// server answers each with a ParseError and goes on, its memory growing by little.
#[test]
fn an_endless_header_line_and_a_huge_body_are_dropped_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::initialized_limited(dir.path(), SERVER_MEMORY);
    let before = c.peak_memory();
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..64 {
        c.send_raw(&chunk);
    }
    c.send_raw(b"\r\n\r\n");
    let long_line = c.wait_for(|m| m.get("error").is_some());
    assert_eq!(long_line["error"]["code"], -32700, "{long_line}");
    assert!(long_line["error"]["message"].as_str().unwrap().contains("longer than"), "{long_line}");

    let body_bytes = 65 << 20;
    c.send_raw(format!("Content-Length: {body_bytes}\r\n\r\n").as_bytes());
    let mut chunk = vec![b' '; 1 << 20];
    chunk[0] = b'{';
    for _ in 0..65 {
        c.send_raw(&chunk);
    }
    let huge = c.wait_for(|m| m.get("error").is_some());
    assert!(huge["error"]["message"].as_str().unwrap().contains("at most"), "{huge}");

    let grown = c.peak_memory().saturating_sub(before);
    assert!(grown < FRAME_GROWTH, "the peak memory grew by {grown} bytes");
    c.shut_down();
}

/// Bytes that are not UTF-8 in a header: a ParseError, and the next message is answered.
#[test]
fn a_header_that_is_not_utf8_gets_a_parse_error_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::initialized_limited(dir.path(), SERVER_MEMORY);
    c.send_raw(b"Content-Length: 2\xff\xfe\r\n\r\n{}");
    let bad = c.wait_for(|m| m.get("error").is_some());
    assert_eq!((bad["error"]["code"].clone(), bad["id"].clone()), (json!(-32700), Value::Null), "{bad}");
    let hover = c.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": "file:///nowhere.diff" }, "position": { "line": 0, "character": 0 } }),
    );
    assert_eq!(hover["error"]["code"], -32602, "{hover}");
    c.shut_down();
}
