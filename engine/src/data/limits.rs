//! Bounds on what a data file may make the engine allocate: declared sizes and compressed
//! streams are trusted only up to these limits, so a small hostile file cannot exhaust
//! memory.

use std::io::Read;

use anyhow::{bail, Context, Result};

/// The most bytes one decompressed data file may hold (the largest real ones, CIFAR-10
/// batches and MNIST's training images, are 31 MB and 47 MB).
pub const MAX_DECOMPRESSED: u64 = 128 << 20;

/// Reads `reader` to its end, failing once it yields more than `cap` bytes (a
/// decompression bomb, say) instead of allocating on. `what` names the file in errors.
pub fn read_capped(reader: impl Read, cap: u64, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(cap + 1).read_to_end(&mut out).with_context(|| format!("cannot read {what}"))?;
    if out.len() as u64 > cap {
        bail!("{what} decompresses to more than {} MB: it is not a dataset file of this kind", cap >> 20);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_longer_than_the_cap_is_refused() {
        assert_eq!(read_capped(&[1u8, 2, 3][..], 3, "x").unwrap(), [1, 2, 3]);
        let e = read_capped(std::io::repeat(0), 1 << 20, "bomb.gz").unwrap_err().to_string();
        assert!(e.contains("bomb.gz") && e.contains("more than 1 MB"), "{e}");
    }
}
