//! Script stages, checked without running Python: the `run` file lies inside the project
//! (the rule of `use`; a link out of it is refused), each output is a plain file name, and
//! a script read where samples are read declares `samples.safetensors`.

use super::python::file_refusal;
use super::*;
use crate::lang::python_files;

/// The file a script writes to stand where a `sample` stage's output is read.
pub const SAMPLES_OUTPUT: &str = "samples.safetensors";

/// Names a script may not write: difflow writes them into the entry itself.
pub const RESERVED_OUTPUTS: [&str; 2] = ["meta.json", "manifest.toml"];

/// Why `name` is not a plain file name a script may declare, if it is not.
pub fn output_name_refusal(name: &str) -> Option<String> {
    if name.is_empty() || name == "." || name == ".." {
        return Some(format!("`{name}` is not a file name"));
    }
    if name.contains(['/', '\\', '\0']) {
        return Some(format!("`{name}` is not a plain file name: outputs are written in the stage's own folder"));
    }
    if RESERVED_OUTPUTS.contains(&name) {
        return Some(format!("`{name}` is written by difflow itself"));
    }
    None
}

/// The outputs a script declares (its `outputs` list).
pub fn declared_outputs(inst: &Instance) -> Vec<&str> {
    match get(&inst.params, "outputs") {
        Some(Value::List(items)) => {
            items.iter().filter_map(|v| if let Value::Str(s) = v { Some(s.as_str()) } else { None }).collect()
        }
        _ => Vec::new(),
    }
}

impl<'p> Checker<'p> {
    pub(super) fn script(&mut self, inst: &Instance) {
        if let Some(Value::Path(file)) = get(&inst.params, "run") {
            let file = std::path::Path::new(file);
            let shown = file.strip_prefix(self.root).unwrap_or(file).display().to_string();
            if let Err(refused) = python_files::read_module(file, &self.policy) {
                let (message, label, help) = file_refusal("the script", "run", &shown, refused);
                self.push(self.error(inst, "run", Code::Script, message, label).with_help(help));
            }
        }
        let outputs = declared_outputs(inst);
        for (n, name) in outputs.iter().enumerate() {
            let why = output_name_refusal(name)
                .or_else(|| outputs[..n].contains(name).then(|| format!("`{name}` is declared twice")));
            if let Some(why) = why {
                self.push(
                    self.error(inst, "outputs", Code::Script, format!("`{}`: {why}", inst.name), "a bad output")
                        .with_help("`outputs` lists plain file names the script writes into its folder, each once"),
                );
            }
        }
        if outputs.is_empty() {
            self.push(
                self.error(inst, "outputs", Code::Script, format!("`{}` declares no outputs", inst.name), "empty")
                    .with_help("list the files the script writes, e.g. `outputs = [\"metrics.json\"]`"),
            );
        }
    }

    /// A script read where samples are read (`key` of `inst`) declares `samples.safetensors`.
    pub(super) fn samples_from_script(&mut self, inst: &Instance, key: &str) {
        let Some(script) = stage(&inst.params, key).and_then(|n| self.inst(n)) else { return };
        if script.kind != "script" || declared_outputs(script).contains(&SAMPLES_OUTPUT) {
            return;
        }
        let message = format!("`{}` reads samples from the script `{}`, which writes none", inst.name, script.name);
        self.push(
            self.error(inst, key, Code::Script, message, "not a sample set")
                .with_label(self.at(script, "outputs"), "no samples.safetensors here")
                .with_help(format!(
                    "a script stands for a sample stage when it writes `{SAMPLES_OUTPUT}` in the sample format and lists it in `outputs`"
                )),
        );
    }
}
