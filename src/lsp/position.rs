//! Byte offsets ↔ LSP positions. A position's character counts UTF-16 code units unless
//! the client agreed to UTF-8 (`positionEncoding`), so text with `ᾱ` or `é` in strings and
//! comments still lands on the right character.

use lsp_types::{Position, Range};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
}

/// Where each line of a text starts.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    encoding: Encoding,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str, encoding: Encoding) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts, encoding }
    }

    pub fn position(&self, offset: usize) -> Position {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let prefix = &self.text[self.starts[line]..offset];
        let character = match self.encoding {
            Encoding::Utf8 => prefix.len(),
            Encoding::Utf16 => prefix.chars().map(char::len_utf16).sum(),
        };
        Position { line: line as u32, character: character as u32 }
    }

    pub fn range(&self, start: usize, end: usize) -> Range {
        Range { start: self.position(start), end: self.position(end) }
    }

    /// The byte offset of a position; a character past the end of its line (or a line
    /// past the end of the text) is clamped, as the protocol asks.
    pub fn offset(&self, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return self.text.len();
        };
        let end = self.starts.get(pos.line as usize + 1).map_or(self.text.len(), |&next| next - 1);
        let line = &self.text[start..end];
        let mut units = 0;
        for (i, c) in line.char_indices() {
            if units >= pos.character as usize {
                return start + i;
            }
            units += match self.encoding {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
            };
        }
        end
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_counts_code_units_and_round_trips() {
        let text = "# ᾱ_T 𝜎\nlet x = \"é\"\n";
        let index = LineIndex::new(text, Encoding::Utf16);
        let x = text.find('x').unwrap();
        assert_eq!(index.position(x), Position { line: 1, character: 4 });
        let sigma_end = text.find('\n').unwrap();
        // `𝜎` is two UTF-16 units, `ᾱ` one.
        assert_eq!(index.position(sigma_end), Position { line: 0, character: 8 });
        for offset in [0, x, sigma_end, text.find('é').unwrap(), text.len()] {
            assert_eq!(index.offset(index.position(offset)), offset);
        }
    }

    #[test]
    fn utf8_counts_bytes_and_positions_past_the_end_clamp() {
        let text = "é=1\nab";
        let index = LineIndex::new(text, Encoding::Utf8);
        assert_eq!(index.position(2), Position { line: 0, character: 2 });
        assert_eq!(index.offset(Position { line: 0, character: 99 }), 4);
        assert_eq!(index.offset(Position { line: 7, character: 0 }), text.len());
    }
}
