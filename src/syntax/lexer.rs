//! A cheap tokenizer that runs before pest. It finds what pest is bad at reporting or
//! must not see: nesting deeper than [`MAX_DEPTH`] (pest recurses once per level),
//! unterminated strings, bad escapes, malformed numbers and unbalanced brackets. Its
//! tokens also give syntax errors their context ("after the key `steps`") and its
//! comments are the trivia that `difflow fmt` writes back.

/// Deepest nesting of `{`, `[` and `(` a file may have. Real pipelines use three or four.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokKind {
    Ident,
    /// Anything number-like, as the grammar's `number` lexes it (validated separately).
    Number,
    Str,
    /// One ASCII punctuation character (`=`, `{`, `:`, `;`, …).
    Punct,
    /// Any other character.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

/// A `#` comment: `start` is the `#`, `end` the end of its text (before `\r\n` / `\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawComment {
    pub start: usize,
    pub end: usize,
    /// Code precedes it on its line.
    pub same_line: bool,
}

/// A problem found while scanning, at a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexProblem {
    /// The opening bracket that makes nesting deeper than [`MAX_DEPTH`].
    TooDeep { at: usize },
    /// A string from its opening quote to the end of its line.
    UnterminatedString { start: usize, end: usize },
    /// A backslash pair other than `\"`, `\\`, `\n`.
    BadEscape { start: usize, end: usize },
    /// A number-like token that is not a number.
    BadNumber { start: usize, end: usize },
}

impl LexProblem {
    pub fn start(&self) -> usize {
        match *self {
            LexProblem::TooDeep { at } => at,
            LexProblem::UnterminatedString { start, .. }
            | LexProblem::BadEscape { start, .. }
            | LexProblem::BadNumber { start, .. } => start,
        }
    }
}

/// Bracket balance problems (reported only when pest also fails near them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BracketProblem {
    /// `closer` does not match the open bracket at `opener`.
    Mismatch { opener: usize, closer: usize },
    /// The bracket at `opener` is still open at the end of the file.
    Unclosed { opener: usize },
}

#[derive(Debug, Default)]
pub struct Scan {
    pub tokens: Vec<Token>,
    pub comments: Vec<RawComment>,
    /// The first lexical problem, if any.
    pub problem: Option<LexProblem>,
    pub bracket: Option<BracketProblem>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `text` is a number as the language defines it:
/// `-?D(.D)?([eE][+-]?D)?` with `D = digit ("_"? digit)*`.
pub fn is_valid_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    fn digits(b: &[u8], i: &mut usize) -> bool {
        if *i >= b.len() || !b[*i].is_ascii_digit() {
            return false;
        }
        *i += 1;
        loop {
            if *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            } else if *i + 1 < b.len() && b[*i] == b'_' && b[*i + 1].is_ascii_digit() {
                *i += 2;
            } else {
                return true;
            }
        }
    }
    if !digits(b, &mut i) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(b, &mut i) {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(b, &mut i) {
            return false;
        }
    }
    i == b.len()
}

/// Length of the number-like token at `i` (0 if none), exactly as the grammar's `number`.
fn number_len(b: &[u8], i: usize) -> usize {
    let mut j = i;
    if j < b.len() && b[j] == b'-' {
        j += 1;
    }
    if j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    } else if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
        j += 2;
    } else {
        return 0;
    }
    while j < b.len() {
        let c = b[j];
        if (c == b'e' || c == b'E') && j + 1 < b.len() && (b[j + 1] == b'+' || b[j + 1] == b'-') {
            j += 2;
        } else if is_ident_char(c) || c == b'.' {
            j += 1;
        } else {
            break;
        }
    }
    j - i
}

pub fn scan(text: &str) -> Scan {
    let b = text.as_bytes();
    let mut out = Scan::default();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut line_has_code = false;
    // A byte-order mark at the start is not code (the grammar allows it there).
    let mut i = if text.starts_with('\u{FEFF}') { '\u{FEFF}'.len_utf8() } else { 0 };
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line_has_code = false;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                let mut j = i;
                while j < b.len() && b[j] != b'\n' {
                    j += 1;
                }
                let mut end = j;
                if end > i && b[end - 1] == b'\r' {
                    end -= 1;
                }
                out.comments.push(RawComment { start: i, end, same_line: line_has_code });
                i = j;
            }
            b'"' => {
                line_has_code = true;
                let end = string_end(text, i, &mut out);
                out.tokens.push(Token { kind: TokKind::Str, start: i, end });
                i = end;
            }
            _ if is_ident_start(c) => {
                line_has_code = true;
                let mut j = i + 1;
                while j < b.len() && is_ident_char(b[j]) {
                    j += 1;
                }
                out.tokens.push(Token { kind: TokKind::Ident, start: i, end: j });
                i = j;
            }
            _ if number_len(b, i) > 0 => {
                line_has_code = true;
                let j = i + number_len(b, i);
                if !is_valid_number(&text[i..j]) {
                    out.note(LexProblem::BadNumber { start: i, end: j });
                }
                out.tokens.push(Token { kind: TokKind::Number, start: i, end: j });
                i = j;
            }
            _ if c.is_ascii() => {
                line_has_code = true;
                if matches!(c, b'{' | b'[' | b'(' | b'}' | b']' | b')') {
                    bracket(c, i, &mut stack, &mut out);
                }
                out.tokens.push(Token { kind: TokKind::Punct, start: i, end: i + 1 });
                i += 1;
            }
            _ => {
                line_has_code = true;
                let len = text[i..].chars().next().map_or(1, char::len_utf8);
                out.tokens.push(Token { kind: TokKind::Other, start: i, end: i + len });
                i += len;
            }
        }
    }
    if out.bracket.is_none() {
        if let Some(&(_, opener)) = stack.last() {
            out.bracket = Some(BracketProblem::Unclosed { opener });
        }
    }
    out
}

impl Scan {
    /// Keep the first lexical problem: the one a reader meets first.
    fn note(&mut self, p: LexProblem) {
        if self.problem.is_none() {
            self.problem = Some(p);
        }
    }
}

/// The end of the string starting at `start` (after its closing quote, or at the end of
/// its line when unterminated), noting bad escapes and a missing quote.
fn string_end(text: &str, start: usize, out: &mut Scan) -> usize {
    let b = text.as_bytes();
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return j + 1,
            b'\n' => break,
            b'\\' => {
                if j + 1 < b.len() && b[j + 1] != b'\n' {
                    if !matches!(b[j + 1], b'"' | b'\\' | b'n') {
                        let ch_len = text[j + 1..].chars().next().map_or(1, char::len_utf8);
                        out.note(LexProblem::BadEscape { start: j, end: j + 1 + ch_len });
                    }
                    j += 2;
                    // Step over the rest of a multi-byte character.
                    while j < b.len() && !text.is_char_boundary(j) {
                        j += 1;
                    }
                } else {
                    j += 1;
                }
            }
            _ => j += 1,
        }
    }
    let mut end = j;
    if end > start && end <= b.len() && b[end - 1] == b'\r' {
        end -= 1;
    }
    out.note(LexProblem::UnterminatedString { start, end });
    j
}

/// Track an opening or closing bracket at `i`: nesting depth and the first mismatch.
fn bracket(c: u8, i: usize, stack: &mut Vec<(u8, usize)>, out: &mut Scan) {
    if matches!(c, b'{' | b'[' | b'(') {
        stack.push((c, i));
        if stack.len() > MAX_DEPTH {
            out.note(LexProblem::TooDeep { at: i });
        }
        return;
    }
    let want = match c {
        b'}' => b'{',
        b']' => b'[',
        _ => b'(',
    };
    // A closer with no opener of its type anywhere is stray: pest reports it well.
    // Otherwise the innermost opener was left open.
    if stack.iter().any(|&(open, _)| open == want) {
        match stack.pop() {
            Some((open, _)) if open == want => {}
            Some((_, opener)) if out.bracket.is_none() => {
                out.bracket = Some(BracketProblem::Mismatch { opener, closer: i });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for ok in ["0", "1000", "10_000", "2e-4", "0.5", "-3", "1E+5", "-0.25e10"] {
            assert!(is_valid_number(ok), "{ok}");
        }
        for bad in ["1e", "1__0", "1_", "_1", "1.", ".5", "1e-", "0x10", "1.2.3", "-", "1e4.5"] {
            assert!(!is_valid_number(bad), "{bad}");
        }
    }

    #[test]
    fn depth_and_strings() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(scan(&deep).problem, Some(LexProblem::TooDeep { at: MAX_DEPTH }));
        let s = scan("let a = \"abc\nlet b = 1");
        assert_eq!(s.problem, Some(LexProblem::UnterminatedString { start: 8, end: 12 }));
        let s = scan("let a = \"a\\qb\"");
        assert_eq!(s.problem, Some(LexProblem::BadEscape { start: 10, end: 12 }));
        let s = scan("let a = \"# not a comment\" # a comment\n");
        assert_eq!(s.comments, vec![RawComment { start: 26, end: 37, same_line: true }]);
    }
}
