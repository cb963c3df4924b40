//! sha256 content hashes: how modules, trees, inputs and outputs are named on
//! the wire and in caches.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The sha256 of some bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// A hash from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

/// A hex string that is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a sha256 hash: expected 64 hex digits ({why})")]
pub struct ParseHashError {
    text: String,
    why: &'static str,
}

/// Parses exactly `N` bytes of hex.
pub(crate) fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], &'static str> {
    if text.len() != N * 2 {
        return Err("wrong length");
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| "not hex")?;
    Ok(out)
}

impl FromStr for ContentHash {
    type Err = ParseHashError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex::<32>(text)
            .map(Self)
            .map_err(|why| ParseHashError {
                text: text.chars().take(80).collect(),
                why,
            })
    }
}

/// Hashes a stream of bytes piece by piece.
#[derive(Clone, Default)]
pub struct ContentHasher(Sha256);

impl ContentHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything added.
    pub fn finish(self) -> ContentHash {
        ContentHash(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            ContentHash::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn streaming_matches_one_shot() {
        let mut h = ContentHasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), ContentHash::of(b"abc"));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = ContentHash::of(b"x");
        assert_eq!(h.to_hex().parse::<ContentHash>(), Ok(h));
        assert_eq!(h.short().len(), 12);
        let err = "abc".parse::<ContentHash>().expect_err("short");
        assert!(err.to_string().contains("64 hex digits"));
        assert!("zz".repeat(32).parse::<ContentHash>().is_err());
    }
}
