//! Diagnostics: what the front end reports, rendered by miette with the source line, a
//! label under the offending span and a help line. Every diagnostic has a stable code
//! (`difflow::…`, a [`Code`]) that tests and users can rely on.

mod code;
pub use code::Code;

use std::fmt;

use miette::{LabeledSpan, NamedSource, SourceSpan};

use crate::syntax::ast::Span;
use crate::syntax::SourceMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Stable code, e.g. `difflow::unknown_key`.
    pub code: Code,
    /// One sentence: what is wrong.
    pub message: String,
    /// The offending span and what to say under it.
    pub primary: Label,
    /// Other places that matter (the first declaration of a duplicate name, …).
    pub secondary: Vec<Label>,
    /// What to do about it.
    pub help: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

impl Label {
    pub fn new(span: Span, text: impl Into<String>) -> Self {
        Label { span, text: text.into() }
    }
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            primary: Label::new(span, label),
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.secondary.push(Label::new(span, text));
        self
    }

    /// A miette report over the primary span's file; secondary labels in other files
    /// become related reports of their own.
    pub fn to_report(&self, sources: &SourceMap) -> miette::Report {
        let file = self.primary.span.file;
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(self.primary.text.clone()),
            to_source_span(self.primary.span),
        )];
        let mut related = Vec::new();
        for l in &self.secondary {
            if l.span.file == file {
                labels.push(LabeledSpan::new_with_span(Some(l.text.clone()), to_source_span(l.span)));
            } else {
                related.push(Rendered {
                    code: None,
                    message: l.text.clone(),
                    labels: vec![LabeledSpan::new_primary_with_span(Some(l.text.clone()), to_source_span(l.span))],
                    help: None,
                    source: named_source(sources, l.span.file),
                    related: Vec::new(),
                });
            }
        }
        miette::Report::new(Rendered {
            code: Some(self.code.as_str()),
            message: self.message.clone(),
            labels,
            help: self.help.clone(),
            source: named_source(sources, file),
            related,
        })
    }
}

fn to_source_span(span: Span) -> SourceSpan {
    SourceSpan::new(span.start.into(), span.len())
}

fn named_source(sources: &SourceMap, file: usize) -> NamedSource<String> {
    let f = sources.get(file);
    NamedSource::new(f.name.clone(), f.text.clone())
}

#[derive(Debug)]
struct Rendered {
    code: Option<&'static str>,
    message: String,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
    source: NamedSource<String>,
    related: Vec<Rendered>,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
        }
    }
}

/// Render diagnostics as text without colours (what tests compare and what a pipe gets).
pub fn render_plain(diags: &[Diagnostic], sources: &SourceMap) -> String {
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor()).with_width(100);
    let mut out = String::new();
    for d in diags {
        let report = d.to_report(sources);
        handler.render_report(&mut out, report.as_ref()).expect("rendering to a String cannot fail");
    }
    out
}
