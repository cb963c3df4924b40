//! Fetching blobs by hash from a peer, through the event loop: chunk by
//! chunk, hash-checked before they are kept, once per blob however many
//! tasks need it.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::messages::{BlobRequest, BlobResponse, MAX_CHUNK_BYTES};
use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::NetHandle;
use crate::blobs::BlobStore;

/// Chunk requests of one blob in flight at once.
const MAX_CHUNKS_AHEAD: usize = 4;

/// Blobs of one task fetched at once.
const MAX_BLOBS_AT_ONCE: usize = 4;

/// The smallest chunk accepted that does not end its blob.
const MIN_SHORT_CHUNK_BYTES: u64 = 64 * 1024;

/// Chunk requests this node has travelling at once, to all peers together:
/// half of what a peer admits on one connection
/// ([`crate::net::limits::MAX_BLOB_STREAMS`]), whatever the slots.
pub const MAX_CHUNK_REQUESTS: usize = 64;
const _: () = assert!(MAX_CHUNK_REQUESTS <= crate::net::limits::MAX_BLOB_STREAMS / 2);

/// One lock per blob being fetched, so concurrent tasks needing the same
/// module fetch it once; and the bound on chunk requests travelling.
#[derive(Clone)]
pub struct FetchLocks {
    locks: Arc<Mutex<HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>>>,
    requests: Arc<Semaphore>,
}

impl Default for FetchLocks {
    fn default() -> Self {
        Self::with_request_limit(MAX_CHUNK_REQUESTS)
    }
}

impl FetchLocks {
    /// Locks whose fetches keep at most `requests` chunk requests
    /// travelling at once.
    pub fn with_request_limit(requests: usize) -> Self {
        Self {
            locks: Arc::default(),
            requests: Arc::new(Semaphore::new(requests.max(1))),
        }
    }

    fn lock_for(&self, hash: &ContentHash) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
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

/// Whether a fetched blob must be on disk before it counts as fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Synced before it is kept: what this device answers for once it has
    /// it (a result's output files, acknowledged to their worker).
    Synced,
    /// Left to the kernel's writeback: a copy of what its sender keeps (a
    /// task's module and inputs). A power cut may leave it short; it is
    /// hash-checked on first use and fetched again (see
    /// [`BlobWriter::commit_cached`](crate::blobs::BlobWriter::commit_cached)).
    /// A fresh device fetching a tree of 330 files spent 0.3 s in syncs.
    Cached,
}

/// Makes sure blob `hash` (at most `max` bytes) is in the store, fetching it
/// from `peer` if not. Up to [`MAX_CHUNKS_AHEAD`] chunk requests travel at
/// once; each chunk is written on a blocking thread while the next ones
/// travel, and the whole is hash-checked (and, as `keep` says, synced) off
/// the event loop before it is kept. Returns its path.
pub async fn fetch_blob(
    net: &NetHandle,
    blobs: &BlobStore,
    locks: &FetchLocks,
    peer: PeerKey,
    (hash, max): (ContentHash, u64),
    keep: Keep,
) -> anyhow::Result<PathBuf> {
    if intact(blobs, hash).await {
        return Ok(blobs.path(&hash));
    }
    let lock = locks.lock_for(&hash);
    let _held = lock.lock().await;
    if intact(blobs, hash).await {
        return Ok(blobs.path(&hash));
    }
    if max > DIRECT_FIRST_BYTES && !net.await_direct(peer, WAIT_FOR_DIRECT).await {
        tracing::info!(peer = %peer.short(), "no direct path came: fetching a big blob over the relay");
    }
    let mut chunks = Chunks {
        net: net.clone(),
        requests: locks.requests.clone(),
        peer,
        hash,
        max,
        total: None,
        asked: 0,
        received: 0,
        ahead: VecDeque::new(),
        resumes: 0,
    };
    let mut writer = blobs.writer()?;
    while let Some(bytes) = chunks.next().await? {
        writer = off_loop(move || writer.write(&bytes).map(|()| writer)).await?;
    }
    let store = blobs.clone();
    off_loop(move || match keep {
        Keep::Synced => writer.commit(&store, &hash),
        Keep::Cached => writer.commit_cached(&store, &hash),
    })
    .await
    .with_context(|| format!("blob from {}", peer.short()))
}

/// A blob that may be larger than this waits for a direct path to its peer
/// when the peer is reached through a relay alone (a hole punch takes a
/// second or two): relays carry a bounded number of bytes per circuit.
pub(super) const DIRECT_FIRST_BYTES: u64 = 4 * 1024 * 1024;
/// How long such a blob waits before it is fetched over the relay.
pub(super) const WAIT_FOR_DIRECT: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes sure every blob of `wanted` (hash, most bytes) is in the store,
/// fetching the missing ones from `peer`, [`MAX_BLOBS_AT_ONCE`] at a time.
/// Returns their paths, in the order asked.
pub async fn fetch_many(
    net: &NetHandle,
    blobs: &BlobStore,
    locks: &FetchLocks,
    peer: PeerKey,
    wanted: impl IntoIterator<Item = (ContentHash, u64)>,
    keep: Keep,
) -> anyhow::Result<Vec<PathBuf>> {
    stream::iter(wanted)
        .map(|blob| fetch_blob(net, blobs, locks, peer, blob, keep))
        .buffered(MAX_BLOBS_AT_ONCE)
        .try_collect()
        .await
}

/// Runs blocking disk work (writing, hashing, syncing) off the event loop.
async fn off_loop<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a blob write was cut short")?
}

/// The chunks of one blob, in order, with requests for the next ones
/// already travelling.
struct Chunks {
    net: NetHandle,
    /// The node's bound on chunk requests travelling.
    requests: Arc<Semaphore>,
    peer: PeerKey,
    hash: ContentHash,
    max: u64,
    /// The blob's size, once the peer has said it.
    total: Option<u64>,
    /// The offset the next request asks for.
    asked: u64,
    /// Bytes taken so far.
    received: u64,
    /// Requests travelling, oldest first.
    ahead: VecDeque<JoinHandle<Result<BlobResponse, String>>>,
    /// Times the fetch went on after its requests were lost with their
    /// connection.
    resumes: u32,
}

/// Times one blob's fetch goes on from the bytes taken after its requests
/// failed on the way (the connection closed: a relay cut its circuit at
/// its limits, a partition): the peer is dialled again within a second or
/// two. A peer's refusal (not found, invalid) ends the fetch at once.
pub(super) const MAX_RESUMES: u32 = 3;
/// The pause before a fetch goes on after such a loss.
pub(super) const RESUME_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl Chunks {
    /// The next chunk's bytes, or `None` once the blob is whole.
    async fn next(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if self.total == Some(self.received) {
                return Ok(None);
            }
            self.ask_ahead().await?;
            let travelling = self.ahead.pop_front().context("no chunk was asked for")?;
            match travelling.await.unwrap_or_else(|e| Err(e.to_string())) {
                Ok(response) => {
                    let bytes = self.take(response)?;
                    // Ask for the next ones before the caller writes this one.
                    self.ask_ahead().await?;
                    return Ok(Some(bytes));
                }
                Err(e) if self.resumes < MAX_RESUMES => {
                    tracing::info!(
                        blob = %self.hash.short(),
                        peer = %self.peer.short(),
                        from = self.received,
                        "a blob fetch lost its connection; going on from the bytes taken: {e}"
                    );
                    self.resumes += 1;
                    for request in self.ahead.drain(..) {
                        request.abort();
                    }
                    self.asked = self.received;
                    tokio::time::sleep(RESUME_AFTER).await;
                }
                Err(e) => anyhow::bail!(
                    "cannot fetch blob {} from {}: {e}",
                    self.hash.short(),
                    self.peer.short()
                ),
            }
        }
    }

    /// Keeps up to [`MAX_CHUNKS_AHEAD`] requests travelling (one, until the
    /// peer has said how big the blob is), within the node's bound: the
    /// next chunk waits for room, later ones are asked only if there is
    /// room now.
    async fn ask_ahead(&mut self) -> anyhow::Result<()> {
        let room = match self.total {
            None if self.ahead.is_empty() => 1,
            None => 0,
            Some(_) => MAX_CHUNKS_AHEAD.saturating_sub(self.ahead.len()),
        };
        for _ in 0..room {
            if self.total.is_some_and(|total| self.asked >= total) {
                break;
            }
            let permit: OwnedSemaphorePermit = if self.ahead.is_empty() {
                self.requests
                    .clone()
                    .acquire_owned()
                    .await
                    .context("the daemon is shutting down")?
            } else {
                match self.requests.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => break,
                }
            };
            let request = BlobRequest {
                hash: self.hash,
                offset: self.asked,
                len: MAX_CHUNK_BYTES,
            };
            let (net, peer) = (self.net.clone(), self.peer);
            self.ahead.push_back(tokio::spawn(async move {
                let answer = net.blob(peer, request).await;
                drop(permit);
                answer
            }));
            self.asked += u64::from(MAX_CHUNK_BYTES);
        }
        Ok(())
    }

    /// Checks a peer's answer against what was asked; returns its bytes.
    fn take(&mut self, response: BlobResponse) -> anyhow::Result<Vec<u8>> {
        let (peer, hash) = (self.peer.short(), self.hash.short());
        let (total, offset, bytes) = match response {
            BlobResponse::Chunk {
                total,
                offset,
                bytes,
            } => (total, offset, bytes),
            BlobResponse::NotFound => anyhow::bail!("{peer} does not have blob {hash}"),
            BlobResponse::Invalid => {
                anyhow::bail!("{peer} refused the request for blob {hash}")
            }
        };
        if total > self.max {
            anyhow::bail!(
                "blob {hash} is {total} bytes; at most {} are accepted",
                self.max
            );
        }
        if self.total.is_some_and(|known| known != total) {
            anyhow::bail!("{peer} changed the size of blob {hash} while sending it");
        }
        self.total = Some(total);
        let len = bytes.len() as u64;
        if offset != self.received
            || (len == 0 && self.received < total)
            || self.received + len > total
        {
            anyhow::bail!("{peer} sent a chunk of blob {hash} out of order");
        }
        self.received += len;
        if len < u64::from(MAX_CHUNK_BYTES) && self.received < total {
            // A short chunk that does not end the blob: the requests ahead
            // ask for the wrong offsets. Small ones would make a blob cost
            // a request per few bytes.
            if len < MIN_SHORT_CHUNK_BYTES {
                anyhow::bail!("{peer} sent blob {hash} in chunks of {len} bytes, too small");
            }
            self.drop_ahead();
            self.asked = self.received;
        }
        Ok(bytes)
    }

    /// Forgets the requests travelling.
    fn drop_ahead(&mut self) {
        for travelling in self.ahead.drain(..) {
            travelling.abort();
        }
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        self.drop_ahead();
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
