//! The c10d shim: real Gloo collectives between ranks that rendezvous through a TCPStore
//! on the loopback (ranks as threads of this test process; the stages use processes).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use difflow_engine::dist::{share, ProcessGroup};
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
    assert!(err.contains("rank 0 of 2 cannot join the process group at 127.0.0.1"), "{err}");
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
