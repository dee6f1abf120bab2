use std::io::Cursor;

use proptest::prelude::*;

use super::*;

fn reader(bytes: &[u8], limits: Limits) -> FrameReader<Cursor<Vec<u8>>> {
    FrameReader::new(Cursor::new(bytes.to_vec()), limits)
}

/// Every frame of `bytes`: `Ok(body)` or `Err(why)`.
fn frames(bytes: &[u8], limits: Limits) -> Vec<Result<Vec<u8>, String>> {
    let mut r = reader(bytes, limits);
    let mut out = Vec::new();
    loop {
        match r.next_frame() {
            Frame::Body(b) => out.push(Ok(b)),
            Frame::Bad(why) => out.push(Err(why)),
            Frame::End => return out,
        }
    }
}

const SMALL: Limits = Limits { line: 32, headers: 4, body: 64 };

#[test]
fn frames_are_read_and_headers_without_length_are_reported() {
    let got = frames(b"Content-Length: 2\r\n\r\n{}X-Other: 1\r\n\r\nContent-Length: 1\r\n\r\n1", LIMITS);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], Ok(b"{}".to_vec()));
    assert!(got[1].as_ref().is_err_and(|e| e.contains("needs a Content-Length")), "{got:?}");
    assert_eq!(got[2], Ok(b"1".to_vec()));
}

#[test]
fn a_length_that_is_not_ascii_digits_is_reported_and_the_next_frame_is_read() {
    // The audit's case: the body of unknown length is dropped up to the next length header.
    let got = frames(b"Content-Length: 2\xff\xfe\r\n\r\n{}Content-Length: 2\r\n\r\n[]", LIMITS);
    assert_eq!(got, [Err("a header line that is not `Name: value` in ASCII".to_string()), Ok(b"[]".to_vec())]);
    let got = frames(b"Content-Type: \xff\r\nContent-Length: 2\r\n\r\n{}Content-Length: 1\r\n\r\n1", LIMITS);
    assert_eq!(got, [Err("a header line that is not `Name: value` in ASCII".to_string()), Ok(b"1".to_vec())]);
}

#[test]
fn a_long_header_line_is_dropped_in_bounded_memory() {
    let mut bytes = vec![b'A'; 10_000];
    bytes.extend_from_slice(b"\r\n\r\nContent-Length: 1\r\n\r\n7");
    let mut r = reader(&bytes, SMALL);
    assert!(matches!(r.next_frame(), Frame::Bad(why) if why.contains("longer than 32 bytes")));
    assert!(r.line.capacity() <= SMALL.line);
    assert!(matches!(r.next_frame(), Frame::Body(b) if b == b"7"));
    // Without a newline, up to the end of input.
    assert!(matches!(reader(&[b'A'; 10_000], SMALL).next_frame(), Frame::End));
}

#[test]
fn a_body_over_the_limit_or_too_many_headers_are_skipped_and_reading_goes_on() {
    let mut bytes = b"Content-Length: 65\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[b'x'; 65]);
    bytes.extend_from_slice(b"a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\nContent-Length: 1\r\n\r\n2Content-Length: 1\r\n\r\n3");
    let got = frames(&bytes, SMALL);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].as_ref().is_err_and(|e| e.contains("at most 64")), "{got:?}");
    assert!(got[1].as_ref().is_err_and(|e| e.contains("more than 4 header lines")), "{got:?}");
    assert_eq!(got[2], Ok(b"3".to_vec()));
}

#[test]
fn a_length_beyond_the_input_ends_without_allocating_it() {
    let got = frames(b"Content-Length: 18446744073709551615\r\n\r\n{}", LIMITS);
    assert!(got.is_empty(), "{got:?}");
    let got = frames(b"Content-Length: 99999999999999999999999\r\n\r\n{}", LIMITS);
    assert_eq!(got, [Err("the Content-Length is not a number of bytes".to_string())]);
}

/// Pieces that streams are made of: arbitrary bytes, and the parts of frames and of the
/// ways they break (long lines, bad bytes, lengths that lie).
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        Just(b"\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"shutdown\"}".to_vec()),
        (0u64..200).prop_map(|n| format!("Content-Length: {n}\r\n").into_bytes()),
        (0u64..200).prop_map(|n| format!("content-length:{n}\r\n\r\n").into_bytes()),
        Just(b"Content-Length: 18446744073709551615\r\n\r\n".to_vec()),
        Just(b"Content-Length: 2\xff\xfe\r\n\r\n".to_vec()),
        (0usize..100).prop_map(|n| vec![b'H'; n]),
        Just(b"Content-Length: 2\r\n\r\n{}".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("DIFFLOW_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any byte stream: no panic, each frame consumes input (so reading ends), and no
    /// buffer ever holds more than the limits allow.
    #[test]
    fn any_byte_stream_is_read_in_bounded_memory_to_its_end(
        pieces in prop::collection::vec(piece(), 0..24)
    ) {
        let bytes = pieces.concat();
        let mut r = reader(&bytes, SMALL);
        let mut at = 0;
        loop {
            let frame = r.next_frame();
            prop_assert!(r.line.capacity() <= SMALL.line, "line buffer of {}", r.line.capacity());
            if let Frame::Body(body) = &frame {
                prop_assert!(body.capacity() as u64 <= SMALL.body, "body buffer of {}", body.capacity());
            }
            let end = matches!(frame, Frame::End);
            // Decoding never panics, whatever the body is.
            let _ = decode(frame);
            if end {
                break;
            }
            let now = r.input.position();
            prop_assert!(now > at, "a frame that consumed nothing: the reader would spin");
            at = now;
        }
    }
}
