//! The open buffers: their text as the editor has it, kept in step with incremental
//! changes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use lsp_types::{TextDocumentContentChangeEvent, Url};

use super::position::{Encoding, LineIndex};

pub struct Document {
    pub text: String,
    pub version: i32,
    /// The file on disk it stands for (`None` for unsaved `untitled:` buffers).
    pub path: Option<PathBuf>,
}

#[derive(Default)]
pub struct Documents {
    open: BTreeMap<Url, Document>,
}

impl Documents {
    pub fn open(&mut self, uri: Url, text: String, version: i32) {
        let path = file_path(&uri);
        self.open.insert(uri, Document { text, version, path });
    }

    pub fn close(&mut self, uri: &Url) {
        self.open.remove(uri);
    }

    pub fn get(&self, uri: &Url) -> Option<&Document> {
        self.open.get(uri)
    }

    pub fn uris(&self) -> impl Iterator<Item = &Url> {
        self.open.keys()
    }

    /// Apply changes in order; a change without a range replaces the whole text.
    pub fn change(
        &mut self,
        uri: &Url,
        version: i32,
        changes: Vec<TextDocumentContentChangeEvent>,
        encoding: Encoding,
    ) -> Result<(), String> {
        let doc = self.open.get_mut(uri).ok_or_else(|| format!("{uri} is not open"))?;
        for change in changes {
            match change.range {
                None => doc.text = change.text,
                Some(range) => {
                    let index = LineIndex::new(&doc.text, encoding);
                    let (start, end) = (index.offset(range.start), index.offset(range.end));
                    if start > end {
                        return Err(format!("change range of {uri} ends before it starts"));
                    }
                    doc.text.replace_range(start..end, &change.text);
                }
            }
        }
        doc.version = version;
        Ok(())
    }

    /// Every open buffer that stands for a file, by absolute path: what the checker reads
    /// instead of the disk.
    pub fn overlay(&self) -> HashMap<PathBuf, String> {
        self.open.values().filter_map(|d| Some((d.path.clone()?, d.text.clone()))).collect()
    }
}

/// The normalised absolute path of a `file:` URI.
pub fn file_path(uri: &Url) -> Option<PathBuf> {
    let path = uri.to_file_path().ok()?;
    Some(crate::lang::modules::absolute(&path))
}
