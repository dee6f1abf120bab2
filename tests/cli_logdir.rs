//! `difflow logdir FILE` with the real worker on toy data: one link per training instance,
//! named by instance, to its staging folder's logs before the run and to its entry's logs
//! after; the logs are in the manifest but not among the digests that `difflow.lock` records.

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::{difflow_real, toy_train, TOY_SETUP};
use difflow::cache::LockFile;

fn logdir(dir: &Path) -> PathBuf {
    let (code, out, err) = difflow_real(dir, &["logdir", "p.diff"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    PathBuf::from(out.trim())
}

fn links(folder: &Path) -> Vec<(String, PathBuf)> {
    let mut links: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read_link(e.path()).unwrap())
        })
        .collect();
    links.sort();
    links
}

#[test]
fn logdir_links_each_training_instance_to_its_live_logs() {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    let train = toy_train("12", "1e-3", "");
    let swept = toy_train("12", "sweep(1e-3, 2e-3)", "").replace("train ddpm", "train swept");
    let text =
        format!("{TOY_SETUP}{train}{swept}sample gen {{ from = ddpm, sampler = ddim {{ steps = 3 }}, count = 8 }}\n");
    std::fs::write(dir.join("p.diff"), text).unwrap();

    let folder = logdir(dir);
    assert!(folder.ends_with(".difflow/logdir/p"), "{}", folder.display());
    let names: Vec<String> = links(&folder).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["ddpm", "swept[lr=1e-3]", "swept[lr=2e-3]"]);
    for (_, target) in links(&folder) {
        let staging = target.parent().unwrap();
        assert!(staging.to_string_lossy().ends_with(".staging"), "{}", target.display());
        assert!(target.ends_with("logs"));
    }

    let (code, out, err) = difflow_real(dir, &["run", "p.diff", "--device", "cpu"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lock = LockFile::read(&dir.join("difflow.lock"));
    let folder_again = logdir(dir);
    assert_eq!(folder_again, folder);
    let after = links(&folder);
    assert_eq!(after.len(), 3, "{after:?}");
    for (name, target) in after {
        let key = &lock.stages[&name].key;
        assert!(target.ends_with(format!("{key}/logs")), "{name} → {}", target.display());
        let events: Vec<_> = std::fs::read_dir(folder.join(&name)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].to_string_lossy().starts_with("events.out.tfevents."));
        let manifest = std::fs::read_to_string(target.parent().unwrap().join("manifest.toml")).unwrap();
        assert!(manifest.contains("[outputs.\"logs/events.out.tfevents."), "{manifest}");
        let recorded = &lock.stages[&name].outputs;
        assert!(recorded.contains_key("model.safetensors") && !recorded.keys().any(|k| k.starts_with("logs/")));
    }

    // A longer `ddpm` continues the cached run: its logs hold that run's event file too.
    let text = std::fs::read_to_string(dir.join("p.diff")).unwrap().replacen("steps = 12", "steps = 15", 1);
    std::fs::write(dir.join("p.diff"), text).unwrap();
    let (code, out, err) = difflow_real(dir, &["run", "p.diff", "--device", "cpu", "--target", "ddpm"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("continuing the cached run of 12 steps") || out.contains("continuing"), "{out}\n{err}");
    logdir(dir);
    let events = std::fs::read_dir(folder.join("ddpm")).unwrap().count();
    assert_eq!(events, 2, "the continued run's event file and its own");
}
