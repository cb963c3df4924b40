//! Fetching from a peer played by the test: the blob store answers chunk
//! requests the way a daemon does, held a moment so overlap shows; hostile
//! peers answer what they like.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corral_protocol::envelope::{peer_key, signing_key};
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::messages::{BlobRequest, BlobResponse, MAX_CHUNK_BYTES};
use tokio::sync::mpsc;

use super::{
    DIRECT_FIRST_BYTES, FetchLocks, Keep, MAX_BLOBS_AT_ONCE, MAX_CHUNKS_AHEAD, MAX_RESUMES,
    fetch_blob, fetch_many,
};
use crate::blobs::BlobStore;
use crate::dispatch::{NetCmd, NetHandle};

/// Requests answered at most this long after they arrive.
const HOLD: Duration = Duration::from_millis(20);

fn peer() -> PeerKey {
    peer_key(&signing_key(&[9; 32]))
}

/// A store in a fresh directory (kept alive by the returned guard).
fn store() -> (BlobStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    (BlobStore::open(dir.path()).expect("a blob store"), dir)
}

/// Bytes that differ from chunk to chunk.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// The most requests the peer held unanswered at one time.
#[derive(Clone, Default)]
struct Overlap {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    /// How often a direct path was waited for.
    awaited: Arc<AtomicUsize>,
}

impl Overlap {
    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }

    /// Asserts `what` were fetched side by side (at least 2 in flight at
    /// once) and never more than `bound` at once.
    #[track_caller]
    fn side_by_side_within(&self, what: &str, bound: usize) {
        let most = self.most();
        assert!(
            most >= 2,
            "{what} were fetched one after another ({most} at most in flight)"
        );
        assert!(
            most <= bound,
            "{most} {what} in flight, more than the bound {bound}"
        );
    }
}

/// Fetches `hash` (of any size up to 1 GiB) from [`peer`], synced, with
/// locks of its own.
async fn fetch_whole(
    net: &NetHandle,
    dest: &BlobStore,
    hash: ContentHash,
) -> anyhow::Result<std::path::PathBuf> {
    fetch_blob(
        net,
        dest,
        &FetchLocks::default(),
        peer(),
        (hash, 1 << 30),
        Keep::Synced,
    )
    .await
}

/// Plays an honest peer serving `source`, each answer held [`HOLD`].
fn serve(source: BlobStore, rx: mpsc::Receiver<NetCmd>) -> Overlap {
    serve_with(rx, move |request| source.chunk(&request))
}

/// Plays a peer answering each blob request with `answer`.
fn serve_with(
    mut rx: mpsc::Receiver<NetCmd>,
    answer: impl Fn(BlobRequest) -> BlobResponse + Send + Sync + 'static,
) -> Overlap {
    let overlap = Overlap::default();
    let seen = overlap.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            let (request, reply) = match cmd {
                NetCmd::Blob { request, reply, .. } => (request, reply),
                NetCmd::AwaitDirect { reply, .. } => {
                    seen.awaited.fetch_add(1, Ordering::SeqCst);
                    let _ = reply.send(());
                    continue;
                }
                NetCmd::Task { .. } => panic!("only blobs are fetched"),
            };
            let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most.fetch_max(now, Ordering::SeqCst);
            let (seen, answer) = (seen.clone(), answer.clone());
            tokio::spawn(async move {
                tokio::time::sleep(HOLD).await;
                seen.now.fetch_sub(1, Ordering::SeqCst);
                let _ = reply.send(Ok(answer(request)));
            });
        }
    });
    overlap
}

#[tokio::test]
async fn a_big_blob_keeps_several_chunks_in_flight_and_arrives_whole() {
    let (source, _s) = store();
    let (dest, _d) = store();
    let body = bytes(5 * MAX_CHUNK_BYTES as usize + 3, 1);
    let hash = source.put_bytes(&body).expect("stored");
    let (net, rx) = NetHandle::new();
    let overlap = serve(source, rx);
    let path = fetch_whole(&net, &dest, hash)
        .await
        .expect("the blob arrives");
    assert_eq!(std::fs::read(path).expect("kept"), body);
    overlap.side_by_side_within("chunks", MAX_CHUNKS_AHEAD);
}

#[tokio::test]
async fn a_blob_that_may_be_big_waits_for_a_direct_path_first_and_a_small_one_does_not() {
    let (source, _s) = store();
    let (dest, _d) = store();
    let small = source.put_bytes(&bytes(1000, 3)).expect("stored");
    let big = source.put_bytes(&bytes(2000, 4)).expect("stored");
    let (net, rx) = NetHandle::new();
    let overlap = serve(source, rx);
    let locks = FetchLocks::default();
    fetch_blob(
        &net,
        &dest,
        &locks,
        peer(),
        (small, DIRECT_FIRST_BYTES),
        Keep::Synced,
    )
    .await
    .expect("the small blob arrives");
    assert_eq!(overlap.awaited.load(Ordering::SeqCst), 0);
    // Its bound, not its size, decides: the size is the peer's word.
    fetch_blob(
        &net,
        &dest,
        &locks,
        peer(),
        (big, DIRECT_FIRST_BYTES + 1),
        Keep::Synced,
    )
    .await
    .expect("the big blob arrives");
    assert_eq!(overlap.awaited.load(Ordering::SeqCst), 1);
    // One already held asks nothing.
    fetch_blob(
        &net,
        &dest,
        &locks,
        peer(),
        (big, DIRECT_FIRST_BYTES + 1),
        Keep::Synced,
    )
    .await
    .expect("held");
    assert_eq!(overlap.awaited.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_blob_waits_for_a_direct_path_no_longer_than_its_bound() {
    let (net, mut rx) = NetHandle::new();
    // A loop that never answers (the peer stays relayed).
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Some(cmd) = rx.recv().await {
            kept.push(cmd);
        }
    });
    let started = std::time::Instant::now();
    assert!(!net.await_direct(peer(), Duration::from_millis(200)).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    held.abort();
}

#[tokio::test]
async fn the_files_of_a_tree_are_fetched_side_by_side_within_a_bound() {
    let (source, _s) = store();
    let (dest, _d) = store();
    let files: Vec<Vec<u8>> = (0..12).map(|i| bytes(1000 + i, i as u8)).collect();
    let wanted: Vec<(ContentHash, u64)> = files
        .iter()
        .map(|f| (source.put_bytes(f).expect("stored"), f.len() as u64))
        .collect();
    let (net, rx) = NetHandle::new();
    let overlap = serve(source, rx);
    fetch_many(
        &net,
        &dest,
        &FetchLocks::default(),
        peer(),
        wanted.clone(),
        Keep::Cached,
    )
    .await
    .expect("every file arrives");
    for ((hash, _), body) in wanted.iter().zip(&files) {
        assert_eq!(&dest.read(hash, 1 << 20).expect("kept"), body);
    }
    overlap.side_by_side_within("files", MAX_BLOBS_AT_ONCE);
}

/// Fetches `hash` (at most `max` bytes) from a peer answering with
/// `answer`; returns the error, and checks nothing was kept.
async fn refused(
    hash: ContentHash,
    max: u64,
    answer: impl Fn(BlobRequest) -> BlobResponse + Send + Sync + 'static,
) -> String {
    let (dest, _d) = store();
    let (net, rx) = NetHandle::new();
    serve_with(rx, answer);
    let err = fetch_blob(
        &net,
        &dest,
        &FetchLocks::default(),
        peer(),
        (hash, max),
        Keep::Synced,
    )
    .await
    .expect_err("a hostile peer's blob is refused");
    assert!(!dest.has(&hash), "nothing is kept of a refused blob");
    format!("{err:#}")
}

/// A chunk of `body` as an honest peer would send it.
fn honest(body: &[u8], request: &BlobRequest) -> BlobResponse {
    let start = (request.offset as usize).min(body.len());
    let end = (start + request.len as usize).min(body.len());
    BlobResponse::Chunk {
        total: body.len() as u64,
        offset: request.offset,
        bytes: body[start..end].to_vec(),
    }
}

#[tokio::test]
async fn hostile_peers_are_refused_with_the_reason() {
    let body = bytes(3 * MAX_CHUNK_BYTES as usize, 2);
    let hash = ContentHash::of(&body);

    let b = body.clone();
    let err = refused(hash, 1024, move |r| honest(&b, &r)).await;
    assert!(err.contains("at most 1024 are accepted"), "{err}");

    let b = body.clone();
    let err = refused(hash, 1 << 30, move |r| {
        let mut chunk = honest(&b, &r);
        if let BlobResponse::Chunk { offset, .. } = &mut chunk {
            *offset += 1;
        }
        chunk
    })
    .await;
    assert!(err.contains("out of order"), "{err}");

    // The size changes between chunks.
    let b = body.clone();
    let err = refused(hash, 1 << 30, move |r| {
        let mut chunk = honest(&b, &r);
        if let BlobResponse::Chunk { total, .. } = &mut chunk
            && r.offset > 0
        {
            *total += 1;
        }
        chunk
    })
    .await;
    assert!(err.contains("size"), "{err}");

    // Empty chunks forever.
    let total = body.len() as u64;
    let err = refused(hash, 1 << 30, move |r| BlobResponse::Chunk {
        total,
        offset: r.offset,
        bytes: Vec::new(),
    })
    .await;
    assert!(err.contains("out of order"), "{err}");

    // Other bytes than the hash names.
    let mut other = body.clone();
    other[MAX_CHUNK_BYTES as usize + 5] ^= 1;
    let err = refused(hash, 1 << 30, move |r| honest(&other, &r)).await;
    assert!(err.contains("wrong contents"), "{err}");

    // A byte at a time: a request per byte.
    let b = body.clone();
    let err = refused(hash, 1 << 30, move |mut r| {
        r.len = 1;
        honest(&b, &r)
    })
    .await;
    assert!(err.contains("too small"), "{err}");

    let err = refused(hash, 1 << 30, |_| BlobResponse::NotFound).await;
    assert!(err.contains("does not have blob"), "{err}");
}

#[tokio::test]
async fn short_chunks_are_taken_and_the_rest_asked_for_again() {
    let (dest, _d) = store();
    let body = bytes(3 * MAX_CHUNK_BYTES as usize + 10, 3);
    let hash = ContentHash::of(&body);
    let (net, rx) = NetHandle::new();
    // A peer that sends at most a third of each chunk asked for.
    let b = body.clone();
    serve_with(rx, move |mut r| {
        r.len /= 3;
        honest(&b, &r)
    });
    let path = fetch_whole(&net, &dest, hash)
        .await
        .expect("the blob arrives in short chunks");
    assert_eq!(std::fs::read(path).expect("kept"), body);
}

#[tokio::test]
async fn chunk_requests_to_all_peers_stay_within_the_nodes_bound() {
    let (source, _s) = store();
    let (dest, _d) = store();
    // Four big blobs fetched at once would keep 16 requests travelling.
    let wanted: Vec<(ContentHash, u64)> = (0..4)
        .map(|i| {
            let body = bytes(4 * MAX_CHUNK_BYTES as usize, 10 + i);
            (source.put_bytes(&body).expect("stored"), body.len() as u64)
        })
        .collect();
    let (net, rx) = NetHandle::new();
    let overlap = serve(source, rx);
    let locks = FetchLocks::with_request_limit(3);
    let (a, b) = wanted.split_at(2);
    let (first, second) = tokio::join!(
        fetch_many(&net, &dest, &locks, peer(), a.to_vec(), Keep::Cached),
        fetch_many(&net, &dest, &locks, peer(), b.to_vec(), Keep::Cached),
    );
    first.expect("the first half arrives");
    second.expect("the second half arrives");
    assert!(
        overlap.most() <= 3,
        "{} chunk requests travelling, more than the node's bound of 3",
        overlap.most()
    );
}

/// Plays a peer serving `source` whose connection drops under the request
/// for the chunk at `offset`, `drops` times.
fn serve_dropping(source: BlobStore, mut rx: mpsc::Receiver<NetCmd>, offset: u64, drops: usize) {
    tokio::spawn(async move {
        let mut dropped = 0;
        while let Some(cmd) = rx.recv().await {
            match cmd {
                NetCmd::Blob { request, reply, .. } => {
                    let answer = if request.offset == offset && dropped < drops {
                        dropped += 1;
                        Err("Connection was closed before a response was received".into())
                    } else {
                        Ok(source.chunk(&request))
                    };
                    let _ = reply.send(answer);
                }
                NetCmd::AwaitDirect { reply, .. } => {
                    let _ = reply.send(());
                }
                NetCmd::Task { .. } => panic!("only blobs are fetched"),
            }
        }
    });
}

#[tokio::test]
async fn a_fetch_whose_connection_drops_goes_on_from_the_bytes_taken() {
    let (source, _s) = store();
    let body = bytes(4 * MAX_CHUNK_BYTES as usize + 5, 7);
    let hash = source.put_bytes(&body).expect("stored");
    let at = 2 * u64::from(MAX_CHUNK_BYTES);
    // A relay cut the circuit under the third chunk, as many times as a
    // fetch rides out: the blob still arrives whole.
    let (dest, _d) = store();
    let (net, rx) = NetHandle::new();
    serve_dropping(source.clone(), rx, at, MAX_RESUMES as usize);
    let path = fetch_whole(&net, &dest, hash)
        .await
        .expect("the blob arrives after the drops");
    assert_eq!(std::fs::read(path).expect("kept"), body);
    // Once more than that: the fetch ends with the reason.
    let (dest, _d) = store();
    let (net, rx) = NetHandle::new();
    serve_dropping(source, rx, at, MAX_RESUMES as usize + 1);
    let err = fetch_whole(&net, &dest, hash)
        .await
        .expect_err("a connection that keeps dropping ends the fetch");
    assert!(
        format!("{err:#}").contains("Connection was closed"),
        "{err:#}"
    );
}
