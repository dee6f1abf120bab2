//! The kinds that draw samples from a trained net: the samplers (the chains on the
//! schedule's timesteps and the σ samplers on Karras steps) and the guidance.

use super::*;

pub(super) fn sampler_kind() -> KindSpec {
    KindSpec {
        name: "sampler",
        role: Role::Config,
        doc: "the reverse chain",
        default_variant: None,
        version: 1,
        hidden: false,
        variants: vec![
            variant(
                "ddpm",
                "ancestral sampling (Ho et al. 2020), optionally respaced (IDDPM)",
                vec![
                    def(
                        "variance",
                        en(&["fixed_small", "fixed_large", "learned"]),
                        "\"fixed_small\"",
                        "reverse variance: posterior β̃_t, β_t, or the net's learned range (needs learn_sigma)",
                    ),
                    opt("steps", Type::Int, "respaced step count (unset: every step of the schedule)").range(ge(1.0)),
                ],
            ),
            variant(
                "ddim",
                "Song et al. 2021: deterministic at eta = 0, DDPM-like at eta = 1",
                vec![
                    sampling_steps("50"),
                    def("eta", Type::Float, "0", "stochasticity η").range(ge_le(0.0, 1.0)).title("DDIM η"),
                    def(
                        "spacing",
                        en(&["uniform", "quadratic", "trailing"]),
                        "\"uniform\"",
                        "how the steps are picked from 1…T",
                    ),
                ],
            ),
            variant(
                "dpm_solver",
                "DPM-Solver (Lu et al. 2022), multistep",
                vec![sampling_steps("20"), def("order", Type::Int, "2", "solver order").range(ge_le(1.0, 3.0))],
            ),
            variant(
                "euler",
                "Euler's method on Karras et al. 2022's σ steps (k-diffusion `sample_euler`)",
                sigma_keys("50"),
            ),
            variant(
                "heun",
                "Heun's 2nd-order method on Karras σ steps (EDM; 2 × steps − 1 network evaluations)",
                sigma_keys("18"),
            ),
            variant(
                "euler_ancestral",
                "ancestral Euler on Karras σ steps (k-diffusion `sample_euler_ancestral`, η = 1)",
                sigma_keys("50"),
            ),
        ],
    }
}

/// The keys of a sampler on Karras σ steps. The net, trained on a discrete schedule, sees
/// x/√(σ² + 1) and the timestep whose σ = √((1 − ᾱ)/ᾱ) is nearest in log σ.
fn sigma_keys(steps: &'static str) -> Vec<KeySpec> {
    vec![
        def("steps", Type::Int, steps, "σ steps (each σ maps to its nearest timestep)")
            .range(ge(1.0))
            .title("sampling steps"),
        def("rho", Type::Float, "7", "ρ of the σ spacing: σ^(1/ρ) evenly spaced").range(gt(0.0)),
        opt("sigma_min", Type::Float, "smallest σ (unset: the schedule's σ at t = 1)").range(gt(0.0)),
        opt(
            "sigma_max",
            Type::Float,
            "largest σ (unset: the schedule's σ at t = T, which zero terminal SNR makes infinite: set it there)",
        )
        .range(gt(0.0)),
    ]
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
                vec![req("scale", Type::Float, "guidance strength w (0: plain conditional sampling)")
                    .range(ge_le(0.0, MAX_GUIDANCE_SCALE))
                    .title("guidance strength w")],
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
