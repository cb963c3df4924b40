//! Small types the daemon's state holds: requests waiting for answers,
//! where an answer goes, results, blob chunks and verified offers coming
//! back from work done off the loop, and a drain under way. Plain data,
//! imported by the daemon's state and its handlers alike.

use corral_protocol::envelope::Signed;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::{BlobResponse, RejectReason, TaskRef, TaskResponse};
use corral_protocol::receipt::TaskReceipt;
use libp2p::request_response::ResponseChannel;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::dispatch::worker::VerifiedManifest;

/// An outbound task request waiting for its answer.
pub(super) enum Pending {
    /// A spawned task waits for it.
    Reply(oneshot::Sender<Result<TaskResponse, String>>),
    /// This node's offer of some tasks of a job, as coordinator.
    Offers {
        job: JobId,
        indices: Vec<u32>,
        peer: PeerKey,
    },
    /// A cancel; the answer does not matter.
    Cancel,
}

/// Where the answer to an inbound task request goes.
pub(super) enum Reply {
    /// Over the network.
    Remote(ResponseChannel<TaskResponse>),
    /// To a task of this node.
    Local(oneshot::Sender<Result<TaskResponse, String>>),
}

/// A blob chunk read off the loop, to be sent to the peer that asked.
pub(super) struct Served {
    pub(super) channel: ResponseChannel<BlobResponse>,
    pub(super) response: BlobResponse,
}

/// Why a result's output was not taken in.
#[derive(Debug)]
pub(super) enum NotTaken {
    /// The sender's fault (output that does not match its receipt, is too
    /// large, or could not be fetched from it): the result is refused.
    Refused(String),
    /// This node's (its disk): the result is not acknowledged, so its
    /// sender keeps it and sends it again.
    NotStored(String),
}

/// Results from one request whose output is in the blob store (or could
/// not be fetched or stored), ready for the coordinator.
pub(super) struct ResultReady {
    pub(super) from: PeerKey,
    /// Each wanted receipt, its place in the request, and whether its
    /// output is here.
    pub(super) results: Vec<(usize, TaskReceipt, Result<(), NotTaken>)>,
    /// The answer to each receipt of the request so far.
    pub(super) verdicts: Vec<Option<RejectReason>>,
    /// A single `Result` (answered `Ack`) rather than a batch.
    pub(super) single: bool,
    pub(super) reply: Reply,
}

/// The answer to a request of results, sent once what it acknowledges is
/// durable (the store flushed off the loop).
pub(super) struct Durable {
    pub(super) reply: Reply,
    pub(super) response: TaskResponse,
}

/// Whether a sweep of the cache is under way (one at a time).
#[derive(Clone, Default)]
pub(super) struct Sweeping(pub(super) std::sync::Arc<std::sync::atomic::AtomicBool>);

/// An offer whose manifest was verified off the loop.
pub(super) struct OfferVerified {
    pub(super) from: PeerKey,
    pub(super) manifest: Signed<JobManifest>,
    pub(super) verdict: Result<VerifiedManifest, RejectReason>,
    pub(super) tasks: Vec<TaskRef>,
    /// A single `Offer` (answered `Accepted` or `Rejected`) rather than a
    /// batch (answered `Each`).
    pub(super) single: bool,
    pub(super) reply: Reply,
}

/// A drain under way.
#[derive(Clone, Copy, Debug)]
pub(super) struct Leaving {
    /// When running tasks must be over.
    pub(super) deadline: Instant,
    /// When the rest was handed back.
    pub(super) handed_back: Option<Instant>,
}
