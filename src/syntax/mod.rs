//! Source files, the pest grammar (`grammar/difflow.pest`) and the syntax tree.

pub mod ast;

use std::path::PathBuf;

/// A loaded source file: a pipeline, a file it `use`s, or an embedded stdlib file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// How messages name it: the path as given, or `std/unet.diff`.
    pub name: String,
    /// The file on disk; `None` for embedded stdlib files and `--set` snippets.
    pub path: Option<PathBuf>,
    pub text: String,
}

/// All files of one pipeline; [`ast::Span::file`] indexes into it.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, file: SourceFile) -> ast::FileId {
        self.files.push(file);
        self.files.len() - 1
    }
    pub fn get(&self, id: ast::FileId) -> &SourceFile {
        &self.files[id]
    }
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }
}

pub mod lexer;
pub mod parser;

pub use parser::parse;
