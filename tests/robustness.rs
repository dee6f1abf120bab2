//! No input may make the front end panic, hang or overflow the stack: property tests over
//! random bytes, token soups and mutations of the repository's real pipelines, plus
//! deterministic tests for deep nesting and 10 MB files.

mod cli_support;

use std::time::{Duration, Instant};

use cli_support::diff_files_under;
use difflow::diagnostics::{render_plain, Code, Diagnostic};
use difflow::fmt::format_source;
use difflow::syntax::lexer::MAX_DEPTH;
use difflow::syntax::parse;
use proptest::prelude::*;

/// Corpus files written not to parse: the syntax-error cases of `tests/check` (their
/// `.stderr` goldens hold the expected message). Every other corpus file must parse.
const EXPECTED_PARSE_FAILURES: &[&str] = &[
    "tests/check/syntax_bad_escape.diff",
    "tests/check/syntax_bad_exponent.diff",
    "tests/check/syntax_colon_for_equals.diff",
    "tests/check/syntax_comment_without_hash.diff",
    "tests/check/syntax_curly_quotes.diff",
    "tests/check/syntax_declaration_without_kind.diff",
    "tests/check/syntax_double_underscore.diff",
    "tests/check/syntax_entry_outside_block.diff",
    "tests/check/syntax_integer_too_large.diff",
    "tests/check/syntax_invisible_space.diff",
    "tests/check/syntax_let_without_equals.diff",
    "tests/check/syntax_missing_comma_in_list.diff",
    "tests/check/syntax_missing_comma_in_sweep.diff",
    "tests/check/syntax_missing_equals_before_variant.diff",
    "tests/check/syntax_missing_value.diff",
    "tests/check/syntax_missing_variant.diff",
    "tests/check/syntax_number_runs_into_key.diff",
    "tests/check/syntax_parens_for_inline_block.diff",
    "tests/check/syntax_quoted_key.diff",
    "tests/check/syntax_semicolon.diff",
    "tests/check/syntax_stray_brace.diff",
    "tests/check/syntax_too_deep.diff",
    "tests/check/syntax_unclosed_at_end.diff",
    "tests/check/syntax_unclosed_block.diff",
    "tests/check/syntax_unclosed_list.diff",
    "tests/check/syntax_unclosed_list_before_next_key.diff",
    "tests/check/syntax_unterminated_string.diff",
    "tests/check/syntax_use_without_quotes.diff",
    "tests/check/syntax_values_without_list.diff",
];

/// The repository's pipelines and test sources (path relative to the repository, text).
fn corpus_files() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = diff_files_under(&["pipelines", "stdlib", "tests/check", "tests/fmt"]);
    let read = |p: &std::path::PathBuf| {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        (p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned(), text)
    };
    files.iter().map(read).collect()
}

fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = corpus_files().into_iter().map(|(_, text)| text).collect();
    // A pipeline using every construct, so the corpus is never empty.
    texts.push(
        "# every construct\nuse \"std/unet.diff\"\nlet T = 1_000 # steps\ndataset d = toy { shape = \"moons\", count = 10_000 }\n\
         schedule s = cosine { steps = T }\nmodel net = mlp { hidden = 128, layers = 3 }\n\
         train t { model = net, data = d, schedule = s, lr = 2e-4, ema = 0.9999, steps = -3 }\n\
         sample g {\n    from = t\n    sampler = ddim { steps = sweep(10, 50,), eta = 0.0 }\n    classes = [1, 2, 3]\n    # inner\n}\n"
            .to_string(),
    );
    texts
}

fn assert_spans_valid(text: &str, diags: &[Diagnostic]) {
    assert!(!diags.is_empty(), "a failure must say why");
    for d in diags {
        for label in std::iter::once(&d.primary).chain(&d.secondary) {
            let s = label.span;
            assert!(
                s.start <= s.end && s.end <= text.len(),
                "span {s:?} outside a text of {} bytes: {d:?}",
                text.len()
            );
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end), "span {s:?} splits a char: {d:?}");
        }
        assert!(d.code.as_str().starts_with("difflow::"), "{d:?}");
        assert!(
            !d.message.contains("Rule::") && !d.message.contains("EOI") && !d.message.contains("something else"),
            "pest leaked into {d:?}"
        );
    }
}

/// Everything the front end does with a text must end, without panicking, in a result
/// or in diagnostics that point inside the text; fmt must be idempotent where it works.
fn exercise(text: &str) {
    check_fully(text);
    match parse(0, text) {
        Ok(_) => {
            let once = format_source(0, text).unwrap_or_else(|d| panic!("fmt failed on parsed input {text:?}: {d:?}"));
            let twice =
                format_source(0, &once).unwrap_or_else(|d| panic!("fmt output does not parse: {once:?}: {d:?}"));
            assert_eq!(once, twice, "fmt not idempotent on {text:?}");
        }
        Err(diags) => {
            assert_eq!(diags.len(), 1, "one syntax error per file");
            assert_spans_valid(text, &diags);
        }
    }
}

/// The whole front end (modules, resolver, checker) and the diagnostics renderer.
fn check_fully(text: &str) {
    let loaded = difflow::lang::load_source("fuzz.diff", text, &[]);
    for d in &loaded.diagnostics {
        for label in std::iter::once(&d.primary).chain(&d.secondary) {
            let s = label.span;
            let src = &loaded.sources.get(s.file).text;
            assert!(s.start <= s.end && s.end <= src.len(), "span {s:?} outside its file: {d:?}");
            assert!(src.is_char_boundary(s.start) && src.is_char_boundary(s.end), "span {s:?} splits a char: {d:?}");
        }
    }
    let rendered = render_plain(&loaded.diagnostics, &loaded.sources);
    assert_eq!(loaded.diagnostics.is_empty(), rendered.is_empty());
    assert_eq!(loaded.pipeline.is_some(), loaded.diagnostics.is_empty());
    if let Some(p) = &loaded.pipeline {
        // Keys of whatever checked clean must compute (or fail with a message), not panic.
        let _ = difflow::cache::key::stage_keys(p);
    }
}

const TOKENS: &[&str] = &[
    "dataset",
    "train",
    "sample",
    "d",
    "net",
    "toy",
    "ddim",
    "=",
    "=",
    "{",
    "}",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    "sweep",
    "sweep(",
    "use",
    "let",
    "\"s\"",
    "\"",
    "\\",
    "\"a\\qb\"",
    "1",
    "1e",
    "2e-4",
    "-",
    "-3",
    "0.5",
    ".5",
    "1__0",
    "10_000",
    "99999999999999999999",
    "1e999",
    "#c\n",
    "# c",
    "\n",
    "\n\n",
    " ",
    "\t",
    ":",
    ";",
    "true",
    "false",
    "é",
    "😀",
    "\r\n",
    "key",
    "x_1",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|toks| {
        let mut s = String::new();
        for t in toks {
            s.push_str(t);
            s.push(' ');
        }
        s
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    Swap { a: usize, b: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), any::<usize>(), 1usize..12).prop_map(|(a, b, len)| Mutation::Swap { a, b, len }),
    ]
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut s = text.to_string();
    for m in muts {
        let n = s.len().max(1);
        match *m {
            Mutation::Delete { at, len } => {
                let a = floor_boundary(&s, at % n);
                let b = floor_boundary(&s, a + len);
                s.replace_range(a..b, "");
            }
            Mutation::Insert { at, token } => {
                let a = floor_boundary(&s, at % n);
                s.insert_str(a, token);
            }
            Mutation::Swap { a, b, len } => {
                let (mut a, mut b) = (floor_boundary(&s, a % n), floor_boundary(&s, b % n));
                if a > b {
                    std::mem::swap(&mut a, &mut b);
                }
                let a_end = floor_boundary(&s, (a + len).min(b));
                let b_end = floor_boundary(&s, b + len);
                let (first, second) = (s[a..a_end].to_string(), s[b..b_end].to_string());
                s = format!("{}{}{}{}{}", &s[..a], second, &s[a_end..b], first, &s[b_end..]);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("DIFFLOW_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1000),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soups_never_panic(text in token_soup()) {
        exercise(&text);
    }

    #[test]
    fn mutated_pipelines_never_panic(index in any::<usize>(), muts in prop::collection::vec(mutation(), 1..6)) {
        static CORPUS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let corpus = CORPUS.get_or_init(corpus);
        let text = apply(&corpus[index % corpus.len()], &muts);
        exercise(&text);
    }
}

/// Every corpus file parses (a parse regression fails here, naming the file) except those
/// listed as written not to, which must still fail; all go through the whole front end.
#[test]
fn the_corpus_parses_and_formats() {
    let mut unexpected = Vec::new();
    let mut failing = Vec::new();
    for (name, text) in corpus_files() {
        if let Err(diags) = parse(0, &text) {
            if !EXPECTED_PARSE_FAILURES.contains(&name.as_str()) {
                unexpected.push(format!("{name}: {}", diags[0].message));
            }
            failing.push(name);
        }
        exercise(&text);
    }
    assert!(unexpected.is_empty(), "corpus files that do not parse:\n{}", unexpected.join("\n"));
    let parsing: Vec<&&str> = EXPECTED_PARSE_FAILURES.iter().filter(|n| !failing.iter().any(|f| f == **n)).collect();
    assert!(parsing.is_empty(), "listed as not parsing, but they parse or are gone: {parsing:?}");
}

/// CPU time of this thread (Linux), so that time bounds hold on a busy machine too.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// Run `f`, print its wall and CPU time, and fail if its CPU time (wall time where that
/// is unknown) exceeds 20 s.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    let out = f();
    let wall = wall.elapsed();
    let cpu = cpu.and_then(|c0| thread_cpu_time().map(|c1| c1.saturating_sub(c0)));
    eprintln!("{what}: {wall:?} wall, {cpu:?} cpu");
    let took = cpu.unwrap_or(wall);
    assert!(took < Duration::from_secs(20), "{what} took {took:?}");
    out
}

#[test]
fn nesting_up_to_the_limit_parses_and_deeper_is_a_clear_error() {
    let nest = |depth: usize| format!("let x = {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let ok = nest(MAX_DEPTH);
    assert!(parse(0, &ok).is_ok());
    let formatted = format_source(0, &ok).unwrap();
    assert_eq!(format_source(0, &formatted).unwrap(), formatted);

    let inline = |depth: usize| {
        let mut s = "train t { a = ".to_string();
        for _ in 1..depth {
            s.push_str("v { a = ");
        }
        s.push('1');
        s.push_str(&" }".repeat(depth));
        s
    };
    assert!(parse(0, &inline(MAX_DEPTH)).is_ok());

    for text in [nest(MAX_DEPTH + 1), nest(1_000_000), "[".repeat(5_000_000), inline(MAX_DEPTH + 1)] {
        let err = timed("deep nesting", || parse(0, &text)).unwrap_err();
        assert_eq!(err[0].code, Code::TooDeep);
        assert_spans_valid(&text, &err);
        assert_eq!(err[0].primary.span.start, text.match_indices(['[', '{']).nth(MAX_DEPTH).unwrap().0);
    }
    // Mixed brackets count together, and so do sweeps.
    let mixed = format!("let x = {}1", "sweep([v { a = ".repeat(30));
    assert_eq!(parse(0, &mixed).unwrap_err()[0].code, Code::TooDeep);
}

const TEN_MB: usize = 10 * 1024 * 1024;

#[test]
fn a_10_mb_pipeline_parses_and_formats_in_seconds() {
    let mut text = String::with_capacity(TEN_MB + 200);
    let mut n = 0;
    while text.len() < TEN_MB {
        text.push_str(&format!(
            "# stage {n}\ndataset d{n} = toy {{ shape = \"moons\", count = 10_000, noise = 2e-2 }}  # data\nlet c{n} = [1, 2, 3]\n"
        ));
        n += 1;
    }
    let file = timed("parse 10 MB", || parse(0, &text)).unwrap();
    assert_eq!(file.items.len(), 2 * n);
    let loaded = timed("check 10 MB", || difflow::lang::load_source("big.diff", &text, &[]));
    let rendered = render_plain(&loaded.diagnostics[..loaded.diagnostics.len().min(3)], &loaded.sources);
    assert!(loaded.pipeline.is_some() || !rendered.is_empty());
    let out = timed("fmt 10 MB", || format_source(0, &text)).unwrap();
    assert!(out.len() > TEN_MB);
}

#[test]
fn a_10_mb_broken_file_gives_one_clear_error_in_seconds() {
    // An unclosed block near the start of a long file.
    let mut text = "train t {\n    steps = 5\n".to_string();
    while text.len() < TEN_MB {
        text.push_str("dataset d = toy { count = 10 }\n");
    }
    let err = timed("parse 10 MB unclosed", || parse(0, &text)).unwrap_err();
    assert_eq!(err[0].message, "unclosed `{` (the block opened here)");
    assert_eq!(err[0].primary.span.start, 8);

    // One huge line: a list with a missing comma at its very end.
    let mut line = "let x = [".to_string();
    while line.len() < TEN_MB {
        line.push_str("1, ");
    }
    line.push_str("1 2]");
    let err = timed("parse 10 MB line", || parse(0, &line)).unwrap_err();
    assert_eq!(err[0].message, "missing `,` between list items");
    assert_spans_valid(&line, &err);

    // An unterminated string, a giant comment, and 10 MB of garbage.
    for text in [
        format!("let s = \"{}", "a".repeat(TEN_MB)),
        format!("#{}", "x".repeat(TEN_MB)),
        "@".repeat(TEN_MB),
        "{".repeat(TEN_MB),
        "}".repeat(TEN_MB),
    ] {
        match timed("parse 10 MB odd", || parse(0, &text)) {
            Ok(f) => assert!(f.items.is_empty()),
            Err(d) => assert_spans_valid(&text, &d),
        }
    }
}
