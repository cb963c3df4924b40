//! Tests of the worker's event-loop side without a network: offers,
//! cancels, hand-backs and counts, with the requests it sends caught.

use std::collections::BTreeMap;

use corral_protocol::capacity::OwnerState;
use corral_protocol::envelope::{SigningKey, peer_key, signing_key};
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::Nonce;
use corral_protocol::manifest::{EngineReq, Limits, TaskSet};
use corral_protocol::messages::{BlobResponse, TaskRequest, TaskResponse};
use corral_protocol::receipt::EngineKind;
use tokio::sync::mpsc;

use super::admission::MAX_VERIFIED;
use super::*;
use crate::blobs::BlobStore;
use crate::clock::now_ms;
use crate::dispatch::{FetchLocks, NetCmd, NetHandle};
use crate::store::Store;

/// The engines, made once for all the tests of this process (each makes
/// its own reservations; the property test makes a worker per case).
fn engines() -> Arc<crate::runtime::Runtime> {
    static ENGINES: std::sync::OnceLock<Arc<crate::runtime::Runtime>> = std::sync::OnceLock::new();
    ENGINES
        .get_or_init(|| Arc::new(crate::runtime::Runtime::new(None).expect("the engines")))
        .clone()
}

/// A worker on a fresh data directory, and what it sends.
pub(super) struct Harness {
    pub(super) worker: Worker,
    net: mpsc::Receiver<NetCmd>,
    events: mpsc::Receiver<WorkerEvent>,
    _dir: tempfile::TempDir,
}

/// Needs a tokio runtime (the worker spawns on it).
pub(super) fn harness(slots: u16) -> Harness {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let blobs = BlobStore::open(dir.path()).expect("a blob store");
    let store = Store::open(dir.path()).expect("a store");
    let (net, net_rx) = NetHandle::new();
    let (events, events_rx) = mpsc::channel(super::ctx::events_capacity(slots));
    let me = signing_key(&[200; 32]);
    let ctx = Arc::new(WorkerCtx {
        me: peer_key(&me),
        key: me,
        blobs: blobs.clone(),
        locks: FetchLocks::default(),
        net,
        runtime: engines(),
        runs: RunQueue::default(),
        handle: tokio::runtime::Handle::current(),
        events,
        store,
        engines: vec![EngineKind::Interp],
        fault_lie: false,
        deliveries: Deliveries::default(),
        share: Default::default(),
    });
    Harness {
        worker: Worker::new(ctx, slots, None).expect("a worker"),
        net: net_rx,
        events: events_rx,
        _dir: dir,
    }
}

/// Job number `n` of `submitter`: `tasks` tasks running `module` (which
/// may not exist) with `args`.
fn job(
    submitter: &SigningKey,
    n: u16,
    tasks: u32,
    module: (ContentHash, u64),
    args: &[&str],
) -> Signed<JobManifest> {
    let mut id = [7u8; 16];
    id[..2].copy_from_slice(&n.to_be_bytes());
    let now = now_ms();
    let manifest = JobManifest {
        version: corral_protocol::PROTOCOL_VERSION,
        job: JobId::from_bytes(id),
        submitter: peer_key(submitter),
        module_hash: module.0,
        module_size: module.1,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: BTreeMap::new(),
        dirs: Vec::new(),
        tasks: TaskSet::Count(tasks),
        limits: Limits::default(),
        engine: EngineReq::Any,
        redundancy: 1,
        created_ms: now,
        expires_ms: now + 3_600_000,
        nonce: Nonce([n as u8; 16]),
        stdin: None,
        output: true,
    };
    Signed::sign(&manifest, submitter)
}

/// A module nobody has: its task waits for a fetch that no one answers.
pub(super) fn missing_module() -> (ContentHash, u64) {
    (ContentHash::of(b"not here"), 8)
}

fn gate(owner: OwnerState) -> Gate<'static> {
    Gate {
        now_ms: now_ms(),
        trusted: &|_| true,
        owner,
    }
}

fn job_of(signed: &Signed<JobManifest>) -> JobId {
    signed.verify(now_ms()).expect("a valid manifest").job
}

fn cancelled(worker: &Worker, job: JobId, index: u32) -> bool {
    worker
        .running
        .get(&(job, index))
        .expect("the task is held")
        .cancel
        .is_stopped()
}

#[tokio::test]
async fn a_cancel_from_the_tasks_coordinator_stops_it_however_many_jobs_came_since() {
    let mut h = harness(1);
    let alice = signing_key(&[1; 32]);
    let a = job(&alice, 0, 2, missing_module(), &["m"]);
    h.worker
        .on_offer(peer_key(&alice), &a, 0, 1, &gate(OwnerState::Idle))
        .expect("accepted");
    // More verified manifests than the worker keeps: A's is long gone.
    for n in 1..=(MAX_VERIFIED as u16 + 6) {
        let other = job(&alice, n, 2, missing_module(), &["m"]);
        assert_eq!(
            h.worker
                .on_offer(peer_key(&alice), &other, 0, 1, &gate(OwnerState::Draining)),
            Err(RejectReason::Draining)
        );
    }
    let a = job_of(&a);
    h.worker.on_cancel(peer_key(&signing_key(&[9; 32])), a, 0);
    assert!(
        !cancelled(&h.worker, a, 0),
        "a cancel from another peer is ignored"
    );
    h.worker.on_cancel(peer_key(&alice), a, 0);
    assert!(
        cancelled(&h.worker, a, 0),
        "a cancel from the task's coordinator stops it"
    );
}

#[tokio::test]
async fn a_manifest_changed_under_a_cached_signature_is_refused() {
    let mut h = harness(1);
    let alice = signing_key(&[1; 32]);
    let a = job(&alice, 0, 2, missing_module(), &["m"]);
    h.worker
        .on_offer(peer_key(&alice), &a, 0, 1, &gate(OwnerState::Idle))
        .expect("accepted");
    let mut forged = a.clone();
    let last = forged.payload_bytes_mut().len() - 1;
    forged.payload_bytes_mut()[last] ^= 1;
    assert!(
        h.worker
            .on_offer(peer_key(&alice), &forged, 1, 1, &gate(OwnerState::Idle))
            .is_err(),
        "the cache vouches only for the payload it verified"
    );
}

#[tokio::test]
async fn a_task_whose_inputs_cannot_be_fetched_is_handed_back_not_cancelled() {
    let mut h = harness(1);
    let alice = signing_key(&[1; 32]);
    let signed = job(&alice, 0, 2, missing_module(), &["m"]);
    let a = job_of(&signed);
    h.worker
        .on_offer(peer_key(&alice), &signed, 0, 1, &gate(OwnerState::Idle))
        .expect("accepted");
    // The worker asks the coordinator for the module, which says no.
    match h.net.recv().await.expect("a request") {
        NetCmd::Blob { peer, reply, .. } => {
            assert_eq!(peer, peer_key(&alice));
            let _ = reply.send(Ok(BlobResponse::NotFound));
        }
        other => panic!("expected a blob request, got {other:?}"),
    }
    match h.net.recv().await.expect("a request") {
        NetCmd::Task {
            peer,
            request,
            reply,
        } => {
            assert_eq!(peer, peer_key(&alice));
            assert!(
                matches!(
                    request,
                    TaskRequest::HandBack {
                        job,
                        index: 0,
                        reason: RejectReason::InputsUnavailable
                    } if job == a
                ),
                "expected a hand-back, got {request:?}"
            );
            let _ = reply.send(Ok(TaskResponse::Ack));
        }
        other => panic!("expected a task request, got {other:?}"),
    }
    let event = h.events.recv().await.expect("the task ended");
    h.worker.on_event(event);
    assert_eq!(h.worker.running(), 0);
}

/// Waits (up to ten seconds) for `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A module that loops until stopped (`testkit loop`), in the blob store.
fn looping_module(h: &Harness) -> (ContentHash, u64) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wasm/testkit.wasm");
    let bytes = std::fs::read(path).expect("the testkit example module");
    let hash = h.worker.ctx.blobs.put_bytes(&bytes).expect("stored");
    (hash, bytes.len() as u64)
}

#[tokio::test]
async fn queued_counts_the_tasks_accepted_but_not_yet_on_a_runner() {
    let mut h = harness(1);
    let alice = peer_key(&signing_key(&[1; 32]));
    let looping = job(
        &signing_key(&[1; 32]),
        0,
        2,
        looping_module(&h),
        &["testkit.wasm", "loop"],
    );
    let idle = gate(OwnerState::Idle);
    h.worker
        .on_offer(alice, &looping, 0, 1, &idle)
        .expect("accepted");
    until("the only runner takes the first task", || {
        h.worker.queued() == 0
    })
    .await;
    // The second waits for the slot, a third for its module.
    h.worker
        .on_offer(alice, &looping, 1, 1, &idle)
        .expect("accepted");
    let fetching = job(&signing_key(&[1; 32]), 1, 1, missing_module(), &["m"]);
    h.worker
        .on_offer(alice, &fetching, 0, 1, &idle)
        .expect("accepted");
    assert_eq!((h.worker.running(), h.worker.queued()), (3, 2));

    // The first stops; the second takes the slot.
    let first = job_of(&looping);
    h.worker.on_cancel(alice, first, 0);
    let event = h.events.recv().await.expect("the first ended");
    h.worker.on_event(event);
    until("the runner takes the second task", || {
        h.worker.queued() == 1
    })
    .await;
    assert_eq!(h.worker.running(), 2);

    h.worker.on_cancel(alice, first, 1);
    let event = h.events.recv().await.expect("the second ended");
    h.worker.on_event(event);
    assert_eq!((h.worker.running(), h.worker.queued()), (1, 1));
}

#[tokio::test]
async fn a_draining_worker_refuses_offers_and_keeps_what_it_holds() {
    let mut h = harness(2);
    let alice = signing_key(&[1; 32]);
    let a = job(&alice, 0, 2, missing_module(), &["m"]);
    let idle = gate(OwnerState::Idle);
    assert!(!h.worker.draining());
    h.worker
        .on_offer(peer_key(&alice), &a, 0, 1, &idle)
        .expect("accepted");
    h.worker.drain();
    assert!(h.worker.draining());
    assert_eq!(
        h.worker.on_offer(peer_key(&alice), &a, 1, 1, &idle),
        Err(RejectReason::Draining)
    );
    assert_eq!(h.worker.running(), 1, "what it holds goes on");
    assert!(!cancelled(&h.worker, job_of(&a), 0));
}

#[tokio::test]
async fn a_worker_is_idle_once_its_tasks_ended_and_hand_backs_went_through() {
    let mut h = harness(1);
    assert!(h.worker.idle(), "a fresh worker");
    let alice = signing_key(&[1; 32]);
    let signed = job(&alice, 0, 2, missing_module(), &["m"]);
    let a = job_of(&signed);
    h.worker
        .on_offer(peer_key(&alice), &signed, 0, 1, &gate(OwnerState::Idle))
        .expect("accepted");
    assert!(!h.worker.idle(), "a task waits for its module");
    h.worker.drain();
    assert_eq!(h.worker.hand_back_all(RejectReason::Draining), 1);

    // The fetch then fails, each time it goes on too: still handed back
    // as draining, not as a task that cannot run here.
    for _ in 0..=crate::dispatch::fetch::MAX_RESUMES {
        match h.net.recv().await.expect("a request") {
            NetCmd::Blob { reply, .. } => {
                let _ = reply.send(Err("gone".into()));
            }
            other => panic!("expected a blob request, got {other:?}"),
        }
    }
    let answer = match h.net.recv().await.expect("a request") {
        NetCmd::Task { request, reply, .. } => {
            assert!(
                matches!(
                    request,
                    TaskRequest::HandBack {
                        job,
                        index: 0,
                        reason: RejectReason::Draining
                    } if job == a
                ),
                "expected a hand-back for draining, got {request:?}"
            );
            reply
        }
        other => panic!("expected a task request, got {other:?}"),
    };
    let event = h.events.recv().await.expect("the task ended");
    h.worker.on_event(event);
    assert_eq!(h.worker.running(), 0);
    assert!(!h.worker.idle(), "the hand-back is on its way");
    let _ = answer.send(Ok(TaskResponse::Ack));
    until("the hand-back went through", || h.worker.idle()).await;
}

#[tokio::test]
async fn offers_from_untrusted_or_relaying_peers_are_refused_before_any_verifying() {
    let mut h = harness(1);
    let alice = signing_key(&[1; 32]);
    let mallory = signing_key(&[9; 32]);
    let only_alice = |k: &PeerKey| *k == peer_key(&alice);
    let gate = Gate {
        now_ms: now_ms(),
        trusted: &only_alice,
        owner: OwnerState::Idle,
    };
    let theirs = job(&mallory, 0, 2, missing_module(), &["m"]);
    let mut forged = theirs.clone();
    forged.payload_bytes_mut()[0] ^= 1;
    for signed in [&theirs, &forged] {
        assert_eq!(
            h.worker.on_offer(peer_key(&mallory), signed, 0, 1, &gate),
            Err(RejectReason::NotTrusted)
        );
    }
    // Alice's job, relayed by someone else.
    let hers = job(&alice, 1, 2, missing_module(), &["m"]);
    assert_eq!(
        h.worker.on_offer(peer_key(&mallory), &hers, 0, 1, &gate),
        Err(RejectReason::NotTrusted)
    );
    assert_eq!(
        h.worker.admission.verified_count(),
        0,
        "nothing was verified, so nothing cached"
    );
    h.worker
        .on_offer(peer_key(&alice), &hers, 0, 1, &gate)
        .expect("from its trusted submitter");
    assert_eq!(h.worker.admission.verified_count(), 1);
}

#[tokio::test]
async fn screening_verifies_nothing_and_the_cache_keeps_no_manifest_no_task_holds() {
    let mut h = harness(1);
    let alice = signing_key(&[1; 32]);
    let gate = gate(OwnerState::Idle);
    let first = job(&alice, 1, 2, missing_module(), &["m"]);
    // An unknown manifest is not verified by screening: the loop is told
    // to have it verified (off the loop).
    assert!(matches!(
        h.worker.screen(peer_key(&alice), &first, &gate),
        Screened::Verify
    ));
    assert_eq!(h.worker.admission.verified_count(), 0);
    let manifest = h
        .worker
        .on_verified(&first, verify_manifest(&first, gate.now_ms))
        .expect("a valid manifest");
    h.worker
        .on_offer_checked(peer_key(&alice), manifest, 0, 1, &gate)
        .expect("taken");
    // Its task holds it: known by its signature and payload, so not
    // verified again; another payload under the signature is.
    let Screened::Known(known) = h.worker.screen(peer_key(&alice), &first, &gate) else {
        panic!("a manifest a task holds is known");
    };
    assert_eq!(known.job, job_of(&first));
    let mut tampered = first.clone();
    tampered.payload_bytes_mut()[0] ^= 1;
    assert!(matches!(
        h.worker.screen(peer_key(&alice), &tampered, &gate),
        Screened::Verify
    ));
    // Manifests verified for offers refused keep their signatures, not
    // themselves: only the last one is kept beside the held one.
    for n in 2..40 {
        let other = job(&alice, n, 2, missing_module(), &["m"]);
        assert_eq!(
            h.worker.on_offer(peer_key(&alice), &other, 5, 1, &gate),
            Err(RejectReason::Malformed)
        );
    }
    assert_eq!(h.worker.admission.verified_count(), 39);
    assert_eq!(h.worker.admission.manifests_held(), 2);
    let again = job(&alice, 2, 2, missing_module(), &["m"]);
    assert!(matches!(
        h.worker.screen(peer_key(&alice), &again, &gate),
        Screened::Verify
    ));
}
