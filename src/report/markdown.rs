//! Text from the pipeline (titles, stage names, sweep values, file names, the recipe) as
//! Markdown that shows it literally: no raw HTML, links, emphasis or new blocks can pass
//! through `report.md`, whatever a renderer does with HTML.

/// The characters with a meaning inside a line of Markdown (HTML, entities, code, emphasis,
/// links and images, table cells, strike-through, escapes). The others (`.`, `-`, `+`, `=`)
/// mean something only at the start of a line, where this text never stands.
const INLINE_SYNTAX: &str = "\\`*_[]<>()!|&~#";

/// Inline text: every character of [`INLINE_SYNTAX`] backslash-escaped (CommonMark shows an
/// escaped character as itself, so `<script>` stays text and `|` stays in its table cell),
/// line breaks and other control characters as spaces (a line break could start a block).
pub fn text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_control() {
            out.push(' ');
            continue;
        }
        // An underscore inside a word never emphasises (`by_step` stays as written).
        let inside_word = |i: usize| chars.get(i).is_some_and(|c| c.is_alphanumeric());
        let in_word_underscore = c == '_' && i > 0 && inside_word(i - 1) && inside_word(i + 1);
        if INLINE_SYNTAX.contains(c) && !in_word_underscore {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An inline code span holding `s` verbatim: delimited by more backticks than any run
/// inside it, padded with spaces when it starts or ends with a backtick; line breaks as
/// spaces. For a table cell, pass the result through [`cell`].
pub fn code(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let fence = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A code span inside a table row: GitHub-flavoured tables split cells at every `|` not
/// escaped, even inside code spans.
pub fn cell(code_span: &str) -> String {
    code_span.replace('|', "\\|")
}

/// A fenced code block holding `s` verbatim: its fence longer than any backtick run in it.
pub fn block(s: &str) -> String {
    let fence = "`".repeat((longest_run(s, '`') + 1).max(3));
    format!("{fence}\n{s}\n{fence}")
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_markdown_syntax_stay_text() {
        assert_eq!(text("<script>alert(1)</script>"), r"\<script\>alert\(1\)\</script\>");
        assert_eq!(text("a\n<img src=x onerror=alert(1)>"), r"a \<img src=x onerror=alert\(1\)\>");
        assert_eq!(text("[x](javascript:y) *b* | c &lt;"), r"\[x\]\(javascript:y\) \*b\* \| c \&lt;");
        assert_eq!(text("0.5 w-2"), "0.5 w-2");
        assert_eq!(text("by_step _x_"), r"by_step \_x\_");
        assert_eq!(text("CFG für w"), "CFG für w");
    }

    #[test]
    fn code_spans_and_blocks_cannot_be_closed_from_inside() {
        assert_eq!(code("gen[scale=0.5]"), "`gen[scale=0.5]`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(cell(&code("a|b")), r"`a\|b`");
        assert_eq!(block("x\n```\n<b>"), "````\nx\n```\n<b>\n````");
        assert_eq!(block("plain"), "```\nplain\n```");
    }
}
