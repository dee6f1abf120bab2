//! Project settings from an optional `difflow.toml` beside the pipeline. Every setting has a
//! default, so a pipeline runs without the file.
//!
//! ```toml
//! cache = ".difflow/cache"          # where stage outputs live (relative to this file)
//! data_root = "data"                # relative dataset paths are resolved against it
//! device = "auto"                   # auto | cpu | cuda:N (`difflow run --device` wins)
//! inception_weights = "weights/pt_inception-2015-12-05.pth"
//! threads = 0                       # CPU threads per worker (0: libtorch's default)
//! jobs = 1                          # stages run at once (`difflow run --jobs` wins)
//! use_roots = ["../recipes"]        # more folders whose `.diff` files a `use` may read
//! executor = "local"                # local | slurm (`difflow run --executor` wins)
//! max_params = 2_000_000_000        # the largest model read from a diffusers folder
//! max_memory_gib = 32               # its weights, one example's activations and schedule
//! out = "results"                   # `difflow run` puts readable copies in results/<pipeline stem>/
//! python = ".venv/bin/python"       # runs script stages (default: see `exec::script::interpreter`)
//!
//! [slurm]                           # sbatch resources; each a value or a table by stage kind
//! partition = "gpu"
//! time = { train = "2-00:00:00", default = "1:00:00" }
//! cpus = 4
//! gpus = { train = 1, sample = 1 }
//! extra = ["--qos=normal"]
//!
//! user_cache = "/scratch/difflow"   # fetched datasets and weights (default: $XDG_CACHE_HOME/difflow)
//!
//! [sources.cifar10]                 # a mirror for one fetched file (see `difflow::fetch`)
//! url = "http://mirror.lab/cifar-10-python.tar.gz"
//! sha256 = "6d958be0…"              # optional: the pinned checksum otherwise
//!
//! [remote]                          # a shared cache (see docs/remote.md)
//! url = "file:///shared/difflow"    # or "https://cache.lab/difflow"
//! pull = true                       # `difflow run` takes what the remote has
//! push = true                       # `difflow run` uploads each entry it commits
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use difflow_core::files::{self, Purpose};
use difflow_core::net_size::SizeLimits;
use serde::Deserialize;

pub const FILE_NAME: &str = "difflow.toml";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The folder holding `difflow.toml` (or the pipeline's folder when there is none).
    pub root: PathBuf,
    /// The cache folder, absolute.
    pub cache: PathBuf,
    /// The folder relative dataset paths are resolved against, absolute.
    pub data_root: PathBuf,
    pub device: String,
    /// Default InceptionV3 weights for FID/IS/KID/precision/recall, absolute.
    pub inception_weights: Option<PathBuf>,
    pub threads: usize,
    pub jobs: usize,
    /// Data-parallel processes per stage: one count, or a count by stage kind.
    pub nproc: Nproc,
    /// Folders besides the project's own whose `.diff` files a `use` may read, absolute.
    pub use_roots: Vec<PathBuf>,
    /// `local` or `slurm`.
    pub executor: String,
    pub slurm: super::slurm::SlurmSettings,
    /// Where fetched datasets and weights live, absolute.
    pub user_cache: PathBuf,
    /// `[sources.NAME]` overrides of where a fetched file comes from.
    pub sources: BTreeMap<String, SourceOverride>,
    /// `max_params`, `max_memory_gib`: the largest model built from a config difflow did
    /// not write (a diffusers folder's).
    pub limits: SizeLimits,
    /// `[remote]`: a shared cache to pull entries from and push them to.
    pub remote: Option<crate::remote::run::RemoteSettings>,
    /// `out`: the folder, absolute, under which `difflow run` publishes each pipeline's
    /// finished outputs (`<out>/<pipeline stem>/`; `difflow run --out` wins).
    pub out: Option<PathBuf>,
    /// `python`: the interpreter of script stages (a path relative to the project, or a
    /// command name looked up on `PATH`); unset: the set-up's environment.
    pub python: Option<PathBuf>,
}

/// A `[sources.NAME]` table: another URL (a mirror) and/or another checksum.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOverride {
    pub url: Option<String>,
    pub sha256: Option<String>,
}

/// How many processes run one stage (`nproc`): an execution resource, never in a stage key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Nproc {
    All(usize),
    ByKind(std::collections::BTreeMap<String, usize>),
}

/// The stage kinds that can run on several processes.
/// (`metrics`: the features its hidden `stats` stages extract; the metrics stage itself
/// runs on one process.)
pub const DATA_PARALLEL_KINDS: [&str; 4] = ["train", "classifier", "sample", "metrics"];

impl Nproc {
    /// The process count for a stage of `kind` (1 for kinds that run on one process).
    pub fn for_kind(&self, kind: &str) -> usize {
        let kind = match kind {
            crate::graph::STATS_KIND => "metrics",
            "metrics" => return 1,
            other => other,
        };
        if !DATA_PARALLEL_KINDS.contains(&kind) {
            return 1;
        }
        match self {
            Nproc::All(n) => (*n).max(1),
            Nproc::ByKind(table) => table.get(kind).copied().unwrap_or(1).max(1),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    user_cache: Option<PathBuf>,
    #[serde(default)]
    sources: BTreeMap<String, SourceOverride>,
    cache: Option<PathBuf>,
    data_root: Option<PathBuf>,
    device: Option<String>,
    inception_weights: Option<PathBuf>,
    threads: Option<usize>,
    jobs: Option<usize>,
    nproc: Option<Nproc>,
    use_roots: Option<Vec<PathBuf>>,
    executor: Option<String>,
    slurm: Option<super::slurm::SlurmSettings>,
    max_params: Option<u64>,
    max_memory_gib: Option<u64>,
    remote: Option<crate::remote::run::RemoteSettings>,
    out: Option<PathBuf>,
    python: Option<PathBuf>,
}

impl Settings {
    /// The defaults for a pipeline in `root`.
    pub fn defaults(root: &Path) -> Settings {
        Settings {
            root: root.to_path_buf(),
            cache: root.join(".difflow").join("cache"),
            data_root: root.to_path_buf(),
            device: "auto".into(),
            inception_weights: None,
            threads: 0,
            jobs: 1,
            user_cache: default_user_cache(root),
            sources: BTreeMap::new(),
            nproc: Nproc::All(1),
            use_roots: Vec::new(),
            executor: "local".into(),
            slurm: Default::default(),
            limits: SizeLimits::default(),
            remote: None,
            out: None,
            python: None,
        }
    }

    /// Read `root/difflow.toml` if it exists; paths in it are relative to `root`.
    pub fn load(root: &Path) -> Result<Settings, String> {
        let file = root.join(FILE_NAME);
        let mut s = Settings::defaults(root);
        // A recipe may carry this file as a FIFO or a link to a device: read it only as a
        // regular file of at most `Purpose::Settings`'s limit.
        let text = match files::read_text_if_present(&file, Purpose::Settings) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(s),
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        };
        let raw: RawSettings = toml::from_str(&text).map_err(|e| {
            format!(
                "{} is not valid: {}\nhelp: the known settings are cache, data_root, device, inception_weights, threads, jobs, nproc, use_roots, executor, max_params, max_memory_gib, out, python, [slurm], user_cache, [sources.NAME] tables (url, sha256) and [remote] (url, pull, push)",
                file.display(),
                e.message()
            )
        })?;
        if let Some(c) = raw.cache {
            s.cache = root.join(c);
        }
        if let Some(d) = raw.data_root {
            s.data_root = root.join(d);
        }
        if let Some(d) = raw.device {
            check_device(&d).map_err(|e| format!("{}: {e}", file.display()))?;
            s.device = d;
        }
        s.inception_weights = raw.inception_weights.map(|p| root.join(p));
        if let Some(t) = raw.threads {
            s.threads = t;
        }
        if let Some(j) = raw.jobs {
            s.jobs = j.max(1);
        }
        if let Some(u) = raw.user_cache {
            s.user_cache = root.join(u);
        }
        if let Some(n) = raw.nproc {
            if let Nproc::ByKind(table) = &n {
                if let Some(kind) = table.keys().find(|k| !DATA_PARALLEL_KINDS.contains(&k.as_str())) {
                    return Err(format!(
                        "{}: `nproc` names the stage kind `{kind}`, which runs on one process (data-parallel kinds: {})",
                        file.display(),
                        DATA_PARALLEL_KINDS.join(", ")
                    ));
                }
            }
            s.nproc = n;
        }
        s.use_roots = raw.use_roots.unwrap_or_default().into_iter().map(|r| root.join(r)).collect();
        if let Some(e) = raw.executor {
            check_executor(&e).map_err(|e| format!("{}: {e}", file.display()))?;
            s.executor = e;
        }
        s.slurm = raw.slurm.unwrap_or_default();
        s.sources = raw.sources;
        if let Some(n) = raw.max_params {
            s.limits.max_params = n;
        }
        if let Some(gib) = raw.max_memory_gib {
            s.limits.max_memory = gib.saturating_mul(1 << 30);
        }
        s.out = raw.out.map(|o| root.join(o));
        s.python = raw.python.map(|p| if p.components().count() > 1 { root.join(p) } else { p });
        if let Some(r) = raw.remote {
            // Checked here so that a typo fails every command, not only the first transfer.
            crate::remote::Remote::open(&r).map_err(|e| format!("{}: {e}", file.display()))?;
            s.remote = Some(r);
        }
        Ok(s)
    }

    /// The folder beside the cache for difflow's own bookkeeping (digest memo).
    pub fn state_dir(&self) -> PathBuf {
        self.cache.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.join(".difflow"))
    }
}

/// `$XDG_CACHE_HOME/difflow`, else `$HOME/.cache/difflow` (the XDG default), else a
/// folder beside the pipeline when neither variable is set.
fn default_user_cache(root: &Path) -> PathBuf {
    let from_env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    match (from_env("XDG_CACHE_HOME"), from_env("HOME")) {
        (Some(x), _) => x.join("difflow"),
        (None, Some(h)) => h.join(".cache").join("difflow"),
        (None, None) => root.join(".difflow").join("user-cache"),
    }
}

/// `auto`, `cpu` or `cuda:N`.
pub fn check_device(d: &str) -> Result<(), String> {
    let ok = d == "auto"
        || d == "cpu"
        || d == "cuda"
        || d.strip_prefix("cuda:").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!("unknown device `{d}`: use auto, cpu or cuda:N (for example cuda:0)"))
    }
}

/// `local` or `slurm`.
pub fn check_executor(e: &str) -> Result<(), String> {
    match e {
        "local" | "slurm" => Ok(()),
        _ => Err(format!("unknown executor `{e}`: use local or slurm")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.cache, dir.path().join(".difflow/cache"));
        assert_eq!(s.device, "auto");
        assert_eq!(s.jobs, 1);
        assert_eq!(s.limits, SizeLimits::default());
    }

    #[test]
    fn size_limits_are_read_in_parameters_and_gib() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "max_params = 1_000\nmax_memory_gib = 2\n").unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.limits, SizeLimits { max_params: 1000, max_memory: 2 << 30 });
    }

    #[test]
    fn reads_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "cache = \"c\"\ndevice = \"cuda:1\"\ninception_weights = \"w/inc.pth\"\njobs = 3\nuser_cache = \"u\"\n\
             [sources.cifar10]\nurl = \"http://127.0.0.1:1/c.tgz\"\n",
        )
        .unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.cache, dir.path().join("c"));
        assert_eq!(s.device, "cuda:1");
        assert_eq!(s.inception_weights, Some(dir.path().join("w/inc.pth")));
        assert_eq!(s.jobs, 3);
        assert_eq!(s.user_cache, dir.path().join("u"));
        assert_eq!(s.sources["cifar10"].url.as_deref(), Some("http://127.0.0.1:1/c.tgz"));
        assert_eq!(s.sources["cifar10"].sha256, None);
    }

    #[test]
    fn rejects_unknown_settings_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "cahce = \"c\"\n").unwrap();
        assert!(Settings::load(dir.path()).unwrap_err().contains("cahce"));
        std::fs::write(dir.path().join(FILE_NAME), "device = \"gpu\"\n").unwrap();
        assert!(Settings::load(dir.path()).unwrap_err().contains("cuda:N"));
        std::fs::write(dir.path().join(FILE_NAME), "executor = \"pbs\"\n").unwrap();
        assert!(Settings::load(dir.path()).unwrap_err().contains("local or slurm"));
    }

    #[test]
    fn slurm_settings_take_a_value_or_a_table_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "executor = \"slurm\"\n[slurm]\npartition = \"gpu\"\ncpus = 2\ngpus = { train = 1, sample = 1 }\n\
             time = { train = \"2:00:00\", default = \"10:00\" }\nextra = [\"--qos=low\"]\n",
        )
        .unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.executor, "slurm");
        let r = s.slurm.resources("train", 1);
        assert_eq!((r.partition.as_deref(), r.cpus, r.gpus), (Some("gpu"), 2, 1));
        assert_eq!(r.time.as_deref(), Some("2:00:00"));
        let r = s.slurm.resources("plot", 1);
        assert_eq!((r.gpus, r.time.as_deref()), (0, Some("10:00")));
        assert_eq!(r.extra, ["--qos=low"]);
        std::fs::write(dir.path().join(FILE_NAME), "[slurm]\ngpus = \"one\"\n").unwrap();
        assert!(Settings::load(dir.path()).is_err());
    }
}
