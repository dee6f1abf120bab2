//! `difflow run --executor slurm` against a real single-node Slurm cluster, started here
//! with `scripts/slurm-local.sh start` when it is not running (`scripts/test.sh` starts it
//! before the suite and stops it after). Tests poll Slurm for states, never sleep a fixed
//! time. The real worker checks results; the worker double (a shell script) checks
//! failure, adoption and cancellation cheaply.

mod cli_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cli_support::{difflow_real, tiny_toy, toy_train, Project, TOY, TOY_SETUP};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster's `SLURM_CONF`, starting the cluster the first time.
fn cluster() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let out = Command::new("bash").arg(repo().join("scripts/slurm-local.sh")).arg("start").output().unwrap();
        assert!(
            out.status.success(),
            "the local Slurm cluster did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        repo().join(".slurm/slurm.conf")
    })
}

/// A Slurm client command's stdout.
fn slurm(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).env("SLURM_CONF", cluster()).output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `KEY=VALUE` fields of `scontrol show job ID`.
fn job_info(id: &str) -> BTreeMap<String, String> {
    slurm("scontrol", &["show", "job", id])
        .split_whitespace()
        .filter_map(|f| f.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn job_state(id: &str) -> String {
    slurm("squeue", &["--noheader", "--states=all", "--format=%T", "--jobs", id]).trim().to_string()
}

/// Poll `done` every 100 ms; fail after `limit` (a bound against hanging, not a timing).
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Instance → job id from the `queued`/`adopted` lines of a run.
fn jobs_in(stdout: &str, word: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(word))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts[2].to_string(), parts[4].trim_end_matches(')').to_string())
        })
        .collect()
}

/// `difflow ARGS` in `dir` with the real worker and the cluster.
fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    difflow_real(dir, args, &[("SLURM_CONF", cluster().as_os_str())])
}

/// `[stages.NAME]` → (key, output digests) of a `difflow.lock`.
fn lock_records(dir: &Path) -> BTreeMap<String, (String, toml::Value)> {
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("difflow.lock")).unwrap()).unwrap();
    lock["stages"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, st)| (name.clone(), (st["key"].as_str().unwrap().to_string(), st["outputs"].clone())))
        .collect()
}

/// The same pipeline in a local project and a Slurm one (`cluster_settings` added to its
/// `difflow.toml`), both with one thread: CPU reductions depend on the thread count.
fn local_and_cluster(pipeline: &str, cluster_settings: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let local = tempfile::tempdir().unwrap();
    let cluster_dir = tempfile::tempdir().unwrap();
    for d in [local.path(), cluster_dir.path()] {
        std::fs::write(d.join("p.diff"), pipeline).unwrap();
    }
    std::fs::write(local.path().join("difflow.toml"), "threads = 1\n").unwrap();
    let settings = format!("threads = 1\nexecutor = \"slurm\"\n{cluster_settings}");
    std::fs::write(cluster_dir.path().join("difflow.toml"), settings).unwrap();
    (local, cluster_dir)
}

#[test]
fn a_sweep_runs_one_job_per_instance_with_its_dependencies_and_matches_a_local_run() {
    // Jobs are submitted held, so that their dependencies can be read before any runs.
    let (local, cluster_dir) =
        local_and_cluster(&tiny_toy(20, "1e-3", "sweep(5, 10)", true), "[slurm]\nextra = [\"--hold\"]\n");
    let (code, out, err) = difflow(local.path(), &["run", "p.diff"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff", "--detach"]);
    assert_eq!(code, 0, "{out}{err}");
    let jobs = jobs_in(&out, "queued");
    let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
    assert_eq!(names, ["ddpm", "gen[steps=10]", "gen[steps=5]", "pic", "pts"], "{out}");
    let dependency = |name: &str| {
        let mut deps: Vec<String> = job_info(&jobs[name])["Dependency"].split(',').map(str::to_string).collect();
        deps.sort();
        deps
    };
    let after = |names: &[&str]| {
        let mut deps: Vec<String> = names.iter().map(|n| format!("afterok:{}(unfulfilled)", jobs[*n])).collect();
        deps.sort();
        deps
    };
    assert_eq!(dependency("pts"), ["(null)"]);
    assert_eq!(dependency("ddpm"), after(&["pts"]));
    assert_eq!(dependency("gen[steps=5]"), after(&["ddpm"]));
    assert_eq!(dependency("gen[steps=10]"), after(&["ddpm"]));
    assert_eq!(dependency("pic"), after(&["pts", "gen[steps=5]", "gen[steps=10]"]));
    for (name, id) in &jobs {
        let info = job_info(id);
        assert_eq!(info["JobName"], format!("difflow:p:{name}"));
        if name != "pts" {
            assert_eq!(info["KillOInInvalidDependent"], "Yes", "{info:?}");
        }
    }

    // plan shows the queued jobs; a run adopts them instead of submitting again.
    let (_, plan, _) = difflow(cluster_dir.path(), &["plan", "p.diff"]);
    for (name, id) in &jobs {
        let line = plan.lines().find(|l| l.split_whitespace().nth(1) == Some(name.as_str())).unwrap();
        assert!(line.starts_with("running") && line.ends_with(&format!("(job {id})")), "{plan}");
    }
    let ids: Vec<&str> = jobs.values().map(String::as_str).collect();
    slurm("scontrol", &["release", &ids.join(",")]);
    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(jobs_in(&out, "adopted"), jobs, "{out}");
    assert!(jobs_in(&out, "queued").is_empty(), "{out}");
    assert!(out.contains("ran 5 stages, 0 cached"), "{out}");
    for id in jobs.values() {
        assert_eq!(job_info(id)["JobState"], "COMPLETED");
    }
    assert_eq!(lock_records(cluster_dir.path()), lock_records(local.path()));
    // The training job wrote its live TensorBoard log into its entry, as a local run does,
    // and `difflow logdir` links it.
    let (code, folder, err) = difflow(cluster_dir.path(), &["logdir", "p.diff"]);
    assert_eq!(code, 0, "{folder}{err}");
    let logs = Path::new(folder.trim()).join("ddpm");
    let events = std::fs::read_dir(&logs).map(|d| d.filter_map(Result::ok).count()).unwrap_or(0);
    assert!(events > 0, "no event file in {}", logs.display());

    let (code, out, _) = difflow(cluster_dir.path(), &["run", "p.diff"]);
    assert_eq!(code, 0, "{out}");
    // The run still names the files to open (the plot) after its one-line summary.
    assert_eq!(out.lines().next(), Some("nothing to do: all 5 stages cached"), "{out}");
}

/// The worker double under Slurm.
fn double(pipeline: &str, env: &[(&str, &str)]) -> (Project, Vec<(String, String)>) {
    let p = Project::new(pipeline);
    std::fs::write(p.path().join("difflow.toml"), "executor = \"slurm\"\n").unwrap();
    let conf = cluster().display().to_string();
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("SLURM_CONF".into(), conf));
    (p, env)
}

fn run_double(p: &Project, env: &[(String, String)], args: &[&str]) -> cli_support::Out {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    p.difflow(args, &env)
}

/// `difflow run p.diff` on the cluster in the background, its output to `output()`.
fn spawn_run(p: &Project, env: &[(String, String)], output: fn() -> Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_difflow"))
        .args(["run", "p.diff"])
        .current_dir(p.path())
        .env("DIFFLOW_WORKER", &p.worker)
        .env("LOG", &p.log)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap()
}

/// The job records in the project's cache: one per submitted Slurm job.
fn slurm_records(p: &Project) -> usize {
    let Ok(rd) = std::fs::read_dir(p.cache_dir()) else { return 0 };
    rd.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".slurm.json")).count()
}

#[test]
fn a_failing_job_ends_the_run_with_its_message_and_slurm_cancels_its_dependents() {
    let (p, env) = double(TOY, &[("FAIL_KIND", "train")]);
    let out = run_double(&p, &env, &["run", "p.diff"]);
    assert_eq!(out.code(), 2, "{}{}", out.stdout(), out.stderr());
    let jobs = jobs_in(&out.stdout(), "queued");
    let err = out.stderr();
    assert!(err.contains("stage `ddpm` (train) failed: the data file is missing"), "{err}");
    assert!(err.contains(&format!("(Slurm job {} failed;", jobs["ddpm"])), "{err}");
    assert!(out.stdout().contains("ran 1 stage, 0 cached, 1 failed, 3 not started"), "{}", out.stdout());
    for name in ["gen[steps=5]", "gen[steps=10]", "pic"] {
        let info = job_info(&jobs[name]);
        assert_eq!((info["JobState"].as_str(), info["Reason"].as_str()), ("CANCELLED", "DependencyNeverSatisfied"));
    }
    // Only the dataset is cached; the failed training left nothing that counts.
    assert_eq!(p.entries().len(), 1);
    assert_eq!(p.take_worker_log(), ["pts", "ddpm"]);
}

#[test]
fn a_killed_difflow_leaves_its_jobs_running_and_the_next_run_adopts_them() {
    let (p, env) = double(TOY, &[("SLEEP", "1")]);
    let mut child = spawn_run(&p, &env, Stdio::null);
    // Killed as soon as every job is submitted (five records), before the last finishes.
    wait_for("five submitted jobs", Duration::from_secs(60), || slurm_records(&p) == 5);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(p.entries().len() < 5, "the pipeline finished before difflow was killed");

    let out = run_double(&p, &env, &["run", "p.diff"]);
    assert_eq!(out.code(), 0, "{}{}", out.stdout(), out.stderr());
    let stdout = out.stdout();
    assert!(jobs_in(&stdout, "queued").is_empty(), "nothing is submitted twice:\n{stdout}");
    assert!(!jobs_in(&stdout, "adopted").is_empty(), "{stdout}");
    assert_eq!(p.entries().len(), 5);
    let mut ran = p.take_worker_log();
    ran.sort();
    assert_eq!(ran, ["ddpm", "gen[steps=10]", "gen[steps=5]", "pic", "pts"], "each instance ran once");
}

#[test]
fn cancel_cancels_the_pipelines_queued_and_running_jobs() {
    let (p, env) = double(TOY, &[("SLEEP", "60")]);
    let out = run_double(&p, &env, &["run", "p.diff", "--detach"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let jobs = jobs_in(&out.stdout(), "queued");
    assert_eq!(jobs.len(), 5);
    let out = run_double(&p, &env, &["cancel", "p.diff"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    for (name, id) in &jobs {
        assert!(out.stdout().contains(&format!("cancelled job {id} (")), "{name}: {}", out.stdout());
        wait_for("the cancelled state", Duration::from_secs(30), || job_state(id) == "CANCELLED");
    }
    let plan = run_double(&p, &env, &["plan", "p.diff"]).stdout();
    assert!(plan.contains("5 stages: 0 cached, 5 new, 0 stale\n"), "{plan}");
    assert!(p.entries().is_empty());
    let out = run_double(&p, &env, &["cancel", "p.diff"]);
    assert!(out.stdout().contains("no job of p.diff is queued or running"), "{}", out.stdout());
}

/// The log of Slurm job `id` in the cache folder `cache`, found through its job record.
fn job_log(cache: &Path, id: &str) -> Option<String> {
    let record = std::fs::read_dir(cache).ok()?.filter_map(Result::ok).find(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.ends_with(".slurm.json")
            && std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&format!("\"job_id\": \"{id}\"")))
    })?;
    let key = record.file_name().to_string_lossy().trim_end_matches(".slurm.json").to_string();
    std::fs::read_to_string(cache.join(format!("{key}.staging/slurm.log"))).ok()
}

/// Interrupt the job of `instance` (a `kind` stage) of `pipeline` mid-run with
/// `interrupt(job id)`, let Slurm start it again, follow it to the end and compare with an
/// uninterrupted local run.
fn resumes_after(pipeline: &str, (kind, instance): (&str, &str), interrupt: impl Fn(&str)) {
    let local = tempfile::tempdir().unwrap();
    let cluster_dir = tempfile::tempdir().unwrap();
    for d in [local.path(), cluster_dir.path()] {
        std::fs::write(d.join("p.diff"), pipeline).unwrap();
        std::fs::write(d.join("difflow.toml"), "threads = 1\n").unwrap();
    }
    let (code, out, err) = difflow(local.path(), &["run", "p.diff"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff", "--executor", "slurm", "--detach"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = jobs_in(&out, "queued")[instance].clone();
    let cache = cluster_dir.path().join(".difflow/cache");
    let training = || job_log(&cache, &id).is_some_and(|l| l.contains(r#""event":"progress","done":"#));
    wait_for("the training job to make progress", Duration::from_secs(120), training);
    interrupt(&id);
    // Slurm holds a requeued job back for two minutes; let it start sooner. Not in the
    // same second: a job started then is refused ("job credential revoked").
    let requeued = || job_state(&id) == "PENDING" && job_info(&id)["Restarts"] == "1";
    wait_for("the requeued job to be pending", Duration::from_secs(60), requeued);
    slurm("scontrol", &["update", &format!("JobId={id}"), "StartTime=now+2"]);

    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff", "--executor", "slurm"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("adopted {kind} {instance} (job {id})")), "{out}");
    assert_eq!(job_info(&id)["Restarts"], "1");
    assert!(err.contains("stopped at step "), "{err}");
    assert!(err.contains("resuming from the checkpoint at step"), "{err}");
    assert_eq!(lock_records(cluster_dir.path()), lock_records(local.path()));
}

fn training_resumes_after(interrupt: impl Fn(&str)) {
    let long_training = format!("{TOY_SETUP}{}", toy_train("1000", "1e-3", ", checkpoint_every = 400"));
    resumes_after(&long_training, ("train", "ddpm"), interrupt);
}

#[test]
fn a_requeued_training_job_resumes_from_its_checkpoint_and_ends_bit_identical() {
    // Preemption and `scontrol requeue`: Slurm sends SIGTERM and requeues the job itself.
    training_resumes_after(|id| {
        slurm("scontrol", &["requeue", id]);
    });
}

#[test]
fn the_time_limit_warning_checkpoints_and_requeues_the_job() {
    // What `--signal=B:USR1@120` sends before the time limit: the batch script passes it
    // on, the worker checkpoints, the script requeues its own job.
    training_resumes_after(|id| {
        slurm("scancel", &["--batch", "--signal=USR1", id]);
    });
}

#[test]
fn a_preempted_classifier_job_resumes_from_its_checkpoint_and_ends_bit_identical() {
    let mnist = repo().join("data/mnist");
    assert!(mnist.join("train-images-idx3-ubyte.gz").exists(), "{} is incomplete", mnist.display());
    let pipeline = format!(
        "dataset digits = mnist {{ path = \"{}\", split = \"train\", size = 8, limit = 512 }}\n\
         classifier judge {{ model = encoder {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [] }}, \
         data = digits, steps = 1500, batch = 16, checkpoint_every = 600 }}\n",
        mnist.display()
    );
    resumes_after(&pipeline, ("classifier", "judge"), |id| {
        slurm("scontrol", &["requeue", id]);
    });
}

/// A longer training run on the cluster continues the cached shorter one, as a local run
/// does: a snapshot submitted in the same run first, then the cached run after `steps` is
/// raised; the result equals a local run of the full length at once.
#[test]
fn raising_steps_on_the_cluster_continues_the_cached_run() {
    let readers = "sample early { from = ddpm, step = 10, sampler = ddim { steps = 5 }, count = 32, seed = 3 }\n";
    let pipeline = |steps: &str| format!("{TOY_SETUP}{}{readers}", toy_train(steps, "1e-3", ", checkpoint_every = 7"));
    let (local, cluster_dir) = local_and_cluster(&pipeline("20"), "");
    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("continuing the cached run of 10 steps"), "ddpm continues its snapshot's job:\n{out}{err}");

    std::fs::write(cluster_dir.path().join("p.diff"), pipeline("40")).unwrap();
    // Here the 40 steps at once: no snapshot to continue.
    let whole = format!("{TOY_SETUP}{}", toy_train("40", "1e-3", ", checkpoint_every = 7"));
    std::fs::write(local.path().join("p.diff"), whole).unwrap();
    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("continuing the cached run of 20 steps"), "{out}{err}");
    let (code, out, err) = difflow(local.path(), &["run", "p.diff"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("continuing"), "the local run trains from step 0:\n{err}");
    let (cluster_ddpm, local_ddpm) = (&lock_records(cluster_dir.path())["ddpm"], &lock_records(local.path())["ddpm"]);
    assert_eq!(cluster_ddpm, local_ddpm, "continued on the cluster vs trained at once here");
}

/// Cache folders whose paths hold `%` signs, which `sbatch --output` would expand, and a
/// backslash, which Slurm would drop (and which turns the expansion off).
#[test]
fn job_logs_land_in_cache_folders_with_percent_signs_and_backslashes() {
    for cache in ["c100%u%j", r"c100%u\x"] {
        let (p, env) = double(TOY, &[]);
        std::fs::write(p.path().join("difflow.toml"), format!("executor = \"slurm\"\ncache = '{cache}'\n")).unwrap();
        let out = run_double(&p, &env, &["run", "p.diff"]);
        assert_eq!(out.code(), 0, "{cache}: {}{}", out.stdout(), out.stderr());
        assert!(out.stdout().contains("ran 5 stages, 0 cached"), "{cache}: {}", out.stdout());
        // The worker's metric reached the manifest through the job log.
        assert!(
            out.stdout().contains("done    train ddpm") && out.stdout().contains(": loss 0.2500"),
            "{}",
            out.stdout()
        );
        let entries = std::fs::read_dir(p.path().join(cache)).unwrap().filter_map(Result::ok);
        assert_eq!(entries.filter(|e| e.path().join("manifest.toml").is_file()).count(), 5, "{cache}");
        let elsewhere: Vec<String> = std::fs::read_dir(p.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("c100") && n != cache)
            .collect();
        assert!(elsewhere.is_empty(), "Slurm wrote logs elsewhere: {elsewhere:?}");
    }
}

#[test]
fn a_report_is_written_by_difflow_itself_once_the_jobs_it_reads_are_cached() {
    let pipeline = format!("{TOY}report study {{ include = [gen, pic], title = \"Toy study\" }}\n");
    let (p, env) = double(&pipeline, &[]);
    let out = run_double(&p, &env, &["run", "p.diff"]);
    assert_eq!(out.code(), 0, "{}{}", out.stdout(), out.stderr());
    let stdout = out.stdout();
    assert_eq!(jobs_in(&stdout, "queued").len(), 5, "no job for the report:\n{stdout}");
    assert!(stdout.contains("done    report study"), "{stdout}");
    assert!(stdout.contains("ran 6 stages, 0 cached"), "{stdout}");
    assert!(!p.take_worker_log().contains(&"study".to_string()));
    assert_eq!(p.entries().len(), 6);
}

#[test]
fn ctrl_c_stops_following_and_leaves_the_jobs_running() {
    let (p, env) = double(TOY, &[("SLEEP", "60")]);
    let child = spawn_run(&p, &env, Stdio::piped);
    wait_for("five submitted jobs", Duration::from_secs(60), || slurm_records(&p) == 5);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: 5 jobs keep running on the cluster"), "{stderr}");
    assert!(stderr.contains("`difflow cancel p.diff` cancels them"), "{stderr}");
    let jobs = jobs_in(&String::from_utf8_lossy(&out.stdout), "queued");
    assert!(jobs.values().all(|id| !matches!(job_state(id).as_str(), "CANCELLED" | "FAILED")));
    let cancelled = run_double(&p, &env, &["cancel", "p.diff"]);
    assert_eq!(cancelled.stdout().lines().count(), 5, "{}", cancelled.stdout());
}

#[test]
fn a_data_parallel_stage_asks_for_its_tasks_starts_them_with_srun_and_matches_a_local_run() {
    let (local, cluster_dir) = local_and_cluster(&tiny_toy(10, "1e-3", "5", false), "");
    let (code, out, err) = difflow(local.path(), &["run", "p.diff", "--nproc", "2"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff", "--nproc", "2", "--detach"]);
    assert_eq!(code, 0, "{out}{err}");
    let jobs = jobs_in(&out, "queued");
    for (name, tasks) in [("pts", "1"), ("ddpm", "2"), ("gen", "2")] {
        assert_eq!(job_info(&jobs[name])["NumTasks"], tasks, "{name}");
    }
    let (code, out, err) = difflow(cluster_dir.path(), &["run", "p.diff", "--nproc", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(jobs_in(&out, "adopted"), jobs, "{out}");
    // Two ranks under srun compute what two local ranks do, bit for bit (one process's
    // weights differ from two's in the last bits, so this also shows that both ranks ran).
    assert_eq!(lock_records(cluster_dir.path()), lock_records(local.path()));
}

#[test]
fn with_push_on_the_jobs_upload_their_entries_to_the_remote_before_they_end() {
    // Two stages, submitted detached: no difflow follows the jobs, so what reaches the
    // remote was pushed by the jobs themselves.
    let two_stages = TOY.lines().take(6).collect::<Vec<_>>().join("\n") + "\n";
    let (p, env) = double(&two_stages, &[]);
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let settings = format!("executor = \"slurm\"\n[remote]\nurl = \"{url}\"\npush = true\n");
    std::fs::write(p.path().join("difflow.toml"), &settings).unwrap();
    let out = run_double(&p, &env, &["run", "p.diff", "--detach"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let jobs = jobs_in(&out.stdout(), "queued");
    assert_eq!(jobs.keys().map(String::as_str).collect::<Vec<_>>(), ["ddpm", "pts"], "{}", out.stdout());
    for id in jobs.values() {
        wait_for("the job to end", Duration::from_secs(120), || {
            matches!(job_state(id).as_str(), "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT")
        });
        assert_eq!(job_state(id), "COMPLETED");
    }
    assert_eq!(p.entries().len(), 2);
    for entry in p.entries() {
        let key = entry.file_name().unwrap().to_string_lossy().into_owned();
        let manifest = std::fs::read_to_string(remote.path().join(format!("ac/{key}.toml")))
            .unwrap_or_else(|e| panic!("the entry {key} is not on the remote: {e}"));
        assert_eq!(manifest, std::fs::read_to_string(entry.join("manifest.toml")).unwrap());
    }
    // A colleague's pull takes both and verifies them.
    let b = Project::new(&two_stages);
    std::fs::write(b.path().join("difflow.toml"), format!("[remote]\nurl = \"{url}\"\n")).unwrap();
    let pulled = b.difflow(&["pull", "p.diff"], &[]);
    assert_eq!(pulled.code(), 0, "{}", pulled.stderr());
    assert!(pulled.stdout().contains("pulled 2 entries"), "{}", pulled.stdout());
    // A run that follows its jobs finds each entry on the remote already: nothing to
    // upload, nothing to warn about.
    let (c, env) = double(&two_stages, &[]);
    let other = tempfile::tempdir().unwrap();
    let url = format!("file://{}", other.path().display());
    std::fs::write(c.path().join("difflow.toml"), settings.replace(&remote.path().display().to_string(), &url[7..]))
        .unwrap();
    let out = run_double(&c, &env, &["run", "p.diff"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(
        !out.stderr().contains("cannot push") && !out.stdout().contains("pushed"),
        "{}{}",
        out.stdout(),
        out.stderr()
    );
    assert_eq!(std::fs::read_dir(other.path().join("ac")).unwrap().count(), 2);
}

#[test]
fn a_script_stage_runs_as_a_job_and_its_numbers_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("difflow.toml"), "threads = 1\nexecutor = \"slurm\"\n").unwrap();
    let pipeline = "dataset pts = toy { shape = \"gaussians8\", count = 64 }\n\
                    script stats { run = \"stats.py\", inputs = { data = pts }, outputs = [\"metrics.json\"] }\n";
    std::fs::write(p.join("p.diff"), pipeline).unwrap();
    let script = "import json, os\nfrom safetensors.numpy import load_file\n\
                  job = json.load(open(os.environ['DIFFLOW_JOB']))\n\
                  pts = load_file(job['inputs']['data']['files']['data.safetensors'])['points']\n\
                  json.dump({'points': int(pts.shape[0])}, open(os.path.join(job['out_dir'], 'metrics.json'), 'w'))\n";
    std::fs::write(p.join("stats.py"), script).unwrap();
    let config = home.path().join("config");
    let env = [("SLURM_CONF", cluster().as_os_str()), ("XDG_CONFIG_HOME", config.as_os_str())];
    assert_eq!(difflow_real(p, &["trust"], &env).0, 0);
    let (code, out, err) = difflow_real(p, &["run", "p.diff"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(jobs_in(&out, "queued").contains_key("stats"), "{out}");
    assert!(out.contains("done    script stats"), "{out}");
    let (code, shown, err) = difflow_real(p, &["show", "p.diff", "stats"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("metric   points = 64"), "{shown}");
    assert!(!shown.contains("slurm.log"), "the job's log is not an output: {shown}");
}
