//! A diffusers folder's configs come from anyone: every number difflow builds from is held
//! to the range the language gives its own key for the same thing (the schema's `unet`,
//! `linear` schedule and `images` dataset keys), and the model and schedule they describe
//! to the size limits of `difflow.toml`, before anything is allocated.

use super::config::{ConfigError, PretrainedNet, SchedulerConfig, UNet2DConfig};
use crate::net_size::{count_text, gib_text, schedule_bytes, SizeLimits, UNetShape};
use crate::schema::Range;

/// The schema's range of `kind.variant.key` (the language's own rule for that number).
fn schema_range(kind: &str, variant: &str, key: &str) -> Range {
    crate::schema::key(kind, variant, key).map_or(Range::ANY, |k| k.range)
}

/// `field` (a diffusers option) holds `value`, which difflow's `key` must satisfy.
fn within(field: &str, value: f64, shown: &str, (kind, variant, key): (&str, &str, &str)) -> Result<(), ConfigError> {
    let range = schema_range(kind, variant, key);
    if range.contains(value) {
        return Ok(());
    }
    Err(ConfigError {
        message: format!("`{field}` = {shown} is out of range"),
        help: format!("it becomes difflow's `{variant} {{ {key} }}`, which must be {range}"),
    })
}

const UNET: (&str, &str) = ("model", "unet");

/// The UNet options' ranges, checked before the net is mapped (nothing here allocates).
pub(super) fn check_unet_ranges(c: &UNet2DConfig) -> Result<(), ConfigError> {
    for (level, channels) in c.block_out_channels.iter().enumerate() {
        let field = format!("block_out_channels[{level}]");
        within(&field, *channels as f64, &channels.to_string(), (UNET.0, UNET.1, "channels"))?;
    }
    within(
        "layers_per_block",
        c.layers_per_block as f64,
        &c.layers_per_block.to_string(),
        (UNET.0, UNET.1, "res_blocks"),
    )?;
    within("dropout", c.dropout, &c.dropout.to_string(), (UNET.0, UNET.1, "dropout"))?;
    if let Some(rows) = c.num_class_embeds {
        // The last row is the null class: `classes` = rows − 1.
        within("num_class_embeds", rows as f64 - 1.0, &rows.to_string(), (UNET.0, UNET.1, "classes"))?;
    }
    if let Some(size) = c.sample_size.as_ref().and_then(serde_json::Value::as_f64) {
        within("sample_size", size, &size.to_string(), ("dataset", "images", "size"))?;
    }
    if c.in_channels < 1 {
        return Err(ConfigError {
            message: format!("`in_channels` = {} is out of range", c.in_channels),
            help: "an image has at least one channel".into(),
        });
    }
    if !(c.norm_eps.is_finite() && c.norm_eps > 0.0) {
        return Err(ConfigError {
            message: format!("`norm_eps` = {} is out of range", c.norm_eps),
            help: "GroupNorm's ε must be a positive number (diffusers' default: 1e-5)".into(),
        });
    }
    Ok(())
}

/// `norm_num_groups` must split every GroupNorm's channels into equal groups.
pub(super) fn check_groups(groups: i64, normalised: &[i64]) -> Result<(), ConfigError> {
    let help = "GroupNorm splits its channels into equal groups: use a count that divides every level's \
                channels (diffusers' default: 32)";
    if groups < 1 {
        return Err(ConfigError {
            message: format!("`norm_num_groups` = {groups} is out of range"),
            help: help.into(),
        });
    }
    match normalised.iter().find(|c| *c % groups != 0) {
        Some(c) => Err(ConfigError {
            message: format!("`norm_num_groups` = {groups} does not divide the {c} channels of a GroupNorm"),
            help: help.into(),
        }),
        None => Ok(()),
    }
}

/// The net's parameter count and one example's memory against `limits`, naming the
/// option that makes it too big.
pub fn check_net_size(net: &PretrainedNet, limits: &SizeLimits) -> Result<(), ConfigError> {
    let out_channels = if net.learn_sigma { 2 * net.in_channels } else { net.in_channels };
    let class_rows = if net.classes > 0 { net.classes + 1 } else { 0 };
    let shape = UNetShape { net: &net.net, in_channels: net.in_channels, out_channels, class_rows, size: net.size };
    let size = shape.estimate();
    let setting = "or raise it in difflow.toml if the machine has room";
    if size.params > limits.max_params as f64 {
        let net_options = format!(
            "`block_out_channels` {:?} with `layers_per_block` = {} give",
            net.net.mults.iter().map(|m| m.saturating_mul(net.net.channels)).collect::<Vec<_>>(),
            net.net.res_blocks
        );
        let cause =
            if size.class_params > limits.max_params as f64 { "`num_class_embeds` gives".into() } else { net_options };
        return Err(ConfigError {
            message: format!(
                "{cause} a UNet of {} parameters, above `max_params` = {}",
                count_text(size.params),
                count_text(limits.max_params as f64)
            ),
            help: format!("difflow refuses models larger than `max_params` ({setting})"),
        });
    }
    if size.memory() > limits.max_memory as f64 {
        let field = if size.activation_bytes > size.params * 4.0 { "sample_size" } else { "block_out_channels" };
        return Err(ConfigError {
            message: format!(
                "`{field}` gives a UNet that needs about {} for one example (weights and activations), above \
                 `max_memory_gib` = {}",
                gib_text(size.memory()),
                limits.max_memory >> 30
            ),
            help: format!("difflow refuses models larger than `max_memory_gib` ({setting})"),
        });
    }
    Ok(())
}

const LINEAR: (&str, &str) = ("schedule", "linear");

/// The scheduler's numbers, checked before any table is built.
pub(super) fn check_scheduler(c: &SchedulerConfig, limits: &SizeLimits) -> Result<(), ConfigError> {
    let steps = c.num_train_timesteps as f64;
    within("num_train_timesteps", steps, &c.num_train_timesteps.to_string(), (LINEAR.0, LINEAR.1, "steps"))?;
    if schedule_bytes(steps) > limits.max_memory as f64 {
        return Err(ConfigError {
            message: format!(
                "`num_train_timesteps` = {} needs {} of schedule tables, above `max_memory_gib` = {}",
                c.num_train_timesteps,
                gib_text(schedule_bytes(steps)),
                limits.max_memory >> 30
            ),
            help: "diffusion models use about 1000 steps".into(),
        });
    }
    if let Some(betas) = &c.trained_betas {
        if betas.is_empty() {
            return Err(ConfigError {
                message: "`trained_betas` is empty".into(),
                help: "give one β per step, or leave it unset".into(),
            });
        }
        // β_T = 1 is a zero-terminal-SNR schedule's last step; the other bounds are the
        // language's for any β.
        if let Some((i, beta)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b <= 1.0)) {
            return Err(ConfigError {
                message: format!("`trained_betas[{i}]` = {beta} is out of range"),
                help: "every β must be 0 < β ≤ 1".into(),
            });
        }
        return Ok(());
    }
    if matches!(c.beta_schedule.as_str(), "linear" | "sigmoid") {
        within("beta_start", c.beta_start, &c.beta_start.to_string(), (LINEAR.0, LINEAR.1, "start"))?;
        within("beta_end", c.beta_end, &c.beta_end.to_string(), (LINEAR.0, LINEAR.1, "end"))?;
        if c.beta_start >= c.beta_end {
            return Err(ConfigError {
                message: format!("`beta_start` = {} is not below `beta_end` = {}", c.beta_start, c.beta_end),
                help: "β grows over the forward process, as in the language's `linear { start, end }`".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_come_from_the_schema() {
        for (kind, variant, key) in [
            ("model", "unet", "channels"),
            ("model", "unet", "res_blocks"),
            ("model", "unet", "dropout"),
            ("model", "unet", "classes"),
            ("dataset", "images", "size"),
            ("schedule", "linear", "steps"),
            ("schedule", "linear", "start"),
            ("schedule", "linear", "end"),
        ] {
            assert!(!schema_range(kind, variant, key).is_any(), "{kind}.{variant}.{key} has no range");
        }
        assert!(!schema_range("schedule", "linear", "end").contains(5.0));
    }

    #[test]
    fn groups_must_be_positive_and_divide_every_norm() {
        assert!(check_groups(0, &[64]).unwrap_err().message.contains("`norm_num_groups` = 0"));
        assert!(check_groups(32, &[64, 48]).unwrap_err().message.contains("the 48 channels"));
        assert!(check_groups(32, &[64, 128]).is_ok());
    }
}
