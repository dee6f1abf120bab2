//! Formatting through `difflow fmt`, and the did-you-mean fixes as code actions.

use std::collections::HashMap;

use lsp_types::{CodeAction, CodeActionKind, CodeActionOrCommand, Range, TextEdit, Url, WorkspaceEdit};

use super::analysis::{Analysis, ROOT};
use super::position::LineIndex;

/// The whole buffer in the canonical layout (no edit when it already is). Refuses, as
/// `difflow fmt` does, when the text does not parse or formatting would change meaning.
pub fn format(a: &Analysis) -> Result<Vec<TextEdit>, String> {
    let text = a.text(ROOT);
    let formatted = crate::fmt::format_source(ROOT, text).map_err(|diags| {
        let first = diags.first().map(|d| d.message.as_str()).unwrap_or("the file cannot be formatted");
        format!("difflow fmt refuses to format: {first}")
    })?;
    if formatted == text {
        return Ok(Vec::new());
    }
    let index = LineIndex::new(text, a.encoding);
    Ok(vec![TextEdit { range: index.range(0, text.len()), new_text: formatted }])
}

/// `did you mean `steps`?` → replace the misspelt word with `steps`.
pub fn code_actions(a: &Analysis, uri: &Url, range: Range) -> Vec<CodeActionOrCommand> {
    let text = a.text(ROOT);
    let diagnostics = a.diagnostics();
    let mut actions = Vec::new();
    for (d, shown) in a.loaded.diagnostics.iter().zip(diagnostics) {
        let span = d.primary.span;
        if span.file != ROOT || !overlaps(shown.range, range) {
            continue;
        }
        let Some(suggestion) = d.help.as_deref().and_then(suggestion) else { continue };
        let written = &text[span.start..span.end];
        let replacement = if written.starts_with('"') && !suggestion.starts_with('"') {
            format!("\"{suggestion}\"")
        } else {
            suggestion
        };
        let edit = TextEdit { range: shown.range, new_text: replacement.clone() };
        actions.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: format!("Replace {written} with {replacement}"),
            kind: Some(CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![shown]),
            edit: Some(WorkspaceEdit {
                changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                ..Default::default()
            }),
            is_preferred: Some(true),
            ..Default::default()
        }));
    }
    actions
}

/// The word a help line suggests: `did you mean `x`?` or `did you mean "x"?` (kept quoted).
fn suggestion(help: &str) -> Option<String> {
    let rest = &help[help.find("did you mean ")? + "did you mean ".len()..];
    let quote = rest.chars().next().filter(|c| matches!(c, '`' | '"'))?;
    let inner = &rest[1..];
    let word = &inner[..inner.find(quote)?];
    Some(if quote == '"' { format!("\"{word}\"") } else { word.to_string() })
}

fn overlaps(a: Range, b: Range) -> bool {
    a.start <= b.end && b.start <= a.end
}

#[cfg(test)]
mod tests {
    use super::suggestion;

    #[test]
    fn suggestions_are_read_from_the_help_line() {
        assert_eq!(suggestion("did you mean `steps`? The keys of `ddim` are steps").as_deref(), Some("steps"));
        assert_eq!(suggestion("did you mean \"hybrid\"? `loss` is one of").as_deref(), Some("\"hybrid\""));
        assert_eq!(suggestion("declare it"), None);
    }
}
