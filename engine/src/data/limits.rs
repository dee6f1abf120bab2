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
/// The buffer grows by doubling but never past `cap + 1` bytes, so the largest request
/// is about `cap` (a plain `read_to_end` would ask for twice that on its last doubling),
/// and a request the memory limit refuses is an error naming the file.
pub fn read_capped(mut reader: impl Read, cap: u64, what: &str) -> Result<Vec<u8>> {
    let most = usize::try_from(cap + 1).unwrap_or(usize::MAX);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n.min(most - out.len()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {what}")),
        };
        if out.len() + n > out.capacity() {
            let wanted = (out.capacity() * 2).max(out.len() + n).max(1 << 20).min(most);
            out.try_reserve_exact(wanted - out.len())
                .with_context(|| format!("cannot hold {what} in memory ({wanted} bytes): raise the memory limit"))?;
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() as u64 > cap {
            bail!("{what} decompresses to more than {} MB: it is not a dataset file of this kind", cap >> 20);
        }
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
