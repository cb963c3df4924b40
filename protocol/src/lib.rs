//! corral's wire protocol: ids, content hashes, the job manifest, signed
//! envelopes, task receipts and the versioned, size-limited codec.
//!
//! The flow of one task (DESIGN §3):
//!
//! 1. The submitting node builds a [`manifest::JobManifest`] and signs it
//!    ([`envelope::Signed`]) with its node key.
//! 2. The coordinator offers a task to a worker:
//!    [`messages::TaskRequest::Offer`] carries the signed manifest, the task
//!    index and the attempt. The worker checks signature, trust, expiry,
//!    replay and limits and answers [`messages::TaskResponse::Accepted`] or
//!    [`messages::TaskResponse::Rejected`] with a [`messages::RejectReason`].
//! 3. The worker fetches the module and any shipped trees by
//!    [`hash::ContentHash`] ([`messages::BlobRequest`]), chunk by chunk, and
//!    checks the hash.
//! 4. It runs the task and returns a signed [`receipt::TaskReceipt`]
//!    ([`messages::TaskRequest::Result`]), which it keeps until acknowledged.
//!
//! Modules can also be named rather than hashed: a publisher signs a
//! [`module_record::ModuleRecord`] (`name@version` is this hash), and a
//! reference such as `render@^1.2` ([`module_record::ModuleRef`]) resolves
//! to the newest matching version among the records of trusted publishers
//! ([`module_record::resolve`]).
//!
//! Everything here is pure: no I/O, no clocks, no randomness. Times and random
//! bytes come in as arguments. Every decoder is bounded ([`codec`]) and every
//! decoded value is validated before use.

pub mod capacity;
pub mod codec;
pub mod envelope;
pub mod hash;
pub mod ids;
pub mod manifest;
pub mod messages;
pub mod module_record;
pub mod receipt;
pub mod tree;

#[cfg(test)]
mod proptests;

/// The protocol version carried in every frame and manifest.
pub const PROTOCOL_VERSION: u8 = 2;
