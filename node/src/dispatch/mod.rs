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
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::messages::{
    BlobRequest, BlobResponse, MAX_CHUNK_BYTES, TaskRequest, TaskResponse,
};
use tokio::sync::{mpsc, oneshot};

use crate::blobs::BlobStore;

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

/// One lock per blob being fetched, so concurrent tasks needing the same
/// module fetch it once.
#[derive(Clone, Default)]
pub struct FetchLocks(Arc<Mutex<HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>>>);

impl FetchLocks {
    fn lock_for(&self, hash: &ContentHash) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 4096 {
            map.retain(|_, l| Arc::strong_count(l) > 1);
        }
        map.entry(*hash).or_default().clone()
    }
}

/// Whether blob `hash` is here and intact (hashed on a blocking thread the
/// first time this process uses it; a corrupt copy is removed, so it is
/// fetched again).
async fn intact(blobs: &BlobStore, hash: ContentHash) -> bool {
    if blobs.known_intact(&hash) {
        return true;
    }
    let blobs = blobs.clone();
    tokio::task::spawn_blocking(move || blobs.is_intact(&hash))
        .await
        .unwrap_or(false)
}

/// Makes sure blob `hash` (at most `max` bytes) is in the store, fetching it
/// from `peer` chunk by chunk if not; the bytes are hash-checked before they
/// are kept. Returns its path.
pub async fn fetch_blob(
    net: &NetHandle,
    blobs: &BlobStore,
    locks: &FetchLocks,
    peer: PeerKey,
    hash: ContentHash,
    max: u64,
) -> anyhow::Result<PathBuf> {
    if intact(blobs, hash).await {
        return Ok(blobs.path(&hash));
    }
    let lock = locks.lock_for(&hash);
    let _held = lock.lock().await;
    if intact(blobs, hash).await {
        return Ok(blobs.path(&hash));
    }
    let mut writer = blobs.writer()?;
    loop {
        let request = BlobRequest {
            hash,
            offset: writer.len(),
            len: MAX_CHUNK_BYTES,
        };
        let response = net.blob(peer, request).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot fetch blob {} from {}: {e}",
                hash.short(),
                peer.short()
            )
        })?;
        match response {
            BlobResponse::Chunk {
                total,
                offset,
                bytes,
            } => {
                if total > max {
                    anyhow::bail!(
                        "blob {} is {total} bytes; at most {max} are accepted",
                        hash.short()
                    );
                }
                if offset != writer.len()
                    || (bytes.is_empty() && writer.len() < total)
                    || writer.len() + bytes.len() as u64 > total
                {
                    anyhow::bail!(
                        "{} sent a chunk of blob {} out of order",
                        peer.short(),
                        hash.short()
                    );
                }
                writer.write(&bytes)?;
                if writer.len() == total {
                    return writer
                        .commit(blobs, &hash)
                        .with_context(|| format!("blob from {}", peer.short()));
                }
            }
            BlobResponse::NotFound => {
                anyhow::bail!("{} does not have blob {}", peer.short(), hash.short())
            }
            BlobResponse::Invalid => anyhow::bail!(
                "{} refused the request for blob {}",
                peer.short(),
                hash.short()
            ),
        }
    }
}
