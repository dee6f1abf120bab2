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
use super::lexer::{self, LexProblem, RawComment};
use crate::diagnostics::{Code, Diagnostic};

mod errors;

use errors::{lex_problem, too_deep, ErrorContext};

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
            Rule::replicate => {
                let count = self.values(inner).pop().expect("replicate has a count");
                ValueKind::Replicate(Box::new(count))
            }
            Rule::inline => {
                let mut parts = inner.into_inner();
                let variant = self.ident(parts.next().expect("inline has a variant"));
                let block = self.block(parts.next().expect("inline has a block"));
                ValueKind::Inline { variant, block }
            }
            Rule::record => ValueKind::Record(self.block(inner.into_inner().next().expect("a record has a block"))),
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

/// A node with comments of its own around it: an item of a file, an entry of a block.
trait Commented {
    fn span(&self) -> Span;
    fn leading_comments(&mut self) -> &mut Vec<Comment>;
    fn trailing_comment(&mut self) -> &mut Option<Comment>;
}

/// Items and entries hold their comments in fields of the same names.
macro_rules! impl_commented {
    ($($node:ty),*) => {$(
        impl Commented for $node {
            fn span(&self) -> Span {
                self.span
            }
            fn leading_comments(&mut self) -> &mut Vec<Comment> {
                &mut self.leading_comments
            }
            fn trailing_comment(&mut self) -> &mut Option<Comment> {
                &mut self.trailing_comment
            }
        }
    )*};
}

impl_commented!(Item, Entry);

/// Hands the comments in `[from, to)` to a run of nodes: a comment on the line where one
/// node ends trails it, the others lead the next node (a same-line comment before the
/// first node, as right after `{`, leads it too). `inside(i, node, prev_end)` then visits
/// each node (`prev_end`: where the node before it ended). Returns the comments after the
/// last node.
fn attach_run<N: Commented>(
    nodes: &mut [N],
    (file, text, comments): (FileId, &str, &[RawComment]),
    (from, to): (usize, usize),
    mut inside: impl FnMut(usize, &mut N, usize),
) -> Vec<Comment> {
    let mut prev_end = from;
    for i in 0..nodes.len() {
        let start = nodes[i].span().start;
        let (trailing, mut leading) = gap_comments(file, text, comments, prev_end, start);
        if i > 0 {
            *nodes[i - 1].trailing_comment() = trailing;
        } else if let Some(t) = trailing {
            leading.insert(0, t);
        }
        *nodes[i].leading_comments() = leading;
        inside(i, &mut nodes[i], prev_end);
        prev_end = nodes[i].span().end;
    }
    let (trailing, rest) = gap_comments(file, text, comments, prev_end, to);
    match nodes.last_mut() {
        Some(last) => {
            *last.trailing_comment() = trailing;
            rest
        }
        None => trailing.into_iter().chain(rest).collect(),
    }
}

fn attach_comments(out: &mut ast::File, text: &str, comments: &[RawComment]) {
    let file = out.file;
    out.trailing_comments = attach_run(&mut out.items, (file, text, comments), (0, text.len()), |i, item, prev_end| {
        let first_code = item.leading_comments.first().map_or(item.span.start, |c| c.span.start);
        let gap_from = if i == 0 { 0 } else { line_end(text, prev_end) };
        item.blank_line_before = i > 0 && has_blank_line(text, gap_from, first_code);
        match &mut item.kind {
            ItemKind::Decl(d) => attach_block(&mut d.block, file, text, comments),
            ItemKind::Let { value, .. } => attach_value(value, file, text, comments),
            ItemKind::Use { .. } => {}
        }
    });
}

fn line_end(text: &str, from: usize) -> usize {
    text[from..].find('\n').map_or(text.len(), |i| from + i)
}

fn attach_block(block: &mut Block, file: FileId, text: &str, comments: &[RawComment]) {
    let inside_braces = (block.span.start + 1, block.span.end.saturating_sub(1));
    block.trailing_comments = attach_run(&mut block.entries, (file, text, comments), inside_braces, |_, entry, _| {
        attach_value(&mut entry.value, file, text, comments)
    });
}

fn attach_value(value: &mut Value, file: FileId, text: &str, comments: &[RawComment]) {
    match &mut value.kind {
        ValueKind::Inline { block, .. } | ValueKind::Record(block) => attach_block(block, file, text, comments),
        ValueKind::List(vs) | ValueKind::Sweep(vs) => {
            for v in vs {
                attach_value(v, file, text, comments);
            }
        }
        ValueKind::Replicate(count) => attach_value(count, file, text, comments),
        _ => {}
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
        let d = parse_err("sample g { seed = replicate(3 }");
        assert_eq!(d.message, "unclosed `(`: expected `)` to close the replicate, found `}`");
        let d = parse_err("sample g { seed = replicate() }");
        assert!(d.message.starts_with("expected a value in `replicate(…)`"), "{}", d.message);
        let d = parse_err("sample g { seed = sweep(1, }");
        assert!(d.message.contains("sweep"), "{}", d.message);
        let d = parse_err("dataset d = toy { count = 5 ]");
        assert!(!d.message.contains("unclosed"), "a stray `]` is not an unclosed block: {}", d.message);
        assert!(parse(0, "\u{FEFF}let a = 1\r\n").is_ok());
    }
}
