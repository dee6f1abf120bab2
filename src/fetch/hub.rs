//! diffusers models from a Hugging Face Hub repository (`pretrained … = diffusers { repo }`):
//! the three files difflow reads are fetched into the user cache, in the repository's own
//! layout (a pipeline with `unet/` and `scheduler/`, or a model with the scheduler config
//! beside it). The Hub pins no checksums for them; their content digests key the stage.
//! Repository and revision names are checked against the Hub's rules before they become
//! paths, and every file written is checked to be below the user cache's `hub/`.

use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use difflow_core::diffusers::{self, CONFIG_FILE, SCHEDULER_FILE, WEIGHTS_FILE};

use super::download::{fetch_file, FetchOptions};
use super::http::{self, CallError};
use super::sources::{hf_file_url, Source, HUB_CONFIG_CAP, HUB_WEIGHTS_CAP};

/// The longest part of a repository id (the Hub's limit).
const MAX_REPO_PART: usize = 96;
/// The longest revision accepted (git allows long ref names; commit ids have 40).
const MAX_REVISION: usize = 255;

/// Why `repo` is not a Hub repository id: `NAME` or `ORG/NAME`, each part of letters,
/// digits, `.`, `_` and `-`, neither starting nor ending with `.` or `-`, without `--` or
/// `..`, at most 96 characters (the rules of `huggingface_hub`'s `validate_repo_id`).
pub fn repo_error(repo: &str) -> Option<String> {
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 {
        return Some(format!("`{repo}` is not a Hub repository: it is NAME or ORG/NAME, with one `/` at most"));
    }
    for part in parts {
        let why = if part.is_empty() {
            "an empty part"
        } else if part.len() > MAX_REPO_PART {
            "a part longer than 96 characters"
        } else if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            "a character other than letters, digits, `.`, `_` and `-`"
        } else if part.contains("..") {
            "`..`"
        } else if part.contains("--") {
            "`--`"
        } else if part.starts_with(['.', '-']) || part.ends_with(['.', '-']) {
            "a part that starts or ends with `.` or `-`"
        } else {
            continue;
        };
        return Some(format!("`{repo}` is not a Hub repository id: it has {why}"));
    }
    None
}

/// Why `revision` is not a branch, tag or commit name: the rules of `git check-ref-format`
/// (no `..`, no `//`, no leading or trailing `/`, no component starting with `.` or ending
/// with `.lock`, no control character, space or any of `~^:?*[\`, no `@{`), at most 255
/// characters.
pub fn revision_error(revision: &str) -> Option<String> {
    let parts = || revision.split('/');
    let why = if revision.is_empty() {
        "is empty"
    } else if revision.len() > MAX_REVISION {
        "is longer than 255 characters"
    } else if revision.chars().any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c)) {
        "has a control character, a space or one of ~^:?*[\\"
    } else if revision.contains("..") {
        "has `..`"
    } else if revision.contains("@{") || revision == "@" {
        "has `@{` or is `@`"
    } else if revision.starts_with('/') {
        "starts with `/`"
    } else if revision.ends_with('/') || revision.contains("//") {
        "has an empty part (a trailing `/` or `//`)"
    } else if parts().any(|c| c.starts_with('.')) {
        "has a part that starts with `.`"
    } else if parts().any(|c| c.ends_with(".lock")) || revision.ends_with('.') {
        "ends with `.` or has a part ending with `.lock`"
    } else {
        return None;
    };
    Some(format!("`{revision}` is not a branch, tag or commit name: it {why}"))
}

/// Where a repository's files go in the user cache; an invalid name is an error.
pub fn repo_dir(user_cache: &Path, repo: &str, revision: &str) -> Result<PathBuf, String> {
    if let Some(e) = repo_error(repo).or_else(|| revision_error(revision)) {
        return Err(e);
    }
    let safe = |s: &str| s.replace(['/', '\\'], "--");
    let dir = user_cache.join("hub").join(safe(repo)).join(safe(revision));
    ensure_below(&user_cache.join("hub"), &dir)?;
    Ok(dir)
}

/// `path` must be `root` followed by plain components only: nothing it names can be
/// outside `root`, whatever the names were made of.
fn ensure_below(root: &Path, path: &Path) -> Result<(), String> {
    match path.strip_prefix(root) {
        Ok(rest) if rest.components().all(|c| matches!(c, Component::Normal(_))) => Ok(()),
        _ => Err(format!("refusing to write {}: it is not inside {}", path.display(), root.display())),
    }
}

/// Fetch the model of `repo` at `revision` into the user cache, unless it is there already.
pub fn fetch_repo(repo: &str, revision: &str, user_cache: &Path, opts: &FetchOptions) -> Result<(), String> {
    let dir = repo_dir(user_cache, repo, revision)?;
    if diffusers::locate(&dir).is_ok() {
        return Ok(());
    }
    let deadline = Instant::now() + opts.deadline;
    let agent = http::agent(opts.connect_timeout, opts.read_timeout, deadline);
    let exists = |file: &str| -> Result<bool, String> {
        let url = hf_file_url(repo, revision, file);
        match http::call(&agent, "HEAD", &url, &[], deadline) {
            Ok(_) => Ok(true),
            Err(CallError::Status(404, _)) => Ok(false),
            Err(CallError::Status(code, r)) => {
                Err(format!("cannot fetch {url}: the server answered HTTP {code} {}", r.status_text()))
            }
            Err(CallError::Failed(why)) => Err(format!(
                "cannot fetch {url}: {why}\n  help: put the model's files under {} (as `save_pretrained` writes them), \
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
    let configs = [format!("{unet}{CONFIG_FILE}"), scheduler];
    let weights = format!("{unet}{WEIGHTS_FILE}");
    for (file, cap) in configs.iter().map(|f| (f, HUB_CONFIG_CAP)).chain([(&weights, HUB_WEIGHTS_CAP)]) {
        let dest = dir.join(file);
        ensure_below(&user_cache.join("hub"), &dest)?;
        let flat = |s: &str| s.replace('/', "--");
        let source = Source {
            name: repo.to_string(),
            group: "hub".into(),
            url: hf_file_url(repo, revision, file),
            sha256: String::new(),
            file_name: format!("{}--{}--{}", flat(repo), flat(revision), flat(file)),
            size: None,
            cap,
        };
        fetch_file(&source, &dest, opts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_repository_ids_follow_the_hubs_rules() {
        for ok in ["google/ddpm-cifar10-32", "gpt2", "a/b", "Org_1/name.v2", "x".repeat(96).as_str()] {
            assert_eq!(repo_error(ok), None, "{ok}");
        }
        for bad in [
            "..",
            "../x",
            "a/..",
            "/abs",
            "a/",
            "",
            "a/b/c",
            "a--b",
            "a..b",
            ".a",
            "a-",
            "a b",
            "a\\b",
            "x".repeat(97).as_str(),
        ] {
            assert!(repo_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn revisions_are_branch_tag_or_commit_names() {
        for ok in ["main", "v1.0", "refs/pr/1", "feature/x-y", "0123456789abcdef0123456789abcdef01234567"] {
            assert_eq!(revision_error(ok), None, "{ok}");
        }
        for bad in ["..", "a/../b", "/main", "main/", "a//b", "a\\b", "a\nb", "a b", ".hidden", "x.lock", "a:b", ""] {
            assert!(revision_error(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn repository_folders_stay_below_the_hub_folder() {
        let cache = Path::new("/c/difflow");
        assert_eq!(
            repo_dir(cache, "org/name", "refs/pr/1").unwrap(),
            Path::new("/c/difflow/hub/org--name/refs--pr--1")
        );
        assert!(repo_dir(cache, "..", "..").unwrap_err().contains("not a Hub repository"));
        assert!(repo_dir(cache, "m", "..").unwrap_err().contains("not a branch, tag or commit"));
        assert!(ensure_below(&cache.join("hub"), &cache.join("hub/m/../../x")).is_err());
        assert!(ensure_below(&cache.join("hub"), &cache.join("x")).is_err());
        assert!(ensure_below(&cache.join("hub"), &cache.join("hub/m/main/unet/config.json")).is_ok());
    }
}
