//! The batch script of one stage's job. It runs the worker in the background so that it
//! can pass signals on: Slurm's warning before the time limit (SIGUSR1, asked for with
//! `--signal=B:USR1@…`) and SIGTERM (scancel, `scontrol requeue`, preemption) reach the
//! worker, whose training stage writes a checkpoint and exits with `WORKER_INTERRUPTED`.
//! After a warning the script requeues its own job, which resumes from that checkpoint;
//! after SIGTERM Slurm has already decided what comes next. On success the script hands
//! over to `difflow __commit`, which moves the outputs into the cache.

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
}

/// Single quotes for the shell.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

pub fn script(s: &Script) -> String {
    let launch = if s.nproc > 1 { format!("srun --ntasks={} ", s.nproc) } else { String::new() };
    format!(
        r#"#!/bin/bash
# difflow: {title}
# A job requeued after it committed (scontrol requeue of a finished job) has nothing to do.
if [ ! -e {record} ]; then echo "difflow: the entry is already committed"; exit 0; fi
started=$(date +%s)
warned=0
trap 'warned=1; kill -USR1 "$pid" 2>/dev/null' USR1
trap 'kill -TERM "$pid" 2>/dev/null' TERM
{launch}{worker} {job} &
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
        worker = quote(s.worker),
        job = quote(s.job_file),
        difflow = quote(s.difflow),
        record = quote(s.record),
        interrupted = WORKER_INTERRUPTED,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_quotes_paths_and_starts_ranks_with_srun_only_for_several_processes() {
        let p = Path::new("/c/it's.json");
        let one = script(&Script { title: "t", worker: p, job_file: p, difflow: p, record: p, nproc: 1 });
        assert!(one.contains(r"'/c/it'\''s.json' '/c/it'\''s.json' &"), "{one}");
        assert!(!one.contains("srun"));
        let four = script(&Script { title: "t", worker: p, job_file: p, difflow: p, record: p, nproc: 4 });
        assert!(four.contains("srun --ntasks=4 '/c/"), "{four}");
    }
}
