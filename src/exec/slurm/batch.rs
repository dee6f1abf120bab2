//! The batch script of one stage's job. It runs the worker in the background so that it
//! can pass signals on: Slurm's warning before the time limit (SIGUSR1, asked for with
//! `--signal=B:USR1@…`) and SIGTERM (scancel, `scontrol requeue`, preemption) reach the
//! worker, whose training stage writes a checkpoint and exits with `WORKER_INTERRUPTED`.
//! After a warning the script requeues its own job, which resumes from that checkpoint;
//! after SIGTERM Slurm has already decided what comes next. On success the script hands
//! over to `difflow __commit`, which moves the outputs into the cache.
//!
//! A data-parallel stage's script starts its ranks with `srun`: they rendezvous at a free
//! port of the allocation's first node (where the script runs), learn their rank from
//! Slurm, and only rank 0's events reach the log (every rank's errors do).

use std::path::Path;

use crate::job::WORKER_INTERRUPTED;

/// Seconds before the time limit at which a training job is warned.
pub const WARNING_SECONDS: u32 = 120;

pub struct Script<'a> {
    pub title: &'a str,
    pub worker: &'a Path,
    pub job_file: &'a Path,
    pub difflow: &'a Path,
    pub record: &'a Path,
    /// Processes of a data-parallel stage: more than one starts the ranks with `srun`.
    pub nproc: usize,
    /// CPUs per process (srun does not inherit the job's `--cpus-per-task`).
    pub cpus: usize,
    /// A script stage: `difflow __script JOB` runs it (and checks its outputs).
    pub script_stage: bool,
}

/// `path` as an sbatch `--output` filename pattern that names exactly it. Slurm replaces
/// `%j`, `%u`, `%x`, … in such a pattern, `%%` standing for `%`; a pattern holding a
/// backslash is not replaced at all, and there a backslash takes the next character
/// literally (`\\` stands for `\`). Measured on Slurm 22.05: `a\b` names `ab`, `a\\b`
/// names `a\b`, `q%u\\x` names `q%u\x`. A path that is not UTF-8 cannot be passed.
pub fn output_pattern(path: &Path) -> Result<String, String> {
    let text = path.to_str().ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok(if text.contains('\\') { text.replace('\\', "\\\\") } else { text.replace('%', "%%") })
}

/// Whether the job logs of entries in cache folder `dir` can be named to `sbatch`: refused
/// before anything runs when they cannot.
pub fn check_cache_dir(dir: &Path) -> Result<(), String> {
    let sample_log = dir.join("0.staging").join(super::LOG_FILE);
    output_pattern(&sample_log).map(|_| ()).map_err(|why| {
        format!(
            "the cache folder cannot hold Slurm jobs' logs: {why}\nhelp: set `cache = \"…\"` in difflow.toml to a \
             folder whose path is valid UTF-8"
        )
    })
}

/// Single quotes for the shell.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The line that starts the worker (in the background): itself, or its ranks under srun.
fn launch(s: &Script) -> String {
    let (worker, job) = (quote(s.worker), quote(s.job_file));
    if s.script_stage {
        return format!("{} __script {job} &", quote(s.difflow));
    }
    if s.nproc <= 1 {
        return format!("{worker} {job} &");
    }
    format!(
        r#"# The ranks' store: a free port of this node, the allocation's first.
export DIFFLOW_STORE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):$({difflow} __free-port)"
srun --ntasks={n} --cpus-per-task={cpus} --kill-on-bad-exit=1 \
    bash -c 'if [ "$SLURM_PROCID" = 0 ]; then exec "$@"; else exec "$@" >/dev/null; fi' rank {worker} {job} &"#,
        difflow = quote(s.difflow),
        n = s.nproc,
        cpus = s.cpus.max(1),
    )
}

pub fn script(s: &Script) -> String {
    format!(
        r#"#!/bin/bash
# difflow: {title}
# A job requeued after it committed (scontrol requeue of a finished job) has nothing to do.
if [ ! -e {record} ]; then echo "difflow: the entry is already committed"; exit 0; fi
started=$(date +%s)
warned=0
trap 'warned=1; kill -USR1 "$pid" 2>/dev/null' USR1
trap 'kill -TERM "$pid" 2>/dev/null' TERM
{launch}
pid=$!
# `wait` returns early when a trapped signal arrives: wait until the worker has ended.
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
wait "$pid"
rc=$?
if [ "$rc" -eq 0 ]; then
    exec {difflow} __commit {record} "$started"
fi
if [ "$rc" -eq {interrupted} ] && [ "$warned" -eq 1 ]; then
    echo "difflow: the time limit is near; the checkpoint is written; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
"#,
        title = s.title.replace('\n', " "),
        launch = launch(s),
        difflow = quote(s.difflow),
        record = quote(s.record),
        interrupted = WORKER_INTERRUPTED,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_name_themselves_whatever_their_percent_signs_and_backslashes() {
        assert_eq!(
            output_pattern(Path::new("/c/c100%u/k.staging/slurm.log")).unwrap(),
            "/c/c100%%u/k.staging/slurm.log"
        );
        assert_eq!(output_pattern(Path::new("/c/%%j%")).unwrap(), "/c/%%%%j%%");
        assert_eq!(output_pattern(Path::new("/c/plain")).unwrap(), "/c/plain");
        // With a backslash nothing is replaced; each backslash is doubled.
        assert_eq!(output_pattern(Path::new(r"/c/c100%u\x/slurm.log")).unwrap(), r"/c/c100%u\\x/slurm.log");
        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = std::ffi::OsStr::from_bytes(b"/c/\xff/slurm.log");
        assert!(output_pattern(Path::new(not_utf8)).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_script_quotes_paths_and_starts_ranks_with_srun_only_for_several_processes() {
        let p = Path::new("/c/it's.json");
        let one = script(&Script {
            title: "t",
            worker: p,
            job_file: p,
            difflow: p,
            record: p,
            nproc: 1,
            cpus: 2,
            script_stage: false,
        });
        assert!(one.contains(r"'/c/it'\''s.json' '/c/it'\''s.json' &"), "{one}");
        assert!(!one.contains("srun") && !one.contains("DIFFLOW_STORE"));
        let four = script(&Script {
            title: "t",
            worker: p,
            job_file: p,
            difflow: p,
            record: p,
            nproc: 4,
            cpus: 2,
            script_stage: false,
        });
        assert!(four.contains("srun --ntasks=4 --cpus-per-task=2 --kill-on-bad-exit=1"), "{four}");
        assert!(four.contains(r"rank '/c/it'\''s.json' '/c/it'\''s.json' &"), "{four}");
        assert!(four.contains(r"export DIFFLOW_STORE=") && four.contains(r"__free-port"), "{four}");
    }
}
