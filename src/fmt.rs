//! `difflow fmt`: one canonical layout for a `.diff` file.
//!
//! - 4-space indent; one `key = value` per line in declaration blocks, without commas;
//! - lists, `sweep(…)` and inline blocks on one line when the line stays within
//!   [`MAX_WIDTH`] columns, else one element per line with trailing commas;
//! - `use`s first, then `let`s, then declarations (each group in the user's order);
//!   exactly one blank line around declarations, at most one where the user left blank
//!   lines between `use`s, `let`s, entries and comments;
//! - comments stay where they were (own-line or same-line); numbers and strings are
//!   written exactly as the user wrote them; keys keep the user's order.
//!
//! The result is idempotent, and it is parsed again and compared with the input (modulo
//! layout) before it is returned, so formatting can never change what a file means.

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Block, FileId, Item, ItemKind, Span, Value, ValueKind};
use crate::syntax::lexer::{self, RawComment};
use crate::syntax::parse;

/// Lines longer than this break their lists and inline blocks.
pub const MAX_WIDTH: usize = 88;
const INDENT: usize = 4;

/// The canonical layout of `text`, or the syntax error that prevents formatting it.
pub fn format_source(file: FileId, text: &str) -> Result<String, Vec<Diagnostic>> {
    let ast = parse(file, text)?;
    let comments = lexer::scan(text).comments;
    let mut f = Formatter { text, emitted: vec![false; comments.len()], comments, out: String::new() };
    f.file(&ast);
    let out = f.out;
    // Never hand back something that means another thing.
    let span = Span::new(file, 0, 0);
    match parse(file, &out) {
        Ok(again) if meaning(&again) == meaning(&ast) && comment_texts(&out) == comment_texts(text) => Ok(out),
        _ => Err(vec![Diagnostic::new(
            Code::FmtInternal,
            "difflow fmt could not format this file without changing it",
            span,
            "the file is left as it is",
        )
        .with_help("this is a bug in difflow fmt; please report it with the file")]),
    }
}

/// The comments of a text (the `#…` text, trailing spaces removed), sorted: fmt keeps
/// every comment, though moving `use`s and `let`s first moves their comments along.
pub fn comment_texts(text: &str) -> Vec<String> {
    let mut out: Vec<String> =
        lexer::scan(text).comments.iter().map(|c| text[c.start..c.end].trim_end().to_string()).collect();
    out.sort();
    out
}

/// What a file means, without layout: its items (`use`s, then `let`s, then declarations,
/// each group in order) with every value as written, one per line. Two files with the
/// same `meaning` resolve to the same pipeline.
pub fn meaning(file: &ast::File) -> String {
    let mut out = String::new();
    let groups = [0u8, 1, 2];
    for g in groups {
        for item in file.items.iter().filter(|i| group(i) == g) {
            match &item.kind {
                ItemKind::Use { path, .. } => out.push_str(&format!("use {path:?}\n")),
                ItemKind::Let { name, value } => {
                    out.push_str(&format!("let {} = ", name.name));
                    meaning_value(value, &mut out);
                    out.push('\n');
                }
                ItemKind::Decl(d) => {
                    out.push_str(&format!("{} {}", d.kind.name, d.name.name));
                    if let Some(v) = &d.variant {
                        out.push_str(&format!(" = {}", v.name));
                    }
                    meaning_block(&d.block, &mut out);
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn meaning_block(b: &Block, out: &mut String) {
    out.push_str(" {");
    for e in &b.entries {
        out.push_str(&format!(" {} = ", e.key.name));
        meaning_value(&e.value, out);
        out.push(';');
    }
    out.push_str(" }");
}

fn meaning_value(v: &Value, out: &mut String) {
    match &v.kind {
        ValueKind::Number { text, .. } => out.push_str(&format!("num({text})")),
        ValueKind::Str(s) => out.push_str(&format!("str({s:?})")),
        ValueKind::Bool(b) => out.push_str(&format!("bool({b})")),
        ValueKind::Ident(i) => out.push_str(&format!("ref({})", i.name)),
        ValueKind::List(vs) | ValueKind::Sweep(vs) => {
            out.push_str(if matches!(v.kind, ValueKind::List(_)) { "list(" } else { "sweep(" });
            for x in vs {
                meaning_value(x, out);
                out.push(',');
            }
            out.push(')');
        }
        ValueKind::Replicate(count) => {
            out.push_str("replicate(");
            meaning_value(count, out);
            out.push(')');
        }
        ValueKind::Inline { variant, block } => {
            out.push_str(&format!("inline {}", variant.name));
            meaning_block(block, out);
        }
        ValueKind::Record(block) => {
            out.push_str("record");
            meaning_block(block, out);
        }
    }
}

/// A value that holds other values (a list, sweep, block…): it may break over lines.
fn is_compound(v: &Value) -> bool {
    matches!(
        v.kind,
        ValueKind::List(_)
            | ValueKind::Sweep(_)
            | ValueKind::Replicate(_)
            | ValueKind::Inline { .. }
            | ValueKind::Record(_)
    )
}

fn group(item: &Item) -> u8 {
    match item.kind {
        ItemKind::Use { .. } => 0,
        ItemKind::Let { .. } => 1,
        ItemKind::Decl(_) => 2,
    }
}

struct Formatter<'a> {
    text: &'a str,
    comments: Vec<RawComment>,
    emitted: Vec<bool>,
    out: String,
}

impl<'a> Formatter<'a> {
    // ---- comments ----------------------------------------------------------------------

    fn comment_text(&self, i: usize) -> &'a str {
        let c = self.comments[i];
        self.text[c.start..c.end].trim_end()
    }

    fn comment_index(&self, start: usize) -> Option<usize> {
        let i = self.comments.partition_point(|c| c.start < start);
        (i < self.comments.len() && self.comments[i].start == start).then_some(i)
    }

    /// Whether an empty line lies between byte `from` and byte `to`.
    fn blank_between(&self, from: usize, to: usize) -> bool {
        from < to && self.text.as_bytes()[from..to].iter().filter(|&&b| b == b'\n').count() >= 2
    }

    /// Whether any comment starts inside `span` (then the value cannot be one line).
    fn has_comment_inside(&self, span: Span) -> bool {
        let i = self.comments.partition_point(|c| c.start < span.start);
        i < self.comments.len() && self.comments[i].start < span.end
    }

    fn pad(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push(' ');
        }
    }

    /// Write comment `i` on its own line; a blank line first when the source had one
    /// between `prev` (the end of what came before, if blank lines may be kept) and it.
    fn own_line_comment(&mut self, i: usize, indent: usize, prev: &mut Option<usize>) {
        if self.emitted[i] {
            return;
        }
        let c = self.comments[i];
        if let Some(p) = *prev {
            if self.blank_between(p, c.start) {
                self.out.push('\n');
            }
        }
        self.pad(indent);
        self.out.push_str(self.comment_text(i));
        self.out.push('\n');
        self.emitted[i] = true;
        *prev = Some(c.end);
    }

    /// Write every not yet written comment starting in `[from, to)` on its own line.
    fn flush(&mut self, from: usize, to: usize, indent: usize, prev: &mut Option<usize>) {
        let first = self.comments.partition_point(|c| c.start < from);
        let mut i = first;
        while i < self.comments.len() && self.comments[i].start < to {
            self.own_line_comment(i, indent, prev);
            i += 1;
        }
    }

    /// A comment on the same source line right after `end` (before `limit`) is written
    /// after the code just written, two spaces apart. Returns where it ended.
    fn trailing(&mut self, end: usize, limit: usize) -> Option<usize> {
        let mut i = self.comments.partition_point(|c| c.start < end);
        while i < self.comments.len() && self.emitted[i] {
            i += 1;
        }
        let c = *self.comments.get(i)?;
        // Only separators may stand between the code and the comment (`a = 1,  # why`).
        let between = &self.text.as_bytes()[end..c.start];
        if c.start >= limit || !c.same_line || !between.iter().all(|&b| matches!(b, b' ' | b'\t' | b',')) {
            return None;
        }
        self.out.push_str("  ");
        self.out.push_str(self.comment_text(i));
        self.emitted[i] = true;
        Some(c.end)
    }

    // ---- file and items ----------------------------------------------------------------

    fn file(&mut self, file: &ast::File) {
        let mut order: Vec<&Item> = file.items.iter().collect();
        order.sort_by_key(|i| group(i)); // stable: each group keeps the user's order

        // Comments at the top of the file, followed by a blank line, stay at the top.
        let mut header = 0;
        if let Some(first) = file.items.first() {
            let lc = &first.leading_comments;
            for (j, c) in lc.iter().enumerate() {
                let next = lc.get(j + 1).map_or(first.span.start, |n| n.span.start);
                if self.blank_between(c.span.end, next) {
                    header = j + 1;
                }
            }
            let mut prev = None;
            for c in &lc[..header] {
                if let Some(i) = self.comment_index(c.span.start) {
                    self.own_line_comment(i, 0, &mut prev);
                }
            }
        }

        let mut last_group = None;
        for (k, item) in order.iter().enumerate() {
            let g = group(item);
            let is_first_item = k == 0;
            let blank = if is_first_item {
                header > 0
            } else if g == 2 || last_group == Some(2) || last_group != Some(g) {
                true
            } else {
                item.blank_line_before
            };
            if blank {
                self.out.push('\n');
            }
            last_group = Some(g);
            let skip = if std::ptr::eq(*item, &file.items[0]) { header } else { 0 };
            let mut prev = None;
            for c in &item.leading_comments[skip..] {
                if let Some(i) = self.comment_index(c.span.start) {
                    self.own_line_comment(i, 0, &mut prev);
                }
            }
            self.item(item, prev);
        }

        let mut prev = file.items.last().map(|i| i.span.end);
        for c in &file.trailing_comments {
            if let Some(i) = self.comment_index(c.span.start) {
                if prev.is_none() && !self.out.is_empty() {
                    self.out.push('\n');
                }
                self.own_line_comment(i, 0, &mut prev);
            }
        }
        // Safety net: a comment in a place the layout has no slot for is never dropped.
        let mut prev = None;
        for i in 0..self.comments.len() {
            self.own_line_comment(i, 0, &mut prev);
        }
    }

    fn item(&mut self, item: &Item, prev: Option<usize>) {
        let mut prev = prev;
        if let Some(p) = prev {
            if self.blank_between(p, item.span.start) {
                self.out.push('\n');
            }
        }
        match &item.kind {
            ItemKind::Use { path_span, .. } => {
                self.flush(item.span.start, item.span.end, 0, &mut prev);
                self.out.push_str("use ");
                self.out.push_str(&self.text[path_span.start..path_span.end]);
            }
            ItemKind::Let { name, value } => {
                self.flush(item.span.start, value.span.start, 0, &mut prev);
                let head = format!("let {} = ", name.name);
                self.out.push_str(&head);
                self.value(value, 0, head.chars().count(), 0);
            }
            ItemKind::Decl(d) => {
                self.flush(item.span.start, d.block.span.start, 0, &mut prev);
                let mut head = format!("{} {}", d.kind.name, d.name.name);
                if let Some(v) = &d.variant {
                    head.push_str(" = ");
                    head.push_str(&v.name);
                }
                self.out.push_str(&head);
                self.block(&d.block, 0, false, d.block.span.start);
            }
        }
        self.trailing(item.span.end, self.text.len());
        self.out.push('\n');
    }

    /// ` { … }` of a declaration (`inline = false`: always one entry per line, no commas)
    /// or of a broken inline block (`inline = true`: trailing commas).
    fn block(&mut self, b: &Block, indent: usize, inline: bool, header_from: usize) {
        let open = b.span.start;
        let close = b.span.end - 1;
        if b.entries.is_empty() && !self.has_comment_inside(Span { start: header_from, ..b.span }) {
            self.out.push_str(" {}");
            return;
        }
        self.out.push_str(" {");
        let mut prev_end = self.trailing(open + 1, close).unwrap_or(open + 1);
        self.out.push('\n');
        let inner = indent + INDENT;
        let keep_blanks = !inline;
        let mut first = true;
        for e in &b.entries {
            // Blank lines the user left before the entry or its comments are kept (one).
            let mut prev = if keep_blanks && !first { Some(prev_end) } else { None };
            let from = if first { header_from } else { prev_end };
            self.flush(from, e.value.span.start, inner, &mut prev);
            if let Some(p) = prev {
                if keep_blanks && self.blank_between(p, e.span.start) {
                    self.out.push('\n');
                }
            }
            self.pad(inner);
            let head = format!("{} = ", e.key.name);
            self.out.push_str(&head);
            let suffix = usize::from(inline);
            self.value(&e.value, inner, inner + head.chars().count(), suffix);
            if inline {
                self.out.push(',');
            }
            prev_end = self.trailing(e.span.end, close).unwrap_or(e.span.end);
            self.out.push('\n');
            first = false;
        }
        // Comments before the closing brace.
        let mut prev = if keep_blanks && !first { Some(prev_end) } else { None };
        let from = if first { header_from } else { prev_end };
        self.flush(from, close, inner, &mut prev);
        self.pad(indent);
        self.out.push('}');
    }

    // ---- values --------------------------------------------------------------------------

    /// One-line form of a value, or `None` when it holds a comment (and must break).
    fn flat(&self, v: &Value) -> Option<String> {
        if is_compound(v) && self.has_comment_inside(v.span) {
            return None;
        }
        Some(match &v.kind {
            ValueKind::Number { .. } | ValueKind::Str(_) => self.text[v.span.start..v.span.end].to_string(),
            ValueKind::Bool(b) => b.to_string(),
            ValueKind::Ident(i) => i.name.clone(),
            ValueKind::List(vs) => format!("[{}]", self.flat_list(vs)?),
            ValueKind::Sweep(vs) => format!("sweep({})", self.flat_list(vs)?),
            ValueKind::Replicate(count) => format!("replicate({})", self.flat(count)?),
            ValueKind::Inline { variant, block } => format!("{} {}", variant.name, self.flat_block(block)?),
            ValueKind::Record(block) => self.flat_block(block)?,
        })
    }

    /// `{ KEY = VALUE, … }` on one line (`{}` when empty).
    fn flat_block(&self, block: &Block) -> Option<String> {
        if block.entries.is_empty() {
            return Some("{}".to_string());
        }
        let mut parts = Vec::with_capacity(block.entries.len());
        for e in &block.entries {
            parts.push(format!("{} = {}", e.key.name, self.flat(&e.value)?));
        }
        Some(format!("{{ {} }}", parts.join(", ")))
    }

    fn flat_list(&self, vs: &[Value]) -> Option<String> {
        let mut parts = Vec::with_capacity(vs.len());
        for v in vs {
            parts.push(self.flat(v)?);
        }
        Some(parts.join(", "))
    }

    /// Write `v` where the current line already holds `column` characters, `suffix` more
    /// (a comma) to follow it.
    fn value(&mut self, v: &Value, indent: usize, column: usize, suffix: usize) {
        if let Some(s) = self.flat(v) {
            if !is_compound(v) || column + s.chars().count() + suffix <= MAX_WIDTH {
                self.out.push_str(&s);
                return;
            }
        }
        match &v.kind {
            ValueKind::List(vs) => self.broken_seq("[", "]", vs, v.span, indent),
            ValueKind::Sweep(vs) => self.broken_seq("sweep(", ")", vs, v.span, indent),
            ValueKind::Replicate(count) => {
                self.broken_seq("replicate(", ")", std::slice::from_ref(count.as_ref()), v.span, indent)
            }
            ValueKind::Inline { variant, block } => {
                self.out.push_str(&variant.name);
                self.block(block, indent, true, v.span.start);
            }
            ValueKind::Record(block) => {
                // `block` writes " {" for a header; a record follows `KEY = ` directly.
                if self.out.ends_with(' ') {
                    self.out.pop();
                }
                self.block(block, indent, true, v.span.start);
            }
            _ => unreachable!("scalars are always flat"),
        }
    }

    fn broken_seq(&mut self, open: &str, close: &str, vs: &[Value], span: Span, indent: usize) {
        self.out.push_str(open);
        let close_at = span.end - 1;
        // `[` is at span.start; `sweep(`'s paren follows the keyword.
        let open_end = self.text[span.start..span.end].find(['[', '(']).map_or(span.start, |i| span.start + i) + 1;
        self.trailing(open_end, close_at);
        self.out.push('\n');
        let inner = indent + INDENT;
        let mut from = span.start;
        for x in vs {
            let mut prev = None;
            self.flush(from, x.span.start, inner, &mut prev);
            self.pad(inner);
            self.value(x, inner, inner, 1);
            self.out.push(',');
            from = x.span.end;
            self.trailing(x.span.end, close_at);
            self.out.push('\n');
        }
        let mut prev = None;
        self.flush(from, close_at, inner, &mut prev);
        self.pad(indent);
        self.out.push_str(close);
    }
}
