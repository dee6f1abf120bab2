//! `difflow check` and the engine's judgement agree: random schedules, samplers and models
//! within every key's declared range are accepted by the checker exactly when the
//! difflow-core methods the engine applies accept them (`ScheduleSpec::validate`,
//! `Prediction::fits`, `Sampler::check_steps`, `SigmaSteps::bounds`, the learned variance rule,
//! `ConvNet::resolutions`). No libtorch:
//! the engine's side is those methods, called on the same typed values the worker decodes.

use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::params::model::{ConvNet, MlpConfig, ModelConfig, ModelSpec, NetLayout, Prediction, UNetConfig};
use difflow_core::params::sampler::{schedule_sigmas, Sampler};
use difflow_core::schema::{self, Default, KeySpec, Type};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::Value as Json;

/// The image side of the data the UNets model (MNIST's).
const SIZE: i64 = 28;

fn schedule() -> impl Strategy<Value = ScheduleSpec> {
    let steps = 1usize..=1500;
    let unit = 1e-6f64..0.999_999;
    prop_oneof![
        (steps.clone(), unit.clone(), unit.clone(), any::<bool>(), any::<bool>()).prop_map(
            |(steps, start, end, scale_with_steps, zero_terminal_snr)| ScheduleSpec::Linear {
                steps,
                start,
                end,
                scale_with_steps,
                zero_terminal_snr
            }
        ),
        (steps.clone(), 0.0f64..0.5, unit.clone(), any::<bool>()).prop_map(
            |(steps, s, max_beta, zero_terminal_snr)| {
                ScheduleSpec::Cosine { steps, s, max_beta, zero_terminal_snr }
            }
        ),
        (steps, -8.0f64..8.0, -8.0f64..8.0, 0.01f64..4.0, any::<bool>()).prop_map(
            |(steps, start, end, tau, zero_terminal_snr)| ScheduleSpec::Sigmoid {
                steps,
                start,
                end,
                tau,
                zero_terminal_snr
            }
        ),
    ]
}

/// A value of `key` within its declared type and range, `None` for an optional key left
/// unset; numbers without an upper bound stay within `span` of their lower one.
fn key_value(key: &KeySpec, span: f64) -> BoxedStrategy<Option<Json>> {
    let (range, name) = (key.range, key.name);
    let lo = range.min.map_or(0.0, |b| b.value);
    let hi = range.max.map_or(lo + span, |b| b.value);
    let value: BoxedStrategy<Json> = match &key.ty {
        Type::Int => (lo.ceil() as i64..=hi.floor() as i64)
            .prop_filter("in range", move |&i| range.contains(i as f64))
            .prop_map(Json::from)
            .boxed(),
        Type::Float => (lo..=hi).prop_filter("in range", move |&x| range.contains(x)).prop_map(Json::from).boxed(),
        Type::Bool => any::<bool>().prop_map(Json::from).boxed(),
        Type::Enum(options) => proptest::sample::select(options.clone()).prop_map(Json::from).boxed(),
        other => panic!("`{name}`: no values of {other:?} are generated"),
    };
    match key.default {
        Default::Unset => proptest::option::of(value).boxed(),
        Default::Required | Default::Value(_) => value.prop_map(Some).boxed(),
    }
}

/// Every sampler the schema declares, its keys within their declared ranges: a new
/// sampler is generated here with no change.
fn sampler() -> impl Strategy<Value = Sampler> {
    let variants = &schema::kind("sampler").expect("the sampler kind").variants;
    proptest::sample::select(variants.iter().collect::<Vec<_>>()).prop_flat_map(|variant| {
        let keys: Vec<_> = variant.keys.iter().map(|k| key_value(k, 2000.0).prop_map(move |v| (k.name, v))).collect();
        keys.prop_map(move |values| {
            let mut object: serde_json::Map<String, Json> =
                values.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
            object.insert("variant".into(), variant.name.into());
            difflow_core::params::decode::<Sampler>(&Json::Object(object), "a generated sampler").unwrap()
        })
    })
}

/// Unconditional: whether the classes match the data is another rule than these.
fn spec() -> impl Strategy<Value = ModelSpec> {
    let prediction = prop_oneof![Just(Prediction::Eps), Just(Prediction::V), Just(Prediction::X0)];
    (any::<bool>(), prediction).prop_map(|(learn_sigma, prediction)| ModelSpec { classes: 0, learn_sigma, prediction })
}

fn model() -> impl Strategy<Value = ModelConfig> {
    let attention = proptest::sample::subsequence(vec![28i64, 14, 7, 4, 2], 0..=2);
    let net = (1i64..=40, proptest::collection::vec(1i64..=4, 1..=4), attention, 1i64..=4, any::<bool>());
    let unet = (net, spec()).prop_map(|((channels, mults, attention, heads, scale_shift), spec)| {
        let net = ConvNet {
            channels,
            mults,
            res_blocks: 1,
            attention,
            heads,
            dropout: 0.0,
            scale_shift,
            layout: NetLayout::default(),
        };
        ModelConfig::Unet(UNetConfig { net, spec })
    });
    let mlp = (1usize..=64, 1usize..=3, spec())
        .prop_map(|(hidden, layers, spec)| ModelConfig::Mlp(MlpConfig { hidden, layers, spec }));
    prop_oneof![unet, mlp]
}

/// A typed config as the language writes it: `variant { key = value, … }`.
fn written(config: &impl serde::Serialize) -> String {
    let Json::Object(object) = serde_json::to_value(config).unwrap() else { panic!("a config is an object") };
    let variant = object["variant"].as_str().unwrap().to_string();
    let keys: Vec<String> = object
        .iter()
        .filter(|(k, v)| !matches!(k.as_str(), "variant" | "layout") && !v.is_null())
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    format!("{variant} {{ {} }}", keys.join(", "))
}

fn pipeline(schedule: &ScheduleSpec, sampler: &Sampler, model: &ModelConfig) -> String {
    let data = match model {
        ModelConfig::Mlp(_) => "toy { shape = \"gaussians8\", count = 100 }",
        _ => "mnist { path = \"data\" }",
    };
    format!(
        "dataset d = {data}\n\
         train fit {{ model = {}, data = d, schedule = {}, steps = 1, batch = 4 }}\n\
         sample gen {{ from = fit, sampler = {}, count = 4 }}\n",
        written(model),
        written(schedule),
        written(sampler)
    )
}

/// What the engine's own checks say: the worker builds the schedule, the net and the
/// sampler's process from these values with these methods (and stops on any error).
fn engine_accepts(schedule: &ScheduleSpec, sampler: &Sampler, model: &ModelConfig) -> bool {
    let spec = model.spec().expect("a denoiser");
    let net_builds = match model {
        ModelConfig::Unet(unet) => unet.net.resolutions("unet", SIZE).is_ok(),
        ModelConfig::Mlp(_) | ModelConfig::Encoder(_) | ModelConfig::Python(_) => true,
    };
    schedule.validate().is_ok()
        && spec.prediction.fits(schedule).is_ok()
        && sampler.check_steps(schedule.steps()).is_ok()
        && sampler.sigma_steps().is_none_or(|s| {
            let table = schedule_sigmas(&schedule.tables().alphas_cumprod);
            s.bounds(table[0], table[table.len() - 1]).is_ok()
        })
        && (!sampler.needs_learned_variance() || spec.learn_sigma)
        && net_builds
}

/// Cases per run: each checks one pipeline in well under a millisecond.
const CASES: u32 = 300;

#[test]
fn check_accepts_exactly_what_the_engine_accepts() {
    let config = ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() };
    let (accepted, total) = (Cell::new(0u32), Cell::new(0u32));
    let result = TestRunner::new(config).run(&(schedule(), sampler(), model()), |(schedule, sampler, model)| {
        let text = pipeline(&schedule, &sampler, &model);
        let loaded = crate::lang::load_source("agree.diff", &text, &[]);
        let problems: Vec<_> = loaded.diagnostics.iter().map(|d| (d.code, d.message.clone())).collect();
        let engine = engine_accepts(&schedule, &sampler, &model);
        total.set(total.get() + 1);
        accepted.set(accepted.get() + u32::from(engine));
        prop_assert_eq!(problems.is_empty(), engine, "check says {:?} of\n{}", problems, text);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Both verdicts are exercised, so agreeing is not agreeing on everything rejected.
    let (accepted, total) = (accepted.get(), total.get());
    assert!(accepted * 10 >= total && accepted * 10 <= total * 9, "{accepted} of {total} accepted");
}
