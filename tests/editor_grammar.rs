//! The TextMate grammar (`editors/difflow.tmLanguage.json`) against the parser, on every
//! pipeline of the repo and the stdlib: for each file a `vscode-tmgrammar-test` case is
//! written whose assertions come from the syntax tree (every kind, name, variant, key,
//! value and comment must get its scope), then the tool (pinned in
//! `editors/package.json`, installed by `scripts/setup_tests.sh`) checks them all. The
//! hand-written cases in `editors/tests/` are run too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use difflow::syntax::ast::{Block, Comment, File, ItemKind, Span, Value, ValueKind};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (span, scope) of every token the grammar must name.
fn expected_scopes(file: &File) -> Vec<(Span, &'static str)> {
    let mut out = Vec::new();
    let mut comments = |cs: &[Comment], one: &Option<Comment>, out: &mut Vec<(Span, &'static str)>| {
        for c in cs.iter().chain(one) {
            out.push((c.span, "comment.line.number-sign.difflow"));
        }
    };
    for item in &file.items {
        comments(&item.leading_comments, &item.trailing_comment, &mut out);
        match &item.kind {
            ItemKind::Use { path_span, .. } => out.push((*path_span, "string.quoted.double.difflow")),
            ItemKind::Let { name, value } => {
                out.push((name.span, "variable.other.constant.difflow"));
                value_scopes(value, &mut out, &mut comments);
            }
            ItemKind::Decl(d) => {
                out.push((d.kind.span, "storage.type.kind.difflow"));
                out.push((d.name.span, "entity.name.type.difflow"));
                if let Some(v) = &d.variant {
                    out.push((v.span, "support.type.variant.difflow"));
                }
                block_scopes(&d.block, &mut out, &mut comments);
            }
        }
    }
    comments(&file.trailing_comments, &None, &mut out);
    out
}

type CommentSink<'c> = dyn FnMut(&[Comment], &Option<Comment>, &mut Vec<(Span, &'static str)>) + 'c;

fn block_scopes(block: &Block, out: &mut Vec<(Span, &'static str)>, comments: &mut CommentSink<'_>) {
    for e in &block.entries {
        comments(&e.leading_comments, &e.trailing_comment, out);
        out.push((e.key.span, "variable.other.key.difflow"));
        value_scopes(&e.value, out, comments);
    }
    comments(&block.trailing_comments, &None, out);
}

fn value_scopes(value: &Value, out: &mut Vec<(Span, &'static str)>, comments: &mut CommentSink<'_>) {
    match &value.kind {
        ValueKind::Number { .. } => out.push((value.span, "constant.numeric.difflow")),
        ValueKind::Str(_) => out.push((value.span, "string.quoted.double.difflow")),
        ValueKind::Bool(_) => out.push((value.span, "constant.language.boolean.difflow")),
        ValueKind::Ident(name) => out.push((name.span, "variable.other.reference.difflow")),
        ValueKind::List(items) | ValueKind::Sweep(items) => items.iter().for_each(|v| value_scopes(v, out, comments)),
        ValueKind::Replicate(count) => value_scopes(count, out, comments),
        ValueKind::Inline { variant, block } => {
            out.push((variant.span, "support.type.variant.difflow"));
            block_scopes(block, out, comments);
        }
        ValueKind::Record(block) => block_scopes(block, out, comments),
    }
}

/// The file with an assertion line under each source line for each of its tokens.
fn test_case(name: &str, text: &str) -> String {
    let file = difflow::syntax::parse(0, text).unwrap_or_else(|d| panic!("{name} does not parse: {d:?}"));
    let mut scopes = expected_scopes(&file);
    scopes.sort_by_key(|(s, _)| s.start);
    let mut out = format!("# SYNTAX TEST \"source.difflow\" \"{name}\"\n");
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
        for (span, scope) in scopes.iter().filter(|(s, _)| s.start >= line_start && s.start < line_end) {
            let units = |s: &str| s.chars().map(char::len_utf16).sum::<usize>();
            let col = units(&text[line_start..span.start]);
            let len = units(text[span.start..span.end.min(line_end)].trim_end_matches(['\n', '\r']));
            if col == 0 {
                let _ = writeln!(out, "#<{} {scope}", "-".repeat(len));
            } else {
                let _ = writeln!(out, "#{}{} {scope}", " ".repeat(col - 1), "^".repeat(len));
            }
        }
        line_start = line_end;
    }
    out
}

fn diff_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "diff"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_grammar_scopes_every_token_of_the_repos_pipelines() {
    let tool = root().join("editors/node_modules/.bin/vscode-tmgrammar-test");
    assert!(
        tool.is_file(),
        "{} is missing: `bash scripts/setup_tests.sh` installs it (npm ci in editors/)",
        tool.display()
    );
    let cases = tempfile::tempdir().unwrap();
    let mut count = 0;
    for dir in ["pipelines", "stdlib"] {
        for path in diff_files(&root().join(dir)) {
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            let text = std::fs::read_to_string(&path).unwrap();
            let case = test_case(&name, &text);
            count += case.lines().filter(|l| l.starts_with("#<") || l.starts_with("# ") && l.contains('^')).count();
            std::fs::write(cases.path().join(name.replace('/', "_")), case).unwrap();
        }
    }
    assert!(count > 500, "only {count} assertions were generated");
    for hand_written in diff_files(&root().join("editors/tests")) {
        std::fs::copy(&hand_written, cases.path().join(hand_written.file_name().unwrap())).unwrap();
    }
    let out = Command::new(&tool)
        .arg("--compact")
        .arg("-g")
        .arg(root().join("editors/difflow.tmLanguage.json"))
        .arg(format!("{}/*.diff", cases.path().display()))
        .current_dir(root().join("editors"))
        .output()
        .expect("vscode-tmgrammar-test runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the grammar fails its tests:\n{report}");
    println!("{count} generated assertions pass\n{report}");
}
