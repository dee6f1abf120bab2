//! diffusers models from a Hugging Face Hub repository (`pretrained … = diffusers { repo }`):
//! the three files difflow reads are fetched into the user cache, in the repository's own
//! layout (a pipeline with `unet/` and `scheduler/`, or a model with the scheduler config
//! beside it). The Hub pins no checksums for them; their content digests key the stage.

use std::path::{Path, PathBuf};

use difflow_core::diffusers::{self, CONFIG_FILE, SCHEDULER_FILE, WEIGHTS_FILE};

use super::download::{fetch_file, FetchOptions};
use super::sources::{hf_file_url, Source};

/// Where a repository's files go in the user cache.
pub fn repo_dir(user_cache: &Path, repo: &str, revision: &str) -> PathBuf {
    let safe = |s: &str| s.replace(['/', '\\'], "--");
    user_cache.join("hub").join(safe(repo)).join(safe(revision))
}

/// Fetch the model of `repo` at `revision` into `dir`, unless it is there already.
pub fn fetch_repo(repo: &str, revision: &str, dir: &Path, opts: &FetchOptions) -> Result<(), String> {
    if diffusers::locate(dir).is_ok() {
        return Ok(());
    }
    let agent = ureq::AgentBuilder::new().timeout_connect(opts.connect_timeout).timeout_read(opts.read_timeout).build();
    let exists = |file: &str| -> Result<bool, String> {
        let url = hf_file_url(repo, revision, file);
        match agent.head(&url).call() {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(ureq::Error::Status(code, r)) => {
                Err(format!("cannot fetch {url}: the server answered HTTP {code} {}", r.status_text()))
            }
            Err(ureq::Error::Transport(t)) => Err(format!(
                "cannot fetch {url}: {t}\n  help: put the model's files under {} (as `save_pretrained` writes them), \
                 or set HF_ENDPOINT to a mirror",
                dir.display()
            )),
        }
    };
    let unet = if exists(CONFIG_FILE)? {
        ""
    } else if exists(&format!("unet/{CONFIG_FILE}"))? {
        "unet/"
    } else {
        return Err(format!(
            "`{repo}` (revision {revision}) has neither {CONFIG_FILE} nor unet/{CONFIG_FILE}: not a diffusers \
             UNet2DModel or pipeline repository"
        ));
    };
    let scheduler = if exists(&format!("scheduler/{SCHEDULER_FILE}"))? {
        format!("scheduler/{SCHEDULER_FILE}")
    } else if exists(SCHEDULER_FILE)? {
        SCHEDULER_FILE.to_string()
    } else {
        return Err(format!("`{repo}` (revision {revision}) has no scheduler config ({SCHEDULER_FILE})"));
    };
    for file in [format!("{unet}{CONFIG_FILE}"), format!("{unet}{WEIGHTS_FILE}"), scheduler] {
        let source = Source {
            name: repo.to_string(),
            group: "hub".into(),
            url: hf_file_url(repo, revision, &file),
            sha256: String::new(),
            file_name: format!("{}--{}--{}", repo.replace('/', "--"), revision, file.replace('/', "--")),
        };
        fetch_file(&source, &dir.join(&file), opts)?;
    }
    Ok(())
}
