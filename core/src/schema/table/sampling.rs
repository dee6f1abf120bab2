//! The kinds that draw samples from a trained net: the samplers (their variants and keys
//! are declared beside their types, in `params/sampler.rs`) and the guidance.

use super::*;

pub(super) fn sampler_kind() -> KindSpec {
    KindSpec {
        name: "sampler",
        role: Role::Config,
        doc: "the reverse chain",
        default_variant: None,
        version: 1,
        hidden: false,
        variants: crate::params::sampler::variants(),
    }
}

pub(super) fn guidance_kind() -> KindSpec {
    KindSpec {
        name: "guidance",
        role: Role::Config,
        doc: "conditioning at sampling time",
        default_variant: None,
        version: 1,
        hidden: false,
        variants: vec![
            variant(
                "cfg",
                "classifier-free guidance (Ho & Salimans 2022): ε̃ = (1 + w) ε(x, c) − w ε(x); needs uncond_p > 0 in training",
                vec![
                    req("scale", Type::Float, "guidance strength w (0: plain conditional sampling)")
                        .range(ge_le(0.0, MAX_GUIDANCE_SCALE))
                        .title("guidance strength w"),
                    def(
                        "interval",
                        Type::list(Type::Float),
                        "[]",
                        "[σ_lo, σ_hi]: guide only the steps with σ_lo < σ ≤ σ_hi and sample the others \
                         conditionally (Kynkäänniemi et al. 2024; σ = √((1 − ᾱ)/ᾱ); e.g. [0.28, 5.42]); []: \
                         guide every step",
                    )
                    .range(gt(0.0))
                    .neutral("[]")
                    .title("guidance interval"),
                ],
            ),
            variant(
                "classifier",
                "classifier guidance (Dhariwal & Nichol 2021) with a noisy classifier trained on the same schedule",
                vec![
                    req("model", stage(&["classifier"]), "a classifier stage trained on noisy x_t (schedule set)"),
                    def("scale", Type::Float, "1", "gradient scale s")
                        .range(ge_le(0.0, MAX_GUIDANCE_SCALE))
                        .title("classifier guidance scale s"),
                ],
            ),
        ],
    }
}
