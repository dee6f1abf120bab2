//! The `difflow` command line (`difflow --help`). Exit codes: 0 success, 1 the pipeline (or the
//! command line) is wrong, 2 a run failed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use difflow::diagnostics::{render_plain, Diagnostic};
use difflow::exec::{self, Progress, RunOptions, Session};
use difflow::lang::pipeline::Pipeline;
use difflow::project::settings::Settings;
use difflow::syntax::{SourceFile, SourceMap};
use difflow::Failure;

mod cache_commands;
use cache_commands::{cache_gc, cache_ls, cache_ls_remote};

#[derive(Parser)]
#[command(name = "difflow", version, about = "A declarative pipeline language for diffusion-model experiments")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a pipeline and print every problem found; exit 1 on any.
    Check {
        file: PathBuf,
        /// Override a `let`: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// The stage order with each stage's state: cached, new, or stale and why.
    Plan {
        file: PathBuf,
        /// Only these stages (a family like `gen` or one instance like `gen[scale=0.5]`) and what they read.
        #[arg(long = "target", value_name = "STAGE")]
        target: Vec<String>,
        /// Override a `let`: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Run the stages that are not cached.
    Run {
        file: PathBuf,
        /// Run only these stages (a family or one instance) and what they read.
        #[arg(long = "target", value_name = "STAGE")]
        target: Vec<String>,
        /// Rerun these stages even if cached.
        #[arg(long = "force", value_name = "STAGE")]
        force: Vec<String>,
        /// Override a `let`: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// auto (CUDA when the worker finds it, else CPU), cpu or cuda:N.
        #[arg(long)]
        device: Option<String>,
        /// How many independent stages run at once (local executor).
        #[arg(long)]
        jobs: Option<usize>,
        /// Data-parallel processes for each train, classifier and sample stage (`batch` stays global).
        #[arg(long)]
        nproc: Option<usize>,
        /// Where stages run: local (worker processes here) or slurm (one sbatch job each).
        #[arg(long)]
        executor: Option<String>,
        /// Slurm: submit the jobs and return; `plan` shows them, `run` follows them again.
        #[arg(long)]
        detach: bool,
        /// Take every missing entry the `[remote]` cache has instead of computing it.
        #[arg(long)]
        pull: bool,
        /// Put the finished stages' outputs in DIR/<instance>/, replacing the previous run's.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Upload the pipeline's cached entries (or these stages' and their inputs') to the `[remote]` cache.
    Push {
        file: PathBuf,
        stages: Vec<String>,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Download the entries of the pipeline (or of these stages and their inputs) that the `[remote]` cache has.
    Pull {
        file: PathBuf,
        stages: Vec<String>,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Compare two difflow.lock files (or folders holding one): which stages match exactly,
    /// which within the tolerance, which not. Exit 1 when any shared stage differs.
    Compare {
        mine: PathBuf,
        theirs: PathBuf,
        /// Largest relative difference of a headline metric that still counts as the same.
        #[arg(long, default_value_t = 0.01)]
        tolerance: f64,
    },
    /// Compare the cached metrics of several pipelines: one table (a row per pipeline and
    /// instance) and one chart per metric, in DIR/report.md and DIR/report.html. Runs nothing.
    Report {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The folder to write the report into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Compare these stages (a family or one instance) instead of every metrics and nll stage.
        #[arg(long = "stage", value_name = "STAGE")]
        stage: Vec<String>,
    },
    /// Cancel the pipeline's Slurm jobs that are queued or running.
    Cancel {
        file: PathBuf,
        /// Override a `let`: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Commit a finished Slurm job's outputs to the cache (run by the job's batch script).
    #[command(name = "__commit", hide = true)]
    Commit { record: PathBuf, started: u64 },
    /// Run a script stage's job and check its outputs (run by a Slurm job's batch script).
    #[command(name = "__script", hide = true)]
    Script { job: PathBuf },
    /// Print a free TCP port of this node (a data-parallel job's batch script asks it for
    /// the ranks' store).
    #[command(name = "__free-port", hide = true)]
    FreePort,
    /// The stage graph in Graphviz DOT.
    Graph {
        file: PathBuf,
        /// Override a `let`: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Let the pipelines of a project run its own Python code (`python` models): DIR and
    /// everything below it (default: the project folder of the current folder).
    Trust {
        /// The project folder (the folder holding difflow.toml, or the pipeline's).
        dir: Option<PathBuf>,
    },
    /// A stage's outputs and metrics, a schedule's table, or a model's size.
    Show {
        file: PathBuf,
        name: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Override a `let`: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Write a finished train (or pretrained) stage as a model folder of another library.
    Export {
        file: PathBuf,
        stage: String,
        /// The format: diffusers (a DDPMPipeline folder with unet/ and scheduler/).
        #[arg(long)]
        format: String,
        /// The folder to create (it must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Override a `let`: NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Make a folder with one link per training instance to its live TensorBoard logs (and
    /// per sampling instance that logged its grid) and print it:
    /// `tensorboard --logdir $(difflow logdir FILE)`.
    Logdir {
        file: PathBuf,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Rewrite a file in the canonical layout.
    Fmt {
        file: PathBuf,
        /// Change nothing; exit 1 if the file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// The language reference (every kind, variant and key), or one kind's or variant's.
    Doc {
        /// A kind (`sample`) or a variant (`cfg`); without it, the whole reference.
        #[arg(value_name = "KIND|VARIANT")]
        name: Option<String>,
    },
    /// A language server over stdio for editors (diagnostics, hover, completion, …).
    Lsp,
    /// Inspect or clean the stage cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// List the entries of the cache of these pipelines (or of the current folder).
    Ls {
        files: Vec<PathBuf>,
        /// The `[remote]` cache's entries instead (`gc` never touches a remote).
        #[arg(long)]
        remote: bool,
    },
    /// Remove every entry that none of the given pipelines uses.
    Gc {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

type Outcome = Result<(), Failure>;

fn wrong(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

/// A closed pipe (`difflow cache ls | head`) ends `difflow` quietly, as it ends any Unix
/// filter: Rust ignores SIGPIPE, so without this every `println!` after the reader left
/// would panic. The language server keeps SIGPIPE ignored: it answers a closed stdout
/// with its own error handling.
fn end_quietly_on_closed_pipe() {
    // SAFETY: called once at the start of main, before any thread exists; SIG_DFL is
    // a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    if !matches!(cli.command, Command::Lsp) {
        end_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Check { file, set } => load(&file, &set).map(|(_, p)| check_ok(&file, &p)),
        Command::Plan { file, target, set } => plan(&file, &set, &target),
        Command::Run { file, target, force, set, device, jobs, nproc, executor, detach, pull, out } => {
            run(&file, &set, RunOptions { targets: target, force, device, jobs, nproc, executor, detach, pull, out })
        }
        Command::Push { file, stages, set } => load(&file, &set)
            .and_then(|(_, p)| session(&file, &p))
            .and_then(|s| difflow::remote::run::push(&s, &stages)),
        Command::Pull { file, stages, set } => load(&file, &set)
            .and_then(|(_, p)| session(&file, &p))
            .and_then(|s| difflow::remote::run::pull(&s, &stages)),
        Command::Cancel { file, set } => cancel(&file, &set),
        Command::Report { files, out, stage } => report(&files, &out, &stage),
        Command::Compare { mine, theirs, tolerance } => compare(&mine, &theirs, tolerance),
        Command::Commit { record, started } => exec::slurm::commit_job(&record, started).map_err(Failure::Failed),
        Command::Script { job } => exec::script::run_job_file(&job).map_err(Failure::Failed),
        Command::FreePort => std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .map(|a| println!("{}", a.port()))
            .map_err(|e| Failure::Failed(format!("cannot find a free port: {e}"))),
        Command::Graph { file, set } => graph(&file, &set),
        Command::Export { file, stage, format, out, set } => {
            load(&file, &set).and_then(|(_, p)| session(&file, &p)).and_then(|s| export(&s, &stage, &format, &out))
        }
        Command::Show { file, name, json, set } => {
            load(&file, &set).and_then(|(_, p)| session(&file, &p)).and_then(|s| show(&s, &name, json))
        }
        Command::Logdir { file, set } => load(&file, &set)
            .and_then(|(_, p)| session(&file, &p))
            .and_then(|s| exec::logdir::link_logdir(&s))
            .map(|dir| println!("{}", dir.display())),
        Command::Fmt { file, check } => fmt(&file, check),
        Command::Trust { dir } => trust(dir.as_deref()),
        Command::Doc { name } => doc(name.as_deref()),
        Command::Lsp => return ExitCode::from(difflow::lsp::serve_stdio(exec::show::parameter_count)),
        Command::Cache { command: CacheCommand::Ls { files, remote: true } } => cache_ls_remote(&files),
        Command::Cache { command: CacheCommand::Ls { files, remote: false } } => cache_ls(&files),
        Command::Cache { command: CacheCommand::Gc { files } } => cache_gc(&files),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message() {
                eprintln!("{message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Print diagnostics: miette's graphical report on a terminal, plain text otherwise.
fn print_diagnostics(diags: &[Diagnostic], sources: &SourceMap) {
    if std::io::stderr().is_terminal() {
        for d in diags {
            eprintln!("{:?}", d.to_report(sources));
        }
    } else {
        eprint!("{}", render_plain(diags, sources));
    }
}

/// Load and check a pipeline; diagnostics are printed and mean exit 1.
fn load(file: &Path, set: &[String]) -> Result<(SourceMap, Pipeline), Failure> {
    if !file.is_file() {
        return Err(wrong(format!("cannot read {}: no such file", file.display())));
    }
    let loaded = difflow::lang::load(file, set);
    if !loaded.warnings.is_empty() {
        print_diagnostics(&loaded.warnings, &loaded.sources);
        let n = loaded.warnings.len();
        eprintln!("{}: {n} warning{} (the pipeline can run)", file.display(), if n == 1 { "" } else { "s" });
    }
    if !loaded.diagnostics.is_empty() {
        print_diagnostics(&loaded.diagnostics, &loaded.sources);
        let n = loaded.diagnostics.len();
        eprintln!("{}: {n} problem{} found", file.display(), if n == 1 { "" } else { "s" });
        return Err(Failure::Reported);
    }
    match loaded.pipeline {
        Some(p) => Ok((loaded.sources, p)),
        None => Err(wrong(format!("{} could not be checked", file.display()))),
    }
}

/// The pipeline is right (exit 0); its data may still have to be supplied before a run,
/// and the line that says ok says so too.
fn check_ok(file: &Path, p: &Pipeline) {
    let missing = difflow::exec::missing_datasets(p.instances.iter());
    let data = match missing.len() {
        0 => String::new(),
        1 => ", but a dataset is missing (below)".to_string(),
        n => format!(", but {n} datasets are missing (below)"),
    };
    println!("{}: ok ({}){data}", file.display(), stage_count(file, p));
    for missing in missing {
        eprintln!("warning: {missing}; `difflow run` stops before any stage until it exists");
    }
}

/// The stages `plan` would list: the declared instances and the shared feature
/// statistics that metrics stages add (`7 stages, 2 of them shared feature statistics`).
fn stage_count(file: &Path, p: &Pipeline) -> String {
    // Only metrics stages add statistics: no copy of a large pipeline to count none.
    let (total, stats) = if p.instances.iter().any(|i| i.kind == "metrics") {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // A broken difflow.toml is reported by the commands that run stages.
        let inception = Settings::load(dir).ok().and_then(|s| s.inception_weights);
        let all = difflow::graph::expand_implicit(p, inception.as_deref());
        (all.instances.len(), all.instances.iter().filter(|i| difflow::graph::is_hidden(i)).count())
    } else {
        (p.instances.len(), 0)
    };
    let stages = if total == 1 { "1 stage".to_string() } else { format!("{total} stages") };
    match stats {
        0 => stages,
        n => format!("{stages}, {n} of them shared feature statistics"),
    }
}

fn session(file: &Path, p: &Pipeline) -> Result<Session, Failure> {
    Session::new(file, p)
}

fn plan(file: &Path, set: &[String], targets: &[String]) -> Outcome {
    let (_, p) = load(file, set)?;
    let s = session(file, &p)?;
    let selected = s.selection(targets)?;
    let rows: Vec<_> = exec::plan(&s).into_iter().filter(|(i, _)| selected.contains(i)).collect();
    print!("{}", exec::format_plan(&s, &rows));
    Ok(())
}

fn run(file: &Path, set: &[String], opts: RunOptions) -> Outcome {
    let (_, p) = load(file, set)?;
    difflow::project::trust::require(&p)?;
    let mut s = session(file, &p)?;
    // Fetch what the selected stages read and the user cache lacks; a failed fetch fails
    // as a stage does (exit 2): the pipeline is right, the network is not.
    let selected = s.selection(&opts.targets)?;
    let missing = difflow::fetch::missing(&s.pipeline, &selected, &s.settings).map_err(wrong)?;
    let repos = difflow::fetch::fetch_repos(&s.pipeline, &selected, &s.settings).map_err(Failure::Failed)?;
    if !missing.is_empty() || repos {
        difflow::fetch::fetch_all(&missing, &s.settings).map_err(Failure::Failed)?;
        // The fetched files' digests are now part of the keys.
        s = session(file, &p)?;
    }
    exec::run(&s, &opts, &Progress::new()).map(|_| ())
}

/// `difflow trust [DIR]`: DIR, or the project folder of the current folder.
fn trust(dir: Option<&Path>) -> Outcome {
    use difflow::project::trust;
    let folder = match dir {
        Some(d) if d.is_file() => {
            trust::project_folder(d.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        }
        Some(d) => d.to_path_buf(),
        None => trust::project_folder(Path::new(".")),
    };
    let trusted = trust::trust(&folder).map_err(Failure::Failed)?;
    println!("trusted {}: its pipelines may run the Python files in it and below", trusted.display());
    Ok(())
}

fn compare(mine: &Path, theirs: &Path, tolerance: f64) -> Outcome {
    use exec::compare::{compare, read_lock};
    if tolerance.is_nan() || tolerance < 0.0 {
        return Err(wrong(format!("--tolerance must be a number ≥ 0, not {tolerance}")));
    }
    let (text, same) = compare(&read_lock(mine)?, &read_lock(theirs)?, tolerance);
    print!("{text}");
    if same {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

/// `difflow report A.diff B.diff --out DIR`.
fn report(files: &[PathBuf], out: &Path, stages: &[String]) -> Outcome {
    let mut rows = Vec::new();
    for (file, label) in files.iter().zip(exec::cached_metrics::labels(files)) {
        let (_, p) = load(file, &[])?;
        rows.extend(exec::cached_metrics::cached_rows(&session(file, &p)?, &label, stages).map_err(wrong)?);
    }
    let page = exec::cached_metrics::write_report(out, &rows).map_err(Failure::Failed)?;
    println!("open:\n  {}", page.display());
    Ok(())
}

fn cancel(file: &Path, set: &[String]) -> Outcome {
    let (_, p) = load(file, set)?;
    let s = session(file, &p)?;
    let cancelled = exec::slurm::cancel(&s)?;
    if cancelled.is_empty() {
        println!("no job of {} is queued or running", file.display());
    }
    for (i, id) in &cancelled {
        println!("cancelled job {id} ({} {})", s.instance(*i).kind, s.instance(*i).name);
    }
    Ok(())
}

fn show(s: &Session, name: &str, json: bool) -> Outcome {
    print!("{}", exec::show::show(s, name, json)?);
    Ok(())
}

fn export(s: &Session, stage: &str, format: &str, out: &Path) -> Outcome {
    exec::export::export(s, stage, format, out)?;
    println!("exported `{stage}` to {}", out.display());
    Ok(())
}

fn graph(file: &Path, set: &[String]) -> Outcome {
    let (_, p) = load(file, set)?;
    let expanded = difflow::graph::expand_implicit(&p, None);
    let g = difflow::graph::StageGraph::new(&expanded).map_err(|e| wrong(e.to_string()))?;
    print!("{}", g.to_dot(&expanded));
    Ok(())
}

fn fmt(file: &Path, check: bool) -> Outcome {
    let text = difflow::lang::use_policy::read_source(file)
        .map_err(|e| wrong(format!("cannot read {}: {e}", file.display())))?;
    let mut sources = SourceMap::default();
    let id = sources.add(SourceFile {
        name: file.display().to_string(),
        path: Some(file.to_path_buf()),
        text: text.clone(),
    });
    let formatted = match difflow::fmt::format_source(id, &text) {
        Ok(f) => f,
        Err(diags) => {
            print_diagnostics(&diags, &sources);
            return Err(Failure::Reported);
        }
    };
    if formatted == text {
        return Ok(());
    }
    if check {
        return Err(wrong(format!("{} is not formatted: run `difflow fmt {}`", file.display(), file.display())));
    }
    std::fs::write(file, formatted).map_err(|e| wrong(format!("cannot write {}: {e}", file.display())))?;
    println!("formatted {}", file.display());
    Ok(())
}

fn doc(name: Option<&str>) -> Outcome {
    let text = difflow::doc::render(name).map_err(wrong)?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}
