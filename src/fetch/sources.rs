//! Where the files a pipeline can fetch come from, and the checksums they must have.
//!
//! Pinned from (checked 2026-11):
//! - MNIST: torchvision's first mirror `https://ossci-datasets.s3.amazonaws.com/mnist/`
//!   (`torchvision.datasets.MNIST.mirrors`; torchvision pins MD5s such as
//!   f68b3c2dcbeaaa9fbdd348bbdeb94873 for train-images); the SHA-256s are the ones
//!   torchvision's prototype datasets pin for the same files
//!   (`torchvision/prototype/datasets/_builtin/mnist.py`, `MNIST._CHECKSUMS`).
//! - Fashion-MNIST: torchvision's `http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/`
//!   (`torchvision.datasets.FashionMNIST.mirrors`; the bucket's website endpoint has no
//!   https), SHA-256s from `FashionMNIST._CHECKSUMS` in the same prototype file.
//! - CIFAR-10: torchvision's `https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz`
//!   (`torchvision.datasets.CIFAR10.url`, MD5 c58f30108f718f92721af3b95e74349a); the
//!   SHA-256 is the one `keras.datasets.cifar10.load_data` pins for that URL.
//! - Inception: pytorch-fid's `FID_WEIGHTS_URL` (`pytorch_fid/inception.py`). pytorch-fid
//!   verifies it through `torch.hub`, whose check compares the SHA-256 prefix in the file
//!   name (6726825d); the full SHA-256 below starts with that prefix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::project::settings::SourceOverride;

/// One file to fetch: its `[sources.NAME]` name, where it comes from, what it must hash
/// to, and its file name in the user cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// The dataset variant it belongs to, or `weights`.
    pub group: String,
    pub url: String,
    pub sha256: String,
    pub file_name: String,
    /// The exact size in bytes, when pinned with the checksum.
    pub size: Option<u64>,
    /// The most bytes a download may bring when the size is not pinned (unless
    /// `DIFFLOW_FETCH_MAX_BYTES` says otherwise).
    pub cap: u64,
}

/// Caps on a download whose size is not pinned (a `[sources.NAME]` sha256 of another file,
/// a Hub file), generous for what each holds: CIFAR-10's archive is 163 MiB, the Inception
/// weights 91 MiB, a diffusers UNet2DModel's weights at most a few hundred MiB.
pub const DATASET_CAP: u64 = 1 << 30;
pub const WEIGHTS_CAP: u64 = 1 << 30;
pub const HUB_CONFIG_CAP: u64 = 1 << 20;
pub const HUB_WEIGHTS_CAP: u64 = 4 << 30;

const MNIST_URL: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
const FASHION_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz";
const INCEPTION_URL: &str =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";

/// A pinned file: its sha256 and size in bytes.
type Pin = (&'static str, u64);

/// (source-name suffix, file name, MNIST pin, Fashion-MNIST pin)
const IDX_FILES: [(&str, &str, Pin, Pin); 4] = [
    (
        "train_images",
        "train-images-idx3-ubyte.gz",
        ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422),
        ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26_421_880),
    ),
    (
        "train_labels",
        "train-labels-idx1-ubyte.gz",
        ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881),
        ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29_515),
    ),
    (
        "test_images",
        "t10k-images-idx3-ubyte.gz",
        ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877),
        ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4_422_102),
    ),
    (
        "test_labels",
        "t10k-labels-idx1-ubyte.gz",
        ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542),
        ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5_148),
    ),
];

const CIFAR10_SHA256: &str = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce";
const CIFAR10_SIZE: u64 = 170_498_071;
const INCEPTION_SHA256: &str = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2";
const INCEPTION_SIZE: u64 = 95_628_359;

/// The name of the Inception weights' source (`[sources.pt_inception]`).
pub const INCEPTION: &str = "pt_inception";

/// The dataset variants that can be fetched.
pub const DATASETS: [&str; 3] = ["mnist", "fashion_mnist", "cifar10"];

/// The built-in sources, before `difflow.toml` overrides.
pub fn builtin() -> Vec<Source> {
    let mut out = Vec::new();
    for (suffix, file, mnist, fashion) in IDX_FILES {
        for (dataset, base, (sha, size)) in [("mnist", MNIST_URL, mnist), ("fashion_mnist", FASHION_URL, fashion)] {
            out.push(Source {
                name: format!("{dataset}_{suffix}"),
                group: dataset.into(),
                url: format!("{base}{file}"),
                sha256: sha.into(),
                file_name: file.into(),
                size: Some(size),
                cap: DATASET_CAP,
            });
        }
    }
    out.push(Source {
        name: "cifar10".into(),
        group: "cifar10".into(),
        url: CIFAR10_URL.into(),
        sha256: CIFAR10_SHA256.into(),
        file_name: "cifar-10-python.tar.gz".into(),
        size: Some(CIFAR10_SIZE),
        cap: DATASET_CAP,
    });
    out.push(Source {
        name: INCEPTION.into(),
        group: "weights".into(),
        url: INCEPTION_URL.into(),
        sha256: INCEPTION_SHA256.into(),
        file_name: "pt_inception-2015-12-05-6726825d.pth".into(),
        size: Some(INCEPTION_SIZE),
        cap: WEIGHTS_CAP,
    });
    out
}

/// The table of sources with `[sources.NAME]` overrides applied; an override of a name
/// that is not in the table is an error that lists the known names.
pub fn table(overrides: &BTreeMap<String, SourceOverride>) -> Result<Vec<Source>, String> {
    let mut sources = builtin();
    for (name, o) in overrides {
        let Some(s) = sources.iter_mut().find(|s| &s.name == name) else {
            let known: Vec<String> = builtin().into_iter().map(|s| s.name).collect();
            return Err(format!("[sources.{name}] is not a known source; the sources are {}", known.join(", ")));
        };
        if let Some(url) = &o.url {
            s.url = url.clone();
        }
        if let Some(sha) = &o.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("[sources.{name}] sha256 must be 64 hexadecimal digits, got `{sha}`"));
            }
            let sha = sha.to_ascii_lowercase();
            // Another file: its size is not the pinned one's.
            if sha != s.sha256 {
                s.size = None;
            }
            s.sha256 = sha;
        }
    }
    Ok(sources)
}

/// The sources of one dataset variant, in a fixed order (both splits: the folder's
/// content digest is then the same whichever split a stage reads).
pub fn dataset_sources<'a>(table: &'a [Source], variant: &str) -> Vec<&'a Source> {
    table.iter().filter(|s| s.group == variant).collect()
}

/// The folder a fetched dataset lives in.
pub fn dataset_dir(user_cache: &Path, variant: &str) -> PathBuf {
    user_cache.join("datasets").join(variant)
}

/// The folder fetched weights live in.
pub fn weights_dir(user_cache: &Path) -> PathBuf {
    user_cache.join("weights")
}

/// The Hugging Face endpoint: `HF_ENDPOINT` when set (a mirror), as `huggingface_hub`
/// reads it, else the public Hub.
pub fn hf_endpoint() -> String {
    endpoint_from(std::env::var("HF_ENDPOINT").ok())
}

fn endpoint_from(var: Option<String>) -> String {
    match var {
        Some(e) if !e.trim().is_empty() => e.trim().trim_end_matches('/').to_string(),
        _ => "https://huggingface.co".to_string(),
    }
}

/// The URL of one file of a Hub repository at a revision (`huggingface_hub`'s
/// `hf_hub_url`: `{endpoint}/{repo}/resolve/{revision}/{file}`, the revision
/// percent-encoded whole, so that `refs/pr/1` stays one path segment).
pub fn hf_file_url(repo: &str, revision: &str, file: &str) -> String {
    file_url(&hf_endpoint(), repo, revision, file)
}

fn file_url(endpoint: &str, repo: &str, revision: &str, file: &str) -> String {
    let mut encoded = String::new();
    for b in revision.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{endpoint}/{repo}/resolve/{encoded}/{file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_has_its_files_and_names_are_unique() {
        let t = builtin();
        assert_eq!(dataset_sources(&t, "mnist").len(), 4);
        assert!(dataset_sources(&t, "mnist").iter().all(|s| s.url.starts_with(MNIST_URL)));
        assert_eq!(dataset_sources(&t, "fashion_mnist").len(), 4);
        assert!(dataset_sources(&t, "fashion_mnist").iter().all(|s| s.url.starts_with(FASHION_URL)));
        assert_eq!(dataset_sources(&t, "cifar10").len(), 1);
        let mut names: Vec<_> = t.iter().map(|s| s.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), t.len());
        assert!(t.iter().all(|s| s.sha256.len() == 64 && s.sha256.bytes().all(|b| b.is_ascii_hexdigit())));
        assert!(INCEPTION_SHA256.starts_with("6726825d"), "pytorch-fid's file name carries the prefix");
    }

    #[test]
    fn overrides_replace_url_and_checksum_and_unknown_names_are_errors() {
        let mut o = BTreeMap::new();
        o.insert("cifar10".to_string(), SourceOverride { url: Some("http://mirror/c.tgz".into()), sha256: None });
        let t = table(&o).unwrap();
        let c = dataset_sources(&t, "cifar10")[0];
        assert_eq!((c.url.as_str(), c.sha256.as_str()), ("http://mirror/c.tgz", CIFAR10_SHA256));
        o.insert("pt_inception".to_string(), SourceOverride { url: None, sha256: Some("6726825d".into()) });
        assert!(table(&o).unwrap_err().contains("64 hexadecimal digits"));
        o.remove("pt_inception");
        o.insert("cifar100".to_string(), SourceOverride::default());
        assert!(table(&o).unwrap_err().contains("cifar10, pt_inception"));
    }

    #[test]
    fn a_pinned_size_holds_only_for_the_pinned_checksum() {
        let mut o = BTreeMap::new();
        let cifar = |o: &BTreeMap<String, SourceOverride>| dataset_sources(&table(o).unwrap(), "cifar10")[0].clone();
        assert_eq!(cifar(&o).size, Some(CIFAR10_SIZE));
        o.insert("cifar10".to_string(), SourceOverride { url: None, sha256: Some(CIFAR10_SHA256.to_uppercase()) });
        assert_eq!(cifar(&o).size, Some(CIFAR10_SIZE));
        o.insert("cifar10".to_string(), SourceOverride { url: None, sha256: Some("ab".repeat(32)) });
        assert_eq!((cifar(&o).size, cifar(&o).cap), (None, DATASET_CAP));
        assert!(builtin().iter().all(|s| s.size.is_some_and(|n| n > 0 && n < s.cap)));
    }

    #[test]
    fn hub_urls_follow_hf_endpoint() {
        let mirror = endpoint_from(Some("http://127.0.0.1:9/".into()));
        assert_eq!(
            file_url(&mirror, "google/ddpm-cifar10-32", "main", "config.json"),
            "http://127.0.0.1:9/google/ddpm-cifar10-32/resolve/main/config.json"
        );
        assert_eq!(
            file_url(&mirror, "m", "refs/pr/1", "config.json"),
            "http://127.0.0.1:9/m/resolve/refs%2Fpr%2F1/config.json"
        );
        assert_eq!(endpoint_from(None), "https://huggingface.co");
        assert_eq!(endpoint_from(Some(" ".into())), "https://huggingface.co");
    }
}
