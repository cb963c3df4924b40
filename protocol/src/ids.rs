//! Identifiers: jobs, tasks, peers (their ed25519 public keys) and nonces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hash::parse_hex;

/// A job, named by 16 random bytes chosen by its submitter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId([u8; 16]);

impl JobId {
    /// A job id from random bytes (the caller supplies the randomness).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// A string that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job id: expected 32 hex digits")]
pub struct ParseIdError(String);

impl FromStr for JobId {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex::<16>(text)
            .map(Self)
            .map_err(|_| ParseIdError(text.chars().take(80).collect()))
    }
}

/// One task of a job.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct TaskId {
    /// The job.
    pub job: JobId,
    /// The task's index, 0-based.
    pub index: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job, self.index)
    }
}

/// A peer's ed25519 public key: its libp2p identity and its signing key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerKey([u8; 32]);

impl PeerKey {
    /// A key from its 32 bytes (checked when a signature is verified).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({})", self.short())
    }
}

impl FromStr for PeerKey {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex::<32>(text)
            .map(Self)
            .map_err(|_| ParseIdError(text.chars().take(80).collect()))
    }
}

/// 16 random bytes that make a manifest unique, for replay protection.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Nonce(pub [u8; 16]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_print_and_parse_as_32_hex_digits() {
        let id = JobId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<JobId>(), Ok(id));
        assert!("ab".parse::<JobId>().is_err());
        assert!("g".repeat(32).parse::<JobId>().is_err());
    }

    #[test]
    fn peer_keys_round_trip() {
        let key = PeerKey::from_bytes([7; 32]);
        assert_eq!(key.to_string().parse::<PeerKey>(), Ok(key));
        assert_eq!(key.short(), "070707070707");
    }
}
