//! Syntax errors in words: a lexical problem, an unbalanced bracket, or pest's failure
//! (a set of rule names at a byte offset) explained by [`rules`] with the help of the
//! tokens around it.

mod rules;

use super::lexer::{self, BracketProblem, LexProblem, Scan, TokKind, Token};
use super::{line_end, Rule};
use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{FileId, Span};

const SYNTAX: Code = Code::Syntax;

fn span_at(file: FileId, start: usize, end: usize) -> Span {
    Span::new(file, start, end)
}

pub(super) fn too_deep(file: FileId, _text: &str, _scan: &Scan, at: usize) -> Diagnostic {
    Diagnostic::new(
        Code::TooDeep,
        format!("values are nested more than {} levels deep", lexer::MAX_DEPTH),
        span_at(file, at, at + 1),
        format!("level {} starts here", lexer::MAX_DEPTH + 1),
    )
    .with_help("flatten the value: give inner parts their own `let` or declaration")
}

pub(super) fn lex_problem(file: FileId, text: &str, problem: &LexProblem) -> Diagnostic {
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

pub(super) struct ErrorContext<'a> {
    pub file: FileId,
    pub text: &'a str,
    pub scan: &'a Scan,
    pub pos: usize,
    pub positives: Vec<Rule>,
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

    /// The found token in words (`the number `5``, `the end of the file`).
    fn found_desc(&self) -> String {
        describe_token(self.text, self.found())
    }

    /// The text of the token before the failure (empty at the start of the file).
    fn prev_text(&self) -> &'a str {
        self.prev().map(|t| self.tok_text(t)).unwrap_or("")
    }

    /// The text of the token `k` places after the found one.
    fn after(&self, k: usize) -> Option<&'a str> {
        self.scan.tokens.get(self.found_index() + k).map(|t| self.tok_text(t))
    }

    /// The token `k` places before the found one.
    fn before(&self, k: usize) -> Option<&'a Token> {
        self.found_index().checked_sub(k).and_then(|j| self.scan.tokens.get(j))
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
    pub(super) fn bracket_error(&self) -> Option<Diagnostic> {
        let name = |opener: usize| match self.text.as_bytes()[opener] {
            b'{' => ("`{`", "block", "`}`"),
            b'[' => ("`[`", "list", "`]`"),
            _ => ("`(`", paren_what(self.text, opener), "`)`"),
        };
        match self.scan.bracket? {
            BracketProblem::Mismatch { opener, closer } => {
                if self.pos < closer {
                    return None;
                }
                let (open, what, close) = name(opener);
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
                let (open, what, close) = name(opener);
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
    /// What the innermost open `(` opens: `replicate` or `sweep`.
    fn open_paren_what(&self) -> &'static str {
        self.open_bracket_at().map_or("sweep", |opener| paren_what(self.text, opener))
    }

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

    /// The first rule that explains the failure, in words.
    pub(super) fn describe(&self) -> Diagnostic {
        rules::RULES.iter().find_map(|rule| rule(self)).unwrap_or_else(|| rules::expected_rules(self))
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
        Rule::kw_replicate => "`replicate`",
        Rule::EOI => "the end of the file",
        _ => "something else",
    }
}

/// What a `(` at `opener` opens: `replicate(…)` or `sweep(…)`.
fn paren_what(text: &str, opener: usize) -> &'static str {
    if text[..opener].trim_end().ends_with("replicate") {
        "replicate"
    } else {
        "sweep"
    }
}
