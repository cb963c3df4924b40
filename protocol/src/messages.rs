//! The messages of `/corral/task/1` and `/corral/blob/1` (DESIGN §3), with
//! stable reason codes for every refusal.

use serde::{Deserialize, Serialize};

use crate::codec::{MAX_MANIFEST_BYTES, MAX_RECEIPT_BYTES, WireMessage};
use crate::envelope::Signed;
use crate::hash::ContentHash;
use crate::ids::JobId;
use crate::manifest::JobManifest;
use crate::receipt::{ReceiptBatch, TaskReceipt};

/// Largest blob chunk in one response.
pub const MAX_CHUNK_BYTES: u32 = 1024 * 1024;

/// Most tasks in one [`TaskRequest::Offers`] or [`TaskRequest::Results`].
pub const MAX_BATCH: usize = 64;

/// Most bytes of receipts a worker puts in one [`TaskRequest::Results`];
/// a larger receipt travels alone in a [`TaskRequest::Result`].
pub const MAX_BATCH_RECEIPT_BYTES: usize = 1024 * 1024;

/// Most bytes of each stream in one [`TaskRequest::Output`].
pub const MAX_LIVE_CHUNK: usize = 256 * 1024;

/// One task of a [`TaskRequest::Offers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    /// The task.
    pub index: u32,
    /// Which attempt (1-based).
    pub attempt: u32,
}

/// Coordinator → worker (offers, cancel) and worker → coordinator (results,
/// hand-back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskRequest {
    /// Run task `index` of the signed job.
    Offer {
        /// The job, as its submitter signed it.
        manifest: Signed<JobManifest>,
        /// The task.
        index: u32,
        /// Which attempt (1-based).
        attempt: u32,
    },
    /// Stop a task (its result is no longer wanted).
    Cancel {
        /// The job.
        job: JobId,
        /// The task.
        index: u32,
    },
    /// A finished task's signed receipt.
    Result(Signed<TaskReceipt>),
    /// From a worker: it gives task `index` back, not run or not finished,
    /// for a reason of its own (its owner came back and the grace period
    /// ran out); not the task's fault, so it costs the task no attempt.
    HandBack {
        /// The job.
        job: JobId,
        /// The task.
        index: u32,
        /// Why (`OwnerBusy`, `Draining`).
        reason: RejectReason,
    },
    /// Several tasks of one signed job at once (at most [`MAX_BATCH`]),
    /// each judged as an [`TaskRequest::Offer`] of its own; answered by
    /// [`TaskResponse::Each`] in the same order.
    Offers {
        /// The job, as its submitter signed it.
        manifest: Signed<JobManifest>,
        /// The tasks.
        tasks: Vec<TaskRef>,
    },
    /// Several finished tasks' receipts at once (at most [`MAX_BATCH`], of
    /// [`MAX_BATCH_RECEIPT_BYTES`] together); answered by
    /// [`TaskResponse::Each`] in the same order.
    Results(Vec<Signed<TaskReceipt>>),
    /// From a worker, while the only task of a job runs: what it has
    /// written since the last such message, so that `corral run` shows it
    /// as it comes (the receipt stays the record of the whole output).
    Output {
        /// The job.
        job: JobId,
        /// The task.
        index: u32,
        /// The run's attempt.
        attempt: u32,
        /// Where `stdout` starts in the task's stdout.
        stdout_at: u64,
        /// The next stdout bytes (at most [`MAX_LIVE_CHUNK`]).
        stdout: Vec<u8>,
        /// Where `stderr` starts in the task's stderr.
        stderr_at: u64,
        /// The next stderr bytes (at most [`MAX_LIVE_CHUNK`]).
        stderr: Vec<u8>,
    },
    /// From a worker, every [`HEARTBEAT_INTERVAL_MS`] while it holds tasks
    /// of a job (queued behind its slots or running): it still has them,
    /// so their leases go on (never past the hard bound). Added last, so
    /// the other requests encode as before; answered by
    /// [`TaskResponse::Ack`].
    Alive {
        /// The job.
        job: JobId,
        /// The tasks held, with their attempts (1 to [`MAX_BATCH`]).
        tasks: Vec<TaskRef>,
    },
    /// Several finished tasks' receipts under one signature (at most
    /// [`MAX_BATCH`], of [`MAX_BATCH_RECEIPT_BYTES`] together), as a worker
    /// sends a batch: [`TaskRequest::Results`] costs a signature and its
    /// check per receipt. Answered by [`TaskResponse::Each`] in the same
    /// order, or [`TaskResponse::Rejected`] when the batch as a whole is
    /// refused. Added last, so the other requests encode as before.
    SignedResults(Signed<ReceiptBatch>),
}

/// How often a worker says it still holds its tasks
/// ([`TaskRequest::Alive`]); well under a coordinator's shortest soft
/// lease, so one lost message does not let a lease lapse.
pub const HEARTBEAT_INTERVAL_MS: u64 = 5000;

impl TaskRequest {
    /// Whether a batch (offers, results, a heartbeat's tasks) holds between
    /// one and [`MAX_BATCH`] items, and live output at most
    /// [`MAX_LIVE_CHUNK`] bytes of each stream (single requests always
    /// are).
    pub fn is_bounded(&self) -> bool {
        match self {
            TaskRequest::Offers { tasks, .. } => (1..=MAX_BATCH).contains(&tasks.len()),
            TaskRequest::Results(receipts) => (1..=MAX_BATCH).contains(&receipts.len()),
            TaskRequest::Alive { tasks, .. } => (1..=MAX_BATCH).contains(&tasks.len()),
            TaskRequest::Output { stdout, stderr, .. } => {
                stdout.len() <= MAX_LIVE_CHUNK && stderr.len() <= MAX_LIVE_CHUNK
            }
            _ => true,
        }
    }
}

/// Room in a frame beside a variant's large fields: the header, the
/// variant index, ids, counters and an envelope's key and signature.
const FRAME_SLACK: usize = 256;

impl WireMessage for TaskRequest {
    const KIND: u8 = 1;
    const MAX_BYTES: usize =
        2 + if MAX_MANIFEST_BYTES > MAX_RECEIPT_BYTES {
            MAX_MANIFEST_BYTES
        } else {
            MAX_RECEIPT_BYTES
        } + FRAME_SLACK;

    /// Each variant's own bound (DESIGN §7: a size limit per message kind),
    /// chosen by its index, the body's first byte ([`RequestVariant`]).
    fn max_frame_bytes(body: &[u8]) -> usize {
        // A one-byte index (postcard's varint): a byte with its high bit
        // set names no variant.
        match body.get(..1).map(postcard::from_bytes::<RequestVariant>) {
            Some(Ok(variant)) => variant.max_frame_bytes(),
            // Not a variant: the header and the byte, which do not decode.
            _ => 3,
        }
    }
}

/// The variants of [`TaskRequest`] without their fields, in the same
/// order, so that one decodes from a frame's variant index: each with its
/// own frame bound, by name rather than by number. (Its tests map every
/// [`TaskRequest`] onto it exhaustively, so a new request cannot go
/// without a bound.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum RequestVariant {
    Offer,
    Cancel,
    Result,
    HandBack,
    Offers,
    Results,
    Output,
    Alive,
    SignedResults,
}

impl RequestVariant {
    /// Most bytes of a frame of this variant:
    /// - an offer (one task or a batch) carries the signed manifest; the
    ///   module is fetched apart by hash, so the manifest is the bulk:
    ///   [`MAX_MANIFEST_BYTES`] (a million inputs);
    /// - a lone result carries one receipt, both captured streams inline:
    ///   [`MAX_RECEIPT_BYTES`];
    /// - a result batch is filled to [`MAX_BATCH_RECEIPT_BYTES`] (1 MiB);
    /// - live output is two chunks of [`MAX_LIVE_CHUNK`];
    /// - a cancel or hand-back is a job id and two small numbers;
    /// - a heartbeat is a job id and up to [`MAX_BATCH`] task references.
    fn max_frame_bytes(self) -> usize {
        let batch_refs = MAX_BATCH * 2 * 5;
        match self {
            RequestVariant::Offer => 2 + MAX_MANIFEST_BYTES + FRAME_SLACK,
            RequestVariant::Offers => 2 + MAX_MANIFEST_BYTES + FRAME_SLACK + batch_refs,
            RequestVariant::Result => 2 + MAX_RECEIPT_BYTES + FRAME_SLACK,
            RequestVariant::Results | RequestVariant::SignedResults => {
                2 + MAX_BATCH_RECEIPT_BYTES + 4 * FRAME_SLACK
            }
            RequestVariant::Output => 2 + 2 * MAX_LIVE_CHUNK + FRAME_SLACK,
            RequestVariant::Cancel | RequestVariant::HandBack => 2 + FRAME_SLACK,
            RequestVariant::Alive => 2 + FRAME_SLACK + batch_refs,
        }
    }
}

/// The answer to a [`TaskRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskResponse {
    /// The offer is taken.
    Accepted,
    /// The offer is refused, and why.
    Rejected(RejectReason),
    /// The result (or cancel) is received.
    Ack,
    /// The answer to each item of a batch, in order: `None` when the offer
    /// is taken or the result received, else why not.
    Each(Vec<Option<RejectReason>>),
}

impl WireMessage for TaskResponse {
    const KIND: u8 = 2;
    const MAX_BYTES: usize = 64 + 4 * MAX_BATCH;
}

/// Why a worker refused a task. The numeric codes are stable on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u16)]
pub enum RejectReason {
    /// The manifest's signature does not verify.
    BadSignature = 1,
    /// The submitter is not in the worker's trust list.
    NotTrusted = 2,
    /// The manifest has expired.
    Expired = 3,
    /// This manifest (nonce) was seen before.
    Replay = 4,
    /// The job's limits exceed the worker's policy.
    LimitsTooLarge = 5,
    /// The worker has no engine of the kind required.
    EngineUnavailable = 6,
    /// No free slot, or no room on disk for the task's disk limit (a full
    /// disk refuses every offer with it). As the answer to a result: the
    /// coordinator could not store it yet; the worker keeps it and sends it
    /// again.
    Busy = 7,
    /// The owner is using the device.
    OwnerBusy = 8,
    /// The worker is leaving.
    Draining = 9,
    /// The module's bytes do not match its hash.
    ModuleHashMismatch = 10,
    /// The request does not decode or is out of bounds.
    Malformed = 11,
    /// What the task needs (its module, inputs or trees) could not be
    /// fetched from the coordinator, or its work dir could not be made: the
    /// worker gives it back with [`TaskRequest::HandBack`].
    InputsUnavailable = 12,
}

impl RejectReason {
    /// Every reason, in code order.
    pub const ALL: [RejectReason; 12] = [
        RejectReason::BadSignature,
        RejectReason::NotTrusted,
        RejectReason::Expired,
        RejectReason::Replay,
        RejectReason::LimitsTooLarge,
        RejectReason::EngineUnavailable,
        RejectReason::Busy,
        RejectReason::OwnerBusy,
        RejectReason::Draining,
        RejectReason::ModuleHashMismatch,
        RejectReason::Malformed,
        RejectReason::InputsUnavailable,
    ];

    /// The stable numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// What the submitter sees, e.g. `pi-2 refused: submitter not trusted`.
    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::BadSignature => "bad signature on the job",
            RejectReason::NotTrusted => "submitter not trusted",
            RejectReason::Expired => "job expired",
            RejectReason::Replay => "job already seen (replay)",
            RejectReason::LimitsTooLarge => "job limits exceed this device's policy",
            RejectReason::EngineUnavailable => "no engine of the required kind",
            RejectReason::Busy => "no free slot (or no room on disk)",
            RejectReason::OwnerBusy => "owner is using the device",
            RejectReason::Draining => "device is leaving",
            RejectReason::ModuleHashMismatch => "module does not match its hash",
            RejectReason::Malformed => "malformed request",
            RejectReason::InputsUnavailable => "could not fetch what the task needs",
        }
    }

    /// Whether the refusal holds for the rest of the job on that device
    /// (its trust list, its engines, its limits do not change mid-job): the
    /// coordinator offers it that job no more.
    pub fn is_lasting(self) -> bool {
        matches!(
            self,
            RejectReason::NotTrusted
                | RejectReason::BadSignature
                | RejectReason::EngineUnavailable
                | RejectReason::LimitsTooLarge
                | RejectReason::Expired
                | RejectReason::ModuleHashMismatch
        )
    }

    /// Whether the device is only unavailable for now (full, its owner at
    /// it, leaving): neither its fault nor the task's, so a task refused or
    /// handed back for it costs no attempt and is offered again later.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            RejectReason::Busy | RejectReason::OwnerBusy | RejectReason::Draining
        )
    }
}

/// Ask for a chunk of a blob by hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// The blob.
    pub hash: ContentHash,
    /// Where the chunk starts.
    pub offset: u64,
    /// How many bytes (at most [`MAX_CHUNK_BYTES`]).
    pub len: u32,
}

impl WireMessage for BlobRequest {
    const KIND: u8 = 3;
    const MAX_BYTES: usize = 64;
}

/// A chunk of a blob, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobResponse {
    /// The bytes at `offset`, with the blob's total size.
    Chunk {
        /// The blob's size.
        total: u64,
        /// Where this chunk starts.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// This node does not have the blob.
    NotFound,
    /// The request is out of bounds.
    Invalid,
}

impl WireMessage for BlobResponse {
    const KIND: u8 = 4;
    const MAX_BYTES: usize = MAX_CHUNK_BYTES as usize + 64;
}

impl BlobRequest {
    /// Whether the request asks for a sane chunk.
    pub fn is_valid(&self) -> bool {
        self.len > 0
            && self.len <= MAX_CHUNK_BYTES
            && self.offset.checked_add(u64::from(self.len)).is_some()
    }
}

#[cfg(test)]
mod tests;
