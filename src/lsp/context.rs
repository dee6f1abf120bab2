//! Where the cursor is, read from the text alone: completion runs while the line being
//! typed does not parse yet (`loss = "`), so it cannot wait for the syntax tree.

/// The cursor's surroundings.
#[derive(Debug, PartialEq)]
pub struct Cursor<'t> {
    /// The header before each `{` around the cursor, outermost first: `train t = base`,
    /// `sampler = ddim`.
    pub blocks: Vec<&'t str>,
    /// Where each of those blocks' `{` is.
    pub block_starts: Vec<usize>,
    pub slot: Slot<'t>,
}

/// What is being written at the cursor.
#[derive(Debug, PartialEq)]
pub enum Slot<'t> {
    /// A word at the start of a statement (a kind at the top level, a key in a block).
    Word,
    /// A value after `=`: the words before the `=` (`["loss"]` or `["train", "t"]`) and
    /// whether the cursor is inside a string.
    Value { lhs: Vec<&'t str>, in_string: bool },
    /// The path of a `use "…`.
    UsePath,
    /// Inside a comment, or something completion has nothing for.
    Nothing,
}

pub fn at(text: &str, offset: usize) -> Cursor<'_> {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let mut stack: Vec<(u8, usize, usize)> = Vec::new();
    let mut statement_start = 0;
    let mut in_string = false;
    let mut in_comment = false;
    let mut escaped = false;
    for (i, b) in before.bytes().enumerate() {
        if in_comment {
            in_comment = b != b'\n';
            if b == b'\n' && !matches!(stack.last(), Some((b'[', ..))) {
                statement_start = i + 1;
            }
            continue;
        }
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                // An unterminated string ends at its line; the break is read below.
                b'\n' => in_string = false,
                _ => {}
            }
            if b != b'\n' {
                continue;
            }
        }
        match b {
            b'"' => in_string = true,
            b'#' => in_comment = true,
            b'{' => {
                stack.push((b'{', i, statement_start));
                statement_start = i + 1;
            }
            b'[' | b'(' => stack.push((b, i, statement_start)),
            b'}' | b']' | b')' => {
                if let Some((_, _, saved)) = stack.pop() {
                    statement_start = saved;
                }
            }
            b',' | b';' | b'\n' if !matches!(stack.last(), Some((b'[' | b'(', ..))) => statement_start = i + 1,
            _ => {}
        }
    }
    let blocks: Vec<(usize, &str)> =
        stack.iter().filter(|(b, ..)| *b == b'{').map(|&(_, at, start)| (at, text[start..at].trim())).collect();
    let statement = &before[statement_start..];
    let slot = if in_comment { Slot::Nothing } else { slot_of(statement, in_string) };
    Cursor {
        block_starts: blocks.iter().map(|(at, _)| *at).collect(),
        blocks: blocks.into_iter().map(|(_, h)| h).collect(),
        slot,
    }
}

fn slot_of(statement: &str, in_string: bool) -> Slot<'_> {
    let trimmed = statement.trim_start();
    if let Some(rest) = trimmed.strip_prefix("use") {
        return if in_string && rest.trim_start().starts_with('"') { Slot::UsePath } else { Slot::Word };
    }
    match trimmed.split_once('=') {
        Some((lhs, _)) => Slot::Value { lhs: lhs.split_whitespace().collect(), in_string },
        None if in_string => Slot::Nothing,
        None if trimmed.chars().all(is_ident_char) => Slot::Word,
        None => Slot::Nothing,
    }
}

pub fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The keys already written in the block whose `{` is at `open` (to the matching `}`).
pub fn written_keys(text: &str, open: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut keys = Vec::new();
    let (mut depth, mut i, mut at_statement_start) = (0usize, open + 1, true);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                // An unterminated string ends at its line, whose break still separates.
                i += usize::from(i < bytes.len() && bytes[i] == b'"');
                at_statement_start = false;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' if depth == 0 => break,
            b'}' | b']' | b')' => depth -= 1,
            b',' | b'\n' | b';' if depth == 0 => {
                at_statement_start = true;
                i += 1;
                continue;
            }
            _ if depth == 0 && at_statement_start && (b as char).is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && is_ident_char(bytes[i] as char) {
                    i += 1;
                }
                if text[i..].trim_start_matches([' ', '\t']).starts_with('=') {
                    keys.push(&text[start..i]);
                }
                at_statement_start = false;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        at_statement_start = false;
        i += 1;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(marked: &str) -> (String, usize) {
        let at = marked.find('|').unwrap();
        (marked.replace('|', ""), at)
    }

    #[test]
    fn finds_the_blocks_and_the_slot() {
        let (text, at) = cursor("train t = base {\n  sampler = ddim { steps = 5, e| }\n}");
        let c = super::at(&text, at);
        assert_eq!(c.blocks, vec!["train t = base", "sampler = ddim"]);
        assert_eq!(c.slot, Slot::Word);
        let (text, at) = cursor("train t {\n  loss = \"hy|\"\n}");
        assert_eq!(super::at(&text, at).slot, Slot::Value { lhs: vec!["loss"], in_string: true });
        let (text, at) = cursor("report r { include = [m1,\n m|] }");
        assert_eq!(super::at(&text, at).slot, Slot::Value { lhs: vec!["include"], in_string: false });
        let (text, at) = cursor("use \"std/|");
        assert_eq!(super::at(&text, at).slot, Slot::UsePath);
        let (text, at) = cursor("model m { # a comment { with = braces |\n}");
        assert_eq!(super::at(&text, at).slot, Slot::Nothing);
        let (text, at) = cursor("sample s { from = t }\nsa|");
        let c = super::at(&text, at);
        assert!(c.blocks.is_empty());
        assert_eq!(c.slot, Slot::Word);
    }

    #[test]
    fn written_keys_skip_nested_blocks_strings_and_comments() {
        let text = "train t {\n  steps = 5 # x = 1\n  sampler = ddim { eta = 0 }, lr = \"a = b\"\n  loss = \"\n  ema = 1\n}\nmodel m { channels = 1 }";
        assert_eq!(written_keys(text, text.find('{').unwrap()), vec!["steps", "sampler", "lr", "loss", "ema"]);
    }
}
