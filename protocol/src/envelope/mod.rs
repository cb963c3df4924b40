//! Signed envelopes: a payload's canonical bytes (the codec's deterministic
//! encoding) signed with ed25519 under a per-type context, so a signature
//! over one kind of message can never be replayed as another.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use ed25519_dalek::{Signature, Signer, VerifyingKey};

/// The ed25519 signing key type nodes sign with.
pub use ed25519_dalek::SigningKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::ids::PeerKey;
use crate::manifest::{JobManifest, ManifestError};
use crate::receipt::{ReceiptBatch, ReceiptError, TaskReceipt};

/// A payload that can be signed.
pub trait Signable: Serialize + DeserializeOwned {
    /// Domain separation: prefixed to the bytes that are signed.
    const CONTEXT: &'static [u8];
    /// Most bytes of the encoded payload.
    const MAX_BYTES: usize;
    /// Checks the payload itself once the signature holds, time apart: who
    /// claims to have made it, and that it is well formed.
    fn check(&self, signer: &PeerKey) -> Result<(), EnvelopeError>;

    /// The payload as an older version of this protocol encoded it, read
    /// into this version's type, for a signer reading back what it stored
    /// before an upgrade ([`Signed::verify_signature_from`] only; offers
    /// from peers must be in this version). None: not an older payload.
    fn read_older(payload: &[u8]) -> Option<Self> {
        let _ = payload;
        None
    }

    /// Checks that the payload is valid at `now_ms`, the verifier's clock
    /// (not expired, not from the future). Payloads without a validity
    /// window have nothing to check.
    fn check_time(&self, now_ms: u64) -> Result<(), EnvelopeError> {
        let _ = now_ms;
        Ok(())
    }
}

/// A payload with its signer and signature. The payload travels as the exact
/// bytes that were signed; it is decoded only after the signature checks out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    payload: Vec<u8>,
    signer: PeerKey,
    #[serde(with = "signature_bytes")]
    signature: [u8; 64],
    #[serde(skip)]
    _kind: std::marker::PhantomData<T>,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The signer's key is not a valid ed25519 point.
    #[error("the signer's key is not a valid ed25519 public key")]
    BadKey,
    /// The signature does not match the payload and signer.
    #[error("bad signature: the payload was changed or not signed by {0}")]
    BadSignature(String),
    /// Signed by someone other than expected.
    #[error("signed by {got}, expected {expected}")]
    WrongSigner {
        /// The expected key (short).
        expected: String,
        /// The actual key (short).
        got: String,
    },
    /// The payload does not decode.
    #[error("payload: {0}")]
    Codec(#[from] CodecError),
    /// The manifest has expired (or is not yet valid).
    #[error("the manifest expired at {expires_ms} (now {now_ms})")]
    Expired {
        /// Expiry.
        expires_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// The manifest was created in the future (beyond clock-skew tolerance).
    #[error("the manifest was created at {created_ms}, after now ({now_ms})")]
    NotYetValid {
        /// Creation.
        created_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// The signer is not who the payload says it is from.
    #[error("the payload names {claimed} but was signed by {signer}")]
    SignerMismatch {
        /// Claimed.
        claimed: String,
        /// Actual.
        signer: String,
    },
    /// The manifest is out of bounds.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The receipt is out of bounds.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
}

impl EnvelopeError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::BadKey => "bad_key",
            EnvelopeError::BadSignature(_) => "bad_signature",
            EnvelopeError::WrongSigner { .. } => "wrong_signer",
            EnvelopeError::Codec(_) => "malformed",
            EnvelopeError::Expired { .. } => "expired",
            EnvelopeError::NotYetValid { .. } => "not_yet_valid",
            EnvelopeError::SignerMismatch { .. } => "signer_mismatch",
            EnvelopeError::Manifest(_) => "invalid_manifest",
            EnvelopeError::Receipt(_) => "invalid_receipt",
        }
    }
}

/// A node's signing key, made from 32 secret bytes (the caller supplies them).
pub fn signing_key(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

/// The public key of a signing key.
pub fn peer_key(key: &SigningKey) -> PeerKey {
    PeerKey::from_bytes(key.verifying_key().to_bytes())
}

/// Keys decompressed from their bytes, by those bytes: a mesh has a handful
/// of signers, and turning 32 bytes into a curve point costs a tenth of a
/// signature check.
static KEYS: LazyLock<Mutex<HashMap<PeerKey, VerifyingKey>>> = LazyLock::new(Default::default);

/// Keys remembered at most; more signers than this start the memory over.
const KEYS_KEPT: usize = 1024;

/// `signer` as a curve point, or why it is not one.
fn verifying_key(signer: &PeerKey) -> Result<VerifyingKey, EnvelopeError> {
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(key) = keys.get(signer) {
        return Ok(*key);
    }
    let key = VerifyingKey::from_bytes(signer.as_bytes()).map_err(|_| EnvelopeError::BadKey)?;
    if keys.len() >= KEYS_KEPT {
        keys.clear();
    }
    keys.insert(*signer, key);
    Ok(key)
}

fn message(context: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(context.len() + 1 + payload.len());
    msg.extend_from_slice(context);
    msg.push(0);
    msg.extend_from_slice(payload);
    msg
}

impl<T: Signable> Signed<T> {
    /// Encodes and signs `payload`.
    pub fn sign(payload: &T, key: &SigningKey) -> Self {
        let bytes = codec::to_canonical_bytes(payload);
        let signature = key.sign(&message(T::CONTEXT, &bytes));
        Self {
            payload: bytes,
            signer: peer_key(key),
            signature: signature.to_bytes(),
            _kind: std::marker::PhantomData,
        }
    }

    /// Who signed it (not yet verified).
    pub fn signer(&self) -> &PeerKey {
        &self.signer
    }

    /// Verifies the signature, decodes the payload and checks it.
    pub fn verify(&self, now_ms: u64) -> Result<T, EnvelopeError> {
        let key = verifying_key(&self.signer)?;
        self.check_signature(&key)?;
        self.open(now_ms)
    }

    /// As [`Signed::verify`], and the signer must be `expected`.
    pub fn verify_from(&self, expected: &PeerKey, now_ms: u64) -> Result<T, EnvelopeError> {
        self.signed_by(expected)?;
        self.verify(now_ms)
    }

    /// The signature (by `expected`) and the payload's contents, without
    /// the time checks: for a signer reading back what it signed itself
    /// long ago (a stored job past its expiry is still its job). Never use
    /// it to accept a payload from a peer.
    pub fn verify_signature_from(&self, expected: &PeerKey) -> Result<T, EnvelopeError> {
        self.signed_by(expected)?;
        let key = verifying_key(&self.signer)?;
        self.check_signature(&key)?;
        let payload: T = match codec::from_canonical_bytes(&self.payload, T::MAX_BYTES) {
            Ok(payload) => payload,
            Err(e) => T::read_older(&self.payload).ok_or(e)?,
        };
        payload.check(&self.signer)?;
        Ok(payload)
    }

    /// [`Signed::verify_from`] for each of `items`, in order. The signatures
    /// are checked together (ed25519 batch verification: a batch of eight
    /// costs under half as much per signature as eight checks one by one);
    /// only if the batch fails are they checked one by one, to tell which.
    /// A weak (small-order) key, which batch verification would not notice,
    /// is always checked alone, so it is refused exactly as by `verify`.
    /// What the batch does not promise: a signer that builds a signature on
    /// purpose with a small-order part in its `R` may see it pass here and
    /// fail alone; nobody can pass a signature off as another key's.
    pub fn verify_all_from(
        items: &[Self],
        expected: &PeerKey,
        now_ms: u64,
    ) -> Vec<Result<T, EnvelopeError>> {
        // Each item's key, and whether a batch may vouch for it (not weak).
        let keys: Vec<Result<(VerifyingKey, bool), EnvelopeError>> = items
            .iter()
            .map(|item| {
                item.signed_by(expected)?;
                let key = verifying_key(&item.signer)?;
                Ok((key, !key.is_weak()))
            })
            .collect();
        let batch: Vec<(&Self, VerifyingKey)> = items
            .iter()
            .zip(&keys)
            .filter_map(|(item, key)| match key {
                Ok((key, true)) => Some((item, *key)),
                _ => None,
            })
            .collect();
        let batch_holds = batch.len() > 1 && {
            let messages: Vec<Vec<u8>> = batch
                .iter()
                .map(|(item, _)| message(T::CONTEXT, &item.payload))
                .collect();
            let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let signatures: Vec<Signature> = batch
                .iter()
                .map(|(item, _)| Signature::from_bytes(&item.signature))
                .collect();
            let batch_keys: Vec<VerifyingKey> = batch.iter().map(|(_, key)| *key).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &batch_keys).is_ok()
        };
        items
            .iter()
            .zip(keys)
            .map(|(item, key)| {
                let (key, batchable) = key?;
                if !(batch_holds && batchable) {
                    item.check_signature(&key)?;
                }
                item.open(now_ms)
            })
            .collect()
    }

    fn signed_by(&self, expected: &PeerKey) -> Result<(), EnvelopeError> {
        if &self.signer != expected {
            return Err(EnvelopeError::WrongSigner {
                expected: expected.short(),
                got: self.signer.short(),
            });
        }
        Ok(())
    }

    fn check_signature(&self, key: &VerifyingKey) -> Result<(), EnvelopeError> {
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&message(T::CONTEXT, &self.payload), &signature)
            .map_err(|_| EnvelopeError::BadSignature(self.signer.short()))
    }

    /// Decodes and checks the payload, once its signature holds.
    fn open(&self, now_ms: u64) -> Result<T, EnvelopeError> {
        let payload: T = codec::from_canonical_bytes(&self.payload, T::MAX_BYTES)?;
        payload.check(&self.signer)?;
        payload.check_time(now_ms)?;
        Ok(payload)
    }

    /// The signed payload bytes.
    pub fn payload_bytes(&self) -> &[u8] {
        &self.payload
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The signed bytes, for tests and fuzzing of tampering.
    #[doc(hidden)]
    pub fn payload_bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.payload
    }
}

/// How far in the future a manifest's creation time may be (clock skew
/// between devices on a LAN without NTP can be this large).
pub const CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

impl Signable for JobManifest {
    const CONTEXT: &'static [u8] = b"corral/manifest/1";
    const MAX_BYTES: usize = codec::MAX_MANIFEST_BYTES;

    fn check(&self, signer: &PeerKey) -> Result<(), EnvelopeError> {
        if &self.submitter != signer {
            return Err(EnvelopeError::SignerMismatch {
                claimed: self.submitter.short(),
                signer: signer.short(),
            });
        }
        self.validate()?;
        Ok(())
    }

    fn read_older(payload: &[u8]) -> Option<Self> {
        crate::manifest::read_v1(payload)
    }

    fn check_time(&self, now_ms: u64) -> Result<(), EnvelopeError> {
        if now_ms >= self.expires_ms {
            return Err(EnvelopeError::Expired {
                expires_ms: self.expires_ms,
                now_ms,
            });
        }
        if self.created_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
            return Err(EnvelopeError::NotYetValid {
                created_ms: self.created_ms,
                now_ms,
            });
        }
        Ok(())
    }
}

impl Signable for TaskReceipt {
    const CONTEXT: &'static [u8] = b"corral/receipt/1";
    const MAX_BYTES: usize = codec::MAX_RECEIPT_BYTES;

    fn check(&self, signer: &PeerKey) -> Result<(), EnvelopeError> {
        if &self.worker != signer {
            return Err(EnvelopeError::SignerMismatch {
                claimed: self.worker.short(),
                signer: signer.short(),
            });
        }
        self.validate()?;
        Ok(())
    }
}

impl Signable for ReceiptBatch {
    const CONTEXT: &'static [u8] = b"corral/receipts/1";
    const MAX_BYTES: usize = crate::messages::MAX_BATCH_RECEIPT_BYTES + 1024;

    /// The count only: each receipt is checked on its own by
    /// [`Signed::open_receipts_from`], the one way its receipts come out.
    fn check(&self, _signer: &PeerKey) -> Result<(), EnvelopeError> {
        let count = self.receipts.len();
        if !(1..=crate::messages::MAX_BATCH).contains(&count) {
            return Err(EnvelopeError::Receipt(ReceiptError {
                field: "receipts",
                why: format!(
                    "a batch holds 1 to {} receipts, not {count}",
                    crate::messages::MAX_BATCH
                ),
            }));
        }
        Ok(())
    }
}

/// A receipt out of a batch, or why it was refused on its own.
pub type OpenedReceipt = Result<TaskReceipt, EnvelopeError>;

impl Signed<ReceiptBatch> {
    /// The receipts of a batch from `expected`, once its one signature
    /// holds: the batch as a whole is refused (a bad signature, another
    /// signer, too many receipts or bytes), else each receipt is checked
    /// on its own, as [`Signed::verify_from`] checks a receipt signed alone
    /// (that it names its signer as its worker, and its bounds), one
    /// answer each in order.
    pub fn open_receipts_from(
        &self,
        expected: &PeerKey,
        now_ms: u64,
    ) -> Result<Vec<OpenedReceipt>, EnvelopeError> {
        let batch = self.verify_from(expected, now_ms)?;
        Ok(batch
            .receipts
            .into_iter()
            .map(|receipt| {
                receipt.check(&self.signer)?;
                Ok(receipt)
            })
            .collect())
    }
}

mod signature_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let bytes: &[u8] = <&[u8]>::deserialize(d)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"64 signature bytes"))
    }
}

#[cfg(test)]
mod tests;
