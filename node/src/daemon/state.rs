//! Small types the daemon's state holds: requests waiting for answers,
//! where an answer goes, results, blob chunks and verified offers coming
//! back from work done off the loop, a drain under way, and the budget of
//! manifests verified on the loop itself. Plain data, imported by the
//! daemon's state and its handlers alike.

use corral_protocol::envelope::Signed;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::{BlobResponse, RejectReason, TaskRef, TaskResponse};
use corral_protocol::receipt::TaskReceipt;
use libp2p::request_response::ResponseChannel;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::dispatch::worker::VerifiedManifest;

/// An outbound task request: on its own stream, or on the peer's lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum TaskCall {
    Stream(libp2p::request_response::OutboundRequestId),
    Lane(crate::net::lane::CallId),
}

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
    /// Over the network, on the request's own stream.
    Remote(ResponseChannel<TaskResponse>),
    /// Over the network, on the lane it came on.
    Lane(crate::net::lane::Answer),
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

/// A manifest is verified on the loop itself when the last one verified
/// there was at least this long ago (and it is small): for a lone offer the
/// hop to a blocking thread and back costs more than the check (about
/// 50 us), so a trivial task's round trip is shorter; a flood of offers
/// costs the loop at most a few percent of its time, the rest verified off
/// it as before.
pub(super) const INLINE_EVERY: std::time::Duration = std::time::Duration::from_millis(2);
/// Largest signed manifest verified on the loop (a larger one takes longer
/// to hash than the hop costs).
pub(super) const MAX_INLINE_BYTES: usize = 16 * 1024;

/// When a manifest was last verified on the loop itself; see
/// [`INLINE_EVERY`].
#[derive(Debug, Default)]
pub(super) struct InlineBudget {
    last: Option<std::time::Instant>,
}

impl InlineBudget {
    /// Whether a signed manifest of `bytes` may be verified on the loop at
    /// `now`; if so, the time is taken.
    pub(super) fn take(&mut self, now: std::time::Instant, bytes: usize) -> bool {
        let due = self
            .last
            .is_none_or(|at| now.saturating_duration_since(at) >= INLINE_EVERY);
        if due && bytes <= MAX_INLINE_BYTES {
            self.last = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_flood_of_offers_gets_one_inline_verification_per_interval() {
        let mut budget = InlineBudget::default();
        let start = Instant::now();
        // 10,000 offers over 100 ms (one every 10 us): 50 on the loop.
        let inline = (0..10_000u32)
            .filter(|i| budget.take(start + Duration::from_micros(u64::from(*i) * 10), 1000))
            .count();
        assert_eq!(inline, 50);
        // A large manifest never, however long since the last.
        let later = start + Duration::from_secs(1);
        assert!(!budget.take(later, MAX_INLINE_BYTES + 1));
        assert!(budget.take(later, MAX_INLINE_BYTES));
    }
}
