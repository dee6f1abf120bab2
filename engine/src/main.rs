//! `difflow-worker JOB.json`: runs one stage instance and prints `difflow_core::job::Event`s as
//! JSON lines on stdout. Exit 0: outputs complete; exit 2: a failure the user can fix
//! (message on stderr); exit 3: stopped on request (SIGINT, SIGTERM, SIGUSR1) after a
//! checkpoint; anything else is a crash.
//!
//! `difflow-worker bench …`, `difflow-worker check …` and `difflow-worker check-nccl …` are
//! the speed benchmark and the device checks of the GPU kit (see docs/gpu_kit.md).

use std::io::Write;
use std::process::ExitCode;

use difflow_core::job::{Job, WORKER_INTERRUPTED, WORKER_STAGE_FAILED};
use difflow_engine::interrupt::Interrupted;
use difflow_engine::oom;

#[global_allocator]
static ALLOCATOR: oom::ExitOnOom = oom::ExitOnOom;

fn main() -> ExitCode {
    oom::install_panic_hook();
    let args: Vec<String> = std::env::args().collect();
    let tool = match args.get(1).map(String::as_str) {
        Some("bench") => Some(difflow_engine::bench::serve as fn(&[String]) -> anyhow::Result<()>),
        Some("check") => Some(difflow_engine::kit_check::run as fn(&[String]) -> anyhow::Result<()>),
        Some("check-nccl") => Some(difflow_engine::kit_nccl::run as fn(&[String]) -> anyhow::Result<()>),
        _ => None,
    };
    if let Some(tool) = tool {
        return match tool(&args[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.len() != 2 {
        eprintln!("usage: difflow-worker JOB.json\n(the worker is launched by `difflow run`; it runs one stage)");
        return ExitCode::from(WORKER_STAGE_FAILED as u8);
    }
    match load_job(&args[1]).and_then(|job| difflow_engine::stages::run(&job)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<Interrupted>().is_some() => {
            // Stderr may be a pipe to a difflow that is gone: a failed write must not panic.
            let _ = writeln!(std::io::stderr(), "interrupted: {err:#}");
            ExitCode::from(WORKER_INTERRUPTED as u8)
        }
        Err(err) => {
            match oom::torch_out_of_memory(&format!("{err:#}")) {
                Some(needs) => eprintln!("error: {}", oom::describe(needs)),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::from(WORKER_STAGE_FAILED as u8)
        }
    }
}

fn load_job(path: &str) -> anyhow::Result<Job> {
    use anyhow::Context;
    let text = difflow_core::files::read_text(std::path::Path::new(path), difflow_core::files::Purpose::Metadata)
        .with_context(|| format!("cannot read the job file {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("the job file {path} is not a valid difflow job"))
}
