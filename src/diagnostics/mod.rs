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
    /// become related reports of their own. A label too far into a long line to draw
    /// (miette cannot pad that far) becomes a `file:line:column` note in the help.
    pub fn to_report(&self, sources: &SourceMap) -> miette::Report {
        let file = self.primary.span.file;
        let mut help = self.help.clone();
        let mut labels = Vec::new();
        let mut related = Vec::new();
        let all = std::iter::once((&self.primary, true)).chain(self.secondary.iter().map(|l| (l, false)));
        for (l, primary) in all {
            if let Some(at) = too_far_to_draw(sources, l.span) {
                let note = format!("{}: {at} (too far into its line to show)", if primary { "here" } else { &l.text });
                help = Some(help.map_or(note.clone(), |h| format!("{h}\n{note}")));
            } else if primary {
                labels.push(LabeledSpan::new_primary_with_span(Some(l.text.clone()), to_source_span(l.span)));
            } else if l.span.file == file {
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
            help,
            source: named_source(sources, file),
            related,
        })
    }
}

/// Labels at most this many bytes into their line are drawn under it.
const MAX_LABEL_COLUMN: usize = 30_000;

/// `file:line:column` of a span that starts or ends too far into its line to be drawn.
fn too_far_to_draw(sources: &SourceMap, span: Span) -> Option<String> {
    let f = sources.get(span.file);
    let start = span.start.min(f.text.len());
    let line_start = f.text[..start].rfind('\n').map_or(0, |i| i + 1);
    if span.end.min(f.text.len()) - line_start <= MAX_LABEL_COLUMN {
        return None;
    }
    let line = f.text[..start].matches('\n').count() + 1;
    let column = f.text[line_start..start].chars().count() + 1;
    Some(format!("{}:{line}:{column}", f.name))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::SourceFile;

    #[test]
    fn a_label_far_into_a_long_line_becomes_a_location_in_the_help() {
        let mut sources = SourceMap::default();
        let text = format!("let x = [{}]\n", "1, ".repeat(40_000));
        let at = text.len() - 3;
        let id = sources.add(SourceFile { name: "long.diff".into(), path: None, text });
        let d = Diagnostic::new(Code::TooLarge, "too large", Span::new(id, at, at + 1), "here")
            .with_label(Span::new(id, 0, 3), "a let")
            .with_help("make it smaller");
        let out = render_plain(&[d], &sources);
        let note = format!("make it smaller\n        here: long.diff:1:{} (too far into its line to show)", at + 1);
        assert!(out.contains(&note), "{}", &out[out.len().saturating_sub(500)..]);
        assert!(out.contains("╰── a let"), "{}", &out[out.len().saturating_sub(500)..]);
    }
}
