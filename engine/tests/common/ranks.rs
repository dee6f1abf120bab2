//! Data-parallel worker runs for tests: each rank a `difflow-worker` process, meeting over
//! Gloo on the loopback, and the weights they leave compared as one vector.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tch::{Kind, Tensor};

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts rank `rank` of `world` on `job`, the store at 127.0.0.1:`port`, with `env` added.
pub fn spawn_rank(job: &Path, rank: usize, world: usize, port: u16, env: &[(&str, &str)]) -> Child {
    Command::new(WORKER)
        .arg(job)
        .envs(env.iter().copied())
        .env("OMP_NUM_THREADS", "1")
        .env("DIFFLOW_RANK", rank.to_string())
        .env("DIFFLOW_WORLD_SIZE", world.to_string())
        .env("DIFFLOW_STORE", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `job` on `world` ranks; each must succeed.
pub fn run_ranks(job: &Path, world: usize) {
    let port = free_port();
    let children: Vec<Child> = (0..world).map(|rank| spawn_rank(job, rank, world, port, &[])).collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {rank} of {world} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The named tensors of a safetensors file, sorted by name.
pub fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut named = Tensor::read_safetensors(path).unwrap();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// ‖a − b‖₂ / ‖b‖₂ over all the weights of two files, as one vector.
pub fn relative_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.iter().map(|(n, _)| n).collect::<Vec<_>>(), b.iter().map(|(n, _)| n).collect::<Vec<_>>());
    let flat = |w: &[(String, Tensor)]| {
        Tensor::cat(&w.iter().map(|(_, t)| t.to_kind(Kind::Double).reshape([-1])).collect::<Vec<_>>(), 0)
    };
    let (a, b) = (flat(&a), flat(&b));
    (&a - &b).norm().double_value(&[]) / b.norm().double_value(&[])
}
