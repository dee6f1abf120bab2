//! The `script` stage: a project Python file run as a cached stage (docs/own_code.md).

use super::*;

/// The stage kinds a script may read (every stage that leaves files, reports aside).
const SCRIPT_INPUT_KINDS: &[&str] =
    &["dataset", "train", "pretrained", "classifier", "sample", "metrics", "nll", "plot", "script"];

pub(super) fn script_kind() -> KindSpec {
    KindSpec {
        name: "script",
        role: Role::Stage,
        doc: "the files your own Python script writes: metrics.json numbers, samples.safetensors, figures",
        default_variant: Some("default"),
        version: 1,
        hidden: false,
        variants: vec![variant(
            "default",
            "run a project Python file with the project's interpreter (see docs/own_code.md)",
            vec![
                req(
                    "run",
                    Type::Path,
                    "the Python file to run, inside the project (relative to the pipeline's folder)",
                ),
                def(
                    "inputs",
                    Type::StageRecord(SCRIPT_INPUT_KINDS.to_vec()),
                    "{}",
                    "the stages whose entries it reads, by the names the job file gives them: `{ KEY = STAGE, … }`",
                ),
                req(
                    "outputs",
                    Type::list(Type::Str),
                    "the files it writes into its folder (plain names; `metrics.json` and `samples.safetensors` are read by difflow)",
                ),
            ],
        )],
    }
}
