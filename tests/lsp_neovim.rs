//! A real editor as the client: headless Neovim (Debian's `neovim`, which
//! `scripts/setup_tests.sh` installs) starts `difflow lsp` with its built-in LSP client, opens a
//! pipeline with a typo, and `tests/neovim/lsp_client.lua` reports what Neovim's own
//! diagnostic list, completion and hover hold.

mod lsp_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lsp_support::train_and_misspelt_sampler;

/// One typo (`stpes`), after non-ASCII text on other lines.
fn pipeline() -> String {
    let head = "use \"std/unet.diff\"\ndataset digits = mnist { path = \"data/mnist\" }\n# ᾱ and σ before the typo, on other lines\n";
    format!("{head}{}", train_and_misspelt_sampler("simple"))
}

fn nvim() -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("nvim")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "nvim is not installed: `bash scripts/setup_tests.sh` installs Debian's neovim (apt-get install -y neovim)"
        )
    })
}

/// Run headless Neovim in `home` (its own config, data, state and cache there); fail
/// after 120 s.
fn run_headless(command: &mut Command, home: &Path) -> std::process::ExitStatus {
    let mut child = command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("nvim starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("headless nvim did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Lua block of the `## Neovim` section of docs/editors.md, as a user copies it.
fn documented_setup() -> String {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/editors.md")).unwrap();
    let section = &doc[doc.find("\n## Neovim\n").expect("docs/editors.md has a Neovim section")..];
    let start = section.find("```lua\n").expect("the Neovim section has a Lua block") + "```lua\n".len();
    let end = start + section[start..].find("```").expect("the Lua block ends");
    section[start..end].to_string()
}

#[test]
fn the_documented_neovim_setup_makes_pipelines_difflow_and_attaches_the_server() {
    let nvim = nvim();
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("config/nvim/init.lua");
    std::fs::create_dir_all(init.parent().unwrap()).unwrap();
    std::fs::write(&init, documented_setup()).unwrap();
    let file = dir.path().join("typo.diff");
    std::fs::write(&file, pipeline()).unwrap();
    let patch = dir.path().join("fix.diff");
    std::fs::write(&patch, "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n").unwrap();
    let out = dir.path().join("seen.json");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/neovim/editors_snippet.lua");
    // The snippet runs `difflow` from PATH, as the page says.
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_difflow")).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let status = run_headless(
        Command::new(nvim)
            .args(["--headless", "-i", "NONE", "-n", "-c"])
            .arg(format!("luafile {}", script.display()))
            .env("PATH", path)
            .env("PIPELINE", &file)
            .env("PATCH", &patch)
            .env("LSP_OUT", &out),
        dir.path(),
    );
    assert!(status.success(), "nvim exited with {status}");
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the script wrote its report")).unwrap();
    assert_eq!(seen["filetype"], "difflow", "{seen:#}");
    assert_eq!(seen["clients"], serde_json::json!(["difflow"]), "{seen:#}");
    assert_eq!(seen["diagnostics"], 1, "the server checked the pipeline: {seen:#}");
    assert_eq!(seen["patch_filetype"], "diff", "a patch stays a patch: {seen:#}");
    assert_eq!(seen["patch_clients"], 0, "{seen:#}");
}

#[test]
fn neovim_shows_the_diagnostic_completes_choices_and_hovers() {
    let nvim = nvim();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.diff");
    std::fs::write(&file, pipeline()).unwrap();
    let out = dir.path().join("seen.json");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/neovim/lsp_client.lua");
    let status = run_headless(
        Command::new(nvim)
            .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
            .arg(format!("luafile {}", script.display()))
            .env("DIFFLOW_BIN", env!("CARGO_BIN_EXE_difflow"))
            .env("PIPELINE", &file)
            .env("LSP_OUT", &out),
        dir.path(),
    );
    assert!(status.success(), "nvim exited with {status}");
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the script wrote its report")).unwrap();

    println!("what Neovim saw: {seen:#}");
    let diags = seen["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 1, "{seen:#}");
    // The typo on line 13 (0-based 12), where `difflow check` has it.
    let typo = &diags[0];
    assert_eq!((typo["lnum"].as_u64(), typo["col"].as_u64()), (Some(12), Some(43)), "{seen:#}");
    assert_eq!(typo["code"], "difflow::unknown_key");
    assert_eq!(typo["source"], "difflow");
    assert!(typo["message"].as_str().unwrap().starts_with("unknown key `stpes` for `ddim`"), "{typo}");
    let completion: Vec<&str> = seen["completion"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(completion, ["simple", "hybrid", "vlb"]);
    let hover = seen["hover"].as_str().unwrap();
    assert!(hover.contains("variants: linear, cosine, sigmoid"), "{hover}");
}
