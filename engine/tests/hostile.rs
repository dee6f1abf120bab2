//! Hostile data files, made by generators here (no fixtures): crafted pickles (CIFAR-10
//! python batches), CIFAR-10 binaries and `.tar.gz`s, IDX files, PNG/JPEG images, torch
//! `.pth` weights (zip and legacy) and safetensors. Each case runs the real worker under
//! `prlimit --as` (1 GiB of address space) and `timeout`; every one must end with exit 2
//! and a message naming the file: no panic, no abort, no hang, no code run.
//! `DIFFLOW_WORKER_UNDER_TEST=PATH` runs the cases against another worker binary (an older
//! build, to see what they catch).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");
const MEMORY_LIMIT: u64 = 1 << 30;
const TIME_LIMIT_S: u64 = 60;

struct Outcome {
    code: Option<i32>,
    stderr: String,
    seconds: f64,
}

/// Runs one job under the memory and time limits.
fn run_job(dir: &Path, kind: &str, variant: &str, params: serde_json::Value, inputs: serde_json::Value) -> Outcome {
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    // Hand-written jobs get the schema's defaults, as the front end fills them.
    let params = difflow_core::schema::with_defaults(kind, variant, &params);
    let job = json!({
        "instance": "hostile", "kind": kind, "variant": variant, "params": params, "inputs": inputs,
        "out_dir": out, "device": "cpu", "settings": {"threads": 1}
    });
    let job_file = dir.join("job.json");
    std::fs::write(&job_file, job.to_string()).unwrap();
    let worker = std::env::var("DIFFLOW_WORKER_UNDER_TEST").unwrap_or_else(|_| WORKER.to_string());
    let started = Instant::now();
    let output = Command::new("prlimit")
        .arg(format!("--as={MEMORY_LIMIT}"))
        .args(["timeout", "-s", "KILL", &TIME_LIMIT_S.to_string(), &worker])
        .arg(&job_file)
        .output()
        .expect("prlimit (util-linux) and timeout (coreutils) run");
    Outcome {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Every case must fail cleanly, naming `names` in its message.
fn expect_clean_failure(case: &str, outcome: &Outcome, names: &str, failures: &mut Vec<String>) {
    let clean = outcome.code == Some(2)
        && !outcome.stderr.contains("panicked")
        && outcome.stderr.contains(names)
        && outcome.seconds < TIME_LIMIT_S as f64;
    if !clean {
        failures.push(format!(
            "{case}: exit {:?} after {:.1} s, stderr:\n{}",
            outcome.code,
            outcome.seconds,
            outcome.stderr.chars().take(600).collect::<String>()
        ));
    }
}

fn report(class: &str, cases: usize, slowest: f64, failures: Vec<String>) {
    println!("{class}: {cases} cases, {} failed cleanly; slowest {slowest:.2} s", cases - failures.len());
    assert!(failures.is_empty(), "{} of {cases} {class} cases failed:\n{}", failures.len(), failures.join("\n\n"));
}

/// A deterministic byte generator (xorshift), so failures reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A stream of `len` zero bytes, gzipped without holding them in memory.
fn gzip_zeros(len: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        e.write_all(&block[..n]).unwrap();
        left -= n;
    }
    e.finish().unwrap()
}

/// Crafted pickles, each attacking one bound of the interpreter; `marker` is a file that a
/// pickle that ran code would create.
fn hostile_pickles(marker: &Path) -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let command = format!("touch {}", marker.display());
    for (module, name) in [("os", "system"), ("posix", "system"), ("subprocess", "getoutput")] {
        let mut call = format!("c{module}\n{name}\nX").into_bytes();
        call.extend_from_slice(&(command.len() as u32).to_le_bytes());
        call.extend_from_slice(command.as_bytes());
        call.extend_from_slice(b"\x85R");
        let mut p = b"\x80\x02".to_vec();
        p.extend_from_slice(&call);
        p.push(b'.');
        cases.push((format!("{module}.{name}('touch …') as the batch"), p));
        // Inside the dict, where the reader looks for the images.
        let mut d = b"\x80\x02}(C\x04data".to_vec();
        d.extend_from_slice(&call);
        d.extend_from_slice(b"C\x06labels]u.");
        cases.push((format!("{module}.{name}('touch …') as the data"), d));
    }
    let huge = |op: u8, width: usize| {
        let mut p = vec![0x80, 4, op];
        p.extend_from_slice(&u64::MAX.to_le_bytes()[..width]);
        p.extend_from_slice(b"abc.");
        p
    };
    cases.push(("BINBYTES8 of 2^64-1 bytes".into(), huge(0x8e, 8)));
    cases.push(("BINUNICODE8 of 2^64-1 bytes".into(), huge(0x8d, 8)));
    cases.push(("BYTEARRAY8 of 2^64-1 bytes".into(), huge(0x96, 8)));
    cases.push(("BINBYTES of 2^32-1 bytes".into(), huge(b'B', 4)));
    cases.push(("LONG4 of 2^32-1 bytes".into(), huge(0x8b, 4)));
    cases.push(("FRAME of 2^64-1 bytes".into(), huge(0x95, 8)));
    // Memo amplification: 64 KiB, then rounds of "a list of two copies of the last one".
    let mut p = vec![b'B'];
    p.extend_from_slice(&65536u32.to_le_bytes());
    p.extend(std::iter::repeat_n(b'x', 65536));
    p.extend_from_slice(b"q\x00");
    for _ in 0..40 {
        p.extend_from_slice(b"(h\x00h\x00lq\x00");
    }
    p.push(b'.');
    cases.push(("memo amplification (2^40 copies of 64 KiB)".into(), p));
    // The same with a small seed and MEMOIZE/GET by LONG_BINGET.
    let mut p = b"\x80\x04N\x94".to_vec();
    for _ in 0..64 {
        p.extend_from_slice(b"j\x00\x00\x00\x00j\x00\x00\x00\x00\x86r\x00\x00\x00\x00");
    }
    p.push(b'.');
    cases.push(("memo amplification of a tuple tree, 64 levels".into(), p));
    let mut p = b"N".to_vec();
    p.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    p.push(b'.');
    cases.push(("1,000,000 nested TUPLE1".into(), p));
    let mut p = Vec::new();
    p.extend(std::iter::repeat_n(b'(', 500_000));
    p.extend(std::iter::repeat_n(b'l', 500_000));
    p.push(b'.');
    cases.push(("500,000 nested MARK lists".into(), p));
    let mut p = vec![b']'; 300_001];
    p.extend(std::iter::repeat_n(b'a', 300_000));
    p.push(b'.');
    cases.push(("300,000 lists APPENDed into each other".into(), p));
    cases.push(("GET of an unset memo".into(), b"\x80\x02h\x07.".to_vec()));
    cases.push(("stack underflow".into(), b"\x80\x02s.".to_vec()));
    cases.push(("SETITEMS without a MARK".into(), b"\x80\x02}u.".to_vec()));
    cases.push(("no STOP".into(), b"\x80\x02}".to_vec()));
    cases.push(("an empty file".into(), Vec::new()));
    cases.push((
        "os.system('echo pwned') as the batch".into(),
        b"cos\nsystem\nX\x0b\x00\x00\x00echo pwned\x85R.".to_vec(),
    ));
    cases.push((
        "a dict whose data shape overflows".into(),
        b"}(C\x04datacnumpy.core.multiarray\n_reconstruct\n)R(K\x01\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3fM\x00\x0c\x86cnumpy\ndtype\nC\x02u1\x85R\x89C\x00tbC\x06labels]u.".to_vec(),
    ));
    cases.push(("an unknown opcode".into(), b"\x80\x02\xff.".to_vec()));
    cases.push(("a text INT that is no number".into(), b"I12x\n.".to_vec()));
    for seed in 0..20 {
        let mut p = vec![0x80, 2];
        p.extend(noise(seed, 200));
        cases.push((format!("random opcodes, seed {seed}"), p));
    }
    cases
}

#[test]
fn hostile_cifar10_pickles_fail_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let batches = root.path().join("cifar-10-batches-py");
    std::fs::create_dir_all(&batches).unwrap();
    let (mut failures, mut slowest, mut n) = (Vec::new(), 0f64, 0);
    let marker = root.path().join("pwned");
    for (case, bytes) in hostile_pickles(&marker) {
        std::fs::write(batches.join("test_batch"), &bytes).unwrap();
        let outcome =
            run_job(root.path(), "dataset", "cifar10", json!({"path": root.path(), "split": "test"}), json!({}));
        expect_clean_failure(&case, &outcome, "test_batch", &mut failures);
        assert!(!root.path().join("out/dataset.safetensors").exists(), "{case}: something was written");
        slowest = slowest.max(outcome.seconds);
        n += 1;
    }
    assert!(!marker.exists(), "a pickle ran code");
    report("pickle (CIFAR-10 python batch)", n, slowest, failures);
}

#[test]
fn hostile_cifar10_binaries_and_archives_fail_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let (mut failures, mut slowest, mut n) = (Vec::new(), 0f64, 0);
    let folder = root.path().join("bin");
    std::fs::create_dir_all(&folder).unwrap();
    let mut bad_label = vec![0u8; 3073];
    bad_label[0] = 200;
    for (case, bytes) in [
        ("an empty batch", Vec::new()),
        ("a batch of 3072 bytes", vec![0u8; 3072]),
        ("a label of 200", bad_label),
        ("random bytes", noise(1, 3073 * 2 + 5)),
    ] {
        std::fs::write(folder.join("test_batch.bin"), &bytes).unwrap();
        let outcome = run_job(root.path(), "dataset", "cifar10", json!({"path": folder, "split": "test"}), json!({}));
        expect_clean_failure(case, &outcome, "test_batch", &mut failures);
        slowest = slowest.max(outcome.seconds);
        n += 1;
    }
    // Archives: a decompression bomb, garbage, and a tar whose header lies about its size.
    let bomb_member = {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        let len = 130 << 20;
        header.set_size(len as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "cifar-10-batches-bin/test_batch.bin", std::io::repeat(0).take_bytes(len))
            .unwrap();
        gzip(&tar.into_inner().unwrap())
    };
    let mut lying = tar::Header::new_gnu();
    lying.set_size(u64::MAX >> 4);
    lying.set_mode(0o644);
    lying.set_cksum();
    let mut lie = lying.as_bytes().to_vec();
    lie.extend(vec![0u8; 1024]);
    for (case, bytes) in [
        ("a .tar.gz bomb (130 MiB member)", bomb_member),
        ("a .tar.gz of random bytes", gzip(&noise(2, 5000))),
        ("random bytes as .tar.gz", noise(3, 5000)),
        ("a tar header declaring 2^60 bytes", gzip(&lie)),
    ] {
        let archive = root.path().join("cifar-10-binary.tar.gz");
        std::fs::write(&archive, &bytes).unwrap();
        let outcome = run_job(root.path(), "dataset", "cifar10", json!({"path": archive, "split": "test"}), json!({}));
        expect_clean_failure(case, &outcome, "cifar-10-binary.tar.gz", &mut failures);
        slowest = slowest.max(outcome.seconds);
        n += 1;
    }
    report("CIFAR-10 binary and .tar.gz", n, slowest, failures);
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: usize) -> std::io::Take<Self> {
        self.take(n as u64)
    }
}
impl<R: std::io::Read> TakeBytes for R {}

fn idx_images(n: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [2051u32, n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend(vec![0u8; body]);
    b
}

#[test]
fn hostile_idx_files_fail_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let mut labels = 2049u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&4u32.to_be_bytes());
    labels.extend_from_slice(&[1, 2, 3, 4]);
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let (mut failures, mut slowest, mut n) = (Vec::new(), 0f64, 0);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("4 images of 2^31 x 2^31: the product wraps to 0", idx_images(4, 1 << 31, 1 << 31, 64), false),
        ("n*rows*cols of 2^56 bytes", idx_images(u32::MAX, 4096, 4096, 64), false),
        ("rows and cols of 2^32-1", idx_images(2, u32::MAX, u32::MAX, 64), false),
        ("zero rows", idx_images(2, 0, 28, 64), false),
        ("a header cut short", idx_images(2, 28, 28, 0)[..10].to_vec(), false),
        ("a truncated body", idx_images(2, 28, 28, 100), false),
        ("a label file as images", labels.clone(), false),
        ("random bytes", noise(5, 4000), false),
        ("a gzip bomb of 200 MiB", gzip_zeros(200 << 20), true),
        ("random bytes as gzip", noise(6, 4000), true),
    ];
    for (case, bytes, gz) in cases {
        let _ = std::fs::remove_file(dir.join("t10k-images-idx3-ubyte"));
        let _ = std::fs::remove_file(dir.join("t10k-images-idx3-ubyte.gz"));
        let name = if gz { "t10k-images-idx3-ubyte.gz" } else { "t10k-images-idx3-ubyte" };
        std::fs::write(dir.join(name), &bytes).unwrap();
        let outcome = run_job(root.path(), "dataset", "mnist", json!({"path": dir, "split": "test"}), json!({}));
        expect_clean_failure(case, &outcome, name, &mut failures);
        slowest = slowest.max(outcome.seconds);
        n += 1;
    }
    report("IDX", n, slowest, failures);
}

fn png_header(width: u32, height: u32) -> Vec<u8> {
    // A PNG signature and an IHDR chunk (8-bit RGB) with a correct CRC, then nothing.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn encoded(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([9, 99, 199]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn hostile_images_fail_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("images");
    let (mut failures, mut slowest, mut n) = (Vec::new(), 0f64, 0);
    let png = encoded(40, 40, image::ImageFormat::Png);
    let jpeg = encoded(40, 40, image::ImageFormat::Jpeg);
    let mut cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("a PNG declaring 100000x100000", "a.png", png_header(100_000, 100_000)),
        ("a PNG declaring 2^31-1 x 2^31-1", "a.png", png_header(i32::MAX as u32, i32::MAX as u32)),
        ("a PNG declaring 16000x16000 with no data", "a.png", png_header(16_000, 16_000)),
        ("a PNG of 1x4000", "a.png", encoded(1, 4000, image::ImageFormat::Png)),
        ("a truncated PNG", "a.png", png[..png.len() / 2].to_vec()),
        ("a truncated JPEG", "a.jpg", jpeg[..jpeg.len() / 2].to_vec()),
        ("random bytes as JPEG", "a.jpg", noise(7, 3000)),
    ];
    // A JPEG whose header claims 65500x65500 pixels.
    let mut big = jpeg.clone();
    if let Some(at) = big.windows(2).position(|w| w == [0xFF, 0xC0]) {
        big[at + 5..at + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
        cases.push(("a JPEG declaring 65500x65500", "a.jpg", big));
    }
    for (case, name, bytes) in cases {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ok.png"), &png).unwrap();
        std::fs::write(dir.join(name), &bytes).unwrap();
        let outcome =
            run_job(root.path(), "dataset", "images", json!({"path": dir, "size": 8, "channels": 3}), json!({}));
        expect_clean_failure(case, &outcome, name, &mut failures);
        slowest = slowest.max(outcome.seconds);
        n += 1;
    }
    report("PNG/JPEG", n, slowest, failures);
}

/// A stored (uncompressed) zip entry header with a forged size.
fn zip_with(name: &str, data: &[u8], declared: u32) -> Vec<u8> {
    let crc = crc32(data);
    let mut z = Vec::new();
    let local = |z: &mut Vec<u8>| {
        z.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&declared.to_le_bytes());
        z.extend_from_slice(&declared.to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
    };
    local(&mut z);
    z.extend_from_slice(data);
    let cd_start = z.len() as u32;
    z.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&declared.to_le_bytes());
    z.extend_from_slice(&declared.to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0u8; 12]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    let cd_len = z.len() as u32 - cd_start;
    z.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00");
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_start.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn legacy_pth(tail: &[u8]) -> Vec<u8> {
    // The magic number, protocol and system info pickles, then `tail`.
    let mut b = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    b.extend_from_slice(b"\x80\x02M\xe9\x03.");
    b.extend_from_slice(b"\x80\x02}.");
    b.extend_from_slice(tail);
    b
}

/// The pickle of `{'w': _rebuild_tensor_v2(storage '0' of 4 floats, 0, size, stride, False,
/// OrderedDict())}`, with the size and stride tuples as given.
fn tensor_pickle(size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}q\x00X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00".to_vec();
    p.extend_from_slice(size);
    p.extend_from_slice(stride);
    p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)Rtq\x01Rs.");
    p
}

/// A legacy `.pth` of one tensor: the pickles of its size and stride tuples, then its
/// storage: the element count it declares and the bytes it holds.
fn legacy_tensor(size: &[u8], stride: &[u8], declared: u64, storage: &[u8]) -> Vec<u8> {
    let mut t = tensor_pickle(size, stride);
    t.extend_from_slice(b"\x80\x02]X\x01\x00\x00\x000a.");
    t.extend_from_slice(&declared.to_le_bytes());
    t.extend_from_slice(storage);
    legacy_pth(&t)
}

#[test]
fn hostile_weights_fail_cleanly() {
    let root = tempfile::tempdir().unwrap();
    // A real image dataset for the statistics stage to read first.
    let images = root.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..2 {
        std::fs::write(images.join(format!("{i}.png")), encoded(16, 16, image::ImageFormat::Png)).unwrap();
    }
    let data = root.path().join("data");
    let made = run_job(root.path(), "dataset", "images", json!({"path": images, "size": 16, "channels": 3}), json!({}));
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    std::fs::rename(root.path().join("out"), &data).unwrap();

    let mut cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("a zip entry declaring 4 GB", "w.pth", zip_with("archive/data.pkl", b"\x80\x02}.", u32::MAX)),
        ("a zip of random bytes", "w.pth", {
            let mut z = b"PK\x03\x04".to_vec();
            z.extend(noise(8, 300));
            z
        }),
        ("a zip whose data.pkl is a memo bomb", "w.pth", {
            let mut p = b"\x80\x02]q\x00".to_vec();
            for _ in 0..60 {
                p.extend_from_slice(b"(h\x00h\x00lq\x00");
            }
            p.push(b'.');
            zip_with("archive/data.pkl", &p, p.len() as u32)
        }),
        ("a zip calling os.system", "w.pth", {
            let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.";
            zip_with("archive/data.pkl", p, p.len() as u32)
        }),
        (
            "a legacy file with a storage of 2^63 elements",
            "w.pth",
            legacy_tensor(b"K\x02\x85", b"K\x01\x85", 1 << 63, &[]),
        ),
        (
            "a legacy tensor of shape 2^62 with stride 0",
            "w.pth",
            legacy_tensor(b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40\x85", b"K\x00\x85", 1, &[0u8; 4]),
        ),
        (
            "a legacy tensor with a negative stride",
            "w.pth",
            legacy_tensor(b"K\x02\x85", b"J\xff\xff\xff\xff\x85", 2, &[0u8; 8]),
        ),
        ("random bytes as .pth", "w.pth", noise(9, 2000)),
        ("an empty .pth", "w.pth", Vec::new()),
        ("a safetensors header of 2^64-1 bytes", "w.safetensors", u64::MAX.to_le_bytes().to_vec()),
        ("a safetensors header that is not JSON", "w.safetensors", {
            let mut s = 8u64.to_le_bytes().to_vec();
            s.extend_from_slice(b"notjson!");
            s
        }),
        ("a safetensors tensor past the end of the file", "w.safetensors", {
            let header = br#"{"w":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#;
            let mut s = (header.len() as u64).to_le_bytes().to_vec();
            s.extend_from_slice(header);
            s.extend_from_slice(&[0u8; 16]);
            s
        }),
    ];
    cases.push(("a legacy file cut short", "w.pth", legacy_pth(b"\x80\x02}q\x00X")));
    let (mut failures, mut slowest, mut n) = (Vec::new(), 0f64, 0);
    for (case, name, bytes) in cases {
        let weights = root.path().join(name);
        std::fs::write(&weights, &bytes).unwrap();
        let outcome = run_job(
            root.path(),
            "stats",
            "default",
            json!({"of": {"$stage": "data"}, "features": "inception", "inception_weights": weights}),
            json!({"data": {"kind": "dataset", "variant": "images", "params": {}, "dir": data}}),
        );
        expect_clean_failure(case, &outcome, name, &mut failures);
        std::fs::remove_file(&weights).unwrap();
        slowest = slowest.max(outcome.seconds);
        n += 1;
    }
    report("torch .pth and safetensors weights", n, slowest, failures);
}

#[test]
fn the_generators_make_what_they_say() {
    // The forged PNG chunks carry valid CRCs (IEND's is well known), so decoders read the
    // declared size rather than stopping at a bad checksum.
    assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    assert_eq!(&png_header(100_000, 100_000)[16..24], &[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
    assert!(gzip_zeros(3 << 20).len() < 10_000);
    assert_eq!(idx_images(4, 1 << 31, 1 << 31, 0).len(), 16);
    assert_eq!(4u64.wrapping_mul(1 << 31).wrapping_mul(1 << 31), 0, "the product wraps to 0");
}
