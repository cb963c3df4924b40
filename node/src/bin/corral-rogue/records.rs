//! The rogue's module records (`--mode records`, issue 22): gossiped on
//! `corral/modules/1` in turn — a record whose signature does not hold, one
//! that names a publisher it was not signed by, bytes over the record bound
//! (yet under gossip's), garbage, and one valid record of its own (a newer
//! `testkit` no honest device trusts).

use corral_node::identity::NodeKey;
use corral_protocol::envelope::SigningKey;
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::module_record::{MAX_SIGNED_RECORD_BYTES, ModuleRecord, parse_version};

/// The rogue's own record's name and version.
pub(crate) const ROGUE_VERSION: &str = "9.0.0";

/// Successive hostile records of one identity.
pub(crate) struct Records {
    key: SigningKey,
    me: PeerKey,
    other: PeerKey,
    /// When its records say they were published (one time: the same
    /// record each round).
    at: u64,
    sent: u64,
}

impl Records {
    /// Records signed by `key`.
    pub(crate) fn new(key: &NodeKey) -> anyhow::Result<Self> {
        Ok(Self {
            key: key.signing_key(),
            me: key.peer_key(),
            other: NodeKey::generate()?.peer_key(),
            at: corral_node::clock::now_ms(),
            sent: 0,
        })
    }

    fn record(&self, version: &str, publisher: PeerKey) -> ModuleRecord {
        ModuleRecord {
            name: "testkit".into(),
            version: parse_version(version).expect("the rogue's versions are strict semver"),
            module: ContentHash::of(b"not the testkit"),
            size: 15,
            description: "a rogue's testkit".into(),
            publisher,
            published_ms: self.at,
        }
    }

    /// The next message to gossip, and what it is.
    pub(crate) fn next(&mut self) -> (&'static str, Vec<u8>) {
        self.sent += 1;
        match self.sent % 5 {
            0 => {
                let mut bytes = self.record("8.0.0", self.me).to_signed_bytes(&self.key);
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                ("bad_signature", bytes)
            }
            1 => (
                "signer_mismatch",
                self.record("8.1.0", self.other).to_signed_bytes(&self.key),
            ),
            2 => ("too_large", vec![0x5a; MAX_SIGNED_RECORD_BYTES + 512]),
            3 => ("malformed", b"not a module record".to_vec()),
            _ => (
                "valid",
                self.record(ROGUE_VERSION, self.me)
                    .to_signed_bytes(&self.key),
            ),
        }
    }
}
