//! Data-parallel training over c10d (Gloo, two CPU processes on the loopback): a tiny UNet
//! trained for 20 steps on the embedded MNIST with 2 ranks ends with the weights of a
//! single-process run of the same global batch, up to floating-point summation order.
//! (Adam turns that rounding noise into differences proportional to the learning rate on
//! parameters whose gradient is near zero, hence the modest `lr` here.)

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use difflow_core::job::{Input, Job, JobSettings};
use serde_json::{json, Value};
use tch::Tensor;

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");
/// The agreement the issue demands between 1 and 2 processes.
const RELATIVE_TOLERANCE: f64 = 1e-5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn write_job(work: &Path, name: &str, kind: &str, variant: &str, params: Value, inputs: &[(&str, Input)]) -> PathBuf {
    let job = Job {
        instance: name.into(),
        kind: kind.into(),
        variant: variant.into(),
        params: difflow_core::schema::with_defaults(kind, variant, &params),
        inputs: inputs.iter().map(|(n, i)| (n.to_string(), i.clone())).collect::<BTreeMap<_, _>>(),
        out_dir: work.join(name),
        device: "cpu".into(),
        settings: JobSettings::default(),
    };
    let file = work.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_string(&job).unwrap()).unwrap();
    file
}

fn spawn(job: &Path, rank: usize, world: usize, port: u16) -> Child {
    Command::new(WORKER)
        .arg(job)
        .env("OMP_NUM_THREADS", "1")
        .env("DIFFLOW_RANK", rank.to_string())
        .env("DIFFLOW_WORLD_SIZE", world.to_string())
        .env("DIFFLOW_STORE", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(job: &Path, world: usize) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let children: Vec<Child> = (0..world).map(|rank| spawn(job, rank, world, port)).collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {rank} of {world} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut named = Tensor::read_safetensors(path).unwrap();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// ‖a − b‖₂ / ‖b‖₂ over all the weights of two files, as one vector.
fn relative_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.iter().map(|(n, _)| n).collect::<Vec<_>>(), b.iter().map(|(n, _)| n).collect::<Vec<_>>());
    let flat = |w: &[(String, Tensor)]| {
        Tensor::cat(&w.iter().map(|(_, t)| t.to_kind(tch::Kind::Double).reshape([-1])).collect::<Vec<_>>(), 0)
    };
    let (a, b) = (flat(&a), flat(&b));
    (&a - &b).norm().double_value(&[]) / b.norm().double_value(&[])
}

#[test]
fn two_ranks_train_the_weights_one_process_trains() {
    let mnist = repo().join("data/mnist");
    assert!(mnist.join("train-images-idx3-ubyte.gz").exists(), "{} is missing: run scripts/setup.sh", mnist.display());
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let digits =
        write_job(work, "digits", "dataset", "mnist", json!({"path": mnist, "split": "train", "size": 8}), &[]);
    run(&digits, 1);
    let data = Input { kind: "dataset".into(), variant: "mnist".into(), params: json!({}), dir: work.join("digits") };

    let params = json!({
        "model": {"kind": "model", "variant": "unet", "channels": 16, "mults": [1, 2], "res_blocks": 1,
                  "attention": [], "dropout": 0.0, "classes": 10},
        "data": {"$stage": "digits"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 100},
        "uncond_p": 0.1, "steps": 20, "batch": 16, "lr": 2e-4, "warmup": 5, "grad_clip": 1.0, "ema": 0.9, "seed": 3
    });
    let one = write_job(work, "one", "train", "diffusion", params.clone(), &[("digits", data.clone())]);
    let two = write_job(work, "two", "train", "diffusion", params, &[("digits", data)]);
    run(&one, 1);
    run(&two, 2);

    for file in ["model.safetensors", "ema.safetensors"] {
        let diff = relative_difference(&work.join("two").join(file), &work.join("one").join(file));
        println!("{file}: relative difference (L2) between 2 ranks and 1 process = {diff:.3e}");
        assert!(diff <= RELATIVE_TOLERANCE, "{file} differs by {diff:e} (relative)");
    }
    let steps = |dir: &str| std::fs::read_to_string(work.join(dir).join("loss.csv")).unwrap().lines().count();
    assert_eq!(steps("two"), 21, "rank 0 wrote the loss of every step");
    assert_eq!(steps("one"), steps("two"));
}
