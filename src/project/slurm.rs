//! `[slurm]` in `difflow.toml`: what each stage's job asks for. Every setting is a value
//! for all stages or a table by stage kind, with `default` for the kinds not named:
//!
//! ```toml
//! [slurm]
//! partition = "gpu"
//! time = { train = "2-00:00:00", default = "1:00:00" }
//! gpus = { train = 1, sample = 1 }
//! extra = ["--qos=normal"]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    partition: Option<PerKind<String>>,
    account: Option<PerKind<String>>,
    time: Option<PerKind<String>>,
    cpus: Option<PerKind<usize>>,
    gpus: Option<PerKind<usize>>,
    mem: Option<PerKind<String>>,
    extra: Option<PerKind<Vec<String>>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum PerKind<T> {
    All(T),
    ByKind(BTreeMap<String, T>),
}

impl<T: Clone> PerKind<T> {
    fn for_kind(&self, kind: &str) -> Option<T> {
        match self {
            PerKind::All(v) => Some(v.clone()),
            PerKind::ByKind(m) => m.get(kind).or_else(|| m.get("default")).cloned(),
        }
    }
}

/// What one stage's job asks Slurm for.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub time: Option<String>,
    pub mem: Option<String>,
    /// CPUs per process (default 1); also the worker's thread count.
    pub cpus: usize,
    /// GPUs per process (default 0).
    pub gpus: usize,
    pub extra: Vec<String>,
    /// Processes (ranks) of the stage: 1 unless the stage trains data-parallel.
    pub nproc: usize,
}

impl SlurmSettings {
    /// The request for a stage of `kind` running as `nproc` processes.
    pub fn resources(&self, kind: &str, nproc: usize) -> Resources {
        let get = |v: &Option<PerKind<String>>| v.as_ref().and_then(|v| v.for_kind(kind));
        Resources {
            partition: get(&self.partition),
            account: get(&self.account),
            time: get(&self.time),
            mem: get(&self.mem),
            cpus: self.cpus.as_ref().and_then(|v| v.for_kind(kind)).unwrap_or(1).max(1),
            gpus: self.gpus.as_ref().and_then(|v| v.for_kind(kind)).unwrap_or(0),
            extra: self.extra.as_ref().and_then(|v| v.for_kind(kind)).unwrap_or_default(),
            nproc: nproc.max(1),
        }
    }
}

impl Resources {
    /// The sbatch options for this request.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = vec![format!("--ntasks={}", self.nproc), format!("--cpus-per-task={}", self.cpus)];
        if self.gpus > 0 {
            args.push(if self.nproc > 1 {
                format!("--gpus-per-task={}", self.gpus)
            } else {
                format!("--gpus={}", self.gpus)
            });
        }
        for (flag, value) in
            [("partition", &self.partition), ("account", &self.account), ("time", &self.time), ("mem", &self.mem)]
        {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_by_kind_falls_back_to_default_and_data_parallel_asks_per_task() {
        let s: SlurmSettings =
            toml::from_str("gpus = { train = 2 }\nmem = { default = \"4G\", plot = \"1G\" }\ncpus = 3\n").unwrap();
        let train = s.resources("train", 1).sbatch_args();
        assert_eq!(train, ["--ntasks=1", "--cpus-per-task=3", "--gpus=2", "--mem=4G"]);
        assert_eq!(s.resources("plot", 1).sbatch_args(), ["--ntasks=1", "--cpus-per-task=3", "--mem=1G"]);
        let ranks = s.resources("train", 4).sbatch_args();
        assert_eq!(ranks[..3], ["--ntasks=4", "--cpus-per-task=3", "--gpus-per-task=2"]);
    }
}
