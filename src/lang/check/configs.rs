//! Each config (named or inline) decoded into its kind's type in difflow-core, and judged by
//! that type's methods, the ones the engine applies too: schedules that cannot drive a
//! diffusion process (`ScheduleSpec::validate`), and UNets whose GroupNorms remove the
//! embedding (`UNetConfig::embedding_blind_levels`, a warning).

use difflow_core::params::guidance::GuidanceConfig;
use difflow_core::params::model::{ModelConfig, UNetConfig};
use difflow_core::params::sampler::Sampler;
use serde::de::DeserializeOwned;

use super::*;
use crate::diffusion::schedule::ScheduleSpec;

/// A resolved config as its kind's type; None for an unknown kind or a value that does not
/// decode (reported by [`Checker::config`] where the config is written).
pub(super) fn typed<T: DeserializeOwned>(cfg: &Config) -> Option<T> {
    difflow_core::params::decode(&cfg.to_json(), &cfg.kind).ok()
}

/// A stage instance's parameters as its kind's type (`variant` beside its keys).
pub(super) fn typed_stage<T: DeserializeOwned>(inst: &Instance) -> Option<T> {
    let params = Config { kind: inst.kind.clone(), variant: inst.variant.clone(), params: inst.params.clone() };
    typed(&params)
}

impl<'p> Checker<'p> {
    pub(super) fn config(&mut self, cfg: &Config, decl: &str, path: &str) {
        match cfg.kind.as_str() {
            "schedule" => {
                if let Some(spec) = self.decoded::<ScheduleSpec>(cfg, decl, path) {
                    self.schedule(&spec, decl, path);
                }
            }
            "model" => match self.decoded::<ModelConfig>(cfg, decl, path) {
                Some(ModelConfig::Unet(unet)) => self.unet_sees_embedding(&unet, decl, path),
                Some(ModelConfig::Python(net)) => self.python_model(&net, decl, path),
                _ => {}
            },
            "sampler" => drop(self.decoded::<Sampler>(cfg, decl, path)),
            "guidance" => drop(self.decoded::<GuidanceConfig>(cfg, decl, path)),
            _ => {}
        }
    }

    /// A stage instance's parameters as its kind's type, or a diagnostic at its declaration
    /// (see [`Checker::decoded`]).
    pub(super) fn decoded_stage<T: DeserializeOwned>(&mut self, inst: &Instance) -> Option<T> {
        let params = Config { kind: inst.kind.clone(), variant: inst.variant.clone(), params: inst.params.clone() };
        self.decoded(&params, &inst.decl, "")
    }

    /// `cfg` as a `T`, or a diagnostic at the config: the schema let a value through that
    /// the type does not read (the two disagree, which `difflow_core::params`' tests rule out).
    fn decoded<T: DeserializeOwned>(&mut self, cfg: &Config, decl: &str, path: &str) -> Option<T> {
        match difflow_core::params::decode(&cfg.to_json(), &cfg.kind) {
            Ok(value) => Some(value),
            Err(e) => {
                let span = self.span(decl, path).unwrap_or_default();
                let message = format!("this {} does not read as one: {}", cfg.kind, e.message);
                self.push(Diagnostic::new(
                    Code::TypeMismatch,
                    message,
                    span,
                    format!("a {} {}", cfg.variant, cfg.kind),
                ));
                None
            }
        }
    }

    fn schedule(&mut self, spec: &ScheduleSpec, decl: &str, path: &str) {
        let Err(problem) = spec.validate() else { return };
        let span = self.span(decl, &join(path, problem.key)).unwrap_or_default();
        self.push(Diagnostic::new(Code::OutOfRange, problem.message, span, problem.label).with_help(problem.help));
    }

    /// A warning when every level of the UNet loses the time and label embedding.
    fn unet_sees_embedding(&mut self, unet: &UNetConfig, decl: &str, path: &str) {
        if !unet.ignores_embedding() {
            return;
        }
        let widths: Vec<String> = unet.embedding_blind_levels().iter().map(|l| l.channels.to_string()).collect();
        let message = format!(
            "with the additive embedding, this UNet's levels ({} channels) normalise each channel on its own \
             right after the time and label embedding is added, which subtracts it: the net sees neither t nor y",
            widths.join(", ")
        );
        let span = self.span(decl, &join(path, "scale_shift")).or_else(|| self.span(decl, path)).unwrap_or_default();
        self.warn(
            Diagnostic::new(Code::EmbeddingNormalisedAway, message, span, "every GroupNorm has one channel per group")
                .with_help(
                    "set `scale_shift = true` (the embedding then scales and shifts after the norm), or give a \
                     level more than 32 channels",
                ),
        );
    }
}
