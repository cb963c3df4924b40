//! The wire codec: a frame is one byte of wire version, one byte of message
//! kind, then the postcard encoding of the message. Every decode is given a
//! hard size limit, checked before anything is parsed; unknown versions and
//! kinds, truncated input and trailing bytes are errors, never panics.
//!
//! postcard's encoding is deterministic for these types (no maps other than
//! `BTreeMap`, no floats), which is what makes it usable as the canonical
//! bytes that envelopes sign.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PROTOCOL_VERSION;

/// Largest encoded manifest: a million inputs of ~80 bytes each fit.
pub const MAX_MANIFEST_BYTES: usize = 96 * 1024 * 1024;
/// Largest encoded receipt: two capped streams plus the file list.
pub const MAX_RECEIPT_BYTES: usize = 2 * 64 * 1024 * 1024 + 2 * 1024 * 1024;

/// A message that travels in a frame.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// The kind byte.
    const KIND: u8;
    /// Most bytes of a frame of this kind.
    const MAX_BYTES: usize;

    /// Most bytes of a frame whose body starts with `body` (at least its
    /// first byte when there is one: for an enum, the variant's index), so
    /// a kind whose variants differ widely in size bounds each on its own
    /// and a reader stops at the variant's bound, not the kind's. At most
    /// [`WireMessage::MAX_BYTES`].
    fn max_frame_bytes(body: &[u8]) -> usize {
        let _ = body;
        Self::MAX_BYTES
    }
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// More bytes than this message may have.
    #[error("message of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// Length seen.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Fewer than the two header bytes.
    #[error("message is truncated: no header")]
    NoHeader,
    /// A wire version this build does not speak.
    #[error("wire version {0} is not supported (this build speaks {PROTOCOL_VERSION})")]
    Version(u8),
    /// A different message kind than expected.
    #[error("expected message kind {expected}, got {got}")]
    Kind {
        /// Expected kind.
        expected: u8,
        /// Kind seen.
        got: u8,
    },
    /// The body does not decode.
    #[error("malformed message body: {0}")]
    Body(String),
    /// Bytes left over after the message.
    #[error("{0} unexpected bytes after the message")]
    Trailing(usize),
}

impl CodecError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::TooLarge { .. } => "too_large",
            CodecError::NoHeader => "truncated",
            CodecError::Version(_) => "version",
            CodecError::Kind { .. } => "kind",
            CodecError::Body(_) => "malformed",
            CodecError::Trailing(_) => "trailing",
        }
    }
}

/// The canonical bytes of a value (no frame): what envelopes sign.
pub fn to_canonical_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising into a Vec fails only for types postcard cannot express
    // (sequences of unknown length); none of the protocol's types are such.
    postcard::to_allocvec(value).expect("protocol types always serialise with postcard")
}

/// Decodes canonical bytes, with a size limit and no trailing bytes.
pub fn from_canonical_bytes<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| CodecError::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Trailing(rest.len()));
    }
    Ok(value)
}

/// Encodes a message into a frame.
pub fn encode<T: WireMessage>(message: &T) -> Vec<u8> {
    let mut frame = vec![PROTOCOL_VERSION, T::KIND];
    frame.extend_from_slice(&to_canonical_bytes(message));
    frame
}

/// Encodes a message into a frame of at most `limit` bytes, or `None` if
/// it would be longer; serialising stops as soon as it passes the limit,
/// so a big message costs no more than `limit` bytes of work.
pub fn encode_within<T: WireMessage>(message: &T, limit: usize) -> Option<Vec<u8>> {
    let mut frame = Bounded {
        bytes: vec![PROTOCOL_VERSION, T::KIND],
        limit,
    };
    if frame.bytes.len() > limit {
        return None;
    }
    frame.bytes.reserve(limit.min(INITIAL_FRAME_BYTES));
    postcard::serialize_with_flavor(message, frame).ok()
}

/// Room reserved for a bounded frame at first (an offer or a receipt fits).
const INITIAL_FRAME_BYTES: usize = 1024;

/// A postcard output that refuses to grow past `limit` bytes.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl postcard::ser_flavors::Flavor for Bounded {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.bytes.len() + data.len() > self.limit {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.bytes)
    }
}

/// Decodes a frame of kind `T`, refusing anything over `T::MAX_BYTES`, or
/// over its variant's bound ([`WireMessage::max_frame_bytes`]).
pub fn decode<T: WireMessage>(frame: &[u8]) -> Result<T, CodecError> {
    if frame.len() > T::MAX_BYTES {
        return Err(CodecError::TooLarge {
            len: frame.len(),
            limit: T::MAX_BYTES,
        });
    }
    let [version, kind, body @ ..] = frame else {
        return Err(CodecError::NoHeader);
    };
    if *version != PROTOCOL_VERSION {
        return Err(CodecError::Version(*version));
    }
    if *kind != T::KIND {
        return Err(CodecError::Kind {
            expected: T::KIND,
            got: *kind,
        });
    }
    let limit = T::max_frame_bytes(body).min(T::MAX_BYTES);
    if frame.len() > limit {
        return Err(CodecError::TooLarge {
            len: frame.len(),
            limit,
        });
    }
    from_canonical_bytes(body, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::ContentHash;
    use crate::messages::BlobRequest;

    fn sample() -> BlobRequest {
        BlobRequest {
            hash: ContentHash::of(b"module"),
            offset: 1 << 20,
            len: 65536,
        }
    }

    #[test]
    fn frames_round_trip() {
        let frame = encode(&sample());
        assert_eq!(&frame[..2], &[PROTOCOL_VERSION, BlobRequest::KIND]);
        assert_eq!(decode::<BlobRequest>(&frame), Ok(sample()));
    }

    #[test]
    fn a_frame_within_a_limit_is_the_frame_and_past_it_is_none() {
        let frame = encode(&sample());
        assert_eq!(encode_within(&sample(), frame.len()), Some(frame.clone()));
        assert_eq!(encode_within(&sample(), frame.len() - 1), None);
        assert_eq!(encode_within(&sample(), 1), None);
    }

    #[test]
    fn every_defect_is_its_own_error() {
        let frame = encode(&sample());
        assert_eq!(
            decode::<BlobRequest>(&[]).expect_err("empty").code(),
            "truncated"
        );
        assert_eq!(
            decode::<BlobRequest>(&frame[..1])
                .expect_err("1 byte")
                .code(),
            "truncated"
        );
        for cut in 2..frame.len() {
            assert_eq!(
                decode::<BlobRequest>(&frame[..cut])
                    .expect_err("cut")
                    .code(),
                "malformed",
                "cut at {cut}"
            );
        }
        let mut long = frame.clone();
        long.push(0);
        assert_eq!(
            decode::<BlobRequest>(&long).expect_err("trailing").code(),
            "trailing"
        );
        let mut v = frame.clone();
        v[0] = 9;
        assert_eq!(
            decode::<BlobRequest>(&v).expect_err("version").code(),
            "version"
        );
        let mut k = frame.clone();
        k[1] = 200;
        assert_eq!(decode::<BlobRequest>(&k).expect_err("kind").code(), "kind");
        let huge = vec![0u8; BlobRequest::MAX_BYTES + 1];
        assert_eq!(
            decode::<BlobRequest>(&huge).expect_err("size").code(),
            "too_large"
        );
    }

    #[test]
    fn canonical_decoding_has_a_limit() {
        let bytes = to_canonical_bytes(&vec![7u8; 100]);
        assert!(from_canonical_bytes::<Vec<u8>>(&bytes, 1000).is_ok());
        assert_eq!(
            from_canonical_bytes::<Vec<u8>>(&bytes, 50)
                .expect_err("limit")
                .code(),
            "too_large"
        );
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate_or_panic() {
        // A Vec<u8> claiming u32::MAX elements, with none present.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(from_canonical_bytes::<Vec<u8>>(&bytes, 1 << 20).is_err());
    }
}
