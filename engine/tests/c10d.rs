//! The c10d shim: real Gloo collectives between ranks that rendezvous through a TCPStore
//! on the loopback (ranks as threads of this test process; the stages use processes).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use difflow_engine::dist::{nccl_built, share, Backend, ProcessGroup};
use tch::{Kind, Tensor};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn in_group<T: Send + 'static>(world: usize, body: fn(ProcessGroup) -> T) -> Vec<T> {
    let port = free_port();
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            std::thread::spawn(move || {
                let group = ProcessGroup::new("127.0.0.1", port, rank, world, Duration::from_secs(20)).unwrap();
                body(group)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn all_reduce_sums_across_ranks_and_broadcast_copies_the_root() {
    let results = in_group(2, |group| {
        let r = group.rank() as f64;
        let mut flat = Tensor::from_slice(&[1.0f32 + r as f32, 10.0 * (r as f32 + 1.0), -3.0]);
        let mut second = Tensor::full([2, 2], r + 0.5, (Kind::Float, tch::Device::Cpu));
        group.all_reduce_sum(&mut [&mut flat, &mut second]).unwrap();
        let mut token = Tensor::from_slice(&[group.rank() as i64 * 7 + 3]);
        group.broadcast(&mut token, 1).unwrap();
        group.barrier().unwrap();
        (
            Vec::<f32>::try_from(&flat).unwrap(),
            Vec::<f32>::try_from(&second.flatten(0, -1)).unwrap(),
            i64::try_from(&token).unwrap(),
        )
    });
    for (flat, second, token) in results {
        assert_eq!(flat, vec![3.0, 30.0, -6.0]);
        assert_eq!(second, vec![2.0; 4]);
        assert_eq!(token, 10);
    }
}

#[test]
fn a_missing_peer_times_out_with_a_clear_error() {
    let port = free_port();
    let started = Instant::now();
    let err = match ProcessGroup::new("127.0.0.1", port, 0, 2, Duration::from_secs(2)) {
        Ok(_) => panic!("a group of 2 formed with only one rank"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("rank 0 of 2 cannot join the Gloo process group at 127.0.0.1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "no timeout: {err}");
}

#[test]
fn shares_cover_the_count_once_in_order() {
    for (count, world) in [(64, 2), (7, 3), (2, 4), (0, 2)] {
        let mut next = 0;
        for rank in 0..world {
            let (start, end) = share(count, rank, world);
            assert_eq!(start, next);
            next = end;
        }
        assert_eq!(next, count);
    }
}

/// The NCCL path is built into the normal build (the torch wheel is a CUDA build). Without
/// a GPU, asking for an NCCL group fails with a message; with GPUs, each rank (a thread)
/// all-reduces on its own device.
#[test]
fn nccl_groups_are_built_and_need_a_gpu() {
    assert!(nccl_built(), "the worker was built without the NCCL shim");
    let gpus = tch::Cuda::device_count() as usize;
    if gpus == 0 {
        let err = match ProcessGroup::with_backend(
            "127.0.0.1",
            free_port(),
            0,
            1,
            Duration::from_secs(5),
            Backend::Nccl(0),
        ) {
            Ok(_) => panic!("an NCCL group formed without a GPU"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.starts_with("rank 0 of 1 cannot join the NCCL (cuda:0) process group at 127.0.0.1"), "{err}");
        assert!(err.to_lowercase().contains("cuda"), "{err}");
        return;
    }
    let world = gpus.min(2);
    let port = free_port();
    let sums: Vec<Vec<f32>> = (0..world)
        .map(|rank| {
            std::thread::spawn(move || {
                let timeout = Duration::from_secs(30);
                let group =
                    ProcessGroup::with_backend("127.0.0.1", port, rank, world, timeout, Backend::Nccl(rank)).unwrap();
                let mut t = Tensor::from_slice(&[1.0f32, rank as f32]).to_device(tch::Device::Cuda(rank));
                group.all_reduce_sum(&mut [&mut t]).unwrap();
                group.barrier().unwrap();
                Vec::<f32>::try_from(&t.to_device(tch::Device::Cpu)).unwrap()
            })
        })
        .map(|h| h.join().unwrap())
        .collect();
    let expected = vec![world as f32, (0..world).sum::<usize>() as f32];
    assert!(sums.iter().all(|s| *s == expected), "{sums:?}");
}
