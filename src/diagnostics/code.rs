//! The stable codes of diagnostics. Each code is written once, here, with its meaning;
//! `difflow doc` and `docs/language.md` print the table of codes from [`Code::ALL`].

/// Declares [`Code`] with its name and one-line meaning (the doc comment) per variant.
macro_rules! codes {
    ($( #[doc = $doc:literal] $variant:ident = $name:literal, )*) => {
        /// What kind of problem a diagnostic reports; its name (`difflow::…`) is stable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( #[doc = $doc] $variant, )*
        }

        impl Code {
            /// Every code, in the order of the reference table.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable name, e.g. `difflow::unknown_key`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Code::$variant => concat!("difflow::", $name), )*
                }
            }

            /// What the code means, in one line.
            pub fn doc(self) -> &'static str {
                match self {
                    $( Code::$variant => $doc.trim(), )*
                }
            }
        }
    };
}

codes! {
    /// the text does not parse
    Syntax = "syntax",
    /// the text nests (brackets, `let` or preset chains) too deep
    TooDeep = "too_deep",
    /// a misspelt or unknown kind (with did-you-mean)
    UnknownKind = "unknown_kind",
    /// a misspelt or unknown variant or preset (with did-you-mean)
    UnknownVariant = "unknown_variant",
    /// a declaration of a kind without a default variant names none
    MissingVariant = "missing_variant",
    /// a misspelt or unknown key (with did-you-mean)
    UnknownKey = "unknown_key",
    /// a string that is not one of a key's choices (with did-you-mean)
    UnknownChoice = "unknown_choice",
    /// a name defined twice
    DuplicateName = "duplicate_name",
    /// a key set twice in one block
    DuplicateKey = "duplicate_key",
    /// a value written twice in one sweep
    DuplicateSweepValue = "duplicate_sweep_value",
    /// `replicate(N)` where no seed may be replicated, or a sweep named `replicate`
    NotReplicable = "not_replicable",
    /// a value of the wrong type for its key
    TypeMismatch = "type_mismatch",
    /// a value outside its key's range, or values that contradict each other
    OutOfRange = "out_of_range",
    /// a required key left out
    MissingKey = "missing_key",
    /// two keys of which exactly one may be set
    ConflictingKeys = "conflicting_keys",
    /// a name that no `let` or declaration defines
    UndefinedName = "undefined_name",
    /// a name of a declaration of the wrong kind
    WrongKind = "wrong_kind",
    /// declarations, presets or `let`s that depend on themselves
    DependencyCycle = "dependency_cycle",
    /// files that `use` each other
    ImportCycle = "import_cycle",
    /// a pipeline or `use`d file that cannot be read
    MissingFile = "missing_file",
    /// a `use` of a file that is not a `.diff` file inside the project (the folder holding `difflow.toml`, else the pipeline's, and below, plus `use_roots`), or not a regular file of at most 4 MiB
    ForbiddenUse = "forbidden_use",
    /// a `difflow.toml` that cannot be read (not a regular file, too large, not UTF-8) or is not valid
    BadSettings = "bad_settings",
    /// a dataset or weights path at a FIFO, device, socket or `/proc` entry (or a folder holding one)
    BadInputPath = "bad_input_path",
    /// a `--set` that is not NAME=VALUE
    BadOverride = "bad_override",
    /// cfg guidance on a model trained with `uncond_p = 0`
    CfgWithoutDropout = "cfg_without_dropout",
    /// cfg guidance (or `uncond_p`) with a model of `classes = 0`
    CfgUnconditional = "cfg_unconditional",
    /// classifier guidance with a classifier trained on clean images
    CleanClassifier = "clean_classifier",
    /// classifier guidance with a classifier trained on another schedule
    ScheduleMismatch = "schedule_mismatch",
    /// `loss = "hybrid"`/`"vlb"` or `variance = "learned"` without `learn_sigma`
    NeedsLearnSigma = "needs_learn_sigma",
    /// model `classes` ≠ the data's class count; labels asked of an unconditional model
    ClassMismatch = "class_mismatch",
    /// an image size the UNet's levels cannot halve
    IndivisibleSize = "indivisible_size",
    /// attention at a resolution the net never has
    AttentionResolution = "attention_resolution",
    /// more sampler steps than the schedule has
    SamplerSteps = "sampler_steps",
    /// `step = K` beyond the training run's `steps`
    StepBeyondTraining = "step_beyond_training",
    /// `step` on metrics of data that no training run drew
    StepWithoutTraining = "step_without_training",
    /// an accuracy metric without a classifier
    AccuracyWithoutClassifier = "accuracy_without_classifier",
    /// a metric that compares with reference data, without a reference
    MissingReference = "missing_reference",
    /// fewer samples than a metric needs
    TooFewSamples = "too_few_samples",
    /// an `mlp` on images, a `unet`/`encoder` on points
    ModelDataMismatch = "model_data_mismatch",
    /// a model of the wrong variant for its stage (an encoder trained as a denoiser, a UNet as a classifier)
    WrongModel = "wrong_model",
    /// stages whose data shapes do not match
    ShapeMismatch = "shape_mismatch",
    /// ε-prediction with a zero-terminal-SNR schedule (ε is undefined at ᾱ_T = 0)
    EpsZeroSnr = "eps_zero_snr",
    /// a trajectory or curve plot of a sample stage that keeps no trajectory
    MissingTrajectory = "missing_trajectory",
    /// a training batch larger than the dataset
    BatchTooLarge = "batch_too_large",
    /// attention heads that do not divide a level's channels
    HeadsMismatch = "heads_mismatch",
    /// sweeps or names that expand beyond 100,000 instances or 5,000,000 values
    TooLarge = "too_large",
    /// after the first 100 problems, the count of the rest
    TooManyErrors = "too_many_errors",
    /// a `pretrained` folder that is missing, or lacks a file difflow reads
    PretrainedFolder = "pretrained_folder",
    /// a `pretrained` model whose config has an option difflow cannot follow
    PretrainedUnsupported = "pretrained_unsupported",
    /// `difflow fmt` could not format a file without changing its meaning (a bug)
    FmtInternal = "fmt_internal",
    /// a warning: a UNet whose every level normalises single channels right after adding the time and label embedding, which removes it (the net sees neither t nor y)
    EmbeddingNormalisedAway = "embedding_normalised_away",
    /// a python model's `file` that is missing, outside the project (the rule of `use`), not a regular file of at most 16 MiB, or that does not define its `class`
    PythonModel = "python_model",
    /// a script stage's `run` file that is missing or outside the project, an output that is not a plain file name, or a script read as samples that does not declare `samples.safetensors`
    Script = "script",
    /// EDM preconditioning with what it has no use for or cannot drive: a sampler on timesteps, learned variance, a VLB loss, another loss weighting, an NLL; or EDM's constants without it
    EdmPrecondition = "edm_precondition",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        assert!(Code::ALL.iter().all(|c| !c.doc().is_empty() && c.as_str().starts_with("difflow::")));
        assert_eq!(Code::UnknownKey.as_str(), "difflow::unknown_key");
        assert_eq!(Code::TooLarge.doc(), "sweeps or names that expand beyond 100,000 instances or 5,000,000 values");
    }
}
