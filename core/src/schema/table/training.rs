//! The kinds that train a network with AdamW: `train` (a denoiser, with its recipe keys)
//! and `classifier`.

use super::*;

/// A stage kind that trains a network with AdamW. Its one variant's keys are model, data,
/// `what` (what else it learns from), `steps` or `epochs` (exactly one of them), batch, lr,
/// then `how` (the rest).
struct Trainer {
    /// The kind's name and doc.
    kind: (&'static str, &'static str),
    /// Its variant's name and doc.
    variant: (&'static str, &'static str),
    /// The docs of `model` and `data`.
    model_and_data: (&'static str, &'static str),
    /// The default learning rate.
    lr: &'static str,
    what: Vec<KeySpec>,
    how: Vec<KeySpec>,
    /// The implementation version (part of every stage key).
    version: u32,
}

fn training_kind(t: Trainer) -> KindSpec {
    let (model, data) = t.model_and_data;
    let mut keys = vec![req("model", Type::Config("model"), model), req("data", stage(&["dataset"]), data)];
    keys.extend(t.what);
    keys.extend(steps_or_epochs());
    keys.extend([
        batch("128"),
        def("lr", Type::Float, t.lr, "AdamW learning rate").range(gt_le(0.0, MAX_LR)).title("learning rate"),
    ]);
    keys.extend(t.how);
    keys.push(
        def("checkpoint_every", Type::Int, "1000", "save a resumable checkpoint every N steps")
            .range(ge(1.0))
            .not_in_key(),
    );
    let (name, doc) = t.kind;
    let mut only = variant(t.variant.0, t.variant.1, keys);
    only.exactly_one_of.push(STEPS_OR_EPOCHS);
    KindSpec {
        name,
        role: Role::Stage,
        doc,
        default_variant: Some(t.variant.0),
        version: t.version,
        hidden: false,
        variants: vec![only],
    }
}

pub(super) fn train_kind() -> KindSpec {
    training_kind(Trainer {
        kind: ("train", "EMA + raw weights, optimiser state, loss log"),
        variant: ("diffusion", "train a denoiser with AdamW and an EMA of its weights"),
        model_and_data: ("the denoiser (unet for images, mlp for vector data)", "training data"),
        // The recipe tournament's (docs/recipes.md); Ho et al.'s 2e-4 suits nets of 35M parameters.
        lr: "1e-3",
        what: vec![
            def("schedule", Type::Config("schedule"), "cosine { steps = 1000 }", "the noise schedule"),
            def(
                "loss",
                en(&["simple", "hybrid", "vlb"]),
                "\"simple\"",
                "ε-MSE, MSE + λ·VLB (λ = 0.001), or the VLB alone; hybrid/vlb need learn_sigma",
            ),
            def(
                "uncond_p",
                Type::Float,
                "0.1",
                "probability of dropping the label (classifier-free guidance training); an unconditional model has \
                 no label to drop",
            )
            .range(ge_lt(0.0, 1.0)),
        ],
        how: vec![
            def(
                "warmup",
                Type::Int,
                "20",
                "linear learning-rate warm-up steps (a run shorter than the default warms up throughout)",
            )
            .range(ge(0.0)),
            def("grad_clip", Type::Float, "1", "clip the gradient norm at this value (0: no clipping)").range(ge(0.0)),
            def("ema", Type::Float, "0.9999", "EMA decay (warmed up: min(ema, (1 + n)/(10 + n)))")
                .range(ge_lt(0.0, 1.0)),
            replicable_seed(TRAINING_SEED),
            def("precision", en(&["fp32", "bf16"]), "\"fp32\"", "arithmetic precision of the forward/backward pass"),
            opt(
                "weighting",
                en(&["uniform", "min_snr"]),
                "loss weight per noise level: uniform, or Min-SNR-γ (Hang et al. 2023; unset: uniform)",
            ),
            opt("snr_gamma", Type::Float, "γ of weighting = \"min_snr\" (unset: 5)").range(gt(0.0)),
            opt(
                "lr_schedule",
                en(&["constant", "cosine", "linear"]),
                "learning rate after warm-up: constant, or cosine or linear decay to lr_floor at `steps` (unset: constant)",
            )
            .title("learning-rate schedule"),
            opt("lr_floor", Type::Float, "where a decaying lr_schedule ends, as a fraction of lr (unset: 0)")
                .range(ge_lt(0.0, 1.0)),
            opt(
                "precondition",
                en(&["edm"]),
                "EDM (Karras et al. 2022): the net as c_skip·x + c_out·F(c_in·x, ln(σ)/4), trained on log-normal σ \
                 with λ(σ); sample it with heun, euler or euler_ancestral (unset: the schedule's ε/v/x₀ prediction)",
            )
            .title("preconditioning"),
            opt("sigma_data", Type::Float, "EDM's σ_data, the data's standard deviation (unset: 0.5)").range(gt(0.0)),
            opt("p_mean", Type::Float, "EDM's mean of ln σ in training (unset: -1.2)").range(ge_le(-10.0, 10.0)),
            opt("p_std", Type::Float, "EDM's standard deviation of ln σ in training (unset: 1.2)")
                .range(gt_le(0.0, 10.0)),
        ],
        version: 1,
    })
}

pub(super) fn classifier_kind() -> KindSpec {
    training_kind(Trainer {
        kind: ("classifier", "a classifier checkpoint"),
        variant: ("default", "train a classifier"),
        model_and_data: ("an encoder model", "labelled training data"),
        lr: "1e-3",
        what: vec![opt(
            "schedule",
            Type::Config("schedule"),
            "set: trained on noisy x_t (for guidance); unset: a clean classifier (features, accuracy)",
        )],
        how: vec![replicable_seed(TRAINING_SEED)],
        // 2: every step's randomness from (seed, step) and the engine's own AdamW, so that
        // a stopped run resumes from its checkpoint to the same weights. 3: the held-out
        // part keeps every class's share instead of being the last 10 %.
        version: 3,
    })
}
