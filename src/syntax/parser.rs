//! Text → [`ast::File`] with the pest grammar `grammar/difflow.pest`.
//!
//! A cheap scan ([`super::lexer`]) runs first: it bounds the nesting depth (pest
//! recurses per level), and finds unterminated strings, bad escapes, malformed numbers and
//! unbalanced brackets. Pest's failure (a set of rule names at a byte offset) is then
//! turned into a sentence in words with the help of the tokens around it. One syntax
//! error is reported per file: the first one in the text.

use std::sync::Arc;

use pest::error::InputLocation;
use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::{self, Block, Comment, Decl, Entry, FileId, Ident, Item, ItemKind, Span, Value, ValueKind};
use super::lexer::{self, BracketProblem, LexProblem, RawComment, Scan, TokKind, Token};
use crate::diagnostics::{Code, Diagnostic};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/difflow.pest"]
struct DiffParser;

/// Parse one file. On failure, exactly one diagnostic: the first syntax error.
pub fn parse(file: FileId, text: &str) -> Result<ast::File, Vec<Diagnostic>> {
    let scan = lexer::scan(text);
    if let Some(LexProblem::TooDeep { at }) = scan.problem {
        return Err(vec![too_deep(file, text, &scan, at)]);
    }
    let parsed = DiffParser::parse(Rule::file, text);
    let pairs = match parsed {
        Ok(pairs) => pairs,
        Err(err) => {
            let pos = match err.location {
                InputLocation::Pos(p) => p,
                InputLocation::Span((s, _)) => s,
            };
            let positives = match &err.variant {
                pest::error::ErrorVariant::ParsingError { positives, .. } => positives.clone(),
                pest::error::ErrorVariant::CustomError { .. } => Vec::new(),
            };
            // A lexical problem at or before pest's failure explains it better.
            if let Some(problem) = &scan.problem {
                if problem.start() <= pos {
                    return Err(vec![lex_problem(file, text, problem)]);
                }
            }
            let ctx = ErrorContext { file, text, scan: &scan, pos, positives };
            if let Some(d) = ctx.bracket_error() {
                return Err(vec![d]);
            }
            return Err(vec![ctx.describe()]);
        }
    };
    if let Some(problem) = &scan.problem {
        return Err(vec![lex_problem(file, text, problem)]);
    }
    let file_pair = pairs.into_iter().next().expect("the file rule always yields one pair");
    let mut builder = Builder { file, error: None };
    let mut items = Vec::new();
    for pair in file_pair.into_inner() {
        match pair.as_rule() {
            Rule::EOI => {}
            _ => items.push(builder.item(pair)),
        }
    }
    if let Some(d) = builder.error {
        return Err(vec![d]);
    }
    let mut out = ast::File { file, items, trailing_comments: Vec::new() };
    attach_comments(&mut out, text, &scan.comments);
    Ok(out)
}

/// Every `#` comment of a text, in order, as the formatter and the parser see them.
pub fn comments(file: FileId, text: &str) -> Vec<Comment> {
    lexer::scan(text).comments.iter().map(|c| to_comment(file, text, c)).collect()
}

fn to_comment(file: FileId, text: &str, c: &RawComment) -> Comment {
    Comment {
        text: text[c.start + 1..c.end].to_string(),
        span: Span::new(file, c.start, c.end),
        same_line: c.same_line,
    }
}

// ---------------------------------------------------------------------------------------
// Building the tree

struct Builder {
    file: FileId,
    /// The first problem found while building (a number out of range).
    error: Option<Diagnostic>,
}

impl Builder {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, pair: Pair<'_, Rule>) -> Ident {
        Ident { name: pair.as_str().to_string(), span: self.span(&pair) }
    }

    fn item(&mut self, pair: Pair<'_, Rule>) -> Item {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        let kind = match rule {
            Rule::use_item => {
                inner.next(); // kw_use
                let s = inner.next().expect("use has a string");
                let path_span = self.span(&s);
                ItemKind::Use { path: self.string(s), path_span }
            }
            Rule::let_item => {
                inner.next(); // kw_let
                let name = self.ident(inner.next().expect("let has a name"));
                inner.next(); // eq
                let value = self.value(inner.next().expect("let has a value"));
                ItemKind::Let { name, value }
            }
            Rule::decl => {
                let kind = self.ident(inner.next().expect("decl has a kind"));
                let name = self.ident(inner.next().expect("decl has a name"));
                let mut variant = None;
                let mut block = None;
                for p in inner {
                    match p.as_rule() {
                        Rule::variant => variant = Some(self.ident(p)),
                        Rule::block => block = Some(self.block(p)),
                        _ => {}
                    }
                }
                ItemKind::Decl(Decl { kind, name, variant, block: block.expect("decl has a block") })
            }
            other => unreachable!("the grammar has no item {other:?}"),
        };
        Item { kind, span, leading_comments: Vec::new(), trailing_comment: None, blank_line_before: false }
    }

    fn block(&mut self, pair: Pair<'_, Rule>) -> Block {
        let span = self.span(&pair);
        let mut entries = Vec::new();
        for p in pair.into_inner() {
            if p.as_rule() == Rule::entry {
                let mut inner = p.clone().into_inner();
                let key = self.ident(inner.next().expect("entry has a key"));
                inner.next(); // eq
                let value = self.value(inner.next().expect("entry has a value"));
                let span = key.span.to(value.span);
                entries.push(Entry { key, value, span, leading_comments: Vec::new(), trailing_comment: None });
            }
        }
        Block { entries, span, trailing_comments: Vec::new() }
    }

    fn values(&mut self, pair: Pair<'_, Rule>) -> Vec<Value> {
        pair.into_inner().filter(|p| p.as_rule() == Rule::value).map(|p| self.value(p)).collect()
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> Value {
        let span = self.span(&pair);
        let inner = pair.into_inner().next().expect("a value has one alternative");
        let kind = match inner.as_rule() {
            Rule::number => self.number(&inner),
            Rule::string => ValueKind::Str(self.string(inner)),
            Rule::bool => ValueKind::Bool(inner.as_str() == "true"),
            Rule::list => ValueKind::List(self.values(inner)),
            Rule::sweep => ValueKind::Sweep(self.values(inner)),
            Rule::inline => {
                let mut parts = inner.into_inner();
                let variant = self.ident(parts.next().expect("inline has a variant"));
                let block = self.block(parts.next().expect("inline has a block"));
                ValueKind::Inline { variant, block }
            }
            Rule::ref_name => ValueKind::Ident(self.ident(inner)),
            other => unreachable!("the grammar has no value {other:?}"),
        };
        Value { kind, span }
    }

    fn number(&mut self, pair: &Pair<'_, Rule>) -> ValueKind {
        let text = pair.as_str();
        let digits: String = text.chars().filter(|&c| c != '_').collect();
        let is_integer = !digits.contains(['.', 'e', 'E']);
        let value = digits.parse::<f64>().unwrap_or(f64::NAN);
        let in_range = if is_integer { digits.parse::<i64>().is_ok() } else { value.is_finite() };
        if !in_range && self.error.is_none() {
            let span = self.span(pair);
            let (what, help) = if is_integer {
                ("integer", "integers range from -9223372036854775808 to 9223372036854775807")
            } else {
                ("number", "numbers must fit a 64-bit float (about ±1.8e308)")
            };
            self.error = Some(
                Diagnostic::new(Code::Syntax, format!("the {what} `{text}` is too large"), span, "too large")
                    .with_help(help),
            );
        }
        ValueKind::Number { value, text: Arc::from(text), is_integer }
    }

    /// The decoded content of a `string` pair (escapes were validated by the lexer).
    fn string(&self, pair: Pair<'_, Rule>) -> String {
        let raw = pair.into_inner().next().map_or("", |p| p.as_str());
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Comments as trivia

fn has_newline(text: &str, from: usize, to: usize) -> bool {
    from < to && text.as_bytes()[from..to].contains(&b'\n')
}

/// Whether an empty line lies in `text[from..to]` (which holds only whitespace).
fn has_blank_line(text: &str, from: usize, to: usize) -> bool {
    from < to && text[from..to].bytes().filter(|&b| b == b'\n').count() >= 2
}

/// Comments in `[from, to)`, split into a same-line comment right after the code that
/// ends at `from` and the rest.
fn gap_comments(
    file: FileId,
    text: &str,
    comments: &[RawComment],
    from: usize,
    to: usize,
) -> (Option<Comment>, Vec<Comment>) {
    let first = comments.partition_point(|c| c.start < from);
    let mut trailing = None;
    let mut rest = Vec::new();
    for c in comments[first..].iter().take_while(|c| c.start < to) {
        if trailing.is_none() && rest.is_empty() && c.same_line && !has_newline(text, from, c.start) {
            trailing = Some(to_comment(file, text, c));
        } else {
            rest.push(to_comment(file, text, c));
        }
    }
    (trailing, rest)
}

fn attach_comments(out: &mut ast::File, text: &str, comments: &[RawComment]) {
    let file = out.file;
    let mut prev_end = 0;
    let n = out.items.len();
    for i in 0..n {
        let start = out.items[i].span.start;
        let (trailing, mut leading) = gap_comments(file, text, comments, prev_end, start);
        if i > 0 {
            out.items[i - 1].trailing_comment = trailing;
        } else if let Some(t) = trailing {
            leading.insert(0, t);
        }
        let first_code = leading.first().map_or(start, |c| c.span.start);
        let gap_from = if i == 0 { 0 } else { line_end(text, prev_end) };
        out.items[i].blank_line_before = i > 0 && has_blank_line(text, gap_from, first_code);
        out.items[i].leading_comments = leading;
        let end = out.items[i].span.end;
        match &mut out.items[i].kind {
            ItemKind::Decl(d) => attach_block(&mut d.block, file, text, comments),
            ItemKind::Let { value, .. } => attach_value(value, file, text, comments),
            ItemKind::Use { .. } => {}
        }
        prev_end = end;
    }
    let (trailing, rest) = gap_comments(file, text, comments, prev_end, text.len());
    if n > 0 {
        out.items[n - 1].trailing_comment = trailing;
        out.trailing_comments = rest;
    } else {
        out.trailing_comments = trailing.into_iter().chain(rest).collect();
    }
}

fn line_end(text: &str, from: usize) -> usize {
    text[from..].find('\n').map_or(text.len(), |i| from + i)
}

fn attach_block(block: &mut Block, file: FileId, text: &str, comments: &[RawComment]) {
    let mut prev_end = block.span.start + 1;
    let n = block.entries.len();
    for i in 0..n {
        let start = block.entries[i].span.start;
        let (trailing, mut leading) = gap_comments(file, text, comments, prev_end, start);
        if i > 0 {
            block.entries[i - 1].trailing_comment = trailing;
        } else if let Some(t) = trailing {
            // A comment right after `{` goes with the first entry.
            leading.insert(0, t);
        }
        block.entries[i].leading_comments = leading;
        attach_value(&mut block.entries[i].value, file, text, comments);
        prev_end = block.entries[i].span.end;
    }
    let close = block.span.end.saturating_sub(1);
    let (trailing, rest) = gap_comments(file, text, comments, prev_end, close);
    if n > 0 {
        block.entries[n - 1].trailing_comment = trailing;
        block.trailing_comments = rest;
    } else {
        block.trailing_comments = trailing.into_iter().chain(rest).collect();
    }
}

fn attach_value(value: &mut Value, file: FileId, text: &str, comments: &[RawComment]) {
    match &mut value.kind {
        ValueKind::Inline { block, .. } => attach_block(block, file, text, comments),
        ValueKind::List(vs) | ValueKind::Sweep(vs) => {
            for v in vs {
                attach_value(v, file, text, comments);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Syntax errors in words

const SYNTAX: Code = Code::Syntax;

fn span_at(file: FileId, start: usize, end: usize) -> Span {
    Span::new(file, start, end)
}

fn too_deep(file: FileId, _text: &str, _scan: &Scan, at: usize) -> Diagnostic {
    Diagnostic::new(
        Code::TooDeep,
        format!("values are nested more than {} levels deep", lexer::MAX_DEPTH),
        span_at(file, at, at + 1),
        format!("level {} starts here", lexer::MAX_DEPTH + 1),
    )
    .with_help("flatten the value: give inner parts their own `let` or declaration")
}

fn lex_problem(file: FileId, text: &str, problem: &LexProblem) -> Diagnostic {
    match *problem {
        LexProblem::TooDeep { at } => too_deep(file, text, &Scan::default(), at),
        LexProblem::UnterminatedString { start, end } => Diagnostic::new(
            SYNTAX,
            "unterminated string",
            span_at(file, start, end),
            "this string has no closing `\"` on its line",
        )
        .with_help("close the string with `\"`; write `\\n` for a line break inside a string"),
        LexProblem::BadEscape { start, end } => Diagnostic::new(
            SYNTAX,
            format!("unknown escape `{}` in a string", &text[start..end]),
            span_at(file, start, end),
            "unknown escape",
        )
        .with_help("strings know `\\\"` (a quote), `\\\\` (a backslash) and `\\n` (a line break)"),
        LexProblem::BadNumber { start, end } => {
            let t = &text[start..end];
            let glued = (1..t.len()).rev().find(|&k| is_number_then_word(t, k));
            if let Some(k) = glued {
                return Diagnostic::new(
                    SYNTAX,
                    format!("`{t}` is not a number"),
                    span_at(file, start, end),
                    format!("the number `{}` runs into `{}`", &t[..k], &t[k..]),
                )
                .with_help(format!(
                    "separate them: `{}, {}` or put `{}` on its own line",
                    &t[..k],
                    &t[k..],
                    &t[k..]
                ));
            }
            let help = if t.contains("__") || t.ends_with('_') || t.contains("_.") || t.contains("._") {
                "separate digits with single `_` between digits, e.g. `10_000`"
            } else if t.ends_with(['e', 'E', '+', '-']) {
                "an exponent needs digits, e.g. `2e-4` or `1e6`"
            } else if t.starts_with('.') || t.starts_with("-.") {
                "write a digit before the point, e.g. `0.5`"
            } else if t.ends_with('.') {
                "write a digit after the point, e.g. `1.0`, or leave the point out"
            } else {
                "numbers look like `1000`, `10_000`, `0.5`, `-3` or `2e-4`"
            };
            Diagnostic::new(SYNTAX, format!("`{t}` is not a number"), span_at(file, start, end), "not a number")
                .with_help(help)
        }
    }
}

/// Whether `t[..k]` is a number and `t[k..]` a name (`250eta`: `250` and `eta`).
fn is_number_then_word(t: &str, k: usize) -> bool {
    let (num, word) = t.split_at(k);
    let b = word.as_bytes();
    lexer::is_valid_number(num)
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        // `2e5x` is a number glued to `x`; `2e` followed by letters is an exponent typo.
        && !(matches!(b[0], b'e' | b'E') && b.len() == 1)
}

struct ErrorContext<'a> {
    file: FileId,
    text: &'a str,
    scan: &'a Scan,
    pos: usize,
    positives: Vec<Rule>,
}

fn describe_token(text: &str, t: Option<&Token>) -> String {
    match t {
        None => "the end of the file".to_string(),
        Some(t) => {
            let s = &text[t.start..t.end];
            match t.kind {
                TokKind::Str => "a string".to_string(),
                TokKind::Number => format!("the number `{s}`"),
                TokKind::Ident => format!("`{s}`"),
                _ => format!("`{s}`"),
            }
        }
    }
}

impl<'a> ErrorContext<'a> {
    fn has(&self, r: Rule) -> bool {
        self.positives.contains(&r)
    }

    /// The token at (or right after) the failure, `None` at the end of the file.
    fn found(&self) -> Option<&'a Token> {
        let toks = &self.scan.tokens;
        let i = toks.partition_point(|t| t.end <= self.pos);
        toks.get(i)
    }

    fn found_index(&self) -> usize {
        self.scan.tokens.partition_point(|t| t.end <= self.pos)
    }

    /// The token before the failure.
    fn prev(&self) -> Option<&'a Token> {
        let i = self.found_index();
        i.checked_sub(1).and_then(|j| self.scan.tokens.get(j))
    }

    fn tok_text(&self, t: &Token) -> &'a str {
        &self.text[t.start..t.end]
    }

    fn found_span(&self) -> Span {
        match self.found() {
            Some(t) => span_at(self.file, t.start, t.end),
            None => {
                let end = self.text.len();
                span_at(self.file, end, end)
            }
        }
    }

    fn found_is(&self, s: &str) -> bool {
        self.found().is_some_and(|t| self.tok_text(t) == s)
    }

    fn found_starts_value(&self) -> bool {
        self.found().is_some_and(|t| {
            matches!(t.kind, TokKind::Ident | TokKind::Number | TokKind::Str) || matches!(self.tok_text(t), "[" | "-")
        })
    }

    fn err(&self, message: impl Into<String>, label: impl Into<String>, help: impl Into<String>) -> Diagnostic {
        Diagnostic::new(SYNTAX, message, self.found_span(), label).with_help(help)
    }

    /// An unbalanced bracket explains pest's failure when the failure comes where the
    /// bracket went wrong: at the mismatched closer, at the end of the file, or at what
    /// looks like the next declaration while a block is still open.
    fn bracket_error(&self) -> Option<Diagnostic> {
        let name = |c: u8| match c {
            b'{' => ("`{`", "block", "`}`"),
            b'[' => ("`[`", "list", "`]`"),
            _ => ("`(`", "sweep", "`)`"),
        };
        match self.scan.bracket? {
            BracketProblem::Mismatch { opener, closer } => {
                if self.pos < closer {
                    return None;
                }
                let (open, what, close) = name(self.text.as_bytes()[opener]);
                let got = &self.text[closer..closer + 1];
                Some(
                    Diagnostic::new(
                        SYNTAX,
                        format!("unclosed {open}: expected {close} to close the {what}, found `{got}`"),
                        span_at(self.file, closer, closer + 1),
                        format!("expected {close} before this"),
                    )
                    .with_label(span_at(self.file, opener, opener + 1), format!("the {what} opened here"))
                    .with_help(format!("close the {what} with {close}")),
                )
            }
            BracketProblem::Unclosed { opener } => {
                let at_end = self.found().is_none();
                let i = self.found_index();
                let toks = &self.scan.tokens;
                let decl_glued = i >= 1
                    && toks[i - 1].start > opener
                    && toks[i - 1].kind == TokKind::Ident
                    && toks.get(i).is_some_and(|t| t.kind == TokKind::Ident)
                    && toks.get(i + 1).is_some_and(|t| matches!(self.tok_text(t), "=" | "{"))
                    && self.has(Rule::eq);
                let at_new_item = self.pos > opener && (self.looks_like_new_item(opener) || decl_glued);
                if !(at_end || at_new_item) {
                    return None;
                }
                let (open, what, close) = name(self.text.as_bytes()[opener]);
                let mut d = Diagnostic::new(
                    SYNTAX,
                    format!("unclosed {open} (the {what} opened here)"),
                    span_at(self.file, opener, opener + 1),
                    format!("this {what} is never closed"),
                )
                .with_help(format!("add {close} where the {what} ends"));
                if let (false, Some(t)) = (at_end, self.line_first_token()) {
                    d = d
                        .with_label(span_at(self.file, t.start, t.end), "the next declaration starts while it is open");
                }
                Some(d)
            }
        }
    }

    /// A line of words without `=` or `{` where a declaration should start: most likely a
    /// comment that lost its `#`.
    fn prose_line(&self) -> Option<Diagnostic> {
        let first = self.line_first_token()?;
        let end = line_end(self.text, first.start);
        let line = self.text[first.start..end].trim_end();
        let toks = &self.scan.tokens;
        let i = toks.partition_point(|t| t.start < first.start);
        let words = toks[i..].iter().take_while(|t| t.start < end && t.kind == TokKind::Ident).count();
        if words < 2 || line.contains('=') || line.contains('{') {
            return None;
        }
        Some(
            Diagnostic::new(
                SYNTAX,
                "a line of text where a declaration should be",
                span_at(self.file, first.start, first.start + line.len()),
                "is this meant as a comment?",
            )
            .with_help("comments start with `#`; a declaration is `KIND NAME = VARIANT { … }`"),
        )
    }

    /// The innermost bracket still open at the failure, scanning the tokens before it.
    fn open_bracket_at(&self) -> Option<usize> {
        let mut stack = Vec::new();
        for t in self.scan.tokens.iter().take_while(|t| t.start < self.pos) {
            match self.tok_text(t) {
                "{" | "[" | "(" => stack.push(t.start),
                "}" | "]" | ")" => {
                    stack.pop();
                }
                _ => {}
            }
        }
        stack.pop()
    }

    /// The first token of the line pest failed on.
    fn line_first_token(&self) -> Option<&'a Token> {
        let toks = &self.scan.tokens;
        if toks.is_empty() {
            return None;
        }
        let mut i = toks.partition_point(|t| t.end <= self.pos).min(toks.len() - 1);
        while i > 0 && !self.text.as_bytes()[toks[i - 1].end..toks[i].start].contains(&b'\n') {
            i -= 1;
        }
        toks.get(i)
    }

    /// Whether pest failed on a line after `opener` that starts like a top-level item
    /// (`KIND NAME =`, `KIND NAME {`, `use "…"`, `let X =`): a block left open before it.
    fn looks_like_new_item(&self, opener: usize) -> bool {
        let toks = &self.scan.tokens;
        let Some(first) = self.line_first_token() else { return false };
        let i = toks.partition_point(|t| t.start < first.start);
        let t = &toks[i];
        if t.start <= opener || t.kind != TokKind::Ident {
            return false;
        }
        let next = |k: usize| toks.get(i + k);
        let next_text = |k: usize| next(k).map(|t| self.tok_text(t));
        match self.tok_text(t) {
            "use" => next(1).is_some_and(|n| n.kind == TokKind::Str),
            "let" => next(1).is_some_and(|n| n.kind == TokKind::Ident) && next_text(2) == Some("="),
            _ => next(1).is_some_and(|n| n.kind == TokKind::Ident) && matches!(next_text(2), Some("=") | Some("{")),
        }
    }

    fn describe(&self) -> Diagnostic {
        let found = self.found();
        let found_desc = describe_token(self.text, found);
        let prev = self.prev();
        let prev_text = prev.map(|t| self.tok_text(t)).unwrap_or("");

        // Mistakes that read the same wherever they happen.
        if let Some(c) = found.filter(|t| t.kind == TokKind::Other).and_then(|t| self.text[t.start..].chars().next()) {
            if matches!(c, '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2018}' | '\u{2019}' | '\u{00AB}' | '\u{00BB}') {
                return self.err(
                    format!("typographic quote `{c}`: strings use straight double quotes"),
                    "not a `\"`",
                    "write strings with `\"`, e.g. `shape = \"moons\"` (word processors and chat apps turn quotes curly)",
                );
            }
            if c.is_whitespace() || c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}') {
                let code = format!("U+{:04X}", c as u32);
                return self.err(
                    format!("invisible character {code} in the code"),
                    format!("{code} here"),
                    "delete it, or replace it with a plain space (text copied from web pages often carries these)",
                );
            }
        }
        if self.found_is(";") {
            return self.err(
                "unexpected `;`",
                "remove this `;`",
                "difflow needs no `;`: write one entry per line, or separate entries and list items with `,`",
            );
        }

        // `KEY = VALUE` outside any block: `steps = 5` at the top level.
        if self.has(Rule::name) && self.found_is("=") {
            let key = prev_text;
            let i = self.found_index();
            let after = |k: usize| self.scan.tokens.get(i + k).map(|t| self.tok_text(t));
            if self.scan.tokens.get(i + 1).is_some_and(|t| t.kind == TokKind::Ident) && after(2) == Some("{") {
                let variant = after(1).unwrap_or_default();
                return Diagnostic::new(
                    SYNTAX,
                    format!("`{key} = {variant} {{ … }}` lacks its kind or its name"),
                    span_at(self.file, prev.map_or(self.pos, |t| t.start), prev.map_or(self.pos, |t| t.end)),
                    "expected `KIND NAME` here",
                )
                .with_help(format!(
                    "a declaration starts with its kind and name: `KIND NAME = {variant} {{ … }}`, \
                     e.g. `dataset digits = mnist {{ … }}`"
                ));
            }
            return self.err(
                format!("`{key} = …` is outside a declaration"),
                "a `key = value` entry needs a block",
                format!(
                    "entries go inside a declaration's `{{ … }}`; for a constant write `let {key} = …`; \
                     a declaration is `KIND NAME = VARIANT {{ … }}`"
                ),
            );
        }

        if self.has(Rule::eq) && !self.has(Rule::lbrace) {
            let is_let =
                self.scan.tokens.get(self.found_index().wrapping_sub(2)).is_some_and(|t| self.tok_text(t) == "let");
            let role = if is_let { format!("`let {prev_text}`") } else { format!("the key `{prev_text}`") };
            let label =
                if self.found_is(":") { "use `=` here, not `:`".to_string() } else { "expected `=` here".to_string() };
            let help = if is_let {
                format!("a constant is written `let {prev_text} = value`")
            } else {
                format!("set a value with `=`: `{prev_text} = …`")
            };
            let msg = format!("expected `=` after {role}, found {found_desc}");
            return self.err(msg, label, help);
        }

        let top_level_header =
            self.has(Rule::name) || (self.has(Rule::eq) && self.has(Rule::lbrace) && !self.has(Rule::comma));
        if top_level_header {
            if let Some(d) = self.prose_line() {
                return d;
            }
        }

        if self.has(Rule::eq) && self.has(Rule::lbrace) && !self.has(Rule::comma) {
            // After a declaration's name.
            let msg = format!("expected `=` or `{{` after the name `{prev_text}`, found {found_desc}");
            let label = if self.found_is(":") { "use `=` here, not `:`" } else { "expected `= VARIANT` or `{` here" };
            let i = self.found_index();
            let next_is_brace = self.scan.tokens.get(i + 1).is_some_and(|t| self.tok_text(t) == "{");
            let help = match (found, before_name(self)) {
                (Some(t), Some(kind)) if t.kind == TokKind::Ident && next_is_brace => {
                    format!("write `=` before the variant: `{kind} {prev_text} = {} {{ … }}`", self.tok_text(t))
                }
                _ => "a declaration is `KIND NAME = VARIANT { key = value … }`; leave out `= VARIANT` for the kind's \
                      default"
                    .to_string(),
            };
            return self.err(msg, label, help);
        }

        if self.has(Rule::value) {
            let after = match prev_text {
                "=" => "after `=`".to_string(),
                "," => "after `,`".to_string(),
                "(" => "in `sweep(…)`".to_string(),
                "[" => "in the list".to_string(),
                other => format!("after `{other}`"),
            };
            let help = "a value is a number (`1000`, `2e-4`), a string (`\"text\"`), `true`/`false`, a list `[…]`, \
                        `sweep(…)`, an inline block (`ddim { steps = 50 }`) or a name";
            return self.err(format!("expected a value {after}, found {found_desc}"), "expected a value here", help);
        }

        if self.has(Rule::rbracket) || self.has(Rule::rparen) {
            let (close, what) = if self.has(Rule::rbracket) { ("`]`", "list") } else { ("`)`", "sweep") };
            let i = self.found_index();
            let next_is_eq = self.scan.tokens.get(i + 1).is_some_and(|t| matches!(self.tok_text(t), "=" | ":"));
            let entry_follows = found.is_some_and(|t| t.kind == TokKind::Ident) && next_is_eq;
            if entry_follows || self.found_is("=") || self.found_is("}") || found.is_none() {
                if let Some(opener) = self.open_bracket_at() {
                    let mut d = Diagnostic::new(
                        SYNTAX,
                        format!("unclosed `{}` (the {what} opened here)", &self.text[opener..opener + 1]),
                        span_at(self.file, opener, opener + 1),
                        format!("this {what} is never closed"),
                    )
                    .with_help(format!("close the {what} with {close} after its last item"));
                    if let Some(t) = found {
                        d = d.with_label(span_at(self.file, t.start, t.end), format!("expected {close} before this"));
                    }
                    return d;
                }
            }
            if self.found_starts_value() {
                return self.err(
                    format!("missing `,` between {what} items"),
                    "expected `,` before this",
                    format!("separate {what} items with `,`"),
                );
            }
            if self.found_is(":") || self.found_is("=") {
                return self.err(
                    format!("expected `,` or {close} in the {what}, found {found_desc}"),
                    "unexpected here",
                    format!("{what} items are values separated by `,`; keys with `=` go in blocks `{{ … }}`"),
                );
            }
            return self.err(
                format!("expected `,` or {close} in the {what}, found {found_desc}"),
                format!("expected `,` or {close}"),
                format!("separate {what} items with `,` and close the {what} with {close}"),
            );
        }

        if self.has(Rule::key) || self.has(Rule::rbrace) {
            let i = self.found_index();
            let before = |k: usize| i.checked_sub(k).and_then(|j| self.scan.tokens.get(j));
            // `lr =` with nothing after it: the next line's key was taken as its value.
            if self.found_is("=") {
                if let (Some(value), Some(eq), Some(key)) = (before(1), before(2), before(3)) {
                    let newline_between = self.text.as_bytes()[eq.end..value.start].contains(&b'\n');
                    if value.kind == TokKind::Ident && self.tok_text(eq) == "=" && newline_between {
                        let key = self.tok_text(key);
                        return Diagnostic::new(
                            SYNTAX,
                            format!("expected a value after `{key} =`"),
                            span_at(self.file, eq.start, eq.end),
                            "nothing follows this `=` on its line",
                        )
                        .with_help(format!("write the value after `=`, e.g. `{key} = 1000`, or remove the line"));
                    }
                }
            }
            if self.found_is("(") && prev.is_some_and(|t| t.kind == TokKind::Ident) {
                let help = if prev_text == "sweep" {
                    "a sweep is written `sweep(a, b, …)`".to_string()
                } else {
                    format!("an inline block uses braces: `{prev_text} {{ key = value, … }}`")
                };
                return self.err(format!("expected `{{` after `{prev_text}`, found `(`"), "use `{` here", help);
            }
            if prev_text == "sweep" && self.found_is("[") {
                return self.err(
                    "expected `(` after `sweep`, found `[`",
                    "use `(` here",
                    "a sweep is written with parentheses: `sweep(a, b, …)`",
                );
            }
            if prev_text == "," && found.is_some_and(|t| matches!(t.kind, TokKind::Str | TokKind::Number)) {
                return self.err(
                    format!("expected the next key after `,`, found {found_desc}"),
                    "a second value for one key?",
                    match (before(2), before(3), before(4)) {
                        (Some(v), Some(eq), Some(k)) if self.tok_text(eq) == "=" => format!(
                            "for several values write a list: `{} = [{}, {}]`",
                            self.tok_text(k),
                            self.tok_text(v),
                            self.tok_text(found.expect("a string or number was found"))
                        ),
                        _ => "for several values write a list: `key = [a, b]`".to_string(),
                    },
                );
            }
            if self.found_is(":") || self.found_is("=") {
                return self.err(
                    format!("expected a key or `}}`, found {found_desc}"),
                    "expected a key before this",
                    "entries are written `key = value`",
                );
            }
            if found.is_some_and(|t| t.kind == TokKind::Str) {
                return self.err(
                    "expected a key or `}`, found a string",
                    "keys are names, without quotes",
                    "write the key without quotes: `steps = 1000`",
                );
            }
            if found.is_some_and(|t| matches!(t.kind, TokKind::Number | TokKind::Ident)) && prev_text != "{" {
                return self.err(
                    format!("expected the next key or `}}` after the value, found {found_desc}"),
                    "expected `key = value` or `}`",
                    "each entry is `key = value`; one value per key (write a list `[a, b]` for several)",
                );
            }
            return self.err(
                format!("expected a key or `}}`, found {found_desc}"),
                "expected a key or `}`",
                "a block holds entries `key = value` and ends with `}`",
            );
        }

        if self.has(Rule::string) {
            return self.err(
                format!("expected a file path in double quotes after `use`, found {found_desc}"),
                "expected a string here",
                "write `use \"std/unet.diff\"` or `use \"presets.diff\"` (relative to this file)",
            );
        }

        if self.has(Rule::let_name) {
            return self.err(
                format!("expected a name after `let`, found {found_desc}"),
                "expected a name here",
                "a constant is `let NAME = value`",
            );
        }

        if self.has(Rule::name) {
            return self.err(
                format!("expected a name after `{prev_text}`, found {found_desc}"),
                "expected a name here",
                format!("a declaration is `{prev_text} NAME = VARIANT {{ … }}`"),
            );
        }

        if self.has(Rule::variant) {
            return self.err(
                format!("expected a variant after `=`, found {found_desc}"),
                "expected a variant here",
                "name the variant, e.g. `dataset digits = mnist { … }`, or leave out `=` for the kind's default",
            );
        }

        if self.has(Rule::lbrace) {
            return self.err(
                format!("expected `{{` after `{prev_text}`, found {found_desc}"),
                "expected `{` here",
                "a declaration ends with its block: `KIND NAME = VARIANT { key = value … }`",
            );
        }

        if self.has(Rule::kind)
            || self.has(Rule::kw_use)
            || self.has(Rule::kw_let)
            || self.has(Rule::EOI)
            || self.has(Rule::file)
        {
            let (label, help) = if self.found_is("}") {
                ("this `}` closes nothing", "remove the `}`, or open the block it was meant to close")
            } else {
                (
                    "expected a declaration here",
                    "a file holds `use \"FILE\"`, `let NAME = value` and declarations `KIND NAME = VARIANT { … }`",
                )
            };
            return self.err(
                format!("expected a declaration (`dataset`, `train`, …), `use` or `let`, found {found_desc}"),
                label,
                help,
            );
        }

        let expected: Vec<&str> = self.positives.iter().map(|r| rule_words(*r)).collect();
        self.err(
            format!("expected {}, found {found_desc}", expected.join(" or ")),
            "unexpected here",
            "see `difflow doc` for the syntax of a pipeline",
        )
    }
}

/// The kind before the name just before the failure (`sampler` in `sampler ddim_50 ddim {`).
fn before_name<'a>(ctx: &ErrorContext<'a>) -> Option<&'a str> {
    let i = ctx.found_index();
    let kind = ctx.scan.tokens.get(i.checked_sub(2)?)?;
    (kind.kind == TokKind::Ident).then(|| ctx.tok_text(kind))
}

fn rule_words(r: Rule) -> &'static str {
    match r {
        Rule::eq => "`=`",
        Rule::comma => "`,`",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::value => "a value",
        Rule::key => "a key",
        Rule::name | Rule::let_name => "a name",
        Rule::variant => "a variant",
        Rule::kind => "a declaration",
        Rule::string => "a string",
        Rule::number => "a number",
        Rule::kw_use => "`use`",
        Rule::kw_let => "`let`",
        Rule::kw_sweep => "`sweep`",
        Rule::EOI => "the end of the file",
        _ => "something else",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> ast::File {
        match parse(0, text) {
            Ok(f) => f,
            Err(d) => panic!("{text:?} failed: {d:?}"),
        }
    }

    fn parse_err(text: &str) -> Diagnostic {
        match parse(0, text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(mut d) => {
                assert_eq!(d.len(), 1);
                d.remove(0)
            }
        }
    }

    #[test]
    fn spans_and_values() {
        let text = "let T = 1000\ndataset d = toy { count = 10_000, noise = 2e-4 }\n";
        let f = parse_ok(text);
        assert_eq!(f.items.len(), 2);
        let ItemKind::Decl(d) = &f.items[1].kind else { panic!() };
        assert_eq!(&text[d.kind.span.start..d.kind.span.end], "dataset");
        assert_eq!(d.variant.as_ref().unwrap().name, "toy");
        let e = &d.block.entries[0];
        assert_eq!(&text[e.span.start..e.span.end], "count = 10_000");
        match &e.value.kind {
            ValueKind::Number { value, is_integer, text: t } => {
                assert_eq!(*value, 10000.0);
                assert!(*is_integer);
                assert_eq!(&**t, "10_000");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&text[f.items[1].span.start..f.items[1].span.end], text[13..].trim_end());
    }

    #[test]
    fn strings_and_nesting() {
        let f = parse_ok("sample g { guidance = cfg { scale = sweep(0.0, 0.5,) }, m = [\"a\\\"b\\n\", x, true] }");
        let ItemKind::Decl(d) = &f.items[0].kind else { panic!() };
        let ValueKind::Inline { variant, block } = &d.block.entries[0].value.kind else { panic!() };
        assert_eq!(variant.name, "cfg");
        assert!(matches!(&block.entries[0].value.kind, ValueKind::Sweep(v) if v.len() == 2));
        let ValueKind::List(items) = &d.block.entries[1].value.kind else { panic!() };
        assert!(matches!(&items[0].kind, ValueKind::Str(s) if s == "a\"b\n"));
        assert!(matches!(&items[1].kind, ValueKind::Ident(i) if i.name == "x"));
        assert!(matches!(&items[2].kind, ValueKind::Bool(true)));
    }

    #[test]
    fn comments_are_trivia() {
        let text = "# header\n\nuse \"std/unet.diff\" # presets\n\n# the data\ndataset d = toy { # opening\n    count = 5 # five\n    # end\n}\n# tail\n";
        let f = parse_ok(text);
        assert_eq!(f.items[0].leading_comments[0].text, " header");
        assert_eq!(f.items[0].trailing_comment.as_ref().unwrap().text, " presets");
        assert!(f.items[1].blank_line_before);
        assert_eq!(f.items[1].leading_comments[0].text, " the data");
        let ItemKind::Decl(d) = &f.items[1].kind else { panic!() };
        assert_eq!(d.block.entries[0].leading_comments[0].text, " opening");
        assert_eq!(d.block.entries[0].trailing_comment.as_ref().unwrap().text, " five");
        assert_eq!(d.block.trailing_comments[0].text, " end");
        assert_eq!(f.trailing_comments[0].text, " tail");
    }

    #[test]
    fn errors_in_words() {
        let d = parse_err("train t {\n    steps: 5\n}\n");
        assert_eq!(d.message, "expected `=` after the key `steps`, found `:`");
        assert_eq!((d.primary.span.start, d.primary.span.end), (19, 20));
        let d = parse_err("train t { steps = }");
        assert!(d.message.starts_with("expected a value after `=`"), "{}", d.message);
        let d = parse_err("train t { steps = 5\n\ndataset d = toy { count = 1 }\n");
        assert_eq!(d.message, "unclosed `{` (the block opened here)");
        assert_eq!(d.primary.span.start, 8);
        let d = parse_err("let a = \"abc\n");
        assert_eq!(d.message, "unterminated string");
        let d = parse_err("metrics m { measure = [\"fid\" \"is\"] }");
        assert_eq!(d.message, "missing `,` between list items");
        let d = parse_err("train t { lr = 1e }");
        assert_eq!(d.message, "`1e` is not a number");
        let d = parse_err("train t { steps = 1__0 }");
        assert_eq!(d.message, "`1__0` is not a number");
        let d = parse_err("train t { steps = 5; }");
        assert_eq!(d.message, "unexpected `;`");
        let d = parse_err("42");
        assert!(d.message.starts_with("expected a declaration"), "{}", d.message);
        let d = parse_err(&format!("let x = {}1{}", "[".repeat(100), "]".repeat(100)));
        assert_eq!(d.code, Code::TooDeep);
    }

    #[test]
    fn common_mistakes_have_their_own_words() {
        let d = parse_err("sampler s = ddim { steps = 50eta = 0.0 }");
        assert_eq!(d.primary.text, "the number `50` runs into `eta`");
        let d = parse_err("sampler s ddim { steps = 50 }");
        assert_eq!(d.help.as_deref(), Some("write `=` before the variant: `sampler s = ddim { … }`"));
        let d = parse_err(
            "Deterministic sampling here
sampler s = ddim {}",
        );
        assert_eq!(d.message, "a line of text where a declaration should be");
        assert_eq!((d.primary.span.start, d.primary.span.end), (0, 27));
        let d = parse_err(
            "model m = unet {
  mults = [1, 2
  heads = 4
}",
        );
        assert_eq!(d.message, "unclosed `[` (the list opened here)");
        assert_eq!(d.primary.span.start, 27);
        let d = parse_err("digits = mnist { }");
        assert!(d.message.contains("lacks its kind or its name"), "{}", d.message);
        let d = parse_err(
            "train t {
  lr =
  steps = 5
}",
        );
        assert_eq!(d.message, "expected a value after `lr =`");
        let d = parse_err("sample g { sampler = ddim(steps = 5) }");
        assert_eq!(d.message, "expected `{` after `ddim`, found `(`");
        let d = parse_err("metrics m { measure = \"fid\", \"is\" }");
        assert_eq!(d.help.as_deref(), Some("for several values write a list: `measure = [\"fid\", \"is\"]`"));
        let d = parse_err("dataset d = toy { shape = \u{201C}moons\u{201D} }");
        assert!(d.message.starts_with("typographic quote"), "{}", d.message);
        let d = parse_err("train t {\n  steps\u{a0}= 5 }");
        assert_eq!(d.message, "invisible character U+00A0 in the code");
        let d = parse_err("dataset d = toy { count = 5 ]");
        assert!(!d.message.contains("unclosed"), "a stray `]` is not an unclosed block: {}", d.message);
        assert!(parse(0, "\u{FEFF}let a = 1\r\n").is_ok());
    }
}
