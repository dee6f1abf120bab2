//! Script stages: a project Python file run with the project's interpreter as a cached
//! stage. The script reads `DIFFLOW_JOB`, a JSON file naming each input's stage kind,
//! variant, parameters and files and the folder to write into (the entry's staging
//! folder); when it exits 0, its outputs are checked (every declared file there, nothing
//! else, `metrics.json` a flat object of numbers, `samples.safetensors` in the sample
//! format) before the entry is committed like any other stage's. The same runner serves
//! the local executor (in-process) and Slurm jobs (`difflow __script JOB`).

mod outputs;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::{Progress, Session};
use crate::lang::value::Value;

pub use outputs::{check_outputs, samples_meta};

/// The stderr lines a failure message ends with.
const STDERR_TAIL_LINES: usize = 20;

/// The job file of a script stage: what `DIFFLOW_JOB` names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScriptJob {
    /// The instance name (`memo`, `memo[scale=0.5]`).
    pub instance: String,
    /// The Python file run, absolute.
    pub script: PathBuf,
    /// The interpreter that runs it.
    pub python: PathBuf,
    /// The folder the script runs in: the pipeline's folder.
    pub workdir: PathBuf,
    /// The folder to write into (committed to the cache when the script succeeds).
    pub out_dir: PathBuf,
    /// The declared outputs, plain file names.
    pub outputs: Vec<String>,
    /// The run's device (`auto`, `cpu`, `cuda:N`): a hint the script may follow.
    pub device: String,
    /// Each input by the name `inputs` gives it.
    pub inputs: BTreeMap<String, ScriptInput>,
}

/// One input of a script: the entry of a stage instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScriptInput {
    /// The instance name.
    pub stage: String,
    pub kind: String,
    pub variant: String,
    /// Its parameters as the worker gets them (stage references as `{"$stage": NAME}`).
    pub params: serde_json::Value,
    /// Its cache entry, absolute.
    pub dir: PathBuf,
    /// Every file of the entry by its path in the entry, absolute.
    pub files: BTreeMap<String, PathBuf>,
}

/// The interpreter that runs a project's scripts: `python` in `difflow.toml`; else the
/// set-up's environment (`$DIFFLOW_VENV`); else the environment of the `difflow`
/// executable: a `python3` beside it (a `pip install` puts both in one environment's
/// `bin/`) or the repository's `.venv` above it (`target/release/difflow`, the environment
/// whose torch the worker embeds); else the active virtual environment's; else `python3`
/// on `PATH`.
pub fn interpreter(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    let env_dir = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(|v| PathBuf::from(v).join("bin"));
    env_dir("DIFFLOW_VENV")
        .and_then(|dir| python_in(&dir))
        .or_else(|| std::env::current_exe().ok().and_then(|exe| python_of_executable(&exe)))
        .or_else(|| env_dir("VIRTUAL_ENV").and_then(|dir| python_in(&dir)))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// `python3` (or `python`) in `dir`, if there.
fn python_in(dir: &Path) -> Option<PathBuf> {
    ["python3", "python"].iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The Python of the environment `exe` belongs to: beside it, or in a `.venv` of one of
/// the three folders above it (the repository root of `target/release/difflow`).
fn python_of_executable(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    python_in(dir).or_else(|| dir.ancestors().skip(1).take(3).find_map(|up| python_in(&up.join(".venv/bin"))))
}

/// The job of script instance `i`, writing into `out_dir`.
pub fn build_job(s: &Session, i: usize, out_dir: PathBuf, device: &str) -> Result<ScriptJob, String> {
    let inst = s.instance(i);
    let script = match inst.params.get("run") {
        Some(Value::Path(p)) => PathBuf::from(p),
        _ => return Err(format!("the script stage `{}` has no `run` file", inst.name)),
    };
    let outputs = match inst.params.get("outputs") {
        Some(Value::List(items)) => {
            items.iter().filter_map(|v| if let Value::Str(s) = v { Some(s.clone()) } else { None }).collect()
        }
        _ => Vec::new(),
    };
    let mut inputs = BTreeMap::new();
    if let Some(Value::Record(entries)) = inst.params.get("inputs") {
        for (name, v) in entries {
            let Value::Stage(stage) = v else { continue };
            let dep = s
                .pipeline
                .instance(stage)
                .ok_or_else(|| format!("`{}` reads `{stage}`, which is not in the pipeline", inst.name))?;
            let dir = s.cache.entry_dir(s.keys.key(stage));
            let files = entry_files(&dir);
            let params = serde_json::Value::Object(dep.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect());
            let input = ScriptInput {
                stage: stage.clone(),
                kind: dep.kind.clone(),
                variant: dep.variant.clone(),
                params,
                dir,
                files,
            };
            inputs.insert(name.clone(), input);
        }
    }
    Ok(ScriptJob {
        instance: inst.name.clone(),
        script,
        python: interpreter(s.settings.python.as_deref()),
        workdir: s.pipeline.root.clone(),
        out_dir,
        outputs,
        device: device.to_string(),
        inputs,
    })
}

/// Write `job` to `job_file` (what `DIFFLOW_JOB` names).
pub fn write_job(job: &ScriptJob, job_file: &Path) -> Result<(), String> {
    let text = serde_json::to_string_pretty(job).expect("script jobs serialise");
    std::fs::write(job_file, text).map_err(|e| format!("cannot write {}: {e}", job_file.display()))
}

/// Run the script on its written job file and check what it wrote (`ignored`: files of
/// difflow's own in its folder, the Slurm job's log). The error is the message a failed
/// stage shows (with the end of the script's stderr).
pub fn run(
    job: &ScriptJob,
    job_file: &Path,
    (progress, label): (&Progress, &str),
    ignored: &[&str],
) -> Result<(), String> {
    std::fs::create_dir_all(&job.out_dir).map_err(|e| format!("cannot create {}: {e}", job.out_dir.display()))?;
    progress.println(&format!("{label}: {} {}", job.python.display(), job.script.display()));
    let mut command = Command::new(&job.python);
    command
        .arg(&job.script)
        .current_dir(&job.workdir)
        .env("DIFFLOW_JOB", job_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    super::interrupt::die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start the script's Python {}: {e}\nhelp: set `python = \"…\"` in difflow.toml, or DIFFLOW_VENV",
            job.python.display()
        )
    })?;
    let _registered = super::interrupt::register(child.id());
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let echo = progress.clone();
    let prefix = label.to_string();
    let reader = std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            echo.println(&format!("{prefix}: {line}"));
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let _ = tx.send(tail.into_iter().collect::<Vec<_>>().join("\n"));
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        progress.println(&format!("{label}: {line}"));
    }
    let status = child.wait().map_err(|e| format!("lost the script's process: {e}"))?;
    let _ = reader.join();
    let tail = rx.recv().unwrap_or_default();
    let with_tail = |message: String| {
        if tail.trim().is_empty() {
            message
        } else {
            format!("{message}\nthe script's stderr ended with:\n{tail}")
        }
    };
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        return Err(with_tail(format!("the script {} failed ({how})", job.script.display())));
    }
    check_outputs(&job.out_dir, &job.outputs, ignored).map_err(with_tail)
}

/// `difflow __script JOB`: a Slurm job's half of a script stage (run and check; the batch
/// script then commits). The job was written at submission, before its inputs existed:
/// their files are listed now. A failure's every line starts `error: ` once printed, so
/// that the orchestrator, which follows the log's `error: ` lines, shows all of it.
pub fn run_job_file(job_file: &Path) -> Result<(), String> {
    let text = difflow_core::files::read_text(job_file, difflow_core::files::Purpose::Metadata)
        .map_err(|e| format!("cannot read {}: {e}", job_file.display()))?;
    let mut job: ScriptJob =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a script job: {e}", job_file.display()))?;
    for input in job.inputs.values_mut() {
        input.files = entry_files(&input.dir);
    }
    write_job(&job, job_file)?;
    run(&job, job_file, (&Progress::plain(), &job.instance), &[super::slurm::LOG_FILE])
        .map_err(|message| message.lines().collect::<Vec<_>>().join("\nerror: "))
}

/// Every file of a cache entry (its manifest aside) by its path in the entry.
fn entry_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&entry.path(), &rel, out),
                Ok(t) if t.is_file() && rel != crate::cache::store::MANIFEST => {
                    out.insert(rel, entry.path());
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

/// The numbers of a script's `metrics.json` (checked already), for the manifest.
pub fn reported_metrics(out_dir: &Path) -> BTreeMap<String, f64> {
    outputs::read_metrics(&out_dir.join(outputs::METRICS_FILE)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_difflow_runs_scripts_with_the_repositorys_environment() {
        let root = tempfile::tempdir().unwrap();
        let repo = &root.path().join("repo");
        std::fs::create_dir_all(repo.join(".venv/bin")).unwrap();
        std::fs::create_dir_all(repo.join("target/release")).unwrap();
        std::fs::write(repo.join(".venv/bin/python3"), "").unwrap();
        let exe = repo.join("target/release/difflow");
        assert_eq!(python_of_executable(&exe), Some(repo.join(".venv/bin/python3")));
        // A `pip install`: the Python beside the executable wins.
        std::fs::write(repo.join("target/release/python3"), "").unwrap();
        assert_eq!(python_of_executable(&exe), Some(repo.join("target/release/python3")));
        assert_eq!(python_of_executable(&root.path().join("elsewhere/bin/difflow")), None);
    }
}
