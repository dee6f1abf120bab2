//! Running out of memory is a stage failure the user can fix (a smaller batch, model or
//! count; a higher `ulimit -v`), not a crash: the worker says how much it asked for and
//! what the address-space limit is, and exits with `WORKER_STAGE_FAILED`.
//!
//! Three ways an allocation fails, one message for each:
//! - a Rust allocation: [`ExitOnOom`], the worker's global allocator, exits where Rust's
//!   default handler would abort;
//! - a libtorch allocation through a tch call that panics on errors: the panic hook that
//!   [`install_panic_hook`] sets exits with the size libtorch reports;
//! - a libtorch allocation through a fallible tch call: the error reaches `main`, which
//!   rewrites it with [`describe`].
//!
//! Exiting without unwinding loses nothing: a stage writes into a staging folder that is
//! renamed into the cache only when complete.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

use difflow_core::job::WORKER_STAGE_FAILED;

/// The soft address-space limit (`ulimit -v`, RLIMIT_AS) in bytes, None when unlimited.
pub fn address_space_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) };
    (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Writes "out of memory: needs N bytes, limit M" into `out` (N unknown: "an allocation
/// failed").
fn write_message(out: &mut impl Write, needs: Option<u64>) -> std::io::Result<()> {
    match needs {
        Some(needs) => write!(out, "error: out of memory: needs {needs} bytes")?,
        None => write!(out, "error: out of memory: an allocation failed")?,
    }
    match address_space_limit() {
        Some(limit) => write!(
            out,
            ", limit {limit} (the address-space limit, `ulimit -v`, {} KiB); raise it, or use a smaller batch, model or count",
            limit / 1024
        ),
        None => write!(out, ", limit none set (the machine's memory is used up); use a smaller batch, model or count"),
    }
}

/// The message for an allocation of `needs` bytes that failed.
pub fn describe(needs: Option<u64>) -> String {
    let mut out = Vec::new();
    let _ = write_message(&mut out, needs);
    String::from_utf8_lossy(&out).trim_start_matches("error: ").to_string()
}

/// Reports a failed allocation of `needs` bytes on stderr and exits at once, without
/// allocating (the heap may have nothing left) and without unwinding.
pub fn exit_out_of_memory(needs: Option<u64>) -> ! {
    let mut buffer = [0u8; 512];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = write_message(&mut cursor, needs);
    let _ = cursor.write_all(b"\n");
    let len = cursor.position() as usize;
    // SAFETY: writes `len` initialised bytes of `buffer` to stderr, then ends the process.
    unsafe {
        libc::write(libc::STDERR_FILENO, buffer.as_ptr().cast(), len);
        libc::_exit(WORKER_STAGE_FAILED);
    }
}

/// The system allocator (the worker's malloc, jemalloc), exiting with a clear message where
/// an allocation fails instead of aborting.
pub struct ExitOnOom;

// SAFETY: every call is forwarded to `System` unchanged; only a null result is acted on.
unsafe impl GlobalAlloc for ExitOnOom {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if p.is_null() {
            exit_out_of_memory(Some(layout.size() as u64));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            exit_out_of_memory(Some(layout.size() as u64));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            exit_out_of_memory(Some(new_size as u64));
        }
        p
    }
}

/// Whether a libtorch error text is a failed allocation, and of how many bytes when it
/// says: its CPU allocator's "can't allocate memory: you tried to allocate 8640000 bytes"
/// or C++'s `std::bad_alloc` (no size).
pub fn torch_out_of_memory(text: &str) -> Option<Option<u64>> {
    const CPU: &str = "can't allocate memory: you tried to allocate ";
    if let Some(at) = text.find(CPU) {
        let digits = &text[at + CPU.len()..];
        let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
        return Some(digits[..end].parse().ok());
    }
    text.contains("std::bad_alloc").then_some(None)
}

/// Makes a panic that carries a libtorch allocation failure (tch's infallible calls panic
/// on errors) exit with the out-of-memory message; any other panic goes to the hook that
/// was set before.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
        if let Some(needs) = text.and_then(torch_out_of_memory) {
            exit_out_of_memory(needs);
        }
        previous(info)
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_read_from_libtorchs_message() {
        let text = "called `Result::unwrap()` on an `Err` value: Torch(\"DefaultCPUAllocator: can't allocate \
                    memory: you tried to allocate 8640000 bytes. Error code 12 (Cannot allocate memory)\")";
        assert_eq!(torch_out_of_memory(text), Some(Some(8_640_000)));
        assert_eq!(torch_out_of_memory("Torch(\"std::bad_alloc\")"), Some(None));
        assert_eq!(torch_out_of_memory("shape mismatch"), None);
    }

    #[test]
    fn the_message_names_the_size_and_the_limit() {
        let text = describe(Some(123));
        assert!(text.starts_with("out of memory: needs 123 bytes, limit "), "{text}");
    }
}
