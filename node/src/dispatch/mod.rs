//! Running jobs over the mesh (DESIGN §3): the coordinator side
//! ([`coordinator`]) places tasks and collects results; the worker side
//! ([`worker`]) checks offers, fetches what a task needs by hash, runs it and
//! returns a signed receipt until it is acknowledged.
//!
//! Both sides are driven by the daemon's event loop. Work that waits on the
//! network (fetching blobs, delivering results, live output) runs in spawned
//! tasks that talk to the loop through a [`NetHandle`]; guests run on the
//! worker's runner threads. Offers of one job to one device, and results
//! ready at the same time, travel in batches.

pub mod coordinator;
mod fetch;
pub mod worker;

pub use fetch::{FetchLocks, Keep, MAX_CHUNK_REQUESTS, fetch_blob, fetch_many};

use corral_protocol::ids::PeerKey;
use corral_protocol::messages::{BlobRequest, BlobResponse, TaskRequest, TaskResponse};
use tokio::sync::{mpsc, oneshot};

/// A request for the event loop to send to a peer (or to answer itself,
/// when the peer is this node).
#[derive(Debug)]
pub enum NetCmd {
    /// A task-protocol request.
    Task {
        /// To whom.
        peer: PeerKey,
        /// What.
        request: TaskRequest,
        /// The answer, or why there is none.
        reply: oneshot::Sender<Result<TaskResponse, String>>,
    },
    /// A blob-protocol request.
    Blob {
        /// To whom.
        peer: PeerKey,
        /// What.
        request: BlobRequest,
        /// The answer, or why there is none.
        reply: oneshot::Sender<Result<BlobResponse, String>>,
    },
    /// Answered once `peer` is reached by a direct path — at once if it
    /// already is, or if it is not reached through a relay alone. The asker
    /// bounds the wait.
    AwaitDirect {
        /// Whom.
        peer: PeerKey,
        /// Dropped or answered.
        reply: oneshot::Sender<()>,
    },
}

/// A handle for spawned tasks to send requests through the event loop.
#[derive(Clone, Debug)]
pub struct NetHandle {
    tx: mpsc::Sender<NetCmd>,
}

impl NetHandle {
    /// A handle and the receiver the event loop polls.
    pub fn new() -> (Self, mpsc::Receiver<NetCmd>) {
        let (tx, rx) = mpsc::channel(1024);
        (Self { tx }, rx)
    }

    /// Sends a task request and waits for the answer.
    pub async fn task(&self, peer: PeerKey, request: TaskRequest) -> Result<TaskResponse, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(NetCmd::Task {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| "the daemon is shutting down".to_string())?;
        answer
            .await
            .map_err(|_| "the daemon is shutting down".to_string())?
    }

    /// Waits at most `within` for `peer` to be reached by a direct path
    /// (see [`NetCmd::AwaitDirect`]); whether it is.
    pub async fn await_direct(&self, peer: PeerKey, within: std::time::Duration) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .tx
            .send(NetCmd::AwaitDirect { peer, reply })
            .await
            .is_err()
        {
            return false;
        }
        matches!(tokio::time::timeout(within, answer).await, Ok(Ok(())))
    }

    /// Sends a blob request and waits for the answer.
    pub async fn blob(&self, peer: PeerKey, request: BlobRequest) -> Result<BlobResponse, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(NetCmd::Blob {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| "the daemon is shutting down".to_string())?;
        answer
            .await
            .map_err(|_| "the daemon is shutting down".to_string())?
    }
}
