//! The table itself. Defaults are written in the language so that the reference shows
//! them as a user would write them. The builders below are the crate's: a kind whose
//! variants have a typed home in `params` (the samplers) declares its keys there.

mod evaluation;
mod sampling;
mod script;
mod training;

use super::{Bound, Default, KeySpec, KindSpec, Range, Role, Type, VariantSpec};
use evaluation::{metrics_kind, nll_kind, plot_kind, report_kind, stats_kind};
use sampling::{guidance_kind, sampler_kind};
use script::script_kind;
use training::{classifier_kind, train_kind};

pub(crate) fn key(name: &'static str, ty: Type, default: Default, doc: &'static str) -> KeySpec {
    KeySpec {
        name,
        ty,
        default,
        range: Range::ANY,
        doc,
        in_key: true,
        meaning: 1,
        title: None,
        replicable: false,
        neutral: None,
    }
}

pub(crate) fn req(name: &'static str, ty: Type, doc: &'static str) -> KeySpec {
    key(name, ty, Default::Required, doc)
}

pub(crate) fn opt(name: &'static str, ty: Type, doc: &'static str) -> KeySpec {
    key(name, ty, Default::Unset, doc)
}

pub(crate) fn def(name: &'static str, ty: Type, default: &'static str, doc: &'static str) -> KeySpec {
    key(name, ty, Default::Value(default), doc)
}

impl KeySpec {
    pub(crate) fn range(mut self, range: Range) -> Self {
        self.range = range;
        self
    }
    pub(crate) fn not_in_key(mut self) -> Self {
        self.in_key = false;
        self
    }
    /// The key's meaning changed (the results for a set value differ): stage keys name it
    /// `NAME@N` when it is set, so entries made under the old meaning are not reused, while
    /// stages that leave it unset keep their keys.
    pub(crate) fn meaning(mut self, version: u32) -> Self {
        self.meaning = version;
        self
    }
    /// A key added after stages were cached: `value` (a literal) means what leaving the key
    /// out meant before, so a stage that holds it keys as if the key did not exist.
    pub(crate) fn neutral(mut self, value: &'static str) -> Self {
        self.neutral = Some(value);
        self
    }
    pub(crate) fn title(mut self, title: &'static str) -> Self {
        self.title = Some(title);
        self
    }
    pub(crate) fn replicable(mut self) -> Self {
        self.replicable = true;
        self
    }
}

pub(crate) fn ge(v: f64) -> Range {
    Range { min: Some(Bound { value: v, inclusive: true }), max: None }
}
pub(crate) fn gt(v: f64) -> Range {
    Range { min: Some(Bound { value: v, inclusive: false }), max: None }
}
pub(crate) fn ge_le(lo: f64, hi: f64) -> Range {
    Range { min: Some(Bound { value: lo, inclusive: true }), max: Some(Bound { value: hi, inclusive: true }) }
}
pub(crate) fn gt_le(lo: f64, hi: f64) -> Range {
    Range { min: Some(Bound { value: lo, inclusive: false }), max: Some(Bound { value: hi, inclusive: true }) }
}
pub(crate) fn ge_lt(lo: f64, hi: f64) -> Range {
    Range { min: Some(Bound { value: lo, inclusive: true }), max: Some(Bound { value: hi, inclusive: false }) }
}
pub(crate) fn gt_lt(lo: f64, hi: f64) -> Range {
    Range { min: Some(Bound { value: lo, inclusive: false }), max: Some(Bound { value: hi, inclusive: false }) }
}

pub(crate) fn en(options: &[&'static str]) -> Type {
    Type::Enum(options.to_vec())
}
pub(crate) fn stage(kinds: &[&'static str]) -> Type {
    Type::Stage(kinds.to_vec())
}

pub(crate) fn variant(name: &'static str, doc: &'static str, keys: Vec<KeySpec>) -> VariantSpec {
    VariantSpec { name, doc, keys, exactly_one_of: Vec::new() }
}

/// The most items a stage may draw or read at once (points, samples, examples): 10^7 is
/// 200 FID evaluations' worth of samples, and stays far from the sizes at which buffers
/// cannot be addressed.
pub(super) const MAX_ITEMS: f64 = 1e7;

/// The largest learning rate: AdamW's step is about lr per weight, so beyond 10 every
/// step overwrites the weights (published rates are 1e-5…1e-3).
const MAX_LR: f64 = 10.0;

/// The largest guidance scale: published scales are 0.1…20 for classifier-free guidance
/// and 1…10 for classifier guidance; far beyond, the guided prediction overflows float32.
const MAX_GUIDANCE_SCALE: f64 = 1000.0;

/// The largest toy jitter: the shapes span a few units, so beyond 100 the points are noise.
const MAX_TOY_NOISE: f64 = 100.0;

const STEPS_OR_EPOCHS: &[&str] = &["steps", "epochs"];
const PATH_OR_REPO: &[&str] = &["path", "repo"];

fn zero_terminal_snr() -> KeySpec {
    def(
        "zero_terminal_snr",
        Type::Bool,
        "false",
        "rescale so that ᾱ_T = 0 (Lin et al. 2024); needs prediction = \"v\" or \"x0\"",
    )
}

fn schedule_steps() -> KeySpec {
    def("steps", Type::Int, "1000", "number of diffusion steps T")
        .range(ge_le(1.0, crate::diffusion::schedule::MAX_STEPS as f64))
}

/// Keys of the UNet's down path shared by `unet` and `encoder`.
fn conv_keys(
    channels: &'static str,
    attention: &'static str,
    dropout: &'static str,
    scale_shift: &'static str,
) -> Vec<KeySpec> {
    vec![
        def("channels", Type::Int, channels, "base channel count (level i has channels × mults[i])").range(ge(1.0)),
        def(
            "mults",
            Type::list(Type::Int),
            "[1, 2, 2, 2]",
            "channel multiplier per resolution level; level i halves the size i times",
        )
        .range(ge(1.0)),
        def("res_blocks", Type::Int, "2", "residual blocks per level").range(ge(1.0)),
        def(
            "attention",
            Type::list(Type::Int),
            attention,
            "resolutions (in pixels) with self-attention; each must be one the net has (size / 2^level)",
        )
        .range(ge(1.0)),
        def("heads", Type::Int, "1", "attention heads").range(ge(1.0)),
        def("dropout", Type::Float, dropout, "dropout in residual blocks").range(ge_lt(0.0, 1.0)),
        def(
            "scale_shift",
            Type::Bool,
            scale_shift,
            "IDDPM's scale-shift norm for the time embedding (false: additive)",
        ),
    ]
}

fn denoiser_keys() -> Vec<KeySpec> {
    vec![
        def(
            "classes",
            Type::Int,
            "0",
            "class labels the net is conditioned on (0: unconditional); must match the data",
        )
        .range(ge(0.0)),
        def(
            "learn_sigma",
            Type::Bool,
            "false",
            "also predict the variance (IDDPM's learned range); needed by hybrid/vlb losses",
        ),
        def(
            "prediction",
            en(&["eps", "v", "x0"]),
            "\"eps\"",
            "what the net predicts: the noise ε, v = √ᾱ ε − √(1−ᾱ) x₀, or x₀",
        ),
    ]
}

fn dataset_common() -> Vec<KeySpec> {
    vec![
        opt(
            "path",
            Type::Path,
            "folder holding the dataset files (relative to the pipeline's folder); unset: fetched from the \
             canonical source, verified by SHA-256, into the user cache",
        ),
        def("split", en(&["train", "test"]), "\"train\"", "which split to read"),
    ]
}

fn limit() -> KeySpec {
    // Meaning 2: every class keeps its share (it was the first N examples).
    opt("limit", Type::Int, "keep N examples, every class its share, in their order (unset: all)")
        .range(ge_le(1.0, MAX_ITEMS))
        .meaning(2)
}

fn batch(default: &'static str) -> KeySpec {
    def("batch", Type::Int, default, "examples per optimisation step").range(ge(1.0))
}

/// `seed`, with what it draws in this stage.
fn seed(draws: &'static str) -> KeySpec {
    def("seed", Type::Int, "0", draws)
}

/// A stage's `seed` that `replicate(N)` may stand for.
fn replicable_seed(draws: &'static str) -> KeySpec {
    seed(draws).replicable()
}

const TRAINING_SEED: &str = "random seed (initialisation, data order, noise)";

fn steps_or_epochs() -> [KeySpec; 2] {
    [
        opt("steps", Type::Int, "optimisation steps (set exactly one of steps and epochs)")
            .range(ge(1.0))
            .title("training steps"),
        opt("epochs", Type::Int, "passes over the data (set exactly one of steps and epochs)").range(ge(1.0)),
    ]
}

/// `step = K` on a stage that reads a train stage: its EMA weights after K steps, a cache
/// entry of its own (not in the reader's key: the snapshot's key stands for it).
fn training_step(doc: &'static str) -> KeySpec {
    opt("step", Type::Int, doc).range(ge(1.0)).not_in_key().title("training step")
}

fn schedule_kind() -> KindSpec {
    KindSpec {
        name: "schedule",
        role: Role::Config,
        doc: "the β schedule of the forward process",
        default_variant: None,
        version: 1,
        hidden: false,
        variants: vec![
            variant(
                "linear",
                "Ho et al. 2020: β linear from start to end",
                vec![
                    schedule_steps(),
                    def("start", Type::Float, "1e-4", "β_1 (at T = 1000 when scale_with_steps)").range(gt_lt(0.0, 1.0)),
                    def("end", Type::Float, "0.02", "β_T (at T = 1000 when scale_with_steps)").range(gt_lt(0.0, 1.0)),
                    def(
                        "scale_with_steps",
                        Type::Bool,
                        "true",
                        "scale start and end by 1000/T (IDDPM) so any T has the same noise level",
                    ),
                    zero_terminal_snr(),
                ],
            ),
            variant(
                "cosine",
                "Nichol & Dhariwal 2021: ᾱ_t = cos²((t/T + s)/(1 + s) · π/2)",
                vec![
                    schedule_steps(),
                    def("s", Type::Float, "0.008", "offset that keeps β_1 from being too small").range(ge(0.0)),
                    def("max_beta", Type::Float, "0.999", "clip β at this value near t = T").range(gt_lt(0.0, 1.0)),
                    zero_terminal_snr(),
                ],
            ),
            variant(
                "sigmoid",
                "Chen 2023: ᾱ from a sigmoid between start and end with temperature tau",
                vec![
                    schedule_steps(),
                    def("start", Type::Float, "-3", "sigmoid input at t = 0"),
                    def("end", Type::Float, "3", "sigmoid input at t = T (greater than start)"),
                    def("tau", Type::Float, "1", "temperature").range(gt(0.0)),
                    zero_terminal_snr(),
                ],
            ),
        ],
    }
}

fn model_kind() -> KindSpec {
    // No dropout and the scale-shift norm: the recipe tournament's first gain (docs/recipes.md).
    let mut unet_keys = conv_keys("128", "[16]", "0.0", "true");
    unet_keys.extend(denoiser_keys());
    let mut mlp_keys = vec![
        def("hidden", Type::Int, "256", "width of each hidden layer").range(ge(1.0)),
        def("layers", Type::Int, "3", "hidden layers").range(ge(1.0)),
    ];
    mlp_keys.extend(denoiser_keys());
    let mut python_keys = vec![
        req(
            "file",
            Type::Path,
            "the Python file defining the net, inside the project (relative to the pipeline's folder)",
        ),
        req("class", Type::Str, "the `torch.nn.Module` subclass in `file`, built as `class(**args)`"),
        def("args", Type::Record, "{}", "keyword arguments of the constructor: `{ KEY = VALUE, … }`, literals only"),
    ];
    python_keys.extend(denoiser_keys());
    KindSpec {
        name: "model",
        role: Role::Config,
        doc: "the network",
        default_variant: None,
        version: 1,
        hidden: false,
        variants: vec![
            variant(
                "unet",
                "the DDPM/IDDPM UNet for images; its sizes default to Ho et al.'s CIFAR-10 net, with IDDPM's \
                 scale-shift norm and no dropout",
                unet_keys,
            ),
            variant("mlp", "a time-conditioned MLP for vector (toy) data", mlp_keys),
            variant(
                "python",
                "a `torch.nn.Module` written in a project Python file, called as `forward(x, t, y)` (see docs/own_code.md)",
                python_keys,
            ),
            variant(
                "encoder",
                "the UNet's down half with a pooled head: a classifier (noisy or clean; its classes come from the data)",
                conv_keys("64", "[]", "0.0", "false"),
            ),
        ],
    }
}

fn dataset_kind() -> KindSpec {
    let mut mnist_keys = dataset_common();
    mnist_keys.extend([
        def("size", Type::Int, "28", "resize images to size × size").range(ge(1.0)),
        limit(),
        def("classes", Type::Int, "10", "keep only labels 0…N−1; the class count becomes N").range(ge_le(1.0, 10.0)),
    ]);
    let mut cifar_keys = dataset_common();
    cifar_keys.extend([
        def("flip", Type::Bool, "false", "random horizontal flips when a stage reads the data for training"),
        limit(),
    ]);
    KindSpec {
        name: "dataset",
        role: Role::Stage,
        doc: "decoded, normalised tensors and labels",
        default_variant: None,
        version: 1,
        hidden: false,
        variants: vec![
            variant("mnist", "MNIST digits (IDX files), 1 × 28 × 28, 10 classes", mnist_keys.clone()),
            variant("fashion_mnist", "Fashion-MNIST (IDX files), 1 × 28 × 28, 10 classes", mnist_keys),
            variant("cifar10", "CIFAR-10 (python or binary batches), 3 × 32 × 32, 10 classes", cifar_keys),
            variant(
                "images",
                "a folder of image files, unlabelled (0 classes)",
                vec![
                    req("path", Type::Path, "folder of .png/.jpg files (relative to the pipeline's folder)"),
                    opt(
                        "size",
                        Type::Int,
                        "resize (shorter side) and centre-crop to size × size; unset: the images' own size, \
                         which must be the same for all",
                    )
                    .range(ge(1.0)),
                    def("channels", Type::Int, "3", "1 (grayscale) or 3 (RGB)").range(ge_le(1.0, 3.0)),
                    limit(),
                ],
            ),
            variant(
                "toy",
                "2-D points; labels: gaussians8 8 (one per mode), moons 2, swissroll 0 (unlabelled)",
                vec![
                    def("shape", en(&["moons", "gaussians8", "swissroll"]), "\"moons\"", "which distribution"),
                    def("count", Type::Int, "10_000", "points to draw").range(ge_le(1.0, MAX_ITEMS)),
                    def("noise", Type::Float, "0.05", "standard deviation of the Gaussian jitter")
                        .range(ge_le(0.0, MAX_TOY_NOISE)),
                    seed("random seed (the points and their jitter)"),
                ],
            ),
        ],
    }
}

fn pretrained_kind() -> KindSpec {
    let mut diffusers_variant = variant(
        "diffusers",
        "a diffusers UNet2DModel and its DDPM/DDIM scheduler config, from a folder or the Hugging Face Hub",
        vec![
            opt(
                "path",
                Type::Path,
                "folder saved by diffusers' save_pretrained (a pipeline with unet/ and scheduler/, or a model \
                 with scheduler_config.json beside config.json; relative to the pipeline's folder)",
            ),
            opt("repo", Type::Str, "Hub repository ORG/NAME, fetched into the user cache (HF_ENDPOINT is honoured)"),
            def("revision", Type::Str, "\"main\"", "branch, tag or commit of `repo`"),
        ],
    );
    diffusers_variant.exactly_one_of.push(PATH_OR_REPO);
    KindSpec {
        name: "pretrained",
        role: Role::Stage,
        doc: "a trained model from elsewhere, read wherever a train stage's output is",
        default_variant: None,
        version: 1,
        hidden: false,
        variants: vec![diffusers_variant],
    }
}

fn sample_kind() -> KindSpec {
    KindSpec {
        name: "sample",
        role: Role::Stage,
        doc: "uint8 images (or points) + labels, a grid PNG",
        default_variant: Some("default"),
        version: 1,
        hidden: false,
        variants: vec![variant(
            "default",
            "draw samples from a trained model",
            vec![
                req(
                    "from",
                    stage(&["train", "pretrained"]),
                    "the training stage (or pretrained model) whose weights sample",
                ),
                training_step(
                    "sample the EMA weights after this many training steps (unset: the final ones); sweepable",
                ),
                def("sampler", Type::Config("sampler"), "heun { steps = 25, sigma_max = 80 }", "the reverse chain"),
                opt("guidance", Type::Config("guidance"), "cfg or classifier guidance (unset: none)"),
                def("count", Type::Int, "64", "samples to draw").range(ge_le(1.0, MAX_ITEMS)),
                def(
                    "classes",
                    Type::Union(vec![en(&["all"]), Type::Int, Type::list(Type::Int)]),
                    "\"all\"",
                    "labels to condition on: \"all\" (cycled evenly), one label, or a list cycled",
                ),
                replicable_seed("random seed (the starting noise x_T and the noise of each stochastic step)"),
                def("batch", Type::Int, "256", "samples per forward pass (does not change results)")
                    .range(ge(1.0))
                    .not_in_key(),
                def("use_ema", Type::Bool, "true", "sample with the EMA weights (false: the raw weights)"),
                opt("trajectory", Type::Int, "keep x_t and the predicted x₀ every k-th step (unset: none)")
                    .range(ge(1.0)),
            ],
        )],
    }
}

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![
        schedule_kind(),
        model_kind(),
        sampler_kind(),
        guidance_kind(),
        dataset_kind(),
        train_kind(),
        pretrained_kind(),
        classifier_kind(),
        sample_kind(),
        metrics_kind(),
        nll_kind(),
        plot_kind(),
        script_kind(),
        report_kind(),
        stats_kind(),
    ]
}
