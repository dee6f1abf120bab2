//! The syntax tree of a `.diff` file. Every node keeps its byte span in its source file so
//! that diagnostics can point at it; comments are kept as trivia so `difflow fmt` can
//! write them back.

use std::sync::Arc;

/// Index of a loaded source file in a [`crate::syntax::SourceMap`].
pub type FileId = usize;

/// A byte range `[start, end)` in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span { file, start, end }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// A name with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One parsed file.
#[derive(Debug, Clone)]
pub struct File {
    pub file: FileId,
    pub items: Vec<Item>,
    /// Comments after the last item.
    pub trailing_comments: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    /// The text after `#`, without the newline.
    pub text: String,
    pub span: Span,
    /// True when the comment follows code on the same line (`steps = 5  # why`).
    pub same_line: bool,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
    /// Comments on their own lines just before this item.
    pub leading_comments: Vec<Comment>,
    /// A comment on the item's last line.
    pub trailing_comment: Option<Comment>,
    /// Whether a blank line separated this item from the one before (kept by `fmt`).
    pub blank_line_before: bool,
}

#[derive(Debug, Clone)]
pub enum ItemKind {
    /// `use "std/unet.diff"`
    Use { path: String, path_span: Span },
    /// `let T = 1000`
    Let { name: Ident, value: Value },
    /// `KIND NAME (= VARIANT)? { ... }`
    Decl(Decl),
}

#[derive(Debug, Clone)]
pub struct Decl {
    pub kind: Ident,
    pub name: Ident,
    /// The variant, or an earlier declaration of the same kind used as a preset.
    pub variant: Option<Ident>,
    pub block: Block,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub entries: Vec<Entry>,
    pub span: Span,
    /// Comments inside the block after the last entry.
    pub trailing_comments: Vec<Comment>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Ident,
    pub value: Value,
    pub span: Span,
    pub leading_comments: Vec<Comment>,
    pub trailing_comment: Option<Comment>,
}

#[derive(Debug, Clone)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ValueKind {
    /// A number as written (`10_000`, `2e-4`, `-3`); `is_integer` when written without
    /// a fraction or exponent.
    Number {
        value: f64,
        text: Arc<str>,
        is_integer: bool,
    },
    Str(String),
    Bool(bool),
    List(Vec<Value>),
    Sweep(Vec<Value>),
    /// `replicate(N)`: N instances with derived seeds (the count as written).
    Replicate(Box<Value>),
    /// `ddim { steps = 50 }`: an anonymous declaration of the kind the key expects.
    Inline {
        variant: Ident,
        block: Block,
    },
    /// `{ hidden = 64 }`: named values with no variant (a python model's `args`).
    Record(Block),
    /// A `let` or a declaration.
    Ident(Ident),
}
