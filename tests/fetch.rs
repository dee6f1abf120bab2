//! Fetching through a real HTTP server on 127.0.0.1 (a thread in the test, speaking
//! plain HTTP/1.1): a clean fetch, a resume after the server drops the connection
//! halfway, a checksum mismatch, a 404, a server that accepts and never answers, a
//! refused connection, and `difflow run` fetching a dataset and the Inception weights
//! into the user cache with the same keys as the same files given by `path`. No test
//! reaches beyond the loopback interface.

mod cli_support;
mod fetch_support;
mod idx_support;

use std::net::TcpListener;
use std::time::Duration;

use cli_support::Project;
use difflow::fetch::fetch_file;
use fetch_support::{part_files, quiet_options, serve, sha256_hex, source, Route};
use idx_support::{gzip, idx_images_gz, idx_labels_gz};

/// MNIST-like images whose pixels depend on `seed`.
fn mnist_images_gz(n: u32, seed: u8) -> Vec<u8> {
    idx_images_gz(n, (0..n as usize * 784).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)))
}

/// A CIFAR-10 binary-format archive (`cifar-10-batches-bin/test_batch.bin`, records of a
/// label byte and 3072 pixels) as a `.tar.gz`.
fn cifar_tar_gz() -> Vec<u8> {
    let record: Vec<u8> = std::iter::once(3u8).chain((0..3072).map(|i| (i % 251) as u8)).collect();
    let batch: Vec<u8> = record.repeat(4);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(batch.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "cifar-10-batches-bin/test_batch.bin", &batch[..]).unwrap();
    gzip(&tar.into_inner().unwrap())
}

#[test]
fn a_clean_fetch_verifies_and_moves_the_file_into_place() {
    let body = cifar_tar_gz();
    let server = serve(vec![("/c.tgz", Route::File(body.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data/cifar-10-python.tar.gz");
    let s = source("cifar10", format!("{}/c.tgz", server.base), &body);
    let got = fetch_file(&s, &dest, &quiet_options(dir.path())).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!((got.transferred, got.resumed_from), (body.len() as u64, 0));
    assert!(part_files(dir.path()).is_empty());
    // A file in place is used as it is: no second request.
    fetch_file(&s, &dest, &quiet_options(dir.path())).unwrap();
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

#[test]
fn a_transfer_dropped_halfway_resumes_with_a_range_request() {
    let body = mnist_images_gz(50, 7);
    let server = serve(vec![("/i.gz", Route::DropHalfOnce(body.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mnist/train-images-idx3-ubyte.gz");
    let s = source("mnist_train_images", format!("{}/i.gz", server.base), &body);
    fetch_file(&s, &dest, &quiet_options(dir.path())).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].1, None);
    assert_eq!(requests[1].1, Some(format!("bytes={}-", body.len() / 2)));
}

#[test]
fn a_partial_file_from_an_earlier_run_is_resumed() {
    let body = mnist_images_gz(20, 3);
    assert!(body.len() > 200);
    let server = serve(vec![("/l.gz", Route::File(body.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let s = source("mnist_train_labels", format!("{}/l.gz", server.base), &body);
    let opts = quiet_options(dir.path());
    std::fs::create_dir_all(&opts.partial_dir).unwrap();
    let part = opts.partial_dir.join(format!("{}-{}.part", &s.sha256[..16], s.file_name));
    std::fs::write(&part, &body[..100]).unwrap();
    let got = fetch_file(&s, &dir.path().join("l.gz"), &opts).unwrap();
    assert_eq!(std::fs::read(dir.path().join("l.gz")).unwrap(), body);
    assert_eq!((got.resumed_from, got.transferred), (100, body.len() as u64 - 100));
    assert_eq!(server.requests.lock().unwrap()[0].1.as_deref(), Some("bytes=100-"));
}

#[test]
fn a_checksum_mismatch_deletes_the_download_and_names_url_and_digests() {
    let body = idx_labels_gz(20);
    let server = serve(vec![("/l.gz", Route::File(body.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = source("mnist_test_labels", format!("{}/l.gz", server.base), &body);
    let served = s.sha256.clone();
    s.sha256 = "0".repeat(64);
    let dest = dir.path().join("l.gz");
    let err = fetch_file(&s, &dest, &quiet_options(dir.path())).unwrap_err();
    assert!(err.contains(&s.url) && err.contains(&served) && err.contains(&s.sha256), "{err}");
    assert!(err.contains("[sources.mnist_test_labels]"), "{err}");
    assert!(!dest.exists());
    assert!(part_files(dir.path()).is_empty());
}

#[test]
fn a_404_names_the_url_the_checksum_and_where_a_manual_copy_goes() {
    let server = serve(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let s = source("cifar10", format!("{}/missing.tgz", server.base), b"x");
    let dest = dir.path().join("cifar-10-python.tar.gz");
    let err = fetch_file(&s, &dest, &quiet_options(dir.path())).unwrap_err();
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(err.contains(&s.url) && err.contains(&s.sha256) && err.contains(&dest.display().to_string()), "{err}");
    assert!(!dest.exists());
}

#[test]
fn a_server_that_never_answers_times_out_instead_of_hanging() {
    let server = serve(vec![("/slow", Route::Hang)]);
    let dir = tempfile::tempdir().unwrap();
    let s = source("pt_inception", format!("{}/slow", server.base), b"x");
    let mut opts = quiet_options(dir.path());
    opts.read_timeout = Duration::from_millis(500);
    let err = fetch_file(&s, &dir.path().join("w.pth"), &opts).unwrap_err();
    assert!(err.contains("timed out") || err.contains("Timed out") || err.contains("timeout"), "{err}");
    assert!(err.contains(&s.url), "{err}");
}

#[test]
fn offline_the_message_names_url_checksum_and_the_path_for_a_manual_copy() {
    // A port that was just free: nothing listens there, the connection is refused.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let s = source("mnist_test_images", format!("http://127.0.0.1:{port}/t10k-images-idx3-ubyte.gz"), b"x");
    let dest = dir.path().join("t10k-images-idx3-ubyte.gz");
    let err = fetch_file(&s, &dest, &quiet_options(dir.path())).unwrap_err();
    assert!(err.starts_with(&format!("cannot fetch {}", s.url)), "{err}");
    assert!(err.contains(&s.sha256) && err.contains(&dest.display().to_string()), "{err}");
    assert!(err.contains("[sources.mnist_test_images]"), "{err}");
}

/// The four MNIST files, served; their `[sources.*]` lines for difflow.toml.
fn mnist_sources(routes: &mut Vec<(&'static str, Route)>) -> (String, Vec<(&'static str, Vec<u8>)>) {
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        ("train-images-idx3-ubyte.gz", mnist_images_gz(30, 1)),
        ("train-labels-idx1-ubyte.gz", idx_labels_gz(30)),
        ("t10k-images-idx3-ubyte.gz", mnist_images_gz(20, 2)),
        ("t10k-labels-idx1-ubyte.gz", idx_labels_gz(20)),
    ];
    let names = ["mnist_train_images", "mnist_train_labels", "mnist_test_images", "mnist_test_labels"];
    let mut toml = String::new();
    for ((file, body), name) in files.iter().zip(names) {
        routes.push((Box::leak(format!("/{file}").into_boxed_str()), Route::File(body.clone())));
        toml.push_str(&format!("[sources.{name}]\nurl = \"BASE/{file}\"\nsha256 = \"{}\"\n", sha256_hex(body)));
    }
    (toml, files)
}

#[test]
fn run_fetches_a_dataset_and_the_inception_weights_and_keys_them_like_local_files() {
    let mut routes = Vec::new();
    let (mut toml, files) = mnist_sources(&mut routes);
    let weights = b"a stand-in for the weights: the worker double does not read them".to_vec();
    routes.push(("/pt_inception.pth", Route::File(weights.clone())));
    toml.push_str(&format!(
        "[sources.pt_inception]\nurl = \"BASE/pt_inception.pth\"\nsha256 = \"{}\"\n",
        sha256_hex(&weights)
    ));
    let server = serve(routes);
    let fetched = "dataset digits = mnist { split = \"test\" }\n\
                   metrics scores { samples = digits, reference = digits, measure = [\"fid\"] }\n";
    let p = Project::new(fetched);
    let user_cache = p.path().join("user-cache");
    std::fs::write(
        p.path().join("difflow.toml"),
        format!("user_cache = \"user-cache\"\n{}", toml.replace("BASE", &server.base)),
    )
    .unwrap();
    // Only what the selected stages read: the dataset, not the weights.
    let out = p.run(&["--target", "digits"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert_eq!(server.requests.lock().unwrap().len(), 4);
    let out = p.run(&[]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    for (file, body) in &files {
        assert_eq!(&std::fs::read(user_cache.join("datasets/mnist").join(file)).unwrap(), body, "{file}");
    }
    assert_eq!(std::fs::read(user_cache.join("weights/pt_inception-2015-12-05-6726825d.pth")).unwrap(), weights);
    assert_eq!(server.requests.lock().unwrap().len(), 5);
    // plan locates the fetched files without fetching: everything is cached.
    assert!(cli_support::states(&p.plan()).iter().all(|(state, _)| state == "cached"), "{}", p.plan());

    // The same files given by `path` (and the weights by `inception_weights`): same keys.
    let local = p.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    for (file, body) in &files {
        std::fs::write(local.join(file), body).unwrap();
    }
    std::fs::write(p.path().join("w.pth"), &weights).unwrap();
    let by_path = "dataset digits = mnist { split = \"test\", path = \"local\" }\n\
                   metrics scores { samples = digits, reference = digits, measure = [\"fid\"], inception_weights = \"w.pth\" }\n";
    let keys = |text: &str| {
        std::fs::write(p.path().join("k.diff"), text).unwrap();
        let loaded = difflow::lang::load(&p.path().join("k.diff"), &[]);
        difflow::cache::key::stage_keys(&loaded.pipeline.unwrap()).unwrap()
    };
    let (a, b) = (keys(fetched), keys(by_path));
    // The statistics carry the weights' content; the metrics stage's own key differs only
    // because `inception_weights` is written in it (as with any explicit parameter).
    for name in ["digits", "stats(digits, inception)"] {
        assert_eq!(a[name], b[name], "{name}");
    }
    // Nothing more was fetched.
    assert_eq!(server.requests.lock().unwrap().len(), 5);
}

#[test]
fn run_without_network_fails_with_the_offline_message_and_runs_nothing() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = Project::new("dataset pics = cifar10 { split = \"test\" }\n");
    std::fs::write(
        p.path().join("difflow.toml"),
        format!("user_cache = \"uc\"\n[sources.cifar10]\nurl = \"http://127.0.0.1:{port}/cifar-10-python.tar.gz\"\n"),
    )
    .unwrap();
    let out = p.run(&[]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let err = out.stderr();
    assert!(err.contains(&format!("cannot fetch http://127.0.0.1:{port}/cifar-10-python.tar.gz")), "{err}");
    assert!(err.contains("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"), "{err}");
    let manual = p.path().join("uc/datasets/cifar10/cifar-10-python.tar.gz");
    assert!(err.contains(&manual.display().to_string()), "{err}");
    assert!(p.take_worker_log().is_empty());
    assert!(p.entries().is_empty());
}

#[test]
fn an_unknown_source_in_difflow_toml_is_a_usage_error() {
    let p = Project::new("dataset pics = cifar10 { split = \"test\" }\n");
    std::fs::write(p.path().join("difflow.toml"), "[sources.cifar100]\nurl = \"http://127.0.0.1:1/x\"\n").unwrap();
    let out = p.run(&[]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert!(out.stderr().contains("[sources.cifar100] is not a known source"), "{}", out.stderr());
}
