//! A `python` model's file, checked without running Python: it exists, lies inside the
//! project (the rule of `use`; a link out of it is refused), reads as a code file, and
//! defines the class at the start of a line.

use difflow_core::params::model::PythonConfig;

use super::*;
use crate::lang::python_files::{self, Refused};

impl<'p> Checker<'p> {
    pub(super) fn python_model(&mut self, net: &PythonConfig, decl: &str, path: &str) {
        let file_span = self.span(decl, &join(path, "file")).unwrap_or_default();
        let shown = net.file.strip_prefix(self.root).unwrap_or(&net.file).display().to_string();
        let text = match python_files::read_module(&net.file, &self.policy) {
            Ok((_, text)) => text,
            Err(refused) => {
                let (message, label, help) = file_refusal("the python model's file", "file", &shown, refused);
                self.push(Diagnostic::new(Code::PythonModel, message, file_span, label).with_help(help));
                return;
            }
        };
        if !python_files::defines_class(&text, &net.class) {
            let span = self.span(decl, &join(path, "class")).unwrap_or_default();
            let message = format!("`{shown}` defines no class `{}`", net.class);
            self.push(
                Diagnostic::new(Code::PythonModel, message, span, "not found in the file")
                    .with_label(file_span, "in this file")
                    .with_help(format!(
                        "`class` names a `torch.nn.Module` subclass written as `class {}(…):` at the start of a line",
                        net.class
                    )),
            );
        }
    }
}

/// Why a project Python file (`what`, named by the key `key`) may not run: the message,
/// the label and the help line.
pub(super) fn file_refusal(what: &str, key: &str, shown: &str, refused: Refused) -> (String, String, String) {
    match refused {
        Refused::Missing => (
            format!("{what} `{shown}` does not exist"),
            "no such file".to_string(),
            format!("`{key}` is relative to the pipeline's folder"),
        ),
        Refused::Outside(canonical) => (
            format!("{what} `{shown}` is outside the project"),
            format!("{} is outside the project's folders", canonical.display()),
            "difflow runs Python files from inside the project only: the folder holding difflow.toml \
             (or the pipeline's folder) and below, plus `use_roots`; a link out of it is refused"
                .to_string(),
        ),
        Refused::Unreadable(why) => (
            format!("cannot read {what} `{shown}`: {why}"),
            "not readable as a code file".to_string(),
            format!("`{key}` names a regular Python file of at most 16 MiB"),
        ),
    }
}
