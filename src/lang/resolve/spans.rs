//! Where each key of each declaration is written, for the labels of cross-stage checks.

use super::*;

/// Where keys are written, for labels of cross-stage diagnostics.
#[derive(Default)]
pub(crate) struct SpanTable {
    /// (declaration, key path like `sampler.steps`) → (key span, value span).
    pub(super) entries: HashMap<(String, String), (Span, Span)>,
    /// (declaration, key path) → the declaration a name there refers to.
    pub(super) refs: HashMap<(String, String), String>,
    /// Declaration → the span of its name.
    pub(super) decls: HashMap<String, Span>,
}

impl SpanTable {
    /// The value span of a key path of a declaration, following names of configs
    /// (`model.learn_sigma` → the `learn_sigma` written in the model declaration).
    pub fn value(&self, decl: &str, path: &str) -> Option<Span> {
        self.lookup(decl, path, 0).map(|(_, v)| v)
    }

    fn lookup(&self, decl: &str, path: &str, depth: usize) -> Option<(Span, Span)> {
        if let Some(s) = self.entries.get(&(decl.to_string(), path.to_string())) {
            return Some(*s);
        }
        if depth > 16 {
            return None;
        }
        // Follow a name at any prefix of the path: `sampler.steps` with `sampler = fast`.
        let mut split = path.len();
        while let Some(i) = path[..split].rfind('.') {
            let (head, rest) = (&path[..i], &path[i + 1..]);
            if let Some(target) = self.refs.get(&(decl.to_string(), head.to_string())) {
                return self.lookup(target, rest, depth + 1);
            }
            split = i;
        }
        None
    }

    /// Where a declaration's name is written.
    pub fn decl(&self, decl: &str) -> Option<Span> {
        self.decls.get(decl).copied()
    }
}
