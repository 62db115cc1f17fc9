//! Fuzzes `rpc_core::frame::FrameDecoder`: arbitrary bytes, arbitrarily
//! split, under an arbitrary maximum.
//!
//! Input layout: byte 0 picks the maximum frame size (0..=255 bytes, small
//! so that "too large" is reached often), byte 1 seeds the chunk sizes, the
//! rest is the byte stream. Checked: no panic; no frame over the maximum;
//! the frames are exactly the prefix of the stream they came from; an
//! error comes only for a header announcing more than the maximum, and a
//! `TooLarge` error names that length; re-encoding the frames and
//! decoding them in one piece gives them back.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rpc_core::frame::{FrameDecoder, FrameError, encode};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let [max, seed, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*max);
    let mut decoder = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut error = None;
    let mut fed = 0;
    let mut step = usize::from(*seed);
    'feed: while fed < stream.len() {
        // Chunks of 1..=16 bytes, varied by a tiny LCG.
        step = step.wrapping_mul(31).wrapping_add(7);
        let end = (fed + 1 + step % 16).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }

    let mut consumed = Vec::new();
    for frame in &frames {
        assert!(
            frame.len() <= max,
            "a frame of {} bytes over {max}",
            frame.len()
        );
        consumed.extend_from_slice(&encode(frame));
    }
    assert_eq!(
        &stream[..consumed.len()],
        &consumed[..],
        "frames are the stream's prefix"
    );
    if let Some(error) = error {
        // Every decoder error is about a header announcing more than the
        // maximum (too large, or the first bytes of another protocol).
        let rest = &stream[consumed.len()..];
        let announced = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(
            announced > max,
            "{error} for a frame of {announced} <= {max} bytes"
        );
        if let FrameError::TooLarge { len, max: reported } = error {
            assert_eq!((len, reported), (announced, max));
        }
    }

    let mut whole = BytesMut::from(&consumed[..]);
    let mut again = FrameDecoder::new(max);
    for frame in &frames {
        let decoded = again.decode(&mut whole).expect("valid frames decode");
        assert_eq!(decoded.as_ref(), Some(frame));
    }
    assert!(whole.is_empty());
    assert!(again.decode(&mut whole).expect("nothing left").is_none());
});
