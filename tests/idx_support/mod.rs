//! Gzipped IDX files as MNIST's servers hand them out, for the fetch tests of both crates
//! (`tests/fetch.rs`, and `engine/tests/fetch_end_to_end.rs` through a `#[path]`).

#![allow(dead_code)]

use std::io::Write;

pub fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

/// `n` images of 28 × 28 (magic 2051), their pixels from `pixels`, gzipped.
pub fn idx_images_gz(n: u32, pixels: impl IntoIterator<Item = u8>) -> Vec<u8> {
    idx_gz(&[2051, n, 28, 28], pixels)
}

/// `n` labels (magic 2049) counting 0…9 over and over, gzipped.
pub fn idx_labels_gz(n: u32) -> Vec<u8> {
    idx_gz(&[2049, n], (0..n).map(|i| (i % 10) as u8))
}

/// An IDX file: its header words (magic number, then sizes) big-endian, then `body`.
fn idx_gz(header: &[u32], body: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut raw: Vec<u8> = header.iter().flat_map(|v| v.to_be_bytes()).collect();
    raw.extend(body);
    gzip(&raw)
}
