//! The kinds that measure and show what the pipeline made: metrics, nll, plot, report and
//! the hidden feature statistics, with the keys only they use.

use super::*;
use crate::params::measure::Measure;

fn features() -> KeySpec {
    def(
        "features",
        Type::Union(vec![en(&["inception"]), stage(&["classifier"])]),
        "\"inception\"",
        "feature extractor: InceptionV3 (FID variant) or a classifier stage's penultimate layer",
    )
}

fn inception_weights() -> KeySpec {
    opt(
        "inception_weights",
        Type::Path,
        "pt_inception-2015-12-05 weights (.pth or .safetensors); unset: from difflow.toml",
    )
}

pub(super) fn metrics_kind() -> KindSpec {
    KindSpec {
        name: "metrics",
        role: Role::Stage,
        doc: "metrics.json; each input's feature statistics are a cache entry of their own",
        default_variant: Some("default"),
        version: 1,
        hidden: false,
        variants: vec![variant(
            "default",
            "sample quality against a reference",
            vec![
                req(
                    "samples",
                    stage(&["sample", "dataset", "script"]),
                    "what is measured (a script that writes samples.safetensors stands for a sample stage)",
                ),
                training_step(
                    "measure the samples as drawn after this many steps of their training stage (unset: as they are); sweepable",
                ),
                opt(
                    "reference",
                    stage(&["dataset", "sample"]),
                    "the real data (needed by fid, kid, precision, recall)",
                ),
                features(),
                inception_weights(),
                def(
                    "measure",
                    Type::list(Type::Enum(Measure::ALL.iter().map(|m| m.name()).collect())),
                    "[\"fid\"]",
                    "which metrics",
                ),
                opt(
                    "classifier",
                    stage(&["classifier"]),
                    "the classifier for accuracy (unset: features, when it is a classifier)",
                ),
            ],
        )],
    }
}

pub(super) fn nll_kind() -> KindSpec {
    KindSpec {
        name: "nll",
        role: Role::Stage,
        doc: "bits/dim from the full variational bound",
        default_variant: Some("default"),
        version: 1,
        hidden: false,
        variants: vec![variant(
            "default",
            "negative log-likelihood in bits/dim",
            vec![
                req("from", stage(&["train", "pretrained"]), "the trained (or pretrained) model"),
                training_step(
                    "evaluate the EMA weights after this many training steps (unset: the final ones); sweepable",
                ),
                req("data", stage(&["dataset"]), "the data to evaluate (usually the test split)"),
                def("count", Type::Int, "1000", "examples to evaluate").range(ge_le(1.0, MAX_ITEMS)),
                def("batch", Type::Int, "256", "examples per forward pass (does not change results)")
                    .range(ge(1.0))
                    .not_in_key(),
            ],
        )],
    }
}

pub(super) fn plot_kind() -> KindSpec {
    KindSpec {
        name: "plot",
        role: Role::Stage,
        doc: "PNG / GIF figures",
        default_variant: None,
        version: 2,
        hidden: false,
        variants: vec![
            variant(
                "grid",
                "an image grid: one column per class under its label when the images have 2 to 20 classes",
                vec![
                    req("of", stage(&["sample", "dataset", "script"]), "images to show"),
                    def(
                        "count",
                        Type::Int,
                        "64",
                        "images in the grid (by class: count / classes per column, rounded up)",
                    )
                    .range(ge_le(1.0, MAX_ITEMS)),
                ],
            ),
            variant(
                "scatter",
                "2-D points, one colour per input",
                vec![req("of", Type::list(stage(&["dataset", "sample"])), "2-D data or samples")],
            ),
            variant(
                "forward",
                "the forward process q(x_t | x₀) at chosen steps",
                vec![
                    req("data", stage(&["dataset"]), "the data to noise"),
                    req("schedule", Type::Config("schedule"), "the noise schedule"),
                    def("at", Type::list(Type::Int), "[0, 250, 500, 750, 999]", "steps t to show (0 … T−1)")
                        .range(ge(0.0)),
                ],
            ),
            variant(
                "trajectory",
                "x_t and the predicted x₀ along the reverse chain (GIF)",
                vec![req("samples", stage(&["sample"]), "a sample stage with trajectory set")],
            ),
            variant(
                "schedules",
                "ᾱ_t and log SNR of several schedules",
                vec![req("of", Type::list(Type::Config("schedule")), "the schedules to compare")],
            ),
            variant("loss", "training loss curves", vec![req("of", Type::list(stage(&["train"])), "training stages")]),
            variant(
                "curve",
                "a metric of the predicted x₀ along the reverse chain",
                vec![
                    req("of", stage(&["sample"]), "a sample stage with trajectory set"),
                    def("y", en(&["fid", "is"]), "\"fid\"", "the metric"),
                    opt("reference", stage(&["dataset", "sample"]), "the real data (needed by fid)"),
                    features(),
                    inception_weights(),
                ],
            ),
        ],
    }
}

pub(super) fn report_kind() -> KindSpec {
    KindSpec {
        name: "report",
        role: Role::Stage,
        doc: "report.md and a self-contained report.html",
        default_variant: Some("default"),
        version: 1,
        hidden: false,
        variants: vec![variant(
            "default",
            "collect stages (whole families) into one page",
            vec![
                req(
                    "include",
                    Type::list(stage(&[
                        "dataset",
                        "train",
                        "classifier",
                        "sample",
                        "metrics",
                        "nll",
                        "plot",
                        "script",
                    ])),
                    "the stages or families to show",
                ),
                def("title", Type::Str, "\"\"", "page title (empty: the report's name)"),
            ],
        )],
    }
}

pub(super) fn stats_kind() -> KindSpec {
    KindSpec {
        name: "stats",
        role: Role::Stage,
        doc: "feature statistics μ, Σ of one input under one extractor (created by difflow for metrics)",
        default_variant: Some("default"),
        version: 1,
        hidden: true,
        variants: vec![variant(
            "default",
            "float64 mu [D] and sigma [D, D]",
            vec![req("of", stage(&["dataset", "sample", "script"]), "the input"), features(), inception_weights()],
        )],
    }
}
